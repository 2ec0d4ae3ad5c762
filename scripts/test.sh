#!/usr/bin/env bash
# Install (first run) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh --with-browser
# byte-compile the package once: where PYTHONDONTWRITEBYTECODE is set (many CI images set
# it) every medchaind/medchain process the tests start would compile it from source again
.venv/bin/python -m compileall -q -j 0 medchaind >/dev/null || true
# worksteal, not the default `load`: `load` hands out contiguous chunks of up to a quarter
# of the remaining tests, so one worker can end up holding every e2e file while the other
# runs out of work and idles (measured: 310 s of a 1475 s run); an idle worker steals here
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist worksteal "$@"

#!/usr/bin/env bash
# Install (first run) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 "$@"

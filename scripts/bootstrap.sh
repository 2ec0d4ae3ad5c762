#!/usr/bin/env bash
# Create .venv and install medchaind with its test extras (idempotent).
# Installs the system packages the build needs (gcc, libgmp-dev for fastecdsa, which
# libp2p pulls in and which PyPI ships only as source) when they are missing and we may.
# With --with-browser (scripts/test.sh passes it) it also installs Debian's chromium and
# chromium-driver for the console's browser tests; a dev node does not need them.
set -euo pipefail
cd "$(dirname "$0")/.."
with_browser=0
[ "${1:-}" = "--with-browser" ] && with_browser=1

need_pkgs=()
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc)
[ -e /usr/include/gmp.h ] || ls /usr/include/*/gmp.h >/dev/null 2>&1 || need_pkgs+=(libgmp-dev)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${need_pkgs[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "bootstrap: please install ${need_pkgs[*]} (needed to build fastecdsa for libp2p)" >&2
    exit 1
  fi
fi

# the console's browser tests (tests/console) drive Debian's headless Chromium with its
# chromedriver; without them those tests skip, so only install them where we may
if [ "$with_browser" = 1 ] && { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing chromium chromium-driver (browser tests)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver fonts-dejavu-core >/dev/null; } \
      || echo "bootstrap: installing chromium failed: the console's browser tests will skip" >&2
  else
    echo "bootstrap: chromium and chromium-driver are missing: the console's browser tests will skip" >&2
  fi
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: Python >= 3.11 is required ($PY is $("$PY" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.medchaind-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi

#!/usr/bin/env bash
# Install (first run) and start a throwaway single-authority dev node; Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/medchaind dev "$@"

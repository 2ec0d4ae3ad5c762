#!/usr/bin/env bash
# Repeat 4-authority bursts until one stalls, then make every node dump its tasks.
#
# Usage: scripts/stall_watch.sh [RUNS] [OUT_DIR]     (defaults: 20 runs, ./stall-watch)
#
# Each run is `medchaind bench --validators 4 --txs 20000` with node logs at info, in
# OUT_DIR/runN. A run that has not finished after 100 s is a stall (a burst takes ~30 s
# here): the script prints each node's height, saves the lagging node's node_syncing and
# consensus state, sends SIGUSR1 to all four nodes (each writes what its tasks wait on to
# <datadir>/debug/tasks-*.txt; operator guide section 13) and stops, leaving the bench to
# give up on its own. This is how docs/benchmarks.md ("A node that fell behind in a burst
# did not catch up", issue 14 session 6) caught the stall twice in ~80 bursts.
set -euo pipefail
RUNS=${1:-20}
OUT=${2:-./stall-watch}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
CLIENT="$ROOT/.venv/bin/medchain"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
height() { "$CLIENT" --ipc "$1/medchaind.ipc" rpc node_info 2>/dev/null | sed -n 's/.*"height": \([0-9]*\).*/\1/p' | head -1; }
for i in $(seq 1 "$RUNS"); do
  D="$OUT/run$i"
  rm -rf "$D"
  (cd /tmp && PYTHONPATH="$ROOT" "$PY" -m medchaind.cli.daemon bench --validators 4 --txs 20000 --tx-size 1024 \
      --base-port $((41000 + (i % 50) * 20)) --datadir "$D" --node-log-level info >"$OUT/run$i.json" 2>"$OUT/run$i.err") &
  bench=$!
  for _ in $(seq 1 100); do sleep 1; kill -0 "$bench" 2>/dev/null || break; done
  if ! kill -0 "$bench" 2>/dev/null; then
    echo "run $i: finished $("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["committed_tx_per_s"], "tx/s,", max(n["cpu_us_per_committed_tx"] for n in d["nodes"]), "us per tx (busiest node)")' "$OUT/run$i.json" 2>/dev/null || echo "(no summary)")"
    rm -rf "$D"  # ~150 MB a run: keep only a stalled run's datadir
    continue
  fi
  echo "run $i: STALLED"
  lag=""; low=""
  for n in 0 1 2 3; do
    h=$(height "$D/node$n"); echo "  node$n height ${h:-?}"
    if [ -n "$h" ] && { [ -z "$low" ] || [ "$h" -lt "$low" ]; }; then low=$h; lag=$n; fi
  done
  if [ -n "$lag" ]; then
    "$CLIENT" --ipc "$D/node$lag/medchaind.ipc" rpc node_syncing >"$OUT/run$i.syncing.json" 2>&1 || true
    "$CLIENT" --ipc "$D/node$lag/medchaind.ipc" consensus >"$OUT/run$i.consensus.json" 2>&1 || true
  fi
  for n in 0 1 2 3; do
    pid=$(pgrep -f "$D/node$n( |$)" | head -1 || true)
    [ -n "$pid" ] && kill -USR1 "$pid"
  done
  sleep 3
  echo "  lagging: node${lag:-?}; task dumps:"; ls "$D"/node*/debug/ 2>/dev/null | sed 's/^/    /'
  exit 1
done
echo "no stall in $RUNS runs"

#!/usr/bin/env bash
# Concurrent jobs of one account sharing its rate budget: N separate `simbulk run` processes
# against one simulator limited to 20/s (burst 5), each asking --rate 20 — at the default
# concurrency (8) and burst, at --concurrency 64, and at --concurrency 4 --burst 5 — on one
# host (a shared --quota-dir) and as if on several (separate --quota-dir, one Redis). Prints
# each job's rows/s, the requests per second together, the 429s and the simulator's busiest
# second.
#   cargo build --release && benches/shared_budget.sh [target/release/simbulk]
# Needs python3 (for the JSON) and, for the Redis rows, redis-server.
set -euo pipefail
B=$(realpath "${1:-target/release/simbulk}")
W=$(mktemp -d)
cd "$W"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
export SIMBULK_CLIENT_ID=sim-demo-client SIMBULK_CLIENT_SECRET=s3cr3t-demo

run_set() { # label, number of jobs, extra flags (empty: one shared --quota-dir), pacing flags
  rm -f sim.out
  "$B" sim --addr 127.0.0.1:0 --sims 5000 --rate-limit 20 --rate-burst 5 > sim.out 2> sim.err &
  local sim=$!
  until [ -s sim.out ]; do sleep 0.1; done
  export SIMBULK_BASE_URL=$(head -1 sim.out)
  "$B" export --status available --rate 0 -o avail.csv 2> /dev/null
  local pids=""
  for i in $(seq 1 "$2"); do
    cut -d, -f1 avail.csv | sed -n "$((2 + (i - 1) * 200)),$((1 + i * 200))p" > "m$i.txt"
    rm -f "m$i".checkpoint "m$i".results.csv "m$i".failures.csv
    local dir=qd; [ -n "$3" ] && dir="qd$i"
    "$B" run "m$i.txt" --action activate --rate 20 ${4:-} -q \
      --summary-json "m$i.json" --quota-dir "$dir" $3 &
    pids="$pids $!"
  done
  wait $pids
  python3 - "$1" "$2" "$SIMBULK_BASE_URL" <<'PY'
import json, sys, urllib.request
label, n, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rs = [json.load(open(f"m{i}.json")) for i in range(1, n + 1)]
st = json.load(urllib.request.urlopen(url + "/__sim/stats"))
req = sum(r["requests"] for r in rs)
longest = max(r["elapsed_seconds"] for r in rs)
each = " / ".join("%.2f" % r["rows_per_second"] for r in rs)
print("| %s | %s | %.1f | %d of %d | %d |" % (label, each, req / longest, st["tooManyRequests"], st["requests"], st["peakPerSecond"]))
PY
  kill "$sim"; wait "$sim" 2> /dev/null || true
}

echo "| set-up | rows/s of each job | requests/s together (limit 20) | 429s | busiest second |"
echo "| --- | --- | --- | --- | --- |"
run_set "one host, 2 jobs, default concurrency (8) and burst" 2 ""
run_set "one host, 2 jobs, --concurrency 64" 2 "" "--concurrency 64"
run_set "one host, 2 jobs, --concurrency 4 --burst 5" 2 "" "--concurrency 4 --burst 5"
run_set "one host, 3 jobs" 3 ""
if command -v redis-server > /dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no > /dev/null &
  sleep 0.5
  run_set "Redis, 2 jobs (separate quota dirs)" 2 "--quota-url redis://127.0.0.1:$port/0"
  run_set "Redis, 3 jobs (separate quota dirs)" 3 "--quota-url redis://127.0.0.1:$port/0"
fi
run_set "--no-shared-budget, 2 jobs (each alone)" 2 "--no-shared-budget"

#!/usr/bin/env bash
# The performance targets of the README, measured back to back on this machine.
# Run by hand from the repository root: bash benches/targets.sh [1|2|3|4|5|6|all]
# Needs wrk (apt-get install wrk) for target 1. Prints each figure and its ratio.
# The throughput targets use the `toggle` job (every row a real change: one PATCH per row plus
# one list call per 100 rows), since rows already in state cost no write at all.
set -euo pipefail
cargo build --release --quiet
B=target/release/simbulk
which="${1:-all}"
run() { [ "$which" = all ] || [ "$which" = "$1" ]; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

if run 1; then
  echo "== 1. throughput vs a plain HTTP load generator (200,000 no-op PATCHes, concurrency 64)"
  $B sim --addr 127.0.0.1:18090 --sims 50000 --rate-limit 0 --token-per-minute 0 --token-ttl 24h -q >/dev/null 2>&1 &
  SIM=$!; trap 'kill $SIM 2>/dev/null' EXIT; sleep 1
  URL=http://127.0.0.1:18090
  TOK=$(curl -s -u sim-demo-client:s3cr3t-demo -d grant_type=client_credentials $URL/oauth2/token | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  ICC=$(curl -s -H "Authorization: Bearer $TOK" "$URL/api/v2/sim?status=active&customerSuspend=false&adminSuspend=false&systemSuspend=false&pageSize=1" | sed 's/.*"iccId":"\([0-9]*\)".*/\1/')
  LUA=$(mktemp); printf 'wrk.method="PATCH"\nwrk.body=%s\nwrk.headers["Content-Type"]="application/json"\nwrk.headers["Authorization"]="Bearer %s"\n' "'{\"status\":\"active\"}'" "$TOK" > "$LUA"
  W=(); S=()
  for i in 1 2 3; do
    W+=("$(wrk -t 2 -c 64 -d 4s -s "$LUA" "$URL/api/v2/sim/$ICC" | awk '/Requests\/sec/ {print $2}')")
    S+=("$($B bench --sim-url $URL --rows 200000 --concurrency 64 --mix toggle 2>/dev/null | awk '/throughput/ {print $2}')")
  done
  w=$(printf '%s\n' "${W[@]}" | median); s=$(printf '%s\n' "${S[@]}" | median)
  echo "wrk: ${W[*]} req/s; simbulk: ${S[*]} rows/s; median ratio $(awk -v s="$s" -v w="$w" 'BEGIN {printf "%.1f %%", 100*s/w}')"
  $B bench --sim-url $URL --rows 200000 --concurrency 64 --mix toggle 2>/dev/null | grep -E 'cpu|latency'
  kill $SIM; trap - EXIT
fi
if run 2; then
  echo "== 2. latency-bound: 50 ms added latency, concurrency 256 (Little's law: 5120 rows/s)"
  $B bench --rows 40000 --concurrency 256 --sim-latency 50ms --mix toggle 2>/dev/null | grep -E 'throughput|latency'
fi
if run 3; then
  echo "== 3. on the rate limit: --rate 500 for 60 s against a simulator limited to 500/s, burst 20"
  $B bench --rows 30000 --concurrency 64 --rate 500 --sim-rate-limit 500 --sim-burst 20 2>/dev/null | grep -E 'throughput|429|server'
fi
if run 4; then
  echo "== 4. flat memory: peak RSS for 100,000 and 10,000,000 rows"
  $B bench --rows 100000 --concurrency 64 --mix toggle 2>/dev/null | grep -E 'rss'
  $B bench --rows 10000000 --concurrency 64 --mix toggle 2>/dev/null | grep -E 'throughput|rss'
fi
if run 5; then
  echo "== 5. durability cost: results + checkpoint on disk vs /dev/null, alternated 3 times"
  F=(); N=()
  for i in 1 2 3; do
    F+=("$($B bench --rows 200000 --concurrency 64 --mix toggle 2>/dev/null | awk '/throughput/ {print $2}')")
    N+=("$($B bench --rows 200000 --concurrency 64 --mix toggle --discard-outputs 2>/dev/null | awk '/throughput/ {print $2}')")
  done
  f=$(printf '%s\n' "${F[@]}" | median); n=$(printf '%s\n' "${N[@]}" | median)
  echo "files: ${F[*]}; /dev/null: ${N[*]}; median cost $(awk -v f="$f" -v n="$n" 'BEGIN {printf "%.1f %%", 100*(n-f)/n}')"
fi
if run 6; then
  echo "== 6. resume: 1,000,000 rows with 999,000 done"
  $B bench --rows 1000000 --resume-from 999000 --concurrency 64 2>/dev/null | grep -E 'first request'
fi

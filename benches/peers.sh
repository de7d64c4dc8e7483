#!/usr/bin/env bash
# The cost of a row, side by side in one run on one `simbulk sim --rate-limit 0`, every
# request a real change (each side suspends or unsuspends its own SIMs, on a fresh simulator):
#   wrk (2 threads, 64 connections, benches/peers/toggle.lua), `simbulk bench --mix toggle`
#   (c=64, no client limit), the aiohttp script a user would write (benches/peers/
#   toggle_aiohttp.py, c=64), GNU parallel + curl (-j 64), and the HTTP client stack alone
#   (benches/http_stack.rs, c=64): as simbulk builds it (the ceiling of the engine's own
#   work), hyper-util's pooled client without reqwest, and bare hyper; the simulator's CPU
#   per request on each side, and what 0.80 x wrk leaves the client per row;
#   then simbulk's CPU per row at a steady 2,000/s, 200/s and 10/s, and one C client at
#   200/s and 10/s (curl --rate, one connection kept alive) as the floor of a paced request
#   on this machine.
# Run by hand from the repository root: bash benches/peers.sh
# Needs wrk, GNU parallel and python3 with aiohttp (apt-get install wrk parallel;
# pip install aiohttp); a missing peer is skipped and said so.
set -euo pipefail
cargo build --release --quiet
cargo build --release --quiet --bench http_stack
B=target/release/simbulk
PORT=18091
URL=http://127.0.0.1:$PORT
WORK=$(mktemp -d)
SIM=
trap '[ -n "$SIM" ] && kill $SIM 2>/dev/null; rm -rf "$WORK"' EXIT

# A fresh simulator (every SIM back in its seeded state), its token, and N active SIMs.
fresh() {
  [ -n "$SIM" ] && kill $SIM 2>/dev/null && wait $SIM 2>/dev/null || true
  $B sim --addr 127.0.0.1:$PORT --sims 100000 --rate-limit 0 --token-per-minute 0 --token-ttl 24h -q >/dev/null 2>&1 &
  SIM=$!
  for _ in $(seq 100); do curl -s -o /dev/null $URL/ && break; sleep 0.05; done
  # Another server on the port would answer in its place, with SIMs already changed.
  if ! kill -0 $SIM 2>/dev/null; then
    SIM=; echo "peers.sh: the simulator did not start on 127.0.0.1:$PORT (is the port taken?)" >&2; exit 1
  fi
  TOKEN=$(curl -s -u sim-demo-client:s3cr3t-demo -d grant_type=client_credentials $URL/oauth2/token |
    sed 's/.*"access_token":"\([^"]*\)".*/\1/')
}
ids() { # the first $1 active, unsuspended SIMs, one ICCID a line, into $WORK/ids.txt
  python3 - "$URL" "$TOKEN" "$1" > "$WORK/ids.txt" <<'PY'
import json, sys, urllib.request
url, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
out, page = [], ""
while len(out) < n:
    q = f"{url}/api/v2/sim?status=active&customerSuspend=false&adminSuspend=false&systemSuspend=false&pageSize=1000{page}"
    r = json.load(urllib.request.urlopen(urllib.request.Request(q, headers={"Authorization": f"Bearer {token}"})))
    out += [s["iccId"] for s in r["data"]]
    if not r.get("nextPageToken"):
        break
    page = "&pageToken=" + r["nextPageToken"]
print("\n".join(out[:n]))
PY
}
have() { command -v "$1" >/dev/null 2>&1; }
# The simulator's CPU per request over a side: `mark` before it, `served N` after it (µs).
TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' /proc/$SIM/stat; }
mark() { T0=$(ticks); }
served() { awk -v a="$T0" -v b="$(ticks)" -v n="$1" -v t="$TCK" 'BEGIN {printf "%.1f", (b - a) / t * 1e6 / n}'; }

echo "== real changes, no client limit (rows per second; client CPU per row)"
if have wrk; then
  fresh; ids 30000; mark
  W=$(IDS=$WORK/ids.txt THREADS=2 TOKEN=$TOKEN wrk -t 2 -c 64 -d 5s -s benches/peers/toggle.lua $URL/ |
    awk '/requests in/ {n=$1} /Requests\/sec/ {r=$2} END {print r, n}')
  WS=$(served "${W#* }"); W=${W% *}
  echo "wrk:      $W req/s (simulator: $WS µs CPU per request)"
else
  W=; echo "wrk:      skipped (apt-get install wrk)"
fi
fresh; mark
# bench's throughput line ends with the requests it made: "(60601 requests)".
S=$($B bench --sim-url $URL --mix toggle --rows 60000 --concurrency 64 2>/dev/null |
  awk '/throughput/ {t=$2; n=$(NF-1); sub(/^\(/, "", n)} /cpu:/ {c=$2} END {print t, c, n}')
SS=$(served "${S##* }"); S=${S% *}
echo "simbulk:  ${S% *} rows/s, ${S#* } µs CPU per row (simulator: $SS µs CPU per request)"
# The HTTP client stack alone (benches/http_stack.rs): as simbulk builds it (the ceiling of
# the engine's own work), hyper-util's pooled client without reqwest, and bare hyper.
for stack in reqwest pooled bare; do
  fresh; ids 30000
  line=$(cargo bench -q --profile release --bench http_stack -- $URL "$TOKEN" "$WORK/ids.txt" 60000 64 --stack $stack 2>/dev/null)
  echo "$line"
  if [ $stack = reqwest ]; then H=$(echo "$line" | awk '{print $3}'); fi
done
if python3 -c 'import aiohttp' 2>/dev/null; then
  fresh; ids 20000
  A=$(python3 benches/peers/toggle_aiohttp.py $URL "$TOKEN" "$WORK/ids.txt" 20000 64)
  echo "$A"
  A=$(echo "$A" | awk '{print $2}')
else
  A=; echo "aiohttp:  skipped (pip install aiohttp)"
fi
if have parallel; then
  fresh; ids 1000
  t0=$(date +%s.%N)
  parallel -j 64 curl -s -o /dev/null -X PATCH -H "'Authorization: Bearer $TOKEN'" \
    -H "'Content-Type: application/json'" -d "'{\"customerSuspend\":true}'" "$URL/api/v2/sim/{}" :::: "$WORK/ids.txt"
  P=$(awk -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN {printf "%.0f", 1000 / (t1 - t0)}')
  echo "parallel: $P rows/s (curl per row)"
else
  P=; echo "parallel: skipped (apt-get install parallel)"
fi
s=${S% *}
[ -n "$W" ] && awk -v s="$s" -v w="$W" 'BEGIN {printf "simbulk / wrk:      %.2f\n", s / w}'
awk -v s="$s" -v h="$H" 'BEGIN {printf "simbulk / stack:    %.2f\n", s / h}'
[ -n "$W" ] && awk -v h="$H" -v w="$W" 'BEGIN {printf "stack / wrk:        %.2f\n", h / w}'
# 0.80 x wrk leaves the client what the simulator does not use of the machine's cores.
[ -n "$W" ] && awk -v w="$W" -v ss="$SS" -v c="$(nproc)" 'BEGIN {
  printf "at 0.80 x wrk the client has %.1f µs CPU per row (%d cores, simulator %.1f µs a request)\n", c * 1e6 / (0.8 * w) - ss, c, ss }'
[ -n "$A" ] && awk -v s="$s" -v a="$A" 'BEGIN {printf "simbulk / aiohttp:  %.1f\n", s / a}'
[ -n "$P" ] && awk -v s="$s" -v p="$P" 'BEGIN {printf "simbulk / parallel: %.0f\n", s / p}'

echo "== real changes at a steady rate (client CPU per row, share of one core)"
declare -A STEADY
for args in "--rows 20000 --concurrency 64 --rate 2000" "--rows 2000 --concurrency 8 --rate 200" "--rows 100 --concurrency 8 --rate 10"; do
  fresh
  line=$($B bench --sim-url $URL --mix toggle $args 2>/dev/null |
    awk -v a="$args" '/throughput/ {t=$2} /cpu:/ {c=$2} END {printf "%-42s %6.1f µs per row, %4.1f %% of a core\n", a, c, c * t / 1e4}')
  echo "$line"
  STEADY["${args##* }"]=$(echo "$line" | awk '{print $(NF-8)}')
done

# The same paced PATCHes from one C client: curl --rate, one connection kept alive, one
# request at a time (what a wake-up and a request cost on this machine, with no engine).
# Its start-up (one request) is taken off.
curl_cpu() { # $1 requests, $2 rate, $3 suspend value: CPU seconds of one curl run
  { echo "request = PATCH"; echo "header = \"Authorization: Bearer $TOKEN\""
    echo 'header = "Content-Type: application/json"'; echo "data = \"{\\\"customerSuspend\\\":$3}\""
    head -"$1" "$WORK/ids.txt" | sed "s|.*|url = \"$URL/api/v2/sim/&\"\noutput = /dev/null|"; } > "$WORK/curl.cfg"
  local TIMEFORMAT='%3U %3S'
  { time curl -s --rate "$2" -K "$WORK/curl.cfg" >/dev/null; } 2>&1 | awk '{print $1 + $2}'
}
if curl --help all 2>/dev/null | grep -q -- '--rate'; then
  for run in "2000 200/s" "100 10/s"; do
    fresh; ids 2001
    set -- $run
    one=$(curl_cpu 1 "$2" true)
    all=$(curl_cpu "$1" "$2" true)
    awk -v n="$1" -v r="$2" -v a="$all" -v o="$one" -v s="${STEADY[${2%/s}]:-}" 'BEGIN {
      c = (a - o) * 1e6 / (n - 1)
      printf "curl --rate %-6s %5d rows          %6.1f µs per row", r, n, c
      if (s != "" && c > 0) printf "  (simbulk / curl: %.1f)", s / c
      printf "\n" }'
  done
else
  echo "curl --rate: skipped (curl 7.84 or later)"
fi

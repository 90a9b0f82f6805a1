#!/usr/bin/env bash
# metrics-overhead.sh: Traverse's packet path with the admin endpoint on and scraped every second
# (a Prometheus-like client fetching /metrics and /load) against the admin endpoint off, under the
# same traverse-load run, alternating ON OFF ON OFF. Prints server CPU µs per relayed datagram.
#
# Environment: ROUNDS [3], CALLS [50], DURATION [10], MODE [paced], TRAVERSE [.build/release/traverse],
# LOAD [.build/release/traverse-load], OUT [/tmp/metrics-overhead.PID].
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROUNDS=${ROUNDS:-3}
CALLS=${CALLS:-50}
DURATION=${DURATION:-10}
MODE=${MODE:-paced}
TRAVERSE=${TRAVERSE:-$REPO/.build/release/traverse}
LOAD=${LOAD:-$REPO/.build/release/traverse-load}
OUT=${OUT:-/tmp/metrics-overhead.$$}
mkdir -p "$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

run() { # run on|off ROUND
    local admin=off
    [[ $1 == on ]] && admin=127.0.0.1:0
    rm -f "$OUT/announce.json"
    "$TRAVERSE" serve --listen 127.0.0.1:0 --user alice:wonderland --allow-peer 127.0.0.0/8 --relay-ports 40000-49999 \
        --user-quota 100000 --log-level warning --admin-listen "$admin" --state-dir "$OUT/state" \
        --announce-file "$OUT/announce.json" >"$OUT/server-$1-$2.log" 2>&1 &
    local server=$!
    PIDS+=("$server")
    for _ in $(seq 100); do [[ -s "$OUT/announce.json" ]] && break; sleep 0.1; done
    local port admin_address
    port=$(python3 -c "import json;print(json.load(open('$OUT/announce.json'))['udp'][0].rsplit(':',1)[1])")
    admin_address=$(python3 -c "import json;print(json.load(open('$OUT/announce.json'))['admin'] or '')")
    local scraper=""
    if [[ -n "$admin_address" ]]; then
        (while true; do
            curl -s "http://$admin_address/metrics" >/dev/null || true
            curl -s "http://$admin_address/load" >/dev/null || true
            sleep 1
        done) &
        scraper=$!
        PIDS+=("$scraper")
    fi
    "$LOAD" "turn:127.0.0.1:$port?transport=udp" --user alice:wonderland --calls "$CALLS" --duration "$DURATION" \
        --mode "$MODE" --video-kbps 300 --server-pid "$server" --json "$OUT/$1-$2.json" >/dev/null
    [[ -n "$scraper" ]] && kill "$scraper" 2>/dev/null || true
    kill "$server"
    wait "$server" 2>/dev/null || true
    python3 - "$OUT/$1-$2.json" "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r.get("server") or {}
print(f"{sys.argv[2]:4} round {sys.argv[3]}: delivered {r['deliveredPPS']:.0f} pkt/s, lost {r['lost']}, "
      f"server CPU {s.get('cpuMicrosecondsPerRelayedDatagram', float('nan')):.2f} µs/relayed datagram")
PY
}

for round in $(seq "$ROUNDS"); do
    run on "$round" | tee -a "$OUT/summary.txt"
    run off "$round" | tee -a "$OUT/summary.txt"
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def cpu(mode):
    return [json.load(open(f"{out}/{mode}-{i}.json"))["server"]["cpuMicrosecondsPerRelayedDatagram"] for i in range(1, rounds + 1)]
on, off = cpu("on"), cpu("off")
print(f"median CPU µs/relayed datagram: metrics on {statistics.median(on):.2f}, off {statistics.median(off):.2f}, "
      f"on/off {statistics.median(on) / statistics.median(off):.3f}; spread of off runs {min(off):.2f}–{max(off):.2f}")
PY

#!/usr/bin/env bash
# bench-compare.sh: coturn versus Traverse under the same loads, alternating A B A B.
#
# Per round and server: a fresh server process, then these loads, all over 127.0.0.1:
#   paced      traverse-load: $CALLS calls of audio (50 pkt/s × 160 B) + $VIDEO_KBPS kbit/s video, $DURATION s
#   blast200   traverse-load blast, $BLAST_CALLS calls, 200 B SRTP packets, $BLAST_DURATION s
#   blast1200  the same with 1200 B packets
#   ramp       traverse-load ramp from $RAMP_START pkt/s by $RAMP_STEP every $RAMP_STEP_SECONDS s until loss > $RAMP_LOSS %
#   ramp2      the same ramp offered by $RAMP_GENERATORS traverse-load processes at once (half the calls
#              and half the rate each, for 2), merged step by step: one generator process tops out
#              near 190k pkt/s on this machine, below what Traverse carries without loss
#   uclient    turnutils_uclient -m 50 -l 200 -n $UCLIENT_N (channels), echoed by two turnutils_peer
#   uclient-s  the same with -s (Send indications)
#
# Figures per server (medians over rounds): delivered packets/s, zero-loss knee, loss, latency
# p50/p99/p99.9, server CPU time per relayed datagram, peak RSS (VmHWM), and the ratio Traverse/coturn.
#
# "Relayed datagrams" counts every datagram the relay forwards:
#   traverse-load: packets the generator sent + packets it received. Each media packet crosses the
#     relay twice (client A → A's relayed address → B's relayed address; then B's allocation → client B),
#     so at zero loss this is 2 × delivered; a packet lost inside the server still cost a receive.
#   uclient: messages sent + messages received: each message goes client → relay → peer, and the
#     peer's echo goes peer → relay → client.
# Server CPU is utime+stime from /proc/PID/stat over the load (traverse-load samples it itself with
# --server-pid over its media phase and drain; for uclient the script samples around the run).
#
# Environment (defaults in brackets): ROUNDS [3], CALLS [100], VIDEO_KBPS [300], DURATION [10],
# BLAST_CALLS [10], BLAST_DURATION [5], RAMP_START [10000], RAMP_STEP [10000], RAMP_STEP_SECONDS [2],
# RAMP_DURATION [40], RAMP_LOSS [0.1], RAMP_GENERATORS [2] (for ramp2; RAMP2_START [40000] RAMP2_STEP [20000]), UCLIENT_N [5000] (at uclient's 20 ms pacing -n 5000 runs
# ~100 s), LOADS ["paced blast200 blast1200 ramp uclient uclient-s"], SERVERS ["coturn traverse"],
# PORT_COTURN [35700], PORT_TRAVERSE [35800], PEERPORT [35900], OUT [/tmp/bench-compare.PID],
# SCRATCH [.build-bench] (SwiftPM scratch path), SKIP_BUILD [0]. SERVERS="traverse fleet" compares
# Traverse with [fleet] on (a loopback redis-server, FLEET_REDIS_PORT [36379]) against off.
# SERVERS="coturn before traverse" adds another Traverse build, TRAVERSE_BEFORE (a path to its
# `traverse` binary, e.g. built from an earlier commit), in the same rounds: a before/after table.
# The first server of SERVERS is the baseline; every other one gets its column and its ratio.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
CALLS=${CALLS:-100}
VIDEO_KBPS=${VIDEO_KBPS:-300}
DURATION=${DURATION:-10}
BLAST_CALLS=${BLAST_CALLS:-10}
BLAST_DURATION=${BLAST_DURATION:-5}
RAMP_START=${RAMP_START:-10000}
RAMP_STEP=${RAMP_STEP:-10000}
RAMP_STEP_SECONDS=${RAMP_STEP_SECONDS:-2}
RAMP_DURATION=${RAMP_DURATION:-40}
RAMP_LOSS=${RAMP_LOSS:-0.1}
UCLIENT_N=${UCLIENT_N:-5000}
RAMP_GENERATORS=${RAMP_GENERATORS:-2}
RAMP2_START=${RAMP2_START:-40000}
RAMP2_STEP=${RAMP2_STEP:-20000}
LOADS=${LOADS:-"paced blast200 blast1200 ramp ramp2 uclient uclient-s"}
SERVERS=${SERVERS:-"coturn traverse"}
PORT_COTURN=${PORT_COTURN:-35700}
PORT_TRAVERSE=${PORT_TRAVERSE:-35800}
PEERPORT=${PEERPORT:-35900}
OUT=${OUT:-/tmp/bench-compare.$$}
SCRATCH=${SCRATCH:-.build-bench}
SKIP_BUILD=${SKIP_BUILD:-0}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
USER_NAME=alice
USER_PASS=wonderland
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: >"$RESULTS"

log() { echo "bench-compare: $*" >&2; }

# shellcheck source=processes.sh
source "$(dirname "${BASH_SOURCE[0]}")/processes.sh"

cpu_ticks() { # utime+stime of PID in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

vmhwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

record() { # record SERVER ROUND LOAD METRIC VALUE
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
}

# ---------------------------------------------------------------- prerequisites
if ! command -v turnserver >/dev/null || ! command -v turnutils_uclient >/dev/null; then
    log "installing coturn (apt)"
    before=$(pgrep -x turnserver || true)
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn >/dev/null
    after=$(pgrep -x turnserver || true)
    if [[ "$after" != "$before" ]]; then
        log "note: installing coturn started a turnserver service ($after); it was not started by this script and is left alone"
    fi
fi
command -v python3 >/dev/null || { log "python3 is needed to summarise results"; exit 1; }

cd "$REPO"
LOADGEN="$REPO/$SCRATCH/release/traverse-load"
TRAVERSE="$REPO/$SCRATCH/release/traverse"
if [[ "$SKIP_BUILD" != 1 ]]; then
    log "building traverse-load (release)"
    flock /tmp/swift-build.lock swift build -c release --scratch-path "$SCRATCH" --product traverse-load >"$OUT/build-load.log" 2>&1 ||
        { log "building traverse-load failed; see $OUT/build-load.log"; exit 1; }
    log "building traverse (release)"
    if ! flock /tmp/swift-build.lock swift build -c release --scratch-path "$SCRATCH" --product traverse >"$OUT/build-traverse.log" 2>&1; then
        log "building traverse failed (see $OUT/build-traverse.log): the Traverse half will fail"
    fi
fi
[[ -x "$LOADGEN" ]] || { log "no traverse-load binary at $LOADGEN"; exit 1; }

for port in "$PORT_COTURN" "$PORT_TRAVERSE" "$PEERPORT" "$((PEERPORT + 1))"; do
    if udp_listening "$port"; then log "UDP port $port is already in use; set PORT_COTURN/PORT_TRAVERSE/PEERPORT"; exit 1; fi
done

# Echo peers for turnutils_uclient (it sends its RTCP half to PEERPORT+1).
turnutils_peer -L 127.0.0.1 -p "$PEERPORT" >"$OUT/peer1.log" 2>&1 &
STARTED+=($!)
turnutils_peer -L 127.0.0.1 -p "$((PEERPORT + 1))" >"$OUT/peer2.log" 2>&1 &
STARTED+=($!)

# ---------------------------------------------------------------- servers
SERVER_PID=""
SERVER_PORT=""
SERVER_ERROR=""

start_coturn() { # start_coturn ROUND
    SERVER_PORT=$PORT_COTURN
    turnserver --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port="$SERVER_PORT" \
        --allow-loopback-peers --lt-cred-mech --user "$USER_NAME:$USER_PASS" --realm traverse \
        --no-tls --no-dtls --no-cli --min-port 40000 --max-port 49999 \
        --log-file stdout >"$OUT/coturn-$1.log" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    local i
    for i in $(seq 100); do
        udp_listening "$SERVER_PORT" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    SERVER_ERROR="coturn did not start listening on $SERVER_PORT (see $OUT/coturn-$1.log)"
    return 1
}

start_traverse() { # start_traverse ROUND
    SERVER_PORT=$PORT_TRAVERSE
    if [[ ! -x "$TRAVERSE" ]]; then
        SERVER_ERROR="no Traverse binary at $TRAVERSE (build failed?)"
        return 1
    fi
    # One static user holds every allocation: lift the per-user limit (default 10). uclient picks
    # RFC 5766 channel numbers (up to 0x7FFF), which Traverse accepts only when told to.
    local config="$OUT/traverse.toml"
    printf '[limits]\nmax_allocations = 100000\nmax_allocations_per_user = 100000\nlegacy_channel_numbers = true\n' >"$config"
    local config_args=(--config "$config")
    if ! "$TRAVERSE" check-config "$config" >/dev/null 2>&1; then
        log "traverse check-config refused $config; running without it (per-user allocation limits may apply)"
        config_args=()
    fi
    rm -f "$OUT/announce.json"
    "$TRAVERSE" serve "${config_args[@]}" --listen "127.0.0.1:$SERVER_PORT" --user "$USER_NAME:$USER_PASS" \
        --allow-peer 127.0.0.0/8 --relay-ports 40000-49999 --log-level warning --admin-listen 127.0.0.1:0 \
        --state-dir "$OUT/traverse-state" --announce-file "$OUT/announce.json" ${TRAVERSE_EXTRA_ARGS:-} \
        >"$OUT/traverse-$1.log" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    local i
    for i in $(seq 100); do
        [[ -s "$OUT/announce.json" ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        SERVER_ERROR="Traverse did not announce its listeners within 10 s (see $OUT/traverse-$1.log)"
    else
        SERVER_ERROR="Traverse exited before announcing its listeners (is its TURN server built yet?); its output: $(head -c 300 "$OUT/traverse-$1.log" | tr '\n' ' ')"
    fi
    return 1
}

# Another build of Traverse (TRAVERSE_BEFORE), on the same port and with the same settings.
start_before() { # start_before ROUND
    if [[ -z "${TRAVERSE_BEFORE:-}" ]]; then
        SERVER_ERROR="SERVERS names 'before' but TRAVERSE_BEFORE is not set"
        return 1
    fi
    TRAVERSE="$TRAVERSE_BEFORE" start_traverse "$1"
}

# The same Traverse as a node of a one-node fleet: a redis-server on loopback (started once,
# no persistence) and --redis. With SERVERS="traverse fleet" the table compares the data path
# with the fleet on against off, in the same run.
FLEET_REDIS_PORT=${FLEET_REDIS_PORT:-36379}
start_fleet() { # start_fleet ROUND
    if ! redis-cli -p "$FLEET_REDIS_PORT" PING >/dev/null 2>&1; then
        redis-server --port "$FLEET_REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT" \
            >"$OUT/redis.log" 2>&1 &
        STARTED+=($!)
        sleep 0.5
    fi
    TRAVERSE_EXTRA_ARGS="--redis redis://127.0.0.1:$FLEET_REDIS_PORT --node-id bench" \
        TRAVERSE_FLEET_SECRET=bench-fleet-secret-0123456789 start_traverse "$1"
}

# ---------------------------------------------------------------- loads
run_loadgen() { # run_loadgen SERVER ROUND LOAD ARGS...
    local server=$1 round=$2 load=$3
    shift 3
    local json="$OUT/$server-$round-$load.json"
    if ! timeout 300 "$LOADGEN" "turn:127.0.0.1:$SERVER_PORT?transport=udp" --user "$USER_NAME:$USER_PASS" \
        --server-pid "$SERVER_PID" --json "$json" "$@" >"$OUT/$server-$round-$load.txt" 2>&1; then
        log "  $server $load: FAILED: $(grep -m1 'error' "$OUT/$server-$round-$load.txt" || tail -1 "$OUT/$server-$round-$load.txt")"
        record "$server" "$round" "$load" failed 1
        return 0
    fi
    python3 - "$json" "$server" "$round" "$load" >>"$RESULTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
server, rnd, load = sys.argv[2:5]
def out(metric, value):
    if value is not None:
        print(f"{server}\t{rnd}\t{load}\t{metric}\t{value}")
out("delivered_pps", r["deliveredPPS"])
out("loss_pct", 100 * r["lossRatio"])
out("auth_failures", r["authFailures"])
out("p50_us", r["latency"]["p50"])
out("p99_us", r["latency"]["p99"])
out("p999_us", r["latency"]["p999"])
if r.get("kneePPS") is not None or r["mode"] == "ramp":
    out("knee_pps", r.get("kneePPS") or 0)
s = r.get("server")
if s:
    out("cpu_us_per_relayed", s["cpuMicrosecondsPerRelayedDatagram"])
    out("peak_rss_kib", s["peakRSSKiB"])
PY
    log "  $server $load: $(grep -E '^(packets received|lost|latency)' "$OUT/$server-$round-$load.txt" | sed 's/  */ /g' | paste -sd ';' -)"
}

run_ramp_split() { # run_ramp_split SERVER ROUND LOAD: the ramp offered by RAMP_GENERATORS processes, merged
    local server=$1 round=$2 load=$3 n=$RAMP_GENERATORS i
    local pids=() jsons=()
    for i in $(seq "$n"); do
        local json="$OUT/$server-$round-$load-$i.json" pidarg=()
        [[ $i == 1 ]] && pidarg=(--server-pid "$SERVER_PID")
        jsons+=("$json")
        timeout 300 "$LOADGEN" "turn:127.0.0.1:$SERVER_PORT?transport=udp" --user "$USER_NAME:$USER_PASS" \
            "${pidarg[@]}" --json "$json" --mode ramp --calls $((BLAST_CALLS / n)) --packet-size 200 \
            --ramp-start $((RAMP2_START / n)) --ramp-step $((RAMP2_STEP / n)) --step-seconds "$RAMP_STEP_SECONDS" \
            --loss-threshold "$RAMP_LOSS" --duration "$RAMP_DURATION" >"$OUT/$server-$round-$load-$i.txt" 2>&1 &
        pids+=($!)
        STARTED+=($!)
    done
    local ok=1
    for i in "${pids[@]}"; do
        wait "$i" || ok=0
        forget "$i"
    done
    if [[ $ok != 1 ]]; then
        log "  $server $load: FAILED (see $OUT/$server-$round-$load-*.txt)"
        record "$server" "$round" "$load" failed 1
        return 0
    fi
    python3 - "$server" "$round" "$load" "$RAMP_LOSS" "$RAMP_STEP_SECONDS" "${jsons[@]}" >>"$RESULTS" <<'PY'
import json, sys
server, rnd, load, threshold, step_seconds = sys.argv[1:6]
threshold, step_seconds = float(threshold) / 100, float(step_seconds)
reports = [json.load(open(p)) for p in sys.argv[6:]]
def out(metric, value):
    print(f"{server}\t{rnd}\t{load}\t{metric}\t{value}")
# Step k of every process offered its share at about the same time: sum them, over the steps
# every process ran. A step counts only if the processes together really offered its rate.
steps = min(len(r["rampSteps"]) for r in reports)
knee = 0
for k in range(steps):
    offered = sum(r["rampSteps"][k]["offeredPPS"] for r in reports)
    sent = sum(r["rampSteps"][k]["sent"] for r in reports)
    received = sum(min(r["rampSteps"][k]["received"], r["rampSteps"][k]["sent"]) for r in reports)
    if sent < 0.98 * offered * step_seconds:
        break
    if sent and 1 - received / sent > threshold:
        break
    knee = offered
sent = sum(r["sent"] for r in reports)
received = sum(r["received"] for r in reports)
seconds = max(r["durationSeconds"] for r in reports)
out("delivered_pps", received / seconds)
out("knee_pps", knee)
out("loss_pct", 100 * (1 - min(received, sent) / max(1, sent)))
out("auth_failures", sum(r["authFailures"] for r in reports))
s = reports[0].get("server")
if s:
    out("cpu_us_per_relayed", s["cpuSeconds"] * 1e6 / max(1, sent + received))
    out("peak_rss_kib", s["peakRSSKiB"])
PY
    log "  $server $load: $(grep -h -E '^knee' "$OUT/$server-$round-$load"-*.txt | sed 's/  */ /g' | paste -sd ';' -)"
}

run_uclient() { # run_uclient SERVER ROUND LOAD [EXTRA uclient ARGS]
    local server=$1 round=$2 load=$3
    shift 3
    local txt="$OUT/$server-$round-$load.txt"
    local before start end
    before=$(cpu_ticks "$SERVER_PID")
    start=$(date +%s.%N)
    if ! timeout 600 turnutils_uclient -u "$USER_NAME" -w "$USER_PASS" -e 127.0.0.1 -r "$PEERPORT" \
        -m 50 -l 200 -n "$UCLIENT_N" -p "$SERVER_PORT" "$@" 127.0.0.1 >"$txt" 2>&1; then
        log "  $server $load: FAILED (see $txt)"
        record "$server" "$round" "$load" failed 1
        return 0
    fi
    end=$(date +%s.%N)
    local after hwm
    after=$(cpu_ticks "$SERVER_PID")
    hwm=$(vmhwm "$SERVER_PID")
    python3 - "$txt" "$server" "$round" "$load" "$before" "$after" "$start" "$end" "$hwm" "$(getconf CLK_TCK)" >>"$RESULTS" <<'PY'
import re, sys
txt, server, rnd, load, before, after, start, end, hwm, tck = sys.argv[1:11]
text = open(txt).read()
m = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", text, re.M)
if not m:
    print(f"{server}\t{rnd}\t{load}\tfailed\t1")
    sys.exit(0)
sent, recv = map(int, m[-1])
loss = re.search(r"Total lost packets \d+ \(([\d.]+)%\)", text)
rtt = re.search(r"Average round trip delay ([\d.]+) ms", text)
wall = float(end) - float(start)
cpu = (int(after) - int(before)) / int(tck)
relayed = sent + recv
def out(metric, value):
    print(f"{server}\t{rnd}\t{load}\t{metric}\t{value}")
out("delivered_pps", recv / wall)
out("loss_pct", float(loss.group(1)) if loss else 100.0 * (sent - recv) / max(1, sent))
if rtt:
    out("rtt_avg_us", 1000 * float(rtt.group(1)))
out("cpu_us_per_relayed", cpu * 1e6 / max(1, relayed))
out("peak_rss_kib", hwm)
PY
    log "  $server $load: $(grep -E 'tot_send_msgs=[0-9]+, tot_recv_msgs=[0-9]+$|Total lost' "$txt" | sed 's/^.*: //' | paste -sd ';' -)"
}

run_loads() { # run_loads SERVER ROUND
    local server=$1 round=$2 load
    for load in $LOADS; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "  $server $load: FAILED: the server exited"
            record "$server" "$round" "$load" failed 1
            continue
        fi
        case $load in
        paced) run_loadgen "$server" "$round" paced --mode paced --calls "$CALLS" --video-kbps "$VIDEO_KBPS" --duration "$DURATION" ;;
        blast200) run_loadgen "$server" "$round" blast200 --mode blast --calls "$BLAST_CALLS" --packet-size 200 --duration "$BLAST_DURATION" ;;
        blast1200) run_loadgen "$server" "$round" blast1200 --mode blast --calls "$BLAST_CALLS" --packet-size 1200 --duration "$BLAST_DURATION" ;;
        ramp) run_loadgen "$server" "$round" ramp --mode ramp --calls "$BLAST_CALLS" --packet-size 200 --ramp-start "$RAMP_START" \
            --ramp-step "$RAMP_STEP" --step-seconds "$RAMP_STEP_SECONDS" --loss-threshold "$RAMP_LOSS" --duration "$RAMP_DURATION" ;;
        ramp2) run_ramp_split "$server" "$round" ramp2 ;;
        uclient) run_uclient "$server" "$round" uclient ;;
        uclient-s) run_uclient "$server" "$round" uclient-s -s ;;
        *) log "unknown load $load" ;;
        esac
    done
}

# ---------------------------------------------------------------- rounds: A B A B …
for round in $(seq "$ROUNDS"); do
    for server in $SERVERS; do
        log "round $round/$ROUNDS: $server"
        SERVER_ERROR=""
        if ! "start_$server" "$round"; then
            log "  $server: FAILED: $SERVER_ERROR"
            for load in $LOADS; do record "$server" "$round" "$load" failed 1; done
            [[ -n "$SERVER_PID" ]] && stop "$SERVER_PID"
            SERVER_PID=""
            continue
        fi
        run_loads "$server" "$round"
        stop "$SERVER_PID"
        SERVER_PID=""
    done
done

# ---------------------------------------------------------------- summary
python3 - "$RESULTS" $SERVERS <<'PY'
import sys, statistics
from collections import defaultdict
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
values = defaultdict(list)
failed = defaultdict(int)
for server, rnd, load, metric, value in rows:
    if metric == "failed":
        failed[(server, load)] += 1
    else:
        values[(server, load, metric)].append(float(value))
loads = []
for _, _, load, _, _ in rows:
    if load not in loads:
        loads.append(load)
metrics = [
    ("delivered_pps", "delivered pkt/s", 0),
    ("knee_pps", "zero-loss knee pkt/s", 0),
    ("loss_pct", "loss %", 4),
    ("auth_failures", "SRTP auth failures", 0),
    ("p50_us", "latency p50 µs", 1),
    ("p99_us", "latency p99 µs", 1),
    ("p999_us", "latency p99.9 µs", 1),
    ("rtt_avg_us", "uclient avg RTT µs", 1),
    ("cpu_us_per_relayed", "server CPU µs/relayed dgram", 2),
    ("peak_rss_kib", "server peak RSS KiB", 0),
]
def med(server, load, metric):
    v = values.get((server, load, metric))
    return statistics.median(v) if v else None
def show(v, digits):
    return "-" if v is None else f"{v:,.{digits}f}"
print()
# Columns: every server of SERVERS (the first is the baseline), then each other one's ratio to it.
servers = sys.argv[2:] if len(sys.argv) > 3 else ["coturn", "traverse"]
A, others = servers[0], servers[1:]
header = f"{'load':<10} {'figure':<28} " + " ".join(f"{s:>14}" for s in servers)
header += " " + " ".join(f"{s + '/' + A:>16}" for s in others) + "  (medians)"
print(header)
print("-" * len(header))
for load in loads:
    for metric, label, digits in metrics:
        meds = [med(s, load, metric) for s in servers]
        if all(m is None for m in meds):
            continue
        base = meds[0]
        ratios = ["-" if (base is None or m is None or base == 0) else f"{m / base:.2f}" for m in meds[1:]]
        print(f"{load:<10} {label:<28} " + " ".join(f"{show(m, digits):>14}" for m in meds) + " "
              + " ".join(f"{r:>16}" for r in ratios))
    for server in servers:
        if failed[(server, load)]:
            print(f"{load:<10} {server + ' FAILED runs':<28} {failed[(server, load)]:>14}")
print()
PY
log "raw results: $RESULTS; logs and JSON reports in $OUT"

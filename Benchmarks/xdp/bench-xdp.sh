#!/usr/bin/env bash
# bench-xdp.sh: coturn versus Traverse on sockets versus Traverse with its kernel fast path (XDP),
# in a network-namespace lab, alternating the servers round by round (A B C A B C …).
#
# The lab (its own namespace and addresses, so that it does not collide with scripts/xdp-lab.sh's
# `tvx` lab, whose logic it copies): the server runs in namespace $LAB_NS on $LAB_NET.2 (interface
# $LAB_SERVER_IF); the load generator (traverse-load) and the echo peers (turnutils_peer) run in
# this namespace on $LAB_NET.1 ($LAB_CLIENT_IF). Every client allocates, binds a channel to an
# echo peer ($LAB_NET.1:$PEERPORT…) and receives its own SRTP back: each packet crosses the relay
# twice (client → peer, then peer → client), both over the veth pair — the path the XDP program
# relays in the kernel.
#
# Per round, four configurations in turn, each under the same loads:
#   direct    no relay: traverse-load --direct sends the same load straight to the echo peers
#             (the baseline: the generator's and the echo peers' own cost, and the generator's limit)
#   coturn    turnserver (Debian) in the namespace, relay on $LAB_NET.2
#   sockets   Traverse, server.fast_path = "off"
#   xdp       Traverse, server.fast_path = "xdp" on $LAB_SERVER_IF
# Loads:
#   paced     $CALLS calls: audio (50 pkt/s × 160 B) + $VIDEO_KBPS kbit/s video each way, SRTP, $DURATION s
#   blast     $BLAST_CALLS calls sending 200 B SRTP as fast as they can, $BLAST_DURATION s
#   ramp      from $RAMP_START pkt/s by $RAMP_STEP every $RAMP_STEP_SECONDS s until loss > $RAMP_LOSS %,
#             offered by $RAMP_GENERATORS traverse-load processes at once and merged step by step (as
#             bench-compare's ramp2): the zero-loss knee
#
# The figure: MACHINE-WIDE CPU per relayed datagram. traverse-load reads /proc/stat (all CPUs:
# user+nice+system+irq+softirq+steal) before and after its media phase and drain, because with
# XDP the relay's work leaves the server process for softirq. From it the same figure of the same
# round's `direct` run (same load, no relay) is subtracted: what remains is the relay's cost,
# including the veth crossings the relayed path adds. "Relayed datagrams" = packets sent +
# packets received by the generator (each media packet crosses the relay twice); for `direct`
# the same count of datagrams crosses only the echo peers. The server process's own CPU
# (utime+stime, --server-pid) is reported beside it.
#
# Needs root (namespaces, XDP). Environment (defaults in brackets): ROUNDS [3], SERVERS
# ["direct coturn sockets xdp"], LOADS ["paced blast ramp"], CALLS [100], VIDEO_KBPS [300],
# DURATION [10], BLAST_CALLS [10], BLAST_DURATION [5], RAMP_START [20000], RAMP_STEP [20000],
# RAMP_STEP_SECONDS [2], RAMP_DURATION [30], RAMP_LOSS [0.1], RAMP_GENERATORS [2], RAMP_CALLS
# [10], VETH_QUEUES [2] (queues per veth end: each has one 256-entry ring that XDP_TX fills, and
# one queue overflows at high rates: rx_queue_N_xdp_tx_errors in `ethtool -S`), ECHO [xdp] (xdp: the echo peers are an XDP program, echo.bpf.c; peer: PEERS
# turnutils_peer processes), PEERS [2] (echo ports), PORT [3478], PEERPORT [20000] (keep it
# out of the ephemeral port range), LAB_NS [tvb],
# LAB_SERVER_IF [tvb1], LAB_CLIENT_IF [tvb0], LAB_NET [10.78.0], OUT [/tmp/bench-xdp.PID],
# SCRATCH [.build-bench], SKIP_BUILD [0], KEEP_LAB [0].
set -euo pipefail

ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS:-"direct coturn sockets xdp"}
LOADS=${LOADS:-"paced blast ramp"}
CALLS=${CALLS:-100}
VIDEO_KBPS=${VIDEO_KBPS:-300}
DURATION=${DURATION:-10}
BLAST_CALLS=${BLAST_CALLS:-10}
BLAST_DURATION=${BLAST_DURATION:-5}
RAMP_START=${RAMP_START:-20000}
RAMP_STEP=${RAMP_STEP:-20000}
RAMP_STEP_SECONDS=${RAMP_STEP_SECONDS:-2}
RAMP_DURATION=${RAMP_DURATION:-30}
RAMP_LOSS=${RAMP_LOSS:-0.1}
RAMP_GENERATORS=${RAMP_GENERATORS:-2}
VETH_QUEUES=${VETH_QUEUES:-2}
RAMP_CALLS=${RAMP_CALLS:-10}
PEERS=${PEERS:-2}
ECHO=${ECHO:-xdp}
PORT=${PORT:-3478}
PEERPORT=${PEERPORT:-20000}
LAB_NS=${LAB_NS:-tvb}
LAB_SERVER_IF=${LAB_SERVER_IF:-tvb1}
LAB_CLIENT_IF=${LAB_CLIENT_IF:-tvb0}
LAB_NET=${LAB_NET:-10.78.0}
OUT=${OUT:-/tmp/bench-xdp.$$}
SCRATCH=${SCRATCH:-.build-bench}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_LAB=${KEEP_LAB:-0}
CLANG=${CLANG:-clang}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLIENT_IP=$LAB_NET.1
SERVER_IP=$LAB_NET.2
USER_NAME=alice
USER_PASS=wonderland
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS="$OUT/results.tsv"
: >"$RESULTS"

log() { echo "bench-xdp: $*" >&2; }

# shellcheck source=../compare/processes.sh
source "$REPO/Benchmarks/compare/processes.sh"

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; } # SERVER ROUND LOAD METRIC VALUE

[[ $(id -u) == 0 ]] || { log "needs root (network namespaces, XDP)"; exit 1; }

# ---------------------------------------------------------------- the lab (scripts/xdp-lab.sh)
lab() {
    LAB_NS="$LAB_NS" LAB_SERVER_IF="$LAB_SERVER_IF" LAB_CLIENT_IF="$LAB_CLIENT_IF" LAB_NET="$LAB_NET" \
        LAB_NET6=fd78:: VETH_QUEUES="$VETH_QUEUES" PASS_DIR="$OUT" CLANG="$CLANG" \
        CLIENT_XDP_OBJECT="$([[ $ECHO == xdp ]] && echo "$OUT/echo.bpf.o")" "$REPO/scripts/xdp-lab.sh" "$1"
}
lab_down() { lab down; }

lab_up() {
    "$CLANG" -O2 -g -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -DECHO_PORT_LO="$PEERPORT" \
        -DECHO_PORT_HI=$((PEERPORT + PEERS - 1)) -c "$REPO/Benchmarks/xdp/echo.bpf.c" -o "$OUT/echo.bpf.o"
    lab up
}

ns() { ip netns exec "$LAB_NS" "$@"; }

# The server side's XDP program for a configuration (ECHO=xdp only). direct: the echo program on
# $LAB_SERVER_IF, so that the baseline's datagrams cross the veth pair and are echoed as the
# relayed ones are; coturn and sockets: a pass program, without which datagrams the client side
# echoes with XDP_TX would be dropped by the veth; xdp: none (Traverse attaches its own).
server_side_xdp() { # server_side_xdp SERVER
    ip -n "$LAB_NS" link set dev "$LAB_SERVER_IF" xdpdrv off 2>/dev/null || true
    [[ $ECHO == xdp ]] || return 0
    case $1 in
    direct) ip -n "$LAB_NS" link set dev "$LAB_SERVER_IF" xdpdrv obj "$OUT/echo.bpf.o" sec xdp ;;
    coturn | sockets) ip -n "$LAB_NS" link set dev "$LAB_SERVER_IF" xdpdrv obj "$OUT/pass.bpf.o" sec xdp ;;
    esac
}
ns_udp_listening() { ns ss -Huln "sport = :$1" 2>/dev/null | grep -q .; }

# ---------------------------------------------------------------- prerequisites and build
if ! command -v turnserver >/dev/null || ! command -v turnutils_peer >/dev/null; then
    log "installing coturn (apt)"
    before=$(pgrep -x turnserver || true)
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn >/dev/null
    after=$(pgrep -x turnserver || true)
    [[ "$after" == "$before" ]] || log "note: installing coturn started a turnserver service ($after); left alone"
fi
command -v python3 >/dev/null || { log "python3 is needed to summarise results"; exit 1; }

cd "$REPO"
LOADGEN="$REPO/$SCRATCH/release/traverse-load"
TRAVERSE="$REPO/$SCRATCH/release/traverse"
if [[ "$SKIP_BUILD" != 1 ]]; then
    log "building traverse and traverse-load (release, $SCRATCH)"
    flock /tmp/swift-build.lock swift build -c release --scratch-path "$SCRATCH" >"$OUT/build.log" 2>&1 ||
        { log "the release build failed; see $OUT/build.log"; exit 1; }
    make bpf BPF_DIR="$SCRATCH/release" >"$OUT/build-bpf.log" 2>&1 ||
        { log "compiling the XDP object failed; see $OUT/build-bpf.log"; exit 1; }
fi
[[ -x "$LOADGEN" && -x "$TRAVERSE" ]] || { log "no release binaries in $SCRATCH/release"; exit 1; }
[[ -f "$REPO/$SCRATCH/release/traverse-xdp.bpf.o" ]] ||
    log "warning: no traverse-xdp.bpf.o beside $TRAVERSE: the xdp runs will fail"
[[ $("$LOADGEN" --help 2>&1) == *--direct* ]] ||
    { log "$LOADGEN has no --direct (an old build?)"; exit 1; }

log "lab: namespace $LAB_NS, server $SERVER_IP ($LAB_SERVER_IF), clients and echo peers $CLIENT_IP ($LAB_CLIENT_IF)"
lab_up
if [[ "$KEEP_LAB" != 1 ]]; then
    trap 'cleanup; lab_down' EXIT
fi

PEER_ARGS=()        # echo peers of the relayed runs
DIRECT_PEER_ARGS=() # and of the direct runs
for i in $(seq 0 $((PEERS - 1))); do
    PEER_ARGS+=(--peer "$CLIENT_IP:$((PEERPORT + i))")
    if [[ $ECHO == xdp ]]; then
        DIRECT_PEER_ARGS+=(--peer "$SERVER_IP:$((PEERPORT + i))")
    else
        DIRECT_PEER_ARGS+=(--peer "$CLIENT_IP:$((PEERPORT + i))")
        turnutils_peer -L "$CLIENT_IP" -p $((PEERPORT + i)) >"$OUT/peer$i.log" 2>&1 &
        STARTED+=($!)
    fi
done
sleep 0.3

# ---------------------------------------------------------------- servers
SERVER_PID=""
SERVER_ERROR=""
ADMIN=""

start_direct() { SERVER_PID=""; }

start_coturn() { # start_coturn ROUND
    # `ip netns exec` execs the server: $! is the server's pid (a shell function would add a subshell).
    ip netns exec "$LAB_NS" turnserver --listening-ip="$SERVER_IP" --relay-ip="$SERVER_IP" --listening-port="$PORT" \
        --lt-cred-mech --user "$USER_NAME:$USER_PASS" --realm traverse \
        --no-tls --no-dtls --no-cli --min-port 40000 --max-port 49999 \
        --log-file stdout >"$OUT/coturn-$1.log" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    local i
    for i in $(seq 100); do
        ns_udp_listening "$PORT" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    SERVER_ERROR="coturn did not start listening on $SERVER_IP:$PORT (see $OUT/coturn-$1.log)"
    return 1
}

start_traverse() { # start_traverse ROUND MODE (off | xdp)
    local round=$1 mode=$2 config="$OUT/traverse-$2.toml"
    cat >"$config" <<EOF
[server]
listen = ["$SERVER_IP:$PORT"]
fast_path = "$mode"
fast_path_interfaces = ["$LAB_SERVER_IF"]
state_directory = "$OUT/traverse-state"
[auth]
realm = "traverse"
users = { $USER_NAME = "$USER_PASS" }
[relay]
allow_peers = ["$LAB_NET.0/24"]
[limits]
legacy_channel_numbers = true
max_allocations = 100000
max_allocations_per_user = 100000
EOF
    rm -f "$OUT/announce.json"
    ip netns exec "$LAB_NS" "$TRAVERSE" serve --config "$config" --log-level warning --admin-listen 127.0.0.1:0 \
        --announce-file "$OUT/announce.json" >"$OUT/traverse-$mode-$round.log" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    local i
    for i in $(seq 100); do
        if [[ -s "$OUT/announce.json" ]]; then
            ADMIN=$(python3 -c 'import json,sys
a = json.load(open(sys.argv[1]))
def find(o):
    if isinstance(o, dict):
        for k, v in o.items():
            if "admin" in k.lower() and isinstance(v, str): return v
            r = find(v)
            if r: return r
    if isinstance(o, list):
        for v in o:
            r = find(v)
            if r: return r
print(find(a) or "")' "$OUT/announce.json" 2>/dev/null || true)
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    SERVER_ERROR="Traverse did not announce its listeners (see $OUT/traverse-$mode-$round.log)"
    return 1
}
start_sockets() { start_traverse "$1" off; }
start_xdp() { start_traverse "$1" xdp; }

# The fast path's own count of relayed datagrams (admin /metrics), to show where packets went.
fast_path_packets() {
    [[ -n "$ADMIN" ]] || { echo ""; return; }
    ns curl -s --max-time 2 "http://${ADMIN#http://}/metrics" 2>/dev/null |
        awk '/^traverse_fast_path_packets_total\{verdict="forwarded"/ { s += $NF } END { if (NR) printf "%.0f\n", s }'
}

# ---------------------------------------------------------------- loads
summarise_json() { # summarise_json SERVER ROUND LOAD JSON...: one or more reports, merged (ramp)
    python3 - "$@" "$RAMP_LOSS" "$RAMP_STEP_SECONDS" >>"$RESULTS" <<'PY'
import json, sys
server, rnd, load = sys.argv[1:4]
threshold, step_seconds = float(sys.argv[-2]) / 100, float(sys.argv[-1])
reports = [json.load(open(p)) for p in sys.argv[4:-2]]
def out(metric, value):
    if value is not None:
        print(f"{server}\t{rnd}\t{load}\t{metric}\t{value}")
sent = sum(r["sent"] for r in reports)
received = sum(min(r["received"], r["sent"]) for r in reports)
seconds = max(r["durationSeconds"] for r in reports)
out("sent", sent)
out("received", received)
out("delivered_pps", received / seconds)
out("loss_pct", 100 * (1 - received / max(1, sent)))
out("auth_failures", sum(r["authFailures"] for r in reports))
if len(reports) == 1:
    lat = reports[0]["latency"]
    out("p50_us", lat["p50"]); out("p99_us", lat["p99"])
out("generator_cpu_pct", sum(r["generatorCPUPercent"] for r in reports))
m = reports[0].get("machine")
if m:
    # Machine busy over the first generator's media phase; the others ran over (nearly) the same
    # seconds, so the datagrams of all count.
    out("machine_busy_s", m["busySeconds"])
    out("machine_softirq_s", m["softirqSeconds"])
    out("machine_steal_s", m["stealSeconds"])
    out("machine_us_per_dgram", m["busySeconds"] * 1e6 / max(1, sent + received))
    out("machine_busy_pct", 100 * m["busySeconds"] / max(1e-9, m["wallSeconds"] * m["cores"]))
s = reports[0].get("server")
if s:
    out("server_cpu_us_per_dgram", s["cpuSeconds"] * 1e6 / max(1, sent + received))
    out("server_rss_kib", s["peakRSSKiB"])
if reports[0]["mode"] == "ramp":
    steps = min(len(r["rampSteps"]) for r in reports)
    knee = 0
    for k in range(steps):
        offered = sum(r["rampSteps"][k]["offeredPPS"] for r in reports)
        st = sum(r["rampSteps"][k]["sent"] for r in reports)
        rc = sum(min(r["rampSteps"][k]["received"], r["rampSteps"][k]["sent"]) for r in reports)
        if st < 0.98 * offered * step_seconds:  # the generators could not offer this step
            out("generator_limited", 1)
            break
        if st and 1 - rc / st > threshold:
            break
        knee = offered
    else:
        out("ramp_ended", 1)  # no step passed the threshold: the knee is a lower bound
    out("knee_pps", knee)
PY
}

run_load() { # run_load SERVER ROUND LOAD
    local server=$1 round=$2 load=$3
    local target=() n=1 i
    if [[ $server == direct ]]; then
        target=(--direct "${DIRECT_PEER_ARGS[@]}")
    else
        target=("turn:$SERVER_IP:$PORT?transport=udp" --user "$USER_NAME:$USER_PASS" "${PEER_ARGS[@]}")
    fi
    local args=()
    case $load in
    paced) args=(--mode paced --calls "$CALLS" --video-kbps "$VIDEO_KBPS" --duration "$DURATION") ;;
    blast) args=(--mode blast --calls "$BLAST_CALLS" --packet-size 200 --duration "$BLAST_DURATION") ;;
    ramp)
        n=$RAMP_GENERATORS
        args=(--mode ramp --calls $((RAMP_CALLS / n > 0 ? RAMP_CALLS / n : 1)) --packet-size 200
            --ramp-start $((RAMP_START / n)) --ramp-step $((RAMP_STEP / n)) --step-seconds "$RAMP_STEP_SECONDS"
            --loss-threshold "$RAMP_LOSS" --duration "$RAMP_DURATION")
        ;;
    *) log "unknown load $load"; return 0 ;;
    esac
    local fp_before fp_after
    fp_before=$(fast_path_packets)
    local pids=() jsons=()
    for i in $(seq "$n"); do
        local base="$OUT/$server-$round-$load-$i" pidarg=()
        [[ $i == 1 && -n "$SERVER_PID" ]] && pidarg=(--server-pid "$SERVER_PID")
        jsons+=("$base.json")
        timeout 300 "$LOADGEN" "${target[@]}" --allow-non-loopback "${pidarg[@]}" \
            --json "$base.json" "${args[@]}" >"$base.txt" 2>&1 &
        pids+=($!)
        STARTED+=($!)
    done
    local ok=1
    for i in "${pids[@]}"; do
        wait "$i" || ok=0
        forget "$i"
    done
    if [[ $ok != 1 ]]; then
        log "  $server $load: FAILED: $(grep -h -m1 'error' "$OUT/$server-$round-$load"-*.txt | head -1)"
        record "$server" "$round" "$load" failed 1
        return 0
    fi
    summarise_json "$server" "$round" "$load" "${jsons[@]}"
    fp_after=$(fast_path_packets)
    if [[ -n "$fp_before" && -n "$fp_after" ]]; then record "$server" "$round" "$load" fast_path_dgrams $((fp_after - fp_before)); fi
    log "  $server $load: $(awk -F'\t' -v s="$server" -v r="$round" -v l="$load" \
        '$1==s && $2==r && $3==l && $4 ~ /^(delivered_pps|loss_pct|knee_pps|machine_us_per_dgram|fast_path_dgrams)$/ { printf "%s=%.4g ", $4, $5 }' "$RESULTS")"
}

# ---------------------------------------------------------------- rounds: A B C D A B C D …
for round in $(seq "$ROUNDS"); do
    for server in $SERVERS; do
        log "round $round/$ROUNDS: $server"
        SERVER_ERROR=""
        ADMIN=""
        server_side_xdp "$server"
        if ! "start_$server" "$round"; then
            log "  $server: FAILED: $SERVER_ERROR"
            for load in $LOADS; do record "$server" "$round" "$load" failed 1; done
            [[ -n "$SERVER_PID" ]] && stop "$SERVER_PID"
            SERVER_PID=""
            continue
        fi
        for load in $LOADS; do
            if [[ -n "$SERVER_PID" ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
                log "  $server $load: FAILED: the server exited"
                record "$server" "$round" "$load" failed 1
                continue
            fi
            run_load "$server" "$round" "$load"
        done
        if [[ -n "$SERVER_PID" ]]; then
            stop "$SERVER_PID"
            SERVER_PID=""
        fi
    done
done

# ---------------------------------------------------------------- summary
python3 "$REPO/Benchmarks/xdp/summarise.py" "$RESULTS" $SERVERS | tee "$OUT/summary.txt"
log "raw results: $RESULTS; logs and JSON reports in $OUT"

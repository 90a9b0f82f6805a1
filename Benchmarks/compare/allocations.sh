#!/usr/bin/env bash
# allocations.sh: memory per allocation, coturn versus Traverse, with N concurrent UDP allocations.
#
# Per round, alternating A B A B: a fresh coturn, then a fresh Traverse, each with relay ports
# 40000-60000 and no allocation quotas; allocations.py creates N allocations (one client socket
# each, pipelined, optionally one permission each), reads the server's VmRSS/VmHWM before and after,
# deletes them, and the server is stopped. The table gives, per run and as medians: allocations made,
# failures, seconds, RSS before/after, bytes per allocation = (RSS after - RSS before) / allocations,
# and the ratio Traverse/coturn.
#
# Environment (defaults in brackets): N [10000], ROUNDS [2], SERVERS ["coturn traverse"],
# PERMISSIONS [1] (one CreatePermission per allocation; 0: none), WINDOW [500] (transactions in
# flight), CLIENT_IPS [4] (client sources 127.0.0.2...), PORT_COTURN [36100],
# TRAVERSE [.build/release/traverse], OUT [/tmp/alloc-bench.PID], EXTRA_ARGS [] (more allocations.py
# options).
set -euo pipefail

N=${N:-10000}
ROUNDS=${ROUNDS:-2}
SERVERS=${SERVERS:-"coturn traverse"}
PERMISSIONS=${PERMISSIONS:-1}
WINDOW=${WINDOW:-500}
CLIENT_IPS=${CLIENT_IPS:-4}
PORT_COTURN=${PORT_COTURN:-36100}
OUT=${OUT:-/tmp/alloc-bench.$$}
EXTRA_ARGS=${EXTRA_ARGS:-}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TRAVERSE=${TRAVERSE:-$REPO/.build/release/traverse}
ALLOCATIONS="$REPO/Benchmarks/compare/allocations.py"
USER_NAME=alice
USER_PASS=wonderland
REALM=traverse
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

log() { echo "allocations: $*" >&2; }

# shellcheck source=processes.sh
source "$(dirname "${BASH_SOURCE[0]}")/processes.sh"

# Servers and the client each hold one socket per allocation: raise the descriptor limit (inherited).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < N + 100)); then
    log "open-file limit $(ulimit -n) (hard $(ulimit -Hn)) is too low for N=$N"
    exit 1
fi
log "N=$N ROUNDS=$ROUNDS open-file limit $(ulimit -n); output in $OUT"

command -v python3 >/dev/null || { log "python3 is needed"; exit 1; }
if [[ " $SERVERS " == *" coturn "* ]] && ! command -v turnserver >/dev/null; then
    log "no turnserver (apt-get install coturn)"
    exit 1
fi
if [[ " $SERVERS " == *" traverse "* && ! -x "$TRAVERSE" ]]; then
    log "no Traverse binary at $TRAVERSE (swift build -c release, or set TRAVERSE)"
    exit 1
fi
if udp_listening "$PORT_COTURN"; then log "UDP port $PORT_COTURN is in use; set PORT_COTURN"; exit 1; fi

# ---------------------------------------------------------------- servers
SERVER_PID=""
SERVER_PORT=""
SERVER_ERROR=""

start_coturn() { # start_coturn ROUND
    SERVER_PORT=$PORT_COTURN
    turnserver --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port="$SERVER_PORT" \
        --allow-loopback-peers --lt-cred-mech --user "$USER_NAME:$USER_PASS" --realm "$REALM" \
        --no-tls --no-dtls --no-cli --min-port 40000 --max-port 60000 --total-quota 0 --user-quota 0 \
        --log-file /dev/null >"$OUT/coturn-$1.log" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    local i
    for i in $(seq 100); do
        udp_listening "$SERVER_PORT" && { sleep 0.5; return 0; }
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    SERVER_ERROR="coturn did not start listening on $SERVER_PORT (see $OUT/coturn-$1.log)"
    return 1
}

start_traverse() { # start_traverse ROUND
    local config="$OUT/traverse.toml" announce="$OUT/announce-$1.json"
    printf '[limits]\nmax_allocations = 100000\n' >"$config"
    rm -f "$announce"
    "$TRAVERSE" serve --config "$config" --listen 127.0.0.1:0 --announce-file "$announce" \
        --user "$USER_NAME:$USER_PASS" --realm "$REALM" --allow-peer 127.0.0.0/8 --relay-ports 40000-60000 \
        --user-quota 100000 --admin-listen off --state-dir "$OUT/traverse-state" >"$OUT/traverse-$1.log" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    local i
    for i in $(seq 100); do
        if [[ -s "$announce" ]]; then
            SERVER_PORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["udp"][0].rsplit(":", 1)[1])' "$announce")
            sleep 0.5
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    SERVER_ERROR="Traverse did not announce its listeners (see $OUT/traverse-$1.log: $(head -c 300 "$OUT/traverse-$1.log" | tr '\n' ' '))"
    return 1
}

# ---------------------------------------------------------------- rounds: A B A B …
perm_args=()
[[ "$PERMISSIONS" == 1 ]] && perm_args=(--permissions)
for round in $(seq "$ROUNDS"); do
    for server in $SERVERS; do
        log "round $round/$ROUNDS: $server"
        SERVER_ERROR=""
        if ! "start_$server" "$round"; then
            log "  $server: FAILED: $SERVER_ERROR"
            printf '{"label": "%s", "round": %s, "error": "server did not start"}\n' "$server" "$round" >>"$RESULTS"
            [[ -n "$SERVER_PID" ]] && stop "$SERVER_PID"
            SERVER_PID=""
            continue
        fi
        txt="$OUT/$server-$round.txt"
        # In the background and waited for, so that a signal reaches the EXIT trap at once.
        # shellcheck disable=SC2086
        timeout 900 python3 "$ALLOCATIONS" --port "$SERVER_PORT" --pid "$SERVER_PID" --count "$N" \
            --realm "$REALM" --user "$USER_NAME:$USER_PASS" --window "$WINDOW" --client-ips "$CLIENT_IPS" \
            --label "$server" --json "$OUT/$server-$round.json" "${perm_args[@]}" $EXTRA_ARGS >"$txt" 2>&1 &
        client_pid=$!
        STARTED+=("$client_pid")
        client_rc=0
        wait "$client_pid" || client_rc=$?
        forget "$client_pid"
        if ((client_rc == 0)); then
            python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["round"]=int(sys.argv[2]); print(json.dumps(r))' \
                "$OUT/$server-$round.json" "$round" >>"$RESULTS"
            sed 's/^/  /' "$txt" | grep -v '^  RESULT ' >&2
        else
            log "  $server: allocations.py FAILED: $(tail -3 "$txt" | tr '\n' ' ')"
            printf '{"label": "%s", "round": %s, "error": "allocations.py failed"}\n' "$server" "$round" >>"$RESULTS"
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then log "  $server exited during the run (see $OUT/$server-$round.log)"; fi
        stop "$SERVER_PID"
        SERVER_PID=""
    done
done

# ---------------------------------------------------------------- summary
python3 - "$RESULTS" "$N" <<'PY' | tee "$OUT/summary.txt"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n = sys.argv[2]
def fmt(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"
print()
print(f"N = {n} concurrent UDP allocations per run; RSS in KiB; bytes/alloc = (RSS after - RSS before) / allocations")
head = f"{'server':<10} {'round':>5} {'allocations':>11} {'failures':>8} {'seconds':>8} {'RSS before':>11} {'RSS after':>11} {'bytes/alloc':>11}  failure codes"
print(head)
print("-" * len(head))
for r in rows:
    if "error" in r:
        print(f"{r['label']:<10} {r['round']:>5} {'FAILED: ' + r['error']}")
        continue
    codes = ", ".join(f"{k}: {v}" for k, v in r["failures_by_code"].items())
    perm = r.get("permission_failures_by_code") or {}
    if perm:
        codes += (" " if codes else "") + "permissions " + ", ".join(f"{k}: {v}" for k, v in perm.items())
    print(f"{r['label']:<10} {r['round']:>5} {r['allocations']:>11,} {r['failures']:>8,} {r['seconds']:>8.2f} "
          f"{r['rss_before_kib']:>11,} {r['rss_after_kib']:>11,} {fmt(r['bytes_per_allocation']):>11}  {codes}")
print("-" * len(head))
med = {}
for server in dict.fromkeys(r["label"] for r in rows):
    ok = [r for r in rows if r["label"] == server and "error" not in r]
    if not ok:
        continue
    m = lambda k: statistics.median(r[k] for r in ok if r[k] is not None) if any(r[k] is not None for r in ok) else None
    med[server] = {k: m(k) for k in ("allocations", "failures", "seconds", "rss_before_kib", "rss_after_kib", "bytes_per_allocation")}
    d = med[server]
    print(f"{server:<10} {'med':>5} {fmt(d['allocations']):>11} {fmt(d['failures']):>8} {fmt(d['seconds'], 2):>8} "
          f"{fmt(d['rss_before_kib']):>11} {fmt(d['rss_after_kib']):>11} {fmt(d['bytes_per_allocation']):>11}")
c, t = med.get("coturn"), med.get("traverse")
if c and t:
    def ratio(k):
        return "-" if not c[k] or t[k] is None else f"{t[k] / c[k]:.2f}"
    print(f"{'trav/cot':<10} {'':>5} {ratio('allocations'):>11} {'':>8} {ratio('seconds'):>8} "
          f"{ratio('rss_before_kib'):>11} {ratio('rss_after_kib'):>11} {ratio('bytes_per_allocation'):>11}")
print()
PY
log "raw results: $RESULTS; per-run output in $OUT/*.txt"

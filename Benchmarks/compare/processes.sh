# processes.sh: process bookkeeping shared by the comparison scripts (sourced, not run).
# Every process a script starts goes into STARTED and is stopped on exit, by pid: TERM, then KILL.

STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    sleep 0.5
    for pid in "${STARTED[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget() { # forget PID: drop it from STARTED once stopped
    local keep=() p
    for p in "${STARTED[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    STARTED=("${keep[@]}")
}

stop() { # stop PID: TERM, then KILL after 5 s
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

udp_listening() { ss -Huln "sport = :$1" 2>/dev/null | grep -q .; }

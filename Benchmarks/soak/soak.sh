#!/usr/bin/env bash
# soak.sh: a long run of one Traverse under churning load; fails on leaks, loss or errors.
# See README.md beside this file. `make soak` runs it (SOAK_MINUTES, default 30).
#
# Binaries: TRAVERSE_BIN and TRAVERSE_LOAD_BIN when set; otherwise both are built in release
# mode (`swift build -c release --scratch-path $SCRATCH`, under /tmp/swift-build.lock like
# bench-compare). Everything else is read by soak.py from the environment (SOAK_*).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SCRATCH=${SCRATCH:-.build-bench}
[[ "$SCRATCH" == /* ]] || SCRATCH=$REPO/$SCRATCH

log() { echo "soak: $*" >&2; }

build() { # build PRODUCT: a release build of one product
    local build_log
    build_log=$(mktemp "/tmp/soak-build-$1.XXXXXX")
    log "building $1 (release, --scratch-path $SCRATCH)"
    if ! (cd "$REPO" && flock /tmp/swift-build.lock swift build -c release --scratch-path "$SCRATCH" --product "$1") >"$build_log" 2>&1; then
        log "building $1 failed:"
        tail -20 "$build_log" >&2
        exit 1
    fi
    rm -f "$build_log"
}
if [[ -z "${TRAVERSE_BIN:-}" ]]; then
    build traverse
    TRAVERSE_BIN=$SCRATCH/release/traverse
fi
if [[ -z "${TRAVERSE_LOAD_BIN:-}" ]]; then
    build traverse-load
    TRAVERSE_LOAD_BIN=$SCRATCH/release/traverse-load
fi
export TRAVERSE_BIN TRAVERSE_LOAD_BIN

if ! command -v turnutils_uclient >/dev/null || ! command -v turnutils_peer >/dev/null; then
    log "coturn's turnutils_uclient and turnutils_peer are needed: apt-get install coturn (or make interop-deps)"
    exit 1
fi
command -v python3 >/dev/null || { log "python3 is needed"; exit 1; }

exec python3 "$HERE/soak.py"

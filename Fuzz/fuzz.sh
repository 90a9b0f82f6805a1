#!/usr/bin/env bash
# Builds the libFuzzer targets of Fuzz/Package.swift and runs each for FUZZ_SECONDS (default 60)
# from a temporary copy of its seed corpus (Fuzz/corpus/<target>), one target at a time, one
# process each. Exits non-zero if any target crashes, leaks, times out (10 s per input) or runs
# out of memory; the input that did is kept in Fuzz/.build/artifacts/<target>/, with the log.
# The committed corpus is never written to: what a run adds stays in its temporary copy.
#
#     Fuzz/fuzz.sh [target...]          (`make fuzz` from the root)
#
# FUZZ_RUNS=N runs each target for N executions instead (no time bound); FUZZ_BUILD=0 uses the
# binaries already built.
set -euo pipefail
cd "$(dirname "$0")"

SWIFT=${SWIFT:-swift}
seconds=${FUZZ_SECONDS:-60}
# libFuzzer reads a malformed -max_total_time as 0, which means no limit.
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "FUZZ_SECONDS must be a positive whole number of seconds, not '$seconds'" >&2
    exit 2
fi
bound=(-max_total_time="$seconds")
if [ -n "${FUZZ_RUNS:-}" ]; then
    if ! [[ "$FUZZ_RUNS" =~ ^[1-9][0-9]*$ ]]; then
        echo "FUZZ_RUNS must be a positive whole number, not '$FUZZ_RUNS'" >&2
        exit 2
    fi
    bound=(-runs="$FUZZ_RUNS")
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(fuzz-stun fuzz-framing fuzz-core fuzz-dtls-records); fi

# SwiftPM's `--sanitize=fuzzer --sanitize=address` reaches swiftc as two `-sanitize=` flags, of
# which swiftc keeps only the last (in an order that varies): `-Xswiftc -sanitize=fuzzer,address`
# asks for both. `--sanitize=fuzzer` stays so that SwiftPM links libFuzzer's main.
build=(-c release --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=address)
if [ "${FUZZ_BUILD:-1}" != 0 ]; then "$SWIFT" build "${build[@]}"; fi
bin=$("$SWIFT" build "${build[@]}" --show-bin-path)

# No Swift backtracer (it would race ASan's report); hashing seeded alike in every run, so a
# crash replays.
export SWIFT_BACKTRACE=enable=no SWIFT_DETERMINISTIC_HASHING=1

failed=()
for target in "${targets[@]}"; do
    artifacts=".build/artifacts/$target"
    rm -rf "$artifacts"
    mkdir -p "$artifacts"
    work=$(mktemp -d)
    cp corpus/"$target"/* "$work"/
    log="$artifacts/log"
    started=$(date +%s)
    status=0
    "$bin/$target" "${bound[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - started))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
    coverage=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1 || true)
    corpus=$(find "$work" -type f | wc -l)
    rm -rf "$work"
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        echo "$target: FAILED (exit $status) after ${elapsed}s; input and log in Fuzz/$artifacts/" >&2
        grep -E 'ERROR|Fatal error|invariant broken|SUMMARY|Test unit written' "$log" | head -20 >&2 || true
    else
        echo "$target: ${runs:-?} runs in ${elapsed}s (${rate:-?} exec/s), ${coverage:-no coverage line}," \
            "corpus $corpus inputs, peak RSS ${rss:-?} MB"
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "make fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi

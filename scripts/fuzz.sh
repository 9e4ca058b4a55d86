#!/usr/bin/env bash
# Bounded fuzz run of every target in fuzz/ (cargo-fuzz, nightly). Not part of the default test
# run: it takes FUZZ_SECS (default 60) seconds per target.
#
#   ./scripts/fuzz.sh                 # every target, 60 s each
#   FUZZ_SECS=300 ./scripts/fuzz.sh   # longer
#   ./scripts/fuzz.sh manifests       # only the named targets
#
# Prints executions and crashes per target; exits non-zero when any target crashed. Crash
# inputs are left in fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run <target> <file>).
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
secs="${FUZZ_SECS:-60}"
jobs="${FUZZ_JOBS:-1}"

if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: installing it from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build -O >&2
mkdir -p logs
summary=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    [ -d "seeds/$t" ] && cp -n "seeds/$t"/* "corpus/$t/" 2>/dev/null || true
    log="logs/$t.log"
    echo "== $t: ${secs}s" >&2
    set +e
    cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -jobs="$jobs" -workers="$jobs" \
        -print_final_stats=1 -max_len=65536 >"$log" 2>&1
    rc=$?
    set -e
    runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | awk '{s+=$1} END {print s+0}')
    crashes=$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) 2>/dev/null | wc -l)
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes="? (exit $rc, see fuzz/$log)"
    fi
    [ "$rc" -ne 0 ] && failed=1
    corpus=$(find "corpus/$t" -type f | wc -l)
    summary+=("$(printf '%-14s %12s executions  %4s corpus  crashes: %s' "$t" "$runs" "$corpus" "$crashes")")
done

echo
echo "fuzz summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"

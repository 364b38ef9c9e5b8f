#!/usr/bin/env bash
# test.sh - install what is needed, build, and run every test.
#
#   1. gcc release build (-Werror): unit and integration tests
#   2. clang AddressSanitizer + UndefinedBehaviorSanitizer build: the same tests
#   3. clang ThreadSanitizer build: the unit tests (threads, loops, pools)
#   4. clang libFuzzer build: every fuzz target for FUZZ_SECONDS (default 30)
#      from its corpus in tests/fuzz/corpus/<target>/
# Ends with one line "N passed, N failed" over all of it; exits non-zero on
# any failure.
#
# Environment: FUZZ_SECONDS (per target), IMPETUS_LONG=1 (longer fuzzing:
# 600 s per target), JOBS (parallel ctest jobs, default 2).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/scripts/deps.sh" test || { echo "0 passed, 1 failed"; exit 1; }

jobs=${JOBS:-2}
fuzz_seconds=${FUZZ_SECONDS:-30}
[ "${IMPETUS_LONG:-0}" = 1 ] && fuzz_seconds=${FUZZ_SECONDS:-600}
passed=0
failed=0
failures=()

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

# build DIR CMAKE-ARGS... : configure and build; counts as one check.
build() {
    local dir=$1; shift
    echo "=== build $dir: $*"
    if cmake -S "$root" -B "$dir" -G Ninja "$@" >"$dir.cmake.log" 2>&1 && ninja -C "$dir" >"$dir.build.log" 2>&1; then
        passed=$((passed + 1))
        return 0
    fi
    cat "$dir.cmake.log" "$dir.build.log" 2>/dev/null | tail -50
    failed=$((failed + 1)); failures+=("build $dir")
    return 1
}

# suite DIR [ctest args...] : run ctest, add its counts.
suite() {
    local dir=$1; shift
    local log="$dir.ctest.log"
    echo "=== ctest $dir $*"
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" 2>&1 | tee "$log"
    local line total nfail
    line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1)
    if [ -z "$line" ]; then
        failed=$((failed + 1)); failures+=("ctest $dir: no summary")
        return
    fi
    total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
    nfail=$(sed -E 's/.*tests passed, ([0-9]+) tests failed.*/\1/' <<<"$line")
    passed=$((passed + total - nfail))
    failed=$((failed + nfail))
    [ "$nfail" -eq 0 ] || failures+=("ctest $dir: $nfail failed")
}

mkdir -p "$root/build-test"
B=$root/build-test

if build "$B/gcc" -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo; then
    suite "$B/gcc"
fi
if build "$B/asan" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DIMPETUS_SANITIZE=ON; then
    suite "$B/asan"
fi
if build "$B/tsan" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DIMPETUS_TSAN=ON -DIMPETUS_INTEGRATION=OFF; then
    suite "$B/tsan" -L unit
fi
if build "$B/fuzz" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DIMPETUS_FUZZ=ON -DIMPETUS_INTEGRATION=OFF; then
    for bin in "$B"/fuzz/tests/*_fuzz; do
        [ -x "$bin" ] || continue
        name=$(basename "$bin" _fuzz)
        corpus="$root/tests/fuzz/corpus/$name"
        work="$B/fuzz/corpus-$name"
        mkdir -p "$work" "$corpus"
        echo "=== fuzz $name for ${fuzz_seconds}s"
        # Regression inputs first (every file in the corpus must pass), then explore.
        if "$bin" -runs=0 -artifact_prefix="$B/fuzz/$name-" "$corpus" >"$B/fuzz/$name.regress.log" 2>&1 &&
           "$bin" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
                  -artifact_prefix="$B/fuzz/$name-" "$work" "$corpus" >"$B/fuzz/$name.log" 2>&1; then
            tail -1 "$B/fuzz/$name.log"
            passed=$((passed + 1))
        else
            tail -40 "$B/fuzz/$name.regress.log" "$B/fuzz/$name.log"
            echo "fuzz $name failed: copy the crash input from $B/fuzz/$name-* into $corpus/ once fixed"
            failed=$((failed + 1)); failures+=("fuzz $name")
        fi
    done
fi

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

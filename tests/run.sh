#!/usr/bin/env bash
# Runs the unit tests (TAP from each binary in $B/tests) and the bats integration tests,
# then prints one line: "check: N passed, N failed". Exit status 1 on any failure.
# Usage: tests/run.sh [unit|integration] [bats-file-filter]
# With LH_SAN_REPORTS=DIR (binaries built with SANITIZE=address,undefined), every
# AddressSanitizer, LeakSanitizer or UBSan report of any process the tests start is
# written to DIR instead of a log the test may not read, and each one counts as a
# failure: a worker that leaks at exit, or reads out of bounds while the test still
# passes, fails the run.
set -u
here=$(cd "$(dirname "$0")" && pwd)
B=${B:-$here/../build}
what=${1:-all}
filter=${2:-}
passed=0
failed=0
out=$B/test-output
mkdir -p "$out"
san=${LH_SAN_REPORTS:-}
if [ -n "$san" ]; then
    rm -rf "$san" && mkdir -p "$san" || exit 1
    export ASAN_OPTIONS="log_path=$san/asan:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="log_path=$san/ubsan:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
    export LSAN_OPTIONS="suppressions=$here/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
fi

# count_tap FILE: adds the file's ok / not ok lines to the totals; a runner that died
# before its plan line counts as a failure too.
count_tap() {
    local f=$1 ok nok
    ok=$(grep -cE '^ok ' "$f" || true)
    nok=$(grep -cE '^not ok ' "$f" || true)
    passed=$((passed + ok))
    failed=$((failed + nok))
}

if [ "$what" = all ] || [ "$what" = unit ]; then
    # The worker's files call one way (worker/worker.h): checked on the built objects.
    if python3 "$here/lib/check-layers.py" "$B/obj/worker"; then
        passed=$((passed + 1))
        echo "unit: check-layers: the worker's layers call one way"
    else
        echo "not ok: tests/lib/check-layers.py found a call into a higher layer"
        failed=$((failed + 1))
    fi
    for t in "$B"/tests/test_*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        log=$out/unit-$name.tap
        timeout 120 "$t" >"$log" 2>&1
        rc=$?
        count_tap "$log"
        if ! grep -qE '^1\.\.[0-9]+' "$log" || { [ $rc -ne 0 ] && ! grep -qE '^not ok ' "$log"; }; then
            echo "unit: $name exited $rc without completing its plan"
            failed=$((failed + 1))
        fi
        grep -E '^(not ok|#)' "$log" | sed "s/^/unit $name: /"
        echo "unit: $name: $(grep -cE '^ok ' "$log") passed, $(grep -cE '^not ok ' "$log") failed"
    done
fi

if [ "$what" = all ] || [ "$what" = integration ]; then
    # A negated command mid-test can never fail it under bats' set -e: refuse new ones.
    if python3 "$here/lib/check-negations.py" "$here"/integration/*.bats "$here"/package/*.bats; then
        passed=$((passed + 1))
    else
        echo "not ok: tests/lib/check-negations.py found a '!' that cannot fail its test"
        failed=$((failed + 1))
    fi
    files=$(ls "$here"/integration/*.bats 2>/dev/null | grep -- "$filter" || true)
    if [ -n "$files" ]; then
        log=$out/integration.tap
        # shellcheck disable=SC2086
        LH_TEST_OUT=$out bats --tap $files >"$log" 2>&1
        count_tap "$log"
        grep -E '^(ok|not ok|#)' "$log" | grep -vE '^ok ' | head -n 400
        echo "integration: $(grep -cE '^ok ' "$log") passed, $(grep -cE '^not ok ' "$log") failed"
        if ! grep -qE '^1\.\.[0-9]+' "$log"; then
            echo "integration: bats did not run"; failed=$((failed + 1))
        else
            # Tests the plan announced but that never reported (bats died) count as failed.
            plan=$(sed -nE 's/^1\.\.([0-9]+)$/\1/p' "$log" | head -n 1)
            ran=$(grep -cE '^(ok|not ok) ' "$log" || true)
            if [ "$ran" -lt "$plan" ]; then
                echo "integration: $((plan - ran)) of $plan planned tests did not report"
                failed=$((failed + plan - ran))
            fi
        fi
    fi
fi

if [ -n "$san" ]; then
    for r in "$san"/*; do
        [ -e "$r" ] || continue
        echo "sanitizer: report $(basename "$r"):"
        head -n 40 "$r" | sed 's/^/    /'
        failed=$((failed + 1))
    done
    echo "sanitizer: $(ls "$san" | wc -l) reports"
fi

echo "check: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

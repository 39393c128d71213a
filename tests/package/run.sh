#!/usr/bin/env bash
# Runs tests/package/package.bats (`make package-test`): builds the .deb and the .rpm,
# installs the .deb on this machine, checks it, purges it. Needs root. Prints the TAP
# failures and comments, then one line: "package-test: N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
B=${B:-$here/../../build}
mkdir -p "$B"
B=$(cd "$B" && pwd)
export B
log=$B/package-test.tap
start=$SECONDS
# The whole file has a deadline: a hung step must not hold CI.
timeout --kill-after=10 600 bats --tap "$here/package.bats" >"$log" 2>&1
rc=$?
touch "$log"
passed=$(grep -cE '^ok ' "$log")
failed=$(grep -cE '^not ok ' "$log")
plan=$(sed -nE 's/^1\.\.([0-9]+)$/\1/p' "$log" | head -n 1)
grep -vE '^ok ' "$log" | head -n 300
if [ -z "$plan" ]; then
    echo "package-test: bats did not run (exit status $rc)"
    failed=$((failed + 1))
elif [ $((passed + failed)) -lt "$plan" ]; then
    echo "package-test: $((plan - passed - failed)) of $plan planned tests did not report"
    failed=$((plan - passed))
fi
echo "package-test: $((SECONDS - start)) s; the TAP output is in $log"
echo "package-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

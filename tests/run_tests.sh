#!/usr/bin/env bash
# Runs every test program in BUILD/tests and every tests/cli_*.sh, from the repository root,
# and prints one summary line "N passed, N failed" (counted per check). A program that dies
# without its RESULT line counts as one failed check.
set -u
BUILD=${1:-build}
export LLAVA_BIN="$BUILD/llava"
export LLAVA_SHARED=${LLAVA_SHARED:-../shared}
pass=0; fail=0; failed_names=()
run_one() {
    local name=$1; shift
    local out rc
    out=$("$@" 2>&1); rc=$?
    local line
    line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out" | tail -n 30
        echo "CRASH $name (exit $rc, no RESULT line)"
        fail=$((fail + 1)); failed_names+=("$name")
        return
    fi
    local p f
    read -r _ p f <<<"$line"
    printf '%s\n' "$out" | grep -E '^(FAIL|SKIP|INFO)' | head -n 40
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    pass=$((pass + p)); fail=$((fail + f))
    [ "$f" -ne 0 ] && failed_names+=("$name")
    printf '%-28s %5d passed %3d failed\n' "$name" "$p" "$f"
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for s in tests/cli_*.sh; do
    [ -f "$s" ] || continue
    run_one "$(basename "$s")" bash "$s"
done
[ ${#failed_names[@]} -gt 0 ] && echo "failing: ${failed_names[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# Runs every test program in each BUILD/tests (default: build) and every tests/cli_*.sh once per
# build (with LLAVA_BIN=BUILD/llava), from the repository root, and prints one summary line
# "N passed, N failed" (counted per check). A program that dies without its RESULT line counts as
# one failed check. ASan builds report leaks (detect_leaks=1) and stop on UBSan findings.
set -u
[ $# -eq 0 ] && set -- build
export LLAVA_SHARED=${LLAVA_SHARED:-../shared}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
pass=0; fail=0; failed_names=()
run_one() {
    local name=$1; shift
    local out rc line p f
    out=$("$@" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out" | tail -n 30
        echo "CRASH $name (exit $rc, no RESULT line)"
        fail=$((fail + 1)); failed_names+=("$name")
        return
    fi
    read -r _ p f <<<"$line"
    printf '%s\n' "$out" | grep -E '^(FAIL|SKIP|INFO)' | head -n 40
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        printf '%s\n' "$out" | grep -v '^RESULT' | tail -n 30
        f=1
    fi
    pass=$((pass + p)); fail=$((fail + f))
    [ "$f" -ne 0 ] && failed_names+=("$name")
    printf '%-36s %6d passed %3d failed\n' "$name" "$p" "$f"
}
for BUILD in "$@"; do
    export LLAVA_BIN="$BUILD/llava"
    for t in "$BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        run_one "$BUILD/$(basename "$t")" "$t"
    done
    for s in tests/cli_*.sh; do
        [ -f "$s" ] || continue
        run_one "$BUILD/$(basename "$s")" bash "$s"
    done
done
[ ${#failed_names[@]} -gt 0 ] && echo "failing: ${failed_names[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

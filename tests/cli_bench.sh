#!/usr/bin/env bash
# `llava bench` on the CPU with the tiny fixtures: the JSON report has every field, images/s > 0,
# every per-image prediction is one of the labels, the scheduled run equals llava_classify_pixels
# on the warm-up image; --random-weights writes, loads and removes a random checkpoint of tiny-b's
# config; usage and setup errors exit non-zero with a message. Prints RESULT <passed> <failed>.
set -u
BIN=${LLAVA_BIN:-build/llava}
FIX=tests/fixtures
T=$(mktemp -d /tmp/llava-bench-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
if ! "$BIN" bench --help >/dev/null 2>&1; then
    echo "SKIP $BIN has no bench subcommand yet (src/cli/main.c dispatch)"
    echo "RESULT 0 0"
    exit 0
fi
check() { if eval "$2"; then pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi; }
field() { printf '%s' "$1" | grep -o "\"$2\":[^,}]*" | head -n 1 | cut -d: -f2-; }
W1="Pool,Exterior,Bar,Lobby,Room,Suite,Bathroom,Restaurant,Breakfast Area,Gym,Spa,Sauna,Meeting Room,Ballroom,Terrace/Patio,Balcony,View,Garden,Beach,Parking,Reception,Kitchen,Living Room,Kids Club,Business Center,Elevator,Hallway,Facade at Night,Aerial View,Other"
# predictions are all among the labels (comma list in $2) and there are $3 of them
preds_ok() {
    local p n=0
    p=$(printf '%s' "$1" | sed -n 's/.*"predictions":\[\(.*\)\]}.*/\1/p')
    [ -n "$p" ] || return 1
    while IFS= read -r l; do
        [ -z "$l" ] && continue
        n=$((n + 1))
        case ",$2," in *",$l,"*) ;; *) echo "INFO prediction \"$l\" is not a label"; return 1 ;; esac
    done < <(printf '%s\n' "$p" | sed 's/","/\n/g; s/^"//; s/"$//')
    [ "$n" -eq "$3" ]
}
positive() { awk "BEGIN { exit !($1 > 0) }"; }

out=$(TMPDIR=$T "$BIN" bench -m $FIX/tiny-a --images 6 --image-size 200x150 --device cpu --json --price-per-hour 2.5 2>"$T/err"); rc=$?
check "bench tiny-a exits 0 ($(head -c 300 "$T/err"))" '[ $rc -eq 0 ]'
for k in images_per_s prompt_tokens_per_s achieved_tflops flops_per_image latency_ms p50 p99 stages_ms_per_image \
         decode preprocess model model_idle mean_batch peak_rss_bytes usd_per_1000_images predictions \
         prompt_tokens_per_image gemm_ceiling_tflops check_max_prob_diff; do
    check "json has $k" 'printf "%s" "$out" | grep -q "\"$k\""'
done
check "one JSON line" '[ "$(printf "%s\n" "$out" | wc -l)" -eq 1 ]'
check "images_per_s > 0" 'positive "$(field "$out" images_per_s)"'
check "achieved_tflops > 0" 'positive "$(field "$out" achieved_tflops)"'
check "usd_per_1000_images > 0" 'positive "$(field "$out" usd_per_1000_images)"'
check "6 images" '[ "$(field "$out" images)" = 6 ]'
check "200x150 gives 3 tiles" '[ "$(field "$out" tiles_per_image)" = 3 ]'
check "predictions are 6 W1 labels" 'preds_ok "$out" "$W1" 6'
check "the scheduled run equals llava_classify_pixels" 'awk "BEGIN { exit !($(field "$out" check_max_prob_diff) < 1e-9) }"'
check "temp images removed" '[ -z "$(ls -A "$T" | grep llava-bench)" ]'

out=$(TMPDIR=$T "$BIN" bench --config $FIX/tiny-b --random-weights --images 3 --device cpu --json 2>"$T/err"); rc=$?
check "bench --random-weights exits 0 ($(head -c 300 "$T/err"))" '[ $rc -eq 0 ]'
check "random: images_per_s > 0" 'positive "$(field "$out" images_per_s)"'
check "random: W1 prompt is 2478 tokens at 550x412" '[ "$(field "$out" prompt_tokens_per_image)" = 2478 ]'
check "random: 2340 image tokens" '[ "$(field "$out" image_tokens_per_image)" = 2340 ]'
check "random: predictions are 3 W1 labels" 'preds_ok "$out" "$W1" 3'
check "random: params counted" 'positive "$(field "$out" random_params)"'
check "random: temp checkpoint and images removed" '[ -z "$(ls -A "$T" | grep llava-bench)" ]'

out=$("$BIN" bench -m $FIX/tiny-a --images 2 --image-size 64x48 --labels "cat,dog,bird" --warmup 0 --device cpu 2>&1); rc=$?
check "text report exits 0" '[ $rc -eq 0 ]'
check "text report has images/s" 'printf "%s" "$out" | grep -q "images/s"'
check "text report has p50/p99" 'printf "%s" "$out" | grep -q "p50 .* p99"'

"$BIN" bench -m $FIX/tiny-a --images 1 --image-size 640 --device cpu >/dev/null 2>"$T/err"; rc=$?
check "bad --image-size exits 2 with a message" '[ $rc -eq 2 ] && grep -q "image-size" "$T/err"'
"$BIN" bench -m $FIX/tiny-a --images 1 --image-size 0x10 --device cpu >/dev/null 2>"$T/err"; rc=$?
check "zero --image-size exits 2" '[ $rc -eq 2 ] && grep -q "image-size" "$T/err"'
"$BIN" bench -m "$T/no-such-model" --images 1 --device cpu >/dev/null 2>"$T/err"; rc=$?
check "missing model exits non-zero with a message" '[ $rc -ne 0 ] && grep -q "no-such-model" "$T/err"'
"$BIN" bench -m $FIX/tiny-a --images 0 --device cpu >/dev/null 2>"$T/err"; rc=$?
check "--images 0 exits 2 with a message" '[ $rc -eq 2 ] && grep -q "images" "$T/err"'
"$BIN" bench --config "$T/nothing" --random-weights --images 1 --device cpu >/dev/null 2>"$T/err"; rc=$?
check "missing --config exits non-zero with a message" '[ $rc -ne 0 ] && grep -q "config" "$T/err"'
"$BIN" bench --images 1 >/dev/null 2>"$T/err"; rc=$?
check "no model exits 2" '[ $rc -eq 2 ] && grep -q "\-m MODEL_DIR" "$T/err"'
"$BIN" bench -m $FIX/tiny-a --batch -1 >/dev/null 2>"$T/err"; rc=$?
check "--batch -1 is refused" '[ $rc -eq 2 ] && grep -q "batch" "$T/err"'
"$BIN" bench -m $FIX/tiny-a --images 2 --batch 4 --device cpu --json >"$T/b4.json" 2>"$T/err"; rc=$?
check "--batch 4 runs (one image per step on the CPU)" '[ $rc -eq 0 ] && grep -q "\"mean_batch\":1" "$T/b4.json"'
"$BIN" bench -m $FIX/tiny-a --images 1 --device cpu --labels "a,a" >/dev/null 2>"$T/err"; rc=$?
check "duplicate labels exit non-zero" '[ $rc -ne 0 ] && grep -q "twice" "$T/err"'

echo "RESULT $pass $fail"
[ $fail -eq 0 ]

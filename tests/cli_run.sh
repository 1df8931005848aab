#!/usr/bin/env bash
# The CLI contract on the tiny model, checked against the transformers reference
# (tests/fixtures/ref/manifest.json: greedy tokens of tiny-a on landscape.jpg) and the shared
# Mistral tokenizer fixture. Prints RESULT <passed> <failed>.
set -u
BIN=${LLAVA_BIN:-build/llava}
FIX=tests/fixtures
T=$(mktemp -d /tmp/llava-cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi; }

out=$("$BIN" run -m $FIX/tiny-a -i $FIX/ref/images/landscape.jpg -p "What is shown in this image?" -n 8 --json \
      --top-logprobs 3 --dump-logits "$T/logits.bin" 2>"$T/err"); rc=$?
check "run --json exits 0 ($(cat "$T/err"))" '[ $rc -eq 0 ]'
# transformers generate() on this case (manifest.json)
check "generated_ids equal transformers greedy" 'printf "%s" "$out" | grep -q "\"generated_ids\":\[8649,4559,12183,5050,4097,16803,13328,10094\]"'
for k in prompt_tokens image_tokens generated_ids text timings finish_reason top_logprobs; do
    check "json has $k" 'printf "%s" "$out" | grep -q "\"$k\""'
done
check "prompt_tokens 2358" 'printf "%s" "$out" | grep -q "\"prompt_tokens\":2358"'
check "image_tokens 2340" 'printf "%s" "$out" | grep -q "\"image_tokens\":2340"'
check "dump-logits has vocab_size float32 values" '[ "$(stat -c %s "$T/logits.bin")" -eq $((32064 * 4)) ]'

txt=$("$BIN" run -m $FIX/tiny-a -i $FIX/ref/images/landscape.jpg --raw $'[INST] <image>\nWhat is shown in this image? [/INST]' -n 8 2>/dev/null); rc=$?
check "run --raw exits 0" '[ $rc -eq 0 ]'
check "run text output" '[ -n "$txt" ]'

s1=$("$BIN" run -m $FIX/tiny-a -i $FIX/ref/images/small.png -p hi -n 6 --temp 0.9 --top-p 0.8 --seed 7 --json 2>/dev/null | grep -o '"generated_ids":\[[0-9,]*\]')
s2=$("$BIN" run -m $FIX/tiny-a -i $FIX/ref/images/small.png -p hi -n 6 --temp 0.9 --top-p 0.8 --seed 7 --json 2>/dev/null | grep -o '"generated_ids":\[[0-9,]*\]')
check "sampling is reproducible with a seed" '[ -n "$s1" ] && [ "$s1" = "$s2" ]'

tok=$("$BIN" tokenize -m $FIX/tiny-a --json "this is a photo of Terrace/Patio." 2>/dev/null)
# ids from ../shared/fixtures/tokenizers/mistral-7b/cases.json (independent implementation)
check "tokenize ids" 'printf "%s" "$tok" | grep -q "\"ids\":\[1,456,349,264,8428,302,13151,561,28748,8243,691,28723\]"'
tok=$("$BIN" tokenize -m $FIX/tiny-a "a <image> b" 2>/dev/null)
check "tokenize matches <image> verbatim" 'printf "%s\n" "$tok" | grep -q "^32000	<image>$"'

out=$("$BIN" preprocess -m $FIX/tiny-a -i $FIX/ref/images/landscape.png -o "$T/px.safetensors" 2>&1); rc=$?
check "preprocess exits 0 ($out)" '[ $rc -eq 0 ]'
check "preprocess reports 5 tiles and 2340 tokens" 'printf "%s" "$out" | grep -q "5 tiles of 336x336, 2340 image tokens"'
check "preprocess file size" '[ "$(stat -c %s "$T/px.safetensors")" -gt $((5 * 3 * 336 * 336 * 4)) ]'

echo "RESULT $pass $fail"
[ $fail -eq 0 ]

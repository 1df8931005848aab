#!/usr/bin/env bash
# llava classify takes labels / question / answer from MODEL_DIR/llava_classify.json (written next
# to a fine-tuned model); flags override it; a malformed file is a clear error. RESULT <p> <f>.
set -u
BIN=${LLAVA_BIN:-build/llava}
FIX=tests/fixtures
T=$(mktemp -d /tmp/llava-ccfg.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi; }
M=$T/model
mkdir -p "$M"
for f in $FIX/tiny-a/*; do ln -s "$PWD/$f" "$M/"; done
cat >"$M/llava_classify.json" <<'JSON'
{"labels": ["cat", "dog", "car"], "question": "Which animal is this? Options: {labels}", "answer": "It is a {label}"}
JSON
IMG=$FIX/ref/images/tall.jpg
"$BIN" classify -m "$M" "$IMG" -o "$T/a.jsonl" 2>"$T/err"; rc=$?
check "classify with the model's llava_classify.json exits 0 ($(tail -n 1 "$T/err"))" '[ $rc -eq 0 ]'
"$BIN" classify -m $FIX/tiny-a --labels cat,dog,car --question "Which animal is this? Options: {labels}" --answer "It is a {label}" \
    "$IMG" -o "$T/b.jsonl" 2>/dev/null
check "same record as the explicit flags" '[ -s "$T/a.jsonl" ] && cmp -s "$T/a.jsonl" "$T/b.jsonl"'
# tests/fixtures/ref/labels.json: transformers gives "cat" for tiny-a/tall.jpg with these three labels
check "label equals the transformers reference (cat)" 'grep -q "\"label\":\"cat\"" "$T/a.jsonl"'
"$BIN" classify -m "$M" --labels Room,Pool "$IMG" -o "$T/c.jsonl" 2>/dev/null
check "--labels overrides the file" 'grep -q "\"label\":\"\(Room\|Pool\)\"" "$T/c.jsonl"'
printf '{"labels": "cat"}' >"$M/llava_classify.json"
"$BIN" classify -m "$M" "$IMG" -o "$T/d.jsonl" 2>"$T/err"; rc=$?
check "malformed llava_classify.json: non-zero exit naming the file" '[ $rc -ne 0 ] && grep -q "llava_classify.json" "$T/err"'
rm "$M/llava_classify.json"
"$BIN" classify -m "$M" "$IMG" -o "$T/e.jsonl" 2>"$T/err"; rc=$?
check "no labels anywhere: non-zero exit asking for --labels" '[ $rc -ne 0 ] && grep -q -- "--labels" "$T/err"'
echo "RESULT $pass $fail"
[ $fail -eq 0 ]

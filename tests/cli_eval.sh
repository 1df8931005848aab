#!/usr/bin/env bash
# `llava eval` through the CLI on small files in a temp dir: the metrics JSON fields, the summary
# lines, the HTML report with its embedded PNG, CSV predictions, and the error cases (non-zero
# exit, a one-line reason naming the file and line, no crash; the ASan build runs this too).
# Skips (RESULT 0 0) while `llava eval` is not wired into the CLI.
# Prints RESULT <passed> <failed> for tests/run_tests.sh.
set -u
BIN=${LLAVA_BIN:-build/llava}
pass=0; fail=0
if ! "$BIN" eval --help 2>/dev/null | grep -q -- '--pred'; then
    echo "SKIP cli_eval: '$BIN eval' is not available yet"
    echo "RESULT 0 0"
    exit 0
fi
T=$(mktemp -d /tmp/llava-eval.XXXXXX)
trap 'rm -rf "$T"' EXIT

ok() { pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
crashed() { [ "$1" -ge 128 ] || printf '%s' "$2" | grep -qE 'AddressSanitizer|LeakSanitizer|runtime error|internal error'; }

# expect_fail NAME PATTERN -- command...: non-zero exit, stderr matches PATTERN, no crash
expect_fail() {
    local name=$1 pat=$2; shift 3
    local err rc
    err=$("$@" 2>&1 >/dev/null); rc=$?
    if [ $rc -eq 0 ]; then bad "$name: exit status 0"; return; fi
    if crashed $rc "$err"; then bad "$name: crashed (exit $rc): $(printf '%s' "$err" | head -n 3)"; return; fi
    if ! printf '%s' "$err" | grep -qE -- "$pat"; then bad "$name: message does not match /$pat/: $err"; return; fi
    ok
}

# json_get FILE EXPR: prints the value of a Python expression over the document d
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(($2))" "$1" 2>&1; }
expect_json() { # NAME FILE EXPR WANT
    local got; got=$(json_get "$2" "$3")
    if [ "$got" = "$4" ]; then ok; else bad "$1: $3 = $got, expected $4"; fi
}

# 5 truth ids; predictions: a, b scored, c failed, d scored, e missing, x extra.
# scored pairs (truth -> pred): a cat -> cat, b cat -> dog, d dog -> fish
cat >"$T/pred.jsonl" <<'EOF'
{"id":"a","image":"a.jpg","label":"cat","probability":0.9,"top_k":[{"label":"cat","probability":0.9},{"label":"dog","probability":0.08},{"label":"fish","probability":0.02}],"low_confidence":false}
{"id":"b","image":"b.jpg","label":"dog","probability":0.6,"top_k":[{"label":"dog","probability":0.6},{"label":"cat","probability":0.3},{"label":"fish","probability":0.1}],"low_confidence":false}
{"id":"c","image":"c.jpg","error":"cannot decode c.jpg"}
{"id":"d","image":"d.jpg","label":"fish","probability":0.45,"top_k":[{"label":"fish","probability":0.45},{"label":"dog","probability":0.4},{"label":"cat","probability":0.15}],"low_confidence":true}
{"id":"x","image":"x.jpg","label":"cat","probability":0.7,"top_k":[{"label":"cat","probability":0.7},{"label":"dog","probability":0.2},{"label":"fish","probability":0.1}],"low_confidence":false}
EOF
printf 'id,label\r\na,cat\r\n"b","cat"\r\nc,dog\r\nd,dog\r\ne,bird\r\n' >"$T/truth.csv"

out=$("$BIN" eval --pred "$T/pred.jsonl" --truth "$T/truth.csv" -o "$T/m.json" --report "$T/r.html" 2>"$T/err"); rc=$?
if [ $rc -ne 0 ]; then
    bad "eval run: exit $rc: $(cat "$T/err")"
else
    ok
    printf '%s' "$out" | grep -q '^accuracy    0.3333 (1/3)' && ok || bad "summary line: $out"
    grep -q 'warning: 1 truth ids have no prediction: e' "$T/err" && ok || bad "missing id warned: $(cat "$T/err")"
    grep -q 'warning: 1 prediction ids are not in the truth: x' "$T/err" && ok || bad "extra id warned"
    if command -v python3 >/dev/null; then
        expect_json "n_scored" "$T/m.json" "d['n_scored'], d['n_failed'], d['n_missing'], d['n_extra']" "(3, 1, 1, 1)"
        expect_json "coverage" "$T/m.json" "d['coverage']" "0.8"                # (3 + 1) / 5
        expect_json "accuracy" "$T/m.json" "round(d['accuracy'], 12)" "0.333333333333"  # 1 / 3
        # labels cat, dog, fish; cat P 1 R .5, dog 0 0, fish (support 0) 0 0 -> macro P 1/3, R 1/6, F1 2/9
        expect_json "labels" "$T/m.json" "d['labels']" "['cat', 'dog', 'fish']"
        expect_json "macro_f1" "$T/m.json" "round(d['macro_f1'], 12)" "0.222222222222"
        expect_json "weighted_f1" "$T/m.json" "round(d['weighted_f1'], 12)" "0.444444444444"  # (2 * 2/3) / 3
        expect_json "confusion" "$T/m.json" "d['confusion_matrix']" "[[1, 1, 0], [0, 0, 1], [0, 0, 0]]"
        expect_json "per_class" "$T/m.json" "[(c['label'], c['support'], c['predicted']) for c in d['per_class']]" \
            "[('cat', 2, 1), ('dog', 1, 1), ('fish', 0, 1)]"
        expect_json "top_k" "$T/m.json" "d['top_k'], d['top_k_accuracy']" "(3, 1)"
        # bins: .9 right (gap .1), .6 wrong (gap .6), .45 wrong (gap .45): ECE 1.15 / 3
        expect_json "ece" "$T/m.json" "round(d['ece'], 12)" "0.383333333333"
        expect_json "reliability" "$T/m.json" "[b['count'] for b in d['reliability']]" "[0, 0, 0, 0, 1, 1, 0, 0, 1, 0]"
        expect_json "ids" "$T/m.json" "d['missing_ids'], d['extra_ids'], d['failures'][0]['id']" "(['e'], ['x'], 'c')"
    else
        echo "INFO python3 not found: metrics JSON fields checked by grep only"
        grep -q '"n_scored":[[:space:]]*3' "$T/m.json" && ok || bad "n_scored in metrics JSON"
    fi
    [ -s "$T/r.html" ] && ok || bad "report.html not written"
    grep -q 'src="data:image/png;base64,iVBORw0KGgo' "$T/r.html" && ok || bad "report has no embedded PNG"
    grep -q '<svg' "$T/r.html" && ok || bad "report has no reliability diagram"
    grep -qE 'src="https?:|<link|<script' "$T/r.html" && bad "report refers to external assets" || ok
fi

# -o - : JSON on stdout instead of the summary
out=$("$BIN" eval --pred "$T/pred.jsonl" --truth "$T/truth.csv" -o - 2>/dev/null); rc=$?
[ $rc -eq 0 ] && printf '%s' "$out" | head -n 1 | grep -q '^{' && ok || bad "-o - writes JSON to stdout (exit $rc)"

# CSV predictions, top-k 1, truth as JSONL
printf 'id,label,probability\na,cat,0.9\nb,dog,0.8\n' >"$T/pred.csv"
printf '{"id":"a","label":"cat"}\n{"id":"b","label":"dog"}\n' >"$T/truth.jsonl"
out=$("$BIN" eval --pred "$T/pred.csv" --truth "$T/truth.jsonl" 2>&1); rc=$?
[ $rc -eq 0 ] && printf '%s' "$out" | grep -q '^accuracy    1.0000 (2/2)' && printf '%s' "$out" | grep -q '^top-1 ' && ok ||
    bad "CSV predictions (exit $rc): $out"

# the CSV of classify --format csv, truth taken from its "truth" column (no --truth)
cat >"$T/classify.csv" <<'EOF'
id,image,label,probability,low_confidence,top_k,truth,error
a,a.jpg,cat,0.9,false,"[{""label"":""cat"",""probability"":0.9},{""label"":""dog"",""probability"":0.1}]",cat,
b,b.jpg,cat,0.6,false,"[{""label"":""cat"",""probability"":0.6},{""label"":""dog"",""probability"":0.4}]",dog,
c,c.jpg,,,,,dog,cannot decode c.jpg
EOF
out=$("$BIN" eval --pred "$T/classify.csv" -o "$T/mc.json" 2>&1); rc=$?
[ $rc -eq 0 ] && printf '%s' "$out" | grep -q '^accuracy    0.5000 (1/2)' && printf '%s' "$out" | grep -q '^top-2       1.0000' &&
    printf '%s' "$out" | grep -q 'failed 1' && ok || bad "classify CSV with truth column (exit $rc): $out"

# warnings do not fail the run; --strict does
"$BIN" eval --pred "$T/pred.jsonl" --truth "$T/truth.csv" --top-k 5 >/dev/null 2>"$T/err" && ok || bad "--top-k 5"
grep -q 'fewer than 5 labels' "$T/err" && ok || bad "--top-k beyond the lists is warned: $(cat "$T/err")"
expect_fail "--strict with missing ids" "--strict: 1 missing, 1 extra, 1 failed" -- \
    "$BIN" eval --pred "$T/pred.jsonl" --truth "$T/truth.csv" --strict

# errors
expect_fail "missing predictions file" "$T/nope.jsonl: cannot open" -- "$BIN" eval --pred "$T/nope.jsonl" --truth "$T/truth.csv"
expect_fail "missing truth file" "$T/nope.csv: cannot open" -- "$BIN" eval --pred "$T/pred.jsonl" --truth "$T/nope.csv"
expect_fail "no --pred" "--pred is required" -- "$BIN" eval --truth "$T/truth.csv"
expect_fail "no truth anywhere" "no --truth file given" -- "$BIN" eval --pred "$T/pred.jsonl"
expect_fail "unknown option" "unknown option --bogus" -- "$BIN" eval --bogus
expect_fail "bad --top-k" "invalid value for --top-k" -- "$BIN" eval --pred "$T/pred.jsonl" --truth "$T/truth.csv" --top-k x
{ head -n 2 "$T/pred.jsonl"; echo '{"id":"d","label":'; } >"$T/bad.jsonl"
expect_fail "bad JSON line" "bad.jsonl:3: invalid JSON" -- "$BIN" eval --pred "$T/bad.jsonl" --truth "$T/truth.csv"
printf '{"id":"a","label":"cat"}\n{"id":"b","lab' >"$T/torn.jsonl"
expect_fail "torn last line" "torn.jsonl:2: invalid JSON.*no newline" -- "$BIN" eval --pred "$T/torn.jsonl" --truth "$T/truth.csv"
printf 'id,label\na,cat\nb,dog\na,dog\n' >"$T/dup.csv"
expect_fail "duplicate truth id" 'dup.csv:4: duplicate id "a" \(first on line 2\)' -- \
    "$BIN" eval --pred "$T/pred.jsonl" --truth "$T/dup.csv"
printf '{"id":"a","label":"cat"}\n{"id":"a","label":"dog"}\n' >"$T/duppred.jsonl"
expect_fail "duplicate prediction id" 'duppred.jsonl:2: duplicate id "a"' -- \
    "$BIN" eval --pred "$T/duppred.jsonl" --truth "$T/truth.csv"
printf '{"id":"a","label":"cat","probability":2}\n' >"$T/prob.jsonl"
expect_fail "probability out of range" 'prob.jsonl:1: "probability" must be a number in \[0, 1\]' -- \
    "$BIN" eval --pred "$T/prob.jsonl" --truth "$T/truth.csv"
printf 'a,"cat\n' >"$T/quote.csv"
expect_fail "unterminated quote" "quote.csv:1: unterminated quoted field" -- "$BIN" eval --pred "$T/pred.jsonl" --truth "$T/quote.csv"
printf 'q,cat\nr,dog\n' >"$T/other.csv"
expect_fail "nothing to score" "nothing to score" -- "$BIN" eval --pred "$T/pred.jsonl" --truth "$T/other.csv"
expect_fail "unwritable -o" "cannot write the metrics" -- \
    "$BIN" eval --pred "$T/pred.jsonl" --truth "$T/truth.csv" -o "$T/no/such/dir/m.json"
expect_fail "unwritable --report" "cannot write the report" -- \
    "$BIN" eval --pred "$T/pred.jsonl" --truth "$T/truth.csv" --report "$T/no/such/dir/r.html"

echo "RESULT $pass $fail"
[ $fail -eq 0 ]

#!/usr/bin/env bash
# `llava classify` end to end on the tiny model (tests/fixtures/tiny-a): a run over >= 200 inputs
# with corrupt files among them; SIGKILL at >= 20 random moments with a resume after each, whose
# final output must equal the uninterrupted run record for record; a 3-shard run (by --shard, by
# the Slurm and by the Kubernetes environment) merged back into the same records; SIGTERM/SIGINT
# stop cleanly; usage and setup errors exit non-zero. Prints RESULT <passed> <failed>.
# Under an ASan build (LLAVA_BIN contains "asan") the kill series is shorter (the build is ~3x
# slower); the optimized build always does >= 200 inputs and >= 20 kills.
set -u
BIN=${LLAVA_BIN:-build/llava}
FIX=tests/fixtures
MODEL=$FIX/tiny-a
LABELS=Room,Bathroom,Pool,Lobby
T=$(mktemp -d /tmp/llava-classify.XXXXXX)
cleanup() {
    [ -n "${BGPID:-}" ] && kill -9 "$BGPID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
pass=0; fail=0
if ! "$BIN" classify --help >/dev/null 2>&1; then
    echo "SKIP $BIN has no classify subcommand yet (src/cli/main.c dispatch)"
    echo "RESULT 0 0"
    exit 0
fi
check() { if eval "$2"; then pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi; }
ids() { grep -o '^{"id":"[^"]*"' "$1" | cut -c8- ; }
# every line a whole record, the file ends in a newline, no id twice
well_formed() {
    [ ! -s "$1" ] && return 0
    [ "$(tail -c 1 "$1" | od -An -c | tr -d ' ')" = '\n' ] || return 1
    [ "$(grep -vc '^{"id":".*}$' "$1")" -eq 0 ] || return 1
    [ -z "$(ids "$1" | sort | uniq -d)" ]
}
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
ASAN=0; case "$BIN" in *asan*) ASAN=1 ;; esac
KILLS=24; NCOPY=100                        # 2 x 100 images + 4 broken files = 204 inputs
[ $ASAN -eq 1 ] && KILLS=10 && NCOPY=30
# sanitizer reports of every run (also those whose exit status is expected to be non-zero) land here
if [ $ASAN -eq 1 ]; then
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}:log_path=$T/san"
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}:log_path=$T/san"
fi

# --- inputs: 200 copies of the 3-tile fixture images (symlinks) + 4 broken files -------------------
mkdir -p "$T/img/png" "$T/img/jpg" "$T/img/bad"
for i in $(seq -w 1 $NCOPY); do
    ln -s "$PWD/$FIX/ref/images/small.png" "$T/img/png/p$i.png"
    ln -s "$PWD/$FIX/ref/images/small.jpg" "$T/img/jpg/j$i.JPG"
done
cp "$FIX/images/bad/truncated.jpg" "$T/img/bad/truncated.jpg"
printf 'not an image at all' >"$T/img/bad/garbage.png"
: >"$T/img/bad/empty.jpg"
cp "$FIX/images/bad/huge_ihdr.png" "$T/img/bad/huge.png"    # header claims too many pixels
NIN=$((2 * NCOPY + 4))
run() { "$BIN" classify -m "$MODEL" --labels "$LABELS" "$T/img" --log-every 1 "$@"; }
# in the background, $! must be the llava process itself (not a subshell running a function)
run_bg() {
    local out=$1 err=$2
    "$BIN" classify -m "$MODEL" --labels "$LABELS" "$T/img" --log-every 1 -o "$out" 2>>"$err" &
    BGPID=$!
}

# --- 1. the uninterrupted run ------------------------------------------------------------------------
t0=$(now)
run -o "$T/ref.jsonl" 2>"$T/ref.err"; rc=$?
t_full=$(calc "$(now) - $t0")
check "uninterrupted run exits 0 ($(tail -n 3 "$T/ref.err"))" '[ $rc -eq 0 ]'
check "one record per input ($(wc -l <"$T/ref.jsonl") of $NIN)" '[ "$(wc -l <"$T/ref.jsonl")" -eq $NIN ]'
check "records well formed, ids unique" 'well_formed "$T/ref.jsonl"'
check "4 error records for the broken files" '[ "$(grep -c "\"error\":" "$T/ref.jsonl")" -eq 4 ]'
for b in truncated.jpg garbage.png empty.jpg huge.png; do
    check "error record for $b" 'grep -q "^{\"id\":\"$T/img/bad/$b\",\"image\":\"$T/img/bad/$b\",\"error\":\"" "$T/ref.jsonl"'
done
check "results carry label, probability, top_k of 3, low_confidence" \
    '[ "$(grep -cE "^\{\"id\":\"[^\"]+\",\"image\":\"[^\"]+\",\"label\":\"(Room|Bathroom|Pool|Lobby)\",\"probability\":[0-9.e-]+,\"top_k\":\[(\{\"label\":\"[A-Za-z]+\",\"probability\":[0-9.e-]+\},?){3}\],\"low_confidence\":(true|false)\}$" "$T/ref.jsonl")" -eq $((NIN - 4)) ]'
check "same image, same record (png copies agree)" \
    '[ "$(grep "/png/p" "$T/ref.jsonl" | sed "s/.*\"label\"/\"label\"/" | sort -u | wc -l)" -eq 1 ]'
check "summary line" 'grep -q "done: $((NIN - 4)) images classified, 4 errors, 0 already done" "$T/ref.err"'
check "progress log lines off a terminal" 'grep -q "^llava: [0-9]*/$NIN (" "$T/ref.err" || [ "$(calc "$t_full < 1.5")" = "1.000" ]'
sort "$T/ref.jsonl" >"$T/ref.sorted"

# re-running the finished command resumes and has nothing to do
run -o "$T/ref.jsonl" 2>"$T/again.err"; rc=$?
check "re-run of a finished output exits 0 and adds nothing" '[ $rc -eq 0 ] && [ "$(wc -l <"$T/ref.jsonl")" -eq $NIN ]'
check "re-run says it resumes" 'grep -q "$NIN of $NIN inputs already recorded, 0 to go" "$T/again.err"'

# --- 2. SIGKILL at random moments, resume each time ------------------------------------------------
# Each start is killed after it has added a random number of records (0 .. 2 x NIN/KILLS, so about
# half of the run happens under the kills and it never finishes before the last one) plus a random
# part of one image's time: the kills land during model load, mid-image and around record writes.
t_img=$(calc "$t_full / $NIN")
kills=0; tries=0; progressed=0; torn_seen=0; bad_state=0
touch "$T/kill.jsonl"
while [ $kills -lt $KILLS ] && [ $tries -lt $((KILLS * 2)) ]; do
    tries=$((tries + 1))
    before=$(wc -l <"$T/kill.jsonl")
    target=$((before + RANDOM % (NIN / KILLS + 1)))
    run_bg "$T/kill.jsonl" "$T/kill.err"
    while [ "$(wc -l <"$T/kill.jsonl")" -lt $target ] && kill -0 "$BGPID" 2>/dev/null; do sleep 0.005; done
    sleep "$(calc "$t_img * ($RANDOM % 1000) / 1000")"
    kill -9 "$BGPID" 2>/dev/null && kills=$((kills + 1))
    wait "$BGPID" 2>/dev/null
    BGPID=
    [ -n "$(tail -c 1 "$T/kill.jsonl")" ] && torn_seen=$((torn_seen + 1))
    # whole lines so far: well formed and unique
    head -n "$(wc -l <"$T/kill.jsonl")" "$T/kill.jsonl" >"$T/kill.whole"
    well_formed "$T/kill.whole" || bad_state=$((bad_state + 1))
    after=$(wc -l <"$T/kill.jsonl")
    [ "$after" -gt "$before" ] && progressed=$((progressed + 1))
done
echo "INFO kill test: $kills SIGKILLs (full run ${t_full}s), $progressed made progress, $torn_seen left a torn line, $(wc -l <"$T/kill.jsonl" 2>/dev/null || echo 0) of $NIN records before the final resume"
check "at least $KILLS kills landed ($kills)" '[ $kills -ge $KILLS ]'
check "most killed runs made progress ($progressed of $kills)" '[ $progressed -ge $((KILLS / 3)) ]'
check "whole lines always well formed and unique after a kill" '[ $bad_state -eq 0 ]'
run -o "$T/kill.jsonl" 2>"$T/kill.last"; rc=$?
check "final resume exits 0 ($(tail -n 2 "$T/kill.last"))" '[ $rc -eq 0 ]'
check "killed-and-resumed output well formed" 'well_formed "$T/kill.jsonl"'
check "every input exactly once, records identical to the uninterrupted run" 'sort "$T/kill.jsonl" | cmp -s - "$T/ref.sorted"'

# a torn line written by hand is dropped and redone
head -n $((NIN - 3)) "$T/ref.jsonl" >"$T/torn.jsonl"
sed -n $((NIN - 2))p "$T/ref.jsonl" | head -c 40 >>"$T/torn.jsonl"
run -o "$T/torn.jsonl" 2>"$T/torn.err"; rc=$?
check "torn last line dropped and redone" '[ $rc -eq 0 ] && grep -q "dropped a torn last line" "$T/torn.err" && sort "$T/torn.jsonl" | cmp -s - "$T/ref.sorted"'

# --- 3. shards: N=3 by flag and by environment, merged -------------------------------------------
mkdir -p "$T/sh"
run -o "$T/sh/results.jsonl" --shard 0/3 2>"$T/sh0.err"; r0=$?
SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=3 run -o "$T/sh/results.jsonl" 2>"$T/sh1.err"; r1=$?
JOB_COMPLETION_INDEX=2 run -o "$T/sh/results.jsonl" --shards 3 2>"$T/sh2.err"; r2=$?
check "three shards exit 0 ($(tail -n 1 "$T/sh2.err"))" '[ $r0 -eq 0 ] && [ $r1 -eq 0 ] && [ $r2 -eq 0 ]'
check "shard files named results.shard-000i-of-0003.jsonl" \
    '[ -f "$T/sh/results.shard-0000-of-0003.jsonl" ] && [ -f "$T/sh/results.shard-0001-of-0003.jsonl" ] && [ -f "$T/sh/results.shard-0002-of-0003.jsonl" ]'
n0=$(wc -l <"$T/sh/results.shard-0000-of-0003.jsonl"); n1=$(wc -l <"$T/sh/results.shard-0001-of-0003.jsonl"); n2=$(wc -l <"$T/sh/results.shard-0002-of-0003.jsonl")
check "shards split the inputs ($n0 + $n1 + $n2)" '[ $((n0 + n1 + n2)) -eq $NIN ] && [ $n0 -gt $((NIN / 6)) ] && [ $n1 -gt $((NIN / 6)) ] && [ $n2 -gt $((NIN / 6)) ]'
"$BIN" classify --merge -o "$T/sh/results.jsonl" "$T/img" 2>"$T/merge.err"; rc=$?
check "merge exits 0 ($(cat "$T/merge.err"))" '[ $rc -eq 0 ]'
check "merged shards equal the whole run" 'sort "$T/sh/results.jsonl" | cmp -s - "$T/ref.sorted"'
rm "$T/sh/results.shard-0001-of-0003.jsonl"
"$BIN" classify --merge --overwrite -o "$T/sh/results.jsonl" "$T/img" 2>"$T/merge2.err"; rc=$?
check "merge with a shard missing exits non-zero and reports it" \
    '[ $rc -ne 0 ] && grep -q "shard 1 of 3 has no file" "$T/merge2.err" && grep -q "inputs without a record" "$T/merge2.err"'
check "merge without --overwrite keeps an existing output" \
    '! "$BIN" classify --merge -o "$T/sh/results.jsonl" 2>/dev/null'

# --- 4. SIGTERM and SIGINT stop cleanly (on a 24-image manifest: ids = the same absolute paths) ----
ls "$T"/img/png/*.png | head -n 12 >"$T/sub.txt"
ls "$T"/img/jpg/*.JPG | head -n 12 >>"$T/sub.txt"
sed 's/.*/{"id":"&"/' "$T/sub.txt" | grep -F -f - "$T/ref.jsonl" | sort >"$T/sub.sorted"
# (background jobs of a script start with SIGINT ignored, which llava respects like any program;
# job control gives the job its own process group with default dispositions)
for sig in TERM INT; do
    out="$T/sig$sig.jsonl"
    [ $sig = INT ] && set -m
    "$BIN" classify -m "$MODEL" --labels "$LABELS" "$T/sub.txt" -o "$out" 2>"$T/sig$sig.err" &
    BGPID=$!
    [ $sig = INT ] && set +m
    # signal once the first records are out, so the run is surely under way and far from its end
    for _ in $(seq 1 3000); do
        [ -f "$out" ] && [ "$(wc -l <"$out")" -ge 2 ] && break
        kill -0 "$BGPID" 2>/dev/null || break
        sleep 0.01
    done
    kill -$sig "$BGPID"
    wait "$BGPID"; rc=$?
    BGPID=
    want=143; [ $sig = INT ] && want=130
    check "SIG$sig: exit $want ($rc)" '[ $rc -eq $want ]'
    check "SIG$sig: stopped early, no torn line, records well formed ($(wc -l <"$out") of 24)" \
        '[ "$(wc -l <"$out")" -lt 24 ] && well_formed "$out"'
    check "SIG$sig: summary says interrupted" 'grep -q "interrupted" "$T/sig$sig.err"'
    "$BIN" classify -m "$MODEL" --labels "$LABELS" "$T/sub.txt" -o "$out" 2>/dev/null; rc=$?
    check "SIG$sig: resume completes to the same records" '[ $rc -eq 0 ] && sort "$out" | cmp -s - "$T/sub.sorted"'
done

# --- 5. formats, manifests, options ----------------------------------------------------------------
printf 'id,path,label\nroom-1,%s,Room\n"pool, 2",%s,Pool\n' "$PWD/$FIX/ref/images/small.png" "$PWD/$FIX/ref/images/small.jpg" >"$T/m.csv"
"$BIN" classify -m "$MODEL" --labels "$LABELS" "$T/m.csv" -o "$T/m.out.csv" --top-k all --price-per-hour 3.5 2>"$T/csv.err"; rc=$?
check "csv manifest + csv output exits 0" '[ $rc -eq 0 ]'
check "csv header" '[ "$(head -n 1 "$T/m.out.csv")" = "id,image,label,probability,low_confidence,top_k,truth,error" ]'
check "csv rows with quoted id and truth" 'grep -q "^\"pool, 2\",.*,Pool,$" "$T/m.out.csv" && grep -q "^room-1,.*,Room,$" "$T/m.out.csv"'
check "top-k all lists 4 labels" '[ "$(grep "^room-1" "$T/m.out.csv" | grep -o "\"\"label\"\"" | wc -l)" -eq 4 ]'
check "cost per 1000 images" 'grep -q "cost [0-9.]* per 1000 images at 3.5000 per hour" "$T/csv.err"'
printf 'Room\n\nBathroom\nPool\nLobby\n' >"$T/labels.txt"
"$BIN" classify -m "$MODEL" --labels "$T/labels.txt" "$T/m.csv" -o "$T/m.jsonl" --min-confidence 1 --top-k 1 2>/dev/null; rc=$?
check "labels file, jsonl with truth, min-confidence 1 flags all" \
    '[ $rc -eq 0 ] && [ "$(grep -c "\"low_confidence\":true,\"truth\":\"" "$T/m.jsonl")" -eq 2 ]'
"$BIN" classify -m "$MODEL" --labels Cat,Dog "$T/m.csv" -o "$T/m.jsonl" 2>"$T/other.err"; rc=$?
check "resuming an output made with other labels is refused ($rc)" '[ $rc -ne 0 ] && grep -q "other labels" "$T/other.err"'
"$BIN" classify -m "$MODEL" --labels Room,Bathroom "$T/m.csv" -o "$T/m.jsonl" --overwrite 2>/dev/null; rc=$?
check "--overwrite starts over" '[ $rc -eq 0 ] && [ "$(wc -l <"$T/m.jsonl")" -eq 2 ] && ! grep -q Pool\",\"prob "$T/m.jsonl"'

# --- 6. cannot run: non-zero exit ------------------------------------------------------------------
IMG=$FIX/ref/images/small.png
: >"$T/afile"
"$BIN" classify -m "$MODEL" --labels "$LABELS" "$IMG" -o "$T/afile/x.jsonl" 2>"$T/e1"; rc=$?
check "unwritable output: exit $rc, message" '[ $rc -ne 0 ] && grep -q "cannot open the output" "$T/e1"'
"$BIN" classify -m "$MODEL" --labels Room,Pool,Room "$IMG" -o "$T/e.jsonl" 2>"$T/e2"; rc=$?
check "duplicate labels: exit $rc" '[ $rc -ne 0 ] && grep -q "listed twice" "$T/e2"'
"$BIN" classify -m "$MODEL" --labels "" "$IMG" -o "$T/e.jsonl" 2>/dev/null; rc=$?
check "empty label set: exit $rc" '[ $rc -ne 0 ]'
"$BIN" classify -m "$MODEL" --labels "Room,,Pool" "$IMG" -o "$T/e.jsonl" 2>/dev/null; rc=$?
check "empty label: exit $rc" '[ $rc -ne 0 ]'
printf '\n\n' >"$T/empty_labels.txt"
"$BIN" classify -m "$MODEL" --labels "$T/empty_labels.txt" "$IMG" -o "$T/e.jsonl" 2>/dev/null; rc=$?
check "labels file without labels: exit $rc" '[ $rc -ne 0 ]'
"$BIN" classify -m "$T/nomodel" --labels "$LABELS" "$IMG" -o "$T/e.jsonl" 2>"$T/e3"; rc=$?
check "bad model: exit $rc" '[ $rc -ne 0 ] && [ $rc -ne 2 ] && grep -q "cannot load the model" "$T/e3"'
"$BIN" classify -m "$MODEL" --labels "$LABELS" "$T/missing.jpg" -o "$T/e.jsonl" 2>/dev/null; rc=$?
check "missing input argument: exit $rc" '[ $rc -eq 2 ]'
"$BIN" classify -m "$MODEL" --labels "$LABELS" "$IMG" "$IMG" -o "$T/e.jsonl" 2>/dev/null; rc=$?
check "duplicate input ids: exit $rc" '[ $rc -eq 2 ]'
"$BIN" classify -m "$MODEL" --labels "$LABELS" "$IMG" -o "$T/e.jsonl" --shard 3/3 2>/dev/null; rc=$?
check "bad --shard: exit $rc" '[ $rc -eq 2 ]'
JOB_COMPLETION_INDEX=1 "$BIN" classify -m "$MODEL" --labels "$LABELS" "$IMG" -o "$T/e.jsonl" 2>/dev/null; rc=$?
check "JOB_COMPLETION_INDEX without --shards: exit $rc" '[ $rc -eq 2 ]'
"$BIN" classify -m "$MODEL" --labels "$LABELS" "$IMG" -o "$T/e.jsonl" --resume --overwrite 2>/dev/null; rc=$?
check "--resume with --overwrite: exit $rc" '[ $rc -eq 2 ]'
"$BIN" classify --help >/dev/null; rc=$?
check "--help exits 0" '[ $rc -eq 0 ]'

if [ $ASAN -eq 1 ]; then
    check "no sanitizer reports ($(cat "$T"/san.* 2>/dev/null | grep -m 3 -E "ERROR|runtime error"))" '! ls "$T"/san.* >/dev/null 2>&1'
fi

echo "RESULT $pass $fail"
[ $fail -eq 0 ]

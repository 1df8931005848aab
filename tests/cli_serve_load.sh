#!/usr/bin/env bash
# bench/serve_load.py against `llava serve` on the tiny model (CPU smoke test): closed loop with
# concurrency 4 prints images/s and 0 errors; an open-loop --rate run (--json) answers every request;
# --mode chat; a wrong key counts every request as an error (exit 1); a dead server is a usage
# error (exit 2). Prints RESULT <passed> <failed>; SKIP when python3's openai package is missing.
set -u
BIN=${LLAVA_BIN:-build/llava}
FIX=tests/fixtures
. tests/serve_lib.sh
serve_require_openai cli_serve_load
T=$(mktemp -d /tmp/llava-serve-load.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi; }

KEY=load-key
serve_start "$T/log" -m $FIX/tiny-a --device cpu --api-key $KEY
pid=$serve_pid port=$serve_port
check "server starts ($(tail -n 3 "$T/log"))" '[ -n "$port" ]'
if [ -z "$port" ]; then echo "RESULT $pass $fail"; exit 1; fi
URL=http://127.0.0.1:$port
IMGS="$FIX/ref/images/small.png $FIX/ref/images/small.jpg"
LOAD="python3 bench/serve_load.py --api-key $KEY --images $IMGS"

# closed loop, concurrency 4 (the base URL without /v1 gets it added)
$LOAD --base-url $URL --requests 8 --concurrency 4 --warmup 1 >"$T/closed" 2>&1; rc=$?
check "closed loop exits 0 (rc $rc: $(tail -n 3 "$T/closed"))" '[ $rc -eq 0 ]'
check "closed loop prints images/s > 0" 'grep -qE "^images/s +[0-9.]*[1-9]" "$T/closed"'
check "closed loop prints p50/p90/p99" 'grep -qE "^latency ms +p50 [0-9.]+ +p90 [0-9.]+ +p99 [0-9.]+" "$T/closed"'
check "closed loop: 0 errors" 'grep -qE "^errors +0$" "$T/closed"'
check "closed loop: 8 of 8 completed" 'grep -qE "^completed +8 of 8" "$T/closed"'

# open loop at 20 requests/s, --json
$LOAD --base-url $URL/v1 --requests 10 --concurrency 4 --rate 20 --json >"$T/open.json" 2>"$T/open.err"; rc=$?
check "open loop exits 0 (rc $rc: $(tail -n 3 "$T/open.err"))" '[ $rc -eq 0 ]'
check "open loop --json: 10 completed, 0 errors, open loop, numbers" 'python3 - "$T/open.json" <<'"'"'PY'"'"'
import json, sys
r = json.loads(open(sys.argv[1]).read())
L = r["latency_ms"]
ok = (r["completed"] == 10 and r["errors"] == 0 and r["loop"] == "open" and r["rate"] == 20 and r["labels"] == 30
      and r["images_per_s"] > 0 and r["offered_rate"] > 0 and 0 < L["p50"] <= L["p90"] <= L["p99"] <= L["max"])
sys.exit(0 if ok else 1)
PY'

# chat mode
$LOAD --base-url $URL --mode chat --max-tokens 3 --requests 4 --concurrency 4 >"$T/chat" 2>&1; rc=$?
check "chat mode exits 0 with 0 errors (rc $rc: $(tail -n 3 "$T/chat"))" '[ $rc -eq 0 ] && grep -qE "^errors +0$" "$T/chat"'
check "chat mode counts completion tokens" 'grep -qE "^tokens .* 12 completion" "$T/chat"'

# errors are counted, not fatal: a wrong key without warm-up → 3 errors, exit 1
python3 bench/serve_load.py --api-key wrong --images $IMGS --base-url $URL --model tiny-a --requests 3 \
    --concurrency 2 --warmup 0 >"$T/bad" 2>&1; rc=$?
check "wrong key: exit 1, 3 errors, the 401 named (rc $rc: $(tail -n 3 "$T/bad"))" \
    '[ $rc -eq 1 ] && grep -qE "^errors +3$" "$T/bad" && grep -q "HTTP 401" "$T/bad"'
python3 bench/serve_load.py --images $IMGS --base-url http://127.0.0.1:1 --requests 1 >"$T/dead" 2>&1; rc=$?
check "no server: exit 2 with a reason (rc $rc)" '[ $rc -eq 2 ] && grep -q "cannot list the models" "$T/dead"'

kill -TERM $pid
wait $pid; rc=$?
pid=""
check "SIGTERM exits 0 (rc $rc)" '[ $rc -eq 0 ]'
check "no sanitizer reports" '! grep -qE "runtime error|AddressSanitizer|LeakSanitizer" "$T/log"'
echo "RESULT $pass $fail"
[ $fail -eq 0 ]

#!/usr/bin/env bash
# `llava serve` on the tiny model: starts it on a free loopback port, runs tests/serve_client.py
# (the official openai client + raw HTTP), then checks graceful shutdown on SIGTERM.
# Prints RESULT <passed> <failed>; SKIP when python3's openai package or the serve command is missing.
set -u
BIN=${LLAVA_BIN:-build/llava}
FIX=tests/fixtures
. tests/serve_lib.sh
serve_require_openai cli_serve
if ! "$BIN" serve --help >/dev/null 2>&1; then
    echo "SKIP cli_serve: $BIN has no serve command"
    echo "RESULT 0 0"; exit 0
fi
T=$(mktemp -d /tmp/llava-serve.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi; }

KEY=test-key-123
serve_start "$T/log" -m $FIX/tiny-a --device cpu --api-key $KEY --max-images 2 --max-body-bytes 2097152 \
    --max-tokens-default 4
pid=$serve_pid port=$serve_port
check "server starts ($(tail -n 3 "$T/log"))" '[ -n "$port" ]'
if [ -z "$port" ]; then echo "RESULT $pass $fail"; exit 1; fi
ok=0
for _ in $(seq 1 100); do
    python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=2)" 2>/dev/null && { ok=1; break; }
    sleep 0.1
done
check "/health answers 200" '[ $ok -eq 1 ]'

out=$(SERVER_PID=$pid python3 tests/serve_client.py "http://127.0.0.1:$port" $KEY "$BIN" $FIX/tiny-a 2>&1)
serve_tally serve_client.py "$out"

# graceful shutdown: a request in flight when SIGTERM arrives still gets its answer, exit 0
B64=$(base64 -w0 $FIX/ref/images/small.png)
printf '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,%s"}},{"type":"text","text":"hi"}]}],"max_tokens":3,"temperature":0}' "$B64" >"$T/req.json"
python3 - "$port" $KEY "$T/req.json" >"$T/inflight" 2>&1 <<'PY' &
import sys, urllib.request
port, key, f = sys.argv[1:4]
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=open(f, "rb").read(), method="POST")
req.add_header("Authorization", "Bearer " + key)
with urllib.request.urlopen(req, timeout=60) as r:
    print("STATUS", r.status)
PY
cpid=$!
# wait until the engine runs it (or it already finished)
python3 - "$port" $KEY <<'PY2'
import sys, time, urllib.request
port, key = sys.argv[1:3]
for _ in range(200):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    req.add_header("Authorization", "Bearer " + key)
    t = urllib.request.urlopen(req, timeout=5).read().decode()
    if any(l.startswith("llava_num_requests_running") and l.endswith(" 1") for l in t.splitlines()):
        break
    time.sleep(0.005)
PY2
kill -TERM $pid
wait $pid; rc=$?
pid=""
wait $cpid
check "SIGTERM exits 0 (rc $rc)" '[ $rc -eq 0 ]'
check "in-flight request answered during shutdown ($(cat "$T/inflight"))" 'grep -q "STATUS 200" "$T/inflight"'
check "shutdown logged" 'grep -q "stopped" "$T/log"'
check "no sanitizer reports in the server log" '! grep -qE "runtime error|AddressSanitizer|LeakSanitizer" "$T/log"'

echo "RESULT $pass $fail"
[ $fail -eq 0 ]

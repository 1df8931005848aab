# serve_lib.sh — sourced by tests/cli_serve*.sh (not a test itself): the SKIP when python3's openai
# package is missing, starting `llava serve` ($BIN) on a free loopback port, and counting a Python
# client's RESULT line.

# serve_require_openai NAME: prints SKIP + an empty RESULT and exits the test when openai is missing.
serve_require_openai() {
    if ! python3 -c "import openai" 2>/dev/null; then
        echo "SKIP $1: python3 package openai is missing (pip install openai)"
        echo "RESULT 0 0"; exit 0
    fi
}

# serve_start LOG ARGS...: runs "$BIN" serve --host 127.0.0.1 --port 0 ARGS... in the background,
# stderr to LOG; sets serve_pid, and serve_port once the log says "listening on" (empty when the
# server exited or did not listen within 30 s).
serve_start() {
    local log=$1; shift
    "$BIN" serve --host 127.0.0.1 --port 0 "$@" 2>"$log" &
    serve_pid=$!
    serve_port=""
    for _ in $(seq 1 300); do
        serve_port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log" 2>/dev/null | grep -o '[0-9]*$')
        [ -n "$serve_port" ] && break
        kill -0 $serve_pid 2>/dev/null || break
        sleep 0.1
    done
}

# serve_tally NAME OUTPUT: shows the FAIL/INFO/traceback lines of a Python client's OUTPUT and adds
# its "RESULT <passed> <failed>" to $pass / $fail (a client that printed none counts as one failure).
serve_tally() {
    local name=$1 out=$2 line p f
    printf '%s\n' "$out" | grep -E '^(FAIL|INFO|Traceback|  File|[A-Za-z]*Error)' | head -n 30
    line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
    if [ -n "$line" ]; then
        read -r _ p f <<<"$line"
        pass=$((pass + p)); fail=$((fail + f))
    else
        printf '%s\n' "$out" | tail -n 20
        echo "FAIL $name died"; fail=$((fail + 1))
    fi
}

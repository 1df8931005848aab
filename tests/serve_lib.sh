# serve_lib.sh — sourced by tests/cli_serve*.sh (not a test itself): the SKIP when python3's openai
# package is missing, and starting `llava serve` ($BIN) on a free loopback port.

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

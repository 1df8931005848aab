#!/usr/bin/env bash
# `llava serve --allow-remote-images` on the tiny model against a loopback file server
# (tests/remote_media_server.py). Without --allow-private-remote-images every URL that reaches a
# non-public address (127.0.0.1, localhost, 0.0.0.0, [::1], ::ffff:127.0.0.1, 169.254.169.254, 10/8,
# a decimal-encoded loopback) → 400 remote_image_not_public naming that flag. With it (the file
# server is on loopback): a remote PNG answers like the same data: URL; too big → 413 (also
# when streamed without Content-Length); not an image, 404, >3 redirects, a redirect to file:// → 400;
# a slow URL → 400 remote_image_timeout within the limit and without blocking other requests; without
# the flag http(s) → 400 naming it; file:// only inside --allowed-local-media. A good request follows
# each bad one. Prints RESULT <passed> <failed>; SKIP when python3's openai package is missing.
set -u
BIN=${LLAVA_BIN:-build/llava}
FIX=tests/fixtures
. tests/serve_lib.sh
serve_require_openai cli_serve_remote
if ! "$BIN" serve --help 2>/dev/null | grep -q -- --allow-private-remote-images; then
    echo "SKIP cli_serve_remote: $BIN serve has no --allow-private-remote-images"
    echo "RESULT 0 0"; exit 0
fi
T=$(mktemp -d /tmp/llava-serve-remote.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi; }

mkdir -p "$T/www"
cp $FIX/ref/images/small.png "$T/www/small.png"
head -c 3000000 /dev/urandom >"$T/www/big.png"           # over the 1 MiB limit below
printf 'this is not an image\n' >"$T/www/notimage.png"

python3 tests/remote_media_server.py "$T/www" >"$T/media.port" 2>"$T/media.log" &
pids+=($!)
mport=""
for _ in $(seq 1 100); do
    mport=$(sed -n 's/^PORT //p' "$T/media.port" 2>/dev/null)
    [ -n "$mport" ] && break
    sleep 0.1
done
check "media server starts" '[ -n "$mport" ]'

# start_server NAME ARGS...: sets $port (empty on failure) and ${NAME}_pid
start_server() {
    local name=$1; shift
    serve_start "$T/$name.log" -m $FIX/tiny-a --device cpu --max-tokens-default 4 "$@"
    pids+=($serve_pid)
    eval "${name}_pid=$serve_pid"
    port=$serve_port
}
start_server remote --allow-remote-images --allow-private-remote-images --remote-image-max-bytes 1048576 \
    --remote-image-timeout 2 --allowed-local-media "$T/www"
rport=$port
check "server with --allow-private-remote-images starts ($(tail -n 2 "$T/remote.log"))" '[ -n "$rport" ]'
start_server public --allow-remote-images --remote-image-timeout 2
uport=$port
check "server with only --allow-remote-images starts ($(tail -n 2 "$T/public.log"))" '[ -n "$uport" ]'
start_server plain
pport=$port
check "server without the flag starts ($(tail -n 2 "$T/plain.log"))" '[ -n "$pport" ]'
if [ -z "$mport" ] || [ -z "$rport" ] || [ -z "$uport" ] || [ -z "$pport" ]; then echo "RESULT $pass $fail"; exit 1; fi

out=$(python3 - "$rport" "$pport" "$mport" "$T/www" "$uport" 2>&1 <<'PY'
import base64, json, sys, threading, time, urllib.error, urllib.request
import openai

rport, pport, mport, www, uport = sys.argv[1:6]
IMG = "tests/fixtures/ref/images/small.png"
Q = "What is shown in this image?"
DATA = "data:image/png;base64," + base64.b64encode(open(IMG, "rb").read()).decode()
M = f"http://127.0.0.1:{mport}"
passed = failed = 0

def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {detail}"[:2000])

def msgs(url):
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": Q}]}]

def post(port, url, path="/v1/chat/completions", body=None):
    body = body or {"max_tokens": 4, "temperature": 0, "messages": msgs(url)}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())

client = openai.OpenAI(base_url=f"http://127.0.0.1:{rport}/v1", api_key="none", max_retries=0, timeout=60)
def ask(url):
    return client.chat.completions.create(model="tiny-a", messages=msgs(url), max_tokens=4, temperature=0,
                                          logprobs=True, top_logprobs=2)

ref = ask(DATA)
r = ask(M + "/small.png")
check("remote PNG answers as the data: URL", r.choices[0].message.content == ref.choices[0].message.content and
      r.usage == ref.usage, f"{r.choices[0].message.content!r} vs {ref.choices[0].message.content!r}")
check("remote PNG logprobs equal", r.choices[0].logprobs.content[0].logprob == ref.choices[0].logprobs.content[0].logprob)
good = ref.choices[0].message.content

def good_after(what, port=rport):
    s, b = post(port, DATA)
    check(f"good request after {what}", s == 200 and b["choices"][0]["message"]["content"] == good, f"{s} {b}")

def bad(what, url, status, code, words=(), port=rport, limit=None):
    t0 = time.time()
    s, b = post(port, url)
    dt = time.time() - t0
    err = b.get("error", {})
    ok = s == status and err.get("code") == code and all(w in err.get("message", "") for w in words)
    check(f"{what} -> {status} {code}", ok, f"{s} {b}")
    if limit is not None:
        check(f"{what} answered within {limit}s", dt < limit, f"{dt:.2f}s")
    good_after(what, port)

bad("too big (Content-Length)", M + "/big.png", 413, "image_too_large", ["1048576", "--remote-image-max-bytes"])
bad("too big (streamed, no Content-Length)", M + "/stream-big/3000000", 413, "image_too_large", limit=1.9)
bad("not an image", M + "/notimage.png", 400, "invalid_image")
bad("404 URL", M + "/missing.png", 400, "remote_image_fetch_failed", ["404", M + "/missing.png"])
bad("slow URL", M + "/slow", 400, "remote_image_timeout", [M + "/slow", "--remote-image-timeout 2"], limit=4.5)
bad("4 redirects", M + "/redirect/4", 400, "remote_image_fetch_failed", ["redirects"])
bad("redirect to file://", M + "/to-file", 400, "remote_image_fetch_failed", ["http"])
bad("closed port", "http://127.0.0.1:1/x.png", 400, "remote_image_fetch_failed")
bad("ftp:// URL", "ftp://127.0.0.1/x.png", 400, "invalid_image_url")
s, b = post(rport, M + "/redirect/3")
check("3 redirects are followed", s == 200 and b["choices"][0]["message"]["content"] == good, f"{s} {b}")

# a slow URL occupies only its own request thread
res = {}
th = threading.Thread(target=lambda: res.update(slow=post(rport, M + "/slow")))
th.start()
time.sleep(0.3)
t0 = time.time()
s, b = post(rport, M + "/small.png")
dt = time.time() - t0
th.join()
check("a request during a slow fetch is not blocked", s == 200 and dt < 1.5, f"{s} {dt:.2f}s")
check("the slow one still times out", res["slow"][0] == 400, str(res["slow"]))

# /v1/classify takes remote images too
s, b = post(rport, None, "/v1/classify", {"image": M + "/small.png", "labels": ["a cat", "a dog"]})
s2, b2 = post(rport, None, "/v1/classify", {"image": DATA, "labels": ["a cat", "a dog"]})
check("classify: remote equals data:", s == 200 and s2 == 200 and b["label"] == b2["label"] and
      abs(b["probability"] - b2["probability"]) < 1e-9, f"{s} {b} {b2}")

# file:// only inside --allowed-local-media
s, b = post(rport, f"file://{www}/small.png")
check("file:// inside --allowed-local-media works", s == 200 and b["choices"][0]["message"]["content"] == good, f"{s} {b}")
bad("file:// outside --allowed-local-media", "file:///etc/passwd", 400, "local_media_forbidden")

# the server with --allow-remote-images only: non-public destinations are refused, whatever the URL
# spells (checked on the address connected to, after name resolution), and the next request works
NP = ["is not public", "--allow-private-remote-images"]
bad("loopback URL (public only)", M + "/small.png", 400, "remote_image_not_public", NP + ["127.0.0.1"], port=uport)
bad("localhost name (public only)", f"http://localhost:{mport}/small.png", 400, "remote_image_not_public", NP,
    port=uport)
bad("decimal loopback (public only)", f"http://2130706433:{mport}/small.png", 400, "remote_image_not_public", NP,
    port=uport)
bad("0.0.0.0 (public only)", f"http://0.0.0.0:{mport}/small.png", 400, "remote_image_not_public", NP, port=uport)
bad("[::1] (public only)", f"http://[::1]:{mport}/small.png", 400, "remote_image_not_public", NP, port=uport)
bad("IPv4-mapped loopback (public only)", f"http://[::ffff:127.0.0.1]:{mport}/small.png", 400,
    "remote_image_not_public", NP, port=uport)
bad("cloud metadata (public only)", "http://169.254.169.254/latest/meta-data/", 400, "remote_image_not_public",
    NP + ["169.254.169.254"], port=uport)
bad("10/8 (public only)", "https://10.1.2.3/x.png", 400, "remote_image_not_public", NP, port=uport)
s, b = post(uport, None, "/v1/classify", {"image": M + "/small.png", "labels": ["a cat", "a dog"]})
check("classify: loopback URL refused (public only)", s == 400 and b["error"]["code"] == "remote_image_not_public",
      f"{s} {b}")
good_after("classify refused", uport)
try:
    uclient = openai.OpenAI(base_url=f"http://127.0.0.1:{uport}/v1", api_key="none", max_retries=0, timeout=60)
    uclient.chat.completions.create(model="tiny-a", messages=msgs(M + "/small.png"), max_tokens=4)
    check("openai client: loopback URL raises BadRequestError", False, "no error")
except openai.BadRequestError as ex:
    check("openai client: loopback URL raises BadRequestError",
          ex.status_code == 400 and "--allow-private-remote-images" in str(ex), str(ex))
good_after("openai client refused", uport)

# the server without --allow-remote-images
bad("http:// without the flag", M + "/small.png", 400, "remote_images_disabled", ["--allow-remote-images"], port=pport)
bad("https:// without the flag", "https://127.0.0.1:1/x.png", 400, "remote_images_disabled", port=pport)
bad("file:// without --allowed-local-media", f"file://{www}/small.png", 400, "local_media_disabled",
    ["--allowed-local-media"], port=pport)
print(f"RESULT {passed} {failed}")
PY
)
serve_tally client "$out"

for name in remote public plain; do
    eval "p=\$${name}_pid"
    kill -TERM "$p"
    wait "$p"; rc=$?
    check "$name server: SIGTERM exits 0 (rc $rc)" '[ $rc -eq 0 ]'
    check "$name server: no sanitizer reports" '! grep -qE "runtime error|AddressSanitizer|LeakSanitizer" "$T/$name.log"'
done
echo "RESULT $pass $fail"
[ $fail -eq 0 ]

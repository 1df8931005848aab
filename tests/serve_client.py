#!/usr/bin/env python3
"""Checks a running `llava serve` (tiny-a fixture) with the official openai client and raw HTTP.

usage: serve_client.py BASE_URL API_KEY LLAVA_BIN MODEL_DIR
Prints FAIL lines and `RESULT <passed> <failed>`.
"""
import base64, concurrent.futures, json, subprocess, sys, tempfile, os, time, urllib.request, urllib.error

import openai

BASE, KEY, BIN, MODEL = sys.argv[1:5]
IMG = "tests/fixtures/ref/images/small.png"
Q = "What is shown in this image?"
URL = "data:image/png;base64," + base64.b64encode(open(IMG, "rb").read()).decode()
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {detail}"[:2000])


def http(method, path, body=None, key=KEY, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def chat_body(max_tokens=4, **kw):
    b = {"model": "tiny-a", "max_tokens": max_tokens, "temperature": 0,
         "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": URL}},
                                                   {"type": "text", "text": Q}]}]}
    b.update(kw)
    return b


client = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0, timeout=120)

# reference: llava run --json, same inputs
ref = json.loads(subprocess.run([BIN, "run", "-m", MODEL, "-i", IMG, "-p", Q, "-n", "4", "--json", "--device", "cpu"],
                                capture_output=True, text=True, check=True).stdout)

b = chat_body()
r = client.chat.completions.create(model=b["model"], messages=b["messages"], max_tokens=4, temperature=0,
                                   logprobs=True, top_logprobs=2)
c = r.choices[0]
check("chat text equals llava run", c.message.content == ref["text"], f"{c.message.content!r} vs {ref['text']!r}")
check("chat finish_reason", c.finish_reason == ref["finish_reason"], c.finish_reason)
check("chat usage", r.usage.prompt_tokens == ref["prompt_tokens"] and r.usage.completion_tokens == 4, str(r.usage))
check("chat object/id", r.object == "chat.completion" and r.id.startswith("chatcmpl-"))
lp = c.logprobs.content if c.logprobs else []
check("logprobs present", len(lp) == 4 and len(lp[0].top_logprobs) == 2 and
      abs(lp[0].logprob - ref["logprobs"][0]["logprob"]) < 1e-6, str(lp[:1]))

# streaming
text, usage, n_chunks = "", None, 0
for ch in client.chat.completions.create(model=b["model"], messages=b["messages"], max_tokens=4, temperature=0,
                                         stream=True, stream_options={"include_usage": True}):
    n_chunks += 1
    if ch.choices and ch.choices[0].delta.content:
        text += ch.choices[0].delta.content
    if ch.usage:
        usage = ch.usage
check("stream text equals llava run", text == ref["text"], f"{text!r}")
check("stream usage chunk", usage is not None and usage.completion_tokens == 4, str(usage))

# stop string: the text is cut before it
if len(ref["text"]) > 3:
    stop = ref["text"][2:4]
    r = client.chat.completions.create(model=b["model"], messages=b["messages"], max_tokens=4, temperature=0, stop=[stop])
    check("stop string trims", r.choices[0].message.content == ref["text"][:ref["text"].find(stop)] and
          r.choices[0].finish_reason == "stop", repr(r.choices[0].message.content))
    check("stop string ends the generation early", r.usage.completion_tokens < 4, str(r.usage))

# guided choice == llava classify
labels = ["cat", "dog", "car", "tree"]
with tempfile.TemporaryDirectory() as d:
    lf = os.path.join(d, "labels.txt")
    open(lf, "w").write("\n".join(labels) + "\n")
    out = os.path.join(d, "out.jsonl")
    subprocess.run([BIN, "classify", "-m", MODEL, "--labels", lf, "--question", Q, "--device", "cpu", IMG, "-o", out],
                   capture_output=True, check=True)
    cls = json.loads(open(out).readline())
    out2 = os.path.join(d, "out2.jsonl")
    subprocess.run([BIN, "classify", "-m", MODEL, "--labels", lf, "--device", "cpu", IMG, "-o", out2],
                   capture_output=True, check=True)
    cls_default = json.loads(open(out2).readline())
r = client.chat.completions.create(model="tiny-a", messages=b["messages"], max_tokens=4,
                                   extra_body={"guided_choice": labels})
probs = r.choices[0].model_extra.get("label_probabilities") or {}
check("guided_choice label equals llava classify", r.choices[0].message.content == cls["label"],
      f"{r.choices[0].message.content} vs {cls['label']}")
check("guided_choice probabilities", set(probs) == set(labels) and abs(probs[cls["label"]] - cls["probability"]) < 1e-4,
      str(probs))
r = client.chat.completions.create(model="tiny-a", messages=b["messages"], extra_body={"structured_outputs": {"choice": labels}})
check("structured_outputs.choice", r.choices[0].message.content == cls["label"])

# /v1/classify (default question) == llava classify
st, body = http("POST", "/v1/classify", {"image": URL, "labels": labels})
rec = json.loads(body) if st == 200 else {}
check("/v1/classify", st == 200 and rec.get("label") == cls_default["label"] and
      abs(rec.get("probability", -1) - cls_default["probability"]) < 1e-4 and len(rec.get("top_k", [])) == 3, body[:300])

# models, health, metrics, SageMaker
check("/v1/models", [m.id for m in client.models.list().data] == ["tiny-a"])
check("/health", http("GET", "/health", key=None)[0] == 200)
check("/ping", http("GET", "/ping", key=None)[0] == 200)
st, body = http("POST", "/invocations", chat_body())
check("/invocations", st == 200 and json.loads(body)["choices"][0]["message"]["content"] == ref["text"], body[:300])

# 64 concurrent requests == the sequential answer
seq = client.chat.completions.create(model="tiny-a", messages=b["messages"], max_tokens=1, temperature=0)
want = seq.choices[0].message.content
def one(_):
    try:
        return client.chat.completions.create(model="tiny-a", messages=b["messages"], max_tokens=1,
                                              temperature=0).choices[0].message.content
    except Exception as e:  # noqa: BLE001
        return f"error {e}"
with concurrent.futures.ThreadPoolExecutor(64) as ex:
    got = list(ex.map(one, range(64)))
check("64 concurrent requests identical to sequential", all(g == want for g in got),
      str([g for g in got if g != want][:3]))

# bad inputs: status code, then a good request works
def good():
    st, body = http("POST", "/v1/chat/completions", chat_body(max_tokens=1))
    return st == 200

def bad(name, want_status, **kw):
    st, body = http("POST", kw.pop("path", "/v1/chat/completions"), kw.pop("body", None), **kw)
    try:
        err = json.loads(body)["error"]
        shape = isinstance(err["message"], str) and "type" in err and "param" in err and "code" in err
    except Exception:  # noqa: BLE001
        shape = False
    check(f"{name} -> {want_status}", st == want_status and shape, f"got {st} {body[:200]}")
    check(f"good request after {name}", good())

bad("invalid JSON", 400, raw=b'{"messages": [')
bad("bad base64", 400, body=chat_body(messages=[{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@notbase64"}}, {"type": "text", "text": "hi"}]}]))
bad("corrupt image", 400, body=chat_body(messages=[{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\ngarbage").decode()}},
    {"type": "text", "text": "hi"}]}]))
bad("n=2", 400, body=chat_body(n=2))
bad("wrong field type", 400, body=chat_body(temperature="hot"))
bad("too many images", 400, body=chat_body(messages=[{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": URL}}] * 3 + [{"type": "text", "text": "hi"}]}]))
bad("remote image URL", 400, body=chat_body(messages=[{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}, {"type": "text", "text": "hi"}]}]))
bad("body over the limit", 413, raw=b'{"x":"' + b"a" * (3 << 20) + b'"}')
bad("wrong api key", 401, body=chat_body(), key="wrong")
bad("unknown route", 404, path="/v1/nothing", body={})
bad("unknown model", 404, body=chat_body(model="gpt-4"))

# memory stays bounded: 2000 small requests (text only, 1 token), RSS of the server before and after
pid = os.environ.get("SERVER_PID")
def rss_kb():
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(next(l for l in f if l.startswith("VmRSS")).split()[1])
    except Exception:  # noqa: BLE001
        return None
def small(_):
    st, _b = http("POST", "/v1/chat/completions", {"model": "tiny-a", "max_tokens": 1, "temperature": 0,
                  "messages": [{"role": "user", "content": "Say one word."}]})
    return st
asan = "asan" in BIN
n_req = 300 if asan else 2000
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    first = list(ex.map(small, range(200)))
    before = rss_kb()
    rest = list(ex.map(small, range(n_req - 200)))
    after = rss_kb()
check(f"{n_req} small requests all answered 200", all(s == 200 for s in first + rest),
      str([s for s in first + rest if s != 200][:5]))
if pid and before and after and not asan:
    check("server memory bounded over 2000 requests (RSS growth < 32 MB after the first 200)",
          after - before < 32 * 1024, f"RSS {before} kB -> {after} kB")
    print(f"INFO server RSS after 200 requests {before} kB, after {n_req}: {after} kB")

# a client that leaves in the middle of a stream stops its generation (the engine is free for others)
def metric(name):
    _st, _body = http("GET", "/metrics")
    for line in _body.decode().splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None
def engine_idle(timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if metric("llava_num_requests_running") == 0 and metric("llava_num_requests_waiting") == 0:
            return True
        time.sleep(0.05)
    return False
engine_idle()
g0 = metric("llava_generation_tokens_total")
stream = client.chat.completions.create(model=b["model"], messages=[{"role": "user", "content": "Tell a long story."}],
                                        max_tokens=3000, temperature=0, stream=True)
got = 0
for ch in stream:
    got += 1
    if got >= 3:
        break
stream.close()
idle = engine_idle()
g1 = metric("llava_generation_tokens_total")
check("a client that leaves mid-stream stops its generation", idle and g0 is not None and g1 is not None and
      g1 - g0 < 2500, f"idle {idle}, {None if g0 is None or g1 is None else g1 - g0} of 3000 tokens generated")
check("a good request right after the disconnect", good())

# chats generate together (continuous batching): 12 different requests (images or not, greedy or
# seeded sampling, different lengths) sent at once answer what each answers alone, and the engine
# reports several chats running at the same time
def chat_n(i):
    msgs = b["messages"] if i % 2 == 0 else [{"role": "user", "content": f"Count to {i}."}]
    r = client.chat.completions.create(model="tiny-a", messages=msgs, max_tokens=5 + i % 6,
                                       temperature=0.9 if i % 3 else 0, top_p=0.95, seed=i)
    return r.choices[0].message.content, r.choices[0].finish_reason, r.usage.completion_tokens
alone = [chat_n(i) for i in range(12)]
engine_idle()
peak, done_watch = [0], []
def watch():
    while not done_watch:
        v = metric("llava_num_requests_running")
        peak[0] = max(peak[0], v or 0)
        time.sleep(0.002)
import threading
w = threading.Thread(target=watch)
w.start()
with concurrent.futures.ThreadPoolExecutor(12) as ex:
    together = list(ex.map(chat_n, range(12)))
done_watch.append(1)
w.join()
check("12 different chats at once answer what each answers alone", together == alone,
      str([(i, t, a) for i, (t, a) in enumerate(zip(together, alone)) if t != a][:2]))
check("chats ran together (running gauge > 1)", peak[0] > 1, f"peak running {peak[0]}")
print(f"INFO peak chats running together: {peak[0]:.0f}")

st, body = http("GET", "/metrics")
text = body.decode()
check("/metrics", st == 200 and "llava_http_requests_total" in text and 'status="400"' in text and
      "llava_num_requests_waiting" in text and "llava_http_request_duration_seconds_bucket" in text and
      "llava_images_total" in text, text[:300])

print(f"RESULT {passed} {failed}")

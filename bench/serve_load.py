#!/usr/bin/env python3
"""Load generator for `llava serve`, through the official openai client (docs/bench.md).

Sends N chat completions with at most C in flight and reports images/s, latency percentiles and
errors. Default mode `classify` is workload W1: one image (a data: URL) and the default
`llava classify` question, answered by label scoring over the labels given as vLLM's
`structured_outputs.choice` (what a vLLM client sends). `--mode chat` sends the image with a plain
prompt and `max_tokens` instead (free generation).

Closed loop (default, `--rate 0`): C workers, each sends its next request as soon as the last one
is answered: the server's saturation throughput. Open loop (`--rate R`): requests arrive at R per
second on average, with exponential gaps (Poisson arrivals), whether or not earlier ones are done;
at most C are sent at a time, and a request that waits for a free slot has that wait in its latency
(latency runs from its scheduled arrival, so a slow server is not hidden by a client that slows down
with it).

images/s = answered requests / wall time of the measured part (from the first send after the
warm-up to the last answer). Latencies are of answered requests, nearest-rank percentiles.
Requests are never retried (max_retries=0): a 429 or 5xx counts as an error.
Exit status: 0 when every measured request was answered, 1 when some failed, 2 on bad usage or
when the server cannot be used at all (every warm-up request failed).

usage: serve_load.py --images DIR_OR_FILES... [--base-url URL] [--api-key K] [--labels FILE]
                     [--requests N] [--concurrency C] [--rate R] [--warmup K] [--json] [...]
"""
import argparse, base64, concurrent.futures, json, math, os, random, sys, threading, time

import openai

HERE = os.path.dirname(os.path.abspath(__file__))
# src/engine/classify.h LLAVA_DEFAULT_QUESTION; the server replaces {labels} by the labels joined by ","
QUESTION = ("Fill in the blank: this is a photo of a {}, you should select the appropriate categories from the "
            "provided labels: [{labels}]")
MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


def die(msg):
    print(f"serve_load: {msg}", file=sys.stderr)
    sys.exit(2)


def image_files(args):
    files = []
    for a in args:
        if os.path.isdir(a):
            files += sorted(os.path.join(a, f) for f in os.listdir(a) if os.path.splitext(f)[1].lower() in MIME)
        elif os.path.isfile(a):
            files.append(a)
        else:
            die(f"--images {a}: no such file or directory")
    if not files:
        die("--images: no .jpg/.jpeg/.png/.webp files found")
    return files


def data_url(path):
    mime = MIME.get(os.path.splitext(path)[1].lower(), "image/jpeg")
    with open(path, "rb") as f:
        return f"data:{mime};base64," + base64.b64encode(f.read()).decode()


def read_labels(path):
    try:
        with open(path, encoding="utf-8") as f:
            labels = [l.strip() for l in f if l.strip()]
    except OSError as e:
        die(f"--labels {path}: {e.strerror}")
    if len(labels) < 2:
        die(f"--labels {path}: needs at least 2 labels, one a line")
    return labels


def percentile(sorted_values, p):
    """Nearest rank, as llava bench."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def error_text(e):
    if isinstance(e, openai.APIStatusError):
        msg = e.message
        if isinstance(e.body, dict) and isinstance(e.body.get("message"), str):
            msg = e.body["message"]
        return f"HTTP {e.status_code}: {msg}"[:300]
    return f"{type(e).__name__}: {e}"[:300]


class Load:
    """One run's requests: send() makes one, and records its latency or its error."""

    def __init__(self, client, model, urls, args, labels):
        self.client, self.model, self.urls, self.args, self.labels = client, model, urls, args, labels
        self.lock = threading.Lock()
        self.latencies, self.errors = [], []
        self.prompt_tokens = self.completion_tokens = 0
        self.last_done = 0.0

    def request(self, i):
        url = self.urls[i % len(self.urls)]
        a = self.args
        text = a.prompt if a.mode == "chat" else a.question
        messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                 {"type": "text", "text": text}]}]
        if a.mode == "chat":
            return self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=a.max_tokens,
                                                       temperature=0)
        return self.client.chat.completions.create(model=self.model, messages=messages,
                                                   extra_body={"structured_outputs": {"choice": self.labels}})

    def send(self, i, t_start=None):
        """t_start: when the request counts as sent (its scheduled arrival in open loop)."""
        t0 = time.perf_counter() if t_start is None else t_start
        try:
            r = self.request(i)
            err = None
            if self.args.mode == "classify" and r.choices[0].message.content not in self.labels:
                err = f"answer {r.choices[0].message.content!r} is not one of the labels"
        except Exception as e:  # every failure is a data point, never the end of the run
            r, err = None, error_text(e)
        t1 = time.perf_counter()
        with self.lock:
            self.last_done = max(self.last_done, t1)
            if err:
                self.errors.append(err)
            else:
                self.latencies.append(t1 - t0)
                if r.usage:
                    self.prompt_tokens += r.usage.prompt_tokens or 0
                    self.completion_tokens += r.usage.completion_tokens or 0


def run_closed(load, first, n, c):
    with concurrent.futures.ThreadPoolExecutor(max_workers=c) as pool:
        list(pool.map(load.send, range(first, first + n)))


def run_open(load, first, n, c, rate, seed):
    """Poisson arrivals at `rate`/s, at most c in flight (later arrivals wait for a slot, their
    latency counting from the arrival); returns the span of the arrival times (s)."""
    rng = random.Random(seed)
    t0 = t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=c) as pool:
        for k in range(n):
            t += rng.expovariate(rate)
            time.sleep(max(0.0, t - time.perf_counter()))
            pool.submit(load.send, first + k, t)
    return t - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:4]))
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1",
                    help="the server's OpenAI base URL (default %(default)s; /v1 is added when the URL has no path)")
    ap.add_argument("--api-key", default=os.environ.get("LLAVA_API_KEY") or "none",
                    help="bearer key (default $LLAVA_API_KEY, else none)")
    ap.add_argument("--model", help="model id to send (default: the first one /v1/models lists)")
    ap.add_argument("--images", nargs="+", required=True, metavar="PATH",
                    help="image files and/or directories (.jpg .jpeg .png .webp), read and base64-encoded once; "
                         "request i sends image i mod count")
    ap.add_argument("--labels", default=os.path.join(HERE, "labels30.txt"),
                    help="label file, one a line (default bench/labels30.txt, the 30 W1 hotel labels)")
    ap.add_argument("--question", default=QUESTION, help="classify mode: the user text ({labels} is replaced by the "
                    "server; default: llava classify's question)")
    ap.add_argument("--mode", choices=["classify", "chat"], default="classify",
                    help="classify: structured_outputs.choice over the labels (W1, default); chat: free generation")
    ap.add_argument("--prompt", default="What is shown in this image?", help="chat mode: the user text")
    ap.add_argument("--max-tokens", type=int, default=16, help="chat mode: max_tokens (default %(default)s)")
    ap.add_argument("-n", "--requests", type=int, default=64, help="measured requests (default %(default)s)")
    ap.add_argument("-c", "--concurrency", type=int, default=8, help="requests in flight at most (default %(default)s)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="open loop: mean arrivals per second, Poisson (default 0 = closed loop)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed requests first, closed loop (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=600.0, help="per request, seconds (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the arrival times (default %(default)s)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout instead of the text report")
    a = ap.parse_args()
    if a.requests < 1 or a.concurrency < 1 or a.warmup < 0 or a.rate < 0 or a.max_tokens < 1 or a.timeout <= 0:
        die("--requests, --concurrency and --max-tokens must be >= 1, --warmup and --rate >= 0, --timeout > 0")

    base = a.base_url.rstrip("/")
    if base.count("/") == 2:  # scheme://host[:port] without a path
        base += "/v1"
    labels = read_labels(a.labels) if a.mode == "classify" else []
    files = image_files(a.images)
    urls = [data_url(f) for f in files]
    client = openai.OpenAI(base_url=base, api_key=a.api_key, max_retries=0, timeout=a.timeout)
    model = a.model
    if not model:
        try:
            model = client.models.list().data[0].id
        except Exception as e:
            die(f"cannot list the models at {base}: {error_text(e)}")

    if a.warmup:
        warm = Load(client, model, urls, a, labels)
        run_closed(warm, 0, a.warmup, min(a.concurrency, a.warmup))
        if not warm.latencies:
            die(f"every warm-up request failed, e.g. {warm.errors[0]}")
    load = Load(client, model, urls, a, labels)
    t0 = time.perf_counter()
    arrivals_s = None
    if a.rate > 0:
        arrivals_s = run_open(load, a.warmup, a.requests, a.concurrency, a.rate, a.seed)
    else:
        run_closed(load, a.warmup, a.requests, a.concurrency)
    wall = max(load.last_done, t0) - t0

    lat = sorted(load.latencies)
    done = len(lat)
    ms = lambda v: None if v is None else round(v * 1000, 2)
    res = {
        "mode": a.mode, "base_url": base, "model": model, "images": len(urls), "labels": len(labels),
        "requests": a.requests, "concurrency": a.concurrency, "rate": a.rate,
        "loop": "open" if a.rate > 0 else "closed", "warmup": a.warmup,
        "completed": done, "errors": len(load.errors), "wall_s": round(wall, 4),
        "images_per_s": round(done / wall, 4) if wall > 0 else None,
        "offered_rate": round(a.requests / arrivals_s, 4) if arrivals_s else None,
        "latency_ms": {"p50": ms(percentile(lat, 50)), "p90": ms(percentile(lat, 90)), "p99": ms(percentile(lat, 99)),
                       "mean": ms(sum(lat) / done) if done else None, "max": ms(lat[-1] if lat else None)},
        "prompt_tokens": load.prompt_tokens, "completion_tokens": load.completion_tokens,
        "completion_tokens_per_s": round(load.completion_tokens / wall, 2) if wall > 0 else None,
        "error_examples": sorted(set(load.errors))[:5],
    }
    if a.json:
        print(json.dumps(res))
    else:
        loop = f"open loop at {a.rate:g}/s (offered {res['offered_rate']}/s)" if a.rate > 0 else "closed loop"
        what = f"classify over {len(labels)} labels" if a.mode == "classify" else f"chat, max_tokens {a.max_tokens}"
        L = res["latency_ms"]
        print(f"serve_load: {model} at {base}: {a.requests} requests ({what}, {len(urls)} images), "
              f"concurrency {a.concurrency}, {loop}, {a.warmup} warm-up")
        print(f"images/s      {res['images_per_s']}")
        print(f"latency ms    p50 {L['p50']}  p90 {L['p90']}  p99 {L['p99']}  mean {L['mean']}  max {L['max']}")
        print(f"completed     {done} of {a.requests} in {res['wall_s']} s")
        print(f"errors        {len(load.errors)}")
        if a.mode == "chat":
            print(f"tokens        {load.prompt_tokens} prompt, {load.completion_tokens} completion "
                  f"({res['completion_tokens_per_s']}/s)")
        for e in res["error_examples"]:
            print(f"  error: {e}")
    sys.exit(1 if load.errors else 0)


if __name__ == "__main__":
    main()

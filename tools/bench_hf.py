#!/usr/bin/env python3
"""Workload W1 through Hugging Face transformers, for the ratio next to `llava bench` (issue 5).

Same inputs as `llava bench`: the JPEG files it wrote (`llava bench ... --images-dir DIR` keeps them), the same
labels (default the 30 W1 labels, in order) and the same question, LlavaNextForConditionalGeneration in bf16 with
sdpa attention. For each batch size it runs every image through the processor and the model, in two modes:

  prefill   one forward over the prompt (the label-scoring equivalent's main cost; logits of the last position
            only when the installed transformers supports logits_to_keep)
  generate  generate(max_new_tokens=12, min_new_tokens=12, greedy): what the AWS/vLLM recipe does

and prints one JSON line per (batch, mode) with images/s three ways, then a summary line with the best batch of each
mode. Text goes to stderr, JSON to stdout.

  images_per_s             the model alone (JPEG decode and processor outside the timer): transformers' upper bound
  end_to_end_images_per_s  JPEG decode + processor + model, serial, as a plain transformers loop does
  pipelined_images_per_s   JPEG decode + processor in --workers DataLoader processes, overlapped with the model, as
                           `llava bench` overlaps its decode threads with the GPU; timed from the first batch's
                           arrival (the pipeline's fill is left out, which favours transformers)

    # real or kept checkpoint (llava bench --config C --random-weights --checkpoint-dir DIR keeps its weights)
    python3 tools/bench_hf.py -m MODEL_DIR --images /tmp/w1-jpegs --batches 1,8,16,32,48,64
    # random weights for a config (initialised on the GPU; tokenizer from tests/fixtures/tiny-a)
    python3 tools/bench_hf.py --config tests/fixtures/configs/llava-v1.6-mistral-7b --random-weights --images /tmp/w1-jpegs
"""
import argparse
import glob
import inspect
import json
import os
import sys
import time

import torch
from PIL import Image
from transformers import AutoTokenizer, LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor

try:
    from transformers import LlavaNextImageProcessorPil as ImageProcessor
except ImportError:
    from transformers import LlavaNextImageProcessor as ImageProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "tests", "fixtures", "tiny-a")

W1_LABELS = ["Pool", "Exterior", "Bar", "Lobby", "Room", "Suite", "Bathroom", "Restaurant", "Breakfast Area", "Gym",
             "Spa", "Sauna", "Meeting Room", "Ballroom", "Terrace/Patio", "Balcony", "View", "Garden", "Beach",
             "Parking", "Reception", "Kitchen", "Living Room", "Kids Club", "Business Center", "Elevator", "Hallway",
             "Facade at Night", "Aerial View", "Other"]
# src/engine/classify.h LLAVA_DEFAULT_QUESTION
QUESTION = ("Fill in the blank: this is a photo of a {}, you should select the appropriate categories from the "
            "provided labels: [{labels}]")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def load_labels(arg):
    if not arg:
        return list(W1_LABELS)
    if os.path.isfile(arg):
        with open(arg, encoding="utf-8") as f:
            labels = [ln.strip() for ln in f if ln.strip()]
    else:
        labels = [x.strip() for x in arg.split(",")]
    if not labels or any(not x for x in labels) or len(set(labels)) != len(labels):
        sys.exit(f"--labels {arg}: empty or duplicate labels")
    return labels


def image_paths(args, n):
    paths = []
    for a in args:
        if os.path.isdir(a):
            for ext in ("*.jpg", "*.jpeg", "*.png", "*.webp"):
                paths += glob.glob(os.path.join(a, ext))
        else:
            paths.append(a)
    paths = sorted(set(paths))
    if not paths:
        sys.exit("no images found (give llava bench --images-dir DIR, or image files)")
    if n and n > 0:  # cycle or cut to exactly n
        paths = [paths[i % len(paths)] for i in range(n)]
    return paths


def find_file(name, *dirs):
    for d in dirs:
        p = os.path.join(d, name)
        if d and os.path.isfile(p):
            return p
    sys.exit(f"{name} not found in any of {', '.join(d for d in dirs if d)}")


def build_processor(files_dir, donor_dir):
    """LlavaNextProcessor from the folder's files (tokenizer/template from donor_dir when the folder lacks them)."""
    tok_dir = files_dir if os.path.isfile(os.path.join(files_dir, "tokenizer.json")) else donor_dir
    tok = AutoTokenizer.from_pretrained(tok_dir)
    with open(find_file("preprocessor_config.json", files_dir, donor_dir)) as f:
        pp = json.load(f)
    ip = ImageProcessor(size=pp["size"], crop_size=pp["crop_size"], image_grid_pinpoints=pp["image_grid_pinpoints"],
                        image_mean=pp["image_mean"], image_std=pp["image_std"], resample=pp.get("resample", 3),
                        do_pad=True)
    with open(find_file("chat_template.json", files_dir, donor_dir)) as f:
        tmpl = json.load(f)["chat_template"]
    return LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                              num_additional_image_tokens=1, chat_template=tmpl)


def classify_prompt(proc, labels):
    """The prompt `llava classify` builds: chat template, the image, the question with these labels."""
    question = QUESTION.replace("{labels}", ",".join(labels))
    user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    return proc.apply_chat_template([user], add_generation_prompt=True, tokenize=False)


def load_model(a):
    kw = dict(attn_implementation="sdpa")
    if a.model:
        try:
            model = LlavaNextForConditionalGeneration.from_pretrained(a.model, dtype=torch.bfloat16, **kw)
        except TypeError:  # transformers < 4.56 spells it torch_dtype
            model = LlavaNextForConditionalGeneration.from_pretrained(a.model, torch_dtype=torch.bfloat16, **kw)
        return model.cuda().eval()
    cfg = LlavaNextConfig.from_pretrained(a.config)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(a.seed)
    with torch.device("cuda"):
        model = LlavaNextForConditionalGeneration(cfg).to(torch.bfloat16)
    return model.eval()


def sync():
    torch.cuda.synchronize()


class BatchInputs:
    """JPEG decode + processor for one batch of paths (also the DataLoader collate_fn, run in a worker process)."""

    def __init__(self, proc, prompt):
        self.proc, self.prompt = proc, prompt

    def __call__(self, chunk):
        imgs = [Image.open(p).convert("RGB") for p in chunk]
        return dict(self.proc(images=imgs, text=[self.prompt] * len(chunk), return_tensors="pt", padding=True))


def to_gpu(batch):
    inputs = {k: v.to("cuda", non_blocking=True) for k, v in batch.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    return inputs


def run_model(model, inputs, mode, fwd_kw):
    with torch.inference_mode():
        if mode == "prefill":
            model(**inputs, **fwd_kw)
        else:
            model.generate(**inputs, max_new_tokens=12, min_new_tokens=12, do_sample=False)


def run_batches(model, proc, prompt, paths, b, mode, fwd_kw):
    """Returns (model_seconds, processor_seconds, prompt_tokens) over all of paths in chunks of b."""
    t_model = t_proc = 0.0
    n_tok = 0
    make = BatchInputs(proc, prompt)
    for s in range(0, len(paths), b):
        t0 = time.perf_counter()
        inputs = to_gpu(make(paths[s:s + b]))
        sync()
        t1 = time.perf_counter()
        n_tok = int(inputs["input_ids"].shape[1])
        run_model(model, inputs, mode, fwd_kw)
        sync()
        t2 = time.perf_counter()
        t_proc += t1 - t0
        t_model += t2 - t1
    return t_model, t_proc, n_tok


def one_thread(_):
    torch.set_num_threads(1)  # workers: one core each, the rest for the main process


def run_pipelined(model, proc, prompt, paths, b, mode, fwd_kw, workers):
    """images/s with decode + processor in DataLoader workers, overlapped with the model; from the first batch."""
    dl = torch.utils.data.DataLoader(paths, batch_size=b, num_workers=workers, collate_fn=BatchInputs(proc, prompt),
                                     pin_memory=True, prefetch_factor=2, worker_init_fn=one_thread)
    t_first = None
    n = 0
    for batch in dl:
        if t_first is None:
            t_first = time.perf_counter()
        inputs = to_gpu(batch)
        run_model(model, inputs, mode, fwd_kw)
        n += int(inputs["input_ids"].shape[0])
    sync()
    return n / (time.perf_counter() - t_first)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", help="LLaVA-NeXT checkpoint folder")
    ap.add_argument("--config", help="config folder for --random-weights")
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--tokenizer-dir", default=TINY, help="tokenizer/template donor (default tests/fixtures/tiny-a)")
    ap.add_argument("--images", nargs="+", required=True, help="a directory of JPEGs (llava bench --images-dir) or files")
    ap.add_argument("-n", "--num-images", type=int, default=0, help="use exactly N images (cycling); default all")
    ap.add_argument("--labels", help="file (one a line) or comma list; default the 30 W1 labels")
    ap.add_argument("--batches", default="1,8,16,32,48,64")
    ap.add_argument("--modes", default="prefill,generate")
    ap.add_argument("--workers", type=int, default=8, help="DataLoader processes for the pipelined run (0: skip it)")
    ap.add_argument("--price-per-hour", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if bool(a.model) == bool(a.config) or (a.config and not a.random_weights):
        ap.error("give -m MODEL_DIR, or --config CONFIG --random-weights")
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this baseline is for the GPU machine")

    labels = load_labels(a.labels)
    paths = image_paths(a.images, a.num_images)
    files_dir = a.model or a.config
    proc = build_processor(files_dir, a.tokenizer_dir)
    prompt = classify_prompt(proc, labels)
    t0 = time.perf_counter()
    model = load_model(a)
    log(f"bench_hf: model loaded in {time.perf_counter() - t0:.1f} s; {len(paths)} images, {len(labels)} labels, "
        f"{torch.cuda.get_device_name(0)}, transformers {__import__('transformers').__version__}, torch {torch.__version__}")
    fwd_kw = {}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        fwd_kw["logits_to_keep"] = 1
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in ("prefill", "generate"):
            ap.error(f"--modes: unknown mode {m}")

    best = {}
    for b in [int(x) for x in a.batches.split(",") if x]:
        for mode in modes:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            try:
                run_batches(model, proc, prompt, paths[:b], b, mode, fwd_kw)  # warm-up on one batch
                t_model, t_proc, n_tok = run_batches(model, proc, prompt, paths, b, mode, fwd_kw)
                piped = run_pipelined(model, proc, prompt, paths, b, mode, fwd_kw, a.workers) if a.workers > 0 else None
            except torch.cuda.OutOfMemoryError:
                log(f"bench_hf: batch {b} {mode}: out of GPU memory, skipped")
                print(json.dumps({"engine": "transformers", "mode": mode, "batch": b, "error": "out of memory"}),
                      flush=True)
                torch.cuda.empty_cache()
                continue
            n = len(paths)
            r = {"engine": "transformers", "mode": mode, "batch": b, "images": n, "prompt_tokens": n_tok,
                 "labels": len(labels), "images_per_s": n / t_model, "end_to_end_images_per_s": n / (t_model + t_proc),
                 "pipelined_images_per_s": piped, "workers": a.workers if piped else None,
                 "processor_s_per_image": t_proc / n, "model_s": t_model,
                 "prompt_tokens_per_s": n * n_tok / t_model,
                 "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
                 "logits_to_keep": bool(fwd_kw) if mode == "prefill" else None}
            if a.price_per_hour is not None:
                r["usd_per_1000_images"] = a.price_per_hour / 3600 * (t_model + t_proc) / n * 1000
            print(json.dumps(r), flush=True)
            log(f"bench_hf: batch {b:3d} {mode:8s} {r['images_per_s']:7.2f} images/s (model), "
                f"{r['end_to_end_images_per_s']:7.2f} end to end (serial), "
                f"{piped or 0:7.2f} pipelined, {n_tok} prompt tokens, {r['peak_gib']:.1f} GiB")
            if mode not in best or r["images_per_s"] > best[mode]["images_per_s"]:
                best[mode] = r
    summary = {"engine": "transformers", "summary": True,
               "device": torch.cuda.get_device_name(0),
               "transformers": __import__("transformers").__version__, "torch": torch.__version__}
    for mode, r in best.items():
        summary[f"best_{mode}"] = {k: r[k] for k in ("batch", "images_per_s", "end_to_end_images_per_s",
                                                      "pipelined_images_per_s", "prompt_tokens", "peak_gib")}
        log(f"bench_hf: best {mode}: {r['images_per_s']:.2f} images/s at batch {r['batch']}")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()

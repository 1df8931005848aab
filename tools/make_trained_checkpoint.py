#!/usr/bin/env python3
"""Trains a small LLaVA-NeXT-Mistral (random init, the 7B's preprocessing, prompt and anyres grid) to
classify synthetic two-colour photos, and saves it as a Hugging Face checkpoint with held-out JPEGs
and their true labels: a model that is sure of clear images and unsure of mixed ones, to measure
what `--quantization fp8` changes on a trained model (random weights leave every label near a tie).
GPU machine (torch, transformers); a few minutes on one H100.

Photos: 550x412 (W1's size), an 8x6 grid of cells in two colours of an 8-colour palette plus noise;
the label is the colour that fills more cells (share uniform in [0.52, 0.95], so some photos are
close calls). The 8 labels are W1 hotel labels, one per colour. Training scores exactly what
`llava classify` scores: the prompt (chat template, image, W1 question with these labels), then
" this is a photo of {label}." and EOS (tools/hf_label_probs.py), cross-entropy on those tokens.

    python3 tools/make_trained_checkpoint.py --out /tmp/trained --images /tmp/tj/img --meta /tmp/tj
    llava classify -m /tmp/trained --labels /tmp/tj/labels.txt /tmp/tj/img --top-k all -o bf16.jsonl
    python3 tools/compare_top1.py /tmp/tj/truth.jsonl bf16.jsonl
"""
import argparse
import json
import math
import os
import shutil
import sys
import time
from multiprocessing import Pool

import numpy as np
import torch
from PIL import Image
from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_hf import W1_LABELS, build_processor  # noqa: E402
from hf_label_probs import label_prompt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "fixtures")
CFG7B = os.path.join(FIX, "configs", "llava-v1.6-mistral-7b")
PALETTE = [(220, 40, 40), (40, 170, 60), (40, 80, 220), (230, 200, 40), (160, 60, 200), (40, 200, 210),
           (240, 140, 30), (120, 120, 120)]
LABELS = W1_LABELS[:len(PALETTE)]
W, H, GX, GY = 550, 412, 8, 6


def photo(seed):
    """(uint8 HxWx3 image, label index) for one seed."""
    r = np.random.default_rng(seed)
    a, b = r.choice(len(PALETTE), 2, replace=False)
    share = r.uniform(0.52, 0.95)
    n = GX * GY
    cells = np.zeros(n, dtype=int)
    cells[r.choice(n, int(round(share * n)), replace=False)] = 1
    if cells.sum() * 2 <= n:  # ties round toward the majority colour
        cells[np.flatnonzero(cells == 0)[0]] = 1
    img = np.zeros((H, W, 3), dtype=np.float32)
    for k in range(n):
        y0, x0 = (k // GX) * H // GY, (k % GX) * W // GX
        y1, x1 = (k // GX + 1) * H // GY, (k % GX + 1) * W // GX
        img[y0:y1, x0:x1] = PALETTE[a if cells[k] else b]
    img += r.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), int(a)


_WORKER = {}


def worker_init(proc, prompt):
    _WORKER["proc"], _WORKER["prompt"] = proc, prompt
    torch.set_num_threads(1)


def pixels(seed):
    img, lab = photo(seed)
    enc = _WORKER["proc"](images=Image.fromarray(img), text=_WORKER["prompt"], return_tensors="pt")
    return enc["pixel_values"][0].to(torch.bfloat16), enc["image_sizes"][0], lab


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="checkpoint folder")
    ap.add_argument("--images", required=True, help="folder for the held-out JPEGs (nothing else goes there)")
    ap.add_argument("--meta", required=True, help="folder for labels.txt (the 8 labels) and truth.jsonl (true labels)")
    ap.add_argument("--train", type=int, default=1536, help="training photos")
    ap.add_argument("--test", type=int, default=256, help="held-out photos")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=512)
    a = ap.parse_args()
    torch.manual_seed(0)
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.images, exist_ok=True)
    os.makedirs(a.meta, exist_ok=True)

    # the model: the 7B's configuration at a small size (dimensions multiples of 16: the FP8 GEMMs' rule)
    cfg = LlavaNextConfig.from_pretrained(CFG7B)
    t = cfg.text_config
    t.hidden_size, t.intermediate_size, t.num_hidden_layers = a.hidden, 3 * a.hidden, a.layers
    t.num_attention_heads, t.num_key_value_heads, t.head_dim = a.hidden // 64, 2, 64
    v = cfg.vision_config
    v.hidden_size, v.intermediate_size, v.num_hidden_layers, v.num_attention_heads = 256, 1024, 6, 4
    cfg._attn_implementation = "sdpa"
    for f in ("preprocessor_config.json",):
        shutil.copy(os.path.join(CFG7B, f), a.out)
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.json", "processor_config.json"):
        shutil.copy(os.path.join(FIX, "tiny-a", f), a.out)
    proc = build_processor(a.out, os.path.join(FIX, "tiny-a"))
    prompt, conts = label_prompt(proc, LABELS)  # each label's continuation after the prompt's text tokens

    # data: the held-out photos as JPEGs (llava classify reads those), every photo's pixels once
    t0 = time.time()
    test_seeds = list(range(10**6, 10**6 + a.test))
    with open(os.path.join(a.meta, "labels.txt"), "w") as f:
        f.write("\n".join(LABELS) + "\n")
    with open(os.path.join(a.meta, "truth.jsonl"), "w") as f:
        for s in test_seeds:
            img, lab = photo(s)
            path = os.path.join(a.images, f"test{s - 10**6:04d}.jpg")
            Image.fromarray(img).save(path, quality=92)
            top = [{"label": LABELS[lab], "probability": 1.0}] + [
                {"label": x, "probability": 0.0} for i, x in enumerate(LABELS) if i != lab]
            f.write(json.dumps({"id": path, "image": path, "label": LABELS[lab], "probability": 1.0,
                                "top_k": top}) + "\n")
    enc = proc(images=Image.fromarray(photo(0)[0]), text=prompt, return_tensors="pt")
    prompt_ids = enc["input_ids"][0]
    with Pool(min(16, os.cpu_count() or 1), initializer=worker_init, initargs=(proc, prompt)) as pool:
        data = pool.map(pixels, range(a.train), chunksize=16)
    pix = torch.stack([d[0] for d in data]).cuda()
    sizes = torch.stack([d[1] for d in data]).cuda()
    labs = torch.tensor([d[2] for d in data])
    print(f"data: {a.train} training photos, {a.test} held out, {len(prompt_ids)} prompt tokens, "
          f"{time.time() - t0:.1f} s", flush=True)

    model = LlavaNextForConditionalGeneration(cfg).cuda().train()
    lm = model.model if hasattr(model, "model") else model
    n_par = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.0)
    warm = max(1, a.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / a.steps))))
    n_p = len(prompt_ids)
    g = torch.Generator().manual_seed(1)
    t0 = time.time()
    for step in range(a.steps):
        idx = torch.randint(0, a.train, (a.batch,), generator=g)
        cs = [conts[int(labs[i])] for i in idx]
        L = max(len(c) for c in cs)
        ids = torch.full((a.batch, n_p + L - 1), proc.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros_like(ids)
        tgt_pos, tgt = [], []
        for b, c in enumerate(cs):  # feed prompt + c[:-1]; position n_p-1+j predicts c[j]
            ids[b, :n_p] = prompt_ids
            ids[b, n_p:n_p + len(c) - 1] = torch.tensor(c[:-1])
            mask[b, :n_p + len(c) - 1] = 1
            tgt_pos += [(b, n_p - 1 + j) for j in range(len(c))]
            tgt += c
        ids, mask = ids.cuda(), mask.cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            hid = lm(input_ids=ids, attention_mask=mask, pixel_values=pix[idx.cuda()], image_sizes=sizes[idx.cuda()])
            hid = hid.last_hidden_state
            bi = torch.tensor([p[0] for p in tgt_pos], device="cuda")
            pi = torch.tensor([p[1] for p in tgt_pos], device="cuda")
            logits = model.lm_head(hid[bi, pi]).float()
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(tgt, device="cuda"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == a.steps - 1:
            print(f"step {step:4d} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} "
                  f"{time.time() - t0:.0f} s", flush=True)
    model = model.to(torch.bfloat16).eval()
    model.save_pretrained(a.out)
    print(f"wrote {a.out}: {n_par / 1e6:.1f} M parameters ({a.layers} layers, hidden {a.hidden}); "
          f"held-out JPEGs in {a.images}, labels.txt and truth.jsonl in {a.meta}", flush=True)


if __name__ == "__main__":
    main()

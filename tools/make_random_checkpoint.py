#!/usr/bin/env python3
"""Writes a full-size LLaVA-NeXT-Mistral-7B-shaped checkpoint with random bf16 weights, so the 7B path
(loading, memory, speed) is exercised without downloading the real one. The configuration files are
the published llava-v1.6-mistral-7b ones (tests/fixtures/configs), the tokenizer and chat template
those of the tiny fixtures (same Mistral tokenizer + <image>/<pad>). Weights: normal(0, 0.02) like
transformers' initializer, norms 1, built on the GPU when there is one, saved in shards of 4 GB.

    python3 tools/make_random_checkpoint.py --out /tmp/llava-7b-random
"""
import argparse
import json
import os
import shutil

import torch
from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "fixtures")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default=os.path.join(FIX, "configs", "llava-v1.6-mistral-7b"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cfg = LlavaNextConfig.from_pretrained(args.config)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(dev):
        model = LlavaNextForConditionalGeneration(cfg).to(torch.bfloat16)
    model.save_pretrained(args.out, max_shard_size="4GB")
    for f in ("preprocessor_config.json",):
        shutil.copy(os.path.join(args.config, f), args.out)
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.json", "processor_config.json"):
        shutil.copy(os.path.join(FIX, "tiny-a", f), args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {n / 1e9:.2f} B parameters", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Label probabilities of W1-style classification through Hugging Face transformers, as JSONL in the
format of `llava classify --top-k all`, to measure how another run agrees with them
(tools/compare_top1.py): e.g. `llava classify` in bf16 and with --quantization fp8 against
transformers in fp32 on a 7B checkpoint, on the GPU machine.

For each image the prompt (chat template, image, question with the labels) runs once; each label's
answer continuation (" " + answer, then EOS, as make_label_reference.py renders it) is scored by
teacher forcing on a copy of the prompt's KV cache, cropped back after each label. A label's
probability is the softmax over labels of its continuation's summed log-probabilities (what
src/engine/classify.c computes).

    python3 tools/hf_label_probs.py -m /tmp/r7b --images /tmp/w1-jpegs -n 64 --dtype fp32 -o hf_fp32.jsonl
"""
import argparse
import json
import os
import sys
import time

import torch
from PIL import Image
from transformers import LlavaNextForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_hf import TINY, build_processor, classify_prompt, image_paths, load_labels  # noqa: E402

ANSWER = "this is a photo of {label}."


def label_prompt(proc, labels):
    """The classify prompt (chat template, image, the question with these labels) as text, and each label's
    continuation as token ids: the tokens after the prompt's text tokens, then EOS (the same for every image)."""
    prompt = classify_prompt(proc, labels)
    eos = proc.tokenizer.convert_tokens_to_ids("</s>")
    p_text = proc.tokenizer(prompt, add_special_tokens=True)["input_ids"]
    conts = []
    for lab in labels:
        ids = proc.tokenizer(prompt + " " + ANSWER.replace("{label}", lab), add_special_tokens=True)["input_ids"]
        assert ids[:len(p_text)] == p_text, "prompt tokens are not a prefix"
        conts.append(ids[len(p_text):] + [eos])
    return prompt, conts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--images", nargs="+", required=True)
    ap.add_argument("-n", "--num-images", type=int, default=64)
    ap.add_argument("--labels", help="file or comma list; default the 30 W1 labels")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--tokenizer-dir", default=TINY)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dt = torch.float32 if a.dtype == "fp32" else torch.bfloat16
    labels = load_labels(a.labels)
    paths = sorted(set(image_paths(a.images, 0)))[:a.num_images]
    proc = build_processor(a.model, a.tokenizer_dir)
    model = LlavaNextForConditionalGeneration.from_pretrained(a.model, dtype=dt, attn_implementation="sdpa")
    model = model.cuda().eval()
    prompt, conts = label_prompt(proc, labels)
    conts = [torch.tensor(c).cuda() for c in conts]
    t0 = time.time()
    with open(a.output, "w") as out, torch.inference_mode():
        for path in paths:
            img = Image.open(path).convert("RGB")
            enc = proc(images=img, text=prompt, return_tensors="pt").to("cuda")
            p_ids = enc["input_ids"][0]
            r = model(input_ids=enc["input_ids"], pixel_values=enc["pixel_values"].to(dt),
                      image_sizes=enc["image_sizes"], use_cache=True)
            cache, first = r.past_key_values, torch.log_softmax(r.logits[0, -1].double(), -1)
            n_p = int(p_ids.shape[0])
            scores = []
            for cont in conts:
                s = float(first[int(cont[0])])
                if len(cont) > 1:
                    lg = model(input_ids=cont[None, :-1], past_key_values=cache, use_cache=True).logits
                    lsm = torch.log_softmax(lg[0].double(), -1)
                    s += float(sum(lsm[i, int(t)] for i, t in enumerate(cont[1:])))
                cache.crop(n_p)
                scores.append(s)
            sc = torch.tensor(scores, dtype=torch.float64)
            pr = torch.softmax(sc, 0).tolist()
            order = sorted(range(len(labels)), key=lambda i: -pr[i])
            out.write(json.dumps({"id": path, "image": path, "label": labels[order[0]], "probability": pr[order[0]],
                                  "top_k": [{"label": labels[i], "probability": pr[i]} for i in order]}) + "\n")
    print(f"{len(paths)} images in {time.time() - t0:.1f} s ({a.dtype})", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The transformers baseline for `llava classify`, on the same GPU: LlavaNextForConditionalGeneration
(bf16, sdpa) on N copies of a photo with the 30-label question, generating 12 tokens (what the AWS
recipe does with vLLM), batched; prints images/s per batch size. Also prefill-only throughput.

    python3 bench/hf_classify_baseline.py MODEL_DIR IMAGE [--batches 1,16]
"""
import argparse
import json
import time

import torch
from PIL import Image
from transformers import AutoTokenizer, LlavaNextForConditionalGeneration, LlavaNextProcessor

try:
    from transformers import LlavaNextImageProcessorPil as IP
except ImportError:
    from transformers import LlavaNextImageProcessor as IP

LABELS = ["Room", "Bathroom", "Lobby", "Pool", "Restaurant", "Bar", "Gym", "Spa", "Exterior", "Terrace/Patio", "View",
          "Meeting Room", "Kitchen", "Balcony", "Garden", "Beach", "Reception", "Hallway", "Elevator", "Parking",
          "Conference Hall", "Breakfast Area", "Lounge", "Sauna", "Kids Club", "Tennis Court", "Golf Course", "Shop",
          "Facade", "Night View"]
Q = ("Fill in the blank: this is a photo of a {}, you should select the appropriate categories from the provided "
     "labels: [" + ",".join(LABELS) + "]")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("image")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(a.model)
    pp = json.load(open(f"{a.model}/preprocessor_config.json"))
    ip = IP(size=pp["size"], crop_size=pp["crop_size"], image_grid_pinpoints=pp["image_grid_pinpoints"],
            image_mean=pp["image_mean"], image_std=pp["image_std"], resample=3, do_pad=True)
    tmpl = json.load(open(f"{a.model}/chat_template.json"))["chat_template"]
    proc = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                              num_additional_image_tokens=1, chat_template=tmpl)
    model = LlavaNextForConditionalGeneration.from_pretrained(a.model, dtype=torch.bfloat16,
                                                              attn_implementation="sdpa").cuda().eval()
    img = Image.open(a.image).convert("RGB")
    prompt = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": Q}]}],
                                      add_generation_prompt=True, tokenize=False)
    for b in [int(x) for x in a.batches.split(",")]:
        inputs = proc(images=[img] * b, text=[prompt] * b, return_tensors="pt", padding=True).to("cuda")
        n_tok = inputs["input_ids"].shape[1]
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=2, do_sample=False)  # warm-up
            torch.cuda.synchronize()
            t = time.time()
            for _ in range(a.repeats):
                model.generate(**inputs, max_new_tokens=12, min_new_tokens=12, do_sample=False)
            torch.cuda.synchronize()
            gen = (time.time() - t) / a.repeats
            t = time.time()
            for _ in range(a.repeats):
                model(**inputs)
            torch.cuda.synchronize()
            pre = (time.time() - t) / a.repeats
        print(json.dumps({"engine": "transformers", "batch": b, "prompt_tokens": n_tok,
                          "generate12_images_per_s": b / gen, "prefill_images_per_s": b / pre,
                          "peak_gib": torch.cuda.max_memory_allocated() / 2**30}), flush=True)


if __name__ == "__main__":
    main()

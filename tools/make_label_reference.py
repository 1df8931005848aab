#!/usr/bin/env python3
"""Reference label probabilities for `llava classify`, by teacher forcing in transformers.

For every label L the script renders the conversation [user: image + question, assistant: answer(L)]
with the model's chat template, exactly as a fine-tuning example is rendered, tokenizes the prompt part
and the prompt + " " + answer(L) string with the processor (BOS added, <image> expanded), appends EOS,
runs the model once over the whole sequence (fp32, eager attention, on the CPU), and sums the
log-probabilities of the continuation tokens (everything after the prompt, EOS included). Label
probabilities are the softmax of those sums. Output: JSON with the prompt, the continuation ids, the
scores and the probabilities per (model, image, label set).

    python3 tools/make_label_reference.py --fixtures tests/fixtures --out tests/fixtures/ref/labels.json
"""
import argparse
import json
import os

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import AutoTokenizer, LlavaNextForConditionalGeneration, LlavaNextProcessor

try:
    from transformers import LlavaNextImageProcessorPil as ImageProcessor
except ImportError:
    from transformers import LlavaNextImageProcessor as ImageProcessor

QUESTION = ("Fill in the blank: this is a photo of a {}, you should select the appropriate categories from the "
            "provided labels: [{labels}]")
ANSWER = "this is a photo of {label}."
LABEL_SETS = {
    "hotel": ["Room", "Bathroom", "Lobby", "Pool", "Restaurant", "Bar", "Gym", "Spa", "Exterior", "Terrace/Patio",
              "View", "Meeting Room"],
    "short": ["cat", "dog", "car"],
}
CASES = [("tiny-a", "landscape.jpg", "hotel", None, None), ("tiny-a", "portrait.png", "hotel", None, None),
         ("tiny-a", "small.png", "short", None, None),
         ("tiny-a", "tall.jpg", "short", "Which animal is this? Options: {labels}", "It is a {label}"),
         ("tiny-b", "landscape.png", "hotel", None, None), ("tiny-b", "square.jpg", "short", None, None)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="tests/fixtures")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out = {"versions": {"transformers": transformers.__version__, "torch": torch.__version__},
           "default_question": QUESTION, "default_answer": ANSWER, "label_sets": LABEL_SETS, "cases": []}
    models = {}
    for mname, image, lset, q, a in CASES:
        mdir = os.path.join(args.fixtures, mname)
        if mname not in models:
            model = LlavaNextForConditionalGeneration.from_pretrained(mdir, dtype=torch.float32,
                                                                      attn_implementation="eager").eval()
            tok = AutoTokenizer.from_pretrained(mdir)
            with open(os.path.join(mdir, "preprocessor_config.json")) as f:
                pp = json.load(f)
            ip = ImageProcessor(size=pp["size"], crop_size=pp["crop_size"], image_grid_pinpoints=pp["image_grid_pinpoints"],
                                image_mean=pp["image_mean"], image_std=pp["image_std"], resample=3, do_pad=True)
            with open(os.path.join(mdir, "chat_template.json")) as f:
                tmpl = json.load(f)["chat_template"]
            proc = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=14,
                                      vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                      chat_template=tmpl)
            models[mname] = (model, proc)
        model, proc = models[mname]
        labels = LABEL_SETS[lset]
        question = (q or QUESTION).replace("{labels}", ",".join(labels))
        answer_t = a or ANSWER
        img = Image.open(os.path.join(args.fixtures, "ref", "images", image))
        user = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
        prompt = proc.apply_chat_template([user], add_generation_prompt=True, tokenize=False)
        p_ids = proc(images=img, text=prompt, return_tensors="pt")["input_ids"][0]
        scores, conts = [], []
        for lab in labels:
            answer = answer_t.replace("{label}", lab)
            full = proc.apply_chat_template([user, {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
                                            tokenize=False)
            assert full.startswith(prompt + " " + answer), (full, prompt, answer)
            enc = proc(images=img, text=prompt + " " + answer, return_tensors="pt")
            ids = enc["input_ids"][0]
            assert torch.equal(ids[:len(p_ids)], p_ids), "prompt tokens are not a prefix"
            ids = torch.cat([ids, torch.tensor([tok_eos(proc)])])
            cont = ids[len(p_ids):]
            with torch.no_grad():
                logits = model(input_ids=ids[None], pixel_values=enc["pixel_values"],
                               image_sizes=enc["image_sizes"]).logits[0].double()
            lsm = torch.log_softmax(logits, dim=-1)
            s = sum(float(lsm[len(p_ids) - 1 + i, int(t)]) for i, t in enumerate(cont))
            scores.append(s)
            conts.append(cont.tolist())
        sc = np.array(scores)
        probs = np.exp(sc - sc.max())
        probs /= probs.sum()
        out["cases"].append({"model": mname, "image": image, "labels": lset, "question": q, "answer": a,
                             "prompt": prompt, "prompt_tokens": int(len(p_ids)), "continuations": conts,
                             "scores": scores, "probabilities": probs.tolist()})
        print(mname, image, lset, "top", labels[int(np.argmax(probs))], float(probs.max()), flush=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


def tok_eos(proc):
    return proc.tokenizer.convert_tokens_to_ids("</s>")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Builds the tiny LLaVA-NeXT test models and their Hugging Face reference outputs.

Run where torch + transformers + Pillow are installed (the GPU machine has them; the math runs
on the CPU in float32 with the eager attention, so the numbers are the fp32 reference):

    python3 tools/make_reference.py --base-tokenizer PATH/TO/mistral-7b/tokenizer.json --out DIR

Writes, under DIR (copy into tests/fixtures/):
  tiny-a/   single model.safetensors in the names transformers v5 saves, BF16 weights
  tiny-b/   the same kind of model with other sizes (GQA 3, head_dim set explicitly), saved in the
            legacy llava-hf names (language_model.model.*, vision_tower.*, ...) and sharded in two
            files with model.safetensors.index.json, as the published checkpoints are
  ref/images/<shape>.{png,jpg}        the test images (synthetic, seeded)
  ref/pixels-<image>.safetensors.gz   processor output: pixel values stored as the uint8 values they
                                      normalize from (the script checks the round trip), image size,
                                      image-token count
  ref/<model>-<image>.safetensors.gz  input_ids, last-position logits, 8 greedy tokens
  ref/tiny-a-landscape.png-debug.safetensors.gz  intermediate tensors for one case
  manifest.json                       versions, prompt, cases

The weights are random but scaled so that logits spread (std-0.02 inits give near-ties, which would
make greedy tokens depend on rounding).
"""
import argparse
import gzip
import io
import json
import math
import os
import platform
import shutil
import sys

import numpy as np
import PIL
import torch
import transformers
from PIL import Image, ImageDraw, ImageFilter
from safetensors.numpy import save as st_save
from safetensors.torch import save_file as st_save_torch
from tokenizers import AddedToken, Tokenizer
from transformers import (
    CLIPVisionConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
    MistralConfig,
    PreTrainedTokenizerFast,
)

try:
    from transformers import LlavaNextImageProcessorPil as ImageProcessor
except ImportError:  # transformers v4: the slow processor is the PIL one
    from transformers import LlavaNextImageProcessor as ImageProcessor

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'][0]['text'] + '\\n<</SYS>>\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}{{' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '</s> '}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
PROMPT = "What is shown in this image?"

MODELS = {
    "tiny-a": dict(
        vision=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2),
        text=dict(hidden_size=16, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2),
        vision_feature_layer=-2, seed=1),
    "tiny-b": dict(
        vision=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4),
        text=dict(hidden_size=24, intermediate_size=56, num_hidden_layers=3, num_attention_heads=3,
                  num_key_value_heads=1, head_dim=8),
        vision_feature_layer=-1, seed=2),
}
# (name, width, height)
SHAPES = [("landscape", 550, 412), ("portrait", 412, 550), ("square", 400, 400), ("tall", 300, 900),
          ("small", 200, 150), ("float1000", 1000, 750)]


def make_image(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([
        128 + 100 * np.sin(x / (17 + seed) + y / 53),
        128 + 90 * np.cos(y / (23 + seed) - x / 71),
        128 + 80 * np.sin((x + y) / (31 + 2 * seed)),
    ], axis=-1)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(5, max(6, w // 3))), y0 + int(rng.integers(5, max(6, h // 3)))
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=col)
    img = img.filter(ImageFilter.GaussianBlur(1.2))
    arr = np.asarray(img).astype(np.int16) + rng.integers(-3, 4, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def gz_save(path, tensors, meta=None):
    data = st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=meta)
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as f:
        f.write(data)


def build_tokenizer(base_path, out_dir):
    tok = Tokenizer.from_file(base_path)
    tok.add_special_tokens([AddedToken("<image>", special=True, normalized=False),
                            AddedToken("<pad>", special=True, normalized=False)])
    assert tok.token_to_id("<image>") == 32000 and tok.token_to_id("<pad>") == 32001
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>", padding_side="left")
    fast.save_pretrained(out_dir)
    return PreTrainedTokenizerFast.from_pretrained(out_dir)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layer_norm" in name and name.endswith("weight") \
                    or "layrnorm" in name and name.endswith("weight") or name.endswith("layernorm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() >= 2 and ("embed" not in name or "patch_embedding" in name):
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / math.sqrt(fan_in)))
            else:  # embeddings, class embedding, image_newline
                p.copy_(torch.randn(p.shape, generator=g))
        emb = model.get_input_embeddings().weight
        emb[32001].zero_()  # <pad> row is zero in the published checkpoint
        for p in model.parameters():  # exactly representable in bf16, the stored dtype
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


# published llava-hf names (transformers v5 keeps the CLIP tower as model.vision_tower.<...> in memory)
LEGACY = [("model.language_model.", "language_model.model."), ("model.vision_tower.", "vision_tower.vision_model."),
          ("model.multi_modal_projector.", "multi_modal_projector."), ("model.image_newline", "image_newline"),
          ("lm_head.", "language_model.lm_head.")]


def save_legacy_sharded(model, out_dir):
    sd = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    renamed = {}
    for k, v in sd.items():
        for new, old in LEGACY:
            if k.startswith(new):
                k = old + k[len(new):]
                break
        renamed[k] = v
    names = sorted(renamed)
    half = len(names) // 2
    shards = [names[:half], names[half:]]
    weight_map, total = {}, 0
    for i, part in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        st_save_torch({k: renamed[k] for k in part}, os.path.join(out_dir, fn), metadata={"format": "pt"})
        for k in part:
            weight_map[k] = fn
            total += renamed[k].numel() * 2
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return sorted(sd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-tokenizer", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out = args.out
    os.makedirs(os.path.join(out, "ref", "images"), exist_ok=True)
    manifest = {"versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                             "Pillow": PIL.__version__, "numpy": np.__version__, "python": platform.python_version(),
                             "image_processor": ImageProcessor.__name__},
                "prompt": PROMPT, "models": {}, "images": {}, "cases": []}

    # images: PNG and JPEG of every shape
    images = []
    for i, (name, w, h) in enumerate(SHAPES):
        img = make_image(w, h, 10 + i)
        for ext in ("png", "jpg"):
            fn = f"{name}.{ext}"
            path = os.path.join(out, "ref", "images", fn)
            if ext == "png":
                img.save(path, optimize=True)
            else:
                img.save(path, quality=90)
            images.append(fn)

    image_processor = ImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                     image_grid_pinpoints=PINPOINTS, image_mean=CLIP_MEAN, image_std=CLIP_STD,
                                     resample=3, do_pad=True, do_center_crop=True, do_convert_rgb=True)
    mean32 = np.array(CLIP_MEAN, np.float32)[None, :, None, None]
    std32 = np.array(CLIP_STD, np.float32)[None, :, None, None]

    for mname, spec in MODELS.items():
        mdir = os.path.join(out, mname)
        os.makedirs(mdir, exist_ok=True)
        tokenizer = build_tokenizer(args.base_tokenizer, mdir)
        vcfg = CLIPVisionConfig(image_size=336, patch_size=14, projection_dim=32, **spec["vision"])
        tcfg = MistralConfig(vocab_size=32064, rope_theta=1000000.0, rms_norm_eps=1e-5, max_position_embeddings=4096,
                             sliding_window=None, pad_token_id=32001, bos_token_id=1, eos_token_id=2,
                             tie_word_embeddings=False, **spec["text"])
        cfg = LlavaNextConfig(vision_config=vcfg, text_config=tcfg, image_token_index=32000,
                              projector_hidden_act="gelu", vision_feature_select_strategy="default",
                              vision_feature_layer=spec["vision_feature_layer"], image_grid_pinpoints=PINPOINTS,
                              tie_word_embeddings=False, image_seq_length=576)
        torch.manual_seed(spec["seed"])
        model = LlavaNextForConditionalGeneration(cfg)
        randomize(model, spec["seed"])
        model.generation_config.eos_token_id = 2
        model.generation_config.bos_token_id = 1
        model.generation_config.pad_token_id = 32001
        if mname == "tiny-a":
            model.to(torch.bfloat16).save_pretrained(mdir)
            with open(os.path.join(mdir, "config.json")) as f:
                c = json.load(f)
        else:
            model.config.save_pretrained(mdir)
            model.generation_config.save_pretrained(mdir)
            save_legacy_sharded(model, mdir)
        # chat template and processor files as published (chat_template.json, preprocessor_config.json)
        with open(os.path.join(mdir, "chat_template.json"), "w") as f:
            json.dump({"chat_template": CHAT_TEMPLATE}, f, indent=2)
        pp = {"image_processor_type": "LlavaNextImageProcessor", "processor_class": "LlavaNextProcessor",
              "aspect_ratio_setting": "anyres", "crop_size": {"height": 336, "width": 336}, "do_center_crop": True,
              "do_convert_rgb": True, "do_normalize": True, "do_pad": True, "do_rescale": True, "do_resize": True,
              "image_grid_pinpoints": PINPOINTS, "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "resample": 3,
              "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 336}}
        with open(os.path.join(mdir, "preprocessor_config.json"), "w") as f:
            json.dump(pp, f, indent=2)
        with open(os.path.join(mdir, "processor_config.json"), "w") as f:
            json.dump({"image_token": "<image>", "num_additional_image_tokens": 1, "patch_size": 14,
                       "processor_class": "LlavaNextProcessor", "vision_feature_select_strategy": "default"}, f,
                      indent=2)
        for junk in ("chat_template.jinja",):
            p = os.path.join(mdir, junk)
            if os.path.exists(p):
                os.remove(p)

        # The reference runs the model as transformers loads it from the directory we ship.
        ref = LlavaNextForConditionalGeneration.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager")
        ref.eval()
        mine = dict(model.state_dict())
        for k, v in ref.state_dict().items():
            assert torch.equal(v.float(), mine[k].float()), f"{mname}: {k} changed on reload"
        manifest["models"][mname] = {"files": sorted(os.listdir(mdir)), "config": cfg.to_dict(),
                                     "hf_keys": sorted(ref.state_dict())[:8]}

        processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                                       vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                       chat_template=CHAT_TEMPLATE)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        manifest["prompt_text"] = prompt

        for fn in images:
            if mname == "tiny-b" and fn not in ("landscape.png", "portrait.jpg", "small.png", "tall.jpg"):
                continue
            img = Image.open(os.path.join(out, "ref", "images", fn))
            inputs = processor(images=img, text=prompt, return_tensors="pt")
            pv = inputs["pixel_values"][0].numpy().astype(np.float32)  # (tiles, 3, 336, 336)
            n_img_tok = int((inputs["input_ids"][0] == 32000).sum())
            if fn not in manifest["images"]:
                u8 = np.clip(np.rint((pv.astype(np.float64) * std32 + mean32) * 255.0), 0, 255).astype(np.uint8)
                recon = ((u8.astype(np.float64) * (1 / 255)).astype(np.float32) - mean32) / std32
                err = float(np.abs(recon - pv).max())
                assert err <= 1e-6, f"{fn}: uint8 round trip differs by {err}"
                W, H = img.size
                gz_save(os.path.join(out, "ref", f"pixels-{fn}.safetensors.gz"),
                        {"pixel_u8": u8, "image_size": np.array([H, W], np.int32),
                         "image_tokens": np.array([n_img_tok], np.int32)})
                manifest["images"][fn] = {"width": W, "height": H, "tiles": int(pv.shape[0]),
                                          "image_tokens": n_img_tok, "roundtrip_max_err": err,
                                          "mode": img.mode}
            with torch.no_grad():
                captured = {}
                hook = None
                debug = mname == "tiny-a" and fn == "landscape.png"
                if debug:
                    def pre(mod, a, kw):
                        captured["inputs_embeds"] = kw["inputs_embeds"].detach().clone()
                    hook = ref.model.language_model.register_forward_pre_hook(pre, with_kwargs=True)
                o = ref(**inputs)
                if hook:
                    hook.remove()
                logits = o.logits[0, -1].float().numpy()
                gen = ref.generate(**inputs, max_new_tokens=8, do_sample=False)
                greedy = gen[0, inputs["input_ids"].shape[1]:].numpy().astype(np.int32)
                if debug:
                    vt = ref.model.vision_tower(inputs["pixel_values"][0].float(), output_hidden_states=True)
                    hs = vt.hidden_states[spec["vision_feature_layer"]].float().numpy()
                    gz_save(os.path.join(out, "ref", f"{mname}-{fn}-debug.safetensors.gz"),
                            {"vision_hidden": hs, "inputs_embeds": captured["inputs_embeds"][0].float().numpy()})
            ids = inputs["input_ids"][0].numpy().astype(np.int32)
            gz_save(os.path.join(out, "ref", f"{mname}-{fn}.safetensors.gz"),
                    {"input_ids": ids, "logits": logits, "greedy": greedy})
            manifest["cases"].append({"model": mname, "image": fn, "prompt_tokens": int(ids.shape[0]),
                                      "image_tokens": n_img_tok, "greedy": greedy.tolist(),
                                      "text": tokenizer.decode(greedy.tolist(), skip_special_tokens=True)})
            print(mname, fn, "tokens", ids.shape[0], "image_tokens", n_img_tok, "greedy", greedy.tolist(), flush=True)

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()

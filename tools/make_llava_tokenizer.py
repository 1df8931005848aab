#!/usr/bin/env python3
"""make_llava_tokenizer.py — build the LLaVA-NeXT (Mistral) tokenizer fixture.

Reads the Mistral-7B tokenizer.json from the shared fixtures (32000 pieces, Prepend/Replace
normalizer, byte fallback), adds the two special tokens that llava-hf/llava-v1.6-mistral-7b-hf
has on top of it with Hugging Face `tokenizers` itself — "<image>" (id 32000) and "<pad>"
(id 32001), special=True, normalized=False, no strip, not single-word — and writes:

  tests/fixtures/tokenizer/tokenizer.json          (saved by `tokenizers`; merges as [a, b] pairs)
  tests/fixtures/tokenizer/tokenizer_config.json   (LlamaTokenizer-style, llava-hf values)

Usage: python3 tools/make_llava_tokenizer.py [--shared ../shared] [--out tests/fixtures/tokenizer]
"""
import argparse
import json
import os
import sys

import tokenizers
from tokenizers import AddedToken, Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def added(content):
    return AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.environ.get("LLAVA_SHARED", os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "tokenizer"))
    args = ap.parse_args()

    src = os.path.join(args.shared, "fixtures", "tokenizers", "mistral-7b", "tokenizer.json")
    tok = Tokenizer.from_file(src)
    if tok.get_vocab_size(with_added_tokens=False) != 32000:
        sys.exit(f"{src}: expected 32000 base pieces, got {tok.get_vocab_size(with_added_tokens=False)}")
    n = tok.add_special_tokens([added("<image>"), added("<pad>")])
    if n != 2 or tok.token_to_id("<image>") != 32000 or tok.token_to_id("<pad>") != 32001:
        sys.exit("adding <image>/<pad> did not give ids 32000/32001")

    os.makedirs(args.out, exist_ok=True)
    tok_path = os.path.join(args.out, "tokenizer.json")
    # Compact form: keeps the fixture small; `tokenizers` writes merges as [a, b] pairs.
    tok.save(tok_path, pretty=False)

    # Sanity: the saved file loads back and matches the canonical LLaVA prompt shape.
    back = Tokenizer.from_file(tok_path)
    ids = back.encode("[INST] <image>\nWhat is shown in this image? [/INST]").ids
    assert ids[0] == 1 and 32000 in ids, ids

    def dec(content):
        return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False, "special": True}

    # tokenizer_config.json in the shape transformers writes for llava-hf/llava-v1.6-mistral-7b-hf
    # (LlamaTokenizer, legacy SentencePiece spacing, BOS added, left padding for batched generation).
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {
            "0": dec("<unk>"),
            "1": dec("<s>"),
            "2": dec("</s>"),
            "32000": dec("<image>"),
            "32001": dec("<pad>"),
        },
        "additional_special_tokens": [],
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": True,
        "model_max_length": 32768,
        "pad_token": "<pad>",
        "padding_side": "left",
        "processor_class": "LlavaNextProcessor",
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    with open(os.path.join(args.out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {tok_path} ({os.path.getsize(tok_path)} bytes, tokenizers {tokenizers.__version__}) "
          f"and tokenizer_config.json")


if __name__ == "__main__":
    main()

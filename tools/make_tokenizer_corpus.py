#!/usr/bin/env python3
"""make_tokenizer_corpus.py — reference encodings/decodings for the tokenizer test.

Generates a fixed-seed corpus of strings that stress the Mistral/Llama SentencePiece-BPE
tokenizer (many scripts, emoji and ZWJ sequences, whitespace runs, digits, code, URLs, long
words, special tokens inside text, LLaVA prompts, random code points that need byte fallback),
runs Hugging Face `tokenizers` on each with tests/fixtures/tokenizer/tokenizer.json and writes
tests/fixtures/tokenizer/corpus.json:

  {"tokenizers_version": "...", "seed": N,
   "cases":  [{"text": s, "ids": encode(s, add_special_tokens=True).ids,
               "ids_nospecial": ... add_special_tokens=False ...,
               "dec": decode(ids, skip_special_tokens=False),
               "dec_skip": decode(ids, skip_special_tokens=True)}, ...],
   "decode_cases": [{"ids": [...], "dec": ..., "dec_skip": ...}, ...]}

"variants" are small tokenizers that exercise options the LLaVA tokenizer does not use (unk
fusing, ignore_merges, legacy merges with duplicates, partial byte fallback, subword prefix and
suffix, no decoder / post-processor, added tokens with lstrip / rstrip / single_word /
normalized=true): each has either a whole "tokenizer" object or "extra_added_tokens" to append to
the fixture's added_tokens, plus its own "cases" in the same form as above.

"decode_cases" are random id lists (isolated and mixed <0xXX> byte pieces, invalid UTF-8 runs,
special tokens, ids past the end of the vocabulary) that exercise the decoder on its own.
To keep the file small, "ids_nospecial" is stored only when it differs from "ids" without its
leading BOS (the test derives it otherwise).

Usage: python3 tools/make_tokenizer_corpus.py [--tokenizer PATH] [--out PATH] [--seed N]
"""
import argparse
import json
import os
import random
import sys

import tokenizers
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# --- building blocks -------------------------------------------------------------------------
SENTENCES = [
    # Latin, with accents
    "The quick brown fox jumps over the lazy dog.",
    "Ça va? Où est la bibliothèque? Je voudrais un café crème, s'il vous plaît.",
    "Größenwahn und Äpfel: die Straße ist überfüllt, öffnen Sie bitte das Fenster.",
    "El niño comió jalapeños en el año pasado; ¿quién sabe por qué? ¡Olé!",
    "São Paulo é a maior cidade do Brasil, com população de milhões.",
    "Łódź, Kraków i Gdańsk to piękne miasta; źdźbło trawy.",
    "Þetta er íslenska: ég heiti Jón og bý í Reykjavík.",
    "Türkçe: Iğdır'da ılık bir gün, şehir çok güzel.",
    "Tiếng Việt: Xin chào, tôi tên là Nguyễn Văn Ánh.",
    "Dansk: Æbler og ørreder på øen; Åbenrå.",
    "Română: Știința și țara mea, în București.",
    "Čeština: Příliš žluťoučký kůň úpěl ďábelské ódy.",
    # Cyrillic
    "Привет, как дела? Москва — столица России.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Українська мова: Їжак і ґудзик, євро та йогурт.",
    "Български: Щастие и любов за всички.",
    # Greek
    "Γειά σου Κόσμε! Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    # CJK
    "你好，世界！今天天气很好，我们去公园散步吧。",
    "酒店大堂宽敞明亮，前台服务周到。",
    "日本語のテキスト：東京は日本の首都です。ひらがなとカタカナ。",
    "ホテルのロビーはとても広くて、プールもあります。",
    "한국어 텍스트: 서울은 대한민국의 수도입니다. 안녕하세요!",
    "繁體中文：臺灣的夜市很熱鬧。",
    # Arabic, Hebrew, Persian
    "مرحبا بالعالم! القاهرة هي عاصمة مصر.",
    "العربية: فندق جميل مع مسبح وإطلالة على البحر.",
    "שלום עולם! ירושלים היא עיר עתיקה.",
    "فارسی: سلام، حال شما چطور است؟",
    # Indic, Thai, others
    "नमस्ते दुनिया! भारत एक विशाल देश है।",
    "हिन्दी में होटल का कमरा बहुत साफ़ था।",
    "বাংলা ভাষা: আমি তোমাকে ভালোবাসি।",
    "தமிழ்: வணக்கம் உலகம்!",
    "สวัสดีชาวโลก ประเทศไทยมีอาหารอร่อย",
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "ქართული ენა: გამარჯობა!",
    "Հայերեն: Բարեւ աշխարհ:",
    "አማርኛ: ሰላም ለዓለም",
    "ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ",
    "ខ្មែរ: សួស្តីពិភពលោក",
    "ລາວ: ສະບາຍດີ",
    "မြန်မာ: မင်္ဂလာပါ",
    "Ελληνικά και English mixed με 123 αριθμούς.",
    # Hotel-photo flavoured English
    "A spacious hotel room with two queen beds, a flat-screen TV and a balcony overlooking the sea.",
    "The lobby features marble floors, a grand staircase and a 24-hour front desk.",
    "Outdoor swimming pool surrounded by palm trees and sun loungers.",
    "Breakfast buffet: croissants, fresh fruit, eggs Benedict & espresso.",
    "Bathroom with a rain shower, double vanity, and complimentary toiletries.",
]

WORDS = [w for s in SENTENCES for w in s.split()] + [
    "grabbed", "Terrace/Patio", "photo", "hotel", "room", "pool", "lobby", "bed", "bathroom",
    "internationalization", "antidisestablishmentarianism", "floccinaucinihilipilification",
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "don't", "won't", "it's", "O'Reilly", "e-mail", "co-operate", "naïve", "façade", "coöperate",
]

LABELS = [
    "Terrace/Patio", "Bathroom", "Bedroom", "Lobby", "Pool", "Restaurant", "Bar/Lounge",
    "Fitness Center", "Spa", "Exterior", "Beach", "View", "Meeting Room", "Kitchen",
    "Living Room", "Balcony", "Reception", "Garden", "Parking", "Hallway", "Breakfast Area",
    "Sauna", "Game Room", "Children's Play Area", "Rooftop", "Suite", "Dining Area",
]

QUESTIONS = [
    "What is shown in this image?", "Describe the image in detail.",
    "Fill in the blank: this is a photo of a {}", "Is there a pool in this photo?",
    "How many beds are in the room?", "What type of room is this? Answer with one word.",
    "Classify this hotel photo.", "Was zeigt dieses Bild?", "この画像には何が写っていますか？",
    "Что изображено на этой картинке?", "¿Qué muestra esta imagen?",
]

EMOJI = [
    "😀", "😂", "🥲", "🦙", "🔥", "👍", "👍🏽", "👍🏿", "❤️", "✨", "🎉", "🏨", "🛏️", "🏊‍♀️",
    "👨‍👩‍👧‍👦", "👩‍💻", "🧑🏾‍🚀", "🏳️‍🌈", "🏴‍☠️", "👁️‍🗨️", "🇫🇷", "🇯🇵", "🇺🇸", "🇧🇷", "🇪🇺",
    "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣", "#️⃣", "*️⃣", "©️", "™️", "☕", "⚽", "🀄", "🃏", "🫠", "🪿", "🧋",
]

SPECIALS = ["<image>", "<pad>", "<s>", "</s>", "<unk>"]
NEAR_SPECIALS = ["<image", "image>", "<imag>", "< image>", "<IMAGE>", "<<image>>", "<s", "</s",
                 "<0x0A>", "<0xFF>", "<0x41>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "▁",
                 "▁▁", "▁the", "<pad", "<unk", "</s >", "<s/>"]

WHITESPACE = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n ",
              "\u00a0", "\u3000", "\u2003", "\u200b", "\u2028", "\u2029", "\x0b", "\x0c",
              "\u202f", "\u205f", "\ufeff", "\u180e", "\u200d", "\u200c", "\u2060"]

PUNCT = list(".,;:!?-—–…'\"`~@#$%^&*()[]{}<>/\\|_+=") + ["«", "»", "„", "“", "”", "‘", "’",
                                                          "¿", "¡", "§", "¶", "†", "•", "°",
                                                          "€", "£", "¥", "₹", "₿", "©", "®"]

CODE = [
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; i++) { sum += a[i]; }",
    "#include <stdio.h>\nint main(void) { printf(\"hello\\n\"); return 0; }",
    "SELECT name, COUNT(*) FROM hotels WHERE stars >= 4 GROUP BY city;",
    "const f = async () => { await fetch('/api/v1/rooms?id=42&sort=desc'); };",
    "<div class=\"room\"><img src=\"pool.jpg\" alt=\"Pool\"/></div>",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
    "x = np.zeros((3, 336, 336), dtype=np.float32)\nprint(x.shape)",
    "if __name__ == '__main__':\n\tmain()\n",
    "git commit -m \"fix: tokenizer\" && make test SAN=1",
    "$ ls -la /usr/local/bin | grep -E '^-rwx' > out.txt 2>&1",
    "fn main() { let v: Vec<u32> = (0..10).map(|x| x * x).collect(); }",
    "\\begin{equation} E = mc^2 \\end{equation}",
    "| col1 | col2 |\n|------|------|\n| a    | b    |",
]

URLS = [
    "https://huggingface.co/llava-hf/llava-v1.6-mistral-7b-hf/blob/main/tokenizer.json",
    "http://example.com/path?query=1&other=two#frag",
    "mailto:someone@example.org", "ftp://files.example.net/pub/README.txt",
    "www.hotel-paradise.com/rooms/deluxe-king?check_in=2024-05-01&nights=3",
    "https://例え.テスト/パス", "file:///home/user/images/IMG_0001.JPG",
]

NUMBERS = ["0", "1", "42", "1234", "1234.5", "3.14159", "-17", "+1 (555) 010-2030", "1,000,000",
           "2024-05-01", "12:30:45", "1e-9", "0xDEADBEEF", "100%", "$19.99", "€5,50", "٣٤٥",
           "१२३", "一二三", "Ⅻ", "½", "²³", "1st", "2nd", "3rd", "007", "3.0.1", "192.168.0.1"]

# Code point ranges to sample random characters from (surrogates excluded). Many of these are
# outside the 32000-piece vocabulary and must take the byte-fallback path.
RANGES = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x250, 0x2FF), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
    (0x530, 0x58F), (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F),
    (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x20A0, 0x20CF), (0x2100, 0x214F),
    (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2500, 0x257F), (0x2600, 0x26FF), (0x2700, 0x27BF),
    (0x3000, 0x303F), (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xF8FF),
    (0xF900, 0xFAFF), (0xFB00, 0xFB4F), (0xFE00, 0xFE0F), (0xFF00, 0xFFEF), (0xFFF0, 0xFFFD),
    (0x10000, 0x1007F), (0x10330, 0x1034F), (0x1D400, 0x1D7FF), (0x1F300, 0x1F6FF),
    (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF), (0xE0000, 0xE007F), (0xF0000, 0xFFFFD),
    (0x100000, 0x10FFFD), (0x1, 0x1F),
]


def rand_cp(rng):
    lo, hi = rng.choice(RANGES)
    return chr(rng.randint(lo, hi))


def gen_cases(rng):
    out = []
    add = out.append

    # 1. Hand-picked edge cases.
    fixed = ["", " ", "  ", "   ", " " * 17, "\n", "\t", "\r\n", "\r", "\n\n\n", " \n", "\n ",
             "a", "A", " a", "a ", " a ", "  a  ", "hello", " hello", "hello world", "Hello World!",
             "grabbed", " grabbed", "           grabbed", "\ttabs\t\t\t\tout here", "ax\n####\nboo",
             "镇", "🦙", "🦙Ꙋ", "Ꙋ🦙", "this is a photo of Terrace/Patio.",
             "Hotel lobby, 2 beds & a pool! 1234.5 — café",
             "▁", "▁▁", "▁hello", "hello▁world", " ▁ ", "<0x0A>", "<0x0A><0x0B>", "\u2581\u2581x",
             "<image>", "<image><image>", "<image> <image>", " <image>", "<image> ", " <image> ",
             "<image>\n", "\n<image>", "a<image>b", "<<image>>", "<image<image>>", "<imag", "<image",
             "<s>", "</s>", "<pad>", "<unk>", "<s></s>", "<s> </s>", " <s>", "<s> ", "<s><s>", "</s></s>",
             "<s>hello</s>", "hello</s>", "</s> [INST]", "<pad><pad><pad>", "<unk>x<unk>",
             "[INST] <image>\nWhat is shown in this image? [/INST]",
             "[INST] <image>\nWhat is shown in this image? [/INST] A hotel room.</s> [INST] And the bed? [/INST]",
             "[INST] <image>\n<image>\nCompare the two photos. [/INST]",
             "<<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\n[INST] <image>\nHi [/INST]",
             "USER: <image>\nWhat is this? ASSISTANT:",
             "\u00a0", "\u3000", "\u200b", "\ufeff", "\ufeffhello", "e\u0301", "\u0301", "\ufffd",
             "\U0010FFFD", "\U000E0001", "\x7f", "\x01\x02\x03", "\x1b[31mred\x1b[0m",
             "a" * 300, "ab" * 200, " " * 100, "\n" * 50, "\t" * 40, "😀" * 30, "镇" * 50,
             "x" + " " * 64 + "y", "1" * 100, "1234567890" * 10, "." * 80, "-" * 120, "=" * 64,
             "".join(chr(c) for c in range(0x20, 0x7F)),
             "".join(chr(c) for c in range(0xA0, 0x180)),
             "<image>" * 40,
             "[INST] " + "<image>" * 30 + "\nDescribe. [/INST]",
             ]
    for s in fixed:
        add(s)
    for w in WHITESPACE:
        add(w)
        add(w + "word")
        add("word" + w)
        add("a" + w + "b")
        add(w + "<image>" + w)
    for s in NEAR_SPECIALS:
        add(s)
        add("x" + s + "y")
        add(" " + s + " <image>")
    for e in EMOJI:
        add(e)
        add("I love it " + e + "!")
    for s in SENTENCES + CODE + URLS:
        add(s)
    for n in NUMBERS:
        add(n)
        add("Room " + n)
    for w in WORDS[:120]:
        add(w)

    # 2. LLaVA prompts: hotel-photo labels and questions.
    for lab in LABELS:
        add("this is a photo of " + lab + ".")
        add("[INST] <image>\nFill in the blank: this is a photo of a {} [/INST] " + lab)
        add("[INST] <image>\nWhat type of hotel photo is this? [/INST] " + lab + "</s>")
    for q in QUESTIONS:
        add("[INST] <image>\n" + q + " [/INST]")
        add("[INST] <image>\n" + q + " [/INST] " + rng.choice(LABELS) + "</s> [INST] Why? [/INST]")
        add("<s>[INST] <image>\n" + q + " [/INST]")

    # 3. Random compositions.
    def piece():
        r = rng.random()
        if r < 0.30:
            return rng.choice(WORDS)
        if r < 0.40:
            return rng.choice(WHITESPACE)
        if r < 0.48:
            return rng.choice(PUNCT)
        if r < 0.55:
            return rng.choice(NUMBERS)
        if r < 0.62:
            return rng.choice(EMOJI)
        if r < 0.70:
            return "".join(rand_cp(rng) for _ in range(rng.randint(1, 4)))
        if r < 0.76:
            return rng.choice(SPECIALS)
        if r < 0.80:
            return rng.choice(NEAR_SPECIALS)
        if r < 0.85:
            return rng.choice(LABELS)
        if r < 0.90:
            return " " * rng.randint(1, 6)
        return rng.choice(SENTENCES)

    def joined(k):
        parts = [piece() for _ in range(k)]
        sep = rng.choice([" ", "", " ", "\n", " "])
        return sep.join(parts)

    while len(out) < 1500:
        add(joined(rng.randint(1, 12)))
    # random code point soup (byte fallback, rare scripts)
    for _ in range(250):
        add("".join(rand_cp(rng) for _ in range(rng.randint(1, 24))))
    # whitespace soup
    for _ in range(120):
        add("".join(rng.choice(WHITESPACE + ["a", "b", "<image>", "."]) for _ in range(rng.randint(1, 16))))
    # digit soup
    for _ in range(80):
        add("".join(rng.choice("0123456789., ") for _ in range(rng.randint(1, 30))))
    # long words (made of random letters, sometimes accented)
    for _ in range(60):
        alpha = rng.choice(["abcdefghijklmnopqrstuvwxyz", "aeiouyàéèüöäß", "абвгдежзиклмнопрст",
                            "αβγδεζηθικλμνξοπρστ", "的一是不了人我在有他这中大来上"])
        add("".join(rng.choice(alpha) for _ in range(rng.randint(30, 400))))
    # a few long mixed documents
    for _ in range(20):
        add(joined(rng.randint(60, 160)))
    # emoji sequences
    for _ in range(60):
        add("".join(rng.choice(EMOJI) for _ in range(rng.randint(2, 8))))
    return out


def gen_decode_cases(rng, vocab_size):
    byte_ids = list(range(3, 259))  # <0x00>..<0xFF>
    cases = []
    for i in range(300):
        k = rng.randint(0, 24)
        ids = []
        for _ in range(k):
            r = rng.random()
            if r < 0.35:
                ids.append(rng.choice(byte_ids))
            elif r < 0.45:
                ids.append(rng.choice([0, 1, 2, 32000, 32001]))
            elif r < 0.50:
                ids.append(rng.randint(vocab_size, vocab_size + 50))  # unknown ids are skipped
            else:
                ids.append(rng.randint(0, vocab_size - 1))
        cases.append(ids)
    # Structured byte runs: valid multi-byte characters, truncated and stray continuation bytes.
    for s in ["é", "镇", "🦙", "€", "\U0010FFFD"]:
        b = s.encode("utf-8")
        full = [3 + x for x in b]
        cases.append(full)
        cases.append(full[:-1])
        cases.append(full[1:])
        cases.append([28705] + full + [13] + full[:-1] + [1] + full)
    cases.append([3 + 0x80])
    cases.append([3 + 0xFF, 3 + 0xFE])
    cases.append([3 + 0xC0, 3 + 0x80])  # overlong
    cases.append([3 + 0xED, 3 + 0xA0, 3 + 0x80])  # encoded surrogate
    cases.append([1, 28705, 28705, 2])
    cases.append([28705])
    cases.append([28705, 28705])
    cases.append([])
    return cases


# --- variants: small tokenizers for options the LLaVA tokenizer leaves at their defaults ------
STD_NORMALIZER = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                      {"type": "Replace", "pattern": {"String": " "},
                                                       "content": "\u2581"}]}
STD_DECODER = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
    {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
STD_POST = {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}


def special(content, i):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def mini_tokenizer(vocab_list, merges, **model_opts):
    model = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False}
    model.update(model_opts)
    model["vocab"] = {p: i for i, p in enumerate(vocab_list)}
    model["merges"] = merges
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [special("<unk>", 0), special("<s>", 1), special("</s>", 2)],
            "normalizer": STD_NORMALIZER, "pre_tokenizer": None, "post_processor": STD_POST,
            "decoder": STD_DECODER, "model": model}


MINI_VOCAB = ["<unk>", "<s>", "</s>", "\u2581", "a", "b", "c", "d", "ab", "bc", "abc", "\u2581a", "\u2581ab",
              "\u2581abc", "cd", "\u2581cab", "ca", "\u2581b", "\u2581c", "\u2581\u2581", "bcd", "\u2581d",
              "<0xC3>", "<0xA9>", "<0x0A>", "<0x20>"]
MINI_MERGES = ["b c", "a b", "\u2581 a", "\u2581a b", "ab c", "c d", "\u2581ab c", "bc d", "c a",
               "\u2581 b", "\u2581 c", "\u2581 \u2581", "\u2581 d"]
MINI_TEXTS = ["abc", "xyz abc", "abxxc", "a b c", "ééé", "abcd", "", " ", "  ", "<s>abc</s>", "cab", " cab",
              "cabcab", "dcba", "a\nb", "éxé", "üé", "xéy", "é", "bcdbcd abcd", "b c d", "qq", "q q",
              "abcabcabc", "<unk>", "a<unk>b", "\t", "ca b", "  ab  ", "bbbb", "cccc", "aaaa"]


def variant_defs():
    import copy
    out = []

    def mini(name, merges=None, **opts):
        return {"name": name, "tokenizer": mini_tokenizer(MINI_VOCAB, merges or MINI_MERGES, **opts),
                "texts": MINI_TEXTS}

    out.append(mini("unk_no_fuse"))
    out.append(mini("unk_fuse", fuse_unk=True))
    out.append(mini("ignore_merges", ignore_merges=True))
    out.append(mini("no_unk_token", unk_token=None))
    out.append(mini("byte_fallback_partial", byte_fallback=True))
    out.append(mini("byte_fallback_partial_fuse", byte_fallback=True, fuse_unk=True))
    # legacy merges with a #version line and a repeated pair (the later rank wins)
    out.append(mini("legacy_dup_merges", merges=["#version: 0.2"] + MINI_MERGES[:4] + ["c a", "b c"] +
                    MINI_MERGES[4:]))
    # the same merges as [a, b] pairs, in a different order (ranks change the result)
    rev = [m.split(" ") for m in reversed(MINI_MERGES)]
    out.append(mini("pair_merges_reversed", merges=rev))

    # continuing_subword_prefix / end_of_word_suffix, no normalizer, no decoder, no post-processor
    chars = "abc"
    vocab = ["<unk>"]
    for ch in chars:
        vocab += [ch, "##" + ch, ch + "</w>", "##" + ch + "</w>"]
    merges = [["a", "##b"], ["ab", "##c</w>"], ["##b", "##c"], ["a", "##b</w>"], ["##c", "##a"],
              ["c", "##a</w>"], ["##b", "##a</w>"]]
    vocab += ["ab", "abc</w>", "##bc", "ab</w>", "##ca", "ca</w>", "##ba</w>"]
    tok = mini_tokenizer(vocab, merges, continuing_subword_prefix="##", end_of_word_suffix="</w>")
    tok["added_tokens"] = [special("<unk>", 0)]
    tok["normalizer"] = None
    tok["decoder"] = None
    tok["post_processor"] = None
    out.append({"name": "prefix_suffix", "tokenizer": tok,
                "texts": ["abc", "ab", "a", "cab", "ba", "bca", "abcabc", "cca", "x", "axb", "", "abcba"]})

    # the LLaVA fixture with more added tokens: lstrip/rstrip, single_word, normalized=true
    extra = [
        {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": True, "normalized": False, "special": True},
        {"content": "[WORD]", "single_word": True, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
        {"content": "hotel", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False},
        {"content": "Pool", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": True},
        {"content": "[SEP]", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
        {"content": "<image>x", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
    ]
    out.append({"name": "llava_extra_added", "extra_added_tokens": extra, "texts": None})

    # the LLaVA fixture without decoder and post-processor, and a Replace-only normalizer
    out.append({"name": "llava_no_decoder_no_post", "patch": {"decoder": None, "post_processor": None,
                "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}},
                "texts": None})
    # What transformers 5.17's LlamaTokenizer class builds from the llava-hf files (checked on the GPU
    # machine: AutoTokenizer(...).backend_tokenizer): no normalizer, Metaspace(always, no split) and
    # no unk_token. It differs from tokenizer.json for text that starts with a space (also after an
    # added token such as "</s> [INST]").
    out.append({"name": "transformers_v5_llama", "patch": {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": False}},
        "model_patch": {"unk_token": None}, "texts": "corpus"})
    out.append({"name": "metaspace_first_split", "patch": {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}},
        "texts": None})
    out.append({"name": "metaspace_never_decoder_seq", "patch": {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never", "split": True},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never"}]}},
        "texts": None})
    return out


def extra_texts(rng):
    toks = ["<mask>", "[WORD]", "hotel", "Pool", "[SEP]", "<image>", "<image>x", "<pad>", "<s>", "</s>"]
    near = [" ", "  ", "\t", "\n", "\u3000", "\u00a0", "a", "é", "镇", "😀", ".", "-", "_", "1", "x",
            "Hotel", "hotels", "pool", "Pools", "\u2581", "WORD", "[WORD", "mask"]
    out = ["[WORD]", "a [WORD] b", "a[WORD]b", "é[WORD]", "[WORD]é", "镇[WORD]镇", "😀[WORD]😀", "_[WORD]",
           "1[WORD]", "-[WORD]-", "[WORD][WORD]", "[WORD] [WORD]", " <mask> ", "a<mask>b", "a \t<mask>\n b",
           "<mask><mask>", " <mask>  <mask> ", "\u3000<mask>\u3000", "hotel", " hotel", "the hotel pool",
           "Pool", " Pool", "hotelPool", "<image>x", "<image>xx", "<image> x", "[SEP][SEP]", "a[SEP]b"]
    while len(out) < 260:
        out.append("".join(rng.choice(toks if rng.random() < 0.4 else near) for _ in range(rng.randint(1, 10))))
    return out


def run_cases(tok, texts):
    cases = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=True).ids
        ids_ns = tok.encode(t, add_special_tokens=False).ids
        c = {"text": t, "ids": ids}
        if ids_ns != ids[1:]:
            c["ids_nospecial"] = ids_ns
        c["dec"] = tok.decode(ids, skip_special_tokens=False)
        c["dec_skip"] = tok.decode(ids, skip_special_tokens=True)
        cases.append(c)
    return cases


def make_variants(rng, fixture_path, corpus_texts):
    with open(fixture_path, encoding="utf-8") as f:
        base = json.load(f)
    out = []
    for v in variant_defs():
        entry = {"name": v["name"]}
        if "tokenizer" in v:
            doc = v["tokenizer"]
            entry["tokenizer"] = doc
            texts = v["texts"]
        elif "extra_added_tokens" in v:
            doc = json.loads(json.dumps(base))
            # ids as HF's loader assigns them: an existing piece keeps its id, a new one gets the next
            vocab, nxt, extra = doc["model"]["vocab"], 32002, []
            for t in v["extra_added_tokens"]:
                if t["content"] in vocab:
                    tid = vocab[t["content"]]
                else:
                    tid, nxt = nxt, nxt + 1
                extra.append(dict(t, id=tid))
            doc["added_tokens"] += extra
            entry["extra_added_tokens"] = extra
            texts = extra_texts(rng)
        else:
            doc = json.loads(json.dumps(base))
            doc.update(v["patch"])
            doc["model"].update(v.get("model_patch", {}))
            entry["patch"] = v["patch"]
            if "model_patch" in v:
                entry["model_patch"] = v["model_patch"]
            texts = corpus_texts[:150]
            if v["texts"] == "corpus":  # plus every corpus string where it differs from tokenizer.json
                ref, var = Tokenizer.from_str(json.dumps(base)), Tokenizer.from_str(json.dumps(doc))
                texts = texts + [t for t in corpus_texts[150:] if ref.encode(t).ids != var.encode(t).ids]
            texts = texts + [t for t in extra_texts(rng) if t not in texts][:60]
        tok = Tokenizer.from_str(json.dumps(doc))
        entry["cases"] = run_cases(tok, texts)
        out.append(entry)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "tests", "fixtures", "tokenizer", "tokenizer.json"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "tokenizer", "corpus.json"))
    ap.add_argument("--seed", type=int, default=20241125)
    args = ap.parse_args()

    tok = Tokenizer.from_file(args.tokenizer)
    rng = random.Random(args.seed)
    texts = gen_cases(rng)
    seen, uniq = set(), []
    for t in texts:
        if t not in seen:
            seen.add(t)
            uniq.append(t)
    if len(uniq) < 2000:
        sys.exit(f"only {len(uniq)} distinct strings")

    cases = run_cases(tok, uniq)

    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    dcases = []
    for ids in gen_decode_cases(rng, vocab_size):
        dcases.append({"ids": ids, "dec": tok.decode(ids, skip_special_tokens=False),
                       "dec_skip": tok.decode(ids, skip_special_tokens=True)})

    doc = {
        "generator": "tools/make_tokenizer_corpus.py",
        "tokenizers_version": tokenizers.__version__,
        "tokenizer": os.path.relpath(args.tokenizer, ROOT),
        "seed": args.seed,
        "note": "ids = encode(text, add_special_tokens=True); ids_nospecial (when present) = "
                "encode(text, add_special_tokens=False), otherwise ids[1:]; dec/dec_skip = "
                "decode(ids, skip_special_tokens=False/True)",
        "cases": cases,
        "decode_cases": dcases,
        "variants": make_variants(rng, args.tokenizer, uniq),
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    ntok = sum(len(c["ids"]) for c in cases)
    nvar = sum(len(v["cases"]) for v in doc["variants"])
    print(f"wrote {args.out}: {len(cases)} strings ({ntok} tokens), {len(dcases)} decode cases, "
          f"{len(doc['variants'])} variants ({nvar} strings), "
          f"{os.path.getsize(args.out)} bytes, tokenizers {tokenizers.__version__}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""How far two `llava classify` results files agree (e.g. --quantization fp8 against bf16).

    python3 tools/compare_top1.py reference.jsonl other.jsonl [--json]

Both must be written with `--top-k all` so every label's probability is there; records match by
the image's file name. Prints the images both have, the share whose top-1 label is the same, that share among images whose reference margin
(top-1 minus top-2 probability) is at least 0.01 / 0.05 / 0.1, and the mean and largest
|p - p_ref| over all labels. Exit status 1 when the files share no image.
"""
import json
import os
import sys


def load(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if "error" in r:
                continue
            key = os.path.basename(r.get("image") or r["id"])  # the same file under another folder
            out[key] = {t["label"]: t["probability"] for t in r["top_k"]}
    return out


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    ref, other = load(args[0]), load(args[1])
    ids = sorted(set(ref) & set(other))
    if not ids:
        print("the two files share no image", file=sys.stderr)
        return 1
    same = 0
    by_margin = {0.01: [0, 0], 0.05: [0, 0], 0.1: [0, 0]}
    diffs = []
    for i in ids:
        a, b = ref[i], other[i]
        ranked = sorted(a, key=a.get, reverse=True)
        agree = ranked[0] == max(b, key=b.get)
        same += agree
        margin = a[ranked[0]] - (a[ranked[1]] if len(ranked) > 1 else 0.0)
        for m, cnt in by_margin.items():
            if margin >= m:
                cnt[0] += agree
                cnt[1] += 1
        diffs += [abs(a[k] - b.get(k, 0.0)) for k in a]
    res = {
        "images": len(ids),
        "top1_agree": same / len(ids),
        "top1_agree_by_margin": {str(m): (c[0] / c[1] if c[1] else None, c[1]) for m, c in by_margin.items()},
        "mean_abs_dp": sum(diffs) / len(diffs),
        "max_abs_dp": max(diffs),
    }
    if "--json" in argv:
        print(json.dumps(res))
    else:
        print(f"{res['images']} images: top-1 the same for {same} ({100 * res['top1_agree']:.1f}%)")
        for m, (share, n) in res["top1_agree_by_margin"].items():
            if n:
                print(f"  reference margin >= {m}: {n} images, top-1 the same for {100 * share:.1f}%")
        print(f"|p - p_ref| over all labels: mean {res['mean_abs_dp']:.2e}, max {res['max_abs_dp']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

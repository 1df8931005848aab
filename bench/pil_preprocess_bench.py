#!/usr/bin/env python3
"""pil_preprocess_bench.py — the Python side of bench/preprocess_bench.sh.

For each image: Image.open + convert("RGB") + the REFERENCE §2 pipeline written with Pillow and
numpy (tools/make_image_fixtures.py: preprocess_u8 + normalize), and, when transformers imports,
its LlavaNextImageProcessorPil on the opened image. Bytes are read once; each measurement repeats
for about -t seconds. Run single-threaded (OMP_NUM_THREADS=1) for per-core numbers.
"""
import argparse
import io
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import make_image_fixtures as ref  # noqa: E402


def rate(fn, seconds):
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and n >= 3:
            return n / dt, 1e3 * dt / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-t", type=float, default=3.0)
    ap.add_argument("images", nargs="+")
    a = ap.parse_args()
    try:
        import logging
        logging.disable(logging.WARNING)
        from transformers import LlavaNextImageProcessorPil
        hf = LlavaNextImageProcessorPil(
            image_grid_pinpoints=[list(p) for p in ref.PINPOINTS],
            size={"shortest_edge": ref.CROP}, crop_size={"height": ref.CROP, "width": ref.CROP},
            image_mean=ref.MEAN, image_std=ref.STD, rescale_factor=ref.RESCALE)
    except Exception as e:
        print("transformers not available (%s): skipping LlavaNextImageProcessorPil" % e)
        hf = None
    for path in a.images:
        data = open(path, "rb").read()
        name = os.path.basename(path)

        def numpy_pipeline():
            arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            tiles, _ = ref.preprocess_u8(arr)
            return ref.normalize(tiles)

        r, ms = rate(numpy_pipeline, a.t)
        print("%-28s Pillow + numpy §2        %8.2f images/s  (%.2f ms)" % (name, r, ms))
        if hf is not None:
            r, ms = rate(lambda: hf(Image.open(io.BytesIO(data)), return_tensors="np"), a.t)
            print("%-28s LlavaNextImageProcessorPil %6.2f images/s  (%.2f ms)" % (name, r, ms))


if __name__ == "__main__":
    main()

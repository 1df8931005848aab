#!/usr/bin/env bash
# preprocess_bench.sh — decode + LLaVA-NeXT preprocessing speed on one core: llava.c against
# Pillow + numpy (the §2 pipeline) and transformers' LlavaNextImageProcessorPil (when installed).
# Makes a 550x412 and a 4000x3000 JPEG (quality 90) in $TMPDIR, builds bench/preprocess_bench.c
# against build/libllava.a with the Makefile's optimized flags, and runs everything single-threaded.
# Usage: bench/preprocess_bench.sh [seconds per measurement, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-3}
TMP=${TMPDIR:-/tmp}/llava_preprocess_bench
mkdir -p "$TMP"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

make -s build/libllava.a
# Same compiler flags and libraries as the Makefile's optimized build (only the image code is used).
cc -O3 -march=x86-64-v2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp \
   -Isrc -o "$TMP/preprocess_bench" bench/preprocess_bench.c build/libllava.a \
   -ljpeg -lpng -lwebp -lcjson -lz -lm -lpthread

python3 - "$TMP" <<'PY'
import os, sys
sys.path.insert(0, "tools")
from make_image_fixtures import synth
from PIL import Image
out = sys.argv[1]
for w, h in [(550, 412), (4000, 3000)]:
    path = os.path.join(out, "photo_%dx%d.jpg" % (w, h))
    if not os.path.exists(path):
        Image.fromarray(synth(w, h, 1)).save(path, quality=90)
PY

IMGS=("$TMP/photo_550x412.jpg" "$TMP/photo_4000x3000.jpg")
echo "== llava.c (OMP_NUM_THREADS=1) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
"$TMP/preprocess_bench" -t "$SECS" "${IMGS[@]}"
echo "== Python (single thread)"
python3 bench/pil_preprocess_bench.py -t "$SECS" "${IMGS[@]}"

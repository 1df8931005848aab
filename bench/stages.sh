#!/usr/bin/env bash
# Per-stage CPU times of `llava run` on a bundled tiny model (median of N runs), from the --json
# timings: load, preprocess (decode + anyres), vision (CLIP + projector + packing), prefill, decode.
#   bash bench/stages.sh [MODEL_DIR] [IMAGE] [THREADS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-tests/fixtures/tiny-a}; I=${2:-tests/fixtures/ref/images/landscape.jpg}; T=${3:-1}; N=${4:-5}
make -s build/llava >/dev/null
for r in $(seq "$N"); do
    build/llava run -m "$M" -i "$I" -p "What is shown in this image?" -n 8 --threads "$T" --device cpu --json
done | python3 -c '
import json, sys, statistics
rows = [json.loads(l) for l in sys.stdin if l.strip()]
keys = ["load_s", "preprocess_s", "vision_s", "prefill_s", "decode_s"]
med = {k: statistics.median(r["timings"][k] for r in rows) for k in keys}
r = rows[0]
print("prompt_tokens %d image_tokens %d generated %d" % (r["prompt_tokens"], r["image_tokens"], r["completion_tokens"]))
for k in keys: print("%-13s %8.1f ms" % (k, med[k] * 1e3))
print("decode       %8.1f tokens/s" % statistics.median(r["timings"]["decode_tokens_per_s"] for r in rows))
'

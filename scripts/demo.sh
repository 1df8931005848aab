#!/usr/bin/env bash
# One command on a fresh Debian machine: install the build dependencies, build, and run the main job
# on built-in data: classify the 12 synthetic photos of demo/photos.csv (made by
# tools/make_reference.py) under the labels of demo/labels.txt with the bundled tiny LLaVA-NeXT
# checkpoint, evaluate against the manifest's labels, and answer one free-form prompt.
# The tiny model has the real architecture but RANDOM, UNTRAINED weights: its labels are arbitrary
# and the accuracy is chance. It shows the pipeline; use your fine-tuned checkpoint for real answers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
make -j"$(nproc)"
out=${DEMO_OUT:-/tmp/llava-demo}
mkdir -p "$out"
set -x
build/llava classify -m tests/fixtures/tiny-a --labels demo/labels.txt demo/photos.csv -o "$out/results.jsonl" --overwrite
head -n 3 "$out/results.jsonl"
build/llava eval --pred "$out/results.jsonl" --truth demo/photos.csv -o "$out/metrics.json" --report "$out/report.html"
build/llava run -m tests/fixtures/tiny-a -i tests/fixtures/ref/images/landscape.jpg -p "What is shown in this image?" -n 16
{ set +x; } 2>/dev/null
echo "demo: results in $out/results.jsonl, metrics in $out/metrics.json, report in $out/report.html"
echo "demo: the bundled model is untrained (random weights) — labels and accuracy are arbitrary."

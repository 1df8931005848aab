#!/usr/bin/env bash
# One command on a fresh Debian machine: install the build dependencies, build, and run llava.c on
# the bundled tiny LLaVA-NeXT checkpoint (random weights, real architecture) and a bundled photo.
# No downloads beyond Debian packages. For a real model: build/llava run -m /path/to/llava-v1.6-mistral-7b-hf ...
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
make -j"$(nproc)"
set -x
build/llava run -m tests/fixtures/tiny-a -i tests/fixtures/ref/images/landscape.jpg -p "What is shown in this image?" -n 16
build/llava run -m tests/fixtures/tiny-a -i tests/fixtures/ref/images/landscape.jpg -p "What is shown in this image?" -n 4 --json --top-logprobs 3

#!/usr/bin/env bash
# Packs what the GPU machine needs to run llava.c's GPU tests and benchmarks into .gpu/ (ignored by
# git; pass it to the device tool with carry: [".gpu"]): the binaries built here and the Debian
# shared libraries they load that the GPU machine's image lacks. There:
#   export LD_LIBRARY_PATH=$PWD/.gpu/lib:$LD_LIBRARY_PATH; .gpu/gpu_test_model
set -euo pipefail
cd "$(dirname "$0")/.."
# Its own build: sm_90a only (the GPU machines are H100/H200; the a-variant has wgmma for the Hopper
# attention kernel) and no OpenBLAS (36 MB; the GPU path does not use it), so the bundle stays small
# next to the working tree (64 MiB per call).
MK="BUILD=build-gpu NO_BLAS=1 CUDA_ARCH=-gencode=arch=compute_90a,code=sm_90a"
make -j"$(nproc)" $MK build-gpu/llava
CFLAGS="-O3 -march=x86-64-v2 -g -std=c11 -D_GNU_SOURCE -fopenmp -Isrc -Itests -DLLAVA_CUDA"
LIBS="$(make -s $MK print-libs 2>/dev/null | tail -n 1)"
rm -rf .gpu && mkdir -p .gpu/lib
cp build-gpu/llava .gpu/
for t in tests/cuda/*.c; do
    name=$(basename "$t" .c)
    gcc $CFLAGS -o ".gpu/$name" "$t" build-gpu/libllava.a $LIBS
done
# shared libraries outside glibc/CUDA that the binaries need
for b in .gpu/llava .gpu/test_*; do
    ldd "$b" | awk '/=> \// {print $3}'
done | sort -u | grep -vE '/(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|ld-linux)[.-]|libcuda|libcublas|libcudart|libnvidia' |
    while read -r lib; do cp -L "$lib" .gpu/lib/; done
ls -la .gpu .gpu/lib
du -sh .gpu

#!/usr/bin/env python3
"""PyTorch's attention kernels at the shapes `test_ops --bench-only` times ours, for the headroom of
src/backend/cuda/attention_sm90.cu (GPU machine; torch there). Same FLOP count as test_ops (visible
(query, key) pairs x 4 x head dim x heads), same timing (2 warm-up calls, then 10 back to back, host
clock around a synchronize). One line per (shape, backend):

    python3 bench/attention_torch.py            # W1 step prefill 25 x 2602 causal GQA 32/8 hd 128; CLIP 40 x 577
"""
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F

SHAPES = [  # name, sequences, tokens, heads, kv heads, head dim, causal
    ("step.prefill", 25, 2602, 32, 8, 128, True),
    ("mistral.prefill", 4, 2478, 32, 8, 128, True),
    ("clip.pass", 40, 577, 16, 16, 64, False),
]
BACKENDS = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION)]


def main():
    torch.manual_seed(0)
    print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    for name, ns, t, h, kv, hd, causal in SHAPES:
        q = torch.randn(ns, h, t, hd, device="cuda", dtype=torch.bfloat16) * 1.5
        k = torch.randn(ns, kv, t, hd, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(ns, kv, t, hd, device="cuda", dtype=torch.bfloat16)
        if kv != h:  # every backend takes the expanded form; GQA only changes the memory traffic
            k, v = k.repeat_interleave(h // kv, dim=1), v.repeat_interleave(h // kv, dim=1)
        vis = t * (t + 1) / 2 if causal else t * t
        flops = 4.0 * hd * h * vis * ns
        for bname, be in BACKENDS:
            try:
                with sdpa_kernel(be):
                    for _ in range(2):
                        F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    for _ in range(10):
                        F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    torch.cuda.synchronize()
                    dt = (time.perf_counter() - t0) / 10
                print(f"TIME torch[{bname:9s}] {name} {ns}x q=k={t} h={h}/{kv} hd={hd}{' causal' if causal else ''}"
                      f" {dt * 1e3:8.3f} ms {flops / dt / 1e12:7.1f} TFLOP/s", flush=True)
            except RuntimeError as e:
                print(f"TIME torch[{bname:9s}] {name}: not available ({str(e).splitlines()[0][:100]})", flush=True)


if __name__ == "__main__":
    main()

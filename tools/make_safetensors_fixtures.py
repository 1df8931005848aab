#!/usr/bin/env python3
"""Writes the safetensors fixtures that tests/test_safetensors.c reads, using the Python
`safetensors` library (the reference writer) and numpy (the reference float conversions).

Output (a few KB in all) under tests/fixtures/safetensors/:
  all_dtypes.safetensors    one tensor per dtype (F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL F8_E4M3
                            F8_E5M2), special values (±0, subnormals, ±inf, nan, max), a scalar and
                            an empty tensor, and __metadata__ {"format": "pt", "source": ...}
  sharded/                  model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json
  single/model.safetensors  a one-file model directory
  expected.json             per tensor: dtype, shape, raw bytes (hex) and, for float dtypes, the
                            float32 bit patterns numpy gives (exact for F16/BF16, nearest for F64)

Usage: python3 tools/make_safetensors_fixtures.py [out_dir]   (run from the repository root)
Deterministic: rerunning gives identical bytes.
"""
import json
import os
import sys

import numpy as np
import safetensors

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/safetensors"

# Python safetensors' own dtype names for each header spelling.
PY_DTYPE = {
    "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}


def bf16_to_f32_bits(u16):
    # bf16 is the top half of a float32: the exact conversion is a 16-bit shift.
    return [int(x) << 16 for x in np.asarray(u16, dtype=np.uint16).ravel()]


def f32_bits(a):
    return [int(x) for x in np.asarray(a, dtype=np.float32).ravel().view(np.uint32)]


def tensors():
    """name -> (header dtype, shape, raw little-endian bytes, expected f32 bits or None)."""
    t = {}

    f32 = np.array([[0.0, -0.0, 1.0, -2.5], [np.inf, -np.inf, np.nan, 1e-45],
                    [3.4028235e38, 1.17549435e-38, 0.1, -123456.789]], dtype=np.float32)
    t["f32.values"] = ("F32", list(f32.shape), f32.tobytes(), f32_bits(f32))

    f16_bits = np.array([0x0000, 0x8000, 0x3c00, 0xc100, 0x7bff, 0x0400, 0x0001, 0x03ff,
                         0x8001, 0x7c00, 0xfc00, 0x7e00, 0x3555, 0x0200], dtype=np.uint16)
    f16 = f16_bits.view(np.float16)
    t["f16.values"] = ("F16", [2, 7], f16.tobytes(), f32_bits(f16.astype(np.float32)))

    bf16_bits = np.array([0x0000, 0x8000, 0x3f80, 0xc020, 0x0001, 0x007f, 0x0080, 0x7f7f,
                          0xff7f, 0x7f80, 0xff80, 0x7fc0, 0x3e4d, 0x8012, 0x4049, 0x3dcd],
                         dtype=np.uint16)
    t["bf16.values"] = ("BF16", [4, 2, 2], bf16_bits.tobytes(), bf16_to_f32_bits(bf16_bits))

    f64 = np.array([1.5, -1e300, 1e-300, np.pi, 1.0 + 2.0**-30, np.nan], dtype=np.float64)
    with np.errstate(over="ignore"):  # -1e300 -> -inf in float32 is the expected value
        f64_as_f32 = f64.astype(np.float32)
    t["f64.values"] = ("F64", [6], f64.tobytes(), f32_bits(f64_as_f32))

    ints = {
        "I64": np.array([-(2**63), -1, 0, 2**63 - 1], dtype=np.int64),
        "I32": np.array([[-(2**31), 7], [0, 2**31 - 1]], dtype=np.int32),
        "I16": np.array([-32768, 32767, -1], dtype=np.int16),
        "I8": np.array([-128, 127, 0, -1, 5], dtype=np.int8),
        "U8": np.array([0, 1, 128, 255], dtype=np.uint8),
        "BOOL": np.array([True, False, True], dtype=np.bool_),
        # FP8 bytes are opaque here (no numpy dtype): 1.0, -2.0, nan in e4m3fn; 1.0, inf in e5m2.
        "F8_E4M3": np.array([0x38, 0xc0, 0x7f], dtype=np.uint8),
        "F8_E5M2": np.array([0x3c, 0x7c], dtype=np.uint8),
    }
    for dt, a in ints.items():
        t[dt.lower() + ".values"] = (dt, list(a.shape), a.tobytes(), None)

    scalar = np.array(42.5, dtype=np.float32)
    t["scalar"] = ("F32", [], scalar.tobytes(), f32_bits(scalar))
    t["empty"] = ("BF16", [0, 3], b"", [])
    return t


def write(path, ts, metadata=None):
    """ts: name -> (dtype, shape, bytes, ...). Uses safetensors.serialize_file (the reference)."""
    keep = []
    specs = {}
    for name, (dt, shape, raw, *_rest) in ts.items():
        buf = np.frombuffer(raw, dtype=np.uint8).copy() if raw else np.zeros(1, dtype=np.uint8)
        keep.append(buf)
        specs[name] = safetensors.TensorSpec(dtype=PY_DTYPE[dt], shape=shape,
                                             data_ptr=buf.ctypes.data, data_len=len(raw))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    safetensors.serialize_file(specs, path, metadata=metadata)
    # Read back with the reference reader: the file must round-trip exactly.
    with open(path, "rb") as f:
        back = dict(safetensors.deserialize(f.read()))
    for name, (dt, shape, raw, *_rest) in ts.items():
        assert back[name]["dtype"] == dt and list(back[name]["shape"]) == shape, name
        assert bytes(back[name]["data"]) == raw, name


def main():
    ts = tensors()
    write(os.path.join(OUT, "all_dtypes.safetensors"), ts,
          metadata={"format": "pt", "source": "tools/make_safetensors_fixtures.py"})

    rng = np.random.default_rng(0)
    w = {f"model.layers.{i}.weight": rng.standard_normal((3, 4)).astype(np.float32) for i in range(4)}
    bias = rng.standard_normal(4).astype(np.float16)
    shard1 = {k: ("F32", [3, 4], w[k].tobytes(), f32_bits(w[k])) for k in
              ["model.layers.0.weight", "model.layers.1.weight"]}
    shard2 = {k: ("F32", [3, 4], w[k].tobytes(), f32_bits(w[k])) for k in
              ["model.layers.2.weight", "model.layers.3.weight"]}
    shard2["model.bias"] = ("F16", [4], bias.tobytes(), f32_bits(bias.astype(np.float32)))
    sdir = os.path.join(OUT, "sharded")
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    write(os.path.join(sdir, names[0]), shard1, metadata={"format": "pt", "shard": "1"})
    write(os.path.join(sdir, names[1]), shard2, metadata={"format": "pt", "shard": "2"})
    weight_map = {k: names[0] for k in shard1}
    weight_map.update({k: names[1] for k in shard2})
    total = sum(len(v[2]) for v in list(shard1.values()) + list(shard2.values()))
    with open(os.path.join(sdir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
                  f, indent=2)
        f.write("\n")

    single = {"lm_head.weight": shard1["model.layers.0.weight"]}
    write(os.path.join(OUT, "single", "model.safetensors"), single, metadata={"format": "pt"})

    def entry(v):
        dt, shape, raw, bits = v
        e = {"dtype": dt, "shape": shape, "hex": raw.hex()}
        if bits is not None:
            e["f32_bits"] = bits
        return e

    expected = {
        "all_dtypes.safetensors": {
            "metadata": {"format": "pt", "source": "tools/make_safetensors_fixtures.py"},
            "tensors": {k: entry(v) for k, v in ts.items()},
        },
        "sharded": {
            "metadata": {"format": "pt", "shard": "1"},
            "tensors": {k: entry(v) for k, v in {**shard1, **shard2}.items()},
            "files": {k: v for k, v in weight_map.items()},
        },
        "single": {
            "metadata": {"format": "pt"},
            "tensors": {k: entry(v) for k, v in single.items()},
        },
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

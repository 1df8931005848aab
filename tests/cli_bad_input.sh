#!/usr/bin/env bash
# Bad input through the CLI: each case must exit non-zero with a one-line reason on stderr that
# names the file or tensor, and must not crash (the ASan build runs this too: a sanitizer report
# fails the case). Prints RESULT <passed> <failed> for tests/run_tests.sh.
set -u
BIN=${LLAVA_BIN:-build/llava}
FIX=tests/fixtures
T=$(mktemp -d /tmp/llava-bad.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
PROMPT="What is shown in this image?"

# expect_fail NAME PATTERN -- command...: non-zero exit, stderr matches PATTERN, no sanitizer report
expect_fail() {
    local name=$1 pat=$2; shift 3
    local err rc
    err=$("$@" 2>&1 >/dev/null); rc=$?
    if [ $rc -eq 0 ]; then
        echo "FAIL $name: exit status 0"; fail=$((fail + 1)); return
    fi
    if [ $rc -ge 128 ] || printf '%s' "$err" | grep -qE 'AddressSanitizer|LeakSanitizer|runtime error|internal error'; then
        echo "FAIL $name: crashed (exit $rc): $(printf '%s' "$err" | head -n 3)"; fail=$((fail + 1)); return
    fi
    if ! printf '%s' "$err" | grep -qE -- "$pat"; then
        echo "FAIL $name: message does not match /$pat/: $err"; fail=$((fail + 1)); return
    fi
    pass=$((pass + 1))
}

# a writable copy of tiny-a (weights linked, small files copied)
mkmodel() {
    local d=$T/$1
    mkdir -p "$d"
    for f in $FIX/tiny-a/*; do
        case $f in *.safetensors|*tokenizer.json) ln -s "$PWD/$f" "$d/" ;; *) cp "$f" "$d/" ;; esac
    done
    echo "$d"
}
IMG=$FIX/ref/images/landscape.jpg
run() { "$BIN" run -m "$1" -i "$2" -p "$PROMPT" -n 2; }

expect_fail "missing model dir" "$T/nope/config.json" -- run "$T/nope" "$IMG"
expect_fail "missing image" "$T/nope.jpg" -- run $FIX/tiny-a "$T/nope.jpg"
expect_fail "no -m" "required" -- "$BIN" run -p hi
expect_fail "unknown option" "unknown option" -- "$BIN" run --bogus
expect_fail "bad -n" "invalid value" -- "$BIN" run -m $FIX/tiny-a -p hi -n -3

d=$(mkmodel noconfig); rm "$d/config.json"
expect_fail "config.json missing" "config.json" -- run "$d" "$IMG"
d=$(mkmodel badjson); printf '{"model_type": "llava_next", ' >"$d/config.json"
expect_fail "config.json truncated" "config.json: invalid JSON" -- run "$d" "$IMG"
d=$(mkmodel notext); python3 - "$d/config.json" <<'PY' 2>/dev/null || sed -i 's/"text_config"/"txt_config"/' "$d/config.json"
import json,sys; c=json.load(open(sys.argv[1])); del c["text_config"]; json.dump(c,open(sys.argv[1],"w"))
PY
expect_fail "config without text_config" "text_config" -- run "$d" "$IMG"
d=$(mkmodel wrongtype); sed -i 's/"model_type": "llava_next"/"model_type": "llava"/' "$d/config.json"
expect_fail "config of another model type" "llava_next" -- run "$d" "$IMG"
d=$(mkmodel badlayers); sed -i 's/"num_hidden_layers": 2/"num_hidden_layers": "two"/' "$d/config.json"
expect_fail "config key of wrong type" "num_hidden_layers" -- run "$d" "$IMG"
d=$(mkmodel wrongshape); sed -i 's/"intermediate_size": 40/"intermediate_size": 48/' "$d/config.json"
expect_fail "tensor of the wrong shape" "mlp.(gate|up|down)_proj.weight" -- run "$d" "$IMG"
d=$(mkmodel morelayers); sed -i 's/"num_hidden_layers": 2/"num_hidden_layers": 3/' "$d/config.json"
expect_fail "tensor missing" "layers.2.*missing" -- run "$d" "$IMG"
d=$(mkmodel notok); rm "$d/tokenizer.json"
expect_fail "tokenizer.json missing" "tokenizer.json" -- run "$d" "$IMG"

# safetensors damage
d=$(mkmodel trunc); rm "$d/model.safetensors"; head -c 100000 $FIX/tiny-a/model.safetensors >"$d/model.safetensors"
expect_fail "truncated safetensors" "model.safetensors" -- run "$d" "$IMG"
d=$(mkmodel zero); rm "$d/model.safetensors"; : >"$d/model.safetensors"
expect_fail "zero-byte safetensors" "model.safetensors" -- run "$d" "$IMG"
d=$(mkmodel offsets); rm "$d/model.safetensors"
python3 - $FIX/tiny-a/model.safetensors "$d/model.safetensors" past <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
k = sorted(x for x in h if x != "__metadata__")
if sys.argv[3] == "past":
    e = h[k[0]]["data_offsets"]; size = e[1] - e[0]
    h[k[0]]["data_offsets"] = [len(b) - 8 - n - size + 64, len(b) - 8 - n + 64]
else:
    h[k[1]]["data_offsets"] = [h[k[0]]["data_offsets"][0], h[k[0]]["data_offsets"][0] + h[k[1]]["data_offsets"][1] - h[k[1]]["data_offsets"][0]]
hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
PY
expect_fail "offsets past the end" "model.safetensors" -- run "$d" "$IMG"
d=$(mkmodel overlap); rm "$d/model.safetensors"
python3 - $FIX/tiny-a/model.safetensors "$d/model.safetensors" overlap <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
k = sorted((x for x in h if x != "__metadata__"), key=lambda x: h[x]["data_offsets"][0])
a, c = h[k[0]], h[k[1]]
size = c["data_offsets"][1] - c["data_offsets"][0]
c["data_offsets"] = [a["data_offsets"][0], a["data_offsets"][0] + size]
hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
PY
expect_fail "overlapping tensors" "overlap" -- run "$d" "$IMG"

# images
: >"$T/zero.jpg"
expect_fail "zero-byte image" "zero.jpg" -- run $FIX/tiny-a "$T/zero.jpg"
head -c 5000 /dev/urandom >"$T/noise.png"; printf 'not an image at all' >"$T/text.jpg"
expect_fail "non-image bytes" "text.jpg" -- run $FIX/tiny-a "$T/text.jpg"
head -c 3000 $FIX/ref/images/landscape.jpg >"$T/trunc.jpg"
expect_fail "truncated JPEG" "trunc.jpg" -- run $FIX/tiny-a "$T/trunc.jpg"
head -c 3000 $FIX/ref/images/landscape.png >"$T/trunc.png"
expect_fail "truncated PNG" "trunc.png" -- run $FIX/tiny-a "$T/trunc.png"
python3 - "$T/huge.png" <<'PY'
import struct, sys, zlib
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
PY
expect_fail "PNG declaring 100000x100000" "huge.png" -- run $FIX/tiny-a "$T/huge.png"
expect_fail "image over --max-pixels" "landscape.jpg" -- "$BIN" run -m $FIX/tiny-a -i "$IMG" -p hi --max-pixels 1000
expect_fail "more <image> than images" "image" -- "$BIN" run -m $FIX/tiny-a -i "$IMG" --raw "[INST] <image><image> hi [/INST]"
expect_fail "preprocess to unwritable path" "no-such-dir" -- "$BIN" preprocess -m $FIX/tiny-a -i "$IMG" -o "$T/no-such-dir/x.safetensors"
expect_fail "tokenize without model" "tokenizer.json" -- "$BIN" tokenize -m "$T/nope" "hello"
expect_fail "--device cuda unavailable" "cuda|CUDA" -- "$BIN" run -m $FIX/tiny-a -i "$IMG" -p hi --device cuda
# --quantization: only fp8 or none; fp8 only on a CUDA device (this machine runs the CPU path)
expect_fail "--quantization int4" "fp8 or none" -- "$BIN" run -m $FIX/tiny-a -i "$IMG" -p hi --quantization int4
expect_fail "classify --quantization int4" "fp8 or none" -- "$BIN" classify -m $FIX/tiny-a --labels a,b "$IMG" -o "$T/q.jsonl" --quantization int4
expect_fail "bench --quantization int4" "fp8 or none" -- "$BIN" bench -m $FIX/tiny-a --images 1 --quantization int4
expect_fail "fp8 on the CPU" "fp8.*CUDA" -- "$BIN" run -m $FIX/tiny-a -i "$IMG" -p hi --device cpu --quantization fp8
expect_fail "classify fp8 on the CPU" "fp8.*CUDA" -- "$BIN" classify -m $FIX/tiny-a --labels a,b "$IMG" -o "$T/q.jsonl" --device cpu --quantization fp8
expect_fail "serve fp8 on the CPU" "fp8.*CUDA" -- "$BIN" serve -m $FIX/tiny-a --device cpu --quantization fp8 --port 0

echo "RESULT $pass $fail"
[ $fail -eq 0 ]

#!/usr/bin/env python3
"""make_image_fixtures.py — test images and Pillow reference values for tests/test_image.c.

Writes tests/fixtures/images/:
  src/        the test images (JPEG, PNG, WebP; synthetic: smooth gradients + shapes + light noise,
              fixed seeds, so the files are small and the run is reproducible)
  bad/        inputs that must fail cleanly (empty, not an image, truncated, huge headers, ...)
  expected/   raw uint8 buffers (small ones only; larger buffers are checked by CRC-32 + length)
  manifest.txt one check per line, read by tests/test_image.c:
    decode  <img> <w> <h> <expect>               Image.open(img).convert("RGB")
    resize  <src> <sw> <sh> <dw> <dh> <expect>   PIL Image.resize((dw, dh), BICUBIC) of src
                                                 src = raw:<file> (pixels) | decoded:<img>
    preproc <img> <hb> <wb> <nh> <nw> <n> <crc of each uint8 tile...> <crc of float32 pixels>
    tokens  <H> <W> <hb> <wb> <nh> <nw> <top> <rows> <left> <cols> <n_default> <n_full> <n_tiles>
    bad     <file> <max_pixels, 0 = default> <word the error message must contain>
    prefix  <img> <n> <crc:...|error>            the first n bytes of img: Pillow's result
  where <expect> is raw:<file> or crc:<crc32 hex>:<byte length>.

The preprocessing reference is a from-scratch Python/Pillow implementation of REFERENCE §2 (below,
preprocess_u8 / normalize) and the token counts a port of the transformers processor formula
(§4, token_count). When transformers is importable they are also checked against
LlavaNextImageProcessorPil and LlavaNextProcessor._get_number_of_features.

Usage: python3 tools/make_image_fixtures.py [--out DIR] [--dump-expected DIR]
  --dump-expected writes every expected buffer (also the CRC-only ones) as raw files named like the
  C test's dumps of a failing check, so `cmp` shows the first differing byte.
"""
import argparse
import io
import math
import os
import struct
import sys
import types
import zlib

import numpy as np
import PIL
from PIL import Image, ImageDraw

PINPOINTS = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)]  # (height, width)
CROP, PATCH = 336, 14
RESCALE = 0.00392156862745098
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
NUM_ADDITIONAL = 1
RAW_MAX = 64 * 1024  # expected buffers up to this size are stored raw

# ------------------------------------------------------------------------------------------------
# Synthetic images


def synth(w, h, seed, noise=3):
    """Smooth colour gradients + a few shapes + light uniform noise, (h, w, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = x / max(w - 1, 1), y / max(h - 1, 1)
    chans = []
    for _ in range(3):
        fx, fy, ph = rng.uniform(0.3, 2.0), rng.uniform(0.3, 2.0), rng.uniform(0, 2 * math.pi)
        chans.append(127.5 + 110 * np.sin(2 * math.pi * (fx * u + fy * v) + ph) * (0.6 + 0.4 * u))
    img = Image.fromarray(np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(4):
        x0, x1 = sorted(rng.integers(0, w, 2).tolist())
        y0, y1 = sorted(rng.integers(0, h, 2).tolist())
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            d.ellipse([x0, y0, x1, y1], fill=col)
        else:
            d.rectangle([x0, y0, x1, y1], fill=col)
    d.line([(0, 0), (w - 1, h - 1)], fill=(255, 255, 255), width=max(1, min(w, h) // 40))
    a = np.asarray(img).astype(np.int16)
    if noise:
        a = a + rng.integers(-noise, noise + 1, a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# A minimal PNG writer (Pillow cannot write Adam7, 2/4-bit gray, 16-bit gray+alpha, ...)


def _pack_row(samples, depth):
    """samples: 1-D ints (all channels interleaved) -> packed bytes."""
    if depth == 16:
        return np.asarray(samples, dtype=">u2").tobytes()
    if depth == 8:
        return np.asarray(samples, dtype=np.uint8).tobytes()
    per = 8 // depth
    s = list(samples) + [0] * ((-len(samples)) % per)
    out = bytearray()
    for i in range(0, len(s), per):
        b = 0
        for j in range(per):
            b = (b << depth) | (s[i + j] & ((1 << depth) - 1))
        out.append(b)
    return bytes(out)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _filter_rows(rows, bpp, first_filter):
    out = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        ft = (first_filter + i) % 5
        f = bytearray(len(row))
        for j, x in enumerate(row):
            a = row[j - bpp] if j >= bpp else 0
            b = prev[j]
            c = prev[j - bpp] if j >= bpp else 0
            pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[ft]
            f[j] = (x - pred) & 255
        out.append(ft)
        out += f
        prev = row
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def png_bytes(a, depth, ctype, plte=None, trns=None, interlace=False, width=None, height=None):
    """a: (h, w, channels) ints in [0, 2^depth). All five filter types are used, IDAT is split."""
    h, w = a.shape[:2]
    nch = a.shape[2]
    bpp = max(1, nch * depth // 8)
    raw = b""
    if interlace:
        for k, (xs, ys, dx, dy) in enumerate(ADAM7):
            sub = a[ys::dy, xs::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            rows = [_pack_row(r.reshape(-1), depth) for r in sub]
            raw += _filter_rows(rows, bpp, k)
    else:
        raw = _filter_rows([_pack_row(r.reshape(-1), depth) for r in a], bpp, 0)
    z = zlib.compress(raw, 9)
    ihdr = struct.pack(">IIBBBBB", width if width is not None else w,
                       height if height is not None else h, depth, ctype, 0, 0, int(interlace))
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    if plte is not None:
        out += _chunk(b"PLTE", bytes(np.asarray(plte, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    half = len(z) // 2
    out += _chunk(b"IDAT", z[:half]) + _chunk(b"IDAT", z[half:]) + _chunk(b"IEND", b"")
    return out


# ------------------------------------------------------------------------------------------------
# REFERENCE §2 / §4 in Python (written from the spec; cross-checked against transformers below)


def select_best_resolution(H, W, pins=PINPOINTS):
    best, best_eff, best_waste = None, 0, float("inf")
    for hc, wc in pins:
        s = min(wc / W, hc / H)
        dw, dh = int(W * s), int(H * s)
        eff = min(dw * dh, W * H)
        waste = hc * wc - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (hc, wc), eff, waste
    return best


def patch_output_size(H, W, hb, wb):
    sw, sh = wb / W, hb / H
    if sw < sh:
        return min(math.ceil(H * sw), hb), wb
    return hb, min(math.ceil(W * sh), wb)


def unpad_region(H, W, cur_h, cur_w):
    """(top, rows, left, cols) kept by the §4 unpad rule."""
    if W / H > cur_w / cur_h:
        new_h = int(round(H * (cur_w / W), 7))
        pad = (cur_h - new_h) // 2
        return pad, cur_h - 2 * pad, 0, cur_w
    new_w = int(round(W * (cur_h / H), 7))
    pad = (cur_w - new_w) // 2
    return 0, cur_h, pad, cur_w - 2 * pad


def token_count(H, W, strategy_default=True):
    hb, wb = select_best_resolution(H, W)
    side = CROP // PATCH
    top, rows, left, cols = unpad_region(H, W, side * (hb // CROP), side * (wb // CROP))
    n = rows * cols + rows + side * side + NUM_ADDITIONAL
    return n - NUM_ADDITIONAL if strategy_default else n


def preprocess_u8(arr):
    """(H, W, 3) uint8 -> list of (336, 336, 3) uint8 tiles [base, row-major tiles], + sizes."""
    H, W = arr.shape[:2]
    hb, wb = select_best_resolution(H, W)
    nh, nw = patch_output_size(H, W, hb, wb)
    im = Image.fromarray(arr)
    resized = np.asarray(im.resize((nw, nh), Image.BICUBIC))
    canvas = np.zeros((hb, wb, 3), np.uint8)
    top, left = (hb - nh) // 2, (wb - nw) // 2
    canvas[top:top + nh, left:left + nw] = resized
    tiles = [np.asarray(im.resize((CROP, CROP), Image.BICUBIC))]
    for ty in range(hb // CROP):
        for tx in range(wb // CROP):
            tiles.append(canvas[ty * CROP:(ty + 1) * CROP, tx * CROP:(tx + 1) * CROP])
    return tiles, (hb, wb, nh, nw)


def normalize(tiles):
    """uint8 HWC tiles -> float32 (n, 3, 336, 336): rescale in float64 then cast, normalize in f32."""
    t = np.stack(tiles).astype(np.float64) * RESCALE
    t = t.astype(np.float32)
    t = (t - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return np.ascontiguousarray(t.transpose(0, 3, 1, 2))


# ------------------------------------------------------------------------------------------------


def crc(buf):
    b = bytes(buf)
    return "crc:%08x:%d" % (zlib.crc32(b) & 0xFFFFFFFF, len(b))


class Writer:
    def __init__(self, out, dump):
        self.out, self.dump, self.lines, self.n_raw = out, dump, [], 0
        for d in ("src", "bad", "expected"):
            os.makedirs(os.path.join(out, d), exist_ok=True)

    def file(self, rel, data):
        with open(os.path.join(self.out, rel), "wb") as f:
            f.write(data)
        return rel

    def expect(self, key, buf):
        """Raw file for small buffers, CRC otherwise. key names the dump file too."""
        b = bytes(buf)
        if self.dump:
            with open(os.path.join(self.dump, key + ".bin"), "wb") as f:
                f.write(b)
        if len(b) <= RAW_MAX:
            return "raw:" + self.file("expected/%s.rgb" % key, b)
        return crc(b)

    def line(self, *parts):
        self.lines.append(" ".join(str(p) for p in parts))


def dump_key(*parts):
    return "_".join(str(p).replace("/", "-").replace(".", "-").replace(":", "-") for p in parts)


def pil_rgb(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", "tests", "fixtures", "images"))
    ap.add_argument("--dump-expected", default=None)
    args = ap.parse_args()
    if PIL.__version__ != "12.3.0":
        print("warning: Pillow %s; the C reference is Pillow 12.3.0" % PIL.__version__,
              file=sys.stderr)
    if args.dump_expected:
        os.makedirs(args.dump_expected, exist_ok=True)
    W = Writer(os.path.normpath(args.out), args.dump_expected)

    try:
        import transformers
        from transformers import LlavaNextImageProcessorPil
        from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor
        hf = LlavaNextImageProcessorPil(
            image_grid_pinpoints=[list(p) for p in PINPOINTS], size={"shortest_edge": CROP},
            crop_size={"height": CROP, "width": CROP}, image_mean=MEAN, image_std=STD,
            rescale_factor=RESCALE)
        hf_version = transformers.__version__
    except Exception as e:  # transformers is optional: only a cross-check
        print("note: transformers not usable (%s); skipping the cross-check" % e, file=sys.stderr)
        hf, hf_version = None, None

    # --------------------------------------------------------------------------------------------
    # decode fixtures
    decoded = {}  # rel path -> Pillow RGB array

    def add_decode(rel, data):
        W.file(rel, data)
        a = pil_rgb(data)
        decoded[rel] = a
        W.line("decode", rel, a.shape[1], a.shape[0], W.expect(dump_key("decode", rel), a))

    def pil_save(arr_or_img, fmt, **kw):
        im = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        return b.getvalue()

    # The §4 shapes (preprocessing inputs) as JPEG quality 90, 4:2:0 (Pillow's default).
    big = [(550, 412), (412, 550), (400, 400), (300, 900), (200, 150), (1000, 750), (337, 251),
           (1100, 808)]
    for i, (w, h) in enumerate(big):
        add_decode("src/photo_%dx%d.jpg" % (w, h), pil_save(synth(w, h, 100 + i), "JPEG",
                                                           quality=90))

    # Format variants on small odd-sized images.
    sw, sh = 61, 47
    base = synth(sw, sh, 7, noise=6)
    rgba = np.dstack([base, synth(sw, sh, 8)[:, :, 0]])
    gray = np.asarray(Image.fromarray(base).convert("L"))
    jpg = lambda name, im, **kw: add_decode("src/" + name, pil_save(im, "JPEG", **kw))
    jpg("q90_420.jpg", base, quality=90)
    jpg("q90_444.jpg", base, quality=90, subsampling=0)
    jpg("q75_422.jpg", base, quality=75, subsampling=1)
    jpg("gray.jpg", gray, quality=90)
    jpg("progressive.jpg", base, quality=90, progressive=True)
    jpg("progressive_444.jpg", base, quality=85, progressive=True, subsampling=0)
    jpg("optimized.jpg", base, quality=95, optimize=True)
    jpg("cmyk.jpg", Image.fromarray(base).convert("CMYK"), quality=90)
    cmyk4 = np.ascontiguousarray(np.dstack([base, synth(sw, sh, 9)[:, :, 1]]))
    jpg("cmyk_raw.jpg", Image.frombytes("CMYK", (sw, sh), cmyk4.tobytes()), quality=90)
    jpg("rgb_keep.jpg", base, quality=90, keep_rgb=True)
    jpg("odd_17x9.jpg", synth(17, 9, 10), quality=90)
    jpg("tiny_1x1.jpg", synth(1, 1, 11), quality=90)
    jpg("restart.jpg", base, quality=90, restart_marker_rows=1)

    png = lambda name, data: add_decode("src/" + name, data)
    rng = np.random.default_rng(5)
    png("rgb8.png", png_bytes(base, 8, 2))
    png("rgb8_interlaced.png", png_bytes(base, 8, 2, interlace=True))
    png("rgba8.png", png_bytes(rgba, 8, 6))
    png("rgb16.png", png_bytes(base.astype(np.int64) * 257 + rng.integers(0, 257, base.shape), 16, 2))
    png("rgba16.png", png_bytes(rgba.astype(np.int64) * 257 + rng.integers(0, 257, rgba.shape), 16, 6))
    png("rgba16_interlaced.png", png_bytes(rgba.astype(np.int64) * 250 + 5, 16, 6, interlace=True))
    png("gray8.png", png_bytes(gray[:, :, None], 8, 0))
    png("gray8_trns.png", png_bytes(gray[:, :, None], 8, 0, trns=struct.pack(">H", 128)))
    # 16-bit gray: values across 0..1023 so both Pillow's saturation (>255) and small values show.
    g16 = (gray.astype(np.int64) * 4 + rng.integers(0, 4, gray.shape))[:, :, None]
    png("gray16.png", png_bytes(g16, 16, 0))
    png("gray16_full.png", png_bytes((gray.astype(np.int64) * 257)[:, :, None], 16, 0))
    png("gray16_interlaced.png", png_bytes(g16, 16, 0, interlace=True))
    png("gray1.png", png_bytes((gray > 128).astype(np.int64)[:, :, None], 1, 0))
    png("gray1_interlaced.png", png_bytes((gray > 100).astype(np.int64)[:, :, None], 1, 0,
                                          interlace=True))
    png("gray2.png", png_bytes((gray >> 6)[:, :, None], 2, 0))
    png("gray4.png", png_bytes((gray >> 4)[:, :, None], 4, 0))
    png("la8.png", png_bytes(np.dstack([gray, base[:, :, 0]]), 8, 4))
    png("la16.png", png_bytes(np.dstack([gray, base[:, :, 0]]).astype(np.int64) * 257 + 3, 16, 4))
    png("rgb8_trns.png", png_bytes(base, 8, 2, trns=struct.pack(">HHH", *base[0, 0].tolist())))
    pal_img = Image.fromarray(base).quantize(colors=200, dither=Image.Dither.NONE)
    pal = np.asarray(pal_img.getpalette()[:200 * 3]).reshape(-1, 3)
    idx = np.asarray(pal_img)[:, :, None]
    png("palette8.png", png_bytes(idx, 8, 3, plte=pal))
    png("palette8_trns.png", png_bytes(idx, 8, 3, plte=pal, trns=bytes(range(0, 250, 2))))
    png("palette8_interlaced.png", png_bytes(idx, 8, 3, plte=pal, interlace=True))
    idx4 = (idx % 16)
    png("palette4_trns.png", png_bytes(idx4, 4, 3, plte=pal[:16], trns=bytes([0, 64, 255])))
    png("palette2.png", png_bytes(idx % 4, 2, 3, plte=pal[:4]))
    png("palette1.png", png_bytes(idx % 2, 1, 3, plte=pal[:2]))
    # Indices beyond the PLTE: Pillow gives black.
    png("palette_oob.png", png_bytes(idx % 32, 8, 3, plte=pal[:20]))
    png("pillow_rgb.png", pil_save(base, "PNG", optimize=True))
    png("pillow_rgba.png", pil_save(rgba, "PNG"))
    png("pillow_p.png", pil_save(pal_img, "PNG"))
    png("tiny_1x1.png", png_bytes(synth(1, 1, 12), 8, 2))
    png("tiny_2x3_interlaced.png", png_bytes(synth(2, 3, 13), 8, 2, interlace=True))

    webp = lambda name, im, **kw: add_decode("src/" + name, pil_save(im, "WEBP", **kw))
    webp("lossy.webp", base, quality=80)
    webp("lossless.webp", base, lossless=True)
    webp("lossy_alpha.webp", Image.fromarray(rgba, "RGBA"), quality=80)
    webp("lossless_alpha.webp", Image.fromarray(rgba, "RGBA"), lossless=True, exact=True)
    webp("lossy_big.webp", decoded["src/photo_550x412.jpg"], quality=85)

    # Truncated copies: Pillow decodes a file cut after the last row of image data and raises
    # "image file is truncated" before it; the C decoder must draw the same line.
    for rel in ["src/q90_420.jpg", "src/progressive.jpg", "src/q90_444.jpg", "src/tiny_1x1.jpg",
                "src/cmyk.jpg", "src/rgb8.png", "src/rgb8_interlaced.png", "src/palette4_trns.png",
                "src/gray16.png", "src/tiny_1x1.png", "src/tiny_2x3_interlaced.png",
                "src/lossy.webp", "src/lossless.webp", "src/lossy_alpha.webp"]:
        data = open(os.path.join(W.out, rel), "rb").read()
        cuts = sorted(set(list(range(max(0, len(data) - 48), len(data)))
                          + list(range(0, len(data), len(data) // 16 + 1))))
        for cut in cuts:
            try:
                a = pil_rgb(data[:cut])
                W.line("prefix", rel, cut, crc(a))
            except Exception:
                W.line("prefix", rel, cut, "error")

    # --------------------------------------------------------------------------------------------
    # resize fixtures: sources given as raw pixels (independent of the decoder) ...
    def add_resize_raw(key, arr, targets):
        src = "raw:" + W.file("expected/%s.rgb" % key, arr.tobytes())
        im = Image.fromarray(arr)
        for dw, dh in targets:
            out = np.asarray(im.resize((dw, dh), Image.BICUBIC))
            W.line("resize", src, arr.shape[1], arr.shape[0], dw, dh,
                   W.expect(dump_key("resize", key, dw, dh), out))

    add_resize_raw("rs_61x47", base, [(100, 80), (31, 17), (61, 90), (120, 47), (1, 1), (336, 336),
                                      (13, 200), (200, 13), (47, 61), (60, 46), (62, 48), (61, 47),
                                      (2, 1), (183, 141), (7, 5), (61, 1), (1, 47)])
    add_resize_raw("rs_3x400", synth(3, 400, 14), [(5, 40), (3, 40), (2, 399), (7, 401), (3, 401),
                                                    (1, 3)])
    add_resize_raw("rs_400x3", synth(400, 3, 15), [(40, 5), (40, 3), (399, 2), (401, 7)])
    add_resize_raw("rs_1x1", synth(1, 1, 16), [(5, 7), (1, 2), (336, 336)])
    # ... and large ones from decoded photos (the C side decodes them first).
    for rel, targets in [("src/photo_550x412.jpg", [(672, 504), (336, 336), (1000, 750), (275, 206)]),
                         ("src/photo_1000x750.jpg", [(672, 505), (336, 336), (99, 1301)]),
                         ("src/photo_300x900.jpg", [(224, 672), (336, 336)])]:
        a = decoded[rel]
        for dw, dh in targets:
            out = np.asarray(Image.fromarray(a).resize((dw, dh), Image.BICUBIC))
            W.line("resize", "decoded:" + rel, a.shape[1], a.shape[0], dw, dh,
                   W.expect(dump_key("resize", rel, dw, dh), out))

    # --------------------------------------------------------------------------------------------
    # preprocessing (§2) on the decoded photos and a few small images
    n_hf = 0
    pre_imgs = ["src/photo_%dx%d.jpg" % s for s in big] + ["src/rgb8.png", "src/tiny_1x1.png",
                                                             "src/tiny_2x3_interlaced.png",
                                                             "src/odd_17x9.jpg"]
    for rel in pre_imgs:
        a = decoded[rel]
        tiles, (hb, wb, nh, nw) = preprocess_u8(a)
        px = normalize(tiles)
        if hf is not None:
            ref = hf(Image.open(os.path.join(W.out, rel)), return_tensors="np")["pixel_values"][0]
            if ref.shape != px.shape or not np.array_equal(ref, px):
                sys.exit("§2 implementation differs from LlavaNextImageProcessorPil on %s "
                         "(max |diff| %g)" % (rel, np.abs(ref - px).max() if ref.shape == px.shape
                                              else -1))
            n_hf += 1
        if args.dump_expected:
            for i, t in enumerate(tiles):
                with open(os.path.join(args.dump_expected,
                                       dump_key("preproc", rel, "tile", i) + ".bin"), "wb") as f:
                    f.write(np.ascontiguousarray(t).tobytes())
        W.line("preproc", rel, hb, wb, nh, nw, len(tiles),
               *[crc(np.ascontiguousarray(t)) for t in tiles], crc(px.astype("<f4")))
        if args.dump_expected:
            with open(os.path.join(args.dump_expected, dump_key("preproc", rel, "f32") + ".bin"),
                      "wb") as f:
                f.write(px.astype("<f4").tobytes())

    # --------------------------------------------------------------------------------------------
    # token counts (§4): worked examples, edges, random sizes, round(x, 7) snapping cases
    sizes = [(412, 550), (750, 1000), (550, 412), (808, 1100), (1, 1), (336, 336), (672, 672),
             (672, 1344), (336, 1008), (1008, 336), (100000, 1), (1, 100000), (2, 1), (1, 2),
             (4000, 3000), (3000, 4000), (251, 337), (47, 47), (44, 55), (88, 99), (150, 200),
             (900, 300), (400, 400), (8192, 8192), (3, 9000), (9000, 3)]
    rng = np.random.default_rng(42)
    for _ in range(300):
        h, w = np.exp(rng.uniform(0, math.log(5000), 2)).astype(int) + 1
        sizes.append((int(h), int(w)))
    snaps = []
    for H in range(1, 1200):  # where int(round(x, 7)) != int(x) changes the count
        for Wd in range(1, 1200):
            hb, wb = select_best_resolution(H, Wd)
            ch, cw = 24 * hb // CROP, 24 * wb // CROP
            x = H * (cw / Wd) if Wd / H > cw / ch else Wd * (ch / H)
            if int(x) != int(round(x, 7)) and (ch if Wd / H > cw / ch else cw) % 2 != int(x) % 2:
                snaps.append((H, Wd))
    sizes += snaps[:40]
    hf_proc = None
    if hf is not None:
        hf_proc = types.SimpleNamespace(image_processor=types.SimpleNamespace(
            image_grid_pinpoints=[list(p) for p in PINPOINTS]), patch_size=PATCH,
            num_additional_image_tokens=NUM_ADDITIONAL)
        hf_proc._get_unpadded_features = types.MethodType(
            LlavaNextProcessor._get_unpadded_features, hf_proc)
    for H, Wd in sizes:
        hb, wb = select_best_resolution(H, Wd)
        nh, nw = patch_output_size(H, Wd, hb, wb)
        top, rows, left, cols = unpad_region(H, Wd, 24 * hb // CROP, 24 * wb // CROP)
        nd, nf = token_count(H, Wd, True), token_count(H, Wd, False)
        if hf_proc is not None:
            ref = LlavaNextProcessor._get_number_of_features(hf_proc, H, Wd, CROP, CROP)
            if ref != nf or ref - 1 != nd:
                sys.exit("token count port differs from transformers for %dx%d: %d vs %d" %
                         (H, Wd, nf, ref))
        W.line("tokens", H, Wd, hb, wb, nh, nw, top, rows, left, cols, nd, nf,
               (hb // CROP) * (wb // CROP) + 1)
    assert token_count(412, 550) == 2340 and token_count(750, 1000) == 2340
    assert token_count(550, 412) == 2352

    # --------------------------------------------------------------------------------------------
    # bad inputs
    small_jpg = pil_save(synth(64, 48, 20), "JPEG", quality=90)
    prog_jpg = pil_save(synth(64, 48, 21), "JPEG", quality=90, progressive=True)
    small_png = png_bytes(synth(64, 48, 22), 8, 2)
    small_webp = pil_save(synth(64, 48, 23), "WEBP", quality=80)

    def sof_patch(data, h, w):
        i = data.index(b"\xff\xc0") if b"\xff\xc0" in data else data.index(b"\xff\xc2")
        return data[:i + 5] + struct.pack(">HH", h, w) + data[i + 9:]

    def bad(name, data, word, max_pixels=0, pillow_fails=True):
        W.file("bad/" + name, data)
        W.line("bad", "bad/" + name, max_pixels, word)
        try:  # Pillow must refuse it too (except where we are stricter on purpose)
            Image.open(io.BytesIO(data)).convert("RGB")
            failed = False
        except Exception:
            failed = True
        if failed != pillow_fails:
            sys.exit("bad/%s: Pillow %s" % (name, "fails" if failed else "decodes it"))

    bad("empty.jpg", b"", "empty")
    bad("not_an_image.txt", b"hello, this is not an image\n" * 4, "unknown")
    bad("truncated.jpg", small_jpg[:len(small_jpg) // 2], "truncated")
    bad("truncated_progressive.jpg", prog_jpg[:len(prog_jpg) * 2 // 3], "truncated")
    bad("truncated_header.jpg", small_jpg[:40], "JPEG")
    bad("no_eoi_cut.jpg", small_jpg[:-20], "truncated")
    bad("truncated.png", small_png[:len(small_png) // 2], "truncated")
    bad("truncated_header.png", small_png[:20], "PNG")
    bad("truncated.webp", small_webp[:len(small_webp) // 2], "WebP")
    bad("huge_ihdr.png", png_bytes(np.zeros((1, 1, 3), np.int64), 8, 2, width=100000,
                                   height=100000), "limit")
    bad("huge_sof.jpg", sof_patch(small_jpg, 60000, 60000), "limit")
    bad("zero_width.png", png_bytes(np.zeros((1, 1, 3), np.int64), 8, 2, width=0), "zero")
    bad("zero_height.jpg", sof_patch(small_jpg, 0, 64), "empty")
    bad("bad_crc.png", small_png[:29] + bytes([small_png[29] ^ 0xFF]) + small_png[30:], "CRC")
    bad("image.gif", pil_save(synth(8, 8, 24), "GIF"), "GIF", pillow_fails=False)
    bad("limit.jpg", small_jpg, "limit", max_pixels=64 * 48 - 1, pillow_fails=False)
    bad("animated.webp", pil_save(Image.fromarray(synth(16, 16, 25)), "WEBP", save_all=True,
                                  append_images=[Image.fromarray(synth(16, 16, 26))]), "animated",
        pillow_fails=False)

    # --------------------------------------------------------------------------------------------
    head = ["# llava.c image fixtures — generated by tools/make_image_fixtures.py; do not edit.",
            "# pillow %s numpy %s python %s; transformers %s" % (
                PIL.__version__, np.__version__, sys.version.split()[0],
                "%s (cross-checked %d preprocessings and %d token counts)" % (
                    hf_version, n_hf, len(sizes)) if hf is not None else "not available")]
    with open(os.path.join(W.out, "manifest.txt"), "w") as f:
        f.write("\n".join(head + W.lines) + "\n")
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(W.out) for fn in fns)
    print("wrote %d checks to %s (%.2f MB)" % (len(W.lines), W.out, total / 1e6))


if __name__ == "__main__":
    main()

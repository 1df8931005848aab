/* decode.c — JPEG / PNG / WebP to 8-bit RGB, byte-identical to Pillow's Image.open(f).convert("RGB").
 *
 * Owns: the three decoders and the format sniffing. Each decoder reads the header first, checks
 * width*height against max_pixels, then allocates w*h*3 bytes and decodes into them.
 * Assumes: libjpeg-turbo with default decompression settings (islow DCT, fancy upsampling — what
 * Pillow uses), libpng 1.6, libwebp >= 1.0. libjpeg and libpng report errors by longjmp: every
 * pointer that is assigned after setjmp() and read in the error branch is volatile.
 * Never: prints (warnings are swallowed), exits, or keeps state between calls.
 *
 * Pillow behaviours reproduced here (each checked against Pillow 12.3 by tests/test_image.c):
 *  - JPEG: 1 component -> L -> RGB (replicate); 3 -> RGB as libjpeg converts it; 4 -> CMYK read with
 *    Adobe polarity ("CMYK;I": every sample inverted), then Pillow's cmyk2rgb:
 *    c = 255 - raw, nk = 255 - k, out = nk - MULDIV255(c, nk). YCCK is turned into CMYK by libjpeg
 *    first, as in Pillow. A truncated file is an error (Pillow raises "image file is truncated");
 *    other libjpeg warnings (corrupt-but-complete data) are ignored, as Pillow ignores them. The
 *    missing-EOI-after-complete-data case is not an error (jpeg_finish_decompress is not called).
 *  - PNG: gray 1/2/4 bit scale to 0..255 (x255, x85, x17); gray 16 bit becomes Pillow mode I;16
 *    whose RGB conversion saturates: min(v, 255) — NOT v >> 8; gray+alpha / RGB / RGBA 16 bit keep the
 *    high byte; palette indices at or beyond the PLTE length are black; tRNS and alpha are dropped.
 *    gAMA/iCCP/sBIT are ignored. Chunks after the image data are not read.
 *  - WebP: the RGB of libwebp's non-premultiplied RGBA output (what Pillow's WebPAnimDecoder gives);
 *    alpha is dropped.
 */
#include "image/image.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <webp/decode.h>

#include "util/mem.h"

void llava_image_free(llava_image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

/* Header check shared by the three decoders: non-empty, within max_pixels, addressable. */
static int check_dims(int64_t w, int64_t h, int64_t max_pixels, const char *name, const char *fmt,
                      llava_err *err) {
    if (w <= 0 || h <= 0)
        return llava_errf(err, "%s: %s image has zero size (%lldx%lld); the file is corrupt", name,
                          fmt, (long long)w, (long long)h);
    if (max_pixels > 0 && w * h > max_pixels)
        return llava_errf(err,
                          "%s: %s image is %lldx%lld = %lld pixels, over the limit of %lld "
                          "(decompression-bomb guard); downscale the image or raise max_pixels",
                          name, fmt, (long long)w, (long long)h, (long long)(w * h),
                          (long long)max_pixels);
    if ((uint64_t)w * (uint64_t)h > (uint64_t)(SIZE_MAX / 8) / 3)
        return llava_errf(err, "%s: %s image %lldx%lld is too large for this machine", name, fmt,
                          (long long)w, (long long)h);
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* JPEG                                                                                          */

typedef struct jpeg_err_ctx {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int truncated; /* the source ran out of data (JWRN_JPEG_EOF) */
} jpeg_err_ctx;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_err_ctx *e = (jpeg_err_ctx *)cinfo->err;
    longjmp(e->jb, 1);
}

/* Warnings are ignored like Pillow does, except running out of data: Pillow's suspending source
 * then raises "image file is truncated", so it is an error here too. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    jpeg_err_ctx *e = (jpeg_err_ctx *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        e->truncated = 1;
        longjmp(e->jb, 1);
    }
}

static void jpeg_silent(j_common_ptr cinfo) { (void)cinfo; }

/* Pillow's MULDIV255: a*b/255 rounded, exact for 0..255 operands. */
static inline int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static int decode_jpeg(llava_image *out, const uint8_t *data, size_t n, int64_t max_pixels,
                       const char *name, llava_err *err) {
    struct jpeg_decompress_struct cinfo;
    jpeg_err_ctx je;
    uint8_t *volatile pix = NULL;
    uint8_t *volatile row = NULL;

    memset(&cinfo, 0, sizeof cinfo);
    memset(&je, 0, sizeof je);
    cinfo.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jpeg_on_error;
    je.pub.emit_message = jpeg_on_message;
    je.pub.output_message = jpeg_silent;
    if (setjmp(je.jb)) {
        char msg[JMSG_LENGTH_MAX];
        if (je.truncated)
            snprintf(msg, sizeof msg, "file is truncated (premature end of JPEG data)");
        else
            (*cinfo.err->format_message)((j_common_ptr)&cinfo, msg);
        jpeg_destroy_decompress(&cinfo);
        free(pix);
        free(row);
        return llava_errf(err, "%s: cannot decode JPEG: %s; re-export or replace the file", name,
                          msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);

    int comps = cinfo.num_components;
    if (comps != 1 && comps != 3 && comps != 4) {
        jpeg_destroy_decompress(&cinfo);
        return llava_errf(err, "%s: JPEG with %d components is not supported (need 1, 3 or 4)",
                          name, comps);
    }
    if (check_dims(cinfo.image_width, cinfo.image_height, max_pixels, name, "JPEG", err)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    /* Defaults otherwise (JDCT_ISLOW, fancy upsampling): exactly Pillow's settings. */
    cinfo.out_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_start_decompress(&cinfo);

    const int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    const size_t stride = (size_t)w * 3;
    pix = llava_try_malloc(stride * (size_t)h, "JPEG pixels", err);
    if (!pix) {
        jpeg_destroy_decompress(&cinfo);
        return llava_err_prefix(err, "%s", name);
    }
    if (comps != 3) {
        row = llava_try_malloc((size_t)w * (size_t)comps * 16, "JPEG row buffer", err);
        if (!row) {
            jpeg_destroy_decompress(&cinfo);
            free(pix);
            return llava_err_prefix(err, "%s", name);
        }
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rows[16];
        int y0 = (int)cinfo.output_scanline;
        int nr = h - y0 < 16 ? h - y0 : 16;
        for (int i = 0; i < nr; i++)
            rows[i] = comps == 3 ? pix + (size_t)(y0 + i) * stride : row + (size_t)i * w * comps;
        int got = (int)jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)nr);
        for (int i = 0; comps != 3 && i < got; i++) {
            const uint8_t *s = rows[i];
            uint8_t *d = pix + (size_t)(y0 + i) * stride;
            if (comps == 1) {
                for (int x = 0; x < w; x++) d[3 * x] = d[3 * x + 1] = d[3 * x + 2] = s[x];
            } else {
                for (int x = 0; x < w; x++, s += 4, d += 3) {
                    int nk = s[3]; /* 255 - (255 - k): the inverted K of "CMYK;I" */
                    for (int c = 0; c < 3; c++) {
                        int v = nk - muldiv255(255 - s[c], nk);
                        d[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                    }
                }
            }
        }
    }
    /* Like Pillow, do not require the EOI marker once every scanline is decoded. */
    jpeg_destroy_decompress(&cinfo);
    free(row);
    out->w = w;
    out->h = h;
    out->rgb = pix;
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* PNG                                                                                           */

/* Push-mode (progressive) decoding, like Pillow's: rows are delivered as soon as zlib produces
 * them, so a file that ends after the last row (missing adler32, IDAT CRC or IEND) decodes, and one
 * that ends before it is "truncated". IDAT CRCs are not checked (Pillow does not read them);
 * CRCs of the header chunks are. Lives on the heap: it is read after a longjmp. */
typedef struct png_ctx {
    const char *name;
    int64_t max_pixels;
    llava_err *err;
    char msg[256], warn[256];
    int reported;         /* the message is already in err */
    int w, h, depth, ctype, passes;
    size_t rowbytes;
    int done;             /* the last row of the last pass was delivered */
    uint8_t pal[256][3];
    uint8_t *pix; /* (h, w, 3) output */
    uint8_t *raw; /* interlaced only: (h, rowbytes) rows at the stored depth */
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_ctx *c = (png_ctx *)png_get_error_ptr(png);
    if (c->warn[0])
        snprintf(c->msg, sizeof c->msg, "%s (%s)", msg ? msg : "libpng error", c->warn);
    else
        snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    png_ctx *c = (png_ctx *)png_get_error_ptr(png);
    snprintf(c->warn, sizeof c->warn, "%s", msg ? msg : "");
}

/* One decoded PNG row (after png_set_packing: 1 byte per sample below 8 bits, big-endian 16 bit)
 * to RGB with Pillow's conversion rules (see the top of this file). */
static void png_row_to_rgb(uint8_t *d, const uint8_t *s, int w, int ctype, int depth,
                           const uint8_t pal[256][3]) {
    switch (ctype) {
    case PNG_COLOR_TYPE_GRAY:
        if (depth == 16) {
            for (int x = 0; x < w; x++, s += 2, d += 3) {
                uint8_t v = s[0] ? 255 : s[1]; /* I;16 -> RGB saturates */
                d[0] = d[1] = d[2] = v;
            }
        } else {
            const int mul = depth == 1 ? 255 : depth == 2 ? 85 : depth == 4 ? 17 : 1;
            for (int x = 0; x < w; x++, d += 3) d[0] = d[1] = d[2] = (uint8_t)(s[x] * mul);
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: {
        const int step = depth == 16 ? 4 : 2;
        for (int x = 0; x < w; x++, s += step, d += 3) d[0] = d[1] = d[2] = s[0];
        break;
    }
    case PNG_COLOR_TYPE_RGB:
        if (depth == 16) {
            for (int x = 0; x < w; x++, s += 6, d += 3) {
                d[0] = s[0];
                d[1] = s[2];
                d[2] = s[4];
            }
        } else {
            memcpy(d, s, (size_t)w * 3);
        }
        break;
    case PNG_COLOR_TYPE_RGB_ALPHA: {
        const int hi = depth == 16 ? 2 : 1, step = 4 * hi;
        for (int x = 0; x < w; x++, s += step, d += 3) {
            d[0] = s[0];
            d[1] = s[hi];
            d[2] = s[2 * hi];
        }
        break;
    }
    case PNG_COLOR_TYPE_PALETTE:
        for (int x = 0; x < w; x++, d += 3) memcpy(d, pal[s[x]], 3);
        break;
    }
}

static void png_on_info(png_structp png, png_infop info) {
    png_ctx *c = (png_ctx *)png_get_progressive_ptr(png);
    png_uint_32 w32, h32;
    int interlace;
    png_get_IHDR(png, info, &w32, &h32, &c->depth, &c->ctype, &interlace, NULL, NULL);
    if (check_dims(w32, h32, c->max_pixels, c->name, "PNG", c->err)) {
        c->reported = 1;
        png_longjmp(png, 1);
    }
    c->w = (int)w32;
    c->h = (int)h32;
    memset(c->pal, 0, sizeof c->pal); /* Pillow: indices beyond the PLTE are black */
    if (c->ctype == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte = NULL;
        int np = 0;
        if (!png_get_PLTE(png, info, &plte, &np)) png_error(png, "palette image without PLTE");
        for (int i = 0; i < np && i < 256; i++) {
            c->pal[i][0] = plte[i].red;
            c->pal[i][1] = plte[i].green;
            c->pal[i][2] = plte[i].blue;
        }
    }
    if (c->depth < 8) png_set_packing(png); /* one sample per byte, values not rescaled */
    c->passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE); /* image data: like Pillow */
    c->rowbytes = png_get_rowbytes(png, info);
    c->pix = llava_try_malloc((size_t)c->w * 3 * (size_t)c->h, "PNG pixels", c->err);
    if (c->pix && c->passes > 1) {
        c->raw = llava_try_malloc(c->rowbytes * (size_t)c->h, "PNG interlaced image", c->err);
        if (c->raw) memset(c->raw, 0, c->rowbytes * (size_t)c->h);
    }
    if (!c->pix || (c->passes > 1 && !c->raw)) {
        llava_err_prefix(c->err, "%s", c->name);
        c->reported = 1;
        png_longjmp(png, 1);
    }
}

static void png_on_row(png_structp png, png_bytep row, png_uint_32 y, int pass) {
    png_ctx *c = (png_ctx *)png_get_progressive_ptr(png);
    /* Interlaced: libpng calls back for every image row in every pass, with row == NULL where the
     * pass has no pixels, up to (pass 6, row h-1) even when pass 6 is empty. */
    if ((int)y == c->h - 1 && (c->passes == 1 ? row != NULL : pass == 6)) c->done = 1;
    if (!row || (int)y >= c->h) return;
    if (c->passes == 1) {
        png_row_to_rgb(c->pix + (size_t)y * c->w * 3, row, c->w, c->ctype, c->depth,
                       (const uint8_t(*)[3])c->pal);
    } else {
        png_progressive_combine_row(png, c->raw + (size_t)y * c->rowbytes, row);
    }
}

static int decode_png(llava_image *out, const uint8_t *data, size_t n, int64_t max_pixels,
                      const char *name, llava_err *err) {
    png_ctx *c = xcalloc(1, sizeof *c);
    c->name = name;
    c->max_pixels = max_pixels;
    c->err = err;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        free(c);
        return llava_errf(err, "%s: out of memory creating the PNG decoder", name);
    }
    int failed = 0;
    if (setjmp(png_jmpbuf(png))) {
        failed = 1;
    } else {
        png_set_benign_errors(png, 1);
        /* Width/height limits are ours (max_pixels); lift libpng's own 1e6 per-side cap. */
        png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
        png_set_progressive_read_fn(png, c, png_on_info, png_on_row, NULL);
        png_process_data(png, info, (png_bytep)(uintptr_t)data, n);
    }
    png_destroy_read_struct(&png, &info, NULL);
    const int complete = c->pix && c->done;
    int rc = 0;
    if (!complete) {
        /* An error after the last row (e.g. in trailing chunks) is ignored, as Pillow does. */
        if (c->reported)
            rc = -1;
        else if (failed)
            rc = llava_errf(err, "%s: cannot decode PNG: %s; re-export or replace the file", name,
                            c->msg);
        else
            rc = llava_errf(err, "%s: cannot decode PNG: file is truncated; re-export or replace "
                                 "the file",
                            name);
        free(c->pix);
    } else {
        if (c->passes > 1)
            for (int y = 0; y < c->h; y++)
                png_row_to_rgb(c->pix + (size_t)y * c->w * 3, c->raw + (size_t)y * c->rowbytes,
                               c->w, c->ctype, c->depth, (const uint8_t(*)[3])c->pal);
        out->w = c->w;
        out->h = c->h;
        out->rgb = c->pix;
    }
    free(c->raw);
    free(c);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* WebP                                                                                          */

static const char *webp_status_str(VP8StatusCode st) {
    switch (st) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "corrupt bitstream";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "file is truncated";
    default: return "unknown error";
    }
}

static int decode_webp(llava_image *out, const uint8_t *data, size_t n, int64_t max_pixels,
                       const char *name, llava_err *err) {
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg))
        return llava_errf(err, "%s: libwebp version mismatch (WebPInitDecoderConfig failed)", name);
    VP8StatusCode st = WebPGetFeatures(data, n, &cfg.input);
    if (st != VP8_STATUS_OK)
        return llava_errf(err, "%s: cannot read WebP header: %s; re-export or replace the file",
                          name, webp_status_str(st));
    if (cfg.input.has_animation)
        return llava_errf(err,
                          "%s: animated WebP is not supported; extract one frame (e.g. to PNG) "
                          "and pass that",
                          name);
    if (check_dims(cfg.input.width, cfg.input.height, max_pixels, name, "WebP", err)) return -1;
    const int w = cfg.input.width, h = cfg.input.height;
    const size_t stride = (size_t)w * 3;
    uint8_t *pix = llava_try_malloc(stride * (size_t)h, "WebP pixels", err);
    if (!pix) return llava_err_prefix(err, "%s", name);
    /* RGB output: the same samples as the RGB of non-premultiplied RGBA (Pillow's path). */
    cfg.output.colorspace = MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = pix;
    cfg.output.u.RGBA.stride = (int)stride;
    cfg.output.u.RGBA.size = stride * (size_t)h;
    st = WebPDecode(data, n, &cfg);
    WebPFreeDecBuffer(&cfg.output);
    if (st != VP8_STATUS_OK) {
        free(pix);
        return llava_errf(err, "%s: cannot decode WebP: %s; re-export or replace the file", name,
                          webp_status_str(st));
    }
    out->w = w;
    out->h = h;
    out->rgb = pix;
    return 0;
}

/* ------------------------------------------------------------------------------------------- */

static const char *other_format(const uint8_t *b, size_t n) {
    if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return "GIF";
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "BMP";
    if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4))) return "TIFF";
    if (n >= 12 && !memcmp(b + 4, "ftyp", 4)) return "HEIF/AVIF";
    return NULL;
}

int llava_image_decode(llava_image *out, const void *bytes, size_t n, int64_t max_pixels,
                       const char *name, llava_err *err) {
    CHECK(out);
    memset(out, 0, sizeof *out);
    if (!name) name = "image";
    const uint8_t *b = bytes;
    if (n == 0 || !b)
        return llava_errf(err, "%s: empty file (0 bytes); pass a JPEG, PNG or WebP image", name);
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        return decode_jpeg(out, b, n, max_pixels, name, err);
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
        return decode_png(out, b, n, max_pixels, name, err);
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4))
        return decode_webp(out, b, n, max_pixels, name, err);
    const char *other = other_format(b, n);
    if (other)
        return llava_errf(err, "%s: %s images are not supported; convert it to PNG or JPEG", name,
                          other);
    return llava_errf(err,
                      "%s: unknown image format (first bytes %02x %02x %02x %02x); pass a JPEG, "
                      "PNG or WebP image",
                      name, b[0], n > 1 ? b[1] : 0, n > 2 ? b[2] : 0, n > 3 ? b[3] : 0);
}

int llava_image_load(llava_image *out, const char *path, int64_t max_pixels, llava_err *err) {
    CHECK(out && path);
    memset(out, 0, sizeof *out);
    llava_mmap m;
    if (llava_mmap_open(&m, path, err)) return -1;
    int rc = llava_image_decode(out, m.data, m.size, max_pixels, path, err);
    llava_mmap_close(&m);
    return rc;
}

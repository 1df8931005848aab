/* test_image.c — decoding, resizing, anyres preprocessing and token counts against Pillow.
 *
 * Reads tests/fixtures/images/manifest.txt (written by tools/make_image_fixtures.py with Pillow
 * 12.3; see that script for the line format). Every pixel check is byte-exact. A failing buffer
 * is written to $TMPDIR/llava_test_image/<key>.bin; `make_image_fixtures.py --dump-expected DIR`
 * writes the expected buffer under the same name, so `cmp` finds the first differing byte.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "image/anyres.h"
#include "image/image.h"
#include "image/resize.h"
#include "test.h"
#include "util/mem.h"

#define FIX "tests/fixtures/images"

static uint32_t crc32_buf(const void *data, size_t n) {
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* Same naming as dump_key() in make_image_fixtures.py. */
static void dump_key(char *out, size_t cap, const char *a, const char *b, const char *c) {
    snprintf(out, cap, "%s%s%s%s%s", a, b ? "_" : "", b ? b : "", c ? "_" : "", c ? c : "");
    for (char *s = out; *s; s++)
        if (*s == '/' || *s == '.' || *s == ':') *s = '-';
}

static void dump_actual(const char *key, const void *buf, size_t n) {
    const char *tmp = getenv("TMPDIR");
    char dir[1024], path[2048];
    snprintf(dir, sizeof dir, "%s/llava_test_image", tmp && *tmp ? tmp : "/tmp");
    mkdir(dir, 0777);
    snprintf(path, sizeof path, "%s/%s.bin", dir, key);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(buf, 1, n, f);
    fclose(f);
    printf("INFO wrote the actual bytes of %s to %s\n", key, path);
}

/* expect: "raw:<file>" or "crc:<hex>:<len>". Returns 1 when buf matches. */
static int matches(const char *key, const char *expect, const void *buf, size_t n) {
    if (!strncmp(expect, "crc:", 4)) {
        unsigned crc = 0;
        unsigned long long len = 0;
        if (sscanf(expect + 4, "%x:%llu", &crc, &len) != 2) {
            printf("FAIL %s: bad expectation '%s'\n", key, expect);
            return 0;
        }
        if (len != n || crc32_buf(buf, n) != crc) {
            printf("INFO %s: %zu bytes with crc %08x, expected %llu bytes with crc %08x\n", key, n,
                   crc32_buf(buf, n), len, crc);
            dump_actual(key, buf, n);
            return 0;
        }
        return 1;
    }
    if (strncmp(expect, "raw:", 4)) return 0;
    char path[1024];
    snprintf(path, sizeof path, FIX "/%s", expect + 4);
    size_t len = 0;
    llava_err err = {{0}};
    char *ref = llava_read_file(path, &len, 1 << 26, &err);
    if (!ref) {
        printf("INFO %s\n", err.msg);
        return 0;
    }
    int ok = len == n && !memcmp(ref, buf, n);
    if (!ok) {
        size_t first = 0, ndiff = 0;
        int maxd = 0;
        for (size_t i = 0; i < (len < n ? len : n); i++) {
            int d = abs((int)((const uint8_t *)buf)[i] - (int)(uint8_t)ref[i]);
            if (d && !ndiff++) first = i;
            if (d > maxd) maxd = d;
        }
        printf("INFO %s: %zu vs %zu bytes, %zu differ, first at byte %zu (pixel %zu), max |diff| "
               "%d\n",
               key, n, len, ndiff, first, first / 3, maxd);
        dump_actual(key, buf, n);
    }
    free(ref);
    return ok;
}

/* Decoded fixture images, looked up by the resize and preproc lines. */
enum { MAX_DECODED = 128 };
static struct {
    char name[256];
    llava_image img;
} decoded[MAX_DECODED];
static int n_decoded;

static const llava_image *find_decoded(const char *name) {
    for (int i = 0; i < n_decoded; i++)
        if (!strcmp(decoded[i].name, name)) return &decoded[i].img;
    return NULL;
}

static int contains_nocase(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n)) return 1;
    return 0;
}

static void check_decode(char **f, int nf) {
    if (nf != 5) {
        EXPECT(0, "bad decode line");
        return;
    }
    char path[1024], key[512];
    snprintf(path, sizeof path, FIX "/%s", f[1]);
    dump_key(key, sizeof key, "decode", f[1], NULL);
    llava_image img;
    llava_err err = {{0}};
    int rc = llava_image_load(&img, path, LLAVA_DEFAULT_MAX_PIXELS, &err);
    EXPECT(rc == 0, "decode %s: %s", f[1], err.msg);
    if (rc) return;
    EXPECT(img.w == atoi(f[2]) && img.h == atoi(f[3]), "decode %s: size %dx%d, Pillow %sx%s",
           f[1], img.w, img.h, f[2], f[3]);
    EXPECT(matches(key, f[4], img.rgb, (size_t)img.w * img.h * 3),
           "decode %s differs from Pillow's convert(\"RGB\")", f[1]);
    if (n_decoded < MAX_DECODED) {
        snprintf(decoded[n_decoded].name, sizeof decoded[0].name, "%s", f[1]);
        decoded[n_decoded++].img = img;
    } else {
        llava_image_free(&img);
    }
}

static void check_resize(char **f, int nf) {
    if (nf != 7) {
        EXPECT(0, "bad resize line");
        return;
    }
    const int sw = atoi(f[2]), sh = atoi(f[3]), dw = atoi(f[4]), dh = atoi(f[5]);
    char key[512], sz[64];
    snprintf(sz, sizeof sz, "%d_%d", dw, dh);
    const uint8_t *src = NULL;
    char *raw = NULL;
    if (!strncmp(f[1], "raw:", 4)) {
        char path[1024];
        size_t len = 0;
        llava_err err = {{0}};
        snprintf(path, sizeof path, FIX "/%s", f[1] + 4);
        raw = llava_read_file(path, &len, 1 << 26, &err);
        EXPECT(raw && len == (size_t)sw * sh * 3, "resize source %s: %s", f[1], err.msg);
        if (!raw || len != (size_t)sw * sh * 3) {
            free(raw);
            return;
        }
        src = (const uint8_t *)raw;
        /* key as in the script: resize_<basename without .rgb>_<dw>_<dh> */
        char base[256];
        snprintf(base, sizeof base, "%s", strrchr(f[1], '/') + 1);
        *strrchr(base, '.') = 0;
        dump_key(key, sizeof key, "resize", base, sz);
    } else {
        const llava_image *im = find_decoded(f[1] + 8);
        EXPECT(im && im->w == sw && im->h == sh, "resize source %s was not decoded", f[1]);
        if (!im || im->w != sw || im->h != sh) return;
        src = im->rgb;
        dump_key(key, sizeof key, "resize", f[1] + 8, sz);
    }
    const size_t n = (size_t)dw * dh * 3;
    uint8_t *out = xmalloc(n);
    llava_err err = {{0}};
    int rc = llava_resize_bicubic(out, (size_t)dw * 3, dw, dh, src, (size_t)sw * 3, sw, sh, &err);
    EXPECT(rc == 0, "resize %dx%d -> %dx%d: %s", sw, sh, dw, dh, err.msg);
    EXPECT(rc == 0 && matches(key, f[6], out, n), "resize %s %dx%d -> %dx%d differs from Pillow",
           f[1], sw, sh, dw, dh);
    if (n <= 300000) { /* strided destination and source give the same pixels */
        const size_t ds = (size_t)dw * 3 + 7, ss = (size_t)sw * 3 + 5;
        uint8_t *wide = xcalloc(ds * dh, 1), *srcw = xcalloc(ss * sh, 1);
        for (int y = 0; y < sh; y++) memcpy(srcw + y * ss, src + (size_t)y * sw * 3, (size_t)sw * 3);
        rc = llava_resize_bicubic(wide, ds, dw, dh, srcw, ss, sw, sh, &err);
        int same = rc == 0;
        for (int y = 0; same && y < dh; y++)
            same = !memcmp(wide + y * ds, out + (size_t)y * dw * 3, (size_t)dw * 3);
        EXPECT(same, "resize %dx%d -> %dx%d with strides differs", sw, sh, dw, dh);
        free(wide);
        free(srcw);
    }
    free(out);
    free(raw);
}

static void check_preproc(char **f, int nf, const llava_preproc_params *p) {
    if (nf < 7) {
        EXPECT(0, "bad preproc line");
        return;
    }
    const int hb = atoi(f[2]), wb = atoi(f[3]), nh = atoi(f[4]), nw = atoi(f[5]), n = atoi(f[6]);
    if (nf != 8 + n) {
        EXPECT(0, "bad preproc line for %s", f[1]);
        return;
    }
    const llava_image *im = find_decoded(f[1]);
    EXPECT(im != NULL, "preproc source %s was not decoded", f[1]);
    if (!im) return;
    int h, w, h2, w2;
    llava_select_best_resolution(im->h, im->w, (const int(*)[2])p->pinpoints, p->n_pinpoints, &h,
                                 &w);
    llava_patch_output_size(im->h, im->w, h, w, &h2, &w2);
    EXPECT(h == hb && w == wb && h2 == nh && w2 == nw,
           "preproc %s: best %dx%d resize %dx%d, expected %dx%d %dx%d", f[1], h, w, h2, w2, hb, wb,
           nh, nw);
    EXPECT(llava_num_tiles(p, im->h, im->w) == n, "preproc %s: num_tiles", f[1]);

    uint8_t *tiles = NULL;
    int nt = 0;
    llava_err err = {{0}};
    int rc = llava_preprocess_u8(&tiles, &nt, im, p, &err);
    EXPECT(rc == 0 && nt == n, "preprocess_u8 %s: rc %d, %d tiles (expected %d): %s", f[1], rc, nt,
           n, err.msg);
    const size_t tb = (size_t)p->crop * p->crop * 3;
    for (int t = 0; rc == 0 && t < nt && t < n; t++) {
        char key[512], tn[32];
        snprintf(tn, sizeof tn, "tile_%d", t);
        dump_key(key, sizeof key, "preproc", f[1], tn);
        EXPECT(matches(key, f[7 + t], tiles + tb * t, tb),
               "preprocess_u8 %s tile %d differs from the Python/Pillow §2 reference", f[1], t);
    }
    free(tiles);

    float *px = NULL;
    rc = llava_preprocess(&px, &nt, im, p, &err);
    EXPECT(rc == 0 && nt == n, "preprocess %s: %s", f[1], err.msg);
    if (rc == 0) {
        char key[512];
        dump_key(key, sizeof key, "preproc", f[1], "f32");
        EXPECT(matches(key, f[7 + n], px, sizeof(float) * (size_t)nt * 3 * p->crop * p->crop),
               "preprocess %s float32 pixels differ from the reference", f[1]);
    }
    free(px);
}

static void check_tokens(char **f, int nf, const llava_preproc_params *p,
                         const llava_preproc_params *pfull) {
    if (nf != 14) {
        EXPECT(0, "bad tokens line");
        return;
    }
    int v[13];
    for (int i = 0; i < 13; i++) v[i] = atoi(f[i + 1]);
    const int H = v[0], W = v[1];
    int hb, wb, nh, nw, top, rows, left, cols;
    llava_select_best_resolution(H, W, (const int(*)[2])p->pinpoints, p->n_pinpoints, &hb, &wb);
    llava_patch_output_size(H, W, hb, wb, &nh, &nw);
    llava_unpad_region(H, W, 24 * hb / 336, 24 * wb / 336, &top, &rows, &left, &cols);
    EXPECT(hb == v[2] && wb == v[3], "%dx%d (HxW): best %dx%d, expected %dx%d", H, W, hb, wb, v[2],
           v[3]);
    EXPECT(nh == v[4] && nw == v[5], "%dx%d: resize %dx%d, expected %dx%d", H, W, nh, nw, v[4],
           v[5]);
    EXPECT(top == v[6] && rows == v[7] && left == v[8] && cols == v[9],
           "%dx%d: unpad top %d rows %d left %d cols %d, expected %d %d %d %d", H, W, top, rows,
           left, cols, v[6], v[7], v[8], v[9]);
    int nd = llava_image_token_count(p, H, W), nfull = llava_image_token_count(pfull, H, W);
    EXPECT(nd == v[10] && nfull == v[11], "%dx%d: tokens %d/%d, expected %d/%d", H, W, nd, nfull,
           v[10], v[11]);
    EXPECT(llava_num_tiles(p, H, W) == v[12], "%dx%d: tiles", H, W);
}

static void check_bad(char **f, int nf) {
    if (nf != 4) {
        EXPECT(0, "bad bad line");
        return;
    }
    char path[1024];
    snprintf(path, sizeof path, FIX "/%s", f[1]);
    long long maxp = atoll(f[2]);
    llava_image img = {7, 7, (uint8_t *)&img};
    llava_err err = {{0}};
    int rc = llava_image_load(&img, path, maxp ? maxp : LLAVA_DEFAULT_MAX_PIXELS, &err);
    EXPECT(rc == -1 && img.rgb == NULL && img.w == 0 && img.h == 0, "%s: expected an error, rc %d",
           f[1], rc);
    const char *named = strstr(err.msg, f[1]);
    EXPECT(named && contains_nocase(named + strlen(f[1]), f[3]),
           "%s: message '%s' should name the file and mention '%s'", f[1], err.msg, f[3]);
    printf("INFO %s\n", err.msg);
    if (rc == 0) llava_image_free(&img);
}

/* A truncated copy: error exactly where Pillow raises, Pillow's pixels where it decodes. */
static int prefix_mismatches;
static char *prefix_bytes; /* the file of the previous prefix line */
static void check_prefix(char **f, int nf) {
    if (nf != 4) {
        EXPECT(0, "bad prefix line");
        return;
    }
    static char cur[256];
    static size_t len;
    char *bytes = prefix_bytes;
    if (strcmp(cur, f[1])) { /* consecutive lines share the file */
        char path[1024];
        llava_err err = {{0}};
        free(prefix_bytes);
        snprintf(cur, sizeof cur, "%s", f[1]);
        snprintf(path, sizeof path, FIX "/%s", f[1]);
        bytes = prefix_bytes = llava_read_file(path, &len, 1 << 26, &err);
        EXPECT(bytes != NULL, "%s", err.msg);
    }
    if (!bytes) return;
    const size_t cut = strtoull(f[2], NULL, 10);
    if (cut > len) {
        EXPECT(0, "prefix %s: %zu > %zu bytes", f[1], cut, len);
        return;
    }
    llava_image img;
    llava_err err = {{0}};
    const int rc = llava_image_decode(&img, bytes, cut, 0, f[1], &err);
    const int want_ok = strcmp(f[3], "error") != 0;
    char key[512];
    dump_key(key, sizeof key, "prefix", f[1], f[2]);
    int ok = rc == (want_ok ? 0 : -1) && (rc == -1 || matches(key, f[3], img.rgb,
                                                              (size_t)img.w * img.h * 3));
    if (!ok && prefix_mismatches++ < 12)
        printf("INFO prefix %s %zu/%zu: Pillow %s, we %s\n", f[1], cut, len,
               want_ok ? "decodes" : "fails", rc ? err.msg : "decode");
    EXPECT(ok, "truncated %s (%zu of %zu bytes): Pillow %s, llava %s", f[1], cut, len,
           want_ok ? "decodes it" : "raises", rc ? "fails" : "decodes it");
    if (rc == 0) llava_image_free(&img);
}

static void check_examples(const llava_preproc_params *p) {
    /* REFERENCE §4 worked examples (W x H as PIL .size). */
    EXPECT(llava_image_token_count(p, 412, 550) == 2340, "550x412 -> 2340");
    EXPECT(llava_image_token_count(p, 750, 1000) == 2340, "1000x750 -> 2340");
    EXPECT(llava_image_token_count(p, 550, 412) == 2352, "412x550 -> 2352");
    EXPECT(llava_image_token_count(p, 808, 1100) == 2340, "1100x808 -> 2340");
    int h, w, nh, nw;
    llava_select_best_resolution(750, 1000, (const int(*)[2])p->pinpoints, 5, &h, &w);
    llava_patch_output_size(750, 1000, h, w, &nh, &nw);
    EXPECT(h == 672 && w == 672 && nh == 505 && nw == 672, "1000x750: ceil artefact gives 505");
    llava_patch_output_size(808, 1100, 672, 672, &nh, &nw);
    EXPECT(nh == 494 && nw == 672, "1100x808 resized 494x672");
    EXPECT(llava_num_tiles(p, 412, 550) == 5, "550x412: 5 tiles");

    llava_preproc_params bad = *p;
    bad.pinpoints[2][0] = 500;
    EXPECT(llava_image_token_count(&bad, 412, 550) == -1, "pinpoint not a multiple of crop");
    EXPECT(llava_image_token_count(p, 0, 5) == -1, "zero height");

    /* Padding is black, normalised: (-1.7922626, -1.7520971, -1.4802198). */
    const llava_image *im = find_decoded("src/photo_550x412.jpg");
    if (im) {
        float *px = NULL;
        int n = 0;
        llava_err err = {{0}};
        llava_image copy = *im;
        EXPECT(llava_preprocess(&px, &n, &copy, p, &err) == 0 && n == 5, "preprocess: %s", err.msg);
        if (px) {
            const size_t hw = 336 * 336;
            const float *t1 = px + 1 * 3 * hw; /* tile (0,0): rows 0..83 are padding */
            EXPECT(fabsf(t1[0] - -1.7922626f) < 1e-6f && fabsf(t1[hw] - -1.7520971f) < 1e-6f &&
                       fabsf(t1[2 * hw] - -1.4802198f) < 1e-6f,
                   "pad pixel normalises to (%.7f, %.7f, %.7f)", t1[0], t1[hw], t1[2 * hw]);
            free(px);
        }
        bad = *p;
        bad.crop = 0;
        EXPECT(llava_preprocess(&px, &n, &copy, &bad, &err) == -1 && px == NULL && n == 0,
               "preprocess with crop 0 must fail");
        printf("INFO %s\n", err.msg);
    }
    EXPECT(p->rescale == 1.0 / 255.0, "rescale is the Python float 1/255");
}

static void check_api_edges(void) {
    llava_image img;
    llava_err err = {{0}};
    EXPECT(llava_image_load(&img, FIX "/does_not_exist.png", 0, &err) == -1 &&
               strstr(err.msg, "does_not_exist.png"),
           "missing file: %s", err.msg);
    EXPECT(llava_image_decode(&img, "\xff\xd8\xff", 3, 0, NULL, &err) == -1 &&
               strstr(err.msg, "image:"),
           "3-byte JPEG: %s", err.msg);
    EXPECT(llava_image_decode(&img, NULL, 0, 0, "x", NULL) == -1, "NULL err is allowed");
    llava_image_free(&img);
    llava_image_free(NULL);
    uint8_t px[3] = {1, 2, 3}, out[3];
    EXPECT(llava_resize_bicubic(out, 3, 0, 1, px, 3, 1, 1, &err) == -1, "resize to 0 width");
    EXPECT(llava_resize_bicubic(out, 3, 1, 1, px, 3, 1, 1, &err) == 0 && !memcmp(out, px, 3),
           "1x1 identity resize");

    /* Decoding from memory equals decoding the file (and max_pixels <= 0 means no limit). */
    size_t len = 0;
    char *bytes = llava_read_file(FIX "/src/q90_420.jpg", &len, 1 << 24, &err);
    const llava_image *ref = find_decoded("src/q90_420.jpg");
    if (bytes && ref) {
        EXPECT(llava_image_decode(&img, bytes, len, 0, "mem", &err) == 0 && img.w == ref->w &&
                   !memcmp(img.rgb, ref->rgb, (size_t)img.w * img.h * 3),
               "decode from memory: %s", err.msg);
        llava_image_free(&img);
        EXPECT(img.rgb == NULL && img.w == 0, "free zeroes the image");
    }
    free(bytes);
    const char *others[] = {"/src/rgb8_interlaced.png", "/src/lossy_alpha.webp",
                            "/src/progressive.jpg", "/src/palette4_trns.png"};
    for (size_t k = 0; k < sizeof others / sizeof *others; k++) {
        char path[512];
        snprintf(path, sizeof path, FIX "%s", others[k]);
        bytes = llava_read_file(path, &len, 1 << 24, &err);
        if (!bytes) continue;
        /* Flipped bytes: must not crash or leak; either result is fine. */
        for (size_t i = 16; i < len; i += len / 41 + 1) {
            bytes[i] ^= 0x5A;
            if (llava_image_decode(&img, bytes, len, 0, "flip", &err) == 0) llava_image_free(&img);
            bytes[i] ^= 0x5A;
        }
        free(bytes);
    }
}

int main(void) {
    llava_preproc_params p, pfull;
    llava_preproc_params_default(&p);
    pfull = p;
    pfull.select_default = 0;

    FILE *mf = fopen(FIX "/manifest.txt", "r");
    EXPECT(mf != NULL, "cannot open " FIX "/manifest.txt (run tools/make_image_fixtures.py)");
    if (!mf) TEST_END();
    char line[8192];
    int counts[6] = {0};
    while (fgets(line, sizeof line, mf)) {
        if (line[0] == '#') {
            if (strstr(line, "pillow")) printf("INFO fixtures: %s", line + 2);
            continue;
        }
        char *f[64], *save = NULL;
        int nf = 0;
        for (char *t = strtok_r(line, " \t\r\n", &save); t && nf < 64;
             t = strtok_r(NULL, " \t\r\n", &save))
            f[nf++] = t;
        if (!nf) continue;
        if (!strcmp(f[0], "decode")) check_decode(f, nf), counts[0]++;
        else if (!strcmp(f[0], "resize")) check_resize(f, nf), counts[1]++;
        else if (!strcmp(f[0], "preproc")) check_preproc(f, nf, &p), counts[2]++;
        else if (!strcmp(f[0], "tokens")) check_tokens(f, nf, &p, &pfull), counts[3]++;
        else if (!strcmp(f[0], "bad")) check_bad(f, nf), counts[4]++;
        else if (!strcmp(f[0], "prefix")) check_prefix(f, nf), counts[5]++;
        else EXPECT(0, "unknown manifest line '%s'", f[0]);
    }
    fclose(mf);
    printf("INFO %d decodes, %d resizes, %d preprocessings, %d token counts, %d bad inputs, %d "
           "truncations\n",
           counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]);
    EXPECT(counts[0] > 40 && counts[1] > 30 && counts[2] > 5 && counts[3] > 100 && counts[4] > 10,
           "manifest looks incomplete");
    check_examples(&p);
    check_api_edges();
    for (int i = 0; i < n_decoded; i++) llava_image_free(&decoded[i].img);
    free(prefix_bytes);
    TEST_END();
}

/* test_safetensors.c — the safetensors reader and writer.
 *
 * 1. Files written by Python safetensors (tests/fixtures/safetensors, made by
 *    tools/make_safetensors_fixtures.py): every dtype, bytes and float32 values as numpy gives them,
 *    metadata, a sharded directory with index.json and a one-file directory.
 * 2. Conversions: bf16 exhaustively (and f32 -> bf16 rounding against the nearest candidate), f16
 *    exhaustively against an independent ldexp formula.
 * 3. Every malformed-file case of the contract, written byte by byte into a temp dir, plus every
 *    truncation and many single-byte corruptions of a valid file (no crash, no out-of-bounds read
 *    under ASan).
 * 4. llava_st_write -> llava_st_open round trip, and the writer's own errors.
 * 5. The real Hugging Face checkpoints of tests/fixtures/tiny-{a,b} (one file, two shards) open and
 *    every float tensor converts (skipped when those fixtures are absent).
 */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/json.h"
#include "formats/safetensors.h"
#include "test.h"
#include "util/mem.h"

#define FIX "tests/fixtures/safetensors"

static char tmpdir[256];

static char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("FAIL cannot write %s\n", path);
        exit(1);
    }
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

/* A safetensors file with this header text (length prefix = its strlen, or hlen_override when
 * nonzero) and data_len bytes of data (0x11 filler). */
static void write_st_raw(const char *path, const char *header, size_t data_len, uint64_t hlen_override) {
    size_t hl = strlen(header);
    uint64_t hlen = hlen_override ? hlen_override : hl;
    size_t n = 8 + hl + data_len;
    uint8_t *b = xmalloc(n);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(b + 8, header, hl);
    memset(b + 8 + hl, 0x11, data_len);
    write_bytes(path, b, n);
    free(b);
}

static int bad_open(const char *path, const char *must_contain) {
    llava_err err = {{0}};
    llava_safetensors *st = (llava_safetensors *)1;
    int rc = llava_st_open(&st, path, &err);
    int ok = rc == -1 && st == NULL && strstr(err.msg, must_contain) != NULL;
    if (!ok) printf("INFO open(%s) rc=%d msg=\"%s\" (wanted \"%s\")\n", path, rc, err.msg, must_contain);
    if (rc == 0) llava_st_close(st);
    return ok;
}

static int bad_header(const char *header, size_t data_len, const char *must_contain) {
    const char *p = tpath("bad.safetensors");
    write_st_raw(p, header, data_len, 0);
    return bad_open(p, must_contain);
}

static int bad_dir(const char *dir, const char *must_contain) {
    llava_err err = {{0}};
    llava_safetensors *st = (llava_safetensors *)1;
    int rc = llava_st_open_dir(&st, dir, &err);
    int ok = rc == -1 && st == NULL && strstr(err.msg, must_contain) != NULL;
    if (!ok) printf("INFO open_dir(%s) rc=%d msg=\"%s\" (wanted \"%s\")\n", dir, rc, err.msg, must_contain);
    if (rc == 0) llava_st_close(st);
    return ok;
}

static int hexval(char c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

static llava_dtype dtype_of(const char *s) {
    for (int d = 0; d < LLAVA_DT_COUNT; d++)
        if (strcmp(llava_dtype_name((llava_dtype)d), s) == 0) return (llava_dtype)d;
    return (llava_dtype)-1;
}

/* Compares every tensor of st with the "tensors" object of one expected.json section. */
static void check_against_expected(const llava_safetensors *st, const cJSON *sec, const char *what) {
    const cJSON *ts = cJSON_GetObjectItem(sec, "tensors");
    EXPECT(llava_st_count(st) == cJSON_GetArraySize(ts), "%s: %d tensors, expected %d", what,
           llava_st_count(st), cJSON_GetArraySize(ts));
    for (const cJSON *e = ts ? ts->child : NULL; e; e = e->next) {
        const llava_tensor *t = llava_st_find(st, e->string);
        EXPECT(t != NULL, "%s: tensor %s not found", what, e->string);
        if (!t) continue;
        EXPECT(strcmp(t->name, e->string) == 0, "%s: name", what);
        const char *dt = cJSON_GetObjectItem(e, "dtype")->valuestring;
        EXPECT(t->dtype == dtype_of(dt), "%s: %s dtype %s, expected %s", what, t->name,
               llava_dtype_name(t->dtype), dt);
        const cJSON *shape = cJSON_GetObjectItem(e, "shape");
        int64_t want[8] = {0};
        int nd = cJSON_GetArraySize(shape);
        int64_t numel = 1;
        for (int i = 0; i < nd; i++) {
            want[i] = (int64_t)cJSON_GetArrayItem(shape, i)->valuedouble;
            numel *= want[i];
        }
        llava_err err = {{0}};
        EXPECT(llava_tensor_expect(t, nd, want, &err) == 0, "%s: %s", what, err.msg);
        EXPECT(t->numel == numel, "%s: %s numel %lld", what, t->name, (long long)t->numel);
        const char *hex = cJSON_GetObjectItem(e, "hex")->valuestring;
        size_t nb = strlen(hex) / 2;
        EXPECT(t->nbytes == nb, "%s: %s nbytes %zu, expected %zu", what, t->name, t->nbytes, nb);
        int same = t->nbytes == nb;
        for (size_t i = 0; same && i < nb; i++)
            same = ((const uint8_t *)t->data)[i] == (uint8_t)(hexval(hex[2 * i]) * 16 + hexval(hex[2 * i + 1]));
        EXPECT(same, "%s: %s bytes differ from what Python wrote", what, t->name);
        const cJSON *bits = cJSON_GetObjectItem(e, "f32_bits");
        float *f = xmalloc((size_t)(t->numel ? t->numel : 1) * sizeof *f);
        int rc = llava_tensor_to_f32(f, t, &err);
        if (bits) {
            EXPECT(rc == 0, "%s: %s to_f32: %s", what, t->name, err.msg);
            for (int64_t i = 0; rc == 0 && i < t->numel; i++) {
                uint32_t got, exp = (uint32_t)cJSON_GetArrayItem(bits, (int)i)->valuedouble;
                memcpy(&got, &f[i], 4);
                EXPECT(got == exp, "%s: %s[%lld] = 0x%08x (%g), numpy says 0x%08x", what, t->name,
                       (long long)i, got, f[i], exp);
            }
        } else {
            EXPECT(rc == -1 && strstr(err.msg, t->name) && strstr(err.msg, llava_dtype_name(t->dtype)),
                   "%s: %s to_f32 should fail naming the tensor and dtype: %s", what, t->name, err.msg);
        }
        free(f);
    }
    const cJSON *meta = cJSON_GetObjectItem(sec, "metadata");
    for (const cJSON *m = meta ? meta->child : NULL; m; m = m->next) {
        const char *v = llava_st_metadata(st, m->string);
        EXPECT(v && strcmp(v, m->valuestring) == 0, "%s: metadata %s = %s, expected %s", what, m->string,
               v ? v : "(null)", m->valuestring);
    }
    EXPECT(llava_st_metadata(st, "no-such-key") == NULL, "%s: absent metadata key", what);
    for (int i = 1; i < llava_st_count(st); i++)
        EXPECT(strcmp(llava_st_at(st, i - 1)->name, llava_st_at(st, i)->name) < 0, "%s: not sorted", what);
}

static void test_python_fixtures(void) {
    llava_err err = {{0}};
    cJSON *exp = llava_json_load(FIX "/expected.json", &err);
    EXPECT(exp != NULL, "expected.json: %s", err.msg);
    if (!exp) return;

    llava_safetensors *st = NULL;
    int rc = llava_st_open(&st, FIX "/all_dtypes.safetensors", &err);
    EXPECT(rc == 0, "open all_dtypes: %s", err.msg);
    if (rc == 0) {
        check_against_expected(st, cJSON_GetObjectItem(exp, "all_dtypes.safetensors"), "all_dtypes");
        const llava_tensor *t = llava_st_find(st, "bf16.values");
        EXPECT(t && strcmp(t->file, FIX "/all_dtypes.safetensors") == 0, "tensor file");
        EXPECT(llava_st_find(st, "bf16.value") == NULL && llava_st_find(st, "") == NULL &&
                   llava_st_find(st, "zzz") == NULL,
               "absent names");
        const llava_tensor *s = llava_st_find(st, "scalar");
        EXPECT(s && s->ndim == 0 && s->numel == 1 && s->nbytes == 4, "scalar");
        const llava_tensor *e = llava_st_find(st, "empty");
        EXPECT(e && e->ndim == 2 && e->numel == 0 && e->nbytes == 0, "empty tensor");
        /* Shape mismatch message: names file, tensor, expected and actual shapes. */
        int64_t want[3] = {4, 2, 3};
        rc = llava_tensor_expect(t, 3, want, &err);
        EXPECT(rc == -1 && strstr(err.msg, "all_dtypes.safetensors") && strstr(err.msg, "bf16.values") &&
                   strstr(err.msg, "[4, 2, 3]") && strstr(err.msg, "[4, 2, 2]"),
               "expect message: %s", err.msg);
        rc = llava_tensor_expect(t, 2, want, &err);
        EXPECT(rc == -1 && strstr(err.msg, "[4, 2]"), "expect ndim mismatch: %s", err.msg);
        rc = llava_tensor_expect(llava_st_find(st, "nope"), 2, want, &err);
        EXPECT(rc == -1 && strstr(err.msg, "missing"), "expect NULL tensor: %s", err.msg);
        rc = llava_tensor_expect(s, 0, NULL, &err);
        EXPECT(rc == 0, "expect scalar: %s", err.msg);
        llava_st_close(st);
    }

    st = NULL;
    rc = llava_st_open_dir(&st, FIX "/sharded", &err);
    EXPECT(rc == 0, "open sharded: %s", err.msg);
    if (rc == 0) {
        const cJSON *sec = cJSON_GetObjectItem(exp, "sharded");
        check_against_expected(st, sec, "sharded");
        for (const cJSON *f = cJSON_GetObjectItem(sec, "files")->child; f; f = f->next) {
            const llava_tensor *t = llava_st_find(st, f->string);
            EXPECT(t && strstr(t->file, f->valuestring), "sharded: %s in %s, not %s", f->string,
                   f->valuestring, t ? t->file : "?");
        }
        llava_st_close(st);
    }

    st = NULL;
    rc = llava_st_open_dir(&st, FIX "/single", &err);
    EXPECT(rc == 0, "open single: %s", err.msg);
    if (rc == 0) {
        check_against_expected(st, cJSON_GetObjectItem(exp, "single"), "single");
        llava_st_close(st);
    }
    cJSON_Delete(exp);
}

static void test_conversions(void) {
    EXPECT(llava_dtype_size(LLAVA_DT_F32) == 4 && llava_dtype_size(LLAVA_DT_BF16) == 2 &&
               llava_dtype_size(LLAVA_DT_F64) == 8 && llava_dtype_size(LLAVA_DT_I64) == 8 &&
               llava_dtype_size(LLAVA_DT_BOOL) == 1 && llava_dtype_size(LLAVA_DT_F8_E5M2) == 1 &&
               llava_dtype_size((llava_dtype)99) == 0,
           "dtype sizes");
    EXPECT(strcmp(llava_dtype_name(LLAVA_DT_F8_E4M3), "F8_E4M3") == 0 &&
               strcmp(llava_dtype_name((llava_dtype)99), "?") == 0,
           "dtype names");

    /* bf16 -> f32 -> bf16 is the identity on every non-nan value; nan stays nan. */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = llava_bf16_to_f32((uint16_t)h);
        uint32_t u;
        memcpy(&u, &f, 4);
        if (u != h << 16) bad++;
        uint16_t back = llava_f32_to_bf16(f);
        if (isnan(f) ? back != 0x7fc0 : back != h) bad++;
    }
    EXPECT(bad == 0, "bf16 round trip: %d mismatches", bad);

    /* f32 -> bf16 picks the nearer bf16 neighbour; ties go to the even one; overflow to inf. */
    bad = 0;
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 2000000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t u = (uint32_t)x;
        if (i < 1000) u = (u & 0xffff0000u) | 0x8000u; /* exact ties */
        float f;
        memcpy(&f, &u, 4);
        if (isnan(f)) continue;
        uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1), got = llava_f32_to_bf16(f);
        double dlo = fabs((double)llava_bf16_to_f32(lo) - f);
        double fh = (lo & 0x7fff) == 0x7f7f ? (double)INFINITY : (double)llava_bf16_to_f32(hi);
        double dhi = (lo & 0x7fff) == 0x7f7f ? ldexp(1.0, 128) - fabs((double)f) : fabs(fh - f);
        (void)fh;
        uint16_t want = dlo < dhi ? lo : dhi < dlo ? hi : (lo & 1) ? hi : lo;
        if ((u & 0xffff) == 0) want = lo;
        if (got != want) {
            if (bad < 3) printf("INFO f32 0x%08x -> bf16 0x%04x, want 0x%04x\n", u, got, want);
            bad++;
        }
    }
    EXPECT(bad == 0, "f32 -> bf16 rounding: %d mismatches", bad);
    EXPECT(llava_f32_to_bf16(-0.0f) == 0x8000 && llava_f32_to_bf16(INFINITY) == 0x7f80 &&
               llava_f32_to_bf16(-INFINITY) == 0xff80 && llava_f32_to_bf16(NAN) == 0x7fc0 &&
               llava_f32_to_bf16(3.4028235e38f) == 0x7f80 && llava_f32_to_bf16(1.0f) == 0x3f80,
           "bf16 specials");

    /* f16 -> f32 exhaustively against (-1)^s * m * 2^e computed in double. */
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = llava_f16_to_f32((uint16_t)h);
        int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        double want;
        if (e == 31)
            want = m ? NAN : INFINITY;
        else
            want = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
        if (s) want = -want;
        int ok = isnan(want) ? isnan(got) : (got == (float)want && !signbit(got) == !signbit(want));
        if (!ok) {
            if (bad < 3) printf("INFO f16 0x%04x -> %g, want %g\n", h, got, want);
            bad++;
        }
    }
    EXPECT(bad == 0, "f16 -> f32: %d mismatches", bad);
    uint32_t nb;
    float nf = llava_f16_to_f32(0x7e01);
    memcpy(&nb, &nf, 4);
    EXPECT(nb == 0x7fc02000u, "f16 nan payload kept: 0x%08x", nb);
}

static void test_malformed(void) {
    /* Short and empty files. */
    write_bytes(tpath("empty.safetensors"), "", 0);
    EXPECT(bad_open(tpath("empty.safetensors"), "empty"), "zero-byte file");
    write_bytes(tpath("short.safetensors"), "\x02\0\0\0\0", 5);
    EXPECT(bad_open(tpath("short.safetensors"), "too short"), "5-byte file");
    write_bytes(tpath("eight.safetensors"), "\0\0\0\0\0\0\0\0", 8);
    EXPECT(bad_open(tpath("eight.safetensors"), "JSON"), "8-byte file with empty header");
    EXPECT(bad_open(tpath("does-not-exist.safetensors"), "cannot open"), "missing file");
    EXPECT(bad_open(tmpdir, "not a regular file"), "directory as file");

    /* Header length. */
    write_st_raw(tpath("huge.safetensors"), "{}", 0, (uint64_t)1 << 40);
    EXPECT(bad_open(tpath("huge.safetensors"), "larger than 100 MB"), "absurd header length");
    write_st_raw(tpath("huge2.safetensors"), "{}", 0, UINT64_MAX);
    EXPECT(bad_open(tpath("huge2.safetensors"), "larger than 100 MB"), "u64 max header length");
    write_st_raw(tpath("past.safetensors"), "{}", 10, 200);
    EXPECT(bad_open(tpath("past.safetensors"), "past the end"), "header length past EOF");
    write_st_raw(tpath("past1.safetensors"), "{}  ", 0, 5);
    EXPECT(bad_open(tpath("past1.safetensors"), "past the end"), "header length one past EOF");

    /* JSON shape of the header. */
    EXPECT(bad_header("not json{", 0, "not valid JSON"), "garbage header");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\"", 0, "not valid JSON"), "unterminated header");
    EXPECT(bad_header("[1,2]   ", 0, "must be a JSON object"), "array header");
    EXPECT(bad_header("\"str\"   ", 0, "must be a JSON object"), "string header");
    EXPECT(bad_header("{} x", 0, "trailing"), "trailing bytes");
    EXPECT(bad_header("{\"a\":5}", 0, "must be an object"), "entry not an object");

    /* Entries. */
    EXPECT(bad_header("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing \"dtype\""), "no dtype");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing \"shape\""), "no shape");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing \"data_offsets\""), "no offsets");
    EXPECT(bad_header("{\"a\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "must be a string"),
           "dtype not a string");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, "must be an array"),
           "shape not an array");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
                      "shape[0] is not a non-negative integer"),
           "shape item not a number");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
                      "shape[0] is not a non-negative integer"),
           "fractional dim");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"b\":0}}}", 4, "[begin, end]"),
           "offsets not an array");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 4, "[begin, end]"),
           "offset a string");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "[begin, end]"),
           "three offsets");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 8, "[begin, end]"),
           "one offset");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8, "[begin, end]"),
           "negative offset");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1e300,1e300]}}", 8, "[begin, end]"),
           "huge offset");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype \"F128\""),
           "unknown dtype");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype"),
           "lower-case dtype");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,4]}}", 4, "shape[0]"),
           "negative dim");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                      "at most 8"),
           "9 dims");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4503599627370496,4503599627370496],"
                      "\"data_offsets\":[0,4]}}",
                      4, "element count overflows"),
           "numel overflow");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648,2],\"data_offsets\":[0,4]}}", 4,
                      "element count overflows"),
           "numel past int64");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,4]}}", 4,
                      "byte size overflows"),
           "nbytes overflow");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "begin > end"),
           "begin > end");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7, "past the data section"),
           "end past data");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[100,104]}}", 8, "past the data section"),
           "range past data");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16, "needs 12"),
           "span != numel * size");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, "needs 8"),
           "bf16 span mismatch");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                      16, "overlapping"),
           "overlap");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      16, "overlapping"),
           "contained range");
    EXPECT(bad_header("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                      "\"c\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
                      16, "overlapping"),
           "overlap found past a long range");
    EXPECT(bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                      8, "appears twice"),
           "duplicate name in a header");
    EXPECT(bad_header("{\"__metadata__\":{\"k\":1}}", 0, "must be a string"), "metadata value not a string");
    EXPECT(bad_header("{\"__metadata__\":[1]}", 0, "__metadata__"), "metadata not an object");

    /* Allowed: holes, empty header, zero-size tensors anywhere, duplicate-looking zero-size ranges. */
    const char *hole = tpath("hole.safetensors");
    write_st_raw(hole,
                 "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"z\":{\"dtype\":\"I8\",\"shape\":[0,5],\"data_offsets\":[2,2]},"
                 "\"y\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[16,16]}}",
                 16, 0);
    llava_err err = {{0}};
    llava_safetensors *st = NULL;
    int rc = llava_st_open(&st, hole, &err);
    EXPECT(rc == 0 && llava_st_count(st) == 4, "holes and empty tensors allowed: %s", err.msg);
    if (rc == 0) {
        EXPECT(strcmp(llava_st_at(st, 0)->name, "a") == 0 && strcmp(llava_st_at(st, 3)->name, "z") == 0,
               "sorted by name");
        EXPECT((const uint8_t *)llava_st_find(st, "b")->data - (const uint8_t *)llava_st_find(st, "a")->data == 8,
               "offsets kept");
        llava_st_close(st);
    }
    write_st_raw(tpath("none.safetensors"), "{}      ", 0, 0);
    st = NULL;
    rc = llava_st_open(&st, tpath("none.safetensors"), &err);
    EXPECT(rc == 0 && llava_st_count(st) == 0 && llava_st_metadata(st, "format") == NULL, "empty header: %s",
           err.msg);
    llava_st_close(st);
    llava_st_close(NULL);
}

/* Every truncation and many single-byte changes of a valid file: open must return 0 or -1 and never
 * crash; a successful open must have every tensor inside the file. */
static void test_corruption(void) {
    size_t len = 0;
    llava_err err = {{0}};
    char *buf = llava_read_file(FIX "/all_dtypes.safetensors", &len, 1 << 20, &err);
    EXPECT(buf != NULL, "%s", err.msg);
    if (!buf) return;
    const char *p = tpath("corrupt.safetensors");
    int opened_truncated = 0;
    for (size_t n = 0; n < len; n++) {
        write_bytes(p, buf, n);
        llava_safetensors *st = NULL;
        if (llava_st_open(&st, p, &err) == 0) {
            opened_truncated++;
            llava_st_close(st);
        }
    }
    EXPECT(opened_truncated == 0, "%d truncated files opened", opened_truncated);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (uint8_t)buf[i];
    const char repl[] = {'0', '9', '"', '{', '}', '[', ']', ',', ':', '-', ' ', 'e', '\0', '\x80'};
    int crashes = 0, opened = 0;
    for (size_t i = 0; i < 8 + hlen; i++) {
        for (size_t r = 0; r < sizeof repl; r++) {
            char save = buf[i];
            if (save == repl[r]) continue;
            buf[i] = repl[r];
            write_bytes(p, buf, len);
            buf[i] = save;
            llava_safetensors *st = NULL;
            if (llava_st_open(&st, p, &err) != 0) continue;
            opened++;
            /* touch every byte of every tensor: must be inside the map (ASan/segv otherwise) */
            unsigned sum = 0;
            for (int k = 0; k < llava_st_count(st); k++) {
                const llava_tensor *t = llava_st_at(st, k);
                for (size_t b = 0; b < t->nbytes; b++) sum += ((const uint8_t *)t->data)[b];
                if (t->nbytes != (size_t)t->numel * llava_dtype_size(t->dtype)) crashes++;
            }
            (void)sum;
            llava_st_close(st);
        }
    }
    EXPECT(crashes == 0, "corrupted files: %d inconsistent tensors", crashes);
    printf("INFO corruption: %d of the single-byte header changes still opened (all consistent)\n", opened);
    free(buf);
}

static void test_dirs(void) {
    /* A dir with neither file: the message names what was expected and what is there. */
    char *d = tpath("emptydir");
    mkdir(d, 0755);
    EXPECT(bad_dir(d, "expected model.safetensors or model.safetensors.index.json"), "empty dir");
    EXPECT(bad_dir(tpath("no-such-dir"), "cannot open directory"), "missing dir");
    d = tpath("straydir");
    mkdir(d, 0755);
    write_st_raw(tpath("straydir/pytorch_model-1.safetensors"), "{}      ", 0, 0);
    EXPECT(bad_dir(d, "pytorch_model-1.safetensors"), "dir lists stray shards");

    /* Sharded directories built from the Python fixture shards. */
    size_t l1, l2;
    llava_err err = {{0}};
    char *s1 = llava_read_file(FIX "/sharded/model-00001-of-00002.safetensors", &l1, 1 << 20, &err);
    char *s2 = llava_read_file(FIX "/sharded/model-00002-of-00002.safetensors", &l2, 1 << 20, &err);
    EXPECT(s1 && s2, "read shards: %s", err.msg);
    if (!s1 || !s2) {
        free(s1);
        free(s2);
        return;
    }
    const char *good_map =
        "{\"weight_map\":{\"model.layers.0.weight\":\"a.safetensors\",\"model.layers.1.weight\":\"a.safetensors\","
        "\"model.layers.2.weight\":\"b.safetensors\",\"model.layers.3.weight\":\"b.safetensors\","
        "\"model.bias\":\"b.safetensors\"}}";
    struct {
        const char *name, *index, *want;
        int a, b; /* 1: shard 1 bytes, 2: shard 2 bytes, 0: absent */
    } cases[] = {
        {"ok", good_map, NULL, 1, 2},
        {"missing_shard", good_map, "b.safetensors\" listed in weight_map is missing", 1, 0},
        {"dup_across", good_map, "appears in two files", 1, 1},
        {"absent_name",
         "{\"weight_map\":{\"model.layers.0.weight\":\"a.safetensors\",\"model.layers.9.weight\":\"a.safetensors\"}}",
         "\"model.layers.9.weight\" is listed in weight_map but absent", 1, 2},
        {"wrong_shard", "{\"weight_map\":{\"model.layers.0.weight\":\"b.safetensors\",\"model.bias\":\"a.safetensors\"}}",
         "is listed under shard", 1, 2},
        {"escape", "{\"weight_map\":{\"model.layers.0.weight\":\"../a.safetensors\"}}", "outside the model directory", 1, 2},
        {"absolute", "{\"weight_map\":{\"model.layers.0.weight\":\"/etc/passwd\"}}", "outside the model directory", 1, 2},
        {"no_map", "{\"metadata\":{}}", "missing \"weight_map\"", 1, 2},
        {"empty_map", "{\"weight_map\":{}}", "is empty", 1, 2},
        {"map_number", "{\"weight_map\":{\"model.bias\":3}}", "must be a file name string", 1, 2},
        {"bad_json", "{\"weight_map\":", "invalid JSON", 1, 2},
        {"bad_shard", good_map, "b.safetensors: file is empty", 1, 3},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char sub[64];
        snprintf(sub, sizeof sub, "shard_%s", cases[c].name);
        char *dir = xstrdup(tpath(sub));
        mkdir(dir, 0755);
        char *ip = llava_path_join(dir, "model.safetensors.index.json");
        write_bytes(ip, cases[c].index, strlen(cases[c].index));
        char *pa = llava_path_join(dir, "a.safetensors"), *pb = llava_path_join(dir, "b.safetensors");
        if (cases[c].a) write_bytes(pa, s1, l1);
        if (cases[c].b == 1) write_bytes(pb, s1, l1);
        if (cases[c].b == 2) write_bytes(pb, s2, l2);
        if (cases[c].b == 3) write_bytes(pb, "", 0);
        if (cases[c].want) {
            EXPECT(bad_dir(dir, cases[c].want), "sharded case %s", cases[c].name);
        } else {
            llava_safetensors *st = NULL;
            int rc = llava_st_open_dir(&st, dir, &err);
            EXPECT(rc == 0 && llava_st_count(st) == 5, "sharded ok: %s", err.msg);
            if (rc == 0) {
                EXPECT(strcmp(llava_st_metadata(st, "shard"), "1") == 0, "metadata of the first shard");
                EXPECT(strcmp(llava_st_find(st, "model.bias")->file, pb) == 0, "bias file");
                EXPECT(strcmp(llava_st_find(st, "model.layers.0.weight")->file, pa) == 0, "layer 0 file");
                llava_st_close(st);
            }
        }
        free(ip);
        free(pa);
        free(pb);
        free(dir);
    }
    free(s1);
    free(s2);
}

static void test_write(void) {
    uint16_t bf[6] = {0x3f80, 0xc020, 0x7f80, 0x7fc0, 0x0001, 0x8000};
    float f32[2][3] = {{1, 2, 3}, {4, 5, 6}};
    double f64[2] = {1.25, -7};
    int64_t i64[3] = {INT64_MIN, 0, INT64_MAX};
    int8_t i8[4] = {-1, 2, -3, 4};
    uint8_t u8[1] = {200}, bl[2] = {1, 0};
    float sc = 3.5f;
    llava_st_entry e[] = {
        {"w.bf16", LLAVA_DT_BF16, 2, {3, 2}, bf},
        {"w.f32", LLAVA_DT_F32, 2, {2, 3}, f32},
        {"odd \"name\"\\ \xc3\xa9\n", LLAVA_DT_I8, 1, {3}, i8}, /* odd size before wider dtypes */
        {"f64", LLAVA_DT_F64, 1, {2}, f64},
        {"i64", LLAVA_DT_I64, 1, {3}, i64},
        {"u8", LLAVA_DT_U8, 3, {1, 1, 1}, u8},
        {"bool", LLAVA_DT_BOOL, 1, {2}, bl},
        {"scalar", LLAVA_DT_F32, 0, {0}, &sc},
        {"empty", LLAVA_DT_F16, 2, {5, 0}, NULL},
    };
    int n = (int)(sizeof e / sizeof e[0]);
    const char *meta[] = {"format", "pt", "quote\"key", "line\nbreak\ttab\x01"};
    const char *p = tpath("written.safetensors");
    llava_err err = {{0}};
    int rc = llava_st_write(p, e, n, meta, 2, &err);
    EXPECT(rc == 0, "write: %s", err.msg);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    EXPECT(access(tmp, F_OK) != 0, "no .tmp left behind");
    size_t len = 0;
    char *raw = llava_read_file(p, &len, 1 << 20, &err);
    if (raw) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | (uint8_t)raw[i];
        EXPECT(hl % 8 == 0 && 8 + hl <= len && raw[8] == '{', "header padded to 8 (%llu)", (unsigned long long)hl);
        EXPECT(raw[8 + hl - 1] == '}' || raw[8 + hl - 1] == ' ', "header ends with padding spaces");
        free(raw);
    }
    llava_safetensors *st = NULL;
    rc = llava_st_open(&st, p, &err);
    EXPECT(rc == 0, "reopen: %s", err.msg);
    if (rc == 0) {
        EXPECT(llava_st_count(st) == n, "count %d", llava_st_count(st));
        for (int i = 0; i < n; i++) {
            const llava_tensor *t = llava_st_find(st, e[i].name);
            EXPECT(t != NULL, "find %s", e[i].name);
            if (!t) continue;
            EXPECT(t->dtype == e[i].dtype && t->ndim == e[i].ndim, "%s dtype/ndim", e[i].name);
            EXPECT(llava_tensor_expect(t, e[i].ndim, e[i].shape, &err) == 0, "%s", err.msg);
            EXPECT(t->nbytes == 0 || memcmp(t->data, e[i].data, t->nbytes) == 0, "%s bytes", e[i].name);
        }
        EXPECT(strcmp(llava_st_metadata(st, "format"), "pt") == 0, "meta format");
        const char *v = llava_st_metadata(st, "quote\"key");
        EXPECT(v && strcmp(v, "line\nbreak\ttab\x01") == 0, "escaped metadata");
        for (int i = 0; i < n; i++) {
            const llava_tensor *t = llava_st_at(st, i);
            EXPECT(t->nbytes == 0 || (uintptr_t)t->data % llava_dtype_size(t->dtype) == 0,
                   "%s aligned to its element size", t->name);
        }
        float out[6];
        rc = llava_tensor_to_f32(out, llava_st_find(st, "w.bf16"), &err);
        EXPECT(rc == 0 && out[0] == 1.0f && out[1] == -2.5f && isinf(out[2]) && isnan(out[3]) &&
                   out[4] == ldexpf(1, -133) && out[5] == 0 && signbit(out[5]),
               "bf16 values after write");
        rc = llava_tensor_to_f32(out, llava_st_find(st, "f64"), &err);
        EXPECT(rc == 0 && out[0] == 1.25f && out[1] == -7.0f, "f64 after write");
        llava_st_close(st);
    }

    /* No metadata, no tensors. */
    rc = llava_st_write(tpath("nothing.safetensors"), NULL, 0, NULL, 0, &err);
    st = NULL;
    EXPECT(rc == 0 && llava_st_open(&st, tpath("nothing.safetensors"), &err) == 0 && llava_st_count(st) == 0,
           "empty file round trip: %s", err.msg);
    llava_st_close(st);

    /* Overwrite an existing file atomically (written.safetensors stays for LLAVA_KEEP_TMP=1 checks
     * with Python). */
    const char *p2 = tpath("overwritten.safetensors");
    rc = llava_st_write(p2, e, n, meta, 2, &err);
    if (rc == 0) rc = llava_st_write(p2, e, 1, NULL, 0, &err);
    st = NULL;
    EXPECT(rc == 0 && llava_st_open(&st, p2, &err) == 0 && llava_st_count(st) == 1 &&
               llava_st_metadata(st, "format") == NULL,
           "overwrite: %s", err.msg);
    llava_st_close(st);

    /* Writer errors. */
    llava_st_entry dup[2] = {e[0], e[0]};
    EXPECT(llava_st_write(tpath("x.safetensors"), dup, 2, NULL, 0, &err) == -1 && strstr(err.msg, "twice"),
           "duplicate names: %s", err.msg);
    llava_st_entry bad = e[0];
    bad.name = "__metadata__";
    EXPECT(llava_st_write(tpath("x.safetensors"), &bad, 1, NULL, 0, &err) == -1 && strstr(err.msg, "reserved"),
           "reserved name: %s", err.msg);
    bad = e[0];
    bad.name = "";
    EXPECT(llava_st_write(tpath("x.safetensors"), &bad, 1, NULL, 0, &err) == -1 && strstr(err.msg, "empty name"),
           "empty name: %s", err.msg);
    bad = e[0];
    bad.shape[1] = -2;
    EXPECT(llava_st_write(tpath("x.safetensors"), &bad, 1, NULL, 0, &err) == -1 && strstr(err.msg, "negative"),
           "negative dim: %s", err.msg);
    bad = e[0];
    bad.ndim = 9;
    EXPECT(llava_st_write(tpath("x.safetensors"), &bad, 1, NULL, 0, &err) == -1 && strstr(err.msg, "ndim"),
           "ndim 9: %s", err.msg);
    bad = e[0];
    bad.dtype = (llava_dtype)42;
    EXPECT(llava_st_write(tpath("x.safetensors"), &bad, 1, NULL, 0, &err) == -1 && strstr(err.msg, "dtype"),
           "bad dtype: %s", err.msg);
    bad = e[0];
    bad.data = NULL;
    EXPECT(llava_st_write(tpath("x.safetensors"), &bad, 1, NULL, 0, &err) == -1 && strstr(err.msg, "NULL"),
           "NULL data: %s", err.msg);
    const char *nullmeta[] = {"k", NULL};
    EXPECT(llava_st_write(tpath("x.safetensors"), e, 1, nullmeta, 1, &err) == -1 && strstr(err.msg, "NULL"),
           "NULL metadata value: %s", err.msg);
    EXPECT(access(tpath("x.safetensors"), F_OK) != 0, "nothing written on error");
    EXPECT(llava_st_write(tpath("no/such/dir/x.safetensors"), e, 1, NULL, 0, &err) == -1 &&
               strstr(err.msg, "cannot create"),
           "unwritable path: %s", err.msg);
}

static void test_hf_checkpoints(void) {
    const char *dirs[] = {"tests/fixtures/tiny-a", "tests/fixtures/tiny-b"};
    for (int d = 0; d < 2; d++) {
        if (access(dirs[d], F_OK) != 0) {
            printf("SKIP %s absent\n", dirs[d]);
            continue;
        }
        llava_err err = {{0}};
        llava_safetensors *st = NULL;
        int rc = llava_st_open_dir(&st, dirs[d], &err);
        EXPECT(rc == 0 && llava_st_count(st) > 0, "%s: %s", dirs[d], err.msg);
        if (rc) continue;
        int nconv = 0;
        for (int i = 0; i < llava_st_count(st); i++) {
            const llava_tensor *t = llava_st_at(st, i);
            if (t->dtype != LLAVA_DT_BF16 && t->dtype != LLAVA_DT_F32 && t->dtype != LLAVA_DT_F16) continue;
            float *f = xmalloc((size_t)(t->numel ? t->numel : 1) * sizeof *f);
            rc = llava_tensor_to_f32(f, t, &err);
            int finite = 1;
            for (int64_t k = 0; rc == 0 && k < t->numel; k++) finite &= isfinite(f[k]) != 0;
            EXPECT(rc == 0 && finite, "%s: %s converts to finite floats: %s", dirs[d], t->name, err.msg);
            nconv++;
            free(f);
        }
        EXPECT(nconv > 0, "%s: no float tensors", dirs[d]);
        llava_st_close(st);
    }
}

static int rm_tree(const char *path) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    return system(cmd);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/llava_test_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        printf("FAIL mkdtemp\n");
        return 1;
    }
    test_python_fixtures();
    test_conversions();
    test_malformed();
    test_corruption();
    test_dirs();
    test_write();
    test_hf_checkpoints();
    if (!getenv("LLAVA_KEEP_TMP")) rm_tree(tmpdir);
    else printf("INFO kept %s\n", tmpdir);
    TEST_END();
}

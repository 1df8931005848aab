/* tests/cuda/test_ops.c — every CUDA op against its CPU twin (backend/cpu/ops.c) on random inputs.
 *
 * Build and run on a GPU machine:   make cuda-test && build/tests/cuda_test_ops [--no-bench | --bench-attn]
 * Inputs are drawn in fp32, rounded to bf16, and the same rounded values feed both backends.
 * Each op+shape prints one line, PASS or FAIL, with the relative error ||gpu - cpu|| / ||cpu||
 * (bound 1e-2) and, on failure, the first element that disagrees (index, gpu value, reference) and
 * the first NaN. Outputs are poisoned with NaN bit patterns (0xFF bytes) before each call, so an
 * element the kernel forgot to write shows up as NaN; a guard band after each output must stay
 * untouched. Attention runs once per kernel variant (auto, generic, mma-plain: LLAVA_CUDA_ATTN; and
 * on an H100/H200 "mma": auto with the Hopper kernel switched off, so "auto" is attn_sm90_kernel
 * wherever it applies — q_start == k_start: causal hd 128 or 64 with or without trie tails, full hd 64).
 * The bench section times GEMM and attention at Mistral-7B / CLIP-L sizes and prints TFLOP/s.
 * The last line is "RESULT <passed> <failed>". Without a GPU it runs the host-side self-checks only.
 * Not a tests/test_*.c on purpose: CI has nvcc but no GPU.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/ops.h"
#include "backend/cuda/cuda_ops.h"
#include "bench/cuda_util.h"

static int n_pass, n_fail;
static int quiet; /* comparator self-check: count nothing, print nothing */
static int small; /* --small: skip the attention cases with more than 1500 keys (for compute-sanitizer) */

/* ---- host helpers ------------------------------------------------------------------------------ */

static uint64_t rng_s = 0x243F6A8885A308D3ull;
static uint64_t rnd_u64(void) {
    uint64_t z = (rng_s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rnd_unif(void) { return (double)(rnd_u64() >> 11) * (1.0 / 9007199254740992.0); }
static float rnd_normal(void) {
    double u = rnd_unif(), v = rnd_unif();
    if (u < 1e-300) u = 1e-300;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}
static int rnd_int(int n) { return (int)(rnd_u64() % (uint64_t)n); }

static uint16_t h_f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float h_bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static float bfr(float f) { return h_bf2f(h_f2bf(f)); }

static void *xmalloc_t(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test: out of host memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

/* n normal values × scale, rounded to bf16 */
static float *rand_vec(size_t n, float scale) {
    float *f = xmalloc_t(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = bfr(rnd_normal() * scale);
    return f;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- comparison -------------------------------------------------------------------------------- */

/* Relative error ||gpu - ref|| / ||ref||; NaN/inf anywhere fails. cols > 0 prints [row, col]. */
static int check(const char *op, const char *shape, const float *gpu, const float *ref, size_t n, size_t cols,
                 double tol) {
    double se = 0, sr = 0, maxabs = 0;
    size_t n_bad = 0, first_nan = (size_t)-1, worst = 0;
    for (size_t i = 0; i < n; i++) {
        double g = gpu[i], r = ref[i];
        if (!isfinite(g)) {
            if (first_nan == (size_t)-1) first_nan = i;
            n_bad++;
            continue;
        }
        double d = g - r;
        se += d * d;
        sr += r * r;
        if (fabs(d) > maxabs) maxabs = fabs(d), worst = i;
    }
    double rel = sr > 0 ? sqrt(se / sr) : sqrt(se);
    int ok = n_bad == 0 && rel <= tol;
    if (quiet) return ok;
    if (ok) {
        n_pass++;
        printf("PASS %-18s %-52s rel=%.2e maxabs=%.2e\n", op, shape, rel, maxabs);
    } else {
        n_fail++;
        printf("FAIL %-18s %-52s rel=%.2e (tol %.0e) non-finite=%zu of %zu\n", op, shape, rel, tol, n_bad, n);
        double rms = n ? sqrt(sr / (double)n) : 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)gpu[i] - ref[i]);
            if (!isfinite(gpu[i]) || d > 0.05 * rms + 0.02 * fabs(ref[i])) {
                if (cols)
                    printf("     first mismatch at [%zu, %zu] (flat %zu): gpu=%.6g ref=%.6g\n", i / cols, i % cols, i,
                           gpu[i], ref[i]);
                else
                    printf("     first mismatch at [%zu]: gpu=%.6g ref=%.6g\n", i, gpu[i], ref[i]);
                break;
            }
        }
        if (first_nan != (size_t)-1) {
            if (cols)
                printf("     first non-finite at [%zu, %zu]: gpu=%g ref=%.6g (unwritten output stays NaN)\n",
                       first_nan / cols, first_nan % cols, gpu[first_nan], ref[first_nan]);
            else
                printf("     first non-finite at [%zu]: gpu=%g ref=%.6g\n", first_nan, gpu[first_nan], ref[first_nan]);
        }
        printf("     largest difference at [%zu]: gpu=%.6g ref=%.6g\n", worst, gpu[worst], ref[worst]);
    }
    fflush(stdout);
    return ok;
}

static void expect(int cond, const char *op, const char *shape, const char *what) {
    if (cond) {
        n_pass++;
        printf("PASS %-18s %-52s %s\n", op, shape, what);
    } else {
        n_fail++;
        printf("FAIL %-18s %-52s %s\n", op, shape, what);
    }
    fflush(stdout);
}

/* ---- device helpers ---------------------------------------------------------------------------- */

#define GUARD 256 /* bytes after every output buffer that must stay 0xFF */

static cuda_ctx *C; /* the main (auto) context: uploads, downloads and every non-attention op */

static void *dmalloc(size_t bytes) {
    llava_err err;
    void *p = cuda_malloc(bytes + GUARD, "test buffer", &err);
    if (!p) {
        fprintf(stderr, "test: %s\n", err.msg);
        exit(2);
    }
    return p;
}
static void *up_bf16(const float *f, size_t n) {
    uint16_t *h = xmalloc_t(n * 2);
    for (size_t i = 0; i < n; i++) h[i] = h_f2bf(f[i]);
    void *d = dmalloc(n * 2);
    cuda_upload(C, d, h, n * 2);
    cuda_sync(C);
    free(h);
    return d;
}
static void *up_bytes(const void *h, size_t bytes) {
    void *d = dmalloc(bytes);
    cuda_upload(C, d, h, bytes);
    cuda_sync(C);
    return d;
}
/* output buffer: bytes of NaN poison followed by the guard band */
static void *out_buf(size_t bytes) {
    void *d = dmalloc(bytes);
    cuda_memset(C, d, 0xFF, bytes + GUARD);
    return d;
}
static void poison(void *d, size_t bytes) { cuda_memset(C, d, 0xFF, bytes + GUARD); }
static float *down_bf16(const void *d, size_t n) {
    float *f = xmalloc_t(n * sizeof(float));
    cuda_download_bf16_as_f32(C, f, d, n);
    return f;
}
static float *down_f32(const void *d, size_t n) {
    float *f = xmalloc_t(n * sizeof(float));
    cuda_download(C, f, d, n * sizeof(float));
    return f;
}
static int guard_intact(const void *d, size_t bytes) {
    unsigned char g[GUARD];
    cuda_download(C, g, (const char *)d + bytes, GUARD);
    for (int i = 0; i < GUARD; i++)
        if (g[i] != 0xFF) return 0;
    return 1;
}
static void check_guard(const char *op, const char *shape, const void *d, size_t bytes) {
    if (!guard_intact(d, bytes)) expect(0, op, shape, "wrote past the end of its output (guard band changed)");
}

/* ---- ops ---------------------------------------------------------------------------------------- */

static void test_linear(int n, int din, int dout, int bias, int f32out) {
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d %d->%d%s", n, din, dout, bias ? " +bias" : "");
    const char *op = f32out ? "linear_f32out" : "linear";
    float *x = rand_vec((size_t)n * din, 1.f), *w = rand_vec((size_t)dout * din, 0.05f);
    float *b = bias ? rand_vec(dout, 0.5f) : NULL;
    float *ref = xmalloc_t((size_t)n * dout * sizeof(float));
    cpu_linear(ref, x, w, b, n, din, dout);
    void *dx = up_bf16(x, (size_t)n * din), *dw = up_bf16(w, (size_t)dout * din), *db = b ? up_bf16(b, dout) : NULL;
    size_t ob = (size_t)n * dout * (f32out ? 4 : 2);
    void *dout_ = out_buf(ob);
    if (f32out)
        cuda_linear_f32out(C, dout_, dx, dw, n, din, dout);
    else
        cuda_linear(C, dout_, dx, dw, db, n, din, dout);
    float *g = f32out ? down_f32(dout_, (size_t)n * dout) : down_bf16(dout_, (size_t)n * dout);
    check(op, shape, g, ref, (size_t)n * dout, dout, 1e-2);
    check_guard(op, shape, dout_, ob);
    /* second call of the same shape: the cached plan path */
    poison(dout_, ob);
    if (f32out)
        cuda_linear_f32out(C, dout_, dx, dw, n, din, dout);
    else
        cuda_linear(C, dout_, dx, dw, db, n, din, dout);
    float *g2 = f32out ? down_f32(dout_, (size_t)n * dout) : down_bf16(dout_, (size_t)n * dout);
    strncat(shape, " (cached)", sizeof shape - strlen(shape) - 1);
    check(op, shape, g2, ref, (size_t)n * dout, dout, 1e-2);
    free(x), free(w), free(b), free(ref), free(g), free(g2);
    cuda_free(dx), cuda_free(dw), cuda_free(db), cuda_free(dout_);
}

/* out (fp32) += x · wᵀ: the decoder's residual stream taking a projection in one GEMM */
static void test_linear_acc(int n, int din, int dout) {
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d %d->%d", n, din, dout);
    float *x = rand_vec((size_t)n * din, 1.f), *w = rand_vec((size_t)dout * din, 0.05f);
    float *r = rand_vec((size_t)n * dout, 4.f), *ref = xmalloc_t((size_t)n * dout * sizeof(float));
    cpu_linear(ref, x, w, NULL, n, din, dout);
    for (size_t i = 0; i < (size_t)n * dout; i++) ref[i] += r[i];
    void *dx = up_bf16(x, (size_t)n * din), *dw = up_bf16(w, (size_t)dout * din);
    size_t ob = (size_t)n * dout * 4;
    void *dacc = out_buf(ob);
    for (int pass = 0; pass < 2; pass++) { /* the second: the cached plan */
        cuda_upload(C, dacc, r, ob);
        cuda_linear_acc_f32(C, dacc, dx, dw, n, din, dout);
        float *g = down_f32(dacc, (size_t)n * dout);
        check("linear_acc_f32", pass ? "cached" : shape, g, ref, (size_t)n * dout, dout, 1e-2);
        free(g);
    }
    check_guard("linear_acc_f32", shape, dacc, ob);
    free(x), free(w), free(r), free(ref);
    cuda_free(dx), cuda_free(dw), cuda_free(dacc);
}

/* e4m3 (1 sign, 4 exponent bits biased by 7, 3 mantissa bits; no infinities, S.1111.111 is NaN) */
static float e4m3_value(uint8_t q) {
    const int e = (q >> 3) & 15, m = q & 7;
    if (e == 15 && m == 7) return NAN;
    const float v = e ? ldexpf(1.f + m / 8.f, e - 7) : ldexpf(m / 8.f, -6);
    return q & 0x80 ? -v : v;
}

/* the e4m3 rows q (n, d) and their scales s (n) on the device, as the fp32 values they stand for */
static float *dequant_e4m3(const void *q, const void *s, int n, int d) {
    const size_t N = (size_t)n * d;
    uint8_t *hq = xmalloc_t(N);
    cuda_download(C, hq, q, N);
    float *gs = down_f32(s, (size_t)n), *deq = xmalloc_t(N * sizeof(float));
    for (size_t i = 0; i < N; i++) deq[i] = e4m3_value(hq[i]) * gs[i / d];
    free(hq), free(gs);
    return deq;
}

/* e4m3 rows q (n, d) and their scales s (n) on the device against the fp32 rows ref they quantize:
 * the scales max |row| / 448 (1e-6), the dequantized rows within e4m3's error (4e-2 relative RMS) */
static void check_e4m3_rows(const char *op, const char *shape, const void *q, const void *s, const float *ref, int n,
                            int d) {
    float *gs = down_f32(s, (size_t)n), *rs = xmalloc_t(sizeof(float) * n), *deq = dequant_e4m3(q, s, n, d);
    for (int i = 0; i < n; i++) {
        float mx = 0;
        for (int k = 0; k < d; k++) mx = fmaxf(mx, fabsf(ref[(size_t)i * d + k]));
        rs[i] = mx > 0 ? mx / 448.f : 1.f;
    }
    char what[160];
    snprintf(what, sizeof what, "%s scales", op);
    check(what, shape, gs, rs, (size_t)n, (size_t)n, 1e-6);
    check(op, shape, deq, ref, (size_t)n * d, d, 4e-2);
    free(gs), free(rs), free(deq);
}

/* --quantization fp8: rows quantized to e4m3 with a scale each (max|row| / 448), then the e4m3 GEMM
 * with per-token and per-weight-row scales, into bf16 and added into fp32. Checked against the fp32
 * product of the dequantized operands (what the GEMM must compute; 1e-2 covers the bf16 output) and
 * of the unquantized ones (e4m3 keeps 3 mantissa bits: relative RMS error ~3 %, bound 8e-2). Rows
 * that are not 16-byte multiples run on the SIMT kernel, the rest through cuBLASLt. */
static void test_linear_fp8(int n, int din, int dout) {
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d %d->%d", n, din, dout);
    const size_t nx = (size_t)n * din, nw = (size_t)dout * din, no = (size_t)n * dout;
    float *x = rand_vec(nx, 1.f), *w = rand_vec(nw, 0.05f), *r = rand_vec(no, 4.f);
    float *ref = xmalloc_t(no * sizeof(float)), *refq = xmalloc_t(no * sizeof(float));
    cpu_linear(ref, x, w, NULL, n, din, dout);
    void *dx = up_bf16(x, nx), *dw = up_bf16(w, nw);
    void *x8 = out_buf(nx), *w8 = out_buf(nw);
    void *sx = out_buf(sizeof(float) * n), *sw = out_buf(sizeof(float) * dout), *o = out_buf(no * 2), *acc = out_buf(no * 4);
    cuda_quant_rows_e4m3(C, x8, sx, dx, n, din);
    cuda_quant_rows_e4m3(C, w8, sw, dw, dout, din);
    /* x's rows and scales against the bf16 rows; the product of the dequantized operands */
    float *xb = down_bf16(dx, nx);
    check_e4m3_rows("quant_rows_e4m3", shape, x8, sx, xb, n, din);
    float *xq = dequant_e4m3(x8, sx, n, din), *wq = dequant_e4m3(w8, sw, dout, din);
    cpu_linear(refq, xq, wq, NULL, n, din, dout);
    const int simt = cuda_linear_fp8(C, o, x8, sx, w8, sw, n, din, dout);
    char what[160];
    snprintf(what, sizeof what, "%s %s", shape, simt ? "SIMT" : "cuBLASLt");
    float *g = down_bf16(o, no);
    check("linear_fp8", what, g, refq, no, dout, 1e-2);
    check("linear_fp8", "~ unquantized", g, ref, no, dout, 8e-2);
    check_guard("linear_fp8", shape, o, no * 2);
    /* added into fp32 */
    cuda_upload(C, acc, r, no * 4);
    cuda_linear_fp8_acc_f32(C, acc, x8, sx, w8, sw, n, din, dout);
    float *ga = down_f32(acc, no);
    for (size_t i = 0; i < no; i++) refq[i] += r[i];
    check("linear_fp8_acc_f32", what, ga, refq, no, dout, 1e-4);
    check_guard("linear_fp8_acc_f32", shape, acc, no * 4);
    free(x), free(w), free(r), free(ref), free(refq), free(xb), free(xq), free(wq), free(g), free(ga);
    cuda_free(dx), cuda_free(dw), cuda_free(x8), cuda_free(w8), cuda_free(sx), cuda_free(sw), cuda_free(o);
    cuda_free(acc);
}

/* SwiGLU straight to e4m3 rows (the fp8 down projection's input) */
static void test_swiglu_e4m3(int n, int I) {
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d I=%d", n, I);
    const size_t N = (size_t)n * I;
    float *gu = rand_vec(N * 2, 3.f), *ref = xmalloc_t(N * sizeof(float));
    for (size_t i = 0; i < 2 * N; i++) gu[i] = bfr(gu[i]);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < I; j++) {
            const float g = gu[(size_t)i * 2 * I + j], u = gu[(size_t)i * 2 * I + I + j];
            ref[(size_t)i * I + j] = g / (1.f + expf(-g)) * u;
        }
    void *dgu = up_bf16(gu, N * 2), *q = out_buf(N), *sc = out_buf(sizeof(float) * n);
    cuda_swiglu_e4m3(C, q, sc, dgu, n, I);
    check_e4m3_rows("swiglu_e4m3", shape, q, sc, ref, n, I);
    check_guard("swiglu_e4m3", shape, q, N);
    free(gu), free(ref);
    cuda_free(dgu), cuda_free(q), cuda_free(sc);
}

/* x (fp32) += r, then RMSNorm(x) · w straight to e4m3 rows (the fp8 gate/up projection's input) */
static void test_add_rmsnorm_f32_e4m3(int n, int d, int with_r) {
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d d=%d%s", n, d, with_r ? "" : " r=NULL");
    const size_t N = (size_t)n * d;
    float *x = rand_vec(N, 2.f), *r = rand_vec(N, 1.f), *w = rand_vec(d, 1.f);
    float *sum = xmalloc_t(N * sizeof(float)), *ref = xmalloc_t(N * sizeof(float)), *gx = xmalloc_t(N * sizeof(float));
    for (int k = 0; k < d; k++) w[k] = bfr(w[k]);
    for (size_t i = 0; i < N; i++) sum[i] = x[i] + (with_r ? bfr(r[i]) : 0.f);
    cpu_rmsnorm(ref, sum, w, n, d, 1e-5f);
    float *dx = cuda_malloc(N * sizeof(float), "x", NULL);
    cuda_upload(C, dx, x, N * sizeof(float));
    void *dr = up_bf16(r, N), *dw = up_bf16(w, d), *q = out_buf(N), *sc = out_buf(sizeof(float) * n);
    cuda_add_rmsnorm_f32_e4m3(C, q, sc, dx, with_r ? dr : NULL, dw, n, d, 1e-5f);
    cuda_download(C, gx, dx, N * sizeof(float));
    check("add_rmsnorm_f32_e4m3.x", shape, gx, sum, N, d, 1e-6);
    check_e4m3_rows("add_rmsnorm_f32_e4m3", shape, q, sc, ref, n, d);
    check_guard("add_rmsnorm_f32_e4m3", shape, q, N);
    free(x), free(r), free(w), free(sum), free(ref), free(gx);
    cuda_free(dx), cuda_free(dr), cuda_free(dw), cuda_free(q), cuda_free(sc);
}

static void test_layernorm(int n, int d, int bias, int alias) {
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d d=%d%s%s", n, d, bias ? "" : " no-bias", alias ? " out=x" : "");
    size_t N = (size_t)n * d;
    float *x = rand_vec(N, 2.f), *w = rand_vec(d, 1.f), *b = bias ? rand_vec(d, 0.5f) : NULL;
    for (size_t i = 0; i < N; i++) x[i] = bfr(x[i] + 0.7f); /* a non-zero mean */
    float *ref = xmalloc_t(N * sizeof(float));
    cpu_layernorm(ref, x, w, b, n, d, 1e-5f);
    void *dx = up_bf16(x, N), *dw = up_bf16(w, d), *db = b ? up_bf16(b, d) : NULL;
    void *dout_ = alias ? dx : out_buf(N * 2);
    cuda_layernorm(C, dout_, dx, dw, db, n, d, 1e-5f);
    float *g = down_bf16(dout_, N);
    check("layernorm", shape, g, ref, N, d, 1e-2);
    if (!alias) check_guard("layernorm", shape, dout_, N * 2);
    free(x), free(w), free(b), free(ref), free(g);
    cuda_free(dx), cuda_free(dw), cuda_free(db);
    if (!alias) cuda_free(dout_);
}

static void test_rmsnorm(int n, int d, int alias) {
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d d=%d%s", n, d, alias ? " out=x" : "");
    size_t N = (size_t)n * d;
    float *x = rand_vec(N, 3.f), *w = rand_vec(d, 1.f);
    float *ref = xmalloc_t(N * sizeof(float));
    cpu_rmsnorm(ref, x, w, n, d, 1e-5f);
    void *dx = up_bf16(x, N), *dw = up_bf16(w, d);
    void *dout_ = alias ? dx : out_buf(N * 2);
    cuda_rmsnorm(C, dout_, dx, dw, n, d, 1e-5f);
    float *g = down_bf16(dout_, N);
    check("rmsnorm", shape, g, ref, N, d, 1e-2);
    if (!alias) check_guard("rmsnorm", shape, dout_, N * 2);
    free(x), free(w), free(ref), free(g);
    cuda_free(dx), cuda_free(dw);
    if (!alias) cuda_free(dout_);
}

static void test_add_rmsnorm(int n, int d) {
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d d=%d", n, d);
    size_t N = (size_t)n * d;
    float *x = rand_vec(N, 2.f), *r = rand_vec(N, 1.f), *w = rand_vec(d, 1.f);
    float *sum = xmalloc_t(N * sizeof(float)), *ref = xmalloc_t(N * sizeof(float));
    for (size_t i = 0; i < N; i++) sum[i] = x[i] + r[i];
    cpu_rmsnorm(ref, sum, w, n, d, 1e-6f);
    void *dx = up_bf16(x, N), *dr = up_bf16(r, N), *dw = up_bf16(w, d), *dout_ = out_buf(N * 2);
    cuda_add_rmsnorm(C, dout_, dx, dr, dw, n, d, 1e-6f);
    float *gx = down_bf16(dx, N), *g = down_bf16(dout_, N);
    check("add_rmsnorm.x", shape, gx, sum, N, d, 1e-2);
    check("add_rmsnorm.out", shape, g, ref, N, d, 1e-2);
    check_guard("add_rmsnorm", shape, dout_, N * 2);
    free(x), free(r), free(w), free(sum), free(ref), free(gx), free(g);
    cuda_free(dx), cuda_free(dr), cuda_free(dw), cuda_free(dout_);
}

/* residual add + LayerNorm (the vision tower's): x += r stored as bf16 (exact: the host rounds the
 * same fp32 sum), out = layernorm of that stored sum; alias: out = r, as the tower calls it after fc2.
 * d <= 1024 with d % 8 == 0 takes the row-in-registers kernel, larger the vector loop, odd d the
 * scalar one. */
static void test_add_layernorm(int n, int d, int bias, int alias) {
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d d=%d%s%s", n, d, bias ? "" : " no-bias", alias ? " out=r" : "");
    size_t N = (size_t)n * d;
    float *x = rand_vec(N, 2.f), *r = rand_vec(N, 1.f), *w = rand_vec(d, 1.f), *b = bias ? rand_vec(d, 0.5f) : NULL;
    for (size_t i = 0; i < N; i++) x[i] = bfr(x[i] + 0.7f); /* a non-zero mean */
    float *sum = xmalloc_t(N * sizeof(float)), *ref = xmalloc_t(N * sizeof(float));
    for (size_t i = 0; i < N; i++) sum[i] = bfr(x[i] + r[i]);
    cpu_layernorm(ref, sum, w, b, n, d, 1e-5f);
    void *dx = up_bf16(x, N), *dr = up_bf16(r, N), *dw = up_bf16(w, d), *db = b ? up_bf16(b, d) : NULL;
    void *dout_ = alias ? dr : out_buf(N * 2);
    cuda_add_layernorm(C, dout_, dx, dr, dw, db, n, d, 1e-5f);
    float *gx = down_bf16(dx, N), *g = down_bf16(dout_, N);
    check("add_layernorm.x", shape, gx, sum, N, d, 0);
    check("add_layernorm.out", shape, g, ref, N, d, 1e-2);
    if (!alias) check_guard("add_layernorm", shape, dout_, N * 2);
    free(x), free(r), free(w), free(b), free(sum), free(ref), free(gx), free(g);
    cuda_free(dx), cuda_free(dr), cuda_free(dw), cuda_free(db);
    if (!alias) cuda_free(dout_);
}

/* fp32 residual stream: x (fp32) += r (bf16) then rmsnorm; out aliases r as the decoder calls it */
static void test_add_rmsnorm_f32(int n, int d) {
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d d=%d", n, d);
    size_t N = (size_t)n * d;
    float *x = rand_vec(N, 2.f), *r = rand_vec(N, 1.f), *w = rand_vec(d, 1.f);
    float *sum = xmalloc_t(N * sizeof(float)), *ref = xmalloc_t(N * sizeof(float)), *gx = xmalloc_t(N * sizeof(float));
    for (size_t i = 0; i < N; i++) sum[i] = x[i] + bfr(r[i]);
    cpu_rmsnorm(ref, sum, w, n, d, 1e-5f);
    float *dx = cuda_malloc(N * sizeof(float), "x", NULL);
    cuda_upload(C, dx, x, N * sizeof(float));
    void *dr = up_bf16(r, N), *dw = up_bf16(w, d);
    cuda_add_rmsnorm_f32(C, dr, dx, dr, dw, n, d, 1e-5f);
    cuda_download(C, gx, dx, N * sizeof(float));
    float *g = down_bf16(dr, N);
    check("add_rmsnorm_f32.x", shape, gx, sum, N, d, 1e-5);
    check("add_rmsnorm_f32.out", shape, g, ref, N, d, 1e-2);
    /* r = NULL: plain rmsnorm of the fp32 stream */
    cuda_add_rmsnorm_f32(C, dr, dx, NULL, dw, n, d, 1e-5f);
    float *g2 = down_bf16(dr, N);
    check("add_rmsnorm_f32(r=NULL).out", shape, g2, ref, N, d, 1e-2);
    /* bf16 → fp32 conversion */
    cuda_bf16_to_f32(C, dx, dw, (size_t)d);
    cuda_download(C, gx, dx, (size_t)d * sizeof(float));
    int exact = 1;
    for (int i = 0; i < d; i++) exact &= gx[i] == bfr(w[i]);
    expect(exact, "bf16_to_f32", shape, "exact conversion");
    free(x), free(r), free(w), free(sum), free(ref), free(gx), free(g), free(g2);
    cuda_free(dx), cuda_free(dr), cuda_free(dw);
}

static void test_add(size_t n, int offset) {
    char shape[128];
    snprintf(shape, sizeof shape, "n=%zu%s", n, offset ? " unaligned" : "");
    /* offset 1: the op sees x + 1, r + 1 (2-byte aligned), exercising the scalar path */
    float *x = rand_vec(n + 1, 1.f), *r = rand_vec(n + 1, 1.f), *ref = xmalloc_t((n + 1) * sizeof(float));
    for (size_t i = 0; i < n + 1; i++) ref[i] = bfr(x[i] + r[i]);
    void *dx = up_bf16(x, n + 1), *dr = up_bf16(r, n + 1);
    cuda_add(C, (uint16_t *)dx + offset, (uint16_t *)dr + offset, n);
    float *g = down_bf16(dx, n + 1);
    size_t outside = offset ? 0 : n;
    expect(g[outside] == x[outside], "add", shape, "element outside the range untouched");
    check("add", shape, g + offset, ref + offset, n, 0, 1e-2);
    free(x), free(r), free(ref), free(g);
    cuda_free(dx), cuda_free(dr);
}

enum { A_GELU, A_GELU_TANH, A_QUICK };
static void test_act(int kind, size_t n, int offset) {
    static const char *names[] = {"gelu", "gelu_tanh", "quick_gelu"};
    char shape[128];
    snprintf(shape, sizeof shape, "n=%zu%s", n, offset ? " unaligned" : "");
    float *x = rand_vec(n + 1, 2.5f), *ref = xmalloc_t((n + 1) * sizeof(float));
    memcpy(ref, x, (n + 1) * sizeof(float));
    if (kind == A_GELU) cpu_gelu(ref, n + 1);
    if (kind == A_GELU_TANH) cpu_gelu_tanh(ref, n + 1);
    if (kind == A_QUICK) cpu_quick_gelu(ref, n + 1);
    void *dx = up_bf16(x, n + 1);
    uint16_t *p = (uint16_t *)dx + (offset ? 1 : 0);
    if (kind == A_GELU) cuda_gelu(C, p, n);
    if (kind == A_GELU_TANH) cuda_gelu_tanh(C, p, n);
    if (kind == A_QUICK) cuda_quick_gelu(C, p, n);
    float *g = down_bf16(dx, n + 1);
    /* the element outside [p, p + n) must be unchanged */
    size_t outside = offset ? 0 : n;
    expect(g[outside] == x[outside], names[kind], shape, "element outside the range untouched");
    check(names[kind], shape, g + (offset ? 1 : 0), ref + (offset ? 1 : 0), n, 0, 1e-2);
    free(x), free(ref), free(g);
    cuda_free(dx);
}

static void test_swiglu(int n, int I) {
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d I=%d", n, I);
    size_t N = (size_t)n * I;
    float *gu = rand_vec(N * 2, 2.f), *gate = xmalloc_t(N * sizeof(float)), *up = xmalloc_t(N * sizeof(float));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < I; j++) {
            gate[(size_t)i * I + j] = gu[(size_t)i * 2 * I + j];
            up[(size_t)i * I + j] = gu[(size_t)i * 2 * I + I + j];
        }
    cpu_silu_mul(gate, up, N);
    void *dgu = up_bf16(gu, N * 2), *dout_ = out_buf(N * 2);
    cuda_swiglu(C, dout_, dgu, n, I);
    float *g = down_bf16(dout_, N);
    check("swiglu", shape, g, gate, N, I, 1e-2);
    check_guard("swiglu", shape, dout_, N * 2);
    free(gu), free(gate), free(up), free(g);
    cuda_free(dgu), cuda_free(dout_);
}

enum { R_EMBED, R_SCATTER, R_GATHER };
static void test_rows(int kind, int n, int d, int n_src_rows, int n_dst_rows) {
    static const char *names[] = {"embed", "scatter_rows", "gather_rows"};
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d d=%d src_rows=%d dst_rows=%d", n, d, n_src_rows, n_dst_rows);
    float *src = rand_vec((size_t)n_src_rows * d, 1.f), *dst0 = rand_vec((size_t)n_dst_rows * d, 1.f);
    int *idx = xmalloc_t((size_t)n * sizeof(int));
    if (kind == R_SCATTER) { /* distinct destinations: a random subset of rows */
        int *perm = xmalloc_t((size_t)n_dst_rows * sizeof(int));
        for (int i = 0; i < n_dst_rows; i++) perm[i] = i;
        for (int i = n_dst_rows - 1; i > 0; i--) {
            int j = rnd_int(i + 1), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        memcpy(idx, perm, (size_t)n * sizeof(int));
        free(perm);
    } else {
        for (int i = 0; i < n; i++) idx[i] = rnd_int(n_src_rows);
    }
    float *ref = xmalloc_t((size_t)n_dst_rows * d * sizeof(float));
    memcpy(ref, dst0, (size_t)n_dst_rows * d * sizeof(float));
    for (int i = 0; i < n; i++) {
        int dr = kind == R_SCATTER ? idx[i] : i, sr = kind == R_SCATTER ? i : idx[i];
        memcpy(ref + (size_t)dr * d, src + (size_t)sr * d, (size_t)d * sizeof(float));
    }
    void *dsrc = up_bf16(src, (size_t)n_src_rows * d), *didx = up_bytes(idx, (size_t)n * sizeof(int));
    void *ddst;
    size_t check_n;
    if (kind == R_SCATTER) {
        ddst = up_bf16(dst0, (size_t)n_dst_rows * d); /* untouched rows must keep their values */
        check_n = (size_t)n_dst_rows * d;
    } else {
        ddst = out_buf((size_t)n * d * 2);
        check_n = (size_t)n * d;
    }
    if (kind == R_EMBED) cuda_embed(C, ddst, dsrc, didx, n, d);
    if (kind == R_SCATTER) cuda_scatter_rows(C, ddst, dsrc, didx, n, d);
    if (kind == R_GATHER) cuda_gather_rows(C, ddst, dsrc, didx, n, d);
    float *g = down_bf16(ddst, check_n);
    check(names[kind], shape, g, ref, check_n, d, 1e-6);
    if (kind != R_SCATTER) check_guard(names[kind], shape, ddst, check_n * 2);
    free(src), free(dst0), free(idx), free(ref), free(g);
    cuda_free(dsrc), cuda_free(didx), cuda_free(ddst);
}

static void test_rope(int n, int heads, int hd, int extra_cols, int pos_mode, float theta) {
    char shape[128];
    int stride = heads * hd + extra_cols;
    snprintf(shape, sizeof shape, "n=%d heads=%d hd=%d stride=%d theta=%g pos=%s", n, heads, hd, stride, theta,
             pos_mode ? "random" : "0..n-1");
    size_t N = (size_t)n * stride;
    float *x = rand_vec(N, 1.f), *ref = xmalloc_t(N * sizeof(float));
    int *pos = xmalloc_t((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) pos[i] = pos_mode ? rnd_int(5000) : i;
    memcpy(ref, x, N * sizeof(float));
    /* cpu_rope works on rows of exactly heads*hd: apply it row by row */
    for (int i = 0; i < n; i++) cpu_rope(ref + (size_t)i * stride, 1, heads, hd, 0, pos + i, theta);
    void *dx = up_bf16(x, N), *dpos = up_bytes(pos, (size_t)n * sizeof(int));
    cuda_rope(C, dx, n, heads, hd, stride, dpos, theta);
    float *g = down_bf16(dx, N);
    check("rope", shape, g, ref, N, stride, 1e-2);
    if (extra_cols) {
        int same = 1;
        for (int i = 0; i < n && same; i++)
            for (int j = heads * hd; j < stride; j++)
                if (g[(size_t)i * stride + j] != x[(size_t)i * stride + j]) same = 0;
        expect(same, "rope", shape, "columns past heads*hd untouched");
    }
    /* q and k in one launch: k = the first kvh heads of a second buffer with its own stride */
    int kvh = heads > 1 ? heads / 2 : 1, kstride = kvh * hd * 2;
    float *k = rand_vec((size_t)n * kstride, 1.f), *kref = xmalloc_t((size_t)n * kstride * sizeof(float));
    memcpy(kref, k, (size_t)n * kstride * sizeof(float));
    for (int i = 0; i < n; i++) cpu_rope(kref + (size_t)i * kstride, 1, kvh, hd, 0, pos + i, theta);
    void *dq2 = up_bf16(x, N), *dk2 = up_bf16(k, (size_t)n * kstride);
    cuda_rope_qk(C, dq2, heads, stride, dk2, kvh, kstride, n, hd, dpos, theta);
    float *gq = down_bf16(dq2, N), *gk = down_bf16(dk2, (size_t)n * kstride);
    check("rope_qk.q", shape, gq, ref, N, stride, 1e-2);
    check("rope_qk.k", shape, gk, kref, (size_t)n * kstride, kstride, 1e-2);
    free(k), free(kref), free(gq), free(gk);
    cuda_free(dq2), cuda_free(dk2);
    free(x), free(ref), free(pos), free(g);
    cuda_free(dx), cuda_free(dpos);
}

static void test_log_softmax(int rows, int V, int alias) {
    char shape[128];
    snprintf(shape, sizeof shape, "rows=%d V=%d%s", rows, V, alias ? " out=logits" : "");
    size_t N = (size_t)rows * V;
    float *x = xmalloc_t(N * sizeof(float));
    for (size_t i = 0; i < N; i++) x[i] = rnd_normal() * 4.f;
    float *ref = xmalloc_t(N * sizeof(float));
    double *row = xmalloc_t((size_t)V * sizeof(double));
    for (int r = 0; r < rows; r++) {
        cpu_log_softmax(row, x + (size_t)r * V, V);
        for (int j = 0; j < V; j++) ref[(size_t)r * V + j] = (float)row[j];
    }
    void *dx = up_bytes(x, N * 4), *dout_ = alias ? dx : out_buf(N * 4);
    cuda_log_softmax(C, dout_, dx, rows, V);
    float *g = down_f32(dout_, N);
    check("log_softmax", shape, g, ref, N, V, 1e-2);
    /* tighter: log-probabilities are what label scoring sums */
    double maxd = 0;
    for (size_t i = 0; i < N; i++) maxd = fmax(maxd, fabs((double)g[i] - ref[i]));
    char what[96];
    snprintf(what, sizeof what, "max |gpu - ref| = %.2e (bound 1e-4)", maxd);
    expect(maxd <= 1e-4, "log_softmax.abs", shape, what);
    if (!alias) check_guard("log_softmax", shape, dout_, N * 4);
    free(x), free(ref), free(row), free(g);
    cuda_free(dx);
    if (!alias) cuda_free(dout_);
}

static void test_argmax(int rows, int V) {
    char shape[128];
    snprintf(shape, sizeof shape, "rows=%d V=%d (ties planted)", rows, V);
    size_t N = (size_t)rows * V;
    float *x = xmalloc_t(N * sizeof(float));
    for (size_t i = 0; i < N; i++) x[i] = rnd_normal();
    int *ref = xmalloc_t((size_t)rows * sizeof(int)), *g = xmalloc_t((size_t)rows * sizeof(int));
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * V;
        int a = rnd_int(V), b = rnd_int(V);
        xr[a] = xr[b] = 100.f + r; /* a tie: the lower index wins */
        ref[r] = a < b ? a : b;
    }
    void *dx = up_bytes(x, N * 4), *di = out_buf((size_t)rows * sizeof(int));
    cuda_argmax(C, di, dx, rows, V);
    cuda_download(C, g, di, (size_t)rows * sizeof(int));
    int bad = -1;
    for (int r = 0; r < rows && bad < 0; r++)
        if (g[r] != ref[r]) bad = r;
    if (bad < 0) {
        expect(1, "argmax", shape, "all rows exact");
    } else {
        char what[128];
        snprintf(what, sizeof what, "first wrong row %d: gpu=%d ref=%d", bad, g[bad], ref[bad]);
        expect(0, "argmax", shape, what);
    }
    check_guard("argmax", shape, di, (size_t)rows * sizeof(int));
    free(x), free(ref), free(g);
    cuda_free(dx), cuda_free(di);
}

/* ---- attention ------------------------------------------------------------------------------------ */

#define N_IMPL 3
static const char *impl_names[N_IMPL] = {"auto", "generic", "mma-plain"};
static cuda_ctx *ctx_impl[N_IMPL]; /* [0] == C */

/* Attention variants: a context (LLAVA_CUDA_ATTN) plus the Hopper switch (cuda_attention_sm90_set).
 * "auto" runs attn_sm90_kernel where it applies; "mma" is the same context with it off, run only when
 * the kernel is available (and LLAVA_CUDA_ATTN_SM90 did not turn it off). */
#define N_VAR (N_IMPL + 1)
static const char *var_names[N_VAR] = {"auto", "mma", "generic", "mma-plain"};
static int sm90_env = 1, sm90_avail;
static int n_var(int hd) { return (hd == 64 || hd == 128) ? N_VAR : 1; }
/* sets the switch for variant v and returns its context (NULL: skip the variant) */
static cuda_ctx *var_ctx(int v) {
    if (v == 1 && !sm90_avail) return NULL;
    cuda_attention_sm90_set(v == 1 ? 0 : sm90_env);
    return ctx_impl[v <= 1 ? 0 : v - 1];
}

/* "label seqs=q/k,q/k,.." (cut after ~90 characters); returns its length */
static int seqs_desc(char *desc, size_t size, const char *label, int ns, const int *qlens, const int *klens) {
    int pos = snprintf(desc, size, "%s seqs=", label);
    for (int s = 0; s < ns && pos < 90; s++)
        pos += snprintf(desc + pos, size - pos, "%s%d/%d", s ? "," : "", qlens[s], klens[s]);
    if (pos >= 90) pos += snprintf(desc + pos, size - pos, ",..");
    return pos;
}

/* q row layouts of test_attention_q: Q_OWN rows of heads*hd (q_stride 0 = default), Q_QKV the
 * fused [q | k | v] row of the vision tower (q_stride = kv_stride = heads*hd + 2*kv*hd; needs
 * q_len == k_len), else q rows padded by that many elements (odd: no tensor-core kernel takes it) */
enum { Q_OWN = 0, Q_QKV = -1 };

/* Packed sequences s = 0..ns-1 with q_len qlens[s] and k_len klens[s]; kv_packed puts K and V
 * side by side in one buffer (kv_stride = 2*kv*hd, as a fused KV projection would); q_layout as
 * above. */
static void test_attention_q(const char *label, int ns, const int *qlens, const int *klens, int heads, int kv, int hd,
                             int causal, int kv_packed, int q_layout) {
    int tq = 0, tk = 0, max_q = 0;
    int *qs = xmalloc_t((size_t)(ns + 1) * sizeof(int)), *ks = xmalloc_t((size_t)(ns + 1) * sizeof(int));
    qs[0] = ks[0] = 0;
    for (int s = 0; s < ns; s++) {
        qs[s + 1] = qs[s] + qlens[s];
        ks[s + 1] = ks[s] + klens[s];
        if (qlens[s] > max_q) max_q = qlens[s];
    }
    tq = qs[ns], tk = ks[ns];
    if (small && tk > 1500) {
        free(qs), free(ks);
        return;
    }
    const int qd = heads * hd, fused = q_layout == Q_QKV;
    if (fused) kv_packed = 1;
    for (int s = 0; s < ns && fused; s++)
        if (qlens[s] != klens[s]) {
            fprintf(stderr, "test: a fused [q | k | v] case needs q_len == k_len\n");
            exit(2);
        }
    const int kv_stride = fused ? qd + 2 * kv * hd : kv_packed ? 2 * kv * hd : kv * hd;
    const int q_stride = fused ? kv_stride : qd + q_layout;
    size_t qn = (size_t)tq * qd;
    /* qrows: the q rows as the op sees them (own buffer, maybe padded); q: a packed copy for the reference */
    float *qrows = fused ? NULL : rand_vec((size_t)tq * q_stride, 1.5f);
    float *kvb = rand_vec((size_t)tk * kv_stride, 1.f);
    float *vb = kv_packed ? NULL : rand_vec((size_t)tk * kv_stride, 1.f);
    const float *k = kvb + (fused ? qd : 0), *v = kv_packed ? k + (size_t)kv * hd : vb;
    float *q = xmalloc_t(qn * sizeof(float));
    for (int i = 0; i < tq; i++)
        memcpy(q + (size_t)i * qd, (fused ? kvb : qrows) + (size_t)i * q_stride, qd * sizeof(float));
    float scale = 1.f / sqrtf((float)hd);
    float *ref = xmalloc_t(qn * sizeof(float));
    for (int s = 0; s < ns; s++)
        cpu_attention(ref + (size_t)qs[s] * heads * hd, q + (size_t)qs[s] * heads * hd, k + (size_t)ks[s] * kv_stride,
                      v + (size_t)ks[s] * kv_stride, qlens[s], klens[s], heads, kv, hd, kv_stride, causal,
                      klens[s] - qlens[s], 0, scale);
    void *dq = fused ? NULL : up_bf16(qrows, (size_t)tq * q_stride), *dk = up_bf16(kvb, (size_t)tk * kv_stride);
    void *dv = kv_packed ? NULL : up_bf16(vb, (size_t)tk * kv_stride);
    const uint16_t *pq = fused ? dk : dq, *pk = (const uint16_t *)dk + (fused ? qd : 0);
    const uint16_t *pv = kv_packed ? pk + (size_t)kv * hd : dv;
    void *dqs = up_bytes(qs, (size_t)(ns + 1) * sizeof(int)), *dks = up_bytes(ks, (size_t)(ns + 1) * sizeof(int));
    /* queries == keys in every sequence: one start array for both, as the prefill passes it (the
     * case the Hopper kernel takes) */
    int same = 1;
    for (int s = 0; s < ns; s++) same &= qlens[s] == klens[s];
    const void *dks_use = same ? dqs : dks;
    void *dout_ = out_buf(qn * 2);
    char desc[160];
    int pos = seqs_desc(desc, sizeof desc, label, ns, qlens, klens);
    pos += snprintf(desc + pos, sizeof desc - pos, " h=%d/%d hd=%d%s%s", heads, kv, hd, causal ? " causal" : "",
                    fused ? " qkv" : kv_packed ? " kvpacked" : "");
    if (q_layout > 0) snprintf(desc + pos, sizeof desc - pos, " qpad=%d", q_layout);
    for (int v = 0; v < n_var(hd); v++) {
        cuda_ctx *x = var_ctx(v);
        if (!x) continue;
        poison(dout_, qn * 2);
        cuda_sync(C);
        cuda_attention(x, dout_, pq, pk, pv, dqs, dks_use, ns, max_q, heads, kv, hd, kv_stride,
                       q_layout == Q_OWN ? 0 : q_stride, causal, scale);
        cuda_sync(x);
        float *g = down_bf16(dout_, qn);
        char op[32];
        snprintf(op, sizeof op, "attn[%s]", var_names[v]);
        check(op, desc, g, ref, qn, (size_t)heads * hd, 1e-2);
        check_guard(op, desc, dout_, qn * 2);
        free(g);
    }
    free(qs), free(ks), free(q), free(qrows), free(kvb), free(vb), free(ref);
    cuda_free(dq), cuda_free(dk), cuda_free(dv), cuda_free(dqs), cuda_free(dks), cuda_free(dout_);
}

static void test_attention(const char *label, int ns, const int *qlens, const int *klens, int heads, int kv, int hd,
                           int causal, int kv_packed) {
    test_attention_q(label, ns, qlens, klens, heads, kv, hd, causal, kv_packed, Q_OWN);
}

/* batched generation: new rows of each sequence against its range of a shared KV cache, ranges
 * scattered with gaps (cuda_attention_ranges); the new rows' K/V first stored into the cache by
 * cuda_kv_store from a packed [k | v] buffer, as the decoder does */
static void test_attention_ranges(const char *label, int ns, const int *qlens, const int *klens, int heads, int kv,
                                  int hd) {
    const int KD = kv * hd;
    int *qs = xmalloc_t((size_t)(ns + 1) * sizeof(int)), *kb = xmalloc_t((size_t)ns * sizeof(int));
    int *ke = xmalloc_t((size_t)ns * sizeof(int));
    int Ck = 0, max_q = 0, max_k = 0;
    qs[0] = 0;
    for (int s = ns - 1; s >= 0; s--) { /* ranges in reverse order of the sequences, with gaps */
        Ck += 1 + rnd_int(40);
        kb[s] = Ck, ke[s] = Ck + klens[s];
        Ck += klens[s] + rnd_int(3);
    }
    for (int s = 0; s < ns; s++) {
        qs[s + 1] = qs[s] + qlens[s];
        if (qlens[s] > max_q) max_q = qlens[s];
        if (klens[s] > max_k) max_k = klens[s];
    }
    const int tq = qs[ns];
    size_t qn = (size_t)tq * heads * hd;
    float *q = rand_vec(qn, 1.5f);
    float *kc = rand_vec((size_t)Ck * KD, 1.f), *vc = rand_vec((size_t)Ck * KD, 1.f);
    float *kvnew = rand_vec((size_t)tq * 2 * KD, 1.f);
    int *rows = xmalloc_t((size_t)(tq ? tq : 1) * sizeof(int));
    for (int s = 0; s < ns; s++)
        for (int i = 0; i < qlens[s]; i++) {
            int r = ke[s] - qlens[s] + i; /* the new rows are the last of the range */
            rows[qs[s] + i] = r;
            for (int d = 0; d < KD; d++) {
                kc[(size_t)r * KD + d] = kvnew[(size_t)(qs[s] + i) * 2 * KD + d];
                vc[(size_t)r * KD + d] = kvnew[(size_t)(qs[s] + i) * 2 * KD + KD + d];
            }
        }
    float scale = 1.f / sqrtf((float)hd);
    float *ref = xmalloc_t(qn * sizeof(float));
    for (int s = 0; s < ns; s++)
        cpu_attention(ref + (size_t)qs[s] * heads * hd, q + (size_t)qs[s] * heads * hd, kc + (size_t)kb[s] * KD,
                      vc + (size_t)kb[s] * KD, qlens[s], klens[s], heads, kv, hd, KD, 1, klens[s] - qlens[s], 0, scale);
    /* the device cache holds the old rows; the new ones arrive through cuda_kv_store */
    float *kc0 = xmalloc_t((size_t)Ck * KD * sizeof(float)), *vc0 = xmalloc_t((size_t)Ck * KD * sizeof(float));
    memcpy(kc0, kc, (size_t)Ck * KD * sizeof(float));
    memcpy(vc0, vc, (size_t)Ck * KD * sizeof(float));
    for (int i = 0; i < tq; i++)
        for (int d = 0; d < KD; d++) kc0[(size_t)rows[i] * KD + d] = vc0[(size_t)rows[i] * KD + d] = -7.f;
    void *dq = up_bf16(q, qn), *dkc = up_bf16(kc0, (size_t)Ck * KD), *dvc = up_bf16(vc0, (size_t)Ck * KD);
    void *dkv = up_bf16(kvnew, (size_t)tq * 2 * KD), *drows = up_bytes(rows, (size_t)(tq ? tq : 1) * sizeof(int));
    void *dqs = up_bytes(qs, (size_t)(ns + 1) * sizeof(int)), *dkb = up_bytes(kb, (size_t)ns * sizeof(int));
    void *dke = up_bytes(ke, (size_t)ns * sizeof(int));
    void *dout_ = out_buf(qn * 2);
    char desc[160];
    int pos = seqs_desc(desc, sizeof desc, label, ns, qlens, klens);
    snprintf(desc + pos, sizeof desc - pos, " h=%d/%d hd=%d cache=%d", heads, kv, hd, Ck);
    cuda_kv_store(C, dkc, dvc, dkv, drows, tq, KD);
    float *gk = down_bf16(dkc, (size_t)Ck * KD), *gv = down_bf16(dvc, (size_t)Ck * KD);
    for (size_t i = 0; i < (size_t)Ck * KD; i++) kc[i] = bfr(kc[i]), vc[i] = bfr(vc[i]);
    check("kv_store.k", desc, gk, kc, (size_t)Ck * KD, (size_t)KD, 0);
    check("kv_store.v", desc, gv, vc, (size_t)Ck * KD, (size_t)KD, 0);
    free(gk), free(gv);
    for (int v = 0; v < n_var(hd); v++) {
        cuda_ctx *x = var_ctx(v);
        if (!x || v == 1) continue; /* (no Hopper path here: "mma" would repeat "auto") */
        poison(dout_, qn * 2);
        cuda_sync(C);
        cuda_attention_ranges(x, dout_, dq, dkc, dvc, dqs, dkb, dke, ns, max_q, max_k, heads, kv, hd, KD, scale);
        cuda_sync(x);
        float *g = down_bf16(dout_, qn);
        char op[40];
        snprintf(op, sizeof op, "attn_ranges[%s]", var_names[v]);
        check(op, desc, g, ref, qn, (size_t)heads * hd, 1e-2);
        check_guard(op, desc, dout_, qn * 2);
        free(g);
    }
    free(qs), free(kb), free(ke), free(q), free(kc), free(vc), free(kvnew), free(rows), free(ref), free(kc0), free(vc0);
    cuda_free(dq), cuda_free(dkc), cuda_free(dvc), cuda_free(dkv), cuda_free(drows), cuda_free(dqs), cuda_free(dkb);
    cuda_free(dke), cuda_free(dout_);
}

/* Batched label scoring: packed sequences, each a causal prompt of plens[s] tokens followed by a
 * trie of tails[s] tokens (its own parents), K/V packed side by side (stride 2*kv*hd) as the step
 * decoder has them. Reference: cpu_attention (causal) for the prompt rows and cpu_attention_tree
 * (prefix = the prompt) for the trie rows of every sequence. */
static void test_tail_tree_q(int ns, const int *plens, const int *tails, int heads, int kv, int hd, int fused) {
    int *qs = xmalloc_t((size_t)(ns + 1) * sizeof(int)), max_q = 0;
    qs[0] = 0;
    for (int s = 0; s < ns; s++) {
        qs[s + 1] = qs[s] + plens[s] + tails[s];
        if (plens[s] + tails[s] > max_q) max_q = plens[s] + tails[s];
    }
    const int M = qs[ns];
    if (small && M > 1500) {
        free(qs);
        return;
    }
    int *parent = xmalloc_t((size_t)M * sizeof(int));
    for (int s = 0; s < ns; s++) {
        int *p = parent + qs[s];
        for (int i = 0; i < plens[s]; i++) p[i] = -1;
        int *tp = p + plens[s];
        for (int i = 0; i < tails[s]; i++) {
            tp[i] = i < 3 ? i - 1 : (rnd_int(4) == 0 ? 2 : i - 1 - rnd_int(i < 6 ? 1 : 3));
            if (rnd_int(7) == 0) tp[i] = -1;
            if (tp[i] >= i) tp[i] = i - 1;
        }
    }
    const int qd = heads * hd, kv_stride = fused ? qd + 2 * kv * hd : 2 * kv * hd;
    size_t qn = (size_t)M * qd;
    float *q, *kvb;
    if (fused) { /* one buffer of [q | k | v] rows; q: a packed copy for the reference */
        kvb = rand_vec((size_t)M * kv_stride, 1.f);
        q = xmalloc_t(qn * sizeof(float));
        for (int i = 0; i < M; i++) memcpy(q + (size_t)i * qd, kvb + (size_t)i * kv_stride, qd * sizeof(float));
    } else {
        q = rand_vec(qn, 1.5f);
        kvb = rand_vec((size_t)M * kv_stride, 1.f);
    }
    const float *k = kvb + (fused ? qd : 0), *v = k + (size_t)kv * hd;
    float scale = 1.f / sqrtf((float)hd);
    float *ref = xmalloc_t(qn * sizeof(float));
    for (int s = 0; s < ns; s++) {
        size_t r0 = (size_t)qs[s], rt = r0 + (size_t)plens[s];
        cpu_attention(ref + r0 * heads * hd, q + r0 * heads * hd, k + r0 * kv_stride, v + r0 * kv_stride, plens[s],
                      plens[s], heads, kv, hd, kv_stride, 1, 0, 0, scale);
        cpu_attention_tree(ref + rt * heads * hd, q + rt * heads * hd, k + r0 * kv_stride, v + r0 * kv_stride, tails[s],
                           plens[s], parent + rt, heads, kv, hd, kv_stride, scale);
    }
    void *dq = fused ? NULL : up_bf16(q, qn), *dkv = up_bf16(kvb, (size_t)M * kv_stride);
    const uint16_t *pq = fused ? dkv : dq, *pk = (const uint16_t *)dkv + (fused ? qd : 0), *pv = pk + (size_t)kv * hd;
    void *dqs = up_bytes(qs, (size_t)(ns + 1) * sizeof(int)), *dtail = up_bytes(tails, (size_t)ns * sizeof(int));
    void *dpar = up_bytes(parent, (size_t)M * sizeof(int)), *dout_ = out_buf(qn * 2);
    char desc[160];
    int pos = snprintf(desc, sizeof desc, "seqs=");
    for (int s = 0; s < ns && pos < 90; s++)
        pos += snprintf(desc + pos, sizeof desc - pos, "%s%d+%d", s ? "," : "", plens[s], tails[s]);
    snprintf(desc + pos, sizeof desc - pos, " h=%d/%d hd=%d%s", heads, kv, hd, fused ? " qkv" : "");
    /* every variant ("auto": prompts and tries in one launch of the Hopper kernel where it applies) */
    for (int v = 0; v < n_var(hd); v++) {
        cuda_ctx *x = var_ctx(v);
        if (!x) continue;
        poison(dout_, qn * 2);
        cuda_sync(C);
        cuda_attention_tail_tree(x, dout_, pq, pk, pv, dqs, dqs, dtail, dpar, ns, max_q, heads, kv, hd, kv_stride,
                                 fused ? kv_stride : 0, scale);
        cuda_sync(x);
        float *g = down_bf16(dout_, qn);
        char op[40];
        snprintf(op, sizeof op, "tailtree[%s]", var_names[v]);
        check(op, desc, g, ref, qn, (size_t)heads * hd, 1e-2);
        check_guard(op, desc, dout_, qn * 2);
        free(g);
    }
    /* only the last prompt row and the trie rows as queries (the pruned last layer): q_len < k_len */
    int *kq = xmalloc_t((size_t)(ns + 1) * sizeof(int)), max_kq = 0, R = 0;
    for (int s2 = 0; s2 < ns; s2++) {
        kq[s2] = R;
        R += 1 + tails[s2];
        if (1 + tails[s2] > max_kq) max_kq = 1 + tails[s2];
    }
    kq[ns] = R;
    float *qk = xmalloc_t((size_t)R * heads * hd * sizeof(float)), *rk = xmalloc_t((size_t)R * heads * hd * sizeof(float));
    int *kpar = xmalloc_t((size_t)R * sizeof(int));
    for (int s2 = 0; s2 < ns; s2++)
        for (int j = 0; j <= tails[s2]; j++) {
            size_t src = (size_t)qs[s2] + plens[s2] - 1 + j, dst = (size_t)kq[s2] + j;
            memcpy(qk + dst * heads * hd, q + src * heads * hd, sizeof(float) * heads * hd);
            memcpy(rk + dst * heads * hd, ref + src * heads * hd, sizeof(float) * heads * hd);
            kpar[dst] = j == 0 ? -1 : parent[qs[s2] + plens[s2] + j - 1];
        }
    if (R && plens[0] > 0) {
        size_t rn = (size_t)R * heads * hd;
        void *dqk = up_bf16(qk, rn), *dkq = up_bytes(kq, (size_t)(ns + 1) * sizeof(int));
        void *dkpar = up_bytes(kpar, (size_t)R * sizeof(int)), *dko = out_buf(rn * 2);
        for (int v = 0; v < n_var(hd); v++) {
            cuda_ctx *x = var_ctx(v);
            if (!x) continue;
            poison(dko, rn * 2);
            cuda_sync(C);
            cuda_attention_tail_tree(x, dko, dqk, pk, pv, dkq, dqs, dtail, dkpar, ns, max_kq, heads, kv, hd, kv_stride,
                                     0, scale);
            cuda_sync(x);
            float *g = down_bf16(dko, rn);
            char op[40];
            snprintf(op, sizeof op, "tailtree-kept[%s]", var_names[v]);
            check(op, desc, g, rk, rn, (size_t)heads * hd, 1e-2);
            check_guard(op, desc, dko, rn * 2);
            free(g);
        }
        cuda_free(dqk), cuda_free(dkq), cuda_free(dkpar), cuda_free(dko);
    }
    free(kq), free(qk), free(rk), free(kpar);
    free(qs), free(parent), free(q), free(kvb), free(ref);
    cuda_free(dq), cuda_free(dkv), cuda_free(dqs), cuda_free(dtail), cuda_free(dpar), cuda_free(dout_);
}

static void test_tail_tree(int ns, const int *plens, const int *tails, int heads, int kv, int hd) {
    test_tail_tree_q(ns, plens, tails, heads, kv, hd, 0);
}

/* CLIP embedding input: patchify (fp32 pixels -> bf16 patch rows) and the embedding assembly */
static void test_patch(int n_tiles, int S, int P, int d) {
    const int G = S / P, GG = G * G, K = 3 * P * P;
    size_t npx = (size_t)n_tiles * 3 * S * S, ncol = (size_t)n_tiles * GG * K, nx = (size_t)n_tiles * (GG + 1) * d;
    float *px = rand_vec(npx, 1.f), *ref = xmalloc_t(ncol * sizeof(float));
    cpu_patchify(ref, px, n_tiles, S, P);
    for (size_t i = 0; i < ncol; i++) ref[i] = bfr(ref[i]);
    void *dpx = up_bytes(px, npx * sizeof(float)), *dcols = out_buf(ncol * 2);
    char desc[96];
    snprintf(desc, sizeof desc, "tiles=%d S=%d P=%d", n_tiles, S, P);
    poison(dcols, ncol * 2);
    cuda_patchify(C, dcols, dpx, n_tiles, S, P);
    cuda_sync(C);
    float *g = down_bf16(dcols, ncol);
    check("patchify", desc, g, ref, ncol, (size_t)K, 1e-6);
    check_guard("patchify", desc, dcols, ncol * 2);
    free(g);
    /* embeddings from bf16 patch projections, class and position rows */
    float *pt = rand_vec((size_t)n_tiles * GG * d, 1.f), *ce = rand_vec((size_t)d, 1.f), *pe = rand_vec((size_t)(GG + 1) * d, 1.f);
    for (size_t i = 0; i < (size_t)n_tiles * GG * d; i++) pt[i] = bfr(pt[i]);
    for (int i = 0; i < d; i++) ce[i] = bfr(ce[i]);
    for (size_t i = 0; i < (size_t)(GG + 1) * d; i++) pe[i] = bfr(pe[i]);
    float *xr = xmalloc_t(nx * sizeof(float));
    cpu_clip_embed(xr, pt, ce, pe, n_tiles, GG, d);
    void *dpt = up_bf16(pt, (size_t)n_tiles * GG * d), *dce = up_bf16(ce, (size_t)d), *dpe = up_bf16(pe, (size_t)(GG + 1) * d);
    void *dx = out_buf(nx * 2);
    snprintf(desc, sizeof desc, "tiles=%d GG=%d d=%d", n_tiles, GG, d);
    poison(dx, nx * 2);
    cuda_clip_embed(C, dx, dpt, dce, dpe, n_tiles, GG, d);
    cuda_sync(C);
    g = down_bf16(dx, nx);
    check("clip_embed", desc, g, xr, nx, (size_t)d, 1e-2);
    check_guard("clip_embed", desc, dx, nx * 2);
    free(g);
    free(px), free(ref), free(pt), free(ce), free(pe), free(xr);
    cuda_free(dpx), cuda_free(dcols), cuda_free(dpt), cuda_free(dce), cuda_free(dpe), cuda_free(dx);
}

/* pick of (row, col) pairs from a chunk of rows */
static void test_pick(int rows, int V, int n, int row0, int n_rows) {
    float *x = rand_vec((size_t)n_rows * V, 3.f);
    int *r = xmalloc_t((size_t)n * sizeof(int)), *c = xmalloc_t((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) r[i] = rnd_int(rows), c[i] = rnd_int(V);
    float *ref = xmalloc_t((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) ref[i] = -7.f; /* untouched sentinel */
    cpu_pick(ref, x, r, c, n, row0, n_rows, V);
    void *dx = up_bytes(x, (size_t)n_rows * V * sizeof(float)), *dr = up_bytes(r, (size_t)n * sizeof(int));
    float *sent = xmalloc_t((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) sent[i] = -7.f;
    void *dc = up_bytes(c, (size_t)n * sizeof(int)), *dout_ = up_bytes(sent, (size_t)n * sizeof(float));
    free(sent);
    cuda_pick(C, dout_, dx, dr, dc, n, row0, n_rows, V);
    cuda_sync(C);
    float *g = down_f32(dout_, (size_t)n);
    char desc[96];
    snprintf(desc, sizeof desc, "pairs=%d rows %d..%d of %d V=%d", n, row0, row0 + n_rows, rows, V);
    check("pick", desc, g, ref, (size_t)n, (size_t)n, 1e-7);
    free(g), free(x), free(r), free(c), free(ref);
    cuda_free(dx), cuda_free(dr), cuda_free(dc), cuda_free(dout_);
}

/* ---- bench ------------------------------------------------------------------------------------------ */

static void bench_linear(const char *what, int n, int din, int dout, int bias) {
    char shape[128];
    snprintf(shape, sizeof shape, "%s n=%d %d->%d%s", what, n, din, dout, bias ? " +bias" : "");
    float *x = rand_vec((size_t)n * din, 1.f), *w = rand_vec((size_t)dout * din, 0.02f);
    float *b = bias ? rand_vec(dout, 0.5f) : NULL;
    void *dx = up_bf16(x, (size_t)n * din), *dw = up_bf16(w, (size_t)dout * din), *db = b ? up_bf16(b, dout) : NULL;
    void *dy = out_buf((size_t)n * dout * 2);
    cuda_linear(C, dy, dx, dw, db, n, din, dout);
    /* validate the first and last 8 rows */
    int rows = n < 16 ? n : 16;
    float *xs = xmalloc_t((size_t)rows * din * sizeof(float)), *ref = xmalloc_t((size_t)rows * dout * sizeof(float));
    for (int r = 0; r < rows; r++) {
        int src = r < rows / 2 ? r : n - rows + r;
        memcpy(xs + (size_t)r * din, x + (size_t)src * din, (size_t)din * sizeof(float));
    }
    cpu_linear(ref, xs, w, b, rows, din, dout);
    float *all = down_bf16(dy, (size_t)n * dout), *g = xmalloc_t((size_t)rows * dout * sizeof(float));
    for (int r = 0; r < rows; r++) {
        int src = r < rows / 2 ? r : n - rows + r;
        memcpy(g + (size_t)r * dout, all + (size_t)src * dout, (size_t)dout * sizeof(float));
    }
    check("bench.linear", shape, g, ref, (size_t)rows * dout, dout, 1e-2);
    int iters = 20;
    for (int i = 0; i < 3; i++) cuda_linear(C, dy, dx, dw, db, n, din, dout);
    cuda_sync(C);
    double t0 = now_s();
    for (int i = 0; i < iters; i++) cuda_linear(C, dy, dx, dw, db, n, din, dout);
    cuda_sync(C);
    double t = (now_s() - t0) / iters;
    printf("TIME linear %-44s %8.3f ms %7.1f TFLOP/s\n", shape, t * 1e3, 2.0 * n * din * dout / t / 1e12);
    fflush(stdout);
    free(x), free(w), free(b), free(xs), free(ref), free(all), free(g);
    cuda_free(dx), cuda_free(dw), cuda_free(db), cuda_free(dy);
}

/* every algorithm cuBLASLt's heuristic offers for a step-sized decoder GEMM (the first is the one
 * the ops use): how much a per-shape choice by timing could give */
static void bench_linear_algos(const char *what, int n, int din, int dout, int mode) {
    float ms[16];
    int cnt = cuda_linear_algos(C, n, din, dout, mode, ms, 16);
    float best = -1.f;
    int bi = -1;
    for (int i = 0; i < cnt; i++)
        if (ms[i] > 0 && (best < 0 || ms[i] < best)) best = ms[i], bi = i;
    const double fl = 2.0 * n * din * dout;
    printf("TIME algos %-26s n=%d %d->%d mode %d: heuristic %.3f ms %.1f TFLOP/s, best #%d of %d %.3f ms %.1f TFLOP/s |",
           what, n, din, dout, mode, cnt ? ms[0] : -1.f, cnt && ms[0] > 0 ? fl / ms[0] / 1e9 : 0.0, bi, cnt, best,
           best > 0 ? fl / best / 1e9 : 0.0);
    for (int i = 0; i < cnt; i++) printf(" %.3f", ms[i]);
    printf("\n");
    fflush(stdout);
}

/* the decoder's two big GEMM shapes at a step's rows, bf16 vs e4m3 (per-row / per-token scales),
 * each back to back for 2 s on varied data: what an FP8 path would gain under the power limit */
static void bench_fp8(const char *what, int m, int k, int n) {
    double b = 0, f = 0;
    llava_err err = {0};
    if (bench_gemm_fp8(&b, &f, m, k, n, 2.0, &err)) {
        printf("INFO fp8 probe %s: %s\n", what, err.msg);
        return;
    }
    printf("TIME fp8 probe %-16s m=%d %d->%d sustained: bf16 %.1f TFLOP/s, e4m3 %.1f TFLOP/s (x%.2f)\n", what, m, k,
           n, b, f, b > 0 ? f / b : 0.0);
    fflush(stdout);
}

/* the decoder's residual add + RMSNorm over a whole step (fp32 stream): bytes moved a call are
 * 12 per element (x read and written as fp32, r read and out written as bf16) */
static void bench_add_rmsnorm(int n, int d) {
    size_t N = (size_t)n * d;
    float *dx = cuda_malloc(N * sizeof(float), "x", NULL);
    void *dr = out_buf(N * 2), *dw = out_buf((size_t)d * 2);
    cuda_memset(C, dx, 0, N * sizeof(float));
    cuda_memset(C, dr, 0, N * 2);
    cuda_memset(C, dw, 0, (size_t)d * 2);
    for (int i = 0; i < 3; i++) cuda_add_rmsnorm_f32(C, dr, dx, dr, dw, n, d, 1e-5f);
    cuda_sync(C);
    int iters = 20;
    double t0 = now_s();
    for (int i = 0; i < iters; i++) cuda_add_rmsnorm_f32(C, dr, dx, dr, dw, n, d, 1e-5f);
    cuda_sync(C);
    double t = (now_s() - t0) / iters;
    const char *e = getenv("LLAVA_CUDA_NORM");
    printf("TIME add_rmsnorm_f32 n=%d d=%d%s %8.3f ms %7.0f GB/s\n", n, d, e && !strcmp(e, "warp") ? " (warp)" : "",
           t * 1e3, 12.0 * N / t / 1e9);
    fflush(stdout);
    cuda_free(dx), cuda_free(dr), cuda_free(dw);
}

/* the vision tower's residual add + LayerNorm over a whole pass, fused (8 bytes an element: x read
 * and written, r read, out written) and as the two ops it replaces (cuda_add 6, cuda_layernorm 4) */
static void bench_add_layernorm(int n, int d) {
    size_t N = (size_t)n * d;
    void *dx = out_buf(N * 2), *dr = out_buf(N * 2), *dw = out_buf((size_t)d * 2), *db = out_buf((size_t)d * 2);
    cuda_memset(C, dx, 0, N * 2);
    cuda_memset(C, dr, 0, N * 2);
    cuda_memset(C, dw, 0, (size_t)d * 2);
    cuda_memset(C, db, 0, (size_t)d * 2);
    const int iters = 20;
    double t0 = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < iters + 3; i++) { /* 3 warm-up calls, then the timed ones */
            if (i == 3) {
                cuda_sync(C);
                t0 = now_s();
            }
            if (pass == 0) {
                cuda_add_layernorm(C, dr, dx, dr, dw, db, n, d, 1e-5f);
            } else {
                cuda_add(C, dx, dr, N);
                cuda_layernorm(C, dr, dx, dw, db, n, d, 1e-5f);
            }
        }
        cuda_sync(C);
        double t = (now_s() - t0) / iters;
        printf("TIME %-22s n=%d d=%d %8.3f ms %7.0f GB/s\n", pass ? "add + layernorm" : "add_layernorm", n, d,
               t * 1e3, (pass ? 10.0 : 8.0) * N / t / 1e9);
    }
    fflush(stdout);
    cuda_free(dx), cuda_free(dr), cuda_free(dw), cuda_free(db);
}

/* ns sequences of q_len ql and k_len kl each; validates a few rows of the first sequence. fused
 * (needs ql == kl): q, k and v in one buffer of [q | k | v] rows, as the vision tower has them. */
static void bench_attention_q(const char *what, int ns, int ql, int kl, int heads, int kv, int hd, int causal,
                              int fused) {
    int *qs = xmalloc_t((size_t)(ns + 1) * sizeof(int)), *ks = xmalloc_t((size_t)(ns + 1) * sizeof(int));
    for (int s = 0; s <= ns; s++) qs[s] = s * ql, ks[s] = s * kl;
    const int qd = heads * hd, kvs = fused ? qd + 2 * kv * hd : kv * hd; /* k/v row stride */
    size_t qn = (size_t)ns * ql * qd, kn = (size_t)ns * kl * kvs;
    float *q, *k, *v, *all_qkv = NULL;
    void *dq, *dk, *dv;
    if (fused) {
        all_qkv = rand_vec(kn, 1.f);
        q = xmalloc_t((size_t)ql * qd * sizeof(float)); /* sequence 0's queries, packed, for the reference */
        for (int i = 0; i < ql; i++) memcpy(q + (size_t)i * qd, all_qkv + (size_t)i * kvs, qd * sizeof(float));
        k = all_qkv + qd, v = k + (size_t)kv * hd;
        dq = up_bf16(all_qkv, kn);
        dk = (uint16_t *)dq + qd, dv = (uint16_t *)dk + (size_t)kv * hd;
    } else {
        q = rand_vec(qn, 1.5f), k = rand_vec(kn, 1.f), v = rand_vec(kn, 1.f);
        dq = up_bf16(q, qn), dk = up_bf16(k, kn), dv = up_bf16(v, kn);
    }
    const int q_stride = fused ? kvs : 0;
    float scale = 1.f / sqrtf((float)hd);
    void *dy = out_buf(qn * 2);
    void *dqs = up_bytes(qs, (size_t)(ns + 1) * sizeof(int)), *dks = up_bytes(ks, (size_t)(ns + 1) * sizeof(int));
    /* reference for the first and last 8 query rows of sequence 0 */
    int sub = ql < 16 ? ql : 16;
    float *ref = xmalloc_t((size_t)ql * heads * hd * sizeof(float));
    int lo_n = sub / 2, hi0 = ql - (sub - lo_n);
    cpu_attention(ref, q, k, v, lo_n, kl, heads, kv, hd, kvs, causal, kl - ql, 0, scale);
    cpu_attention(ref + (size_t)lo_n * heads * hd, q + (size_t)hi0 * heads * hd, k, v, sub - lo_n, kl, heads, kv, hd,
                  kvs, causal, kl - ql + hi0, 0, scale);
    double vis = 0; /* visible (query, key) pairs per head */
    for (int i = 0; i < ql; i++) {
        long lim = causal ? (long)kl - ql + i + 1 : kl;
        vis += lim < 0 ? 0 : (lim > kl ? kl : lim);
    }
    double flops = 4.0 * hd * heads * vis * ns;
    char shape[160];
    snprintf(shape, sizeof shape, "%s %dx q=%d k=%d h=%d/%d hd=%d%s%s", what, ns, ql, kl, heads, kv, hd,
             causal ? " causal" : "", fused ? " qkv" : "");
    const void *dks_use = ql == kl ? dqs : dks; /* queries == keys: one start array (the Hopper path) */
    for (int vi = 0; vi < n_var(hd); vi++) {
        cuda_ctx *x = var_ctx(vi);
        if (!x) continue;
        cuda_sync(C);
        cuda_attention(x, dy, dq, dk, dv, dqs, dks_use, ns, ql, heads, kv, hd, kvs, q_stride, causal, scale);
        cuda_sync(x);
        float *all = down_bf16(dy, (size_t)ql * heads * hd);
        float *g = xmalloc_t((size_t)sub * heads * hd * sizeof(float));
        memcpy(g, all, (size_t)lo_n * heads * hd * sizeof(float));
        memcpy(g + (size_t)lo_n * heads * hd, all + (size_t)hi0 * heads * hd,
               (size_t)(sub - lo_n) * heads * hd * sizeof(float));
        char op[40];
        snprintf(op, sizeof op, "bench.attn[%s]", var_names[vi]);
        check(op, shape, g, ref, (size_t)sub * heads * hd, (size_t)heads * hd, 1e-2);
        free(all), free(g);
        int iters = 10;
        for (int i = 0; i < 2; i++)
            cuda_attention(x, dy, dq, dk, dv, dqs, dks_use, ns, ql, heads, kv, hd, kvs, q_stride, causal, scale);
        cuda_sync(x);
        double t0 = now_s();
        for (int i = 0; i < iters; i++)
            cuda_attention(x, dy, dq, dk, dv, dqs, dks_use, ns, ql, heads, kv, hd, kvs, q_stride, causal, scale);
        cuda_sync(x);
        double t = (now_s() - t0) / iters;
        printf("TIME attn[%-9s] %-52s %8.3f ms %7.1f TFLOP/s\n", var_names[vi], shape, t * 1e3, flops / t / 1e12);
        fflush(stdout);
    }
    free(qs), free(ks), free(q), free(ref);
    if (fused)
        free(all_qkv);
    else
        free(k), free(v), cuda_free(dk), cuda_free(dv);
    cuda_free(dq), cuda_free(dy), cuda_free(dqs), cuda_free(dks);
}

static void bench_attention(const char *what, int ns, int ql, int kl, int heads, int kv, int hd, int causal) {
    bench_attention_q(what, ns, ql, kl, heads, kv, hd, causal, 0);
}

/* The step decoder's prefill shape: ns packed prompts of plo..phi tokens, each followed by a label
 * trie of `tail` tokens (0: none, plain causal cuda_attention), K and V side by side in one buffer
 * (stride 2*kv*hd) as gpu_step has them. Times every variant (auto = the Hopper kernel for prompts and
 * tries where available, mma = the old tensor-core kernel) and validates the first and last 8 prompt
 * rows and the trie rows of sequence 0. */
static void bench_step(const char *what, int ns, int plo, int phi, int tail, int heads, int kv) {
    const int hd = 128, kv_stride = 2 * kv * hd;
    int *qs = xmalloc_t((size_t)(ns + 1) * sizeof(int)), *tl = xmalloc_t((size_t)ns * sizeof(int));
    int max_q = 0;
    qs[0] = 0;
    for (int s = 0; s < ns; s++) {
        int P = plo + (phi > plo ? (int)((s * 37u) % (unsigned)(phi - plo + 1)) : 0);
        tl[s] = tail;
        qs[s + 1] = qs[s] + P + tail;
        if (P + tail > max_q) max_q = P + tail;
    }
    const int M = qs[ns];
    int *parent = xmalloc_t((size_t)M * sizeof(int)), *depth = xmalloc_t((size_t)(tail > 0 ? tail : 1) * sizeof(int));
    double vis = 0; /* visible (query, key) pairs per head */
    for (int s = 0; s < ns; s++) {
        int P = qs[s + 1] - qs[s] - tail, *p = parent + qs[s];
        for (int i = 0; i < P; i++) p[i] = -1;
        vis += (double)P * (P + 1) / 2;
        for (int i = 0; i < tail; i++) {
            int a = i < 3 ? i - 1 : (rnd_int(4) == 0 ? 2 : i - 1 - rnd_int(i < 6 ? 1 : 3));
            if (a >= i) a = i - 1;
            p[P + i] = a;
            depth[i] = 1 + (a >= 0 ? depth[a] : 0);
            vis += P + depth[i];
        }
    }
    double flops = 4.0 * hd * heads * vis;
    size_t qn = (size_t)M * heads * hd, rs = (size_t)heads * hd;
    float *q = rand_vec(qn, 1.5f), *kvb = rand_vec((size_t)M * kv_stride, 1.f);
    float scale = 1.f / sqrtf((float)hd);
    /* reference: rows 0..7 and P0-8..P0-1 of sequence 0's prompt, then its trie */
    const int P0 = qs[1] - tail, lo = P0 < 8 ? P0 : 8, hi0 = P0 - 8 > lo ? P0 - 8 : lo;
    const int nref = lo + (P0 - hi0) + tail;
    float *ref = xmalloc_t((size_t)nref * rs * sizeof(float));
    const float *k0 = kvb, *v0 = kvb + (size_t)kv * hd;
    cpu_attention(ref, q, k0, v0, lo, P0, heads, kv, hd, kv_stride, 1, 0, 0, scale);
    cpu_attention(ref + lo * rs, q + (size_t)hi0 * rs, k0, v0, P0 - hi0, P0, heads, kv, hd, kv_stride, 1, hi0, 0, scale);
    if (tail > 0)
        cpu_attention_tree(ref + (size_t)(lo + P0 - hi0) * rs, q + (size_t)P0 * rs, k0, v0, tail, P0, parent + P0, heads,
                           kv, hd, kv_stride, scale);
    void *dq = up_bf16(q, qn), *dkv = up_bf16(kvb, (size_t)M * kv_stride), *dy = out_buf(qn * 2);
    void *dqs = up_bytes(qs, (size_t)(ns + 1) * sizeof(int)), *dtl = up_bytes(tl, (size_t)ns * sizeof(int));
    void *dpar = up_bytes(parent, (size_t)M * sizeof(int));
    const uint16_t *dk = dkv, *dv = (const uint16_t *)dkv + (size_t)kv * hd;
    char shape[160];
    snprintf(shape, sizeof shape, "%s %dx p=%d..%d+%d h=%d/%d hd=%d causal", what, ns, plo, phi, tail, heads, kv, hd);
#define STEP_CALL(x)                                                                                              \
    (tail > 0 ? cuda_attention_tail_tree(x, dy, dq, dk, dv, dqs, dqs, dtl, dpar, ns, max_q, heads, kv, hd, kv_stride, \
                                         0, scale)                                                                   \
              : cuda_attention(x, dy, dq, dk, dv, dqs, dqs, ns, max_q, heads, kv, hd, kv_stride, 0, 1, scale))
    for (int vi = 0; vi < 2; vi++) { /* auto (the Hopper kernel where available), mma */
        cuda_ctx *x = var_ctx(vi);
        if (!x) continue;
        poison(dy, qn * 2);
        cuda_sync(C);
        STEP_CALL(x);
        cuda_sync(x);
        float *all = down_bf16(dy, (size_t)qs[1] * rs), *g = xmalloc_t((size_t)nref * rs * sizeof(float));
        memcpy(g, all, (size_t)lo * rs * sizeof(float));
        memcpy(g + lo * rs, all + (size_t)hi0 * rs, (size_t)(P0 - hi0 + tail) * rs * sizeof(float));
        char op[40];
        snprintf(op, sizeof op, "bench.step[%s]", var_names[vi]);
        check(op, shape, g, ref, (size_t)nref * rs, rs, 1e-2);
        check_guard(op, shape, dy, qn * 2);
        free(all), free(g);
        int iters = 10;
        for (int i = 0; i < 2; i++) STEP_CALL(x);
        cuda_sync(x);
        double t0 = now_s();
        for (int i = 0; i < iters; i++) STEP_CALL(x);
        cuda_sync(x);
        double t = (now_s() - t0) / iters;
        printf("TIME attn[%-9s] %-52s %8.3f ms %7.1f TFLOP/s\n", var_names[vi], shape, t * 1e3, flops / t / 1e12);
        fflush(stdout);
    }
#undef STEP_CALL
    free(qs), free(tl), free(parent), free(depth), free(q), free(kvb), free(ref);
    cuda_free(dq), cuda_free(dkv), cuda_free(dy), cuda_free(dqs), cuda_free(dtl), cuda_free(dpar);
}

/* ---- host-only self-checks (also what runs without a GPU) ---------------------------------------- */

static void host_selfcheck(void) {
    expect(h_f2bf(1.0f) == 0x3F80 && h_f2bf(1.0f + 1.0f / 256) == 0x3F80 && h_f2bf(1.0f + 3.0f / 256) == 0x3F82 &&
               h_f2bf(-2.0f) == 0xC000,
           "host", "bf16 rounding", "round to nearest even");
    /* the comparator must flag NaN and large errors and accept bf16-level noise */
    float ref[64], g[64];
    for (int i = 0; i < 64; i++) ref[i] = rnd_normal(), g[i] = bfr(ref[i]);
    quiet = 1;
    int a = check("selfcheck", "bf16 noise", g, ref, 64, 8, 1e-2);
    g[17] = NAN;
    int b = check("selfcheck", "one NaN", g, ref, 64, 8, 1e-2);
    g[17] = ref[17] + 1.f;
    for (int i = 0; i < 64; i++) g[i] += 0.2f;
    int c = check("selfcheck", "offset 0.2", g, ref, 64, 8, 1e-2);
    quiet = 0;
    expect(a && !b && !c, "host", "comparator", "flags NaN and errors, accepts bf16 noise");
    /* the CPU references the GPU is compared with agree with each other: a chain tree after a
     * prefix is causal attention after a cached prefix */
    int n_q = 9, n_prefix = 5, heads = 4, kv = 2, hd = 8, nk = n_q + n_prefix;
    float *q = rand_vec((size_t)n_q * heads * hd, 1.f), *k = rand_vec((size_t)nk * kv * hd, 1.f);
    float *v = rand_vec((size_t)nk * kv * hd, 1.f);
    float *o1 = xmalloc_t((size_t)n_q * heads * hd * sizeof(float)), *o2 = xmalloc_t((size_t)n_q * heads * hd * sizeof(float));
    int parent[9];
    for (int i = 0; i < n_q; i++) parent[i] = i - 1;
    cpu_attention_tree(o1, q, k, v, n_q, n_prefix, parent, heads, kv, hd, kv * hd, 0.35f);
    cpu_attention(o2, q, k, v, n_q, nk, heads, kv, hd, kv * hd, 1, n_prefix, 0, 0.35f);
    double md = 0;
    for (int i = 0; i < n_q * heads * hd; i++) md = fmax(md, fabs((double)o1[i] - o2[i]));
    expect(md < 1e-5, "host", "cpu tree(chain) == cpu causal", "reference self-consistency");
    free(q), free(k), free(v), free(o1), free(o2);
}

int main(int argc, char **argv) {
    int bench = 1, attn_only = 0, bench_only = 0, bench_attn = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-bench"))
            bench = 0;
        else if (!strcmp(argv[i], "--bench-only"))
            bench_only = 1;
        else if (!strcmp(argv[i], "--bench-attn")) /* the attention benches alone */
            bench_only = bench_attn = 1;
        else if (!strcmp(argv[i], "--attn-only")) /* e.g. under compute-sanitizer --tool racecheck */
            attn_only = 1, bench = 0;
        else if (!strcmp(argv[i], "--small"))
            small = 1;
        else {
            fprintf(stderr, "usage: %s [--no-bench] [--bench-only] [--bench-attn] [--attn-only] [--small]\n", argv[0]);
            return 2;
        }
    }
    host_selfcheck();

    char name[256];
    int ndev = cuda_device_count(name, sizeof name);
    if (ndev <= 0) {
        llava_err err = {{0}};
        cuda_ctx *c = NULL;
        int rc = cuda_ctx_new(&c, 0, &err);
        expect(rc == -1 && c == NULL && err.msg[0], "ctx", "no device", "cuda_ctx_new fails with a message");
        printf("INFO cuda_ctx_new without a device: %s\n", err.msg);
        printf("SKIP no CUDA device: only the host-side checks ran\n");
        printf("RESULT %d %d\n", n_pass, n_fail);
        return n_fail ? 1 : 0;
    }
    printf("INFO device 0: %s (%d device%s)\n", name, ndev, ndev == 1 ? "" : "s");
    llava_err err = {{0}};
    for (int im = N_IMPL - 1; im >= 0; im--) { /* [0] (auto) last, so no env var leaks into it */
        if (im == 0)
            unsetenv("LLAVA_CUDA_ATTN");
        else
            setenv("LLAVA_CUDA_ATTN", impl_names[im], 1);
        if (cuda_ctx_new(&ctx_impl[im], 0, &err) != 0) {
            printf("FAIL ctx: %s\nRESULT %d %d\n", err.msg, n_pass, n_fail + 1);
            return 1;
        }
    }
    C = ctx_impl[0];
    size_t fb, tb;
    cuda_mem_info(&fb, &tb);
    printf("INFO memory: %.1f GiB free of %.1f GiB\n", fb / 1073741824.0, tb / 1073741824.0);
    sm90_env = cuda_attention_sm90_set(-1);
    sm90_avail = sm90_env && cuda_attention_sm90_available(C);
    printf("INFO attention: Hopper kernel %s\n",
           sm90_avail                          ? "on (auto = sm90, mma = the old kernel)"
           : cuda_attention_sm90_available(C) ? "off (LLAVA_CUDA_ATTN_SM90=0)"
                                               : "not available (needs sm_90a code and a cc 9.0 device)");

    if (bench_only) goto do_bench;
    if (attn_only) goto attention;
    /* context error paths */
    {
        cuda_ctx *bad = NULL;
        int rc = cuda_ctx_new(&bad, ndev + 3, &err);
        expect(rc == -1 && !bad, "ctx", "device out of range", err.msg);
        void *huge = cuda_malloc((size_t)1 << 50, "a 1 PiB test buffer", &err);
        expect(huge == NULL && strstr(err.msg, "out of memory"), "ctx", "cuda_malloc 1 PiB", err.msg);
    }
    /* transfers */
    {
        size_t n = 12345679;
        float *f = xmalloc_t(n * sizeof(float)), *back = xmalloc_t(n * sizeof(float));
        for (size_t i = 0; i < n; i++) f[i] = rnd_normal() * 100.f;
        uint16_t *d = dmalloc(n * 2);
        int rc = cuda_upload_f32_as_bf16(C, d, f, n, &err);
        cuda_download_bf16_as_f32(C, back, d, n);
        size_t bad = (size_t)-1;
        for (size_t i = 0; i < n && bad == (size_t)-1; i++)
            if (back[i] != bfr(f[i])) bad = i;
        char what[160] = "every value rounded to nearest even";
        if (bad != (size_t)-1)
            snprintf(what, sizeof what, "first mismatch [%zu]: %.9g -> %.9g, expected %.9g", bad, f[bad], back[bad],
                     bfr(f[bad]));
        expect(rc == 0 && bad == (size_t)-1, "upload_f32_as_bf16", "n=12345679 (> staging)", what);
        uint16_t *d2 = dmalloc(n * 2);
        cuda_copy(C, d2, d, n * 2);
        cuda_memset(C, d, 0, n * 2);
        cuda_download_bf16_as_f32(C, back, d2, n);
        bad = 0;
        for (size_t i = 0; i < n; i++) bad += back[i] != bfr(f[i]);
        expect(bad == 0, "copy", "n=12345679", "device to device copy exact");
        free(f), free(back);
        cuda_free(d), cuda_free(d2);
    }

    /* GEMM */
    test_linear(1, 64, 96, 1, 0);
    test_linear(7, 33, 17, 1, 0);
    test_linear(7, 48, 40, 0, 0);
    test_linear(577, 1024, 1024, 1, 0);
    test_linear(2478, 512, 768, 0, 0);
    test_linear(4097, 256, 320, 1, 0);
    test_linear(1, 4096, 32064, 0, 1);
    test_linear(7, 256, 32064, 0, 1);
    test_linear(4097, 64, 1000, 0, 1);
    test_linear(5, 30, 7, 0, 1);
    test_linear_acc(1, 64, 96);
    test_linear_acc(7, 33, 17);
    test_linear_acc(2478, 512, 4096);
    test_linear_acc(4097, 1024, 256);
    test_linear_fp8(1, 64, 96);
    test_linear_fp8(37, 4096, 1024);
    test_linear_fp8(2478, 1024, 4096);
    test_linear_fp8(5, 40, 16); /* the tiny models' down projection: SIMT */
    test_linear_fp8(3, 20, 8);  /* rows that are not multiples of 8: the plain quantization kernel */
    test_linear_fp8(300, 4096, 256);
    /* the register-resident kernels (widths that are multiples of 8, up to 16384) and the plain ones */
    test_swiglu_e4m3(1, 14336);
    test_swiglu_e4m3(7, 13);
    test_swiglu_e4m3(2478, 1024);
    test_swiglu_e4m3(3, 40);
    test_swiglu_e4m3(2, 20000);
    test_add_rmsnorm_f32_e4m3(1, 4096, 1);
    test_add_rmsnorm_f32_e4m3(37, 16, 1);
    test_add_rmsnorm_f32_e4m3(2478, 4096, 0);
    test_add_rmsnorm_f32_e4m3(5, 1000, 1);
    test_add_rmsnorm_f32_e4m3(3, 4100, 1);

    /* norms */
    test_layernorm(1, 1024, 1, 0);
    test_layernorm(7, 33, 1, 0);
    test_layernorm(7, 64, 0, 0);
    test_layernorm(577, 1024, 1, 0);
    test_layernorm(577, 1024, 1, 1);
    test_layernorm(2478, 4096, 1, 0);
    test_layernorm(4097, 768, 1, 0);
    test_rmsnorm(1, 4096, 0);
    test_rmsnorm(7, 7, 0);
    test_rmsnorm(7, 4096, 1);
    test_rmsnorm(577, 1024, 0);
    test_rmsnorm(2478, 4096, 0);
    test_rmsnorm(4097, 40, 0);
    test_add_rmsnorm(1, 4096);
    test_add_rmsnorm(7, 33);
    test_add_rmsnorm(2478, 4096);
    test_add_rmsnorm(4097, 64);
    test_add_layernorm(1, 1024, 1, 0);
    test_add_layernorm(7, 33, 1, 0);     /* scalar */
    test_add_layernorm(577, 1024, 1, 1); /* row in registers, out = r (the tower's call) */
    test_add_layernorm(2308, 1024, 1, 0);
    test_add_layernorm(5, 1000, 1, 1);   /* row in registers, a partial last chunk */
    test_add_layernorm(9, 1001, 1, 0);   /* scalar */
    test_add_layernorm(577, 768, 0, 0);
    test_add_layernorm(300, 4096, 1, 1); /* vector loop */
    test_add_rmsnorm_f32(1, 4096);
    test_add_rmsnorm_f32(7, 33);
    test_add_rmsnorm_f32(2478, 4096);
    test_add_rmsnorm_f32(3, 1024); /* the block-per-row kernel: 1, 5 and 8 chunks a thread */
    test_add_rmsnorm_f32(5, 5120);
    test_add_rmsnorm_f32(2, 8192);
    test_add_rmsnorm_f32(4, 9216); /* past it: the warp kernel */

    /* elementwise */
    test_add(1, 0);
    test_add(7, 0);
    test_add(577 * 1024 + 3, 0);
    test_add(4097 * 40, 1);
    for (int kind = 0; kind < 3; kind++) {
        test_act(kind, 1, 0);
        test_act(kind, 7, 0);
        test_act(kind, 577 * 4096 + 5, 0);
        test_act(kind, 1001, 1);
    }
    test_swiglu(1, 14336);
    test_swiglu(7, 13);
    test_swiglu(577, 1024);
    test_swiglu(2478, 1000);
    test_swiglu(4097, 256);

    /* rows */
    test_rows(R_EMBED, 1, 64, 1000, 1);
    test_rows(R_EMBED, 7, 33, 1000, 7);
    test_rows(R_EMBED, 577, 4096, 1000, 577);
    test_rows(R_EMBED, 2478, 64, 32064, 2478);
    test_rows(R_SCATTER, 7, 33, 7, 50);
    test_rows(R_SCATTER, 577, 4096, 577, 2478);
    test_rows(R_SCATTER, 1, 8, 1, 1);
    test_rows(R_GATHER, 1, 4096, 4097, 1);
    test_rows(R_GATHER, 7, 33, 4097, 7);
    test_rows(R_GATHER, 577, 4096, 4097, 577);

    /* rope */
    test_rope(1, 32, 128, 2 * 8 * 128, 1, 1e6f);
    test_rope(7, 4, 8, 0, 0, 10000.f);
    test_rope(7, 2, 6, 4, 1, 10000.f);
    test_rope(577, 8, 64, 0, 1, 10000.f);
    test_rope(2478, 8, 128, 8 * 128, 0, 1e6f);
    test_rope(4097, 2, 128, 0, 0, 1e6f);

attention:
    /* attention: packed variable-length batches */
    {
        int q1[] = {577}, k1[] = {577};
        test_attention("clip", 1, q1, k1, 16, 16, 64, 0, 0);
        int q2[] = {577, 577, 577}, k2[] = {577, 577, 577};
        test_attention("clip-tiles", 3, q2, k2, 4, 4, 64, 0, 1);
        int q3[] = {1, 7, 577}, k3[] = {1, 7, 577};
        test_attention("prefill", 3, q3, k3, 8, 8, 128, 1, 0);   /* GQA 1 */
        test_attention("prefill", 3, q3, k3, 6, 2, 64, 1, 1);    /* GQA 3 */
        test_attention("prefill", 3, q3, k3, 8, 2, 128, 1, 1);   /* GQA 4 */
        test_attention("prefill", 3, q3, k3, 4, 2, 8, 1, 0);     /* tiny hd 8 */
        test_attention("noncausal", 3, q3, k3, 4, 1, 8, 0, 0);
        int q4[] = {7, 31, 2}, k4[] = {7, 31, 2};
        test_attention("tiny", 3, q4, k4, 2, 1, 4, 1, 0);
        test_attention("tiny", 3, q4, k4, 3, 3, 6, 1, 1);
        int q11[] = {577, 577, 577, 577}, k11[] = {577, 577, 577, 577}; /* enough blocks for 8-warp tiles */
        test_attention("clip-8warp", 4, q11, k11, 16, 16, 64, 0, 0);
        int q12[] = {700, 3, 650}, k12[] = {700, 900, 650};
        test_attention("gqa-8warp", 3, q12, k12, 32, 8, 128, 1, 0);
        int q5[] = {2478}, k5[] = {2478};
        test_attention("long", 1, q5, k5, 4, 1, 128, 1, 0);
        test_attention("long", 1, q5, k5, 3, 1, 8, 1, 0);
        int q6[] = {4097}, k6[] = {4097};
        test_attention("long", 1, q6, k6, 2, 1, 64, 1, 1);
        int q7[] = {7, 100, 1, 64}, k7[] = {300, 700, 33, 64};
        test_attention("after-prefix", 4, q7, k7, 8, 2, 128, 1, 0);
        test_attention("after-prefix", 4, q7, k7, 6, 2, 64, 1, 0);
        test_attention("after-prefix", 4, q7, k7, 4, 2, 8, 1, 0);
        int q8[] = {1, 1, 1, 1, 1}, k8[] = {1, 577, 2478, 4097, 65};
        test_attention("decode", 5, q8, k8, 32, 8, 128, 1, 0);
        test_attention("decode", 5, q8, k8, 6, 2, 64, 1, 1);
        test_attention("decode", 5, q8, k8, 4, 2, 8, 1, 0);
        int q9[] = {5, 0, 9}, k9[] = {5, 0, 9}; /* an empty sequence in the batch */
        test_attention("empty-seq", 3, q9, k9, 4, 2, 64, 1, 0);
        int q10[] = {64, 65, 63, 128, 129}, k10[] = {64, 65, 63, 128, 129}; /* tile edges */
        test_attention("tile-edges", 5, q10, k10, 4, 4, 128, 1, 0);
        test_attention("tile-edges", 5, q10, k10, 12, 3, 64, 0, 0);
        /* the Hopper kernel's shapes ("auto" on an H100/H200): 128-row blocks, 128-key tiles, lengths
         * around both, every GQA group it takes */
        int q13[] = {1, 17, 64, 65, 130, 577, 2478}, q14[] = {1, 17, 64, 65, 130, 577, 255, 256, 257};
        test_attention("sm90", 7, q13, q13, 8, 2, 128, 1, 0);  /* GQA 4 */
        test_attention("sm90", 7, q13, q13, 8, 2, 128, 1, 1);  /* GQA 4, K/V side by side */
        test_attention("sm90", 7, q13, q13, 4, 4, 128, 1, 0);  /* GQA 1 */
        test_attention("sm90", 9, q14, q14, 4, 2, 128, 1, 1);  /* GQA 2 */
        test_attention("sm90", 9, q14, q14, 16, 2, 128, 1, 0); /* GQA 8 */
        int q15[] = {3000, 2602, 5, 2478}; /* the step's prefill: many rows per sequence */
        test_attention("sm90-long", 4, q15, q15, 4, 1, 128, 1, 1);
        /* hd 64 on the Hopper kernel (one 128-byte swizzle atom per row, m64n64 P·V), full and causal */
        int q16[] = {1, 17, 64, 65, 577, 577, 130};
        test_attention("sm90-hd64", 7, q16, q16, 16, 16, 64, 0, 0); /* full, GQA 1 (the vision tower) */
        test_attention("sm90-hd64", 7, q16, q16, 16, 16, 64, 1, 0); /* causal, GQA 1 */
        test_attention("sm90-hd64", 7, q16, q16, 8, 2, 64, 0, 1);   /* full, GQA 4, K/V side by side */
        test_attention("sm90-hd64", 7, q16, q16, 8, 2, 64, 1, 0);   /* causal, GQA 4 */
        int q17[] = {577, 577, 577, 577, 577, 577, 577, 577, 577, 577}; /* CLIP-L/336: 10 tiles */
        test_attention("clip-pass", 10, q17, q17, 16, 16, 64, 0, 0);
        /* hd 128 full attention with queries == keys: no Hopper instantiation, the fallback */
        test_attention("full-128", 7, q13, q13, 8, 2, 128, 0, 0);
        /* q rows with their own stride: inside the fused [q | k | v] row (the vision tower's call and
         * the Hopper kernel's causal shapes); padded rows (8: every kernel; 2: the mma kernels, not the
         * Hopper one; odd: the generic kernel only); q_len < k_len and split-KV decode */
        test_attention_q("qkv-clip", 10, q17, q17, 16, 16, 64, 0, 1, Q_QKV);
        test_attention_q("qkv-hd64", 7, q16, q16, 16, 16, 64, 0, 1, Q_QKV);
        test_attention_q("qkv-hd64", 7, q16, q16, 8, 2, 64, 1, 1, Q_QKV);
        test_attention_q("qkv-sm90", 7, q13, q13, 8, 2, 128, 1, 1, Q_QKV);
        test_attention_q("qkv-sm90", 9, q14, q14, 4, 4, 128, 1, 1, Q_QKV);
        test_attention_q("qkv-full-128", 7, q13, q13, 8, 2, 128, 0, 1, Q_QKV);
        test_attention_q("qkv-tiny", 3, q4, k4, 3, 3, 6, 1, 1, Q_QKV);
        test_attention_q("qpad", 7, q16, q16, 16, 16, 64, 0, 0, 8);
        test_attention_q("qpad", 7, q16, q16, 16, 16, 64, 0, 0, 2);
        test_attention_q("qpad", 7, q16, q16, 16, 16, 64, 0, 0, 3);
        test_attention_q("qpad", 7, q13, q13, 8, 2, 128, 1, 1, 8);
        test_attention_q("qpad-after-prefix", 4, q7, k7, 8, 2, 128, 1, 0, 8);
        test_attention_q("qpad-after-prefix", 4, q7, k7, 4, 2, 8, 1, 0, 3);
        test_attention_q("qpad-decode", 5, q8, k8, 32, 8, 128, 1, 0, 8);
        test_attention_q("qpad-decode", 5, q8, k8, 6, 2, 64, 1, 1, 5);
    }
    /* batched label scoring: prompts with trie tails in one packed launch */
    {
        int p1[] = {2478}, t1[] = {124};
        test_tail_tree(1, p1, t1, 32, 8, 128);
        int p2[] = {2478, 1200, 7, 577}, t2[] = {124, 60, 1, 33};
        test_tail_tree(4, p2, t2, 32, 8, 128);
        int p3[] = {65, 64, 63, 1}, t3[] = {63, 1, 64, 5};
        test_tail_tree(4, p3, t3, 6, 2, 64);
        test_tail_tree(4, p3, t3, 4, 2, 8);
        int p4[] = {300, 5}, t4[] = {0, 9}; /* a sequence without a tail */
        test_tail_tree(2, p4, t4, 8, 2, 128);
        /* prompts and tries in one launch of the Hopper kernel ("auto"); every GQA group it takes */
        int p5[] = {1, 17, 64, 65, 130, 577, 2478}, t5[] = {3, 0, 64, 1, 17, 33, 124};
        test_tail_tree(7, p5, t5, 8, 2, 128);  /* GQA 4 */
        test_tail_tree(7, p5, t5, 4, 4, 128);  /* GQA 1 */
        test_tail_tree(7, p5, t5, 16, 2, 128); /* GQA 8 */
        int p6[] = {128, 129, 127}, t6[] = {0, 0, 0}; /* no tails at all */
        test_tail_tree(3, p6, t6, 4, 2, 128);
        /* tries over several key tiles, one without a prompt, on both head dims */
        int p7[] = {0, 100, 2478, 256}, t7[] = {40, 300, 7, 129};
        test_tail_tree(4, p7, t7, 8, 2, 128);
        test_tail_tree(4, p7, t7, 8, 2, 64);
        test_tail_tree(4, p7, t7, 4, 4, 64);
        test_tail_tree(7, p5, t5, 8, 2, 64);
        /* q inside the fused [q | k | v] row (q_stride = kv_stride) */
        test_tail_tree_q(7, p5, t5, 8, 2, 128, 1);
        test_tail_tree_q(4, p7, t7, 8, 2, 64, 1);
        test_tail_tree_q(4, p3, t3, 4, 2, 8, 1);
    }
    /* batched generation: decode rows and prompt chunks against ranges of a shared cache */
    {
        int q1[] = {1, 1, 1, 1, 1, 1}, k1[] = {1, 577, 2478, 4097, 65, 2};
        test_attention_ranges("decode", 6, q1, k1, 32, 8, 128);
        int q2[] = {1, 2478, 1, 300, 1}, k2[] = {2500, 2478, 17, 1300, 64};
        test_attention_ranges("decode+prefill", 5, q2, k2, 32, 8, 128);
        test_attention_ranges("decode+prefill", 5, q2, k2, 6, 2, 64);
        int q3[] = {3, 1, 70}, k3[] = {9, 1, 200};
        test_attention_ranges("small-hd", 3, q3, k3, 4, 2, 8);
    }

    if (attn_only) goto done;
    /* CLIP embedding input, label-score picks */
    test_patch(5, 336, 14, 1024);
    test_patch(1, 28, 14, 16);
    test_patch(3, 30, 6, 24);
    test_pick(125, 32064, 3000, 0, 125);
    test_pick(2000, 32064, 5000, 1024, 976);
    test_pick(50, 997, 10, 3, 7);
    /* softmax */
    test_log_softmax(1, 32064, 0);
    test_log_softmax(7, 32064, 0);
    test_log_softmax(33, 32064, 1);
    test_log_softmax(5, 997, 0);
    test_argmax(1, 32064);
    test_argmax(64, 32064);
    test_argmax(3, 997);

do_bench:
    if (bench) {
        printf("INFO bench (%s)\n", name);
        if (bench_attn) goto bench_attention_shapes;
        bench_add_rmsnorm(61952, 4096);
        bench_fp8("mistral.gate_up", 61952, 4096, 28672);
        bench_fp8("mistral.down", 61952, 14336, 4096);
        bench_linear_algos("mistral.gate_up", 61952, 4096, 28672, 0);
        bench_linear_algos("mistral.down", 61952, 14336, 4096, 0);
        bench_linear_algos("mistral.down+=", 61952, 14336, 4096, 2);
        bench_linear_algos("mistral.o", 61952, 4096, 4096, 0);
        bench_linear_algos("mistral.o+=", 61952, 4096, 4096, 2);
        bench_linear_algos("mistral.q", 61952, 4096, 4096, 0);
        bench_linear_algos("mistral.kv", 61952, 4096, 2048, 0);
        bench_linear_algos("mistral.qkv", 61952, 4096, 6144, 0);
        bench_linear_algos("clip.qkv", 40 * 577, 1024, 3072, 0);
        bench_linear_algos("clip.q", 40 * 577, 1024, 1024, 0);
        bench_linear_algos("clip.fc1", 40 * 577, 1024, 4096, 0);
        bench_linear_algos("clip.fc2", 40 * 577, 4096, 1024, 0);
        bench_linear_algos("gemm8192", 8192, 8192, 8192, 0);
        bench_linear("mistral.mlp_up", 2478, 4096, 14336, 0);
        bench_linear("mistral.mlp_down", 2478, 14336, 4096, 0);
        bench_linear("mistral.qkv", 2478, 4096, 6144, 0);
        bench_linear("mistral.decode_up", 32, 4096, 14336, 0);
        bench_linear("clip.fc1", 5 * 577, 1024, 4096, 1);
    bench_attention_shapes:
        bench_attention("mistral.prefill", 1, 2478, 2478, 32, 8, 128, 1);
        bench_attention("mistral.prefill", 4, 2478, 2478, 32, 8, 128, 1);
        bench_attention("mistral.decode", 32, 1, 2478, 32, 8, 128, 1);
        bench_attention("mistral.labels", 1, 150, 2478 + 150, 32, 8, 128, 1);
        bench_attention("clip.tiles", 10, 577, 577, 16, 16, 64, 0);
        bench_attention_q("clip.tiles", 10, 577, 577, 16, 16, 64, 0, 1);
        bench_attention("step.prefill", 25, 2602, 2602, 32, 8, 128, 1);
        /* the step decoder's calls: varied prompt lengths, K/V side by side, with and without tries */
        bench_step("step.prefill", 25, 2478, 2602, 0, 32, 8);
        bench_step("step.tailtree", 25, 2478, 2602, 124, 32, 8);
        bench_attention("clip.pass", 40, 577, 577, 16, 16, 64, 0);
        bench_attention_q("clip.pass", 40, 577, 577, 16, 16, 64, 0, 1);
        bench_add_layernorm(40 * 577, 1024);
    }

done:
    for (int im = 1; im < N_IMPL; im++) cuda_ctx_free(ctx_impl[im]);
    cuda_ctx_free(C);
    printf("RESULT %d %d\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

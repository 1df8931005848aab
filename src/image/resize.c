/* resize.c — Pillow-exact BICUBIC resize of 8-bit RGB (see resize.h for the contract).
 *
 * The algorithm follows Pillow's src/libImaging/Resample.c (read to learn it; this is our own code):
 *   per axis: scale = in/out, fs = max(scale, 1), support = 2*fs, ksize = 2*ceil(support) + 1;
 *   output i: center = (i + 0.5)*scale, lo = max(0, (int)(center - support + 0.5)),
 *   hi = min(in, (int)(center + support + 0.5)); w_j = K((j + lo - center + 0.5) * (1/fs));
 *   w /= sum(w); q = (int)(w * 2^22 +- 0.5) (round half away from zero);
 *   pixel = clamp((2^21 + sum q_j * p_j) >> 22, 0, 255).
 * Every double expression keeps Pillow's operand order, so the weights are the same doubles.
 * Speed: the weights are computed once per axis (not per row); the vertical pass accumulates a
 * chunk of a row per tap so the compiler vectorises it; the horizontal pass has an SSSE3 kernel
 * (picked at run time) that stays exact: each 22-bit weight is split as k = 2048*kh + kl with
 * kh, kl in int16, so pmaddwd gives sum(p*kh) and sum(p*kl) over two taps at a time exactly and
 * (sum(p*kh) << 11) + sum(p*kl) is Pillow's int32 accumulator bit for bit; the vertical pass
 * does the same on two source rows at a time (SSE2). Both passes split rows over OpenMP threads.
 */
#include "image/resize.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LLAVA_X86 1
#endif

#include "util/mem.h"

#define PREC_BITS 22 /* Pillow: 32 - 8 - 2 */
#define HALF (1 << (PREC_BITS - 1))
#define OMP_MIN_WORK (1 << 20) /* multiply-adds below which threads cost more than they save */

typedef struct axis_coeffs {
    int n_out;    /* output samples */
    int ksize;    /* weights stored per output sample */
    int *lo;      /* (n_out) first input sample */
    int *cnt;     /* (n_out) number of input samples used */
    int32_t *k;   /* (n_out, ksize) fixed-point weights */
    int npairs;   /* (ksize + 1) / 2 */
    int16_t *kp;  /* (n_out, npairs, 2, 8): per tap pair (j, j+1): 4x{kh_j, kh_j+1}, then 4x{kl..} */
    int simd_end; /* outputs [0, simd_end) may load 8 bytes per tap pair without leaving the row */
} axis_coeffs;

/* Keys cubic convolution kernel with a = -0.5, written exactly as Pillow evaluates it. */
static inline double bicubic_kernel(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static void axis_free(axis_coeffs *a) {
    free(a->lo);
    free(a->cnt);
    free(a->k);
    free(a->kp);
    memset(a, 0, sizeof *a);
}

/* Splits every weight as k = 2048*kh + kl (0 <= kl < 2048, |kh| < 2^12) for the SIMD kernel.
 * in: input pixels per row (3 bytes each). */
static int axis_make_pairs(axis_coeffs *a, int in, llava_err *err) {
    a->npairs = (a->ksize + 1) / 2;
    const size_t per = (size_t)a->npairs * 16;
    a->kp = llava_try_malloc(sizeof(int16_t) * per * (size_t)a->n_out, "resize weights", err);
    if (!a->kp) return -1;
    for (int i = 0; i < a->n_out; i++) {
        const int32_t *k = a->k + (size_t)i * a->ksize;
        int16_t *d = a->kp + per * (size_t)i;
        for (int q = 0; q < a->npairs; q++, d += 16)
            for (int t = 0; t < 2; t++) {
                const int j = 2 * q + t;
                const int32_t kj = j < a->cnt[i] ? k[j] : 0;
                const int32_t lo = kj & 2047, hi = (kj - lo) / 2048;
                for (int r = 0; r < 4; r++) {
                    d[2 * r + t] = (int16_t)hi;
                    d[8 + 2 * r + t] = (int16_t)lo;
                }
            }
    }
    /* The last pair of output i loads bytes [3*(lo + 2*(np-1)), +8); lo never decreases with i. */
    a->simd_end = 0;
    for (int i = 0; i < a->n_out; i++) {
        const int np = (a->cnt[i] + 1) / 2;
        if (np > 0 && 3 * ((int64_t)a->lo[i] + 2 * (np - 1)) + 8 > 3 * (int64_t)in) break;
        a->simd_end = i + 1;
    }
    return 0;
}

static int axis_init(axis_coeffs *a, int in, int out, llava_err *err) {
    memset(a, 0, sizeof *a);
    /* Pillow passes the box edges as float: (in1 - in0) is a float, exact for in < 2^24. */
    const double scale = (double)((float)in - 0.0f) / out;
    const double fscale = scale < 1.0 ? 1.0 : scale;
    const double support = 2.0 * fscale;
    const int ksize = (int)ceil(support) * 2 + 1;
    a->n_out = out;
    a->ksize = ksize;
    a->lo = llava_try_malloc(sizeof(int) * (size_t)out, "resize bounds", err);
    a->cnt = llava_try_malloc(sizeof(int) * (size_t)out, "resize bounds", err);
    a->k = llava_try_malloc(sizeof(int32_t) * (size_t)out * (size_t)ksize, "resize weights", err);
    double *w = llava_try_malloc(sizeof(double) * (size_t)ksize, "resize weights", err);
    if (!a->lo || !a->cnt || !a->k || !w) {
        free(w);
        axis_free(a);
        return -1;
    }
    const double ss = 1.0 / fscale;
    for (int i = 0; i < out; i++) {
        const double center = 0.0 + (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in) hi = in;
        const int n = hi - lo;
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            w[j] = bicubic_kernel((j + lo - center + 0.5) * ss);
            sum += w[j];
        }
        int32_t *k = a->k + (size_t)i * ksize;
        for (int j = 0; j < n; j++) {
            double v = sum != 0.0 ? w[j] / sum : w[j];
            k[j] = v < 0 ? (int32_t)(-0.5 + v * (1 << PREC_BITS))
                         : (int32_t)(0.5 + v * (1 << PREC_BITS));
        }
        for (int j = n; j < ksize; j++) k[j] = 0;
        a->lo[i] = lo;
        a->cnt[i] = n;
    }
    free(w);
    return 0;
}

static inline uint8_t clip8(int32_t acc) {
    int32_t v = acc >> PREC_BITS; /* arithmetic shift, as in Pillow */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Outputs [x0, n_out) of one row of the horizontal pass, plain C (the reference). */
static void hrow_scalar(uint8_t *d, const uint8_t *s, const axis_coeffs *ax, int x0) {
    const int n_out = ax->n_out, ksize = ax->ksize;
    for (int x = x0; x < n_out; x++) {
        const int32_t *k = ax->k + (size_t)x * ksize;
        const uint8_t *p = s + (size_t)ax->lo[x] * 3;
        const int n = ax->cnt[x];
        int32_t a0 = HALF, a1 = HALF, a2 = HALF;
        for (int j = 0; j < n; j++, p += 3) {
            const int32_t kj = k[j];
            a0 += p[0] * kj;
            a1 += p[1] * kj;
            a2 += p[2] * kj;
        }
        d[3 * x + 0] = clip8(a0);
        d[3 * x + 1] = clip8(a1);
        d[3 * x + 2] = clip8(a2);
    }
}

#ifdef LLAVA_X86
/* One row of the horizontal pass; outputs from ax->simd_end on (whose last tap pair would read
 * past the row) are left to the scalar kernel. The second tap of an odd window has weight 0. */
__attribute__((target("ssse3"))) static void hrow_ssse3(uint8_t *d, const uint8_t *s,
                                                        const axis_coeffs *ax) {
    /* 8 bytes from pixel j (RGB RGB RG) -> int16 lanes (R_j R_j1 G_j G_j1 B_j B_j1 0 0) */
    const __m128i shuf = _mm_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
    const __m128i half = _mm_set1_epi32(HALF);
    const int n = ax->simd_end;
    for (int x = 0; x < n; x++) {
        const __m128i *kp = (const __m128i *)(ax->kp + (size_t)x * ax->npairs * 16);
        const uint8_t *p = s + (size_t)ax->lo[x] * 3;
        const int np = (ax->cnt[x] + 1) / 2;
        __m128i ah = _mm_setzero_si128(), al = _mm_setzero_si128();
        for (int q = 0; q < np; q++) {
            __m128i v = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)(p + 6 * q)), shuf);
            ah = _mm_add_epi32(ah, _mm_madd_epi16(v, _mm_loadu_si128(kp + 2 * q)));
            al = _mm_add_epi32(al, _mm_madd_epi16(v, _mm_loadu_si128(kp + 2 * q + 1)));
        }
        __m128i acc = _mm_add_epi32(_mm_add_epi32(_mm_slli_epi32(ah, 11), al), half);
        acc = _mm_srai_epi32(acc, PREC_BITS);
        acc = _mm_packus_epi16(_mm_packs_epi32(acc, acc), acc); /* clamp to 0..255 */
        const uint32_t v = (uint32_t)_mm_cvtsi128_si32(acc);
        d[3 * x + 0] = (uint8_t)v;
        d[3 * x + 1] = (uint8_t)(v >> 8);
        d[3 * x + 2] = (uint8_t)(v >> 16);
    }
}

static int have_ssse3(void) { return __builtin_cpu_supports("ssse3"); }
#endif

/* Horizontal pass over `rows` rows: dst row y = resample of src row y along x. */
static void pass_horizontal(uint8_t *dst, size_t dstride, const uint8_t *src, size_t sstride,
                            int rows, const axis_coeffs *ax) {
    const int64_t work = (int64_t)rows * ax->n_out * ax->ksize * 3;
    int x0 = 0;
#ifdef LLAVA_X86
    const int simd = have_ssse3();
    if (simd) x0 = ax->simd_end;
#endif
    (void)work;
#pragma omp parallel for schedule(static) if (work > OMP_MIN_WORK)
    for (int y = 0; y < rows; y++) {
        const uint8_t *s = src + (size_t)y * sstride;
        uint8_t *d = dst + (size_t)y * dstride;
#ifdef LLAVA_X86
        if (simd) hrow_ssse3(d, s, ax);
#endif
        hrow_scalar(d, s, ax, x0);
    }
}

#ifdef LLAVA_X86
/* The first (row_bytes / 16) * 16 bytes of one output row of the vertical pass, SSE2 (x86-64
 * baseline). Two source rows at a time: their bytes are interleaved into int16 pairs and pmaddwd
 * with (kh_t, kh_t+1) and (kl_t, kl_t+1) accumulates exactly, as in the horizontal kernel; the
 * 16 output bytes stay in 8 registers over all taps. A lone last tap pairs its row with itself
 * (weight 0), so no row outside the window is read. Returns the bytes done. */
static size_t vrow_sse2(uint8_t *d, const uint8_t *s0, size_t sstride, size_t row_bytes,
                        const int16_t *kp, int n) {
    const __m128i zero = _mm_setzero_si128(), half = _mm_set1_epi32(HALF);
    const int np = (n + 1) / 2;
    size_t i = 0;
    for (; i + 16 <= row_bytes; i += 16) {
        __m128i h0 = zero, h1 = zero, h2 = zero, h3 = zero;
        __m128i l0 = zero, l1 = zero, l2 = zero, l3 = zero;
        for (int q = 0; q < np; q++) {
            const uint8_t *r0 = s0 + (size_t)(2 * q) * sstride + i;
            const uint8_t *r1 = 2 * q + 1 < n ? r0 + sstride : r0;
            const __m128i a = _mm_loadu_si128((const __m128i *)r0);
            const __m128i b = _mm_loadu_si128((const __m128i *)r1);
            const __m128i kh = _mm_loadu_si128((const __m128i *)(kp + 16 * q));
            const __m128i kl = _mm_loadu_si128((const __m128i *)(kp + 16 * q + 8));
            const __m128i ablo = _mm_unpacklo_epi8(a, b), abhi = _mm_unpackhi_epi8(a, b);
            const __m128i v0 = _mm_unpacklo_epi8(ablo, zero), v1 = _mm_unpackhi_epi8(ablo, zero);
            const __m128i v2 = _mm_unpacklo_epi8(abhi, zero), v3 = _mm_unpackhi_epi8(abhi, zero);
            h0 = _mm_add_epi32(h0, _mm_madd_epi16(v0, kh));
            h1 = _mm_add_epi32(h1, _mm_madd_epi16(v1, kh));
            h2 = _mm_add_epi32(h2, _mm_madd_epi16(v2, kh));
            h3 = _mm_add_epi32(h3, _mm_madd_epi16(v3, kh));
            l0 = _mm_add_epi32(l0, _mm_madd_epi16(v0, kl));
            l1 = _mm_add_epi32(l1, _mm_madd_epi16(v1, kl));
            l2 = _mm_add_epi32(l2, _mm_madd_epi16(v2, kl));
            l3 = _mm_add_epi32(l3, _mm_madd_epi16(v3, kl));
        }
#define FINISH(h, l) \
    _mm_srai_epi32(_mm_add_epi32(_mm_add_epi32(_mm_slli_epi32(h, 11), l), half), PREC_BITS)
        const __m128i p01 = _mm_packs_epi32(FINISH(h0, l0), FINISH(h1, l1));
        const __m128i p23 = _mm_packs_epi32(FINISH(h2, l2), FINISH(h3, l3));
#undef FINISH
        _mm_storeu_si128((__m128i *)(d + i), _mm_packus_epi16(p01, p23));
    }
    return i;
}
#endif

/* Vertical pass: dst row y = resample along y of src rows (row_bytes bytes used per row).
 * row_off shifts the axis' input indices (src may start below row 0 of the axis). */
static void pass_vertical(uint8_t *dst, size_t dstride, const uint8_t *src, size_t sstride,
                          size_t row_bytes, int row_off, const axis_coeffs *ax) {
    enum { CHUNK = 1024 };
    const int n_out = ax->n_out, ksize = ax->ksize;
    const int64_t work = (int64_t)n_out * (int64_t)row_bytes * ksize;
    (void)work;
#pragma omp parallel for schedule(static) if (work > OMP_MIN_WORK)
    for (int y = 0; y < n_out; y++) {
        const int32_t *k = ax->k + (size_t)y * ksize;
        const uint8_t *s0 = src + (size_t)(ax->lo[y] - row_off) * sstride;
        const int n = ax->cnt[y];
        uint8_t *d = dst + (size_t)y * dstride;
        size_t start = 0;
#ifdef LLAVA_X86
        start = vrow_sse2(d, s0, sstride, row_bytes, ax->kp + (size_t)y * ax->npairs * 16, n);
#endif
        int32_t acc[CHUNK];
        for (size_t i0 = start; i0 < row_bytes; i0 += CHUNK) {
            const size_t m = row_bytes - i0 < CHUNK ? row_bytes - i0 : CHUNK;
            for (size_t j = 0; j < m; j++) acc[j] = HALF;
            for (int t = 0; t < n; t++) {
                const uint8_t *r = s0 + (size_t)t * sstride + i0;
                const int32_t kt = k[t];
                for (size_t j = 0; j < m; j++) acc[j] += r[j] * kt;
            }
            for (size_t j = 0; j < m; j++) d[i0 + j] = clip8(acc[j]);
        }
    }
}

int llava_resize_bicubic(uint8_t *dst, size_t dst_stride, int dw, int dh, const uint8_t *src,
                         size_t src_stride, int sw, int sh, llava_err *err) {
    if (dw <= 0 || dh <= 0 || sw <= 0 || sh <= 0)
        return llava_errf(err, "resize: sizes must be positive (from %dx%d to %dx%d)", sw, sh, dw,
                          dh);
    CHECK(dst && src && dst_stride >= (size_t)dw * 3 && src_stride >= (size_t)sw * 3);
    const int need_h = dw != sw, need_v = dh != sh;
    if (!need_h && !need_v) { /* Pillow returns a copy */
        for (int y = 0; y < sh; y++)
            memcpy(dst + (size_t)y * dst_stride, src + (size_t)y * src_stride, (size_t)sw * 3);
        return 0;
    }
    axis_coeffs ax = {0}, ay = {0};
    uint8_t *tmp = NULL;
    int rc = -1;
    if (need_h && (axis_init(&ax, sw, dw, err) || axis_make_pairs(&ax, sw, err))) goto done;
    if (need_v && (axis_init(&ay, sh, dh, err) || axis_make_pairs(&ay, sh, err))) goto done;

    if (!need_v) {
        pass_horizontal(dst, dst_stride, src, src_stride, sh, &ax);
    } else if (!need_h) {
        pass_vertical(dst, dst_stride, src, src_stride, (size_t)sw * 3, 0, &ay);
    } else if ((int64_t)sh > (int64_t)sw * 100 && dh < sh) {
        /* Pillow's Image.resize: very tall images that shrink vertically go vertical-first. */
        const size_t ts = (size_t)sw * 3;
        tmp = llava_try_malloc(ts * (size_t)dh, "resize intermediate", err);
        if (!tmp) goto done;
        pass_vertical(tmp, ts, src, src_stride, ts, 0, &ay);
        pass_horizontal(dst, dst_stride, tmp, ts, dh, &ax);
    } else {
        /* Only the source rows the vertical pass reads go through the horizontal pass. */
        const int first = ay.lo[0];
        const int last = ay.lo[dh - 1] + ay.cnt[dh - 1];
        const size_t ts = (size_t)dw * 3;
        tmp = llava_try_malloc(ts * (size_t)(last - first), "resize intermediate", err);
        if (!tmp) goto done;
        pass_horizontal(tmp, ts, src + (size_t)first * src_stride, src_stride, last - first, &ax);
        pass_vertical(dst, dst_stride, tmp, ts, ts, first, &ay);
    }
    rc = 0;
done:
    if (rc) llava_err_prefix(err, "resize %dx%d -> %dx%d", sw, sh, dw, dh);
    free(tmp);
    axis_free(&ax);
    axis_free(&ay);
    return rc;
}

/* ops.c — fp32 CPU implementations of the model ops (see ops.h). GEMMs go to OpenBLAS when the
 * build found it; the fallback is a plain blocked loop, correct but slow. */
#include "backend/cpu/ops.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#ifdef LLAVA_OPENBLAS
#include <cblas.h>
#endif

void cpu_set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);
#ifdef LLAVA_OPENBLAS
    openblas_set_num_threads(n);
#endif
}

void cpu_linear(float *out, const float *x, const float *w, const float *b, int n, int d_in, int d_out) {
#ifdef LLAVA_OPENBLAS
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d_out, d_in, 1.0f, x, d_in, w, d_in, 0.0f, out, d_out);
#else
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++)
        for (int o = 0; o < d_out; o++) {
            const float *xi = x + (size_t)i * d_in, *wo = w + (size_t)o * d_in;
            float s = 0;
            for (int k = 0; k < d_in; k++) s += xi[k] * wo[k];
            out[(size_t)i * d_out + o] = s;
        }
#endif
    if (b) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < d_out; o++) out[(size_t)i * d_out + o] += b[o];
    }
}

void cpu_layernorm(float *out, const float *x, const float *w, const float *b, int n, int d, float eps) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *oi = out + (size_t)i * d;
        double mean = 0, var = 0;
        for (int k = 0; k < d; k++) mean += xi[k];
        mean /= d;
        for (int k = 0; k < d; k++) {
            double t = xi[k] - mean;
            var += t * t;
        }
        var /= d;
        float rstd = (float)(1.0 / sqrt(var + eps));
        float m = (float)mean;
        for (int k = 0; k < d; k++) oi[k] = (xi[k] - m) * rstd * w[k] + (b ? b[k] : 0.0f);
    }
}

void cpu_rmsnorm(float *out, const float *x, const float *w, int n, int d, float eps) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *oi = out + (size_t)i * d;
        double ss = 0;
        for (int k = 0; k < d; k++) ss += (double)xi[k] * xi[k];
        float r = (float)(1.0 / sqrt(ss / d + eps));
        for (int k = 0; k < d; k++) oi[k] = w[k] * (xi[k] * r);
    }
}

void cpu_gelu(float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] * 0.70710678118654752440)));
}

void cpu_gelu_tanh(float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        x[i] = (float)(0.5 * v * (1.0 + tanh(0.79788456080286535588 * (v + 0.044715 * v * v * v))));
    }
}

void cpu_quick_gelu(float *x, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] = (float)(x[i] / (1.0 + exp(-1.702 * x[i])));
}

void cpu_silu_mul(float *gate, const float *up, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) gate[i] = (float)(gate[i] / (1.0 + exp(-(double)gate[i]))) * up[i];
}

void cpu_rope(float *x, int n, int n_heads, int head_dim, int pos0, const int *pos, double theta) {
    int half = head_dim / 2;
    float *inv = malloc(sizeof(float) * (size_t)half);
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)head_dim;
        inv[i] = (float)(1.0 / (double)(float)pow(theta, (double)e));
    }
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n; t++) {
        float p = (float)(pos ? pos[t] : pos0 + t);
        for (int i = 0; i < half; i++) {
            float ang = p * inv[i];
            float c = (float)cos((double)ang), s = (float)sin((double)ang);
            for (int h = 0; h < n_heads; h++) {
                float *p = x + ((size_t)t * n_heads + h) * head_dim;
                float a = p[i], b = p[i + half];
                p[i] = a * c - b * s;
                p[i + half] = b * c + a * s;
            }
        }
    }
    free(inv);
}

void cpu_attention(float *out, const float *q, const float *k, const float *v, int n_q, int n_kv, int n_heads,
                   int n_kv_heads, int hd, int kv_stride, int causal, int q_pos0, int window, float scale) {
    int group = n_heads / n_kv_heads;
#pragma omp parallel
    {
        float *s = malloc(sizeof(float) * (size_t)(n_kv > 0 ? n_kv : 1));
        double *acc = malloc(sizeof(double) * (size_t)hd);
#pragma omp for collapse(2) schedule(dynamic, 16)
        for (int h = 0; h < n_heads; h++)
            for (int i = 0; i < n_q; i++) {
                const float *qi = q + ((size_t)i * n_heads + h) * hd;
                int kvh = h / group;
                int pos = q_pos0 + i;
                int hi = causal ? (pos + 1 < n_kv ? pos + 1 : n_kv) : n_kv;
                int lo = (causal && window > 0 && pos - window + 1 > 0) ? pos - window + 1 : 0;
                float mx = -FLT_MAX;
                for (int j = lo; j < hi; j++) {
                    const float *kj = k + (size_t)j * kv_stride + (size_t)kvh * hd;
                    float d = 0;
                    for (int t = 0; t < hd; t++) d += qi[t] * kj[t];
                    d *= scale;
                    s[j] = d;
                    if (d > mx) mx = d;
                }
                double sum = 0;
                for (int j = lo; j < hi; j++) {
                    float e = expf(s[j] - mx);
                    s[j] = e;
                    sum += e;
                }
                for (int t = 0; t < hd; t++) acc[t] = 0;
                for (int j = lo; j < hi; j++) {
                    const float *vj = v + (size_t)j * kv_stride + (size_t)kvh * hd;
                    double p = s[j];
                    for (int t = 0; t < hd; t++) acc[t] += p * vj[t];
                }
                float *oi = out + ((size_t)i * n_heads + h) * hd;
                for (int t = 0; t < hd; t++) oi[t] = (float)(sum > 0 ? acc[t] / sum : 0.0);
            }
        free(s);
        free(acc);
    }
}

void cpu_attention_tree(float *out, const float *q, const float *k, const float *v, int n_q, int n_prefix,
                        const int *parent, int n_heads, int n_kv_heads, int hd, int kv_stride, float scale) {
    int group = n_heads / n_kv_heads;
    int n_keys = n_prefix + n_q;
#pragma omp parallel
    {
        float *s = malloc(sizeof(float) * (size_t)n_keys);
        int *keys = malloc(sizeof(int) * (size_t)n_keys);
        double *acc = malloc(sizeof(double) * (size_t)hd);
#pragma omp for collapse(2) schedule(dynamic, 4)
        for (int h = 0; h < n_heads; h++)
            for (int i = 0; i < n_q; i++) {
                int nk = 0;
                for (int j = 0; j < n_prefix; j++) keys[nk++] = j;
                int first_tree = nk;
                for (int a = i; a >= 0; a = parent[a]) keys[nk++] = n_prefix + a;
                /* ancestors were collected leaf-first; order does not change the result but keep
                 * the natural (position) order for reproducible sums */
                for (int x = first_tree, y = nk - 1; x < y; x++, y--) {
                    int t = keys[x];
                    keys[x] = keys[y];
                    keys[y] = t;
                }
                const float *qi = q + ((size_t)i * n_heads + h) * hd;
                int kvh = h / group;
                float mx = -FLT_MAX;
                for (int e = 0; e < nk; e++) {
                    const float *kj = k + (size_t)keys[e] * kv_stride + (size_t)kvh * hd;
                    float d = 0;
                    for (int t = 0; t < hd; t++) d += qi[t] * kj[t];
                    d *= scale;
                    s[e] = d;
                    if (d > mx) mx = d;
                }
                double sum = 0;
                for (int e = 0; e < nk; e++) {
                    float ex = expf(s[e] - mx);
                    s[e] = ex;
                    sum += ex;
                }
                for (int t = 0; t < hd; t++) acc[t] = 0;
                for (int e = 0; e < nk; e++) {
                    const float *vj = v + (size_t)keys[e] * kv_stride + (size_t)kvh * hd;
                    for (int t = 0; t < hd; t++) acc[t] += (double)s[e] * vj[t];
                }
                float *oi = out + ((size_t)i * n_heads + h) * hd;
                for (int t = 0; t < hd; t++) oi[t] = (float)(acc[t] / sum);
            }
        free(s);
        free(keys);
        free(acc);
    }
}

void cpu_log_softmax(double *out, const float *x, int n) {
    double mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    double lse = mx + log(sum);
    for (int i = 0; i < n; i++) out[i] = (double)x[i] - lse;
}

void cpu_pick(float *out, const float *x, const int *rows, const int *cols, int n, int row0, int n_rows, int V) {
    for (int i = 0; i < n; i++) {
        int r = rows[i] - row0;
        if (r >= 0 && r < n_rows) out[i] = x[(size_t)r * V + cols[i]];
    }
}

void cpu_patchify(float *cols, const float *pixels, int n_tiles, int S, int P) {
    const int G = S / P, K = 3 * P * P;
    for (int t = 0; t < n_tiles; t++) {
        const float *px = pixels + (size_t)t * 3 * S * S;
#pragma omp parallel for schedule(static)
        for (int p = 0; p < G * G; p++) {
            int py = p / G, pxx = p % G;
            float *c = cols + ((size_t)t * G * G + p) * K;
            for (int ch = 0; ch < 3; ch++)
                for (int ky = 0; ky < P; ky++)
                    memcpy(c + (ch * P + ky) * P, px + ((size_t)ch * S + py * P + ky) * S + pxx * P, sizeof(float) * P);
        }
    }
}

void cpu_clip_embed(float *x, const float *patches, const float *class_emb, const float *pos_emb, int n_tiles, int GG,
                    int d) {
    const int NP = GG + 1;
    /* tiles and rows from the last so that the one-tile in-place form (patches = x + d) reads each
     * patch value before anything overwrites it: row 1+p of x is row p of patches */
    for (int t = n_tiles - 1; t >= 0; t--) {
        float *xt = x + (size_t)t * NP * d;
        for (int p = NP - 1; p >= 1; p--)
            for (int j = 0; j < d; j++) xt[(size_t)p * d + j] = patches[((size_t)t * GG + p - 1) * d + j] + pos_emb[(size_t)p * d + j];
        for (int j = 0; j < d; j++) xt[j] = class_emb[j] + pos_emb[j];
    }
}

/* embed.cu — row moves between bf16 matrices: the token embedding lookup, the scatter of image
 * features into the prompt embeddings, and the gather of rows (e.g. the last position of every
 * packed sequence before the LM head), and the store of new keys/values into their KV-cache rows.
 *
 * One kernel: dst row (didx ? didx[i] : i) <- src row (sidx ? sidx[i] : i), d values per row (row
 * strides ds / ss elements), a warp per row, 16-byte accesses when d and the strides are multiples
 * of 8 and both bases are 16-byte aligned.
 * Contract: indices are trusted (validated by the caller, e.g. token ids < vocab); rows of dst not
 * named by didx are left untouched; the scatter's didx must not repeat (no ordering between
 * writers of one row).
 */
#include "backend/cuda/common.cuh"

template <bool VEC>
__global__ void __launch_bounds__(256)
    copy_rows_kernel(uint16_t *dst, const uint16_t *src, const int *didx, const int *sidx, int n, int d, int ds, int ss) {
    int i = blockIdx.x * 8 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (i >= n) return;
    size_t dr = didx ? (size_t)didx[i] : (size_t)i, sr = sidx ? (size_t)sidx[i] : (size_t)i;
    uint16_t *o = dst + dr * ds;
    const uint16_t *s = src + sr * ss;
    if (VEC) {
        for (int k = lane * 8; k < d; k += 256)
            *reinterpret_cast<uint4 *>(o + k) = *reinterpret_cast<const uint4 *>(s + k);
    } else {
        for (int k = lane; k < d; k += 32) o[k] = s[k];
    }
}

static void copy_rows_s(cuda_ctx *c, bf16 *dst, const bf16 *src, const int *didx, const int *sidx, int n, int d, int ds,
                        int ss) {
    if (n <= 0 || d <= 0) return;
    ctx_use(c);
    bool vec = d % 8 == 0 && ds % 8 == 0 && ss % 8 == 0 && aligned16(dst) && aligned16(src);
    int grid = ceil_div(n, 8);
    if (vec)
        copy_rows_kernel<true><<<grid, 256, 0, c->stream>>>(dst, src, didx, sidx, n, d, ds, ss);
    else
        copy_rows_kernel<false><<<grid, 256, 0, c->stream>>>(dst, src, didx, sidx, n, d, ds, ss);
    LAUNCH_CHECK();
}

static void copy_rows(cuda_ctx *c, bf16 *dst, const bf16 *src, const int *didx, const int *sidx, int n, int d) {
    copy_rows_s(c, dst, src, didx, sidx, n, d, d, d);
}

extern "C" void cuda_embed(cuda_ctx *c, bf16 *out, const bf16 *table, const int *ids, int n, int d) {
    copy_rows(c, out, table, NULL, ids, n, d);
}

extern "C" void cuda_scatter_rows(cuda_ctx *c, bf16 *dst, const bf16 *src, const int *idx, int n, int d) {
    copy_rows(c, dst, src, idx, NULL, n, d);
}

extern "C" void cuda_gather_rows(cuda_ctx *c, bf16 *dst, const bf16 *src, const int *idx, int n, int d) {
    copy_rows(c, dst, src, NULL, idx, n, d);
}

extern "C" void cuda_kv_store(cuda_ctx *c, bf16 *kc, bf16 *vc, const bf16 *kv, const int *rows, int n, int kd) {
    copy_rows_s(c, kc, kv, rows, NULL, n, kd, kd, 2 * kd);
    copy_rows_s(c, vc, kv + kd, rows, NULL, n, kd, kd, 2 * kd);
}

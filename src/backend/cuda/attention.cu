/* attention.cu — flash-style attention over packed variable-length sequences, with label-trie
 * tails for batched label scoring. No (n_q × n_k) matrix ever leaves registers.
 *
 * Work split: a block owns (sequence s, kv head, tile of query "rows"), where the rows of a
 * sequence are the flattened pairs (query i, head g of the kv head's group), g fastest. So with
 * GQA the heads that share a kv head share every K/V tile a block loads, and a decode step
 * (q_len 1) of a 4:1 model still fills 4 rows of a tile instead of 1. Tiles are issued heaviest
 * first (the last query tile of a causal sequence sees the most keys).
 *
 * Per block: K/V tiles of the sequence are staged in shared memory; every row keeps a running max
 * m, a running denominator l and an fp32 output accumulator (online softmax, exp2 with the scale
 * folded into log2 units); at the end out = acc / l (a row that sees no key is written as 0, as
 * the CPU twin does).
 * Layout: q rows have their own stride (q_stride elements), so q, k and v may be the three parts of
 * one fused [q | k | v] projection row (the vision tower); out rows are always heads*hd.
 *
 * Two kernels:
 *  - attn_mma_kernel<D> (hd 64 or 128, 16-byte aligned K/V, 4-byte aligned Q rows): 4 warps × 16
 *    rows, 64-key tiles (LLAVA_CUDA_ATTN_CFG=8x1|4x1|4x2|4x3 picks warps × minimum blocks per SM
 *    for experiments);
 *    S = Q·Kᵀ and O += P·V on tensor cores with mma.sync.m16n8k16 (bf16 in, fp32 accumulate);
 *    Q fragments live in registers for the whole block, P goes from the S accumulators straight
 *    into A fragments (the C layout of two n8 tiles is the A layout of one k16 step), V fragments
 *    come from ldmatrix.trans (or plain 16-bit loads: LLAVA_CUDA_ATTN=mma-plain).
 *  - attn_generic_kernel<TPR> (any hd <= 128, any alignment): TPR = 1..16 threads per row, each
 *    owning 8 dims; scores reduced with warp shuffles; fp32 tiles in shared memory.
 * LLAVA_CUDA_ATTN=generic|mma-plain|mma|auto picks one for tests (read by cuda_ctx_new).
 * On an H100/H200 (sm_90a code, cc 9.0) calls whose queries are their keys (q_start == k_start) go
 * to attn_sm90_kernel (attention_sm90.cu: wgmma, 128-row blocks) when LLAVA_CUDA_ATTN is auto or mma:
 * causal prefills with hd 128 or 64, their label-trie tails included (cuda_attention_tail_tree), and
 * full attention with hd 64 (the vision tower). LLAVA_CUDA_ATTN_SM90=0 turns that path off (read
 * once; cuda_attention_sm90_set switches it too).
 *
 * Visibility (the mask) for query i of a sequence with q_len queries and k_len keys:
 *   full:   every key;
 *   causal: key j <= (k_len - q_len) + i   (prefill after a cached prefix; decode q_len 1);
 * *   causal with a tree tail (batched label scoring): the last tail_len[s] queries and keys of
 *           sequence s are a label trie after its prompt: a prompt query is causal; tail query
 *           n_prefix + a sees the prompt keys and the tail keys of a's ancestors (itself included).
 * Twins: cpu_attention, cpu_attention_tree (backend/cpu/ops.c; the tree part of a tail).
 */
#include "backend/cuda/common.cuh"

#include <climits>

enum { ATT_FULL = 0, ATT_CAUSAL = 1 };

struct AttnParams {
    uint16_t *out;
    const uint16_t *q, *k, *v;
    const int *q_start, *k_start; /* varlen modes, device, n_seqs + 1 */
    const int *k_end;             /* optional, device, n_seqs: sequence s's keys end at k_end[s] (not
                                     k_start[s + 1]): ranges of a shared KV cache, with gaps */
    const int *parent;            /* tree tails: device, indexed by packed query row, values
                                     relative to the sequence's tail start (-1 = root) */
    const int *tail_len;          /* causal mode, device, n_seqs (NULL: no tree tails) */
    int heads, kv_heads, group, hd, kv_stride;
    int q_stride;                 /* query rows (elements; >= heads*hd: q may sit in a [q | k | v]
                                     row); out rows are always heads*hd */
    int mode;
    float scale_log2;
    int tiles_per_seq;
    int nsplit;          /* split-KV chunks (1: none) */
    size_t ws_rows;      /* rows per split in the partial buffers: >= tokens × heads */
    float *ws_o, *ws_ml; /* partials (nsplit, ws_rows, hd) and (nsplit, ws_rows, 2), in the ctx workspace */
};

__device__ __forceinline__ int ceil_div_d(int a, int b) { return (a + b - 1) / b; }

/* tq0 / tfrom: first query / key index (within the sequence) of the tree part (tfrom = INT_MAX
 * when there is none); par: parents of the tree queries, indexed from tq0. */
struct SeqInfo {
    int q0, qlen, k0, klen, tq0, tfrom;
    const int *par;
};

__device__ __forceinline__ SeqInfo seq_info(const AttnParams &p, int s) {
    SeqInfo si;
    si.q0 = p.q_start[s], si.qlen = p.q_start[s + 1] - si.q0;
    si.k0 = p.k_start[s], si.klen = (p.k_end ? p.k_end[s] : p.k_start[s + 1]) - si.k0;
    si.tq0 = 0, si.tfrom = INT_MAX, si.par = NULL;
    if (p.tail_len) {
        int tl = p.tail_len[s];
        if (tl > 0) si.tq0 = si.qlen - tl, si.tfrom = si.klen - tl, si.par = p.parent + si.q0 + si.tq0;
    }
    return si;
}

/* Largest key index query i may see (-1: none). Non-decreasing in i, so a tile's last row bounds
 * the keys the whole tile needs. */
__device__ __forceinline__ int row_limit(const AttnParams &p, const SeqInfo &si, int i) {
    int lim = si.klen - 1;
    if (p.mode == ATT_CAUSAL) lim = min(lim, si.klen - si.qlen + i);
    return lim;
}

/* tree key a (0-based among the tree keys) is visible to query i iff a is i or an ancestor of i;
 * parents precede children (parent[x] < x), so walking up from i passes a or jumps below it. */
__device__ __forceinline__ bool tree_sees(const int *parent, int i, int a) {
    int x = i;
    while (x > a) x = __ldg(parent + x);
    return x == a;
}

__device__ __forceinline__ bool visible(const SeqInfo &si, int lim, int i, int kj) {
    if (kj > lim) return false;
    if (kj >= si.tfrom) return tree_sees(si.par, i - si.tq0, kj - si.tfrom);
    return true;
}

/* block -> (sequence, query tile), heaviest tile of each sequence first */
__device__ __forceinline__ void block_tile(const AttnParams &p, int &s, int &t) {
    s = blockIdx.x / p.tiles_per_seq;
    t = p.tiles_per_seq - 1 - (int)(blockIdx.x % p.tiles_per_seq);
}

/* ================================ tensor-core kernel ========================================= */

__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem_row) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *smem_row) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* 16-byte global -> shared copy that bypasses registers; src_bytes 0 writes zeros */
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid) {
    uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
    int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    return (uint32_t)f2bf(lo) | ((uint32_t)f2bf(hi) << 16);
}

#define MMA_BK 64 /* keys per tile */

template <int D>
constexpr int mma_smem_bytes(bool fast) {
    return (fast ? 2 : 1) * 2 * MMA_BK * (D + 8) * 2;
}

/* WARPS × 16 rows per block. FAST: K/V tiles double-buffered with cp.async, K and V fragments by
 * ldmatrix; otherwise plain loads into one buffer and 32/16-bit fragment loads (a simpler twin kept
 * as a cross-check). Split-KV: blockIdx.z takes one chunk of the keys and writes unnormalized fp32
 * partials (o, m, l) to p.ws; attn_combine_kernel merges them. */
template <int D, int WARPS, bool FAST, int MINB>
__global__ void __launch_bounds__(WARPS * 32, MINB) attn_mma_kernel(AttnParams p) {
    constexpr int LDS = D + 8; /* padded row (elements): 8 consecutive 16-byte rows hit distinct banks */
    constexpr int NT = MMA_BK / 8, KD = D / 16, ND = D / 8, BQ = WARPS * 16;
    constexpr int TILE = MMA_BK * LDS; /* elements of one K or V tile */
    extern __shared__ __align__(16) uint16_t smem[]; /* [stage][K, V][MMA_BK][LDS] */

    int s, t;
    block_tile(p, s, t);
    const int kvh = blockIdx.y, split = blockIdx.z;
    const SeqInfo si = seq_info(p, s);
    const int rows_total = si.qlen * p.group;
    const int r0 = t * BQ;
    if (r0 >= rows_total) return; /* whole block: before any barrier */

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, tig = lane & 3;

    /* key range of this block (and split) */
    const int kend = row_limit(p, si, (min(r0 + BQ, rows_total) - 1) / p.group) + 1;
    int kbeg = 0, kstop = kend;
    if (p.nsplit > 1) {
        int chunk = ceil_div_d(ceil_div_d(max(kend, 0), p.nsplit), MMA_BK) * MMA_BK;
        kbeg = min(split * chunk, max(kend, 0));
        kstop = min(kbeg + chunk, kend);
    }

    /* this thread's two rows: gid and gid + 8 of the warp's 16 */
    int lim[2], qi[2];
    bool rv[2];
    size_t orow[2], grow[2], qrow[2];
#pragma unroll
    for (int j = 0; j < 2; j++) {
        int r = r0 + warp * 16 + gid + 8 * j;
        rv[j] = r < rows_total;
        if (rv[j]) {
            int i = r / p.group, g = r % p.group;
            qi[j] = i;
            lim[j] = min(row_limit(p, si, i), kstop - 1);
            grow[j] = (size_t)(si.q0 + i) * p.heads + (size_t)(kvh * p.group + g);
            orow[j] = grow[j] * D;
            qrow[j] = (size_t)(si.q0 + i) * p.q_stride + (size_t)(kvh * p.group + g) * D;
        } else {
            qi[j] = 0, lim[j] = -1, orow[j] = 0, grow[j] = 0, qrow[j] = 0;
        }
    }
    int wl = max(lim[0], lim[1]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) wl = max(wl, __shfl_xor_sync(0xffffffffu, wl, o));
    const int warp_kend = wl + 1;

    /* Q fragments (A operand, row-major 16×16 per k step) straight from global memory */
    uint32_t qa[KD][4];
#pragma unroll
    for (int kk = 0; kk < KD; kk++) {
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const uint16_t *qp = p.q + qrow[j] + kk * 16 + tig * 2;
            qa[kk][j] = rv[j] ? *reinterpret_cast<const uint32_t *>(qp) : 0u;
            qa[kk][j + 2] = rv[j] ? *reinterpret_cast<const uint32_t *>(qp + 8) : 0u;
        }
    }

    float o[ND][4];
#pragma unroll
    for (int nd = 0; nd < ND; nd++) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

    const int ntiles = kstop > kbeg ? ceil_div_d(kstop - kbeg, MMA_BK) : 0;
    const uint16_t *kbase = p.k + (size_t)si.k0 * p.kv_stride + (size_t)kvh * D;
    const uint16_t *vbase = p.v + (size_t)si.k0 * p.kv_stride + (size_t)kvh * D;

    /* stage a tile of keys [kb, kb + MMA_BK) (rows >= kstop zero-filled) */
    auto load_tile = [&](int stage, int kb) {
        uint16_t *Ks = smem + stage * 2 * TILE, *Vs = Ks + TILE;
        for (int idx = threadIdx.x; idx < MMA_BK * (D / 8); idx += WARPS * 32) {
            int j = idx / (D / 8), c8 = idx % (D / 8);
            bool ok = kb + j < kstop;
            size_t g = ok ? (size_t)(kb + j) * p.kv_stride + c8 * 8 : 0;
            if (FAST) {
                cp_async16(&Ks[j * LDS + c8 * 8], kbase + g, ok);
                cp_async16(&Vs[j * LDS + c8 * 8], vbase + g, ok);
            } else {
                uint4 kx = make_uint4(0, 0, 0, 0), vx = kx;
                if (ok) {
                    kx = *reinterpret_cast<const uint4 *>(kbase + g);
                    vx = *reinterpret_cast<const uint4 *>(vbase + g);
                }
                *reinterpret_cast<uint4 *>(&Ks[j * LDS + c8 * 8]) = kx;
                *reinterpret_cast<uint4 *>(&Vs[j * LDS + c8 * 8]) = vx;
            }
        }
    };

    if (FAST) {
        if (ntiles > 0) load_tile(0, kbeg);
        cp_async_commit();
    }
    for (int it = 0; it < ntiles; it++) {
        const int kb = kbeg + it * MMA_BK;
        const int stage = FAST ? (it & 1) : 0;
        if (FAST) {
            if (it + 1 < ntiles) load_tile(stage ^ 1, kb + MMA_BK);
            cp_async_commit();
            cp_async_wait<1>(); /* this tile's group has landed (the next one may be in flight) */
            __syncthreads();
        } else {
            __syncthreads(); /* everyone is done with the previous tile */
            load_tile(0, kb);
            __syncthreads();
        }
        const uint16_t *Ks = smem + stage * 2 * TILE, *Vs = Ks + TILE;

        if (kb < warp_kend) { /* warp-uniform: otherwise no row of this warp sees these keys */
            /* S = Q·Kᵀ: B operand (k = dim, n = key) is K row-major, two dims per 32-bit word */
            float sc[NT][4];
#pragma unroll
            for (int nt = 0; nt < NT; nt++) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < KD; kk++) {
                if (FAST) {
                    /* lanes 0-7: keys nt*8+0..7 dims kk*16+0..7; 8-15: dims +8; 16-31: the same for nt+1 */
                    const int krow = (lane & 7) + ((lane >> 4) << 3), kcol = kk * 16 + ((lane >> 3) & 1) * 8;
#pragma unroll
                    for (int nt = 0; nt < NT; nt += 2) {
                        uint32_t b[4];
                        ldmatrix_x4(b, &Ks[(nt * 8 + krow) * LDS + kcol]);
                        mma16816(sc[nt], qa[kk], b[0], b[1]);
                        mma16816(sc[nt + 1], qa[kk], b[2], b[3]);
                    }
                } else {
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
                        const uint16_t *kp = &Ks[(nt * 8 + gid) * LDS + kk * 16 + tig * 2];
                        mma16816(sc[nt], qa[kk], *reinterpret_cast<const uint32_t *>(kp),
                                 *reinterpret_cast<const uint32_t *>(kp + 8));
                    }
                }
            }

            /* mask, scale, online softmax; element e of tile nt: row gid + 8*(e>>1), key nt*8 + tig*2 + (e&1) */
            const bool tree_tile = kb + MMA_BK > si.tfrom;
            float mx[2] = {m[0], m[1]};
#pragma unroll
            for (int rs = 0; rs < 2; rs++) {
                if (!tree_tile && kb + MMA_BK - 1 <= lim[rs]) { /* whole tile visible to this row */
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
                        sc[nt][2 * rs] *= p.scale_log2;
                        sc[nt][2 * rs + 1] *= p.scale_log2;
                        mx[rs] = fmaxf(mx[rs], fmaxf(sc[nt][2 * rs], sc[nt][2 * rs + 1]));
                    }
                } else {
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            int kj = kb + nt * 8 + tig * 2 + e;
                            float x = visible(si, lim[rs], qi[rs], kj) ? sc[nt][2 * rs + e] * p.scale_log2 : -INFINITY;
                            sc[nt][2 * rs + e] = x;
                            mx[rs] = fmaxf(mx[rs], x);
                        }
                    }
                }
            }
            float mu[2], alpha[2];
#pragma unroll
            for (int rs = 0; rs < 2; rs++) {
                mx[rs] = fmaxf(mx[rs], __shfl_xor_sync(0xffffffffu, mx[rs], 1));
                mx[rs] = fmaxf(mx[rs], __shfl_xor_sync(0xffffffffu, mx[rs], 2));
                mu[rs] = mx[rs] == -INFINITY ? 0.f : mx[rs];
                alpha[rs] = exp2f(m[rs] - mu[rs]); /* m = -inf (nothing yet) -> 0 */
                m[rs] = mx[rs];
                l[rs] *= alpha[rs];
            }
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float pe = exp2f(sc[nt][e] - mu[e >> 1]);
                    sc[nt][e] = pe;
                    l[e >> 1] += pe; /* partial over this thread's columns; summed over the quad at the end */
                }
            }
#pragma unroll
            for (int nd = 0; nd < ND; nd++) {
                o[nd][0] *= alpha[0], o[nd][1] *= alpha[0];
                o[nd][2] *= alpha[1], o[nd][3] *= alpha[1];
            }

            /* O += P·V: P's accumulators become A fragments; B operand (k = key, n = dim) from V */
#pragma unroll
            for (int j = 0; j < MMA_BK / 16; j++) {
                uint32_t pa[4] = {pack_bf16x2(sc[2 * j][0], sc[2 * j][1]), pack_bf16x2(sc[2 * j][2], sc[2 * j][3]),
                                  pack_bf16x2(sc[2 * j + 1][0], sc[2 * j + 1][1]),
                                  pack_bf16x2(sc[2 * j + 1][2], sc[2 * j + 1][3])};
                if (FAST) {
                    /* lanes 0-7: keys 16j+0..7 of dim tile nd; 8-15: keys +8..15; 16-31: the same for nd+1 */
                    const int key = 16 * j + ((lane >> 3) & 1) * 8 + (lane & 7);
#pragma unroll
                    for (int nd = 0; nd < ND; nd += 2) {
                        uint32_t b[4];
                        ldmatrix_x4_trans(b, &Vs[key * LDS + (nd + (lane >> 4)) * 8]);
                        mma16816(o[nd], pa, b[0], b[1]);
                        mma16816(o[nd + 1], pa, b[2], b[3]);
                    }
                } else {
                    const int k0 = 16 * j + tig * 2;
#pragma unroll
                    for (int nd = 0; nd < ND; nd++) {
                        const int col = nd * 8 + gid;
                        uint32_t b0 = (uint32_t)Vs[k0 * LDS + col] | ((uint32_t)Vs[(k0 + 1) * LDS + col] << 16);
                        uint32_t b1 = (uint32_t)Vs[(k0 + 8) * LDS + col] | ((uint32_t)Vs[(k0 + 9) * LDS + col] << 16);
                        mma16816(o[nd], pa, b0, b1);
                    }
                }
            }
        }
        if (FAST) __syncthreads(); /* the next iteration's prefetch overwrites this stage */
    }

#pragma unroll
    for (int rs = 0; rs < 2; rs++) {
        l[rs] += __shfl_xor_sync(0xffffffffu, l[rs], 1);
        l[rs] += __shfl_xor_sync(0xffffffffu, l[rs], 2);
    }
    if (p.nsplit > 1) { /* partials: unnormalized o, running max m (log2 units), denominator l */
        const size_t base = (size_t)split * p.ws_rows;
#pragma unroll
        for (int rs = 0; rs < 2; rs++) {
            if (!rv[rs]) continue;
            float *wo = p.ws_o + (base + grow[rs]) * D + tig * 2;
#pragma unroll
            for (int nd = 0; nd < ND; nd++)
                *reinterpret_cast<float2 *>(wo + nd * 8) = make_float2(o[nd][2 * rs], o[nd][2 * rs + 1]);
            if (tig == 0) *reinterpret_cast<float2 *>(p.ws_ml + (base + grow[rs]) * 2) = make_float2(m[rs], l[rs]);
        }
        return;
    }
#pragma unroll
    for (int rs = 0; rs < 2; rs++) {
        if (!rv[rs]) continue;
        float inv = l[rs] > 0.f ? 1.f / l[rs] : 0.f;
        uint16_t *op = p.out + orow[rs] + tig * 2;
#pragma unroll
        for (int nd = 0; nd < ND; nd++)
            *reinterpret_cast<uint32_t *>(op + nd * 8) = pack_bf16x2(o[nd][2 * rs] * inv, o[nd][2 * rs + 1] * inv);
    }
}

/* Merges split-KV partials: one warp per (token, head) row; rows past the last token are skipped. */
template <int D>
__global__ void __launch_bounds__(256) attn_combine_kernel(AttnParams p, int n_seqs) {
    const size_t row = (size_t)blockIdx.x * 8 + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const int total_q = p.q_start[n_seqs];
    if (row >= (size_t)total_q * p.heads) return;
    float M = -INFINITY;
    for (int sp = 0; sp < p.nsplit; sp++) M = fmaxf(M, p.ws_ml[((size_t)sp * p.ws_rows + row) * 2]);
    constexpr int PER = D / 32;
    float acc[PER] = {}, L = 0.f;
    if (M != -INFINITY) {
        for (int sp = 0; sp < p.nsplit; sp++) {
            float2 ml = *reinterpret_cast<const float2 *>(p.ws_ml + ((size_t)sp * p.ws_rows + row) * 2);
            if (ml.x == -INFINITY) continue;
            float w = exp2f(ml.x - M);
            L += ml.y * w;
            const float *wo = p.ws_o + ((size_t)sp * p.ws_rows + row) * D;
#pragma unroll
            for (int e = 0; e < PER; e++) acc[e] += wo[lane + 32 * e] * w;
        }
    }
    float inv = L > 0.f ? 1.f / L : 0.f;
#pragma unroll
    for (int e = 0; e < PER; e++) p.out[row * D + lane + 32 * e] = f2bf(acc[e] * inv);
}

/* ================================ generic SIMT kernel ======================================== */

#define GEN_THREADS 256
#define GEN_BK 32

template <int TPR>
__global__ void __launch_bounds__(GEN_THREADS, 1) attn_generic_kernel(AttnParams p) {
    constexpr int RB = GEN_THREADS / TPR, HDP = TPR * 8;
    __shared__ __align__(16) float Ks[GEN_BK][HDP];
    __shared__ __align__(16) float Vs[GEN_BK][HDP];

    int s, t;
    block_tile(p, s, t);
    const int kvh = blockIdx.y;
    const SeqInfo si = seq_info(p, s);
    const int rows_total = si.qlen * p.group;
    const int r0 = t * RB;
    if (r0 >= rows_total) return;

    const int hd = p.hd;
    const int sub = threadIdx.x % TPR, d0 = sub * 8;
    const int r = r0 + threadIdx.x / TPR;
    const bool valid = r < rows_total;
    int i = 0, lim = -1;
    size_t qrow = 0, orow = 0;
    if (valid) {
        int g = r % p.group;
        i = r / p.group;
        lim = row_limit(p, si, i);
        qrow = (size_t)(si.q0 + i) * p.q_stride + (size_t)(kvh * p.group + g) * hd;
        orow = ((size_t)(si.q0 + i) * p.heads + (size_t)(kvh * p.group + g)) * hd;
    }
    const int kend = row_limit(p, si, (min(r0 + RB, rows_total) - 1) / p.group) + 1;

    float q[8], acc[8];
#pragma unroll
    for (int e = 0; e < 8; e++) {
        q[e] = (valid && d0 + e < hd) ? bf2f(p.q[qrow + d0 + e]) : 0.f;
        acc[e] = 0.f;
    }
    float m = -INFINITY, l = 0.f;

    for (int kb = 0; kb < kend; kb += GEN_BK) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < GEN_BK * HDP; idx += GEN_THREADS) {
            int j = idx / HDP, dd = idx % HDP;
            float kx = 0.f, vx = 0.f;
            if (kb + j < kend && dd < hd) {
                size_t g = (size_t)(si.k0 + kb + j) * p.kv_stride + (size_t)kvh * hd + dd;
                kx = bf2f(p.k[g]);
                vx = bf2f(p.v[g]);
            }
            Ks[j][dd] = kx;
            Vs[j][dd] = vx;
        }
        __syncthreads();
        const int jn = min(GEN_BK, kend - kb);
        for (int jc = 0; jc < jn; jc += 8) {
            float sc[8];
            float mx = m;
#pragma unroll
            for (int jj = 0; jj < 8; jj++) {
                const float4 *kr = reinterpret_cast<const float4 *>(&Ks[jc + jj][d0]);
                float4 a = kr[0], b = kr[1];
                float part = q[0] * a.x + q[1] * a.y + q[2] * a.z + q[3] * a.w + q[4] * b.x + q[5] * b.y +
                             q[6] * b.z + q[7] * b.w;
#pragma unroll
                for (int off = TPR / 2; off > 0; off >>= 1) part += __shfl_xor_sync(0xffffffffu, part, off);
                int kj = kb + jc + jj;
                sc[jj] = visible(si, lim, i, kj) ? part * p.scale_log2 : -INFINITY;
                mx = fmaxf(mx, sc[jj]);
            }
            float mu = mx == -INFINITY ? 0.f : mx;
            float alpha = exp2f(m - mu);
            m = mx;
            l *= alpha;
#pragma unroll
            for (int e = 0; e < 8; e++) acc[e] *= alpha;
#pragma unroll
            for (int jj = 0; jj < 8; jj++) {
                float pj = exp2f(sc[jj] - mu);
                l += pj;
                const float4 *vr = reinterpret_cast<const float4 *>(&Vs[jc + jj][d0]);
                float4 a = vr[0], b = vr[1];
                acc[0] += pj * a.x, acc[1] += pj * a.y, acc[2] += pj * a.z, acc[3] += pj * a.w;
                acc[4] += pj * b.x, acc[5] += pj * b.y, acc[6] += pj * b.z, acc[7] += pj * b.w;
            }
        }
    }
    if (!valid) return;
    float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
    for (int e = 0; e < 8; e++)
        if (d0 + e < hd) p.out[orow + d0 + e] = f2bf(acc[e] * inv);
}

/* ================================ launch ===================================================== */

static int pow2_at_least(int x) {
    int v = 1;
    while (v < x) v <<= 1;
    return v;
}

template <int D, int WARPS, bool FAST, int MINB = 1>
static void mma_launch(cuda_ctx *c, const AttnParams &p, dim3 grid) {
    attn_mma_kernel<D, WARPS, FAST, MINB><<<grid, WARPS * 32, mma_smem_bytes<D>(FAST), c->stream>>>(p);
}

template <int D, int WARPS, bool FAST, int MINB = 1>
static int mma_set_smem() {
    cudaError_t e = cudaFuncSetAttribute(attn_mma_kernel<D, WARPS, FAST, MINB>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         mma_smem_bytes<D>(FAST));
    if (e != cudaSuccess) (void)cudaGetLastError();
    return e == cudaSuccess ? 0 : -1;
}

/* attention_sm90.cu */
int attention_sm90_init(cuda_ctx *c);
int attention_sm90_available(const cuda_ctx *c);
int attention_sm90_launch(cuda_ctx *c, uint16_t *out, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                          const int *q_start, const int *tail_len, const int *parent, int n_seqs, int max_q, int heads,
                          int kv_heads, int hd, int kv_stride, int q_stride, int causal, float scale_log2);

/* Raises the dynamic shared-memory limit of the tensor-core kernels (once per context/device) and
 * probes the Hopper kernel (its absence is not an error: callers fall back). */
int attention_ctx_init(cuda_ctx *c) {
    int rc = attention_sm90_init(c);
    rc |= mma_set_smem<64, 4, true>() | mma_set_smem<64, 8, true>() | mma_set_smem<64, 4, false>();
    rc |= mma_set_smem<128, 4, true>() | mma_set_smem<128, 8, true>() | mma_set_smem<128, 4, false>();
    rc |= mma_set_smem<64, 4, true, 2>() | mma_set_smem<64, 4, true, 3>();
    rc |= mma_set_smem<128, 4, true, 2>() | mma_set_smem<128, 4, true, 3>();
    return rc;
}

static void attention_launch(cuda_ctx *c, AttnParams &p, int n_seqs, int max_q, int max_k_known) {
    const int hd = p.hd;
    CHECK(hd >= 1 && hd <= 128);
    CHECK(p.kv_heads >= 1 && p.heads % p.kv_heads == 0);
    const long long rows_max = (long long)max_q * p.group;
    /* the tensor-core kernels read Q as 32-bit pairs: q 4-byte aligned, every row too */
    bool mma_ok = (hd == 64 || hd == 128) && aligned16(p.k) && aligned16(p.v) && p.kv_stride % 8 == 0 &&
                  ((uintptr_t)p.q & 3) == 0 && p.q_stride % 2 == 0 && ((uintptr_t)p.out & 3) == 0;
    int impl = c->attn_impl;
    if (impl == 0) impl = mma_ok ? 3 : 1;
    if (impl >= 2 && !mma_ok) impl = 1;
    p.nsplit = 1;

    if (impl == 1) {
        int tpr = pow2_at_least((hd + 7) / 8);
        int rb = GEN_THREADS / tpr;
        p.tiles_per_seq = ceil_div(rows_max, rb);
        long long blocks = (long long)n_seqs * p.tiles_per_seq;
        CHECK(blocks < (1LL << 31));
        dim3 grid((unsigned)blocks, p.kv_heads);
        switch (tpr) {
        case 1: attn_generic_kernel<1><<<grid, GEN_THREADS, 0, c->stream>>>(p); break;
        case 2: attn_generic_kernel<2><<<grid, GEN_THREADS, 0, c->stream>>>(p); break;
        case 4: attn_generic_kernel<4><<<grid, GEN_THREADS, 0, c->stream>>>(p); break;
        case 8: attn_generic_kernel<8><<<grid, GEN_THREADS, 0, c->stream>>>(p); break;
        default: attn_generic_kernel<16><<<grid, GEN_THREADS, 0, c->stream>>>(p); break;
        }
        LAUNCH_CHECK();
        return;
    }

    const bool fast = impl == 3;
    /* 8 warps (128 rows) per block when that still gives every SM two blocks */
    /* 4 warps (64 rows) a block: two blocks share an SM (~210 registers a thread). On H100s (two runs of
     * test_ops --bench-only): 4 packed 2478-token causal prefills 220.7 vs 213.4 TFLOP/s with 8 warps,
     * 10 CLIP tiles 131 vs 103 */
    int warps = 4;
    int minb = 1;
    if (fast && c->attn_cfg) warps = c->attn_cfg == 1 ? 8 : 4, minb = c->attn_cfg >= 3 ? c->attn_cfg - 1 : 1;
    p.tiles_per_seq = ceil_div(rows_max, warps * 16);
    long long blocks = (long long)n_seqs * p.tiles_per_seq;
    CHECK(blocks < (1LL << 31));
    long long all_blocks = blocks * p.kv_heads;
    /* split-KV when the grid would leave SMs idle (decode, label scoring): each split takes a chunk
     * of the keys, partials go to the context workspace (stream-ordered with the GEMMs that share it) */
    if (all_blocks < c->sm_count) {
        int ns = (int)((2LL * c->sm_count + all_blocks - 1) / all_blocks);
        if (ns > 16) ns = 16;
        if (max_k_known > 0 && ns > ceil_div(max_k_known, MMA_BK)) ns = ceil_div(max_k_known, MMA_BK);
        size_t rows = (size_t)n_seqs * max_q * p.heads;
        while (ns > 1 && (size_t)ns * rows * (hd + 2) * sizeof(float) > c->workspace_bytes) ns--;
        if (ns > 1) {
            p.nsplit = ns;
            p.ws_rows = rows;
            p.ws_o = (float *)c->workspace;
            p.ws_ml = p.ws_o + (size_t)ns * rows * hd;
        }
    }
    dim3 grid((unsigned)blocks, p.kv_heads, p.nsplit);
    if (hd == 64) {
        if (!fast)
            mma_launch<64, 4, false>(c, p, grid);
        else if (warps == 8)
            mma_launch<64, 8, true>(c, p, grid);
        else if (minb == 2)
            mma_launch<64, 4, true, 2>(c, p, grid);
        else if (minb == 3)
            mma_launch<64, 4, true, 3>(c, p, grid);
        else
            mma_launch<64, 4, true>(c, p, grid);
    } else {
        if (!fast)
            mma_launch<128, 4, false>(c, p, grid);
        else if (warps == 8)
            mma_launch<128, 8, true>(c, p, grid);
        else if (minb == 2)
            mma_launch<128, 4, true, 2>(c, p, grid);
        else if (minb == 3)
            mma_launch<128, 4, true, 3>(c, p, grid);
        else
            mma_launch<128, 4, true>(c, p, grid);
    }
    LAUNCH_CHECK();
    if (p.nsplit > 1) {
        unsigned cb = (unsigned)((p.ws_rows + 7) / 8);
        if (hd == 64)
            attn_combine_kernel<64><<<cb, 256, 0, c->stream>>>(p, n_seqs);
        else
            attn_combine_kernel<128><<<cb, 256, 0, c->stream>>>(p, n_seqs);
        LAUNCH_CHECK();
    }
}

/* Process-wide switch of the Hopper path: -1 until first read from LLAVA_CUDA_ATTN_SM90 (unset: on).
 * A plain int written before use by tests; every context reads it at each call. */
static int sm90_switch = -1;

static int sm90_on(void) {
    if (sm90_switch < 0) {
        const char *e = getenv("LLAVA_CUDA_ATTN_SM90");
        sm90_switch = (e && e[0] == '0') ? 0 : 1;
    }
    return sm90_switch;
}

extern "C" int cuda_attention_sm90_set(int on) {
    int prev = sm90_on();
    if (on >= 0) sm90_switch = on ? 1 : 0;
    return prev;
}

extern "C" int cuda_attention_sm90_available(cuda_ctx *c) { return attention_sm90_available(c); }

/* the Hopper kernel may take this context's calls whose queries are their keys (q_start == k_start);
 * attention_sm90_launch refuses the shapes it has no instantiation for */
static bool sm90_allowed(const cuda_ctx *c, int hd) {
    return (hd == 128 || hd == 64) && (c->attn_impl == 0 || c->attn_impl == 3) && sm90_on() &&
           attention_sm90_available(c);
}

/* the fields every entry point sets alike */
static AttnParams attn_params(bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v, int heads, int kv_heads, int hd,
                              int kv_stride, int q_stride, int mode, float scale) {
    AttnParams p = {};
    p.out = out, p.q = q, p.k = k, p.v = v;
    p.heads = heads, p.kv_heads = kv_heads, p.group = heads / (kv_heads > 0 ? kv_heads : 1);
    p.hd = hd, p.kv_stride = kv_stride, p.q_stride = q_stride;
    p.mode = mode;
    p.scale_log2 = scale * 1.4426950408889634f;
    return p;
}

extern "C" void cuda_attention(cuda_ctx *c, bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v, const int *q_start,
                               const int *k_start, int n_seqs, int max_q, int heads, int kv_heads, int hd,
                               int kv_stride, int q_stride, int causal, float scale) {
    if (n_seqs <= 0 || max_q <= 0 || heads <= 0) return;
    ctx_use(c);
    if (q_stride <= 0) q_stride = heads * hd;
    CHECK(q_stride >= heads * hd);
    const float scale_log2 = scale * 1.4426950408889634f;
    /* one array for queries and keys: every sequence has q_len == k_len */
    if (q_start == k_start && sm90_allowed(c, hd) &&
        attention_sm90_launch(c, out, q, k, v, q_start, NULL, NULL, n_seqs, max_q, heads, kv_heads, hd, kv_stride,
                              q_stride, causal ? 1 : 0, scale_log2) == 0)
        return;
    AttnParams p = attn_params(out, q, k, v, heads, kv_heads, hd, kv_stride, q_stride, causal ? ATT_CAUSAL : ATT_FULL,
                               scale);
    p.q_start = q_start, p.k_start = k_start;
    attention_launch(c, p, n_seqs, max_q, 0);
}

extern "C" void cuda_attention_ranges(cuda_ctx *c, bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v,
                                      const int *q_start, const int *k_begin, const int *k_end, int n_seqs, int max_q,
                                      int max_k, int heads, int kv_heads, int hd, int kv_stride, float scale) {
    if (n_seqs <= 0 || max_q <= 0 || heads <= 0) return;
    ctx_use(c);
    AttnParams p = attn_params(out, q, k, v, heads, kv_heads, hd, kv_stride, heads * hd, ATT_CAUSAL, scale);
    p.q_start = q_start, p.k_start = k_begin, p.k_end = k_end;
    attention_launch(c, p, n_seqs, max_q, max_k);
}

extern "C" void cuda_attention_tail_tree(cuda_ctx *c, bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v,
                                         const int *q_start, const int *k_start, const int *tail_len,
                                         const int *parent, int n_seqs, int max_q, int heads, int kv_heads, int hd,
                                         int kv_stride, int q_stride, float scale) {
    if (n_seqs <= 0 || max_q <= 0 || heads <= 0) return;
    ctx_use(c);
    if (q_stride <= 0) q_stride = heads * hd;
    CHECK(q_stride >= heads * hd);
    const float scale_log2 = scale * 1.4426950408889634f;
    /* queries == keys (not the kept-rows call): prompts and tails in one launch of the Hopper kernel */
    if (q_start == k_start && sm90_allowed(c, hd) &&
        attention_sm90_launch(c, out, q, k, v, q_start, tail_len, parent, n_seqs, max_q, heads, kv_heads, hd,
                              kv_stride, q_stride, 1, scale_log2) == 0)
        return;
    AttnParams p = attn_params(out, q, k, v, heads, kv_heads, hd, kv_stride, q_stride, ATT_CAUSAL, scale);
    p.q_start = q_start, p.k_start = k_start, p.tail_len = tail_len, p.parent = parent;
    attention_launch(c, p, n_seqs, max_q, 0);
}

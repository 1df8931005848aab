/* attention_sm90.cu — Hopper (sm_90a) flash attention with wgmma for packed sequences whose queries
 * are their keys (q_len == k_len, one start array), head dim 64 or 128, bf16 in/out, fp32 accumulate:
 * causal prefills (with or without a label-trie tail per sequence) and full (non-causal) attention
 * (the vision tower).
 *
 * Owns: attn_sm90_kernel<D, CAUSAL> and its launcher; attention.cu decides when to call it and falls
 *   back to its own kernels when the launcher returns -1 (not an sm_90a build, not a cc 9.0 device,
 *   a shape without an instantiation, misaligned pointers).
 * Assumes: the rows of a block are the flattened pairs (query i, head g of the kv head's group), g
 *   fastest, as in attention.cu. Causal: query i of a sequence sees keys j <= i, except that the last
 *   tail_len[s] queries/keys form a tree (as attention.cu's tail tree): tail query a sees the P =
 *   q_len - tail_len prompt keys and the tail keys of its ancestors (itself included; parent[] holds
 *   indices within the tail, parents before children). Full: every query sees every key.
 * Never: reads keys past the end of a sequence (those rows are zero-filled in shared memory and masked).
 *
 * Block = 3 warpgroups (384 threads), 128 rows, one (sequence, kv head, row tile):
 *  - warpgroup 0, the producer (40 registers after setmaxnreg): streams 128-key K and V tiles of
 *    the sequence into a 2-stage ring with cp.async (16-byte chunks, rows past the block's last key
 *    zero-filled), each stage completing on an mbarrier (cp.async.mbarrier.arrive.noinc); it waits
 *    on an "empty" mbarrier before it refills a stage.
 *  - warpgroups 1 and 2, the consumers (232 registers), 64 rows each: their Q rows (q_stride apart
 *    in global memory, a multiple of 8) are staged once in shared memory; per key tile S = Q·Kᵀ is D/16 wgmma m64n128k16 (A and B from shared memory),
 *    then mask + online softmax in registers (exp2, scale folded into log2 units, as attention.cu),
 *    then O += P·V is 8 wgmma m64nDk16 with P from registers (the fp32 accumulator layout of S
 *    packed to bf16 pairs is the A-register layout) and V from shared memory read transposed (the
 *    16-bit B operand is MN-major). Two named barriers alternate the consumers' GEMMs ("ping-pong"),
 *    so one warpgroup's softmax overlaps the other's tensor-core work.
 *  - tree tails: for a key tile that holds tail keys, each tail row walks its ancestor chain once
 *    (parent[]) into a 32-bit mask of the tile's keys this thread holds; prompt keys stay causal.
 * Shared memory (1024-byte aligned; every tile uses the 128-byte swizzle that the wgmma descriptors
 * name): Q [2 warpgroups][D/64 dim halves][64 rows][128 B]; K and V per stage [D/64 dim halves]
 * [128 keys][128 B]; 16-byte chunk c of row r sits at chunk c ^ (r & 7). K serves as the K-major B
 * operand of S (n = key, k = dim), V as the MN-major B operand of O (k = key, n = dim), with the same
 * layout.
 * Twins: cpu_attention, cpu_attention_tree — tests/cuda/test_ops.c compares them.
 */
#include "backend/cuda/common.cuh"

#define SM90_BM 128      /* rows per block (2 consumer warpgroups × 64) */
#define SM90_BN 128      /* keys per tile */
#ifndef SM90_STAGES
#define SM90_STAGES 2 /* K/V ring depth; 3 fits 227 KB at head dim 128 but W1 measured no faster (16.02 vs 16.04) */
#endif
#define SM90_THREADS 384 /* producer warpgroup + 2 consumer warpgroups */

/* shared-memory carve for head dim D (bytes from the 1024-aligned base) */
template <int D>
struct Sm90Smem {
    static constexpr int Q_BYTES = SM90_BM * D * 2;  /* 32 KB at D 128 */
    static constexpr int KV_BYTES = SM90_BN * D * 2; /* one K or V tile: 32 KB at D 128 */
    static constexpr int K_OFF = Q_BYTES;
    static constexpr int V_OFF = K_OFF + SM90_STAGES * KV_BYTES;
    static constexpr int BAR_OFF = V_OFF + SM90_STAGES * KV_BYTES;
    static constexpr int BYTES = BAR_OFF + 4 * SM90_STAGES * 8 + 1024; /* + barriers + alignment slack */
};

struct Sm90Params {
    uint16_t *out;             /* (tokens, heads*D) */
    const uint16_t *q, *k, *v; /* q rows of q_stride elements (>= heads*D: q may sit in a fused
                                  [q | k | v] row); k, v rows of kv_stride elements */
    const int *q_start;        /* device, n_seqs + 1: query and key rows of every sequence */
    const int *tail_len;       /* causal: device, n_seqs, or NULL: the last tail_len[s] rows are a tree */
    const int *parent;         /* with tail_len: device, indexed by packed row; a tail row's parent
                                  within its tail (-1 = root) */
    int heads, group, kv_stride, q_stride;
    float scale_log2;
    int tiles_per_seq;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* ---- mbarriers, named barriers, cp.async ---- */
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, int parity) {
    uint32_t done;
    do {
        asm volatile(
            "{\n.reg .pred p;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!done);
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}
/* arrives on bar once every cp.async this thread issued so far has landed (counts as one arrival) */
__device__ __forceinline__ void cp_async_arrive(uint32_t bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void cp_async16_zfill(uint32_t dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
/* generic-proxy writes to shared memory become visible to the async proxy (wgmma operands) */
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ void named_sync(int id, int n) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int n) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

/* ---- wgmma ---- */
/* Shared-memory matrix descriptor: start address, leading / stride byte offsets (16-byte units),
 * 128-byte swizzle (mode 1 in bits 62-63), base offset 0 (every tile is 1024-byte aligned). */
__device__ __forceinline__ uint64_t gmma_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((saddr & 0x3FFFF) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
           ((uint64_t)((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* after a wait: the compiler must not read accumulators before it (they are written asynchronously) */
template <int N>
__device__ __forceinline__ void fence_regs(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}

#define SM90_ACC8(b)                                                                                        \
    "+f"(d[b + 0]), "+f"(d[b + 1]), "+f"(d[b + 2]), "+f"(d[b + 3]), "+f"(d[b + 4]), "+f"(d[b + 5]), \
        "+f"(d[b + 6]), "+f"(d[b + 7])
#define SM90_ACC64                                                                                          \
    SM90_ACC8(0), SM90_ACC8(8), SM90_ACC8(16), SM90_ACC8(24), SM90_ACC8(32), SM90_ACC8(40), SM90_ACC8(48), \
        SM90_ACC8(56)
#define SM90_DREGS                                                                          \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "               \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "      \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "      \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define SM90_ACC32 SM90_ACC8(0), SM90_ACC8(8), SM90_ACC8(16), SM90_ACC8(24)
#define SM90_DREGS32                                                                        \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "               \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"

/* d (64×128 fp32, this thread's 64) (+)= A (64×16, descriptor) · B (16×128 as 128 K-major rows) */
__device__ __forceinline__ void wgmma_ss(float (&d)[64], uint64_t da, uint64_t db, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " SM90_DREGS ", %64, %65, p, 1, 1, 0, 0;\n}\n"
        : SM90_ACC64
        : "l"(da), "l"(db), "r"(accumulate));
}
/* d += A (64×16 from registers: this thread's 4 bf16 pairs) · B (16×128, MN-major: transposed) */
__device__ __forceinline__ void wgmma_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " SM90_DREGS
        ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : SM90_ACC64
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}
/* the same with n = 64 (d: 64×64 fp32, this thread's 32) */
__device__ __forceinline__ void wgmma_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " SM90_DREGS32
        ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
        : SM90_ACC32
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
/* two floats -> bf16 pair (lo in the low half), round to nearest even */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/* byte offset of 16-byte chunk c (0..D/8-1) of row r in a [D/64 dim halves][rows][128 B] tile */
__device__ __forceinline__ uint32_t swz(int r, int c, int rows) {
    return (uint32_t)((c >> 3) * rows * 128 + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

#endif /* __CUDA_ARCH_FEAT_SM90_ALL */

template <int D, bool CAUSAL>
__global__ void __launch_bounds__(SM90_THREADS, 1) attn_sm90_kernel(const __grid_constant__ Sm90Params p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using L = Sm90Smem<D>;
    constexpr int CPR = D / 8;     /* 16-byte chunks per row */
    constexpr int RPP = 128 / CPR; /* rows a warpgroup copies per pass (8 or 16: the swizzle repeats) */
    constexpr int NO = D / 2;      /* O accumulators per thread (m64nD) */
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    const uint32_t sbase = smem_addr(smem);

    /* block -> (sequence, row tile), heaviest tile first (as attention.cu's block_tile) */
    const int s = blockIdx.x / p.tiles_per_seq;
    const int t = p.tiles_per_seq - 1 - (int)(blockIdx.x % p.tiles_per_seq);
    const int kvh = blockIdx.y;
    const int q0 = p.q_start[s];
    const int qlen = p.q_start[s + 1] - q0;
    /* prompt length: keys >= P are tree-tail keys (causal with tails only) */
    const int P = (CAUSAL && p.tail_len) ? qlen - p.tail_len[s] : qlen;
    const int rows_total = qlen * p.group;
    const int r0 = t * SM90_BM;
    if (r0 >= rows_total) return; /* whole block, before any barrier */

    /* keys this block needs: [0, kend) (causal: its last row's query sees keys <= itself, a tail
     * query too: its ancestors precede it) */
    const int kend = CAUSAL ? (min(r0 + SM90_BM, rows_total) - 1) / p.group + 1 : qlen;

    const uint32_t bar = sbase + L::BAR_OFF; /* fullK[S], fullV[S], emptyK[S], emptyV[S] */
#define FULL_K(st) (bar + 8 * (st))
#define FULL_V(st) (bar + 8 * (SM90_STAGES + (st)))
#define EMPTY_K(st) (bar + 8 * (2 * SM90_STAGES + (st)))
#define EMPTY_V(st) (bar + 8 * (3 * SM90_STAGES + (st)))
    if (threadIdx.x == 0) {
        for (int st = 0; st < SM90_STAGES; st++) {
            mbar_init(FULL_K(st), 128);  /* every producer thread's cp.async arrival */
            mbar_init(FULL_V(st), 128);
            mbar_init(EMPTY_K(st), 256); /* every consumer thread */
            mbar_init(EMPTY_V(st), 256);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    const int wg = threadIdx.x / 128, wt = threadIdx.x % 128;
    const size_t seq_kv = (size_t)q0 * p.kv_stride + (size_t)kvh * D;

    if (wg == 0) {
        /* ================= producer: K/V tiles into the ring ================= */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
        const int n_tiles = (kend + SM90_BN - 1) / SM90_BN;
        const int c16 = wt % CPR, rsub = wt / CPR; /* chunk of a row; rows rsub + RPP*u */
        const size_t step = (size_t)RPP * p.kv_stride;
        const uint16_t *kp = p.k + seq_kv + c16 * 8 + (size_t)rsub * p.kv_stride;
        const uint16_t *vp = p.v + seq_kv + c16 * 8 + (size_t)rsub * p.kv_stride;
        const uint32_t off = sbase + swz(rsub, c16, SM90_BN); /* row rsub + RPP*u: + u * RPP*128 */
        for (int it = 0; it < n_tiles; it++) {
            const int st = it % SM90_STAGES, use = it / SM90_STAGES, kb = it * SM90_BN;
            if (use > 0) mbar_wait(EMPTY_K(st), (use - 1) & 1);
            {
                const uint32_t dst = off + L::K_OFF + st * L::KV_BYTES;
                const uint16_t *src = kp + (size_t)kb * p.kv_stride;
#pragma unroll 4
                for (int u = 0; u < SM90_BN / RPP; u++, src += step) {
                    const bool ok = kb + rsub + RPP * u < kend;
                    cp_async16_zfill(dst + u * RPP * 128, ok ? src : p.k, ok);
                }
            }
            cp_async_arrive(FULL_K(st));
            if (use > 0) mbar_wait(EMPTY_V(st), (use - 1) & 1);
            {
                const uint32_t dst = off + L::V_OFF + st * L::KV_BYTES;
                const uint16_t *src = vp + (size_t)kb * p.kv_stride;
#pragma unroll 4
                for (int u = 0; u < SM90_BN / RPP; u++, src += step) {
                    const bool ok = kb + rsub + RPP * u < kend;
                    cp_async16_zfill(dst + u * RPP * 128, ok ? src : p.v, ok);
                }
            }
            cp_async_arrive(FULL_V(st));
        }
        cp_async_wait_all(); /* nothing in flight when the warp exits */
        return;
    }

    /* ================= consumers: 64 rows each ================= */
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
    const int cw = wg - 1; /* consumer index 0 / 1 */
    const int n_tiles = (kend + SM90_BN - 1) / SM90_BN;
    /* tiles before n_full are visible to every row of the block: causal, all their keys are prompt
     * keys <= the block's first query; full, all are keys of the sequence */
    const int n_full = CAUSAL ? min(r0 / p.group + 1, P) / SM90_BN : qlen / SM90_BN;
    const int rw0 = r0 + cw * 64;
    const uint32_t qs = sbase + cw * (L::Q_BYTES / 2);

    /* Q rows of this warpgroup into shared memory (rows past the sequence zero-filled) */
    {
        const int c16 = wt % CPR, rsub = wt / CPR;
#pragma unroll
        for (int u = 0; u < 64 / RPP; u++) {
            const int j = rsub + RPP * u, r = rw0 + j;
            const bool ok = r < rows_total;
            size_t qoff = 0;
            if (ok) qoff = (size_t)(q0 + r / p.group) * p.q_stride + ((size_t)kvh * p.group + r % p.group) * D;
            cp_async16_zfill(qs + swz(j, c16, 64), p.q + qoff + c16 * 8, ok);
        }
        cp_async_wait_all();
        fence_proxy_async();
        named_sync(3 + cw, 128);
    }

    /* this thread's rows: gid and gid + 8 of its warp's 16; lim: last visible key (-1: none);
     * ta: the row's query index within its sequence's tail (-1: a prompt row) */
    const int warp = wt / 32, lane = wt % 32, gid = lane >> 2, tig = lane & 3;
    int lim[2], ta[2];
    bool rv[2];
    size_t orow[2];
#pragma unroll
    for (int j = 0; j < 2; j++) {
        const int r = rw0 + warp * 16 + gid + 8 * j;
        rv[j] = r < rows_total;
        lim[j] = rv[j] ? (CAUSAL ? r / p.group : qlen - 1) : -1;
        ta[j] = (rv[j] && r / p.group >= P) ? r / p.group - P : -1;
        orow[j] = rv[j] ? ((size_t)(q0 + r / p.group) * p.heads + (size_t)kvh * p.group + r % p.group) * D : 0;
    }
    const int *par = (CAUSAL && p.tail_len) ? p.parent + q0 + P : NULL;

    float o[NO];
#pragma unroll
    for (int i = 0; i < NO; i++) o[i] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    const float sl2 = p.scale_log2;

    /* K-major descriptors: Q (64 rows, dim halves 8 KB apart) and K (128 rows, halves 16 KB apart);
     * within a 128-byte row a k16 step is 32 bytes further (the swizzle applies to the address). */
    const uint64_t qdesc = gmma_desc(qs, 16, 1024);

    /* ping-pong: consumer 0 starts; each holds the turn over {its P·V, its next Q·Kᵀ} */
    const int my_bar = 1 + cw, other_bar = 2 - cw;
    if (cw == 0) named_arrive(my_bar, 256);
    named_sync(my_bar, 256);

    for (int it = 0; it < n_tiles; it++) {
        const int st = it % SM90_STAGES, par_ph = (it / SM90_STAGES) & 1, kb = it * SM90_BN;
        const uint32_t ks = sbase + L::K_OFF + st * L::KV_BYTES;
        const uint32_t vs = sbase + L::V_OFF + st * L::KV_BYTES;

        /* S = Q·Kᵀ */
        float sc[64];
        mbar_wait(FULL_K(st), par_ph);
        fence_proxy_async();
        {
            const uint64_t kdesc = gmma_desc(ks, 16, 1024);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                const uint64_t qa = qdesc + (uint64_t)(((kk >> 2) * 64 * 128 + (kk & 3) * 32) >> 4);
                const uint64_t kbd = kdesc + (uint64_t)(((kk >> 2) * SM90_BN * 128 + (kk & 3) * 32) >> 4);
                wgmma_ss(sc, qa, kbd, kk > 0);
            }
            wgmma_commit();
        }
        named_arrive(other_bar, 256);
        wgmma_wait<0>();
        fence_regs(sc);
        mbar_arrive(EMPTY_K(st));

        /* mask; element 4i+e: row gid + 8*(e>>1), key kb + 8i + 2*tig + (e&1) */
        if (it >= n_full) {
            /* tree tails: bit 2i + (e&1) of tm[rs] = tail key kb + 8i + 2*tig + (e&1) is an ancestor of
             * (or is) the row's tail query; prompt rows and prompt keys keep the causal limit only */
            uint32_t tm[2] = {~0u, ~0u};
            if (CAUSAL && par && kb + SM90_BN > P) { /* block-uniform: this tile holds tail keys */
                const int lob = max(kb - P, 0), hib = kb + SM90_BN - P;
#pragma unroll
                for (int rs = 0; rs < 2; rs++) {
                    if (ta[rs] < 0) continue;
                    uint32_t bits = 0;
                    int x = ta[rs];
                    while (x >= lob) { /* ancestors only decrease: stop below the tile */
                        if (x < hib) {
                            const int c = x + P - kb; /* key within the tile */
                            if (((c >> 1) & 3) == tig) bits |= 1u << (((c >> 3) << 1) | (c & 1));
                        }
                        const int nx = __ldg(par + x);
                        if (nx >= x) break; /* malformed parent (must precede its child) */
                        x = nx;
                    }
                    tm[rs] = bits;
                }
                __syncwarp();
            }
#pragma unroll
            for (int i = 0; i < 16; i++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = kb + 8 * i + 2 * tig + (e & 1);
                    bool vis = key <= lim[e >> 1];
                    if (CAUSAL) vis = vis && (key < P || ((tm[e >> 1] >> (2 * i + (e & 1))) & 1u));
                    if (!vis) sc[4 * i + e] = -INFINITY;
                }
            }
        }
        /* online softmax (log2 units): m = running max of scaled scores, l = running denominator */
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int i = 0; i < 16; i++) {
            mx[0] = fmaxf(mx[0], fmaxf(sc[4 * i], sc[4 * i + 1]));
            mx[1] = fmaxf(mx[1], fmaxf(sc[4 * i + 2], sc[4 * i + 3]));
        }
        float mu[2], alpha[2];
#pragma unroll
        for (int rs = 0; rs < 2; rs++) {
            mx[rs] = fmaxf(mx[rs], __shfl_xor_sync(0xffffffffu, mx[rs], 1));
            mx[rs] = fmaxf(mx[rs], __shfl_xor_sync(0xffffffffu, mx[rs], 2));
            const float mn = fmaxf(m[rs], mx[rs] * sl2);
            mu[rs] = mn == -INFINITY ? 0.f : mn;
            alpha[rs] = ex2(m[rs] - mu[rs]); /* m = -inf (nothing seen yet) -> 0 */
            m[rs] = mn;
            l[rs] *= alpha[rs];
        }
        uint32_t pa[32];
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const float p0 = ex2(fmaf(sc[4 * i], sl2, -mu[0])), p1 = ex2(fmaf(sc[4 * i + 1], sl2, -mu[0]));
            const float p2 = ex2(fmaf(sc[4 * i + 2], sl2, -mu[1])), p3 = ex2(fmaf(sc[4 * i + 3], sl2, -mu[1]));
            l[0] += p0 + p1;
            l[1] += p2 + p3;
            pa[2 * i] = pack_bf16(p0, p1);
            pa[2 * i + 1] = pack_bf16(p2, p3);
        }
#pragma unroll
        for (int i = 0; i < NO / 4; i++) {
            o[4 * i] *= alpha[0], o[4 * i + 1] *= alpha[0];
            o[4 * i + 2] *= alpha[1], o[4 * i + 3] *= alpha[1];
        }

        /* O += P·V: k16 step j takes keys 16j..16j+15, i.e. n8 tiles 2j and 2j+1 of S, whose
         * accumulator pairs are A registers {row gid k 0-7, row gid+8 k 0-7, row gid k 8-15, ...}.
         * V is MN-major: 64-dim halves LBO = 16 KB apart (D 128), 8-key groups SBO = 1 KB apart. */
        mbar_wait(FULL_V(st), par_ph);
        fence_proxy_async();
        named_sync(my_bar, 256);
        {
            const uint64_t vdesc = gmma_desc(vs, SM90_BN * 128, 1024);
            wgmma_fence();
#pragma unroll
            for (int j = 0; j < SM90_BN / 16; j++) {
                const uint32_t a[4] = {pa[4 * j], pa[4 * j + 1], pa[4 * j + 2], pa[4 * j + 3]};
                wgmma_rs(o, a, vdesc + (uint64_t)((j * 16 * 128) >> 4));
            }
            wgmma_commit();
        }
        wgmma_wait<0>();
        fence_regs(o);
        mbar_arrive(EMPTY_V(st));
    }
    if (cw == 0) named_arrive(other_bar, 256); /* consumer 1's last turn; its own last arrive is skipped */

    /* out = O / l (a row that saw no key: 0) */
#pragma unroll
    for (int rs = 0; rs < 2; rs++) {
        l[rs] += __shfl_xor_sync(0xffffffffu, l[rs], 1);
        l[rs] += __shfl_xor_sync(0xffffffffu, l[rs], 2);
    }
#pragma unroll
    for (int rs = 0; rs < 2; rs++) {
        if (!rv[rs]) continue;
        const float inv = l[rs] > 0.f ? 1.f / l[rs] : 0.f;
        uint16_t *op = p.out + orow[rs] + tig * 2;
#pragma unroll
        for (int i = 0; i < NO / 4; i++)
            *reinterpret_cast<uint32_t *>(op + 8 * i) = pack_bf16(o[4 * i + 2 * rs] * inv, o[4 * i + 2 * rs + 1] * inv);
    }
#undef FULL_K
#undef FULL_V
#undef EMPTY_K
#undef EMPTY_V
#endif
}

/* Writes 1 when the sm_90a body of this file is what the device runs (the fat binary may hold
 * other code for the same device: then the launcher must not be used). */
__global__ void attn_sm90_probe(int *flag) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    *flag = 1;
#else
    *flag = 0;
#endif
}

/* ================================ host ======================================================= */

#define SM90_MAX_DEV 64
/* per device: -1 not probed, 0 unavailable, 1 available. Written once per device by
 * attention_sm90_init (context creation), read by every launch: a cache of device facts. */
static int sm90_state[SM90_MAX_DEV];
static int sm90_state_set[SM90_MAX_DEV];

template <int D, bool CAUSAL>
static cudaError_t sm90_set_smem() {
    return cudaFuncSetAttribute(attn_sm90_kernel<D, CAUSAL>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                Sm90Smem<D>::BYTES);
}

template <int D, bool CAUSAL>
static void sm90_launch(cuda_ctx *c, const Sm90Params &p, dim3 grid) {
    attn_sm90_kernel<D, CAUSAL><<<grid, SM90_THREADS, Sm90Smem<D>::BYTES, c->stream>>>(p);
    LAUNCH_CHECK();
}

/* Probes once per device whether the sm_90a kernel runs there and raises its shared-memory
 * limit. Returns 0 (also when unavailable: callers fall back); never fails the context. */
int attention_sm90_init(cuda_ctx *c) {
    if (c->device < 0 || c->device >= SM90_MAX_DEV) return 0;
    if (sm90_state_set[c->device]) return 0;
    int ok = 0;
    if (c->cc_major == 9 && c->cc_minor == 0 && c->workspace) {
        int *flag = (int *)c->workspace, h = 0;
        cudaError_t e = cudaMemsetAsync(flag, 0, sizeof(int), c->stream);
        if (e == cudaSuccess) {
            attn_sm90_probe<<<1, 1, 0, c->stream>>>(flag);
            e = cudaGetLastError();
        }
        if (e == cudaSuccess) e = cudaMemcpyAsync(&h, flag, sizeof(int), cudaMemcpyDeviceToHost, c->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
        if (e == cudaSuccess && h == 1) e = sm90_set_smem<128, true>();
        if (e == cudaSuccess && h == 1) e = sm90_set_smem<64, true>();
        if (e == cudaSuccess && h == 1) e = sm90_set_smem<64, false>();
        if (e != cudaSuccess) (void)cudaGetLastError();
        ok = e == cudaSuccess && h == 1;
    }
    sm90_state[c->device] = ok;
    sm90_state_set[c->device] = 1;
    return 0;
}

int attention_sm90_available(const cuda_ctx *c) {
    return c->device >= 0 && c->device < SM90_MAX_DEV && sm90_state_set[c->device] && sm90_state[c->device];
}

/* Attention of packed sequences whose query rows are their key rows (q_start doubles as k_start):
 * causal (query i sees keys <= i; with tail_len, sequence s's last tail_len[s] rows are a tree over
 * parent[] after its prompt, as cuda_attention_tail_tree) or full (every key; tail_len must be NULL).
 * Instantiated for hd 128 causal and hd 64 causal or full. q rows have stride q_stride elements (out
 * rows heads*hd). Returns -1 without launching when this build or device cannot run it, the shape has
 * no instantiation, or a row is not 16-byte aligned (pointers, kv_stride and q_stride: every row is
 * copied in 16-byte cp.async chunks; callers fall back). */
int attention_sm90_launch(cuda_ctx *c, uint16_t *out, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                          const int *q_start, const int *tail_len, const int *parent, int n_seqs, int max_q, int heads,
                          int kv_heads, int hd, int kv_stride, int q_stride, int causal, float scale_log2) {
    if (!attention_sm90_available(c)) return -1;
    if (!(hd == 128 && causal) && hd != 64) return -1;
    if (tail_len && (!causal || !parent)) return -1;
    if (n_seqs <= 0 || max_q <= 0 || heads <= 0 || kv_heads <= 0 || heads % kv_heads) return -1;
    if (!aligned16(q) || !aligned16(out) || !aligned16(k) || !aligned16(v) || kv_stride % 8 || q_stride % 8) return -1;
    Sm90Params p;
    p.out = out, p.q = q, p.k = k, p.v = v;
    p.q_start = q_start, p.tail_len = tail_len, p.parent = parent;
    p.heads = heads, p.group = heads / kv_heads, p.kv_stride = kv_stride, p.q_stride = q_stride;
    p.scale_log2 = scale_log2;
    p.tiles_per_seq = ceil_div((long long)max_q * p.group, SM90_BM);
    long long blocks = (long long)n_seqs * p.tiles_per_seq;
    CHECK(blocks < (1LL << 31));
    dim3 grid((unsigned)blocks, kv_heads);
    if (hd == 128)
        sm90_launch<128, true>(c, p, grid);
    else if (causal)
        sm90_launch<64, true>(c, p, grid);
    else
        sm90_launch<64, false>(c, p, grid);
    return 0;
}

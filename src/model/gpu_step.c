/* gpu_step.c — batched label scoring on the device: one step = many images, each a prompt plus a
 * label trie, run as one packed batch (see gpu.h for the contract).
 *
 * Host side: a step owns page-locked buffers — the images' fp32 pixels (copied in at add), one
 * int block with every index list the device needs (uploaded in one copy at launch), and the
 * picked log-probabilities (downloaded at the end, then an event). Two steps alternate, so while
 * the device runs one, the host fills the other; device buffers are shared and stream order keeps
 * them safe (a step's uploads queue behind the previous step's kernels).
 *
 * Device side, in stream order: the int block; per vision pass (consecutive images whose tiles fit
 * vision_tiles) the pixels, tower, projector and a gather that packs each image's features into
 * g->feats; the prompt embeddings with the features scattered in; the decoder over the packed
 * sequences (causal prompts, each followed by its trie: cuda_attention_tail_tree); then, in chunks
 * of max_tree rows, only the rows scoring needs (the last prompt row and every trie row of each
 * sequence) through the LM head, log-softmax, and the pick of (row, token) pairs.
 *
 * Only the trie nodes that are some node's parent go through the model: a leaf's own row would
 * give the distribution after it, which no label uses (every label ends in a leaf, EOS here), so
 * the F fed nodes of a sequence are its trie minus the leaves (closed under ancestors, same order).
 * The last decoder layer runs its queries, attention output and MLP only on the R rows the LM
 * head needs (each sequence's last prompt row and its fed trie rows; all rows still give K/V),
 * which leaves those rows in g->h in LM-head order.
 * Int block layout (M packed tokens, S sequences, NI image tokens, R LM-head rows, P pairs):
 *   ids[M] pos[M] qs[S+1] tail[S] parent[M] img_pos[NI] order[NI] rows[R] pick_row[P] pick_col[P]
 *   keep_pos[R] keep_qs[S+1] keep_par[R]
 * with R = S + sum of fed nodes, P = sum of trie sizes (one pair per node); at most 10M + 5S + 2
 * ints (gpu_step_ints).
 */
#include "model/gpu.h"

#include <string.h>

#include "model/gpu_impl.h"
#include "util/mem.h"

#ifndef LLAVA_CUDA

int llava_gpu_step_new(llava_gpu_step **out, llava_gpu *g, llava_err *err) {
    *out = NULL;
    return llava_errf(err, "no CUDA backend");
}
void llava_gpu_step_free(llava_gpu_step *s) { (void)s; }
int llava_gpu_step_add(llava_gpu_step *s, const float *pixels, int n_tiles, int H, int W, const int *ids, int n_ids,
                       const int *tok, const int *parent, int n_nodes, llava_err *err) {
    return llava_errf(err, "no CUDA backend");
}
int llava_gpu_step_launch(llava_gpu_step *s, llava_err *err) { return llava_errf(err, "no CUDA backend"); }
int llava_gpu_step_done(llava_gpu_step *s) { return 1; }
void llava_gpu_step_wait(llava_gpu_step *s) { (void)s; }
const float *llava_gpu_step_result(const llava_gpu_step *s, int i) { return NULL; }
void llava_gpu_step_times(const llava_gpu_step *s, double ms[3]) { ms[0] = ms[1] = ms[2] = 0; }
void llava_gpu_step_clear(llava_gpu_step *s) { (void)s; }

#else

typedef struct {
    int tile0, n_tiles, H, W;
    int n_ids, n_nodes, n_fed; /* prompt tokens; trie nodes; those fed (not leaves) */
    int ids_off, nodes_off; /* into s->ids / s->tok,s->par; nodes_off also indexes the results */
    int n_img;              /* image tokens (= features) */
} step_seq;

struct llava_gpu_step {
    llava_gpu *g;
    step_seq *seq;
    int n_seq, n_tokens, n_tiles, n_nodes;
    int *ids, *tok, *par;   /* host copies of the inputs, in add order */
    int *fed;               /* per trie node: its index among its trie's fed nodes, -1 for a leaf */
    size_t ids_cap, nodes_cap;
    float *pix;             /* page-locked (n_tiles, 3, S, S) */
    size_t pix_cap;         /* floats */
    int *pin_ints;          /* page-locked int block (gpu_step_ints) */
    float *pin_out;         /* page-locked results (step_tokens) */
    cuda_event *ev;
    cuda_event *tev[4];     /* timed: launch, vision done, decoder done, end */
    int launched;
};

int llava_gpu_step_new(llava_gpu_step **out, llava_gpu *g, llava_err *err) {
    *out = NULL;
    llava_gpu_step *s = xcalloc(1, sizeof *s);
    s->g = g;
    s->seq = xcalloc((size_t)g->step_seqs, sizeof *s->seq);
    s->pin_ints = cuda_host_alloc(sizeof(int) * gpu_step_ints(g->step_tokens, g->step_seqs), "step index lists", err);
    s->pin_out = s->pin_ints ? cuda_host_alloc(sizeof(float) * (size_t)g->step_tokens, "step results", err) : NULL;
    if (!s->pin_out) {
        llava_gpu_step_free(s);
        return -1;
    }
    s->ev = cuda_event_new();
    for (int i = 0; i < 4; i++) s->tev[i] = cuda_event_new_timed();
    *out = s;
    return 0;
}

void llava_gpu_step_free(llava_gpu_step *s) {
    if (!s) return;
    if (s->launched) cuda_event_sync(s->ev);
    cuda_host_free(s->pix);
    cuda_host_free(s->pin_ints);
    cuda_host_free(s->pin_out);
    if (s->ev) cuda_event_free(s->ev);
    for (int i = 0; i < 4; i++)
        if (s->tev[i]) cuda_event_free(s->tev[i]);
    free(s->seq), free(s->ids), free(s->tok), free(s->par), free(s->fed);
    free(s);
}

int llava_gpu_step_add(llava_gpu_step *s, const float *pixels, int n_tiles, int H, int W, const int *ids, int n_ids,
                       const int *tok, const int *parent, int n_nodes, llava_err *err) {
    llava_gpu *g = s->g;
    const llava_model *m = g->m;
    const int S = m->cfg.vision.image_size, img = m->cfg.image_token_index;
    CHECK(!s->launched);
    if (n_tiles < 1 || n_tiles > g->vis_tiles)
        return llava_errf(err, "an image of %d tiles exceeds the %d one vision pass holds", n_tiles, g->vis_tiles);
    if (n_nodes < 1) return llava_errf(err, "empty label trie");
    if (n_ids + n_nodes > g->step_tokens)
        return llava_errf(err, "prompt (%d tokens) and labels (%d) exceed the %d tokens of a step", n_ids, n_nodes,
                          g->step_tokens);
    int n_img = 0;
    for (int i = 0; i < n_ids; i++) n_img += ids[i] == img;
    int want = llava_model_image_tokens(m, H, W);
    if (n_img != want)
        return llava_errf(err, "image features and image tokens do not match: tokens: %d, features: %d", n_img, want);
    for (int j = 0; j < n_nodes; j++)
        if (parent[j] >= j || parent[j] < -1) return llava_errf(err, "label trie: node %d has parent %d", j, parent[j]);
    if ((size_t)(s->n_nodes + n_nodes) > s->nodes_cap) {
        s->nodes_cap = (size_t)(s->n_nodes + n_nodes) * 2;
        s->tok = xrealloc(s->tok, sizeof(int) * s->nodes_cap);
        s->par = xrealloc(s->par, sizeof(int) * s->nodes_cap);
        s->fed = xrealloc(s->fed, sizeof(int) * s->nodes_cap);
    }
    /* the nodes fed to the model (those that are a parent), numbered in node order */
    const int n_fed = llava_trie_inner(parent, n_nodes, s->fed + s->n_nodes);
    if (s->n_seq == g->step_seqs || s->n_tokens + n_ids + n_fed > g->step_tokens) return 1;
    /* copy the inputs */
    size_t per = (size_t)3 * S * S, need = (size_t)(s->n_tiles + n_tiles) * per;
    if (need > s->pix_cap) {
        size_t cap = s->pix_cap ? s->pix_cap : per * 16;
        while (cap < need) cap *= 2;
        float *np = cuda_host_alloc(sizeof(float) * cap, "page-locked pixel buffer", err);
        if (!np) return -1;
        if (s->n_tiles) memcpy(np, s->pix, sizeof(float) * (size_t)s->n_tiles * per);
        cuda_host_free(s->pix);
        s->pix = np, s->pix_cap = cap;
    }
    memcpy(s->pix + (size_t)s->n_tiles * per, pixels, sizeof(float) * (size_t)n_tiles * per);
    int ids_len = s->n_seq ? s->seq[s->n_seq - 1].ids_off + s->seq[s->n_seq - 1].n_ids : 0;
    if ((size_t)(ids_len + n_ids) > s->ids_cap) {
        s->ids_cap = (size_t)(ids_len + n_ids) * 2;
        s->ids = xrealloc(s->ids, sizeof(int) * s->ids_cap);
    }
    memcpy(s->ids + ids_len, ids, sizeof(int) * (size_t)n_ids);
    memcpy(s->tok + s->n_nodes, tok, sizeof(int) * (size_t)n_nodes);
    memcpy(s->par + s->n_nodes, parent, sizeof(int) * (size_t)n_nodes);
    step_seq *q = &s->seq[s->n_seq++];
    *q = (step_seq){.tile0 = s->n_tiles, .n_tiles = n_tiles, .H = H, .W = W, .n_ids = n_ids, .n_nodes = n_nodes,
                    .n_fed = n_fed, .ids_off = ids_len, .nodes_off = s->n_nodes, .n_img = n_img};
    s->n_tiles += n_tiles;
    s->n_nodes += n_nodes;
    s->n_tokens += n_ids + n_fed;
    return 0;
}

typedef struct {
    int seq0, n_seq, tiles, order_off, n_order, feat_off;
} vis_pass;

int llava_gpu_step_launch(llava_gpu_step *s, llava_err *err) {
    llava_gpu *g = s->g;
    const llava_model *m = g->m;
    const int Ht = m->cfg.text.hidden, V = m->cfg.text.vocab, img = m->cfg.image_token_index;
    const int S_px = m->cfg.vision.image_size, per_tile = m->clip.n_pos - 1;
    CHECK(!s->launched);
    if (!s->n_seq) return llava_errf(err, "empty step");
    const int M = s->n_tokens, S = s->n_seq, P = s->n_nodes;
    int NI = 0, max_q = 0, max_keep = 0, R = S; /* longest sequence; most kept rows of one sequence */
    for (int i = 0; i < S; i++) {
        const step_seq *sq = &s->seq[i];
        NI += sq->n_img;
        R += sq->n_fed;
        if (sq->n_ids + sq->n_fed > max_q) max_q = sq->n_ids + sq->n_fed;
        if (1 + sq->n_fed > max_keep) max_keep = 1 + sq->n_fed;
    }
    int *b = s->pin_ints;
    int *ids = b, *pos = ids + M, *qs = pos + M, *tail = qs + S + 1, *par = tail + S, *img_pos = par + M;
    int *order = img_pos + NI, *rows = order + NI, *prow = rows + R, *pcol = prow + P;
    int *kpos = pcol + P, *kqs = kpos + R, *kpar = kqs + S + 1;
    const size_t n_ints = (size_t)(kpar + R - b);
    CHECK(n_ints <= gpu_step_ints(g->step_tokens, g->step_seqs));
    /* sequences: tokens, positions, trie tails, image rows, LM-head rows, pick pairs */
    int q0 = 0, ni = 0, r0 = 0;
    for (int i = 0; i < S; i++) {
        const step_seq *sq = &s->seq[i];
        const int *sid = s->ids + sq->ids_off, *tk = s->tok + sq->nodes_off, *pr = s->par + sq->nodes_off;
        const int *fd = s->fed + sq->nodes_off;
        qs[i] = q0;
        tail[i] = sq->n_fed;
        for (int k = 0; k < sq->n_ids; k++) {
            ids[q0 + k] = sid[k];
            pos[q0 + k] = k;
            par[q0 + k] = -1;
            if (sid[k] == img) img_pos[ni++] = q0 + k;
        }
        rows[r0] = q0 + sq->n_ids - 1;
        kpos[r0] = sq->n_ids - 1;
        kqs[i] = r0;
        kpar[r0] = -1;
        for (int j = 0; j < sq->n_nodes; j++) {
            const int pf = pr[j] < 0 ? -1 : fd[pr[j]]; /* the parent's fed index (a parent is fed) */
            prow[sq->nodes_off + j] = r0 + 1 + pf;      /* the row whose distribution scores node j */
            pcol[sq->nodes_off + j] = tk[j];
            if (fd[j] < 0) continue;
            const int f = fd[j], r = q0 + sq->n_ids + f;
            ids[r] = tk[j];
            pos[r] = pf < 0 ? sq->n_ids : pos[q0 + sq->n_ids + pf] + 1;
            par[r] = pf;
            rows[r0 + 1 + f] = r;
            kpos[r0 + 1 + f] = pos[r];
            kpar[r0 + 1 + f] = pf;
        }
        q0 += sq->n_ids + sq->n_fed;
        r0 += 1 + sq->n_fed;
    }
    qs[S] = q0;
    kqs[S] = r0;
    CHECK(q0 == M && ni == NI && r0 == R);
    /* vision passes and the packing order of every image (relative to its pass) */
    vis_pass *vp = xmalloc(sizeof(vis_pass) * (size_t)S);
    int n_vp = 0, no = 0, feat = 0;
    for (int i = 0; i < S;) {
        vis_pass *v = &vp[n_vp++];
        *v = (vis_pass){.seq0 = i, .order_off = no, .feat_off = feat};
        while (i < S && v->tiles + s->seq[i].n_tiles <= g->vis_tiles) v->tiles += s->seq[i++].n_tiles, v->n_seq++;
        const int nl = v->tiles * per_tile; /* the pass's newline row */
        for (int k = v->seq0, sel = 0; k < v->seq0 + v->n_seq; k++) {
            const step_seq *sq = &s->seq[k];
            int cnt = 0;
            int *o = gpu_pack_order(m, sq->n_tiles, sq->H, sq->W, &cnt);
            CHECK(cnt == sq->n_img);
            const int nsel = sq->n_tiles * per_tile;
            for (int e = 0; e < cnt; e++) order[no + e] = o[e] == nsel ? nl : sel + o[e];
            free(o);
            no += cnt;
            sel += nsel;
        }
        v->n_order = no - v->order_off;
        feat += v->n_order;
    }
    CHECK(no == NI);
    /* device work, all asynchronous */
    const int *d = g->d_step;
    const size_t o_ids = 0, o_pos = (size_t)M, o_qs = 2 * (size_t)M, o_tail = o_qs + S + 1, o_par = o_tail + S,
                 o_img = o_par + M, o_order = o_img + NI, o_rows = o_order + NI, o_prow = o_rows + R, o_pcol = o_prow + P,
                 o_kpos = o_pcol + P, o_kqs = o_kpos + R, o_kpar = o_kqs + S + 1;
    cuda_event_record(g->c, s->tev[0]);
    cuda_upload_async(g->c, g->d_step, b, sizeof(int) * n_ints);
    const size_t px = (size_t)3 * S_px * S_px;
    for (int k = 0; k < n_vp; k++) {
        const vis_pass *v = &vp[k];
        gpu_prof_begin(g);
        cuda_upload_async(g->c, g->v_pix, s->pix + (size_t)s->seq[v->seq0].tile0 * px, sizeof(float) * v->tiles * px);
        gpu_vision(g, v->tiles);
        cuda_gather_rows(g->c, g->feats + (size_t)v->feat_off * Ht, g->v_tmp, d + o_order + v->order_off, v->n_order, Ht);
        gpu_prof_end(g, PR_VISION);
    }
    free(vp);
    cuda_event_record(g->c, s->tev[1]);
    gpu_prof_begin(g);
    cuda_embed(g->c, g->x, g->embed, d + o_ids, M, Ht);
    cuda_scatter_rows(g->c, g->x, g->feats, d + o_img, NI, Ht);
    gpu_prof_end(g, PR_EMBED);
    const int keep = gpu_can_keep(g, R);
    gpu_dec_args a = {.n = M, .pos = d + o_pos, .qs = d + o_qs, .tail = d + o_tail, .parent = d + o_par, .n_seqs = S,
                      .max_q = max_q};
    if (keep) {
        a.keep_rows = d + o_rows, a.keep_pos = d + o_kpos, a.keep_qs = d + o_kqs, a.keep_par = d + o_kpar;
        a.n_keep = R, a.max_keep_q = max_keep;
    }
    gpu_decoder(g, &a);
    cuda_event_record(g->c, s->tev[2]);
    gpu_prof_begin(g);
    for (int c0 = 0; c0 < R; c0 += g->max_tree) {
        const int cnt = R - c0 < g->max_tree ? R - c0 : g->max_tree;
        const bf16 *hx = g->h + (size_t)c0 * Ht; /* kept: the rows are already in order */
        if (!keep) {
            cuda_gather_rows(g->c, g->q, g->h, d + o_rows + c0, cnt, Ht);
            hx = g->q;
        }
        cuda_linear_f32out(g->c, g->logits, hx, g->lm_head, cnt, Ht, V);
        cuda_log_softmax(g->c, g->logits, g->logits, cnt, V);
        cuda_pick(g->c, g->d_out, g->logits, d + o_prow, d + o_pcol, P, c0, cnt, V);
    }
    gpu_prof_end(g, PR_HEAD);
    cuda_download_async(g->c, s->pin_out, g->d_out, sizeof(float) * (size_t)P);
    cuda_event_record(g->c, s->tev[3]);
    cuda_event_record(g->c, s->ev);
    s->launched = 1;
    gpu_prof_collect(g); /* profile runs only: waits for the step */
    return 0;
}

int llava_gpu_step_done(llava_gpu_step *s) { return s->launched && cuda_event_done(s->ev); }

void llava_gpu_step_wait(llava_gpu_step *s) {
    if (s->launched) cuda_event_sync(s->ev);
}

void llava_gpu_step_times(const llava_gpu_step *s, double ms[3]) {
    CHECK(s->launched);
    cuda_event_sync(s->ev);
    for (int i = 0; i < 3; i++) ms[i] = cuda_event_ms(s->tev[i], s->tev[i + 1]);
}

const float *llava_gpu_step_result(const llava_gpu_step *s, int i) {
    CHECK(i >= 0 && i < s->n_seq);
    return s->pin_out + s->seq[i].nodes_off;
}

void llava_gpu_step_clear(llava_gpu_step *s) {
    if (s->launched) cuda_event_sync(s->ev);
    s->launched = 0;
    s->n_seq = s->n_tokens = s->n_tiles = s->n_nodes = 0;
}

#endif

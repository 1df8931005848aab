/* mistral.h — the Mistral / Llama decoder: embeddings, pre-norm layers (RMSNorm, RoPE, GQA
 * attention, SwiGLU MLP), final norm and LM head, with a KV cache.
 *
 * The KV cache is reserved once for max_tokens positions; a forward appends n tokens at the
 * cache's current length. Math is fp32 (weights converted from BF16/F16/F32 at load).
 */
#ifndef LLAVA_MISTRAL_H
#define LLAVA_MISTRAL_H

#include "formats/config.h"
#include "formats/safetensors.h"

typedef struct mistral_layer {
    float *attn_norm;           /* (H) */
    float *wq;                  /* (nh*hd, H) */
    float *wk, *wv;             /* (nkv*hd, H) */
    float *wo;                  /* (H, nh*hd) */
    float *mlp_norm;            /* (H) */
    float *w_gate, *w_up;       /* (I, H) */
    float *w_down;              /* (H, I) */
} mistral_layer;

typedef struct mistral_model {
    llava_text_config cfg;
    float *embed;               /* (V, H) */
    mistral_layer *layers;      /* cfg.layers */
    float *norm;                /* (H) */
    float *lm_head;             /* (V, H); == embed when tied */
} mistral_model;

typedef struct mistral_cache {
    int max_tokens, len;
    float *k, *v;               /* (layers, max_tokens, nkv*hd) */
} mistral_cache;

int mistral_load(mistral_model *m, const llava_safetensors *st, const llava_text_config *cfg, llava_err *err);
void mistral_free(mistral_model *m);

int mistral_cache_init(mistral_cache *c, const llava_text_config *cfg, int max_tokens, llava_err *err);
void mistral_cache_free(mistral_cache *c);

/* out (n, H) = embedding rows of ids; ids must be < vocab. */
void mistral_embed(float *out, const mistral_model *m, const int *ids, int n);

/* Runs n tokens (embeddings x (n, H), consumed as scratch) at positions cache->len.., appends
 * their K/V, and writes logits (V) of the last token, or of all n tokens into logits (n, V)
 * when all_logits is set. */
int mistral_forward(float *logits, const mistral_model *m, mistral_cache *cache, float *x, int n, int all_logits,
                    llava_err *err);

/* Label scoring: a token tree after the cached prompt. Token i has parent[i] (-1 = follows the last
 * cached token, else an index < i), sits at position cache->len + depth(i) - 1 and attends to the
 * whole cache plus its ancestors and itself. logits (n, V) for every tree token. The cache length
 * is unchanged afterwards (the tree's K/V are scratch rows past it); needs len + n <= max_tokens. */
int mistral_forward_tree(float *logits, const mistral_model *m, mistral_cache *cache, float *x, int n,
                         const int *parent, llava_err *err);

#endif

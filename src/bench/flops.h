/* flops.h — the arithmetic cost of classifying one image, from the config (docs/bench.md).
 *
 * Counted: multiply-adds of the matrix products as 2 FLOPs each (linear layers and attention's QKᵀ
 * and PV); norms, activations, RoPE, softmax and embedding lookups are left out (< 1%).
 *   vision    = tiles · [2·3P²·Dv·g² (patch conv) + n_run · (2·np·(4·Dv² + 2·Dv·Iv) + 4·np²·Dv)]
 *               with g = image_size/P, np = g² + 1 positions, n_run = layers up to the selected one
 *   projector = 2 · tiles·g² · (Dv·Ht + Ht·Ht)
 *   lm        = 2 · P_LM · T + 2 · T·(T+1) · QD · L     (causal attention, T = prompt tokens)
 *               P_LM = L · (2·Ht·QD + 2·Ht·KD + 3·Ht·I) (the decoder's linear weights)
 *   head      = 2 · Ht · V · (1 + N)                    (logits of the last prompt token + trie)
 *   scoring   = 2 · P_LM · N + 4 · N · T · QD · L       (the label trie of N tokens over the prompt)
 * For W1 (LLaVA-NeXT-Mistral-7B, 5 tiles, T = 2478, 30 labels) this is ≈ 38 TFLOP.
 */
#ifndef LLAVA_BENCH_FLOPS_H
#define LLAVA_BENCH_FLOPS_H

#include "formats/config.h"

typedef struct bench_flops {
    double vision, projector, lm, head, scoring, total;
    double params_lm, params_vision_used; /* weights counted above */
} bench_flops;

void bench_flops_image(bench_flops *f, const llava_config *c, int vision_layers_run, int tiles, int prompt_tokens,
                       int trie_tokens);

#endif

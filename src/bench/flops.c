/* flops.c — per-image FLOP count (formula in flops.h). */
#include "bench/flops.h"

#include <string.h>

void bench_flops_image(bench_flops *f, const llava_config *c, int vision_layers_run, int tiles, int prompt_tokens,
                       int trie_tokens) {
    memset(f, 0, sizeof *f);
    const double Dv = c->vision.hidden, Iv = c->vision.intermediate, P = c->vision.patch;
    const double g = (double)(c->vision.image_size / c->vision.patch), np = g * g + 1;
    const double Ht = c->text.hidden, I = c->text.intermediate, V = c->text.vocab, L = c->text.layers;
    const double QD = (double)c->text.heads * c->text.head_dim, KD = (double)c->text.kv_heads * c->text.head_dim;
    const double T = prompt_tokens, N = trie_tokens, nt = tiles, nl = vision_layers_run;
    f->params_vision_used = 3 * P * P * Dv + nl * (4 * Dv * Dv + 2 * Dv * Iv);
    f->params_lm = L * (2 * Ht * QD + 2 * Ht * KD + 3 * Ht * I);
    f->vision = nt * (2 * 3 * P * P * Dv * g * g + nl * (2 * np * (4 * Dv * Dv + 2 * Dv * Iv) + 4 * np * np * Dv));
    f->projector = 2 * nt * g * g * (Dv * Ht + Ht * Ht);
    f->lm = 2 * f->params_lm * T + 2 * T * (T + 1) * QD * L;
    f->head = 2 * Ht * V * (1 + N);
    f->scoring = 2 * f->params_lm * N + 4 * N * T * QD * L;
    f->total = f->vision + f->projector + f->lm + f->head + f->scoring;
}

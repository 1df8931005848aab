/* randckpt.h — a random-weight LLaVA-NeXT checkpoint for any config, written in C.
 *
 * `llava bench --config DIR --random-weights` measures the 7B shapes without a download: this
 * writes, into an empty directory, config.json (and the image-processor / generation files found next
 * to it), the tokenizer + chat-template files of a donor directory (tests/fixtures/tiny-a: the Mistral
 * tokenizer with <image>), and BF16 safetensors shards with every tensor the loader reads, under the
 * names of the published llava-hf checkpoints (vision_tower.vision_model.*, multi_modal_projector.*,
 * image_newline, language_model.model.*, language_model.lm_head.weight unless tied) — which both
 * model/weights.c and transformers' from_pretrained (v4 and v5) accept, so tools/bench_hf.py can load
 * the same weights — plus the unused CLIP post_layernorm, as in the published files.
 * Values: linear/embedding weights ~ N(0, 0.02) (Irwin–Hall sum of 4 uniforms, scaled: close enough
 * to a normal for a speed test), norm weights 1, biases 0 — transformers' initializer.
 * Shards: one for the vision tower + projector, one for embeddings/norm/LM head, one per decoder
 * layer, so memory stays at one shard (~0.6 GB for 7B) while 15 GB are written; an index json maps
 * names to shards. Deterministic for a seed; filled with OpenMP threads.
 * Never: exits; errors (bad config, I/O, a donor file missing) are -1 with a message.
 */
#ifndef LLAVA_BENCH_RANDCKPT_H
#define LLAVA_BENCH_RANDCKPT_H

#include <stdint.h>

#include "util/status.h"

/* config: a directory holding config.json, or a config.json file. donor_dir: where tokenizer.json,
 * tokenizer_config.json, chat_template.json (and processor/preprocessor/generation configs, when the
 * config's directory lacks them) come from. out_dir must exist. *n_params (may be NULL) receives the
 * parameter count written. */
int bench_random_checkpoint(const char *config, const char *donor_dir, const char *out_dir, uint64_t seed,
                            int64_t *n_params, llava_err *err);

/* Removes the regular files directly inside dir, then dir itself (for the temp dirs bench makes; it
 * does not recurse). Returns 0, or -1 when something could not be removed. */
int bench_remove_flat_dir(const char *dir);

#endif

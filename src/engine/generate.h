/* generate.h — one request end to end on a loaded model: merge image features into the prompt
 * embeddings, prefill, then greedy or sampled decoding with a KV cache until EOS or max_tokens.
 *
 * Sampling follows transformers' order: temperature, then top-p (keeping at least one token),
 * then a draw from the renormalized distribution with a per-request RNG (seeded: same seed, same
 * tokens). temperature <= 0 means greedy (first index among equal maxima, as torch.argmax).
 * Reported log-probabilities are those of the model's raw distribution (before temperature/top-p).
 */
#ifndef LLAVA_GENERATE_H
#define LLAVA_GENERATE_H

#include <stdint.h>

#include "model/gpu.h"
#include "model/llava.h"

#define LLAVA_MAX_TOP_LOGPROBS 20

typedef struct llava_gen_params {
    int max_tokens;        /* new tokens at most */
    float temperature;     /* <= 0: greedy */
    float top_p;           /* (0, 1] */
    uint64_t seed;
    int top_logprobs;      /* 0..LLAVA_MAX_TOP_LOGPROBS alternatives per generated token */
} llava_gen_params;

void llava_gen_params_default(llava_gen_params *p);

typedef struct llava_token_info {
    int id;
    double logprob;
    int n_top;
    int top_ids[LLAVA_MAX_TOP_LOGPROBS];
    double top_logprobs[LLAVA_MAX_TOP_LOGPROBS];
} llava_token_info;

typedef struct llava_gen_result {
    int n_prompt;
    int n_gen;
    llava_token_info *tokens;   /* n_gen */
    float *prompt_logits;       /* (vocab) logits at the last prompt position */
    int vocab;
    const char *finish_reason;  /* "stop" (EOS) or "length" */
    double t_prefill, t_decode; /* seconds */
} llava_gen_result;

/* Called after each generated token (for streaming); may be NULL. A non-zero return ends the
 * generation there with finish_reason "stop" (a stop string was seen, the client went away). */
typedef int (*llava_token_cb)(void *ud, const llava_gen_result *so_far);

/* ids (n_ids) hold image_token_index at image positions; feats[i] (n_feats[i], Ht) fill them in order.
 * gpu: NULL runs on the CPU; otherwise the request runs on the device, whose images were encoded
 * with llava_gpu_encode_image (feats is then ignored). */
int llava_generate(llava_gen_result *res, const llava_model *m, llava_gpu *gpu, const int *ids, int n_ids,
                   float *const *feats,
                   const int *n_feats, int n_images, const llava_gen_params *p, llava_token_cb cb, void *ud,
                   llava_err *err);
void llava_gen_result_free(llava_gen_result *r);

#endif

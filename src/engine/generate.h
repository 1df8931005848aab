/* generate.h — generation: a prompt (with its images) is prefilled, then tokens are decoded greedily
 * or sampled until EOS, max_tokens or the caller stops it. Many sequences at once (llava_generator:
 * continuous batching) or one (llava_generate, the same machinery with one sequence).
 *
 * llava_generator: sequences are added at any time and join the running ones at the next step. A
 * step extends every running sequence by one token and prefills (a chunk of) new prompts in the
 * same packed device pass (llava_gpu_extend); each sequence owns a range of the shared KV cache,
 * sized prompt + max_tokens, from admission to its end. A sequence waits (FIFO) while no range or
 * slot is free. On the CPU each sequence has its own cache and a step runs them one by one.
 * Results are identical to running each request alone, up to bf16 rounding on the GPU.
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
    const char *finish_reason;  /* "stop" (EOS, or the callback ended it) or "length" */
    double t_vision;            /* seconds: image features (part of t_prefill) */
    double t_prefill, t_decode; /* seconds: admission to the first token; first token to the end */
    int batch;                  /* most sequences that shared a step with this one */
} llava_gen_result;

/* Called after each generated token (for streaming); may be NULL. A non-zero return ends the
 * generation there with finish_reason "stop" (a stop string was seen, the client went away). */
typedef int (*llava_token_cb)(void *ud, const llava_gen_result *so_far);

typedef struct llava_gen_image {
    const float *pixels;   /* (n_tiles, 3, S, S) from llava_preprocess of an H x W image */
    int n_tiles, H, W;
} llava_gen_image;

/* One sequence. Everything it points to must stay valid until its done callback. */
typedef struct llava_gen_request {
    const int *ids;        /* prompt (n_ids) with image_token_index at image positions: image i's
                              llava_model_image_tokens(H, W) tokens, images in order */
    int n_ids;
    const llava_gen_image *images;
    int n_images;
    llava_gen_params params;
    llava_token_cb on_token;
    void *ud;              /* for on_token and gone */
    int (*gone)(void *ud); /* optional: non-zero when nobody waits for the answer any more (the
                              client left); a sequence not yet started then ends at once, unrun */
} llava_gen_request;

/* The end of a sequence: err NULL on success (res complete), else what failed (res holds what was
 * generated before). res is valid during the call; the callee may take its arrays (set them NULL). */
typedef void (*llava_gen_done_cb)(void *ud, llava_gen_result *res, const llava_err *err);

typedef struct llava_generator llava_generator;

/* gpu NULL: the CPU. max_seqs: sequences running at once (0: 64 on a GPU, 4 on the CPU; at most
 * LLAVA_GPU_MAX_SEQS). */
int llava_generator_new(llava_generator **out, const llava_model *m, llava_gpu *gpu, int max_seqs, llava_err *err);
/* Queues a sequence (it starts at the first step where it fits). max_tokens beyond the context
 * (the model's, and the KV cache on a GPU) is cut to it. -1 (done is not called) when it can never
 * run: bad ids, images that do not match the image tokens, a prompt longer than the context. */
int llava_generator_add(llava_generator *b, const llava_gen_request *r, llava_gen_done_cb done, void *done_ud,
                        llava_err *err);
/* One step: admits what fits, runs one packed pass, samples, delivers tokens and ends. Returns 0,
 * or -1 when the step failed (its sequences ended with the error; the others go on). */
int llava_generator_step(llava_generator *b, llava_err *err);
/* GPU: at most this many new tokens per step (prompt chunks + one per running sequence; default
 * and maximum the device's step_tokens). Smaller steps bound the running chats' inter-token time
 * while long prompts are prefilled (as vLLM's max_num_batched_tokens). */
void llava_generator_set_max_rows(llava_generator *b, int rows);
int llava_generator_running(const llava_generator *b);
int llava_generator_waiting(const llava_generator *b);
/* Sequences still queued or running end with the error "the generator was shut down". */
void llava_generator_free(llava_generator *b);

/* One request alone, start to end (gpu NULL: the CPU). */
int llava_generate(llava_gen_result *res, const llava_model *m, llava_gpu *gpu, const llava_gen_request *r,
                   llava_err *err);
void llava_gen_result_free(llava_gen_result *r);

#endif

/* queue.h — the engine side of `llava serve`: prepared requests (jobs), a bounded FIFO of them and
 * the one engine worker thread that feeds them to the model: classification jobs to the scheduler
 * (batched label-scoring steps), chat jobs to the generator (every running chat gets a token per
 * step, new ones are prefilled in the same step): continuous batching for both.
 *
 * Owns: the worker thread, the queue, and each job's synchronisation (mutex + condition variable).
 * Assumes: a job arrives fully prepared (prompt ids with expanded image tokens, preprocessed pixels,
 * a label classifier): the HTTP threads do all the validation, the worker only computes.
 * Never: frees a job. The submitter owns it, waits for job->done (llava_job_wait) and frees it; the
 * worker does not touch a job after it set done. A job marked cancelled before it starts is skipped;
 * a running chat job stops generating at its next token.
 */
#ifndef LLAVA_SERVER_QUEUE_H
#define LLAVA_SERVER_QUEUE_H

#include <pthread.h>

#include "engine/classify.h"
#include "engine/generate.h"
#include "model/gpu.h"
#include "model/llava.h"

typedef enum { LLAVA_JOB_CHAT = 0, LLAVA_JOB_CLASSIFY = 1 } llava_job_kind;

typedef struct llava_job_image {
    float *pixels; /* (n_tiles, 3, crop, crop), owned */
    int n_tiles, H, W;
    int n_tokens;  /* image tokens it expands to in ids */
} llava_job_image;

#define LLAVA_JOB_MAX_STOP 16

typedef struct llava_job {
    llava_job_kind kind;
    /* ---- inputs (owned; set before submit, read-only afterwards) ---- */
    int n_images;
    llava_job_image *images;     /* n_images */
    int *ids, n_ids;             /* CHAT: prompt with image_token_index at image positions */
    llava_gen_params gp;         /* CHAT */
    int n_stop;
    char *stop[LLAVA_JOB_MAX_STOP]; /* CHAT: stop strings (trimmed from the text) */
    llava_classifier *clf;       /* CLASSIFY */
    /* ---- outputs (written by the worker under mu) ---- */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, done, failed, cancelled;
    llava_err err;               /* failed: what went wrong */
    llava_token_info *toks;      /* CHAT: tokens that count (up to the one completing a stop string) */
    int n_toks;
    char *text;                  /* CHAT: decoded text of toks, cut before a stop string */
    size_t stable;               /* bytes of text that can no longer change (safe to stream) */
    int stopped;                 /* a stop string ended the text */
    const char *finish_reason;   /* "stop" | "length" once done */
    double *probs;               /* CLASSIFY: (n_labels) */
    double t_submit, t_start, t_end;
    struct llava_job *next;      /* queue link */
} llava_job;

llava_job *llava_job_new(llava_job_kind kind);
void llava_job_free(llava_job *j); /* NULL is fine; the job must not be in the queue */
/* Blocks until the worker finished (or skipped) the job. */
void llava_job_wait(llava_job *j);
/* Marks the job cancelled (the client went away) and waits until the worker no longer uses it. */
void llava_job_cancel_wait(llava_job *j);

typedef struct llava_engine llava_engine;

/* gpu may be NULL (CPU). max_queue: jobs waiting (queued, or chats not yet started), >= 1.
 * max_seqs: chats generating at once (0: the generator's default); max_rows: new tokens per
 * generation step on a GPU (0: the device's step). */
int llava_engine_start(llava_engine **out, const llava_model *m, llava_gpu *gpu, int max_queue, int max_seqs,
                       int max_rows, llava_err *err);
/* 0 queued; -1 the queue is full; -2 the engine is stopping. */
int llava_engine_submit(llava_engine *e, llava_job *j);
/* Jobs waiting and running right now. */
void llava_engine_load(llava_engine *e, int *waiting, int *running);
/* Runs what is queued, then joins the worker and frees the engine. NULL is fine. */
void llava_engine_stop(llava_engine *e);

#endif

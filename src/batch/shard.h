/* shard.h — which part of the inputs one worker of an array job takes, and where it writes.
 *
 * Assignment: input x belongs to shard  llava_id_hash(x.id) mod N  (idset.h: FNV-1a 64 +
 * splitmix64 finalizer, a fixed function of the id bytes). By id, not by position: a worker needs
 * only the same ids, not the same listing order, and when a manifest grows the inputs already done
 * stay in their shard, so every shard can resume. The price is that shard sizes vary by about
 * sqrt(n/N) around n/N (±1% for 10^6 images over 16 shards), which is noise next to node speed.
 *
 * Index source, first match wins:
 *   1. --shard i/N                                   (0 <= i < N)
 *   2. SLURM_ARRAY_TASK_ID: with --shards N the task id is the index (so re-running a few
 *      failed tasks with --array=3,7 keeps their shards); without it N = SLURM_ARRAY_TASK_COUNT
 *      and the index is (TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP (--array=1-16
 *      works too)
 *   3. JOB_COMPLETION_INDEX (Kubernetes Indexed Job) with --shards N (= the Job's completions)
 *   4. AWS_BATCH_JOB_ARRAY_INDEX with --shards N (= the array size)
 *   5. none: one shard (0/1), the output name unchanged.
 * --shard 0/1 forces a single unsharded run inside an array job.
 * Output name of shard i of N > 1: "results.jsonl" -> "results.shard-0003-of-0016.jsonl" (the tag
 * goes before the last extension of the file name; at least 4 digits).
 */
#ifndef LLAVA_BATCH_SHARD_H
#define LLAVA_BATCH_SHARD_H

#include "util/status.h"

typedef struct llava_shard {
    int index, count;    /* 0 <= index < count */
    char source[64];     /* "--shard", "SLURM_ARRAY_TASK_ID", ..., "none" */
} llava_shard;

/* Parses "i/N". */
int llava_shard_parse(llava_shard *s, const char *text, llava_err *err);

/* Resolves the shard from --shard (spec, may be NULL), --shards (shards, 0 when not given) and the
 * environment, read through getenv_fn (NULL = getenv; tests pass their own). Errors: malformed
 * values, an index outside [0, N), an array index without N, --shards without an index. */
int llava_shard_resolve(llava_shard *s, const char *spec, int shards, const char *(*getenv_fn)(const char *),
                        llava_err *err);

/* 1 when the id belongs to the shard. */
int llava_shard_owns(const llava_shard *s, const char *id);

/* Output name for the shard (malloc'd; a plain copy when count == 1). */
char *llava_shard_path(const char *out, int index, int count);

/* Parses a shard file name made by llava_shard_path from base (the merged name): 1 with *index and
 * *count set when name is such a file, else 0. */
int llava_shard_match(const char *base, const char *name, int *index, int *count);

#endif

/* output.h — the results file of a batch run: one record per input, appended, resumable.
 *
 * Records. JSONL (default), one object per line:
 *   {"id","image","label","probability","top_k":[{"label","probability"}],"low_confidence"[,"truth"]}
 *   {"id","image","error"[,"truth"]}                 (an input that could not be classified)
 * CSV (--format csv): a header line, then one row per input with the columns
 *   id,image,label,probability,low_confidence,top_k,truth,error
 * where top_k is the same JSON array as in JSONL (one quoted field) and unused columns are empty.
 * "truth" is the label a .csv/.jsonl manifest gave the input, if any (for `llava eval`).
 *
 * Durability contract:
 *   - every record is built in memory and written with one write(2) on an O_APPEND descriptor, so
 *     a killed process (SIGKILL, OOM killer) leaves only whole records plus at most one torn last
 *     line; a failed or short write is rolled back with ftruncate and ends the run;
 *   - fdatasync runs at most every sync_interval seconds (default 1 s) and at close: a power loss
 *     or kernel crash loses at most that much work, which the next run recomputes. Syncing every
 *     record would cost a disk flush per image (milliseconds, far more on NFS/Lustre) for no gain
 *     against the failure that matters most (the process dying);
 *   - opening takes an exclusive flock: two processes never append to one file (a misconfigured
 *     array job fails loudly instead of interleaving records).
 * Resume: opening an existing file reads its records (the ids are "done"), truncates a torn last
 * line, and appends after the last complete record. A complete line that is not a record is an
 * error (the file is not ours, or was edited): nothing is truncated then.
 */
#ifndef LLAVA_BATCH_OUTPUT_H
#define LLAVA_BATCH_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "batch/idset.h"
#include "batch/inputs.h"
#include "batch/sbuf.h"
#include "util/status.h"

typedef enum { LLAVA_FMT_JSONL = 0, LLAVA_FMT_CSV = 1 } llava_out_format;

/* DEFAULT resumes an existing file (the rule: re-running the same command continues it);
 * RESUME is the same, stated; OVERWRITE truncates it. */
typedef enum { LLAVA_OPEN_DEFAULT = 0, LLAVA_OPEN_RESUME, LLAVA_OPEN_OVERWRITE } llava_open_mode;

#define LLAVA_CSV_HEADER "id,image,label,probability,low_confidence,top_k,truth,error\n"

/* One complete record seen while reading a results file; strings valid during the callback. */
typedef struct llava_record_view {
    const char *id;
    const char *label; /* NULL for error records */
    const char *error; /* NULL for results */
    const char *text;  /* the record's bytes, line end included */
    size_t len;
    int line;          /* 1-based line where it starts */
} llava_record_view;

typedef int (*llava_record_fn)(void *ctx, const llava_record_view *r, llava_err *err);

/* Reads the records in buf[0..len) (a results file of format fmt; what names it in messages),
 * calling fn (may be NULL) for each complete record in order. *good_len gets the byte length of the
 * prefix of whole records: anything after it is a torn last record. Returns 0, -1 when a complete
 * line is not a record (message names what:line) or fn failed. */
int llava_results_parse(const char *buf, size_t len, llava_out_format fmt, const char *what, size_t *good_len,
                        llava_record_fn fn, void *ctx, llava_err *err);

typedef struct llava_output {
    int fd;
    char *path;
    llava_out_format fmt;
    int64_t size;          /* bytes of whole records in the file */
    int64_t n_existing;    /* records found when opened */
    int64_t torn_bytes;    /* bytes of a torn last line truncated when opened */
    double sync_interval;  /* seconds between fdatasyncs; 0 = every record */
    double last_sync;
    int dirty;
} llava_output;

/* Opens (creating it if needed) the results file path. Unless mode is OVERWRITE, the ids of the
 * records already there are added to done (if not NULL) and fn (if not NULL) sees every record.
 * Errors: cannot create/open/lock/read/truncate, a malformed record. */
int llava_output_open(llava_output *o, const char *path, llava_out_format fmt, llava_open_mode mode,
                      llava_idset *done, llava_record_fn fn, void *ctx, llava_err *err);
/* Appends one record (n bytes ending in '\n') with a single write(2). */
int llava_output_write(llava_output *o, const char *rec, size_t n, llava_err *err);
/* fdatasync if anything was written since the last one. */
int llava_output_sync(llava_output *o, llava_err *err);
/* Syncs, unlocks and closes; returns the sync status. Safe on a zeroed or closed output. */
int llava_output_close(llava_output *o, llava_err *err);

/* The record of a classified input: label = argmax, top_k highest probabilities (ties: earlier
 * label first), low_confidence = probability < min_confidence. Appends to b (with the newline). */
void llava_record_result(llava_sbuf *b, llava_out_format fmt, const llava_input *in, const char *const *labels,
                         const double *probs, int n_labels, int top_k, double min_confidence);
void llava_record_error(llava_sbuf *b, llava_out_format fmt, const llava_input *in, const char *error);

#endif

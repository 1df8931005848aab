/* merge.h — joins the per-shard results files of an array job into one file and checks them.
 *
 * Reads every "<out>.shard-IIII-of-NNNN.<ext>" next to out (shard.h naming), in shard order,
 * and writes their records to out (through a temporary file renamed into place, so out is either
 * the old file or the complete new one). Checks: shard files missing from 0..N-1, ids recorded
 * more than once (the first record is kept, later ones are dropped and counted), and, when the
 * inputs are given, inputs without a record (missing) and records of ids that are not inputs
 * (unknown). A torn last line in a shard file (a shard killed mid-write, or still running) is
 * left out and counted. Each finding is printed to log (the first few of each kind) and counted
 * in the report; the caller turns findings into an exit status.
 */
#ifndef LLAVA_BATCH_MERGE_H
#define LLAVA_BATCH_MERGE_H

#include <stdint.h>
#include <stdio.h>

#include "batch/inputs.h"
#include "batch/output.h"
#include "util/status.h"

typedef struct llava_merge_report {
    int shards;             /* N */
    int shard_files;        /* files found and read */
    int missing_shards;     /* indices in 0..N-1 without a file */
    int torn_files;         /* shard files that ended in a torn line */
    int64_t records;        /* records written to out */
    int64_t errors;         /* of which error records */
    int64_t duplicates;     /* records dropped as repeats of an id */
    int64_t missing;        /* inputs without a record (inputs given only) */
    int64_t unknown;        /* records whose id is not an input (inputs given only) */
} llava_merge_report;

/* shards: N, or 0 to take it from the files found (they must agree). inputs may be NULL.
 * overwrite: replace an existing out (else that is an error). Returns 0 when out was written
 * (findings are in rep), -1 when it could not merge (no shard files, mixed N, unreadable or
 * malformed shard file, out exists without overwrite, write failure). */
int llava_merge(const char *out, llava_out_format fmt, int shards, const llava_inputs *inputs, int overwrite,
                FILE *log, llava_merge_report *rep, llava_err *err);

/* 1 when the report has a finding that makes the merged file incomplete or suspect. */
int llava_merge_incomplete(const llava_merge_report *rep);

#endif

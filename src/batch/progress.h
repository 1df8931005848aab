/* progress.h — progress of a batch run on stderr, and the summary at its end.
 *
 * On a terminal: one line redrawn in place at most 10 times a second,
 *   [#########.........]  4123/10000  41%  23.4 img/s  ETA 4m11s  errors 3
 * otherwise (a log file, a Slurm .out): one plain line every `interval` seconds (default 10).
 * Rates count the images of this run only (inputs skipped on resume are "done" but not timed).
 * Summary: images classified, errors, skipped, wall time, images/s and, with a price per hour,
 * the cost per 1000 images = price/3600 * wall / images * 1000, where wall includes model
 * loading (what the machine is billed for).
 * Owns nothing; the caller calls it from one thread.
 */
#ifndef LLAVA_BATCH_PROGRESS_H
#define LLAVA_BATCH_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct llava_progress {
    FILE *out;
    int tty;
    double interval;        /* seconds between log lines when not a tty */
    int64_t total;          /* inputs of this shard */
    int64_t skipped;        /* already in the output when the run started */
    int64_t done, errors;   /* this run */
    double t_start;         /* process start (for the summary's wall time) */
    double t_work;          /* first image (for rates) */
    double t_last;          /* last line drawn */
    double price_per_hour;  /* <= 0: no cost line */
    int drawn;              /* a tty line is on screen */
} llava_progress;

void llava_progress_init(llava_progress *p, FILE *out, int tty, int64_t total, int64_t skipped, double t_start,
                         double price_per_hour);
/* Marks the start of work (after model load). */
void llava_progress_start(llava_progress *p);
/* One input finished (error != 0 when it got an error record); draws when due. */
void llava_progress_add(llava_progress *p, int error);
/* Draws if due (call it while waiting). force draws now. */
void llava_progress_tick(llava_progress *p, int force);
/* Clears the tty line and prints the summary; interrupted adds how many inputs remain. */
void llava_progress_summary(llava_progress *p, int interrupted);

/* "1h02m03s" / "4m11s" / "12.3s" into buf. */
void llava_format_duration(char *buf, size_t n, double s);

#endif

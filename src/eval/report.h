/* report.h — the outputs of `llava eval`: metrics JSON, summary lines, a self-contained HTML report.
 *
 * Owns nothing long-lived: every function reads a computed llava_metrics and the llava_eval_set it
 * came from. The HTML report needs no external assets: the confusion matrix is a PNG (libpng,
 * written to memory) embedded as a base64 data URI, the reliability diagram inline SVG.
 * Labels, ids and error texts are HTML-escaped. Never exits; I/O errors return -1 with err set.
 */
#ifndef LLAVA_EVAL_REPORT_H
#define LLAVA_EVAL_REPORT_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>

#include "eval/metrics.h"
#include "eval/records.h"

/* The metrics document (see docs/eval.md for the fields); at most max_ids missing ids, extra ids
 * and failures are listed (their counts are always complete). Caller frees with cJSON_Delete. */
cJSON *llava_eval_metrics_json(const llava_metrics *m, const llava_eval_set *s, int max_ids);

/* Writes doc (pretty-printed) to path, or to stdout when path is "-". */
int llava_eval_write_json(const char *path, const cJSON *doc, llava_err *err);

/* A few human-readable summary lines. */
void llava_eval_print_summary(FILE *f, const llava_metrics *m, const llava_eval_set *s);

/* The confusion matrix as an RGB PNG in memory: cell x cell pixels per entry (row = truth,
 * column = predicted), shaded by the entry's share of its row, counts drawn in the cells that are
 * large enough. *png is malloc'd (caller frees). Fails when there are no labels or the image
 * would be larger than 4096 pixels a side. */
int llava_eval_confusion_png(unsigned char **png, size_t *len, const llava_metrics *m, int cell, llava_err *err);

/* The cell size llava_eval_write_report uses for n labels (0: too many labels to draw). */
int llava_eval_confusion_cell(int n_labels);

/* Standard base64 (RFC 4648, with padding) of n bytes; NUL-terminated, caller frees. */
char *llava_base64(const unsigned char *data, size_t n);

/* Writes the HTML report to path. */
int llava_eval_write_report(const char *path, const llava_metrics *m, const llava_eval_set *s, llava_err *err);

#endif

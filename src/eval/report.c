/* report.c — metrics JSON, summary lines and the HTML report of `llava eval` (see report.h). */
#include "eval/report.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <string.h>

#include "util/mem.h"

#define PNG_MAX_SIDE 4096

/* ---- JSON ------------------------------------------------------------------------------------- */

static double coverage(const llava_eval_set *s) {
    return s->n_truth ? (double)(s->n_pairs + s->n_failed) / s->n_truth : 0.0;
}

/* NAN becomes null (cJSON prints non-finite numbers as null). */
static void add_num(cJSON *o, const char *key, double v) { cJSON_AddNumberToObject(o, key, v); }

cJSON *llava_eval_metrics_json(const llava_metrics *m, const llava_eval_set *s, int max_ids) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "predictions", s->pred_path ? s->pred_path : "");
    cJSON_AddStringToObject(d, "truth", s->truth_path ? s->truth_path : "");
    add_num(d, "n_truth", s->n_truth);
    add_num(d, "n_predictions", s->n_pred);
    add_num(d, "n_prediction_errors", s->n_pred_errors);
    add_num(d, "n_scored", m->n);
    add_num(d, "n_failed", s->n_failed);
    add_num(d, "n_missing", s->n_missing);
    add_num(d, "n_extra", s->n_extra);
    add_num(d, "coverage", coverage(s));
    add_num(d, "n_correct", m->n_correct);
    add_num(d, "accuracy", m->accuracy);
    add_num(d, "accuracy_over_truth", s->n_truth ? (double)m->n_correct / s->n_truth : 0.0);
    add_num(d, "macro_precision", m->macro_precision);
    add_num(d, "macro_recall", m->macro_recall);
    add_num(d, "macro_f1", m->macro_f1);
    add_num(d, "weighted_precision", m->weighted_precision);
    add_num(d, "weighted_recall", m->weighted_recall);
    add_num(d, "weighted_f1", m->weighted_f1);
    add_num(d, "top_k", m->k);
    add_num(d, "top_k_accuracy", m->top_k_accuracy);
    add_num(d, "top_k_short_lists", m->n_top_k_short);
    add_num(d, "n_calibrated", m->n_calibrated);
    add_num(d, "ece", m->ece);
    add_num(d, "mce", m->mce);

    cJSON *rel = cJSON_AddArrayToObject(d, "reliability");
    for (int b = 0; b < LLAVA_CAL_BINS; b++) {
        const llava_cal_bin *bin = &m->bins[b];
        cJSON *o = cJSON_CreateObject();
        add_num(o, "lo", bin->lo);
        add_num(o, "hi", bin->hi);
        add_num(o, "count", bin->count);
        add_num(o, "mean_confidence", bin->mean_confidence);
        add_num(o, "accuracy", bin->accuracy);
        cJSON_AddItemToArray(rel, o);
    }

    cJSON *labels = cJSON_AddArrayToObject(d, "labels");
    cJSON *pc = cJSON_AddArrayToObject(d, "per_class");
    cJSON *cm = cJSON_AddArrayToObject(d, "confusion_matrix");
    for (int i = 0; i < m->n_labels; i++) {
        const llava_class_metrics *c = &m->cls[i];
        cJSON_AddItemToArray(labels, cJSON_CreateString(m->labels[i]));
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "label", m->labels[i]);
        add_num(o, "precision", c->precision);
        add_num(o, "recall", c->recall);
        add_num(o, "f1", c->f1);
        add_num(o, "support", c->support);
        add_num(o, "predicted", c->predicted);
        cJSON_AddItemToArray(pc, o);
        cJSON_AddItemToArray(cm, cJSON_CreateIntArray(m->confusion + (size_t)i * m->n_labels, m->n_labels));
    }

    cJSON *miss = cJSON_AddArrayToObject(d, "missing_ids");
    for (int i = 0; i < s->n_missing && i < max_ids; i++)
        cJSON_AddItemToArray(miss, cJSON_CreateString(s->truth[s->missing[i]].id));
    cJSON *extra = cJSON_AddArrayToObject(d, "extra_ids");
    for (int i = 0; i < s->n_extra && i < max_ids; i++)
        cJSON_AddItemToArray(extra, cJSON_CreateString(s->pred[s->extra[i]].id));
    cJSON *fail = cJSON_AddArrayToObject(d, "failures");
    for (int i = 0; i < s->n_failed && i < max_ids; i++) {
        const llava_pred_rec *r = &s->pred[s->failed[i]];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", r->id);
        if (r->image) cJSON_AddStringToObject(o, "image", r->image);
        cJSON_AddStringToObject(o, "error", r->error);
        cJSON_AddItemToArray(fail, o);
    }
    cJSON_AddStringToObject(d, "definitions",
                            "scikit-learn: accuracy_score, precision_recall_fscore_support(zero_division=0), "
                            "confusion_matrix (rows = truth, columns = predicted, labels sorted); ECE over 10 "
                            "equal-width bins (lo, hi] of the predicted label's probability");
    return d;
}

int llava_eval_write_json(const char *path, const cJSON *doc, llava_err *err) {
    char *text = cJSON_Print(doc);
    if (!text) return llava_errf(err, "metrics JSON: out of memory");
    int to_stdout = strcmp(path, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(path, "w");
    if (!f) {
        free(text);
        return llava_errf(err, "%s: cannot write the metrics: %s", path, strerror(errno));
    }
    fputs(text, f);
    fputc('\n', f);
    free(text);
    int bad = ferror(f);
    if (to_stdout) bad |= fflush(f) != 0;
    else bad |= fclose(f) != 0;
    if (bad) return llava_errf(err, "%s: write error while writing the metrics", to_stdout ? "stdout" : path);
    return 0;
}

void llava_eval_print_summary(FILE *f, const llava_metrics *m, const llava_eval_set *s) {
    fprintf(f, "scored      %d of %d truth ids (failed %d, missing %d; %d predictions not in truth), coverage %.4f\n",
            m->n, s->n_truth, s->n_failed, s->n_missing, s->n_extra, coverage(s));
    fprintf(f, "accuracy    %.4f (%d/%d)\n", m->accuracy, m->n_correct, m->n);
    fprintf(f, "macro       precision %.4f  recall %.4f  f1 %.4f  (%d labels)\n", m->macro_precision, m->macro_recall,
            m->macro_f1, m->n_labels);
    fprintf(f, "weighted    precision %.4f  recall %.4f  f1 %.4f\n", m->weighted_precision, m->weighted_recall,
            m->weighted_f1);
    fprintf(f, "top-%-7d %.4f\n", m->k, m->top_k_accuracy);
    if (m->n_calibrated)
        fprintf(f, "ECE         %.4f (MCE %.4f; %d bins, %d predictions with a probability)\n", m->ece, m->mce,
                LLAVA_CAL_BINS, m->n_calibrated);
    else
        fprintf(f, "ECE         n/a (no prediction has a probability)\n");
}

/* ---- PNG -------------------------------------------------------------------------------------- */

/* 3x5 digit glyphs, one 3-bit row per entry, most significant bit on the left. */
static const unsigned char DIGITS[10][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1},
    {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7},
};

int llava_eval_confusion_cell(int n_labels) {
    if (n_labels <= 0) return 0;
    int c = 640 / n_labels;
    if (c > 48) c = 48;
    if (c < 1) c = 1;
    return (long)c * n_labels > PNG_MAX_SIDE ? 0 : c;
}

static void put_px(unsigned char *img, int W, int x, int y, const unsigned char rgb[3]) {
    memcpy(img + ((size_t)y * W + x) * 3, rgb, 3);
}

/* Draws count centred in the cell at (x0, y0) when the digits fit. */
static void draw_count(unsigned char *img, int W, int x0, int y0, int cell, int count, const unsigned char rgb[3]) {
    char txt[16];
    int nd = snprintf(txt, sizeof txt, "%d", count);
    int s = 3;
    while (s > 0 && ((nd * 4 - 1) * s > cell - 4 || 5 * s > cell - 4)) s--;
    if (s == 0) return;
    int w = (nd * 4 - 1) * s, h = 5 * s;
    int ox = x0 + (cell - w) / 2, oy = y0 + (cell - h) / 2;
    for (int d = 0; d < nd; d++)
        for (int gy = 0; gy < 5; gy++)
            for (int gx = 0; gx < 3; gx++)
                if (DIGITS[txt[d] - '0'][gy] & (4 >> gx))
                    for (int yy = 0; yy < s; yy++)
                        for (int xx = 0; xx < s; xx++)
                            put_px(img, W, ox + (d * 4 + gx) * s + xx, oy + gy * s + yy, rgb);
}

typedef struct membuf {
    unsigned char *p;
    size_t len, cap;
    char msg[256];
} membuf;

static void png_mem_write(png_structp png, png_bytep data, png_size_t n) {
    membuf *b = png_get_io_ptr(png);
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void png_mem_flush(png_structp png) { (void)png; }

static void png_on_error(png_structp png, png_const_charp msg) {
    membuf *b = png_get_error_ptr(png);
    snprintf(b->msg, sizeof b->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

int llava_eval_confusion_png(unsigned char **png_out, size_t *len_out, const llava_metrics *m, int cell,
                             llava_err *err) {
    *png_out = NULL;
    *len_out = 0;
    int L = m->n_labels;
    if (L <= 0) return llava_errf(err, "confusion matrix: no labels to draw");
    if (cell < 1 || (long)cell * L > PNG_MAX_SIDE)
        return llava_errf(err, "confusion matrix: %d labels x %d px is larger than %d px a side", L, cell,
                          PNG_MAX_SIDE);
    int W = cell * L;
    unsigned char *img = llava_try_malloc((size_t)W * W * 3, "the confusion matrix image", err);
    if (!img) return -1;
    static const unsigned char grid[3] = {214, 214, 214}, dark[3] = {20, 20, 20}, light[3] = {255, 255, 255};
    for (int i = 0; i < L; i++) {
        int support = m->cls[i].support;
        for (int j = 0; j < L; j++) {
            int count = m->confusion[(size_t)i * L + j];
            double frac = support ? (double)count / support : 0.0;
            double t = count ? 0.08 + 0.92 * frac : 0.0; /* a non-zero cell is never white */
            unsigned char rgb[3] = {(unsigned char)lround(255 + t * (8 - 255)), (unsigned char)lround(255 + t * (48 - 255)),
                                    (unsigned char)lround(255 + t * (107 - 255))};
            for (int y = 0; y < cell; y++)
                for (int x = 0; x < cell; x++) {
                    int edge = cell >= 6 && (x == cell - 1 || y == cell - 1);
                    put_px(img, W, j * cell + x, i * cell + y, edge ? grid : rgb);
                }
            if (cell >= 10) draw_count(img, W, j * cell, i * cell, cell - 1, count, t > 0.5 ? light : dark);
        }
    }

    png_bytep *rows = xmalloc(sizeof(png_bytep) * (size_t)W);
    for (int y = 0; y < W; y++) rows[y] = img + (size_t)y * W * 3;
    membuf *b = xcalloc(1, sizeof *b);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, b, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc = -1;
    if (!png || !info) {
        llava_errf(err, "confusion matrix: libpng could not start");
    } else if (setjmp(png_jmpbuf(png))) {
        llava_errf(err, "confusion matrix: libpng: %s", b->msg);
    } else {
        png_set_write_fn(png, b, png_mem_write, png_mem_flush);
        png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)W, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        png_write_image(png, rows);
        png_write_end(png, NULL);
        rc = 0;
    }
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    free(rows);
    free(img);
    if (rc == 0) {
        *png_out = b->p;
        *len_out = b->len;
    } else {
        free(b->p);
    }
    free(b);
    return rc;
}

char *llava_base64(const unsigned char *data, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = xmalloc(4 * ((n + 2) / 3) + 1), *o = out;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8 | data[i + 2];
        *o++ = A[v >> 18 & 63], *o++ = A[v >> 12 & 63], *o++ = A[v >> 6 & 63], *o++ = A[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)data[i] << 16;
        *o++ = A[v >> 18 & 63], *o++ = A[v >> 12 & 63], *o++ = '=', *o++ = '=';
    } else if (n - i == 2) {
        unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8;
        *o++ = A[v >> 18 & 63], *o++ = A[v >> 12 & 63], *o++ = A[v >> 6 & 63], *o++ = '=';
    }
    *o = 0;
    return out;
}

/* ---- HTML ------------------------------------------------------------------------------------- */

static void esc(FILE *f, const char *s) {
    for (; *s; s++) switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
}

static void num(FILE *f, double v) {
    if (isnan(v)) fputs("&ndash;", f);
    else fprintf(f, "%.4f", v);
}

static void row_num(FILE *f, const char *name, double v) {
    fprintf(f, "<tr><th>%s</th><td>", name);
    num(f, v);
    fputs("</td></tr>\n", f);
}

static void row_int(FILE *f, const char *name, int v) { fprintf(f, "<tr><th>%s</th><td>%d</td></tr>\n", name, v); }

/* The reliability diagram: accuracy bars per bin, mean confidence marks, the diagonal. */
static void reliability_svg(FILE *f, const llava_metrics *m) {
    const int S = 300, X0 = 44, Y0 = 12; /* plot square and its offset */
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" role=\"img\" "
               "aria-label=\"reliability diagram\">\n", X0 + S + 12, Y0 + S + 44);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fff\" stroke=\"#999\"/>\n", X0, Y0, S, S);
    for (int t = 0; t <= 5; t++) {
        double v = t / 5.0;
        int px = X0 + (int)lround(v * S), py = Y0 + S - (int)lround(v * S);
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#eee\"/>", X0, py, X0 + S, py);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">%.1f</text>", X0 - 4, py + 4, v);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%.1f</text>\n", px, Y0 + S + 15, v);
    }
    for (int b = 0; b < LLAVA_CAL_BINS; b++) {
        const llava_cal_bin *bin = &m->bins[b];
        if (!bin->count) continue;
        double x = X0 + bin->lo * S, w = (bin->hi - bin->lo) * S;
        double ya = Y0 + S - bin->accuracy * S, yc = Y0 + S - bin->mean_confidence * S;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#2b6cb0\" stroke=\"#fff\">"
                   "<title>(%.1f, %.1f]: %d predictions, accuracy %.4f, mean confidence %.4f</title></rect>\n",
                x, ya, w, Y0 + S - ya, bin->lo, bin->hi, bin->count, bin->accuracy, bin->mean_confidence);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#c53030\" stroke-width=\"2\"/>\n", x,
                yc, x + w, yc);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#555\" stroke-dasharray=\"4 3\"/>\n", X0, Y0 + S,
            X0 + S, Y0);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">confidence (probability of the "
               "predicted label)</text>\n", X0 + S / 2, Y0 + S + 34);
    fprintf(f, "<text x=\"12\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 12 %d)\">"
               "accuracy</text>\n</svg>\n", Y0 + S / 2, Y0 + S / 2);
}

static void confusion_section(FILE *f, const llava_metrics *m, llava_err *err) {
    int L = m->n_labels, cell = llava_eval_confusion_cell(L);
    fputs("<h2>Confusion matrix</h2>\n<p>Rows are the true labels, columns the predicted labels (sorted). A cell's "
          "shade is its share of the row (the recall of the row's label on the diagonal).</p>\n", f);
    unsigned char *png = NULL;
    size_t len = 0;
    if (!cell) {
        fprintf(f, "<p>(%d labels: too many to draw; the counts are in the metrics JSON.)</p>\n", L);
        return;
    }
    if (llava_eval_confusion_png(&png, &len, m, cell, err)) {
        fputs("<p>(not drawn: ", f);
        esc(f, err->msg);
        fputs(")</p>\n", f);
        return;
    }
    char *b64 = llava_base64(png, len);
    free(png);
    int show = cell >= 9, fs = cell - 3 < 12 ? cell - 3 : 12;
    fprintf(f, "<div class=\"cm\" style=\"grid-template-columns: auto repeat(%d, %dpx); grid-template-rows: auto "
               "repeat(%d, %dpx)\">\n<div class=\"corner\">truth &darr; / predicted &rarr;</div>\n", L, cell, L, cell);
    for (int j = 0; j < L; j++) {
        fprintf(f, "<div class=\"cl\" style=\"grid-column:%d; font-size:%dpx\" title=\"", j + 2, fs);
        esc(f, m->labels[j]);
        fputs("\">", f);
        if (show) esc(f, m->labels[j]);
        fputs("</div>", f);
    }
    fputc('\n', f);
    fprintf(f, "<img alt=\"confusion matrix\" style=\"grid-column: 2 / span %d; grid-row: 2 / span %d; width:%dpx; "
               "height:%dpx\" src=\"data:image/png;base64,%s\">\n", L, L, cell * L, cell * L, b64);
    free(b64);
    for (int i = 0; i < L; i++) {
        fprintf(f, "<div class=\"rl\" style=\"grid-row:%d; font-size:%dpx; line-height:%dpx\" title=\"", i + 2, fs,
                cell);
        esc(f, m->labels[i]);
        fputs("\">", f);
        if (show) esc(f, m->labels[i]);
        fputs("</div>", f);
    }
    fputs("\n</div>\n", f);
    if (L <= 40) {
        fputs("<table class=\"num\"><tr><th>truth \\ predicted</th>", f);
        for (int j = 0; j < L; j++) {
            fputs("<th>", f);
            esc(f, m->labels[j]);
            fputs("</th>", f);
        }
        fputs("</tr>\n", f);
        for (int i = 0; i < L; i++) {
            fputs("<tr><th>", f);
            esc(f, m->labels[i]);
            fputs("</th>", f);
            for (int j = 0; j < L; j++)
                fprintf(f, "<td%s>%d</td>", i == j ? " class=\"diag\"" : "", m->confusion[(size_t)i * L + j]);
            fputs("</tr>\n", f);
        }
        fputs("</table>\n", f);
    }
}

static void id_list(FILE *f, const char *title, int n, const llava_eval_set *s, const int *idx, int from_truth) {
    if (!n) return;
    fprintf(f, "<details><summary>%s: %d</summary><p class=\"ids\">", title, n);
    for (int i = 0; i < n && i < 200; i++) {
        if (i) fputs(", ", f);
        esc(f, from_truth ? s->truth[idx[i]].id : s->pred[idx[i]].id);
    }
    if (n > 200) fprintf(f, " &hellip; (%d more)", n - 200);
    fputs("</p></details>\n", f);
}

int llava_eval_write_report(const char *path, const llava_metrics *m, const llava_eval_set *s, llava_err *err) {
    FILE *f = fopen(path, "w");
    if (!f) return llava_errf(err, "%s: cannot write the report: %s", path, strerror(errno));
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>llava eval report</title>\n"
          "<style>body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1a202c}table{border-collapse:collapse;"
          "margin:8px 0 16px}th,td{border:1px solid #cbd5e0;padding:3px 8px;text-align:right}th{background:#f7fafc}"
          "td.l,th.l{text-align:left}.cm{display:grid;margin:8px 0 16px}.cm img{image-rendering:pixelated}"
          ".corner{grid-row:1;grid-column:1;font-size:11px;align-self:end;padding:4px}"
          ".cl{grid-row:1;writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;overflow:hidden;"
          "max-height:160px;text-align:left}.rl{grid-column:1;white-space:nowrap;overflow:hidden;max-width:220px;"
          "text-align:right;padding-right:4px}table.num td{min-width:2em}td.diag{background:#ebf4ff;font-weight:600}"
          ".ids{font-family:monospace;font-size:12px}</style></head><body>\n<h1>llava eval report</h1>\n<p>predictions: <code>",
          f);
    esc(f, s->pred_path ? s->pred_path : "");
    fputs("</code><br>truth: <code>", f);
    esc(f, s->truth_path ? s->truth_path : "");
    fputs("</code></p>\n<h2>Summary</h2>\n<table>\n", f);
    row_int(f, "truth ids", s->n_truth);
    row_int(f, "scored (prediction with a label)", m->n);
    row_int(f, "failed (error record)", s->n_failed);
    row_int(f, "missing (no prediction)", s->n_missing);
    row_int(f, "extra (prediction not in truth)", s->n_extra);
    row_num(f, "coverage", coverage(s));
    row_num(f, "accuracy", m->accuracy);
    row_num(f, "accuracy over all truth ids", s->n_truth ? (double)m->n_correct / s->n_truth : 0.0);
    row_num(f, "macro precision", m->macro_precision);
    row_num(f, "macro recall", m->macro_recall);
    row_num(f, "macro F1", m->macro_f1);
    row_num(f, "weighted precision", m->weighted_precision);
    row_num(f, "weighted recall", m->weighted_recall);
    row_num(f, "weighted F1", m->weighted_f1);
    char name[64];
    snprintf(name, sizeof name, "top-%d accuracy", m->k);
    row_num(f, name, m->top_k_accuracy);
    row_num(f, "expected calibration error (ECE)", m->ece);
    row_num(f, "maximum calibration error (MCE)", m->mce);
    fputs("</table>\n<p>Definitions follow scikit-learn (zero_division=0: an undefined precision or recall counts as "
          "0). Accuracy, F1 and the matrix cover the scored predictions; coverage = (scored + failed) / truth ids.</p>\n",
          f);
    id_list(f, "missing ids", s->n_missing, s, s->missing, 1);
    id_list(f, "extra ids", s->n_extra, s, s->extra, 0);
    if (s->n_failed) {
        fprintf(f, "<details><summary>failures: %d</summary><table><tr><th class=\"l\">id</th><th class=\"l\">image"
                   "</th><th class=\"l\">error</th></tr>\n", s->n_failed);
        for (int i = 0; i < s->n_failed && i < 200; i++) {
            const llava_pred_rec *r = &s->pred[s->failed[i]];
            fputs("<tr><td class=\"l\">", f);
            esc(f, r->id);
            fputs("</td><td class=\"l\">", f);
            esc(f, r->image ? r->image : "");
            fputs("</td><td class=\"l\">", f);
            esc(f, r->error);
            fputs("</td></tr>\n", f);
        }
        fputs("</table></details>\n", f);
    }

    fputs("<h2>Per class</h2>\n<table><tr><th class=\"l\">label</th><th>precision</th><th>recall</th><th>F1</th>"
          "<th>support</th><th>predicted</th></tr>\n", f);
    for (int i = 0; i < m->n_labels; i++) {
        const llava_class_metrics *c = &m->cls[i];
        fputs("<tr><td class=\"l\">", f);
        esc(f, m->labels[i]);
        fputs("</td><td>", f);
        num(f, c->precision);
        fputs("</td><td>", f);
        num(f, c->recall);
        fputs("</td><td>", f);
        num(f, c->f1);
        fprintf(f, "</td><td>%d</td><td>%d</td></tr>\n", c->support, c->predicted);
    }
    fputs("</table>\n", f);

    llava_err png_err = {{0}};
    if (m->n_labels) confusion_section(f, m, &png_err);

    fputs("<h2>Calibration</h2>\n", f);
    if (!m->n_calibrated) {
        fputs("<p>No prediction carries a probability.</p>\n", f);
    } else {
        fprintf(f, "<p>%d predictions in %d equal-width bins of the predicted label's probability, bin (lo, hi]. "
                   "ECE = &Sigma; |bin|/n &middot; |accuracy &minus; mean confidence| = ", m->n_calibrated, LLAVA_CAL_BINS);
        num(f, m->ece);
        fputs(". Bars: accuracy; red marks: mean confidence; dashed: perfect calibration.</p>\n"
              "<table><tr><th>bin</th><th>count</th><th>mean confidence</th><th>accuracy</th><th>gap</th></tr>\n", f);
        for (int b = 0; b < LLAVA_CAL_BINS; b++) {
            const llava_cal_bin *bin = &m->bins[b];
            fprintf(f, "<tr><td>(%.1f, %.1f]</td><td>%d</td><td>", bin->lo, bin->hi, bin->count);
            num(f, bin->mean_confidence);
            fputs("</td><td>", f);
            num(f, bin->accuracy);
            fputs("</td><td>", f);
            num(f, bin->count ? fabs(bin->accuracy - bin->mean_confidence) : NAN);
            fputs("</td></tr>\n", f);
        }
        fputs("</table>\n", f);
        reliability_svg(f, m);
    }
    fputs("</body></html>\n", f);
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad) return llava_errf(err, "%s: write error while writing the report", path);
    return 0;
}

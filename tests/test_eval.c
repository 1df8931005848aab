/* test_eval.c — `llava eval`: metrics on hand-computed cases, the file readers and their errors,
 * the join, the PNG/base64/JSON/HTML outputs, and the CLI entry (cmd_eval, included below so it
 * is tested before it is wired into main.c).
 *
 * Every expected number is written out by hand with its arithmetic in a comment; the definitions
 * are scikit-learn's (zero_division=0), see src/eval/metrics.h.
 */
#include <png.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

#include "eval/metrics.h"
#include "eval/records.h"
#include "eval/report.h"
#include "formats/json.h"
#include "util/mem.h"

#include "cli/cmd_eval.c"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-12)
#define EXPECT_NEAR(a, b) EXPECT(NEAR(a, b), "%s = %.15g, expected %.15g", #a, (double)(a), (double)(b))
#define EXPECT_INT(a, b) EXPECT((a) == (b), "%s = %d, expected %d", #a, (int)(a), (int)(b))
#define EXPECT_STR(a, b)                                                                       \
    EXPECT((a) && strcmp((a), (b)) == 0, "%s = \"%s\", expected \"%s\"", #a, (a) ? (a) : "(null)", \
           (b))

static int compute(llava_metrics *m, int n, const char **truth, const char **pred, const double *prob) {
    llava_eval_pairs in = {.n = n, .truth = truth, .pred = pred, .prob = prob, .k = 1};
    llava_err err = {{0}};
    int rc = llava_metrics_compute(m, &in, &err);
    if (rc) printf("INFO compute: %s\n", err.msg);
    return rc;
}

/* expected confusion matrix, row-major L x L */
static void expect_matrix(const llava_metrics *m, const int *want, int L, const char *name) {
    EXPECT(m->n_labels == L, "%s: %d labels, expected %d", name, m->n_labels, L);
    if (m->n_labels != L) return;
    for (int i = 0; i < L * L; i++)
        EXPECT(m->confusion[i] == want[i], "%s: C[%d][%d] = %d, expected %d", name, i / L, i % L, m->confusion[i],
               want[i]);
}

/* ---- metrics ---------------------------------------------------------------------------------- */

static void test_basic(void) {
    /* truth a a a b b c, pred a a b b c c */
    const char *t[] = {"a", "a", "a", "b", "b", "c"}, *p[] = {"a", "a", "b", "b", "c", "c"};
    llava_metrics m;
    EXPECT(compute(&m, 6, t, p, NULL) == 0, "basic: compute");
    /* rows truth a,b,c; columns predicted a,b,c */
    const int want[] = {2, 1, 0, /* a: a a -> a, a -> b */
                        0, 1, 1, /* b: b -> b, b -> c */
                        0, 0, 1};
    expect_matrix(&m, want, 3, "basic");
    EXPECT_STR(m.labels[0], "a");
    EXPECT_STR(m.labels[2], "c");
    EXPECT_INT(m.n_correct, 4);
    EXPECT_NEAR(m.accuracy, 4.0 / 6);
    /* a: TP 2, predicted 2, support 3 -> P 1, R 2/3, F1 2*2/(3+2) = 0.8 */
    EXPECT_NEAR(m.cls[0].precision, 1.0);
    EXPECT_NEAR(m.cls[0].recall, 2.0 / 3);
    EXPECT_NEAR(m.cls[0].f1, 0.8);
    EXPECT_INT(m.cls[0].support, 3);
    /* b: TP 1, predicted 2, support 2 -> P 0.5, R 0.5, F1 2/(2+2) = 0.5 */
    EXPECT_NEAR(m.cls[1].precision, 0.5);
    EXPECT_NEAR(m.cls[1].recall, 0.5);
    EXPECT_NEAR(m.cls[1].f1, 0.5);
    /* c: TP 1, predicted 2, support 1 -> P 0.5, R 1, F1 2/(1+2) = 2/3 */
    EXPECT_NEAR(m.cls[2].precision, 0.5);
    EXPECT_NEAR(m.cls[2].recall, 1.0);
    EXPECT_NEAR(m.cls[2].f1, 2.0 / 3);
    EXPECT_INT(m.cls[2].predicted, 2);
    /* macro: P (1 + .5 + .5)/3 = 2/3; R (2/3 + .5 + 1)/3 = 13/18; F1 (.8 + .5 + 2/3)/3 = 59/90 */
    EXPECT_NEAR(m.macro_precision, 2.0 / 3);
    EXPECT_NEAR(m.macro_recall, 13.0 / 18);
    EXPECT_NEAR(m.macro_f1, 59.0 / 90);
    /* weighted by support 3,2,1: P (3*1 + 2*.5 + 1*.5)/6 = 0.75; R (2 + 1 + 1)/6 = 2/3 (= accuracy);
     * F1 (3*.8 + 2*.5 + 2/3)/6 = (2.4 + 1 + 2/3)/6 = 61/90 */
    EXPECT_NEAR(m.weighted_precision, 0.75);
    EXPECT_NEAR(m.weighted_recall, 2.0 / 3);
    EXPECT_NEAR(m.weighted_f1, 61.0 / 90);
    EXPECT_INT(llava_metrics_label_index(&m, "b"), 1);
    EXPECT_INT(llava_metrics_label_index(&m, "zz"), -1);
    EXPECT(isnan(m.ece) && m.n_calibrated == 0, "basic: no probabilities -> ECE undefined");
    llava_metrics_free(&m);
}

static void test_label_never_predicted(void) {
    /* truth cat cat dog bird, pred cat dog dog dog: "bird" is never predicted */
    const char *t[] = {"cat", "cat", "dog", "bird"}, *p[] = {"cat", "dog", "dog", "dog"};
    llava_metrics m;
    EXPECT(compute(&m, 4, t, p, NULL) == 0, "never predicted: compute");
    /* labels sorted: bird, cat, dog */
    const int want[] = {0, 0, 1,  /* bird -> dog */
                        0, 1, 1,  /* cat -> cat, cat -> dog */
                        0, 0, 1}; /* dog -> dog */
    expect_matrix(&m, want, 3, "never predicted");
    EXPECT_STR(m.labels[0], "bird");
    /* bird: TP 0, predicted 0 -> P = 0/0 = 0 (zero_division=0), R 0/1 = 0, F1 0 */
    EXPECT_NEAR(m.cls[0].precision, 0.0);
    EXPECT_NEAR(m.cls[0].recall, 0.0);
    EXPECT_NEAR(m.cls[0].f1, 0.0);
    EXPECT_INT(m.cls[0].predicted, 0);
    EXPECT_INT(m.cls[0].support, 1);
    /* cat: TP 1, predicted 1, support 2 -> P 1, R .5, F1 2/3; dog: TP 1, predicted 3, support 1 ->
     * P 1/3, R 1, F1 2/(1+3) = .5 */
    EXPECT_NEAR(m.cls[1].f1, 2.0 / 3);
    EXPECT_NEAR(m.cls[2].precision, 1.0 / 3);
    EXPECT_NEAR(m.cls[2].f1, 0.5);
    EXPECT_NEAR(m.accuracy, 0.5); /* 2/4 */
    /* macro: P (0 + 1 + 1/3)/3 = 4/9; R (0 + .5 + 1)/3 = .5; F1 (0 + 2/3 + .5)/3 = 7/18 */
    EXPECT_NEAR(m.macro_precision, 4.0 / 9);
    EXPECT_NEAR(m.macro_recall, 0.5);
    EXPECT_NEAR(m.macro_f1, 7.0 / 18);
    /* weighted (support 1, 2, 1): P (0 + 2 + 1/3)/4 = 7/12; R .5; F1 (0 + 4/3 + .5)/4 = 11/24 */
    EXPECT_NEAR(m.weighted_precision, 7.0 / 12);
    EXPECT_NEAR(m.weighted_recall, 0.5);
    EXPECT_NEAR(m.weighted_f1, 11.0 / 24);
    llava_metrics_free(&m);
}

static void test_zero_support(void) {
    /* truth x x y y, pred x z y z: "z" is predicted but absent from truth (support 0) */
    const char *t[] = {"x", "x", "y", "y"}, *p[] = {"x", "z", "y", "z"};
    llava_metrics m;
    EXPECT(compute(&m, 4, t, p, NULL) == 0, "zero support: compute");
    const int want[] = {1, 0, 1,  /* x -> x, x -> z */
                        0, 1, 1,  /* y -> y, y -> z */
                        0, 0, 0}; /* z never true */
    expect_matrix(&m, want, 3, "zero support");
    EXPECT_STR(m.labels[2], "z");
    /* z: TP 0, predicted 2, support 0 -> P 0/2 = 0, R 0/0 = 0 (zero_division=0), F1 0 */
    EXPECT_INT(m.cls[2].support, 0);
    EXPECT_INT(m.cls[2].predicted, 2);
    EXPECT_NEAR(m.cls[2].precision, 0.0);
    EXPECT_NEAR(m.cls[2].recall, 0.0);
    EXPECT_NEAR(m.cls[2].f1, 0.0);
    /* x, y: TP 1, predicted 1, support 2 -> P 1, R .5, F1 2/3 */
    EXPECT_NEAR(m.cls[0].f1, 2.0 / 3);
    /* macro: P (1 + 1 + 0)/3 = 2/3; R (.5 + .5 + 0)/3 = 1/3; F1 (2/3 + 2/3 + 0)/3 = 4/9 */
    EXPECT_NEAR(m.macro_precision, 2.0 / 3);
    EXPECT_NEAR(m.macro_recall, 1.0 / 3);
    EXPECT_NEAR(m.macro_f1, 4.0 / 9);
    /* weighted (support 2, 2, 0): P (2 + 2 + 0)/4 = 1; R (1 + 1)/4 = .5; F1 (4/3 + 4/3)/4 = 2/3 */
    EXPECT_NEAR(m.weighted_precision, 1.0);
    EXPECT_NEAR(m.weighted_recall, 0.5);
    EXPECT_NEAR(m.weighted_f1, 2.0 / 3);
    llava_metrics_free(&m);
}

static void test_top_k(void) {
    const char *t[] = {"a", "b", "c", "d", "a"}, *p[] = {"a", "a", "a", "a", "b"};
    const char *l1[] = {"a", "b", "c"}, *l4[] = {"a"};
    const char *const *lists[] = {l1, l1, l1, l4, NULL}; /* the 5th pair has no list at all */
    const int n_lists[] = {3, 3, 3, 1, 0};
    /* truth a: rank 1; b: rank 2; c: rank 3; d: not in a list of 1; a: no list */
    const int k_of[] = {1, 2, 3, 5}, correct[] = {1, 2, 3, 3}, short_[] = {1, 2, 2, 5};
    for (int i = 0; i < 4; i++) {
        llava_eval_pairs in = {.n = 5, .truth = t, .pred = p, .top_k = lists, .n_top_k = n_lists, .k = k_of[i]};
        llava_metrics m;
        llava_err err = {{0}};
        EXPECT(llava_metrics_compute(&m, &in, &err) == 0, "top-k %d: %s", k_of[i], err.msg);
        EXPECT(m.n_top_k_correct == correct[i], "top-%d: %d correct, expected %d", k_of[i], m.n_top_k_correct,
               correct[i]);
        /* k=1: 1/5; k=2: 2/5; k=3 and 5: 3/5 */
        EXPECT_NEAR(m.top_k_accuracy, correct[i] / 5.0);
        /* short lists: k=1: only the missing one; k=2,3: + [a]; k=5: all five */
        EXPECT(m.n_top_k_short == short_[i], "top-%d: %d short lists, expected %d", k_of[i], m.n_top_k_short,
               short_[i]);
        llava_metrics_free(&m);
    }
    llava_metrics m;
    EXPECT(compute(&m, 5, t, p, NULL) == 0 && !m.has_top_k && isnan(m.top_k_accuracy),
           "no lists: top-k accuracy undefined");
    llava_metrics_free(&m);
    llava_eval_pairs bad = {.n = 5, .truth = t, .pred = p, .k = 0};
    llava_err err = {{0}};
    EXPECT(llava_metrics_compute(&m, &bad, &err) == -1 && strstr(err.msg, "k must be"), "k = 0 rejected: %s",
           err.msg);
    llava_metrics_free(&m);
}

static void test_calibration(void) {
    EXPECT_INT(llava_cal_bin_of(0.0), 0);
    EXPECT_INT(llava_cal_bin_of(0.1), 0);   /* (0, 0.1] incl. 0 */
    EXPECT_INT(llava_cal_bin_of(0.1000001), 1);
    EXPECT_INT(llava_cal_bin_of(0.3), 2);   /* 0.3 is the upper edge of (0.2, 0.3] */
    EXPECT_INT(llava_cal_bin_of(0.7), 6);   /* 0.7*10 rounds to 7.000000000000001; the edge test keeps it in bin 6 */
    EXPECT_INT(llava_cal_bin_of(0.55), 5);
    EXPECT_INT(llava_cal_bin_of(1.0), 9);

    /* pair:    1     2     3     4    5     6    7    8
     * prob:   .95  .85   .85   .3   .25   0    1    NAN
     * correct: y    y     n     y    n     n    y    y       */
    const char *t[] = {"a", "a", "a", "a", "a", "a", "a", "a"};
    const char *p[] = {"a", "a", "b", "a", "b", "b", "a", "a"};
    const double prob[] = {0.95, 0.85, 0.85, 0.3, 0.25, 0.0, 1.0, NAN};
    llava_metrics m;
    EXPECT(compute(&m, 8, t, p, prob) == 0, "calibration: compute");
    EXPECT_INT(m.n_calibrated, 7);
    /* bin 9 (.9, 1]: .95 y, 1 y -> count 2, conf .975, acc 1, gap .025 */
    EXPECT_INT(m.bins[9].count, 2);
    EXPECT_NEAR(m.bins[9].mean_confidence, 0.975);
    EXPECT_NEAR(m.bins[9].accuracy, 1.0);
    /* bin 8 (.8, .9]: .85 y, .85 n -> count 2, conf .85, acc .5, gap .35 */
    EXPECT_INT(m.bins[8].count, 2);
    EXPECT_NEAR(m.bins[8].mean_confidence, 0.85);
    EXPECT_NEAR(m.bins[8].accuracy, 0.5);
    /* bin 2 (.2, .3]: .3 y, .25 n -> count 2, conf .275, acc .5, gap .225 */
    EXPECT_INT(m.bins[2].count, 2);
    EXPECT_NEAR(m.bins[2].mean_confidence, 0.275);
    /* bin 0 [0, .1]: 0 n -> count 1, conf 0, acc 0, gap 0 */
    EXPECT_INT(m.bins[0].count, 1);
    EXPECT_NEAR(m.bins[0].accuracy, 0.0);
    EXPECT(m.bins[5].count == 0 && isnan(m.bins[5].accuracy), "empty bin: count 0, accuracy undefined");
    EXPECT_NEAR(m.bins[3].lo, 0.3);
    EXPECT_NEAR(m.bins[3].hi, 0.4);
    /* ECE = (2*.025 + 2*.35 + 2*.225 + 1*0)/7 = (.05 + .7 + .45)/7 = 1.2/7; MCE = .35 */
    EXPECT(fabs(m.ece - 1.2 / 7) < 1e-12, "ECE = %.15g, expected %.15g", m.ece, 1.2 / 7);
    EXPECT(fabs(m.mce - 0.35) < 1e-12, "MCE = %.15g, expected 0.35", m.mce);
    /* accuracy counts all 8 pairs (the one without a probability too): 5 correct of 8 */
    EXPECT_NEAR(m.accuracy, 5.0 / 8);
    llava_metrics_free(&m);

    const double badp[] = {0.5, 1.5};
    llava_err err = {{0}};
    llava_eval_pairs in = {.n = 2, .truth = t, .pred = p, .prob = badp, .k = 1};
    EXPECT(llava_metrics_compute(&m, &in, &err) == -1 && strstr(err.msg, "outside [0, 1]"),
           "probability 1.5 rejected: %s", err.msg);
    llava_metrics_free(&m);
}

static void test_empty_and_one(void) {
    llava_metrics m;
    EXPECT(compute(&m, 0, NULL, NULL, NULL) == 0, "empty: compute");
    EXPECT(m.n_labels == 0 && m.accuracy == 0.0 && m.macro_f1 == 0.0 && m.weighted_f1 == 0.0,
           "empty: no labels, zero scores");
    llava_metrics_free(&m);
    /* one perfectly predicted pair: every score 1 */
    const char *t[] = {"only"};
    EXPECT(compute(&m, 1, t, t, NULL) == 0, "one: compute");
    EXPECT(m.n_labels == 1 && m.confusion[0] == 1 && m.macro_f1 == 1.0 && m.weighted_precision == 1.0,
           "one: perfect");
    llava_metrics_free(&m);
}

/* ---- files ------------------------------------------------------------------------------------ */

static char tmpdir[64];

/* A path in the temp dir; valid until 8 more calls. */
static const char *tpath(const char *name) {
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static char *owned[256];
static int n_owned;

/* Writes text to name in the temp dir; the returned path lives until the end of the test. */
static const char *put(const char *name, const char *text) {
    char *p = xstrdup(tpath(name));
    CHECK(n_owned < 256);
    owned[n_owned++] = p;
    FILE *f = fopen(p, "wb");
    CHECK(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static void test_truth_csv(void) {
    llava_eval_set s = {0};
    llava_err err = {{0}};
    const char *p = put("t1.csv", "\xEF\xBB\xBFid,label\r\n"
                                  "1,cat\r\n"
                                  "\"2\",\"big dog\"\r\n"
                                  "\r\n"
                                  "3,\"say \"\"hi\"\", ok\"\r\n"
                                  "4 , fish \r\n"
                                  "\"5\",\"multi\nline\"\r\n"
                                  "6,last");
    EXPECT(llava_eval_load_truth(&s, p, &err) == 0, "truth csv: %s", err.msg);
    EXPECT_INT(s.n_truth, 6);
    if (s.n_truth == 6) {
        EXPECT_STR(s.truth[0].id, "1");
        EXPECT_STR(s.truth[1].label, "big dog");
        EXPECT_STR(s.truth[2].label, "say \"hi\", ok");
        EXPECT_STR(s.truth[3].id, "4");
        EXPECT_STR(s.truth[3].label, "fish");
        EXPECT_STR(s.truth[4].label, "multi\nline");
        EXPECT_INT(s.truth[4].line, 7); /* header 1, rows 2 3, blank 4, rows 5 6 7 */
        EXPECT_INT(s.truth[5].line, 9); /* the quoted newline took line 8 */
        EXPECT_STR(s.truth[5].label, "last");
    }
    llava_eval_set_free(&s);

    /* no header; the classify manifest form id,path,label */
    p = put("t2.csv", "a,cat\nb,img/b.jpg,dog\n");
    EXPECT(llava_eval_load_truth(&s, p, &err) == 0, "truth csv without header: %s", err.msg);
    EXPECT(s.n_truth == 2 && !strcmp(s.truth[0].label, "cat") && !strcmp(s.truth[1].label, "dog"),
           "truth csv without header: labels");
    llava_eval_set_free(&s);

    /* header with other columns, in another order */
    p = put("t3.csv", "path,LABEL,Id\nx.jpg,cat,7\n");
    EXPECT(llava_eval_load_truth(&s, p, &err) == 0 && s.n_truth == 1 && !strcmp(s.truth[0].id, "7") &&
               !strcmp(s.truth[0].label, "cat"),
           "truth csv with reordered header: %s", err.msg);
    llava_eval_set_free(&s);

    /* JSONL truth, integer ids */
    p = put("t4.jsonl", "{\"id\": 17, \"label\": \"cat\"}\n\n{\"id\": \"x\", \"label\": \"dog\", \"extra\": 1}\n");
    EXPECT(llava_eval_load_truth(&s, p, &err) == 0 && s.n_truth == 2 && !strcmp(s.truth[0].id, "17") &&
               s.truth[1].line == 3,
           "truth jsonl: %s", err.msg);
    llava_eval_set_free(&s);

    /* TSV */
    p = put("t5.tsv", "id\tlabel\na\tcat, maybe\n");
    EXPECT(llava_eval_load_truth(&s, p, &err) == 0 && s.n_truth == 1 && !strcmp(s.truth[0].label, "cat, maybe"),
           "truth tsv: %s", err.msg);
    llava_eval_set_free(&s);
}

static void test_pred_files(void) {
    llava_eval_set s = {0};
    llava_err err = {{0}};
    const char *p = put("p1.jsonl",
                        "{\"id\":\"a\",\"image\":\"a.jpg\",\"label\":\"cat\",\"probability\":0.9,\"top_k\":[{\"label\":"
                        "\"cat\",\"probability\":0.9},{\"label\":\"dog\",\"probability\":0.1}],\"low_confidence\":false}\n"
                        "{\"id\":\"b\",\"image\":\"b.jpg\",\"error\":\"cannot decode b.jpg\"}\r\n"
                        "{\"id\":3,\"label\":\"dog\"}\n");
    EXPECT(llava_eval_load_pred(&s, p, &err) == 0, "pred jsonl: %s", err.msg);
    EXPECT_INT(s.n_pred, 3);
    EXPECT_INT(s.n_pred_errors, 1);
    if (s.n_pred == 3) {
        EXPECT(s.pred[0].n_top_k == 2 && !strcmp(s.pred[0].top_k[1], "dog"), "pred jsonl: top_k read");
        EXPECT_NEAR(s.pred[0].prob, 0.9);
        EXPECT_STR(s.pred[0].image, "a.jpg");
        EXPECT(s.pred[1].error && !s.pred[1].label, "pred jsonl: error record");
        EXPECT(!strcmp(s.pred[2].id, "3") && isnan(s.pred[2].prob) && !s.pred[2].top_k, "pred jsonl: minimal record");
    }
    llava_eval_set_free(&s);

    p = put("p2.csv", "id,image,label,probability,error\na,a.jpg,cat,0.25,\nb,b.jpg,,,decode failed\n");
    EXPECT(llava_eval_load_pred(&s, p, &err) == 0 && s.n_pred == 2, "pred csv with header: %s", err.msg);
    if (s.n_pred == 2) {
        EXPECT(!strcmp(s.pred[0].label, "cat") && NEAR(s.pred[0].prob, 0.25), "pred csv: label and probability");
        EXPECT(s.pred[1].error && !strcmp(s.pred[1].error, "decode failed"), "pred csv: error column");
    }
    llava_eval_set_free(&s);

    /* the CSV of classify --format csv: top_k is a JSON list in one quoted field */
    p = put("p4.csv", "id,image,label,probability,low_confidence,top_k,truth,error\n"
                      "a,a.jpg,cat,0.875,false,\"[{\"\"label\"\":\"\"cat\"\",\"\"probability\"\":0.875},"
                      "{\"\"label\"\":\"\"dog, big\"\",\"\"probability\"\":0.125}]\",dog,\n"
                      "b,b.jpg,,,,,cat,cannot decode b.jpg\n");
    EXPECT(llava_eval_load_pred(&s, p, &err) == 0 && s.n_pred == 2, "classify csv: %s", err.msg);
    if (s.n_pred == 2) {
        EXPECT(s.pred[0].n_top_k == 2 && !strcmp(s.pred[0].top_k[1], "dog, big") && NEAR(s.pred[0].prob, 0.875),
               "classify csv: top_k and probability");
        EXPECT_STR(s.pred[0].truth, "dog");
        EXPECT(s.pred[1].error && !strcmp(s.pred[1].truth, "cat"), "classify csv: error row with truth");
    }
    llava_eval_set_free(&s);

    p = put("p3.csv", "a,cat,0.5\nb,dog\n"); /* no header, probability optional per row */
    EXPECT(llava_eval_load_pred(&s, p, &err) == 0 && s.n_pred == 2 && NEAR(s.pred[0].prob, 0.5) &&
               isnan(s.pred[1].prob),
           "pred csv without header: %s", err.msg);
    llava_eval_set_free(&s);
}

/* Loading (pred, truth) fails with a message containing want. */
static void expect_load_error(const char *pred, const char *truth, const char *want, const char *what) {
    llava_eval_set s;
    llava_err err = {{0}};
    int rc = llava_eval_set_load(&s, pred, truth, &err);
    EXPECT(rc == -1 && strstr(err.msg, want), "%s: rc %d, message \"%s\" should contain \"%s\"", what, rc, err.msg,
           want);
    llava_eval_set_free(&s);
}

static void test_load_errors(void) {
    const char *good_pred = put("gp.jsonl", "{\"id\":\"a\",\"label\":\"cat\"}\n");
    const char *good_truth = put("gt.csv", "a,cat\n");
    char want[512];

    snprintf(want, sizeof want, "%s: cannot open", tpath("nope.jsonl"));
    expect_load_error(tpath("nope.jsonl"), good_truth, want, "missing predictions");
    snprintf(want, sizeof want, "%s: cannot open", tpath("nope.csv"));
    expect_load_error(good_pred, tpath("nope.csv"), want, "missing truth");

    const char *p = put("bad1.jsonl", "{\"id\":\"a\",\"label\":\"cat\"}\n\n{\"id\":\"b\",\"label\":\n{\"id\":\"c\"}\n");
    snprintf(want, sizeof want, "%s:3: invalid JSON", p);
    expect_load_error(p, good_truth, want, "bad JSON line 3");
    p = put("bad2.jsonl", "{\"id\":\"a\",\"label\":\"cat\"}\n{\"id\":\"b\",\"lab");
    expect_load_error(p, good_truth, ":2: invalid JSON near column", "torn last line");
    expect_load_error(p, good_truth, "no newline", "torn last line is named");
    p = put("bad3.jsonl", "{\"id\":\"a\",\"label\":\"cat\"} x\n");
    expect_load_error(p, good_truth, ":1: invalid JSON", "trailing text after the object");
    p = put("bad4.jsonl", "[1, 2]\n");
    expect_load_error(p, good_truth, ":1: expected a JSON object", "array line");
    p = put("bad5.jsonl", "{\"id\":\"a\"}\n");
    expect_load_error(p, good_truth, ":1: record \"a\" has neither", "no label, no error");
    p = put("bad6.jsonl", "{\"label\":\"cat\"}\n");
    expect_load_error(p, good_truth, ":1: record without an \"id\"", "no id");
    p = put("bad7.jsonl", "{\"id\":\"a\",\"label\":\"cat\",\"probability\":1.5}\n");
    expect_load_error(p, good_truth, ":1: \"probability\" must be a number in [0, 1]", "probability 1.5");
    p = put("bad8.jsonl", "{\"id\":\"a\",\"label\":\"cat\",\"top_k\":\"cat\"}\n");
    expect_load_error(p, good_truth, ":1: \"top_k\" must be a list", "top_k not a list");
    p = put("bad9.jsonl", "{\"id\":\"a\",\"label\":\"cat\",\"top_k\":[{\"probability\":1}]}\n");
    expect_load_error(p, good_truth, ":1: top_k entry 1 has no \"label\"", "top_k entry without label");
    p = put("bad10.jsonl", "{\"id\":\"a\",\"label\":3}\n");
    expect_load_error(p, good_truth, ":1: \"label\" must be a string", "label of wrong type");
    p = put("bad11.jsonl", "{\"id\":\"a\",\"label\":\"cat\"}\n{\"id\":\"b\",\"label\":\"cat\"}\n"
                           "{\"id\":\"a\",\"label\":\"dog\"}\n");
    expect_load_error(p, good_truth, ":3: duplicate id \"a\" (first on line 1)", "duplicate prediction id");

    const char *t = put("badt1.csv", "id,label\na,cat\nb,dog\na,dog\n");
    snprintf(want, sizeof want, "%s:4: duplicate id \"a\" (first on line 2)", t);
    expect_load_error(good_pred, t, want, "duplicate truth id");
    t = put("badt2.csv", "a,cat\nb,\"dog\n");
    expect_load_error(good_pred, t, ":2: unterminated quoted field", "unterminated quote");
    t = put("badt3.csv", "a,\"cat\"x\n");
    expect_load_error(good_pred, t, ":1: unexpected text after a closing quote", "text after quote");
    t = put("badt4.csv", "a,b,c,d\n");
    expect_load_error(good_pred, t, ":1: expected id,label (or id,path,label), found 4 fields", "4 fields");
    t = put("badt5.csv", "id,label\na,cat\nb\n");
    expect_load_error(good_pred, t, ":3: 1 fields, but the header has 2", "short row");
    t = put("badt6.csv", "a,\n");
    expect_load_error(good_pred, t, ":1: empty label", "empty label");
    t = put("badt7.csv", "id,label\n\n");
    expect_load_error(good_pred, t, "no records", "empty truth");
    t = put("badt8.jsonl", "{\"id\":\"a\",\"label\":\"x\"}\n{\"id\":\"a\",\"label\":\"y\"}\n");
    expect_load_error(good_pred, t, ":2: duplicate id \"a\"", "duplicate truth id (jsonl)");
    p = put("badp1.csv", "a,cat,high\n");
    expect_load_error(p, good_truth, ":1: probability \"high\" is not a number", "csv probability not a number");
    p = put("badp2.csv", "a\n");
    expect_load_error(p, good_truth, ":1: expected id,label[,probability]", "csv prediction of one field");
}

static void test_truth_from_pred(void) {
    /* classify copies the manifest label into "truth": a (cat -> cat), b (failed, truth dog),
     * c (no truth: extra), d (dog -> cat) */
    const char *p = put("tp.jsonl", "{\"id\":\"a\",\"label\":\"cat\",\"truth\":\"cat\"}\n"
                                    "{\"id\":\"b\",\"error\":\"bad\",\"truth\":\"dog\"}\n"
                                    "{\"id\":\"c\",\"label\":\"cat\"}\n"
                                    "{\"id\":\"d\",\"label\":\"cat\",\"truth\":\"dog\"}\n");
    llava_eval_set s;
    llava_err err = {{0}};
    EXPECT(llava_eval_set_load(&s, p, NULL, &err) == 0, "truth from predictions: %s", err.msg);
    EXPECT(s.n_truth == 3 && s.n_pairs == 2 && s.n_failed == 1 && s.n_extra == 1 && s.n_missing == 0,
           "truth from predictions: %d truth, %d pairs, %d failed, %d extra", s.n_truth, s.n_pairs, s.n_failed,
           s.n_extra);
    EXPECT(s.truth_path && strstr(s.truth_path, "\"truth\" fields"), "truth from predictions: named");
    llava_eval_set_free(&s);
    p = put("tp2.jsonl", "{\"id\":\"a\",\"label\":\"cat\"}\n");
    EXPECT(llava_eval_set_load(&s, p, NULL, &err) == -1 && strstr(err.msg, "no --truth file given"),
           "no truth anywhere: %s", err.msg);
    llava_eval_set_free(&s);
}

static void test_join(void) {
    const char *p = put("j.jsonl", "{\"id\":\"b\",\"label\":\"dog\",\"probability\":0.5,\"top_k\":[{\"label\":\"dog\"},"
                                   "{\"label\":\"cat\"}]}\n"
                                   "{\"id\":\"c\",\"image\":\"c.jpg\",\"error\":\"too large\"}\n"
                                   "{\"id\":\"e\",\"label\":\"cat\"}\n"
                                   "{\"id\":\"a\",\"label\":\"cat\",\"probability\":0.8}\n");
    const char *t = put("j.csv", "id,label\na,cat\nb,cat\nc,dog\nd,dog\n");
    llava_eval_set s;
    llava_err err = {{0}};
    EXPECT(llava_eval_set_load(&s, p, t, &err) == 0, "join: %s", err.msg);
    /* pairs in truth order: a (cat -> cat), b (cat -> dog); c failed; d missing; e extra */
    EXPECT_INT(s.n_pairs, 2);
    EXPECT_INT(s.n_failed, 1);
    EXPECT_INT(s.n_missing, 1);
    EXPECT_INT(s.n_extra, 1);
    if (s.n_pairs == 2 && s.n_failed == 1 && s.n_missing == 1 && s.n_extra == 1) {
        EXPECT(!strcmp(s.pair_truth_label[0], "cat") && !strcmp(s.pair_pred_label[0], "cat") &&
                   !strcmp(s.pair_pred_label[1], "dog"),
               "join: pair labels");
        EXPECT_NEAR(s.pair_prob[0], 0.8);
        EXPECT(s.pair_n_top_k[0] == 1 && !strcmp(s.pair_top_k[0][0], "cat"), "join: no top_k -> [label]");
        EXPECT(s.pair_n_top_k[1] == 2 && !strcmp(s.pair_top_k[1][1], "cat"), "join: top_k kept");
        EXPECT_INT(s.min_top_k, 1);
        EXPECT_STR(s.pred[s.failed[0]].id, "c");
        EXPECT_STR(s.truth[s.missing[0]].id, "d");
        EXPECT_STR(s.pred[s.extra[0]].id, "e");
    }

    llava_metrics m;
    llava_eval_pairs pairs = llava_eval_set_pairs(&s, 2);
    EXPECT(llava_metrics_compute(&m, &pairs, &err) == 0, "join metrics: %s", err.msg);
    /* accuracy 1/2; top-2: a (list [cat]) yes, b (list [dog, cat]) yes -> 1; one short list */
    EXPECT_NEAR(m.accuracy, 0.5);
    EXPECT_NEAR(m.top_k_accuracy, 1.0);
    EXPECT_INT(m.n_top_k_short, 1);

    /* metrics JSON */
    cJSON *doc = llava_eval_metrics_json(&m, &s, 100);
    const cJSON *v;
    v = cJSON_GetObjectItem(doc, "accuracy");
    EXPECT(v && NEAR(v->valuedouble, 0.5), "json: accuracy");
    v = cJSON_GetObjectItem(doc, "coverage"); /* (2 scored + 1 failed) / 4 truth ids */
    EXPECT(v && NEAR(v->valuedouble, 0.75), "json: coverage");
    v = cJSON_GetObjectItem(doc, "accuracy_over_truth"); /* 1 correct / 4 truth ids */
    EXPECT(v && NEAR(v->valuedouble, 0.25), "json: accuracy_over_truth");
    v = cJSON_GetObjectItem(doc, "confusion_matrix"); /* labels cat, dog: [[1, 1], [0, 0]] */
    EXPECT(v && cJSON_GetArraySize(v) == 2 && cJSON_GetArrayItem(cJSON_GetArrayItem(v, 0), 1)->valueint == 1 &&
               cJSON_GetArrayItem(cJSON_GetArrayItem(v, 1), 0)->valueint == 0,
           "json: confusion_matrix");
    v = cJSON_GetObjectItem(doc, "missing_ids");
    EXPECT(v && cJSON_GetArraySize(v) == 1 && !strcmp(cJSON_GetArrayItem(v, 0)->valuestring, "d"), "json: missing");
    v = cJSON_GetObjectItem(doc, "failures");
    EXPECT(v && cJSON_GetArraySize(v) == 1 &&
               !strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(v, 0), "error")->valuestring, "too large"),
           "json: failures");
    v = cJSON_GetObjectItem(doc, "per_class");
    EXPECT(v && cJSON_GetArraySize(v) == 2 &&
               !strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(v, 1), "label")->valuestring, "dog"),
           "json: per_class");
    v = cJSON_GetObjectItem(doc, "reliability");
    EXPECT(v && cJSON_GetArraySize(v) == LLAVA_CAL_BINS, "json: reliability bins");
    /* ECE: .8 correct in bin 7 (gap .2), .5 wrong in bin 4 (gap .5): (.2 + .5)/2 = .35 */
    v = cJSON_GetObjectItem(doc, "ece");
    EXPECT(v && fabs(v->valuedouble - 0.35) < 1e-12, "json: ece");
    char *text = cJSON_PrintUnformatted(doc);
    cJSON *back = cJSON_Parse(text);
    EXPECT(back != NULL, "json: reparses");
    cJSON_Delete(back);
    free(text);
    cJSON_Delete(doc);
    doc = llava_eval_metrics_json(&m, &s, 0);
    EXPECT(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "missing_ids")) == 0 &&
               cJSON_GetObjectItem(doc, "n_missing")->valueint == 1,
           "json: max_ids 0 keeps the counts");
    cJSON_Delete(doc);
    llava_metrics_free(&m);
    llava_eval_set_free(&s);
}

/* ---- outputs ---------------------------------------------------------------------------------- */

static void test_base64(void) {
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"}; /* RFC 4648 section 10 */
    for (int i = 0; i < 7; i++) {
        char *b = llava_base64((const unsigned char *)in[i], strlen(in[i]));
        EXPECT(!strcmp(b, out[i]), "base64(\"%s\") = \"%s\", expected \"%s\"", in[i], b, out[i]);
        free(b);
    }
    const unsigned char bin[] = {0x89, 'P', 'N', 'G', 0xff, 0xfe};
    char *b = llava_base64(bin, sizeof bin);
    /* 89 50 4e | 47 ff fe -> 100010 010101 000001 001110 | 010001 111111 111111 111110 -> i V B O | R / / + */
    EXPECT(!strcmp(b, "iVBOR//+"), "base64 of binary = %s", b);
    free(b);
}

static void test_png(void) {
    /* truth a a b, pred a b b: rows a [1, 1], b [0, 1] */
    const char *t[] = {"a", "a", "b"}, *p[] = {"a", "b", "b"};
    llava_metrics m;
    EXPECT(compute(&m, 3, t, p, NULL) == 0, "png: compute");
    int cell = llava_eval_confusion_cell(2);
    EXPECT_INT(cell, 48);
    EXPECT_INT(llava_eval_confusion_cell(10000), 0);
    unsigned char *png = NULL;
    size_t len = 0;
    llava_err err = {{0}};
    EXPECT(llava_eval_confusion_png(&png, &len, &m, cell, &err) == 0, "png: %s", err.msg);
    EXPECT(len > 8 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8), "png: signature");
    png_image im = {.version = PNG_IMAGE_VERSION};
    if (png && png_image_begin_read_from_memory(&im, png, len)) {
        EXPECT(im.width == 96 && im.height == 96, "png: %ux%u, expected 96x96", im.width, im.height);
        im.format = PNG_FORMAT_RGB;
        unsigned char *px = xmalloc(PNG_IMAGE_SIZE(im));
        EXPECT(png_image_finish_read(&im, NULL, px, 0, NULL), "png: decodes");
        /* pixel (2, 2) of each cell: inside the cell, away from the grid line and the digits */
#define PX(cx, cy) (px + ((size_t)((cy) * cell + 2) * im.width + (size_t)((cx) * cell + 2)) * 3)
        /* C[b][a] = 0 -> white; C[b][b] = 1 of 1 -> darkest (8, 48, 107); C[a][a] = 1 of 2 -> between */
        EXPECT(PX(0, 1)[0] == 255 && PX(0, 1)[1] == 255 && PX(0, 1)[2] == 255, "png: empty cell is white");
        EXPECT(PX(1, 1)[0] == 8 && PX(1, 1)[1] == 48 && PX(1, 1)[2] == 107, "png: full row cell is darkest");
        EXPECT(PX(0, 0)[0] < 255 && PX(0, 0)[0] > 8, "png: half row cell is in between (%d)", PX(0, 0)[0]);
        /* the count "1" is drawn at the cell's centre in white on the darkest cell */
        int dark = 0;
        for (int y = 0; y < cell; y++)
            for (int x = 0; x < cell; x++) {
                const unsigned char *q = px + ((size_t)(cell + y) * im.width + (size_t)(cell + x)) * 3;
                dark += q[0] == 255 && q[1] == 255 && q[2] == 255;
            }
        EXPECT(dark > 0, "png: the count is drawn in the cell");
#undef PX
        free(px);
    } else {
        EXPECT(0, "png: libpng cannot read it back: %s", im.message);
    }
    png_image_free(&im);
    free(png);
    llava_metrics_free(&m);
}

static char *slurp(const char *path) {
    llava_err err;
    return llava_read_file(path, NULL, 1 << 26, &err);
}

static void test_report(void) {
    const char *p = put("r.jsonl", "{\"id\":\"1\",\"label\":\"a<b\",\"probability\":0.9}\n"
                                   "{\"id\":\"2\",\"label\":\"c&d\",\"probability\":0.6}\n"
                                   "{\"id\":\"3\",\"error\":\"<bad> image\"}\n");
    const char *t = put("r.csv", "1,a<b\n2,a<b\n3,c&d\n4,c&d\n");
    llava_eval_set s;
    llava_metrics m = {0};
    llava_err err = {{0}};
    EXPECT(llava_eval_set_load(&s, p, t, &err) == 0, "report: %s", err.msg);
    llava_eval_pairs pairs = llava_eval_set_pairs(&s, 1);
    EXPECT(llava_metrics_compute(&m, &pairs, &err) == 0, "report metrics: %s", err.msg);
    const char *out = tpath("report.html");
    EXPECT(llava_eval_write_report(out, &m, &s, &err) == 0, "report written: %s", err.msg);
    char *html = slurp(out);
    EXPECT(html != NULL, "report readable");
    if (html) {
        EXPECT(strstr(html, "<!DOCTYPE html>") != NULL, "report: html");
        EXPECT(strstr(html, "src=\"data:image/png;base64,iVBORw0KGgo") != NULL, "report: embedded PNG");
        EXPECT(strstr(html, "<svg") != NULL, "report: reliability diagram");
        EXPECT(strstr(html, "a&lt;b") && strstr(html, "c&amp;d") && !strstr(html, "a<b"), "report: labels escaped");
        EXPECT(strstr(html, "&lt;bad&gt; image") != NULL, "report: failure listed and escaped");
        EXPECT(!strstr(html, "src=\"http") && !strstr(html, "<link") && !strstr(html, "<script"),
               "report: no external assets");
        EXPECT(strstr(html, "zero_division=0") != NULL, "report: states the definitions");
        free(html);
    }
    EXPECT(llava_eval_write_report(tpath("no/such/dir/r.html"), &m, &s, &err) == -1 &&
               strstr(err.msg, "cannot write the report"),
           "report: unwritable path: %s", err.msg);
    llava_metrics_free(&m);
    llava_eval_set_free(&s);
}

/* ---- CLI entry --------------------------------------------------------------------------------- */

static int run_eval(int n, const char **args) {
    char *argv[16];
    argv[0] = "eval";
    for (int i = 0; i < n; i++) argv[i + 1] = (char *)args[i];
    fflush(stdout);
    return cmd_eval(n + 1, argv);
}

static void test_cmd_eval(void) {
    const char *p = put("c.jsonl", "{\"id\":\"a\",\"label\":\"cat\",\"probability\":0.9,\"top_k\":[{\"label\":\"cat\"},"
                                   "{\"label\":\"dog\"}]}\n{\"id\":\"b\",\"label\":\"cat\",\"probability\":0.7,"
                                   "\"top_k\":[{\"label\":\"cat\"},{\"label\":\"dog\"}]}\n");
    const char *t = put("c.csv", "id,label\na,cat\nb,dog\n");
    const char *tm = put("cm.csv", "id,label\na,cat\nb,dog\nc,dog\n");
    char json[256], html[256];
    snprintf(json, sizeof json, "%s", tpath("c.json"));
    snprintf(html, sizeof html, "%s", tpath("c.html"));
    EXPECT(run_eval(8, (const char *[]){"--pred", p, "--truth", t, "-o", json, "--report", html}) == 0,
           "cmd_eval: runs");
    cJSON *doc = llava_json_load(json, NULL);
    EXPECT(doc != NULL, "cmd_eval: metrics JSON written");
    if (doc) {
        /* a cat -> cat, b dog -> cat: accuracy 1/2; top-2 (default: shortest list 2): both -> 1 */
        EXPECT(NEAR(cJSON_GetObjectItem(doc, "accuracy")->valuedouble, 0.5), "cmd_eval: accuracy");
        EXPECT(cJSON_GetObjectItem(doc, "top_k")->valueint == 2, "cmd_eval: default k = shortest list");
        EXPECT(NEAR(cJSON_GetObjectItem(doc, "top_k_accuracy")->valuedouble, 1.0), "cmd_eval: top-2 accuracy");
        cJSON_Delete(doc);
    }
    char *h = slurp(html);
    EXPECT(h && strstr(h, "data:image/png;base64,"), "cmd_eval: report with image");
    free(h);
    char kv[64];
    snprintf(kv, sizeof kv, "--top-k=1");
    EXPECT(run_eval(7, (const char *[]){"--pred", p, "--truth", t, kv, "-o", json}) == 0, "cmd_eval: --top-k=1");
    doc = llava_json_load(json, NULL);
    EXPECT(doc && cJSON_GetObjectItem(doc, "top_k")->valueint == 1 &&
               NEAR(cJSON_GetObjectItem(doc, "top_k_accuracy")->valuedouble, 0.5),
           "cmd_eval: top-1 accuracy = accuracy");
    cJSON_Delete(doc);

    EXPECT(run_eval(2, (const char *[]){"--pred", p}) == 1, "cmd_eval: no truth anywhere");
    EXPECT(run_eval(2, (const char *[]){"--truth", t}) == 2, "cmd_eval: --pred required");
    EXPECT(run_eval(1, (const char *[]){"--bogus"}) == 2, "cmd_eval: unknown option");
    EXPECT(run_eval(6, (const char *[]){"--pred", p, "--truth", t, "--top-k", "0"}) == 2, "cmd_eval: --top-k 0");
    EXPECT(run_eval(4, (const char *[]){"--pred", tpath("nope.jsonl"), "--truth", t}) == 1, "cmd_eval: missing file");
    EXPECT(run_eval(4, (const char *[]){"--pred", p, "--truth", tm}) == 0, "cmd_eval: missing id is a warning");
    EXPECT(run_eval(5, (const char *[]){"--pred", p, "--truth", tm, "--strict"}) == 1, "cmd_eval: --strict");
    const char *other = put("other.csv", "x,cat\ny,dog\n");
    EXPECT(run_eval(4, (const char *[]){"--pred", p, "--truth", other}) == 1, "cmd_eval: nothing to score");
    EXPECT(run_eval(1, (const char *[]){"--help"}) == 0, "cmd_eval: --help");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/llava-test-eval.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        printf("FAIL cannot make a temp dir\n");
        return 1;
    }
    test_basic();
    test_label_never_predicted();
    test_zero_support();
    test_top_k();
    test_calibration();
    test_empty_and_one();
    test_truth_csv();
    test_pred_files();
    test_load_errors();
    test_truth_from_pred();
    test_join();
    test_base64();
    test_png();
    test_report();
    test_cmd_eval();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("INFO could not remove %s\n", tmpdir);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    TEST_END();
}

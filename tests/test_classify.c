/* test_classify.c — label scoring against transformers teacher forcing (tests/fixtures/ref/labels.json,
 * made by tools/make_label_reference.py): same prompt text, same continuation ids per label, and
 * label probabilities within 1e-4 absolute; plus the label-set errors. */
#include <cjson/cJSON.h>
#include <string.h>

#include "engine/classify.h"
#include "formats/json.h"
#include "image/image.h"
#include "test.h"

#define FIX "tests/fixtures/"

int main(void) {
    { /* llava_trie_inner on a hand-made tree: nodes 0, 1 and 4 have children */
        const int par[6] = {-1, 0, 1, 1, -1, 4}, want[6] = {0, 1, -1, -1, 2, -1};
        int inner[6], n = llava_trie_inner(par, 6, inner), same = n == 3;
        for (int j = 0; j < 6; j++) same &= inner[j] == want[j];
        EXPECT(same, "llava_trie_inner: %d inner nodes, numbering differs from 0 1 -1 -1 2 -1", n);
    }
    llava_err err = {{0}};
    cJSON *ref = llava_json_load(FIX "ref/labels.json", &err);
    EXPECT(ref != NULL, "labels.json: %s", err.msg);
    if (!ref) TEST_END();
    const cJSON *sets = cJSON_GetObjectItem(ref, "label_sets"), *c;
    llava_model *models[2] = {NULL, NULL};
    const char *names[2] = {"tiny-a", "tiny-b"};
    for (int k = 0; k < 2; k++) {
        char dir[128];
        snprintf(dir, sizeof dir, FIX "%s", names[k]);
        EXPECT(!llava_model_load(&models[k], dir, &err), "load %s: %s", dir, err.msg);
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(ref, "cases")) {
        const char *mname = cJSON_GetObjectItem(c, "model")->valuestring;
        const char *image = cJSON_GetObjectItem(c, "image")->valuestring;
        llava_model *m = models[strcmp(mname, "tiny-a") ? 1 : 0];
        if (!m) continue;
        const cJSON *labs = cJSON_GetObjectItem(sets, cJSON_GetObjectItem(c, "labels")->valuestring);
        int n = cJSON_GetArraySize(labs);
        const char *labels[64];
        for (int i = 0; i < n && i < 64; i++) labels[i] = cJSON_GetArrayItem(labs, i)->valuestring;
        const cJSON *q = cJSON_GetObjectItem(c, "question"), *a = cJSON_GetObjectItem(c, "answer");
        llava_classifier *cl = NULL;
        int ok = !llava_classifier_new(&cl, m, labels, n, cJSON_IsString(q) ? q->valuestring : NULL,
                                       cJSON_IsString(a) ? a->valuestring : NULL, &err);
        EXPECT(ok, "%s/%s: classifier: %s", mname, image, err.msg);
        if (!ok) continue;
        EXPECT(!strcmp(llava_classifier_prompt(cl), cJSON_GetObjectItem(c, "prompt")->valuestring),
               "%s/%s: prompt text differs", mname, image);
        const cJSON *conts = cJSON_GetObjectItem(c, "continuations");
        int same = 1;
        for (int i = 0; i < n; i++) {
            int nc;
            const int *ids = llava_classifier_continuation(cl, i, &nc);
            const cJSON *rc = cJSON_GetArrayItem(conts, i);
            same &= nc == cJSON_GetArraySize(rc);
            for (int j = 0; same && j < nc; j++) same &= ids[j] == cJSON_GetArrayItem(rc, j)->valueint;
        }
        EXPECT(same, "%s/%s: label continuation ids differ from transformers", mname, image);
        /* every continuation ends in its own EOS leaf, and only leaves are left out of the forward */
        const int *tk, *pr;
        int nn = llava_classifier_trie(cl, &tk, &pr), leaves = 0;
        for (int j = 0; j < nn; j++) {
            int has_child = 0;
            for (int k = 0; k < nn; k++) has_child |= pr[k] == j;
            leaves += !has_child;
        }
        EXPECT(leaves == n && llava_classifier_trie_inner(cl) == nn - n,
               "%s/%s: trie of %d nodes, %d leaves for %d labels, %d run (expected %d)", mname, image, nn, leaves, n,
               llava_classifier_trie_inner(cl), nn - n);
        char path[256];
        snprintf(path, sizeof path, FIX "ref/images/%s", image);
        llava_image img = {0};
        double probs[64], scores[64];
        ok = !llava_image_load(&img, path, 89478485, &err) && !llava_classify(probs, scores, cl, &img, &err);
        EXPECT(ok, "%s/%s: classify: %s", mname, image, err.msg);
        if (ok) {
            double md = 0, msd = 0;
            const cJSON *rp = cJSON_GetObjectItem(c, "probabilities"), *rs = cJSON_GetObjectItem(c, "scores");
            for (int i = 0; i < n; i++) {
                double d = fabs(probs[i] - cJSON_GetArrayItem(rp, i)->valuedouble);
                double ds = fabs(scores[i] - cJSON_GetArrayItem(rs, i)->valuedouble);
                if (d > md) md = d;
                if (ds > msd) msd = ds;
            }
            EXPECT(md <= 1e-4, "%s/%s: probabilities differ by %.3g (> 1e-4)", mname, image, md);
            printf("INFO %s/%-14s %2d labels, trie %3d nodes: max |p - p_ref| %.2e, max |score - ref| %.2e\n", mname,
                   image, n, llava_classifier_trie_size(cl), md, msd);
        }
        llava_image_free(&img);
        llava_classifier_free(cl);
    }
    /* label-set errors */
    if (models[0]) {
        llava_classifier *cl = NULL;
        const char *dup[] = {"Room", "Pool", "Room"};
        EXPECT(llava_classifier_new(&cl, models[0], dup, 3, NULL, NULL, &err) && strstr(err.msg, "twice"),
               "duplicate labels: %s", err.msg);
        EXPECT(llava_classifier_new(&cl, models[0], dup, 0, NULL, NULL, &err) && strstr(err.msg, "empty"),
               "empty label set: %s", err.msg);
        const char *empty[] = {"Room", ""};
        EXPECT(llava_classifier_new(&cl, models[0], empty, 2, NULL, NULL, &err) && strstr(err.msg, "empty"),
               "empty label: %s", err.msg);
        const char *ok2[] = {"Room", "Pool"};
        EXPECT(llava_classifier_new(&cl, models[0], ok2, 2, NULL, "no placeholder", &err) && strstr(err.msg, "{label}"),
               "answer without {label}: %s", err.msg);
    }
    /* scoring from per-node log-probabilities (what the GPU step returns): each label's score is the
     * sum over its continuation's trie path, found here by walking the trie token by token */
    if (models[0]) {
        const char *ls[] = {"Pool", "Pool Bar", "Room", "Suite", "Breakfast Area", "Terrace/Patio", "Other"};
        const int nl = (int)(sizeof ls / sizeof ls[0]);
        llava_classifier *cl = NULL;
        EXPECT(!llava_classifier_new(&cl, models[0], ls, nl, NULL, NULL, &err), "classifier: %s", err.msg);
        if (cl) {
            const int *tok, *par;
            int nn = llava_classifier_trie(cl, &tok, &par);
            float *lp = malloc(sizeof(float) * (size_t)nn);
            uint32_t r = 12345;
            for (int j = 0; j < nn; j++) {
                r = r * 1664525u + 1013904223u;
                lp[j] = -(float)(r >> 8) / (float)(1 << 24) * 5.f;
            }
            double probs[16], scores[16], want[16], mx = -1e300, z = 0;
            llava_classifier_score_nodes(cl, lp, probs, scores);
            int paths_ok = 1;
            for (int i = 0; i < nl; i++) {
                int n = 0, node = -1;
                const int *cont = llava_classifier_continuation(cl, i, &n);
                want[i] = 0;
                for (int k = 0; k < n; k++) {
                    int next = -1;
                    for (int j = 0; j < nn && next < 0; j++)
                        if (par[j] == node && tok[j] == cont[k]) next = j;
                    if (next < 0) paths_ok = 0;
                    node = next;
                    if (next >= 0) want[i] += lp[next];
                }
                if (want[i] > mx) mx = want[i];
            }
            EXPECT(paths_ok, "every label's continuation is a path of the trie");
            for (int i = 0; i < nl; i++) z += exp(want[i] - mx);
            double worst = 0;
            for (int i = 0; i < nl; i++) {
                worst = fmax(worst, fabs(scores[i] - want[i]));
                worst = fmax(worst, fabs(probs[i] - exp(want[i] - mx) / z));
            }
            EXPECT(worst < 1e-9, "score_nodes: scores/probabilities differ from the path sums by %.3g", worst);
            for (int j = 0; j < nn; j++)
                EXPECT(par[j] < j && par[j] >= -1, "trie node %d has parent %d (parents must precede children)", j, par[j]);
            free(lp);
            llava_classifier_free(cl);
        }
    }
    llava_model_free(models[0]);
    llava_model_free(models[1]);
    cJSON_Delete(ref);
    TEST_END();
}

/* test_tokenizer.c — the tokenizer against Hugging Face `tokenizers` outputs.
 *
 * 1. shared fixtures/tokenizers/mistral-7b/cases.json: ids from an independent implementation
 *    (legacy "a b" merges form);
 * 2. tests/fixtures/tokenizer/corpus.json (tools/make_tokenizer_corpus.py, HF `tokenizers`):
 *    >= 2000 strings encoded with and without special tokens and decoded both ways, random id
 *    lists decoded, and small variant tokenizers for options LLaVA does not use;
 * 3. API details, error messages, and the time to tokenize a 2400-token prompt.
 * Per-string checks are aggregated: one EXPECT per group, the first failures printed in detail.
 */
#include <stdint.h>
#include <unistd.h>

#include "formats/json.h"
#include "formats/tokenizer.h"
#include "test.h"
#include "util/mem.h"

#define FIXTURE "tests/fixtures/tokenizer/tokenizer.json"
#define CORPUS "tests/fixtures/tokenizer/corpus.json"
#define MAX_SHOWN 5

/* --- helpers ------------------------------------------------------------------------------- */
static void print_escaped(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n && i < 160; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    if (n > 160) fputs("...", stdout);
    putchar('"');
}

static void print_ids(const int *ids, int n) {
    putchar('[');
    for (int i = 0; i < n && i < 40; i++) printf("%s%d", i ? "," : "", ids[i]);
    if (n > 40) printf(",... (%d)", n);
    putchar(']');
}

/* ids as a JSON array; n < 0 if not an array of integers. Caller frees. */
static int *json_ids(const cJSON *arr, int *n) {
    *n = -1;
    if (!cJSON_IsArray(arr)) return NULL;
    int k = cJSON_GetArraySize(arr);
    int *v = xmalloc(sizeof(int) * (size_t)(k ? k : 1));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) v[i++] = (int)e->valuedouble;
    *n = k;
    return v;
}

static int same_ids(const int *a, int na, const int *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, sizeof(int) * (size_t)na) == 0);
}

typedef struct {
    const char *what;
    int checked, failed;
} group;

static void group_fail(group *g, const char *text, const int *want, int nwant, const int *got, int ngot,
                       const char *swant, const char *sgot) {
    g->failed++;
    if (g->failed > MAX_SHOWN) return;
    printf("INFO %s mismatch for ", g->what);
    if (text) print_escaped(text, strlen(text));
    printf("\n");
    if (want) {
        printf("INFO   want ");
        print_ids(want, nwant);
        printf("\nINFO   got  ");
        print_ids(got, ngot);
        printf("\n");
    } else {
        printf("INFO   want ");
        print_escaped(swant, strlen(swant));
        printf("\nINFO   got  ");
        if (sgot) print_escaped(sgot, strlen(sgot));
        else printf("(NULL)");
        printf("\n");
    }
}

static void group_end(group *g) {
    EXPECT(g->failed == 0, "%s: %d of %d checks differ from Hugging Face", g->what, g->failed, g->checked);
}

/* Encode in one mode and compare with want. */
static void check_encode(group *g, const llava_tokenizer *t, const char *text, int add_special, const int *want,
                         int nwant) {
    int *ids = NULL, n = 0;
    llava_err err = {{0}};
    g->checked++;
    if (llava_tokenize(t, text, strlen(text), add_special, &ids, &n, &err) != 0) {
        group_fail(g, text, want, nwant, NULL, 0, NULL, NULL);
        if (g->failed <= MAX_SHOWN) printf("INFO   error: %s\n", err.msg);
        return;
    }
    if (!same_ids(ids, n, want, nwant)) group_fail(g, text, want, nwant, ids, n, NULL, NULL);
    free(ids);
}

static void check_decode(group *g, const llava_tokenizer *t, const char *text, const int *ids, int n, int skip,
                         const char *want) {
    g->checked++;
    char *got = llava_detokenize(t, ids, n, skip);
    if (!got || strcmp(got, want) != 0) group_fail(g, text, NULL, 0, NULL, 0, want, got);
    free(got);
}

/* One corpus-style case list: {text, ids, ids_nospecial?, dec, dec_skip}. */
static void run_cases(const llava_tokenizer *t, const cJSON *cases, const char *name) {
    char w[4][128];
    snprintf(w[0], sizeof w[0], "%s: encode(add_special_tokens=True)", name);
    snprintf(w[1], sizeof w[1], "%s: encode(add_special_tokens=False)", name);
    snprintf(w[2], sizeof w[2], "%s: decode(skip_special_tokens=False)", name);
    snprintf(w[3], sizeof w[3], "%s: decode(skip_special_tokens=True)", name);
    group g[4] = {{w[0], 0, 0}, {w[1], 0, 0}, {w[2], 0, 0}, {w[3], 0, 0}};
    int bos = llava_tokenizer_bos(t);
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const cJSON *jt = cJSON_GetObjectItem(c, "text");
        if (!cJSON_IsString(jt)) continue;
        const char *text = jt->valuestring;
        int n, nn;
        int *ids = json_ids(cJSON_GetObjectItem(c, "ids"), &n);
        check_encode(&g[0], t, text, 1, ids, n);
        const cJSON *jns = cJSON_GetObjectItem(c, "ids_nospecial");
        if (jns) {
            int *ns = json_ids(jns, &nn);
            check_encode(&g[1], t, text, 0, ns, nn);
            free(ns);
        } else { /* stored only when it is not ids minus the leading BOS */
            int skip1 = n > 0 && ids[0] == bos;
            check_encode(&g[1], t, text, 0, ids + skip1, n - skip1);
        }
        check_decode(&g[2], t, text, ids, n, 0, cJSON_GetObjectItem(c, "dec")->valuestring);
        check_decode(&g[3], t, text, ids, n, 1, cJSON_GetObjectItem(c, "dec_skip")->valuestring);
        free(ids);
    }
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        group_end(&g[i]);
        failed += g[i].failed;
    }
    printf("INFO %-34s %4d strings x 4 (encode +-special, decode +-skip): %d differ\n",
           name, g[0].checked, failed);
}

/* Writes a JSON document to a temporary file; returns its path (caller unlinks and frees). */
static char *write_temp_json(const cJSON *doc) {
    char *text = cJSON_PrintUnformatted(doc);
    char *path = xstrdup("/tmp/llava_tok_test_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0 || !text) {
        free(text);
        free(path);
        return NULL;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
    free(text);
    return path;
}

static char *write_temp_text(const char *text) {
    char *path = xstrdup("/tmp/llava_tok_test_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) {
        free(path);
        return NULL;
    }
    if (write(fd, text, strlen(text)) < 0) { /* checked by the load that follows */
    }
    close(fd);
    return path;
}

/* --- 1. shared cases.json ------------------------------------------------------------------ */
static void test_shared_cases(void) {
    llava_err err = {{0}};
    llava_tokenizer *t = NULL;
    const char *tok_path = shared_path("fixtures/tokenizers/mistral-7b/tokenizer.json");
    int rc = llava_tokenizer_load(&t, tok_path, &err);
    EXPECT(rc == 0, "load %s: %s", tok_path, err.msg);
    if (rc) return;
    cJSON *cases = llava_json_load(shared_path("fixtures/tokenizers/mistral-7b/cases.json"), &err);
    EXPECT(cases != NULL, "cases.json: %s", err.msg);
    if (cases) {
        group g = {"shared mistral-7b/cases.json", 0, 0};
        const cJSON *c;
        cJSON_ArrayForEach(c, cases) {
            int n;
            int *want = json_ids(cJSON_GetObjectItem(c, "ids"), &n);
            check_encode(&g, t, cJSON_GetObjectItem(c, "text")->valuestring, 1, want, n);
            free(want);
        }
        group_end(&g);
        printf("INFO %-34s %4d strings encoded: %d differ\n", g.what, g.checked, g.failed);
        cJSON_Delete(cases);
    }
    EXPECT(llava_tokenizer_vocab_size(t) == 32000, "shared vocab size %d", llava_tokenizer_vocab_size(t));
    EXPECT(llava_token_id(t, "<image>") == -1, "no <image> in the base Mistral tokenizer");
    llava_tokenizer_free(t);
}

/* --- 2. corpus ------------------------------------------------------------------------------ */
static void test_corpus(const llava_tokenizer *t) {
    llava_err err = {{0}};
    cJSON *doc = llava_json_load(CORPUS, &err);
    EXPECT(doc != NULL, "corpus: %s", err.msg);
    if (!doc) return;
    const cJSON *ver = cJSON_GetObjectItem(doc, "tokenizers_version");
    const cJSON *cases = cJSON_GetObjectItem(doc, "cases");
    EXPECT(cJSON_GetArraySize(cases) >= 2000, "corpus has %d strings", cJSON_GetArraySize(cases));
    printf("INFO corpus: %d strings, reference tokenizers %s\n", cJSON_GetArraySize(cases),
           cJSON_IsString(ver) ? ver->valuestring : "?");
    run_cases(t, cases, "corpus");

    group gd[2] = {{"corpus decode_cases skip_special_tokens=False", 0, 0},
                   {"corpus decode_cases skip_special_tokens=True", 0, 0}};
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(doc, "decode_cases")) {
        int n;
        int *ids = json_ids(cJSON_GetObjectItem(c, "ids"), &n);
        check_decode(&gd[0], t, "(decode case)", ids, n, 0, cJSON_GetObjectItem(c, "dec")->valuestring);
        check_decode(&gd[1], t, "(decode case)", ids, n, 1, cJSON_GetObjectItem(c, "dec_skip")->valuestring);
        free(ids);
    }
    group_end(&gd[0]);
    group_end(&gd[1]);
    printf("INFO %-34s %4d id lists x 2 (decode +-skip): %d differ\n", "corpus decode_cases",
           gd[0].checked, gd[0].failed + gd[1].failed);

    /* variants: build each tokenizer file, then run its cases */
    cJSON *base = NULL;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(doc, "variants")) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        cJSON *tdoc = NULL;
        const cJSON *whole = cJSON_GetObjectItem(c, "tokenizer");
        const cJSON *extra = cJSON_GetObjectItem(c, "extra_added_tokens");
        const cJSON *patch = cJSON_GetObjectItem(c, "patch");
        const cJSON *model_patch = cJSON_GetObjectItem(c, "model_patch");
        if (whole) {
            tdoc = cJSON_Duplicate(whole, 1);
        } else {
            if (!base) base = llava_json_load(FIXTURE, &err);
            if (!base) break;
            tdoc = cJSON_Duplicate(base, 1);
            if (extra) {
                cJSON *added = cJSON_GetObjectItem(tdoc, "added_tokens");
                const cJSON *e;
                cJSON_ArrayForEach(e, extra) cJSON_AddItemToArray(added, cJSON_Duplicate(e, 1));
            }
            const cJSON *e;
            if (patch) cJSON_ArrayForEach(e, patch) cJSON_ReplaceItemInObject(tdoc, e->string, cJSON_Duplicate(e, 1));
            cJSON *model = cJSON_GetObjectItem(tdoc, "model");
            if (model_patch)
                cJSON_ArrayForEach(e, model_patch) cJSON_ReplaceItemInObject(model, e->string, cJSON_Duplicate(e, 1));
        }
        char *path = write_temp_json(tdoc);
        cJSON_Delete(tdoc);
        llava_tokenizer *vt = NULL;
        int rc = path ? llava_tokenizer_load(&vt, path, &err) : -1;
        EXPECT(rc == 0, "variant %s: load failed: %s", name, path ? err.msg : "cannot write temp file");
        if (path) {
            unlink(path);
            free(path);
        }
        if (rc) continue;
        char label[96];
        snprintf(label, sizeof label, "variant %s", name);
        run_cases(vt, cJSON_GetObjectItem(c, "cases"), label);
        llava_tokenizer_free(vt);
    }
    cJSON_Delete(base);
    cJSON_Delete(doc);
}

/* --- 3. API, errors, timing ----------------------------------------------------------------- */
static void test_api(const llava_tokenizer *t) {
    EXPECT(llava_tokenizer_vocab_size(t) == 32002, "vocab size %d", llava_tokenizer_vocab_size(t));
    EXPECT(llava_tokenizer_bos(t) == 1, "bos %d", llava_tokenizer_bos(t));
    EXPECT(llava_tokenizer_eos(t) == 2, "eos %d", llava_tokenizer_eos(t));
    EXPECT(llava_token_id(t, "<image>") == 32000, "<image> id %d", llava_token_id(t, "<image>"));
    EXPECT(llava_token_id(t, "<pad>") == 32001, "<pad> id %d", llava_token_id(t, "<pad>"));
    EXPECT(llava_token_id(t, "<unk>") == 0, "<unk> id");
    EXPECT(llava_token_id(t, "▁the") == 272, "▁the id %d", llava_token_id(t, "▁the"));
    EXPECT(llava_token_id(t, "<0x0A>") == 13, "<0x0A> id %d", llava_token_id(t, "<0x0A>"));
    EXPECT(llava_token_id(t, "no such piece") == -1, "unknown piece");
    const char *p = llava_token_piece(t, 32000);
    EXPECT(p && !strcmp(p, "<image>"), "piece 32000 = %s", p ? p : "(null)");
    p = llava_token_piece(t, 272);
    EXPECT(p && !strcmp(p, "▁the"), "piece 272 = %s", p ? p : "(null)");
    p = llava_token_piece(t, 13);
    EXPECT(p && !strcmp(p, "<0x0A>"), "piece 13 = %s", p ? p : "(null)");
    EXPECT(llava_token_piece(t, -1) == NULL && llava_token_piece(t, 32002) == NULL, "out-of-range piece");
    EXPECT(llava_token_is_special(t, 0) && llava_token_is_special(t, 1) && llava_token_is_special(t, 2) &&
               llava_token_is_special(t, 32000) && llava_token_is_special(t, 32001),
           "added tokens are special");
    EXPECT(!llava_token_is_special(t, 272) && !llava_token_is_special(t, 13) && !llava_token_is_special(t, -5) &&
               !llava_token_is_special(t, 99999),
           "ordinary pieces are not special");

    /* the canonical LLaVA prompt: <s> ▁[ INST ] ▁ <image> ▁ <0x0A> What ... */
    const char *prompt = "[INST] <image>\nWhat is shown in this image? [/INST]";
    int *ids = NULL, n = 0;
    llava_err err = {{0}};
    EXPECT(llava_tokenize(t, prompt, strlen(prompt), 1, &ids, &n, &err) == 0, "%s", err.msg);
    static const int want[] = {1, 733, 16289, 28793, 28705, 32000, 28705, 13, 3195, 349,
                               4894, 297, 456, 3469, 28804, 733, 28748, 16289, 28793};
    EXPECT(same_ids(ids, n, want, (int)(sizeof want / sizeof want[0])), "LLaVA prompt ids");
    free(ids);

    /* NUL bytes are text like any other (len is explicit), and empty input gives just <s> */
    ids = NULL;
    EXPECT(llava_tokenize(t, "a\0b", 3, 0, &ids, &n, &err) == 0 && n == 3 && ids[0] == 264 && ids[1] == 3 &&
               ids[2] == 28726,
           "text with a NUL byte (n=%d)", n);
    free(ids);
    ids = NULL;
    EXPECT(llava_tokenize(t, NULL, 0, 1, &ids, &n, &err) == 0 && n == 1 && ids && ids[0] == 1, "empty text");
    free(ids);
    ids = NULL;
    EXPECT(llava_tokenize(t, "", 0, 0, &ids, &n, &err) == 0 && n == 0 && ids != NULL, "empty text, no specials");
    free(ids);

    /* invalid UTF-8 is refused with a message, not guessed at */
    ids = NULL;
    int rc = llava_tokenize(t, "ab\xff", 3, 1, &ids, &n, &err);
    EXPECT(rc == -1 && ids == NULL && strstr(err.msg, "UTF-8"), "invalid UTF-8: rc %d msg %s", rc, err.msg);
    rc = llava_tokenize(t, "\xed\xa0\x80", 3, 1, &ids, &n, &err); /* encoded surrogate */
    EXPECT(rc == -1, "surrogate rejected");

    char *s = llava_detokenize(t, NULL, 0, 0);
    EXPECT(s && s[0] == 0, "empty decode");
    free(s);
}

static void expect_load_error(const char *path, const char *needle, const char *what) {
    llava_err err = {{0}};
    llava_tokenizer *t = (llava_tokenizer *)1;
    int rc = llava_tokenizer_load(&t, path, &err);
    EXPECT(rc == -1 && t == NULL && strstr(err.msg, path) && strstr(err.msg, needle),
           "%s: rc %d, message \"%s\" should name the file and say \"%s\"", what, rc, err.msg, needle);
}

static void test_errors(void) {
    expect_load_error("tests/fixtures/tokenizer/does_not_exist.json", "cannot open", "missing file");
    char *p = write_temp_text("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}");
    expect_load_error(p, "invalid JSON", "invalid JSON");
    unlink(p);
    free(p);
    p = write_temp_text("[1, 2, 3]");
    expect_load_error(p, "not a tokenizer.json", "top-level array");
    unlink(p);
    free(p);
    p = write_temp_text("{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"a\", -1.0]]}}");
    expect_load_error(p, "Unigram", "Unigram model");
    unlink(p);
    free(p);
    p = write_temp_text("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}");
    expect_load_error(p, "WordPiece", "WordPiece model");
    unlink(p);
    free(p);
    p = write_temp_text("{\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
                        "\"merges\": []}}");
    expect_load_error(p, "NFKC", "unsupported normalizer");
    unlink(p);
    free(p);
    p = write_temp_text("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": "
                        "{\"a\": 0}, \"merges\": []}}");
    expect_load_error(p, "ByteLevel", "unsupported pre-tokenizer");
    unlink(p);
    free(p);
    p = write_temp_text("{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"_\", \"add_prefix_space\": false}, "
                        "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}");
    expect_load_error(p, "add_prefix_space", "Metaspace add_prefix_space=false without prepend_scheme never");
    unlink(p);
    free(p);
    p = write_temp_text("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}");
    expect_load_error(p, "not in the vocab", "merge result not in vocab");
    unlink(p);
    free(p);
    p = write_temp_text("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
                        "\"merges\": [\"a b c\"]}}");
    expect_load_error(p, "merge 1", "malformed merge");
    unlink(p);
    free(p);
    p = write_temp_text("{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {\"a\": 0}, \"merges\": []}}");
    expect_load_error(p, "dropout", "dropout");
    unlink(p);
    free(p);

    /* a minimal tokenizer with no normalizer, decoder or post-processor loads and works */
    p = write_temp_text("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
                        "\"merges\": [[\"a\", \"b\"]]}}");
    llava_err err = {{0}};
    llava_tokenizer *t = NULL;
    EXPECT(llava_tokenizer_load(&t, p, &err) == 0, "minimal tokenizer: %s", err.msg);
    if (t) {
        int *ids = NULL, n = 0;
        EXPECT(llava_tokenize(t, "abba", 4, 1, &ids, &n, &err) == 0 && n == 3 && ids[0] == 2 && ids[1] == 1 &&
                   ids[2] == 0,
               "minimal tokenizer encode (n=%d)", n);
        char *s = llava_detokenize(t, ids, n, 1);
        EXPECT(s && !strcmp(s, "ab b a"), "no decoder joins with spaces: %s", s ? s : "(null)");
        free(s);
        free(ids);
        EXPECT(llava_tokenizer_bos(t) == -1 && llava_tokenizer_eos(t) == -1, "no bos/eos");
        llava_tokenizer_free(t);
    }
    unlink(p);
    free(p);
    llava_tokenizer_free(NULL);
}

static double time_encode(const llava_tokenizer *t, const char *text, int *n_out) {
    int reps = 200;
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        int *ids = NULL, n = 0;
        double t0 = llava_now();
        llava_tokenize(t, text, strlen(text), 1, &ids, &n, NULL);
        double dt = llava_now() - t0;
        if (dt < best) best = dt;
        *n_out = n;
        free(ids);
    }
    return best;
}

static void test_timing(const llava_tokenizer *t) {
    /* the real LLaVA-NeXT prompt shape: 2340 image tokens plus the question */
    size_t cap = 64 * 1024;
    char *text = xmalloc(cap);
    char *w = text + sprintf(text, "[INST] ");
    for (int i = 0; i < 2340; i++) w += sprintf(w, "<image>");
    strcpy(w, "\nWhat is shown in this image? Describe the room, the furniture and the view. [/INST]");
    int n = 0;
    double dt = time_encode(t, text, &n);
    printf("INFO tokenize LLaVA prompt: %d tokens in %.1f us\n", n, dt * 1e6);
    EXPECT(n > 2350, "llava prompt token count %d", n);

    /* plain text of about 2400 tokens: one long segment through BPE */
    const char *para = "The hotel lobby features marble floors, a grand staircase and a 24-hour front desk. "
                       "Rooms have two queen beds, a flat-screen TV, and a balcony overlooking the sea; "
                       "breakfast (croissants, fruit, eggs) is served from 6:30 to 10:00. ";
    text[0] = 0;
    while (strlen(text) + strlen(para) < 9800) strcat(text, para);
    dt = time_encode(t, text, &n);
    printf("INFO tokenize plain text (%zu bytes): %d tokens in %.1f us\n", strlen(text), n, dt * 1e6);
    EXPECT(n > 2000, "plain text token count %d", n);
    free(text);
}

int main(void) {
    test_shared_cases();
    llava_err err = {{0}};
    llava_tokenizer *t = NULL;
    int rc = llava_tokenizer_load(&t, FIXTURE, &err);
    EXPECT(rc == 0, "load %s: %s", FIXTURE, err.msg);
    if (rc == 0) {
        test_api(t);
        test_corpus(t);
        test_timing(t);
        llava_tokenizer_free(t);
    }
    test_errors();
    TEST_END();
}

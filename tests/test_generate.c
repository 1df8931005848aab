/* test_generate.c — generation through the generator on the CPU: many requests together (joining at
 * different steps, more than run at once) give exactly what each gives alone (gen_cases.h); the
 * single-request path itself is checked against transformers in test_model.c. Also: requests the
 * generator must refuse, and a shutdown with requests still queued. */
#include "gen_cases.h"
#include "model/llava.h"
#include "util/mem.h"

static void refusals(llava_model *m) {
    llava_generator *b = NULL;
    llava_err err = {{0}};
    EXPECT(!llava_generator_new(&b, m, NULL, 2, &err), "generator: %s", err.msg);
    if (!b) return;
    const int img = m->cfg.image_token_index;
    int ids[4] = {1, img, img, 5};
    llava_gen_request r = {ids, 4, NULL, 0, {4, 0.f, 1.f, 0, 0}, NULL, NULL, NULL};
    gen_out o = {0};
    EXPECT(llava_generator_add(b, &r, gen_on_done, &o, &err) && strstr(err.msg, "image"),
           "image tokens without images accepted (%s)", err.msg);
    int bad[2] = {1, 1 << 30};
    r = (llava_gen_request){bad, 2, NULL, 0, {4, 0.f, 1.f, 0, 0}, NULL, NULL, NULL};
    EXPECT(llava_generator_add(b, &r, gen_on_done, &o, &err) && strstr(err.msg, "vocabulary"),
           "an id outside the vocabulary accepted (%s)", err.msg);
    r.n_ids = 0;
    EXPECT(llava_generator_add(b, &r, gen_on_done, &o, &err), "an empty prompt accepted");
    int *longp = xcalloc((size_t)m->cfg.text.max_pos + 1, sizeof(int));
    r = (llava_gen_request){longp, m->cfg.text.max_pos, NULL, 0, {4, 0.f, 1.f, 0, 0}, NULL, NULL, NULL};
    EXPECT(llava_generator_add(b, &r, gen_on_done, &o, &err) && strstr(err.msg, "context"),
           "a prompt as long as the context accepted (%s)", err.msg);
    /* max_tokens past the context is cut to it: finish "length" at the context's end */
    r.n_ids = m->cfg.text.max_pos - 3;
    r.params.max_tokens = 100;
    EXPECT(!llava_generator_add(b, &r, gen_on_done, &o, &err), "near-context prompt refused: %s", err.msg);
    for (int i = 0; i < 10 && !o.ended; i++) EXPECT(!llava_generator_step(b, &err), "step: %s", err.msg);
    EXPECT(o.ended == 1 && !o.failed && o.res.n_gen <= 3 && !strcmp(o.res.finish_reason, o.res.n_gen == 3 ? "length" : "stop"),
           "the near-context request: ended %d, %d tokens, %s", o.ended, o.res.n_gen,
           o.res.finish_reason ? o.res.finish_reason : "-");
    /* shut down with one running and one queued (one slot): both end with an error, once */
    llava_generator_free(b);
    EXPECT(!llava_generator_new(&b, m, NULL, 1, &err), "generator: %s", err.msg);
    int small[3] = {1, 2, 3};
    gen_out q1 = {0}, q2 = {0};
    llava_gen_request r1 = {small, 3, NULL, 0, {50, 0.f, 1.f, 0, 0}, NULL, NULL, NULL};
    llava_generator_add(b, &r1, gen_on_done, &q1, &err);
    llava_generator_add(b, &r1, gen_on_done, &q2, &err);
    EXPECT(!llava_generator_step(b, &err), "step: %s", err.msg);
    EXPECT(llava_generator_running(b) == 1 && llava_generator_waiting(b) == 1, "running %d waiting %d",
           llava_generator_running(b), llava_generator_waiting(b));
    llava_generator_free(b);
    EXPECT(q1.ended == 1 && q1.failed && strstr(q1.err, "shut down"), "running request at shutdown: %d %s", q1.ended,
           q1.err);
    EXPECT(q2.ended == 1 && q2.failed, "queued request at shutdown: %d", q2.ended);
    llava_gen_result_free(&o.res), llava_gen_result_free(&q1.res), llava_gen_result_free(&q2.res);
    free(longp);
}

static int always_gone(void *ud) { return *(int *)ud; }

/* a request whose client left before it started ends unrun (no prompt logits, no tokens); the one
 * queued beside it runs as usual */
static void gone_before_start(llava_model *m) {
    llava_generator *b = NULL;
    llava_err err = {{0}};
    EXPECT(!llava_generator_new(&b, m, NULL, 1, &err), "generator: %s", err.msg);
    if (!b) return;
    int ids[3] = {1, 2, 3}, yes = 1, no = 0;
    gen_out a = {0}, c = {0};
    llava_gen_request r = {ids, 3, NULL, 0, {5, 0.f, 1.f, 0, 0}, NULL, &no, always_gone};
    EXPECT(!llava_generator_add(b, &r, gen_on_done, &a, &err), "add: %s", err.msg);
    r.ud = &yes;
    EXPECT(!llava_generator_add(b, &r, gen_on_done, &c, &err), "add: %s", err.msg);
    EXPECT(!llava_generator_step(b, &err), "step: %s", err.msg);
    EXPECT(c.ended == 1 && !c.failed && c.res.n_gen == 0 && c.res.t_prefill >= 0 && llava_generator_waiting(b) == 0,
           "a request whose client left: ended %d, %d tokens, %d waiting", c.ended, c.res.n_gen,
           llava_generator_waiting(b));
    for (int i = 0; i < 10 && !a.ended; i++) llava_generator_step(b, &err);
    EXPECT(a.ended == 1 && !a.failed && a.res.n_gen == 5, "the other request: ended %d, %d tokens", a.ended, a.res.n_gen);
    llava_generator_free(b);
    llava_gen_result_free(&a.res), llava_gen_result_free(&c.res);
}

int main(void) {
    const char *models[] = {"tiny-a", "tiny-b"};
    for (int k = 0; k < 2; k++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fixtures/%s", models[k]);
        llava_model *m = NULL;
        llava_err err = {{0}};
        if (llava_model_load(&m, dir, &err)) {
            EXPECT(0, "%s: %s", dir, err.msg);
            continue;
        }
        gen_scenario(m, NULL, models[k], 3, 0);
        if (k == 0) refusals(m), gone_before_start(m);
        llava_model_free(m);
    }
    TEST_END();
}

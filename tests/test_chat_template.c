/* test_chat_template.c — chat templates rendered as transformers renders them: every case of
 * tests/fixtures/chat_template/cases.json (jinja2 3.1.6 configured as transformers configures it,
 * tools/make_chat_template_fixtures.py) must render byte-identically or fail with jinja2's message;
 * loading from a model directory; unsupported constructs point to --raw. */
#include <cjson/cJSON.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/chat_template.h"
#include "formats/json.h"
#include "test.h"
#include "util/mem.h"

static void write_file(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void rm_dir(const char *dir) {
    const char *names[] = {"chat_template.json", "chat_template.jinja", "tokenizer_config.json"};
    char p[512];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

int main(void) {
    llava_err err = {{0}};
    cJSON *root = llava_json_load("tests/fixtures/chat_template/cases.json", &err);
    EXPECT(root != NULL, "cases.json: %s", err.msg);
    if (!root) TEST_END();
    const cJSON *templates = cJSON_GetObjectItem(root, "templates"), *convs = cJSON_GetObjectItem(root, "conversations");
    const cJSON *c;
    int shown = 0, n_cases = 0, n_ok = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        const char *tname = cJSON_GetObjectItem(c, "template")->valuestring;
        const char *cname = cJSON_GetObjectItem(c, "conversation")->valuestring;
        int agp = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        const cJSON *tj = cJSON_GetObjectItem(templates, tname);
        llava_chat_template *t = NULL;
        int ok = !llava_chat_template_from_string(&t, cJSON_GetObjectItem(tj, "source")->valuestring,
                                                  cJSON_GetObjectItem(tj, "bos_token")->valuestring,
                                                  cJSON_GetObjectItem(tj, "eos_token")->valuestring, &err);
        n_cases++;
        if (!ok) {
            EXPECT(0, "%s: does not load: %s", tname, err.msg);
            continue;
        }
        /* build the messages */
        const cJSON *conv = cJSON_GetObjectItem(convs, cname), *m;
        int nm = cJSON_GetArraySize(conv), k = 0;
        llava_chat_message *msgs = xcalloc((size_t)nm, sizeof *msgs);
        cJSON_ArrayForEach(m, conv) {
            msgs[k].role = cJSON_GetObjectItem(m, "role")->valuestring;
            const cJSON *content = cJSON_GetObjectItem(m, "content");
            if (cJSON_IsString(content)) msgs[k].content_str = content->valuestring;
            else {
                int np = cJSON_GetArraySize(content), j = 0;
                llava_chat_part *parts = xcalloc((size_t)np + 1, sizeof *parts);
                const cJSON *pt;
                cJSON_ArrayForEach(pt, content) {
                    const char *type = cJSON_GetObjectItem(pt, "type")->valuestring;
                    parts[j].type = !strcmp(type, "image") ? LLAVA_PART_IMAGE : LLAVA_PART_TEXT;
                    const cJSON *tx = cJSON_GetObjectItem(pt, "text");
                    parts[j].text = cJSON_IsString(tx) ? tx->valuestring : NULL;
                    j++;
                }
                msgs[k].parts = parts;
                msgs[k].n_parts = np;
            }
            k++;
        }
        char *out = llava_chat_render(t, msgs, nm, agp, &err);
        const cJSON *exp = cJSON_GetObjectItem(c, "expected"), *experr = cJSON_GetObjectItem(c, "error");
        if (cJSON_IsString(exp)) {
            int same = out && !strcmp(out, exp->valuestring);
            if (!same && shown++ < 5)
                printf("INFO %s/%s agp=%d\n--- got ---\n%s\n--- want ---\n%s\n---\n", tname, cname, agp,
                       out ? out : err.msg, exp->valuestring);
            EXPECT(same, "%s/%s (add_generation_prompt=%d): rendering differs from jinja2", tname, cname, agp);
            n_ok += same;
        } else {
            int same = !out && strstr(err.msg, experr->valuestring) != NULL;
            EXPECT(same, "%s/%s: expected the error \"%s\", got %s", tname, cname, experr->valuestring,
                   out ? "a rendering" : err.msg);
            n_ok += same;
        }
        free(out);
        for (int i = 0; i < nm; i++) free((void *)msgs[i].parts);
        free(msgs);
        llava_chat_template_free(t);
    }
    printf("INFO %d/%d jinja2 cases identical\n", n_ok, n_cases);
    cJSON_Delete(root);

    /* unsupported constructs: a load error that points to --raw */
    llava_chat_template *t = NULL;
    EXPECT(llava_chat_template_from_string(&t, "{% macro m() %}x{% endmacro %}{{ m() }}", NULL, NULL, &err) &&
               strstr(err.msg, "--raw"), "macro: %s", err.msg);
    EXPECT(llava_chat_template_from_string(&t, "{{ 'a' ", NULL, NULL, &err) && strstr(err.msg, "--raw"),
           "unterminated: %s", err.msg);
    EXPECT(llava_chat_template_from_string(&t, "{% for x in y %}", NULL, NULL, &err) && strstr(err.msg, "endfor"),
           "missing endfor: %s", err.msg);

    /* loading from a model directory, in transformers' order */
    char dir[] = "/tmp/llava-tmpl-XXXXXX";
    EXPECT(mkdtemp(dir) != NULL, "mkdtemp");
    EXPECT(llava_chat_template_load(&t, dir, &err) && strstr(err.msg, "--raw"), "empty dir: %s", err.msg);
    write_file(dir, "tokenizer_config.json", "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\", "
                                             "\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, "
                                             "{\"name\": \"default\", \"template\": \"{{ bos_token }}D{{ eos_token }}\"}]}");
    llava_chat_message msg = {.role = "user", .content_str = "hi"};
    char *o;
    EXPECT(!llava_chat_template_load(&t, dir, &err), "tokenizer_config list: %s", err.msg);
    if (t) {
        o = llava_chat_render(t, &msg, 1, 1, &err);
        EXPECT(o && !strcmp(o, "<s>D</s>"), "list form default: %s", o ? o : err.msg);
        free(o);
        llava_chat_template_free(t);
    }
    write_file(dir, "chat_template.jinja", "J{{ messages[0].content }}");
    EXPECT(!llava_chat_template_load(&t, dir, &err), "jinja file: %s", err.msg);
    if (t) {
        o = llava_chat_render(t, &msg, 1, 1, &err);
        EXPECT(o && !strcmp(o, "Jhi"), "chat_template.jinja wins over tokenizer_config: %s", o ? o : err.msg);
        free(o);
        llava_chat_template_free(t);
    }
    write_file(dir, "chat_template.json", "{\"chat_template\": \"C{{ messages | length }}\"}");
    EXPECT(!llava_chat_template_load(&t, dir, &err), "json file: %s", err.msg);
    if (t) {
        o = llava_chat_render(t, &msg, 1, 1, &err);
        EXPECT(o && !strcmp(o, "C1"), "chat_template.json wins: %s", o ? o : err.msg);
        free(o);
        llava_chat_template_free(t);
    }
    write_file(dir, "chat_template.json", "{\"chat_template\": 42}");
    EXPECT(llava_chat_template_load(&t, dir, &err) && strstr(err.msg, "--raw"), "bad json: %s", err.msg);
    rm_dir(dir);
    /* the fixture model */
    EXPECT(!llava_chat_template_load(&t, "tests/fixtures/tiny-a", &err), "tiny-a: %s", err.msg);
    if (t) {
        llava_chat_part parts[2] = {{LLAVA_PART_IMAGE, NULL}, {LLAVA_PART_TEXT, "What is shown in this image?"}};
        llava_chat_message um = {.role = "user", .parts = parts, .n_parts = 2};
        o = llava_chat_render(t, &um, 1, 1, &err);
        EXPECT(o && !strcmp(o, "[INST] <image>\nWhat is shown in this image? [/INST]"), "tiny-a render: %s", o ? o : err.msg);
        free(o);
        llava_chat_template_free(t);
    }
    TEST_END();
}

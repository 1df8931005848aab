/* prompt.c — chat template or raw text → input ids with expanded image tokens (see prompt.h). */
#include "engine/prompt.h"

#include <string.h>

#include "util/mem.h"

int llava_build_prompt(int **ids, int *n_ids, char **text_out, const llava_model *m, const char *text, int raw,
                       int n_images, const int *image_tokens, llava_err *err) {
    *ids = NULL;
    *n_ids = 0;
    if (text_out) *text_out = NULL;
    char *rendered = NULL;
    if (raw) {
        rendered = xstrdup(text);
    } else {
        if (!m->tmpl)
            return llava_errf(err, "%s; pass a pre-formatted prompt with --raw (e.g. --raw \"[INST] <image>\\n%s [/INST]\")",
                              m->tmpl_error[0] ? m->tmpl_error : "the model has no chat template", "...");
        llava_chat_part *parts = xcalloc((size_t)n_images + 1, sizeof *parts);
        for (int i = 0; i < n_images; i++) parts[i].type = LLAVA_PART_IMAGE;
        parts[n_images].type = LLAVA_PART_TEXT;
        parts[n_images].text = text;
        llava_chat_message msg = {.role = "user", .parts = parts, .n_parts = n_images + 1, .content_str = NULL};
        rendered = llava_chat_render(m->tmpl, &msg, 1, 1, err);
        free(parts);
        if (!rendered) return llava_err_prefix(err, "chat template (use --raw to bypass it)");
    }
    if (llava_tokenize_prompt(ids, n_ids, m, rendered, n_images, image_tokens, err)) {
        free(rendered);
        return -1;
    }
    if (text_out) *text_out = rendered;
    else free(rendered);
    return 0;
}

int llava_expand_image_tokens(int **out, int *n_out, const int *tok, int n, int image_token, int n_images,
                              const int *image_tokens, llava_err *err) {
    *out = NULL;
    *n_out = 0;
    int found = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (tok[i] == image_token) {
            if (found < n_images) total += (size_t)image_tokens[found];
            found++;
        } else
            total++;
    }
    if (found != n_images)
        return llava_errf(err, "the prompt has %d <image> placeholder%s but %d image%s given", found,
                          found == 1 ? "" : "s", n_images, n_images == 1 ? " was" : "s were");
    int *o = xmalloc(sizeof(int) * (total ? total : 1));
    size_t k = 0;
    for (int i = 0, im = 0; i < n; i++) {
        if (tok[i] == image_token) {
            for (int j = 0; j < image_tokens[im]; j++) o[k++] = image_token;
            im++;
        } else
            o[k++] = tok[i];
    }
    *out = o;
    *n_out = (int)k;
    return 0;
}

int llava_tokenize_prompt(int **ids, int *n_ids, const llava_model *m, const char *rendered, int n_images,
                          const int *image_tokens, llava_err *err) {
    int *tok = NULL, n = 0;
    if (llava_tokenize(m->tok, rendered, strlen(rendered), 1, &tok, &n, err)) return -1;
    int rc = llava_expand_image_tokens(ids, n_ids, tok, n, m->cfg.image_token_index, n_images, image_tokens, err);
    free(tok);
    return rc;
}

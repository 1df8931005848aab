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
    int *tok = NULL, n = 0;
    if (llava_tokenize(m->tok, rendered, strlen(rendered), 1, &tok, &n, err)) {
        free(rendered);
        return -1;
    }
    const int img = m->cfg.image_token_index;
    int found = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (tok[i] == img) {
            if (found < n_images) total += (size_t)image_tokens[found];
            found++;
        } else
            total++;
    }
    if (found != n_images) {
        free(tok);
        free(rendered);
        return llava_errf(err, "the prompt has %d <image> placeholder%s but %d image%s given", found,
                          found == 1 ? "" : "s", n_images, n_images == 1 ? " was" : "s were");
    }
    int *outv = xmalloc(sizeof(int) * (total ? total : 1));
    size_t o = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (tok[i] == img) {
            for (int j = 0; j < image_tokens[k]; j++) outv[o++] = img;
            k++;
        } else
            outv[o++] = tok[i];
    }
    free(tok);
    if (text_out) *text_out = rendered;
    else free(rendered);
    *ids = outv;
    *n_ids = (int)o;
    return 0;
}

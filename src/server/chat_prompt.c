/* chat_prompt.c — conversation → input ids with expanded image tokens (see chat_prompt.h). */
#include "server/chat_prompt.h"

#include <string.h>

#include "util/mem.h"

int llava_build_chat_prompt(int **ids, int *n_ids, const llava_model *m, const llava_chat_message *msgs, int n_msgs,
                            int n_images, const int *image_tokens, llava_err *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!m->tmpl) return llava_errf(err, "%s", m->tmpl_error[0] ? m->tmpl_error : "the model has no chat template");
    char *rendered = llava_chat_render(m->tmpl, msgs, n_msgs, 1, err);
    if (!rendered) return llava_err_prefix(err, "chat template");
    int *tok = NULL, n = 0;
    int bad = llava_tokenize(m->tok, rendered, strlen(rendered), 1, &tok, &n, err);
    free(rendered);
    if (bad) return -1;
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
        return llava_errf(err, "the prompt has %d <image> token%s but %d image%s given (do not type \"<image>\" in text)",
                          found, found == 1 ? "" : "s", n_images, n_images == 1 ? " was" : "s were");
    }
    int *out = xmalloc(sizeof(int) * (total ? total : 1));
    size_t o = 0;
    for (int i = 0, k = 0; i < n; i++) {
        if (tok[i] == img) {
            for (int j = 0; j < image_tokens[k]; j++) out[o++] = img;
            k++;
        } else
            out[o++] = tok[i];
    }
    free(tok);
    *ids = out;
    *n_ids = (int)o;
    return 0;
}

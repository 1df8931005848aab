/* chat_prompt.c — conversation → input ids with expanded image tokens (see chat_prompt.h). */
#include "server/chat_prompt.h"

#include <string.h>

#include "engine/prompt.h"
#include "util/mem.h"

int llava_build_chat_prompt(int **ids, int *n_ids, const llava_model *m, const llava_chat_message *msgs, int n_msgs,
                            int n_images, const int *image_tokens, llava_err *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!m->tmpl) return llava_errf(err, "%s", m->tmpl_error[0] ? m->tmpl_error : "the model has no chat template");
    char *rendered = llava_chat_render(m->tmpl, msgs, n_msgs, 1, err);
    if (!rendered) return llava_err_prefix(err, "chat template");
    int rc = llava_tokenize_prompt(ids, n_ids, m, rendered, n_images, image_tokens, err);
    free(rendered);
    return rc;
}

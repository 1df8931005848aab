/* chat_prompt.h — a whole conversation (several messages, images anywhere in them) to input ids,
 * the multi-message twin of engine/prompt.h's llava_build_prompt: render with the model's chat
 * template (add_generation_prompt on), tokenize with special tokens, expand the i-th <image> token
 * to image_tokens[i] copies, as LlavaNextProcessor does.
 */
#ifndef LLAVA_SERVER_CHAT_PROMPT_H
#define LLAVA_SERVER_CHAT_PROMPT_H

#include "formats/chat_template.h"
#include "model/llava.h"

/* *ids is malloc'd (caller frees). Errors: no chat template, a render error (raise_exception in the
 * template), invalid UTF-8, a <image> count that differs from n_images (e.g. "<image>" typed in the
 * text). */
int llava_build_chat_prompt(int **ids, int *n_ids, const llava_model *m, const llava_chat_message *msgs, int n_msgs,
                            int n_images, const int *image_tokens, llava_err *err);

#endif

/* prompt.h — turning a user's text and images into input ids, as transformers' processor does.
 *
 * Chat mode renders one user turn (images first, then the text) with the model's chat template
 * (add_generation_prompt on); raw mode takes the text as already formatted. Either way the string
 * is tokenized with the tokenizer's special tokens (BOS from its post-processor), and the i-th
 * `<image>` token is expanded to image_tokens[i] copies, as LlavaNextProcessor does.
 */
#ifndef LLAVA_PROMPT_H
#define LLAVA_PROMPT_H

#include "model/llava.h"

/* *text_out (may be NULL) receives the malloc'd rendered prompt string. */
int llava_build_prompt(int **ids, int *n_ids, char **text_out, const llava_model *m, const char *text, int raw,
                       int n_images, const int *image_tokens, llava_err *err);

/* The processor's expansion: tok (n) holds one image_token_index per image; *out gets the i-th
 * expanded to image_tokens[i] copies. Errors when the count of image tokens is not n_images. */
int llava_expand_image_tokens(int **out, int *n_out, const int *tok, int n, int image_token, int n_images,
                              const int *image_tokens, llava_err *err);

/* Tokenizes a rendered prompt (BOS from the tokenizer) and expands its image tokens. */
int llava_tokenize_prompt(int **ids, int *n_ids, const llava_model *m, const char *rendered, int n_images,
                          const int *image_tokens, llava_err *err);

#endif

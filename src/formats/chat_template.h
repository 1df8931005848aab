/* chat_template.h — a model's chat template applied the way transformers'
 * `processor.apply_chat_template(messages, tokenize=False)` applies it.
 *
 * Owns: finding the template in a model directory, a small interpreter for the Jinja subset that chat
 * templates use (docs/chat-template.md lists it), and rendering a conversation to the prompt string.
 * Assumes: templates are trusted enough to run (they are data from the checkpoint, but the interpreter
 * is sandboxed: no I/O, bounded ranges and output size, nothing mutable except namespace() objects).
 * Never: guesses. A construct outside the subset fails at load time with a message that says so and
 * tells the user to pass a pre-formatted prompt with --raw; anything jinja2 would raise at render
 * time (raise_exception, undefined attribute in arithmetic, type errors) fails the render.
 *
 * Rendering context (what transformers passes): messages, add_generation_prompt, bos_token, eos_token
 * (undefined when NULL), tools = documents = None, plus the template globals raise_exception,
 * namespace, range, dict, strftime_now. Each message is {"role": role, "content": content} where
 * content is content_str when non-NULL, else the list of parts, each {"type": "image"} or
 * {"type": "text", "text": text}.
 *
 * Thread safety: a loaded template is immutable; any number of threads may render with it at once.
 */
#ifndef LLAVA_CHAT_TEMPLATE_H
#define LLAVA_CHAT_TEMPLATE_H

#include "util/status.h"

typedef enum { LLAVA_PART_TEXT, LLAVA_PART_IMAGE } llava_part_type;

typedef struct {
    llava_part_type type;
    const char *text; /* TEXT: UTF-8 text (NULL renders as ""); IMAGE: ignored */
} llava_chat_part;

typedef struct {
    const char *role;            /* "system", "user", "assistant", ... (must not be NULL) */
    const llava_chat_part *parts;
    int n_parts;
    const char *content_str;     /* if non-NULL, content is this plain string instead of parts */
} llava_chat_message;

typedef struct llava_chat_template llava_chat_template;

/* Finds the template in model_dir, in transformers' order: chat_template.json ("chat_template" key),
 * chat_template.jinja, then the "chat_template" key of tokenizer_config.json (a string, or a list of
 * {"name", "template"} from which the "default" one is taken). bos_token/eos_token come from
 * tokenizer_config.json (a string or an {"content": ...} object; absent → undefined in the template).
 * Missing everywhere, unreadable, or outside the supported subset → -1 with a message pointing to --raw.
 * On success *out must be freed with llava_chat_template_free. */
int llava_chat_template_load(llava_chat_template **out, const char *model_dir, llava_err *err);

/* Parses a template source. bos/eos may be NULL (then undefined inside the template); they are copied. */
int llava_chat_template_from_string(llava_chat_template **out, const char *source, const char *bos,
                                    const char *eos, llava_err *err);

/* Renders msgs[0..n_msgs). Returns a malloc'd NUL-terminated string the caller frees, or NULL with err
 * set (a raise_exception() message is quoted in it). */
char *llava_chat_render(const llava_chat_template *t, const llava_chat_message *msgs, int n_msgs,
                        int add_generation_prompt, llava_err *err);

/* The template's source text as loaded (after JSON decoding); valid while t lives. */
const char *llava_chat_template_source(const llava_chat_template *t);

void llava_chat_template_free(llava_chat_template *t);

#endif

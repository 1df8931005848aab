/* classify.h — label scoring: the probability of each of the user's labels for an image.
 *
 * For label L the candidate continuation is tokenize(prompt + " " + answer(L)) after the prompt's
 * own tokens, then EOS — what the chat template renders for the assistant turn the model was
 * fine-tuned on. score(L) = Σ log p(continuation tokens | prompt, image); probabilities = softmax of
 * the scores over the labels. One prefill of the prompt, then every label's continuation in one
 * forward over a token trie (shared prefixes such as "this is a photo of" are computed once).
 * The classifier is read-only after creation; llava_classify may run on several threads at once.
 */
#ifndef LLAVA_CLASSIFY_H
#define LLAVA_CLASSIFY_H

#include "image/image.h"
#include "model/gpu.h"
#include "model/llava.h"

#define LLAVA_DEFAULT_QUESTION                                                                              \
    "Fill in the blank: this is a photo of a {}, you should select the appropriate categories from the " \
    "provided labels: [{labels}]"
#define LLAVA_DEFAULT_ANSWER "this is a photo of {label}."

typedef struct llava_classifier llava_classifier;

/* The classification settings a fine-tuning run writes next to its model, so `classify` and `serve`
 * use the wording the model was trained on: MODEL_DIR/llava_classify.json =
 * {"labels": ["Room", ...], "question": "...{labels}...", "answer": "...{label}..."}, each key
 * optional. Absent file: 0 with everything empty. Malformed file: -1 with a message. */
#define LLAVA_CLASSIFY_CONFIG "llava_classify.json"
typedef struct llava_classify_config {
    char **labels;
    int n_labels;
    char *question, *answer; /* NULL when absent */
} llava_classify_config;
int llava_classify_config_load(llava_classify_config *c, const char *model_dir, llava_err *err);
void llava_classify_config_free(llava_classify_config *c);

/* question: "{labels}" is replaced by the labels joined by ","; answer: "{label}" by each label.
 * NULL selects the defaults above. Errors: empty label set, empty or duplicate labels, an answer
 * template without {label}, a model without chat template, a continuation that does not start at
 * a token boundary. */
int llava_classifier_new(llava_classifier **out, const llava_model *m, const char *const *labels, int n_labels,
                         const char *question, const char *answer, llava_err *err);
void llava_classifier_free(llava_classifier *c);

int llava_classifier_n_labels(const llava_classifier *c);
const char *llava_classifier_label(const llava_classifier *c, int i);
const char *llava_classifier_prompt(const llava_classifier *c);            /* the rendered prompt text */
/* continuation token ids of label i (EOS included) */
const int *llava_classifier_continuation(const llava_classifier *c, int i, int *n);
int llava_classifier_trie_size(const llava_classifier *c);
/* nodes that are some node's parent: the trie tokens a forward must run (a leaf's own output is
 * used by no label; every continuation ends in a leaf) */
int llava_classifier_trie_inner(const llava_classifier *c);
/* The prompt's token ids with its image token expanded to n_feats copies (malloc'd). */
int llava_classifier_prompt_ids(const llava_classifier *c, int n_feats, int **ids, int *n, llava_err *err);
/* length of that prompt */
int llava_classifier_prompt_tokens(const llava_classifier *c, int n_feats);
/* The label trie (borrowed): node j has token tok[j] and parent par[j] (-1: right after the prompt,
 * parents precede children); returns the node count. */
int llava_classifier_trie(const llava_classifier *c, const int **tok, const int **par);
/* probs[n_labels] and scores[n_labels] (may be NULL) from node_lp[j] = log p(tok[j] | prompt,
 * ancestors of j), j over the trie's nodes. */
void llava_classifier_score_nodes(const llava_classifier *c, const float *node_lp, double *probs, double *scores);

/* probs[n_labels] (softmax) and, if not NULL, scores[n_labels] (summed log-probabilities) for a
 * decoded image. */
int llava_classify(double *probs, double *scores, const llava_classifier *c, const llava_image *img, llava_err *err);

/* The same for an already preprocessed image (pixels from llava_preprocess of an H x W image). */
int llava_classify_pixels(double *probs, double *scores, const llava_classifier *c, const float *pixels, int n_tiles,
                          int H, int W, llava_err *err);

/* The same on a CUDA device, as a one-image batched step (gpu from llava_gpu_load; one thread per
 * gpu). Throughput work goes through the scheduler (engine/scheduler.h) instead. */
int llava_classify_pixels_gpu(double *probs, double *scores, const llava_classifier *c, llava_gpu *gpu,
                              const float *pixels, int n_tiles, int H, int W, llava_err *err);

#endif

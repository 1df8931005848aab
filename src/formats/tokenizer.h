/* tokenizer.h — Hugging Face `tokenizers` re-implemented for SentencePiece-style BPE (tokenizer.json).
 *
 * Owns: a loaded tokenizer (vocabulary, merge ranks, added tokens, normalizer, decoder,
 * post-processor template). Read-only after load: every function below may be called from
 * several threads at once on the same handle (each call allocates its own scratch).
 *
 * Implemented (the Mistral / Llama-2 tokenizer.json family, as llava-hf ships it):
 *   model BPE (merges as "a b" strings or [a, b] pairs, byte_fallback, unk_token, fuse_unk,
 *   ignore_merges, continuing_subword_prefix, end_of_word_suffix); normalizers Sequence /
 *   Prepend / Replace (string pattern); no pre-tokenizer, or Metaspace (what transformers v5's
 *   LlamaTokenizer class builds instead of the file's normalizer); decoders Sequence / Replace /
 *   ByteFallback / Fuse / Strip / Metaspace; post-processor TemplateProcessing (or none); added
 *   tokens split out before normalization with their normalized / lstrip / rstrip / single_word /
 *   special flags.
 * Anything else (Unigram, WordPiece, ByteLevel, NFKC, regex patterns, dropout) is refused at
 * load with a message naming the file and the part, never silently approximated.
 * See docs/tokenizer.md for what is and is not implemented.
 */
#ifndef LLAVA_TOKENIZER_H
#define LLAVA_TOKENIZER_H

#include <stddef.h>

#include "util/status.h"

typedef struct llava_tokenizer llava_tokenizer;

/* Loads tokenizer.json. Returns 0 and sets *out (free with llava_tokenizer_free), or -1 with a
 * message naming the file (missing, not JSON, unsupported model/normalizer/decoder, merge that
 * refers to an unknown piece, ...). */
int llava_tokenizer_load(llava_tokenizer **out, const char *tokenizer_json_path, llava_err *err);
void llava_tokenizer_free(llava_tokenizer *t); /* NULL is fine */

/* HF encode(text, add_special_tokens=add_special).ids. text is UTF-8 of len bytes (may hold NULs;
 * NULL is fine when len == 0). On success *ids is malloc'd (caller frees; non-NULL even when
 * *n_ids == 0). Fails (-1) on invalid UTF-8 (HF only accepts valid str), on a piece that needs
 * <unk> when the vocabulary has none, and on out-of-memory. */
int llava_tokenize(const llava_tokenizer *t, const char *text, size_t len, int add_special, int **ids,
                   int *n_ids, llava_err *err);

/* HF decode(ids, skip_special_tokens=skip_special): malloc'd NUL-terminated UTF-8 (caller frees).
 * Unknown ids are skipped, as HF does; runs of byte pieces that are not valid UTF-8 become one
 * U+FFFD per byte. NULL only on out-of-memory. */
char *llava_detokenize(const llava_tokenizer *t, const int *ids, int n, int skip_special);

/* The piece of an id as HF id_to_token gives it ("▁the", "<0x0A>", "<image>"); NULL if none.
 * The string lives as long as the tokenizer. */
const char *llava_token_piece(const llava_tokenizer *t, int id);
/* Id of an exact piece (added tokens first, then the model vocabulary); -1 if unknown. */
int llava_token_id(const llava_tokenizer *t, const char *piece);
/* Largest id + 1, added tokens included. */
int llava_tokenizer_vocab_size(const llava_tokenizer *t);
/* Id the post-processor prepends when add_special is on (first special id before $A); -1 if none. */
int llava_tokenizer_bos(const llava_tokenizer *t);
/* Id of "</s>", or -1. */
int llava_tokenizer_eos(const llava_tokenizer *t);
/* 1 if decode(skip_special_tokens=True) drops this id (an added token marked special). */
int llava_token_is_special(const llava_tokenizer *t, int id);

#endif

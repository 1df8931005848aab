/* safetensors.h — reading (mmap, zero copy) and writing Hugging Face safetensors files.
 *
 * File format: 8 bytes little-endian u64 N, then N bytes of JSON header, then the data section.
 * The header is an object: tensor name → {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}
 * (offsets relative to the start of the data section), plus an optional "__metadata__" object of
 * string → string.
 *
 * Owns: the memory maps of every opened file, the tensor table (names, shapes) and the metadata.
 * A llava_tensor's data points straight into the map: it is valid, read-only, until
 * llava_st_close(). Nothing is copied on open; pages are read when first touched.
 *
 * Validation on open (each one a -1 with a one-line message naming the file and, where there is
 * one, the tensor; nothing past the end of the file is ever read):
 *   - zero-byte file; file shorter than 8 bytes;
 *   - header length past the end of the file, or larger than 100 MB;
 *   - header not valid JSON, not an object, or with trailing non-whitespace;
 *   - a tensor entry that is not an object, or lacks dtype/shape/data_offsets, or has them with
 *     the wrong JSON types; an unknown dtype string; more than 8 dims; a negative or
 *     non-integer dim; numel * dtype size overflowing;
 *   - data_offsets not [begin, end] of non-negative integers with begin <= end; end past the
 *     data section; end - begin != numel * dtype size;
 *   - two tensors of one file whose byte ranges overlap (holes between tensors are allowed;
 *     zero-byte tensors overlap nothing);
 *   - a "__metadata__" that is not an object of strings;
 *   - the same tensor name twice (in one header, or across the shards of a directory).
 *
 * Order: llava_st_at(st, i) for i in [0, llava_st_count(st)) walks the tensors sorted by name
 * (strcmp), which is also what makes llava_st_find O(log n).
 *
 * Never: writes to the map, exits, or aborts on bad input (CHECK only guards API misuse bugs such
 * as a NULL handle).
 */
#ifndef LLAVA_SAFETENSORS_H
#define LLAVA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

typedef enum {
    LLAVA_DT_F32,
    LLAVA_DT_F16,
    LLAVA_DT_BF16,
    LLAVA_DT_F64,
    LLAVA_DT_I64,
    LLAVA_DT_I32,
    LLAVA_DT_I16,
    LLAVA_DT_I8,
    LLAVA_DT_U8,
    LLAVA_DT_BOOL,
    LLAVA_DT_F8_E4M3,
    LLAVA_DT_F8_E5M2
} llava_dtype;
#define LLAVA_DT_COUNT 12

/* Bytes per element (BOOL is 1 byte); 0 for a value outside the enum. */
size_t llava_dtype_size(llava_dtype d);
/* The safetensors spelling: "F32", "BF16", "F8_E4M3", ...; "?" for a value outside the enum. */
const char *llava_dtype_name(llava_dtype d);

typedef struct llava_tensor {
    const char *name;  /* Hugging Face name, e.g. "language_model.model.layers.0.mlp.up_proj.weight" */
    llava_dtype dtype;
    int ndim;          /* 0 (scalar) .. 8 */
    int64_t shape[8];  /* shape[ndim..7] are 0 */
    int64_t numel;     /* product of shape (1 for a scalar) */
    const void *data;  /* into the mmap, read-only; aligned only as the file makes it (Python
                          safetensors and llava_st_write start the data section at a multiple of
                          8 bytes). For nbytes == 0 it must not be dereferenced. */
    size_t nbytes;     /* numel * llava_dtype_size(dtype) */
    const char *file;  /* path of the file it lives in (owned by the llava_safetensors) */
} llava_tensor;

typedef struct llava_safetensors llava_safetensors;

/* Opens and validates one file. On success *out is a handle to free with llava_st_close(). On
 * failure *out is NULL and err says why. */
int llava_st_open(llava_safetensors **out, const char *path, llava_err *err);

/* Opens a model directory, as Hugging Face does: dir/model.safetensors if present, otherwise
 * dir/model.safetensors.index.json, whose "weight_map" (tensor name → shard file name in dir)
 * names the shards. Every shard is opened once; all tensors of all shards are visible. Errors: a
 * shard that is missing or invalid, a name in the weight_map that is absent from the shard it
 * names, the same name in two shards, a shard path that is absolute or contains "..", and a
 * directory with neither file (the message lists the two expected names and any *.safetensors
 * files found there). */
int llava_st_open_dir(llava_safetensors **out, const char *dir, llava_err *err);

/* The tensor called name, or NULL if absent. O(log n). */
const llava_tensor *llava_st_find(const llava_safetensors *st, const char *name);

int llava_st_count(const llava_safetensors *st);
/* i in [0, count); tensors sorted by name. */
const llava_tensor *llava_st_at(const llava_safetensors *st, int i);

/* Value of key in the "__metadata__" of the first file (for a sharded directory: the shard whose
 * file name sorts first), or NULL if absent. Valid until llava_st_close(). */
const char *llava_st_metadata(const llava_safetensors *st, const char *key);

/* Unmaps every file and frees everything; tensors and strings from st become invalid. NULL is ok. */
void llava_st_close(llava_safetensors *st);

/* Converts t's F32/F16/BF16/F64 data to float32 into dst (t->numel floats). BF16 and F16 are
 * exact (subnormals, ±inf, nan kept); F64 rounds to nearest. Any other dtype is an error naming the
 * tensor and the file. */
int llava_tensor_to_f32(float *dst, const llava_tensor *t, llava_err *err);

float llava_bf16_to_f32(uint16_t h);
/* Round to nearest, ties to even, as torch does; nan becomes the quiet nan 0x7FC0. */
uint16_t llava_f32_to_bf16(float f);
float llava_f16_to_f32(uint16_t h);

/* 0 if t has exactly ndim dims equal to shape[0..ndim). Otherwise -1 with a message like
 * "model.safetensors: tensor \"x.weight\": expected shape [4096, 4096], got [4096, 1024]".
 * A NULL t (from llava_st_find) is reported as a missing tensor. */
int llava_tensor_expect(const llava_tensor *t, int ndim, const int64_t *shape, llava_err *err);

typedef struct {
    const char *name;
    llava_dtype dtype;
    int ndim;          /* 0..8 */
    int64_t shape[8];
    const void *data;  /* numel * llava_dtype_size(dtype) bytes; may be NULL when that is 0 */
} llava_st_entry;

/* Writes a safetensors file readable by Python safetensors: header entries in the given order,
 * header padded with spaces to a multiple of 8 bytes (so the data section is 8-byte aligned, as
 * the Python library does), data laid out largest element size first (stable), so every tensor's
 * data is aligned to its element size when mapped, and an optional "__metadata__" from meta_kv = {k0, v0, k1, v1, ...}
 * (n_meta pairs; meta_kv may be NULL when n_meta is 0). Writes path.tmp, then renames it to path,
 * so a reader never sees a half-written file. Errors: empty or duplicate names, the reserved name
 * "__metadata__", a bad dtype/ndim/negative dim, NULL data for a non-empty tensor, and I/O
 * failures (path.tmp is then removed). */
int llava_st_write(const char *path, const llava_st_entry *entries, int n, const char *const *meta_kv,
                   int n_meta, llava_err *err);

#endif

/* idset.h — a set of strings (input ids) mapped to an int, for duplicate checks, resume and merge.
 *
 * Owns: copies of the keys. Open addressing with linear probing, grown at 1/2 load, so lookups
 * stay O(1) for millions of ids. Not thread-safe (one owner).
 */
#ifndef LLAVA_BATCH_IDSET_H
#define LLAVA_BATCH_IDSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct llava_idset {
    char **keys;   /* (cap) NULL = empty slot */
    int *vals;     /* (cap) */
    size_t cap, n; /* cap is a power of two or 0 */
} llava_idset;

/* 64-bit FNV-1a of the bytes followed by a splitmix64 finalizer: stable across runs, machines and
 * builds (it is part of the shard assignment contract, see shard.h). */
uint64_t llava_id_hash(const char *s);

/* Inserts key -> val. Returns -1 when inserted, else the value already stored for key (the set
 * is unchanged). */
int llava_idset_put(llava_idset *s, const char *key, int val);
/* The value of key, or -1 when absent. */
int llava_idset_get(const llava_idset *s, const char *key);
void llava_idset_free(llava_idset *s);

#endif

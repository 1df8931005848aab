/* idset.c — string set with int values (see idset.h). */
#include "batch/idset.h"

#include <string.h>

#include "util/mem.h"

uint64_t llava_id_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    /* FNV's low bits mix poorly for short keys; the finalizer spreads them before "mod N". */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

static size_t find_slot(char *const *keys, size_t cap, const char *key) {
    size_t i = (size_t)llava_id_hash(key) & (cap - 1);
    while (keys[i] && strcmp(keys[i], key) != 0) i = (i + 1) & (cap - 1);
    return i;
}

static void grow(llava_idset *s) {
    size_t ncap = s->cap ? s->cap * 2 : 64;
    char **nk = xcalloc(ncap, sizeof *nk);
    int *nv = xcalloc(ncap, sizeof *nv);
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->keys[i]) continue;
        size_t j = find_slot(nk, ncap, s->keys[i]);
        nk[j] = s->keys[i];
        nv[j] = s->vals[i];
    }
    free(s->keys);
    free(s->vals);
    s->keys = nk;
    s->vals = nv;
    s->cap = ncap;
}

int llava_idset_put(llava_idset *s, const char *key, int val) {
    if ((s->n + 1) * 2 > s->cap) grow(s);
    size_t i = find_slot(s->keys, s->cap, key);
    if (s->keys[i]) return s->vals[i];
    s->keys[i] = xstrdup(key);
    s->vals[i] = val;
    s->n++;
    return -1;
}

int llava_idset_get(const llava_idset *s, const char *key) {
    if (!s->cap) return -1;
    size_t i = find_slot(s->keys, s->cap, key);
    return s->keys[i] ? s->vals[i] : -1;
}

void llava_idset_free(llava_idset *s) {
    for (size_t i = 0; i < s->cap; i++) free(s->keys[i]);
    free(s->keys);
    free(s->vals);
    memset(s, 0, sizeof *s);
}

/* tokenizer.c — Hugging Face `tokenizers` BPE pipeline for SentencePiece-style tokenizer.json.
 *
 * Owns: everything inside llava_tokenizer (one string pool, hash maps, tables); the cJSON tree
 * is freed at the end of load. Read-only after load; each encode/decode allocates its scratch.
 *
 * The pipeline follows HF `tokenizers` step by step, because "faithful" means the same ids for
 * every input, including odd ones:
 *   1. added tokens with normalized=false are cut out of the raw text (leftmost-longest match,
 *      non-overlapping, then the single_word / lstrip / rstrip rules);
 *   2. each remaining piece is normalized on its own (so Prepend("▁") gives the text after
 *      "<image>" its own "▁"), then added tokens with normalized=true are cut out of it;
 *   3. each remaining piece is one BPE word (no pre-tokenizer; a Metaspace pre-tokenizer, if the
 *      file has one, replaces spaces, prepends "▁" and may split it into words): chars -> ids
 *      (byte fallback, unk fusing), then merges by rank with a min-heap keyed (rank, position),
 *      skipping stale entries exactly as HF's Word::merge_all does. Long words are cut where no
 *      vocabulary piece can span the cut (see bpe_word), which keeps the heaps small and gives
 *      the same result;
 *   4. the TemplateProcessing "single" template wraps the ids when add_special is on.
 * Decoding runs the decoder chain on the list of piece strings (Replace, ByteFallback, Fuse,
 * Strip, Metaspace), as HF's decode_chain does.
 * Never: call exit(), approximate an unsupported component, or keep global state.
 */
#include "formats/tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/json.h"
#include "util/mem.h"

#define NONE32 UINT32_MAX

/* ---------------------------------------------------------------------------------------------
 * String pool: every string the tokenizer keeps lives here, NUL-terminated, addressed by offset
 * (offsets stay valid while the pool grows). */
typedef struct {
    char *data;
    size_t len, cap;
} pool;

static uint32_t pool_add(pool *p, const char *s, size_t n) {
    if (p->len + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 1 << 16;
        while (p->len + n + 1 > cap) cap *= 2;
        p->data = xrealloc(p->data, cap);
        p->cap = cap;
    }
    CHECK(p->len + n + 1 < NONE32);
    uint32_t off = (uint32_t)p->len;
    if (n) memcpy(p->data + off, s, n);
    p->data[off + n] = 0;
    p->len += n + 1;
    return off;
}

/* ---------------------------------------------------------------------------------------------
 * String -> int map, open addressing with linear probing; keys are pool offsets. */
typedef struct {
    uint32_t off, len, hash;
    int32_t val;
} smap_slot;

typedef struct {
    smap_slot *slots;
    uint32_t mask, count;
} smap;

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h;
}

static void smap_init(smap *m, size_t expected) {
    uint32_t cap = 16;
    while (cap < expected * 2 + 16) cap *= 2;
    m->slots = xmalloc(sizeof(smap_slot) * cap);
    for (uint32_t i = 0; i < cap; i++) m->slots[i].off = NONE32;
    m->mask = cap - 1;
    m->count = 0;
}

static void smap_free(smap *m) { free(m->slots); }

static smap_slot *smap_find(const smap *m, const pool *p, const char *s, size_t n, uint32_t h) {
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        smap_slot *e = &m->slots[i];
        if (e->off == NONE32) return e;
        if (e->hash == h && e->len == n && memcmp(p->data + e->off, s, n) == 0) return e;
    }
}

static int smap_get(const smap *m, const pool *p, const char *s, size_t n) {
    if (!m->slots) return -1;
    smap_slot *e = smap_find(m, p, s, n, hash_bytes(s, n));
    return e->off == NONE32 ? -1 : e->val;
}

static void smap_grow(smap *m, const pool *p) {
    smap old = *m;
    smap_init(m, (size_t)(old.mask + 1));
    for (uint32_t i = 0; i <= old.mask; i++) {
        smap_slot *e = &old.slots[i];
        if (e->off == NONE32) continue;
        *smap_find(m, p, p->data + e->off, e->len, e->hash) = *e;
        m->count++;
    }
    smap_free(&old);
}

/* Inserts or overwrites (a later duplicate key wins, as when serde fills a HashMap). The key is
 * copied into the pool unless it is there already. Returns the key's pool offset. */
static uint32_t smap_put(smap *m, pool *p, const char *s, size_t n, int val) {
    if ((m->count + 1) * 2 > m->mask + 1) smap_grow(m, p);
    uint32_t h = hash_bytes(s, n);
    smap_slot *e = smap_find(m, p, s, n, h);
    if (e->off == NONE32) {
        uint32_t off = pool_add(p, s, n);
        e = smap_find(m, p, s, n, h); /* the pool may have moved; slots did not */
        e->off = off;
        e->len = (uint32_t)n;
        e->hash = h;
        m->count++;
    }
    e->val = val;
    return e->off;
}

/* ---------------------------------------------------------------------------------------------
 * Merge map: (left id, right id) -> (rank, merged id). */
typedef struct {
    uint64_t key;
    uint32_t rank;
    int32_t new_id;
} mslot;

#define MKEY_EMPTY UINT64_MAX

static uint32_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (uint32_t)x;
}

/* ---------------------------------------------------------------------------------------------
 * Components. */
enum { NORM_PREPEND, NORM_REPLACE };
typedef struct {
    int type;
    uint32_t a_off, a_len; /* Prepend: text; Replace: pattern */
    uint32_t b_off, b_len; /* Replace: content */
} norm_op;

enum { DEC_REPLACE, DEC_BYTE_FALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER }; /* Metaspace prepend_scheme */
typedef struct {
    int type;
    uint32_t a_off, a_len, b_off, b_len; /* Replace: pattern, content */
    uint32_t ch;                         /* Strip: the code point; Metaspace: the replacement */
    size_t start, stop;                  /* Strip: how many to cut at each end */
    int prepend;                         /* Metaspace: PREPEND_* */
} dec_op;

typedef struct {
    uint32_t off, len;   /* content */
    uint32_t poff, plen; /* pattern matched in text: content, or its normalized form */
    int id;
    uint8_t single_word, lstrip, rstrip, normalized, special;
} added_tok;

/* Patterns of one kind (raw or normalized) bucketed by first byte for leftmost-longest scans. */
typedef struct {
    int *idx;        /* indices into added[], grouped by first byte */
    int start[257];  /* bucket b is idx[start[b] .. start[b+1]) */
    int n;
} match_set;

struct llava_tokenizer {
    pool pool;
    smap vocab;       /* model vocabulary: piece -> id */
    smap added_map;   /* added token content -> id */
    smap special_set; /* contents of special added tokens */
    mslot *merges;
    uint32_t merges_mask;

    int vocab_count;  /* number of model vocabulary entries (HF get_vocab_size) */
    int n_ids;        /* largest id + 1 */
    uint32_t *piece_off, *piece_len; /* per id: the HF id_to_token string; piece_off NONE32 = none */
    uint8_t *skip;    /* per id: dropped by decode(skip_special_tokens=True) */

    int has_unk_token, unk_id;
    int byte_ids[256];
    int ascii_ids[128]; /* id of each one-byte piece, -1 if none: the common case of char lookup */
    /* Bit (a*129+b) set when some vocabulary piece holds char a right before char b, for a, b in
     * the small alphabet ASCII + U+2581 ("▁" = 128). Where it is clear, no piece can ever span the
     * boundary between a and b, so the merge loop can treat both sides separately (see bpe_word). */
    uint64_t pair_bits[(129 * 129 + 63) / 64];
    int can_split;
    int fuse_unk, byte_fallback, ignore_merges;
    int has_prefix, has_suffix;
    uint32_t prefix_off, prefix_len, suffix_off, suffix_len;

    norm_op *norm;
    int n_norm, has_normalizer;
    /* Metaspace pre-tokenizer (the only one supported; absent in the Mistral/Llama-2 files) */
    int has_metaspace, ms_prepend, ms_split;
    char ms_rep[5]; /* the replacement char, UTF-8 */
    int ms_rep_len;
    dec_op *dec;
    int n_dec, has_decoder;
    int *tmpl; /* single template flattened: ids, and -1 where $A goes */
    int n_tmpl;

    added_tok *added;
    int n_added;
    int *added_by_id; /* id -> index in added[] or -1 */
    match_set mset[2]; /* [0] normalized=false (raw text), [1] normalized=true */
};

/* ---------------------------------------------------------------------------------------------
 * UTF-8 helpers. */

/* Length of a strictly valid UTF-8 sequence at s (n bytes available), 0 if invalid. */
static int utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0; /* > U+10FFFF */
        return 4;
    }
    return 0;
}

/* Offset of the first invalid byte, or n if all of s is valid UTF-8. */
static size_t utf8_check(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int k = utf8_valid_len(u + i, n - i);
        if (!k) return i;
        i += (size_t)k;
    }
    return n;
}

/* Length of the (valid) UTF-8 character starting with byte c. */
static inline int utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

static uint32_t utf8_decode(const char *s, int k) {
    const unsigned char *u = (const unsigned char *)s;
    switch (k) {
    case 1: return u[0];
    case 2: return ((u[0] & 0x1Fu) << 6) | (u[1] & 0x3Fu);
    case 3: return ((u[0] & 0x0Fu) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3Fu);
    default: return ((u[0] & 0x07u) << 18) | ((u[1] & 0x3Fu) << 12) | ((u[2] & 0x3Fu) << 6) | (u[3] & 0x3Fu);
    }
}

/* Start of the character that ends at s[n-1] (s valid UTF-8, n > 0). */
static size_t utf8_prev(const char *s, size_t n) {
    size_t i = n - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

/* Unicode White_Space (what the regex crate's \s matches). */
static int is_space_cp(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* The regex crate's \w beyond ASCII: Alphabetic (L*, Nl, Other_Alphabetic), marks (M*), decimal
 * digits (Nd), connector punctuation (Pc) and the joiners U+200C/U+200D, as inclusive code point
 * ranges. Generated with unicodedata2==16.0.0 (Unicode 16.0, the version HF tokenizers 0.23.3's regex
 * crate uses: this table matched it on 30000 random code points, Unicode 14 and 18 tables did not):
 *   [c for c in range(0x80, 0x110000) if unicodedata2.category(chr(c)) in
 *    {Lu,Ll,Lt,Lm,Lo,Nl,Mn,Mc,Me,Nd,Pc}] + U+200C..D + the So code points of Other_Alphabetic
 *   (U+24B6..24E9, U+1F130..1F149, U+1F150..1F169, U+1F170..1F189).
 * Only added tokens with single_word=true use it. */
static const uint32_t word_ranges[][2] = {
    {0xAA, 0xAA}, {0xB5, 0xB5}, {0xBA, 0xBA}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x2C1}, {0x2C6, 0x2D1},
    {0x2E0, 0x2E4}, {0x2EC, 0x2EC}, {0x2EE, 0x2EE}, {0x300, 0x374}, {0x376, 0x377}, {0x37A, 0x37D},
    {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5},
    {0x3F7, 0x481}, {0x483, 0x52F}, {0x531, 0x556}, {0x559, 0x559}, {0x560, 0x588}, {0x591, 0x5BD},
    {0x5BF, 0x5BF}, {0x5C1, 0x5C2}, {0x5C4, 0x5C5}, {0x5C7, 0x5C7}, {0x5D0, 0x5EA}, {0x5EF, 0x5F2},
    {0x610, 0x61A}, {0x620, 0x669}, {0x66E, 0x6D3}, {0x6D5, 0x6DC}, {0x6DF, 0x6E8}, {0x6EA, 0x6FC},
    {0x6FF, 0x6FF}, {0x710, 0x74A}, {0x74D, 0x7B1}, {0x7C0, 0x7F5}, {0x7FA, 0x7FA}, {0x7FD, 0x7FD},
    {0x800, 0x82D}, {0x840, 0x85B}, {0x860, 0x86A}, {0x870, 0x887}, {0x889, 0x88E}, {0x897, 0x8E1},
    {0x8E3, 0x963}, {0x966, 0x96F}, {0x971, 0x983}, {0x985, 0x98C}, {0x98F, 0x990}, {0x993, 0x9A8},
    {0x9AA, 0x9B0}, {0x9B2, 0x9B2}, {0x9B6, 0x9B9}, {0x9BC, 0x9C4}, {0x9C7, 0x9C8}, {0x9CB, 0x9CE},
    {0x9D7, 0x9D7}, {0x9DC, 0x9DD}, {0x9DF, 0x9E3}, {0x9E6, 0x9F1}, {0x9FC, 0x9FC}, {0x9FE, 0x9FE},
    {0xA01, 0xA03}, {0xA05, 0xA0A}, {0xA0F, 0xA10}, {0xA13, 0xA28}, {0xA2A, 0xA30}, {0xA32, 0xA33},
    {0xA35, 0xA36}, {0xA38, 0xA39}, {0xA3C, 0xA3C}, {0xA3E, 0xA42}, {0xA47, 0xA48}, {0xA4B, 0xA4D},
    {0xA51, 0xA51}, {0xA59, 0xA5C}, {0xA5E, 0xA5E}, {0xA66, 0xA75}, {0xA81, 0xA83}, {0xA85, 0xA8D},
    {0xA8F, 0xA91}, {0xA93, 0xAA8}, {0xAAA, 0xAB0}, {0xAB2, 0xAB3}, {0xAB5, 0xAB9}, {0xABC, 0xAC5},
    {0xAC7, 0xAC9}, {0xACB, 0xACD}, {0xAD0, 0xAD0}, {0xAE0, 0xAE3}, {0xAE6, 0xAEF}, {0xAF9, 0xAFF},
    {0xB01, 0xB03}, {0xB05, 0xB0C}, {0xB0F, 0xB10}, {0xB13, 0xB28}, {0xB2A, 0xB30}, {0xB32, 0xB33},
    {0xB35, 0xB39}, {0xB3C, 0xB44}, {0xB47, 0xB48}, {0xB4B, 0xB4D}, {0xB55, 0xB57}, {0xB5C, 0xB5D},
    {0xB5F, 0xB63}, {0xB66, 0xB6F}, {0xB71, 0xB71}, {0xB82, 0xB83}, {0xB85, 0xB8A}, {0xB8E, 0xB90},
    {0xB92, 0xB95}, {0xB99, 0xB9A}, {0xB9C, 0xB9C}, {0xB9E, 0xB9F}, {0xBA3, 0xBA4}, {0xBA8, 0xBAA},
    {0xBAE, 0xBB9}, {0xBBE, 0xBC2}, {0xBC6, 0xBC8}, {0xBCA, 0xBCD}, {0xBD0, 0xBD0}, {0xBD7, 0xBD7},
    {0xBE6, 0xBEF}, {0xC00, 0xC0C}, {0xC0E, 0xC10}, {0xC12, 0xC28}, {0xC2A, 0xC39}, {0xC3C, 0xC44},
    {0xC46, 0xC48}, {0xC4A, 0xC4D}, {0xC55, 0xC56}, {0xC58, 0xC5A}, {0xC5D, 0xC5D}, {0xC60, 0xC63},
    {0xC66, 0xC6F}, {0xC80, 0xC83}, {0xC85, 0xC8C}, {0xC8E, 0xC90}, {0xC92, 0xCA8}, {0xCAA, 0xCB3},
    {0xCB5, 0xCB9}, {0xCBC, 0xCC4}, {0xCC6, 0xCC8}, {0xCCA, 0xCCD}, {0xCD5, 0xCD6}, {0xCDD, 0xCDE},
    {0xCE0, 0xCE3}, {0xCE6, 0xCEF}, {0xCF1, 0xCF3}, {0xD00, 0xD0C}, {0xD0E, 0xD10}, {0xD12, 0xD44},
    {0xD46, 0xD48}, {0xD4A, 0xD4E}, {0xD54, 0xD57}, {0xD5F, 0xD63}, {0xD66, 0xD6F}, {0xD7A, 0xD7F},
    {0xD81, 0xD83}, {0xD85, 0xD96}, {0xD9A, 0xDB1}, {0xDB3, 0xDBB}, {0xDBD, 0xDBD}, {0xDC0, 0xDC6},
    {0xDCA, 0xDCA}, {0xDCF, 0xDD4}, {0xDD6, 0xDD6}, {0xDD8, 0xDDF}, {0xDE6, 0xDEF}, {0xDF2, 0xDF3},
    {0xE01, 0xE3A}, {0xE40, 0xE4E}, {0xE50, 0xE59}, {0xE81, 0xE82}, {0xE84, 0xE84}, {0xE86, 0xE8A},
    {0xE8C, 0xEA3}, {0xEA5, 0xEA5}, {0xEA7, 0xEBD}, {0xEC0, 0xEC4}, {0xEC6, 0xEC6}, {0xEC8, 0xECE},
    {0xED0, 0xED9}, {0xEDC, 0xEDF}, {0xF00, 0xF00}, {0xF18, 0xF19}, {0xF20, 0xF29}, {0xF35, 0xF35},
    {0xF37, 0xF37}, {0xF39, 0xF39}, {0xF3E, 0xF47}, {0xF49, 0xF6C}, {0xF71, 0xF84}, {0xF86, 0xF97},
    {0xF99, 0xFBC}, {0xFC6, 0xFC6}, {0x1000, 0x1049}, {0x1050, 0x109D}, {0x10A0, 0x10C5}, {0x10C7, 0x10C7},
    {0x10CD, 0x10CD}, {0x10D0, 0x10FA}, {0x10FC, 0x1248}, {0x124A, 0x124D}, {0x1250, 0x1256},
    {0x1258, 0x1258}, {0x125A, 0x125D}, {0x1260, 0x1288}, {0x128A, 0x128D}, {0x1290, 0x12B0},
    {0x12B2, 0x12B5}, {0x12B8, 0x12BE}, {0x12C0, 0x12C0}, {0x12C2, 0x12C5}, {0x12C8, 0x12D6},
    {0x12D8, 0x1310}, {0x1312, 0x1315}, {0x1318, 0x135A}, {0x135D, 0x135F}, {0x1380, 0x138F},
    {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1401, 0x166C}, {0x166F, 0x167F}, {0x1681, 0x169A},
    {0x16A0, 0x16EA}, {0x16EE, 0x16F8}, {0x1700, 0x1715}, {0x171F, 0x1734}, {0x1740, 0x1753},
    {0x1760, 0x176C}, {0x176E, 0x1770}, {0x1772, 0x1773}, {0x1780, 0x17D3}, {0x17D7, 0x17D7},
    {0x17DC, 0x17DD}, {0x17E0, 0x17E9}, {0x180B, 0x180D}, {0x180F, 0x1819}, {0x1820, 0x1878},
    {0x1880, 0x18AA}, {0x18B0, 0x18F5}, {0x1900, 0x191E}, {0x1920, 0x192B}, {0x1930, 0x193B},
    {0x1946, 0x196D}, {0x1970, 0x1974}, {0x1980, 0x19AB}, {0x19B0, 0x19C9}, {0x19D0, 0x19D9},
    {0x1A00, 0x1A1B}, {0x1A20, 0x1A5E}, {0x1A60, 0x1A7C}, {0x1A7F, 0x1A89}, {0x1A90, 0x1A99},
    {0x1AA7, 0x1AA7}, {0x1AB0, 0x1ACE}, {0x1B00, 0x1B4C}, {0x1B50, 0x1B59}, {0x1B6B, 0x1B73},
    {0x1B80, 0x1BF3}, {0x1C00, 0x1C37}, {0x1C40, 0x1C49}, {0x1C4D, 0x1C7D}, {0x1C80, 0x1C8A},
    {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1CD0, 0x1CD2}, {0x1CD4, 0x1CFA}, {0x1D00, 0x1F15},
    {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59},
    {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB},
    {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x200C, 0x200D}, {0x203F, 0x2040},
    {0x2054, 0x2054}, {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C}, {0x20D0, 0x20F0},
    {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D},
    {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2139},
    {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2160, 0x2188}, {0x24B6, 0x24E9},
    {0x2C00, 0x2CE4}, {0x2CEB, 0x2CF3}, {0x2D00, 0x2D25}, {0x2D27, 0x2D27}, {0x2D2D, 0x2D2D},
    {0x2D30, 0x2D67}, {0x2D6F, 0x2D6F}, {0x2D7F, 0x2D96}, {0x2DA0, 0x2DA6}, {0x2DA8, 0x2DAE},
    {0x2DB0, 0x2DB6}, {0x2DB8, 0x2DBE}, {0x2DC0, 0x2DC6}, {0x2DC8, 0x2DCE}, {0x2DD0, 0x2DD6},
    {0x2DD8, 0x2DDE}, {0x2DE0, 0x2DFF}, {0x2E2F, 0x2E2F}, {0x3005, 0x3007}, {0x3021, 0x302F},
    {0x3031, 0x3035}, {0x3038, 0x303C}, {0x3041, 0x3096}, {0x3099, 0x309A}, {0x309D, 0x309F},
    {0x30A1, 0x30FA}, {0x30FC, 0x30FF}, {0x3105, 0x312F}, {0x3131, 0x318E}, {0x31A0, 0x31BF},
    {0x31F0, 0x31FF}, {0x3400, 0x4DBF}, {0x4E00, 0xA48C}, {0xA4D0, 0xA4FD}, {0xA500, 0xA60C},
    {0xA610, 0xA62B}, {0xA640, 0xA672}, {0xA674, 0xA67D}, {0xA67F, 0xA6F1}, {0xA717, 0xA71F},
    {0xA722, 0xA788}, {0xA78B, 0xA7CD}, {0xA7D0, 0xA7D1}, {0xA7D3, 0xA7D3}, {0xA7D5, 0xA7DC},
    {0xA7F2, 0xA827}, {0xA82C, 0xA82C}, {0xA840, 0xA873}, {0xA880, 0xA8C5}, {0xA8D0, 0xA8D9},
    {0xA8E0, 0xA8F7}, {0xA8FB, 0xA8FB}, {0xA8FD, 0xA92D}, {0xA930, 0xA953}, {0xA960, 0xA97C},
    {0xA980, 0xA9C0}, {0xA9CF, 0xA9D9}, {0xA9E0, 0xA9FE}, {0xAA00, 0xAA36}, {0xAA40, 0xAA4D},
    {0xAA50, 0xAA59}, {0xAA60, 0xAA76}, {0xAA7A, 0xAAC2}, {0xAADB, 0xAADD}, {0xAAE0, 0xAAEF},
    {0xAAF2, 0xAAF6}, {0xAB01, 0xAB06}, {0xAB09, 0xAB0E}, {0xAB11, 0xAB16}, {0xAB20, 0xAB26},
    {0xAB28, 0xAB2E}, {0xAB30, 0xAB5A}, {0xAB5C, 0xAB69}, {0xAB70, 0xABEA}, {0xABEC, 0xABED},
    {0xABF0, 0xABF9}, {0xAC00, 0xD7A3}, {0xD7B0, 0xD7C6}, {0xD7CB, 0xD7FB}, {0xF900, 0xFA6D},
    {0xFA70, 0xFAD9}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFB1D, 0xFB28}, {0xFB2A, 0xFB36},
    {0xFB38, 0xFB3C}, {0xFB3E, 0xFB3E}, {0xFB40, 0xFB41}, {0xFB43, 0xFB44}, {0xFB46, 0xFBB1},
    {0xFBD3, 0xFD3D}, {0xFD50, 0xFD8F}, {0xFD92, 0xFDC7}, {0xFDF0, 0xFDFB}, {0xFE00, 0xFE0F},
    {0xFE20, 0xFE2F}, {0xFE33, 0xFE34}, {0xFE4D, 0xFE4F}, {0xFE70, 0xFE74}, {0xFE76, 0xFEFC},
    {0xFF10, 0xFF19}, {0xFF21, 0xFF3A}, {0xFF3F, 0xFF3F}, {0xFF41, 0xFF5A}, {0xFF66, 0xFFBE},
    {0xFFC2, 0xFFC7}, {0xFFCA, 0xFFCF}, {0xFFD2, 0xFFD7}, {0xFFDA, 0xFFDC}, {0x10000, 0x1000B},
    {0x1000D, 0x10026}, {0x10028, 0x1003A}, {0x1003C, 0x1003D}, {0x1003F, 0x1004D}, {0x10050, 0x1005D},
    {0x10080, 0x100FA}, {0x10140, 0x10174}, {0x101FD, 0x101FD}, {0x10280, 0x1029C}, {0x102A0, 0x102D0},
    {0x102E0, 0x102E0}, {0x10300, 0x1031F}, {0x1032D, 0x1034A}, {0x10350, 0x1037A}, {0x10380, 0x1039D},
    {0x103A0, 0x103C3}, {0x103C8, 0x103CF}, {0x103D1, 0x103D5}, {0x10400, 0x1049D}, {0x104A0, 0x104A9},
    {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10500, 0x10527}, {0x10530, 0x10563}, {0x10570, 0x1057A},
    {0x1057C, 0x1058A}, {0x1058C, 0x10592}, {0x10594, 0x10595}, {0x10597, 0x105A1}, {0x105A3, 0x105B1},
    {0x105B3, 0x105B9}, {0x105BB, 0x105BC}, {0x105C0, 0x105F3}, {0x10600, 0x10736}, {0x10740, 0x10755},
    {0x10760, 0x10767}, {0x10780, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA}, {0x10800, 0x10805},
    {0x10808, 0x10808}, {0x1080A, 0x10835}, {0x10837, 0x10838}, {0x1083C, 0x1083C}, {0x1083F, 0x10855},
    {0x10860, 0x10876}, {0x10880, 0x1089E}, {0x108E0, 0x108F2}, {0x108F4, 0x108F5}, {0x10900, 0x10915},
    {0x10920, 0x10939}, {0x10980, 0x109B7}, {0x109BE, 0x109BF}, {0x10A00, 0x10A03}, {0x10A05, 0x10A06},
    {0x10A0C, 0x10A13}, {0x10A15, 0x10A17}, {0x10A19, 0x10A35}, {0x10A38, 0x10A3A}, {0x10A3F, 0x10A3F},
    {0x10A60, 0x10A7C}, {0x10A80, 0x10A9C}, {0x10AC0, 0x10AC7}, {0x10AC9, 0x10AE6}, {0x10B00, 0x10B35},
    {0x10B40, 0x10B55}, {0x10B60, 0x10B72}, {0x10B80, 0x10B91}, {0x10C00, 0x10C48}, {0x10C80, 0x10CB2},
    {0x10CC0, 0x10CF2}, {0x10D00, 0x10D27}, {0x10D30, 0x10D39}, {0x10D40, 0x10D65}, {0x10D69, 0x10D6D},
    {0x10D6F, 0x10D85}, {0x10E80, 0x10EA9}, {0x10EAB, 0x10EAC}, {0x10EB0, 0x10EB1}, {0x10EC2, 0x10EC4},
    {0x10EFC, 0x10F1C}, {0x10F27, 0x10F27}, {0x10F30, 0x10F50}, {0x10F70, 0x10F85}, {0x10FB0, 0x10FC4},
    {0x10FE0, 0x10FF6}, {0x11000, 0x11046}, {0x11066, 0x11075}, {0x1107F, 0x110BA}, {0x110C2, 0x110C2},
    {0x110D0, 0x110E8}, {0x110F0, 0x110F9}, {0x11100, 0x11134}, {0x11136, 0x1113F}, {0x11144, 0x11147},
    {0x11150, 0x11173}, {0x11176, 0x11176}, {0x11180, 0x111C4}, {0x111C9, 0x111CC}, {0x111CE, 0x111DA},
    {0x111DC, 0x111DC}, {0x11200, 0x11211}, {0x11213, 0x11237}, {0x1123E, 0x11241}, {0x11280, 0x11286},
    {0x11288, 0x11288}, {0x1128A, 0x1128D}, {0x1128F, 0x1129D}, {0x1129F, 0x112A8}, {0x112B0, 0x112EA},
    {0x112F0, 0x112F9}, {0x11300, 0x11303}, {0x11305, 0x1130C}, {0x1130F, 0x11310}, {0x11313, 0x11328},
    {0x1132A, 0x11330}, {0x11332, 0x11333}, {0x11335, 0x11339}, {0x1133B, 0x11344}, {0x11347, 0x11348},
    {0x1134B, 0x1134D}, {0x11350, 0x11350}, {0x11357, 0x11357}, {0x1135D, 0x11363}, {0x11366, 0x1136C},
    {0x11370, 0x11374}, {0x11380, 0x11389}, {0x1138B, 0x1138B}, {0x1138E, 0x1138E}, {0x11390, 0x113B5},
    {0x113B7, 0x113C0}, {0x113C2, 0x113C2}, {0x113C5, 0x113C5}, {0x113C7, 0x113CA}, {0x113CC, 0x113D3},
    {0x113E1, 0x113E2}, {0x11400, 0x1144A}, {0x11450, 0x11459}, {0x1145E, 0x11461}, {0x11480, 0x114C5},
    {0x114C7, 0x114C7}, {0x114D0, 0x114D9}, {0x11580, 0x115B5}, {0x115B8, 0x115C0}, {0x115D8, 0x115DD},
    {0x11600, 0x11640}, {0x11644, 0x11644}, {0x11650, 0x11659}, {0x11680, 0x116B8}, {0x116C0, 0x116C9},
    {0x116D0, 0x116E3}, {0x11700, 0x1171A}, {0x1171D, 0x1172B}, {0x11730, 0x11739}, {0x11740, 0x11746},
    {0x11800, 0x1183A}, {0x118A0, 0x118E9}, {0x118FF, 0x11906}, {0x11909, 0x11909}, {0x1190C, 0x11913},
    {0x11915, 0x11916}, {0x11918, 0x11935}, {0x11937, 0x11938}, {0x1193B, 0x11943}, {0x11950, 0x11959},
    {0x119A0, 0x119A7}, {0x119AA, 0x119D7}, {0x119DA, 0x119E1}, {0x119E3, 0x119E4}, {0x11A00, 0x11A3E},
    {0x11A47, 0x11A47}, {0x11A50, 0x11A99}, {0x11A9D, 0x11A9D}, {0x11AB0, 0x11AF8}, {0x11BC0, 0x11BE0},
    {0x11BF0, 0x11BF9}, {0x11C00, 0x11C08}, {0x11C0A, 0x11C36}, {0x11C38, 0x11C40}, {0x11C50, 0x11C59},
    {0x11C72, 0x11C8F}, {0x11C92, 0x11CA7}, {0x11CA9, 0x11CB6}, {0x11D00, 0x11D06}, {0x11D08, 0x11D09},
    {0x11D0B, 0x11D36}, {0x11D3A, 0x11D3A}, {0x11D3C, 0x11D3D}, {0x11D3F, 0x11D47}, {0x11D50, 0x11D59},
    {0x11D60, 0x11D65}, {0x11D67, 0x11D68}, {0x11D6A, 0x11D8E}, {0x11D90, 0x11D91}, {0x11D93, 0x11D98},
    {0x11DA0, 0x11DA9}, {0x11EE0, 0x11EF6}, {0x11F00, 0x11F10}, {0x11F12, 0x11F3A}, {0x11F3E, 0x11F42},
    {0x11F50, 0x11F5A}, {0x11FB0, 0x11FB0}, {0x12000, 0x12399}, {0x12400, 0x1246E}, {0x12480, 0x12543},
    {0x12F90, 0x12FF0}, {0x13000, 0x1342F}, {0x13440, 0x13455}, {0x13460, 0x143FA}, {0x14400, 0x14646},
    {0x16100, 0x16139}, {0x16800, 0x16A38}, {0x16A40, 0x16A5E}, {0x16A60, 0x16A69}, {0x16A70, 0x16ABE},
    {0x16AC0, 0x16AC9}, {0x16AD0, 0x16AED}, {0x16AF0, 0x16AF4}, {0x16B00, 0x16B36}, {0x16B40, 0x16B43},
    {0x16B50, 0x16B59}, {0x16B63, 0x16B77}, {0x16B7D, 0x16B8F}, {0x16D40, 0x16D6C}, {0x16D70, 0x16D79},
    {0x16E40, 0x16E7F}, {0x16F00, 0x16F4A}, {0x16F4F, 0x16F87}, {0x16F8F, 0x16F9F}, {0x16FE0, 0x16FE1},
    {0x16FE3, 0x16FE4}, {0x16FF0, 0x16FF1}, {0x17000, 0x187F7}, {0x18800, 0x18CD5}, {0x18CFF, 0x18D08},
    {0x1AFF0, 0x1AFF3}, {0x1AFF5, 0x1AFFB}, {0x1AFFD, 0x1AFFE}, {0x1B000, 0x1B122}, {0x1B132, 0x1B132},
    {0x1B150, 0x1B152}, {0x1B155, 0x1B155}, {0x1B164, 0x1B167}, {0x1B170, 0x1B2FB}, {0x1BC00, 0x1BC6A},
    {0x1BC70, 0x1BC7C}, {0x1BC80, 0x1BC88}, {0x1BC90, 0x1BC99}, {0x1BC9D, 0x1BC9E}, {0x1CCF0, 0x1CCF9},
    {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46}, {0x1D165, 0x1D169}, {0x1D16D, 0x1D172}, {0x1D17B, 0x1D182},
    {0x1D185, 0x1D18B}, {0x1D1AA, 0x1D1AD}, {0x1D242, 0x1D244}, {0x1D400, 0x1D454}, {0x1D456, 0x1D49C},
    {0x1D49E, 0x1D49F}, {0x1D4A2, 0x1D4A2}, {0x1D4A5, 0x1D4A6}, {0x1D4A9, 0x1D4AC}, {0x1D4AE, 0x1D4B9},
    {0x1D4BB, 0x1D4BB}, {0x1D4BD, 0x1D4C3}, {0x1D4C5, 0x1D505}, {0x1D507, 0x1D50A}, {0x1D50D, 0x1D514},
    {0x1D516, 0x1D51C}, {0x1D51E, 0x1D539}, {0x1D53B, 0x1D53E}, {0x1D540, 0x1D544}, {0x1D546, 0x1D546},
    {0x1D54A, 0x1D550}, {0x1D552, 0x1D6A5}, {0x1D6A8, 0x1D6C0}, {0x1D6C2, 0x1D6DA}, {0x1D6DC, 0x1D6FA},
    {0x1D6FC, 0x1D714}, {0x1D716, 0x1D734}, {0x1D736, 0x1D74E}, {0x1D750, 0x1D76E}, {0x1D770, 0x1D788},
    {0x1D78A, 0x1D7A8}, {0x1D7AA, 0x1D7C2}, {0x1D7C4, 0x1D7CB}, {0x1D7CE, 0x1D7FF}, {0x1DA00, 0x1DA36},
    {0x1DA3B, 0x1DA6C}, {0x1DA75, 0x1DA75}, {0x1DA84, 0x1DA84}, {0x1DA9B, 0x1DA9F}, {0x1DAA1, 0x1DAAF},
    {0x1DF00, 0x1DF1E}, {0x1DF25, 0x1DF2A}, {0x1E000, 0x1E006}, {0x1E008, 0x1E018}, {0x1E01B, 0x1E021},
    {0x1E023, 0x1E024}, {0x1E026, 0x1E02A}, {0x1E030, 0x1E06D}, {0x1E08F, 0x1E08F}, {0x1E100, 0x1E12C},
    {0x1E130, 0x1E13D}, {0x1E140, 0x1E149}, {0x1E14E, 0x1E14E}, {0x1E290, 0x1E2AE}, {0x1E2C0, 0x1E2F9},
    {0x1E4D0, 0x1E4F9}, {0x1E5D0, 0x1E5FA}, {0x1E7E0, 0x1E7E6}, {0x1E7E8, 0x1E7EB}, {0x1E7ED, 0x1E7EE},
    {0x1E7F0, 0x1E7FE}, {0x1E800, 0x1E8C4}, {0x1E8D0, 0x1E8D6}, {0x1E900, 0x1E94B}, {0x1E950, 0x1E959},
    {0x1EE00, 0x1EE03}, {0x1EE05, 0x1EE1F}, {0x1EE21, 0x1EE22}, {0x1EE24, 0x1EE24}, {0x1EE27, 0x1EE27},
    {0x1EE29, 0x1EE32}, {0x1EE34, 0x1EE37}, {0x1EE39, 0x1EE39}, {0x1EE3B, 0x1EE3B}, {0x1EE42, 0x1EE42},
    {0x1EE47, 0x1EE47}, {0x1EE49, 0x1EE49}, {0x1EE4B, 0x1EE4B}, {0x1EE4D, 0x1EE4F}, {0x1EE51, 0x1EE52},
    {0x1EE54, 0x1EE54}, {0x1EE57, 0x1EE57}, {0x1EE59, 0x1EE59}, {0x1EE5B, 0x1EE5B}, {0x1EE5D, 0x1EE5D},
    {0x1EE5F, 0x1EE5F}, {0x1EE61, 0x1EE62}, {0x1EE64, 0x1EE64}, {0x1EE67, 0x1EE6A}, {0x1EE6C, 0x1EE72},
    {0x1EE74, 0x1EE77}, {0x1EE79, 0x1EE7C}, {0x1EE7E, 0x1EE7E}, {0x1EE80, 0x1EE89}, {0x1EE8B, 0x1EE9B},
    {0x1EEA1, 0x1EEA3}, {0x1EEA5, 0x1EEA9}, {0x1EEAB, 0x1EEBB}, {0x1F130, 0x1F149}, {0x1F150, 0x1F169},
    {0x1F170, 0x1F189}, {0x1FBF0, 0x1FBF9}, {0x20000, 0x2A6DF}, {0x2A700, 0x2B739}, {0x2B740, 0x2B81D},
    {0x2B820, 0x2CEA1}, {0x2CEB0, 0x2EBE0}, {0x2EBF0, 0x2EE5D}, {0x2F800, 0x2FA1D}, {0x30000, 0x3134A},
    {0x31350, 0x323AF}, {0xE0100, 0xE01EF},
};

static int is_word_cp(uint32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
    size_t lo = 0, hi = sizeof word_ranges / sizeof word_ranges[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < word_ranges[mid][0]) hi = mid;
        else if (c > word_ranges[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Growable buffers for per-call scratch: failures are reported, never abort (input-sized). */
static int grow(void **p, size_t *cap, size_t need, size_t elem, llava_err *err) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return llava_errf(err, "tokenizer: out of memory (%zu bytes of scratch)", c * elem);
    *p = q;
    *cap = c;
    return 0;
}

typedef struct {
    size_t start, stop;
    int id; /* -1: text to process further */
} split;

typedef struct {
    int c;
    int prev, next;
    uint32_t len;
} sym;

typedef struct {
    uint64_t key; /* rank << 32 | position of the left symbol: the heap order */
    int new_id;
} mrg;

/* Per-call direct-mapped cache of merge lookups (long words repeat the same pairs). */
#define PAIR_CACHE_BITS 12
typedef struct {
    uint64_t key;
    uint32_t rank;
    int32_t new_id; /* -1: the pair does not merge */
} pcache;

typedef struct {
    char *mb; /* Metaspace output */
    size_t mcap;
    size_t *seg; /* symbol indices where an independent merge run starts */
    size_t seg_cap;
    char *nb[2];
    size_t ncap[2];
    split *sp[2];
    size_t sp_n[2], sp_cap[2];
    sym *syms;
    size_t syms_cap;
    mrg *heap;
    size_t heap_cap;
    char *key;
    size_t key_cap;
    pcache *pc;
    int *ids;
    size_t n_ids, ids_cap;
    llava_err *err;
} scratch;

static void scratch_free(scratch *s) {
    free(s->nb[0]);
    free(s->nb[1]);
    free(s->sp[0]);
    free(s->sp[1]);
    free(s->syms);
    free(s->heap);
    free(s->key);
    free(s->pc);
    free(s->seg);
    free(s->mb);
    free(s->ids);
}

static int push_id(scratch *s, int id) {
    if (grow((void **)&s->ids, &s->ids_cap, s->n_ids + 1, sizeof(int), s->err)) return -1;
    s->ids[s->n_ids++] = id;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Normalizer: applies the ops in order to in[0..n) and returns the result (in a scratch buffer,
 * or `in` itself when there is nothing to do) with its length in *out_n. */
static const char *normalize(const llava_tokenizer *t, scratch *s, const char *in, size_t n, size_t *out_n) {
    const char *cur = in;
    size_t cur_n = n;
    int which = 0;
    for (int k = 0; k < t->n_norm; k++) {
        const norm_op *op = &t->norm[k];
        const char *a = t->pool.data + op->a_off;
        char *dst;
        size_t dn = 0;
        if (op->type == NORM_PREPEND) {
            if (cur_n == 0) continue; /* HF: Prepend leaves an empty string empty */
            if (grow((void **)&s->nb[which], &s->ncap[which], cur_n + op->a_len + 1, 1, s->err)) return NULL;
            dst = s->nb[which];
            memcpy(dst, a, op->a_len);
            memcpy(dst + op->a_len, cur, cur_n);
            dn = op->a_len + cur_n;
        } else { /* NORM_REPLACE: leftmost non-overlapping occurrences of a non-empty literal */
            const char *b = t->pool.data + op->b_off;
            size_t pl = op->a_len, cl = op->b_len;
            size_t worst = cl > pl ? cur_n / pl * (cl - pl) + cur_n : cur_n;
            if (grow((void **)&s->nb[which], &s->ncap[which], worst + 1, 1, s->err)) return NULL;
            dst = s->nb[which];
            size_t i = 0;
            while (i < cur_n) {
                const char *hit = cur_n - i >= pl ? memchr(cur + i, (unsigned char)a[0], cur_n - i - pl + 1) : NULL;
                while (hit && memcmp(hit, a, pl) != 0) {
                    size_t j = (size_t)(hit - cur) + 1;
                    hit = j + pl <= cur_n ? memchr(cur + j, (unsigned char)a[0], cur_n - j - pl + 1) : NULL;
                }
                size_t upto = hit ? (size_t)(hit - cur) : cur_n;
                memcpy(dst + dn, cur + i, upto - i);
                dn += upto - i;
                if (!hit) break;
                memcpy(dst + dn, b, cl);
                dn += cl;
                i = upto + pl;
            }
        }
        cur = dst;
        cur_n = dn;
        which ^= 1;
    }
    *out_n = cur_n;
    return cur;
}

/* ---------------------------------------------------------------------------------------------
 * Added-token splitting (HF AddedVocabulary::find_matches). Appends splits covering s[0..n) to
 * s->sp[slot]; text splits are only emitted when non-empty (HF drops empty splits). */
static int add_split(scratch *s, int slot, size_t a, size_t b, int id) {
    if (grow((void **)&s->sp[slot], &s->sp_cap[slot], s->sp_n[slot] + 1, sizeof(split), s->err)) return -1;
    s->sp[slot][s->sp_n[slot]++] = (split){a, b, id};
    return 0;
}

static int find_matches(const llava_tokenizer *t, const match_set *ms, scratch *s, int slot, const char *text,
                        size_t n) {
    s->sp_n[slot] = 0;
    size_t start_offset = 0, pos = 0;
    while (ms->n && pos < n) {
        /* leftmost-longest: the first position where any pattern matches, longest pattern there */
        const added_tok *best = NULL;
        for (; pos < n && !best; pos++) {
            int b = (unsigned char)text[pos];
            for (int k = ms->start[b]; k < ms->start[b + 1]; k++) {
                const added_tok *a = &t->added[ms->idx[k]];
                if (a->plen <= n - pos && (!best || a->plen > best->plen) &&
                    memcmp(text + pos, t->pool.data + a->poff, a->plen) == 0)
                    best = a;
            }
        }
        if (!best) break;
        size_t start = pos - 1, stop = start + best->plen;
        pos = stop; /* the scan resumes after the match, whatever the rules below decide */
        if (best->single_word) {
            int start_space = 1, stop_space = 1;
            if (start > 0) {
                size_t p = utf8_prev(text, start);
                start_space = !is_word_cp(utf8_decode(text + p, (int)(start - p)));
            }
            if (stop < n) stop_space = !is_word_cp(utf8_decode(text + stop, utf8_len((unsigned char)text[stop])));
            if (!start_space || !stop_space) continue;
        }
        if (best->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t p = utf8_prev(text, ns);
                if (!is_space_cp(utf8_decode(text + p, (int)(ns - p)))) break;
                ns = p;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (best->rstrip) {
            while (stop < n) {
                int k = utf8_len((unsigned char)text[stop]);
                if (!is_space_cp(utf8_decode(text + stop, k))) break;
                stop += (size_t)k;
            }
        }
        if (start_offset < start && add_split(s, slot, start_offset, start, -1)) return -1;
        if (add_split(s, slot, start, stop, best->id)) return -1;
        start_offset = stop;
    }
    if (start_offset < n && add_split(s, slot, start_offset, n, -1)) return -1;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * BPE on one word (HF BPE::merge_word + Word::merge_all). */
static int merge_get(const llava_tokenizer *t, int a, int b, uint32_t *rank, int *new_id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (uint32_t i = hash_u64(key) & t->merges_mask;; i = (i + 1) & t->merges_mask) {
        const mslot *e = &t->merges[i];
        if (e->key == MKEY_EMPTY) return 0;
        if (e->key == key) {
            *rank = e->rank;
            *new_id = e->new_id;
            return 1;
        }
    }
}

/* merge_get through the per-call cache (pc may be NULL for short words). */
static inline int merge_get_c(const llava_tokenizer *t, pcache *pc, int a, int b, uint32_t *rank, int *new_id) {
    if (!pc) return merge_get(t, a, b, rank, new_id);
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    pcache *e = &pc[hash_u64(key) >> (32 - PAIR_CACHE_BITS)];
    if (e->key != key) {
        e->key = key;
        if (!merge_get(t, a, b, &e->rank, &e->new_id)) e->new_id = -1;
    }
    if (e->new_id < 0) return 0;
    *rank = e->rank;
    *new_id = e->new_id;
    return 1;
}

/* Min-heap (4-ary) on (rank, position): the lowest rank first, the leftmost among equals. */
static void heap_push(mrg *h, size_t *n, uint32_t rank, uint32_t pos, int new_id) {
    mrg m = {((uint64_t)rank << 32) | pos, new_id};
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (h[p].key <= m.key) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static mrg heap_pop(mrg *h, size_t *n) {
    mrg top = h[0], last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= m) break;
        size_t end = c + 4 < m ? c + 4 : m, best = c;
        for (size_t k = c + 1; k < end; k++)
            if (h[k].key < h[best].key) best = k;
        if (h[best].key >= last.key) break;
        h[i] = h[best];
        i = best;
    }
    if (m) h[i] = last;
    return top;
}

static int add_sym(scratch *s, size_t *ns, int c, uint32_t len) {
    sym *y = &s->syms[*ns];
    y->c = c;
    y->len = len;
    y->prev = *ns ? (int)*ns - 1 : -1;
    y->next = -1;
    if (*ns) s->syms[*ns - 1].next = (int)*ns;
    (*ns)++;
    return 0;
}

/* HF Word::merge_all over the symbols [lo, hi), which form one linked run. */
static void merge_run(const llava_tokenizer *t, scratch *s, pcache *pc, size_t lo, size_t hi) {
    mrg *h = s->heap;
    size_t hn = 0;
    sym *y = s->syms;
    uint32_t rank;
    int nid;
    y[lo].prev = -1;
    y[hi - 1].next = -1;
    for (size_t i = lo; i + 1 < hi; i++)
        if (merge_get_c(t, pc, y[i].c, y[i + 1].c, &rank, &nid)) heap_push(h, &hn, rank, (uint32_t)i, nid);
    while (hn) {
        mrg top = heap_pop(h, &hn);
        uint32_t pos = (uint32_t)top.key;
        sym *cur = &y[pos];
        if (cur->len == 0 || cur->next == -1) continue;
        sym right = y[cur->next];
        /* stale entry: the pair at this position no longer merges into the same piece */
        if (!merge_get_c(t, pc, cur->c, right.c, &rank, &nid) || nid != top.new_id) continue;
        y[cur->next].len = 0;
        cur->c = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        if (right.next >= 0) y[right.next].prev = (int)pos;
        if (cur->prev >= 0 && merge_get_c(t, pc, y[cur->prev].c, cur->c, &rank, &nid))
            heap_push(h, &hn, rank, (uint32_t)cur->prev, nid);
        if (cur->next >= 0 && merge_get_c(t, pc, cur->c, y[cur->next].c, &rank, &nid))
            heap_push(h, &hn, rank, pos, nid);
    }
}

static inline int small_char(uint32_t cp) { return cp < 128 ? (int)cp : cp == 0x2581 ? 128 : -1; }

static inline int pair_bit(const llava_tokenizer *t, int a, int b) {
    unsigned k = (unsigned)(a * 129 + b);
    return (int)((t->pair_bits[k >> 6] >> (k & 63)) & 1);
}

static int bpe_word(const llava_tokenizer *t, scratch *s, const char *w, size_t n) {
    if (n == 0) return 0;
    if (t->ignore_merges) {
        int id = smap_get(&t->vocab, &t->pool, w, n);
        if (id >= 0) return push_id(s, id);
    }
    /* at most one symbol per byte (a char is either one piece or one byte piece per byte of
     * prefix+char+suffix) */
    size_t max_syms = n * (size_t)(1 + t->prefix_len + t->suffix_len);
    if (grow((void **)&s->syms, &s->syms_cap, max_syms, sizeof(sym), s->err)) return -1;
    size_t ns = 0, nseg = 0;
    int unk_pending = 0, unk_c = -1;
    uint32_t unk_len = 0;
    int prev_small = -1; /* small_char of the previous char when it became one symbol, else -1 */
    if (grow((void **)&s->seg, &s->seg_cap, 1, sizeof(size_t), s->err)) return -1;
    s->seg[nseg++] = 0;
    for (size_t i = 0; i < n;) {
        int k = utf8_len((unsigned char)w[i]);
        const char *key = w + i;
        size_t kn = (size_t)k;
        if ((t->has_prefix && i > 0) || (t->has_suffix && i + (size_t)k == n)) {
            size_t need = (size_t)k + t->prefix_len + t->suffix_len;
            if (grow((void **)&s->key, &s->key_cap, need, 1, s->err)) return -1;
            kn = 0;
            if (t->has_prefix && i > 0) {
                memcpy(s->key, t->pool.data + t->prefix_off, t->prefix_len);
                kn = t->prefix_len;
            }
            memcpy(s->key + kn, w + i, (size_t)k);
            kn += (size_t)k;
            if (t->has_suffix && i + (size_t)k == n) {
                memcpy(s->key + kn, t->pool.data + t->suffix_off, t->suffix_len);
                kn += t->suffix_len;
            }
            key = s->key;
        }
        int id = kn == 1 ? t->ascii_ids[(unsigned char)key[0]] : smap_get(&t->vocab, &t->pool, key, kn);
        if (id >= 0) {
            if (unk_pending) {
                add_sym(s, &ns, unk_c, unk_len);
                unk_pending = 0;
            }
            /* Split point: both chars are plain pieces and no piece holds them side by side, so no
             * merge can ever join the two sides. Merging each side alone then gives exactly what
             * HF's one global heap gives (its pops restricted to one side come in the same order),
             * and keeps the heaps small. */
            int cs = t->can_split ? small_char(utf8_decode(w + i, k)) : -1;
            if (cs >= 0 && prev_small >= 0 && !pair_bit(t, prev_small, cs)) {
                if (grow((void **)&s->seg, &s->seg_cap, nseg + 1, sizeof(size_t), s->err)) return -1;
                s->seg[nseg++] = ns;
            }
            prev_small = cs;
            add_sym(s, &ns, id, (uint32_t)k);
        } else {
            prev_small = -1;
            int bytes_ok = t->byte_fallback;
            for (size_t j = 0; bytes_ok && j < kn; j++) bytes_ok = t->byte_ids[(unsigned char)key[j]] >= 0;
            if (bytes_ok) {
                /* HF adds the byte pieces without first flushing a pending <unk> */
                for (size_t j = 0; j < kn; j++) add_sym(s, &ns, t->byte_ids[(unsigned char)key[j]], 1);
            } else if (t->has_unk_token) {
                if (t->unk_id < 0)
                    return llava_errf(s->err, "tokenizer: text needs the unk_token, which is not in the vocabulary");
                if (unk_pending && t->fuse_unk) {
                    unk_len += (uint32_t)k;
                } else {
                    if (unk_pending) add_sym(s, &ns, unk_c, unk_len);
                    unk_pending = 1;
                    unk_c = t->unk_id;
                    unk_len = (uint32_t)k;
                }
            } /* else: HF drops the character */
        }
        i += (size_t)k;
    }
    if (unk_pending) add_sym(s, &ns, unk_c, unk_len);

    /* Merge loop. Pushes: <= ns-1 initial, <= 2 per merge, <= ns-1 merges. */
    if (ns > 1) {
        /* a run of r symbols pushes <= r-1 entries, then <= 2 per merge, <= r-1 merges */
        if (grow((void **)&s->heap, &s->heap_cap, 3 * ns, sizeof(mrg), s->err)) return -1;
        pcache *pc = NULL;
        if (ns >= 256) {
            if (!s->pc && !(s->pc = malloc(sizeof(pcache) << PAIR_CACHE_BITS)))
                return llava_errf(s->err, "tokenizer: out of memory (merge cache)");
            memset(s->pc, 0xff, sizeof(pcache) << PAIR_CACHE_BITS); /* key MKEY_EMPTY */
            pc = s->pc;
        }
        for (size_t g = 0; g < nseg; g++) {
            size_t lo = s->seg[g], hi = g + 1 < nseg ? s->seg[g + 1] : ns;
            if (hi - lo > 1) merge_run(t, s, pc, lo, hi);
        }
    }
    for (size_t i = 0; i < ns; i++)
        if (s->syms[i].len && push_id(s, s->syms[i].c)) return -1;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Encode. */

/* The pre-tokenizer, then BPE on each word. at_origin: the piece starts at offset 0 of the input
 * (what Metaspace's "first" scheme asks). Without a pre-tokenizer the piece is one word. */
static int pretok_bpe(const llava_tokenizer *t, scratch *s, const char *p, size_t n, int at_origin) {
    if (!t->has_metaspace) return bpe_word(t, s, p, n);
    /* Metaspace: ' ' -> replacement, maybe prepend one, then maybe split before each replacement */
    size_t rl = (size_t)t->ms_rep_len;
    if (grow((void **)&s->mb, &s->mcap, (n + 1) * rl, 1, s->err)) return -1;
    char *m = s->mb;
    size_t mn = 0;
    int starts = n > 0 && (p[0] == ' ' || (n >= rl && memcmp(p, t->ms_rep, rl) == 0));
    if ((t->ms_prepend == PREPEND_ALWAYS || (t->ms_prepend == PREPEND_FIRST && at_origin)) && !starts) {
        memcpy(m, t->ms_rep, rl);
        mn = rl;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ') {
            memcpy(m + mn, t->ms_rep, rl);
            mn += rl;
        } else {
            m[mn++] = p[i];
        }
    }
    if (!t->ms_split) return bpe_word(t, s, m, mn);
    size_t start = 0;
    for (size_t i = 0; i + rl <= mn; i += (size_t)utf8_len((unsigned char)m[i])) {
        if (i > start && memcmp(m + i, t->ms_rep, rl) == 0) {
            if (bpe_word(t, s, m + start, i - start)) return -1;
            start = i;
        }
    }
    return bpe_word(t, s, m + start, mn - start);
}

static int encode_text(const llava_tokenizer *t, scratch *s, const char *text, size_t n) {
    if (find_matches(t, &t->mset[0], s, 0, text, n)) return -1;
    for (size_t i = 0; i < s->sp_n[0]; i++) {
        split sp = s->sp[0][i];
        if (sp.id >= 0) {
            if (push_id(s, sp.id)) return -1;
            continue;
        }
        size_t nn;
        const char *norm = normalize(t, s, text + sp.start, sp.stop - sp.start, &nn);
        if (!norm) return -1;
        if (!t->mset[1].n) {
            if (nn && pretok_bpe(t, s, norm, nn, sp.start == 0)) return -1;
            continue;
        }
        if (find_matches(t, &t->mset[1], s, 1, norm, nn)) return -1;
        for (size_t j = 0; j < s->sp_n[1]; j++) {
            split q = s->sp[1][j];
            if (q.id >= 0 ? push_id(s, q.id)
                          : pretok_bpe(t, s, norm + q.start, q.stop - q.start, sp.start == 0 && q.start == 0))
                return -1;
        }
    }
    return 0;
}

int llava_tokenize(const llava_tokenizer *t, const char *text, size_t len, int add_special, int **ids, int *n_ids,
                   llava_err *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return llava_errf(err, "tokenize: text is NULL");
    size_t bad = utf8_check(text, len);
    if (bad < len) return llava_errf(err, "tokenize: text is not valid UTF-8 (byte %zu of %zu)", bad, len);
    if (len > (size_t)INT32_MAX / 4) return llava_errf(err, "tokenize: text of %zu bytes is too long", len);
    scratch s = {0};
    s.err = err;
    int rc = 0;
    if (add_special && t->n_tmpl) {
        for (int k = 0; k < t->n_tmpl && !rc; k++)
            rc = t->tmpl[k] == -1 ? encode_text(t, &s, text ? text : "", len) : push_id(&s, t->tmpl[k]);
    } else {
        rc = encode_text(t, &s, text ? text : "", len);
    }
    if (!rc && !s.ids) rc = grow((void **)&s.ids, &s.ids_cap, 1, sizeof(int), err);
    if (rc) {
        scratch_free(&s);
        return -1;
    }
    *ids = s.ids;
    *n_ids = (int)s.n_ids;
    s.ids = NULL;
    scratch_free(&s);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Decode: a list of strings transformed by each decoder in turn (HF decode_chain). Token i is
 * buf[off[i] .. off[i+1]) with off[n] == len. */
typedef struct {
    char *buf;
    size_t len, cap;
    size_t *off;
    size_t n, ncap;
    int oom;
} slist;

static void sl_new(slist *l) {
    if (l->oom) return;
    if (l->n + 2 > l->ncap) {
        size_t c = l->ncap ? l->ncap * 2 : 64;
        size_t *q = realloc(l->off, c * sizeof(size_t));
        if (!q) {
            l->oom = 1;
            return;
        }
        l->off = q;
        l->ncap = c;
    }
    l->off[l->n++] = l->len;
    l->off[l->n] = l->len;
}

static void sl_put(slist *l, const char *p, size_t k) {
    if (l->oom) return;
    if (l->len + k + 1 > l->cap) {
        size_t c = l->cap ? l->cap : 256;
        while (l->len + k + 1 > c) c *= 2;
        char *q = realloc(l->buf, c);
        if (!q) {
            l->oom = 1;
            return;
        }
        l->buf = q;
        l->cap = c;
    }
    if (k) memcpy(l->buf + l->len, p, k);
    l->len += k;
    l->off[l->n] = l->len;
}

static void sl_reset(slist *l) {
    l->len = 0;
    l->n = 0;
}

static void sl_free(slist *l) {
    free(l->buf);
    free(l->off);
}

/* Rust's u8::from_str_radix(s, 16) on a 2-byte s: two hex digits, or '+' and one. */
static int hex_val(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int byte_piece(const char *p, size_t k) {
    if (k != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int hi = hex_val(p[3]), lo = hex_val(p[4]);
    if (p[3] == '+') return lo;
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static void flush_bytes(slist *out, const char *bytes, size_t nb) {
    if (!nb) return;
    if (utf8_check(bytes, nb) == nb) {
        sl_new(out);
        sl_put(out, bytes, nb);
    } else {
        for (size_t i = 0; i < nb; i++) {
            sl_new(out);
            sl_put(out, "\xEF\xBF\xBD", 3);
        }
    }
}

static void apply_decoder(const llava_tokenizer *t, const dec_op *op, const slist *in, slist *out) {
    sl_reset(out);
    if (op->type == DEC_FUSE) {
        sl_new(out);
        sl_put(out, in->buf, in->len);
        return;
    }
    char *bytes = NULL;
    size_t nb = 0;
    if (op->type == DEC_BYTE_FALLBACK) {
        bytes = malloc(in->n + 1);
        if (!bytes) {
            out->oom = 1;
            return;
        }
    }
    for (size_t i = 0; i < in->n; i++) {
        const char *p = in->buf + in->off[i];
        size_t k = in->off[i + 1] - in->off[i];
        if (op->type == DEC_REPLACE) {
            const char *a = t->pool.data + op->a_off, *b = t->pool.data + op->b_off;
            sl_new(out);
            size_t j = 0, seg = 0;
            while (j + op->a_len <= k) {
                if (memcmp(p + j, a, op->a_len) == 0) {
                    sl_put(out, p + seg, j - seg);
                    sl_put(out, b, op->b_len);
                    j += op->a_len;
                    seg = j;
                } else {
                    j++;
                }
            }
            sl_put(out, p + seg, k - seg);
        } else if (op->type == DEC_BYTE_FALLBACK) {
            int b = byte_piece(p, k);
            if (b >= 0) {
                bytes[nb++] = (char)b;
                continue;
            }
            flush_bytes(out, bytes, nb);
            nb = 0;
            sl_new(out);
            sl_put(out, p, k);
        } else if (op->type == DEC_METASPACE) {
            /* replacement -> ' ', except in the first token, where every replacement is dropped
             * unless the scheme is "never" (HF's Metaspace decoder) */
            sl_new(out);
            for (size_t a = 0; a < k;) {
                int cl = utf8_len((unsigned char)p[a]);
                if (utf8_decode(p + a, cl) != op->ch) sl_put(out, p + a, (size_t)cl);
                else if (i != 0 || op->prepend == PREPEND_NEVER) sl_put(out, " ", 1);
                a += (size_t)cl;
            }
        } else { /* DEC_STRIP: cut up to `start` leading and `stop` trailing copies of ch (by chars) */
            size_t a = 0, z = k, cut;
            for (cut = 0; cut < op->start && a < k; cut++) {
                int cl = utf8_len((unsigned char)p[a]);
                if (utf8_decode(p + a, cl) != op->ch) break;
                a += (size_t)cl;
            }
            for (cut = 0; cut < op->stop && z > a; cut++) {
                size_t q = utf8_prev(p, z);
                if (utf8_decode(p + q, (int)(z - q)) != op->ch) break;
                z = q;
            }
            sl_new(out);
            sl_put(out, p + a, z - a);
        }
    }
    if (op->type == DEC_BYTE_FALLBACK) {
        flush_bytes(out, bytes, nb);
        free(bytes);
    }
}

char *llava_detokenize(const llava_tokenizer *t, const int *ids, int n, int skip_special) {
    slist l[2] = {{0}, {0}};
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->n_ids || t->piece_off[id] == NONE32) continue;
        if (skip_special && t->skip[id]) continue;
        sl_new(&l[0]);
        sl_put(&l[0], t->pool.data + t->piece_off[id], t->piece_len[id]);
    }
    int cur = 0;
    if (t->has_decoder) {
        for (int k = 0; k < t->n_dec && !l[cur].oom; k++) {
            apply_decoder(t, &t->dec[k], &l[cur], &l[cur ^ 1]);
            cur ^= 1;
        }
    } else { /* no decoder: HF joins the pieces with " " */
        sl_reset(&l[1]);
        sl_new(&l[1]);
        for (size_t i = 0; i < l[0].n; i++) {
            if (i) sl_put(&l[1], " ", 1);
            sl_put(&l[1], l[0].buf + l[0].off[i], l[0].off[i + 1] - l[0].off[i]);
        }
        cur = 1;
    }
    char *res = NULL;
    if (!l[0].oom && !l[1].oom) {
        res = malloc(l[cur].len + 1);
        if (res) {
            if (l[cur].len) memcpy(res, l[cur].buf, l[cur].len);
            res[l[cur].len] = 0;
        }
    }
    sl_free(&l[0]);
    sl_free(&l[1]);
    return res;
}

/* ---------------------------------------------------------------------------------------------
 * Small accessors. */
const char *llava_token_piece(const llava_tokenizer *t, int id) {
    if (!t || id < 0 || id >= t->n_ids || t->piece_off[id] == NONE32) return NULL;
    return t->pool.data + t->piece_off[id];
}

int llava_token_id(const llava_tokenizer *t, const char *piece) {
    if (!t || !piece) return -1;
    size_t n = strlen(piece);
    int id = smap_get(&t->added_map, &t->pool, piece, n);
    return id >= 0 ? id : smap_get(&t->vocab, &t->pool, piece, n);
}

int llava_tokenizer_vocab_size(const llava_tokenizer *t) { return t ? t->n_ids : 0; }

int llava_tokenizer_bos(const llava_tokenizer *t) {
    if (!t) return -1;
    return t->n_tmpl > 0 && t->tmpl[0] != -1 ? t->tmpl[0] : -1;
}

int llava_tokenizer_eos(const llava_tokenizer *t) { return llava_token_id(t, "</s>"); }

int llava_token_is_special(const llava_tokenizer *t, int id) {
    return t && id >= 0 && id < t->n_ids && t->skip[id];
}

void llava_tokenizer_free(llava_tokenizer *t) {
    if (!t) return;
    free(t->pool.data);
    smap_free(&t->vocab);
    smap_free(&t->added_map);
    smap_free(&t->special_set);
    free(t->merges);
    free(t->piece_off);
    free(t->piece_len);
    free(t->skip);
    free(t->norm);
    free(t->dec);
    free(t->tmpl);
    free(t->added);
    free(t->added_by_id);
    free(t->mset[0].idx);
    free(t->mset[1].idx);
    free(t);
}

/* ---------------------------------------------------------------------------------------------
 * Loading. Every message starts with the file path. */
typedef struct {
    const char *path;
    llava_err *err;
} ctx;

#define FAIL(c, ...) (llava_errf((c)->err, __VA_ARGS__), llava_err_prefix((c)->err, "%s", (c)->path))

static const cJSON *jget(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static const char *jtype(const cJSON *o) {
    const cJSON *ty = jget(o, "type");
    return ty && cJSON_IsString(ty) ? ty->valuestring : NULL;
}

/* A string-or-regex pattern ({"String": s}); Regex patterns are refused. */
static int parse_pattern(ctx *c, const cJSON *o, const char *what, const char **out) {
    const cJSON *p = jget(o, "pattern");
    const cJSON *s = p ? jget(p, "String") : NULL;
    if (p && jget(p, "Regex"))
        return FAIL(c, "%s with a Regex pattern is not supported (only String patterns)", what);
    if (!s || !cJSON_IsString(s) || !s->valuestring[0])
        return FAIL(c, "%s needs a non-empty \"pattern\": {\"String\": ...}", what);
    const cJSON *content = jget(o, "content");
    if (!content || !cJSON_IsString(content)) return FAIL(c, "%s needs a string \"content\"", what);
    *out = s->valuestring;
    return 0;
}

/* Metaspace fields as HF reads them: replacement (one char), prepend_scheme (default "always"),
 * split (default true), and the legacy add_prefix_space=false, which must come with "never". */
static int parse_metaspace(ctx *c, const cJSON *o, const char *what, uint32_t *ch, int *prepend, int *split) {
    const cJSON *r = jget(o, "replacement"), *ps = jget(o, "prepend_scheme"), *sp = jget(o, "split");
    const cJSON *aps = jget(o, "add_prefix_space");
    if (!r || !cJSON_IsString(r) || !r->valuestring[0])
        return FAIL(c, "%s needs a one-character \"replacement\"", what);
    size_t rl = strlen(r->valuestring);
    if (utf8_check(r->valuestring, rl) != rl || (size_t)utf8_len((unsigned char)r->valuestring[0]) != rl)
        return FAIL(c, "%s \"replacement\" must be exactly one character", what);
    *ch = utf8_decode(r->valuestring, (int)rl);
    *prepend = PREPEND_ALWAYS;
    if (ps) {
        if (!cJSON_IsString(ps)) return FAIL(c, "%s \"prepend_scheme\" must be a string", what);
        if (!strcmp(ps->valuestring, "always")) *prepend = PREPEND_ALWAYS;
        else if (!strcmp(ps->valuestring, "first")) *prepend = PREPEND_FIRST;
        else if (!strcmp(ps->valuestring, "never")) *prepend = PREPEND_NEVER;
        else return FAIL(c, "%s prepend_scheme \"%s\" is not always/first/never", what, ps->valuestring);
    }
    if (aps && cJSON_IsFalse(aps)) {
        if (*prepend != PREPEND_NEVER) return FAIL(c, "%s: add_prefix_space does not match declared prepend_scheme", what);
        *prepend = PREPEND_NEVER;
    }
    *split = 1;
    if (sp) {
        if (!cJSON_IsBool(sp)) return FAIL(c, "%s \"split\" must be true or false", what);
        *split = cJSON_IsTrue(sp);
    }
    return 0;
}

static int parse_normalizer(ctx *c, llava_tokenizer *t, const cJSON *o, int depth) {
    const char *ty = jtype(o);
    if (!ty) return FAIL(c, "normalizer without a \"type\"");
    if (depth > 16) return FAIL(c, "normalizer nesting is too deep");
    if (!strcmp(ty, "Sequence")) {
        const cJSON *list = jget(o, "normalizers");
        if (!list || !cJSON_IsArray(list)) return FAIL(c, "Sequence normalizer needs a \"normalizers\" array");
        const cJSON *it;
        cJSON_ArrayForEach(it, list) if (parse_normalizer(c, t, it, depth + 1)) return -1;
        return 0;
    }
    norm_op op = {0};
    if (!strcmp(ty, "Prepend")) {
        const cJSON *p = jget(o, "prepend");
        if (!p || !cJSON_IsString(p)) return FAIL(c, "Prepend normalizer needs a string \"prepend\"");
        op.type = NORM_PREPEND;
        op.a_len = (uint32_t)strlen(p->valuestring);
        op.a_off = pool_add(&t->pool, p->valuestring, op.a_len);
    } else if (!strcmp(ty, "Replace")) {
        const char *pat;
        if (parse_pattern(c, o, "Replace normalizer", &pat)) return -1;
        const char *content = jget(o, "content")->valuestring;
        op.type = NORM_REPLACE;
        op.a_len = (uint32_t)strlen(pat);
        op.a_off = pool_add(&t->pool, pat, op.a_len);
        op.b_len = (uint32_t)strlen(content);
        op.b_off = pool_add(&t->pool, content, op.b_len);
    } else {
        return FAIL(c, "normalizer type \"%s\" is not supported (only Sequence, Prepend, Replace)", ty);
    }
    t->norm = xrealloc(t->norm, sizeof(norm_op) * (size_t)(t->n_norm + 1));
    t->norm[t->n_norm++] = op;
    return 0;
}

static int parse_decoder(ctx *c, llava_tokenizer *t, const cJSON *o, int depth) {
    const char *ty = jtype(o);
    if (!ty) return FAIL(c, "decoder without a \"type\"");
    if (depth > 16) return FAIL(c, "decoder nesting is too deep");
    if (!strcmp(ty, "Sequence")) {
        const cJSON *list = jget(o, "decoders");
        if (!list || !cJSON_IsArray(list)) return FAIL(c, "Sequence decoder needs a \"decoders\" array");
        const cJSON *it;
        cJSON_ArrayForEach(it, list) if (parse_decoder(c, t, it, depth + 1)) return -1;
        return 0;
    }
    dec_op op = {0};
    if (!strcmp(ty, "Replace")) {
        const char *pat;
        if (parse_pattern(c, o, "Replace decoder", &pat)) return -1;
        const char *content = jget(o, "content")->valuestring;
        op.type = DEC_REPLACE;
        op.a_len = (uint32_t)strlen(pat);
        op.a_off = pool_add(&t->pool, pat, op.a_len);
        op.b_len = (uint32_t)strlen(content);
        op.b_off = pool_add(&t->pool, content, op.b_len);
    } else if (!strcmp(ty, "ByteFallback")) {
        op.type = DEC_BYTE_FALLBACK;
    } else if (!strcmp(ty, "Fuse")) {
        op.type = DEC_FUSE;
    } else if (!strcmp(ty, "Strip")) {
        const cJSON *content = jget(o, "content"), *a = jget(o, "start"), *b = jget(o, "stop");
        if (!content || !cJSON_IsString(content) || !content->valuestring[0])
            return FAIL(c, "Strip decoder needs a one-character \"content\"");
        size_t cl = strlen(content->valuestring);
        if (utf8_check(content->valuestring, cl) != cl ||
            (size_t)utf8_len((unsigned char)content->valuestring[0]) != cl)
            return FAIL(c, "Strip decoder \"content\" must be exactly one character");
        if (!a || !b || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valuedouble < 0 || b->valuedouble < 0)
            return FAIL(c, "Strip decoder needs non-negative \"start\" and \"stop\"");
        op.type = DEC_STRIP;
        op.ch = utf8_decode(content->valuestring, (int)cl);
        op.start = (size_t)a->valuedouble;
        op.stop = (size_t)b->valuedouble;
    } else if (!strcmp(ty, "Metaspace")) {
        int split;
        op.type = DEC_METASPACE;
        if (parse_metaspace(c, o, "Metaspace decoder", &op.ch, &op.prepend, &split)) return -1;
    } else {
        return FAIL(c, "decoder type \"%s\" is not supported (only Sequence, Replace, ByteFallback, Fuse, Strip, "
                       "Metaspace)", ty);
    }
    t->dec = xrealloc(t->dec, sizeof(dec_op) * (size_t)(t->n_dec + 1));
    t->dec[t->n_dec++] = op;
    return 0;
}

static int parse_post_processor(ctx *c, llava_tokenizer *t, const cJSON *o) {
    const char *ty = jtype(o);
    if (!ty || strcmp(ty, "TemplateProcessing") != 0)
        return FAIL(c, "post_processor type \"%s\" is not supported (only TemplateProcessing or null)",
                    ty ? ty : "?");
    const cJSON *single = jget(o, "single"), *specials = jget(o, "special_tokens");
    if (!single || !cJSON_IsArray(single)) return FAIL(c, "TemplateProcessing needs a \"single\" array");
    int n_a = 0;
    const cJSON *piece;
    cJSON_ArrayForEach(piece, single) {
        const cJSON *seq = jget(piece, "Sequence"), *sp = jget(piece, "SpecialToken");
        if (seq) {
            const cJSON *id = jget(seq, "id");
            if (!id || !cJSON_IsString(id) || strcmp(id->valuestring, "A") != 0)
                return FAIL(c, "TemplateProcessing \"single\" may only use sequence A");
            t->tmpl = xrealloc(t->tmpl, sizeof(int) * (size_t)(t->n_tmpl + 1));
            t->tmpl[t->n_tmpl++] = -1;
            n_a++;
        } else if (sp) {
            const cJSON *id = jget(sp, "id");
            if (!id || !cJSON_IsString(id)) return FAIL(c, "TemplateProcessing SpecialToken needs a string \"id\"");
            const cJSON *def = specials ? jget(specials, id->valuestring) : NULL;
            const cJSON *ids = def ? jget(def, "ids") : NULL;
            if (!ids || !cJSON_IsArray(ids))
                return FAIL(c, "TemplateProcessing special token \"%s\" is missing from \"special_tokens\"",
                            id->valuestring);
            const cJSON *v;
            cJSON_ArrayForEach(v, ids) {
                if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > INT32_MAX)
                    return FAIL(c, "TemplateProcessing special token \"%s\" has a bad id", id->valuestring);
                t->tmpl = xrealloc(t->tmpl, sizeof(int) * (size_t)(t->n_tmpl + 1));
                t->tmpl[t->n_tmpl++] = (int)v->valuedouble;
            }
        } else {
            return FAIL(c, "TemplateProcessing \"single\" entries must be Sequence or SpecialToken objects");
        }
    }
    if (n_a != 1) return FAIL(c, "TemplateProcessing \"single\" must contain sequence A exactly once");
    return 0;
}

static int merge_put(llava_tokenizer *t, int a, int b, uint32_t rank, int new_id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (uint32_t i = hash_u64(key) & t->merges_mask;; i = (i + 1) & t->merges_mask) {
        mslot *e = &t->merges[i];
        if (e->key == MKEY_EMPTY || e->key == key) { /* a repeated pair: the later rank wins */
            e->key = key;
            e->rank = rank;
            e->new_id = new_id;
            return 0;
        }
    }
}

static int parse_model(ctx *c, llava_tokenizer *t, const cJSON *m) {
    const char *ty = jtype(m);
    if (!ty) ty = jget(m, "merges") ? "BPE" : "(missing)";
    if (strcmp(ty, "BPE") != 0)
        return FAIL(c, "model type \"%s\" is not supported (only BPE tokenizers are implemented)", ty);
    const cJSON *dropout = jget(m, "dropout");
    if (dropout && (!cJSON_IsNumber(dropout) || dropout->valuedouble != 0.0))
        return FAIL(c, "BPE dropout is not supported (it makes encoding random)");
    int v;
    if (llava_json_bool(m, "fuse_unk", 0, &v, c->path, c->err)) return -1;
    t->fuse_unk = v;
    if (llava_json_bool(m, "byte_fallback", 0, &v, c->path, c->err)) return -1;
    t->byte_fallback = v;
    if (llava_json_bool(m, "ignore_merges", 0, &v, c->path, c->err)) return -1;
    t->ignore_merges = v;
    const char *unk, *prefix, *suffix;
    if (llava_json_str(m, "unk_token", NULL, &unk, c->path, c->err) ||
        llava_json_str(m, "continuing_subword_prefix", NULL, &prefix, c->path, c->err) ||
        llava_json_str(m, "end_of_word_suffix", NULL, &suffix, c->path, c->err))
        return -1;
    if (prefix) {
        t->has_prefix = 1;
        t->prefix_len = (uint32_t)strlen(prefix);
        t->prefix_off = pool_add(&t->pool, prefix, t->prefix_len);
    }
    if (suffix) {
        t->has_suffix = 1;
        t->suffix_len = (uint32_t)strlen(suffix);
        t->suffix_off = pool_add(&t->pool, suffix, t->suffix_len);
    }

    const cJSON *vocab = jget(m, "vocab"), *merges = jget(m, "merges");
    if (!vocab || !cJSON_IsObject(vocab)) return FAIL(c, "model needs a \"vocab\" object of piece -> id");
    if (!merges || !cJSON_IsArray(merges)) return FAIL(c, "model needs a \"merges\" array");
    int nv = cJSON_GetArraySize(vocab);
    smap_init(&t->vocab, (size_t)nv);
    int max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > (double)(INT32_MAX / 2) ||
            e->valuedouble != (double)(int)e->valuedouble)
            return FAIL(c, "vocab entry \"%s\" must have a non-negative integer id", e->string);
        int id = (int)e->valuedouble;
        smap_put(&t->vocab, &t->pool, e->string, strlen(e->string), id);
        if (id > max_id) max_id = id;
    }
    t->vocab_count = (int)t->vocab.count;
    t->n_ids = max_id + 1;

    /* merges: all "a b" strings (legacy) or all [a, b] pairs */
    int nm = cJSON_GetArraySize(merges);
    uint32_t cap = 16;
    while (cap < (uint32_t)nm * 2 + 16) cap *= 2;
    t->merges = xmalloc(sizeof(mslot) * cap);
    for (uint32_t i = 0; i < cap; i++) t->merges[i].key = MKEY_EMPTY;
    t->merges_mask = cap - 1;
    int legacy = nm > 0 && cJSON_IsString(cJSON_GetArrayItem(merges, 0));
    char *buf = NULL;
    size_t buf_cap = 0;
    uint32_t rank = 0;
    int rc = 0;
    cJSON_ArrayForEach(e, merges) {
        const char *a, *b;
        size_t al, bl;
        if (legacy) {
            if (!cJSON_IsString(e)) {
                rc = FAIL(c, "merges mix \"a b\" strings and [a, b] pairs");
                break;
            }
            if (!strncmp(e->valuestring, "#version", 8)) continue;
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                rc = FAIL(c, "merge %u (\"%s\") is not two pieces separated by one space", rank + 1, e->valuestring);
                break;
            }
            a = e->valuestring;
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else {
            const cJSON *x = cJSON_GetArrayItem(e, 0), *y = cJSON_GetArrayItem(e, 1);
            if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(x) || !cJSON_IsString(y)) {
                rc = FAIL(c, "merge %u is not a pair of strings (merges must be all \"a b\" or all [a, b])", rank + 1);
                break;
            }
            a = x->valuestring;
            al = strlen(a);
            b = y->valuestring;
            bl = strlen(b);
        }
        int ia = smap_get(&t->vocab, &t->pool, a, al), ib = smap_get(&t->vocab, &t->pool, b, bl);
        if (ia < 0 || ib < 0) {
            rc = FAIL(c, "merge %u refers to a piece that is not in the vocab (\"%.*s\")", rank + 1,
                      (int)(ia < 0 ? al : bl), ia < 0 ? a : b);
            break;
        }
        if (bl < t->prefix_len) {
            rc = FAIL(c, "merge %u: right piece is shorter than continuing_subword_prefix", rank + 1);
            break;
        }
        size_t nl = al + bl - t->prefix_len;
        if (nl + 1 > buf_cap) {
            buf_cap = (nl + 1) * 2;
            buf = xrealloc(buf, buf_cap);
        }
        memcpy(buf, a, al);
        memcpy(buf + al, b + t->prefix_len, bl - t->prefix_len);
        int nid = smap_get(&t->vocab, &t->pool, buf, nl);
        if (nid < 0) {
            rc = FAIL(c, "merge %u makes \"%.*s\", which is not in the vocab", rank + 1, (int)nl, buf);
            break;
        }
        merge_put(t, ia, ib, rank, nid);
        rank++;
    }
    free(buf);
    if (rc) return -1;

    t->has_unk_token = unk != NULL;
    t->unk_id = unk ? smap_get(&t->vocab, &t->pool, unk, strlen(unk)) : -1;
    for (int b = 0; b < 128; b++) {
        char ch = (char)b;
        t->ascii_ids[b] = smap_get(&t->vocab, &t->pool, &ch, 1);
    }
    /* Split points need merged strings to be plain concatenations (no subword prefix/suffix)
     * and valid UTF-8 pieces. */
    t->can_split = !t->has_prefix && !t->has_suffix;
    {   /* ... and one string per id (a symbol's text is then its piece's text) */
        uint8_t *seen = xcalloc((size_t)t->n_ids + 1, 1);
        for (uint32_t i = 0; i <= t->vocab.mask; i++) {
            const smap_slot *sl = &t->vocab.slots[i];
            if (sl->off == NONE32) continue;
            if (seen[sl->val]) t->can_split = 0;
            seen[sl->val] = 1;
        }
        free(seen);
    }
    for (uint32_t i = 0; t->can_split && i <= t->vocab.mask; i++) {
        const smap_slot *sl = &t->vocab.slots[i];
        if (sl->off == NONE32) continue;
        const char *p = t->pool.data + sl->off;
        if (utf8_check(p, sl->len) != sl->len) {
            t->can_split = 0;
            break;
        }
        int prev = -1;
        for (uint32_t j = 0; j < sl->len;) {
            int k = utf8_len((unsigned char)p[j]);
            int cs = small_char(utf8_decode(p + j, k));
            if (prev >= 0 && cs >= 0) {
                unsigned bit = (unsigned)(prev * 129 + cs);
                t->pair_bits[bit >> 6] |= 1ull << (bit & 63);
            }
            prev = cs;
            j += (uint32_t)k;
        }
    }
    for (int b = 0; b < 256; b++) {
        char key[8];
        snprintf(key, sizeof key, "<0x%02X>", b);
        t->byte_ids[b] = smap_get(&t->vocab, &t->pool, key, 6);
    }
    return 0;
}

/* HF AddedVocabulary::add_tokens, as run once by the tokenizer.json loader. */
static int parse_added_tokens(ctx *c, llava_tokenizer *t, const cJSON *list) {
    int n = list ? cJSON_GetArraySize(list) : 0;
    smap_init(&t->added_map, (size_t)n);
    smap_init(&t->special_set, (size_t)n);
    if (list && !cJSON_IsArray(list)) return FAIL(c, "\"added_tokens\" must be an array");
    /* any id an added token can get is below this bound */
    int bound = (t->n_ids > t->vocab_count ? t->n_ids : t->vocab_count) + n + 1;
    t->added_by_id = xmalloc(sizeof(int) * (size_t)bound);
    for (int i = 0; i < bound; i++) t->added_by_id[i] = -1;
    t->added = xcalloc((size_t)(n ? n : 1), sizeof(added_tok));
    int next_id = t->vocab_count;
    scratch s = {0};
    s.err = c->err;
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        const char *content;
        int single_word, lstrip, rstrip, normalized, special;
        if (!cJSON_IsObject(e) || llava_json_str(e, "content", NULL, &content, c->path, c->err) ||
            llava_json_bool(e, "single_word", 0, &single_word, c->path, c->err) ||
            llava_json_bool(e, "lstrip", 0, &lstrip, c->path, c->err) ||
            llava_json_bool(e, "rstrip", 0, &rstrip, c->path, c->err) ||
            llava_json_bool(e, "normalized", 1, &normalized, c->path, c->err) ||
            llava_json_bool(e, "special", 0, &special, c->path, c->err)) {
            scratch_free(&s);
            return cJSON_IsObject(e) ? -1 : FAIL(c, "\"added_tokens\" entries must be objects");
        }
        if (!content || !content[0]) continue;
        size_t len = strlen(content);
        int id = smap_get(&t->added_map, &t->pool, content, len);
        if (id >= 0 && t->added_by_id[id] >= 0) {
            const added_tok *o = &t->added[t->added_by_id[id]];
            if (o->len == len && !memcmp(t->pool.data + o->off, content, len) && o->single_word == single_word &&
                o->lstrip == lstrip && o->rstrip == rstrip && o->normalized == normalized && o->special == special)
                continue; /* identical token already there */
        }
        if (id < 0) id = smap_get(&t->vocab, &t->pool, content, len);
        if (id < 0) id = next_id++;
        CHECK(id < bound);
        added_tok a = {0};
        a.id = id;
        a.single_word = (uint8_t)single_word;
        a.lstrip = (uint8_t)lstrip;
        a.rstrip = (uint8_t)rstrip;
        a.normalized = (uint8_t)normalized;
        a.special = (uint8_t)special;
        a.off = smap_put(&t->added_map, &t->pool, content, len, id);
        a.len = (uint32_t)len;
        a.poff = a.off;
        a.plen = a.len;
        if (normalized && t->has_normalizer) {
            size_t nn;
            const char *norm = normalize(t, &s, t->pool.data + a.off, len, &nn);
            if (!norm) {
                scratch_free(&s);
                return llava_err_prefix(c->err, "%s", c->path);
            }
            if (nn != len || memcmp(norm, t->pool.data + a.off, len) != 0) {
                a.poff = pool_add(&t->pool, norm, nn);
                a.plen = (uint32_t)nn;
            }
        }
        if (special) smap_put(&t->special_set, &t->pool, content, len, 1);
        /* the latest token given an id replaces any earlier one at that id */
        if (t->added_by_id[id] >= 0) {
            t->added[t->added_by_id[id]] = a;
        } else {
            t->added_by_id[id] = t->n_added;
            t->added[t->n_added++] = a;
        }
        if (id + 1 > t->n_ids) t->n_ids = id + 1;
    }
    scratch_free(&s);

    /* split patterns, bucketed by first byte */
    for (int kind = 0; kind < 2; kind++) {
        match_set *ms = &t->mset[kind];
        ms->idx = xmalloc(sizeof(int) * (size_t)(t->n_added ? t->n_added : 1));
        int count[256] = {0};
        for (int i = 0; i < t->n_added; i++)
            if (t->added[i].normalized == kind && t->added[i].plen) count[(unsigned char)t->pool.data[t->added[i].poff]]++;
        ms->start[0] = 0;
        for (int b = 0; b < 256; b++) ms->start[b + 1] = ms->start[b] + count[b];
        int fill[256];
        memcpy(fill, ms->start, sizeof fill);
        for (int i = 0; i < t->n_added; i++)
            if (t->added[i].normalized == kind && t->added[i].plen)
                ms->idx[fill[(unsigned char)t->pool.data[t->added[i].poff]]++] = i;
        ms->n = ms->start[256];
    }
    return 0;
}

int llava_tokenizer_load(llava_tokenizer **out, const char *path, llava_err *err) {
    *out = NULL;
    cJSON *root = llava_json_load(path, err);
    if (!root) return -1;
    ctx c = {path, err};
    llava_tokenizer *t = xcalloc(1, sizeof *t);
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = FAIL(&c, "not a tokenizer.json (top level is not an object)");
        goto done;
    }
    const cJSON *model = jget(root, "model");
    if (!model || !cJSON_IsObject(model)) {
        rc = FAIL(&c, "not a tokenizer.json (no \"model\" object)");
        goto done;
    }
    const cJSON *pre = jget(root, "pre_tokenizer");
    if (pre) {
        const char *ty = jtype(pre);
        if (!ty || strcmp(ty, "Metaspace") != 0) {
            rc = FAIL(&c, "pre_tokenizer type \"%s\" is not supported (only Metaspace, or none as in the "
                          "Mistral/Llama-2 tokenizer.json)", ty ? ty : "?");
            goto done;
        }
        uint32_t ch;
        if ((rc = parse_metaspace(&c, pre, "Metaspace pre_tokenizer", &ch, &t->ms_prepend, &t->ms_split))) goto done;
        t->has_metaspace = 1;
        unsigned char *u = (unsigned char *)t->ms_rep;
        if (ch < 0x80) {
            u[0] = (unsigned char)ch;
            t->ms_rep_len = 1;
        } else if (ch < 0x800) {
            u[0] = (unsigned char)(0xC0 | (ch >> 6));
            u[1] = (unsigned char)(0x80 | (ch & 0x3F));
            t->ms_rep_len = 2;
        } else if (ch < 0x10000) {
            u[0] = (unsigned char)(0xE0 | (ch >> 12));
            u[1] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));
            u[2] = (unsigned char)(0x80 | (ch & 0x3F));
            t->ms_rep_len = 3;
        } else {
            u[0] = (unsigned char)(0xF0 | (ch >> 18));
            u[1] = (unsigned char)(0x80 | ((ch >> 12) & 0x3F));
            u[2] = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));
            u[3] = (unsigned char)(0x80 | (ch & 0x3F));
            t->ms_rep_len = 4;
        }
    }
    if ((rc = parse_model(&c, t, model))) goto done;
    const cJSON *norm = jget(root, "normalizer");
    if (norm) {
        t->has_normalizer = 1;
        if ((rc = parse_normalizer(&c, t, norm, 0))) goto done;
    }
    const cJSON *dec = jget(root, "decoder");
    if (dec) {
        t->has_decoder = 1;
        if ((rc = parse_decoder(&c, t, dec, 0))) goto done;
    }
    const cJSON *post = jget(root, "post_processor");
    if (post && (rc = parse_post_processor(&c, t, post))) goto done;
    if ((rc = parse_added_tokens(&c, t, jget(root, "added_tokens")))) goto done;

    /* per-id tables: the id_to_token string (added tokens first, in their normalized form when
     * the normalizer changes them, as HF does) and whether decode(skip_special) drops it */
    t->piece_off = xmalloc(sizeof(uint32_t) * (size_t)(t->n_ids ? t->n_ids : 1));
    t->piece_len = xmalloc(sizeof(uint32_t) * (size_t)(t->n_ids ? t->n_ids : 1));
    t->skip = xcalloc((size_t)(t->n_ids ? t->n_ids : 1), 1);
    for (int i = 0; i < t->n_ids; i++) t->piece_off[i] = NONE32;
    for (uint32_t i = 0; i <= t->vocab.mask; i++) {
        const smap_slot *e = &t->vocab.slots[i];
        if (e->off == NONE32) continue;
        t->piece_off[e->val] = e->off;
        t->piece_len[e->val] = e->len;
    }
    for (int i = 0; i < t->n_added; i++) {
        const added_tok *a = &t->added[i];
        t->piece_off[a->id] = a->poff;
        t->piece_len[a->id] = a->plen;
    }
    for (int i = 0; i < t->n_ids; i++)
        if (t->piece_off[i] != NONE32)
            t->skip[i] = smap_get(&t->special_set, &t->pool, t->pool.data + t->piece_off[i], t->piece_len[i]) >= 0;
    for (int k = 0; k < t->n_tmpl; k++)
        if (t->tmpl[k] >= t->n_ids && t->tmpl[k] != -1) {
            rc = FAIL(&c, "post_processor adds id %d, which is past the vocabulary (%d ids)", t->tmpl[k], t->n_ids);
            goto done;
        }
done:
    cJSON_Delete(root);
    if (rc) {
        llava_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

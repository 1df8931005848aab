/* chat_template.c — a small interpreter for the Jinja subset of chat templates (see chat_template.h).
 *
 * Pipeline: lex the source into text / {{ }} / {% %} pieces (with jinja2's trim_blocks and
 * lstrip_blocks as transformers sets them, and '-' whitespace control), parse the pieces into a tree
 * of statements and expressions, and evaluate that tree against the messages. Values live in a
 * per-render arena and are never freed one by one. Output formatting follows Python's str()/repr()
 * (what jinja2 prints), e.g. None, True, 1.0, ['a', 1].
 */
#include "formats/chat_template.h"

#include <ctype.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "formats/json.h"
#include "util/mem.h"

/* ------------------------------------------------------------------ arena + values */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
} arena_block;

typedef struct {
    arena_block *head;
} arena;

static void *aalloc(arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->used + n > a->head->cap) {
        size_t cap = n > 65536 ? n : 65536;
        arena_block *b = xmalloc(sizeof *b + cap);
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(arena *a) {
    while (a->head) {
        arena_block *n = a->head->next;
        free(a->head);
        a->head = n;
    }
}

typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_FUNC } vtype;

typedef struct value value;
typedef struct {
    value **items;
    int n, cap;
} vlist;
typedef struct {
    const char **keys;
    value **vals;
    int n, cap;
} vdict;

struct value {
    vtype t;
    int is_tuple, is_ns;
    long long i;      /* BOOL, INT */
    double f;         /* FLOAT */
    const char *s;    /* STR (NUL-terminated, UTF-8); UNDEF: hint message; FUNC: name */
    size_t len;       /* STR */
    vlist *l;         /* LIST */
    vdict *d;         /* DICT */
};

/* ------------------------------------------------------------------ lexer */

typedef enum {
    T_EOF, T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT, T_FLOAT, T_OP
} ttype;

typedef struct {
    ttype t;
    const char *s; /* TEXT/NAME/STRING/OP: arena copy; */
    size_t len;
    long long i;
    double f;
    int line;
} token;

typedef struct {
    token *v;
    int n, cap;
} tokvec;

typedef struct {
    arena *a;
    jmp_buf jb;
    char msg[512];
} ctx_err;

static void fail(ctx_err *e, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void fail(ctx_err *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    longjmp(e->jb, 1);
}

static void push_tok(tokvec *tv, token t) {
    if (tv->n == tv->cap) {
        tv->cap = tv->cap ? tv->cap * 2 : 256;
        tv->v = xrealloc(tv->v, sizeof(token) * (size_t)tv->cap);
    }
    tv->v[tv->n++] = t;
}

static char *astrndup(arena *a, const char *s, size_t n) {
    char *p = aalloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static void put_utf8(char **o, unsigned cp) {
    char *p = *o;
    if (cp < 0x80) *p++ = (char)cp;
    else if (cp < 0x800) *p++ = (char)(0xC0 | (cp >> 6)), *p++ = (char)(0x80 | (cp & 63));
    else if (cp < 0x10000)
        *p++ = (char)(0xE0 | (cp >> 12)), *p++ = (char)(0x80 | ((cp >> 6) & 63)), *p++ = (char)(0x80 | (cp & 63));
    else
        *p++ = (char)(0xF0 | (cp >> 18)), *p++ = (char)(0x80 | ((cp >> 12) & 63)), *p++ = (char)(0x80 | ((cp >> 6) & 63)),
        *p++ = (char)(0x80 | (cp & 63));
    *o = p;
}

/* Lexes the inside of a tag from p up to the closing delimiter; returns the position after it. */
static const char *lex_expr(ctx_err *e, tokvec *tv, const char *p, const char *close, int *line, int *strip_after) {
    size_t cl = strlen(close);
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            if (*p == '\n') (*line)++;
            p++;
        }
        if (!*p) fail(e, "line %d: unterminated tag (missing %s)", *line, close);
        if ((*p == '-' || *p == '+') && !strncmp(p + 1, close, cl)) {
            *strip_after = *p == '-' ? 1 : -1;
            return p + 1 + cl;
        }
        if (!strncmp(p, close, cl)) {
            *strip_after = 0;
            return p + cl;
        }
        token t = {.line = *line};
        if (isalpha((unsigned char)*p) || *p == '_') {
            const char *s = p;
            while (isalnum((unsigned char)*p) || *p == '_') p++;
            t.t = T_NAME;
            t.s = astrndup(e->a, s, (size_t)(p - s));
            t.len = (size_t)(p - s);
        } else if (isdigit((unsigned char)*p)) {
            const char *s = p;
            int isf = 0;
            while (isdigit((unsigned char)*p) || *p == '_') p++;
            if (*p == '.' && isdigit((unsigned char)p[1])) {
                isf = 1;
                p++;
                while (isdigit((unsigned char)*p)) p++;
            }
            if (*p == 'e' || *p == 'E') {
                const char *q = p + 1;
                if (*q == '+' || *q == '-') q++;
                if (isdigit((unsigned char)*q)) {
                    isf = 1;
                    p = q;
                    while (isdigit((unsigned char)*p)) p++;
                }
            }
            char buf[64];
            size_t n = 0;
            for (const char *q = s; q < p && n < sizeof buf - 1; q++)
                if (*q != '_') buf[n++] = *q;
            buf[n] = 0;
            if (isf) t.t = T_FLOAT, t.f = strtod(buf, NULL);
            else t.t = T_INT, t.i = strtoll(buf, NULL, 10);
        } else if (*p == '\'' || *p == '"') {
            char q = *p++;
            char *buf = aalloc(e->a, strlen(p) + 1), *o = buf;
            while (*p && *p != q) {
                if (*p == '\\' && p[1]) {
                    p++;
                    switch (*p) {
                    case 'n': *o++ = '\n'; break;
                    case 't': *o++ = '\t'; break;
                    case 'r': *o++ = '\r'; break;
                    case '0': *o++ = '\0'; break;
                    case '\\': *o++ = '\\'; break;
                    case '\'': *o++ = '\''; break;
                    case '"': *o++ = '"'; break;
                    case 'u':
                    case 'x': {
                        int nd = *p == 'u' ? 4 : 2;
                        unsigned cp = 0;
                        int k = 0;
                        for (; k < nd && isxdigit((unsigned char)p[1 + k]); k++)
                            cp = cp * 16 + (unsigned)(isdigit((unsigned char)p[1 + k]) ? p[1 + k] - '0' : (tolower(p[1 + k]) - 'a' + 10));
                        if (k < nd) {
                            *o++ = '\\';
                            *o++ = *p;
                            break;
                        }
                        p += nd;
                        put_utf8(&o, cp);
                        break;
                    }
                    default: *o++ = '\\'; *o++ = *p; break; /* Python keeps unknown escapes */
                    }
                    p++;
                } else {
                    if (*p == '\n') (*line)++;
                    *o++ = *p++;
                }
            }
            if (*p != q) fail(e, "line %d: unterminated string literal", *line);
            p++;
            *o = 0;
            t.t = T_STRING;
            t.s = buf;
            t.len = (size_t)(o - buf);
        } else {
            static const char *ops[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                        "(", ")", "[", "]", "{", "}", ",", ":", ".", "|", "=", NULL};
            int k;
            for (k = 0; ops[k]; k++)
                if (!strncmp(p, ops[k], strlen(ops[k]))) break;
            if (!ops[k]) fail(e, "line %d: unexpected character '%c' in a tag", *line, *p);
            t.t = T_OP;
            t.s = ops[k];
            t.len = strlen(ops[k]);
            p += t.len;
        }
        push_tok(tv, t);
    }
}

static void lex(ctx_err *e, tokvec *tv, const char *src) {
    const char *p = src;
    int line = 1, strip_next = 0; /* strip_next: 1 = '-' (all whitespace), 2 = trim_blocks (one newline) */
    for (;;) {
        /* find the next tag start */
        const char *q = p;
        const char *tag = NULL;
        while (*q) {
            if (q[0] == '{' && (q[1] == '{' || q[1] == '%' || q[1] == '#')) {
                tag = q;
                break;
            }
            q++;
        }
        const char *text_end = tag ? tag : q;
        const char *ts = p;
        if (strip_next == 1)
            while (ts < text_end && isspace((unsigned char)*ts)) ts++;
        else if (strip_next == 2 && ts < text_end && *ts == '\n')
            ts++;
        else if (strip_next == 2 && ts + 1 < text_end && ts[0] == '\r' && ts[1] == '\n')
            ts += 2;
        const char *te = text_end;
        if (tag) {
            char kind = tag[1];
            int minus = tag[2] == '-', plus = tag[2] == '+';
            if (minus) {
                while (te > ts && isspace((unsigned char)te[-1])) te--;
            } else if ((kind == '%' || kind == '#') && !plus) {
                /* lstrip_blocks: a block or comment tag that is first on its line takes the
                 * spaces/tabs before it on that line away */
                const char *b = tag;
                while (b > src && (b[-1] == ' ' || b[-1] == '\t')) b--;
                if (b == src || b[-1] == '\n') te = b < ts ? ts : b;
            }
        }
        for (const char *c = p; c < text_end; c++)
            if (*c == '\n') line++;
        if (te > ts) push_tok(tv, (token){.t = T_TEXT, .s = astrndup(e->a, ts, (size_t)(te - ts)), .len = (size_t)(te - ts), .line = line});
        if (!tag) break;
        char kind = tag[1];
        const char *inner = tag + 2 + ((tag[2] == '-' || tag[2] == '+') ? 1 : 0);
        int strip_after = 0;
        if (kind == '#') {
            const char *end = strstr(inner, "#}");
            if (!end) fail(e, "line %d: unterminated comment", line);
            for (const char *c = inner; c < end; c++)
                if (*c == '\n') line++;
            strip_after = end > inner && end[-1] == '-' ? 1 : (end > inner && end[-1] == '+' ? -1 : 0);
            p = end + 2;
            strip_next = strip_after == 1 ? 1 : strip_after == -1 ? 0 : 2;
            continue;
        }
        if (kind == '{') {
            push_tok(tv, (token){.t = T_VAR_BEGIN, .line = line});
            p = lex_expr(e, tv, inner, "}}", &line, &strip_after);
            push_tok(tv, (token){.t = T_VAR_END, .line = line});
            strip_next = strip_after == 1 ? 1 : 0;
        } else {
            push_tok(tv, (token){.t = T_BLOCK_BEGIN, .line = line});
            p = lex_expr(e, tv, inner, "%}", &line, &strip_after);
            push_tok(tv, (token){.t = T_BLOCK_END, .line = line});
            strip_next = strip_after == 1 ? 1 : strip_after == -1 ? 0 : 2;
        }
    }
    push_tok(tv, (token){.t = T_EOF, .line = line});
}

/* ------------------------------------------------------------------ AST */

typedef enum {
    E_LIT, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_BIN, E_NOT, E_NEG, E_AND, E_OR, E_COND, E_LIST,
    E_DICT, E_CMP
} etype;

typedef struct expr expr;
struct expr {
    etype t;
    value *lit;        /* LIT */
    const char *name;  /* NAME, ATTR attribute, CALL/FILTER/TEST name, BIN op */
    expr *a, *b, *c;   /* operands; SLICE: a[b:c:d] with d in args[0] */
    expr **args;       /* CALL/FILTER/TEST args, LIST items, DICT keys/values interleaved, CMP operands */
    const char **kwnames; /* parallel to args: keyword name or NULL */
    int n_args;
    const char **ops;  /* CMP operators (n_args - 1) */
    int negate;        /* TEST: is not */
    int line;
};

typedef enum { S_TEXT, S_OUT, S_IF, S_FOR, S_SET, S_BREAK, S_CONTINUE } stype;
typedef struct stmt stmt;
typedef struct {
    stmt **v;
    int n, cap;
} body;
struct stmt {
    stype t;
    const char *text;
    size_t len;
    expr *e;            /* OUT value, SET value, FOR iterable */
    expr **conds;       /* IF: conditions (n_branches; else branch has NULL) */
    body *branches;
    int n_branches;
    const char *var, *var2; /* FOR targets; SET name (var) and attribute (var2) */
    expr *filter;       /* FOR ... if cond */
    body b, else_b;     /* FOR body and else */
    int line;
};

typedef struct {
    ctx_err *e;
    token *t;
    int pos;
} parser;

static token *peek(parser *p) { return &p->t[p->pos]; }
static token *next(parser *p) { return &p->t[p->pos++]; }
static int is_op(token *t, const char *op) { return t->t == T_OP && !strcmp(t->s, op); }
static int is_name(token *t, const char *n) { return t->t == T_NAME && !strcmp(t->s, n); }
static void expect_op(parser *p, const char *op) {
    token *t = next(p);
    if (!is_op(t, op)) fail(p->e, "line %d: expected '%s'", t->line, op);
}
static expr *new_expr(parser *p, etype t) {
    expr *x = aalloc(p->e->a, sizeof *x);
    x->t = t;
    x->line = peek(p)->line;
    return x;
}
static void add_arg(parser *p, expr *x, expr *a, const char *kw) {
    expr **na = aalloc(p->e->a, sizeof(expr *) * (size_t)(x->n_args + 1));
    const char **nk = aalloc(p->e->a, sizeof(char *) * (size_t)(x->n_args + 1));
    if (x->n_args) {
        memcpy(na, x->args, sizeof(expr *) * (size_t)x->n_args);
        memcpy(nk, x->kwnames, sizeof(char *) * (size_t)x->n_args);
    }
    na[x->n_args] = a;
    nk[x->n_args] = kw;
    x->args = na;
    x->kwnames = nk;
    x->n_args++;
}

static expr *parse_expr(parser *p);
static expr *parse_or(parser *p);

static value *mkval(arena *a, vtype t) {
    value *v = aalloc(a, sizeof *v);
    v->t = t;
    return v;
}

static void parse_call_args(parser *p, expr *x) {
    /* after '(' */
    if (is_op(peek(p), ")")) {
        next(p);
        return;
    }
    for (;;) {
        const char *kw = NULL;
        if (peek(p)->t == T_NAME && is_op(&p->t[p->pos + 1], "=")) {
            kw = next(p)->s;
            next(p);
        }
        add_arg(p, x, parse_expr(p), kw);
        if (is_op(peek(p), ",")) {
            next(p);
            if (is_op(peek(p), ")")) break;
            continue;
        }
        break;
    }
    expect_op(p, ")");
}

static expr *parse_primary(parser *p) {
    token *t = next(p);
    expr *x;
    switch (t->t) {
    case T_STRING: {
        /* adjacent literals concatenate */
        size_t n = t->len;
        const char *s = t->s;
        while (peek(p)->t == T_STRING) {
            token *u = next(p);
            char *c = aalloc(p->e->a, n + u->len + 1);
            memcpy(c, s, n);
            memcpy(c + n, u->s, u->len + 1);
            s = c;
            n += u->len;
        }
        x = new_expr(p, E_LIT);
        x->lit = mkval(p->e->a, V_STR);
        x->lit->s = s;
        x->lit->len = n;
        return x;
    }
    case T_INT:
        x = new_expr(p, E_LIT);
        x->lit = mkval(p->e->a, V_INT);
        x->lit->i = t->i;
        return x;
    case T_FLOAT:
        x = new_expr(p, E_LIT);
        x->lit = mkval(p->e->a, V_FLOAT);
        x->lit->f = t->f;
        return x;
    case T_NAME:
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True") || !strcmp(t->s, "false") || !strcmp(t->s, "False")) {
            x = new_expr(p, E_LIT);
            x->lit = mkval(p->e->a, V_BOOL);
            x->lit->i = t->s[0] == 't' || t->s[0] == 'T';
            return x;
        }
        if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) {
            x = new_expr(p, E_LIT);
            x->lit = mkval(p->e->a, V_NONE);
            return x;
        }
        x = new_expr(p, E_NAME);
        x->name = t->s;
        return x;
    case T_OP:
        if (!strcmp(t->s, "(")) {
            if (is_op(peek(p), ")")) {
                next(p);
                x = new_expr(p, E_LIST);
                x->negate = 1; /* tuple */
                return x;
            }
            expr *first = parse_expr(p);
            if (is_op(peek(p), ",")) {
                x = new_expr(p, E_LIST);
                x->negate = 1;
                add_arg(p, x, first, NULL);
                while (is_op(peek(p), ",")) {
                    next(p);
                    if (is_op(peek(p), ")")) break;
                    add_arg(p, x, parse_expr(p), NULL);
                }
                expect_op(p, ")");
                return x;
            }
            expect_op(p, ")");
            return first;
        }
        if (!strcmp(t->s, "[")) {
            x = new_expr(p, E_LIST);
            while (!is_op(peek(p), "]")) {
                add_arg(p, x, parse_expr(p), NULL);
                if (is_op(peek(p), ",")) next(p);
                else break;
            }
            expect_op(p, "]");
            return x;
        }
        if (!strcmp(t->s, "{")) {
            x = new_expr(p, E_DICT);
            while (!is_op(peek(p), "}")) {
                add_arg(p, x, parse_expr(p), NULL);
                expect_op(p, ":");
                add_arg(p, x, parse_expr(p), NULL);
                if (is_op(peek(p), ",")) next(p);
                else break;
            }
            expect_op(p, "}");
            return x;
        }
        break;
    default: break;
    }
    fail(p->e, "line %d: unexpected token in an expression", t->line);
}

static expr *parse_postfix(parser *p) {
    expr *x = parse_primary(p);
    for (;;) {
        token *t = peek(p);
        if (is_op(t, ".")) {
            next(p);
            token *n = next(p);
            if (n->t != T_NAME && n->t != T_INT) fail(p->e, "line %d: expected an attribute name after '.'", n->line);
            expr *y = new_expr(p, E_ATTR);
            y->a = x;
            if (n->t == T_NAME) y->name = n->s;
            else {
                char *b = aalloc(p->e->a, 32);
                snprintf(b, 32, "%lld", n->i);
                y->name = b;
            }
            x = y;
        } else if (is_op(t, "[")) {
            next(p);
            expr *lo = NULL, *hi = NULL, *st = NULL;
            int is_slice = 0;
            if (!is_op(peek(p), ":")) lo = parse_expr(p);
            if (is_op(peek(p), ":")) {
                is_slice = 1;
                next(p);
                if (!is_op(peek(p), "]") && !is_op(peek(p), ":")) hi = parse_expr(p);
                if (is_op(peek(p), ":")) {
                    next(p);
                    if (!is_op(peek(p), "]")) st = parse_expr(p);
                }
            }
            expect_op(p, "]");
            expr *y = new_expr(p, is_slice ? E_SLICE : E_ITEM);
            y->a = x;
            y->b = lo;
            y->c = hi;
            if (is_slice) add_arg(p, y, st, NULL);
            x = y;
        } else if (is_op(t, "(")) {
            next(p);
            expr *y = new_expr(p, E_CALL);
            y->a = x;
            parse_call_args(p, y);
            x = y;
        } else
            return x;
    }
}

static expr *parse_filters(parser *p, expr *x) {
    while (is_op(peek(p), "|")) {
        next(p);
        token *n = next(p);
        if (n->t != T_NAME) fail(p->e, "line %d: expected a filter name after '|'", n->line);
        expr *y = new_expr(p, E_FILTER);
        y->a = x;
        y->name = n->s;
        if (is_op(peek(p), "(")) {
            next(p);
            parse_call_args(p, y);
        }
        x = y;
    }
    return x;
}

static expr *parse_unary(parser *p) {
    if (is_op(peek(p), "-")) {
        next(p);
        expr *x = new_expr(p, E_NEG);
        x->a = parse_unary(p);
        return x;
    }
    if (is_op(peek(p), "+")) {
        next(p);
        return parse_unary(p);
    }
    expr *x = parse_filters(p, parse_postfix(p));
    /* tests bind like filters on the postfix expression: x is defined */
    return x;
}

static expr *parse_pow(parser *p) {
    expr *x = parse_unary(p);
    if (is_op(peek(p), "**")) {
        next(p);
        expr *y = new_expr(p, E_BIN);
        y->name = "**";
        y->a = x;
        y->b = parse_unary(p);
        return y;
    }
    return x;
}

static expr *parse_mul(parser *p) {
    expr *x = parse_pow(p);
    while (is_op(peek(p), "*") || is_op(peek(p), "/") || is_op(peek(p), "//") || is_op(peek(p), "%")) {
        expr *y = new_expr(p, E_BIN);
        y->name = next(p)->s;
        y->a = x;
        y->b = parse_pow(p);
        x = y;
    }
    return x;
}

static expr *parse_add(parser *p) {
    expr *x = parse_mul(p);
    while (is_op(peek(p), "+") || is_op(peek(p), "-")) {
        expr *y = new_expr(p, E_BIN);
        y->name = next(p)->s;
        y->a = x;
        y->b = parse_mul(p);
        x = y;
    }
    return x;
}

static expr *parse_concat(parser *p) {
    expr *x = parse_add(p);
    while (is_op(peek(p), "~")) {
        next(p);
        expr *y = new_expr(p, E_BIN);
        y->name = "~";
        y->a = x;
        y->b = parse_add(p);
        x = y;
    }
    return x;
}

static expr *parse_cmp(parser *p) {
    expr *x = parse_concat(p);
    expr *c = NULL;
    for (;;) {
        token *t = peek(p);
        const char *op = NULL;
        if (t->t == T_OP && (!strcmp(t->s, "==") || !strcmp(t->s, "!=") || !strcmp(t->s, "<") || !strcmp(t->s, ">") ||
                             !strcmp(t->s, "<=") || !strcmp(t->s, ">="))) {
            op = t->s;
            next(p);
        } else if (is_name(t, "in")) {
            op = "in";
            next(p);
        } else if (is_name(t, "not") && is_name(&p->t[p->pos + 1], "in")) {
            op = "not in";
            p->pos += 2;
        } else if (is_name(t, "is")) {
            next(p);
            expr *y = new_expr(p, E_TEST);
            if (is_name(peek(p), "not")) {
                next(p);
                y->negate = 1;
            }
            token *n = next(p);
            if (n->t != T_NAME) fail(p->e, "line %d: expected a test name after 'is'", n->line);
            y->name = n->s;
            y->a = c ? c : x;
            if (is_op(peek(p), "(")) {
                next(p);
                parse_call_args(p, y);
            } else if (peek(p)->t == T_STRING || peek(p)->t == T_INT || peek(p)->t == T_FLOAT ||
                       (peek(p)->t == T_NAME && !is_name(peek(p), "and") && !is_name(peek(p), "or") &&
                        !is_name(peek(p), "else") && !is_name(peek(p), "if") && !is_name(peek(p), "is") &&
                        !is_name(peek(p), "in") && !is_name(peek(p), "not"))) {
                add_arg(p, y, parse_concat(p), NULL); /* `is sameas true` */
            }
            if (c) c = y;
            else x = y;
            continue;
        } else
            break;
        if (!c) {
            c = new_expr(p, E_CMP);
            add_arg(p, c, x, NULL);
        }
        const char **ops = aalloc(p->e->a, sizeof(char *) * (size_t)c->n_args);
        if (c->n_args > 1) memcpy(ops, c->ops, sizeof(char *) * (size_t)(c->n_args - 1));
        ops[c->n_args - 1] = op;
        c->ops = ops;
        add_arg(p, c, parse_concat(p), NULL);
    }
    return c ? c : x;
}

static expr *parse_not(parser *p) {
    if (is_name(peek(p), "not")) {
        next(p);
        expr *x = new_expr(p, E_NOT);
        x->a = parse_not(p);
        return x;
    }
    return parse_cmp(p);
}

static expr *parse_and(parser *p) {
    expr *x = parse_not(p);
    while (is_name(peek(p), "and")) {
        next(p);
        expr *y = new_expr(p, E_AND);
        y->a = x;
        y->b = parse_not(p);
        x = y;
    }
    return x;
}

static expr *parse_or(parser *p) {
    expr *x = parse_and(p);
    while (is_name(peek(p), "or")) {
        next(p);
        expr *y = new_expr(p, E_OR);
        y->a = x;
        y->b = parse_and(p);
        x = y;
    }
    return x;
}

static expr *parse_expr(parser *p) {
    expr *x = parse_or(p);
    if (is_name(peek(p), "if")) {
        next(p);
        expr *y = new_expr(p, E_COND);
        y->b = x;
        y->a = parse_or(p);
        if (is_name(peek(p), "else")) {
            next(p);
            y->c = parse_expr(p);
        }
        return y;
    }
    return x;
}

static void body_push(body *b, stmt *s) {
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        stmt **v = xmalloc(sizeof(stmt *) * (size_t)b->cap); /* freed with the template */
        if (b->n) memcpy(v, b->v, sizeof(stmt *) * (size_t)b->n);
        free(b->v);
        b->v = v;
    }
    b->v[b->n++] = s;
}

/* Parses statements until one of the end keywords; returns the keyword token index. */
static const char *parse_body(parser *p, body *b, const char *const *ends);

static void expect_block_end(parser *p) {
    token *t = next(p);
    if (t->t != T_BLOCK_END) fail(p->e, "line %d: expected '%%}'", t->line);
}

static stmt *new_stmt(parser *p, stype t) {
    stmt *s = aalloc(p->e->a, sizeof *s);
    s->t = t;
    s->line = peek(p)->line;
    return s;
}

static const char *parse_body(parser *p, body *b, const char *const *ends) {
    for (;;) {
        token *t = next(p);
        if (t->t == T_EOF) {
            if (ends) fail(p->e, "unexpected end of template (missing {%% %s %%})", ends[0]);
            return NULL;
        }
        if (t->t == T_TEXT) {
            stmt *s = new_stmt(p, S_TEXT);
            s->text = t->s;
            s->len = t->len;
            body_push(b, s);
        } else if (t->t == T_VAR_BEGIN) {
            stmt *s = new_stmt(p, S_OUT);
            s->e = parse_expr(p);
            token *u = next(p);
            if (u->t != T_VAR_END) fail(p->e, "line %d: expected '}}'", u->line);
            body_push(b, s);
        } else if (t->t == T_BLOCK_BEGIN) {
            token *kw = next(p);
            if (kw->t != T_NAME) fail(p->e, "line %d: expected a statement name after '{%%'", kw->line);
            if (ends)
                for (int i = 0; ends[i]; i++)
                    if (!strcmp(kw->s, ends[i])) return ends[i];
            if (!strcmp(kw->s, "if")) {
                stmt *s = new_stmt(p, S_IF);
                s->conds = aalloc(p->e->a, sizeof(expr *) * 64);
                s->branches = aalloc(p->e->a, sizeof(body) * 64);
                expr *cond = parse_expr(p);
                static const char *const if_ends[] = {"endif", "elif", "else", NULL};
                for (;;) {
                    expect_block_end(p);
                    if (s->n_branches >= 63) fail(p->e, "line %d: too many elif branches", s->line);
                    s->conds[s->n_branches] = cond;
                    const char *e = parse_body(p, &s->branches[s->n_branches], if_ends);
                    s->n_branches++;
                    if (!strcmp(e, "endif")) break;
                    if (!strcmp(e, "elif")) cond = parse_expr(p);
                    else {
                        expect_block_end(p);
                        static const char *const else_ends[] = {"endif", NULL};
                        s->conds[s->n_branches] = NULL;
                        parse_body(p, &s->branches[s->n_branches], else_ends);
                        s->n_branches++;
                        break;
                    }
                }
                expect_block_end(p);
                body_push(b, s);
            } else if (!strcmp(kw->s, "for")) {
                stmt *s = new_stmt(p, S_FOR);
                token *v = next(p);
                if (v->t != T_NAME) fail(p->e, "line %d: expected a loop variable", v->line);
                s->var = v->s;
                if (is_op(peek(p), ",")) {
                    next(p);
                    token *v2 = next(p);
                    if (v2->t != T_NAME) fail(p->e, "line %d: expected a second loop variable", v2->line);
                    s->var2 = v2->s;
                }
                if (!is_name(next(p), "in")) fail(p->e, "line %d: expected 'in' in a for loop", s->line);
                s->e = parse_or(p);
                if (is_name(peek(p), "if")) {
                    next(p);
                    s->filter = parse_or(p);
                }
                if (is_name(peek(p), "recursive")) fail(p->e, "line %d: recursive loops are not supported", s->line);
                expect_block_end(p);
                static const char *const for_ends[] = {"endfor", "else", NULL};
                const char *e = parse_body(p, &s->b, for_ends);
                if (!strcmp(e, "else")) {
                    expect_block_end(p);
                    static const char *const fe[] = {"endfor", NULL};
                    parse_body(p, &s->else_b, fe);
                }
                expect_block_end(p);
                body_push(b, s);
            } else if (!strcmp(kw->s, "set")) {
                stmt *s = new_stmt(p, S_SET);
                token *v = next(p);
                if (v->t != T_NAME) fail(p->e, "line %d: expected a name after 'set'", v->line);
                s->var = v->s;
                if (is_op(peek(p), ".")) {
                    next(p);
                    token *a = next(p);
                    if (a->t != T_NAME) fail(p->e, "line %d: expected an attribute name", a->line);
                    s->var2 = a->s;
                }
                if (!is_op(peek(p), "="))
                    fail(p->e, "line %d: block {%% set %%} assignments are not supported", s->line);
                next(p);
                s->e = parse_expr(p);
                if (is_op(peek(p), ",")) fail(p->e, "line %d: tuple assignment is not supported", s->line);
                expect_block_end(p);
                body_push(b, s);
            } else if (!strcmp(kw->s, "generation")) {
                /* transformers' AssistantTracker: renders its body unchanged */
                expect_block_end(p);
                static const char *const ge[] = {"endgeneration", NULL};
                parse_body(p, b, ge);
                expect_block_end(p);
            } else if (!strcmp(kw->s, "break") || !strcmp(kw->s, "continue")) {
                body_push(b, new_stmt(p, kw->s[0] == 'b' ? S_BREAK : S_CONTINUE));
                expect_block_end(p);
            } else {
                fail(p->e, "line %d: the {%% %s %%} statement is not supported", kw->line, kw->s);
            }
        } else {
            fail(p->e, "line %d: unexpected token", t->line);
        }
    }
}

/* ------------------------------------------------------------------ template object */

struct llava_chat_template {
    char *source;
    char *bos, *eos;
    arena a;      /* AST */
    body root;
    tokvec toks;
};

static void free_body(body *b) {
    for (int i = 0; i < b->n; i++) {
        stmt *s = b->v[i];
        if (s->t == S_IF)
            for (int k = 0; k < s->n_branches; k++) free_body(&s->branches[k]);
        if (s->t == S_FOR) {
            free_body(&s->b);
            free_body(&s->else_b);
        }
    }
    free(b->v);
}

void llava_chat_template_free(llava_chat_template *t) {
    if (!t) return;
    free_body(&t->root);
    arena_free(&t->a);
    free(t->toks.v);
    free(t->source);
    free(t->bos);
    free(t->eos);
    free(t);
}

const char *llava_chat_template_source(const llava_chat_template *t) { return t->source; }

int llava_chat_template_from_string(llava_chat_template **out, const char *source, const char *bos, const char *eos,
                                    llava_err *err) {
    *out = NULL;
    llava_chat_template *t = xcalloc(1, sizeof *t);
    t->source = xstrdup(source);
    t->bos = bos ? xstrdup(bos) : NULL;
    t->eos = eos ? xstrdup(eos) : NULL;
    ctx_err e = {.a = &t->a};
    if (setjmp(e.jb)) {
        llava_errf(err, "chat template: %s; this template is outside the supported Jinja subset — pass a "
                        "pre-formatted prompt with --raw", e.msg);
        llava_chat_template_free(t);
        return -1;
    }
    lex(&e, &t->toks, t->source);
    parser p = {.e = &e, .t = t->toks.v, .pos = 0};
    parse_body(&p, &t->root, NULL);
    *out = t;
    return 0;
}

/* ------------------------------------------------------------------ evaluation */

typedef struct scope {
    struct scope *up;
    const char **names;
    value **vals;
    int n, cap;
} scope;

typedef struct {
    ctx_err *e;
    arena *a;
    char *out;
    size_t len, cap;
    scope *sc;
    int brk, cont;
} rctx;

static value *UNDEF_V(rctx *r, const char *hint) {
    value *v = mkval(r->a, V_UNDEF);
    v->s = hint;
    return v;
}

static void emit(rctx *r, const char *s, size_t n) {
    if (r->len + n + 1 > r->cap) {
        while (r->len + n + 1 > r->cap) r->cap = r->cap ? r->cap * 2 : 1024;
        if (r->cap > ((size_t)64 << 20)) fail(r->e, "rendered prompt exceeds 64 MiB");
        r->out = xrealloc(r->out, r->cap);
    }
    memcpy(r->out + r->len, s, n);
    r->len += n;
    r->out[r->len] = 0;
}

static void scope_set(rctx *r, scope *s, const char *name, value *v) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) {
            s->vals[i] = v;
            return;
        }
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        const char **nn = aalloc(r->a, sizeof(char *) * (size_t)cap);
        value **nv = aalloc(r->a, sizeof(value *) * (size_t)cap);
        if (s->n) {
            memcpy(nn, s->names, sizeof(char *) * (size_t)s->n);
            memcpy(nv, s->vals, sizeof(value *) * (size_t)s->n);
        }
        s->names = nn;
        s->vals = nv;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n++] = v;
}

static value *lookup(rctx *r, const char *name) {
    for (scope *s = r->sc; s; s = s->up)
        for (int i = 0; i < s->n; i++)
            if (!strcmp(s->names[i], name)) return s->vals[i];
    char *h = aalloc(r->a, strlen(name) + 32);
    sprintf(h, "'%s' is undefined", name);
    return UNDEF_V(r, h);
}

static value *mkstr(rctx *r, const char *s, size_t n) {
    value *v = mkval(r->a, V_STR);
    v->s = astrndup(r->a, s, n);
    v->len = n;
    return v;
}
static value *mkint(rctx *r, long long i) {
    value *v = mkval(r->a, V_INT);
    v->i = i;
    return v;
}
static value *mkbool(rctx *r, int b) {
    value *v = mkval(r->a, V_BOOL);
    v->i = b != 0;
    return v;
}
static value *mkfloat(rctx *r, double f) {
    value *v = mkval(r->a, V_FLOAT);
    v->f = f;
    return v;
}
static value *mklist(rctx *r) {
    value *v = mkval(r->a, V_LIST);
    v->l = aalloc(r->a, sizeof(vlist));
    return v;
}
static value *mkdict(rctx *r) {
    value *v = mkval(r->a, V_DICT);
    v->d = aalloc(r->a, sizeof(vdict));
    return v;
}
static void list_push(rctx *r, value *l, value *x) {
    vlist *L = l->l;
    if (L->n == L->cap) {
        int cap = L->cap ? L->cap * 2 : 8;
        value **v = aalloc(r->a, sizeof(value *) * (size_t)cap);
        if (L->n) memcpy(v, L->items, sizeof(value *) * (size_t)L->n);
        L->items = v;
        L->cap = cap;
    }
    L->items[L->n++] = x;
}
static void dict_set(rctx *r, value *d, const char *k, value *x) {
    vdict *D = d->d;
    for (int i = 0; i < D->n; i++)
        if (!strcmp(D->keys[i], k)) {
            D->vals[i] = x;
            return;
        }
    if (D->n == D->cap) {
        int cap = D->cap ? D->cap * 2 : 8;
        const char **kk = aalloc(r->a, sizeof(char *) * (size_t)cap);
        value **vv = aalloc(r->a, sizeof(value *) * (size_t)cap);
        if (D->n) {
            memcpy(kk, D->keys, sizeof(char *) * (size_t)D->n);
            memcpy(vv, D->vals, sizeof(value *) * (size_t)D->n);
        }
        D->keys = kk;
        D->vals = vv;
        D->cap = cap;
    }
    D->keys[D->n] = astrndup(r->a, k, strlen(k));
    D->vals[D->n++] = x;
}
static value *dict_get(value *d, const char *k) {
    for (int i = 0; i < d->d->n; i++)
        if (!strcmp(d->d->keys[i], k)) return d->d->vals[i];
    return NULL;
}

static const char *type_name(const value *v) {
    switch (v->t) {
    case V_UNDEF: return "Undefined";
    case V_NONE: return "NoneType";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_STR: return "str";
    case V_LIST: return v->is_tuple ? "tuple" : "list";
    case V_DICT: return v->is_ns ? "Namespace" : "dict";
    default: return "function";
    }
}

static int truthy(const value *v) {
    switch (v->t) {
    case V_UNDEF:
    case V_NONE: return 0;
    case V_BOOL:
    case V_INT: return v->i != 0;
    case V_FLOAT: return v->f != 0;
    case V_STR: return v->len > 0;
    case V_LIST: return v->l->n > 0;
    case V_DICT: return v->is_ns || v->d->n > 0;
    default: return 1;
    }
}

static void need_defined(rctx *r, const value *v) {
    if (v->t == V_UNDEF) fail(r->e, "%s", v->s ? v->s : "undefined value");
}

/* Python repr of a float */
static void fmt_float(char *buf, size_t n, double f) {
    if (isnan(f)) {
        snprintf(buf, n, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, n, f > 0 ? "inf" : "-inf");
        return;
    }
    char tmp[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* digits and exponent */
    char digits[32];
    int nd = 0, exp10;
    const char *q = tmp;
    if (*q == '-') q++;
    for (; *q && *q != 'e'; q++)
        if (isdigit((unsigned char)*q)) digits[nd++] = *q;
    exp10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    char *o = buf;
    if (f < 0) *o++ = '-';
    if (exp10 < -4 || exp10 >= 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        sprintf(o, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
        return;
    }
    if (exp10 < 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -exp10 - 1; i++) *o++ = '0';
        memcpy(o, digits, (size_t)nd);
        o += nd;
    } else {
        for (int i = 0; i <= exp10; i++) *o++ = i < nd ? digits[i] : '0';
        *o++ = '.';
        if (nd > exp10 + 1) {
            memcpy(o, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
            o += nd - exp10 - 1;
        } else
            *o++ = '0';
    }
    *o = 0;
}

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;
static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? b->cap * 2 : 64;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void repr(sbuf *b, const value *v, int top);

static void str_repr(sbuf *b, const value *v) {
    /* Python: single quotes unless the string has ' and no " */
    int has_sq = memchr(v->s, '\'', v->len) != NULL, has_dq = memchr(v->s, '"', v->len) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    sb_put(b, &q, 1);
    for (size_t i = 0; i < v->len; i++) {
        unsigned char c = (unsigned char)v->s[i];
        char e[8];
        if (c == (unsigned char)q || c == '\\') e[0] = '\\', e[1] = (char)c, sb_put(b, e, 2);
        else if (c == '\n') sb_puts(b, "\\n");
        else if (c == '\t') sb_puts(b, "\\t");
        else if (c == '\r') sb_puts(b, "\\r");
        else if (c < 0x20 || c == 0x7f) snprintf(e, sizeof e, "\\x%02x", c), sb_puts(b, e);
        else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, &q, 1);
}

static void repr(sbuf *b, const value *v, int top) {
    char num[64];
    switch (v->t) {
    case V_UNDEF: break;
    case V_NONE: sb_puts(b, "None"); break;
    case V_BOOL: sb_puts(b, v->i ? "True" : "False"); break;
    case V_INT: snprintf(num, sizeof num, "%lld", v->i), sb_puts(b, num); break;
    case V_FLOAT: fmt_float(num, sizeof num, v->f), sb_puts(b, num); break;
    case V_STR:
        if (top) sb_put(b, v->s, v->len);
        else str_repr(b, v);
        break;
    case V_LIST:
        sb_puts(b, v->is_tuple ? "(" : "[");
        for (int i = 0; i < v->l->n; i++) {
            if (i) sb_puts(b, ", ");
            repr(b, v->l->items[i], 0);
        }
        if (v->is_tuple && v->l->n == 1) sb_puts(b, ",");
        sb_puts(b, v->is_tuple ? ")" : "]");
        break;
    case V_DICT:
        if (v->is_ns) {
            sb_puts(b, "<Namespace>");
            break;
        }
        sb_puts(b, "{");
        for (int i = 0; i < v->d->n; i++) {
            if (i) sb_puts(b, ", ");
            value k = {.t = V_STR, .s = v->d->keys[i], .len = strlen(v->d->keys[i])};
            str_repr(b, &k);
            sb_puts(b, ": ");
            repr(b, v->d->vals[i], 0);
        }
        sb_puts(b, "}");
        break;
    default: sb_puts(b, "<function>"); break;
    }
}

static value *to_str(rctx *r, const value *v) {
    if (v->t == V_STR) return (value *)v;
    sbuf b = {0};
    repr(&b, v, 1);
    value *s = mkstr(r, b.s ? b.s : "", b.n);
    free(b.s);
    return s;
}

/* JSON as Python's json.dumps(ensure_ascii=False) */
static void to_json(rctx *r, sbuf *b, const value *v, int indent, int sort, int depth) {
    char num[64];
    switch (v->t) {
    case V_UNDEF: fail(r->e, "Object of type Undefined is not JSON serializable");
    case V_NONE: sb_puts(b, "null"); break;
    case V_BOOL: sb_puts(b, v->i ? "true" : "false"); break;
    case V_INT: snprintf(num, sizeof num, "%lld", v->i), sb_puts(b, num); break;
    case V_FLOAT:
        if (isnan(v->f)) sb_puts(b, "NaN");
        else if (isinf(v->f)) sb_puts(b, v->f > 0 ? "Infinity" : "-Infinity");
        else fmt_float(num, sizeof num, v->f), sb_puts(b, num);
        break;
    case V_STR:
        sb_puts(b, "\"");
        for (size_t i = 0; i < v->len; i++) {
            unsigned char c = (unsigned char)v->s[i];
            char e[8];
            if (c == '"') sb_puts(b, "\\\"");
            else if (c == '\\') sb_puts(b, "\\\\");
            else if (c == '\n') sb_puts(b, "\\n");
            else if (c == '\r') sb_puts(b, "\\r");
            else if (c == '\t') sb_puts(b, "\\t");
            else if (c == '\b') sb_puts(b, "\\b");
            else if (c == '\f') sb_puts(b, "\\f");
            else if (c < 0x20) snprintf(e, sizeof e, "\\u%04x", c), sb_puts(b, e);
            else sb_put(b, (const char *)&c, 1);
        }
        sb_puts(b, "\"");
        break;
    case V_LIST:
    case V_DICT: {
        int is_list = v->t == V_LIST, n = is_list ? v->l->n : v->d->n;
        sb_puts(b, is_list ? "[" : "{");
        if (n == 0) {
            sb_puts(b, is_list ? "]" : "}");
            break;
        }
        int *order = xmalloc(sizeof(int) * (size_t)n);
        for (int i = 0; i < n; i++) order[i] = i;
        if (!is_list && sort)
            for (int i = 1; i < n; i++)
                for (int j = i; j > 0 && strcmp(v->d->keys[order[j - 1]], v->d->keys[order[j]]) > 0; j--) {
                    int t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
        for (int i = 0; i < n; i++) {
            if (i) sb_puts(b, indent >= 0 ? "," : ", ");
            if (indent >= 0) {
                sb_puts(b, "\n");
                for (int k = 0; k < (depth + 1) * indent; k++) sb_puts(b, " ");
            }
            if (!is_list) {
                value k = {.t = V_STR, .s = v->d->keys[order[i]], .len = strlen(v->d->keys[order[i]])};
                to_json(r, b, &k, indent, sort, depth + 1);
                sb_puts(b, ": ");
            }
            to_json(r, b, is_list ? v->l->items[order[i]] : v->d->vals[order[i]], indent, sort, depth + 1);
        }
        free(order);
        if (indent >= 0) {
            sb_puts(b, "\n");
            for (int k = 0; k < depth * indent; k++) sb_puts(b, " ");
        }
        sb_puts(b, is_list ? "]" : "}");
        break;
    }
    default: fail(r->e, "Object of type function is not JSON serializable");
    }
}

static int num_of(const value *v, double *f, long long *i) {
    if (v->t == V_INT || v->t == V_BOOL) {
        *i = v->i;
        *f = (double)v->i;
        return 1;
    }
    if (v->t == V_FLOAT) {
        *f = v->f;
        return 2;
    }
    return 0;
}

static int values_equal(const value *a, const value *b) {
    double fa = 0, fb = 0;
    long long ia = 0, ib = 0;
    int na = num_of(a, &fa, &ia), nb = num_of(b, &fb, &ib);
    if (na && nb) return (na == 1 && nb == 1) ? ia == ib : fa == fb;
    if (a->t != b->t) return (a->t == V_UNDEF && b->t == V_UNDEF);
    switch (a->t) {
    case V_NONE:
    case V_UNDEF: return 1;
    case V_STR: return a->len == b->len && !memcmp(a->s, b->s, a->len);
    case V_LIST:
        if (a->l->n != b->l->n) return 0;
        for (int i = 0; i < a->l->n; i++)
            if (!values_equal(a->l->items[i], b->l->items[i])) return 0;
        return 1;
    case V_DICT:
        if (a == b) return 1;
        if (a->d->n != b->d->n) return 0;
        for (int i = 0; i < a->d->n; i++) {
            value *o = dict_get((value *)b, a->d->keys[i]);
            if (!o || !values_equal(a->d->vals[i], o)) return 0;
        }
        return 1;
    default: return a == b;
    }
}

static int compare(rctx *r, const value *a, const value *b, const char *op) {
    if (!strcmp(op, "==")) return values_equal(a, b);
    if (!strcmp(op, "!=")) return !values_equal(a, b);
    if (!strcmp(op, "in") || !strcmp(op, "not in")) {
        int found = 0;
        if (b->t == V_STR) {
            need_defined(r, a);
            if (a->t != V_STR) fail(r->e, "'in <string>' requires string as left operand, not %s", type_name(a));
            found = a->len == 0 || (b->len >= a->len && memmem(b->s, b->len, a->s, a->len) != NULL);
        } else if (b->t == V_LIST) {
            for (int i = 0; i < b->l->n && !found; i++) found = values_equal(a, b->l->items[i]);
        } else if (b->t == V_DICT) {
            found = a->t == V_STR && dict_get((value *)b, a->s) != NULL;
        } else {
            need_defined(r, b);
            fail(r->e, "argument of type '%s' is not iterable", type_name(b));
        }
        return op[0] == 'i' ? found : !found;
    }
    double fa = 0, fb = 0;
    long long ia = 0, ib = 0;
    int c;
    if (num_of(a, &fa, &ia) && num_of(b, &fb, &ib)) c = fa < fb ? -1 : fa > fb;
    else if (a->t == V_STR && b->t == V_STR) {
        size_t n = a->len < b->len ? a->len : b->len;
        c = memcmp(a->s, b->s, n);
        if (!c) c = a->len < b->len ? -1 : a->len > b->len;
    } else {
        need_defined(r, a);
        need_defined(r, b);
        fail(r->e, "'%s' not supported between instances of '%s' and '%s'", op, type_name(a), type_name(b));
    }
    if (!strcmp(op, "<")) return c < 0;
    if (!strcmp(op, ">")) return c > 0;
    if (!strcmp(op, "<=")) return c <= 0;
    return c >= 0;
}

static value *eval(rctx *r, expr *x);

static value *get_attr(rctx *r, value *obj, const char *name, int subscript) {
    if (obj->t == V_DICT) {
        value *v = dict_get(obj, name);
        if (v) return v;
        if (!subscript && obj->is_ns) return UNDEF_V(r, "namespace attribute is undefined");
        if (!subscript && (!strcmp(name, "get") || !strcmp(name, "items") || !strcmp(name, "keys") ||
                           !strcmp(name, "values"))) {
            value *f = mkval(r->a, V_FUNC);
            f->s = name;
            f->l = aalloc(r->a, sizeof(vlist));
            f->l->items = aalloc(r->a, sizeof(value *));
            f->l->items[0] = obj;
            f->l->n = 1;
            return f;
        }
    }
    if (obj->t == V_STR && !subscript) {
        static const char *const m[] = {"upper", "lower", "strip", "lstrip", "rstrip", "split", "startswith",
                                        "endswith", "replace", "title", "capitalize", "format", NULL};
        for (int i = 0; m[i]; i++)
            if (!strcmp(name, m[i])) {
                value *f = mkval(r->a, V_FUNC);
                f->s = m[i];
                f->l = aalloc(r->a, sizeof(vlist));
                f->l->items = aalloc(r->a, sizeof(value *));
                f->l->items[0] = obj;
                f->l->n = 1;
                return f;
            }
    }
    if (obj->t == V_UNDEF) fail(r->e, "%s", obj->s ? obj->s : "undefined value");
    char *h = aalloc(r->a, strlen(name) + 64);
    sprintf(h, "'%s object' has no attribute '%s'", type_name(obj), name);
    return UNDEF_V(r, h);
}

static value *get_item(rctx *r, value *obj, value *key) {
    if (key->t == V_STR) return get_attr(r, obj, key->s, 1);
    long long i;
    double f;
    if (num_of(key, &f, &i) == 1 && (obj->t == V_LIST || obj->t == V_STR)) {
        long long n = obj->t == V_LIST ? obj->l->n : (long long)obj->len;
        if (i < 0) i += n;
        if (i < 0 || i >= n) {
            char *h = aalloc(r->a, 64);
            sprintf(h, "%s object has no element %lld", type_name(obj), i);
            return UNDEF_V(r, h);
        }
        if (obj->t == V_LIST) return obj->l->items[i];
        /* byte index: templates index ASCII prompts; UTF-8 aware indexing would need code points */
        return mkstr(r, obj->s + i, 1);
    }
    if (obj->t == V_UNDEF) fail(r->e, "%s", obj->s ? obj->s : "undefined value");
    return UNDEF_V(r, "no such item");
}

/* code points of a UTF-8 string (for slicing / length) */
static int utf8_offsets(const value *s, size_t **offs) {
    int n = 0;
    *offs = xmalloc(sizeof(size_t) * (s->len + 1));
    for (size_t i = 0; i < s->len; i++)
        if (((unsigned char)s->s[i] & 0xC0) != 0x80) (*offs)[n++] = i;
    (*offs)[n] = s->len;
    return n;
}

static value *slice(rctx *r, value *obj, value *lo, value *hi, value *st) {
    long long step = st && st->t != V_NONE ? st->i : 1;
    if (step == 0) fail(r->e, "slice step cannot be zero");
    size_t *offs = NULL;
    long long n;
    if (obj->t == V_LIST) n = obj->l->n;
    else if (obj->t == V_STR) n = utf8_offsets(obj, &offs);
    else {
        need_defined(r, obj);
        fail(r->e, "'%s' object is not subscriptable", type_name(obj));
    }
    long long a, b;
    if (step > 0) {
        a = lo && lo->t != V_NONE ? lo->i : 0;
        b = hi && hi->t != V_NONE ? hi->i : n;
        if (a < 0) a += n;
        if (b < 0) b += n;
        if (a < 0) a = 0;
        if (b > n) b = n;
    } else {
        a = lo && lo->t != V_NONE ? lo->i : n - 1;
        b = hi && hi->t != V_NONE ? hi->i : -n - 1;
        if (a < 0) a += n;
        if (b < -1) b += n;
        if (a >= n) a = n - 1;
        if (b < -1) b = -1;
    }
    value *out;
    if (obj->t == V_LIST) {
        out = mklist(r);
        out->is_tuple = obj->is_tuple;
        for (long long i = a; step > 0 ? i < b : i > b; i += step) list_push(r, out, obj->l->items[i]);
    } else {
        sbuf sb = {0};
        for (long long i = a; step > 0 ? i < b : i > b; i += step) sb_put(&sb, obj->s + offs[i], offs[i + 1] - offs[i]);
        out = mkstr(r, sb.s ? sb.s : "", sb.n);
        free(sb.s);
    }
    free(offs);
    return out;
}

static value *arg_or(rctx *r, expr *x, int i, const char *kw, value *def) {
    for (int k = 0; k < x->n_args; k++)
        if (x->kwnames[k] && kw && !strcmp(x->kwnames[k], kw)) return eval(r, x->args[k]);
    int pos = 0;
    for (int k = 0; k < x->n_args; k++) {
        if (x->kwnames[k]) continue;
        if (pos++ == i) return eval(r, x->args[k]);
    }
    return def;
}

static value *iterable(rctx *r, value *v) {
    if (v->t == V_LIST) return v;
    value *l = mklist(r);
    if (v->t == V_DICT && !v->is_ns) {
        for (int i = 0; i < v->d->n; i++) list_push(r, l, mkstr(r, v->d->keys[i], strlen(v->d->keys[i])));
        return l;
    }
    if (v->t == V_STR) {
        size_t *offs;
        int n = utf8_offsets(v, &offs);
        for (int i = 0; i < n; i++) list_push(r, l, mkstr(r, v->s + offs[i], offs[i + 1] - offs[i]));
        free(offs);
        return l;
    }
    if (v->t == V_UNDEF) return l; /* jinja2: iterating Undefined yields nothing */
    fail(r->e, "'%s' object is not iterable", type_name(v));
}

static int run_test(rctx *r, const char *name, value *v, expr *x, int argbase);

static value *case_map(rctx *r, value *s, int mode) { /* 0 lower, 1 upper, 2 title, 3 capitalize */
    need_defined(r, s);
    s = to_str(r, s);
    char *o = aalloc(r->a, s->len * 2 + 1);
    size_t n = 0;
    int start = 1;
    for (size_t i = 0; i < s->len;) {
        unsigned char c = (unsigned char)s->s[i];
        if (c < 0x80) {
            int up = mode == 1 || ((mode == 2 || mode == 3) && start);
            int lo = mode == 0 || ((mode == 2 || mode == 3) && !start);
            if (mode == 3 && i > 0) up = 0, lo = 1;
            o[n++] = (char)(up ? toupper(c) : lo ? tolower(c) : c);
            start = mode == 3 ? 0 : !isalpha(c);
            i++;
        } else {
            /* Latin-1 supplement and Greek letters in 2-byte UTF-8: simple case mapping */
            size_t l = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            unsigned cp = 0;
            if (l == 2 && i + 1 < s->len) cp = ((c & 0x1Fu) << 6) | ((unsigned char)s->s[i + 1] & 0x3Fu);
            int up = mode == 1 || ((mode == 2 || mode == 3) && start && !(mode == 3 && i > 0));
            unsigned m = cp;
            if (cp) {
                int is_upper = (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) || (cp >= 0x391 && cp <= 0x3AB && cp != 0x3A2);
                int is_lower = (cp >= 0xE0 && cp <= 0xFE && cp != 0xF7) || (cp >= 0x3B1 && cp <= 0x3CB && cp != 0x3C2);
                if (up && is_lower) m = cp - 0x20;
                else if (!up && is_upper) m = cp + 0x20;
            }
            if (cp && m != cp) {
                char *p = o + n;
                put_utf8(&p, m);
                n = (size_t)(p - o);
            } else {
                memcpy(o + n, s->s + i, l);
                n += l;
            }
            start = 0;
            i += l;
        }
    }
    return mkstr(r, o, n);
}

static value *strip(rctx *r, value *s, int left, int right) {
    need_defined(r, s);
    s = to_str(r, s);
    size_t a = 0, b = s->len;
    if (left)
        while (a < b && isspace((unsigned char)s->s[a])) a++;
    if (right)
        while (b > a && isspace((unsigned char)s->s[b - 1])) b--;
    return mkstr(r, s->s + a, b - a);
}

static value *apply_filter(rctx *r, const char *name, value *v, expr *x) {
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        if (v->t == V_STR) {
            size_t *offs;
            int n = utf8_offsets(v, &offs);
            free(offs);
            return mkint(r, n);
        }
        if (v->t == V_LIST) return mkint(r, v->l->n);
        if (v->t == V_DICT) return mkint(r, v->d->n);
        if (v->t == V_UNDEF) return mkint(r, 0);
        fail(r->e, "object of type '%s' has no len()", type_name(v));
    }
    if (!strcmp(name, "upper")) return case_map(r, v, 1);
    if (!strcmp(name, "lower")) return case_map(r, v, 0);
    if (!strcmp(name, "title")) return case_map(r, v, 2);
    if (!strcmp(name, "capitalize")) return case_map(r, v, 3);
    if (!strcmp(name, "trim")) return strip(r, v, 1, 1);
    if (!strcmp(name, "string")) return to_str(r, v);
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        value *def = arg_or(r, x, 0, "default_value", NULL);
        value *boolean = arg_or(r, x, 1, "boolean", NULL);
        if (v->t == V_UNDEF || (boolean && truthy(boolean) && !truthy(v))) return def ? def : mkstr(r, "", 0);
        return v;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        value *l = iterable(r, v);
        if (!l->l->n) return UNDEF_V(r, "No first item, sequence was empty.");
        return l->l->items[name[0] == 'f' ? 0 : l->l->n - 1];
    }
    if (!strcmp(name, "list")) {
        value *l = iterable(r, v), *o = mklist(r);
        for (int i = 0; i < l->l->n; i++) list_push(r, o, l->l->items[i]);
        return o;
    }
    if (!strcmp(name, "reverse")) {
        if (v->t == V_STR) {
            value st = {.t = V_INT, .i = -1};
            return slice(r, v, NULL, NULL, &st);
        }
        value *l = iterable(r, v), *o = mklist(r);
        for (int i = l->l->n - 1; i >= 0; i--) list_push(r, o, l->l->items[i]);
        return o;
    }
    if (!strcmp(name, "join")) {
        value *sep = arg_or(r, x, 0, "d", NULL);
        value *attr = arg_or(r, x, 1, "attribute", NULL);
        value *l = iterable(r, v);
        sbuf b = {0};
        sb_put(&b, "", 0);
        for (int i = 0; i < l->l->n; i++) {
            if (i && sep) sb_put(&b, to_str(r, sep)->s, to_str(r, sep)->len);
            value *it = attr ? get_attr(r, l->l->items[i], attr->s, 1) : l->l->items[i];
            value *s = to_str(r, it);
            sb_put(&b, s->s, s->len);
        }
        value *o = mkstr(r, b.s, b.n);
        free(b.s);
        return o;
    }
    if (!strcmp(name, "map")) {
        value *attr = arg_or(r, x, 99, "attribute", NULL);
        value *l = iterable(r, v), *o = mklist(r);
        if (attr) {
            value *def = arg_or(r, x, 99, "default", NULL);
            for (int i = 0; i < l->l->n; i++) {
                value *it = get_attr(r, l->l->items[i], to_str(r, attr)->s, 1);
                list_push(r, o, it->t == V_UNDEF && def ? def : it);
            }
            return o;
        }
        value *fname = arg_or(r, x, 0, NULL, NULL);
        if (!fname || fname->t != V_STR) fail(r->e, "map() needs attribute= or a filter name");
        expr none = {0};
        for (int i = 0; i < l->l->n; i++) list_push(r, o, apply_filter(r, fname->s, l->l->items[i], &none));
        return o;
    }
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr") || !strcmp(name, "select") ||
        !strcmp(name, "reject")) {
        int attr_form = !strcmp(name, "selectattr") || !strcmp(name, "rejectattr");
        int keep_if = name[0] == 's';
        value *l = iterable(r, v), *o = mklist(r);
        value *attr = attr_form ? arg_or(r, x, 0, NULL, NULL) : NULL;
        value *test = arg_or(r, x, attr_form ? 1 : 0, NULL, NULL);
        for (int i = 0; i < l->l->n; i++) {
            value *it = attr ? get_attr(r, l->l->items[i], to_str(r, attr)->s, 1) : l->l->items[i];
            int ok = test ? run_test(r, to_str(r, test)->s, it, x, attr_form ? 2 : 1) : truthy(it);
            if (ok == keep_if) list_push(r, o, l->l->items[i]);
        }
        return o;
    }
    if (!strcmp(name, "tojson")) {
        value *ind = arg_or(r, x, 0, "indent", NULL);
        value *sk = arg_or(r, x, 99, "sort_keys", NULL);
        sbuf b = {0};
        to_json(r, &b, v, ind && ind->t == V_INT ? (int)ind->i : -1, sk && truthy(sk), 0);
        value *o = mkstr(r, b.s ? b.s : "", b.n);
        free(b.s);
        return o;
    }
    if (!strcmp(name, "replace")) {
        value *a = arg_or(r, x, 0, NULL, NULL), *b2 = arg_or(r, x, 1, NULL, NULL);
        if (!a || !b2) fail(r->e, "replace() needs two arguments");
        value *s = to_str(r, v);
        a = to_str(r, a);
        b2 = to_str(r, b2);
        sbuf b = {0};
        sb_put(&b, "", 0);
        for (size_t i = 0; i < s->len;) {
            if (a->len && i + a->len <= s->len && !memcmp(s->s + i, a->s, a->len)) {
                sb_put(&b, b2->s, b2->len);
                i += a->len;
            } else
                sb_put(&b, s->s + i++, 1);
        }
        value *o = mkstr(r, b.s, b.n);
        free(b.s);
        return o;
    }
    if (!strcmp(name, "items")) {
        if (v->t != V_DICT) fail(r->e, "items() needs a mapping");
        value *o = mklist(r);
        for (int i = 0; i < v->d->n; i++) {
            value *t = mklist(r);
            t->is_tuple = 1;
            list_push(r, t, mkstr(r, v->d->keys[i], strlen(v->d->keys[i])));
            list_push(r, t, v->d->vals[i]);
            list_push(r, o, t);
        }
        return o;
    }
    if (!strcmp(name, "int")) {
        double f;
        long long i;
        if (num_of(v, &f, &i)) return mkint(r, (long long)f);
        if (v->t == V_STR) return mkint(r, strtoll(v->s, NULL, 10));
        return mkint(r, 0);
    }
    fail(r->e, "the filter '%s' is not supported", name);
}

static int run_test(rctx *r, const char *name, value *v, expr *x, int argbase) {
    if (!strcmp(name, "defined")) return v->t != V_UNDEF;
    if (!strcmp(name, "undefined")) return v->t == V_UNDEF;
    if (!strcmp(name, "none")) return v->t == V_NONE;
    if (!strcmp(name, "string")) return v->t == V_STR;
    if (!strcmp(name, "number")) return v->t == V_INT || v->t == V_FLOAT;
    if (!strcmp(name, "integer")) return v->t == V_INT;
    if (!strcmp(name, "float")) return v->t == V_FLOAT;
    if (!strcmp(name, "boolean")) return v->t == V_BOOL;
    if (!strcmp(name, "true")) return v->t == V_BOOL && v->i;
    if (!strcmp(name, "false")) return v->t == V_BOOL && !v->i;
    if (!strcmp(name, "mapping")) return v->t == V_DICT;
    if (!strcmp(name, "sequence") || !strcmp(name, "iterable")) return v->t == V_LIST || v->t == V_STR || v->t == V_DICT;
    if (!strcmp(name, "callable")) return v->t == V_FUNC;
    if (!strcmp(name, "even") || !strcmp(name, "odd")) {
        if (v->t != V_INT) fail(r->e, "'%s' test needs an integer", name);
        return (v->i % 2 == 0) == (name[0] == 'e');
    }
    if (!strcmp(name, "equalto") || !strcmp(name, "eq") || !strcmp(name, "==") || !strcmp(name, "sameas") ||
        !strcmp(name, "ne") || !strcmp(name, "!=")) {
        value *o = arg_or(r, x, argbase, NULL, NULL);
        if (!o) fail(r->e, "the '%s' test needs an argument", name);
        if (!strcmp(name, "sameas"))
            return (v->t == o->t && (v->t == V_NONE || ((v->t == V_BOOL) && v->i == o->i))) ||
                   (v == o);
        int eq = values_equal(v, o);
        return name[0] == 'n' || name[0] == '!' ? !eq : eq;
    }
    if (!strcmp(name, "in")) {
        value *o = arg_or(r, x, argbase, NULL, NULL);
        if (!o) fail(r->e, "the 'in' test needs an argument");
        return compare(r, v, o, "in");
    }
    fail(r->e, "the test '%s' is not supported", name);
}

static value *call_func(rctx *r, value *f, expr *x) {
    const char *m = f->s;
    value *self = f->l ? f->l->items[0] : NULL;
    if (self && self->t == V_STR) {
        if (!strcmp(m, "upper")) return case_map(r, self, 1);
        if (!strcmp(m, "lower")) return case_map(r, self, 0);
        if (!strcmp(m, "title")) return case_map(r, self, 2);
        if (!strcmp(m, "capitalize")) return case_map(r, self, 3);
        if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
            value *chars = arg_or(r, x, 0, NULL, NULL);
            if (chars && chars->t == V_STR) {
                size_t a = 0, b = self->len;
                if (m[0] != 'r')
                    while (a < b && memchr(chars->s, self->s[a], chars->len)) a++;
                if (m[0] != 'l')
                    while (b > a && memchr(chars->s, self->s[b - 1], chars->len)) b--;
                return mkstr(r, self->s + a, b - a);
            }
            return strip(r, self, m[0] != 'r', m[0] != 'l');
        }
        if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
            value *p = arg_or(r, x, 0, NULL, NULL);
            if (!p || p->t != V_STR) fail(r->e, "%s() needs a string", m);
            if (p->len > self->len) return mkbool(r, 0);
            const char *at = m[0] == 's' ? self->s : self->s + self->len - p->len;
            return mkbool(r, !memcmp(at, p->s, p->len));
        }
        if (!strcmp(m, "split")) {
            value *sep = arg_or(r, x, 0, "sep", NULL);
            value *o = mklist(r);
            if (!sep || sep->t == V_NONE) {
                size_t i = 0;
                while (i < self->len) {
                    while (i < self->len && isspace((unsigned char)self->s[i])) i++;
                    size_t s = i;
                    while (i < self->len && !isspace((unsigned char)self->s[i])) i++;
                    if (i > s) list_push(r, o, mkstr(r, self->s + s, i - s));
                }
                return o;
            }
            if (sep->t != V_STR || !sep->len) fail(r->e, "split() needs a non-empty separator");
            size_t s = 0;
            for (size_t i = 0; i + sep->len <= self->len;) {
                if (!memcmp(self->s + i, sep->s, sep->len)) {
                    list_push(r, o, mkstr(r, self->s + s, i - s));
                    i += sep->len;
                    s = i;
                } else
                    i++;
            }
            list_push(r, o, mkstr(r, self->s + s, self->len - s));
            return o;
        }
        if (!strcmp(m, "replace")) return apply_filter(r, "replace", self, x);
        fail(r->e, "the string method %s() is not supported", m);
    }
    if (self && self->t == V_DICT) {
        if (!strcmp(m, "get")) {
            value *k = arg_or(r, x, 0, NULL, NULL), *d = arg_or(r, x, 1, NULL, NULL);
            value *v = k && k->t == V_STR ? dict_get(self, k->s) : NULL;
            return v ? v : d ? d : mkval(r->a, V_NONE);
        }
        if (!strcmp(m, "items")) return apply_filter(r, "items", self, x);
        value *o = mklist(r);
        for (int i = 0; i < self->d->n; i++)
            list_push(r, o, m[0] == 'k' ? mkstr(r, self->d->keys[i], strlen(self->d->keys[i])) : self->d->vals[i]);
        return o;
    }
    if (!strcmp(m, "raise_exception")) {
        value *msg = arg_or(r, x, 0, NULL, NULL);
        fail(r->e, "%s", msg ? to_str(r, msg)->s : "raise_exception() called");
    }
    if (!strcmp(m, "range")) {
        value *a = arg_or(r, x, 0, NULL, NULL), *b = arg_or(r, x, 1, NULL, NULL), *c = arg_or(r, x, 2, NULL, NULL);
        long long lo = 0, hi, st = 1;
        if (!a || a->t != V_INT) fail(r->e, "range() needs integers");
        if (b) {
            if (b->t != V_INT) fail(r->e, "range() needs integers");
            lo = a->i;
            hi = b->i;
        } else
            hi = a->i;
        if (c) st = c->i;
        if (st == 0) fail(r->e, "range() step must not be zero");
        if ((hi - lo) / st > 100000) fail(r->e, "range() too large");
        value *o = mklist(r);
        for (long long i = lo; st > 0 ? i < hi : i > hi; i += st) list_push(r, o, mkint(r, i));
        return o;
    }
    if (!strcmp(m, "namespace") || !strcmp(m, "dict")) {
        value *d = mkdict(r);
        d->is_ns = m[0] == 'n';
        for (int k = 0; k < x->n_args; k++)
            if (x->kwnames[k]) dict_set(r, d, x->kwnames[k], eval(r, x->args[k]));
        return d;
    }
    fail(r->e, "the function %s() is not supported", m);
}

static value *arith(rctx *r, const char *op, value *a, value *b) {
    if (!strcmp(op, "~")) {
        value *sa = to_str(r, a), *sb = to_str(r, b);
        char *o = aalloc(r->a, sa->len + sb->len + 1);
        memcpy(o, sa->s, sa->len);
        memcpy(o + sa->len, sb->s, sb->len);
        value *v = mkval(r->a, V_STR);
        v->s = o;
        v->len = sa->len + sb->len;
        return v;
    }
    need_defined(r, a);
    need_defined(r, b);
    if (!strcmp(op, "+") && a->t == V_STR && b->t == V_STR) return arith(r, "~", a, b);
    if (!strcmp(op, "+") && a->t == V_LIST && b->t == V_LIST) {
        value *o = mklist(r);
        for (int i = 0; i < a->l->n; i++) list_push(r, o, a->l->items[i]);
        for (int i = 0; i < b->l->n; i++) list_push(r, o, b->l->items[i]);
        return o;
    }
    if (!strcmp(op, "*") && ((a->t == V_STR && b->t == V_INT) || (a->t == V_INT && b->t == V_STR))) {
        value *s = a->t == V_STR ? a : b;
        long long n = a->t == V_INT ? a->i : b->i;
        if (n < 0) n = 0;
        if ((double)n * (double)s->len > 1e7) fail(r->e, "string repetition too large");
        char *o = aalloc(r->a, s->len * (size_t)n + 1);
        for (long long i = 0; i < n; i++) memcpy(o + i * (long long)s->len, s->s, s->len);
        return mkstr(r, o, s->len * (size_t)n);
    }
    double fa = 0, fb = 0;
    long long ia = 0, ib = 0;
    int na = num_of(a, &fa, &ia), nb = num_of(b, &fb, &ib);
    if (!na || !nb)
        fail(r->e, "unsupported operand type(s) for %s: '%s' and '%s'", op, type_name(a), type_name(b));
    int ints = na == 1 && nb == 1;
    if (!strcmp(op, "+")) return ints ? mkint(r, ia + ib) : mkfloat(r, fa + fb);
    if (!strcmp(op, "-")) return ints ? mkint(r, ia - ib) : mkfloat(r, fa - fb);
    if (!strcmp(op, "*")) return ints ? mkint(r, ia * ib) : mkfloat(r, fa * fb);
    if (!strcmp(op, "/")) {
        if (fb == 0) fail(r->e, "division by zero");
        return mkfloat(r, fa / fb);
    }
    if (!strcmp(op, "//") || !strcmp(op, "%")) {
        if (fb == 0) fail(r->e, "integer division or modulo by zero");
        if (ints) {
            long long q = ia / ib, m = ia % ib;
            if (m != 0 && ((m < 0) != (ib < 0))) q--, m += ib;
            return op[0] == '%' ? mkint(r, m) : mkint(r, q);
        }
        double q = floor(fa / fb), m = fa - q * fb;
        return op[0] == '%' ? mkfloat(r, m) : mkfloat(r, q);
    }
    if (!strcmp(op, "**")) {
        if (ints && ib >= 0) {
            long long p = 1;
            for (long long i = 0; i < ib; i++) p *= ia;
            return mkint(r, p);
        }
        return mkfloat(r, pow(fa, fb));
    }
    fail(r->e, "unknown operator %s", op);
}

static value *eval(rctx *r, expr *x) {
    switch (x->t) {
    case E_LIT: return x->lit;
    case E_NAME: {
        value *v = lookup(r, x->name);
        if (v->t == V_UNDEF && (!strcmp(x->name, "raise_exception") || !strcmp(x->name, "range") ||
                                !strcmp(x->name, "namespace") || !strcmp(x->name, "dict"))) {
            value *f = mkval(r->a, V_FUNC);
            f->s = x->name;
            return f;
        }
        return v;
    }
    case E_ATTR: return get_attr(r, eval(r, x->a), x->name, 0);
    case E_ITEM: return get_item(r, eval(r, x->a), eval(r, x->b));
    case E_SLICE:
        return slice(r, eval(r, x->a), x->b ? eval(r, x->b) : NULL, x->c ? eval(r, x->c) : NULL,
                     x->args[0] ? eval(r, x->args[0]) : NULL);
    case E_CALL: {
        value *f = eval(r, x->a);
        if (f->t != V_FUNC) {
            need_defined(r, f);
            fail(r->e, "'%s' object is not callable", type_name(f));
        }
        return call_func(r, f, x);
    }
    case E_FILTER: return apply_filter(r, x->name, eval(r, x->a), x);
    case E_TEST: {
        int t = run_test(r, x->name, eval(r, x->a), x, 0);
        return mkbool(r, x->negate ? !t : t);
    }
    case E_BIN: return arith(r, x->name, eval(r, x->a), eval(r, x->b));
    case E_NOT: return mkbool(r, !truthy(eval(r, x->a)));
    case E_NEG: {
        value *v = eval(r, x->a);
        if (v->t == V_INT || v->t == V_BOOL) return mkint(r, -v->i);
        if (v->t == V_FLOAT) return mkfloat(r, -v->f);
        need_defined(r, v);
        fail(r->e, "bad operand type for unary -: '%s'", type_name(v));
    }
    case E_AND: {
        value *a = eval(r, x->a);
        return truthy(a) ? eval(r, x->b) : a;
    }
    case E_OR: {
        value *a = eval(r, x->a);
        return truthy(a) ? a : eval(r, x->b);
    }
    case E_COND:
        if (truthy(eval(r, x->a))) return eval(r, x->b);
        return x->c ? eval(r, x->c) : UNDEF_V(r, "the inline if-expression evaluated to false and no else section was defined");
    case E_LIST: {
        value *l = mklist(r);
        l->is_tuple = x->negate;
        for (int i = 0; i < x->n_args; i++) list_push(r, l, eval(r, x->args[i]));
        return l;
    }
    case E_DICT: {
        value *d = mkdict(r);
        for (int i = 0; i + 1 < x->n_args; i += 2) {
            value *k = eval(r, x->args[i]);
            if (k->t != V_STR) fail(r->e, "only string keys are supported in dict literals");
            dict_set(r, d, k->s, eval(r, x->args[i + 1]));
        }
        return d;
    }
    case E_CMP: {
        value *a = eval(r, x->args[0]);
        for (int i = 1; i < x->n_args; i++) {
            value *b = eval(r, x->args[i]);
            if (!compare(r, a, b, x->ops[i - 1])) return mkbool(r, 0);
            a = b;
        }
        return mkbool(r, 1);
    }
    }
    fail(r->e, "bad expression");
}

static void exec_body(rctx *r, body *b);

static void exec_stmt(rctx *r, stmt *s) {
    switch (s->t) {
    case S_TEXT: emit(r, s->text, s->len); break;
    case S_OUT: {
        value *v = eval(r, s->e);
        if (v->t == V_UNDEF) break;
        value *t = to_str(r, v);
        emit(r, t->s, t->len);
        break;
    }
    case S_IF:
        for (int i = 0; i < s->n_branches; i++)
            if (!s->conds[i] || truthy(eval(r, s->conds[i]))) {
                exec_body(r, &s->branches[i]);
                break;
            }
        break;
    case S_SET: {
        value *v = eval(r, s->e);
        if (s->var2) {
            value *ns = lookup(r, s->var);
            if (ns->t != V_DICT || !ns->is_ns) fail(r->e, "cannot assign attribute on non-namespace object");
            dict_set(r, ns, s->var2, v);
        } else
            scope_set(r, r->sc, s->var, v);
        break;
    }
    case S_FOR: {
        value *it = iterable(r, eval(r, s->e));
        /* with a filter, loop.* counts the filtered items (jinja2) */
        value *items = it;
        scope tmp = {.up = r->sc};
        if (s->filter) {
            items = mklist(r);
            r->sc = &tmp;
            for (int i = 0; i < it->l->n; i++) {
                tmp.n = 0;
                scope_set(r, &tmp, s->var, it->l->items[i]);
                if (truthy(eval(r, s->filter))) list_push(r, items, it->l->items[i]);
            }
            r->sc = tmp.up;
        }
        int n = items->l->n;
        if (n == 0) {
            exec_body(r, &s->else_b);
            break;
        }
        scope inner = {.up = r->sc};
        r->sc = &inner;
        for (int i = 0; i < n; i++) {
            inner.n = 0;
            value *item = items->l->items[i];
            if (s->var2) {
                if (item->t != V_LIST || item->l->n != 2) fail(r->e, "cannot unpack a loop item into two names");
                scope_set(r, &inner, s->var, item->l->items[0]);
                scope_set(r, &inner, s->var2, item->l->items[1]);
            } else
                scope_set(r, &inner, s->var, item);
            value *loop = mkdict(r);
            dict_set(r, loop, "index", mkint(r, i + 1));
            dict_set(r, loop, "index0", mkint(r, i));
            dict_set(r, loop, "revindex", mkint(r, n - i));
            dict_set(r, loop, "revindex0", mkint(r, n - i - 1));
            dict_set(r, loop, "first", mkbool(r, i == 0));
            dict_set(r, loop, "last", mkbool(r, i == n - 1));
            dict_set(r, loop, "length", mkint(r, n));
            dict_set(r, loop, "previtem", i > 0 ? items->l->items[i - 1] : UNDEF_V(r, "no previous item"));
            dict_set(r, loop, "nextitem", i < n - 1 ? items->l->items[i + 1] : UNDEF_V(r, "no next item"));
            scope_set(r, &inner, "loop", loop);
            exec_body(r, &s->b);
            if (r->brk) {
                r->brk = 0;
                break;
            }
            r->cont = 0;
        }
        r->sc = inner.up;
        break;
    }
    case S_BREAK: r->brk = 1; break;
    case S_CONTINUE: r->cont = 1; break;
    }
}

static void exec_body(rctx *r, body *b) {
    for (int i = 0; i < b->n && !r->brk && !r->cont; i++) exec_stmt(r, b->v[i]);
}

char *llava_chat_render(const llava_chat_template *t, const llava_chat_message *msgs, int n_msgs,
                        int add_generation_prompt, llava_err *err) {
    arena a = {0};
    ctx_err e = {.a = &a};
    rctx r = {.e = &e, .a = &a};
    scope globals = {0};
    r.sc = &globals;
    if (setjmp(e.jb)) {
        llava_errf(err, "chat template: %s", e.msg);
        free(r.out);
        arena_free(&a);
        return NULL;
    }
    value *ms = mklist(&r);
    for (int i = 0; i < n_msgs; i++) {
        value *m = mkdict(&r);
        dict_set(&r, m, "role", mkstr(&r, msgs[i].role, strlen(msgs[i].role)));
        if (msgs[i].content_str) {
            dict_set(&r, m, "content", mkstr(&r, msgs[i].content_str, strlen(msgs[i].content_str)));
        } else {
            value *parts = mklist(&r);
            for (int k = 0; k < msgs[i].n_parts; k++) {
                value *p = mkdict(&r);
                const llava_chat_part *pp = &msgs[i].parts[k];
                dict_set(&r, p, "type", mkstr(&r, pp->type == LLAVA_PART_IMAGE ? "image" : "text",
                                             pp->type == LLAVA_PART_IMAGE ? 5 : 4));
                if (pp->type == LLAVA_PART_TEXT) {
                    const char *tx = pp->text ? pp->text : "";
                    dict_set(&r, p, "text", mkstr(&r, tx, strlen(tx)));
                }
                list_push(&r, parts, p);
            }
            dict_set(&r, m, "content", parts);
        }
        list_push(&r, ms, m);
    }
    scope_set(&r, &globals, "messages", ms);
    scope_set(&r, &globals, "add_generation_prompt", mkbool(&r, add_generation_prompt));
    scope_set(&r, &globals, "tools", mkval(&a, V_NONE));
    scope_set(&r, &globals, "documents", mkval(&a, V_NONE));
    if (t->bos) scope_set(&r, &globals, "bos_token", mkstr(&r, t->bos, strlen(t->bos)));
    if (t->eos) scope_set(&r, &globals, "eos_token", mkstr(&r, t->eos, strlen(t->eos)));
    scope top = {.up = &globals};
    r.sc = &top;
    exec_body(&r, (body *)&t->root);
    char *out = r.out ? r.out : xcalloc(1, 1);
    arena_free(&a);
    return out;
}

/* ------------------------------------------------------------------ loading from a model dir */

static char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return xstrdup(v->valuestring);
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) return xstrdup(c->valuestring);
    }
    return NULL;
}

int llava_chat_template_load(llava_chat_template **out, const char *model_dir, llava_err *err) {
    *out = NULL;
    char *src = NULL, *bos = NULL, *eos = NULL, *from = NULL;
    cJSON *tc = NULL;
    char *p = llava_path_join(model_dir, "tokenizer_config.json");
    if (llava_file_exists(p)) {
        tc = llava_json_load(p, err);
        if (!tc) {
            free(p);
            return -1;
        }
        bos = token_text(cJSON_GetObjectItemCaseSensitive(tc, "bos_token"));
        eos = token_text(cJSON_GetObjectItemCaseSensitive(tc, "eos_token"));
    }
    free(p);
    int rc = -1;
    p = llava_path_join(model_dir, "chat_template.json");
    if (llava_file_exists(p)) {
        cJSON *j = llava_json_load(p, err);
        if (!j) goto done;
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
        if (cJSON_IsString(s)) src = xstrdup(s->valuestring);
        cJSON_Delete(j);
        if (!src) {
            llava_errf(err, "%s: no \"chat_template\" string in it; pass a pre-formatted prompt with --raw", p);
            goto done;
        }
        from = p;
        p = NULL;
    }
    if (!src) {
        free(p);
        p = llava_path_join(model_dir, "chat_template.jinja");
        if (llava_file_exists(p)) {
            src = llava_read_file(p, NULL, (size_t)1 << 24, err);
            if (!src) goto done;
            from = p;
            p = NULL;
        }
    }
    if (!src && tc) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
        if (cJSON_IsString(s)) src = xstrdup(s->valuestring);
        else if (cJSON_IsArray(s)) {
            const cJSON *it;
            cJSON_ArrayForEach(it, s) {
                const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
                const cJSON *tt = cJSON_GetObjectItemCaseSensitive(it, "template");
                if (cJSON_IsString(n) && cJSON_IsString(tt) && !strcmp(n->valuestring, "default")) src = xstrdup(tt->valuestring);
            }
        }
        if (src) from = llava_path_join(model_dir, "tokenizer_config.json");
    }
    if (!src) {
        llava_errf(err, "%s has no chat template (chat_template.json, chat_template.jinja or tokenizer_config.json); "
                        "pass a pre-formatted prompt with --raw", model_dir);
        goto done;
    }
    if (llava_chat_template_from_string(out, src, bos, eos, err)) {
        llava_err_prefix(err, "%s", from);
        goto done;
    }
    rc = 0;
done:
    free(p);
    free(from);
    free(src);
    free(bos);
    free(eos);
    cJSON_Delete(tc);
    return rc;
}

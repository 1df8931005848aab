/* test_batch.c — batch plumbing of `llava classify` without a model: inputs (directories and
 * .txt/.csv/.jsonl manifests, quoting, bad lines), results records, resume with a torn last line,
 * shard assignment (N shards cover every input exactly once), shard names, merge findings
 * (missing/duplicate/unknown ids, missing shard files, torn shards), the decode pool, progress. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/idset.h"
#include "batch/inputs.h"
#include "batch/merge.h"
#include "batch/output.h"
#include "batch/prefetch.h"
#include "batch/progress.h"
#include "batch/shard.h"
#include "test.h"
#include "util/mem.h"

static char T[256]; /* temp dir */

static const char *tp(const char *rel) {
    static char buf[8][1024];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", T, rel);
    return buf[k];
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static char *slurp(const char *path) {
    size_t n;
    llava_err e;
    char *s = llava_read_file(path, &n, (size_t)1 << 30, &e);
    return s ? s : xstrdup("");
}

static int has(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

/* Parses a one-argument input list; returns rc, inputs in *in. */
static int add1(llava_inputs *in, const char *arg, llava_err *e) {
    memset(e, 0, sizeof *e);
    return llava_inputs_add(in, arg, e);
}

static void test_idset(void) {
    llava_idset s = {0};
    char k[32];
    int ok = 1;
    for (int i = 0; i < 100000; i++) {
        snprintf(k, sizeof k, "img-%d", i);
        ok &= llava_idset_put(&s, k, i) == -1;
    }
    EXPECT(ok, "100000 distinct ids inserted");
    EXPECT(s.n == 100000, "size %zu", s.n);
    EXPECT(llava_idset_put(&s, "img-77", 5) == 77, "repeat returns the first value");
    EXPECT(llava_idset_get(&s, "img-99999") == 99999 && llava_idset_get(&s, "nope") == -1, "get");
    llava_idset_free(&s);
    EXPECT(llava_idset_get(&s, "x") == -1, "empty set");
    /* the shard contract: the hash is a fixed function of the bytes */
    EXPECT(llava_id_hash("") == llava_id_hash(""), "stable");
    EXPECT(llava_id_hash("a") != llava_id_hash("b"), "differs");
}

static void test_txt(void) {
    llava_inputs in = {0};
    llava_err e;
    mkdir(tp("m"), 0755);
    write_file(tp("m/list.txt"), "\xEF\xBB\xBF" "a.jpg\r\n\n  sub/b.png  \n/abs/c.webp\nlast.jpg");
    int rc = add1(&in, tp("m/list.txt"), &e);
    EXPECT(rc == 0, "txt manifest: %s", e.msg);
    EXPECT(in.n == 4, "txt entries %d", in.n);
    if (in.n == 4) {
        EXPECT(!strcmp(in.v[0].id, "a.jpg") && !strcmp(in.v[0].path, tp("m/a.jpg")), "BOM + CRLF: %s %s", in.v[0].id,
               in.v[0].path);
        EXPECT(!strcmp(in.v[1].id, "sub/b.png") && !strcmp(in.v[1].path, tp("m/sub/b.png")), "trimmed, relative: %s",
               in.v[1].path);
        EXPECT(!strcmp(in.v[2].path, "/abs/c.webp"), "absolute kept: %s", in.v[2].path);
        EXPECT(!strcmp(in.v[3].id, "last.jpg") && !in.v[3].label, "no final newline");
    }
    llava_inputs_free(&in);
    /* a manifest named relative to the cwd keeps relative paths */
    char cwd[1024];
    if (getcwd(cwd, sizeof cwd)) {
        if (chdir(T) == 0) {
            rc = add1(&in, "m/list.txt", &e);
            EXPECT(rc == 0 && in.n == 4 && !strcmp(in.v[0].path, "m/a.jpg"), "relative manifest path: %s",
                   in.n ? in.v[0].path : "");
            llava_inputs_free(&in);
            write_file("top.txt", "x.jpg\n");
            rc = add1(&in, "top.txt", &e);
            EXPECT(rc == 0 && in.n == 1 && !strcmp(in.v[0].path, "x.jpg"), "manifest in cwd");
            llava_inputs_free(&in);
        }
        EXPECT(chdir(cwd) == 0, "chdir back");
    }
    write_file(tp("m/nul.TXT"), "a.jpg\nb\0c.jpg\n");
    /* write_file stops at the NUL; write it by hand */
    int fd = open(tp("m/nul.TXT"), O_WRONLY | O_TRUNC);
    EXPECT(fd >= 0 && write(fd, "a.jpg\nb\0c.jpg\n", 14) == 14, "write nul file");
    if (fd >= 0) close(fd);
    rc = add1(&in, tp("m/nul.TXT"), &e);
    EXPECT(rc == -1 && has(e.msg, "nul.TXT:2"), "NUL byte names the line: %s", e.msg);
    llava_inputs_free(&in);
}

static void test_csv(void) {
    llava_inputs in = {0};
    llava_err e;
    write_file(tp("m/a.csv"),
               "a,img/a.jpg,Room\n"
               "\"b,1\",\"img/b \"\"q\"\".jpg\",Pool\r\n"
               "  c  ,  img/c.png  \n"
               "\n"
               "\"multi\nline\",img/d.jpg,\"Lobby, main\"\n"
               ",img/e.jpg,Room\n");
    int rc = add1(&in, tp("m/a.csv"), &e);
    EXPECT(rc == 0, "csv: %s", e.msg);
    EXPECT(in.n == 5, "csv rows %d", in.n);
    if (in.n == 5) {
        EXPECT(!strcmp(in.v[0].id, "a") && !strcmp(in.v[0].path, tp("m/img/a.jpg")) && !strcmp(in.v[0].label, "Room"),
               "row 1");
        EXPECT(!strcmp(in.v[1].id, "b,1") && !strcmp(in.v[1].path, tp("m/img/b \"q\".jpg")) &&
                   !strcmp(in.v[1].label, "Pool"), "quoted: [%s] [%s] [%s]", in.v[1].id, in.v[1].path, in.v[1].label);
        EXPECT(!strcmp(in.v[2].id, "c") && !strcmp(in.v[2].path, tp("m/img/c.png")) && !in.v[2].label,
               "trimmed, no label: [%s] [%s]", in.v[2].id, in.v[2].path);
        EXPECT(!strcmp(in.v[3].id, "multi\nline") && !strcmp(in.v[3].label, "Lobby, main"), "quoted newline");
        EXPECT(!strcmp(in.v[4].id, "img/e.jpg"), "empty id -> path as given: %s", in.v[4].id);
    }
    llava_inputs_free(&in);

    write_file(tp("m/h.csv"), "\xEF\xBB\xBFPath,Label,ID,extra\nx.jpg,Room,1,zz\ny.jpg,,2,zz\n");
    rc = add1(&in, tp("m/h.csv"), &e);
    EXPECT(rc == 0 && in.n == 2, "header in any order: %s", e.msg);
    if (in.n == 2) {
        EXPECT(!strcmp(in.v[0].id, "1") && !strcmp(in.v[0].path, tp("m/x.jpg")) && !strcmp(in.v[0].label, "Room"),
               "header mapped");
        EXPECT(!in.v[1].label, "empty label is none");
    }
    llava_inputs_free(&in);
    write_file(tp("m/h2.csv"), "id,image\nk,x.jpg\n");
    rc = add1(&in, tp("m/h2.csv"), &e);
    EXPECT(rc == 0 && in.n == 1 && !strcmp(in.v[0].id, "k"), "id,image header");
    llava_inputs_free(&in);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"a,x.jpg\nb,\"y.jpg\n", "bad.csv:2"},              /* never closed */
        {"a,x.jpg\n\"b\"c,y.jpg\n", "bad.csv:2"},           /* after the closing quote */
        {"a,x.jpg\nb,y\"z.jpg\n", "bad.csv:2"},             /* quote inside unquoted */
        {"a,x.jpg\n\"m\nn\",y.jpg\nonly\n", "bad.csv:4"},   /* one field, line counted past a quoted newline */
        {"a,x.jpg,L,extra\n", "bad.csv:1"},                 /* four fields without header */
        {"a,x.jpg\nb,\n", "bad.csv:2: empty path"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_file(tp("m/bad.csv"), bad[i].text);
        rc = add1(&in, tp("m/bad.csv"), &e);
        EXPECT(rc == -1 && has(e.msg, bad[i].want), "bad csv %zu: want '%s', got '%s'", i, bad[i].want, e.msg);
        llava_inputs_free(&in);
    }

    /* writer/reader round trip */
    llava_sbuf b = {0};
    const char *vals[] = {"plain", "a,b", "q\"q", "line\nbreak", " lead", "", "cr\r"};
    for (int i = 0; i < 7; i++) {
        if (i) llava_sbuf_put(&b, ",", 1);
        llava_csv_append_field(&b, vals[i]);
    }
    llava_sbuf_put(&b, "\n", 1);
    llava_csv_row row = {0};
    size_t pos = 0;
    int complete = 0, lines = 0;
    rc = llava_csv_next(&row, b.p, b.len, &pos, &complete, &lines, &e);
    int same = rc == 1 && row.n == 7;
    for (int i = 0; same && i < 7; i++) same = !strcmp(row.f[i], vals[i]);
    EXPECT(same && complete && pos == b.len, "csv round trip (%d fields)", row.n);
    pos = 0;
    rc = llava_csv_next(&row, b.p, b.len - 1, &pos, &complete, NULL, &e);
    EXPECT(rc == 1 && !complete, "record without newline is incomplete");
    llava_csv_row_free(&row);
    llava_sbuf_free(&b);
}

static void test_jsonl(void) {
    llava_inputs in = {0};
    llava_err e;
    write_file(tp("m/a.jsonl"), "{\"id\":\"x\",\"image\":\"p/x.jpg\",\"label\":\"Room\"}\n"
                                "\n"
                                "{\"id\":17,\"image\":\"/abs/y.png\"}\r\n"
                                "{\"image\":\"z.webp\",\"other\":[1,2]}\n"
                                "{\"path\":\"w.jpg\"}");
    int rc = add1(&in, tp("m/a.jsonl"), &e);
    EXPECT(rc == 0 && in.n == 4, "jsonl: %s (%d)", e.msg, in.n);
    if (in.n == 4) {
        EXPECT(!strcmp(in.v[0].id, "x") && !strcmp(in.v[0].path, tp("m/p/x.jpg")) && !strcmp(in.v[0].label, "Room"),
               "jsonl 1");
        EXPECT(!strcmp(in.v[1].id, "17") && !strcmp(in.v[1].path, "/abs/y.png"), "integer id: %s", in.v[1].id);
        EXPECT(!strcmp(in.v[2].id, "z.webp"), "id defaults to image: %s", in.v[2].id);
        EXPECT(!strcmp(in.v[3].id, "w.jpg"), "path key");
    }
    llava_inputs_free(&in);
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"{\"image\":\"a.jpg\"}\n{\"image\":\"b.jpg\"\n", "bad.jsonl:2"},
        {"{\"id\":\"a\"}\n", "bad.jsonl:1: missing"},
        {"{\"image\":\"\"}\n", "bad.jsonl:1: missing or empty"},
        {"{\"image\":5}\n", "bad.jsonl:1: \"image\" must be a string"},
        {"{\"image\":\"a.jpg\",\"id\":1.5}\n", "bad.jsonl:1: \"id\""},
        {"[1,2]\n", "bad.jsonl:1: expected a JSON object"},
        {"{\"image\":\"a.jpg\"} {\"image\":\"b.jpg\"}\n", "bad.jsonl:1: text after"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_file(tp("m/bad.jsonl"), bad[i].text);
        rc = add1(&in, tp("m/bad.jsonl"), &e);
        EXPECT(rc == -1 && has(e.msg, bad[i].want), "bad jsonl %zu: want '%s', got '%s'", i, bad[i].want, e.msg);
        llava_inputs_free(&in);
    }
}

static void test_dirs(void) {
    llava_inputs in = {0};
    llava_err e;
    mkdir(tp("d"), 0755);
    mkdir(tp("d/b"), 0755);
    mkdir(tp("d/a"), 0755);
    mkdir(tp("d/.hidden"), 0755);
    write_file(tp("d/z.JPG"), "x");
    write_file(tp("d/a/2.png"), "x");
    write_file(tp("d/a/10.jpeg"), "x");
    write_file(tp("d/b/x.WebP"), "x");
    write_file(tp("d/b/notes.txt"), "x"); /* not a manifest inside a directory */
    write_file(tp("d/b/x.gif"), "x");
    write_file(tp("d/._z.jpg"), "x");
    write_file(tp("d/.hidden/h.jpg"), "x");
    EXPECT(symlink(tp("d/z.JPG"), tp("d/b/link.jpg")) == 0, "symlink");
    EXPECT(symlink(tp("d/nowhere.jpg"), tp("d/b/dangling.jpg")) == 0, "dangling symlink");
    EXPECT(symlink(tp("d"), tp("d/b/loop")) == 0, "dir symlink");
    char arg[1024];
    snprintf(arg, sizeof arg, "%s/", tp("d")); /* a trailing slash does not double */
    int rc = add1(&in, arg, &e);
    EXPECT(rc == 0, "dir: %s", e.msg);
    const char *want[] = {"d/a/10.jpeg", "d/a/2.png", "d/b/dangling.jpg", "d/b/link.jpg", "d/b/x.WebP", "d/z.JPG"};
    EXPECT(in.n == 6, "dir entries %d", in.n);
    for (int i = 0; i < in.n && i < 6; i++)
        EXPECT(!strcmp(in.v[i].id, tp(want[i])) && !strcmp(in.v[i].path, in.v[i].id), "dir %d: %s", i, in.v[i].id);
    /* the same directory again: every id repeats */
    rc = add1(&in, tp("d"), &e);
    EXPECT(rc == 0 && in.n == 12, "second listing");
    rc = llava_inputs_check_unique(&in, &e);
    EXPECT(rc == -1 && has(e.msg, "6 duplicate input ids"), "duplicates: %s", e.msg);
    llava_inputs_free(&in);

    rc = add1(&in, tp("d/z.JPG"), &e);
    EXPECT(rc == 0 && in.n == 1 && !strcmp(in.v[0].id, tp("d/z.JPG")), "single file, id = path as given");
    rc = add1(&in, tp("d/b/x.gif"), &e);
    EXPECT(rc == 0 && in.n == 2, "a named file of any extension is an input");
    EXPECT(llava_inputs_check_unique(&in, &e) == 0, "unique");
    rc = add1(&in, tp("d/missing.jpg"), &e);
    EXPECT(rc == -1 && has(e.msg, "missing.jpg"), "missing argument: %s", e.msg);
    llava_inputs_free(&in);
    EXPECT(llava_is_image_name("A.JpEg") && !llava_is_image_name("a.gif") && !llava_is_image_name("jpg"), "ext");
}

/* ---- records, output, resume ---- */

static int count_cb(void *ctx, const llava_record_view *r, llava_err *err) {
    (*(int *)ctx)++;
    return 0;
}

static void test_records(void) {
    const char *labels[] = {"Room", "Bathroom", "Pool", "Lobby"};
    double probs[] = {0.1, 0.5, 0.3, 0.1};
    llava_input in = {"id \"1\"", "dir/a,b.jpg", "Pool"};
    llava_sbuf b = {0};
    llava_record_result(&b, LLAVA_FMT_JSONL, &in, labels, probs, 4, 3, 0.6);
    llava_err e;
    cJSON *o = llava_jsonl_parse(b.p, b.len - 1, "rec", &e);
    EXPECT(o != NULL && b.p[b.len - 1] == '\n', "record is one JSON line: %s", b.p);
    if (o) {
        const cJSON *tk = cJSON_GetObjectItem(o, "top_k");
        EXPECT(!strcmp(cJSON_GetObjectItem(o, "id")->valuestring, "id \"1\""), "id");
        EXPECT(!strcmp(cJSON_GetObjectItem(o, "label")->valuestring, "Bathroom"), "argmax label");
        EXPECT(fabs(cJSON_GetObjectItem(o, "probability")->valuedouble - 0.5) < 1e-12, "probability");
        EXPECT(cJSON_IsTrue(cJSON_GetObjectItem(o, "low_confidence")), "0.5 < 0.6 is low confidence");
        EXPECT(!strcmp(cJSON_GetObjectItem(o, "truth")->valuestring, "Pool"), "truth");
        EXPECT(cJSON_GetArraySize(tk) == 3, "top 3");
        /* ties keep label order: Room (0) before Lobby (3) */
        EXPECT(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(tk, 1), "label")->valuestring, "Pool") &&
                   !strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(tk, 2), "label")->valuestring, "Room"),
               "top_k order");
        cJSON_Delete(o);
    }
    llava_sbuf_clear(&b);
    llava_record_result(&b, LLAVA_FMT_JSONL, &in, labels, probs, 4, 99, 0.5);
    o = llava_jsonl_parse(b.p, b.len - 1, "rec", &e);
    EXPECT(o && cJSON_GetArraySize(cJSON_GetObjectItem(o, "top_k")) == 4 &&
               cJSON_IsFalse(cJSON_GetObjectItem(o, "low_confidence")), "top-k all, 0.5 >= 0.5 not low");
    cJSON_Delete(o);
    llava_sbuf_clear(&b);
    llava_input in2 = {"e1", "x\ny.jpg", NULL};
    llava_record_error(&b, LLAVA_FMT_JSONL, &in2, "x\ny.jpg: not a JPEG, PNG or WebP file");
    o = llava_jsonl_parse(b.p, b.len - 1, "rec", &e);
    EXPECT(o && cJSON_GetObjectItem(o, "error") && !cJSON_GetObjectItem(o, "label") && !cJSON_GetObjectItem(o, "truth"),
           "error record: %s", b.p);
    cJSON_Delete(o);
    /* CSV: both kinds parse back through the results reader */
    llava_sbuf_clear(&b);
    llava_sbuf_puts(&b, LLAVA_CSV_HEADER);
    llava_record_result(&b, LLAVA_FMT_CSV, &in, labels, probs, 4, 2, 0.2);
    llava_record_error(&b, LLAVA_FMT_CSV, &in2, "bad, \"very\" bad");
    size_t good = 0;
    int n = 0;
    int rc = llava_results_parse(b.p, b.len, LLAVA_FMT_CSV, "r.csv", &good, count_cb, &n, &e);
    EXPECT(rc == 0 && n == 2 && good == b.len, "csv records read back: %s (%d)", e.msg, n);
    llava_csv_row row = {0};
    size_t pos = strlen(LLAVA_CSV_HEADER);
    int complete;
    llava_csv_next(&row, b.p, b.len, &pos, &complete, NULL, &e);
    EXPECT(row.n == 8 && !strcmp(row.f[2], "Bathroom") && !strcmp(row.f[4], "false") && !strcmp(row.f[6], "Pool") &&
               has(row.f[5], "\"label\":\"Pool\""), "csv columns: %s", b.p);
    llava_csv_next(&row, b.p, b.len, &pos, &complete, NULL, &e);
    EXPECT(row.n == 8 && !strcmp(row.f[1], "x\ny.jpg") && !strcmp(row.f[7], "bad, \"very\" bad") && !row.f[2][0],
           "csv error row");
    llava_csv_row_free(&row);
    llava_sbuf_free(&b);
}

static void write_records(llava_output *o, int from, int to, llava_out_format fmt) {
    const char *labels[] = {"A", "B"};
    double probs[] = {0.25, 0.75};
    llava_sbuf b = {0};
    llava_err e;
    for (int i = from; i < to; i++) {
        char id[32];
        snprintf(id, sizeof id, "img%03d", i);
        llava_input in = {id, id, NULL};
        llava_sbuf_clear(&b);
        if (i % 7 == 3) llava_record_error(&b, fmt, &in, "corrupt");
        else llava_record_result(&b, fmt, &in, labels, probs, 2, 2, 0.5);
        EXPECT(llava_output_write(o, b.p, b.len, &e) == 0, "write: %s", e.msg);
    }
    llava_sbuf_free(&b);
}

static void test_resume(llava_out_format fmt) {
    const char *path = tp(fmt == LLAVA_FMT_CSV ? "res.csv" : "res.jsonl");
    unlink(path);
    llava_output o;
    llava_idset done = {0};
    llava_err e;
    int rc = llava_output_open(&o, path, fmt, LLAVA_OPEN_DEFAULT, &done, NULL, NULL, &e);
    EXPECT(rc == 0 && done.n == 0 && o.n_existing == 0, "fresh output: %s", e.msg);
    o.sync_interval = 0; /* exercise fdatasync per record */
    write_records(&o, 0, 10, fmt);
    /* a second writer is refused while the first holds the lock */
    llava_output o2;
    rc = llava_output_open(&o2, path, fmt, LLAVA_OPEN_RESUME, NULL, NULL, NULL, &e);
    EXPECT(rc == -1 && has(e.msg, "another process"), "locked: %s", e.msg);
    EXPECT(llava_output_close(&o, &e) == 0, "close");
    char *full = slurp(path);
    size_t full_len = strlen(full);

    /* torn last line: the first half of a record */
    FILE *f = fopen(path, "ab");
    fputs(fmt == LLAVA_FMT_CSV ? "img010,\"img0" : "{\"id\":\"img010\",\"ima", f);
    fclose(f);
    rc = llava_output_open(&o, path, fmt, LLAVA_OPEN_RESUME, &done, NULL, NULL, &e);
    EXPECT(rc == 0 && done.n == 10 && o.n_existing == 10 && o.torn_bytes > 0, "torn line dropped: %s (%zu done)",
           e.msg, done.n);
    EXPECT(llava_idset_get(&done, "img003") >= 0 && llava_idset_get(&done, "img010") < 0, "error records count as done");
    struct stat st;
    stat(path, &st);
    EXPECT((size_t)st.st_size == full_len, "file cut back to the last whole record (%lld vs %zu)",
           (long long)st.st_size, full_len);
    write_records(&o, 10, 20, fmt);
    llava_output_close(&o, &e);
    llava_idset_free(&done);
    rc = llava_output_open(&o, path, fmt, LLAVA_OPEN_DEFAULT, &done, NULL, NULL, &e);
    EXPECT(rc == 0 && done.n == 20 && o.torn_bytes == 0, "resumed file has 20 records");
    llava_output_close(&o, &e);
    llava_idset_free(&done);
    char *after = slurp(path);
    EXPECT(strncmp(after, full, full_len) == 0, "earlier records untouched");
    free(after);

    /* a complete line that is not a record: refuse, touch nothing */
    f = fopen(path, "ab");
    fputs(fmt == LLAVA_FMT_CSV ? "just,two\n" : "hello\n", f);
    fputs(fmt == LLAVA_FMT_CSV ? "x,y,z\n" : "{\"id\":\"q\",\"label\":\"A\"}\n", f);
    fclose(f);
    stat(path, &st);
    off_t before = st.st_size;
    rc = llava_output_open(&o, path, fmt, LLAVA_OPEN_DEFAULT, &done, NULL, NULL, &e);
    EXPECT(rc == -1 && has(e.msg, "cannot resume"), "garbage line refused: %s", e.msg);
    if (rc == 0) llava_output_close(&o, &e);
    stat(path, &st);
    EXPECT(st.st_size == before, "nothing truncated");
    llava_idset_free(&done);
    /* overwrite starts over */
    rc = llava_output_open(&o, path, fmt, LLAVA_OPEN_OVERWRITE, &done, NULL, NULL, &e);
    EXPECT(rc == 0 && done.n == 0, "overwrite");
    llava_output_close(&o, &e);
    stat(path, &st);
    EXPECT(st.st_size == (fmt == LLAVA_FMT_CSV ? (off_t)strlen(LLAVA_CSV_HEADER) : 0), "overwritten file is empty");
    /* the same id twice in an output is a finding, not silently merged */
    unlink(path);
    rc = llava_output_open(&o, path, fmt, LLAVA_OPEN_DEFAULT, NULL, NULL, NULL, &e);
    write_records(&o, 0, 3, fmt);
    write_records(&o, 2, 3, fmt);
    llava_output_close(&o, &e);
    rc = llava_output_open(&o, path, fmt, LLAVA_OPEN_DEFAULT, &done, NULL, NULL, &e);
    EXPECT(rc == -1 && has(e.msg, "recorded twice"), "duplicate in output: %s", e.msg);
    llava_idset_free(&done);
    /* unwritable */
    rc = llava_output_open(&o, tp("no/such/dir/out.jsonl"), fmt, LLAVA_OPEN_DEFAULT, NULL, NULL, NULL, &e);
    EXPECT(rc == -1 && has(e.msg, "cannot open the output"), "unwritable: %s", e.msg);
    free(full);
}

/* ---- shards ---- */

static const char *const *fake_env;
static const char *fake_getenv(const char *k) {
    for (int i = 0; fake_env && fake_env[i]; i += 2)
        if (!strcmp(fake_env[i], k)) return fake_env[i + 1];
    return NULL;
}

static int resolve(llava_shard *s, const char *spec, int shards, const char *const *env, llava_err *e) {
    fake_env = env;
    memset(e, 0, sizeof *e);
    return llava_shard_resolve(s, spec, shards, fake_getenv, e);
}

static void test_shards(void) {
    llava_shard s;
    llava_err e;
    EXPECT(resolve(&s, "3/16", 0, NULL, &e) == 0 && s.index == 3 && s.count == 16, "--shard 3/16");
    EXPECT(resolve(&s, "16/16", 0, NULL, &e) == -1, "index out of range");
    EXPECT(resolve(&s, "1/0", 0, NULL, &e) == -1 && resolve(&s, "a/2", 0, NULL, &e) == -1 &&
               resolve(&s, "1", 0, NULL, &e) == -1 && resolve(&s, "-1/2", 0, NULL, &e) == -1 &&
               resolve(&s, "1/2x", 0, NULL, &e) == -1, "malformed --shard");
    EXPECT(resolve(&s, "1/4", 3, NULL, &e) == -1, "--shard and --shards disagree");
    EXPECT(resolve(&s, NULL, 0, NULL, &e) == 0 && s.count == 1 && s.index == 0, "no shard");
    EXPECT(resolve(&s, NULL, 4, NULL, &e) == -1 && has(e.msg, "no shard index"), "--shards alone: %s", e.msg);
    const char *slurm[] = {"SLURM_ARRAY_TASK_ID", "5", "SLURM_ARRAY_TASK_COUNT", "8", NULL};
    EXPECT(resolve(&s, NULL, 0, slurm, &e) == 0 && s.index == 5 && s.count == 8 &&
               !strcmp(s.source, "SLURM_ARRAY_TASK_ID"), "slurm");
    EXPECT(resolve(&s, "0/1", 0, slurm, &e) == 0 && s.count == 1, "--shard overrides the environment");
    const char *slurm1[] = {"SLURM_ARRAY_TASK_ID", "16", "SLURM_ARRAY_TASK_COUNT", "16", "SLURM_ARRAY_TASK_MIN", "1",
                            NULL};
    EXPECT(resolve(&s, NULL, 0, slurm1, &e) == 0 && s.index == 15, "slurm --array=1-16");
    const char *slurm_step[] = {"SLURM_ARRAY_TASK_ID", "6", "SLURM_ARRAY_TASK_COUNT", "4", "SLURM_ARRAY_TASK_MIN", "0",
                                "SLURM_ARRAY_TASK_STEP", "2", NULL};
    EXPECT(resolve(&s, NULL, 0, slurm_step, &e) == 0 && s.index == 3, "slurm --array=0-6:2");
    const char *slurm_nocount[] = {"SLURM_ARRAY_TASK_ID", "2", NULL};
    EXPECT(resolve(&s, NULL, 0, slurm_nocount, &e) == -1 && has(e.msg, "--shards"), "slurm without count: %s", e.msg);
    EXPECT(resolve(&s, NULL, 4, slurm_nocount, &e) == 0 && s.index == 2 && s.count == 4, "slurm + --shards");
    const char *slurm_bad[] = {"SLURM_ARRAY_TASK_ID", "9", "SLURM_ARRAY_TASK_COUNT", "4", NULL};
    EXPECT(resolve(&s, NULL, 0, slurm_bad, &e) == -1, "slurm id beyond the count (sparse array)");
    /* re-running failed tasks: sbatch --array=3,7 of a 16-shard job */
    const char *slurm_rerun[] = {"SLURM_ARRAY_TASK_ID", "7", "SLURM_ARRAY_TASK_COUNT", "2", "SLURM_ARRAY_TASK_MIN", "3",
                                 NULL};
    EXPECT(resolve(&s, NULL, 16, slurm_rerun, &e) == 0 && s.index == 7 && s.count == 16, "--shards: task id is the index");
    EXPECT(resolve(&s, NULL, 0, slurm_rerun, &e) == -1 && has(e.msg, "--shards"), "sparse without --shards: %s", e.msg);
    EXPECT(resolve(&s, NULL, 7, slurm_rerun, &e) == -1, "task id >= --shards");
    const char *k8s[] = {"JOB_COMPLETION_INDEX", "2", NULL};
    EXPECT(resolve(&s, NULL, 3, k8s, &e) == 0 && s.index == 2 && s.count == 3, "k8s");
    EXPECT(resolve(&s, NULL, 0, k8s, &e) == -1 && has(e.msg, "--shards"), "k8s needs --shards");
    EXPECT(resolve(&s, NULL, 2, k8s, &e) == -1, "k8s index >= shards");
    const char *aws[] = {"AWS_BATCH_JOB_ARRAY_INDEX", "0", NULL};
    EXPECT(resolve(&s, NULL, 10, aws, &e) == 0 && s.index == 0 && s.count == 10, "aws");
    const char *awsbad[] = {"AWS_BATCH_JOB_ARRAY_INDEX", "x1", NULL};
    EXPECT(resolve(&s, NULL, 10, awsbad, &e) == -1, "aws malformed");

    /* coverage: every id in exactly one shard, for several N */
    enum { NIDS = 2000 };
    static const int Ns[] = {1, 2, 3, 5, 7, 16, 64};
    for (size_t k = 0; k < sizeof Ns / sizeof *Ns; k++) {
        int N = Ns[k], once = 1, minsz = NIDS, maxsz = 0;
        int *sz = xcalloc((size_t)N, sizeof *sz);
        for (int i = 0; i < NIDS; i++) {
            char id[64];
            snprintf(id, sizeof id, "photos/%05d.jpg", i);
            int owners = 0;
            for (int j = 0; j < N; j++) {
                llava_shard sh = {j, N, ""};
                if (llava_shard_owns(&sh, id)) {
                    owners++;
                    sz[j]++;
                }
            }
            once &= owners == 1;
        }
        for (int j = 0; j < N; j++) {
            if (sz[j] < minsz) minsz = sz[j];
            if (sz[j] > maxsz) maxsz = sz[j];
        }
        double mean = (double)NIDS / N;
        EXPECT(once, "N=%d: every id in exactly one shard", N);
        /* binomial spread: within 5 sigma of the mean */
        double sig = sqrt(mean * (1 - 1.0 / N));
        EXPECT(minsz >= mean - 5 * sig - 1 && maxsz <= mean + 5 * sig + 1, "N=%d: sizes %d..%d around %.0f", N, minsz,
               maxsz, mean);
        free(sz);
    }

    /* names */
    static const struct {
        const char *out;
        int i, n;
        const char *want;
    } names[] = {
        {"results.jsonl", 3, 16, "results.shard-0003-of-0016.jsonl"},
        {"out/r.csv", 0, 2, "out/r.shard-0000-of-0002.csv"},
        {"a.b/results", 1, 3, "a.b/results.shard-0001-of-0003"},
        {"x.tar.gz", 12345, 20000, "x.tar.shard-12345-of-20000.gz"},
        {".hidden", 0, 2, ".hidden.shard-0000-of-0002"},
        {"results.jsonl", 0, 1, "results.jsonl"},
    };
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        char *p = llava_shard_path(names[k].out, names[k].i, names[k].n);
        EXPECT(!strcmp(p, names[k].want), "shard name %s", p);
        if (names[k].n > 1) {
            const char *base = strrchr(names[k].out, '/') ? strrchr(names[k].out, '/') + 1 : names[k].out;
            const char *name = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
            int i = -1, n = -1;
            EXPECT(llava_shard_match(base, name, &i, &n) && i == names[k].i && n == names[k].n, "match %s", name);
        }
        free(p);
    }
    int i, n;
    EXPECT(!llava_shard_match("results.jsonl", "results.jsonl", &i, &n) &&
               !llava_shard_match("results.jsonl", "results.shard-3-of-16.jsonl", &i, &n) &&
               !llava_shard_match("results.jsonl", "results.shard-0016-of-0016.jsonl", &i, &n) &&
               !llava_shard_match("results.jsonl", "results.shard-0001-of-0002.jsonl.merge-tmp.5", &i, &n) &&
               !llava_shard_match("results.jsonl", "other.shard-0001-of-0002.jsonl", &i, &n),
           "non-shard names");
}

/* ---- merge ---- */

static void make_shards(const char *out, int N, int nids, llava_inputs *inputs) {
    llava_output o[16];
    llava_err e;
    for (int j = 0; j < N; j++) {
        char *p = llava_shard_path(out, j, N);
        unlink(p);
        EXPECT(llava_output_open(&o[j], p, LLAVA_FMT_JSONL, LLAVA_OPEN_DEFAULT, NULL, NULL, NULL, &e) == 0, "shard %s",
               e.msg);
        free(p);
    }
    const char *labels[] = {"A", "B"};
    double probs[] = {0.4, 0.6};
    llava_sbuf b = {0};
    for (int i = 0; i < nids; i++) {
        char id[32];
        snprintf(id, sizeof id, "m%04d", i);
        if (inputs) llava_inputs_push(inputs, id, id, NULL);
        for (int j = 0; j < N; j++) {
            llava_shard sh = {j, N, ""};
            if (!llava_shard_owns(&sh, id)) continue;
            llava_input in = {id, id, NULL};
            llava_sbuf_clear(&b);
            llava_record_result(&b, LLAVA_FMT_JSONL, &in, labels, probs, 2, 1, 0.5);
            llava_output_write(&o[j], b.p, b.len, &e);
        }
    }
    for (int j = 0; j < N; j++) llava_output_close(&o[j], &e);
    llava_sbuf_free(&b);
}

static void append(const char *path, const char *text) {
    FILE *f = fopen(path, "ab");
    fputs(text, f);
    fclose(f);
}

static void test_merge(void) {
    mkdir(tp("mg"), 0755);
    const char *out = tp("mg/results.jsonl");
    llava_inputs in = {0};
    llava_merge_report r;
    llava_err e;
    FILE *log = fopen("/dev/null", "w");
    make_shards(out, 3, 300, &in);
    int rc = llava_merge(out, LLAVA_FMT_JSONL, 0, &in, 0, log, &r, &e);
    EXPECT(rc == 0 && r.shards == 3 && r.shard_files == 3 && r.records == 300 && !llava_merge_incomplete(&r),
           "clean merge: %s (%lld records)", e.msg, (long long)r.records);
    llava_output o;
    llava_idset done = {0};
    rc = llava_output_open(&o, out, LLAVA_FMT_JSONL, LLAVA_OPEN_RESUME, &done, NULL, NULL, &e);
    EXPECT(rc == 0 && done.n == 300, "merged file holds every id once (%zu)", done.n);
    llava_output_close(&o, &e);
    llava_idset_free(&done);
    rc = llava_merge(out, LLAVA_FMT_JSONL, 0, &in, 0, log, &r, &e);
    EXPECT(rc == -1 && has(e.msg, "--overwrite"), "existing output needs --overwrite: %s", e.msg);

    /* a duplicate (same id in two shards), a torn tail, an unknown id */
    char *s1 = llava_shard_path(out, 1, 3), *s2 = llava_shard_path(out, 2, 3), *s0 = llava_shard_path(out, 0, 3);
    append(s2, "{\"id\":\"m0000\",\"image\":\"m0000\",\"label\":\"A\",\"probability\":1}\n");
    append(s2, "{\"id\":\"stranger\",\"image\":\"s\",\"error\":\"x\"}\n");
    append(s1, "{\"id\":\"m9");
    rc = llava_merge(out, LLAVA_FMT_JSONL, 0, &in, 1, log, &r, &e);
    EXPECT(rc == 0 && r.duplicates == 1 && r.unknown == 1 && r.torn_files == 1 && r.missing == 0 &&
               r.records == 301 && r.errors == 1 && llava_merge_incomplete(&r),
           "findings: dup %lld unknown %lld torn %d missing %lld records %lld", (long long)r.duplicates,
           (long long)r.unknown, r.torn_files, (long long)r.missing, (long long)r.records);
    /* without the inputs only what the files show */
    rc = llava_merge(out, LLAVA_FMT_JSONL, 0, NULL, 1, log, &r, &e);
    EXPECT(rc == 0 && r.unknown == 0 && r.missing == 0 && r.duplicates == 1, "no inputs given");
    /* a missing shard file: its inputs are missing */
    unlink(s0);
    rc = llava_merge(out, LLAVA_FMT_JSONL, 0, &in, 1, log, &r, &e);
    EXPECT(rc == 0 && r.missing_shards == 1 && r.missing > 50 && r.missing < 150, "shard 0 missing: %lld inputs",
           (long long)r.missing);
    /* stale files of another N */
    make_shards(out, 2, 10, NULL);
    rc = llava_merge(out, LLAVA_FMT_JSONL, 0, &in, 1, log, &r, &e);
    EXPECT(rc == -1 && has(e.msg, "different shard counts"), "mixed N: %s", e.msg);
    rc = llava_merge(out, LLAVA_FMT_JSONL, 2, NULL, 1, log, &r, &e);
    EXPECT(rc == 0 && r.records == 10 && r.shards == 2, "--shards picks one N");
    /* malformed shard */
    append(s2, "not json\n");
    rc = llava_merge(out, LLAVA_FMT_JSONL, 3, &in, 1, log, &r, &e);
    EXPECT(rc == -1 && has(e.msg, "not a results record"), "malformed shard: %s", e.msg);
    rc = llava_merge(tp("mg/none.jsonl"), LLAVA_FMT_JSONL, 0, NULL, 1, log, &r, &e);
    EXPECT(rc == -1 && has(e.msg, "no shard files none.shard-*-of-*.jsonl"), "no shards: %s", e.msg);
    free(s0);
    free(s1);
    free(s2);
    llava_inputs_free(&in);
    fclose(log);
}

/* ---- decode pool ---- */

static void test_prefetch(void) {
    llava_inputs in = {0};
    const char *files[] = {"tests/fixtures/ref/images/small.png", "tests/fixtures/images/bad/truncated.jpg",
                           "tests/fixtures/ref/images/small.jpg", "tests/fixtures/images/bad/not_an_image.txt",
                           "tests/fixtures/images/bad/huge_ihdr.png", "/nonexistent/x.jpg"};
    for (int r = 0; r < 5; r++)
        for (int i = 0; i < 6; i++) {
            char id[64];
            snprintf(id, sizeof id, "%d-%d", r, i);
            llava_inputs_push(&in, id, files[i], NULL);
        }
    int *todo = xmalloc((size_t)in.n * sizeof *todo);
    for (int i = 0; i < in.n; i++) todo[i] = in.n - 1 - i;
    llava_preproc_params pp;
    llava_preproc_params_default(&pp);
    for (int threads = 1; threads <= 3; threads += 2) {
        llava_prefetch *p;
        llava_prefetch_params prm = {&in, todo, in.n, &pp, LLAVA_DEFAULT_MAX_PIXELS, threads, 2};
        llava_err e;
        EXPECT(llava_prefetch_start(&p, &prm, &e) == 0, "start: %s", e.msg);
        int *seen = xcalloc((size_t)in.n, sizeof *seen), got = 0, ok = 1, r;
        llava_prefetch_item it;
        while ((r = llava_prefetch_next(p, &it, 5.0)) != -1) {
            if (r == 0) {
                ok = 0;
                break;
            }
            seen[it.input]++;
            got++;
            int good = it.input % 6 == 0 || it.input % 6 == 2;
            if (good) ok &= !it.error[0] && it.pixels && it.n_tiles == 3 && it.H > 0 && it.W > 0;
            else ok &= it.error[0] && !it.pixels;
            if (!ok) printf("item %d: %s\n", it.input, it.error);
            llava_prefetch_item_free(&it);
        }
        int once = 1;
        for (int i = 0; i < in.n; i++) once &= seen[i] == 1;
        EXPECT(ok && got == in.n && once, "threads=%d: %d of %d items, each once, errors where expected", threads, got,
               in.n);
        llava_prefetch_stop(p);
        free(seen);
    }
    /* stop while work is pending frees everything (ASan checks) */
    llava_prefetch *p;
    llava_prefetch_params prm = {&in, todo, in.n, &pp, LLAVA_DEFAULT_MAX_PIXELS, 2, 3};
    llava_err e;
    EXPECT(llava_prefetch_start(&p, &prm, &e) == 0, "start");
    llava_prefetch_item it;
    if (llava_prefetch_next(p, &it, 5.0) == 1) llava_prefetch_item_free(&it);
    llava_prefetch_stop(p);
    /* an empty todo list ends at once */
    prm.n_todo = 0;
    EXPECT(llava_prefetch_start(&p, &prm, &e) == 0 && llava_prefetch_next(p, &it, 1.0) == -1, "empty");
    llava_prefetch_stop(p);
    free(todo);
    llava_inputs_free(&in);
}

static void test_progress(void) {
    char b[32];
    llava_format_duration(b, sizeof b, 12.34);
    EXPECT(!strcmp(b, "12.3s"), "%s", b);
    llava_format_duration(b, sizeof b, 251);
    EXPECT(!strcmp(b, "4m11s"), "%s", b);
    llava_format_duration(b, sizeof b, 3723);
    EXPECT(!strcmp(b, "1h02m03s"), "%s", b);
    FILE *f = tmpfile();
    llava_progress p;
    llava_progress_init(&p, f, 0, 100, 40, llava_now() - 3600, 2.5);
    p.interval = 0;
    llava_progress_start(&p);
    for (int i = 0; i < 60; i++) llava_progress_add(&p, i % 10 == 0);
    llava_progress_summary(&p, 0);
    rewind(f);
    char text[4096] = {0};
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    EXPECT(has(text, "llava: 100/100 (100%)"), "log line: %.200s", text);
    EXPECT(has(text, "54 images classified, 6 errors, 40 already done"), "summary: %s", text);
    /* one hour at 2.5/h for 60 images = 41.67 per 1000 */
    EXPECT(has(text, "cost 41.6"), "cost per 1000: %s", text);
}

int main(void) {
    snprintf(T, sizeof T, "/tmp/llava-test-batch.XXXXXX");
    if (!mkdtemp(T)) {
        perror("mkdtemp");
        return 1;
    }
    test_idset();
    test_txt();
    test_csv();
    test_jsonl();
    test_dirs();
    test_records();
    test_resume(LLAVA_FMT_JSONL);
    test_resume(LLAVA_FMT_CSV);
    test_shards();
    test_merge();
    test_prefetch();
    test_progress();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", T);
    if (system(cmd) != 0) printf("INFO could not remove %s\n", T);
    TEST_END();
}

/* cmd_tokenize.c — `llava tokenize`: ids and pieces of a text, as the model's tokenizer gives them. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "formats/tokenizer.h"
#include "util/mem.h"

int cmd_tokenize(int argc, char **argv) {
    const char *model_dir = NULL, *text = NULL;
    int special = 1, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if ((r = arg_match(argc, argv, &i, "-m|--model", 1, &v)) != 0) {
            if (r < 0) {
                fprintf(stderr, "llava tokenize: -m needs a value\n");
                return 2;
            }
            model_dir = v;
        } else if (arg_match(argc, argv, &i, "--no-special", 0, NULL)) special = 0;
        else if (arg_match(argc, argv, &i, "--json", 0, NULL)) json = 1;
        else if (arg_match(argc, argv, &i, "-h|--help", 0, NULL)) {
            printf("usage: llava tokenize -m MODEL_DIR [--no-special] [--json] TEXT   (TEXT \"-\" reads stdin)\n");
            return 0;
        } else if (!text && (argv[i][0] != '-' || !strcmp(argv[i], "-"))) text = argv[i];
        else {
            fprintf(stderr, "llava tokenize: unexpected argument %s\n", argv[i]);
            return 2;
        }
    }
    if (!model_dir || !text) {
        fprintf(stderr, "usage: llava tokenize -m MODEL_DIR [--no-special] [--json] TEXT\n");
        return 2;
    }
    llava_err err = {{0}};
    char *buf = NULL;
    size_t len = strlen(text);
    if (!strcmp(text, "-")) {
        buf = llava_read_file("/dev/stdin", &len, (size_t)1 << 30, &err);
        if (!buf) { /* stdin may be a pipe: read it by hand */
            size_t cap = 4096;
            len = 0;
            buf = xmalloc(cap);
            size_t n;
            while ((n = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
                len += n;
                if (cap - len < 2) buf = xrealloc(buf, cap *= 2);
            }
            buf[len] = 0;
        }
        text = buf;
    }
    char *path = llava_path_join(model_dir, "tokenizer.json");
    llava_tokenizer *tok = NULL;
    int *ids = NULL, n = 0, status = 1;
    if (llava_tokenizer_load(&tok, path, &err) || llava_tokenize(tok, text, len, special, &ids, &n, &err)) {
        fprintf(stderr, "llava tokenize: %s\n", err.msg);
        goto done;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "ids"), *p = cJSON_AddArrayToObject(o, "pieces");
        for (int i = 0; i < n; i++) {
            cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
            const char *pc = llava_token_piece(tok, ids[i]);
            cJSON_AddItemToArray(p, cJSON_CreateString(pc ? pc : ""));
        }
        char *s = cJSON_PrintUnformatted(o);
        puts(s);
        free(s);
        cJSON_Delete(o);
    } else {
        for (int i = 0; i < n; i++) {
            const char *pc = llava_token_piece(tok, ids[i]);
            printf("%d\t%s\n", ids[i], pc ? pc : "");
        }
        fprintf(stderr, "%d tokens\n", n);
    }
    status = 0;
done:
    free(ids);
    free(path);
    free(buf);
    llava_tokenizer_free(tok);
    return status;
}

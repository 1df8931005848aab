/* main.c — the llava command: dispatches to the subcommands. Only main() exits. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "llava.c — LLaVA-NeXT inference from a Hugging Face checkpoint directory\n"
            "\n"
            "usage: llava <command> [options]\n"
            "  run         answer a prompt about images      llava run -m MODEL_DIR -i photo.jpg -p \"What is shown?\"\n"
            "  tokenize    show ids and pieces               llava tokenize -m MODEL_DIR \"some text\"\n"
            "  preprocess  write the pixel values            llava preprocess -m MODEL_DIR -i photo.jpg -o pixels.safetensors\n"
            "  classify    label many images, resumably      llava classify -m MODEL_DIR --labels labels.txt photos/ -o results.jsonl\n"
            "  eval        score predictions against truth  llava eval --pred results.jsonl --truth truth.csv --report r.html\n"
            "  serve       OpenAI-compatible HTTP server     llava serve -m MODEL_DIR --port 8000\n"
            "  bench       images/s, TFLOP/s, $/1000 images  llava bench -m MODEL_DIR --images 64 --device cuda\n"
            "\n"
            "`llava <command> --help` lists the options of a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "preprocess")) return cmd_preprocess(argc - 1, argv + 1);
    if (!strcmp(cmd, "classify")) return cmd_classify(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    fprintf(stderr, "llava: unknown command \"%s\" (run `llava --help`)\n", cmd);
    return 2;
}

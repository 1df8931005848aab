/* commands.h — the subcommands; each returns the process exit status (0 ok, 1 failed, 2 usage). */
#ifndef LLAVA_COMMANDS_H
#define LLAVA_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif

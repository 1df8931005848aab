/* main.c — placeholder entry until the subcommands land. */
#include <stdio.h>
int main(void) { fprintf(stderr, "llava: no subcommands yet\n"); return 2; }

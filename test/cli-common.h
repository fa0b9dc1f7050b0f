/* SPDX-License-Identifier: MIT */
/* cli-common.h - what the test-cli*.c files share: running the command,
 * checking its exit, and a small reader for its flat JSON objects (defined
 * in cli-common.c). */
#ifndef MHT_CLI_COMMON_H
#define MHT_CLI_COMMON_H

#include <sys/types.h>

#include "test.h"

#define CLI MHT_BUILD_DIR "/manyhands"
#define MONTECARLO MHT_BUILD_DIR "/examples/montecarlo"

/* Run the command with the given arguments (NULL-terminated). */
void cli(mht_proc_result_t *res, double timeout, ...);

/* A usage error: exit 2, "manyhands: ..." on stderr, nothing on stdout. */
void assert_usage_error(const mht_proc_result_t *r, const char *what);

/* Exit 0, else fail naming `what` and quoting stderr. */
void assert_ok(const mht_proc_result_t *r, const char *what);

/* The value after "key": in obj (failing when there is none), as a number,
 * and as a string into buf. */
const char *json_at(const char *obj, const char *key);
uint64_t json_u64(const char *obj, const char *key);
double json_num(const char *obj, const char *key);
void json_str(const char *obj, const char *key, char *buf, size_t size);

/* Split output into lines in place; returns the count. */
int split_lines(char *s, char **lines, int cap);

/* Check one run's JSON object for internal consistency. */
void check_run_object(const char *o, uint64_t n, int workers);

/* Wait until process `pid` catches SIGINT: start-up is slow under the
 * sanitizers on a loaded machine, and before the handler is installed SIGINT
 * ends the command by default (as it should, with nothing to clean up). */
void wait_sigint_caught(pid_t pid);

/* The file at `path` into buf (at most size - 1 bytes, NUL-terminated); fails
 * the test when it cannot be opened.  Returns the length. */
size_t read_text_file(const char *path, char *buf, size_t size);

#endif

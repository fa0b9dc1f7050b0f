/* SPDX-License-Identifier: MIT */
/* main.c - the manyhands command: subcommand dispatch, --help, --version.
 *
 * Exit codes are the same for every subcommand: 0 success, 1 the job could
 * not be done here (a runtime failure), 2 a usage error (the message goes to
 * stderr and nothing to stdout), 130 interrupted by SIGINT.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void print_help(FILE *f) {
  fputs("usage: manyhands <command> [options] [arguments]\n"
        "\n"
        "Many hands make light work: parallel jobs on threads, processes and MPI.\n"
        "\n"
        "commands:\n"
        "  pi N [P]    estimate pi from N random points on P workers\n"
        "              (try 'manyhands pi 1e9', 'manyhands pi --help')\n"
        "  help [CMD]  show this help, or the help of a command\n"
        "  version     show the version\n"
        "\n"
        "options:\n"
        "  -h, --help     show this help and exit\n"
        "  -V, --version  show the version and exit\n"
        "\n"
        "exit status: 0 ok, 1 runtime failure, 2 usage error, 130 interrupted.\n"
        "See manyhands(1).\n", f);
}

static int print_version(void) {
  mhc_print_version();
  return MHC_EXIT_OK;
}

static int finish(int code) {
  /* A full disk or a closed pipe on stdout is a failure, not a success. */
  if (fflush(stdout) != 0 || ferror(stdout)) {
    if (code == MHC_EXIT_OK) {
      mhc_error("error writing the output");
      return MHC_EXIT_FAIL;
    }
  }
  return code;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    mhc_error("missing command (try 'manyhands --help')");
    return MHC_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
      (strcmp(cmd, "help") == 0 && argc == 2)) {
    print_help(stdout);
    return finish(MHC_EXIT_OK);
  }
  if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0 ||
      strcmp(cmd, "version") == 0)
    return finish(print_version());
  if (strcmp(cmd, "help") == 0) {
    if (strcmp(argv[2], "pi") == 0) {
      static char help_opt[] = "--help";
      char *hargv[] = {argv[2], help_opt, NULL};
      return finish(mhc_cmd_pi(2, hargv));
    }
    mhc_error("unknown command '%s' (try 'manyhands --help')", argv[2]);
    return MHC_EXIT_USAGE;
  }
  if (strcmp(cmd, "pi") == 0) return finish(mhc_cmd_pi(argc - 1, argv + 1));
  if (cmd[0] == '-')
    mhc_error("unknown option '%s' (try 'manyhands --help')", cmd);
  else
    mhc_error("unknown command '%s' (try 'manyhands --help')", cmd);
  return MHC_EXIT_USAGE;
}

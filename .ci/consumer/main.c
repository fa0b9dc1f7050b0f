/* SPDX-License-Identifier: MIT */
/* A program that uses only the installed <manyhands.h>: proves the install
 * (headers, library, pkg-config file and CMake package) by running a task. */
#include <manyhands.h>
#include <stdio.h>
#include <string.h>

static int square(const void *in, size_t in_size, void *out, size_t out_size,
                  void *ctx) {
  (void)in_size;
  (void)out_size;
  (void)ctx;
  long x = *(const long *)in;
  *(long *)out = x * x;
  return 0;
}

int main(void) {
  if (strcmp(mh_version_string(), MH_VERSION_STRING) != 0) return 1;
  mh_executor_t *ex = NULL;
  int rc = mh_executor_new(&ex, NULL);
  if (rc) {
    fprintf(stderr, "consumer: %s\n", mh_strerror(rc));
    return 1;
  }
  long in[5] = {1, 2, 3, 4, 5}, out[5] = {0};
  rc = mh_executor_map(ex, square, NULL, in, sizeof in[0], out, sizeof out[0], 5, 0, NULL);
  mh_executor_free(ex);
  if (rc || out[4] != 25) return 1;
  printf("consumer ok: manyhands %s, [%ld, %ld, %ld, %ld, %ld]\n", mh_version_string(),
         out[0], out[1], out[2], out[3], out[4]);
  return 0;
}

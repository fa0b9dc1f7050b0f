/* A program that uses only the installed <manyhands.h>: proves the install. */
#include <manyhands.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  if (strcmp(mh_version_string(), MH_VERSION_STRING) != 0) return 1;
  if (mh_err_name(MH_EINVAL)[0] != 'E') return 1;
  printf("consumer ok: manyhands %s, %d cpus\n", mh_version_string(), mh_cpu_count());
  return 0;
}

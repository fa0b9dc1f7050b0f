/* SPDX-License-Identifier: MIT */
/* error.c - names and messages of the MH_E* codes, generated from the one
 * list in manyhands/error.h. */
#include "internal.h"

const char *mh_strerror(int code) {
  switch (code) {
  case 0:
    return "success";
#define MH__ERR_MSG(name, value, msg) \
  case MH_##name:                     \
    return msg;
    MH_ERROR_MAP(MH__ERR_MSG)
#undef MH__ERR_MSG
  default:
    break;
  }
  return code <= MH_EUSER ? "application error" : "unknown error";
}

const char *mh_err_name(int code) {
  switch (code) {
  case 0:
    return "OK";
#define MH__ERR_NAME(name, value, msg) \
  case MH_##name:                      \
    return #name;
    MH_ERROR_MAP(MH__ERR_NAME)
#undef MH__ERR_NAME
  default:
    break;
  }
  return code <= MH_EUSER ? "EUSER" : "UNKNOWN";
}

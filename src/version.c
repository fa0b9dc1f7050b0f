/* SPDX-License-Identifier: MIT */
/* version.c - the version of the linked library. */
#include "manyhands/version.h"
#include "internal.h"

unsigned mh_version(void) { return MH_VERSION_HEX; }

const char *mh_version_string(void) { return MH_VERSION_STRING; }

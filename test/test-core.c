/* SPDX-License-Identifier: MIT */
/* test-core.c - error codes, version, allocator hook, deadlines. */
#include <math.h>

#include "test.h"
#include "../src/internal.h"

TEST(error_names) {
  ASSERT_STREQ(mh_err_name(MH_EINVAL), "EINVAL");
  ASSERT_STREQ(mh_strerror(MH_EINVAL), "invalid argument");
  ASSERT_EQ(MH_EINVAL, -EINVAL);
  ASSERT_EQ(MH_ETIMEDOUT, -ETIMEDOUT);
  ASSERT_STREQ(mh_err_name(MH_EWORKERDIED), "EWORKERDIED");
  ASSERT_STREQ(mh_err_name(0), "OK");
  ASSERT_STREQ(mh_strerror(0), "success");
  ASSERT_STREQ(mh_strerror(-3999), "unknown error");
  ASSERT_STREQ(mh_err_name(-3999), "UNKNOWN");
  ASSERT_STREQ(mh_strerror(MH_EUSER - 7), "application error");
  ASSERT_STREQ(mh_err_name(MH_EUSER), "EUSER");
  /* Every code in the list has a distinct value and a non-empty message. */
  static const int codes[] = {
#define X(name, value, msg) MH_##name,
      MH_ERROR_MAP(X)
#undef X
  };
  size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; i++) {
    ASSERT_LT(codes[i], 0);
    ASSERT(strcmp(mh_strerror(codes[i]), "unknown error") != 0);
    for (size_t j = i + 1; j < n; j++) ASSERT_NE(codes[i], codes[j]);
  }
}

TEST(version) {
  ASSERT_STREQ(mh_version_string(), MH_VERSION_STRING);
  ASSERT_EQ(mh_version(), MH_VERSION_HEX);
}

TEST(allocator_hook) {
  ASSERT_ERR(mh_replace_allocator(malloc, NULL, NULL, free), MH_EINVAL);
  mht_alloc_fail_after(1);
  void *a = mh__malloc(10);
  ASSERT(a != NULL);
  ASSERT_EQ(mht_alloc_live(), 1);
  ASSERT(mh__malloc(10) == NULL);
  mh__free(a);
  ASSERT_EQ(mht_alloc_live(), 0);
  mht_alloc_reset();
  ASSERT_GE(mh_cpu_count(), 1);
}

TEST(deadlines) {
  mh__deadline_t dl;
  ASSERT_ERR(mh__deadline_init(&dl, -0.5), MH_EINVAL);
  ASSERT_ERR(mh__deadline_init(&dl, NAN), MH_EINVAL);
  ASSERT_ERR(mh__deadline_init(&dl, -INFINITY), MH_EINVAL);
  ASSERT_OK(mh__deadline_init(&dl, MH_FOREVER));
  ASSERT_EQ(dl.kind, 2);
  ASSERT_OK(mh__deadline_init(&dl, 0));
  ASSERT_EQ(dl.kind, 0);
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t c;
  ASSERT_OK(mh__cond_init(&c, false));
  pthread_mutex_lock(&m);
  ASSERT_ERR(mh__cond_wait(&c, &m, &dl), MH_ETIMEDOUT);
  ASSERT_OK(mh__deadline_init(&dl, 0.05));
  double t0 = mht_now();
  int rc;
  while ((rc = mh__cond_wait(&c, &m, &dl)) == 0) {
  }
  ASSERT_ERR(rc, MH_ETIMEDOUT);
  ASSERT_GE(mht_now() - t0, 0.049);
  pthread_mutex_unlock(&m);
  pthread_cond_destroy(&c);
}

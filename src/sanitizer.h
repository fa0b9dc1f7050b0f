/* SPDX-License-Identifier: MIT */
/* sanitizer.h - which sanitizer this translation unit is built with.
 *
 * gcc defines __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__; clang answers
 * __has_feature().  Written once here, for the library (through internal.h)
 * and the tests (through test/test.h):
 *   MH__ASAN       1 under AddressSanitizer, else 0
 *   MH__TSAN       1 under ThreadSanitizer, else 0
 *   MH__SANITIZED  1 under either
 */
#ifndef MH_SANITIZER_H
#define MH_SANITIZER_H

#if defined(__SANITIZE_ADDRESS__)
#define MH__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MH__ASAN 1
#endif
#endif
#ifndef MH__ASAN
#define MH__ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define MH__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MH__TSAN 1
#endif
#endif
#ifndef MH__TSAN
#define MH__TSAN 0
#endif

#define MH__SANITIZED (MH__ASAN || MH__TSAN)

#endif /* MH_SANITIZER_H */

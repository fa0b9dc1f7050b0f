/* SPDX-License-Identifier: MIT */
/* test-shm.c - named shared memory: create and attach (also from a program
 * not forked from the creator), unlink, a segment kept while anyone uses it
 * (creator killed), nothing left under /dev/shm once everybody is killed,
 * attach racing the tracker, bad input. */
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static int name_exists(const char *name) {
  char path[2048];
  snprintf(path, sizeof path, "/dev/shm/%.1000s", name);
  return access(path, F_OK) == 0;
}

/* The tracker removes a name soon after its last user is gone. */
static int gone_within(const char *name, double seconds) {
  double end = mht_now() + seconds;
  while (name_exists(name)) {
    if (mht_now() > end) return 0;
    mht_sleep(0.005);
  }
  return 1;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 31u + seed);
}

static int check(const unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(i * 31u + seed)) return 0;
  return 1;
}

static void assert_no_children(void) {
  for (int i = 0; i < 200 && mht_count_children() > 0; i++) mht_sleep(0.01);
  ASSERT_EQ(mht_count_children(), 0);
}

TEST(create_attach_close) {
  mh_shm_t *a, *b;
  ASSERT_OK(mh_shm_create(&a, NULL, 10000));
  const char *name = mh_shm_name(a);
  ASSERT(name && name[0] && name[0] != '/');
  ASSERT_UEQ(mh_shm_size(a), 10000);
  ASSERT(name_exists(name));
  unsigned char *pa = mh_shm_buf(a);
  for (size_t i = 0; i < 10000; i++) ASSERT_EQ(pa[i], 0); /* zero-filled */
  fill(pa, 10000, 5);
  char slash[300];
  snprintf(slash, sizeof slash, "/%s", name);
  ASSERT_OK(mh_shm_attach(&b, slash)); /* with the leading '/' too */
  ASSERT_UEQ(mh_shm_size(b), 10000);
  ASSERT_STREQ(mh_shm_name(b), name);
  unsigned char *pb = mh_shm_buf(b);
  ASSERT(pb != pa);
  ASSERT(check(pb, 10000, 5));
  pb[17] = 99;
  ASSERT_EQ(pa[17], 99);
  char keep[300];
  snprintf(keep, sizeof keep, "%s", name);
  mh_shm_close(a);
  /* One attachment is left: the segment stays. */
  mht_sleep(0.05);
  ASSERT(name_exists(keep));
  ASSERT_EQ(pb[17], 99);
  mh_shm_close(b);
  ASSERT(gone_within(keep, 30));
  ASSERT_ERR(mh_shm_attach(&b, keep), MH_ENOENT);
  ASSERT(b == NULL);
}

TEST(named_unlink_and_reuse) {
  char name[64];
  snprintf(name, sizeof name, "mh-test-%d", (int)getpid());
  mh_shm_t *a, *b, *c;
  ASSERT_OK(mh_shm_create(&a, name, 100));
  ASSERT_STREQ(mh_shm_name(a), name);
  ASSERT_ERR(mh_shm_create(&b, name, 100), MH_EEXIST);
  ASSERT(b == NULL);
  ((char *)mh_shm_buf(a))[0] = 'A';
  ASSERT_OK(mh_shm_unlink(a));
  ASSERT(!name_exists(name));
  ASSERT_ERR(mh_shm_unlink(a), MH_ENOENT);
  ASSERT_ERR(mh_shm_attach(&b, name), MH_ENOENT);
  /* The unlinked segment still works for whoever has it. */
  ASSERT_EQ(((char *)mh_shm_buf(a))[0], 'A');
  /* A new segment may take the name; the old handle leaves it alone, and
   * so does the old segment's tracker when the old one is closed. */
  ASSERT_OK(mh_shm_create(&b, name, 50));
  ASSERT_ERR(mh_shm_unlink(a), MH_ENOENT);
  mh_shm_close(a);
  mht_sleep(0.1);
  ASSERT(name_exists(name));
  ASSERT_OK(mh_shm_attach(&c, name));
  ASSERT_UEQ(mh_shm_size(c), 50);
  mh_shm_close(c);
  ASSERT_OK(mh_shm_unlink(b));
  mh_shm_close(b);
}

TEST(bad_input) {
  mh_shm_t *s = (mh_shm_t *)1;
  ASSERT_ERR(mh_shm_create(NULL, NULL, 10), MH_EINVAL);
  ASSERT_ERR(mh_shm_create(&s, NULL, 0), MH_EINVAL);
  ASSERT(s == NULL);
  static const char *bad[] = {"", "/", "a/b", "..", ".hidden", "sp ace", "x\n", NULL};
  for (int i = 0; bad[i]; i++) {
    ASSERT_ERR(mh_shm_create(&s, bad[i], 10), MH_EINVAL);
    ASSERT_ERR(mh_shm_attach(&s, bad[i]), MH_EINVAL);
  }
  char longname[MH_SHM_NAME_MAX + 2];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  ASSERT_ERR(mh_shm_create(&s, longname, 10), MH_EINVAL);
  ASSERT_ERR(mh_shm_attach(NULL, "x"), MH_EINVAL);
  ASSERT_ERR(mh_shm_attach(&s, NULL), MH_EINVAL);
  ASSERT_ERR(mh_shm_attach(&s, "mh-surely-not-there-42"), MH_ENOENT);
  ASSERT(mh_shm_buf(NULL) == NULL);
  ASSERT_UEQ(mh_shm_size(NULL), 0);
  ASSERT(mh_shm_name(NULL) == NULL);
  ASSERT_ERR(mh_shm_unlink(NULL), MH_EINVAL);
  mh_shm_close(NULL);
  /* Allocation failure leaves nothing behind. */
  mht_alloc_fail_after(0);
  int rc = mh_shm_create(&s, NULL, 10);
  mht_alloc_reset();
  ASSERT_ERR(rc, MH_ENOMEM);
  assert_no_children();
}

/* ---- other programs ------------------------------------------------------- */

HELPER(attach_and_answer) {
  /* An exec'd program: not forked from the creator. */
  if (argc < 1) return 2;
  mh_shm_t *s;
  int rc = mh_shm_attach(&s, argv[0]);
  if (rc) {
    printf("attach: %s\n", mh_err_name(rc));
    return 3;
  }
  unsigned char *p = mh_shm_buf(s);
  if (mh_shm_size(s) != 65536 || !check(p, 65536 - 8, 11)) return 4;
  memcpy(p + 65536 - 8, "answered", 8);
  mh_shm_close(s);
  return 0;
}

TEST(attach_from_a_program_not_forked) {
  mh_shm_t *s;
  ASSERT_OK(mh_shm_create(&s, NULL, 65536));
  fill(mh_shm_buf(s), 65536 - 8, 11);
  char name[300];
  snprintf(name, sizeof name, "%s", mh_shm_name(s));
  char *args[] = {name, NULL};
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("attach_and_answer", args, 60, &r), 0);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  mht_proc_free(&r);
  ASSERT(memcmp((char *)mh_shm_buf(s) + 65536 - 8, "answered", 8) == 0);
  mh_shm_close(s);
  ASSERT(gone_within(name, 30));
}

typedef struct creator_arg {
  mh_conn_t *tell, *other;
  size_t size;
  int count;
} creator_arg_t;

/* Create segments, fill them, tell their names, then wait to be killed. */
static int child_creates(void *arg) {
  creator_arg_t *c = arg;
  mh_conn_close(c->other);
  for (int i = 0; i < c->count; i++) {
    mh_shm_t *s;
    if (mh_shm_create(&s, NULL, c->size)) return 3;
    fill(mh_shm_buf(s), c->size, (unsigned)i);
    const char *n = mh_shm_name(s);
    if (mh_conn_send(c->tell, n, strlen(n) + 1)) return 4;
  }
  for (;;) pause();
}

TEST(creator_killed_attacher_keeps_reading) {
  mh_conn_t *a, *b;
  ASSERT_OK(mh_pipe(&a, &b, 0));
  creator_arg_t arg = {b, a, 1 << 20, 1};
  mh_process_t *p;
  ASSERT_OK(mh_process_start(&p, child_creates, &arg, NULL));
  mh_conn_close(b);
  char name[300];
  size_t len;
  ASSERT_OK(mh_conn_recv(a, name, sizeof name, &len));
  mh_shm_t *s;
  ASSERT_OK(mh_shm_attach(&s, name));
  ASSERT_OK(mh_process_kill(p));
  ASSERT_OK(mh_process_join(p, 30));
  mh_process_free(p);
  mht_sleep(0.05);
  /* The creator is dead; we still use the segment: it stays, under its
   * name, and keeps what the creator wrote. */
  ASSERT(check(mh_shm_buf(s), 1 << 20, 0));
  ASSERT(name_exists(name));
  mh_shm_t *again;
  ASSERT_OK(mh_shm_attach(&again, name));
  ASSERT(check(mh_shm_buf(again), 1 << 20, 0));
  mh_shm_close(again);
  mht_sleep(0.05);
  ASSERT(name_exists(name));
  mh_shm_close(s);
  ASSERT(gone_within(name, 30));
  mh_conn_close(a);
  assert_no_children();
}

/* Attach and close a segment in a loop, checking its contents each time,
 * until killed; the names come over the pipe. */
typedef struct churn_arg {
  const char *name;
  size_t size;
  unsigned seed;
} churn_arg_t;

static int child_churns(void *arg) {
  churn_arg_t *c = arg;
  for (;;) {
    mh_shm_t *s;
    int rc = mh_shm_attach(&s, c->name);
    /* Gone is allowed only once the creator is dead (the parent knows). */
    if (rc) return rc == MH_ENOENT ? 10 : 3;
    if (!check(mh_shm_buf(s), c->size, c->seed)) return 4;
    mh_shm_close(s);
  }
}

enum { NSEG = 4 };

HELPER(everybody_killed) {
  (void)argc;
  (void)argv;
  int priv = mht_private_dev_shm();
  printf("private /dev/shm: %s\n", priv ? "yes" : "no");
  long rounds = mht_scaled(30);
  for (long r = 0; r < rounds; r++) {
    /* A creator of NSEG segments, and two processes attaching and closing
     * them in a loop; all SIGKILLed at random moments. */
    mh_conn_t *a, *b;
    if (mh_pipe(&a, &b, 0)) return 3;
    creator_arg_t carg = {b, a, 8192 + (size_t)(mht_rand() % 100000), NSEG};
    mh_process_t *creator, *churn[NSEG];
    if (mh_process_start(&creator, child_creates, &carg, NULL)) return 3;
    mh_conn_close(b);
    char names[NSEG][300];
    for (int i = 0; i < NSEG; i++) {
      size_t len;
      if (mh_conn_recv(a, names[i], sizeof names[i], &len)) return 4;
      churn_arg_t u = {names[i], carg.size, (unsigned)i};
      if (mh_process_start(&churn[i], child_churns, &u, NULL)) return 3;
    }
    mh_conn_close(a);
    mht_jitter(20000);
    /* The creator first or last, at random. */
    if (r % 2) mh_process_kill(creator);
    for (int i = 0; i < NSEG; i++) {
      mht_jitter(3000);
      mh_process_kill(churn[i]);
    }
    mh_process_kill(creator);
    for (int i = 0; i < NSEG; i++) {
      mh_process_join(churn[i], MH_FOREVER);
      int code = 0;
      mh_process_exitcode(churn[i], &code);
      if (code != -SIGKILL && !(code == 10 && r % 2)) {
        printf("churn exit code %d\n", code);
        return 5;
      }
      mh_process_free(churn[i]);
    }
    mh_process_join(creator, MH_FOREVER);
    mh_process_free(creator);
    for (int i = 0; i < NSEG; i++)
      if (!gone_within(names[i], 30)) {
        printf("left behind: %s\n", names[i]);
        return 6;
      }
  }
  if (priv) {
    double end = mht_now() + 20;
    while (mht_dev_shm_entries() > 0 && mht_now() < end) mht_sleep(0.01);
    if (mht_dev_shm_entries() > 0) {
      printf("/dev/shm not empty\n");
      return 7;
    }
  }
  printf("clean\n");
  return 0;
}

TEST(everybody_killed_nothing_left) {
  /* Creators and users SIGKILLed at random moments, also while attaching:
   * no user ever finds the segment gone while the creator or another user
   * holds it (the churners exit 3 if so), and once all are dead nothing is
   * left under /dev/shm (a private one, where the machine allows it). */
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("everybody_killed", NULL, 110, &r), 0);
  if (!(r.exited && r.status == 0)) printf("%s\n%s\n", r.out, r.err);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "clean\n") != NULL);
  if (strstr(r.out, "private /dev/shm: no"))
    printf("note: no mount namespace here; checked the names only\n");
  mht_proc_free(&r);
}

/* Create and close segments for ever (a SIGKILL ends it). */
static int child_creates_forever(void *arg) {
  (void)arg;
  for (volatile int on = 1; on;) {
    mh_shm_t *s;
    if (mh_shm_create(&s, NULL, 4096 + (size_t)(mht_rand() % 65536)) == 0) mh_shm_close(s);
  }
  return 0; /* never reached */
}

HELPER(creator_killed_creating) {
  (void)argc;
  (void)argv;
  int priv = mht_private_dev_shm();
  printf("private /dev/shm: %s\n", priv ? "yes" : "no");
  if (!priv) {
    printf("clean\n");
    return 0;
  }
  long rounds = mht_scaled(200);
  for (long r = 0; r < rounds; r++) {
    mh_process_t *p;
    if (mh_process_start(&p, child_creates_forever, NULL, NULL)) return 3;
    mht_jitter(3000);
    mh_process_kill(p);
    mh_process_join(p, MH_FOREVER);
    mh_process_free(p);
  }
  /* The trackers of segments that were named end once they see no user. */
  double end = mht_now() + 30;
  while (mht_dev_shm_entries() > 0 && mht_now() < end) mht_sleep(0.01);
  int left = mht_dev_shm_entries();
  if (left > 0) {
    printf("/dev/shm not empty: %d entries\n", left);
    return 7;
  }
  printf("clean\n");
  return 0;
}

TEST(creator_killed_while_creating_leaves_nothing) {
  /* A process creating and closing segments in a loop, SIGKILLed at random
   * moments, many times: nothing is left under a private /dev/shm, not even
   * a half-made file (shm.c makes it nameless with O_TMPFILE, so a creator
   * killed before naming it leaves nothing to remove). */
  mht_proc_result_t r;
  ASSERT_EQ(mht_run_helper("creator_killed_creating", NULL, 110, &r), 0);
  if (!(r.exited && r.status == 0)) printf("%s\n%s\n", r.out, r.err);
  ASSERT_EQ(r.exited, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "clean\n") != NULL);
  if (strstr(r.out, "private /dev/shm: no")) printf("note: no mount namespace here; not checked\n");
  mht_proc_free(&r);
}

/* The pid of the process, not us, that holds `name`'s file open (the
 * tracker), found by the file's inode. */
static pid_t find_holder(const char *name) {
  char want[600];
  snprintf(want, sizeof want, "/dev/shm/%.500s", name);
  struct stat ws;
  if (stat(want, &ws) != 0) return 0;
  DIR *d = opendir("/proc");
  pid_t found = 0;
  struct dirent *e;
  while (d && !found && (e = readdir(d)) != NULL) {
    pid_t pid = (pid_t)atoi(e->d_name);
    if (pid <= 0 || pid == getpid()) continue;
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *fds = opendir(dir);
    struct dirent *f;
    while (fds && (f = readdir(fds)) != NULL) {
      char link[600];
      struct stat st;
      snprintf(link, sizeof link, "%s/%s", dir, f->d_name);
      if (stat(link, &st) == 0 && st.st_dev == ws.st_dev && st.st_ino == ws.st_ino) found = pid;
    }
    if (fds) closedir(fds);
  }
  if (d) closedir(d);
  return found;
}

/* Resident kilobytes of `pid`, or -1. */
static long rss_kb(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
  if (f) fclose(f);
  return kb;
}

/* The sanitizers' shadow memory is anonymous: shm.c trims nothing there. */

static char thread_seg[300];

static void make_and_close(void *arg) {
  (void)arg;
  mh_shm_t *s;
  thread_seg[0] = 0;
  if (mh_shm_create(&s, NULL, 100000)) return;
  memset(mh_shm_buf(s), 7, 100000);
  snprintf(thread_seg, sizeof thread_seg, "%s", mh_shm_name(s));
  mht_sleep(0.05); /* the tracker is past its trimming by now, mostly */
  mh_shm_close(s);
}

TEST(tracker_does_not_pin_creator_memory) {
  /* The creator has 64 MB of its own; the tracker, a fork of it, gives its
   * share of them up at once (else memory the creator frees would stay in
   * use as long as the segment lives). */
#if MH__SANITIZED
  printf("skipped: the tracker keeps its memory under the sanitizers\n");
  exit(77);
#endif
  size_t big = (size_t)64 << 20;
  unsigned char *mem = malloc(big);
  ASSERT(mem);
  memset(mem, 1, big);
  mh_shm_t *s;
  ASSERT_OK(mh_shm_create(&s, NULL, 4096));
  pid_t tracker = 0;
  for (int i = 0; i < 3000 && !tracker; i++) {
    tracker = find_holder(mh_shm_name(s));
    if (!tracker) mht_sleep(0.01);
  }
  ASSERT_GT(tracker, 0);
  long kb = -1;
  for (int i = 0; i < 3000; i++) {
    kb = rss_kb(tracker);
    if (kb >= 0 && kb < 8 * 1024) break;
    mht_sleep(0.01);
  }
  printf("tracker %d: %ld kB resident\n", (int)tracker, kb);
  ASSERT_GE(kb, 0);
  ASSERT_LT(kb, 8 * 1024);
  /* The creator's memory is intact. */
  for (size_t i = 0; i < big; i += 4096) ASSERT_EQ(mem[i], 1);
  /* A segment made by another thread (its stack and TLS in a mapping of
   * their own): its tracker still works after trimming - it removes the
   * name once the segment is closed. */
  for (int k = 0; k < 3; k++) {
    mh_thread_t *t;
    ASSERT_OK(mh_thread_start(&t, make_and_close, NULL, NULL));
    ASSERT_OK(mh_thread_join(t, MH_FOREVER));
    mh_thread_free(t);
    ASSERT(thread_seg[0]);
    ASSERT(gone_within(thread_seg, 30));
  }
  free(mem);
  char name[300];
  snprintf(name, sizeof name, "%s", mh_shm_name(s));
  mh_shm_close(s);
  ASSERT(gone_within(name, 30));
}

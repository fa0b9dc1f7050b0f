/* SPDX-License-Identifier: MIT */
/* shm.c - named shared memory under /dev/shm, removed after its last user.
 *
 * A segment is the file /dev/shm/<name>.  Lifetime rests on flock(), whose
 * locks belong to an open file and are dropped by the kernel when the last
 * descriptor of it closes - also when its process is killed:
 * - every attachment holds a shared lock on its own open of the file for as
 *   long as it is attached (the handle's `fd`);
 * - one tracker process per segment holds another open of the file and
 *   blocks taking the exclusive lock.  It gets it only when no attachment
 *   is left anywhere; it then removes the name, if the name still names its
 *   file (compared by device and inode: after mh_shm_unlink() a new segment
 *   may carry the name), and exits.
 *
 * Creation is atomic for attachers: the file is made without a name
 * (O_TMPFILE), locked, sized and given its tracker, and only then linked
 * under its real name (linkat() of /proc/self/fd/N fails if the name is
 * taken), so nobody attaches a half-made segment.  A creator killed at any
 * instruction before the link leaves a file with no name, which the kernel
 * frees with its last descriptor: nothing to leak.  Where O_TMPFILE or /proc
 * is missing, the file is made under a temporary name (.mh-tmp-*) instead,
 * which the tracker removes too, should the creator die before it did; on
 * that path only, a creator killed between creating the temporary file and
 * forking the tracker (three system calls) leaves that file.
 *
 * An attacher opens the file, takes its shared lock, and then checks that
 * the name still names the file it opened: if the tracker took the
 * exclusive lock in between, the name is gone by the time the shared lock
 * is granted, and the attach fails with MH_ENOENT instead of using a
 * segment on its way out.
 *
 * The tracker is forked twice (the middle process exits at once, so the
 * tracker is nobody's zombie) and calls setsid(), so it is in no process
 * group a terminal or a kill(-pgid) reaches.  It closes every descriptor
 * but its own first: an inherited copy of an attachment's descriptor would
 * keep that shared lock alive, and inherited pipes would hide end of file
 * from their peers.  Between fork and exit it makes system calls only.  It
 * unmaps the large anonymous mappings it inherited (see trim_memory()).
 *
 * Handles are not shared between threads without the caller's own locking;
 * the library keeps no global state here.  No locks are taken in this file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "manyhands/shm.h"

#define SHM_DIR "/dev/shm/"
#define PATH_CAP (sizeof SHM_DIR + MH_SHM_NAME_MAX + 16)

struct mh_shm_s {
  int fd; /* holds the shared flock while attached */
  void *buf;
  size_t size;
  dev_t dev; /* the file's identity, for unlink's check */
  ino_t ino;
  char name[MH_SHM_NAME_MAX + 1]; /* without the leading '/' */
};

/* ---- names --------------------------------------------------------------- */

/* Check a user's name and strip its leading '/'.  0 or MH_EINVAL. */
static int clean_name(const char *in, char out[MH_SHM_NAME_MAX + 1]) {
  if (!in) return MH_EINVAL;
  if (*in == '/') in++;
  size_t n = strlen(in);
  if (n == 0 || n > MH_SHM_NAME_MAX) return MH_EINVAL;
  /* A leading '.' is kept for our temporary names; no '/' can escape. */
  if (in[0] == '.') return MH_EINVAL;
  for (size_t i = 0; i < n; i++) {
    char c = in[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    if (!ok) return MH_EINVAL;
  }
  memcpy(out, in, n + 1);
  return 0;
}

static void make_path(char *path, const char *name) {
  snprintf(path, PATH_CAP, SHM_DIR "%s", name);
}

static atomic_uint name_counter;

/* A name no other process makes: our pid, a counter and clock bits. */
static void unique_name(char out[MH_SHM_NAME_MAX + 1], const char *prefix) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned c = atomic_fetch_add(&name_counter, 1u);
  snprintf(out, MH_SHM_NAME_MAX + 1, "%smh-%ld-%u-%lx", prefix, (long)getpid(), c,
           (unsigned long)ts.tv_nsec ^ ((unsigned long)ts.tv_sec << 20));
}

/* ---- the tracker ---------------------------------------------------------- */

/* Close every descriptor but `keep`, with system calls only. */
static void close_all_but(int keep) {
#ifdef SYS_close_range
  int ok = 1;
  if (keep > 0 && syscall(SYS_close_range, 0u, (unsigned)keep - 1u, 0u) != 0) ok = 0;
  if (ok && syscall(SYS_close_range, (unsigned)keep + 1u, ~0u, 0u) == 0) return;
#endif
  struct rlimit rl;
  long max = 65536;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      rl.rlim_cur < (rlim_t)max)
    max = (long)rl.rlim_cur;
  for (long fd = 0; fd < max; fd++)
    if (fd != keep) close((int)fd);
}

/* Remove `path` if it still names the file open as `fd`. */
static void unlink_if_same(const char *path, const struct stat *mine) {
  struct stat st;
  if (stat(path, &st) == 0 && st.st_dev == mine->st_dev && st.st_ino == mine->st_ino)
    unlink(path);
}

/* ---- the tracker's memory ----------------------------------------------
 *
 * The tracker is a fork of the creator: it would keep every anonymous page
 * of the creator referenced for as long as it lives, and memory the creator
 * freed later would not go back to the system.  So the tracker unmaps the
 * large anonymous mappings it inherited (malloc's big blocks and arenas,
 * other threads' stacks), keeping what its own few calls need: the mapping
 * of its stack, the one holding its thread's control block (TLS, the stack
 * guard), the heap, and any anonymous mapping right after a file's (a
 * library's zero-filled data).  Not under the sanitizers, whose shadow
 * memory is anonymous too. */
#define MH__SHM_TRIM (!MH__SANITIZED)

/* Mappings smaller than this are left alone: not worth the risk. */
#define TRIM_MIN ((uintptr_t)256 * 1024)
#define TRIM_MAX_RANGES 256

static uintptr_t parse_hex(const char **p) {
  uintptr_t v = 0;
  for (;;) {
    char c = **p;
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return v;
    v = v * 16 + (uintptr_t)d;
    (*p)++;
  }
}

/* Room kept around the thread pointer when its mapping is trimmed: the
 * static TLS blocks below it, the thread's control block above it. */
#define TP_WINDOW ((uintptr_t)1024 * 1024)

/* One line of /proc/self/maps: the parts of it that may go (0, 1 or 2
 * ranges, appended to lo/hi at *n).  `prev_file_end` is the end of the last
 * file-backed mapping seen. */
static void trim_line(const char *line, uintptr_t sp, uintptr_t tp, uintptr_t *prev_file_end,
                      uintptr_t *lo, uintptr_t *hi, int *n) {
  const char *p = line;
  uintptr_t start = parse_hex(&p);
  if (*p != '-') return;
  p++;
  uintptr_t end = parse_hex(&p);
  /* Skip perms, offset, dev, inode: to the path, if any. */
  for (int field = 0; field < 4; field++) {
    while (*p == ' ') p++;
    while (*p && *p != ' ' && *p != '\n') p++;
  }
  while (*p == ' ') p++;
  int anon = *p == '\n' || *p == 0;
  int after_file = start == *prev_file_end;
  if (!anon) {
    if (*p == '/') *prev_file_end = end;
    return; /* a file, [heap], [stack], [vdso] ...: kept */
  }
  if (after_file || end - start < TRIM_MIN) return;
  if (sp >= start && sp < end) return; /* our stack (and, in a thread, our TLS) */
  if (*n + 2 > TRIM_MAX_RANGES) return;
  if (tp >= start && tp < end) {
    /* Early TLS may share a mapping with a large block allocated next to
     * it (adjacent anonymous mappings merge): keep only a window. */
    uintptr_t wlo = tp > start + TP_WINDOW ? (tp - TP_WINDOW) & ~(uintptr_t)4095 : start;
    uintptr_t whi = end - tp > TP_WINDOW ? (tp + TP_WINDOW + 4095) & ~(uintptr_t)4095 : end;
    if (wlo > start) {
      lo[*n] = start;
      hi[(*n)++] = wlo;
    }
    if (whi < end) {
      lo[*n] = whi;
      hi[(*n)++] = end;
    }
    return;
  }
  lo[*n] = start;
  hi[(*n)++] = end;
}

static void trim_memory(void) {
  if (!MH__SHM_TRIM) return;
  char here;
  uintptr_t sp = (uintptr_t)&here, tp = (uintptr_t)pthread_self();
  uintptr_t lo[TRIM_MAX_RANGES], hi[TRIM_MAX_RANGES];
  int n = 0;
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[8192];
  size_t have = 0;
  uintptr_t prev_file_end = 0;
  for (;;) {
    ssize_t got = read(fd, buf + have, sizeof buf - 1 - have);
    if (got <= 0) break;
    have += (size_t)got;
    buf[have] = 0;
    char *line = buf, *nl;
    while ((nl = strchr(line, '\n')) != NULL) {
      trim_line(line, sp, tp, &prev_file_end, lo, hi, &n);
      line = nl + 1;
    }
    have = (size_t)(buf + have - line);
    memmove(buf, line, have);
    if (have == sizeof buf - 1) have = 0; /* a line too long: drop it */
  }
  close(fd);
  for (int i = 0; i < n; i++) munmap((void *)lo[i], hi[i] - lo[i]);
}

/* The tracker's whole life (in the grandchild); never returns. */
static void tracker_main(int fd, const char *path, const char *tmp) {
  close_all_but(fd);
  trim_memory();
  /* Signals the creator blocked stay blocked (harmless); handlers it set
   * are reset, so a signal to the tracker does what it says. */
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
  while (flock(fd, LOCK_EX) != 0)
    if (errno != EINTR) _exit(1);
  struct stat mine;
  if (fstat(fd, &mine) == 0) {
    if (tmp[0]) unlink_if_same(tmp, &mine);
    unlink_if_same(path, &mine);
  }
  _exit(0);
}

/* Start the tracker for the file open as `tfd`.  0 or a negative code. */
static int tracker_start(int tfd, const char *path, const char *tmp) {
  pid_t mid = fork();
  if (mid < 0) return MH_EAGAIN;
  if (mid == 0) {
    setsid();
    pid_t t = fork();
    if (t == 0) tracker_main(tfd, path, tmp);
    _exit(t < 0 ? 1 : 0);
  }
  int st = 0;
  while (waitpid(mid, &st, 0) < 0)
    if (errno != EINTR) return MH_EAGAIN;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : MH_EAGAIN;
}

/* ---- create, attach -------------------------------------------------------- */

static int map_it(mh_shm_t *s, size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
  if (p == MAP_FAILED) return -errno;
  s->buf = p;
  s->size = size;
  return 0;
}

static int flock_eintr(int fd, int op) {
  while (flock(fd, op) != 0)
    if (errno != EINTR) return -errno;
  return 0;
}

int mh_shm_create(mh_shm_t **shm, const char *name, size_t size) {
  if (shm) *shm = NULL;
  if (!shm || size == 0 || size > (size_t)PTRDIFF_MAX) return MH_EINVAL;
  mh_shm_t *s = mh__calloc(1, sizeof *s);
  if (!s) return MH_ENOMEM;
  s->fd = -1;
  int rc = 0;
  if (name) {
    rc = clean_name(name, s->name);
    if (rc) goto fail_free;
  } else {
    unique_name(s->name, "");
  }
  char path[PATH_CAP], tmp[PATH_CAP], tmp_name[MH_SHM_NAME_MAX + 1];
  make_path(path, s->name);
  /* Fail early on a taken name (the link() below is what decides). */
  if (access(path, F_OK) == 0) {
    rc = MH_EEXIST;
    goto fail_free;
  }
  /* The nameless file, and a second open of it for the tracker (its own
   * open file description, so that its lock is not ours). */
  char self[64];
  int tfd = -1;
  tmp[0] = '\0';
#ifdef O_TMPFILE
  s->fd = open(SHM_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (s->fd >= 0) {
    snprintf(self, sizeof self, "/proc/self/fd/%d", s->fd);
    tfd = open(self, O_RDONLY | O_CLOEXEC);
    if (tfd < 0) { /* no /proc: the temporary name, below */
      close(s->fd);
      s->fd = -1;
    }
  }
#endif
  for (int tries = 0; s->fd < 0; tries++) {
    unique_name(tmp_name, ".mh-tmp-");
    make_path(tmp, tmp_name);
    s->fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->fd >= 0) break;
    if (errno != EEXIST || tries > 8) {
      rc = -errno;
      goto fail_free;
    }
  }
  /* Our shared lock first: the tracker must never find the file unused. */
  rc = flock_eintr(s->fd, LOCK_SH);
  if (!rc && tfd < 0) {
    tfd = open(tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (tfd < 0) rc = -errno;
  }
  if (!rc) rc = tracker_start(tfd, path, tmp);
  if (tfd >= 0) close(tfd);
  if (rc) {
    if (tmp[0]) unlink(tmp);
    goto fail_close;
  }
  /* From here on the tracker removes the temporary name (and the real one)
   * if we die; on a clean failure we remove them ourselves. */
  struct stat st;
  if (ftruncate(s->fd, (off_t)size) != 0 || fstat(s->fd, &st) != 0) {
    rc = errno == EFBIG ? MH_ENOMEM : -errno;
    goto fail_unlink_tmp;
  }
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  rc = map_it(s, size);
  if (rc) goto fail_unlink_tmp;
  int linked = tmp[0] ? link(tmp, path) : linkat(AT_FDCWD, self, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
  if (linked != 0) {
    rc = -errno;
    munmap(s->buf, s->size);
    goto fail_unlink_tmp;
  }
  if (tmp[0]) unlink(tmp);
  *shm = s;
  return 0;

fail_unlink_tmp:
  if (tmp[0]) unlink(tmp);
fail_close:
  /* Closing drops our lock: the tracker wakes, finds no name, exits. */
  close(s->fd);
fail_free:
  mh__free(s);
  return rc;
}

int mh_shm_attach(mh_shm_t **shm, const char *name) {
  if (shm) *shm = NULL;
  if (!shm || !name) return MH_EINVAL;
  mh_shm_t *s = mh__calloc(1, sizeof *s);
  if (!s) return MH_ENOMEM;
  int rc = clean_name(name, s->name);
  if (rc) goto fail_free;
  char path[PATH_CAP];
  make_path(path, s->name);
  s->fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (s->fd < 0) {
    rc = errno == ELOOP ? MH_ENOENT : -errno;
    goto fail_free;
  }
  rc = flock_eintr(s->fd, LOCK_SH);
  if (rc) goto fail_close;
  /* Still the same file under the name?  (See the top of the file.) */
  struct stat mine, now;
  if (fstat(s->fd, &mine) != 0) {
    rc = -errno;
    goto fail_close;
  }
  if (stat(path, &now) != 0 || now.st_dev != mine.st_dev || now.st_ino != mine.st_ino) {
    rc = MH_ENOENT;
    goto fail_close;
  }
  if (mine.st_size <= 0 || (uintmax_t)mine.st_size > (uintmax_t)PTRDIFF_MAX) {
    rc = MH_ENOENT; /* not one of ours: ours are sized before they are named */
    goto fail_close;
  }
  s->dev = mine.st_dev;
  s->ino = mine.st_ino;
  rc = map_it(s, (size_t)mine.st_size);
  if (rc) goto fail_close;
  *shm = s;
  return 0;

fail_close:
  close(s->fd);
fail_free:
  mh__free(s);
  return rc;
}

/* ---- use, unlink, close ------------------------------------------------------ */

void *mh_shm_buf(const mh_shm_t *shm) { return shm ? shm->buf : NULL; }

size_t mh_shm_size(const mh_shm_t *shm) { return shm ? shm->size : 0; }

const char *mh_shm_name(const mh_shm_t *shm) { return shm ? shm->name : NULL; }

int mh_shm_unlink(mh_shm_t *shm) {
  if (!shm) return MH_EINVAL;
  char path[PATH_CAP];
  make_path(path, shm->name);
  struct stat st;
  if (stat(path, &st) != 0) return errno == ENOENT ? MH_ENOENT : -errno;
  if (st.st_dev != shm->dev || st.st_ino != shm->ino) return MH_ENOENT;
  if (unlink(path) != 0) return errno == ENOENT ? MH_ENOENT : -errno;
  return 0;
}

void mh_shm_close(mh_shm_t *shm) {
  if (!shm) return;
  munmap(shm->buf, shm->size);
  /* The last close of this open file drops its shared lock. */
  close(shm->fd);
  mh__free(shm);
}

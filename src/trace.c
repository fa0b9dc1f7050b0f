/* SPDX-License-Identifier: MIT */
/* trace.c - record what ran where and write it as Chrome trace-event JSON.
 *
 * One buffer of fixed-size records in an anonymous MAP_SHARED mapping, made
 * at the first start and kept for the life of the process, so that every
 * process forked after it (the process pool's fork server and its workers)
 * writes into the same memory and the one file holds them all.  Writers
 * never lock: a thread takes a block of BLOCK records with one fetch-add on
 * the shared `next` and fills it alone (a block is a page, so two writers
 * never share a cache line); a record is published by a release store of
 * its kind, the last field written.  The writer of the file skips records
 * whose kind is 0 (reserved, never filled, or still being written).
 *
 * Invariants:
 *   - hdr->next only grows between two starts; records below min(next, cap)
 *     were handed out in blocks of the current generation or are zero.
 *   - A thread's block belongs to the generation it was taken in (tl.gen);
 *     after a restart the thread takes a new block.
 *   - After fork the child's thread forgets its block, its ids and its role
 *     (atfork handler), so a child never writes into its parent's block.
 *   - Only the process that started the trace (g_owner) writes the file,
 *     and only if it is not an MPI rank > 0 (g_follow): such a rank hands
 *     its records to rank 0 (mh__trace_export), each once (REC_SENT).
 *   - A record's rank (MPI rank + 1, 0 outside MPI) and pid name its track;
 *     rank 0's file keeps tracks of different ranks apart (json_id).
 *
 * Who may touch what:
 *   A   atomic, any thread of any process
 *   O   the owner process, under g_mu (start, stop)
 *   T   the calling thread only (thread-local)
 *   SX  shared with the children, changed atomically
 * Lock order: g_mu alone; never held by a hook.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "trace_internal.h"

#define BLOCK 64u                   /* records per block: one 4 KiB page */
#define CAP_DEFAULT (1u << 20)      /* records in the buffer */
#define CAP_MAX (64u << 20)
#define REC_SENT 0x80000000u        /* kind bit: handed to rank 0 already */

typedef struct rec {
  _Atomic uint32_t kind; /* SX: 0 until published (release) */
  uint16_t role;         /* the track's role (MH__TR_ROLE_*) */
  uint16_t gen;          /* generation of the trace it belongs to */
  int32_t number;        /* worker number in its role, -1 unknown */
  int32_t pid, tid;      /* the track */
  int32_t status;
  uint64_t t0, t1;       /* ns on CLOCK_MONOTONIC; t1 == t0 for a mark */
  uint64_t index, items;
  int32_t rank;          /* MPI rank + 1 of the process that wrote it, 0 none */
  int32_t spare;
} rec_t;
_Static_assert(sizeof(rec_t) == 64, "a record is one cache line");

typedef struct hdr {
  _Alignas(64) _Atomic uint64_t next; /* SX: records handed out */
  _Atomic uint64_t dropped;           /* SX: events that found no room */
  _Atomic uint64_t seq;               /* SX: numbers MH__TR_SEQ slices */
  _Atomic uint32_t open;              /* SX: 1 while recording */
  _Atomic uint32_t gen;               /* SX: bumped by each start */
  _Atomic int32_t numbers;            /* SX: next number for role number -1 */
  uint64_t cap;                       /* O: records after the header */
  uint64_t t_start;                   /* O: ns at start */
  _Alignas(64) rec_t recs[];
} hdr_t;

_Atomic int mh__trace_on;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
/* O (set once, then read by anyone): atomic, because a thread started
 * before the first mh_trace_start (an MPI rank's watchdog) may read it. */
static hdr_t *_Atomic g_hdr;
static size_t g_len;      /* O: bytes mapped */
static FILE *g_file;      /* O: the open trace file */
static pid_t g_owner;     /* O: the process that started the trace */
/* MPI (set by the MPI unit through mh__trace_mpi, on the main thread):
 * this process's rank + 1 (0 outside MPI), read by every writer; whether it
 * only records and hands its records to rank 0 (a rank > 0: no file); the
 * host of every rank, for the track names rank 0 writes. */
static _Atomic int g_rank1;          /* A */
static int g_follow;                 /* O */
static char (*g_hosts)[64];          /* O */
static int g_nhosts;                 /* O */

static _Thread_local struct {
  rec_t *next, *end; /* T: the free part of this thread's block */
  uint32_t gen;      /* T: generation of that block */
  int32_t pid, tid;  /* T: 0 until first used */
  int32_t role, number;
  int32_t autonum;   /* T: number is the trace's (asked as -1), per generation */
} tl;

uint64_t mh__trace_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  return t ? t : 1; /* 0 means "not tracing" to mh__trace_end */
}

void (mh__trace_role)(int role, int number) { /* (not the hooks-out macro) */
  tl.role = role;
  tl.number = number;
  tl.autonum = number < 0;
}

/* In a forked child: this thread is a new track with no block. */
static void trace_atfork_child(void) {
  memset(&tl, 0, sizeof tl);
}

/* A free record for the calling thread, or NULL (recording closed, buffer
 * full). */
static rec_t *trace_take(hdr_t *h) {
  uint32_t gen = atomic_load_explicit(&h->gen, memory_order_acquire);
  if (!atomic_load_explicit(&h->open, memory_order_relaxed)) return NULL;
  if (tl.next == tl.end || tl.gen != gen) {
    uint64_t at = atomic_fetch_add_explicit(&h->next, BLOCK, memory_order_relaxed);
    if (at + BLOCK > h->cap) {
      atomic_fetch_add_explicit(&h->dropped, 1, memory_order_relaxed);
      tl.next = tl.end = NULL;
      return NULL;
    }
    /* A new trace numbers its workers afresh. */
    if (tl.gen != gen && tl.autonum) tl.number = -1;
    tl.next = &h->recs[at];
    tl.end = tl.next + BLOCK;
    tl.gen = gen;
  }
  if (!tl.pid) {
    tl.pid = (int32_t)getpid();
    tl.tid = (int32_t)syscall(SYS_gettid);
  }
  if (tl.role && tl.number < 0)
    tl.number = atomic_fetch_add_explicit(&h->numbers, 1, memory_order_relaxed);
  return tl.next++;
}

static void trace_put(rec_t *r, int kind, int pid, int tid, int role, int number,
                      uint64_t t0, uint64_t t1, uint64_t index, uint64_t items,
                      int status, int rank1) {
  r->role = (uint16_t)role;
  r->gen = (uint16_t)tl.gen;
  r->number = number;
  r->pid = pid;
  r->tid = tid;
  r->status = status;
  r->t0 = t0;
  r->t1 = t1;
  r->index = index;
  r->items = items;
  r->rank = rank1;
  atomic_store_explicit(&r->kind, (uint32_t)kind, memory_order_release);
}

void mh__trace_slice(uint64_t t0, int kind, uint64_t index, uint64_t items, int status) {
  hdr_t *h = g_hdr;
  if (!h) return;
  uint64_t t1 = mh__trace_clock();
  rec_t *r = trace_take(h);
  if (!r) return;
  if (index == MH__TR_SEQ)
    index = atomic_fetch_add_explicit(&h->seq, 1, memory_order_relaxed);
  trace_put(r, kind, tl.pid, tl.tid, tl.role, tl.number, t0, t1, index, items, status,
            atomic_load_explicit(&g_rank1, memory_order_relaxed));
}

void mh__trace_mark_(int kind, int pid, int number, uint64_t index, int status) {
  hdr_t *h = g_hdr;
  if (!h) return;
  uint64_t t = mh__trace_clock();
  rec_t *r = trace_take(h);
  if (!r) return;
  int rank1 = atomic_load_explicit(&g_rank1, memory_order_relaxed);
  if (pid > 0)
    trace_put(r, kind, pid, pid, MH__TR_ROLE_PROCESS, number, t, t, index, 0, status,
              rank1);
  else
    trace_put(r, kind, tl.pid, tl.tid, tl.role, tl.number, t, t, index, 0, status,
              rank1);
}

/* ==== start and stop (the owner) ========================================= */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void trace_once(void) { pthread_atfork(NULL, NULL, trace_atfork_child); }

static uint64_t trace_cap(void) {
  const char *s = getenv("MH_TRACE_EVENTS");
  if (!s || !*s) return CAP_DEFAULT;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end || v < BLOCK) return CAP_DEFAULT;
  if (v > CAP_MAX) v = CAP_MAX;
  return (v + BLOCK - 1) / BLOCK * BLOCK;
}

int mh_trace_start(const char *path) {
  if (!path || !*path) return MH_EINVAL;
  pthread_once(&g_once, trace_once);
  pthread_mutex_lock(&g_mu);
  int rc = 0;
  if (atomic_load(&mh__trace_on) && g_owner == getpid()) {
    rc = MH_EBUSY;
    goto out;
  }
  if (!g_hdr) {
    uint64_t cap = trace_cap();
    size_t len = sizeof(hdr_t) + (size_t)cap * sizeof(rec_t);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      rc = MH_ENOMEM;
      goto out;
    }
    ((hdr_t *)p)->cap = cap;
    g_len = len;
    g_hdr = p; /* published after its cap is set */
  }
  /* A rank > 0 of an MPI job records but writes nothing: rank 0 gathers
   * its records and writes the one file (opening it here could truncate
   * the file rank 0 is writing). */
  FILE *f = NULL;
  if (!g_follow && !(f = fopen(path, "w"))) {
    rc = errno ? -errno : MH_EIO;
    goto out;
  }
  g_file = f;
  g_owner = getpid();
  hdr_t *h = g_hdr;
  atomic_store(&h->next, 0);
  atomic_store(&h->dropped, 0);
  atomic_store(&h->seq, 0);
  atomic_store(&h->numbers, 0);
  h->t_start = mh__trace_clock();
  atomic_fetch_add(&h->gen, 1);
  atomic_store(&h->open, 1);
  atomic_store(&mh__trace_on, 1);
out:
  pthread_mutex_unlock(&g_mu);
  return rc;
}

int mh_trace_active(void) {
  if (!atomic_load_explicit(&mh__trace_on, memory_order_relaxed)) return 0;
  hdr_t *h = g_hdr;
  return h && atomic_load(&h->open);
}

/* ---- writing the file ---------------------------------------------------- */

typedef struct track {
  int32_t pid, tid, role, number, rank1;
} track_t;

/* Host of MPI rank `rank`, or "?" when unknown. */
static const char *rank_host(int rank) {
  return g_hosts && rank >= 0 && rank < g_nhosts ? g_hosts[rank] : "?";
}

/* The id a pid or tid of a rank's process has in the file.  Ranks on other
 * hosts than rank 0's may reuse each other's pids, so theirs are moved
 * above Linux's largest pid (2^22) by their rank: every rank keeps tracks
 * of its own.  The process name still gives the real pid. */
static int32_t json_id(int32_t id, int32_t rank1) {
  if (rank1 <= 1 || !g_hosts || rank1 > g_nhosts ||
      !strcmp(g_hosts[rank1 - 1], g_hosts[0]))
    return id;
  return (int32_t)((uint32_t)id + ((uint32_t)rank1 << 22));
}

static const char *kind_name(uint32_t k) {
  switch (k) {
    case MH__TR_TASK: return "task";
    case MH__TR_CHUNK: return "chunk";
    case MH__TR_JOB: return "job";
    case MH__TR_DEATH: return "worker died";
    case MH__TR_RETRY: return "retry";
    case MH__TR_CANCEL: return "cancelled";
    case MH__TR_SPAWN: return "spawn";
    case MH__TR_BLOCK: return "block";
    default: return "event";
  }
}

static void track_name(const track_t *t, pid_t owner, char *buf, size_t n) {
  switch (t->role) {
    case MH__TR_ROLE_THREAD: snprintf(buf, n, "thread worker %d", t->number); break;
    case MH__TR_ROLE_PROCESS: snprintf(buf, n, "process worker %d", t->number); break;
    case MH__TR_ROLE_RANK:
      /* A counting thread of a rank, or the rank itself (its death). */
      if (t->number >= 0) snprintf(buf, n, "rank %d thread %d", t->rank1 - 1, t->number);
      else snprintf(buf, n, "rank %d", t->rank1 - 1);
      break;
    default:
      if (t->tid == (int32_t)owner || (t->rank1 && t->tid == t->pid)) snprintf(buf, n, "main");
      else snprintf(buf, n, "thread %d", t->tid);
  }
}

/* The name of the process a track belongs to. */
static void process_name(const track_t *tab, size_t nt, size_t i, pid_t owner,
                         char *buf, size_t n) {
  const track_t *t = &tab[i];
  if (t->rank1) {
    snprintf(buf, n, "rank %d on %s (pid %d)", t->rank1 - 1, rank_host(t->rank1 - 1),
             t->pid);
    return;
  }
  if (t->pid == (int32_t)owner) {
    snprintf(buf, n, "manyhands (pid %d)", t->pid);
    return;
  }
  for (size_t j = 0; j < nt; j++)
    if (tab[j].pid == t->pid && tab[j].tid == t->pid) {
      char name[64];
      track_name(&tab[j], owner, name, sizeof name);
      snprintf(buf, n, "%s (pid %d)", name, t->pid);
      return;
    }
  snprintf(buf, n, "process (pid %d)", t->pid);
}

/* Add (pid, tid) to the table unless there; returns -1 on ENOMEM. */
static int track_add(track_t **tab, size_t *n, size_t *cap, const rec_t *r) {
  for (size_t i = *n; i-- > 0;)
    if ((*tab)[i].pid == r->pid && (*tab)[i].tid == r->tid &&
        (*tab)[i].rank1 == r->rank) {
      /* A death mark may name a track the worker never wrote to. */
      if (!(*tab)[i].role) {
        (*tab)[i].role = r->role;
        (*tab)[i].number = r->number;
      }
      return 0;
    }
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    track_t *t = mh__realloc(*tab, nc * sizeof *t);
    if (!t) return -1;
    *tab = t;
    *cap = nc;
  }
  (*tab)[(*n)++] = (track_t){r->pid, r->tid, r->role, r->number, r->rank};
  return 0;
}

static void us(FILE *f, uint64_t ns) {
  fprintf(f, "%llu.%03llu", (unsigned long long)(ns / 1000),
          (unsigned long long)(ns % 1000));
}

static int trace_write(FILE *f, hdr_t *h, pid_t owner) {
  uint64_t n = atomic_load(&h->next);
  if (n > h->cap) n = h->cap;
  uint32_t gen = (uint16_t)atomic_load(&h->gen);
  track_t *tab = NULL;
  size_t nt = 0, ct = 0;
  int first = 1;
  fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n", f);
  for (uint64_t i = 0; i < n; i++) {
    rec_t *r = &h->recs[i];
    uint32_t k = atomic_load_explicit(&r->kind, memory_order_acquire) & ~REC_SENT;
    if (!k || r->gen != gen) continue;
    if (track_add(&tab, &nt, &ct, r)) {
      mh__free(tab);
      return MH_ENOMEM;
    }
    uint64_t t0 = r->t0 >= h->t_start ? r->t0 - h->t_start : 0;
    uint64_t t1 = r->t1 >= r->t0 ? r->t1 - r->t0 : 0;
    fputs(first ? "" : ",\n", f);
    first = 0;
    fprintf(f, "{\"name\":\"%s\",\"cat\":\"manyhands\",\"pid\":%d,\"tid\":%d,\"ts\":",
            kind_name(k), json_id(r->pid, r->rank), json_id(r->tid, r->rank));
    us(f, t0);
    if (mh__trace_is_slice((int)k)) {
      fputs(",\"ph\":\"X\",\"dur\":", f);
      us(f, t1);
      fprintf(f, ",\"args\":{\"index\":%llu,\"items\":%llu,\"status\":%d}}",
              (unsigned long long)r->index, (unsigned long long)r->items, r->status);
    } else {
      fprintf(f, ",\"ph\":\"i\",\"s\":\"t\",\"args\":{\"index\":%llu,\"status\":%d}}",
              (unsigned long long)r->index, r->status);
    }
  }
  /* Names: each process (once, at its first track; the owner's always,
   * even with no event), then each track. */
  int owner_named = 0;
  for (size_t i = 0; i < nt; i++) owner_named |= tab[i].pid == (int32_t)owner;
  if (!owner_named)
    fprintf(f, "%s{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,"
               "\"args\":{\"name\":\"manyhands (pid %d)\"}}",
            first ? "" : ",\n", (int)owner, (int)owner, (int)owner);
  if (!owner_named) first = 0;
  for (size_t i = 0; i < nt; i++) {
    char name[64 + 80];
    int32_t jp = json_id(tab[i].pid, tab[i].rank1), jt = json_id(tab[i].tid, tab[i].rank1);
    size_t j = 0;
    while (j < i && !(tab[j].pid == tab[i].pid && tab[j].rank1 == tab[i].rank1)) j++;
    if (j == i) {
      process_name(tab, nt, i, owner, name, sizeof name);
      fprintf(f, "%s{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,"
                 "\"args\":{\"name\":\"%s\"}}",
              first ? "" : ",\n", jp, jp, name);
      first = 0;
    }
    track_name(&tab[i], owner, name, sizeof name);
    fprintf(f, "%s{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,"
               "\"args\":{\"name\":\"%s\"}}",
            first ? "" : ",\n", jp, jt, name);
    first = 0;
  }
  fprintf(f, "\n],\"otherData\":{\"dropped\":%llu,\"tracks\":%zu}}\n",
          (unsigned long long)atomic_load(&h->dropped), nt);
  mh__free(tab);
  return 0;
}

int mh_trace_stop(void) {
  pthread_mutex_lock(&g_mu);
  if ((!g_file && !g_follow) || g_owner != getpid() || !atomic_load(&mh__trace_on)) {
    pthread_mutex_unlock(&g_mu);
    return MH_EINVAL;
  }
  hdr_t *h = g_hdr;
  atomic_store(&h->open, 0);
  atomic_store(&mh__trace_on, 0);
  FILE *f = g_file;
  g_file = NULL;
  int rc = 0;
  if (f) {
    rc = trace_write(f, h, g_owner);
    if (ferror(f) && !rc) rc = errno ? -errno : MH_EIO;
    if (fclose(f) && !rc) rc = errno ? -errno : MH_EIO;
  }
  /* Give the used pages back (late writers get fresh zero pages). */
  size_t used = sizeof(hdr_t) + (size_t)atomic_load(&h->next) * sizeof(rec_t);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  if (used > g_len) used = g_len;
  size_t from = (sizeof(hdr_t) + page - 1) / page * page;
  if (used > from) madvise((char *)h + from, used - from, MADV_REMOVE);
  pthread_mutex_unlock(&g_mu);
  return rc;
}

/* ==== MPI ranks (called by src/mpi/, which sees only trace_internal.h) ==== */

void mh__trace_mpi(int rank, int size, const char *hosts, size_t stride) {
  pthread_mutex_lock(&g_mu);
  char (*h)[64] = size > 0 ? mh__calloc((size_t)size, sizeof *h) : NULL;
  if (h)
    for (int r = 0; r < size; r++)
      snprintf(h[r], sizeof h[r], "%.*s", (int)(stride < 64 ? stride : 63),
               hosts + (size_t)r * stride);
  mh__free(g_hosts);
  g_hosts = h;
  g_nhosts = h ? size : 0;
  atomic_store(&g_rank1, rank + 1);
  g_follow = rank > 0;
  /* Started before MPI said who we are (the API before mh_mpi_init): a
   * rank > 0 lets go of the file without writing it; rank 0 writes it. */
  if (g_follow && g_file) {
    fclose(g_file);
    g_file = NULL;
  }
  pthread_mutex_unlock(&g_mu);
}

void *mh__trace_export(size_t *n) {
  *n = 0;
  pthread_mutex_lock(&g_mu);
  hdr_t *h = g_hdr;
  rec_t *out = NULL;
  if (h && atomic_load(&mh__trace_on) && g_owner == getpid()) {
    uint64_t end = atomic_load(&h->next);
    if (end > h->cap) end = h->cap;
    uint32_t gen = (uint16_t)atomic_load(&h->gen);
    size_t cnt = 0;
    for (uint64_t i = 0; i < end; i++) {
      uint32_t k = atomic_load_explicit(&h->recs[i].kind, memory_order_acquire);
      cnt += k && !(k & REC_SENT) && h->recs[i].gen == gen;
    }
    if (cnt && (out = mh__malloc(cnt * sizeof *out))) {
      size_t j = 0;
      for (uint64_t i = 0; i < end && j < cnt; i++) {
        rec_t *r = &h->recs[i];
        uint32_t k = atomic_load_explicit(&r->kind, memory_order_acquire);
        if (!k || (k & REC_SENT) || r->gen != gen) continue;
        memcpy(&out[j], r, sizeof *r);
        /* Each record goes up once: marked, never written again. */
        atomic_store_explicit(&r->kind, k | REC_SENT, memory_order_relaxed);
        j++;
      }
      *n = j;
    }
  }
  pthread_mutex_unlock(&g_mu);
  return out;
}

void mh__trace_import(const void *recs, size_t n, int64_t offset) {
  hdr_t *h = g_hdr;
  if (!h || !mh_trace_active()) return;
  const rec_t *in = recs;
  for (size_t i = 0; i < n; i++) {
    rec_t *r = trace_take(h);
    if (!r) return;
    const rec_t *s = &in[i];
    uint32_t k = atomic_load_explicit(&s->kind, memory_order_relaxed) & ~REC_SENT;
    /* Its clock to ours; a time before the trace started shows at 0. */
    uint64_t t0 = (uint64_t)((int64_t)s->t0 - offset);
    uint64_t t1 = (uint64_t)((int64_t)s->t1 - offset);
    if ((int64_t)t0 < 1) t0 = 1;
    if (t1 < t0) t1 = t0;
    trace_put(r, (int)k, s->pid, s->tid, s->role, s->number, t0, t1, s->index, s->items,
              s->status, s->rank);
  }
}

void mh__trace_rank_mark(int kind, int rank, int pid, int status) {
  if (!mh_trace_active()) return;
  hdr_t *h = g_hdr;
  uint64_t t = mh__trace_clock();
  rec_t *r = trace_take(h);
  if (r) trace_put(r, kind, pid, pid, MH__TR_ROLE_RANK, -1, t, t, 0, 0, status, rank + 1);
}

/* ==== MH_TRACE ============================================================ */

static void trace_at_exit(void) {
  if (g_owner == getpid() && atomic_load(&mh__trace_on)) mh_trace_stop();
}

__attribute__((constructor)) static void trace_from_env(void) {
  pthread_once(&g_once, trace_once);
  const char *p = getenv("MH_TRACE");
  if (!p || !*p) return;
  /* Under an MPI launcher only rank 0 writes the file; the others record
   * for it.  The launchers say the rank in the environment, before MPI
   * starts (mh_mpi_init confirms it later). */
  static const char *const rank_vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK",
                                          "PMI_RANK"};
  for (size_t i = 0; i < sizeof rank_vars / sizeof rank_vars[0]; i++) {
    const char *r = getenv(rank_vars[i]);
    if (r && *r) {
      g_follow = strcmp(r, "0") != 0;
      break;
    }
  }
  int rc = mh_trace_start(p);
  if (rc) {
    fprintf(stderr, "manyhands: MH_TRACE=%s: %s\n", p, mh_strerror(rc));
    return;
  }
  atexit(trace_at_exit);
}

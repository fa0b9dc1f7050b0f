/* SPDX-License-Identifier: MIT */
/* producer_consumer.c - the tutorial's producer-consumer pipeline: a
 * Queue(maxsize=10) between a producer and a consumer running on an
 * executor, stopped by an Event that main sets after 0.1 s.  With
 * --processes the two run as separate processes and talk through the queue
 * between processes (mpqueue.h), the shape of multiprocessing's version.
 *
 *   Python                                   C
 *   queue.Queue(maxsize=10)                  mh_queue_new(&q, sizeof(int), 10)
 *   threading.Event()                        mh_event_init
 *   event.is_set() / event.set()             mh_event_is_set / mh_event_set
 *   queue.put(m) / queue.get()               mh_queue_put / mh_queue_get
 *   executor.submit(producer, pipeline, ev)  mh_executor_submit(producer, ...)
 *   --processes:
 *   multiprocessing.Queue(maxsize=10)        mh_mpqueue_new(&q, 10, ...)
 *   multiprocessing.Event()                  mh_shared_event_new
 *   multiprocessing.Process(target=...)      mh_process_start
 *
 * One change makes the ending certain: the tutorial's consumer loops
 * "while not event.is_set() or not queue.empty()" and may block in get()
 * forever when the producer has already left.  Here the producer shuts the
 * queue down when it leaves (Python 3.13's Queue.shutdown), and the
 * consumer stores what is left and stops when get says MH_ESHUTDOWN.  So
 * every message the producer got is stored, and both end.
 *
 * The producer is paced like the tutorial's network: messages come in
 * bursts of one to four, a few milliseconds apart, so the 0.1 s run prints a
 * few dozen lines that a person can read, not tens of thousands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <manyhands.h>

typedef struct pipeline {
  mh_queue_t *queue;     /* threads */
  mh_mpqueue_t *mpqueue; /* --processes */
  mh_event_t *event;
  unsigned seed;
} pipeline_t;

/* The network is quiet for 6..16 ms between bursts. */
static void wait_for_network(unsigned *seed) {
  long ms = 6 + rand_r(seed) % 11;
  struct timespec ts = {0, ms * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static int put_message(pipeline_t *p, int message) {
  if (p->mpqueue) return mh_mpqueue_put(p->mpqueue, &message, sizeof message, MH_FOREVER);
  return mh_queue_put(p->queue, &message, MH_FOREVER);
}

static int get_message(pipeline_t *p, int *message) {
  if (p->mpqueue) {
    size_t len;
    return mh_mpqueue_get(p->mpqueue, message, sizeof *message, &len, MH_FOREVER);
  }
  return mh_queue_get(p->queue, message, MH_FOREVER);
}

static size_t queue_size(pipeline_t *p) {
  return p->mpqueue ? mh_mpqueue_qsize(p->mpqueue) : mh_queue_qsize(p->queue);
}

/* Pretend we're getting a number from the network. */
static void produce(pipeline_t *p) {
  while (!mh_event_is_set(p->event)) {
    int burst = 1 + rand_r(&p->seed) % 4;
    for (int i = 0; i < burst; i++) {
      int message = 1 + rand_r(&p->seed) % 101; /* random.randint(1, 101) */
      mh_log_info("Producer got message: %d", message);
      put_message(p, message);
    }
    wait_for_network(&p->seed);
  }
  mh_log_info("Producer received event. Exiting");
  if (p->mpqueue)
    mh_mpqueue_shutdown(p->mpqueue, 0);
  else
    mh_queue_shutdown(p->queue, 0);
}

/* Pretend we're saving a number in the database. */
static void consume(pipeline_t *p) {
  int message;
  while (get_message(p, &message) == 0)
    mh_log_info("Consumer storing message: %d (size=%zu)", message, queue_size(p));
  mh_log_info("Consumer received event. Exiting");
}

/* The executor's task signature (threads). */
static int producer_task(const void *in, size_t in_size, void *out, size_t out_size,
                         void *ctx) {
  (void)in, (void)in_size, (void)out, (void)out_size;
  produce(ctx);
  return 0;
}

static int consumer_task(const void *in, size_t in_size, void *out, size_t out_size,
                         void *ctx) {
  (void)in, (void)in_size, (void)out, (void)out_size;
  consume(ctx);
  return 0;
}

/* The process signature (--processes). */
static int producer_process(void *arg) {
  produce(arg);
  return 0;
}

static int consumer_process(void *arg) {
  consume(arg);
  return 0;
}

static void sleep_tenth(void) {
  struct timespec ts = {0, 100000000}; /* time.sleep(0.1) */
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static int run_threads(pipeline_t *p) {
  mh_event_t event;
  if (mh_queue_new(&p->queue, sizeof(int), 10)) return 1;
  if (mh_event_init(&event)) return 1;
  p->event = &event;
  mh_executor_options_t opts;
  mh_executor_options_init(&opts);
  opts.workers = 2;
  mh_executor_t *executor;
  if (mh_executor_new(&executor, &opts)) return 1;
  mh_future_t *fp, *fc;
  if (mh_executor_submit(executor, producer_task, NULL, 0, NULL, 0, p, &fp) ||
      mh_executor_submit(executor, consumer_task, NULL, 0, NULL, 0, p, &fc))
    return 1;
  sleep_tenth();
  mh_log_info("Main: about to set event");
  mh_event_set(&event);
  mh_executor_free(executor); /* the end of the with block: waits */
  int rc = mh_future_result(fp, 0) || mh_future_result(fc, 0);
  mh_future_release(fp);
  mh_future_release(fc);
  mh_event_destroy(&event);
  mh_queue_free(p->queue);
  return rc;
}

static int run_processes(pipeline_t *p) {
  /* Both are made before the processes start, so both processes share them. */
  if (mh_mpqueue_new(&p->mpqueue, 10, 4096)) return 1;
  if (mh_shared_event_new(&p->event)) return 1;
  mh_process_t *prod, *cons;
  if (mh_process_start(&prod, producer_process, p, NULL)) return 1;
  if (mh_process_start(&cons, consumer_process, p, NULL)) return 1;
  sleep_tenth();
  mh_log_info("Main: about to set event");
  mh_event_set(p->event);
  int cp = 1, cc = 1;
  if (mh_process_join(prod, MH_FOREVER) || mh_process_join(cons, MH_FOREVER)) return 1;
  mh_process_exitcode(prod, &cp);
  mh_process_exitcode(cons, &cc);
  mh_process_free(prod);
  mh_process_free(cons);
  mh_shared_event_free(p->event);
  mh_mpqueue_free(p->mpqueue);
  return cp || cc;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: producer_consumer [--processes]\n"
          "  The tutorial's producer-consumer pipeline for 0.1 s.\n"
          "  --processes  producer and consumer are two processes talking through\n"
          "               a queue between processes (default: two threads)\n"
          "  -h, --help   this text\n");
}

int main(int argc, char **argv) {
  int processes = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--processes") == 0) {
      processes = 1;
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "manyhands: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  pipeline_t p;
  memset(&p, 0, sizeof p);
  p.seed = (unsigned)time(NULL);
  return processes ? run_processes(&p) : run_threads(&p);
}

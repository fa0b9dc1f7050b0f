/* producer_consumer.c - the tutorial's producer-consumer pipeline: a
 * Queue(maxsize=10) between a producer and a consumer running on an
 * executor, stopped by an Event that main sets after 0.1 s.
 *
 *   Python                                   C
 *   queue.Queue(maxsize=10)                  mh_queue_new(&q, sizeof(int), 10)
 *   threading.Event()                        mh_event_init
 *   event.is_set() / event.set()             mh_event_is_set / mh_event_set
 *   queue.put(m) / queue.get()               mh_queue_put / mh_queue_get
 *   executor.submit(producer, pipeline, ev)  mh_executor_submit(producer, ...)
 *
 * One change makes the ending certain: the tutorial's consumer loops
 * "while not event.is_set() or not queue.empty()" and may block in get()
 * forever when the producer has already left.  Here the producer shuts the
 * queue down when it leaves (Python 3.13's Queue.shutdown), and the
 * consumer stores what is left and stops when get says MH_ESHUTDOWN.  So
 * every message the producer got is stored, and both end. */
#include <stdlib.h>
#include <time.h>

#include <manyhands.h>

typedef struct pipeline {
  mh_queue_t *queue;
  mh_event_t event;
  unsigned seed;
} pipeline_t;

/* Pretend we're getting a number from the network. */
static int producer(const void *in, size_t in_size, void *out,
                    size_t out_size, void *ctx) {
  (void)in, (void)in_size, (void)out, (void)out_size;
  pipeline_t *p = ctx;
  while (!mh_event_is_set(&p->event)) {
    int message = 1 + rand_r(&p->seed) % 101; /* random.randint(1, 101) */
    mh_log_info("Producer got message: %d", message);
    mh_queue_put(p->queue, &message, MH_FOREVER);
  }
  mh_log_info("Producer received event. Exiting");
  mh_queue_shutdown(p->queue, 0);
  return 0;
}

/* Pretend we're saving a number in the database. */
static int consumer(const void *in, size_t in_size, void *out,
                    size_t out_size, void *ctx) {
  (void)in, (void)in_size, (void)out, (void)out_size;
  pipeline_t *p = ctx;
  int message;
  while (mh_queue_get(p->queue, &message, MH_FOREVER) == 0)
    mh_log_info("Consumer storing message: %d (size=%zu)", message,
                mh_queue_qsize(p->queue));
  mh_log_info("Consumer received event. Exiting");
  return 0;
}

int main(void) {
  pipeline_t p;
  p.seed = (unsigned)time(NULL);
  if (mh_queue_new(&p.queue, sizeof(int), 10)) return 1;
  if (mh_event_init(&p.event)) return 1;
  mh_executor_options_t opts;
  mh_executor_options_init(&opts);
  opts.workers = 2;
  mh_executor_t *executor;
  if (mh_executor_new(&executor, &opts)) return 1;
  mh_future_t *fp, *fc;
  if (mh_executor_submit(executor, producer, NULL, 0, NULL, 0, &p, &fp) ||
      mh_executor_submit(executor, consumer, NULL, 0, NULL, 0, &p, &fc))
    return 1;
  struct timespec ts = {0, 100000000}; /* time.sleep(0.1) */
  while (nanosleep(&ts, &ts) != 0) {
  }
  mh_log_info("Main: about to set event");
  mh_event_set(&p.event);
  mh_executor_free(executor); /* the end of the with block: waits */
  int rc = mh_future_result(fp, 0) || mh_future_result(fc, 0);
  mh_future_release(fp);
  mh_future_release(fc);
  mh_event_destroy(&p.event);
  mh_queue_free(p.queue);
  return rc;
}

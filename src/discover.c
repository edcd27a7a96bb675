/* discover.c: the kernel's socket list -> engine_discovered(). See discover.h.
 *
 * Nothing here stalls the loop for long. The kernel walks its whole socket table inside
 * the send and receive calls of a dump (about 25 ms per family here with 262 144 hash
 * buckets and other namespaces' sockets, even when nothing matches), so a thread makes
 * them: it sends the request, receives one datagram (at most DIAG_RECV_BUF bytes, a few
 * hundred sockets), wakes the loop (ev_async) and waits; the loop parses that datagram and
 * tells the thread to go on, to start IPv6 after IPv4, or to stop. The thread touches no
 * engine state; the request bytes are built by the loop. Only a complete dump (both families)
 * proves a socket gone: the engine then sweeps its table DISCOVER_SWEEP_STEP records per
 * loop iteration (an ev_check watcher; an ev_idle one keeps the loop from blocking).
 * A failed, malformed or overdue dump concludes nothing (engine_discover_abort).
 * Captured packets are handled during the dump: a connection that closes while being
 * listed may be tracked from the list, and is then swept by the next dump. */
#include "discover.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>

#include "diag.h"
#include "log.h"

#define DISCOVER_SWEEP_STEP 256  /* record slots swept per loop iteration (~5 us each gone) */
#define DISCOVER_TIMEOUT    60.0 /* s: a dump not complete by then is abandoned */

enum phase { PH_IDLE, PH_DUMP4, PH_DUMP6, PH_SWEEP };

/* What the loop tells the dump thread after each datagram. */
enum next { NX_WAIT, NX_MORE, NX_FAMILY, NX_STOP };

#define REQ_LEN (NLMSG_LENGTH(sizeof(struct inet_diag_req_v2)) + NLA_HDRLEN + DIAG_BC_MAX)

/* The dump thread and what it shares with the loop (under mu). */
struct dumper {
	pthread_t th;
	bool started; /* not joined yet */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool ready;     /* thread -> loop: buf holds n bytes from sender, or n < 0 and err */
	enum next next; /* loop -> thread */
	bool quit;      /* loop -> thread: stop at the next word (dumper_join) */
	ssize_t n;
	uint32_t sender;
	int err;
	double at;               /* when the kernel made the datagram (engine_clock) */
	uint8_t req[2][REQ_LEN]; /* IPv4 and IPv6 requests, built by the loop */
	size_t req_len[2];
	int fd;
	struct ev_loop *loop;
	ev_async wake;
	_Alignas(uint32_t) uint8_t buf[DIAG_RECV_BUF]; /* netlink's alignment */
};

struct discover {
	struct ev_loop *loop;
	struct engine *engine;
	const struct config *cfg;
	int fd;
	int runs;
	ev_timer timer;    /* the next periodic run */
	struct dumper dt;  /* the dump's thread */
	ev_timer deadline; /* DISCOVER_TIMEOUT */
	ev_check sweep_w;  /* one sweep step per loop iteration */
	ev_idle idle_w;    /* the loop must not block during the sweep */
	enum phase phase;
	bool again; /* asked to run during a run: once more after it */
	uint32_t seq;
	long listed;
	double t0, dump_ms;
	struct engine_stats before;
};

static void on_sock(void *arg, const struct diag_sock *s)
{
	struct discover *d = arg;
	bool quiet = s->has_info && s->unacked == 0 && s->wqueue == 0;
	double silent = diag_stall_silence(s);

	d->listed++;
	engine_discovered(d->engine, &s->key, diag_idle(s), quiet, s->timer == DIAG_TIMER_KEEPALIVE,
	                  d->dt.at);
	if (silent >= 0)
		engine_kernel_stall(d->engine, &s->key, silent, s->wqueue, (uint16_t)s->retransmits,
		                    d->dt.at);
}

static void log_run(struct discover *d)
{
	const struct engine_stats *st = engine_stats(d->engine);
	unsigned long long found = st->discovered - d->before.discovered;
	unsigned long long gone = st->gone - d->before.gone;

	if (d->runs++ == 0 || found || gone)
		log_info("discovery: %ld sockets listed, %llu tracked, %llu gone, %.1f ms",
		         d->listed, found, gone, d->dump_ms);
	else
		log_debug("discovery: %ld sockets listed, nothing new, %.1f ms", d->listed,
		          d->dump_ms);
}

/* The run is over (complete, swept, or failed): the periodic timer restarts. */
static void finish(struct discover *d)
{
	d->phase = PH_IDLE;
	ev_timer_stop(d->loop, &d->deadline);
	ev_check_stop(d->loop, &d->sweep_w);
	ev_idle_stop(d->loop, &d->idle_w);
	ev_timer_stop(d->loop, &d->timer);
	if (d->cfg->discover_interval > 0) {
		ev_timer_set(&d->timer, d->cfg->discover_interval, 0.0);
		ev_timer_start(d->loop, &d->timer);
	}
	if (d->again) {
		d->again = false;
		discover_run(d);
	}
}

/* The dump failed part-way: logged, nothing concluded. */
static void fail(struct discover *d, int err)
{
	errno = err;
	log_warn("discovery: dump of %s sockets", d->phase == PH_DUMP4 ? "IPv4" : "IPv6");
	engine_discover_abort(d->engine);
	finish(d);
}

/* Hands one result to the loop and waits for its word; returns it. */
static enum next dumper_post(struct dumper *t, ssize_t n, int err, uint32_t sender, double at)
{
	enum next nx;

	pthread_mutex_lock(&t->mu);
	t->at = at;
	t->n = n;
	t->err = err;
	t->sender = sender;
	t->ready = true;
	t->next = NX_WAIT;
	ev_async_send(t->loop, &t->wake);
	while (t->next == NX_WAIT && !t->quit)
		pthread_cond_wait(&t->cv, &t->mu);
	nx = t->quit ? NX_STOP : t->next;
	pthread_mutex_unlock(&t->mu);
	return nx;
}

/* The thread: IPv4 then IPv6, one datagram at a time, paced by the loop. The kernel makes
 * the first datagram in the send and each next one at the end of the receive before it:
 * that time goes with it, so the sockets' idle times are not aged by the wait. */
static void *dumper_main(void *arg)
{
	struct dumper *t = arg;
	enum next nx = NX_FAMILY;
	uint32_t sender = 0;
	double made, next;
	ssize_t n;
	int fam;

	for (fam = 0; fam < 2 && nx == NX_FAMILY; fam++) {
		if (diag_send(t->fd, t->req[fam], t->req_len[fam]) < 0) {
			dumper_post(t, -1, errno, 0, engine_clock());
			break;
		}
		made = engine_clock();
		do {
			n = diag_recv(t->fd, t->buf, sizeof(t->buf), &sender);
			next = engine_clock();
			nx = dumper_post(t, n, n < 0 ? errno : 0, sender, made);
			made = next;
		} while (nx == NX_MORE);
	}
	return NULL;
}

/* Waits for the thread of an earlier run (it ends at once after its last word, or within
 * DIAG_RECV_TIMEOUT when abandoned in a receive). */
static void dumper_join(struct dumper *t)
{
	if (!t->started)
		return;
	pthread_mutex_lock(&t->mu);
	t->quit = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->th, NULL);
	t->started = false;
	t->quit = false;
}

/* Builds both requests and starts the thread (signals blocked in it). Returns 0 or -1. */
static int dumper_start(struct discover *d)
{
	struct dumper *t = &d->dt;
	sigset_t all, old;
	int rc;

	dumper_join(t);
	t->req_len[0] =
	    diag_build_dump(t->req[0], REQ_LEN, AF_INET, ++d->seq, d->cfg->rules, d->cfg->nrules);
	t->req_len[1] =
	    diag_build_dump(t->req[1], REQ_LEN, AF_INET6, ++d->seq, d->cfg->rules, d->cfg->nrules);
	t->ready = false;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&t->th, NULL, dumper_main, t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	t->started = true;
	return 0;
}

/* Gives the thread its word. */
static void dumper_tell(struct dumper *t, enum next nx)
{
	pthread_mutex_lock(&t->mu);
	t->ready = false;
	t->next = nx;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

/* Both families listed: the sweep of what they did not list starts. */
static void dump_done(struct discover *d)
{
	ev_timer_stop(d->loop, &d->deadline);
	d->dump_ms = (engine_clock() - d->t0) * 1000.0;
	d->phase = PH_SWEEP;
	engine_discover_sweep_begin(d->engine);
	ev_check_start(d->loop, &d->sweep_w);
	ev_idle_start(d->loop, &d->idle_w);
}

/* The datagram the thread received: parsed here (bounded: one datagram); the thread's
 * next step follows from it. */
static enum next parse_one(struct discover *d, int *err)
{
	struct dumper *t = &d->dt;
	uint32_t seq = d->seq - (d->phase == PH_DUMP4 ? 1 : 0);
	int rc;

	if (t->n < 0) {
		*err = t->err;
		return NX_STOP;
	}
	rc = diag_parse(t->buf, (size_t)t->n, seq, t->sender, on_sock, d, err);
	if (rc == DIAG_MORE)
		return NX_MORE;
	if (rc == DIAG_E_MALFORMED)
		*err = EBADMSG;
	return rc == DIAG_DONE ? NX_FAMILY : NX_STOP;
}

/* The thread has a datagram (or an error) for the loop. */
static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
	struct discover *d = w->data;
	enum next nx;
	bool ready;
	int err = 0;

	(void)loop;
	(void)revents;
	pthread_mutex_lock(&d->dt.mu);
	ready = d->dt.ready;
	pthread_mutex_unlock(&d->dt.mu);
	if (!ready || (d->phase != PH_DUMP4 && d->phase != PH_DUMP6))
		return;
	nx = parse_one(d, &err);
	if (nx == NX_FAMILY && d->phase == PH_DUMP6)
		nx = NX_STOP; /* both listed */
	dumper_tell(&d->dt, nx);
	if (nx == NX_MORE)
		return;
	if (nx == NX_FAMILY)
		d->phase = PH_DUMP6;
	else if (err)
		fail(d, err);
	else
		dump_done(d);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	fail(w->data, ETIMEDOUT);
}

static void on_sweep(struct ev_loop *loop, ev_check *w, int revents)
{
	struct discover *d = w->data;

	(void)loop;
	(void)revents;
	if (engine_discover_sweep(d->engine, DISCOVER_SWEEP_STEP, NULL) > 0)
		return;
	log_run(d);
	finish(d);
}

static void on_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	discover_run(w->data);
}

struct discover *discover_new(struct ev_loop *loop, struct engine *e, const struct config *cfg)
{
	struct discover *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->fd = diag_open();
	if (d->fd < 0) {
		int err = errno;

		free(d);
		errno = err;
		return NULL;
	}
	d->loop = loop;
	d->engine = e;
	d->cfg = cfg;
	ev_timer_init(&d->timer, on_timer, 0.0, 0.0);
	d->dt.fd = d->fd;
	d->dt.loop = loop;
	pthread_mutex_init(&d->dt.mu, NULL);
	pthread_cond_init(&d->dt.cv, NULL);
	ev_async_init(&d->dt.wake, on_wake);
	ev_async_start(loop, &d->dt.wake);
	ev_timer_init(&d->deadline, on_deadline, DISCOVER_TIMEOUT, 0.0);
	ev_check_init(&d->sweep_w, on_sweep);
	ev_idle_init(&d->idle_w, on_idle);
	d->timer.data = d->dt.wake.data = d->deadline.data = d->sweep_w.data = d;
	return d;
}

void discover_run(struct discover *d)
{
	if (d->phase != PH_IDLE) {
		d->again = true; /* coalesced: one fresh run after this one */
		return;
	}
	ev_timer_stop(d->loop, &d->timer);
	d->before = *engine_stats(d->engine);
	d->t0 = engine_clock();
	d->listed = 0;
	engine_discover_begin(d->engine);
	ev_timer_set(&d->deadline, DISCOVER_TIMEOUT, 0.0);
	ev_timer_start(d->loop, &d->deadline);
	d->phase = PH_DUMP4;
	if (dumper_start(d) < 0)
		fail(d, errno);
}

bool discover_busy(const struct discover *d)
{
	return d->phase != PH_IDLE;
}

void discover_set_config(struct discover *d, const struct config *cfg)
{
	d->cfg = cfg;
}

void discover_free(struct discover *d)
{
	if (!d)
		return;
	ev_timer_stop(d->loop, &d->timer);
	ev_timer_stop(d->loop, &d->deadline);
	ev_check_stop(d->loop, &d->sweep_w);
	ev_idle_stop(d->loop, &d->idle_w);
	dumper_join(&d->dt);
	ev_async_stop(d->loop, &d->dt.wake);
	pthread_mutex_destroy(&d->dt.mu);
	pthread_cond_destroy(&d->dt.cv);
	close(d->fd);
	free(d);
}

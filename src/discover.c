/* discover.c: the kernel's socket list -> engine_discovered(). See discover.h.
 *
 * Nothing here stalls the loop for long: the dump is read through an ev_io on the
 * non-blocking NETLINK_SOCK_DIAG socket, one datagram (at most DIAG_RECV_BUF bytes, a few
 * hundred sockets) per callback, IPv4 then IPv6. Only a complete dump (both families)
 * proves a socket gone: the engine then sweeps its table DISCOVER_SWEEP_STEP records per
 * loop iteration (an ev_check watcher; an ev_idle one keeps the loop from blocking).
 * A failed, malformed or overdue dump concludes nothing (engine_discover_abort).
 * Captured packets are handled during the dump: a connection that closes while being
 * listed may be tracked from the list, and is then swept by the next dump. */
#include "discover.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "diag.h"
#include "log.h"

#define DISCOVER_SWEEP_STEP 256 /* record slots swept per loop iteration (~5 us each gone) */
#define DISCOVER_TIMEOUT    60.0 /* s: a dump not complete by then is abandoned */

enum phase { PH_IDLE, PH_DUMP4, PH_DUMP6, PH_SWEEP };

struct discover {
	struct ev_loop *loop;
	struct engine *engine;
	const struct config *cfg;
	int fd;
	int runs;
	ev_timer timer;    /* the next periodic run */
	ev_io io;          /* the dump's answer */
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

	d->listed++;
	engine_discovered(d->engine, &s->key, diag_idle(s), quiet, s->timer == DIAG_TIMER_KEEPALIVE,
	                  engine_clock());
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
	ev_io_stop(d->loop, &d->io);
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

/* Sends the request for the phase's family; the answer comes through on_io. */
static void start_family(struct discover *d, enum phase ph)
{
	d->phase = ph;
	if (diag_dump_start(d->fd, ph == PH_DUMP4 ? AF_INET : AF_INET6, ++d->seq, d->cfg->rules,
	                    d->cfg->nrules) < 0) {
		fail(d, errno);
		return;
	}
	ev_io_start(d->loop, &d->io);
}

/* Both families listed: the sweep of what they did not list starts. */
static void dump_done(struct discover *d)
{
	ev_io_stop(d->loop, &d->io);
	ev_timer_stop(d->loop, &d->deadline);
	d->dump_ms = (engine_clock() - d->t0) * 1000.0;
	d->phase = PH_SWEEP;
	engine_discover_sweep_begin(d->engine);
	ev_check_start(d->loop, &d->sweep_w);
	ev_idle_start(d->loop, &d->idle_w);
}

/* One datagram of the answer. */
static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct discover *d = w->data;
	int err = 0, rc = diag_dump_read(d->fd, d->seq, on_sock, d, &err);

	(void)loop;
	(void)revents;
	if (rc == DIAG_MORE)
		return;
	if (rc != DIAG_DONE)
		fail(d, err);
	else if (d->phase == PH_DUMP4)
		start_family(d, PH_DUMP6);
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
	ev_io_init(&d->io, on_io, d->fd, EV_READ);
	ev_timer_init(&d->deadline, on_deadline, DISCOVER_TIMEOUT, 0.0);
	ev_check_init(&d->sweep_w, on_sweep);
	ev_idle_init(&d->idle_w, on_idle);
	d->timer.data = d->io.data = d->deadline.data = d->sweep_w.data = d;
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
	start_family(d, PH_DUMP4);
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
	ev_io_stop(d->loop, &d->io);
	ev_timer_stop(d->loop, &d->deadline);
	ev_check_stop(d->loop, &d->sweep_w);
	ev_idle_stop(d->loop, &d->idle_w);
	close(d->fd);
	free(d);
}

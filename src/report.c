/* report.c: periodic reports (see report.h). The edge around state.c and metrics.c: it
 * walks the engine, streams the text into an atomicfile, and logs through log.c.
 *
 * Nothing here grows with the table in one loop iteration: the state file is rendered
 * REPORT_STATE_STEP connections per iteration (an ev_check watcher; an ev_idle one keeps
 * the loop from blocking meanwhile) and renamed when the walk ends; the metrics' per-rule
 * counts are gathered the same way. The flush, fsync and rename (atomicfile_commit) run
 * on a thread (an fsync waits for the disk), which wakes the loop with an ev_async. A
 * request during a write is coalesced into one fresh write after it. The walk never
 * touches a connection after its removal (engine_walk). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "config.h"
#include "engine.h"
#include "fsm.h"
#include "log.h"
#include "logline.h"
#include "loopstall.h"
#include "metrics.h"
#include "report.h"
#include "state.h"

#define REPORT_FILE_MODE 0644 /* node_exporter and `kaprobed -s` read them as other users */

/* Record slots per loop iteration: 1-3 us each rendered. */
#define REPORT_STATE_STEP 256

/* A temporary file committed (flush, fsync, rename) by a thread: an fsync can wait for
 * the disk for many ms, and the loop must not. */
struct commit {
	struct atomicfile af;
	pthread_t th;
	bool running;               /* the thread was started and not joined yet */
	atomic_int done;            /* set by the thread when it is over */
	int rc, err;                /* atomicfile_commit's result and errno */
	char path[CONFIG_PATH_MAX]; /* the target, copied: a reload may change the config */
	struct ev_loop *loop;
	ev_async *wake; /* sent by the thread when done */
};

/* A state file being written, a few connections per loop iteration. */
struct state_job {
	bool active, again; /* again: asked for during this write */
	bool committing;    /* the walk is over, the commit under way */
	struct commit c;
	FILE *f;
	struct engine_cursor cur;
	size_t n; /* connections written */
};

/* A metrics file being written: the engine's counts by rule and state, then the commit. */
struct metrics_job {
	bool active, again, committing;
	struct commit c;
	struct metrics_rule *rules;
	size_t nrules;
};

struct report {
	struct ev_loop *loop;
	const struct config *cfg;
	struct engine *e;
	report_drops_fn drops;
	void *drops_arg;
	ev_timer state_t, metrics_t, summary_t;
	int state_errno, metrics_errno; /* last write error reported (0: none since success) */
	ev_check step_w;                /* one step of the jobs below per loop iteration */
	ev_idle idle_w;                 /* keeps the loop from blocking while a job is under way */
	ev_async done_w;                /* a commit thread is over */
	struct state_job sj;
	struct metrics_job mj;
};

/* Logs a failed write once per distinct errno; a success re-arms the warning. */
static void note_result(int rc, int *last, const char *what, const char *path)
{
	int err = errno;

	if (rc == 0) {
		if (*last)
			log_info("%s %s written again", what, path);
		*last = 0;
		return;
	}
	if (err != *last) {
		errno = err;
		log_warn("%s %s not written", what, path);
	}
	*last = err;
}

static void *commit_main(void *arg)
{
	struct commit *c = arg;

	c->rc = atomicfile_commit(&c->af);
	c->err = errno;
	atomic_store(&c->done, 1);
	ev_async_send(c->loop, c->wake);
	return NULL;
}

/* Commits c's file on a thread (signals blocked there: the loop's thread handles them);
 * on_done() learns the result. Without a thread, commits here. */
static void commit_start(struct report *r, struct commit *c)
{
	sigset_t all, old;

	snprintf(c->path, sizeof(c->path), "%s", c->af.path);
	c->af.path = c->path;
	c->loop = r->loop;
	c->wake = &r->done_w;
	atomic_store(&c->done, 0);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	c->running = pthread_create(&c->th, NULL, commit_main, c) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!c->running)
		commit_main(c);
}

/* Whether c's commit is over; joins its thread. */
static bool commit_over(struct commit *c)
{
	if (!atomic_load(&c->done))
		return false;
	if (c->running)
		pthread_join(c->th, NULL);
	c->running = false;
	return true;
}

/* Waits for c's commit thread, if any (reload, shutdown). */
static void commit_wait(struct commit *c)
{
	if (c->running)
		pthread_join(c->th, NULL);
	c->running = false;
}

static bool walking(const struct report *r)
{
	return (r->sj.active && !r->sj.committing) || (r->mj.active && !r->mj.committing);
}

/* Starts the step watchers when a job is walking the table, stops them when none is. */
static void steps_update(struct report *r)
{
	if (walking(r)) {
		ev_check_start(r->loop, &r->step_w);
		ev_idle_start(r->loop, &r->idle_w); /* the loop must not block meanwhile */
	} else {
		ev_check_stop(r->loop, &r->step_w);
		ev_idle_stop(r->loop, &r->idle_w);
	}
}

/* Opens the temporary file and writes the document's head; the walk follows in steps. */
static void state_begin(struct report *r)
{
	struct state_job *j = &r->sj;
	struct timespec ts;
	char when[STATE_TIME_STRLEN];

	j->again = false;
	j->committing = false;
	j->f = atomicfile_open(&j->c.af, r->cfg->state_file, REPORT_FILE_MODE);
	if (!j->f) {
		note_result(-1, &r->state_errno, "state file", r->cfg->state_file);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	state_format_time(&ts, when, sizeof(when));
	state_render_begin(j->f, (long)getpid(), when);
	engine_walk_begin(r->e, &j->cur);
	j->n = 0;
	j->active = true;
}

static void state_one(const struct engine_view *v, void *arg)
{
	struct state_job *j = arg;

	state_render_conn(j->f, v, j->n++);
}

/* Renders the next connections; at the end of the walk, the commit thread starts. */
static void state_step(struct report *r)
{
	struct state_job *j = &r->sj;

	if (engine_walk(r->e, &j->cur, engine_now(r->e), REPORT_STATE_STEP, state_one, j) > 0) {
		atomicfile_writeback(&j->c.af);
		return;
	}
	state_render_end(j->f);
	j->committing = true;
	commit_start(r, &j->c);
}

/* The file is renamed (or not): reported; another write when one was asked for. */
static void state_done(struct report *r)
{
	struct state_job *j = &r->sj;

	j->active = false;
	errno = j->c.err;
	note_result(j->c.rc, &r->state_errno, "state file", r->cfg->state_file);
	if (j->again)
		state_begin(r); /* asked for again during the write: one more, fresh */
}

/* Drops a write under way (its temporary file is removed, the target left alone); one
 * being committed is waited for. */
static void state_cancel(struct report *r)
{
	struct state_job *j = &r->sj;

	if (j->active && j->committing)
		commit_wait(&j->c);
	else if (j->active)
		atomicfile_abort(&j->c.af);
	j->active = false;
}

void report_state_now(struct report *r)
{
	if (!r->cfg->state_file[0])
		return;
	if (r->sj.active)
		r->sj.again = true; /* coalesced: one fresh write after the one under way */
	else
		state_begin(r);
	steps_update(r);
}

/* Takes the connections' counts by rule and state (kept by the engine: O(rules)); the file
 * is rendered at the next step and committed on the thread. */
static void metrics_begin(struct report *r)
{
	const struct config *cfg = r->cfg;
	struct metrics_job *j = &r->mj;
	size_t i;

	j->again = false;
	j->committing = false;
	j->nrules = cfg->nrules;
	j->rules = calloc(cfg->nrules ? cfg->nrules : 1, sizeof(*j->rules));
	if (!j->rules) {
		note_result(-1, &r->metrics_errno, "metrics file", cfg->metrics_file);
		return;
	}
	for (i = 0; i < j->nrules; i++) {
		j->rules[i].name = cfg->rules[i].name;
		engine_rule_counts(r->e, i, j->rules[i].by_state);
		j->rules[i].dead_verdicts = engine_rule_dead(r->e, i);
	}
	j->active = true;
}

/* Renders the (small) file into its temporary file; returns 0 or -1 (errno). */
static int render_metrics(struct report *r)
{
	struct metrics_job *j = &r->mj;
	struct engine_counts n;
	struct metrics_input in = {
	    .st = engine_stats(r->e),
	    .rtt_bounds = engine_rtt_bounds,
	    .pcap_drops = r->drops(r->drops_arg),
	    .rules = j->rules,
	    .nrules = j->nrules,
	    .loop_stall_max = loopstall_max(),
	    .max_connections = (unsigned long long)r->cfg->max_connections,
	};
	FILE *f = atomicfile_open(&j->c.af, r->cfg->metrics_file, REPORT_FILE_MODE);

	if (!f)
		return -1;
	engine_counts(r->e, &n);
	in.zw_stalled = n.zw_stalled;
	in.busy = n.busy;
	in.observed = n.observed;
	metrics_render(f, &in);
	return 0;
}

/* Renders the file; the commit thread starts. */
static void metrics_step(struct report *r)
{
	struct metrics_job *j = &r->mj;
	int rc;

	rc = render_metrics(r);
	free(j->rules);
	j->rules = NULL;
	j->nrules = 0;
	if (rc < 0) {
		j->c.rc = -1;
		j->c.err = errno;
		atomic_store(&j->c.done, 1);
		ev_async_send(r->loop, &r->done_w); /* reported like a failed commit */
	} else {
		commit_start(r, &j->c);
	}
	j->committing = true;
}

static void metrics_done(struct report *r)
{
	struct metrics_job *j = &r->mj;

	j->active = false;
	errno = j->c.err;
	note_result(j->c.rc, &r->metrics_errno, "metrics file", r->cfg->metrics_file);
	if (j->again)
		metrics_begin(r);
}

static void metrics_cancel(struct report *r)
{
	struct metrics_job *j = &r->mj;

	if (j->active && j->committing)
		commit_wait(&j->c);
	free(j->rules);
	j->rules = NULL;
	j->active = false;
}

void report_metrics_now(struct report *r)
{
	if (!r->cfg->metrics_file[0])
		return;
	if (r->mj.active)
		r->mj.again = true;
	else
		metrics_begin(r);
	steps_update(r);
}

/* One step of each job walking the table, once per loop iteration (after the poll). */
static void on_step(struct ev_loop *loop, ev_check *w, int revents)
{
	struct report *r = w->data;

	(void)loop;
	(void)revents;
	if (r->sj.active && !r->sj.committing)
		state_step(r);
	if (r->mj.active && !r->mj.committing)
		metrics_step(r);
	steps_update(r);
}

/* A commit is over (the thread woke the loop). */
static void on_done(struct ev_loop *loop, ev_async *w, int revents)
{
	struct report *r = w->data;

	(void)loop;
	(void)revents;
	if (r->sj.active && r->sj.committing && commit_over(&r->sj.c))
		state_done(r);
	if (r->mj.active && r->mj.committing && commit_over(&r->mj.c))
		metrics_done(r);
	steps_update(r);
}

static void on_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

bool report_busy(const struct report *r)
{
	return r->sj.active || r->mj.active;
}

void report_summary_now(struct report *r)
{
	const struct engine_stats *st = engine_stats(r->e);
	struct engine_counts n;
	struct log_line l;

	engine_counts(r->e, &n);
	log_line_begin(&l, "summary");
	log_line_int(&l, "tracked", (long long)n.tracked);
	log_line_int(&l, "observed", (long long)n.observed);
	log_line_int(&l, "probing", (long long)n.by_state[FSM_PROBING]);
	log_line_int(&l, "dead", (long long)n.by_state[FSM_DEAD]);
	log_line_int(&l, "reset", (long long)st->reset);
	log_line_int(&l, "probes_sent", (long long)st->probes_sent);
	log_line_int(&l, "replies", (long long)st->replies);
	log_line_int(&l, "pcap_drops", (long long)r->drops(r->drops_arg));
	log_line_int(&l, "uncertain", (long long)st->uncertain);
	log_line_int(&l, "learn_retries", (long long)st->learn_retries);
	log_line_int(&l, "unconfirmed", (long long)n.unconfirmed);
	log_line_int(&l, "stalled", (long long)n.zw_stalled);
	log_line_int(&l, "stall_dead", (long long)st->stall_retransmit);
	log_line_fixed(&l, "probe_late_max_ms", st->probe_late_max * 1000.0, 1);
	log_line_emit(&l);
}

static void on_state(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	report_state_now(w->data);
}

static void on_metrics(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	report_metrics_now(w->data);
}

static void on_summary(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	report_summary_now(w->data);
}

/* (Re)starts a timer: first after `first` s, then every `interval` s; off when either the
 * interval is 0 or there is nothing to write. */
static void start_timer(struct report *r, ev_timer *t, int on, double first, double interval)
{
	ev_timer_stop(r->loop, t);
	if (!on || interval <= 0)
		return;
	ev_timer_set(t, first, interval);
	ev_timer_start(r->loop, t);
}

void report_reload(struct report *r)
{
	const struct config *c = r->cfg;

	state_cancel(r); /* paths and rules may have changed: the timers start afresh */
	metrics_cancel(r);
	steps_update(r);
	start_timer(r, &r->state_t, c->state_file[0] != '\0', 0.0, c->state_interval);
	start_timer(r, &r->metrics_t, c->metrics_file[0] != '\0', 0.0, c->metrics_interval);
	start_timer(r, &r->summary_t, 1, c->summary_interval, c->summary_interval);
}

struct report *report_new(struct ev_loop *loop, const struct config *cfg, struct engine *e,
                          report_drops_fn drops, void *arg)
{
	struct report *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->loop = loop;
	r->cfg = cfg;
	r->e = e;
	r->drops = drops;
	r->drops_arg = arg;
	ev_timer_init(&r->state_t, on_state, 0.0, 0.0);
	ev_timer_init(&r->metrics_t, on_metrics, 0.0, 0.0);
	ev_timer_init(&r->summary_t, on_summary, 0.0, 0.0);
	r->state_t.data = r->metrics_t.data = r->summary_t.data = r;
	ev_check_init(&r->step_w, on_step);
	ev_idle_init(&r->idle_w, on_idle);
	ev_async_init(&r->done_w, on_done);
	ev_async_start(loop, &r->done_w);
	r->step_w.data = r->done_w.data = r;
	report_reload(r);
	return r;
}

void report_free(struct report *r)
{
	if (!r)
		return;
	ev_timer_stop(r->loop, &r->state_t);
	ev_timer_stop(r->loop, &r->metrics_t);
	ev_timer_stop(r->loop, &r->summary_t);
	state_cancel(r);
	metrics_cancel(r);
	steps_update(r);
	ev_async_stop(r->loop, &r->done_w);
	free(r);
}

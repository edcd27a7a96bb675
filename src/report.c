/* report.c: periodic reports (see report.h). The edge around state.c and metrics.c: it
 * walks the engine, streams the text into an atomicfile, and logs through log.c. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "log.h"
#include "metrics.h"
#include "report.h"
#include "state.h"

#define REPORT_FILE_MODE 0644 /* node_exporter and `kaprobed -s` read them as other users */

struct report {
	struct ev_loop *loop;
	const struct config *cfg;
	struct engine *e;
	report_drops_fn drops;
	void *drops_arg;
	ev_timer state_t, metrics_t, summary_t;
	int state_errno, metrics_errno; /* last write error reported (0: none since success) */
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

struct state_ctx {
	FILE *f;
	size_t n;
};

static void state_one(const struct engine_view *v, void *arg)
{
	struct state_ctx *x = arg;

	state_render_conn(x->f, v, x->n++);
}

/* Streams every connection into the temporary file; returns 0 or -1 (errno). */
static int write_state(struct report *r, const char *path)
{
	struct atomicfile af;
	struct state_ctx x = {NULL, 0};
	struct timespec ts;
	char when[STATE_TIME_STRLEN];

	x.f = atomicfile_open(&af, path, REPORT_FILE_MODE);
	if (!x.f)
		return -1;
	clock_gettime(CLOCK_REALTIME, &ts);
	state_format_time(&ts, when, sizeof(when));
	state_render_begin(x.f, (long)getpid(), when);
	engine_foreach(r->e, engine_clock(), state_one, &x);
	state_render_end(x.f);
	return atomicfile_commit(&af);
}

void report_state_now(struct report *r)
{
	const char *path = r->cfg->state_file;

	if (!path[0])
		return;
	note_result(write_state(r, path), &r->state_errno, "state file", path);
}

struct rules_ctx {
	struct metrics_rule *rules;
	size_t n;
};

static void count_rule(const struct engine_view *v, void *arg)
{
	struct rules_ctx *x = arg;

	if (v->rule_index < x->n && v->state >= 0 && v->state < FSM_STATE_COUNT)
		x->rules[v->rule_index].by_state[v->state]++;
}

static int write_metrics(struct report *r, const char *path)
{
	const struct config *cfg = r->cfg;
	struct rules_ctx x = {calloc(cfg->nrules ? cfg->nrules : 1, sizeof(*x.rules)), cfg->nrules};
	struct metrics_input in = {engine_stats(r->e), engine_rtt_bounds, r->drops(r->drops_arg),
	                           x.rules, x.n};
	struct atomicfile af;
	FILE *f;
	size_t i;
	int rc = -1;

	if (!x.rules)
		return -1;
	for (i = 0; i < x.n; i++)
		x.rules[i].name = cfg->rules[i].name;
	engine_foreach(r->e, engine_clock(), count_rule, &x);
	f = atomicfile_open(&af, path, REPORT_FILE_MODE);
	if (f) {
		metrics_render(f, &in);
		rc = atomicfile_commit(&af);
	}
	free(x.rules);
	return rc;
}

void report_metrics_now(struct report *r)
{
	const char *path = r->cfg->metrics_file;

	if (!path[0])
		return;
	note_result(write_metrics(r, path), &r->metrics_errno, "metrics file", path);
}

void report_summary_now(struct report *r)
{
	const struct engine_stats *st = engine_stats(r->e);
	struct engine_counts n;
	struct log_line l;

	engine_counts(r->e, &n);
	log_line_begin(&l, "summary");
	log_line_int(&l, "tracked", (long long)n.tracked);
	log_line_int(&l, "probing", (long long)n.by_state[FSM_PROBING]);
	log_line_int(&l, "dead", (long long)n.by_state[FSM_DEAD]);
	log_line_int(&l, "reset", (long long)st->reset);
	log_line_int(&l, "probes_sent", (long long)st->probes_sent);
	log_line_int(&l, "replies", (long long)st->replies);
	log_line_int(&l, "pcap_drops", (long long)r->drops(r->drops_arg));
	log_line_int(&l, "uncertain", (long long)st->uncertain);
	log_line_int(&l, "learn_retries", (long long)st->learn_retries);
	log_line_int(&l, "unconfirmed", (long long)n.unconfirmed);
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
	free(r);
}

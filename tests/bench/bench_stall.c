/* bench_stall.c: the longest single event loop iteration (loop stall) at 1 000 000
 * synthetic connections, for a state file write, a metrics write, a summary, a discovery
 * run (a real dump of this namespace's sockets, then the sweep, which forgets every
 * synthetic record since no dump lists them) and the table's growth (the longest single
 * insert). The real engine, report and discover code on a real ev loop; the stall is
 * measured as loopstall.c does in the daemon. Also the same work done in one call, as it
 * was before it was made incremental. Prints figures, never fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "discover.h"
#include "engine.h"
#include "log.h"
#include "loopstall.h"
#include "report.h"
#include "state.h"

static size_t nconn = 1000000;

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_sec(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

/* Connection i: 10.x.y.z:5432 (ours) <-> 172.16.a.b:port, unique for i < 2^32. */
static void key_of(uint32_t i, struct addr_tuple *k)
{
	uint8_t l[4] = {10, (uint8_t)(i >> 24), (uint8_t)(i >> 16), 1};
	uint8_t r[4] = {172, 16, (uint8_t)(i >> 8), 2};

	addr_tuple_make(k, AF_INET, l, 5432, r, (uint16_t)(1024 + (i & 0xff)));
}

/* Tracks n connections through engine_discovered; prints the longest single call. */
static void populate(struct engine *e, size_t n)
{
	double t0 = now_sec(), worst = 0, worst_cpu = 0, a, b, ca, cb;
	struct addr_tuple k;
	unsigned long over = 0;
	uint32_t i;

	for (i = 0; i < n; i++) {
		key_of(i, &k);
		a = now_sec();
		ca = clock_s(CLOCK_THREAD_CPUTIME_ID);
		engine_discovered(e, &k, 1.0, false, false, a);
		cb = clock_s(CLOCK_THREAD_CPUTIME_ID);
		b = now_sec();
		worst = b - a > worst ? b - a : worst;
		over += b - a > LOOPSTALL_LIMIT;
		worst_cpu = cb - ca > worst_cpu ? cb - ca : worst_cpu;
	}
	printf("stall: %-14s %8.3f ms %8.3f ms   longest single insert, %lu of %zu over 10 ms "
	       "(%.1f s in all)\n",
	       "conntab growth", worst * 1000.0, worst_cpu * 1000.0, over, engine_count(e),
	       now_sec() - t0);
}

struct bench {
	struct ev_loop *loop;
	struct engine *e;
	struct report *r;
	struct discover *d;
	void (*start)(struct bench *b);
};

static void on_start(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct bench *b = w->data;

	(void)loop;
	(void)revents;
	b->start(b);
}

static int busy(struct bench *b)
{
	return report_busy(b->r) || discover_busy(b->d);
}

/* Runs the loop until the operation started by start() is over; prints its stall. */
static void measure(struct bench *b, const char *what, void (*start)(struct bench *))
{
	ev_timer t;
	double t0;
	long iters = 0;
	unsigned long runs, over;

	while (busy(b))
		ev_run(b->loop, EVRUN_ONCE); /* what is left of earlier work */
	b->start = start;
	ev_timer_init(&t, on_start, 0.0, 0.0);
	t.data = b;
	ev_timer_start(b->loop, &t);
	loopstall_reset();
	t0 = now_sec();
	ev_run(b->loop, EVRUN_ONCE);
	while (busy(b)) {
		ev_run(b->loop, EVRUN_ONCE);
		iters++;
	}
	loopstall_counts(&runs, &over);
	printf("stall: %-14s %8.3f ms %8.3f ms  p99.9 %5.1f ms  %ld loop iterations, %lu of %lu "
	       "callback runs over 10 ms, %.0f ms in all\n",
	       what, loopstall_max() * 1000.0, loopstall_max_cpu() * 1000.0,
	       loopstall_quantile(0.999) * 1000.0, iters + 1, over, runs,
	       (now_sec() - t0) * 1000.0);
}

static void start_state(struct bench *b)
{
	report_state_now(b->r);
}

static void start_metrics(struct bench *b)
{
	report_metrics_now(b->r);
}

static void start_summary(struct bench *b)
{
	report_summary_now(b->r);
}

static void start_discovery(struct bench *b)
{
	discover_run(b->d);
}

struct oneshot {
	size_t n;
	FILE *f;
};

static void render_to(const struct engine_view *v, void *arg)
{
	struct oneshot *o = arg;

	state_render_conn(o->f, v, o->n++);
}

/* The same work in one call, as before (engine_foreach / engine_counts in one go). */
static void oneshot(struct engine *e, const char *dir)
{
	char path[512];
	struct oneshot o = {0, NULL};
	struct engine_counts n;
	double t0;

	snprintf(path, sizeof(path), "%s/oneshot.json", dir);
	o.f = fopen(path, "w");
	if (o.f) {
		t0 = now_sec();
		state_render_begin(o.f, 1, "2026-01-01T00:00:00.000Z");
		engine_foreach(e, engine_clock(), render_to, &o);
		state_render_end(o.f);
		fflush(o.f);
		fsync(fileno(o.f));
		printf("one call: state file (engine_foreach + fsync) %.1f ms\n",
		       (now_sec() - t0) * 1000.0);
		fclose(o.f);
		unlink(path);
	}
	t0 = now_sec();
	engine_counts(e, &n);
	printf("one call: engine_counts (summary, metrics) %.1f ms (%zu tracked)\n",
	       (now_sec() - t0) * 1000.0, n.tracked);
}

static int make_config(struct config *cfg, const char *dir)
{
	struct fsm_params def = {.idle = 7200, .interval = 75, .probes = 9, .probe_bytes = 1};
	struct config_errors errs;
	char conf[2048];

	snprintf(conf, sizeof(conf),
	         "[global]\nlog_file = /dev/null\nstate_file = %s/state.json\n"
	         "state_interval = 0\nmetrics_file = %s/metrics.prom\nmetrics_interval = 1h\n"
	         "summary_interval = 1h\ndiscover_interval = 0\n"
	         "[svc]\nlocal = *:5432\nremote = *\nidle = 2h\ninterval = 75s\nprobes = 9\n",
	         dir, dir);
	return config_parse("bench", conf, &def, cfg, &errs);
}

static unsigned long long no_drops(void *arg)
{
	(void)arg;
	return 0;
}

int main(int argc, char **argv)
{
	char dir[] = "/var/tmp/kaprobe-bench-stall-XXXXXX", cmd[128];
	struct bench b = {0};
	struct config cfg;
	struct addr_set local = {0};

	if (argc > 1)
		nconn = strtoul(argv[1], NULL, 10);
	if (!mkdtemp(dir) || make_config(&cfg, dir) < 0) {
		printf("bench_stall: no temporary directory or config\n");
		return 0;
	}
	log_init(CONFIG_LOG_ERROR);
	log_open_status("/dev/null");
	b.loop = EV_DEFAULT;
	loopstall_attach(b.loop);
	b.e = engine_new(b.loop, &cfg, &local, NULL, nconn + 1);
	b.r = report_new(b.loop, &cfg, b.e, no_drops, NULL);
	b.d = discover_new(b.loop, b.e, &cfg);
	if (!b.e || !b.r || !b.d) {
		printf("bench_stall: setup failed\n");
		return 0;
	}
	printf("loop stall at %zu synthetic connections: the longest single loop iteration, "
	       "wall clock (preemption by other processes included) and CPU time of the thread\n",
	       nconn);
	printf("stall: %-14s %11s %11s\n", "", "wall", "cpu");
	populate(b.e, nconn);
	measure(&b, "state file", start_state);
	measure(&b, "metrics file", start_metrics);
	measure(&b, "summary", start_summary); /* engine_counts(): O(n) until it keeps counters */
	oneshot(b.e, dir);
	measure(&b, "discovery", start_discovery);
	printf("discovery: %zu synthetic records left after the sweep (no dump lists them)\n",
	       engine_count(b.e));
	discover_free(b.d);
	report_free(b.r);
	engine_free(b.e);
	config_free(&cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("bench_stall: %s not removed\n", dir);
	return 0;
}

/* loopstall.c: loop stall meter (see loopstall.h). libev calls the invoke-pending hook
 * once per loop iteration, after the poll, to run every pending callback (and once more
 * before the poll when prepare watchers exist): its duration is the iteration's work. */
#include <string.h>
#include <time.h>

#include "loopstall.h"

static double stall_max, cpu_max;
static unsigned long runs, over;
static unsigned long hist[LOOPSTALL_HIST + 1]; /* by 0.1 ms of wall clock; last: beyond */

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void invoke_timed(struct ev_loop *loop)
{
	double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID), dt, dc;

	ev_invoke_pending(loop);
	dt = clock_s(CLOCK_MONOTONIC) - t0;
	dc = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
	runs++;
	over += dt > LOOPSTALL_LIMIT;
	hist[dt < LOOPSTALL_HIST * 1e-4 ? (size_t)(dt * 1e4) : LOOPSTALL_HIST]++;
	if (dt > stall_max)
		stall_max = dt;
	if (dc > cpu_max)
		cpu_max = dc;
}

void loopstall_attach(struct ev_loop *loop)
{
	ev_set_invoke_pending_cb(loop, invoke_timed);
}

double loopstall_max(void)
{
	return stall_max;
}

double loopstall_max_cpu(void)
{
	return cpu_max;
}

void loopstall_counts(unsigned long *nruns, unsigned long *nover)
{
	*nruns = runs;
	*nover = over;
}

double loopstall_quantile(double q)
{
	unsigned long seen = 0;
	size_t i;

	for (i = 0; i < LOOPSTALL_HIST; i++) {
		seen += hist[i];
		if (runs && seen >= q * runs)
			return (i + 1) * 1e-4;
	}
	return stall_max;
}

void loopstall_reset(void)
{
	stall_max = cpu_max = 0;
	runs = over = 0;
	memset(hist, 0, sizeof(hist));
}

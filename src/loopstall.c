/* loopstall.c: loop stall meter (see loopstall.h). libev calls the invoke-pending hook
 * once per loop iteration, after the poll, to run every pending callback (and once more
 * before the poll when prepare watchers exist): its duration is the iteration's work. */
#include <time.h>

#include "loopstall.h"

static double stall_max, cpu_max;
static unsigned long runs, over;

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

void loopstall_reset(void)
{
	stall_max = cpu_max = 0;
	runs = over = 0;
}

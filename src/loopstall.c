/* loopstall.c: loop stall meter (see loopstall.h). libev calls the invoke-pending hook
 * once per loop iteration, after the poll, to run every pending callback (and once more
 * before the poll when prepare watchers exist): its duration is the iteration's work. */
#include <time.h>

#include "loopstall.h"

static double stall_max;

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void invoke_timed(struct ev_loop *loop)
{
	double t0 = mono(), dt;

	ev_invoke_pending(loop);
	dt = mono() - t0;
	if (dt > stall_max)
		stall_max = dt;
}

void loopstall_attach(struct ev_loop *loop)
{
	ev_set_invoke_pending_cb(loop, invoke_timed);
}

double loopstall_max(void)
{
	return stall_max;
}

void loopstall_reset(void)
{
	stall_max = 0;
}

/* loopstall.h: the longest stretch of work the event loop did between two polls (the
 * time during which no packet, timer or signal could be handled). One loop per process. */
#ifndef KAPROBE_LOOPSTALL_H
#define KAPROBE_LOOPSTALL_H

#include <ev.h>

/* Measures every callback run of loop from now on (libev's invoke-pending hook). */
void loopstall_attach(struct ev_loop *loop);

/* The longest single run of callbacks (s, wall clock) since attach or the last reset. */
double loopstall_max(void);

/* The most CPU time (s) the loop's thread spent in one run of callbacks: the same
 * without the time it was preempted by other processes or waited for the disk. */
double loopstall_max_cpu(void);

/* The goal for one run of callbacks (s): issue 8 asks for at most 10 ms. */
#define LOOPSTALL_LIMIT 0.010

/* Runs of callbacks since attach or the last reset, and how many took longer than
 * LOOPSTALL_LIMIT (wall clock). */
void loopstall_counts(unsigned long *nruns, unsigned long *nover);

/* Resolution of the quantiles: 0.1 ms steps up to LOOPSTALL_HIST of them. */
#define LOOPSTALL_HIST 1000

/* The q-quantile (0..1) of the runs' wall-clock durations, to 0.1 ms above (s). */
double loopstall_quantile(double q);

/* Forgets the maxima and counts (benchmarks measure one operation at a time). */
void loopstall_reset(void);

#endif

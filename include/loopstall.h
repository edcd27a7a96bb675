/* loopstall.h: the longest stretch of work the event loop did between two polls (the
 * time during which no packet, timer or signal could be handled). One loop per process. */
#ifndef KAPROBE_LOOPSTALL_H
#define KAPROBE_LOOPSTALL_H

#include <ev.h>

/* Measures every callback run of loop from now on (libev's invoke-pending hook). */
void loopstall_attach(struct ev_loop *loop);

/* The longest single run of callbacks (s) since attach or the last reset. */
double loopstall_max(void);

/* Forgets the maximum (benchmarks measure one operation at a time). */
void loopstall_reset(void);

#endif

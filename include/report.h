/* report.h: the daemon's periodic reports: the state file (every state_interval and on
 * demand), the metrics file (every metrics_interval) and the event=summary status line
 * (every summary_interval). Each runs on its own ev_timer; files are replaced atomically.
 * A write error is logged once per distinct errno and never stops the loop. */
#ifndef KAPROBE_REPORT_H
#define KAPROBE_REPORT_H

#include <stdbool.h>

#include <ev.h>

#include "config.h"

struct engine;
struct report;

/* Sum of the captures' kernel drop counters, asked for at each report. */
typedef unsigned long long (*report_drops_fn)(void *arg);

/* Reports for engine e under cfg (both must outlive the report); drops(arg) gives the
 * pcap drops. Timers start at once: the first state file is written as soon as the loop
 * runs (after start-up has dropped privileges), the others after one interval. */
struct report *report_new(struct ev_loop *loop, const struct config *cfg, struct engine *e,
                          report_drops_fn drops, void *arg);

/* Starts writing the state file now (SIGUSR2): rendered a few connections per loop
 * iteration, renamed over the old file at the end. Asked during a write, writes once
 * more after it. */
void report_state_now(struct report *r);

/* Starts writing the metrics file now (when one is configured), the same way. */
void report_metrics_now(struct report *r);

/* Whether a state or metrics write is under way. */
bool report_busy(const struct report *r);

/* Logs the summary line now. */
void report_summary_now(struct report *r);

/* Restarts the timers from cfg's intervals (after a reload changed them). */
void report_reload(struct report *r);

/* Stops the timers and frees. */
void report_free(struct report *r);

#endif

/* metrics.h: Prometheus text exposition (format 0.0.4) of the daemon's counters, for
 * node_exporter's textfile collector. Pure: numbers in, text to a stream. */
#ifndef KAPROBE_METRICS_H
#define KAPROBE_METRICS_H

#include <stddef.h>
#include <stdio.h>

#include "fsm.h"
#include "records.h"

/* Tracked connections of one rule, by state. */
struct metrics_rule {
	const char *name;
	unsigned long long by_state[FSM_STATE_COUNT]; /* by enum fsm_state */
	unsigned long long dead_verdicts;             /* since the rule was loaded */
};

/* Everything one exposition shows. */
struct metrics_input {
	const struct engine_stats *st;
	const double *rtt_bounds;      /* ENGINE_RTT_BUCKETS upper bounds, s (engine_rtt_bounds) */
	unsigned long long pcap_drops; /* summed over every capture */
	const struct metrics_rule *rules;
	size_t nrules;
	double loop_stall_max;              /* s: the longest single loop iteration's work so far */
	unsigned long long max_connections; /* the table's cap (config max_connections) */
	size_t zw_stalled;                  /* connections in a zero-window stall now */
	size_t busy;                        /* connections left out of the capture now */
	size_t observed;                    /* connections under an observe-only rule now */
};

/* Writes the exposition: HELP and TYPE lines, then the samples of each family. */
void metrics_render(FILE *f, const struct metrics_input *in);

/* Writes s escaped as a label value (backslash, double quote, newline), without quotes. */
void metrics_label_value(FILE *f, const char *s);

#endif

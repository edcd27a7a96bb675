/* records.h: the records the engine fills and the renderers read (the state file, the
 * metrics, the summary line): data only, no functions. The engine (engine.h) fills them;
 * state.c, metrics.c and report.c render them without depending on the engine. */
#ifndef KAPROBE_RECORDS_H
#define KAPROBE_RECORDS_H

#include <stddef.h>

#include "fsm.h"

struct addr_tuple;

/* Buckets of the RTT histogram, 0.1 ms .. 10 s (their bounds: engine_rtt_bounds). */
#define ENGINE_RTT_BUCKETS 16

/* Counters shown in the closing statistics and by the benchmark. */
struct engine_stats {
	unsigned long long packets, decode_errors, not_local, unmatched, forwarded, gateway_oneway;
	unsigned long long gateway_expired; /* gateway records forgotten: conntrack entry gone */
	unsigned long long tracked, probes_sent, send_errors, replies;
	unsigned long long alive, dead, reset, unreachable, closed, table_full;
	unsigned long long discovered, gone, kernel_keepalive, learn_asked, learn_blocked;
	unsigned long long uncertain; /* rounds that gave no verdict: the capture was blind */
	unsigned long long stall_retransmit;    /* dead verdicts from a retransmission stall */
	unsigned long long busy_left_out;       /* times a busy connection left the capture */
	unsigned long long busy_queries;        /* sock_diag queries of busy connections */
	unsigned long long stall_zero_window;   /* zero-window stalls told (event=stalled) */
	unsigned long long unstalled;           /* ... and ended (event=unstalled) */
	unsigned long long learn_retries;       /* learning asked again: the capture was blind */
	unsigned long long capture_reopens;     /* captures reopened after failing at run time */
	unsigned long long unconfirmed_dropped; /* records seen only from our side, dropped
	                                           unconfirmed (a SYN flood shows here) */
	double probe_late_max; /* s: the longest a probe waited for the pacer (since start) */
	double probe_rate;     /* probes/s the pacer allows now (max_probe_rate, lower after
	                          capture drops) */
	unsigned long long ignored[FSM_IGN_COUNT]; /* by enum fsm_ignore */
	/* RTT of every reply to a probe: rtt_hist[i] counts those <= engine_rtt_bounds[i]
	 * (and above the previous bound; not cumulative), rtt_hist[ENGINE_RTT_BUCKETS] those
	 * above the last bound; rtt_sum their sum in s. */
	unsigned long long rtt_hist[ENGINE_RTT_BUCKETS + 1];
	double rtt_sum;
};

/* A read-only view of one tracked connection, for the state file and the metrics. */
struct engine_view {
	const struct addr_tuple *key;
	const char *rule;   /* the rule's name */
	size_t rule_index;  /* index into the config's rules */
	int state;          /* enum fsm_state */
	double idle;        /* s since the last segment from the peer (or first sight) */
	int probes_out;     /* probes unanswered in this round */
	double rtt;         /* s of the last answered probe; < 0 when none yet */
	int verdict;        /* last verdict: FSM_EV_ALIVE, _DEAD, _RESET, _UNREACHABLE; 0 none */
	double verdict_age; /* s since that verdict; < 0 when none */
	const char *stall;  /* "zero-window" (stalled now), "retransmit" (dead from a stall), or
	                       NULL */
	const char *side;   /* a gateway rule's record: the end it probes ("client" or "server";
	                       key.local is the other end); NULL for a local rule */
};

/* Connections by state (engine_counts: kept by the engine as states change). */
struct engine_counts {
	size_t tracked;
	size_t observed;                  /* of those, under an observe-only rule */
	size_t by_state[FSM_STATE_COUNT]; /* by enum fsm_state */
	size_t unconfirmed; /* records seen only from our side yet (not in tracked, by_state) */
	size_t busy;        /* connections left out of the capture while busy, now */
	size_t zw_stalled;  /* connections in a told zero-window stall now */
};

#endif

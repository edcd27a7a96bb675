/* engine.h: wiring of the core. Captured frames and timers in; fsm decisions carried out
 * (probes through the sender, lines to the status log, per-connection ev_timers). */
#ifndef KAPROBE_ENGINE_H
#define KAPROBE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "addr.h"
#include "config.h"
#include "fsm.h"
#include "sender.h"

struct engine;

/* Counters shown in the closing statistics and by the benchmark. */
struct engine_stats {
	unsigned long long packets, decode_errors, not_local, unmatched;
	unsigned long long tracked, probes_sent, send_errors, replies;
	unsigned long long alive, dead, reset, unreachable, closed, table_full;
	unsigned long long ignored[FSM_IGN_COUNT]; /* by enum fsm_ignore */
};

/* A new engine on loop with cfg's rules (cfg must outlive it), local addresses, and a
 * sender (may be NULL: probes are then only logged, for tests and benchmarks). */
struct engine *engine_new(struct ev_loop *loop, const struct config *cfg,
                          const struct addr_set *local, struct sender *sender, size_t max_conns);

/* One captured frame (a capture_fn). */
void engine_on_frame(void *engine, int dlt, const uint8_t *data, size_t caplen, double when);

/* Counters. */
const struct engine_stats *engine_stats(const struct engine *e);

/* Number of tracked connections. */
size_t engine_count(const struct engine *e);

/* A verdict (dead or reset) just logged, for the actions (action.c). Every pointer is
 * valid during the hook's call only. */
struct engine_verdict {
	const struct config *cfg; /* the config in force (exec_paths, action_timeout) */
	const struct rule *rule;  /* the connection's rule: on_dead, on_reset */
	const struct addr_tuple *key;
	const struct fsm_conn *fsm; /* its numbers: snd_nxt, rcv_nxt, peer_end, windows, known */
	const struct fsm_event *ev; /* FSM_EV_DEAD or FSM_EV_RESET, its probes and reason */
	double idle;                /* s since the last segment from the peer */
};

typedef void (*engine_verdict_fn)(void *arg, const struct engine_verdict *v);

/* Calls fn(arg, verdict) after each dead or reset line is logged (NULL: none). The hook
 * must not call back into the engine. */
void engine_set_verdict_hook(struct engine *e, engine_verdict_fn fn, void *arg);

/* Applies a new configuration: every tracked connection is matched again. One that still
 * matches a rule keeps its state, numbers and armed timer (a probe round goes on; the new
 * rule's parameters apply from its next timer; a watching connection whose idle time got
 * shorter is re-armed at once). One that matches none is dropped, logged as
 * event=untrack reason=config. cfg is the configuration from now on (it may be the very
 * pointer given before, with new contents); old is the previous one, into which the
 * records' rule indexes still point, freed by the caller only after this returns.
 * Returns the number of connections dropped. */
size_t engine_reload(struct engine *e, const struct config *cfg, const struct config *old);

/* Stops every timer and frees. */
void engine_free(struct engine *e);

#endif

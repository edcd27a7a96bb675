/* engine.h: wiring of the core. Captured frames and timers in; fsm decisions carried out
 * (probes through the sender, lines to the status log, per-connection ev_timers). */
#ifndef KAPROBE_ENGINE_H
#define KAPROBE_ENGINE_H

#include <stdbool.h>
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
	unsigned long long discovered, gone, kernel_keepalive, learn_asked, learn_blocked;
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

/* Discovery: a dump of the kernel's socket list starts. */
void engine_discover_begin(struct engine *e);

/* One established socket of the dump: our end, the peer's; idle s since the kernel last
 * received a segment; quiet when nothing is in flight; keepalive when its owner enabled
 * SO_KEEPALIVE. Tracks it (source=discovered) when a rule matches and it is new. */
void engine_discovered(struct engine *e, const struct addr_tuple *key, double idle, bool quiet,
                       bool keepalive, double now);

/* The dump is complete: connections it did not list are forgotten (close reason=gone).
 * Returns how many. */
size_t engine_discover_end(struct engine *e);

/* Stops every timer and frees. */
void engine_free(struct engine *e);

#endif

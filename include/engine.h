/* engine.h: wiring of the core. Captured frames and timers in; fsm decisions carried out
 * (probes through the sender, lines to the status log, per-connection ev_timers). */
#ifndef KAPROBE_ENGINE_H
#define KAPROBE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "addr.h"
#include "capture.h"
#include "config.h"
#include "conntab.h"
#include "fsm.h"
#include "hush.h"
#include "records.h"
#include "sender.h"

struct engine;

/* Upper bounds (s) of the RTT histogram's buckets (ENGINE_RTT_BUCKETS, records.h). */
extern const double engine_rtt_bounds[ENGINE_RTT_BUCKETS];

/* A new engine on loop with cfg's rules (cfg must outlive it), local addresses, and a
 * sender (may be NULL: probes are then only logged, for tests and benchmarks). loop may be
 * NULL: the engine then arms no watcher and its caller drives time (engine_next_due,
 * engine_run_due; replay and unit tests). Its clock is CLOCK_MONOTONIC until
 * engine_set_clock. */
struct engine *engine_new(struct ev_loop *loop, const struct config *cfg,
                          const struct addr_set *local, struct sender *sender, size_t max_conns);

/* One captured frame (a capture_fn). A frame whose direction is known (f->dir, or the SLL
 * packet type of an "any" capture) is never oriented by its source address alone: one
 * that arrived is the peer's, ours only when both ends are local (loopback). */
void engine_on_frame(void *engine, const struct capture_frame *f);

/* Counters. */
const struct engine_stats *engine_stats(const struct engine *e);

/* Number of tracked connections. */
size_t engine_count(const struct engine *e);

/* The live clock (CLOCK_MONOTONIC, s): every engine's clock unless engine_set_clock gave
 * it another. */
double engine_clock(void);

/* The time on e's clock: the `now` to pass to engine_foreach and engine_discovered. */
double engine_now(const struct engine *e);

/* Where the engine reads the time (s; never going back): fn(arg). NULL: CLOCK_MONOTONIC
 * (the daemon). Replay gives the capture's packet time, unit tests a fake clock. Every
 * decision, timer and status line of the engine takes its time from here; frames carry
 * their own (capture_frame.when, on the same clock). */
typedef double (*engine_clock_fn)(void *arg);
void engine_set_clock(struct engine *e, engine_clock_fn fn, void *arg);

/* Where the packets the pacer would send go instead of the sender (NULL: the sender):
 * fn gets each batch and may set errs[i] to an errno (all 0 on entry: sent). Replay
 * matches them against the capture; unit tests look at them. */
typedef void (*engine_send_fn)(void *arg, const struct sender_pkt *pkts, size_t n, int *errs);
void engine_set_send_hook(struct engine *e, engine_send_fn fn, void *arg);

/* Without a loop: the earliest time the engine has work (a connection timer, the pacer);
 * false when none. */
bool engine_next_due(const struct engine *e, double *at);

/* Without a loop: does the work due at engine_now() (connection timers due by then, at
 * most 1024 per call, in time order; the pacer; expiry of unconfirmed records). Call it
 * while engine_next_due() is at or before the clock. */
void engine_run_due(struct engine *e);

/* Calls fn with a view of every tracked connection (O(n); fn must not change the engine).
 * now is engine_clock() time. */
void engine_foreach(const struct engine *e, double now,
                    void (*fn)(const struct engine_view *v, void *arg), void *arg);

/* Where an incremental walk over the connections is (engine_walk). */
struct engine_cursor {
	struct conntab_cursor tab;
};

/* Starts an incremental walk over the tracked connections. */
void engine_walk_begin(const struct engine *e, struct engine_cursor *cur);

/* Calls fn with a view of each of the next connections, looking at up to max record slots
 * (bounded work per call; fn must not change the engine). The engine may change between
 * calls: a connection tracked all along is seen exactly once, one removed meanwhile never
 * after its removal. now is engine_clock() time. Returns the slots looked at, 0 when the
 * walk is over. */
size_t engine_walk(const struct engine *e, struct engine_cursor *cur, double now, size_t max,
                   void (*fn)(const struct engine_view *v, void *arg), void *arg);

/* Counts the tracked connections by state (O(rules): the engine keeps the counts). */
void engine_counts(const struct engine *e, struct engine_counts *out);

/* The tracked connections of rule i of the config in force, by state (O(1)): adds them to
 * by_state[FSM_STATE_COUNT]. */
void engine_rule_counts(const struct engine *e, size_t i, unsigned long long *by_state);

/* Dead verdicts of rule i since the rules in force were loaded (a reload starts again). */
unsigned long long engine_rule_dead(const struct engine *e, size_t i);

/* What the engine asks of the capture before a verdict and every 100 ms: read every frame
 * already captured (through engine_on_frame), then return the kernel's drop count summed
 * over every capture (cumulative). New drops make the capture "blind" at that time: no round
 * that it overlaps gives a verdict, and the pacer halves its rate. */
typedef unsigned long long (*engine_sync_fn)(void *arg);

/* Sets the capture sync (NULL: none; the capture is then taken as never dropping). */
void engine_set_sync(struct engine *e, engine_sync_fn fn, void *arg);

/* The capture cannot hear anything from now on (down: being reopened), or again (down false):
 * while down, no verdict is given (see fsm_on_timer's blind). */
void engine_set_capture_down(struct engine *e, bool down);
/* A verdict (dead or reset) just logged, for the actions (action.c). Every pointer is
 * valid during the hook's call only. */
struct engine_verdict {
	const struct config *cfg; /* the config in force (exec_paths, action_timeout) */
	const struct rule *rule;  /* the connection's rule: on_dead, on_reset */
	const struct addr_tuple *key;
	/* the key as rules and lines see it (a gateway record through NAT: the client's view;
	 * else key), and what packets to key.remote go out as (through NAT: the pre-NAT tuple,
	 * see gateway.h; else key) */
	const struct addr_tuple *name, *send;
	const struct fsm_conn *fsm; /* its numbers: snd_nxt, rcv_nxt, peer_end, windows, known */
	const struct fsm_event *ev; /* FSM_EV_DEAD, _RESET or _STALLED, its probes and reason */
	bool stall;                 /* a stall (dead reason=stalled, or stalled): on_stall's */
	double idle;                /* s since the last segment from the peer */
};

typedef void (*engine_verdict_fn)(void *arg, const struct engine_verdict *v);

/* Calls fn(arg, verdict) after each dead or reset line is logged (NULL: none). The hook
 * must not call back into the engine. */
void engine_set_verdict_hook(struct engine *e, engine_verdict_fn fn, void *arg);

/* What the kernel says of one of this host's sockets (a sock_diag query), for a busy
 * connection left out of the capture. */
struct engine_kinfo {
	double idle;          /* s since the last segment from the peer */
	double quiet;         /* s since any segment either way */
	double silent;        /* s our data has gone unanswered (diag_stall_silence); < 0: none */
	uint32_t unacked;     /* bytes sent and not acknowledged */
	uint16_t retransmits; /* retransmission timeouts without progress */
	bool in_flight;       /* data in flight or queued */
	bool zero_window;     /* the peer's window is shut (zero-window probing) */
};

/* Asks the kernel for the socket of key: 0 with *ki filled, -1 (errno ENOENT: none). */
typedef int (*engine_kquery_fn)(void *arg, const struct addr_tuple *key, struct engine_kinfo *ki);

/* Leaves the routine segments (no SYN, FIN or RST) of these n connections out of the capture
 * (n = 0: none). Returns 0, or -1 when the filter could not be set (all are captured). */
typedef int (*engine_exclude_fn)(void *arg, const struct addr_tuple *keys, size_t n);

/* At most this many busy connections are left out of the capture at once. */
#define ENGINE_BUSY_MAX 32
/* Frames in one 100 ms window that make a connection busy (2 000 a second). */
#define ENGINE_BUSY_FRAMES 200

/* Busy connections (issue 14): a connection of this host carrying more than
 * ENGINE_BUSY_FRAMES frames in 100 ms is left out of the capture (its SYN, FIN and RST
 * still come) and watched through q instead, once per busy_period; when the kernel says it
 * has been quiet that long (or its peer's window is shut) it comes back, its numbers asked
 * for anew as for a discovered connection. NULL q: never (replay, tests). */
void engine_set_busy(struct engine *e, engine_kquery_fn q, engine_exclude_fn x, void *arg);

/* Asks conntrack for the TCP entry with the tuple from.local -> from.remote (either of its
 * directions): 0 with its tuples (local = the direction's source) and whether it is
 * translated (NAT), or -1 (none, no conntrack, an error). */
typedef int (*engine_ct_fn)(void *arg, const struct addr_tuple *from, struct addr_tuple *orig,
                            struct addr_tuple *reply, bool *nat);

/* Gateway mode through NAT: a new record of a forwarded connection (or of one whose
 * segments carry this host's address while the config has a gateway rule) is looked up in
 * conntrack by fn; a translated one is followed as the ends see it and probed with the
 * entry's own tuples (gateway_nat_view). NULL: never (no NAT is followed). */
void engine_set_conntrack(struct engine *e, engine_ct_fn fn, void *arg);

/* Gateway mode: the answers that a batch of gateway probes and learning SYNs will draw
 * (hush.h: a probe's answer exactly, a learning SYN's challenge ACK by its flow), told
 * just before the batch is sent, for the router to drop them instead of forwarding them
 * to the other end (the capture hears them arriving all the same). The hook must not call
 * back into the engine. NULL: none (answers are forwarded). */
typedef void (*engine_expect_fn)(void *arg, const struct hush_expect *x, size_t n);
void engine_set_expect(struct engine *e, engine_expect_fn fn, void *arg);

/* The packet mark the router leaves untracked (hush.h), or 0 (none: the default). With
 * one, a learning SYN through NAT goes out marked, with the addresses of the flow as the end
 * it asks sees it (gateway_nat.learn), and translated flows found in conntrack
 * (engine_gateway_found) are followed. */
void engine_set_learn_mark(struct engine *e, uint32_t mark);

/* A forwarded TCP connection that conntrack lists as established (tuples orig and reply,
 * translated or not), idle s (its entry's timeout left, from the established timeout):
 * its two records are made as discovered ones, their numbers asked for with a learning SYN
 * to each end in the other's name before the first probe, which waits until each end's
 * answer shows nothing in flight. Nothing when an end is this host, no gateway rule
 * matches, the records exist, or the flow is translated (nat) while no learn mark is set
 * (engine_set_learn_mark). */
void engine_gateway_found(struct engine *e, const struct addr_tuple *orig,
                          const struct addr_tuple *reply, bool nat, double idle, double now);

/* A forwarded flow's conntrack entry is gone (a destroy event: it expired, was deleted
 * by a tool or by a flush action, the table was flushed): the gateway records of the flow
 * with tuples orig and reply (keyed by either tuple swapped, through NAT too) are forgotten,
 * each with an untrack line at debug (reason=conntrack), counted in gateway_expired.
 * Returns how many. */
size_t engine_gateway_gone(struct engine *e, const struct addr_tuple *orig,
                           const struct addr_tuple *reply);

/* Reconciling with a conntrack dump: a dump starts (records made from now on count as
 * listed). */
void engine_gateway_mark_begin(struct engine *e);

/* The dump lists a TCP entry with tuples orig and reply: its gateway records are marked. */
void engine_gateway_listed(struct engine *e, const struct addr_tuple *orig,
                           const struct addr_tuple *reply);

/* The dump is complete (both families): every gateway record it did not mark is forgotten
 * (reason=conntrack-sweep, counted in gateway_expired), in one O(n) pass, if an earlier
 * dump listed it or made it (one never listed may be a flow conntrack does not track:
 * notrack, a family without conntrack here). Call only after a complete dump (a partial
 * one proves nothing). Returns how many. */
size_t engine_gateway_mark_end(struct engine *e);

/* Sets the capture's exclusions again (after the filter was replaced: reload, reopen). */
void engine_busy_refresh(struct engine *e);

/* Applies a new configuration: every tracked connection is matched again. One that still
 * matches a rule keeps its state, numbers and armed timer (a probe round goes on; the new
 * rule's parameters apply from its next timer; a watching connection whose idle time got
 * shorter is re-armed at once). One that matches none is dropped, logged as
 * event=untrack reason=config. cfg is the configuration from now on (it may be the very
 * pointer given before, with new contents); old is the previous one, into which the
 * records' rule indexes still point, freed by the caller only after this returns.
 * Returns the number of connections dropped. */
size_t engine_reload(struct engine *e, const struct config *cfg, const struct config *old);
/* Discovery: a dump of the kernel's socket list starts. */
void engine_discover_begin(struct engine *e);

/* One established socket of the dump: our end, the peer's; idle s since the kernel last
 * received a segment; quiet when nothing is in flight; keepalive when its owner enabled
 * SO_KEEPALIVE. Tracks it (source=discovered) when a rule matches and it is new. */
/* A listed socket under the retransmission timer (discovery's tcp_info): see
 * fsm_on_kernel_stall. Call after engine_discovered for the same key. */
void engine_kernel_stall(struct engine *e, const struct addr_tuple *key, double silent,
                         uint32_t unacked, uint16_t retransmits, double now);

void engine_discovered(struct engine *e, const struct addr_tuple *key, double idle, bool quiet,
                       bool keepalive, double now);

/* The dump failed part-way: nothing is concluded from it. */
void engine_discover_abort(struct engine *e);

/* The dump is complete: connections it did not list are forgotten (close reason=gone),
 * among those some earlier dump did list (a connection whose socket lives elsewhere, e.g.
 * behind DNAT, is only ever seen in traffic). All at once (O(n)): tests and tools; the
 * daemon sweeps incrementally (engine_discover_sweep_begin). Returns how many. */
size_t engine_discover_end(struct engine *e);

/* The dump is complete: starts the sweep of engine_discover_end, to be done in steps.
 * A new engine_discover_begin() abandons an unfinished sweep. */
void engine_discover_sweep_begin(struct engine *e);

/* Sweeps up to max record slots; adds the connections forgotten to *gone (may be NULL).
 * Returns the slots looked at, 0 when the sweep is over (or none is under way). */
size_t engine_discover_sweep(struct engine *e, size_t max, size_t *gone);

/* Stops every timer and frees. */
void engine_free(struct engine *e);

#endif

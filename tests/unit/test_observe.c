/* test_observe.c: observe-only rules in the state machine (fsm_params.observe): the idle
 * threshold is told once per silence of the peer, and nothing is ever asked to be sent (no
 * probe, no learning SYN) nor judged (no verdict, no stall). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fsm.h"

#define ISS_OURS 1000u
#define ISS_PEER 5000u

static const struct fsm_params live = {.idle = 1.0, .interval = 0.5, .probes = 3, .probe_bytes = 1};
static const struct fsm_params observe = {
    .idle = 1.0, .interval = 0.5, .probes = 3, .probe_bytes = 1, .observe = true};
static const struct fsm_params observe_stall = {.idle = 1.0,
                                                .interval = 0.5,
                                                .probes = 3,
                                                .probe_bytes = 1,
                                                .stall_timeout = 2.0,
                                                .observe = true};

struct world {
	struct fsm_conn c;
	struct fsm_out out;
	const struct fsm_params *p;
	double now;
	uint32_t ours, peers;
	int events[16];
	double last_event_at[16];
	int sends, learns, wakes;
};

static void record(struct world *w)
{
	for (int i = 0; i < w->out.nev; i++) {
		w->events[w->out.ev[i].type]++;
		w->last_event_at[w->out.ev[i].type] = w->now;
	}
	w->sends += w->out.send_probe;
	w->learns += w->out.learn;
}

static void setup(struct world *w, const struct fsm_params *p)
{
	memset(w, 0, sizeof(*w));
	w->p = p;
	w->now = 100.0;
	w->ours = ISS_OURS;
	w->peers = ISS_PEER;
	fsm_init(&w->c, w->now, p);
}

static void seg(struct world *w, bool from_peer, uint32_t len)
{
	struct codec_tcp s;

	memset(&s, 0, sizeof(s));
	s.family = 2;
	s.flags = CODEC_TH_ACK;
	s.window = 502;
	s.payload_len = len;
	s.seq = from_peer ? w->peers : w->ours;
	s.ack = from_peer ? w->ours : w->peers;
	if (from_peer)
		w->peers += len;
	else
		w->ours += len;
	fsm_on_segment(&w->c, w->p, &s, from_peer, w->now, &w->out);
	record(w);
}

/* We send, the peer answers and acks, we ack: every number is known. */
static void exchange(struct world *w)
{
	seg(w, false, 10);
	seg(w, true, 20);
	seg(w, false, 0);
}

/* Runs the timer as the event loop would, until `until`. */
static void run_until(struct world *w, double until)
{
	while (w->c.timer_at > 0 && w->c.timer_at <= until) {
		w->now = w->c.timer_at;
		fsm_on_timer(&w->c, w->p, w->now, FSM_NEVER_BLIND, &w->out);
		w->wakes++;
		record(w);
	}
	if (w->now < until)
		w->now = until;
}

static void assert_nothing_sent_or_judged(const struct world *w)
{
	assert_int_equal(w->sends, 0);
	assert_int_equal(w->learns, 0);
	assert_int_equal(w->events[FSM_EV_PROBE], 0);
	assert_int_equal(w->events[FSM_EV_DEAD], 0);
	assert_int_equal(w->events[FSM_EV_ALIVE], 0);
	assert_int_equal(w->events[FSM_EV_UNCERTAIN], 0);
	assert_int_equal(w->events[FSM_EV_STALLED], 0);
	assert_int_equal(w->events[FSM_EV_LEARN], 0);
}

static void test_idle_told_once_per_silence(void **state)
{
	struct world w;
	double last_rx;

	(void)state;
	setup(&w, &observe);
	exchange(&w);
	last_rx = w.now;
	run_until(&w, last_rx + 10.0);
	assert_int_equal(w.events[FSM_EV_IDLE], 1);
	assert_float_equal(w.last_event_at[FSM_EV_IDLE], last_rx + 1.0, 1e-9);
	assert_int_equal(w.c.state, FSM_WATCH);
	assert_true(w.wakes <= 11); /* one look per idle while silent, no storm */
	assert_nothing_sent_or_judged(&w);

	seg(&w, true, 5); /* the peer speaks (and our kernel acks): a new silence begins */
	last_rx = w.now;
	seg(&w, false, 0);
	run_until(&w, last_rx + 10.0);
	assert_int_equal(w.events[FSM_EV_IDLE], 2);
	assert_float_equal(w.last_event_at[FSM_EV_IDLE], last_rx + 1.0, 1e-9);
	assert_nothing_sent_or_judged(&w);
}

static void test_discovered_asks_for_nothing(void **state)
{
	struct world w;

	(void)state;
	setup(&w, &observe);
	fsm_init_discovered(&w.c, w.now, 0.4, true, &observe); /* numbers unknown, quiet */
	run_until(&w, w.now + 10.0);
	assert_int_equal(w.events[FSM_EV_IDLE], 1); /* live, it would learn, then probe */
	assert_float_equal(w.last_event_at[FSM_EV_IDLE], 100.0 - 0.4 + 1.0, 1e-9);
	assert_int_equal(w.c.learn, FSM_LEARN_NONE);
	assert_nothing_sent_or_judged(&w);
}

static void test_data_in_flight_is_the_kernels(void **state)
{
	struct world w;

	(void)state;
	setup(&w, &observe);
	exchange(&w);
	seg(&w, false, 100); /* our data, never acknowledged */
	run_until(&w, w.now + 10.0);
	assert_int_equal(w.events[FSM_EV_IDLE], 0); /* live, it would not probe either */
	assert_nothing_sent_or_judged(&w);
}

static void test_no_stall_verdict(void **state)
{
	struct world w;

	(void)state;
	setup(&w, &observe_stall);
	exchange(&w);
	seg(&w, false, 100); /* in flight, the peer silent: live, dead reason=stalled */
	run_until(&w, w.now + 10.0);
	assert_nothing_sent_or_judged(&w);
	assert_int_equal(w.c.state, FSM_WATCH);
}

static void test_round_ends_untold_when_observing_begins(void **state)
{
	struct world w;
	struct fsm_probe pr;

	(void)state;
	setup(&w, &live);
	exchange(&w);
	run_until(&w, w.now + 1.0); /* the round starts: a probe is asked for */
	assert_int_equal(w.sends, 1);
	assert_int_equal(w.c.state, FSM_PROBING);
	w.p = &observe; /* a reload made the rule observe-only */
	assert_false(fsm_probe_now(&w.c, w.p, &pr));
	run_until(&w, w.now + 10.0);
	assert_int_equal(w.sends, 1);
	assert_int_equal(w.events[FSM_EV_IDLE], 1); /* the round's own, told live */
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
	assert_int_equal(w.c.state, FSM_WATCH);
}

static void test_probing_resumes_when_observing_ends(void **state)
{
	struct world w;

	(void)state;
	setup(&w, &observe);
	exchange(&w);
	run_until(&w, w.now + 3.0);
	assert_int_equal(w.events[FSM_EV_IDLE], 1);
	w.p = &live; /* a reload to observe = no (the engine re-arms the timer at once) */
	w.c.timer_at = w.now;
	run_until(&w, w.now + 10.0);
	assert_int_equal(w.events[FSM_EV_IDLE], 2);
	assert_int_equal(w.sends, 3);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_idle_told_once_per_silence),
	    cmocka_unit_test(test_discovered_asks_for_nothing),
	    cmocka_unit_test(test_data_in_flight_is_the_kernels),
	    cmocka_unit_test(test_no_stall_verdict),
	    cmocka_unit_test(test_round_ends_untold_when_observing_begins),
	    cmocka_unit_test(test_probing_resumes_when_observing_ends),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

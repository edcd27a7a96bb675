/* test_fsm.c: the keepalive state machine with a fake clock, through every path. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fsm.h"

#define ISS_OURS 1000u   /* our sequence numbers start here */
#define ISS_PEER 500000u /* the peer's */
/* How long before the first probe numbers are asked for with these params (fsm.c). */
#define LEAD (params.idle / 2 < FSM_LEARN_LEAD ? params.idle / 2 : FSM_LEARN_LEAD)

static const struct fsm_params params = {
    .idle = 1.0, .interval = 0.5, .probes = 3, .probe_bytes = 1};

struct world {
	struct fsm_conn c;
	struct fsm_out out;
	double now;
	uint32_t ours, peers; /* next sequence number of each side */
	int probes_sent;
	int events[16]; /* count per event type, across the whole test */
	double last_event_at[16];
	struct fsm_probe last_probe;
};

static void record(struct world *w)
{
	int i;

	for (i = 0; i < w->out.nev; i++) {
		w->events[w->out.ev[i].type]++;
		w->last_event_at[w->out.ev[i].type] = w->now;
	}
	if (w->out.send_probe) {
		w->probes_sent++;
		w->last_probe = w->out.probe;
	}
}

static struct codec_tcp segment(uint32_t seq, uint32_t ack, uint32_t len, uint8_t flags)
{
	struct codec_tcp s;

	memset(&s, 0, sizeof(s));
	s.family = 2;
	s.seq = seq;
	s.ack = ack;
	s.payload_len = len;
	s.flags = flags;
	s.window = 502;
	return s;
}

/* Our side sends len bytes (or a pure ACK). */
static void ours(struct world *w, uint32_t len)
{
	struct codec_tcp s = segment(w->ours, w->peers, len, CODEC_TH_ACK);

	s.has_ts = 1;
	s.tsval = 7000 + (uint32_t)(w->now * 1000);
	s.tsecr = 9000;
	w->ours += len;
	fsm_on_segment(&w->c, &params, &s, false, w->now, &w->out);
	record(w);
}

/* The peer sends len bytes, acking everything we sent. */
static void peers(struct world *w, uint32_t len)
{
	struct codec_tcp s = segment(w->peers, w->ours, len, CODEC_TH_ACK);

	s.has_ts = 1;
	s.tsval = 9000 + (uint32_t)(w->now * 1000);
	w->peers += len;
	fsm_on_segment(&w->c, &params, &s, true, w->now, &w->out);
	record(w);
}

static void peer_raw(struct world *w, struct codec_tcp s)
{
	fsm_on_segment(&w->c, &params, &s, true, w->now, &w->out);
	record(w);
}

/* An exchange: we send, the peer answers and acks, we ack. Numbers are then known. */
static void exchange(struct world *w)
{
	ours(w, 10);
	peers(w, 20);
	ours(w, 0);
}

static void challenge_ack(struct world *w);

static void setup(struct world *w)
{
	memset(w, 0, sizeof(*w));
	w->now = 100.0;
	w->ours = ISS_OURS;
	w->peers = ISS_PEER;
	fsm_init(&w->c, w->now, &params);
}

/* Runs the timer as the event loop would, until `until` (inclusive). */
/* Runs the timer with a capture blind at `blind`, until `until`. */
static void run_blind(struct world *w, double until, double blind)
{
	while (w->c.timer_at > 0 && w->c.timer_at <= until) {
		w->now = w->c.timer_at;
		fsm_on_timer(&w->c, &params, w->now, blind, &w->out);
		record(w);
	}
	if (w->now < until)
		w->now = until;
}

static void run_until(struct world *w, double until)
{
	run_blind(w, until, FSM_NEVER_BLIND);
}

static void test_dead_at_idle_plus_interval_times_probes(void **state)
{
	struct world w;
	double last_rx;

	(void)state;
	setup(&w);
	exchange(&w);
	w.now += 0.010;
	peers(&w, 0); /* last segment from the peer */
	last_rx = w.now;
	run_until(&w, last_rx + 10);
	assert_int_equal(w.events[FSM_EV_IDLE], 1);
	assert_int_equal(w.probes_sent, 3);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_float_equal(w.last_event_at[FSM_EV_IDLE], last_rx + 1.0, 1e-9);
	assert_float_equal(w.last_event_at[FSM_EV_DEAD], last_rx + 1.0 + 0.5 * 3, 1e-9);
	assert_string_equal(w.out.ev[0].reason, "no-reply");
	assert_int_equal(w.out.ev[0].probes, 3);
	assert_int_equal(w.c.state, FSM_DEAD);
	assert_float_equal(w.c.timer_at, 0, 0);
}

static void test_probe_fields_follow_the_classic_probe(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.now + 1.0);
	assert_int_equal(w.probes_sent, 1);
	assert_int_equal(w.last_probe.seq, w.ours - 1); /* SND.UNA - 1 */
	assert_int_equal(w.last_probe.ack, w.peers);    /* RCV.NXT */
	assert_int_equal(w.last_probe.payload_len, 1);
	assert_int_equal(w.last_probe.window, 502);
	assert_true(w.last_probe.has_ts);
	assert_int_equal(w.last_probe.tsval, w.c.our_tsval);
	assert_int_equal(w.last_probe.tsecr, w.c.peer_tsval);
	assert_int_equal(w.last_probe.n, 1);
}

static void test_zero_byte_probes(void **state)
{
	struct fsm_params p0 = params;
	struct codec_tcp s;
	struct world w;

	(void)state;
	setup(&w);
	p0.probe_bytes = 0;
	exchange(&w);
	w.now = w.c.last_rx + 1.0;
	fsm_on_timer(&w.c, &p0, w.now, FSM_NEVER_BLIND, &w.out);
	assert_true(w.out.send_probe);
	assert_int_equal(w.out.probe.payload_len, 0);
	/* our own 0-byte probe seen leaving is recognised, not learned from */
	s = segment(w.out.probe.seq, w.out.probe.ack, 0, CODEC_TH_ACK);
	fsm_on_segment(&w.c, &p0, &s, false, w.now, &w.out);
	assert_int_equal(w.out.ignored, FSM_IGN_OWN_PROBE);
}

static void test_reply_makes_alive_and_restarts_idle_clock(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.c.last_rx + 1.0); /* first probe */
	w.now += 0.002;
	peers(&w, 0); /* the reply: pure ACK of SND.NXT */
	assert_int_equal(w.events[FSM_EV_ALIVE], 1);
	assert_int_equal(w.out.ev[1].type, FSM_EV_ALIVE);
	assert_float_equal(w.out.ev[1].rtt, 0.002, 1e-9);
	assert_int_equal(w.out.ev[1].probes, 1);
	assert_int_equal(w.c.state, FSM_WATCH);
	assert_false(w.out.rearm); /* lazily: the armed timer fires early and re-arms */
	run_until(&w, w.now + 0.999);
	assert_int_equal(w.probes_sent, 1);
	run_until(&w, w.now + 0.002);
	assert_int_equal(w.probes_sent, 2); /* idle after the reply */
	assert_int_equal(w.events[FSM_EV_IDLE], 2);
}

static void test_own_probe_is_not_learned(void **state)
{
	struct world w;
	struct codec_tcp s;
	uint32_t nxt;

	(void)state;
	setup(&w);
	exchange(&w);
	nxt = w.c.snd_nxt;
	run_until(&w, w.c.last_rx + 1.0);
	s = segment(w.last_probe.seq, w.last_probe.ack, 1, CODEC_TH_ACK);
	fsm_on_segment(&w.c, &params, &s, false, w.now, &w.out);
	assert_int_equal(w.out.ignored, FSM_IGN_OWN_PROBE);
	assert_int_equal(w.c.snd_nxt, nxt);
	assert_int_equal(w.c.state, FSM_PROBING);
}

static void test_valid_rst_is_reset(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.c.last_rx + 1.6); /* two probes out */
	assert_int_equal(w.probes_sent, 2);
	peer_raw(&w, segment(w.peers, 0, 0, CODEC_TH_RST)); /* SEQ = probe's ACK */
	assert_int_equal(w.events[FSM_EV_RESET], 1);
	assert_int_equal(w.out.ev[0].probes, 2);
	assert_int_equal(w.c.state, FSM_CLOSED);
}

static void test_spoofed_rst_is_ignored(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.c.last_rx + 1.0);
	peer_raw(&w, segment(w.peers + 1, 0, 0, CODEC_TH_RST));
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_RST);
	assert_int_equal(w.events[FSM_EV_RESET], 0);
	assert_int_equal(w.c.state, FSM_PROBING);
	run_until(&w, w.now + 5);
	assert_int_equal(w.events[FSM_EV_DEAD], 1); /* and the schedule went on */
}

static void test_spoofed_ack_while_probing_is_no_reply(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.c.last_rx + 1.0);
	/* ACK ahead of SND.NXT: only with exactly RCV.NXT as SEQ is it a reply (a pcap drop
	 * left SND.NXT stale); with any other SEQ it is spoofed */
	peer_raw(&w, segment(w.peers + 1, w.ours + 12345, 0, CODEC_TH_ACK));
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_SEQ);
	peer_raw(&w, segment(w.peers - 100, w.ours + 12345, 0, CODEC_TH_ACK));
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_SEQ);
	peer_raw(&w, segment(w.peers, w.ours - 1, 0, CODEC_TH_ACK));
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_ACK);
	peer_raw(&w, segment(w.peers + 0x50000000u, w.ours, 0, CODEC_TH_ACK));
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_SEQ);
	assert_int_equal(w.events[FSM_EV_ALIVE], 0);
	assert_int_equal(w.c.state, FSM_PROBING);
}

static void test_icmp_is_soft_then_dead_unreachable(void **state)
{
	struct codec_icmp icmp;
	uint8_t router[16] = {192, 0, 2, 254};
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.c.last_rx + 1.0);
	memset(&icmp, 0, sizeof(icmp));
	icmp.type = 3;
	icmp.code = 1;
	memcpy(icmp.from, router, 16);
	icmp.seq = w.last_probe.seq;
	fsm_on_icmp(&w.c, &params, &icmp, w.now + 0.001, &w.out);
	record(&w);
	assert_int_equal(w.out.ev[0].type, FSM_EV_UNREACHABLE);
	assert_int_equal(w.out.ev[0].icmp_code, 1);
	assert_memory_equal(w.out.ev[0].from, router, 4);
	assert_int_equal(w.c.state, FSM_PROBING); /* soft: keep probing */
	run_until(&w, w.now + 5);
	assert_int_equal(w.probes_sent, 3);
	assert_string_equal(w.out.ev[0].reason, "unreachable");
}

/* A router captures an error it forwards twice (arriving, leaving): one per probe. */
static void test_icmp_once_per_probe(void **state)
{
	struct codec_icmp icmp;
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.c.last_rx + 1.0);
	memset(&icmp, 0, sizeof(icmp));
	icmp.type = 3;
	icmp.code = 1;
	icmp.seq = w.last_probe.seq;
	fsm_on_icmp(&w.c, &params, &icmp, w.now + 0.001, &w.out);
	assert_int_equal(w.out.nev, 1);
	assert_int_equal(w.out.ev[0].type, FSM_EV_UNREACHABLE);
	fsm_on_icmp(&w.c, &params, &icmp, w.now + 0.002, &w.out); /* its other copy */
	assert_int_equal(w.out.nev, 0);
	assert_int_equal(w.out.ignored, FSM_IGN_ICMP_MATCH);
	run_until(&w, w.now + params.interval); /* the next probe */
	assert_int_equal(w.probes_sent, 2);
	fsm_on_icmp(&w.c, &params, &icmp, w.now + 0.001, &w.out);
	assert_int_equal(w.out.nev, 1);
	assert_int_equal(w.out.ev[0].type, FSM_EV_UNREACHABLE);
}

static void test_icmp_for_other_seq_is_ignored(void **state)
{
	struct codec_icmp icmp;
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	memset(&icmp, 0, sizeof(icmp));
	icmp.type = 3;
	fsm_on_icmp(&w.c, &params, &icmp, w.now, &w.out);
	assert_int_equal(w.out.ignored, FSM_IGN_ICMP_MATCH); /* not probing */
	run_until(&w, w.c.last_rx + 1.0);
	icmp.seq = w.last_probe.seq + 1;
	fsm_on_icmp(&w.c, &params, &icmp, w.now, &w.out);
	assert_int_equal(w.out.ignored, FSM_IGN_ICMP_MATCH);
	run_until(&w, w.now + 5);
	assert_string_equal(w.out.ev[0].reason, "no-reply");
}

static void test_send_error_is_soft(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.c.last_rx + 1.0);
	fsm_on_send_error(&w.c, 113, w.now, &w.out);
	assert_int_equal(w.out.ev[0].type, FSM_EV_UNREACHABLE);
	assert_int_equal(w.out.ev[0].send_errno, 113);
	run_until(&w, w.now + 5);
	assert_string_equal(w.out.ev[0].reason, "unreachable");
}

static void test_busy_connection_is_never_probed(void **state)
{
	struct world w;
	int i;

	(void)state;
	setup(&w);
	for (i = 0; i < 100; i++) {
		ours(&w, 100);
		run_until(&w, w.now + 0.1);
		peers(&w, 50);
		run_until(&w, w.now + 0.1);
	}
	assert_int_equal(w.probes_sent, 0);
	assert_int_equal(w.events[FSM_EV_IDLE], 0);
}

static void test_no_probe_while_data_in_flight(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	ours(&w, 100); /* never acknowledged */
	run_until(&w, w.now + 10);
	assert_int_equal(w.probes_sent, 0);
	peers(&w, 0); /* acked at last */
	run_until(&w, w.now + 1.0);
	assert_int_equal(w.probes_sent, 1);
}

static void test_one_sided_connection_is_not_probed(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	peers(&w, 10);
	peers(&w, 10);
	run_until(&w, w.now + 10);
	assert_int_equal(w.probes_sent, 0); /* our side never seen: SND.NXT unknown */
	setup(&w);
	ours(&w, 10);
	run_until(&w, w.now + 10);
	assert_int_equal(w.probes_sent, 0); /* the peer never seen: SND.UNA unknown */
}

static void test_unacked_peer_data_blocks_probing(void **state)
{
	struct world w;
	struct codec_tcp s;

	(void)state;
	setup(&w);
	exchange(&w);
	s = segment(w.peers + 100, w.ours, 10, CODEC_TH_ACK); /* out of order: our ACK rules */
	peer_raw(&w, s);
	assert_true(fsm_can_probe(&w.c));
	peers(&w, 10); /* in order, our ACK not seen yet */
	run_until(&w, w.now + 10);
	assert_int_equal(w.probes_sent, 0);
	ours(&w, 0); /* our ACK covers it: certain again */
	run_until(&w, w.now + 0.5);
	assert_int_equal(w.probes_sent, 1);
}

static void test_fin_and_rst_in_traffic_close(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	peer_raw(&w, segment(w.peers, w.ours, 0, CODEC_TH_FIN | CODEC_TH_ACK));
	assert_int_equal(w.events[FSM_EV_CLOSE], 1);
	assert_string_equal(w.out.ev[w.out.nev - 1].reason, "fin");
	assert_int_equal(w.c.state, FSM_CLOSED);
	peers(&w, 0); /* trailing segments are absorbed */
	assert_int_equal(w.out.nev, 0);
	run_until(&w, w.now + FSM_CLOSE_LINGER);
	assert_true(w.out.forget); /* then the record goes */

	setup(&w);
	exchange(&w);
	peer_raw(&w, segment(w.peers, w.ours, 0, CODEC_TH_RST | CODEC_TH_ACK));
	assert_string_equal(w.out.ev[0].reason, "rst");
	assert_int_equal(w.c.state, FSM_CLOSED);

	setup(&w);
	exchange(&w);
	peer_raw(&w, segment(w.peers + 99, w.ours, 0, CODEC_TH_RST)); /* not exact */
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_RST);
	assert_int_equal(w.c.state, FSM_WATCH);
}

static void test_our_rst_closes(void **state)
{
	struct world w;
	struct codec_tcp s;

	(void)state;
	setup(&w);
	exchange(&w);
	s = segment(w.ours, w.peers, 0, CODEC_TH_RST | CODEC_TH_ACK);
	fsm_on_segment(&w.c, &params, &s, false, w.now, &w.out);
	assert_string_equal(w.out.ev[0].reason, "rst");
	assert_int_equal(w.c.state, FSM_CLOSED);
}

static void test_dead_peer_that_returns_is_alive_again(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.now + 10);
	assert_int_equal(w.c.state, FSM_DEAD);
	w.now += 30;
	peers(&w, 0);
	assert_int_equal(w.events[FSM_EV_ALIVE], 1);
	assert_int_equal(w.c.state, FSM_WATCH);
	assert_true(w.out.rearm);
	assert_float_equal(w.c.timer_at, w.now + 1.0, 1e-9);
}

static void test_syn_on_synchronized_connection_is_ignored(void **state)
{
	struct world w;
	struct codec_tcp s;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.c.last_rx + 1.0);
	s = segment(77, 0, 0, CODEC_TH_SYN); /* spoofed, or answered by a challenge ACK */
	peer_raw(&w, s);
	assert_int_equal(w.out.ignored, FSM_IGN_SYN);
	assert_true(fsm_can_probe(&w.c));
	run_until(&w, w.now + 5);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
}

static void test_new_syn_restarts_learning_and_rearms(void **state)
{
	struct world w;
	struct codec_tcp s;

	(void)state;
	setup(&w);
	ours(&w, 10); /* half known: SND.UNA never seen */
	s = segment(77, 0, 0, CODEC_TH_SYN);
	fsm_on_segment(&w.c, &params, &s, false, w.now, &w.out);
	assert_int_equal(w.c.snd_nxt, 78);
	assert_true(w.out.rearm);
	assert_false(fsm_can_probe(&w.c));
}

static void test_spoofed_ack_cannot_revive_dead(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.now + 10);
	assert_int_equal(w.c.state, FSM_DEAD);
	peer_raw(&w, segment(w.peers, w.ours - 90, 0, CODEC_TH_ACK));
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_ACK);
	assert_int_equal(w.c.state, FSM_DEAD);
}

/* A connection seen only from its handshake (we accepted it; nothing sent since): our window
 * is known from no non-SYN segment, so it is asked for with a SYN into our own stack
 * LEAD before the first probe, which then goes out on time (issue 8). */
static void test_handshake_only_learns_window(void **state)
{
	struct world w;
	struct codec_tcp s;
	double last_rx;

	(void)state;
	setup(&w);
	s = segment(w.ours - 1, w.peers + 1, 0, CODEC_TH_SYN | CODEC_TH_ACK); /* our SYN-ACK */
	fsm_on_segment(&w.c, &params, &s, false, w.now, &w.out);
	w.peers++;
	w.now += 0.001;
	peers(&w, 0); /* the handshake's last ACK */
	last_rx = w.now;
	run_until(&w, last_rx + params.idle - LEAD);
	assert_true(w.out.learn);
	assert_int_equal(w.probes_sent, 0); /* never a window we have not seen */
	w.now += 0.001;
	challenge_ack(&w);
	run_until(&w, last_rx + params.idle);
	assert_int_equal(w.probes_sent, 1);
	assert_true(w.last_event_at[FSM_EV_PROBE] == last_rx + params.idle);
	assert_int_equal(w.last_probe.seq, w.ours - 1);
	assert_int_equal(w.last_probe.ack, w.peers);
	assert_int_equal(w.last_probe.window, 502);
}

static void test_resource_error_does_not_count(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.c.last_rx + 1.0);
	fsm_on_send_error(&w.c, ENOBUFS, w.now, &w.out);
	assert_int_equal(w.out.nev, 0);
	assert_int_equal(w.c.probes_out, 0);
	assert_float_equal(w.c.timer_at, w.now + 0.5, 1e-9);
	run_until(&w, w.now + 10);
	assert_int_equal(w.probes_sent, 4); /* the lost one and three real ones */
	assert_string_equal(w.out.ev[0].reason, "no-reply");
}

static void test_data_in_flight_defers_the_verdict(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.c.last_rx + 1.6); /* two probes out */
	ours(&w, 100);                    /* our program writes: the kernel retransmits */
	run_until(&w, w.now + 10);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
	assert_int_equal(w.probes_sent, 2);
}

static void test_late_timer_keeps_interval(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	w.now = w.c.last_rx + 3.0; /* the loop was stalled for 2 s */
	fsm_on_timer(&w.c, &params, w.now, FSM_NEVER_BLIND, &w.out);
	assert_true(w.out.send_probe);
	assert_float_equal(w.c.timer_at, w.now + 0.5, 1e-9);
}

static void test_early_timer_rearms(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	exchange(&w);
	fsm_on_timer(&w.c, &params, w.now + 0.5, FSM_NEVER_BLIND, &w.out);
	assert_false(w.out.send_probe);
	assert_true(w.out.rearm);
	assert_float_equal(w.c.timer_at, w.c.last_rx + 1.0, 1e-9);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(fsm_event_name(FSM_EV_DEAD), "dead");
	assert_string_equal(fsm_event_name(0), "unknown");
	assert_string_equal(fsm_ignore_name(FSM_IGN_BAD_RST), "bad-rst");
	assert_string_equal(fsm_ignore_name(99), "unknown");
}

/* ---- discovered connections: learning the numbers, late starts ---------------------- */

/* A connection found in the kernel's list, idle for `idle` s, nothing in flight. */
static void setup_discovered(struct world *w, double idle)
{
	setup(w);
	fsm_init_discovered(&w->c, w->now, idle, true, &params);
}

/* Our kernel's challenge ACK to the injected SYN: SND.NXT, RCV.NXT, window, TS. */
static void challenge_ack(struct world *w)
{
	ours(w, 0);
}

static void test_discovered_learns_then_probes_on_time(void **state)
{
	struct world w;
	double last_rx = 100.0 - 0.6;

	(void)state;
	setup_discovered(&w, 0.6);
	assert_true(w.c.last_rx == last_rx);
	run_until(&w, w.now); /* due in 0.4 s, inside the lead (idle / 2): ask at once */
	assert_true(w.out.learn);
	assert_int_equal(w.c.learn, FSM_LEARN_ASKED1);
	assert_true(w.c.timer_at > w.now);
	challenge_ack(&w);
	assert_true(fsm_can_probe(&w.c));
	assert_int_equal(w.c.snd_una, ISS_OURS);
	assert_int_equal(w.c.peer_tsval, 9000); /* TS.Recent from the challenge ACK */
	run_until(&w, last_rx + params.idle);
	assert_int_equal(w.probes_sent, 1);
	assert_true(w.last_event_at[FSM_EV_PROBE] == last_rx + params.idle);
	assert_int_equal(w.last_probe.seq, ISS_OURS - 1);
	assert_int_equal(w.last_probe.ack, ISS_PEER);
	assert_int_equal(w.last_probe.tsecr, 9000);
	peers(&w, 0);
	assert_int_equal(w.events[FSM_EV_ALIVE], 1);
	assert_int_equal(w.events[FSM_EV_LEARN], 0);
}

static void test_discovered_learns_ahead_of_time(void **state)
{
	struct world w;

	(void)state;
	setup_discovered(&w, 0.0); /* just active: ask LEAD before the probe */
	assert_true(w.c.timer_at == 100.0 + params.idle - LEAD);
	run_until(&w, w.c.timer_at);
	assert_true(w.out.learn);
}

static void test_own_learn_syn_ignored(void **state)
{
	struct world w;
	struct codec_tcp syn;

	(void)state;
	setup_discovered(&w, 0.5);
	run_until(&w, w.now);
	assert_true(w.out.learn);
	syn = segment(w.out.learn_seq, 0, 0, CODEC_TH_SYN);
	w.now += 0.001;
	peer_raw(&w, syn);
	assert_int_equal(w.out.ignored, FSM_IGN_OWN_PROBE);
	assert_true(w.c.last_rx == 99.5); /* not a sign of life */
	syn.seq++;
	peer_raw(&w, syn); /* another SYN from the peer's address: never wipes the record */
	assert_int_equal(w.out.ignored, FSM_IGN_SYN);
	assert_true(w.c.last_rx == 99.5);
}

static void test_learning_blocked_then_traffic(void **state)
{
	struct world w;
	int learns = 0;

	(void)state;
	setup_discovered(&w, 0.5);
	while (w.now < 105.0 && w.c.timer_at > 0) {
		w.now = w.c.timer_at;
		fsm_on_timer(&w.c, &params, w.now, FSM_NEVER_BLIND, &w.out);
		record(&w);
		learns += w.out.learn;
	}
	assert_int_equal(learns, 2);
	assert_int_equal(w.events[FSM_EV_LEARN], 1);
	assert_int_equal(w.c.learn, FSM_LEARN_BLOCKED);
	assert_int_equal(w.probes_sent, 0); /* never a guessed number */
	exchange(&w);
	run_until(&w, w.now + params.idle);
	assert_int_equal(w.probes_sent, 1);
	assert_int_equal(w.events[FSM_EV_LEARN], 1);
}

/* ---- gateway: a flow found at start with one end silent (fsm_borrow) ------------------ */

/* Record a speaks for the live end (its challenge ACK answered: numbers learnt), record b
 * for the silent one (two SYNs unanswered: blocked). In b's world "ours" is the silent
 * end's side, so its numbers are a's swapped. */
static void setup_pair(struct world *a, struct world *b)
{
	setup_discovered(a, 0.5);
	run_until(a, a->now);
	assert_true(a->out.learn);
	challenge_ack(a);
	assert_true(fsm_can_probe(&a->c));
	setup_discovered(b, 0.5);
	b->ours = ISS_PEER;
	b->peers = ISS_OURS;
	while (b->c.learn != FSM_LEARN_BLOCKED && b->now < 105.0) {
		b->now = b->c.timer_at;
		fsm_on_timer(&b->c, &params, b->now, FSM_NEVER_BLIND, &b->out);
		record(b);
	}
	assert_int_equal(b->c.learn, FSM_LEARN_BLOCKED);
}

static void test_borrow_swaps_numbers_zero_byte_probes(void **state)
{
	struct world a, b;

	(void)state;
	setup_pair(&a, &b);
	assert_false(fsm_borrow(&a.c, &b.c)); /* a is not blocked */
	assert_true(fsm_borrow(&b.c, &a.c));
	assert_false(fsm_borrow(&b.c, &a.c)); /* once */
	assert_int_equal(b.c.guess, FSM_GUESS_BORROWED);
	assert_int_equal(a.c.guess, FSM_GUESS_QUIET);
	assert_true(fsm_can_probe(&b.c));
	/* b probes the live end in the silent one's name: SEQ its RCV.NXT - 1, no byte */
	run_until(&b, b.c.timer_at); /* its next timer */
	assert_int_equal(b.probes_sent, 1);
	assert_int_equal(b.last_probe.seq, ISS_PEER - 1);
	assert_int_equal(b.last_probe.ack, ISS_OURS);
	assert_int_equal(b.last_probe.payload_len, 0);
	assert_int_equal(b.last_probe.tsval, a.c.peer_tsval); /* the silent end's, as echoed */
	assert_int_equal(b.last_probe.tsecr, a.c.our_tsval);
	peers(&b, 0); /* the live end's duplicate ACK */
	assert_int_equal(b.events[FSM_EV_ALIVE], 1);
	/* a probes the silent end: SEQ = the live end's SND.NXT - 1, no byte */
	run_until(&a, a.c.last_rx + params.idle);
	assert_int_equal(a.probes_sent, 1);
	assert_int_equal(a.last_probe.seq, ISS_OURS - 1);
	assert_int_equal(a.last_probe.ack, ISS_PEER);
	assert_int_equal(a.last_probe.payload_len, 0);
	run_until(&a, a.now + 10);
	assert_int_equal(a.events[FSM_EV_DEAD], 1);
	assert_int_equal(a.probes_sent, params.probes); /* a whole round, none counted missed */
	assert_string_equal(a.out.ev[0].reason, "no-reply");
}

static void test_borrow_ends_on_the_ends_own_word(void **state)
{
	struct world a, b;

	(void)state;
	setup_pair(&a, &b);
	assert_true(fsm_borrow(&b.c, &a.c));
	/* the end thought silent answers a's probe, acking exactly what a's end sent */
	run_until(&a, a.c.last_rx + params.idle);
	assert_int_equal(a.last_probe.payload_len, 0);
	peers(&a, 0);
	assert_int_equal(a.events[FSM_EV_ALIVE], 1);
	assert_int_equal(a.c.guess, FSM_GUESS_NONE);
	run_until(&a, a.now + params.idle);
	assert_int_equal(a.last_probe.payload_len, 1); /* confirmed: the usual probe */
	/* b's own end speaks: its numbers are its own from now on, none borrowed */
	ours(&b, 0);
	assert_int_equal(b.c.guess, FSM_GUESS_NONE);
	assert_false(b.c.known & FSM_K_SND_UNA);
	assert_false(fsm_can_probe(&b.c));
}

/* Zero-byte probes on guessed numbers, 100 ms apart: the round lasts until its probes span
 * the peer's 500 ms rate limit before it is judged. */
static void test_borrow_round_spans_rate_limit(void **state)
{
	const struct fsm_params fast = {
	    .idle = 1.0, .interval = 0.1, .probes = 3, .probe_bytes = 1};
	struct world a, b;
	double first = 0;

	(void)state;
	setup_pair(&a, &b);
	assert_true(fsm_borrow(&b.c, &a.c));
	while (a.c.timer_at > 0 && a.now < 110.0 && !a.events[FSM_EV_DEAD]) {
		a.now = a.c.timer_at;
		fsm_on_timer(&a.c, &fast, a.now, FSM_NEVER_BLIND, &a.out);
		record(&a);
		if (a.probes_sent == 1 && first == 0)
			first = a.now;
	}
	assert_int_equal(a.events[FSM_EV_DEAD], 1);
	assert_true(a.probes_sent > fast.probes);
	assert_true(a.last_event_at[FSM_EV_PROBE] - first >= 0.5);
}

/* Our data after the dump: the kernel's "nothing in flight" is void, no SYN is injected
 * and SND.UNA is not assumed; the peer's ACK tells it, then probing goes on. */
static void test_discovered_data_voids_quiet(void **state)
{
	struct world w;

	(void)state;
	setup_discovered(&w, 0.3);
	ours(&w, 10); /* sent after the dump, not acked yet */
	run_until(&w, w.now);
	assert_false(w.out.learn);
	assert_false(fsm_can_probe(&w.c));
	run_until(&w, w.now + 3.0);
	assert_int_equal(w.probes_sent, 0); /* never SEQ = SND.NXT - 1 into new data */
	peers(&w, 0);
	assert_true(fsm_can_probe(&w.c));
	run_until(&w, w.now + params.idle);
	assert_int_equal(w.probes_sent, 1);
	assert_int_equal(w.last_probe.seq, ISS_OURS + 10 - 1);
}

/* One of our data segments was lost to the capture (pcap drop): SND.NXT is stale. The
 * peer's ACKs (exact SEQ = RCV.NXT, ACK ahead) still count, SND.NXT is set right, and a
 * probe round ends alive, not dead. A segment with the ACK ahead but a wrong SEQ does not. */
static void test_stale_snd_nxt_after_capture_drop(void **state)
{
	struct world w;
	struct codec_tcp s;

	(void)state;
	setup(&w);
	exchange(&w);
	w.ours += 100; /* our data, never seen by the capture */
	s = segment(w.peers + 7, w.ours, 0, CODEC_TH_ACK);
	peer_raw(&w, s);
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_SEQ); /* SEQ not exact: not learnt */
	w.now += 0.2;
	peers(&w, 0); /* the peer's ACK of the lost data: SEQ exact */
	assert_int_equal(w.out.ignored, FSM_IGN_NONE);
	assert_int_equal(w.c.snd_nxt, w.ours);
	assert_true(w.c.last_rx == w.now);
	run_until(&w, w.now + params.idle);
	assert_int_equal(w.probes_sent, 1);
	assert_int_equal(w.last_probe.seq, w.ours - 1); /* SND.UNA - 1 with the right SND.UNA */
	peers(&w, 0);
	assert_int_equal(w.events[FSM_EV_ALIVE], 1);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
}

/* Same drop discovered only in the probe round: the reply still proves the peer alive. */
static void test_stale_snd_nxt_reply_to_probe(void **state)
{
	struct world w;
	uint32_t real;

	(void)state;
	setup(&w);
	exchange(&w);
	run_until(&w, w.now + params.idle); /* probe 1 out, with the SND.NXT we know */
	assert_int_equal(w.probes_sent, 1);
	real = w.ours + 50; /* we had sent 50 bytes the capture lost, acked at once */
	w.now += 0.01;
	peer_raw(&w, segment(w.peers, real, 0, CODEC_TH_ACK));
	assert_int_equal(w.events[FSM_EV_ALIVE], 1);
	assert_int_equal(w.c.snd_nxt, real);
	assert_int_equal(w.c.snd_una, real);
	run_until(&w, w.now + params.idle); /* the next round's first probe */
	assert_int_equal(w.probes_sent, 2);
	assert_int_equal(w.last_probe.seq, real - 1);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
}

/* Restarted mid-probing: the verdict comes when the kernel's would have. */
static void test_discovered_overdue_keeps_kernel_time(void **state)
{
	struct world w;
	double last_rx;

	(void)state;
	setup_discovered(&w, 1.6); /* due 0.6 s ago: probe 1 went out, probe 2 is next */
	last_rx = w.c.last_rx;
	run_until(&w, w.now);
	challenge_ack(&w);
	run_until(&w, w.now + 0.01);
	assert_int_equal(w.probes_sent, 1);
	assert_int_equal(w.c.probes_out, 2);
	run_until(&w, last_rx + 3.0);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_true(w.last_event_at[FSM_EV_DEAD] == last_rx + params.idle + 3 * params.interval);
}

/* Found hours overdue: one real probe at least, then dead an interval later. */
static void test_discovered_long_overdue_probes_once(void **state)
{
	struct world w;
	double t0;

	(void)state;
	setup_discovered(&w, 3 * 3600.0);
	run_until(&w, w.now);
	challenge_ack(&w);
	t0 = w.now;
	run_until(&w, t0 + 2.0);
	assert_int_equal(w.probes_sent, 1);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_true(w.last_event_at[FSM_EV_DEAD] == t0 + params.interval);
}

/* ---- capture drops (issue 8): no verdict from a round the capture may not have heard ---- */

static double quiet_peer(struct world *w)
{
	setup(w);
	exchange(w);
	w->now += 0.010;
	peers(w, 0);
	return w->now;
}

static void test_drop_in_round_gives_uncertain_then_dead(void **state)
{
	struct world w;
	double last_rx, drop, dead_at;

	(void)state;
	last_rx = quiet_peer(&w);
	drop = last_rx + params.idle + 0.2; /* after the first probe went out */
	run_blind(&w, last_rx + params.idle + params.interval * params.probes, drop);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
	assert_int_equal(w.events[FSM_EV_UNCERTAIN], 1);
	assert_int_equal(w.probes_sent, params.probes + 1); /* probed again at once */
	assert_int_equal(w.c.state, FSM_PROBING);
	assert_int_equal(w.c.probes_out, 1);
	dead_at = w.now + params.interval * params.probes;
	run_blind(&w, dead_at + 1, drop); /* a round heard whole: the real verdict */
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_true(w.last_event_at[FSM_EV_DEAD] == dead_at);
	assert_int_equal(w.events[FSM_EV_UNCERTAIN], 1);
}

static void test_drop_before_round_does_not_taint(void **state)
{
	struct world w;
	double last_rx;

	(void)state;
	last_rx = quiet_peer(&w);
	run_blind(&w, last_rx + 10, last_rx + 0.5); /* blind while watching: no probe out */
	assert_int_equal(w.events[FSM_EV_UNCERTAIN], 0);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_true(w.last_event_at[FSM_EV_DEAD] ==
	            last_rx + params.idle + params.interval * params.probes);
}

static void test_capture_down_never_judges(void **state)
{
	struct world w;
	double last_rx;

	(void)state;
	last_rx = quiet_peer(&w);
	run_blind(&w, last_rx + 20, INFINITY);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
	assert_true(w.events[FSM_EV_UNCERTAIN] >= 5);
	assert_int_equal(w.c.state, FSM_PROBING);
}

static void test_answer_after_uncertain_is_notable(void **state)
{
	struct world w;
	double last_rx;

	(void)state;
	last_rx = quiet_peer(&w);
	run_blind(&w, last_rx + params.idle + params.interval * params.probes, last_rx + 1.1);
	assert_int_equal(w.events[FSM_EV_UNCERTAIN], 1);
	w.now += 0.001;
	peers(&w, 0);
	assert_int_equal(w.events[FSM_EV_ALIVE], 1);
	assert_true(w.out.ev[1].type == FSM_EV_ALIVE && w.out.ev[1].notable);
}

static void test_alive_notable_only_after_a_miss(void **state)
{
	struct world w;
	double last_rx;

	(void)state;
	last_rx = quiet_peer(&w);
	run_until(&w, last_rx + params.idle);
	w.now += 0.001;
	peers(&w, 0); /* answers the first probe: routine */
	assert_true(w.out.ev[1].type == FSM_EV_ALIVE && !w.out.ev[1].notable);
	run_until(&w, w.now + params.idle + params.interval);
	assert_int_equal(w.c.probes_out, 2);
	w.now += 0.001;
	peers(&w, 0); /* answers the second: the first was missed */
	assert_true(w.out.ev[1].type == FSM_EV_ALIVE && w.out.ev[1].notable);
	run_until(&w, w.now + 10);
	assert_int_equal(w.c.state, FSM_DEAD);
	w.now += 0.001;
	peers(&w, 0); /* back from dead */
	assert_true(w.out.ev[1].type == FSM_EV_ALIVE && w.out.ev[1].notable);
}

static void test_learning_retried_after_drop(void **state)
{
	struct world w;
	int learns = 0;

	(void)state;
	setup_discovered(&w, 0.5);
	while (w.c.timer_at > 0 && w.c.timer_at < 102.3) {
		w.now = w.c.timer_at;
		fsm_on_timer(&w.c, &params, w.now, 100.2, &w.out); /* blind after the first SYN */
		record(&w);
		learns += w.out.learn;
	}
	assert_int_equal(learns, 4); /* the pair heard blind is asked again, not blocked */
	assert_int_equal(w.events[FSM_EV_LEARN], 1);
	assert_int_equal(w.c.learn, FSM_LEARN_ASKED2);
	run_blind(&w, 103, 100.2); /* the second pair was heard whole: blocked */
	assert_int_equal(w.c.learn, FSM_LEARN_BLOCKED);
	assert_int_equal(w.events[FSM_EV_LEARN], 2);
	assert_int_equal(w.probes_sent, 0);
	challenge_ack(&w); /* numbers from traffic later: probing resumes */
	peers(&w, 0);
	run_until(&w, w.now + params.idle);
	assert_int_equal(w.probes_sent, 1);
}

/* ---- paced sending ---- */

static void test_paced_probe_answered_meanwhile(void **state)
{
	struct world w;
	struct fsm_probe pr;
	double last_rx;

	(void)state;
	last_rx = quiet_peer(&w);
	run_until(&w, last_rx + params.idle);
	assert_true(w.out.send_probe);
	w.now += 0.001;
	peers(&w, 0); /* data from the peer before the queued probe left */
	assert_false(fsm_probe_now(&w.c, &params, &pr));
	assert_int_equal(w.c.state, FSM_WATCH);
}

static void test_paced_probe_skipped_when_our_data_in_flight(void **state)
{
	struct world w;
	struct fsm_probe pr;
	double last_rx;

	(void)state;
	last_rx = quiet_peer(&w);
	run_until(&w, last_rx + params.idle);
	assert_int_equal(w.c.probes_out, 1);
	ours(&w, 5); /* our data: the kernel's retransmission timer owns it now */
	assert_false(fsm_probe_now(&w.c, &params, &pr));
	assert_int_equal(w.c.probes_out, 0); /* not counted */
}

static void test_paced_last_probe_gets_half_an_interval(void **state)
{
	struct world w;
	struct fsm_probe pr;
	double last_rx, sent;

	(void)state;
	last_rx = quiet_peer(&w);
	run_until(&w, last_rx + params.idle + params.interval * (params.probes - 1));
	assert_int_equal(w.c.probes_out, params.probes);
	sent = w.now + 0.4; /* the pacer held it 0.4 s */
	assert_true(fsm_probe_now(&w.c, &params, &pr));
	assert_int_equal(pr.seq, w.ours - 1);
	fsm_on_sent(&w.c, &params, false, sent);
	assert_true(w.c.last_probe == sent);
	run_until(&w, sent + params.interval / 2 - 0.01);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
	run_until(&w, sent + params.interval / 2);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
}

/* A short pacing delay does not move the schedule (it counts from the last segment). */
static void test_paced_small_delay_keeps_schedule(void **state)
{
	struct world w;
	struct fsm_probe pr;
	double last_rx;

	(void)state;
	last_rx = quiet_peer(&w);
	run_until(&w, last_rx + params.idle);
	assert_true(fsm_probe_now(&w.c, &params, &pr));
	fsm_on_sent(&w.c, &params, false, w.now + 0.1);
	run_until(&w, last_rx + 10);
	assert_true(w.last_event_at[FSM_EV_DEAD] ==
	            last_rx + params.idle + params.interval * params.probes);
}

static void test_paced_learning_waits_from_send(void **state)
{
	struct world w;
	uint32_t seq;

	(void)state;
	setup_discovered(&w, 0.5);
	run_until(&w, w.now);
	assert_true(w.out.learn);
	assert_true(fsm_learn_now(&w.c, &seq));
	assert_int_equal(seq, w.out.learn_seq);
	fsm_on_sent(&w.c, &params, true, w.now + 0.9); /* held 0.9 s by the pacer */
	assert_true(w.c.timer_at >= w.now + 0.9 + FSM_LEARN_RETRY);
	challenge_ack(&w);
	assert_false(fsm_learn_now(&w.c, &seq)); /* learnt: no second SYN */
}

/* ---- acceptance (issue 9): what Linux would not accept never counts ---- */

static void test_peer_segment_without_ack_ignored(void **state)
{
	struct world w;
	double last_rx;

	(void)state;
	last_rx = quiet_peer(&w);
	run_until(&w, last_rx + params.idle);
	w.now += 0.001;
	peer_raw(&w, segment(w.peers, 0, 1, CODEC_TH_PUSH)); /* no ACK flag */
	assert_int_equal(w.out.ignored, FSM_IGN_NO_ACK);
	assert_int_equal(w.c.state, FSM_PROBING);
	peer_raw(&w, segment(w.peers, 0, 0, CODEC_TH_FIN)); /* an ACK-less FIN */
	assert_int_equal(w.out.ignored, FSM_IGN_NO_ACK);
	assert_int_equal(w.events[FSM_EV_CLOSE], 0);
	run_until(&w, w.now + 10);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
}

static void test_rst_before_numbers_ignored(void **state)
{
	struct world w;

	(void)state;
	setup_discovered(&w, 0.5);
	peer_raw(&w, segment(12345, 0, 0, CODEC_TH_RST));
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_RST);
	assert_int_equal(w.events[FSM_EV_CLOSE], 0);
	assert_int_equal(w.c.state, FSM_WATCH);
}

static void test_names_cover_every_value(void **state)
{
	int i;

	(void)state;
	for (i = 0; i < FSM_IGN_COUNT; i++)
		assert_string_not_equal(fsm_ignore_name(i), "unknown");
	assert_string_equal(fsm_event_name(FSM_EV_UNCERTAIN), "uncertain");
}

/* Random 32-bit numbers for the spoofing tests (xorshift, fixed seed: reproducible). */
static uint32_t rnd(void)
{
	static uint32_t x = 2463534242u;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x;
}

/* Issue 9 item 3: off-path ACKs with random SEQ/ACK never restart the idle clock (Linux would
 * accept about none of them; the old +-2^30 window took one in four). */
static void test_spoofed_acks_never_restart_idle(void **state)
{
	struct world w;
	double last_rx;
	int i;

	(void)state;
	last_rx = quiet_peer(&w);
	for (i = 0; i < 20000; i++) {
		w.now = last_rx + 0.00001 * i;
		peer_raw(&w, segment(rnd(), rnd(), rnd() % 2,
		                     CODEC_TH_ACK | (rnd() % 2 ? CODEC_TH_FIN : 0)));
		assert_int_not_equal(w.out.ignored, FSM_IGN_NONE);
	}
	assert_true(w.c.last_rx == last_rx);
	assert_int_equal(w.events[FSM_EV_CLOSE], 0);
	run_until(&w, last_rx + 10);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_true(w.last_event_at[FSM_EV_DEAD] ==
	            last_rx + params.idle + params.interval * params.probes);
}

/* Issue 9 item 1: a dead peer stays dead whatever off-path segments say. */
static void test_spoofed_segments_never_revive_dead(void **state)
{
	struct world w;
	double last_rx;
	int i;

	(void)state;
	last_rx = quiet_peer(&w);
	run_until(&w, last_rx + params.idle + params.interval);
	for (i = 0; i < 5000; i++) /* during the round, then after the verdict */
		peer_raw(&w, segment(rnd(), rnd(), rnd() % 3, (uint8_t)(rnd() & 0x3b)));
	run_until(&w, last_rx + 10);
	for (i = 0; i < 5000; i++)
		peer_raw(&w, segment(rnd(), rnd(), rnd() % 3, (uint8_t)(rnd() & 0x3b)));
	assert_int_equal(w.events[FSM_EV_ALIVE], 0);
	assert_int_equal(w.events[FSM_EV_RESET], 0);
	assert_int_equal(w.events[FSM_EV_CLOSE], 0);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_int_equal(w.c.state, FSM_DEAD);
}

/* Issue 9 item 4: before the challenge ACK taught our numbers, nothing from the peer's side
 * sets SND.UNA (one spoofed ACK used to leave SND.UNA != SND.NXT for good). */
static void test_nothing_counts_before_our_numbers(void **state)
{
	struct world w;

	(void)state;
	setup_discovered(&w, 0.5);
	peer_raw(&w, segment(rnd(), w.ours + 777, 0, CODEC_TH_ACK));
	assert_int_equal(w.out.ignored, FSM_IGN_UNVERIFIED);
	assert_false(w.c.known & FSM_K_SND_UNA);
	assert_true(w.c.last_rx == 99.5);
	run_until(&w, w.now);
	assert_true(w.out.learn);
	challenge_ack(&w);
	assert_true(fsm_can_probe(&w.c));
	run_until(&w, 99.5 + params.idle);
	assert_int_equal(w.probes_sent, 1);
}

/* The peer's own keepalive probe (SEQ = RCV.NXT - 1, 0 or 1 byte) is a sign of life. */
static void test_peer_keepalive_is_life(void **state)
{
	struct world w;
	double last_rx;

	(void)state;
	last_rx = quiet_peer(&w);
	w.now = last_rx + 0.7;
	peer_raw(&w, segment(w.peers - 1, w.ours, 0, CODEC_TH_ACK));
	assert_int_equal(w.out.ignored, FSM_IGN_NONE);
	assert_true(w.c.last_rx == w.now);
	w.now += 0.1;
	peer_raw(&w, segment(w.peers - 1, w.ours, 1, CODEC_TH_ACK));
	assert_true(w.c.last_rx == w.now);
	peer_raw(&w, segment(w.peers - 2, w.ours, 2, CODEC_TH_ACK)); /* not a probe */
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_SEQ);
}

/* RFC 5961 5.2: an ACK older than SND.UNA - MAX.SND.WND is not acceptable. */
static void test_ancient_ack_rejected(void **state)
{
	struct world w;

	(void)state;
	quiet_peer(&w);
	peer_raw(&w, segment(w.peers, w.ours - 0x40000000u, 0, CODEC_TH_ACK));
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_ACK);
	peer_raw(&w, segment(w.peers, w.ours + 0x50000000u, 0, CODEC_TH_ACK)); /* far future */
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_ACK);
}

/* A record seen only from our side is never probed until the peer proves it exists. */
static void test_unconfirmed_never_probed(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	ours(&w, 10);
	ours(&w, 0);
	run_until(&w, w.now + 20);
	assert_int_equal(w.probes_sent, 0);
	assert_false(w.out.learn);
	assert_false(w.c.known & FSM_K_CONFIRMED);
	w.now += 0.001;
	peers(&w, 0); /* exact: the real peer */
	assert_true(w.c.known & FSM_K_CONFIRMED);
	run_until(&w, w.now + params.idle);
	assert_int_equal(w.probes_sent, 1);
}

/* Our connect(): our SYN, the peer's SYN-ACK (exactly our ISS + 1), our ACK, then nothing:
 * probed at last-received + idle (issue 8, the connecting side). */
static void test_client_handshake_only(void **state)
{
	struct world w;
	struct codec_tcp s;
	double last_rx;

	(void)state;
	setup(&w);
	s = segment(w.ours - 1, 0, 0, CODEC_TH_SYN); /* our SYN */
	fsm_on_segment(&w.c, &params, &s, false, w.now, &w.out);
	w.now += 0.001;
	s = segment(w.peers - 1, w.ours + 1, 0, CODEC_TH_SYN | CODEC_TH_ACK); /* wrong ACK */
	peer_raw(&w, s);
	assert_int_equal(w.out.ignored, FSM_IGN_SYN);
	s.ack = w.ours;
	peer_raw(&w, s);
	assert_int_equal(w.out.ignored, FSM_IGN_NONE);
	assert_true(w.c.known & FSM_K_CONFIRMED);
	last_rx = w.now;
	w.now += 0.0001;
	ours(&w, 0); /* the handshake's last ACK: window, RCV.NXT */
	run_until(&w, last_rx + params.idle);
	assert_int_equal(w.probes_sent, 1);
	assert_true(w.last_event_at[FSM_EV_PROBE] == last_rx + params.idle);
	assert_int_equal(w.last_probe.seq, w.ours - 1);
	assert_int_equal(w.last_probe.ack, w.peers);
}

/* Peer data that came before our numbers were known is vouched for by our kernel's ACK of
 * exactly its end: its time is the last segment received (a discovered connection whose
 * learning was blocked, then traffic). */
static void test_unverified_data_vouched_by_our_ack(void **state)
{
	struct world w;
	double t1;

	(void)state;
	setup_discovered(&w, 5.0); /* overdue, numbers unknown */
	w.c.learn = FSM_LEARN_BLOCKED;
	w.now += 0.5;
	t1 = w.now;
	peer_raw(&w, segment(w.peers, w.ours, 100, CODEC_TH_ACK | CODEC_TH_PUSH));
	assert_int_equal(w.out.ignored, FSM_IGN_UNVERIFIED);
	w.peers += 100;
	w.now += 0.002;
	ours(&w, 0); /* our kernel ACKs exactly its end */
	assert_true(w.c.last_rx > t1 - 0.0001 && w.c.last_rx < t1 + 0.0001);
	run_until(&w, t1 + params.idle - 0.01);
	assert_int_equal(w.probes_sent, 0); /* not overdue any more */
	run_until(&w, t1 + params.idle + 0.001);
	assert_int_equal(w.probes_sent, 1);
}

/* A spoofed data segment is never vouched for: our kernel does not ACK its end. */
static void test_spoofed_data_not_vouched(void **state)
{
	struct world w;
	double last_rx;

	(void)state;
	last_rx = quiet_peer(&w);
	w.now += 0.3;
	peer_raw(&w, segment(w.peers + 5000, w.ours, 100, CODEC_TH_ACK));
	assert_int_equal(w.out.ignored, FSM_IGN_BAD_SEQ);
	w.now += 0.001;
	ours(&w, 0); /* our ACK stays at RCV.NXT */
	assert_true(w.c.last_rx == last_rx);
	run_until(&w, last_rx + 10);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
}

/* A learning SYN that could not be sent is no try: never "blocked" from our own errors. */
static void test_learn_send_error_is_no_try(void **state)
{
	struct world w;
	int i;

	(void)state;
	setup_discovered(&w, 0.5);
	for (i = 0; i < 10; i++) {
		run_until(&w, w.c.timer_at);
		assert_true(w.out.learn);
		fsm_on_learn_error(&w.c, w.now, &w.out);
		assert_true(w.out.rearm);
		assert_true(w.c.timer_at == w.now + 0.5);
	}
	assert_int_equal(w.events[FSM_EV_LEARN], 0);
	assert_int_equal(w.c.learn, FSM_LEARN_NONE);
}

/* A probe the pacer held longer than an interval is not followed at once by the next. */
static void test_paced_late_probe_not_doubled(void **state)
{
	struct world w;
	double last_rx, sent;

	(void)state;
	last_rx = quiet_peer(&w);
	run_until(&w, last_rx + params.idle);
	assert_int_equal(w.probes_sent, 1);
	sent = w.now + 2 * params.interval; /* held two intervals */
	fsm_on_sent(&w.c, &params, false, sent);
	run_until(&w, sent - 0.001);
	assert_int_equal(w.probes_sent, 1);
	w.now = sent + 0.0002;
	peers(&w, 0); /* the answer to the (late) first probe */
	assert_true(w.out.ev[1].type == FSM_EV_ALIVE && !w.out.ev[1].notable);
}

/* ---- stalls: stall_timeout ------------------------------------------------------ */

static const struct fsm_params sparams = {
    .idle = 10.0, .interval = 1.0, .probes = 3, .probe_bytes = 1, .stall_timeout = 3.0};

static void s_seg(struct world *w, struct codec_tcp s, bool from_peer)
{
	fsm_on_segment(&w->c, &sparams, &s, from_peer, w->now, &w->out);
	record(w);
}

/* Our data of len bytes at SEQ seq (a retransmission when below w->ours). */
static void s_data(struct world *w, uint32_t seq, uint32_t len)
{
	struct codec_tcp s = segment(seq, w->peers, len, CODEC_TH_ACK);

	if (seq + len - w->ours < 0x80000000u)
		w->ours = seq + len;
	s_seg(w, s, false);
}

/* The peer acks up to ack, advertising window win. */
static void s_ack(struct world *w, uint32_t ack, uint16_t win)
{
	struct codec_tcp s = segment(w->peers, ack, 0, CODEC_TH_ACK);

	s.window = win;
	s_seg(w, s, true);
}

/* Runs the machine's wakeups (fsm_wake_at) until `until`. */
static void s_run(struct world *w, double until, double blind)
{
	double at;

	while ((at = fsm_wake_at(&w->c, &sparams)) > 0 && at <= until) {
		w->now = at > w->now ? at : w->now;
		fsm_on_timer(&w->c, &sparams, w->now, blind, &w->out);
		record(w);
	}
	if (w->now < until)
		w->now = until;
}

static void s_setup(struct world *w)
{
	struct codec_tcp s;

	setup(w);
	fsm_init(&w->c, w->now, &sparams);
	s_data(w, w->ours, 10);
	s = segment(w->peers, w->ours, 20, CODEC_TH_ACK);
	w->peers += 20;
	s_seg(w, s, true);
	s_data(w, w->ours, 0);
}

/* Our data goes unanswered: dead reason=stalled at the first unacked segment + timeout,
 * with the bytes in flight and our retransmissions counted. */
static void test_stall_retransmit_is_dead_at_timeout(void **state)
{
	struct world w;
	uint32_t seq;
	double t0;

	(void)state;
	s_setup(&w);
	w.now += 1.0;
	t0 = w.now;
	seq = w.ours;
	s_data(&w, seq, 1000);
	assert_true(fsm_wake_at(&w.c, &sparams) == t0 + 3.0);
	w.now = t0 + 0.2;
	s_data(&w, seq, 1000);
	w.now = t0 + 0.6;
	s_data(&w, seq, 1000);
	s_run(&w, t0 + 2.99, FSM_NEVER_BLIND);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
	s_run(&w, t0 + 3.0, FSM_NEVER_BLIND);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_true(w.last_event_at[FSM_EV_DEAD] == t0 + 3.0);
	assert_string_equal(w.out.ev[0].reason, "stalled");
	assert_int_equal(w.out.ev[0].unacked, 1000);
	assert_int_equal(w.out.ev[0].retransmits, 2);
	assert_true(fabs(w.out.ev[0].since - 3.0) < 1e-9);
	assert_int_equal(w.c.state, FSM_DEAD);
	assert_true(fsm_wake_at(&w.c, &sparams) == 0);
	assert_int_equal(w.probes_sent, 0); /* data in flight: never a keepalive probe */
}

/* Any answer from the peer restarts the clock while data remains in flight; an ACK of
 * everything stops it: slow progress is never a stall. */
static void test_stall_progress_restarts_the_clock(void **state)
{
	struct world w;
	uint32_t seq;
	double t0;

	(void)state;
	s_setup(&w);
	t0 = w.now;
	seq = w.ours;
	s_data(&w, seq, 3000);
	w.now = t0 + 2.5;
	s_ack(&w, seq + 1000, 500); /* progress: the rest gets a new clock */
	s_run(&w, t0 + 5.49, FSM_NEVER_BLIND);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
	s_run(&w, t0 + 5.5, FSM_NEVER_BLIND);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_int_equal(w.out.ev[0].unacked, 2000);

	s_setup(&w);
	t0 = w.now;
	seq = w.ours;
	s_data(&w, seq, 3000);
	w.now = t0 + 2.5;
	s_ack(&w, seq + 1000, 500);
	w.now = t0 + 5.0;
	s_ack(&w, seq + 3000, 500); /* everything acked: the clock stops */
	assert_int_equal(w.c.stall, FSM_STALL_NONE);
	s_run(&w, t0 + 9.0, FSM_NEVER_BLIND);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
	/* new data, then silence: 3 s from that data */
	t0 = w.now;
	s_data(&w, w.ours, 100);
	s_run(&w, t0 + 3.0, FSM_NEVER_BLIND);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_true(w.last_event_at[FSM_EV_DEAD] == t0 + 3.0);
}

/* The peer keeps its window shut while our kernel probes it: stalled (not dead) at the
 * timeout, unstalled when it opens; the connection stays watched. */
static void test_stall_zero_window_told_and_ended(void **state)
{
	struct world w;
	double t0;
	int i;

	(void)state;
	s_setup(&w);
	s_data(&w, w.ours, 500);
	t0 = w.now;
	s_ack(&w, w.ours, 0); /* all acked, window shut */
	assert_int_equal(w.c.stall, FSM_STALL_ZW);
	for (i = 0; i < 3; i++) { /* zero-window probes (SEQ = SND.UNA - 1), each answered */
		w.now = t0 + 0.2 * (1 << i);
		s_seg(&w, segment(w.ours - 1, w.peers, 0, CODEC_TH_ACK), false);
		s_ack(&w, w.ours, 0);
	}
	s_run(&w, t0 + 2.99, FSM_NEVER_BLIND);
	assert_int_equal(w.events[FSM_EV_STALLED], 0);
	s_run(&w, t0 + 3.0, FSM_NEVER_BLIND);
	assert_int_equal(w.events[FSM_EV_STALLED], 1);
	assert_string_equal(w.out.ev[0].reason, "zero-window");
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
	assert_int_equal(w.c.state, FSM_WATCH);
	s_run(&w, t0 + 6.0, FSM_NEVER_BLIND); /* told once */
	assert_int_equal(w.events[FSM_EV_STALLED], 1);
	w.now = t0 + 7.0;
	s_ack(&w, w.ours, 4000); /* the program reads again */
	assert_int_equal(w.events[FSM_EV_UNSTALLED], 1);
	assert_true(fabs(w.out.ev[0].since - 7.0) < 1e-9);
	assert_int_equal(w.c.stall, FSM_STALL_NONE);
}

/* A shut window with nothing of ours waiting (no zero-window probe) is no stall; the first
 * zero-window probe after the timeout tells it. A window that opens in time tells nothing. */
static void test_stall_zero_window_needs_our_probe(void **state)
{
	struct world w;
	double t0;

	(void)state;
	s_setup(&w);
	t0 = w.now;
	s_ack(&w, w.ours, 0);
	s_run(&w, t0 + 5.0, FSM_NEVER_BLIND);
	assert_int_equal(w.events[FSM_EV_STALLED], 0);
	s_seg(&w, segment(w.ours - 1, w.peers, 0, CODEC_TH_ACK), false);
	assert_int_equal(w.events[FSM_EV_STALLED], 1);

	s_setup(&w);
	t0 = w.now;
	s_ack(&w, w.ours, 0);
	w.now = t0 + 1.0;
	s_seg(&w, segment(w.ours - 1, w.peers, 0, CODEC_TH_ACK), false);
	w.now = t0 + 2.0;
	s_ack(&w, w.ours, 100);
	s_run(&w, t0 + 8.0, FSM_NEVER_BLIND);
	assert_int_equal(w.events[FSM_EV_STALLED], 0);
	assert_int_equal(w.events[FSM_EV_UNSTALLED], 0);
}

/* A capture blind since the clock started may have missed the peer's answer: no verdict,
 * the clock starts again. */
static void test_stall_blind_is_uncertain(void **state)
{
	struct world w;
	double t0;

	(void)state;
	s_setup(&w);
	t0 = w.now;
	s_data(&w, w.ours, 100);
	s_run(&w, t0 + 3.0, t0 + 1.0);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
	assert_int_equal(w.events[FSM_EV_UNCERTAIN], 1);
	s_run(&w, t0 + 6.0, t0 + 1.0);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_true(w.last_event_at[FSM_EV_DEAD] == t0 + 6.0);
}

/* stall_timeout set: an idle connection is probed and judged exactly as without it; a spoofed
 * segment (wrong SEQ) does not restart the stall clock. */
static void test_stall_idle_unchanged_and_spoof_ignored(void **state)
{
	struct world w;
	double last;
	uint32_t seq;
	struct codec_tcp bad;

	(void)state;
	s_setup(&w);
	last = w.now;
	s_run(&w, last + 10.0 + 3 * 1.0, FSM_NEVER_BLIND);
	assert_int_equal(w.probes_sent, 3);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_true(w.last_event_at[FSM_EV_IDLE] == last + 10.0);
	assert_true(w.last_event_at[FSM_EV_DEAD] == last + 13.0);
	assert_string_equal(w.out.ev[0].reason, "no-reply");

	s_setup(&w);
	seq = w.ours;
	last = w.now;
	s_data(&w, seq, 100);
	w.now = last + 2.0;
	bad = segment(w.peers + 7, seq + 100, 0, CODEC_TH_ACK);
	s_seg(&w, bad, true);
	s_run(&w, last + 3.0, FSM_NEVER_BLIND);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
}

/* A discovered connection with data in flight and a silent peer: its numbers are unknown,
 * so the kernel's tcp_info decides its stall; once the capture knows them, it decides. */
static void test_stall_from_the_kernel(void **state)
{
	struct world w;

	(void)state;
	setup(&w);
	fsm_init_discovered(&w.c, w.now, 0.5, false, &sparams);
	fsm_on_kernel_stall(&w.c, &sparams, w.now, 2.9, 1000, 3, &w.out);
	record(&w);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
	fsm_on_kernel_stall(&w.c, &params, w.now, 9.0, 1000, 3, &w.out); /* stall_timeout 0 */
	record(&w);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
	fsm_on_kernel_stall(&w.c, &sparams, w.now, 3.5, 1000, 3, &w.out);
	record(&w);
	assert_int_equal(w.events[FSM_EV_DEAD], 1);
	assert_string_equal(w.out.ev[0].reason, "stalled");
	assert_true(w.out.ev[0].since == 3.5);
	assert_int_equal(w.out.ev[0].unacked, 1000);
	assert_int_equal(w.out.ev[0].retransmits, 3);
	assert_int_equal(w.c.state, FSM_DEAD);

	s_setup(&w); /* numbers known: the capture decides */
	s_data(&w, w.ours, 100);
	fsm_on_kernel_stall(&w.c, &sparams, w.now, 30.0, 100, 3, &w.out);
	record(&w);
	assert_int_equal(w.events[FSM_EV_DEAD], 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_discovered_learns_then_probes_on_time),
	    cmocka_unit_test(test_discovered_learns_ahead_of_time),
	    cmocka_unit_test(test_own_learn_syn_ignored),
	    cmocka_unit_test(test_learning_blocked_then_traffic),
	    cmocka_unit_test(test_borrow_swaps_numbers_zero_byte_probes),
	    cmocka_unit_test(test_borrow_ends_on_the_ends_own_word),
	    cmocka_unit_test(test_borrow_round_spans_rate_limit),
	    cmocka_unit_test(test_discovered_overdue_keeps_kernel_time),
	    cmocka_unit_test(test_discovered_data_voids_quiet),
	    cmocka_unit_test(test_stale_snd_nxt_after_capture_drop),
	    cmocka_unit_test(test_stale_snd_nxt_reply_to_probe),
	    cmocka_unit_test(test_discovered_long_overdue_probes_once),
	    cmocka_unit_test(test_dead_at_idle_plus_interval_times_probes),
	    cmocka_unit_test(test_probe_fields_follow_the_classic_probe),
	    cmocka_unit_test(test_zero_byte_probes),
	    cmocka_unit_test(test_reply_makes_alive_and_restarts_idle_clock),
	    cmocka_unit_test(test_own_probe_is_not_learned),
	    cmocka_unit_test(test_valid_rst_is_reset),
	    cmocka_unit_test(test_spoofed_rst_is_ignored),
	    cmocka_unit_test(test_spoofed_ack_while_probing_is_no_reply),
	    cmocka_unit_test(test_icmp_is_soft_then_dead_unreachable),
	    cmocka_unit_test(test_icmp_once_per_probe),
	    cmocka_unit_test(test_icmp_for_other_seq_is_ignored),
	    cmocka_unit_test(test_send_error_is_soft),
	    cmocka_unit_test(test_busy_connection_is_never_probed),
	    cmocka_unit_test(test_no_probe_while_data_in_flight),
	    cmocka_unit_test(test_one_sided_connection_is_not_probed),
	    cmocka_unit_test(test_unacked_peer_data_blocks_probing),
	    cmocka_unit_test(test_fin_and_rst_in_traffic_close),
	    cmocka_unit_test(test_our_rst_closes),
	    cmocka_unit_test(test_dead_peer_that_returns_is_alive_again),
	    cmocka_unit_test(test_syn_on_synchronized_connection_is_ignored),
	    cmocka_unit_test(test_new_syn_restarts_learning_and_rearms),
	    cmocka_unit_test(test_spoofed_ack_cannot_revive_dead),
	    cmocka_unit_test(test_handshake_only_learns_window),
	    cmocka_unit_test(test_resource_error_does_not_count),
	    cmocka_unit_test(test_data_in_flight_defers_the_verdict),
	    cmocka_unit_test(test_late_timer_keeps_interval),
	    cmocka_unit_test(test_early_timer_rearms),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_drop_in_round_gives_uncertain_then_dead),
	    cmocka_unit_test(test_drop_before_round_does_not_taint),
	    cmocka_unit_test(test_capture_down_never_judges),
	    cmocka_unit_test(test_answer_after_uncertain_is_notable),
	    cmocka_unit_test(test_alive_notable_only_after_a_miss),
	    cmocka_unit_test(test_learning_retried_after_drop),
	    cmocka_unit_test(test_paced_probe_answered_meanwhile),
	    cmocka_unit_test(test_paced_probe_skipped_when_our_data_in_flight),
	    cmocka_unit_test(test_paced_last_probe_gets_half_an_interval),
	    cmocka_unit_test(test_paced_learning_waits_from_send),
	    cmocka_unit_test(test_peer_segment_without_ack_ignored),
	    cmocka_unit_test(test_rst_before_numbers_ignored),
	    cmocka_unit_test(test_names_cover_every_value),
	    cmocka_unit_test(test_spoofed_acks_never_restart_idle),
	    cmocka_unit_test(test_spoofed_segments_never_revive_dead),
	    cmocka_unit_test(test_nothing_counts_before_our_numbers),
	    cmocka_unit_test(test_peer_keepalive_is_life),
	    cmocka_unit_test(test_ancient_ack_rejected),
	    cmocka_unit_test(test_unconfirmed_never_probed),
	    cmocka_unit_test(test_client_handshake_only),
	    cmocka_unit_test(test_unverified_data_vouched_by_our_ack),
	    cmocka_unit_test(test_spoofed_data_not_vouched),
	    cmocka_unit_test(test_learn_send_error_is_no_try),
	    cmocka_unit_test(test_paced_late_probe_not_doubled),
	    cmocka_unit_test(test_paced_small_delay_keeps_schedule),
	    cmocka_unit_test(test_stall_retransmit_is_dead_at_timeout),
	    cmocka_unit_test(test_stall_progress_restarts_the_clock),
	    cmocka_unit_test(test_stall_zero_window_told_and_ended),
	    cmocka_unit_test(test_stall_zero_window_needs_our_probe),
	    cmocka_unit_test(test_stall_blind_is_uncertain),
	    cmocka_unit_test(test_stall_idle_unchanged_and_spoof_ignored),
	    cmocka_unit_test(test_stall_from_the_kernel),
	};

	return cmocka_run_group_tests_name("fsm", tests, NULL, NULL);
}

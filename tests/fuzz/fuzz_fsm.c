/* fuzz_fsm.c: libFuzzer target for the keepalive state machine, driven by a script of
 * segments (ours and the peer's), timers, ICMP errors, send errors and paced sends, on a
 * fake clock. After every step it checks what the machine promises (issue 9):
 * - a probe is only ever SEQ = SND.UNA - 1, ACK = RCV.NXT, on a confirmed connection whose
 *   numbers are all known, with nothing in flight;
 * - alive only from a peer segment with the exact SEQ (or our ACK vouching for one), reset
 *   only from a RST with the probe's ACK as SEQ, dead only from a timer with every probe of a
 *   round out and the capture not blind since the round began;
 * - the state and counters stay in range;
 * - numbers borrowed from a gateway partner (fsm_borrow) only ever go out without a byte.
 * Input: a sequence of steps, each one opcode byte and the bytes its fields need. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fsm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
	const uint8_t *p;
	size_t n;
};

static uint32_t take(struct input *in, int bytes)
{
	uint32_t v = 0;

	while (bytes-- > 0) {
		v = v << 8 | (in->n ? *in->p : 0);
		if (in->n) {
			in->p++;
			in->n--;
		}
	}
	return v;
}

/* The world the script runs in: small base numbers, so that exact values come up often. */
struct world {
	struct fsm_conn c;
	struct fsm_params p;
	double now, blind;
	uint32_t ours, peers;
};

/* A number near a known one (exact, +-1, small offset) or anything. */
static uint32_t near(struct input *in, uint32_t base)
{
	uint8_t how = (uint8_t)take(in, 1);

	switch (how & 3) {
	case 0:
		return base;
	case 1:
		return base - 1;
	case 2:
		return base + (uint32_t)(int8_t)take(in, 1);
	default:
		return take(in, 4);
	}
}

static struct codec_tcp segment(struct input *in, struct world *w, bool peer)
{
	struct codec_tcp s;

	memset(&s, 0, sizeof(s));
	s.family = 2;
	s.flags = (uint8_t)take(in, 1) & 0x3f;
	s.seq = near(in, peer ? w->c.rcv_nxt : w->c.snd_nxt);
	s.ack = near(in, peer ? w->c.snd_nxt : w->c.rcv_nxt);
	s.payload_len = take(in, 1) % 4;
	s.window = (uint16_t)take(in, 2);
	s.has_ts = take(in, 1) & 1;
	s.tsval = take(in, 2);
	s.tsecr = take(in, 2);
	return s;
}

static void fail_if(bool bad)
{
	if (bad)
		abort();
}

/* The promises about one step's output, given the state before it. */
static void check_out(const struct fsm_conn *pre, const struct fsm_conn *c,
                      const struct fsm_params *p, const struct fsm_out *out, int op,
                      const struct codec_tcp *s, double blind)
{
	bool exact =
	    s && (s->seq == pre->rcv_nxt || (s->seq == pre->rcv_nxt - 1 && s->payload_len <= 1));
	bool vouched = s && op == 0 && (pre->known & FSM_K_PENDING) && s->ack == pre->pend_end;
	bool synack = s && op == 1 && (s->flags & CODEC_TH_SYN) && s->ack == pre->snd_nxt;
	int i;

	/* (a round of zero-byte probes on guessed numbers spans 0.55 s: interval >= 0.1 s) */
	fail_if(c->state >= FSM_STATE_COUNT || c->probes_out > p->probes + 8);
	fail_if(c->probes_out > p->probes && c->guess == FSM_GUESS_NONE &&
	        pre->guess == FSM_GUESS_NONE && pre->probes_out <= p->probes);
	fail_if(p->observe && (out->send_probe || out->learn)); /* observe-only sends nothing */
	if (out->send_probe) {
		fail_if(!(c->known & FSM_K_CONFIRMED) || !fsm_can_probe(c));
		fail_if(out->probe.seq != c->snd_una - 1 || out->probe.ack != c->rcv_nxt);
		fail_if(out->probe.payload_len && c->guess != FSM_GUESS_NONE);
		fail_if(c->state != FSM_PROBING);
	}
	for (i = 0; i < out->nev; i++) {
		switch (out->ev[i].type) {
		case FSM_EV_ALIVE:
			fail_if(!(op == 1 && (exact || synack)) && !vouched);
			break;
		case FSM_EV_RESET:
			fail_if(op != 1 || !(s->flags & CODEC_TH_RST) || s->seq != pre->probe_ack ||
			        pre->state != FSM_PROBING);
			break;
		case FSM_EV_DEAD:
			fail_if(p->observe); /* observe-only judges nothing */
			if (out->ev[i].reason && strcmp(out->ev[i].reason, "stalled") == 0) {
				/* a retransmission stall: our data in flight, heard whole */
				fail_if(op != 2 || p->stall_timeout <= 0 ||
				        blind >= pre->stall_since || pre->stall != FSM_STALL_RTX ||
				        pre->snd_una == pre->snd_nxt);
				break;
			}
			fail_if(op != 2 || pre->probes_out < p->probes || blind >= pre->round_at);
			break;
		case FSM_EV_PROBE:
		case FSM_EV_STALLED:
		case FSM_EV_UNCERTAIN:
			fail_if(p->observe);
			break;
		case FSM_EV_CLOSE:
			fail_if(op == 1 && !exact &&
			        !(s->flags & CODEC_TH_RST && s->seq == pre->rcv_nxt));
			break;
		}
	}
}

static void step(struct world *w, struct input *in)
{
	uint8_t op = (uint8_t)take(in, 1);
	struct fsm_conn pre = w->c, from;
	struct codec_tcp s, *sp = NULL;
	struct codec_icmp icmp;
	struct fsm_probe pr;
	struct fsm_out out;
	uint32_t seq;

	w->now += (double)take(in, 1) * 0.01;
	memset(&out, 0, sizeof(out));
	switch (op % 10) {
	case 0: /* our segment */
	case 1: /* the peer's */
		s = segment(in, w, op % 10 == 1);
		sp = &s;
		fsm_on_segment(&w->c, &w->p, &s, op % 10 == 1, w->now, &out);
		break;
	case 2: /* the timer (maybe early, maybe with a blind capture) */
		if (take(in, 1) & 1)
			w->blind = take(in, 1) & 1 ? INFINITY : w->now - (double)take(in, 1) * 0.01;
		if (fsm_wake_at(&w->c, &w->p) > w->now && (take(in, 1) & 1))
			w->now = fsm_wake_at(&w->c, &w->p);
		fsm_on_timer(&w->c, &w->p, w->now, w->blind, &out);
		break;
	case 3:
		memset(&icmp, 0, sizeof(icmp));
		icmp.family = 2;
		icmp.type = 3;
		icmp.code = (uint8_t)take(in, 1);
		icmp.seq = near(in, w->c.probe_seq);
		fsm_on_icmp(&w->c, &w->p, &icmp, w->now, &out);
		break;
	case 4:
		fsm_on_send_error(&w->c, (int)take(in, 1), w->now, &out);
		break;
	case 5:
		if (fsm_probe_now(&w->c, &w->p, &pr)) {
			fail_if(w->p.observe);
			fail_if(pr.seq != w->c.snd_una - 1 || pr.ack != w->c.rcv_nxt);
			fail_if(pr.payload_len && w->c.guess != FSM_GUESS_NONE);
			fsm_on_sent(&w->c, &w->p, false, w->now + (double)take(in, 1) * 0.001);
		}
		break;
	case 6:
		if (fsm_learn_now(&w->c, &seq))
			fsm_on_sent(&w->c, &w->p, true, w->now);
		break;
	case 7:
		fsm_init_discovered(&w->c, w->now, (double)take(in, 1) * 0.05, take(in, 1) & 1,
		                    &w->p);
		break;
	case 9: /* gateway: the partner learnt its end's numbers; borrow them when blocked */
		memset(&from, 0, sizeof(from));
		from.state = FSM_WATCH;
		from.known = FSM_K_SND_UNA | FSM_K_SND_NXT | FSM_K_RCV_NXT | FSM_K_WINDOW;
		from.snd_una = from.snd_nxt = take(in, 4);
		from.rcv_nxt = take(in, 4);
		from.our_window = (uint16_t)(take(in, 2) | 1);
		if (fsm_borrow(&w->c, &from))
			fail_if(pre.learn != FSM_LEARN_BLOCKED || pre.state != FSM_WATCH ||
			        w->c.guess != FSM_GUESS_BORROWED || from.guess != FSM_GUESS_QUIET ||
			        w->c.snd_nxt != from.rcv_nxt || w->c.rcv_nxt != from.snd_nxt);
		break;
	default:
		fsm_init(&w->c, w->now, &w->p);
		break;
	}
	check_out(&pre, &w->c, &w->p, &out, (int)(op % 10), sp, w->blind);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	struct world w;
	int steps = 0;
	uint32_t pb;

	memset(&w, 0, sizeof(w));
	w.p.idle = 0.1 + (double)take(&in, 1) * 0.01;
	w.p.interval = 0.1 + (double)take(&in, 1) * 0.01;
	w.p.probes = 1 + (int)(take(&in, 1) % 9);
	pb = take(&in, 1);
	w.p.probe_bytes = (int)(pb & 1);
	w.p.observe = (pb & 2) != 0;
	w.p.stall_timeout = (pb & 4) ? 0.1 + (double)(pb >> 3) * 0.05 : 0.0;
	w.now = 100.0;
	fsm_init(&w.c, w.now, &w.p);
	while (in.n > 0 && steps++ < 4096)
		step(&w, &in);
	return 0;
}

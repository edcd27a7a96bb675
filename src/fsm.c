/* fsm.c: one connection's keepalive state machine. See fsm.h.
 *
 * Timing follows Linux tcp_keepalive_timer(): the first probe goes out `idle`
 * after the last segment received from the peer, one more every `interval`, and
 * the verdict is dead when the timer fires with `probes` probes unanswered, i.e. at
 * last_rx + idle + interval * probes. Probes are scheduled from last_rx, not from
 * the moment the timer ran, so timer slack does not accumulate. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "fsm.h"

#define SEQ_LT(a, b)   ((int32_t)((uint32_t)(a) - (uint32_t)(b)) < 0)
#define SEQ_GT(a, b)   SEQ_LT(b, a)
#define SEQ_LEQ(a, b)  (!SEQ_GT(a, b))
#define SEQ_DIST(a, b) ((uint32_t)((a) - (b)) < 0x80000000u ? (a) - (b) : (b) - (a))

/* Slack when comparing times: a timer that fires a hair early still counts. */
#define FSM_EPSILON 0.0005
/* The largest window a peer can advertise (65535 << 14): bounds how old an acceptable ACK
 * may be (RFC 5961 MAX.SND.WND, which we cannot see scaled) and how far a stale SND.NXT
 * may lag. */
#define FSM_MAX_SND_WND 0x3fffc000u

/* Never probe with window 0: the peer would apply it and stall (SEQ = its SND.WL1). */
#define FSM_K_NEEDED (FSM_K_SND_UNA | FSM_K_SND_NXT | FSM_K_RCV_NXT | FSM_K_WINDOW)
/* Linux answers an out-of-window segment without data (a zero-byte probe) at most once per
 * 500 ms per socket (tcp_invalid_ratelimit; Platform facts): a round of zero-byte probes on
 * guessed numbers (fsm_borrow) is judged only once its probes span this much, so that one
 * of them fell outside the limit. */
#define FSM_OOW_GAP 0.55
/* Retry after a local resource error, as Linux's TCP_RESOURCE_PROBE_INTERVAL. */
#define FSM_RESOURCE_RETRY 0.5

/* How long before its first probe a connection's numbers are asked for: FSM_LEARN_LEAD, or
 * half the idle time when that is shorter (not at once after a handshake, when the traffic
 * that usually follows tells them anyway). */
static double learn_lead(const struct fsm_params *p)
{
	return p->idle / 2 < FSM_LEARN_LEAD ? p->idle / 2 : FSM_LEARN_LEAD;
}

static void out_clear(struct fsm_out *out)
{
	memset(out, 0, sizeof(*out));
}

static struct fsm_event *out_event(struct fsm_out *out, int type, const struct fsm_conn *c)
{
	struct fsm_event *ev;

	if (out->nev >= (int)(sizeof(out->ev) / sizeof(out->ev[0])))
		return &out->ev[out->nev - 1]; /* cannot happen: at most 3 per call */
	ev = &out->ev[out->nev++];
	memset(ev, 0, sizeof(*ev));
	ev->type = (uint8_t)type;
	ev->probes = c->probes_out;
	return ev;
}

/* The machine wants its timer at `at`, earlier than armed: the caller re-arms. */
static void rearm_at(struct fsm_conn *c, double at, struct fsm_out *out)
{
	c->timer_at = at;
	out->rearm = true;
}

void fsm_init(struct fsm_conn *c, double now, const struct fsm_params *p)
{
	memset(c, 0, sizeof(*c));
	c->state = FSM_WATCH;
	c->last_rx = now;
	c->timer_at = now + p->idle;
}

void fsm_init_discovered(struct fsm_conn *c, double now, double idle, bool quiet,
                         const struct fsm_params *p)
{
	double learn_at;

	fsm_init(c, now, p);
	c->last_rx = now - (idle > 0 ? idle : 0);
	c->known |= FSM_K_CONFIRMED; /* the kernel lists it */
	if (quiet)
		c->known |= FSM_K_QUIET;
	learn_at = c->last_rx + p->idle - learn_lead(p);
	c->timer_at = learn_at > now ? learn_at : now;
}

bool fsm_can_probe(const struct fsm_conn *c)
{
	if ((c->known & FSM_K_NEEDED) != FSM_K_NEEDED)
		return false;
	if (c->snd_una != c->snd_nxt)
		return false; /* data in flight: RFC 9293 MUST-26, no probe */
	if ((c->known & FSM_K_PEER_END) && SEQ_GT(c->peer_end, c->rcv_nxt))
		return false; /* peer data we have not acknowledged: a gap, or an ACK to come */
	return true;
}

/* SEQ + LEN, counting SYN and FIN as one each. */
static uint32_t seg_end(const struct codec_tcp *seg)
{
	uint32_t end = seg->seq + seg->payload_len;

	if (seg->flags & CODEC_TH_SYN)
		end++;
	if (seg->flags & CODEC_TH_FIN)
		end++;
	return end;
}

static bool numbers_unknown(const struct fsm_conn *c);
static bool can_learn(const struct fsm_conn *c);
static void stall_before_ours(struct fsm_conn *c, const struct fsm_params *p,
                              const struct codec_tcp *seg, double now, struct fsm_out *out);
static void stall_after_ours(struct fsm_conn *c, const struct fsm_params *p, double now,
                             struct fsm_out *out);
static void stall_on_peer(struct fsm_conn *c, const struct fsm_params *p,
                          const struct codec_tcp *seg, double now, struct fsm_out *out);

/* Ends probing; the record lingers briefly so trailing segments do not re-track it. */
static void enter_closed(struct fsm_conn *c, double now, struct fsm_out *out)
{
	c->state = FSM_CLOSED;
	rearm_at(c, now + FSM_CLOSE_LINGER, out);
}

static void close_conn(struct fsm_conn *c, const char *reason, double now, struct fsm_out *out)
{
	out_event(out, FSM_EV_CLOSE, c)->reason = reason;
	enter_closed(c, now, out);
}

static bool is_own_probe(const struct fsm_conn *c, const struct codec_tcp *seg)
{
	return c->last_probe > 0 && seg->flags == CODEC_TH_ACK && seg->seq == c->probe_seq &&
	       seg->ack == c->probe_ack && seg->payload_len <= 1;
}

/* Our own SYN or SYN-ACK: our kernel starts a new connection on this 4-tuple (it answers a
 * SYN on an established one with a challenge ACK instead), so what we knew is void. */
static void on_our_syn(struct fsm_conn *c, const struct fsm_params *p, double now,
                       struct fsm_out *out)
{
	fsm_init(c, now, p);
	out->rearm = true;
}

/* Our own SYN, injected to learn the numbers, seen arriving as if from the peer. */
static bool is_learn_syn(const struct fsm_conn *c, const struct codec_tcp *seg)
{
	return c->learn != FSM_LEARN_NONE && seg->seq == c->probe_seq &&
	       (seg->flags & (CODEC_TH_SYN | CODEC_TH_ACK | CODEC_TH_RST)) == CODEC_TH_SYN;
}

/* The kernel said nothing was in flight, and our side has sent no data since: the
 * challenge ACK to our SYN gives SND.NXT, and SND.UNA is SND.NXT until the peer's next ACK.
 * Our data seen since the dump voids that (the peer's ACK will tell SND.UNA instead). */
static void assume_quiet(struct fsm_conn *c, const struct codec_tcp *seg)
{
	if (seg->payload_len || (seg->flags & (CODEC_TH_SYN | CODEC_TH_FIN)))
		c->known &= (uint8_t)~FSM_K_QUIET;
	if ((c->known & (FSM_K_QUIET | FSM_K_SND_UNA)) != FSM_K_QUIET || c->learn == FSM_LEARN_NONE)
		return;
	c->snd_una = c->snd_nxt;
	c->known |= FSM_K_SND_UNA;
	if (seg->has_ts && !c->peer_tsval)
		c->peer_tsval = seg->tsecr; /* TS.Recent: the peer's last TSval */
}

/* Peer data we could not check when it came (our numbers unknown, or beyond RCV.NXT): kept,
 * so that our kernel's ACK of exactly its end can vouch for it later. */
static void note_pending(struct fsm_conn *c, const struct codec_tcp *seg, double now)
{
	if (!seg->payload_len && !(seg->flags & CODEC_TH_FIN))
		return; /* our kernel never ACKs a pure ACK: nothing could vouch for it */
	c->pend_end = seg_end(seg);
	c->pend_dt = (float)(now - c->last_rx);
	c->known |= FSM_K_PENDING;
}

/* Our ACK of exactly the pending segment's end: our kernel accepted it, so the peer sent it
 * (a real, live peer): its time is the last segment received. */
static bool vouch_pending(struct fsm_conn *c, const struct codec_tcp *seg)
{
	if (!(c->known & FSM_K_PENDING) || !(seg->flags & CODEC_TH_ACK) || seg->ack != c->pend_end)
		return false;
	c->known &= (uint8_t)~FSM_K_PENDING;
	c->known |= FSM_K_CONFIRMED;
	if (c->pend_dt > 0)
		c->last_rx += c->pend_dt;
	return true;
}

static void learn_ours(struct fsm_conn *c, const struct codec_tcp *seg)
{
	uint32_t end = seg_end(seg);

	if (!(c->known & FSM_K_SND_NXT) || SEQ_GT(end, c->snd_nxt))
		c->snd_nxt = end;
	c->known |= FSM_K_SND_NXT;
	if (seg->flags & CODEC_TH_ACK) {
		if (!(c->known & FSM_K_RCV_NXT) || SEQ_GT(seg->ack, c->rcv_nxt))
			c->rcv_nxt = seg->ack;
		c->known |= FSM_K_RCV_NXT;
	}
	if (!(seg->flags & CODEC_TH_SYN)) {
		c->our_window = seg->window; /* SYN windows are never scaled */
		c->known |= FSM_K_WINDOW;
	}
	c->ts_on = seg->has_ts;
	if (seg->has_ts)
		c->our_tsval = seg->tsval;
	assume_quiet(c, seg);
}

/* Numbers just became complete while learning: probe when due (at once if overdue). */
static void learned(struct fsm_conn *c, const struct fsm_params *p, double now, struct fsm_out *out)
{
	double due = c->last_rx + p->idle;

	if (c->learn == FSM_LEARN_NONE || !fsm_can_probe(c))
		return;
	c->learn = FSM_LEARN_NONE;
	if (c->state == FSM_WATCH)
		rearm_at(c, due > now ? due : now, out);
}

static void peer_is_alive(struct fsm_conn *c, const struct fsm_params *p, double now,
                          struct fsm_out *out);

/* Borrowed numbers (fsm_borrow) give way to our end's own. */
static void unborrow(struct fsm_conn *c)
{
	c->known &= (uint8_t) ~(FSM_K_NEEDED | FSM_K_PEER_END);
	c->guess = FSM_GUESS_NONE;
}

static void on_ours(struct fsm_conn *c, const struct fsm_params *p, const struct codec_tcp *seg,
                    double now, struct fsm_out *out)
{
	if (is_own_probe(c, seg)) {
		c->last_probe = now; /* the kernel's stamp: RTT from wire to wire */
		out->ignored = FSM_IGN_OWN_PROBE;
		stall_before_ours(c, p, seg, now, out); /* (our kernel's zero-window probe looks
		                                           the same) */
		return;
	}
	if (seg->flags & CODEC_TH_RST) {
		close_conn(c, "rst", now, out);
		return;
	}
	if (seg->flags & CODEC_TH_SYN)
		on_our_syn(c, p, now, out);
	if (c->guess == FSM_GUESS_BORROWED)
		unborrow(c); /* our end speaks: its own numbers now */
	if (vouch_pending(c, seg) && (c->state == FSM_PROBING || c->state == FSM_DEAD))
		peer_is_alive(c, p, now, out); /* our kernel took the peer's data: alive */
	stall_before_ours(c, p, seg, now, out);
	learn_ours(c, seg);
	stall_after_ours(c, p, now, out);
	learned(c, p, now, out);
	if (seg->flags & CODEC_TH_FIN)
		close_conn(c, "fin", now, out);
}

static void on_peer_rst(struct fsm_conn *c, const struct codec_tcp *seg, double now,
                        struct fsm_out *out)
{
	if (c->probes_out > 0 && c->state == FSM_PROBING) {
		if (seg->seq != c->probe_ack) {
			out->ignored = FSM_IGN_BAD_RST;
			return;
		}
		out_event(out, FSM_EV_RESET, c);
		enter_closed(c, now, out);
		return;
	}
	if (!(c->known & FSM_K_RCV_NXT) || seg->seq != c->rcv_nxt) {
		out->ignored = FSM_IGN_BAD_RST; /* RFC 5961: only an exact RST counts */
		return;
	}
	close_conn(c, "rst", now, out);
}

/* Acceptance of a peer segment (RFC 9293 3.10.7.4, RFC 5961), as strict as Linux's or
 * stricter. Our own segments are trusted (their direction comes from the kernel, see
 * ARCHITECTURE.md "Trust"); a peer segment counts only against numbers they taught:
 * - its SEQ is exactly RCV.NXT (the peer's next byte as our last ACK said), or RCV.NXT - 1
 *   with at most one byte (the peer's own keepalive probe): 32 bits an off-path sender must
 *   guess. In-window data beyond RCV.NXT counts once our ACK has moved RCV.NXT to it.
 * - its ACK is within SND.UNA - FSM_MAX_SND_WND .. SND.NXT; while probing exactly SND.NXT.
 *   An ACK beyond the SND.NXT we know, with the exact SEQ, is a reply too: one of our
 *   segments was lost to the capture (a pcap drop) and SND.NXT is stale; it is set right.
 * Nothing counts before RCV.NXT and SND.NXT are known (a discovered connection before its
 * challenge ACK): what arrives then cannot be checked. */
static bool seq_exact(const struct fsm_conn *c, const struct codec_tcp *seg)
{
	return seg->seq == c->rcv_nxt || (seg->seq == c->rcv_nxt - 1 && seg->payload_len <= 1);
}

static bool stale_snd_nxt(const struct fsm_conn *c, const struct codec_tcp *seg)
{
	return seg->seq == c->rcv_nxt && SEQ_GT(seg->ack, c->snd_nxt) &&
	       SEQ_DIST(seg->ack, c->snd_nxt) < FSM_MAX_SND_WND;
}

static bool ack_acceptable(const struct fsm_conn *c, const struct codec_tcp *seg)
{
	if ((c->state == FSM_PROBING || c->state == FSM_DEAD) && c->probes_out > 0 &&
	    c->snd_una == c->snd_nxt)
		return seg->ack == c->snd_nxt || stale_snd_nxt(c, seg); /* acks what we sent */
	if ((c->known & FSM_K_SND_UNA) && SEQ_LT(seg->ack, c->snd_una - FSM_MAX_SND_WND))
		return false; /* RFC 5961 5.2: acks data long acknowledged */
	return SEQ_LEQ(seg->ack, c->snd_nxt) || stale_snd_nxt(c, seg);
}

/* Why a peer segment with ACK does not count, or FSM_IGN_NONE when it does. */
static enum fsm_ignore peer_rejected(const struct fsm_conn *c, const struct codec_tcp *seg)
{
	const uint8_t ours = FSM_K_RCV_NXT | FSM_K_SND_NXT;

	if ((c->known & ours) != ours)
		return FSM_IGN_UNVERIFIED;
	if (!seq_exact(c, seg))
		return FSM_IGN_BAD_SEQ;
	if (!ack_acceptable(c, seg))
		return FSM_IGN_BAD_ACK;
	return FSM_IGN_NONE;
}

/* The peer's SYN-ACK to our SYN: it acks exactly our ISS + 1 (we have sent nothing else). */
static bool syn_ack_answers_ours(const struct fsm_conn *c, const struct codec_tcp *seg)
{
	return (seg->flags & CODEC_TH_ACK) && (c->known & FSM_K_SND_NXT) &&
	       !(c->known & FSM_K_RCV_NXT) && seg->ack == c->snd_nxt;
}

static void learn_peer(struct fsm_conn *c, const struct codec_tcp *seg)
{
	uint32_t end = seg_end(seg);

	if (seg->flags & CODEC_TH_ACK) {
		if (!(c->known & FSM_K_SND_UNA) || SEQ_GT(seg->ack, c->snd_una))
			c->snd_una = seg->ack;
		c->known |= FSM_K_SND_UNA;
		if ((c->known & FSM_K_SND_NXT) && SEQ_GT(seg->ack, c->snd_nxt))
			c->snd_nxt = seg->ack; /* a stale SND.NXT (stale_snd_nxt): set right */
	}
	/* Only in-order data moves peer_end (data our ACK must still cover); a segment
	 * beyond RCV.NXT, real or spoofed, must not block probing for good. */
	if (!(c->known & FSM_K_RCV_NXT) || SEQ_LEQ(seg->seq, c->rcv_nxt)) {
		if (!(c->known & FSM_K_PEER_END) || SEQ_GT(end, c->peer_end))
			c->peer_end = end;
		c->known |= FSM_K_PEER_END;
	}
	if (seg->has_ts)
		c->peer_tsval = seg->tsval;
}

/* Arms the watch timer after a sign of life: at last_rx + idle, or learn_lead() before that
 * when the numbers must be asked for first. Later than armed needs no re-arm (the timer
 * catches up lazily); earlier, or after a stopped timer (dead), does. */
static void watch_until(struct fsm_conn *c, const struct fsm_params *p, bool stopped,
                        struct fsm_out *out)
{
	double at = c->last_rx + p->idle;

	if (numbers_unknown(c) && can_learn(c))
		at -= learn_lead(p);
	if (stopped || at < c->timer_at)
		rearm_at(c, at, out);
	else
		c->timer_at = at;
}

static void peer_is_alive(struct fsm_conn *c, const struct fsm_params *p, double now,
                          struct fsm_out *out)
{
	struct fsm_event *ev;
	bool was_dead = c->state == FSM_DEAD;

	if (c->probes_out > 0 || was_dead) {
		ev = out_event(out, FSM_EV_REPLY, c);
		ev->rtt = now - c->last_probe;
		ev = out_event(out, FSM_EV_ALIVE, c);
		ev->rtt = now - c->last_probe;
		ev->notable = was_dead || c->probes_out > 1 || (c->round & FSM_R_UNCERTAIN);
	}
	c->state = FSM_WATCH;
	c->probes_out = 0;
	c->round = 0;
	if (c->known & FSM_K_PENDING)
		c->pend_dt -= (float)(now - c->last_rx); /* kept relative to last_rx */
	c->last_rx = now;
	watch_until(c, p, was_dead, out);
}

static void on_peer(struct fsm_conn *c, const struct fsm_params *p, const struct codec_tcp *seg,
                    double now, struct fsm_out *out)
{
	if (seg->flags & CODEC_TH_RST) {
		on_peer_rst(c, seg, now, out);
		return;
	}
	if (is_learn_syn(c, seg)) {
		out->ignored = FSM_IGN_OWN_PROBE;
		return;
	}
	if (seg->flags & CODEC_TH_SYN) {
		if (!syn_ack_answers_ours(c, seg)) {
			out->ignored = FSM_IGN_SYN; /* our own SYN or SYN-ACK tells of a new one */
			return;
		}
	} else if (!(seg->flags & CODEC_TH_ACK)) {
		out->ignored = FSM_IGN_NO_ACK; /* Linux drops it once synchronized (RFC 9293) */
		return;
	} else {
		out->ignored = peer_rejected(c, seg);
		if (out->ignored == FSM_IGN_UNVERIFIED || out->ignored == FSM_IGN_BAD_SEQ)
			note_pending(c, seg, now);
		if (out->ignored != FSM_IGN_NONE)
			return;
	}
	c->known |= FSM_K_CONFIRMED; /* the peer knows the numbers: a real connection */
	if (c->guess == FSM_GUESS_QUIET && seg->ack == c->snd_nxt)
		c->guess = FSM_GUESS_NONE; /* the probed end has all we sent: its own word */

	learn_peer(c, seg);
	stall_on_peer(c, p, seg, now, out);
	peer_is_alive(c, p, now, out);
	if ((seg->flags & (CODEC_TH_FIN | CODEC_TH_SYN)) == CODEC_TH_FIN)
		close_conn(c, "fin", now, out); /* (a FIN on a SYN-ACK is no close) */
}

/* ---- stalls ---------------------------------------------------------------------
 * Keepalive sees only idle connections. A stall is the other way a peer is lost: our data
 * stays unacknowledged while the peer says nothing (a retransmission stall: dead, reason
 * stalled, TCP_USER_TIMEOUT from outside), or the peer answers but keeps its window shut
 * (a zero-window stall: its program stopped reading; stalled, not dead). The clock
 * (stall_since) restarts on every acceptable peer segment while data is in flight, and
 * when the window opens: progress, however slow, is never a stall. */

static bool stall_watched(const struct fsm_params *p)
{
	return p->stall_timeout > 0 && !p->observe; /* observe-only: a stall is a verdict too */
}

/* Our data is in flight: SND.UNA and SND.NXT known and apart. */
static bool data_in_flight(const struct fsm_conn *c)
{
	const uint8_t both = FSM_K_SND_UNA | FSM_K_SND_NXT;

	return (c->known & both) == both && c->snd_una != c->snd_nxt;
}

static void stall_start(struct fsm_conn *c, uint8_t kind, double now)
{
	c->stall = kind;
	c->stall_since = now;
	c->stall_bits = 0;
	c->retransmits = 0;
}

static void stall_emit(struct fsm_conn *c, int type, double now, struct fsm_out *out)
{
	struct fsm_event *ev = out_event(out, type, c);

	ev->since = now - c->stall_since;
	ev->reason = "zero-window";
	if (type == FSM_EV_STALLED)
		c->stall_bits |= FSM_SB_TOLD;
}

/* The zero-window stall is due and our kernel is waiting on the window: announce it. */
static void stall_zw_check(struct fsm_conn *c, const struct fsm_params *p, double now,
                           struct fsm_out *out)
{
	if (c->stall != FSM_STALL_ZW || (c->stall_bits & FSM_SB_TOLD) ||
	    now + FSM_EPSILON < c->stall_since + p->stall_timeout)
		return;
	if (c->stall_bits & FSM_SB_ZWP)
		stall_emit(c, FSM_EV_STALLED, now, out);
	else
		c->stall_bits |= FSM_SB_LATE; /* announced at the first zero-window probe */
}

/* One of our segments, before its numbers are learnt: a retransmission is counted, a
 * zero-window probe (SEQ = SND.UNA - 1, no data) noted. */
static void stall_before_ours(struct fsm_conn *c, const struct fsm_params *p,
                              const struct codec_tcp *seg, double now, struct fsm_out *out)
{
	bool zwp = seg->payload_len == 0 && seg->flags == CODEC_TH_ACK &&
	           (c->known & FSM_K_SND_UNA) && seg->seq == c->snd_una - 1;

	if (!stall_watched(p))
		return;
	if (seg->payload_len && (c->known & FSM_K_SND_NXT) && SEQ_LT(seg->seq, c->snd_nxt) &&
	    c->retransmits < UINT16_MAX)
		c->retransmits++;
	if (zwp && c->stall == FSM_STALL_ZW) {
		c->stall_bits |= FSM_SB_ZWP;
		stall_zw_check(c, p, now, out);
	}
}

/* After one of our segments: data sent with nothing in flight starts the clock. */
static void stall_after_ours(struct fsm_conn *c, const struct fsm_params *p, double now,
                             struct fsm_out *out)
{
	if (!stall_watched(p) || c->stall != FSM_STALL_NONE || !data_in_flight(c))
		return;
	stall_start(c, FSM_STALL_RTX, now);
	out->rearm = true;
}

/* An acceptable segment from the peer: it is not silent; its window says whether it reads. */
static void stall_on_peer(struct fsm_conn *c, const struct fsm_params *p,
                          const struct codec_tcp *seg, double now, struct fsm_out *out)
{
	if (!stall_watched(p) || (seg->flags & CODEC_TH_SYN))
		return;
	if (seg->window == 0) {
		if (c->stall != FSM_STALL_ZW) {
			stall_start(c, FSM_STALL_ZW, now);
			out->rearm = true;
		}
		return;
	}
	if (c->stall == FSM_STALL_ZW && (c->stall_bits & FSM_SB_TOLD))
		stall_emit(c, FSM_EV_UNSTALLED, now, out);
	c->stall = FSM_STALL_NONE;
	if (data_in_flight(c)) {
		stall_start(c, FSM_STALL_RTX, now); /* progress: the rest gets a new clock */
		out->rearm = true;
	}
}

/* A retransmission stall's dead verdict: our data (unacked bytes, retransmits seen)
 * unanswered for since s. */
static void stall_dead(struct fsm_conn *c, double now, double since, uint32_t unacked,
                       uint16_t retransmits, struct fsm_out *out)
{
	struct fsm_event *ev = out_event(out, FSM_EV_DEAD, c);

	ev->idle = now - c->last_rx;
	ev->since = since;
	ev->unacked = unacked;
	ev->retransmits = retransmits;
	ev->reason = "stalled";
	c->stall = FSM_STALL_NONE;
	c->state = FSM_DEAD;
	c->timer_at = 0;
}

double fsm_stall_due(const struct fsm_conn *c, const struct fsm_params *p)
{
	if (!stall_watched(p) || c->stall == FSM_STALL_NONE ||
	    (c->stall_bits & (FSM_SB_TOLD | FSM_SB_LATE)))
		return 0;
	return c->stall_since + p->stall_timeout;
}

void fsm_on_kernel_stall(struct fsm_conn *c, const struct fsm_params *p, double now, double silent,
                         uint32_t unacked, uint16_t retransmits, struct fsm_out *out)
{
	const uint8_t both = FSM_K_SND_UNA | FSM_K_SND_NXT;

	out_clear(out);
	if (!stall_watched(p) || (c->known & both) == both || silent < p->stall_timeout ||
	    (c->state != FSM_WATCH && c->state != FSM_PROBING))
		return;
	stall_dead(c, now, silent, unacked, retransmits, out);
}

double fsm_wake_at(const struct fsm_conn *c, const struct fsm_params *p)
{
	double s;

	if (c->state == FSM_DEAD || c->state == FSM_CLOSED)
		return c->timer_at;
	s = fsm_stall_due(c, p);
	return s > 0 && (c->timer_at <= 0 || s < c->timer_at) ? s : c->timer_at;
}

/* The stall deadline passed while the capture may have been deaf (drops since the clock
 * started): the peer's answer may be what we missed, so no stall is told; timed anew. */
static void stall_uncertain(struct fsm_conn *c, double now, struct fsm_out *out)
{
	struct fsm_event *ev = out_event(out, FSM_EV_UNCERTAIN, c);

	ev->idle = now - c->last_rx;
	ev->since = now - c->stall_since;
	ev->reason = "capture-drops";
	c->stall_since = now;
	c->stall_bits &= (uint8_t)~FSM_SB_ZWP;
	out->rearm = true;
}

/* The stall deadline passed: a retransmission stall is a dead verdict, a zero-window one
 * is told. True when the connection is now dead. */
static bool stall_timer(struct fsm_conn *c, const struct fsm_params *p, double now, double blind,
                        struct fsm_out *out)
{
	double due = fsm_stall_due(c, p);

	if (due <= 0 || now + FSM_EPSILON < due)
		return false;
	if (blind >= c->stall_since) {
		stall_uncertain(c, now, out);
		return false;
	}
	if (c->stall == FSM_STALL_ZW) {
		stall_zw_check(c, p, now, out);
		return false;
	}
	if (!data_in_flight(c)) {
		c->stall = FSM_STALL_NONE; /* cannot happen: the ACK that emptied it stopped it */
		return false;
	}
	stall_dead(c, now, now - c->stall_since, c->snd_nxt - c->snd_una, c->retransmits, out);
	return true;
}

void fsm_on_segment(struct fsm_conn *c, const struct fsm_params *p, const struct codec_tcp *seg,
                    bool from_peer, double now, struct fsm_out *out)
{
	out_clear(out);
	if (c->state == FSM_CLOSED)
		return; /* trailing segments of a closed connection */
	if (from_peer)
		on_peer(c, p, seg, now, out);
	else
		on_ours(c, p, seg, now, out);
}

void fsm_on_icmp(struct fsm_conn *c, const struct fsm_params *p, const struct codec_icmp *icmp,
                 double now, struct fsm_out *out)
{
	struct fsm_event *ev;

	(void)p;
	(void)now;
	out_clear(out);
	if (c->state != FSM_PROBING || c->probes_out == 0 || icmp->seq != c->probe_seq ||
	    (c->round & FSM_R_ICMP_HEARD)) {
		out->ignored = FSM_IGN_ICMP_MATCH; /* not about our probe, or told already */
		return;
	}
	c->round |= FSM_R_SOFT_ERROR | FSM_R_ICMP_HEARD;
	ev = out_event(out, FSM_EV_UNREACHABLE, c);
	ev->icmp_type = icmp->type;
	ev->icmp_code = icmp->code;
	ev->from = icmp->from;
}

static bool resource_error(int err)
{
	return err == ENOBUFS || err == ENOMEM || err == EAGAIN || err == EPROTO;
}

void fsm_on_send_error(struct fsm_conn *c, int err, double now, struct fsm_out *out)
{
	out_clear(out);
	if (resource_error(err) && c->probes_out > 0) {
		c->probes_out--; /* never left this host: not a probe the peer ignored */
		rearm_at(c, now + FSM_RESOURCE_RETRY, out);
		return;
	}
	c->round |= FSM_R_SOFT_ERROR;
	out_event(out, FSM_EV_UNREACHABLE, c)->send_errno = err;
}

/* The fields of a probe from the numbers known now (SEQ = SND.UNA - 1, ACK = RCV.NXT). */
static void fill_probe(struct fsm_conn *c, const struct fsm_params *p, struct fsm_probe *pr)
{
	c->probe_seq = c->snd_una - 1;
	c->probe_ack = c->rcv_nxt;
	c->round &= (uint8_t)~FSM_R_ICMP_HEARD; /* a new probe: its error is news */
	pr->seq = c->probe_seq;
	pr->ack = c->probe_ack;
	pr->window = c->our_window;
	pr->has_ts = c->ts_on;
	pr->tsval = c->our_tsval;
	pr->tsecr = c->peer_tsval;
	pr->payload_len = p->probe_bytes && c->guess == FSM_GUESS_NONE ? 1 : 0;
	pr->n = c->probes_out;
}

void fsm_on_learn_error(struct fsm_conn *c, double now, struct fsm_out *out)
{
	out_clear(out);
	if (c->learn != FSM_LEARN_ASKED1 && c->learn != FSM_LEARN_ASKED2)
		return;
	c->learn--; /* never left this host: not a try the kernel ignored */
	rearm_at(c, now + FSM_RESOURCE_RETRY, out);
}

static void send_probe(struct fsm_conn *c, const struct fsm_params *p, double now,
                       struct fsm_out *out)
{
	double next;

	if (c->probes_out++ == 0)
		c->round_at = now;
	c->last_probe = now;
	fill_probe(c, p, &out->probe);
	out->send_probe = true;
	out_event(out, FSM_EV_PROBE, c);
	next = c->last_rx + p->idle + c->probes_out * p->interval;
	if (next < now + FSM_EPSILON)
		next = now + p->interval; /* we are late: keep the interval */
	rearm_at(c, next, out);
}

bool fsm_probe_now(struct fsm_conn *c, const struct fsm_params *p, struct fsm_probe *pr)
{
	if (c->state != FSM_PROBING || c->probes_out == 0 || p->observe)
		return false; /* answered (or closed, or now observed only) while it waited */
	if (!fsm_can_probe(c)) {
		c->probes_out--; /* our data went out meanwhile: the kernel's turn, not sent */
		return false;
	}
	fill_probe(c, p, pr);
	return true;
}

bool fsm_learn_now(const struct fsm_conn *c, uint32_t *seq)
{
	if ((c->learn != FSM_LEARN_ASKED1 && c->learn != FSM_LEARN_ASKED2) ||
	    c->state == FSM_CLOSED)
		return false;
	*seq = c->probe_seq;
	return true;
}

bool fsm_borrow(struct fsm_conn *c, struct fsm_conn *from)
{
	if (c->learn != FSM_LEARN_BLOCKED || c->state != FSM_WATCH ||
	    from->guess != FSM_GUESS_NONE || from->learn != FSM_LEARN_NONE || !fsm_can_probe(from))
		return false;
	c->snd_una = c->snd_nxt = from->rcv_nxt;
	c->rcv_nxt = from->snd_nxt;
	c->our_window = from->our_window; /* never applied: the probe is left of the window */
	c->ts_on = from->ts_on;
	c->our_tsval = from->peer_tsval; /* our end's last TSval, as the other end echoed it */
	c->peer_tsval = from->our_tsval;
	c->known = (uint8_t)((c->known & ~FSM_K_PEER_END) | FSM_K_NEEDED);
	c->learn = FSM_LEARN_NONE;
	c->guess = FSM_GUESS_BORROWED;
	from->guess = FSM_GUESS_QUIET;
	return true;
}

void fsm_on_sent(struct fsm_conn *c, const struct fsm_params *p, bool learn, double sent_at)
{
	double floor;

	if (learn) {
		floor = sent_at + FSM_LEARN_RETRY; /* the challenge ACK gets its time */
	} else {
		c->last_probe = sent_at;
		if (c->state != FSM_PROBING)
			return;
		floor = sent_at + p->interval / 2; /* a late probe keeps at least half an
		                                      interval to be answered */
	}
	if (c->timer_at > 0 && c->timer_at < floor)
		c->timer_at = floor;
}
/* True when a number a probe needs is unknown (not merely data in flight). */
static bool numbers_unknown(const struct fsm_conn *c)
{
	return (c->known & FSM_K_NEEDED) != FSM_K_NEEDED;
}

/* The challenge ACK to a SYN into our own stack would complete the numbers: the kernel said
 * nothing was in flight (discovery), or the peer has acknowledged all we sent (a connection
 * seen from its handshake, whose window we have not seen yet). */
static bool can_learn(const struct fsm_conn *c)
{
	const uint8_t both = FSM_K_SND_UNA | FSM_K_SND_NXT;

	if (c->known & FSM_K_QUIET)
		return true;
	return (c->known & both) == both && c->snd_una == c->snd_nxt;
}

/* Asks for the numbers (a SYN into our own stack), or gives up after two tries heard with
 * a clear capture (a capture blind since the first try asks again). Returns false when
 * there is nothing left to ask (then wait for traffic). */
static bool ask_numbers(struct fsm_conn *c, double now, double due, double blind,
                        struct fsm_out *out)
{
	double next = now + FSM_LEARN_RETRY;

	if (c->learn == FSM_LEARN_BLOCKED)
		return false;
	if (c->learn == FSM_LEARN_ASKED2 && blind >= c->round_at) {
		c->learn = FSM_LEARN_NONE; /* the answer may have been lost to us: ask again */
		out_event(out, FSM_EV_LEARN, c)->reason = "retry";
	} else if (c->learn == FSM_LEARN_ASKED2) {
		c->learn = FSM_LEARN_BLOCKED;
		out_event(out, FSM_EV_LEARN, c)->reason = "blocked";
		return false;
	}
	if (c->learn++ == FSM_LEARN_NONE)
		c->round_at = now;
	c->probe_seq = (uint32_t)(uint64_t)(now * 1e6) ^ 0x6b617072u; /* any SEQ: it goes to us */
	out->learn = true;
	out->learn_seq = c->probe_seq;
	rearm_at(c, c->learn == FSM_LEARN_ASKED1 && due > next ? due : next, out);
	return true;
}

/* Probes the kernel would have sent since due, when we start late (at most probes - 1,
 * so that at least one real probe is sent before a verdict). */
static uint8_t missed_probes(const struct fsm_conn *c, const struct fsm_params *p, double now)
{
	double late = now - (c->last_rx + p->idle);
	long n = late > 0 ? (long)(late / p->interval + FSM_EPSILON) : 0;

	return (uint8_t)(n < p->probes - 1 ? n : p->probes - 1);
}

/* Observe-only: the idle threshold is told (FSM_EV_IDLE) where a round would start, once per
 * silence of the peer; nothing is asked for (a learning SYN is a packet too) and no round
 * begins. The timer then looks again every idle: only a segment from the peer (last_rx after
 * the telling) starts a new silence. Data in flight: the kernel's turn, as when probing. */
static void timer_observe(struct fsm_conn *c, const struct fsm_params *p, double now,
                          struct fsm_out *out)
{
	double due = c->last_rx + p->idle;

	c->learn = FSM_LEARN_NONE;
	if (now + FSM_EPSILON < due) {
		rearm_at(c, due, out);
		return;
	}
	if ((c->round & FSM_R_OBSERVED) && c->last_rx <= c->round_at) {
		rearm_at(c, now + p->idle, out); /* told already: still silent */
		return;
	}
	if (!fsm_can_probe(c) && !(numbers_unknown(c) && can_learn(c))) {
		rearm_at(c, now + p->interval, out); /* no probe now, learnt or not */
		return;
	}
	out_event(out, FSM_EV_IDLE, c)->idle = now - c->last_rx;
	c->round = FSM_R_OBSERVED;
	c->round_at = now;
	rearm_at(c, now + p->idle, out);
}

static void timer_watch(struct fsm_conn *c, const struct fsm_params *p, double now, double blind,
                        struct fsm_out *out)
{
	double due = c->last_rx + p->idle;

	if (!(c->known & FSM_K_CONFIRMED)) {
		rearm_at(c, now + p->interval, out); /* never probe what may not exist */
		return;
	}
	if (p->observe) {
		timer_observe(c, p, now, out);
		return;
	}
	if (numbers_unknown(c) && now + FSM_EPSILON >= due - learn_lead(p) && can_learn(c) &&
	    ask_numbers(c, now, due, blind, out))
		return;
	if (now + FSM_EPSILON < due) {
		rearm_at(c, due, out);
		return;
	}
	if (!fsm_can_probe(c)) {
		rearm_at(c, now + p->interval, out); /* numbers unsure or data in flight */
		return;
	}
	out_event(out, FSM_EV_IDLE, c)->idle = now - c->last_rx;
	c->state = FSM_PROBING;
	c->probes_out = (c->known & FSM_K_QUIET) && c->guess == FSM_GUESS_NONE
	                    ? missed_probes(c, p, now)
	                    : 0;           /* numbers guessed: a whole round of our own */
	c->known &= (uint8_t)~FSM_K_QUIET; /* only a discovered connection's first round */
	c->round = 0;
	if (c->probes_out > 0)
		c->round_at = now; /* the probes counted as missed were never ours to hear */
	send_probe(c, p, now, out);
}

/* The round's probes went unanswered, but the capture may have been deaf since the round
 * began: no verdict (an accusation needs a round heard whole); a new round starts now. */
static void round_uncertain(struct fsm_conn *c, const struct fsm_params *p, double now,
                            double blind, struct fsm_out *out)
{
	struct fsm_event *ev = out_event(out, FSM_EV_UNCERTAIN, c);

	ev->reason = isinf(blind) ? "capture-down" : "capture-drops";
	ev->idle = now - c->last_rx;
	c->round = FSM_R_UNCERTAIN;
	c->probes_out = 0;
	send_probe(c, p, now, out);
}

static void timer_probing(struct fsm_conn *c, const struct fsm_params *p, double now, double blind,
                          struct fsm_out *out)
{
	struct fsm_event *ev;

	if (p->observe) { /* the rule became observe-only (reload): the round ends untold */
		c->state = FSM_WATCH;
		c->probes_out = 0;
		c->round = FSM_R_OBSERVED;
		rearm_at(c, now + p->idle, out);
		return;
	}
	if (!fsm_can_probe(c)) {
		rearm_at(c, now + p->interval, out); /* our side sent data: the kernel's turn */
		return;
	}
	if (c->probes_out < p->probes || (c->guess != FSM_GUESS_NONE && c->probes_out < 255 &&
	                                  c->last_probe - c->round_at < FSM_OOW_GAP)) {
		send_probe(c, p, now, out); /* (a zero-byte round spans the peer's rate limit) */
		return;
	}
	if (blind >= c->round_at) {
		round_uncertain(c, p, now, blind, out);
		return;
	}
	ev = out_event(out, FSM_EV_DEAD, c);
	ev->idle = now - c->last_rx;
	ev->reason = (c->round & FSM_R_SOFT_ERROR) ? "unreachable" : "no-reply";
	c->state = FSM_DEAD;
	c->timer_at = 0;
}

void fsm_on_timer(struct fsm_conn *c, const struct fsm_params *p, double now, double blind,
                  struct fsm_out *out)
{
	out_clear(out);
	if (c->state == FSM_DEAD || c->state == FSM_CLOSED) {
		/* no stall is timed: fall through to the closed linger */
	} else if (stall_timer(c, p, now, blind, out)) {
		return;
	}
	if (c->state == FSM_DEAD || c->timer_at == 0) {
		out->rearm = out->rearm || fsm_wake_at(c, p) > 0;
		return;
	}
	if (now + FSM_EPSILON < c->timer_at) {
		out->rearm = true; /* moved later since armed */
		return;
	}
	if (c->state == FSM_CLOSED) {
		c->timer_at = 0;
		out->forget = true;
		return;
	}
	if (c->state == FSM_WATCH)
		timer_watch(c, p, now, blind, out);
	else
		timer_probing(c, p, now, blind, out);
}

const char *fsm_event_name(int type)
{
	static const char *const names[] = {
	    [FSM_EV_IDLE] = "idle",
	    [FSM_EV_PROBE] = "probe",
	    [FSM_EV_REPLY] = "reply",
	    [FSM_EV_ALIVE] = "alive",
	    [FSM_EV_UNREACHABLE] = "unreachable",
	    [FSM_EV_DEAD] = "dead",
	    [FSM_EV_RESET] = "reset",
	    [FSM_EV_CLOSE] = "close",
	    [FSM_EV_LEARN] = "learn",
	    [FSM_EV_UNCERTAIN] = "uncertain",
	    [FSM_EV_STALLED] = "stalled",
	    [FSM_EV_UNSTALLED] = "unstalled",
	};

	if (type <= 0 || type > FSM_EV_UNSTALLED)
		return "unknown";
	return names[type];
}

const char *fsm_state_name(int state)
{
	static const char *const names[] = {
	    [FSM_WATCH] = "watch",
	    [FSM_PROBING] = "probing",
	    [FSM_DEAD] = "dead",
	    [FSM_CLOSED] = "closed",
	};

	if (state < 0 || state >= FSM_STATE_COUNT)
		return "unknown";
	return names[state];
}

const char *fsm_ignore_name(int reason)
{
	static const char *const names[] = {
	    [FSM_IGN_NONE] = "none",
	    [FSM_IGN_OWN_PROBE] = "own-probe",
	    [FSM_IGN_BAD_ACK] = "bad-ack",
	    [FSM_IGN_BAD_RST] = "bad-rst",
	    [FSM_IGN_ICMP_MATCH] = "icmp-nomatch",
	    [FSM_IGN_SYN] = "syn",
	    [FSM_IGN_NO_ACK] = "no-ack",
	    [FSM_IGN_BAD_SEQ] = "bad-seq",
	    [FSM_IGN_UNVERIFIED] = "unverified",
	};

	if (reason < 0 || reason >= FSM_IGN_COUNT)
		return "unknown";
	return names[reason];
}

/* fsm.h: one connection's keepalive state machine (pure: events and time in, actions out).
 *
 * It learns sequence numbers from segments seen in both directions, decides
 * when to probe (kernel rules: RFC 9293 3.8.4, Linux tcp_keepalive_timer) and
 * judges the replies. Time is a double in seconds on a monotonic clock, passed
 * in by the caller; the machine never reads a clock, a socket or a file. */
#ifndef KAPROBE_FSM_H
#define KAPROBE_FSM_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"

/* Per-rule keepalive settings. */
struct fsm_params {
	double idle;          /* s without a segment from the peer before the first probe */
	double interval;      /* s between probes */
	int probes;           /* unanswered probes before dead */
	int probe_bytes;      /* 1: one 0x00 byte; 0: none */
	double stall_timeout; /* s without progress on data in flight (or an open window) before
	                         a stall verdict; 0: off */
	/* observe-only: tell when a probe would go out (FSM_EV_IDLE, once per silence of the
	 * peer); ask for nothing to be sent, give no verdict */
	bool observe;
};

enum fsm_state {
	FSM_WATCH = 0, /* waiting for the idle threshold */
	FSM_PROBING,   /* probes out, waiting for a reply */
	FSM_DEAD,      /* verdict given, no more probes */
	FSM_CLOSED,    /* FIN, RST or reset seen: absorbs the last segments, then forgotten */
	FSM_STATE_COUNT,
};

/* How long a closed connection's record absorbs trailing segments (FIN, last ACK). */
#define FSM_CLOSE_LINGER 5.0

/* Bits of struct fsm_conn.known: which numbers we have seen. */
enum fsm_known {
	FSM_K_SND_UNA = 1 << 0,   /* peer's ACK seen */
	FSM_K_SND_NXT = 1 << 1,   /* one of our segments seen */
	FSM_K_RCV_NXT = 1 << 2,   /* one of our ACKs seen */
	FSM_K_PEER_END = 1 << 3,  /* one of the peer's segments seen (peer_end valid) */
	FSM_K_WINDOW = 1 << 4,    /* one of our non-SYN segments seen (our_window valid) */
	FSM_K_QUIET = 1 << 5,     /* the kernel said nothing was in flight (discovery) */
	FSM_K_CONFIRMED = 1 << 6, /* a real connection: listed by the kernel, or the peer sent a
	                             segment only the real peer could (exact numbers) */
	FSM_K_PENDING = 1 << 7,   /* pend_end/pend_dt: peer data not checkable when it came */
};

/* Bits of struct fsm_conn.round: what happened in the current probe round. */
enum fsm_round {
	FSM_R_SOFT_ERROR = 1 << 0, /* ICMP/send error heard since the round began */
	FSM_R_UNCERTAIN = 1 << 1,  /* the round was restarted: the capture may have been deaf */
	FSM_R_OBSERVED = 1 << 2,   /* observe-only: the idle of the silence up to round_at was
	                              told (a segment from the peer since starts a new one) */
	FSM_R_ICMP_HEARD = 1 << 3, /* an ICMP error about the latest probe was taken: another
	                              copy of it (a router captures an error it forwards twice,
	                              arriving and leaving) or another error is no news */
};

/* How far a forwarded connection's numbers are its ends' own word (struct fsm_conn.guess;
 * gateway mode, a flow found in conntrack at start whose one end never answered its
 * learning SYNs: fsm_borrow). Probes carry no byte while it is not FSM_GUESS_NONE. */
enum fsm_guess {
	FSM_GUESS_NONE = 0, /* the numbers are the ends' own, as usual */
	FSM_GUESS_QUIET,    /* our numbers are our end's own, but that the probed end has all
	                       it sent (nothing in flight) is assumed, not its word: until an
	                       acceptable answer acknowledges exactly SND.NXT */
	FSM_GUESS_BORROWED, /* our numbers are the probed end's own, swapped (its challenge
	                       ACK to the other record's SYN): SEQ = its RCV.NXT - 1 is left of
	                       its window whatever the truth. Until our end speaks (its own
	                       numbers void these) */
};

/* What the stall clock (struct fsm_conn.stall_since) is timing (struct fsm_conn.stall). */
enum fsm_stall {
	FSM_STALL_NONE = 0, /* nothing: no data in flight, the peer's window open */
	FSM_STALL_RTX,      /* our data in flight, no segment from the peer since stall_since */
	FSM_STALL_ZW,       /* the peer's window zero since stall_since */
};

/* Bits of struct fsm_conn.stall_bits. */
enum fsm_stall_bit {
	FSM_SB_ZWP = 1 << 0,  /* our kernel probed the zero window (it has data waiting) */
	FSM_SB_TOLD = 1 << 1, /* the zero-window stall was announced (FSM_EV_STALLED) */
	FSM_SB_LATE = 1 << 2, /* the zero-window deadline passed before any zero-window probe */
};

/* Learning the numbers of a discovered connection (struct fsm_conn.learn). */
enum fsm_learn {
	FSM_LEARN_NONE = 0, /* nothing asked */
	FSM_LEARN_ASKED1,   /* one SYN injected into our own stack: challenge ACK awaited */
	FSM_LEARN_ASKED2,   /* the retry (after the kernel's 500 ms challenge-ACK limit) */
	FSM_LEARN_BLOCKED,  /* no challenge ACK came: wait for traffic (logged once) */
};

/* The capture never missed a packet (the `blind` argument of fsm_on_timer). */
#define FSM_NEVER_BLIND 0.0

/* How long before a connection's first probe its numbers are asked for (at most half its
 * idle time), when they are not complete: discovered, or seen only from a handshake. */
#define FSM_LEARN_LEAD 1.0
/* Wait between the two SYNs (Linux: one challenge ACK per 500 ms per socket). */
#define FSM_LEARN_RETRY 0.6

/* What the machine knows of one connection. Kept small: it is per connection. */
struct fsm_conn {
	uint32_t snd_una;  /* peer's highest ACK */
	uint32_t snd_nxt;  /* our highest SEQ+LEN */
	uint32_t rcv_nxt;  /* our highest ACK */
	uint32_t peer_end; /* peer's highest SEQ+LEN */
	uint32_t our_tsval, peer_tsval;
	uint32_t probe_seq, probe_ack; /* fields of the probes of this round (while learning,
	                                  probe_seq is the SEQ of our injected SYN) */
	uint32_t pend_end; /* end of the last peer data segment that could not be checked when it
	                      came (numbers unknown, or beyond RCV.NXT): our own ACK of exactly
	                      that end proves it real, and its time becomes last_rx */
	float pend_dt;     /* when it came, s after last_rx */
	uint16_t our_window;
	uint8_t known;        /* FSM_K_* */
	uint8_t ts_on;        /* our last segment carried a timestamp */
	uint8_t state;        /* enum fsm_state */
	uint8_t probes_out;   /* probes sent this round */
	uint8_t round;        /* FSM_R_* of the current probe round */
	uint8_t learn;        /* enum fsm_learn */
	double last_rx;       /* time of the last segment from the peer (or first sight) */
	double last_probe;    /* time the last probe was sent */
	double round_at;      /* when this probe round (or learning) began: a capture blind
	                         after it may have hidden the answer */
	double timer_at;      /* when the keepalive timer fires; 0 = never (see fsm_wake_at) */
	double stall_since;   /* start of the stall clock (enum fsm_stall; stall_timeout > 0) */
	uint16_t retransmits; /* our retransmissions seen since stall_since */
	uint8_t stall;        /* enum fsm_stall */
	uint8_t stall_bits;   /* FSM_SB_* */
	uint8_t guess;        /* enum fsm_guess */
};

/* Fields of a probe; the caller adds addresses and ports from the connection key. */
struct fsm_probe {
	uint32_t seq, ack;
	uint32_t tsval, tsecr;
	uint16_t window;
	uint8_t has_ts;
	uint8_t payload_len; /* 0 or 1 (one 0x00 byte) */
	uint8_t n;           /* probe number in this round, from 1 */
};

enum fsm_event_type {
	FSM_EV_IDLE = 1,    /* probing starts: idle */
	FSM_EV_PROBE,       /* (debug) a probe is sent: probes */
	FSM_EV_REPLY,       /* (debug) a segment answered a probe: rtt */
	FSM_EV_ALIVE,       /* probes, rtt */
	FSM_EV_UNREACHABLE, /* icmp_family, icmp_type, icmp_code, from (or local send error) */
	FSM_EV_DEAD,        /* probes, idle, reason */
	FSM_EV_RESET,       /* probes */
	FSM_EV_CLOSE,       /* reason */
	FSM_EV_LEARN,       /* reason: "blocked" (no challenge ACK to two SYNs), "retry" (the
	                       capture may have missed it: asked again) */
	FSM_EV_UNCERTAIN,   /* probes, reason: the round may have been heard deaf
	                       ("capture-drops", "capture-down"): no verdict, probed again */
	FSM_EV_STALLED,     /* since, reason "zero-window": the peer's window stayed shut */
	FSM_EV_UNSTALLED,   /* since: the peer's window opened after FSM_EV_STALLED */
};

/* Why a packet was ignored (counted by the caller). */
enum fsm_ignore {
	FSM_IGN_NONE = 0,
	FSM_IGN_OWN_PROBE,  /* our own probe seen leaving */
	FSM_IGN_BAD_ACK,    /* peer segment acking data we never sent (spoofed or stale) */
	FSM_IGN_BAD_RST,    /* RST whose SEQ is not exact */
	FSM_IGN_ICMP_MATCH, /* ICMP quote that is not one of our probes */
	FSM_IGN_SYN,        /* a peer's SYN (the kernel challenges it; never wipes a record) */
	FSM_IGN_NO_ACK,     /* peer segment without ACK on a synchronized connection */
	FSM_IGN_BAD_SEQ,    /* peer segment whose SEQ is not the one expected (RCV.NXT) */
	FSM_IGN_UNVERIFIED, /* peer segment before our numbers are known: cannot be checked */
	FSM_IGN_COUNT,
};

struct fsm_event {
	uint8_t type;   /* enum fsm_event_type */
	uint8_t probes; /* probes out when the event happened */
	uint8_t icmp_type, icmp_code;
	uint8_t notable;      /* FSM_EV_ALIVE after a missed probe, a dead verdict or an
	                         uncertain round: a change worth logging */
	int send_errno;       /* FSM_EV_UNREACHABLE from a local send error; 0 for ICMP */
	double idle;          /* s since the last segment from the peer */
	double since;         /* stalls: s since the stall clock started */
	uint32_t unacked;     /* stalled dead verdict: bytes in flight */
	uint16_t retransmits; /* stalled dead verdict: our retransmissions seen */
	double rtt;           /* s from the last probe to the reply */
	const char *reason;  /* "no-reply", "unreachable", "stalled", "zero-window", "fin", "rst" */
	const uint8_t *from; /* ICMP sender (points into the caller's packet) */
};

/* Actions for the caller, filled by every fsm_on_* call. */
struct fsm_out {
	int nev;
	struct fsm_event ev[4];
	bool send_probe; /* send a probe (now or, paced, soon: fsm_probe_now, fsm_on_sent) */
	struct fsm_probe probe;
	bool rearm;  /* conn.timer_at moved earlier: re-arm the timer */
	bool forget; /* drop the connection now (its closed linger is over) */
	bool learn;  /* inject a SYN (peer -> us, SEQ learn_seq) into our stack (now or soon:
	                fsm_learn_now, fsm_on_sent) */
	uint32_t learn_seq;
	enum fsm_ignore ignored; /* the input was ignored, and why */
};

/* Starts watching a connection first seen at now. */
void fsm_init(struct fsm_conn *c, double now, const struct fsm_params *p);

/* Starts watching a connection found in the kernel's socket list at now: idle s since
 * its last segment from the peer (the kernel's clock), quiet when nothing is in flight.
 * Its numbers are asked for (out.learn) FSM_LEARN_LEAD s (at most idle / 2) before its first probe.
 * A connection found overdue is probed at once, with the probes the kernel would already have sent
 * counted (at most probes - 1): its verdict comes when it would have come. */
void fsm_init_discovered(struct fsm_conn *c, double now, double idle, bool quiet,
                         const struct fsm_params *p);

/* A segment of this connection: from_peer true when it came from the peer.
 * Learns numbers, restarts the idle clock, judges replies, RST and FIN. */
void fsm_on_segment(struct fsm_conn *c, const struct fsm_params *p, const struct codec_tcp *seg,
                    bool from_peer, double now, struct fsm_out *out);

/* An ICMP error whose quote names this connection (our end as source). Taken when it
 * quotes a probe of the current round (its SEQ), once per probe sent. */
void fsm_on_icmp(struct fsm_conn *c, const struct fsm_params *p, const struct codec_icmp *icmp,
                 double now, struct fsm_out *out);

/* The connection's timer fired (at or after c->timer_at). blind is the latest time at
 * which the caller's capture may have missed packets (drops counted by the kernel; INFINITY
 * while the capture is down; FSM_NEVER_BLIND when never): a round that it overlaps gives no
 * verdict but FSM_EV_UNCERTAIN and a new round, and learning asks again instead of giving
 * up. With p->observe, where a round would start it only tells FSM_EV_IDLE, once per silence
 * of the peer: no probe, no learning SYN, no verdict, no stall. */
void fsm_on_timer(struct fsm_conn *c, const struct fsm_params *p, double now, double blind,
                  struct fsm_out *out);

/* The kernel's own view of a connection (a discovery dump's tcp_info): our data in flight
 * (unacked bytes) under the retransmission timer (retransmits RTOs without progress), with
 * no ACK from the peer and no new data of ours for silent s. A connection whose numbers the
 * capture has not taught (discovered with data in flight, a silent peer) gets its
 * retransmission stall from here: dead reason=stalled when silent >= stall_timeout. With
 * its numbers known, the capture decides and this does nothing. */
void fsm_on_kernel_stall(struct fsm_conn *c, const struct fsm_params *p, double now, double silent,
                         uint32_t unacked, uint16_t retransmits, struct fsm_out *out);

/* The stall deadline being timed (stall_since + stall_timeout), or 0 when none is (none
 * begun, already told, or stall_timeout off). */
double fsm_stall_due(const struct fsm_conn *c, const struct fsm_params *p);

/* When the machine wants its next fsm_on_timer call: its keepalive timer, or the stall
 * deadline (stall_since + stall_timeout) when sooner; 0 = never. */
double fsm_wake_at(const struct fsm_conn *c, const struct fsm_params *p);

/* Gateway mode: c, a record found in conntrack at start whose end never answered its
 * learning SYNs (learn blocked, watching), takes the numbers of its partner from (the
 * flow's other record, which learnt its own end's from that end's challenge ACK and can
 * probe), swapped: its SND.UNA = SND.NXT = from's RCV.NXT, its RCV.NXT = from's SND.NXT,
 * the timestamps echoed, from's window as a stand-in. c becomes FSM_GUESS_BORROWED and from
 * FSM_GUESS_QUIET: both probe with no byte (SEQ one below what the probed end expects, if
 * nothing is in flight; never a byte that could enter a stream if something is). Returns
 * false, changing nothing, when either is not in that state. */
bool fsm_borrow(struct fsm_conn *c, struct fsm_conn *from);

/* Paced sending: the probe asked for by out.send_probe is about to go out now. Fills *pr
 * from the numbers known now; false when it is no longer wanted (a reply came meanwhile, our
 * data is in flight, or the rule became observe-only): then it is not counted. */
bool fsm_probe_now(struct fsm_conn *c, const struct fsm_params *p, struct fsm_probe *pr);

/* Paced sending: true while the learning SYN asked for by out.learn is still wanted; *seq
 * is its SEQ. */
bool fsm_learn_now(const struct fsm_conn *c, uint32_t *seq);

/* The probe or learning SYN went out at sent_at (after its pacing delay): the RTT counts
 * from there, a learning retry waits FSM_LEARN_RETRY from there, and the next probe (or the
 * verdict) comes no sooner than half an interval after it: a probe the pacer held is never
 * followed at once by another, yet a small delay does not move the schedule (which counts
 * from the last segment received, so a restart or a short queue keeps the verdict time). */
void fsm_on_sent(struct fsm_conn *c, const struct fsm_params *p, bool learn, double sent_at);

/* Sending the probe asked for failed locally with errno err. A routing or firewall error
 * (no route, prohibited) is a soft error, like ICMP; a resource error (ENOBUFS, ENOMEM,
 * EPROTO) does not count the probe, which is retried in 500 ms as the kernel does. */
void fsm_on_send_error(struct fsm_conn *c, int err, double now, struct fsm_out *out);

/* The learning SYN asked for could not be sent (errno from the sender): it does not count
 * as a try; it is asked again FSM_RESOURCE_RETRY s later. */
void fsm_on_learn_error(struct fsm_conn *c, double now, struct fsm_out *out);

/* True when every number a probe needs is known and nothing is in flight. */
bool fsm_can_probe(const struct fsm_conn *c);

/* Name of an event type: "idle", "probe", ... */
const char *fsm_event_name(int type);

/* Name of a state: "watch", "probing", "dead", "closed". */
const char *fsm_state_name(int state);

/* Name of an ignore reason, for counters. */
const char *fsm_ignore_name(int reason);

#endif

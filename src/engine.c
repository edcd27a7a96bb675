/* engine.c: wiring of the core (sniproxy style: watchers only turn I/O into calls).
 *
 * A captured frame is decoded (codec), oriented by this host's addresses, looked up
 * by 4-tuple (conntab, O(1)), matched to a rule when new (rule), and handed to the
 * connection's state machine (fsm). The machine's actions are carried out here:
 * status lines (log), probes (sender), and the connection's ev_timer. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "conntab.h"
#include "engine.h"
#include "fsm.h"
#include "gateway.h"
#include "log.h"
#include "rule.h"
#include "timerheap.h"

/* struct conn.flags */
enum {
	CONN_F_GEN = 1 << 0,         /* parity of the last dump that listed it (or made it) */
	CONN_F_DISCOVERED = 1 << 1,  /* first found in the kernel's socket list */
	CONN_F_KERNEL_KA = 1 << 2,   /* left to the kernel's keepalive: not probed */
	CONN_F_LISTED = 1 << 3,      /* some dump listed its socket (so a dump can miss it) */
	CONN_F_ANNOUNCED = 1 << 4,   /* its track line was written at info (log_alive policy) */
	CONN_F_QUEUED = 1 << 5,      /* waits in the pacer's queue */
	CONN_F_Q_LEARN = 1 << 6,     /* ... for a learning SYN (else a probe) */
	CONN_F_UNCONFIRMED = 1 << 7, /* seen only from our side so far: may be a SYN flood */
	CONN_F_ZW_STALLED = 1 << 8,  /* counted in zw_stalled: its zero-window stall was told */
	CONN_F_STALL_DEAD = 1 << 9,  /* its last verdict is dead from a retransmission stall */
	CONN_F_BUSY = 1 << 10,       /* left out of the capture while busy (e->busy) */
	CONN_F_NOBUSY = 1 << 11,     /* never left out: the kernel has no socket for it */
	CONN_F_GATEWAY = 1 << 12,    /* one end of a forwarded connection (a gateway rule's) */
	CONN_F_NAT = 1 << 13,        /* ... through NAT: its gateway_nat is in e->nat */
	CONN_F_CT_GEN = 1 << 14,     /* a gateway record: parity of the last conntrack dump that
	                                listed its flow (or made it) */
	CONN_F_CT_LISTED = 1 << 15,  /* ... and some dump listed it (or made it): its flow has a
	                                conntrack entry, so a dump that misses it proves it gone */
};

/* Records seen only from our side (our SYN-ACK to a SYN that may be spoofed, our first
 * segment of a connection found mid-stream) are "unconfirmed" until the peer proves it exists
 * (an exact segment) or the kernel lists the socket. They are never probed, never logged at
 * info, hold no max_connections slot, and live at most UNCONF_TTL s in a pool of UNCONF_MAX
 * where the oldest goes first: a flood cannot crowd out real connections. */
#define UNCONF_MAX 4096
#define UNCONF_TTL 10.0

/* An unconfirmed record in the ring: when it was first seen, and a hash of its 4-tuple (an
 * entry is live while its record is unconfirmed and still that connection: a record freed
 * and reused for another tuple leaves a stale entry). */
struct unconf_entry {
	struct conn *c;
	double since;
	uint32_t tuple;
};

/* The pacer: probes and learning SYNs wait in a FIFO and go out at most `rate` per second,
 * in batches, so that a burst of connections falling due at once never outruns the capture
 * (ARCHITECTURE.md, "Pacing"). */
#define PACE_BATCH     64     /* packets per sender_send call round */
#define PACE_MAX_BATCH 256    /* packets per pacer run, at most (then the loop runs) */
#define PACE_BURST     0.002  /* s of rate the token bucket may hold */
#define PACE_MIN_RATE  1000.0 /* the rate never falls below this after drops */
#define PACE_RECOVER   1.25   /* rate x this per drop-free poll, up to max_probe_rate */
#define SYNC_EVERY     0.1    /* s between capture drop checks */
/* Timers fired per loop iteration at most: a burst of connections falling due at once is
 * handled in chunks, with the captures read between them. */
#define TICK_MAX   1024
#define TICK_SLACK 0.0005 /* s: a timer due this soon fires now (as fsm's epsilon) */

struct pacer {
	struct conn **q; /* ring of queued records; a stale entry has lost CONN_F_QUEUED */
	size_t cap, head, n;
	double tokens, refill_at, rate;
	ev_timer t;
	double at; /* without a loop: when it runs next (0: not armed) */
};
struct engine {
	struct ev_loop *loop; /* NULL: the caller drives time (engine_next_due) */
	engine_clock_fn clock;
	void *clock_arg;
	engine_send_fn send_hook;
	void *send_arg;
	const struct config *cfg;
	const struct addr_set *local;
	struct sender *sender;
	struct conntab *tab;
	struct engine_stats st;
	engine_verdict_fn hook;
	void *hook_arg;
	uint16_t gen;                             /* CONN_F_GEN of the current dump */
	bool sweeping;                            /* a reconciliation sweep is under way */
	struct conntab_cursor sweep;              /* its position */
	uint8_t limit_told[CONFIG_MAX_RULES / 8]; /* rules whose limit line was logged */
	size_t by_state[FSM_STATE_COUNT];         /* records by their counted state */
	unsigned long long *rule_state;           /* [rule][state] counts, cfg's rules */
	size_t rule_state_n;                      /* rules rule_state is sized for */
	unsigned long long *rule_dead;            /* dead verdicts per rule since it was loaded */
	struct pacer pace;
	struct timerheap timers; /* every connection's timer (fsm.timer_at) */
	ev_timer tick;           /* fires at the earliest of them */
	double tick_at;          /* the time the tick is armed for */
	engine_sync_fn sync;
	void *sync_arg;
	unsigned long long drops; /* the capture's drop count at the last sync */
	double blind;             /* latest time the capture may have missed packets */
	bool down;                /* the capture is down: blind until it is back */
	const char *blind_why;    /* "capture-drops" or "capture-down": the last blindness */
	unsigned long sync_iter;  /* loop iteration of the last sync */
	double last_drop_log;
	ev_timer sync_t;
	struct unconf_entry *unconf; /* FIFO ring of unconfirmed records (stale ones skipped) */
	size_t unconf_head, unconf_len, n_unconf;
	size_t zw_stalled;         /* records with CONN_F_ZW_STALLED */
	engine_kquery_fn kquery;   /* busy connections: the kernel's view (NULL: none) */
	engine_exclude_fn exclude; /* ... and the capture's exclusions */
	void *busy_arg;
	struct conn *busy[ENGINE_BUSY_MAX];
	size_t nbusy;
	double busy_next_enter; /* no connection is left out before (filter changes rare) */
	size_t max_conns;       /* confirmed records at most (max_connections) */
	bool gateway;           /* the config has a gateway rule: forwarded segments are followed */
	bool oneway_told;       /* the warning of a forwarded connection seen one way was written */
	engine_ct_fn ct;        /* conntrack lookups (NAT), or NULL */
	void *ct_arg;
	struct gateway_natmap *nat; /* the CONN_F_NAT records' views (made at the first) */
	engine_expect_fn expect;    /* answers the router drops (hush.h), or NULL */
	void *expect_arg;
	uint32_t learn_mark; /* learning SYNs through NAT: the router's notrack mark, or 0 */
	uint16_t ct_gen;            /* CONN_F_CT_GEN of the current conntrack dump */
};

const double engine_rtt_bounds[ENGINE_RTT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0,
};

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents);
static void apply(struct engine *e, struct conn *c, struct fsm_out *out, double now);
static void busy_remove(struct engine *e, struct conn *c);
static void busy_recheck(struct engine *e, struct conn *c, double now);
static bool busy_segment(struct engine *e, struct conn *c, const struct codec_tcp *seg, double now);
static void busy_count(struct engine *e, struct conn *c, double now);
static void on_pace(struct ev_loop *loop, ev_timer *w, int revents);
static void on_sync_timer(struct ev_loop *loop, ev_timer *w, int revents);
static bool has_gateway_rule(const struct config *cfg);
static bool gateway_pair_seen(struct engine *e, struct conn *c, double now);
static void gateway_blocked(struct engine *e, struct conn *c, double now);
static const struct addr_tuple *name_of(const struct engine *e, const struct conn *c);
static const struct addr_tuple *send_of(const struct engine *e, const struct conn *c);
static struct conn *partner_of(const struct engine *e, const struct conn *c);
static void challenge_arrived(struct engine *e, const struct codec_tcp *seg, double now);

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double mono_clock(void *arg)
{
	(void)arg;
	return mono_now();
}

/* The time now on the engine's clock (its caller's: engine_set_clock). */
static double now_of(const struct engine *e)
{
	return e->clock(e->clock_arg);
}

static uint32_t random_seed(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint32_t)(ts.tv_nsec ^ (ts.tv_sec << 16) ^ (uint32_t)getpid());
}

static uint32_t *timer_pos_of(void *item)
{
	return &((struct conn *)item)->timer_pos;
}

/* ---- counts by state and rule (kept on every change: reports never walk the table) ---- */

/* Sizes the per-rule counts for n rules (zeroed). Returns 0 or -1. */
static int counts_resize(struct engine *e, size_t n)
{
	unsigned long long *rs = calloc((n ? n : 1) * FSM_STATE_COUNT, sizeof(*rs));
	unsigned long long *rd = calloc(n ? n : 1, sizeof(*rd));

	if (!rs || !rd) {
		free(rs);
		free(rd);
		return -1;
	}
	free(e->rule_state);
	free(e->rule_dead);
	e->rule_state = rs;
	e->rule_dead = rd;
	e->rule_state_n = n;
	return 0;
}

static void count_add(struct engine *e, const struct conn *c, long d)
{
	if (c->flags & CONN_F_UNCONFIRMED)
		return; /* counted once it proves real */
	e->by_state[c->counted] += (size_t)d;
	if (c->rule < e->rule_state_n)
		e->rule_state[c->rule * FSM_STATE_COUNT + c->counted] += (unsigned long long)d;
}

/* True while c's zero-window stall is told and not over. */
static bool zw_stalled(const struct conn *c)
{
	return c->fsm.stall == FSM_STALL_ZW && (c->fsm.stall_bits & FSM_SB_TOLD) &&
	       c->fsm.state != FSM_CLOSED;
}

/* The record's state may have changed: moves it in the counts. */
static void count_update(struct engine *e, struct conn *c)
{
	if (zw_stalled(c) != !!(c->flags & CONN_F_ZW_STALLED)) {
		c->flags ^= CONN_F_ZW_STALLED;
		if (c->flags & CONN_F_ZW_STALLED)
			e->zw_stalled++;
		else
			e->zw_stalled--;
	}
	if (c->counted == c->fsm.state)
		return;
	count_add(e, c, -1);
	c->counted = c->fsm.state;
	count_add(e, c, 1);
}

struct engine *engine_new(struct ev_loop *loop, const struct config *cfg,
                          const struct addr_set *local, struct sender *sender, size_t max_conns)
{
	struct engine *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->tab = conntab_new(max_conns + UNCONF_MAX, random_seed());
	e->max_conns = max_conns;
	e->unconf = calloc(UNCONF_MAX, sizeof(*e->unconf));
	if (!e->tab || !e->unconf) {
		conntab_free(e->tab);
		free(e->unconf);
		free(e);
		return NULL;
	}
	e->loop = loop;
	e->clock = mono_clock;
	e->cfg = cfg;
	e->local = local;
	e->sender = sender;
	e->gateway = has_gateway_rule(cfg);
	e->pace.rate = (double)cfg->max_probe_rate;
	e->st.probe_rate = e->pace.rate;
	ev_timer_init(&e->pace.t, on_pace, 0.0, 0.0);
	e->pace.t.data = e;
	ev_timer_init(&e->sync_t, on_sync_timer, SYNC_EVERY, SYNC_EVERY);
	e->sync_t.data = e;
	timerheap_init(&e->timers, timer_pos_of);
	ev_timer_init(&e->tick, on_tick, 0.0, 0.0);
	e->tick.data = e;
	if (counts_resize(e, cfg->nrules) < 0) {
		engine_free(e);
		return NULL;
	}
	return e;
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	if (e->loop) {
		ev_timer_stop(e->loop, &e->pace.t);
		ev_timer_stop(e->loop, &e->sync_t);
		ev_timer_stop(e->loop, &e->tick);
	}
	timerheap_free(&e->timers);
	conntab_free(e->tab);
	gateway_natmap_free(e->nat);
	free(e->pace.q);
	free(e->rule_state);
	free(e->rule_dead);
	free(e->unconf);
	free(e);
}

const struct engine_stats *engine_stats(const struct engine *e)
{
	return &e->st;
}

size_t engine_count(const struct engine *e)
{
	return conntab_count(e->tab) - e->n_unconf;
}

static const struct rule *rule_of(const struct engine *e, const struct conn *c)
{
	return &e->cfg->rules[c->rule];
}

/* Starts a status line with the fields every line has, for rule r. */
static void line_start_rule(struct log_line *l, const char *event, const struct rule *r,
                            const struct addr_tuple *k)
{
	char ep[ADDR_ENDPOINT_STRLEN];

	log_line_begin(l, event);
	if (r->mode == RULE_MODE_GATEWAY) {
		gateway_line_fields(l, r, k); /* client=, server=, side= */
		return;
	}
	log_line_str(l, "rule", r->name);
	log_line_str(l, "local",
	             addr_format_endpoint(k->family, k->local, k->lport, ep, sizeof(ep)));
	log_line_str(l, "remote",
	             addr_format_endpoint(k->family, k->remote, k->rport, ep, sizeof(ep)));
}

/* Starts a status line with the fields every line has. */
static void line_start(struct log_line *l, const char *event, const struct engine *e,
                       const struct conn *c)
{
	line_start_rule(l, event, rule_of(e, c), name_of(e, c));
}

static const char *send_error_name(int err)
{
	switch (err) {
	case EHOSTUNREACH:
		return "host-unreachable";
	case ENETUNREACH:
		return "net-unreachable";
	case EACCES:
	case EPERM:
		return "admin-prohibited";
	case EINVAL:
		return "blackhole";
	default:
		return "send-error";
	}
}

static void add_unreachable(struct log_line *l, const struct conn *c, const struct fsm_event *ev)
{
	char ip[ADDR_ENDPOINT_STRLEN];
	int fam = c->key.family;

	if (ev->send_errno) {
		log_line_str(l, "icmp", send_error_name(ev->send_errno));
		log_line_str(l, "from", addr_format_ip(fam, c->key.local, ip, sizeof(ip)));
		return;
	}
	log_line_str(l, "icmp", codec_icmp_name(fam, ev->icmp_type, ev->icmp_code));
	log_line_str(l, "from", addr_format_ip(fam, ev->from, ip, sizeof(ip)));
}

/* A dead verdict from a retransmission stall (on_stall's, not on_dead's). */
static bool is_stall_verdict(const struct fsm_event *ev)
{
	return ev->type == FSM_EV_STALLED ||
	       (ev->type == FSM_EV_DEAD && ev->reason && strcmp(ev->reason, "stalled") == 0);
}

static void add_stall_fields(struct log_line *l, const struct fsm_event *ev)
{
	log_line_int(l, "unacked", (long long)ev->unacked);
	log_line_int(l, "retransmits", (long long)ev->retransmits);
	log_line_fixed(l, "since", ev->since, 3);
}

static void add_fields(struct log_line *l, const struct conn *c, const struct fsm_event *ev)
{
	switch (ev->type) {
	case FSM_EV_IDLE:
		log_line_fixed(l, "idle", ev->idle, 3);
		break;
	case FSM_EV_PROBE:
		log_line_int(l, "n", ev->probes);
		break;
	case FSM_EV_REPLY:
		log_line_fixed(l, "rtt", ev->rtt * 1000.0, 3);
		break;
	case FSM_EV_ALIVE:
		log_line_fixed(l, "rtt", ev->rtt * 1000.0, 3);
		log_line_int(l, "probes", ev->probes);
		break;
	case FSM_EV_UNREACHABLE:
		add_unreachable(l, c, ev);
		break;
	case FSM_EV_DEAD:
		log_line_int(l, "probes", ev->probes);
		log_line_fixed(l, "idle", ev->idle, 3);
		log_line_str(l, "reason", ev->reason);
		if (is_stall_verdict(ev))
			add_stall_fields(l, ev);
		break;
	case FSM_EV_STALLED:
		log_line_str(l, "reason", ev->reason);
		log_line_fixed(l, "since", ev->since, 3);
		break;
	case FSM_EV_UNSTALLED:
		log_line_fixed(l, "since", ev->since, 3);
		break;
	case FSM_EV_RESET:
		log_line_int(l, "probes", ev->probes);
		break;
	case FSM_EV_CLOSE:
		log_line_str(l, "reason", ev->reason);
		break;
	case FSM_EV_LEARN:
		log_line_str(l, "result", ev->reason);
		break;
	case FSM_EV_UNCERTAIN:
		log_line_int(l, "probes", ev->probes);
		log_line_fixed(l, "idle", ev->idle, 3);
		log_line_str(l, "reason", ev->reason);
		if (ev->since > 0)
			log_line_fixed(l, "stall_since", ev->since, 3); /* a stall, not a round */
		break;
	}
}

static void count_event(struct engine_stats *st, const struct fsm_event *ev)
{
	switch (ev->type) {
	case FSM_EV_REPLY:
		st->replies++;
		break;
	case FSM_EV_ALIVE:
		st->alive++;
		break;
	case FSM_EV_UNREACHABLE:
		st->unreachable++;
		break;
	case FSM_EV_DEAD:
		st->dead++;
		if (is_stall_verdict(ev))
			st->stall_retransmit++;
		break;
	case FSM_EV_STALLED:
		st->stall_zero_window++;
		break;
	case FSM_EV_UNSTALLED:
		st->unstalled++;
		break;
	case FSM_EV_RESET:
		st->reset++;
		break;
	case FSM_EV_CLOSE:
		st->closed++;
		break;
	case FSM_EV_LEARN:
		if (strcmp(ev->reason, "retry") == 0)
			st->learn_retries++;
		else
			st->learn_blocked++;
		break;
	case FSM_EV_UNCERTAIN:
		st->uncertain++;
		break;
	}
}

/* Keeps the connection's last RTT and verdict, and the RTT histogram. */
static void note_event(struct engine *e, struct conn *c, const struct fsm_event *ev, double now)
{
	int i;

	switch (ev->type) {
	case FSM_EV_REPLY:
		c->rtt = (float)ev->rtt;
		for (i = 0; i < ENGINE_RTT_BUCKETS && ev->rtt > engine_rtt_bounds[i]; i++)
			;
		e->st.rtt_hist[i]++;
		e->st.rtt_sum += ev->rtt;
		break;
	case FSM_EV_ALIVE:
	case FSM_EV_DEAD:
	case FSM_EV_RESET:
	case FSM_EV_UNREACHABLE:
	case FSM_EV_STALLED:
		c->verdict = ev->type;
		c->verdict_at = now;
		c->flags &= (uint16_t)~CONN_F_STALL_DEAD;
		if (ev->type == FSM_EV_DEAD && is_stall_verdict(ev))
			c->flags |= CONN_F_STALL_DEAD;
		break;
	}
}

/* Writes c's track line unless already written. With log_alive = changes (and not at debug
 * level) it is put off until the connection first goes idle or has news, so that short-lived
 * connections write nothing at info. */
static void announce(struct engine *e, struct conn *c)
{
	struct log_line l;

	if (c->flags & CONN_F_ANNOUNCED)
		return;
	c->flags |= CONN_F_ANNOUNCED;
	line_start(&l, "track", e, c);
	log_line_str(&l, "source", (c->flags & CONN_F_DISCOVERED) ? "discovered" : "capture");
	log_line_emit(&l);
}

/* True when every routine line is written: log_alive = every, or the debug level. */
static bool log_routine(const struct engine *e)
{
	return e->cfg->log_alive_every || log_level() >= CONFIG_LOG_DEBUG;
}

/* The level of an event's line: the log policy of README "Status log". */
static int event_level(const struct engine *e, const struct conn *c, const struct fsm_event *ev)
{
	bool every = e->cfg->log_alive_every;

	switch (ev->type) {
	case FSM_EV_PROBE:
	case FSM_EV_REPLY:
		return CONFIG_LOG_DEBUG;
	case FSM_EV_IDLE: /* observe-only: what the operator asked to see */
		return every || rule_of(e, c)->params.observe ? CONFIG_LOG_INFO : CONFIG_LOG_DEBUG;
	case FSM_EV_ALIVE:
		return every || ev->notable ? CONFIG_LOG_INFO : CONFIG_LOG_DEBUG;
	case FSM_EV_LEARN:
		return strcmp(ev->reason, "retry") == 0 ? CONFIG_LOG_DEBUG : CONFIG_LOG_INFO;
	case FSM_EV_CLOSE:
		return (c->flags & CONN_F_ANNOUNCED) ? CONFIG_LOG_INFO : CONFIG_LOG_DEBUG;
	default:
		return CONFIG_LOG_INFO;
	}
}

static void log_event(struct engine *e, struct conn *c, const struct fsm_event *ev)
{
	struct log_line l;
	int level = event_level(e, c, ev);

	count_event(&e->st, ev);
	if (ev->type == FSM_EV_DEAD && c->rule < e->rule_state_n)
		e->rule_dead[c->rule]++;
	if (ev->type == FSM_EV_IDLE || level <= CONFIG_LOG_INFO)
		announce(e, c); /* first idle, or news: the operator hears of it now */
	if (level > log_level())
		return;
	line_start(&l, fsm_event_name(ev->type), e, c);
	add_fields(&l, c, ev);
	if (ev->type == FSM_EV_IDLE && rule_of(e, c)->params.observe)
		log_line_int(&l, "observe", 1); /* would probe now; sends nothing */
	log_line_emit(&l);
}

/* The tick fires at the earliest connection timer (at once when one is due). */
static void schedule_tick(struct engine *e)
{
	double at, delay;

	if (!e->loop)
		return; /* the caller drives time: engine_next_due */
	if (!timerheap_top(&e->timers, &at)) {
		ev_timer_stop(e->loop, &e->tick);
		return;
	}
	if (ev_is_active(&e->tick) && at == e->tick_at)
		return; /* the earliest timer did not change */
	e->tick_at = at;
	delay = at - now_of(e);
	ev_timer_stop(e->loop, &e->tick);
	ev_timer_set(&e->tick, delay > 0 ? delay : 0.0, 0.0);
	ev_timer_start(e->loop, &e->tick);
}

/* (Re)arms c's timer when its machine wants to wake (fsm_wake_at; disarmed when never). */
static void arm_timer(struct engine *e, struct conn *c)
{
	double at = fsm_wake_at(&c->fsm, &rule_of(e, c)->params);

	if (at <= 0)
		timerheap_remove(&e->timers, c);
	else if (timerheap_set(&e->timers, c, at) < 0)
		log_warnx("out of memory: a connection's timer is not armed");
	schedule_tick(e);
}

static void disarm_timer(struct engine *e, struct conn *c)
{
	timerheap_remove(&e->timers, c);
}
/* Removes a record without touching the counts (a stale pacer entry is skipped). */
static void drop_record(struct engine *e, struct conn *c)
{
	disarm_timer(e, c);
	if (c->flags & CONN_F_UNCONFIRMED)
		e->n_unconf--;
	if (c->flags & CONN_F_ZW_STALLED)
		e->zw_stalled--;
	if (c->flags & CONN_F_BUSY)
		busy_remove(e, c);
	if (c->flags & CONN_F_NAT)
		gateway_natmap_del(e->nat, &c->key);
	c->flags &=
	    (uint16_t) ~(CONN_F_QUEUED | CONN_F_Q_LEARN | CONN_F_UNCONFIRMED | CONN_F_ZW_STALLED);
	conntab_remove(e->tab, c);
}

static void forget(struct engine *e, struct conn *c)
{
	count_add(e, c, -1);
	drop_record(e, c);
}

/* ---- unconfirmed records --------------------------------------------------------- */

static bool unconf_live(const struct unconf_entry *u)
{
	return (u->c->flags & CONN_F_UNCONFIRMED) && addr_tuple_hash(&u->c->key, 0) == u->tuple;
}

/* The oldest live entry (stale ones before it are dropped from the ring), or NULL. */
static struct unconf_entry *unconf_oldest(struct engine *e)
{
	struct unconf_entry *u;

	while (e->unconf_len > 0) {
		u = &e->unconf[e->unconf_head];
		if (unconf_live(u))
			return u;
		e->unconf_head = (e->unconf_head + 1) % UNCONF_MAX;
		e->unconf_len--;
	}
	return NULL;
}

/* Forgets an unconfirmed record quietly (debug line): it never was a connection to us. */
static void unconf_drop(struct engine *e, struct conn *c)
{
	struct log_line l;

	e->st.unconfirmed_dropped++;
	if (log_level() >= CONFIG_LOG_DEBUG) {
		line_start(&l, "untrack", e, c);
		log_line_str(&l, "reason", "unconfirmed");
		log_line_emit(&l);
	}
	forget(e, c);
}

/* Drops unconfirmed records older than UNCONF_TTL (from the sync timer). */
static void unconf_expire(struct engine *e, double now)
{
	struct unconf_entry *u;

	while ((u = unconf_oldest(e)) && u->since + UNCONF_TTL <= now)
		unconf_drop(e, u->c);
}

/* Makes c an unconfirmed record. The ring holds every live one (at most UNCONF_MAX, see
 * track()) and stale entries, which are compacted away from its head when it is full. */
static void unconf_add(struct engine *e, struct conn *c)
{
	size_t i, n = 0;
	struct unconf_entry u;

	if (e->unconf_len == UNCONF_MAX) { /* compact: keep only the live entries, in order */
		for (i = 0; i < e->unconf_len; i++) {
			u = e->unconf[(e->unconf_head + i) % UNCONF_MAX];
			if (unconf_live(&u))
				e->unconf[(e->unconf_head + n++) % UNCONF_MAX] = u;
		}
		e->unconf_len = n;
	}
	while (e->unconf_len == UNCONF_MAX) { /* all live (a tuple seen twice): the oldest goes */
		u = e->unconf[e->unconf_head];
		e->unconf_head = (e->unconf_head + 1) % UNCONF_MAX;
		e->unconf_len--;
		if (unconf_live(&u))
			unconf_drop(e, u.c);
	}
	u.c = c;
	u.since = c->fsm.last_rx;
	u.tuple = addr_tuple_hash(&c->key, 0);
	e->unconf[(e->unconf_head + e->unconf_len++) % UNCONF_MAX] = u;
	c->flags |= CONN_F_UNCONFIRMED;
	e->n_unconf++;
}

/* Confirmed records (real connections), the ones max_connections counts. */
static size_t n_confirmed(const struct engine *e)
{
	return conntab_count(e->tab) - e->n_unconf;
}

static void refuse(struct engine *e, const struct rule *r, const struct addr_tuple *key);

/* An unconfirmed record proved real: it takes a max_connections slot (or is refused). Returns
 * false when it was refused (and forgotten). */
static bool confirmed(struct engine *e, struct conn *c)
{
	c->flags &= (uint16_t)~CONN_F_UNCONFIRMED;
	e->n_unconf--;
	c->counted = c->fsm.state;
	count_add(e, c, 1);
	if (n_confirmed(e) > e->max_conns) {
		refuse(e, rule_of(e, c), &c->key);
		forget(e, c);
		return false;
	}
	if (log_routine(e))
		announce(e, c);
	return true;
}

/* ---- the pacer ------------------------------------------------------------------- */

static int pace_grow(struct pacer *pc)
{
	size_t cap = pc->cap ? pc->cap * 2 : 1024, i;
	struct conn **q = malloc(cap * sizeof(*q));

	if (!q)
		return -1;
	for (i = 0; i < pc->n; i++)
		q[i] = pc->q[(pc->head + i) % pc->cap];
	free(pc->q);
	pc->q = q;
	pc->cap = cap;
	pc->head = 0;
	return 0;
}

/* Runs the pacer in delay s: its ev_timer, or (without a loop) its due time. */
static void pace_arm(struct engine *e, double delay)
{
	if (!e->loop) {
		e->pace.at = now_of(e) + delay;
		return;
	}
	ev_timer_set(&e->pace.t, delay, 0.0);
	ev_timer_start(e->loop, &e->pace.t);
}

static bool pace_armed(const struct engine *e)
{
	return e->loop ? ev_is_active(&e->pace.t) : e->pace.at > 0;
}

/* Queues c's probe (or learning SYN); the pacer sends it in FIFO order. */
static void pace_push(struct engine *e, struct conn *c, bool learn)
{
	struct pacer *pc = &e->pace;

	if (c->flags & CONN_F_QUEUED)
		return;
	if (pc->n == pc->cap && pace_grow(pc) < 0) {
		log_warnx("out of memory: a probe is not sent");
		return;
	}
	pc->q[(pc->head + pc->n++) % pc->cap] = c;
	c->flags |= (uint16_t)(CONN_F_QUEUED | (learn ? CONN_F_Q_LEARN : 0));
	if (!pace_armed(e))
		pace_arm(e, 0.0);
}

static struct conn *pace_pop(struct pacer *pc)
{
	struct conn *c = pc->q[pc->head];

	pc->head = (pc->head + 1) % pc->cap;
	pc->n--;
	return c;
}

/* What c's learning SYN goes out as (from key.remote to key.local), and its mark: the key
 * itself, unmarked; through NAT, while the router leaves marked packets untracked
 * (engine_set_learn_mark), the flow as the end spoken for sees it (gateway_nat.learn). */
static const struct addr_tuple *learn_of(const struct engine *e, const struct conn *c,
                                         uint32_t *mark)
{
	const struct gateway_nat *n;

	if (!e->learn_mark || !(c->flags & CONN_F_NAT) ||
	    !(n = gateway_natmap_get(e->nat, &c->key)))
		return &c->key;
	*mark = e->learn_mark;
	return &n->learn;
}

/* The packet c waits for, from what its machine knows now; false when no longer wanted. */
static bool pace_packet(struct engine *e, struct conn *c, struct sender_pkt *pkt)
{
	bool learn = c->flags & CONN_F_Q_LEARN;

	c->flags &= (uint16_t) ~(CONN_F_QUEUED | CONN_F_Q_LEARN);
	if (rule_of(e, c)->params.observe)
		return false; /* observe-only (a reload made it so while it waited) */
	memset(pkt, 0, sizeof(*pkt));
	pkt->key = learn ? learn_of(e, c, &pkt->mark) : send_of(e, c);
	pkt->kind = learn ? SENDER_SYN : SENDER_PROBE;
	if (learn)
		return fsm_learn_now(&c->fsm, &pkt->seq);
	return fsm_probe_now(&c->fsm, &rule_of(e, c)->params, &pkt->probe);
}

/* A learning SYN went out (err 0) or not: the debug line of the old unpaced path. */
static void learn_sent(struct engine *e, struct conn *c, int err)
{
	struct log_line l;

	e->st.learn_asked++;
	if (log_level() < CONFIG_LOG_DEBUG)
		return;
	line_start(&l, "learn", e, c);
	log_line_str(&l, "result", err ? "send-error" : "asked");
	log_line_int(&l, "n", c->fsm.learn);
	if (err)
		log_line_str(&l, "error", strerror(err));
	log_line_emit(&l);
}

/* The outcome of one paced packet: the machine hears when it went out, or why not. */
static void pace_result(struct engine *e, struct conn *c, const struct sender_pkt *pkt, int err,
                        double now)
{
	const struct fsm_params *p = &rule_of(e, c)->params;
	struct fsm_out out;
	double late = now - c->fsm.last_probe;

	if (pkt->kind == SENDER_SYN) {
		learn_sent(e, c, err);
		if (err) {
			fsm_on_learn_error(&c->fsm, now, &out); /* not asked: asked again soon */
			apply(e, c, &out, now);
		} else {
			fsm_on_sent(&c->fsm, p, true, now);
		}
	} else if (err == 0) {
		e->st.probes_sent++;
		if (late > e->st.probe_late_max)
			e->st.probe_late_max = late;
		fsm_on_sent(&c->fsm, p, false, now);
	} else {
		e->st.probes_sent++;
		e->st.send_errors++;
		fsm_on_send_error(&c->fsm, err, now, &out);
		apply(e, c, &out, now);
	}
	if (!c->timer_pos)
		arm_timer(e, c); /* it fired while c waited (a later timer_at is caught lazily) */
}

/* Sends a batch (sendmmsg), or hands it to the send hook; without either (tests,
 * benchmarks) every packet "goes out". */
static void pace_write(struct engine *e, struct sender_pkt *pkts, size_t n, int *errs)
{
	if (e->send_hook) {
		memset(errs, 0, n * sizeof(*errs));
		e->send_hook(e->send_arg, pkts, n, errs);
	} else if (e->sender)
		sender_send_batch(e->sender, pkts, n, errs);
	else
		memset(errs, 0, n * sizeof(*errs));
}

/* How long the router drops a learning SYN's challenge ACK (keyed by its flow only): an
 * ACK of the other end's new data sent by the same end within this window would be dropped
 * too (TCP recovers: the next ACK, or the other end's retransmission); the flow is idle
 * when it is asked, so there is seldom any. */
#define EXPECT_CHALLENGE_MS 2000

/* The answer p (a gateway record c's probe or learning SYN) draws, as the router's forward
 * hook sees it: each address is the one its end gives itself (hush.h). */
static void expect_of(const struct engine *e, const struct conn *c, const struct sender_pkt *p,
                      struct hush_expect *x)
{
	const struct fsm_params *par = &rule_of(e, c)->params;
	const struct gateway_nat *n =
	    (c->flags & CONN_F_NAT) ? gateway_natmap_get(e->nat, &c->key) : NULL;
	double ms = (par->interval * par->probes + 1.0) * 1000.0;

	memset(x, 0, sizeof(*x));
	x->family = c->key.family;
	if (p->kind == SENDER_PROBE) {
		/* the probed end's duplicate ACK: SEQ its SND.NXT (the probe's ACK), ACK its
		 * RCV.NXT (the probe's SEQ + 1); the round's probes all draw the same one */
		x->kind = HUSH_ANSWER;
		memcpy(x->src, c->key.remote, sizeof(x->src));
		x->sport = c->key.rport;
		x->seq = p->probe.ack;
		x->ack = p->probe.seq + 1;
		x->timeout_ms = ms < 4e9 ? (uint32_t)ms : 4000000000u;
		return;
	}
	/* the challenge ACK of the end spoken for (as it sees itself: through NAT, the
	 * partner's remote) to the probed end */
	x->kind = HUSH_CHALLENGE;
	memcpy(x->src, n ? n->partner.remote : c->key.local, sizeof(x->src));
	x->sport = n ? n->partner.rport : c->key.lport;
	memcpy(x->dst, c->key.remote, sizeof(x->dst));
	x->dport = c->key.rport;
	x->timeout_ms = EXPECT_CHALLENGE_MS;
}

/* Tells the expect hook of the answers this batch's gateway packets draw, before the batch
 * goes (an answer can be back within microseconds). */
static void pace_expect(struct engine *e, const struct sender_pkt *pkts, struct conn *const *conns,
                        size_t n)
{
	struct hush_expect x[PACE_BATCH];
	size_t i, m = 0;

	if (!e->expect)
		return;
	for (i = 0; i < n; i++)
		if (conns[i]->flags & CONN_F_GATEWAY)
			expect_of(e, conns[i], &pkts[i], &x[m++]);
	if (m)
		e->expect(e->expect_arg, x, m);
}

void engine_set_expect(struct engine *e, engine_expect_fn fn, void *arg)
{
	e->expect = fn;
	e->expect_arg = arg;
}

void engine_set_learn_mark(struct engine *e, uint32_t mark)
{
	e->learn_mark = mark;
}

/* Sends up to budget queued packets in batches; returns how many were sent. */
static size_t pace_send(struct engine *e, size_t budget)
{
	struct sender_pkt pkts[PACE_BATCH];
	struct conn *conns[PACE_BATCH];
	int errs[PACE_BATCH];
	size_t sent = 0, n, i;
	struct conn *c;
	double now;

	while (sent < budget && e->pace.n > 0) {
		for (n = 0; n < PACE_BATCH && sent + n < budget && e->pace.n > 0;) {
			c = pace_pop(&e->pace);
			if (!(c->flags & CONN_F_QUEUED))
				continue; /* forgotten while it waited */
			if (pace_packet(e, c, &pkts[n]))
				conns[n++] = c;
			else if (!c->timer_pos)
				arm_timer(e, c); /* answered meanwhile: its timer goes on */
		}
		pace_expect(e, pkts, conns, n);
		pace_write(e, pkts, n, errs);
		now = now_of(e);
		for (i = 0; i < n; i++)
			pace_result(e, conns[i], &pkts[i], errs[i], now);
		sent += n;
	}
	return sent;
}

/* Sends what the token bucket allows now, and re-arms for the rest. */
static void pace_run(struct engine *e)
{
	struct pacer *pc = &e->pace;
	double now = now_of(e), cap = pc->rate * PACE_BURST, want;
	size_t budget;

	pc->at = 0;
	if (cap < PACE_BATCH)
		cap = PACE_BATCH;
	pc->tokens += (now - pc->refill_at) * pc->rate;
	if (pc->tokens > cap || pc->refill_at == 0)
		pc->tokens = cap;
	pc->refill_at = now;
	budget = pc->tokens >= PACE_MAX_BATCH ? PACE_MAX_BATCH : (size_t)pc->tokens;
	pc->tokens -= (double)pace_send(e, budget);
	if (pc->n == 0)
		return;
	want = pc->n < PACE_BATCH ? (double)pc->n : PACE_BATCH;
	pace_arm(e, pc->tokens >= want ? 0.0 : (want - pc->tokens) / pc->rate);
}

static void on_pace(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	pace_run(w->data);
}

/* ---- what the capture heard: drops make it blind --------------------------------- */

static double blind_at(const struct engine *e)
{
	return e->down ? INFINITY : e->blind;
}

/* New kernel drops: the capture was blind up to now; the pacer halves its rate. */
static void went_blind(struct engine *e, unsigned long long n, double now)
{
	double floor =
	    PACE_MIN_RATE < e->cfg->max_probe_rate ? PACE_MIN_RATE : (double)e->cfg->max_probe_rate;

	e->blind = now;
	e->blind_why = "capture-drops";
	e->pace.rate = e->pace.rate / 2 > floor ? e->pace.rate / 2 : floor;
	e->st.probe_rate = e->pace.rate;
	if (now - e->last_drop_log < 5.0 && e->last_drop_log > 0)
		return;
	e->last_drop_log = now;
	log_warnx("capture: the kernel dropped %llu packets: no verdict on rounds it may have "
	          "hidden; probe rate now %.0f/s",
	          n, e->pace.rate);
}

/* Reads what the capture holds, and its drop count (at most once per loop iteration). */
static void sync_capture(struct engine *e, double now)
{
	unsigned long long d;

	if (!e->sync || (e->loop && e->sync_iter == ev_iteration(e->loop) + 1))
		return;
	if (e->loop)
		e->sync_iter = ev_iteration(e->loop) + 1;
	d = e->sync(e->sync_arg);
	if (d > e->drops)
		went_blind(e, d - e->drops, now);
	e->drops = d;
}

/* Every SYNC_EVERY s: drops read, unconfirmed records expired, the pacer's rate recovered. */
static void sync_work(struct engine *e, double now)
{
	double max = (double)e->cfg->max_probe_rate;

	sync_capture(e, now);
	unconf_expire(e, now);
	if (e->pace.rate < max && now - e->blind >= 1.0) {
		e->pace.rate =
		    e->pace.rate * PACE_RECOVER < max ? e->pace.rate * PACE_RECOVER : max;
		e->st.probe_rate = e->pace.rate;
	}
}

static void on_sync_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct engine *e = w->data;

	(void)loop;
	(void)revents;
	sync_work(e, now_of(e));
}

void engine_set_sync(struct engine *e, engine_sync_fn fn, void *arg)
{
	e->sync = fn;
	e->sync_arg = arg;
	e->drops = fn ? fn(arg) : 0;
	if (!e->loop)
		return; /* engine_run_due does its work */
	if (fn)
		ev_timer_again(e->loop, &e->sync_t);
	else
		ev_timer_stop(e->loop, &e->sync_t);
}

void engine_set_capture_down(struct engine *e, bool down)
{
	if (e->down && !down)
		e->st.capture_reopens++;
	e->down = down;
	e->blind = now_of(e);
	e->blind_why = "capture-down";
}

/* Hands a dead or reset verdict to the hook (the actions). */
static void verdict_hook(struct engine *e, const struct conn *c, const struct fsm_event *ev,
                         double now)
{
	struct engine_verdict v;

	if (!e->hook ||
	    (ev->type != FSM_EV_DEAD && ev->type != FSM_EV_RESET && ev->type != FSM_EV_STALLED) ||
	    rule_of(e, c)->params.observe)
		return; /* (observe-only: the fsm gives no verdict; no action either way) */
	v.cfg = e->cfg;
	v.rule = rule_of(e, c);
	v.key = &c->key;
	v.name = name_of(e, c);
	v.send = send_of(e, c);
	v.fsm = &c->fsm;
	v.ev = ev;
	v.idle = ev->type == FSM_EV_DEAD ? ev->idle : now - c->fsm.last_rx;
	v.stall = is_stall_verdict(ev);
	e->hook(e->hook_arg, &v);
}

static void apply(struct engine *e, struct conn *c, struct fsm_out *out, double now)
{
	int i;

	if (out->ignored != FSM_IGN_NONE)
		e->st.ignored[out->ignored]++;
	for (i = 0; i < out->nev; i++) {
		if (out->ev[i].type == FSM_EV_UNCERTAIN && e->blind_why)
			out->ev[i].reason = e->blind_why; /* the engine knows why it was blind */
		note_event(e, c, &out->ev[i], now);
		log_event(e, c, &out->ev[i]);
		verdict_hook(e, c, &out->ev[i], now);
	}
	count_update(e, c);
	if ((c->flags & CONN_F_BUSY) && c->fsm.state != FSM_WATCH)
		busy_remove(e, c); /* judged (a kernel-told stall) or closed: nothing to recheck */
	if ((c->flags & CONN_F_UNCONFIRMED) && (c->fsm.known & FSM_K_CONFIRMED) && !confirmed(e, c))
		return; /* refused: over max_connections */
	if (out->send_probe)
		pace_push(e, c, false);
	if (out->learn)
		pace_push(e, c, true);
	if (out->forget)
		forget(e, c);
	else if (out->rearm)
		arm_timer(e, c);
}

/* True when this timer may end a round, a learning try or a stall: the capture is read
 * first. */
static bool may_judge(const struct fsm_conn *f, const struct fsm_params *p, double now)
{
	return (f->state == FSM_PROBING && f->probes_out >= p->probes) ||
	       f->learn == FSM_LEARN_ASKED2 ||
	       (fsm_stall_due(f, p) > 0 && now + 0.001 >= fsm_stall_due(f, p));
}

/* c's timer fired: the machine decides (after reading the capture when it may judge). */
static void on_conn_timer(struct engine *e, struct conn *c)
{
	struct fsm_out out;
	double now = now_of(e);

	if (c->flags & (CONN_F_KERNEL_KA | CONN_F_QUEUED))
		return; /* the kernel's keepalive watches it, or the pacer re-arms it */
	if (c->flags & CONN_F_BUSY) {
		busy_recheck(e, c, now);
		return;
	}
	if ((c->flags & CONN_F_GATEWAY) && !gateway_pair_seen(e, c, now))
		return; /* one way only (NAT): never probed, looked at again */
	if (may_judge(&c->fsm, &rule_of(e, c)->params, now))
		sync_capture(e, now); /* a reply already captured is heard before a verdict */
	fsm_on_timer(&c->fsm, &rule_of(e, c)->params, now, blind_at(e), &out);
	apply(e, c, &out, now);
	if (!out.forget && (c->flags & CONN_F_GATEWAY) && (c->flags & CONN_F_DISCOVERED) &&
	    c->fsm.learn == FSM_LEARN_BLOCKED)
		gateway_blocked(e, c, now); /* the other end's numbers, borrowed */
}

/* Fires the connection timers due by now + slack, at most TICK_MAX. */
static void fire_due(struct engine *e, double now, double slack)
{
	struct conn *c;
	double at;
	int n;

	for (n = 0; n < TICK_MAX && (c = timerheap_top(&e->timers, &at)) && at <= now + slack;
	     n++) {
		timerheap_remove(&e->timers, c);
		on_conn_timer(e, c);
	}
}

/* Fires the due connection timers, at most TICK_MAX per loop iteration. */
static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct engine *e = w->data;

	(void)loop;
	(void)revents;
	fire_due(e, now_of(e), TICK_SLACK);
	schedule_tick(e);
}

bool engine_next_due(const struct engine *e, double *at)
{
	double t = INFINITY;

	if (timerheap_top(&e->timers, at))
		t = *at;
	if (e->pace.at > 0 && e->pace.at < t)
		t = e->pace.at;
	*at = t;
	return t < INFINITY;
}

void engine_run_due(struct engine *e)
{
	double now = now_of(e);

	fire_due(e, now, 0.0);
	if (e->pace.at > 0 && e->pace.at <= now)
		pace_run(e);
	sync_work(e, now);
}
/* The table is full: one untrack line per rule, then silence. */
static void refuse(struct engine *e, const struct rule *r, const struct addr_tuple *key)
{
	size_t i = (size_t)(r - e->cfg->rules);
	struct log_line l;

	e->st.table_full++;
	if (e->limit_told[i / 8] & (1u << (i % 8)))
		return;
	e->limit_told[i / 8] |= (uint8_t)(1u << (i % 8));
	line_start_rule(&l, "untrack", r, key);
	log_line_str(&l, "reason", "limit");
	log_line_int(&l, "max_connections", (long long)conntab_count(e->tab));
	log_line_emit(&l);
}

/* What a new record is: a connection of this host, a forwarded one, or a forwarded one
 * through NAT (gateway_kind). */
enum { GW_LOCAL = 0, GW_PLAIN, GW_NAT };

struct track_how;
static int gateway_kind(struct engine *e, const struct addr_tuple *key, const struct track_how *how,
                        struct gateway_nat *nat);

/* How a new record starts: from traffic, or from the kernel's socket list. */
struct track_how {
	bool discovered, quiet;
	double idle;    /* s since the kernel last received a segment */
	bool forwarded; /* one end of a forwarded connection (gateway rules) */
	/* a forwarded connection found in conntrack (discovered): its entry's tuples, and
	 * whether it is translated; NULL when from traffic */
	const struct addr_tuple *orig, *reply;
	bool nat;
};

/* A new connection: matched against the rules, tracked, its timer armed. */
static struct conn *track(struct engine *e, const struct addr_tuple *key, double now,
                          const struct track_how *how)
{
	struct gateway_nat nat;
	int kind = gateway_kind(e, key, how, &nat);
	const struct rule *r = kind == GW_LOCAL
	                           ? rule_match(e->cfg->rules, e->cfg->nrules, key)
	                           : rule_match_gateway(e->cfg->rules, e->cfg->nrules,
	                                                kind == GW_NAT ? &nat.name : key);
	struct unconf_entry *u;
	struct conn *c;

	if (!r) {
		e->st.unmatched++;
		return NULL;
	}
	if (how->discovered && n_confirmed(e) >= e->max_conns) {
		refuse(e, r, key);
		return NULL;
	}
	if (!how->discovered && e->n_unconf >= UNCONF_MAX && (u = unconf_oldest(e)))
		unconf_drop(e, u->c); /* the pool is full: the oldest goes */
	c = conntab_insert(e->tab, key);
	if (!c) {
		refuse(e, r, key);
		return NULL;
	}
	e->st.tracked++;
	c->rule = (uint16_t)(r - e->cfg->rules);
	c->flags = e->gen | e->ct_gen | (how->discovered ? CONN_F_DISCOVERED : 0);
	if (kind != GW_LOCAL)
		c->flags |= CONN_F_GATEWAY | CONN_F_NOBUSY; /* no socket here to ask about */
	if (kind == GW_NAT && gateway_natmap_put(e->nat, &nat) == 0)
		c->flags |= CONN_F_NAT;
	if (how->orig)
		c->flags |= CONN_F_CT_LISTED; /* made from a conntrack dump */
	if (how->discovered)
		fsm_init_discovered(&c->fsm, now, how->idle, how->quiet, &r->params);
	else
		fsm_init(&c->fsm, now, &r->params);
	if (!how->discovered)
		unconf_add(e, c); /* until the peer proves it exists */
	c->counted = c->fsm.state;
	count_add(e, c, 1);
	arm_timer(e, c);
	if (how->discovered && log_routine(e))
		announce(e, c);
	return c;
}

/* Hands a segment to its connection (tracking it when new; fwd: one end of a forwarded
 * connection, under the gateway rules); returns the fsm's ignore reason. */
static int on_segment(struct engine *e, const struct codec_tcp *seg, bool from_peer, bool fwd,
                      double now)
{
	struct addr_tuple key;
	struct fsm_out out;
	struct conn *c;

	if (from_peer)
		addr_tuple_make(&key, seg->family, seg->dst, seg->dport, seg->src, seg->sport);
	else
		addr_tuple_make(&key, seg->family, seg->src, seg->sport, seg->dst, seg->dport);
	c = conntab_find(e->tab, &key);
	if (c && c->fsm.state == FSM_CLOSED &&
	    (seg->flags & (CODEC_TH_SYN | CODEC_TH_ACK)) == CODEC_TH_SYN) {
		forget(e, c); /* the 4-tuple is used again: a new connection */
		c = NULL;
	}
	if (!c) {
		/* Only our own segment starts a record (the peer's may be spoofed: one-way
		 * traffic never holds a slot), and not the end of something we never tracked. */
		if (from_peer || (seg->flags & (CODEC_TH_RST | CODEC_TH_FIN)) ||
		    !(seg->flags & (CODEC_TH_ACK | CODEC_TH_SYN)))
			return FSM_IGN_NONE;
		c = track(e, &key, now, &(struct track_how){.forwarded = fwd});
		if (!c)
			return FSM_IGN_NONE;
	}
	if (c->flags & CONN_F_KERNEL_KA)
		return FSM_IGN_NONE; /* the kernel's keepalive watches it */
	if (!busy_segment(e, c, seg, now))
		return FSM_IGN_NONE; /* a busy connection's routine segment (left in the ring) */
	fsm_on_segment(&c->fsm, &rule_of(e, c)->params, seg, from_peer, now, &out);
	apply(e, c, &out, now);
	if (out.ignored == FSM_IGN_NONE && c->in_use && c->fsm.state == FSM_WATCH)
		busy_count(e, c, now);
	return out.ignored;
}

/* ---- gateway mode: connections this host forwards (gateway.h) ------------------- */

static bool has_gateway_rule(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nrules; i++) {
		if (cfg->rules[i].mode == RULE_MODE_GATEWAY)
			return true;
	}
	return false;
}

/* A record's key as rules and status lines see it (gateway.h: gateway_nat.name). */
static const struct addr_tuple *name_of(const struct engine *e, const struct conn *c)
{
	const struct gateway_nat *n;

	if ((c->flags & CONN_F_NAT) && (n = gateway_natmap_get(e->nat, &c->key)))
		return &n->name;
	return &c->key;
}

/* What a record's probes go out as (gateway.h: gateway_nat.send). */
static const struct addr_tuple *send_of(const struct engine *e, const struct conn *c)
{
	const struct gateway_nat *n;

	if ((c->flags & CONN_F_NAT) && (n = gateway_natmap_get(e->nat, &c->key)))
		return &n->send;
	return &c->key;
}

void engine_set_conntrack(struct engine *e, engine_ct_fn fn, void *arg)
{
	e->ct = fn;
	e->ct_arg = arg;
}

/* Whether a new record is a connection of this host (GW_LOCAL), a forwarded one
 * (GW_PLAIN) or a forwarded one through NAT (GW_NAT, *nat filled): a forwarded segment
 * makes a gateway record; one with this host's address does too when no local rule
 * matches it and conntrack says its flow is translated and neither end, as the client
 * sees them, is this host. */
static int gateway_kind(struct engine *e, const struct addr_tuple *key, const struct track_how *how,
                        struct gateway_nat *nat)
{
	struct addr_tuple from, orig, reply;
	bool translated;

	if (how->discovered && how->orig) { /* found in conntrack: its tuples are known */
		if (!how->nat || !gateway_nat_view(how->orig, how->reply, key, nat) ||
		    (!e->nat && !(e->nat = gateway_natmap_new(addr_tuple_hash(key, 0)))))
			return GW_PLAIN;
		return GW_NAT;
	}
	if (how->discovered || (!how->forwarded && (!e->gateway || !e->ct)))
		return how->forwarded ? GW_PLAIN : GW_LOCAL;
	if (!how->forwarded && rule_match(e->cfg->rules, e->cfg->nrules, key))
		return GW_LOCAL; /* a local rule's: no lookup (our SYN-ACKs to a flood cost none) */
	if (!e->ct)
		return GW_PLAIN;
	addr_tuple_make(&from, key->family, key->remote, key->rport, key->local, key->lport);
	if (e->ct(e->ct_arg, &from, &orig, &reply, &translated) < 0 || !translated ||
	    !gateway_nat_view(&orig, &reply, key, nat) ||
	    addr_set_contains(e->local, orig.family, orig.local) ||
	    addr_set_contains(e->local, reply.family, reply.local))
		return how->forwarded ? GW_PLAIN : GW_LOCAL;
	if (!e->nat && !(e->nat = gateway_natmap_new(addr_tuple_hash(key, 0))))
		return how->forwarded ? GW_PLAIN : GW_LOCAL;
	return GW_NAT;
}

/* The other record of c's flow (the swapped key, or gateway_nat.partner), or NULL. */
static struct conn *partner_of(const struct engine *e, const struct conn *c)
{
	const struct gateway_nat *n =
	    (c->flags & CONN_F_NAT) ? gateway_natmap_get(e->nat, &c->key) : NULL;
	struct addr_tuple key;

	if (n)
		key = n->partner;
	else
		addr_tuple_make(&key, c->key.family, c->key.remote, c->key.rport, c->key.local,
		                c->key.lport);
	return conntab_find(e->tab, &key);
}

/* Records c and p of a flow found in conntrack at start: when one's end never answered its
 * learning SYNs (learn blocked) and the other learnt its own end's numbers, the blocked one
 * borrows them, swapped (fsm_borrow): both then probe with no byte, and the silent end can
 * be judged. Told once, as a learn line of the borrowing record. True when it borrowed. */
static bool gateway_borrow(struct engine *e, struct conn *c, struct conn *p)
{
	struct conn *b = fsm_borrow(&c->fsm, &p->fsm) ? c : fsm_borrow(&p->fsm, &c->fsm) ? p : NULL;
	struct log_line l;

	if (!b)
		return false;
	announce(e, b);
	if (log_level() >= CONFIG_LOG_INFO) {
		line_start(&l, "learn", e, b);
		log_line_str(&l, "result", "borrowed");
		log_line_emit(&l);
	}
	return true;
}

/* c, found in conntrack at start, has just given up learning (blocked): when its partner
 * learnt, both borrow at once and their timers fire now (each probes when due). */
static void gateway_blocked(struct engine *e, struct conn *c, double now)
{
	struct conn *p = partner_of(e, c);
	struct conn *both[2] = {c, p};
	int i;

	if (!p || !(p->flags & CONN_F_DISCOVERED) || !gateway_borrow(e, c, p))
		return;
	for (i = 0; i < 2; i++) {
		if (both[i]->fsm.state == FSM_WATCH && !(both[i]->flags & CONN_F_QUEUED)) {
			both[i]->fsm.timer_at = now;
			arm_timer(e, both[i]);
		}
	}
}

/* A forwarded connection is probed only when both its records exist (both directions
 * were seen). With asymmetric routing, or through NAT without conntrack, the record
 * probing an end in the other's name would never hear the answers and give a false dead
 * verdict. False (c's timer re-armed an interval later) while c, watching, has no partner. */
static bool gateway_pair_seen(struct engine *e, struct conn *c, double now)
{
	struct conn *p;

	if (c->fsm.state != FSM_WATCH)
		return true; /* a round under way ends as it began; a closed record lingers */
	p = partner_of(e, c);
	if (p && (c->flags & p->flags & CONN_F_DISCOVERED))
		gateway_borrow(e, c, p);
	if (p && (c->flags & CONN_F_DISCOVERED) && fsm_can_probe(&c->fsm) &&
	    !((p->fsm.known & FSM_K_RCV_NXT) && p->fsm.rcv_nxt == c->fsm.snd_nxt)) {
		/* found in conntrack: "nothing in flight" is an assumption until the probed end's
		 * own ACK (its record's RCV.NXT) says it has all the other end sent */
		c->fsm.timer_at = now + rule_of(e, c)->params.interval;
		arm_timer(e, c);
		return false;
	}
	if (p)
		return true;
	e->st.gateway_oneway++;
	if (!e->oneway_told)
		log_warnx("gateway: a forwarded connection of rule [%s] is seen one way only "
		          "(asymmetric routing, or NAT without conntrack): not probed",
		          rule_of(e, c)->name);
	e->oneway_told = true;
	c->fsm.timer_at = now + rule_of(e, c)->params.interval;
	arm_timer(e, c);
	return false;
}

void engine_gateway_found(struct engine *e, const struct addr_tuple *orig,
                          const struct addr_tuple *reply, bool nat, double idle, double now)
{
	struct track_how how = {.discovered = true,
	                        .quiet = true,
	                        .idle = idle < 0 ? 0 : idle,
	                        .forwarded = true,
	                        .orig = orig,
	                        .reply = reply,
	                        .nat = nat};
	struct addr_tuple keys[2];
	struct conn *c;
	int i;

	if (!e->gateway || addr_set_contains(e->local, orig->family, orig->local) ||
	    addr_set_contains(e->local, reply->family, reply->local))
		return; /* an end is this host: its sockets are discovery's */
	if (nat && !e->learn_mark)
		return; /* the learning SYN to the client would go in the reply direction, which
		           conntrack takes as invalid and does not translate: without the router
		           leaving it untracked (gateway_nat.learn), followed from its next
		           segment instead */
	addr_tuple_make(&keys[0], reply->family, reply->remote, reply->rport, reply->local,
	                reply->lport); /* probes the server, as it sees the flow */
	addr_tuple_make(&keys[1], orig->family, orig->remote, orig->rport, orig->local,
	                orig->lport); /* probes the client */
	for (i = 0; i < 2; i++) {
		if (conntab_find(e->tab, &keys[i]))
			continue;
		c = track(e, &keys[i], now, &how);
		if (c)
			e->st.discovered++;
	}
}

/* ---- gateway records and their conntrack entries ---------------------------------
 * A forwarded flow's records are keyed as each end sees it: the record probing the server
 * by the reply tuple swapped, the one probing the client by the original tuple swapped
 * (gateway_nat_view), with or without NAT. Destroy events forget them at once; a dump
 * (after lost events, after a reload) marks the listed ones and forgets the rest. */

/* A sweep's progress (conntrack's here, discovery's below). */
struct sweep {
	struct engine *e;
	size_t gone;
};

/* The gateway record keyed by direction t swapped, or NULL. */
static struct conn *gateway_record(struct engine *e, const struct addr_tuple *t)
{
	struct addr_tuple key;
	struct conn *c;

	addr_tuple_make(&key, t->family, t->remote, t->rport, t->local, t->lport);
	c = conntab_find(e->tab, &key);
	return c && (c->flags & CONN_F_GATEWAY) ? c : NULL;
}

/* Forgets gateway record c, its conntrack entry gone (why: "conntrack" for an event,
 * "conntrack-sweep" for a dump that did not list it); an untrack line at debug. */
static void gateway_expire(struct engine *e, struct conn *c, const char *why)
{
	struct log_line l;

	if (log_level() >= CONFIG_LOG_DEBUG) {
		line_start(&l, "untrack", e, c);
		log_line_str(&l, "reason", why);
		if (c->fsm.state == FSM_DEAD)
			log_line_str(&l, "after", "verdict"); /* e.g. its own flush action */
		log_line_emit(&l);
	}
	e->st.gateway_expired++;
	forget(e, c);
}

size_t engine_gateway_gone(struct engine *e, const struct addr_tuple *orig,
                           const struct addr_tuple *reply)
{
	struct conn *c;
	size_t n = 0;

	if ((c = gateway_record(e, reply))) { /* probes the server */
		gateway_expire(e, c, "conntrack");
		n++;
	}
	if ((c = gateway_record(e, orig))) { /* probes the client */
		gateway_expire(e, c, "conntrack");
		n++;
	}
	return n;
}

void engine_gateway_mark_begin(struct engine *e)
{
	e->ct_gen ^= CONN_F_CT_GEN;
}

void engine_gateway_listed(struct engine *e, const struct addr_tuple *orig,
                           const struct addr_tuple *reply)
{
	const struct addr_tuple *t[2] = {orig, reply};
	struct conn *c;
	int i;

	for (i = 0; i < 2; i++) {
		if ((c = gateway_record(e, t[i])))
			c->flags =
			    (uint16_t)((c->flags & ~CONN_F_CT_GEN) | e->ct_gen | CONN_F_CT_LISTED);
	}
}

/* Forgets a gateway record the dump did not list (made before it began), when an earlier
 * dump did: one never listed may be a flow conntrack does not track (notrack, a family
 * without conntrack here), only traffic tells. */
static void gateway_sweep_one(struct conn *c, void *arg)
{
	struct sweep *sw = arg;

	if (!(c->flags & CONN_F_GATEWAY) || !(c->flags & CONN_F_CT_LISTED) ||
	    (c->flags & CONN_F_CT_GEN) == sw->e->ct_gen)
		return;
	gateway_expire(sw->e, c, "conntrack-sweep");
	sw->gone++;
}

size_t engine_gateway_mark_end(struct engine *e)
{
	struct sweep sw = {e, 0};

	conntab_foreach(e->tab, gateway_sweep_one, &sw);
	return sw.gone;
}

/* c (may be NULL) waits for the answer to its learning SYN, which seg carries the SEQ of. */
static bool asked_with(const struct conn *c, const struct codec_tcp *seg)
{
	return c && (c->fsm.learn == FSM_LEARN_ASKED1 || c->fsm.learn == FSM_LEARN_ASKED2) &&
	       c->fsm.probe_seq == seg->seq;
}

/* A learning SYN seen leaving, sent in its source's name: it is no SYN of the end it claims
 * to come from (the record keyed by it would take it as a new connection and void its
 * numbers). Its record: keyed (local = seg's destination, remote = its source), or, through
 * NAT (the SYN goes as gateway_nat.learn, the flow as the end spoken for sees it), the
 * partner of the record keyed (local = its source, remote = its destination). fwd: a
 * forwarded copy (else one with a local source, tried through NAT only). */
static bool own_learn_syn(struct engine *e, const struct codec_tcp *seg, bool fwd)
{
	struct addr_tuple key;
	struct conn *p;

	if ((seg->flags & (CODEC_TH_SYN | CODEC_TH_ACK | CODEC_TH_RST)) != CODEC_TH_SYN)
		return false;
	addr_tuple_make(&key, seg->family, seg->dst, seg->dport, seg->src, seg->sport);
	if (fwd && asked_with(conntab_find(e->tab, &key), seg))
		return true;
	addr_tuple_make(&key, seg->family, seg->src, seg->sport, seg->dst, seg->dport);
	p = conntab_find(e->tab, &key);
	return p && (p->flags & CONN_F_NAT) && asked_with(partner_of(e, p), seg);
}

/* While the router drops the challenge ACKs (the expect hook is set), one never leaves:
 * its arriving copy (a pure ACK from the end a learning record speaks for) is heard as the
 * leaving one would have been, "ours" for that record (the partner of the record whose
 * peer's it is; SEQ, ACK, window and timestamps are the same on either side of NAT). */
static void challenge_arrived(struct engine *e, const struct codec_tcp *seg, double now)
{
	struct addr_tuple key;
	struct fsm_out out;
	struct conn *p, *c;

	if (!e->expect || seg->flags != CODEC_TH_ACK || seg->payload_len)
		return;
	addr_tuple_make(&key, seg->family, seg->dst, seg->dport, seg->src, seg->sport);
	if (!(p = conntab_find(e->tab, &key)) || !(p->flags & CONN_F_GATEWAY) ||
	    !(c = partner_of(e, p)) ||
	    (c->fsm.learn != FSM_LEARN_ASKED1 && c->fsm.learn != FSM_LEARN_ASKED2))
		return;
	fsm_on_segment(&c->fsm, &rule_of(e, c)->params, seg, false, now, &out);
	apply(e, c, &out, now);
}

/* A copy of a forwarded segment (gateway.h): as it left, the sender's end speaks for itself
 * in the record that probes the other end (ours there); as it arrived, it is the peer's in
 * the record that probes the sender. Our own probes, RSTs and learning SYNs only ever leave
 * (a learning SYN is recognised by the record that sent it). */
static void on_forwarded(struct engine *e, const struct codec_tcp *seg, int copy, double now)
{
	e->st.forwarded++;
	if (copy == GATEWAY_LEFT && own_learn_syn(e, seg, true)) {
		e->st.ignored[FSM_IGN_OWN_PROBE]++;
		return;
	}
	on_segment(e, seg, copy == GATEWAY_ARRIVED, true, now);
	if (copy == GATEWAY_ARRIVED)
		challenge_arrived(e, seg, now);
}

/* Which way a segment goes: from this host (ours), to it (the peer's), or both on loopback.
 * Where the capture knows the direction (the SLL packet type on "any", or a per-direction
 * capture on a named interface) it decides, never the source address alone: a frame that
 * arrived with our address as source is not ours, except on loopback (lo is 1: where it
 * is not known, a frame with both ends local counts as loopback). libpcap does not
 * capture the outgoing copies of loopback packets, so an incoming one with both ends
 * local is seen from both ends. Only a capture without direction falls back to the
 * addresses. */
static void on_tcp(struct engine *e, const struct codec_tcp *seg, int lo, double now)
{
	bool src_local = addr_set_contains(e->local, seg->family, seg->src);
	bool dst_local = addr_set_contains(e->local, seg->family, seg->dst);
	int copy = e->gateway ? gateway_copy(seg->pkttype, src_local, dst_local) : GATEWAY_NONE;

	if (copy != GATEWAY_NONE) {
		on_forwarded(e, seg, copy, now);
		return;
	}
	if (seg->pkttype == CODEC_PKT_OUTGOING)
		dst_local = false;
	else if (seg->pkttype != CODEC_PKT_UNKNOWN)
		src_local = src_local && dst_local && lo != 0; /* arrived: ours only on loopback */
	if (!src_local && !dst_local) {
		e->st.not_local++;
		return;
	}
	if (src_local && e->nat && seg->pkttype == CODEC_PKT_OUTGOING &&
	    own_learn_syn(e, seg, false)) {
		e->st.ignored[FSM_IGN_OWN_PROBE]++; /* through NAT, in this host's address */
		return;
	}
	if (src_local && on_segment(e, seg, false, false, now) == FSM_IGN_OWN_PROBE)
		return; /* our probe over loopback is no sign of life for the other end */
	if (dst_local) {
		on_segment(e, seg, true, false, now);
		if (e->nat)
			challenge_arrived(e, seg, now); /* through NAT, to this host's address */
	}
}

/* The record an ICMP error quoting the segment key is about: the record of that key (the
 * probe as the end saw it: a connection of this host, or a forwarded one as translated
 * by NAT), or the translated record whose probes leave as key (the error translated back
 * by the router's conntrack before the capture saw it leaving: one the router itself
 * sent, e.g. when the probed end's neighbour entry failed, or a forwarded copy). */
static struct conn *icmp_record(struct engine *e, const struct addr_tuple *key)
{
	const struct gateway_nat *n;
	struct conn *c = conntab_find(e->tab, key);

	if (c || !e->nat || !(n = gateway_natmap_by_send(e->nat, key)))
		return c;
	c = conntab_find(e->tab, &n->key);
	return c && (c->flags & CONN_F_NAT) ? c : NULL;
}

static void on_icmp(struct engine *e, const struct codec_icmp *icmp, double now)
{
	struct addr_tuple key;
	struct fsm_out out;
	struct conn *c;

	addr_tuple_make(&key, icmp->family, icmp->src, icmp->sport, icmp->dst, icmp->dport);
	c = icmp_record(e, &key);
	if (!c || (c->flags & CONN_F_KERNEL_KA)) {
		e->st.ignored[FSM_IGN_ICMP_MATCH]++;
		return;
	}
	fsm_on_icmp(&c->fsm, &rule_of(e, c)->params, icmp, now, &out);
	apply(e, c, &out, now);
}

/* The packet type a capture's direction stands for, where the link type gave none. */
static uint8_t dir_pkttype(uint8_t pkttype, int dir)
{
	if (pkttype != CODEC_PKT_UNKNOWN)
		return pkttype;
	if (dir == CAPTURE_DIR_IN)
		return CODEC_PKT_HOST;
	if (dir == CAPTURE_DIR_OUT)
		return CODEC_PKT_OUTGOING;
	return CODEC_PKT_UNKNOWN;
}

/* Did the frame pass the loopback interface: 1, 0, or -1 when not known (an "any"
 * capture with SLL, which names no interface; SLL2 does). */
static int frame_loopback(const struct capture_frame *f, const struct codec_tcp *seg)
{
	if (f->loopback >= 0)
		return f->loopback;
	if (seg->ifindex != 0)
		return seg->ifindex == CODEC_LOOPBACK_IFINDEX;
	return -1;
}

void engine_on_frame(void *arg, const struct capture_frame *f)
{
	struct engine *e = arg;
	struct codec_packet pkt;
	int rc;

	e->st.packets++;
	rc = codec_decode(f->dlt, f->data, f->caplen, f->wirelen, &pkt);
	if (rc == CODEC_TCP) {
		pkt.tcp.pkttype = dir_pkttype(pkt.tcp.pkttype, f->dir);
		on_tcp(e, &pkt.tcp, frame_loopback(f, &pkt.tcp), f->when);
	} else if (rc == CODEC_ICMP) {
		pkt.icmp.pkttype = dir_pkttype(pkt.icmp.pkttype, f->dir);
		on_icmp(e, &pkt.icmp, f->when);
	} else if (rc != CODEC_E_UNSUPPORTED)
		e->st.decode_errors++;
}

double engine_clock(void)
{
	return mono_now();
}

double engine_now(const struct engine *e)
{
	return now_of(e);
}

void engine_set_clock(struct engine *e, engine_clock_fn fn, void *arg)
{
	e->clock = fn ? fn : mono_clock;
	e->clock_arg = fn ? arg : NULL;
}

void engine_set_send_hook(struct engine *e, engine_send_fn fn, void *arg)
{
	e->send_hook = fn;
	e->send_arg = arg;
}

struct foreach_ctx {
	const struct engine *e;
	double now;
	void (*fn)(const struct engine_view *v, void *arg);
	void *arg;
};

static void view_one(struct conn *c, void *arg)
{
	struct foreach_ctx *x = arg;
	struct engine_view v;

	if (c->flags & CONN_F_UNCONFIRMED)
		return; /* not (yet) a connection: not shown */
	v.key = &c->key;
	v.rule = rule_of(x->e, c)->name;
	v.rule_index = c->rule;
	v.state = c->fsm.state;
	v.idle = x->now - c->fsm.last_rx;
	v.probes_out = c->fsm.probes_out;
	v.rtt = c->rtt > 0 ? (double)c->rtt : -1.0;
	v.verdict = c->verdict;
	v.verdict_age = c->verdict ? x->now - c->verdict_at : -1.0;
	v.side =
	    (c->flags & CONN_F_GATEWAY) ? gateway_side(rule_of(x->e, c), name_of(x->e, c)) : NULL;
	v.stall = (c->flags & CONN_F_ZW_STALLED)   ? "zero-window"
	          : (c->flags & CONN_F_STALL_DEAD) ? "retransmit"
	                                           : NULL;
	x->fn(&v, x->arg);
}

void engine_foreach(const struct engine *e, double now,
                    void (*fn)(const struct engine_view *v, void *arg), void *arg)
{
	struct foreach_ctx x = {e, now, fn, arg};

	conntab_foreach(e->tab, view_one, &x);
}

void engine_walk_begin(const struct engine *e, struct engine_cursor *cur)
{
	(void)e;
	conntab_cursor_init(&cur->tab);
}

size_t engine_walk(const struct engine *e, struct engine_cursor *cur, double now, size_t max,
                   void (*fn)(const struct engine_view *v, void *arg), void *arg)
{
	struct foreach_ctx x = {e, now, fn, arg};

	return conntab_walk(e->tab, &cur->tab, max, view_one, &x);
}

/* Tracked connections under an observe-only rule (O(rules)). */
static size_t observed_count(const struct engine *e)
{
	unsigned long long by_state[FSM_STATE_COUNT];
	size_t i, n = 0;
	int s;

	for (i = 0; i < e->cfg->nrules; i++) {
		if (!e->cfg->rules[i].params.observe)
			continue;
		memset(by_state, 0, sizeof(by_state));
		engine_rule_counts(e, i, by_state);
		for (s = 0; s < FSM_STATE_COUNT; s++)
			n += (size_t)by_state[s];
	}
	return n;
}

void engine_counts(const struct engine *e, struct engine_counts *out)
{
	out->observed = observed_count(e);
	memcpy(out->by_state, e->by_state, sizeof(out->by_state));
	out->tracked = conntab_count(e->tab) - e->n_unconf;
	out->unconfirmed = e->n_unconf;
	out->zw_stalled = e->zw_stalled;
	out->busy = e->nbusy;
}

void engine_rule_counts(const struct engine *e, size_t i, unsigned long long *by_state)
{
	int s;

	for (s = 0; i < e->rule_state_n && s < FSM_STATE_COUNT; s++)
		by_state[s] += e->rule_state[i * FSM_STATE_COUNT + s];
}

unsigned long long engine_rule_dead(const struct engine *e, size_t i)
{
	return i < e->rule_state_n ? e->rule_dead[i] : 0;
}

void engine_set_verdict_hook(struct engine *e, engine_verdict_fn fn, void *arg)
{
	e->hook = fn;
	e->hook_arg = arg;
}

struct reload_ctx {
	struct engine *e;
	const struct config *old;
	size_t dropped;
};

/* One connection under the new rules: kept (new index, maybe an earlier timer) or dropped. */
static void reload_one(struct conn *c, void *arg)
{
	struct reload_ctx *rc = arg;
	struct engine *e = rc->e;
	const struct rule *r =
	    (c->flags & CONN_F_GATEWAY)
	        ? rule_match_gateway(e->cfg->rules, e->cfg->nrules, name_of(e, c))
	        : rule_match(e->cfg->rules, e->cfg->nrules, &c->key);
	const struct rule *was = &rc->old->rules[c->rule];
	struct log_line l;
	double due;

	if (!r) {
		if ((c->flags & CONN_F_ANNOUNCED) || log_level() >= CONFIG_LOG_DEBUG) {
			line_start_rule(&l, "untrack", was, name_of(e, c));
			log_line_str(&l, "reason", "config");
			log_line_emit(&l);
		}
		rc->dropped++;
		drop_record(e, c); /* conntab_foreach allows removing the current record */
		return;
	}
	c->rule = (uint16_t)(r - e->cfg->rules);
	count_add(e, c, 1); /* the counts are made anew under the new rules */
	if (c->flags & CONN_F_KERNEL_KA)
		return; /* the kernel's keepalive watches it: no timer */
	due = c->fsm.last_rx + r->params.idle;
	if (c->fsm.state == FSM_WATCH &&
	    (r->params.idle < was->params.idle || (was->params.observe && !r->params.observe)) &&
	    c->fsm.timer_at > 0 && due < c->fsm.timer_at) {
		c->fsm.timer_at =
		    due; /* a shorter idle, or the end of observing, applies at once */
		arm_timer(e, c);
	}
}

size_t engine_reload(struct engine *e, const struct config *cfg, const struct config *old)
{
	struct reload_ctx rc = {e, old, 0};

	e->cfg = cfg;
	e->gateway = has_gateway_rule(cfg);
	memset(e->limit_told, 0, sizeof(e->limit_told)); /* rule indexes changed */
	memset(e->by_state, 0, sizeof(e->by_state));
	if (counts_resize(e, cfg->nrules) < 0)
		e->rule_state_n = 0; /* per-rule counts lost (out of memory); totals go on */
	e->pace.rate = (double)cfg->max_probe_rate;
	e->st.probe_rate = e->pace.rate;
	conntab_foreach(e->tab, reload_one, &rc);
	return rc.dropped;
}

/* ---- busy connections (issue 14) -------------------------------------------------
 * A connection carrying a bulk transfer costs the capture a frame per segment and ACK and
 * teaches nothing keepalive needs: it is not idle. Past ENGINE_BUSY_FRAMES frames in one
 * 100 ms window, a connection of this host (the kernel has its socket) is left out of the
 * capture by the kernel filter (its SYN, FIN and RST still come), and the kernel is asked
 * about it once per busy_period instead (one sock_diag query): a retransmission stall is
 * judged from its answer; when it has been quiet for busy_period with nothing in flight, or
 * its peer's window is shut, it comes back to the capture with its numbers void, asked for again
 * (the learning SYN) before its first probe, exactly as a discovered connection's. */

#define BUSY_WINDOW 0.1 /* s */
#define BUSY_ENTER_GAP                                                                             \
	0.05 /* s: at most 20 connections left out per second (each is one                         \
	        filter compile and set per capture) */

void engine_set_busy(struct engine *e, engine_kquery_fn q, engine_exclude_fn x, void *arg)
{
	e->kquery = q;
	e->exclude = x;
	e->busy_arg = arg;
}

/* How often a busy connection is looked at, and how long it must be quiet to come back:
 * a quarter of its idle time (its learning lead must still come before the probe), between
 * 50 ms and 1 s. */
static double busy_period(const struct fsm_params *p)
{
	double t = p->idle / 4;

	return t < 0.05 ? 0.05 : t > 1.0 ? 1.0 : t;
}

/* Hands the capture the current exclusions. */
static int busy_apply(struct engine *e)
{
	struct addr_tuple keys[ENGINE_BUSY_MAX];
	size_t i;

	if (!e->exclude)
		return 0;
	for (i = 0; i < e->nbusy; i++)
		keys[i] = e->busy[i]->key;
	return e->exclude(e->busy_arg, keys, e->nbusy);
}

void engine_busy_refresh(struct engine *e)
{
	if (e->nbusy && busy_apply(e) < 0)
		log_warnx("capture: busy connections could not be left out (captured in full)");
}

/* Takes c out of the busy set (the capture sees all of it again). */
static void busy_remove(struct engine *e, struct conn *c)
{
	size_t i;

	for (i = 0; i < e->nbusy && e->busy[i] != c; i++)
		;
	if (i < e->nbusy)
		e->busy[i] = e->busy[--e->nbusy];
	c->flags &= (uint16_t)~CONN_F_BUSY;
	if (busy_apply(e) < 0)
		log_warnx("capture: the busy exclusions could not be updated");
}

/* c comes back to the capture: numbers void, idle from the kernel's clock. */
static void busy_leave(struct engine *e, struct conn *c, double idle, bool quiet, double now)
{
	busy_remove(e, c);
	fsm_init_discovered(&c->fsm, now, idle, quiet, &rule_of(e, c)->params);
	count_update(e, c);
	arm_timer(e, c);
	log_debug("busy: %s back in the capture (idle %.3f s)", rule_of(e, c)->name, idle);
}

static void busy_enter(struct engine *e, struct conn *c, double now)
{
	const struct fsm_params *p = &rule_of(e, c)->params;
	struct engine_kinfo ki;

	if (e->nbusy >= ENGINE_BUSY_MAX || c->fsm.state != FSM_WATCH || p->observe ||
	    (c->flags & (CONN_F_NOBUSY | CONN_F_UNCONFIRMED | CONN_F_QUEUED)) ||
	    now < e->busy_next_enter)
		return;
	e->busy_next_enter = now + BUSY_ENTER_GAP; /* filter changes stay rare */
	e->st.busy_queries++;
	if (e->kquery(e->busy_arg, &c->key, &ki) < 0) {
		c->flags |= CONN_F_NOBUSY; /* not a socket of this host: always captured */
		return;
	}
	e->busy[e->nbusy++] = c;
	c->flags |= CONN_F_BUSY;
	if (busy_apply(e) < 0) {
		busy_remove(e, c);
		c->flags |= CONN_F_NOBUSY;
		return;
	}
	e->st.busy_left_out++;
	fsm_init_discovered(&c->fsm, now, ki.idle, false, p); /* its numbers are void from now */
	c->fsm.timer_at = now + busy_period(p);
	count_update(e, c);
	arm_timer(e, c);
	log_debug("busy: %s left out of the capture", rule_of(e, c)->name);
}

/* Counts a segment of c that the fsm took (a spoofed one, ignored, never makes a connection
 * busy); past the threshold c is left out of the capture. */
static void busy_count(struct engine *e, struct conn *c, double now)
{
	uint8_t epoch = (uint8_t)(uint64_t)(now / BUSY_WINDOW);

	if (!e->kquery || (c->flags & (CONN_F_BUSY | CONN_F_NOBUSY)))
		return;
	if (c->rate_epoch != epoch) {
		c->rate_epoch = epoch;
		c->rate_frames = 0;
	}
	if (++c->rate_frames == ENGINE_BUSY_FRAMES)
		busy_enter(e, c, now);
}

/* A segment of c: true when the fsm should see it. A busy connection's routine segment
 * (captured before its exclusion took effect) is dropped; its SYN, FIN or RST brings it
 * back to the capture first. */
static bool busy_segment(struct engine *e, struct conn *c, const struct codec_tcp *seg, double now)
{
	if (!(c->flags & CONN_F_BUSY))
		return true;
	if (!(seg->flags & (CODEC_TH_SYN | CODEC_TH_FIN | CODEC_TH_RST)))
		return false;
	busy_leave(e, c, 0.0, false, now);
	return true;
}

/* A busy connection's period: the kernel says whether it is still busy, stalled, or back. */
static void busy_recheck(struct engine *e, struct conn *c, double now)
{
	const struct fsm_params *p = &rule_of(e, c)->params;
	double next = now + busy_period(p);
	struct engine_kinfo ki;
	struct fsm_out out;

	e->st.busy_queries++;
	if (e->kquery(e->busy_arg, &c->key, &ki) < 0) {
		busy_leave(e, c, 0.0, false, now); /* gone (the next dump says so) or unknown */
		return;
	}
	c->fsm.last_rx = now - ki.idle;
	if ((ki.quiet >= busy_period(p) && !ki.in_flight) || ki.zero_window) {
		busy_leave(e, c, ki.idle, true, now);
		return;
	} /* data in flight: the kernel's view is the better one (its numbers, its stall) */
	fsm_on_kernel_stall(&c->fsm, p, now, ki.silent, ki.unacked, ki.retransmits, &out);
	if (out.nev) {
		busy_remove(e, c);
		apply(e, c, &out, now);
		return;
	}
	if (ki.silent >= 0 && p->stall_timeout > ki.silent &&
	    now + p->stall_timeout - ki.silent < next)
		next = now + p->stall_timeout - ki.silent;
	c->fsm.timer_at = next;
	arm_timer(e, c);
}

/* ---- discovery ------------------------------------------------------------------ */

void engine_discover_begin(struct engine *e)
{
	e->sweeping = false; /* an unfinished sweep: the next complete dump's catches the rest */
	e->gen ^= CONN_F_GEN;
}

/* A tracked connection whose owner turned SO_KEEPALIVE on: the kernel's from now on. */
static void leave_to_kernel(struct engine *e, struct conn *c)
{
	struct log_line l;

	disarm_timer(e, c);
	c->fsm.timer_at = 0;
	if (c->flags & CONN_F_BUSY)
		busy_remove(e, c); /* the kernel's keepalive watches it: nothing to recheck */
	c->flags |= CONN_F_KERNEL_KA;
	e->st.kernel_keepalive++;
	if (!(c->flags & CONN_F_ANNOUNCED))
		return; /* never announced: nothing to take back in the log */
	line_start(&l, "untrack", e, c);
	log_line_str(&l, "reason", "kernel-keepalive");
	log_line_emit(&l);
}

/* A connection left to the kernel is ours again (SO_KEEPALIVE off, or
 * skip_kernel_keepalive = no after a reload): it starts over as if just discovered, since
 * its segments were not followed meanwhile. */
static void take_back(struct engine *e, struct conn *c, const struct track_how *how, double now)
{
	c->flags &= (uint16_t) ~(CONN_F_KERNEL_KA | CONN_F_ANNOUNCED);
	c->flags |= CONN_F_DISCOVERED;
	fsm_init_discovered(&c->fsm, now, how->idle, how->quiet, &rule_of(e, c)->params);
	count_update(e, c);
	arm_timer(e, c);
	if (log_routine(e))
		announce(e, c);
}

void engine_discovered(struct engine *e, const struct addr_tuple *key, double idle, bool quiet,
                       bool keepalive, double now)
{
	struct conn *c = conntab_find(e->tab, key);
	struct track_how how = {.discovered = true, .quiet = quiet, .idle = idle};
	bool skip = keepalive && e->cfg->skip_kernel_keepalive;

	if (!c) {
		c = track(e, key, now, &how);
		if (!c)
			return;
		e->st.discovered++;
	}
	c->flags = (uint16_t)((c->flags & ~CONN_F_GEN) | e->gen | CONN_F_LISTED);
	if (c->fsm.state == FSM_CLOSED)
		return;
	if (c->flags & CONN_F_UNCONFIRMED) {
		c->fsm.known |= FSM_K_CONFIRMED; /* the kernel lists it */
		if (!confirmed(e, c))
			return;
	}
	if (skip && !(c->flags & CONN_F_KERNEL_KA))
		leave_to_kernel(e, c);
	else if (!skip && (c->flags & CONN_F_KERNEL_KA))
		take_back(e, c, &how, now);
}

void engine_kernel_stall(struct engine *e, const struct addr_tuple *key, double silent,
                         uint32_t unacked, uint16_t retransmits, double now)
{
	struct conn *c = conntab_find(e->tab, key);
	struct fsm_out out;

	if (!c || (c->flags & (CONN_F_UNCONFIRMED | CONN_F_KERNEL_KA)))
		return;
	fsm_on_kernel_stall(&c->fsm, &rule_of(e, c)->params, now, silent, unacked, retransmits,
	                    &out);
	apply(e, c, &out, now);
}

void engine_discover_abort(struct engine *e)
{
	e->gen ^= CONN_F_GEN; /* marks of a partial list prove nothing either way */
}

static void sweep_one(struct conn *c, void *arg)
{
	struct sweep *sw = arg;
	struct engine *e = sw->e;
	struct log_line l;

	if ((c->flags & CONN_F_GEN) == e->gen || c->fsm.state == FSM_CLOSED ||
	    !(c->flags & CONN_F_LISTED))
		return; /* listed, closing on its own, or never listed (its socket is elsewhere,
		           e.g. behind DNAT in another namespace: only traffic tells) */
	if (!(c->flags & CONN_F_KERNEL_KA) &&
	    ((c->flags & CONN_F_ANNOUNCED) || log_level() >= CONFIG_LOG_DEBUG)) {
		line_start(&l, "close", e, c);
		log_line_str(&l, "reason", "gone");
		log_line_emit(&l);
	}
	e->st.gone++;
	sw->gone++;
	forget(e, c);
}

void engine_discover_sweep_begin(struct engine *e)
{
	conntab_cursor_init(&e->sweep);
	e->sweeping = true;
}

size_t engine_discover_sweep(struct engine *e, size_t max, size_t *gone)
{
	struct sweep sw = {e, 0};
	size_t n = 0;

	if (e->sweeping)
		n = conntab_walk(e->tab, &e->sweep, max, sweep_one, &sw);
	if (n == 0)
		e->sweeping = false;
	if (gone)
		*gone += sw.gone;
	return n;
}

size_t engine_discover_end(struct engine *e)
{
	size_t gone = 0;

	engine_discover_sweep_begin(e);
	while (engine_discover_sweep(e, SIZE_MAX, &gone) > 0)
		;
	return gone;
}

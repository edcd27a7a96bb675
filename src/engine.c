/* engine.c: wiring of the core (sniproxy style: watchers only turn I/O into calls).
 *
 * A captured frame is decoded (codec), oriented by this host's addresses, looked up
 * by 4-tuple (conntab, O(1)), matched to a rule when new (rule), and handed to the
 * connection's state machine (fsm). The machine's actions are carried out here:
 * status lines (log), probes (sender), and the connection's ev_timer. */
#include <errno.h>
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
#include "log.h"
#include "rule.h"

/* struct conn.flags */
enum {
	CONN_F_GEN = 1 << 0,        /* parity of the last dump that listed it (or made it) */
	CONN_F_DISCOVERED = 1 << 1, /* first found in the kernel's socket list */
	CONN_F_KERNEL_KA = 1 << 2,  /* left to the kernel's keepalive: not probed */
	CONN_F_LISTED = 1 << 3,     /* some dump listed its socket (so a dump can miss it) */
};

struct engine {
	struct ev_loop *loop;
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
};

const double engine_rtt_bounds[ENGINE_RTT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0,
};

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void apply(struct engine *e, struct conn *c, struct fsm_out *out, double now);

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t random_seed(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint32_t)(ts.tv_nsec ^ (ts.tv_sec << 16) ^ (uint32_t)getpid());
}

struct engine *engine_new(struct ev_loop *loop, const struct config *cfg,
                          const struct addr_set *local, struct sender *sender, size_t max_conns)
{
	struct engine *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->tab = conntab_new(max_conns, random_seed());
	if (!e->tab) {
		free(e);
		return NULL;
	}
	e->loop = loop;
	e->cfg = cfg;
	e->local = local;
	e->sender = sender;
	return e;
}

static void stop_timer(struct conn *c, void *arg)
{
	struct engine *e = arg;

	ev_timer_stop(e->loop, &c->timer);
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	conntab_foreach(e->tab, stop_timer, e);
	conntab_free(e->tab);
	free(e);
}

const struct engine_stats *engine_stats(const struct engine *e)
{
	return &e->st;
}

size_t engine_count(const struct engine *e)
{
	return conntab_count(e->tab);
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
	line_start_rule(l, event, rule_of(e, c), &c->key);
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
	}
}

static void count_event(struct engine_stats *st, int type)
{
	switch (type) {
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
		break;
	case FSM_EV_RESET:
		st->reset++;
		break;
	case FSM_EV_CLOSE:
		st->closed++;
		break;
	case FSM_EV_LEARN:
		st->learn_blocked++;
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
		c->verdict = ev->type;
		c->verdict_at = now;
		break;
	}
}

static void log_event(struct engine *e, const struct conn *c, const struct fsm_event *ev)
{
	struct log_line l;
	int debug_only = ev->type == FSM_EV_PROBE || ev->type == FSM_EV_REPLY;

	count_event(&e->st, ev->type);
	if (debug_only && log_level() < CONFIG_LOG_DEBUG)
		return;
	line_start(&l, fsm_event_name(ev->type), e, c);
	add_fields(&l, c, ev);
	log_line_emit(&l);
}

static void arm_timer(struct engine *e, struct conn *c)
{
	double delay;

	ev_timer_stop(e->loop, &c->timer);
	if (c->fsm.timer_at <= 0)
		return;
	delay = c->fsm.timer_at - mono_now();
	ev_timer_set(&c->timer, delay > 0 ? delay : 0.0, 0.0);
	ev_timer_start(e->loop, &c->timer);
}

static void send_probe(struct engine *e, struct conn *c, const struct fsm_probe *p, double now)
{
	struct fsm_out out;
	int err;

	e->st.probes_sent++;
	if (!e->sender)
		return;
	err = sender_send(e->sender, &c->key, p);
	if (err == 0)
		return;
	e->st.send_errors++;
	fsm_on_send_error(&c->fsm, err, now, &out);
	apply(e, c, &out, now);
}

/* Injects a SYN (peer -> us) into our own stack: its challenge ACK shows our numbers. */
static void ask_numbers(struct engine *e, struct conn *c, uint32_t seq)
{
	struct log_line l;
	int err = e->sender ? sender_send_syn(e->sender, &c->key, seq) : 0;

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

static void forget(struct engine *e, struct conn *c)
{
	ev_timer_stop(e->loop, &c->timer);
	conntab_remove(e->tab, c);
}

/* Hands a dead or reset verdict to the hook (the actions). */
static void verdict_hook(struct engine *e, const struct conn *c, const struct fsm_event *ev,
                         double now)
{
	struct engine_verdict v;

	if (!e->hook || (ev->type != FSM_EV_DEAD && ev->type != FSM_EV_RESET))
		return;
	v.cfg = e->cfg;
	v.rule = rule_of(e, c);
	v.key = &c->key;
	v.fsm = &c->fsm;
	v.ev = ev;
	v.idle = ev->type == FSM_EV_DEAD ? ev->idle : now - c->fsm.last_rx;
	e->hook(e->hook_arg, &v);
}

static void apply(struct engine *e, struct conn *c, struct fsm_out *out, double now)
{
	int i;

	if (out->ignored != FSM_IGN_NONE)
		e->st.ignored[out->ignored]++;
	for (i = 0; i < out->nev; i++) {
		note_event(e, c, &out->ev[i], now);
		log_event(e, c, &out->ev[i]);
		verdict_hook(e, c, &out->ev[i], now);
	}
	if (out->send_probe)
		send_probe(e, c, &out->probe, now);
	if (out->learn)
		ask_numbers(e, c, out->learn_seq);
	if (out->forget)
		forget(e, c);
	else if (out->rearm)
		arm_timer(e, c);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = (struct conn *)((char *)w - offsetof(struct conn, timer));
	struct engine *e = w->data;
	struct fsm_out out;
	double now = mono_now();

	(void)loop;
	(void)revents;
	if (c->flags & CONN_F_KERNEL_KA)
		return; /* the kernel's keepalive watches it */
	fsm_on_timer(&c->fsm, &rule_of(e, c)->params, now, &out);
	apply(e, c, &out, now);
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

/* How a new record starts: from traffic, or from the kernel's socket list. */
struct track_how {
	bool discovered, quiet;
	double idle; /* s since the kernel last received a segment */
};

/* A new connection: matched against the rules, tracked, its timer armed. */
static struct conn *track(struct engine *e, const struct addr_tuple *key, double now,
                          const struct track_how *how)
{
	const struct rule *r = rule_match(e->cfg->rules, e->cfg->nrules, key);
	struct log_line l;
	struct conn *c;

	if (!r) {
		e->st.unmatched++;
		return NULL;
	}
	c = conntab_insert(e->tab, key);
	if (!c) {
		refuse(e, r, key);
		return NULL;
	}
	e->st.tracked++;
	c->rule = (uint16_t)(r - e->cfg->rules);
	c->flags = e->gen | (how->discovered ? CONN_F_DISCOVERED : 0);
	if (how->discovered)
		fsm_init_discovered(&c->fsm, now, how->idle, how->quiet, &r->params);
	else
		fsm_init(&c->fsm, now, &r->params);
	ev_timer_init(&c->timer, on_timer, 0.0, 0.0);
	c->timer.data = e;
	arm_timer(e, c);
	line_start(&l, "track", e, c);
	log_line_str(&l, "source", how->discovered ? "discovered" : "capture");
	log_line_emit(&l);
	return c;
}

/* Hands a segment to its connection (tracking it when new); returns the fsm's ignore reason. */
static int on_segment(struct engine *e, const struct codec_tcp *seg, bool from_peer, double now)
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
		/* Only a synchronized segment starts tracking: not the end of something we
		 * never tracked (FIN, RST), nor a bare SYN (a SYN flood must not fill the table).
		 */
		if (seg->flags & (CODEC_TH_RST | CODEC_TH_FIN) || !(seg->flags & CODEC_TH_ACK))
			return FSM_IGN_NONE;
		c = track(e, &key, now, &(struct track_how){false, false, 0});
		if (!c)
			return FSM_IGN_NONE;
	}
	if (c->flags & CONN_F_KERNEL_KA)
		return FSM_IGN_NONE; /* the kernel's keepalive watches it */
	fsm_on_segment(&c->fsm, &rule_of(e, c)->params, seg, from_peer, now, &out);
	apply(e, c, &out, now);
	return out.ignored;
}

/* Which way a segment goes: from this host (ours), to it (the peer's), or both on loopback.
 * On a Linux "any" capture the packet type says it: outgoing copies of loopback packets are
 * not captured, so an incoming one with both ends local is seen from both ends. */
static void on_tcp(struct engine *e, const struct codec_tcp *seg, double now)
{
	bool src_local = addr_set_contains(e->local, seg->family, seg->src);
	bool dst_local = addr_set_contains(e->local, seg->family, seg->dst);

	if (seg->pkttype == CODEC_PKT_OUTGOING)
		dst_local = false;
	else if (seg->pkttype != CODEC_PKT_UNKNOWN)
		src_local = src_local && dst_local; /* arrived here: ours only on loopback */
	if (!src_local && !dst_local) {
		e->st.not_local++;
		return;
	}
	if (src_local && on_segment(e, seg, false, now) == FSM_IGN_OWN_PROBE)
		return; /* our probe over loopback is no sign of life for the other end */
	if (dst_local)
		on_segment(e, seg, true, now);
}

static void on_icmp(struct engine *e, const struct codec_icmp *icmp, double now)
{
	struct addr_tuple key;
	struct fsm_out out;
	struct conn *c;

	addr_tuple_make(&key, icmp->family, icmp->src, icmp->sport, icmp->dst, icmp->dport);
	c = conntab_find(e->tab, &key);
	if (!c || (c->flags & CONN_F_KERNEL_KA)) {
		e->st.ignored[FSM_IGN_ICMP_MATCH]++;
		return;
	}
	fsm_on_icmp(&c->fsm, &rule_of(e, c)->params, icmp, now, &out);
	apply(e, c, &out, now);
}

void engine_on_frame(void *arg, int dlt, const uint8_t *data, size_t caplen, double when)
{
	struct engine *e = arg;
	struct codec_packet pkt;
	int rc;

	e->st.packets++;
	rc = codec_decode(dlt, data, caplen, &pkt);
	if (rc == CODEC_TCP)
		on_tcp(e, &pkt.tcp, when);
	else if (rc == CODEC_ICMP)
		on_icmp(e, &pkt.icmp, when);
	else if (rc != CODEC_E_UNSUPPORTED)
		e->st.decode_errors++;
}

double engine_clock(void)
{
	return mono_now();
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

	v.key = &c->key;
	v.rule = rule_of(x->e, c)->name;
	v.rule_index = c->rule;
	v.state = c->fsm.state;
	v.idle = x->now - c->fsm.last_rx;
	v.probes_out = c->fsm.probes_out;
	v.rtt = c->rtt > 0 ? (double)c->rtt : -1.0;
	v.verdict = c->verdict;
	v.verdict_age = c->verdict ? x->now - c->verdict_at : -1.0;
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

static void count_one(struct conn *c, void *arg)
{
	struct engine_counts *n = arg;

	n->tracked++;
	if (c->fsm.state < FSM_STATE_COUNT)
		n->by_state[c->fsm.state]++;
}

void engine_counts(const struct engine *e, struct engine_counts *out)
{
	memset(out, 0, sizeof(*out));
	conntab_foreach(e->tab, count_one, out);
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
	const struct rule *r = rule_match(e->cfg->rules, e->cfg->nrules, &c->key);
	const struct rule *was = &rc->old->rules[c->rule];
	struct log_line l;
	double due;

	if (!r) {
		line_start_rule(&l, "untrack", was, &c->key);
		log_line_str(&l, "reason", "config");
		log_line_emit(&l);
		rc->dropped++;
		forget(e, c); /* conntab_foreach allows removing the current record */
		return;
	}
	c->rule = (uint16_t)(r - e->cfg->rules);
	if (c->flags & CONN_F_KERNEL_KA)
		return; /* the kernel's keepalive watches it: no timer */
	due = c->fsm.last_rx + r->params.idle;
	if (c->fsm.state == FSM_WATCH && r->params.idle < was->params.idle && c->fsm.timer_at > 0 &&
	    due < c->fsm.timer_at) {
		c->fsm.timer_at = due; /* a shorter idle applies at once */
		arm_timer(e, c);
	}
}

size_t engine_reload(struct engine *e, const struct config *cfg, const struct config *old)
{
	struct reload_ctx rc = {e, old, 0};

	e->cfg = cfg;
	memset(e->limit_told, 0, sizeof(e->limit_told)); /* rule indexes changed */
	conntab_foreach(e->tab, reload_one, &rc);
	return rc.dropped;
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

	ev_timer_stop(e->loop, &c->timer);
	c->fsm.timer_at = 0;
	c->flags |= CONN_F_KERNEL_KA;
	e->st.kernel_keepalive++;
	line_start(&l, "untrack", e, c);
	log_line_str(&l, "reason", "kernel-keepalive");
	log_line_emit(&l);
}

/* A connection left to the kernel is ours again (SO_KEEPALIVE off, or
 * skip_kernel_keepalive = no after a reload): it starts over as if just discovered, since
 * its segments were not followed meanwhile. */
static void take_back(struct engine *e, struct conn *c, const struct track_how *how, double now)
{
	struct log_line l;

	c->flags &= (uint16_t)~CONN_F_KERNEL_KA;
	fsm_init_discovered(&c->fsm, now, how->idle, how->quiet, &rule_of(e, c)->params);
	arm_timer(e, c);
	line_start(&l, "track", e, c);
	log_line_str(&l, "source", "discovered");
	log_line_emit(&l);
}

void engine_discovered(struct engine *e, const struct addr_tuple *key, double idle, bool quiet,
                       bool keepalive, double now)
{
	struct conn *c = conntab_find(e->tab, key);
	struct track_how how = {true, quiet, idle};
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
	if (skip && !(c->flags & CONN_F_KERNEL_KA))
		leave_to_kernel(e, c);
	else if (!skip && (c->flags & CONN_F_KERNEL_KA))
		take_back(e, c, &how, now);
}

void engine_discover_abort(struct engine *e)
{
	e->gen ^= CONN_F_GEN; /* marks of a partial list prove nothing either way */
}

struct sweep {
	struct engine *e;
	size_t gone;
};

static void sweep_one(struct conn *c, void *arg)
{
	struct sweep *sw = arg;
	struct engine *e = sw->e;
	struct log_line l;

	if ((c->flags & CONN_F_GEN) == e->gen || c->fsm.state == FSM_CLOSED ||
	    !(c->flags & CONN_F_LISTED))
		return; /* listed, closing on its own, or never listed (its socket is elsewhere,
		           e.g. behind DNAT in another namespace: only traffic tells) */
	if (!(c->flags & CONN_F_KERNEL_KA)) {
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

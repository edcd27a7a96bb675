/* test_engine.c: the engine itself, on a fake clock and without a loop (engine_new with loop
 * NULL, driven by engine_next_due/engine_run_due): raw IPv4 frames in (their direction given,
 * as per-direction captures do), the packets it would send (send hook), its status lines
 * (a temporary status log) and its verdicts (verdict hook) out. Tracking from a handshake, a
 * dead verdict on schedule, an answered round, a reset, reload (kept, re-armed, dropped) and
 * discovery (tracked, learning SYN, left to the kernel's keepalive, gone), the answers a
 * gateway flow's learning SYNs draw, told to the expect hook before they go, and gateway
 * records forgotten with their conntrack entry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "capture.h"
#include "codec.h"
#include "config.h"
#include "engine.h"
#include "log.h"

#define ISS_OURS 5000u
#define ISS_PEER 1000u
#define MAX_SENT 32

static const uint8_t our_ip[4] = {192, 0, 2, 1}, peer_ip[4] = {192, 0, 2, 2};

static const char conf_text[] = "[global]\n"
                                "[svc]\n"
                                "local = *:5432\n"
                                "remote = *\n"
                                "idle = 1s\n"
                                "interval = 500ms\n"
                                "probes = 3\n";

struct world {
	struct config cfg;
	struct addr_set local;
	struct engine *e;
	double now;
	char log_path[64];
	struct sender_pkt sent[MAX_SENT];
	double sent_at[MAX_SENT];
	int nsent;
	int verdicts[16];                    /* verdict hook calls by event type */
	uint32_t ours, peers;                /* next sequence number of each side */
	struct hush_expect expect[MAX_SENT]; /* what the expect hook was told */
	int nexpect;
	int sent_at_expect; /* packets sent when the hook was last called */
};

static double fake_clock(void *arg)
{
	return ((struct world *)arg)->now;
}

static void on_send(void *arg, const struct sender_pkt *pkts, size_t n, int *errs)
{
	struct world *w = arg;

	for (size_t i = 0; i < n && w->nsent < MAX_SENT; i++) {
		w->sent[w->nsent] = pkts[i];
		w->sent_at[w->nsent++] = w->now;
		errs[i] = 0;
	}
}

static void on_expect(void *arg, const struct hush_expect *x, size_t n)
{
	struct world *w = arg;

	for (size_t i = 0; i < n && w->nexpect < MAX_SENT; i++)
		w->expect[w->nexpect++] = x[i];
	w->sent_at_expect = w->nsent;
}

static void on_verdict(void *arg, const struct engine_verdict *v)
{
	struct world *w = arg;

	assert_non_null(v->rule);
	assert_non_null(v->key);
	w->verdicts[v->ev->type]++;
}

static void parse(struct config *cfg, const char *text)
{
	static struct config_errors errs;
	struct fsm_params host = {.idle = 7200, .interval = 75, .probes = 9, .probe_bytes = 1};

	assert_int_equal(config_parse_len("test.ini", text, strlen(text), &host, cfg, &errs), 0);
}

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	int fd;

	snprintf(w->log_path, sizeof(w->log_path), "/tmp/kaprobe-test-engine-XXXXXX");
	fd = mkstemp(w->log_path);
	assert_true(fd >= 0);
	close(fd);
	log_init(CONFIG_LOG_DEBUG);
	assert_int_equal(log_open_status(w->log_path), 0);
	parse(&w->cfg, conf_text);
	addr_set_add(&w->local, AF_INET, our_ip, 2);
	w->now = 100.0;
	w->e = engine_new(NULL, &w->cfg, &w->local, NULL, 1000);
	assert_non_null(w->e);
	engine_set_clock(w->e, fake_clock, w);
	log_set_clock(fake_clock, w);
	engine_set_send_hook(w->e, on_send, w);
	engine_set_verdict_hook(w->e, on_verdict, w);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;

	engine_free(w->e);
	config_free(&w->cfg);
	log_set_clock(NULL, NULL);
	log_close();
	unlink(w->log_path);
	free(w);
	return 0;
}

/* ---- frames ----------------------------------------------------------------------------- */

static void put16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v & 0xffff);
}

/* One raw IPv4 frame, ours (from 192.0.2.1:5432) or the peer's, at the clock's time. */
static void frame(struct world *w, bool ours, uint8_t flags, uint32_t seq, uint32_t ack,
                  uint32_t len)
{
	uint8_t b[40 + 256] = {0};
	struct capture_frame f = {.dlt = CODEC_DLT_RAW, .data = b, .loopback = 0};

	b[0] = 0x45;
	put16(b + 2, 40 + len);
	b[8] = 64;
	b[9] = 6; /* TCP */
	memcpy(b + 12, ours ? our_ip : peer_ip, 4);
	memcpy(b + 16, ours ? peer_ip : our_ip, 4);
	put16(b + 20, ours ? 5432 : 40000);
	put16(b + 22, ours ? 40000 : 5432);
	put32(b + 24, seq);
	put32(b + 28, ack);
	b[32] = 5 << 4;
	b[33] = flags;
	put16(b + 34, 500); /* window */
	f.caplen = f.wirelen = 40 + len;
	f.dir = ours ? CAPTURE_DIR_OUT : CAPTURE_DIR_IN;
	f.when = w->now;
	engine_on_frame(w->e, &f);
}

/* A handshake, 100 bytes from the peer acknowledged, 200 bytes of ours acknowledged: every
 * number a probe needs is known; the peer's last segment is at the clock's time. */
static void open_conn(struct world *w)
{
	frame(w, false, CODEC_TH_SYN, ISS_PEER, 0, 0);
	frame(w, true, CODEC_TH_SYN | CODEC_TH_ACK, ISS_OURS, ISS_PEER + 1, 0);
	frame(w, false, CODEC_TH_ACK, ISS_PEER + 1, ISS_OURS + 1, 0);
	frame(w, false, CODEC_TH_ACK | CODEC_TH_PUSH, ISS_PEER + 1, ISS_OURS + 1, 100);
	frame(w, true, CODEC_TH_ACK, ISS_OURS + 1, ISS_PEER + 101, 0);
	frame(w, true, CODEC_TH_ACK | CODEC_TH_PUSH, ISS_OURS + 1, ISS_PEER + 101, 200);
	frame(w, false, CODEC_TH_ACK, ISS_PEER + 101, ISS_OURS + 201, 0);
	w->ours = ISS_OURS + 201;
	w->peers = ISS_PEER + 101;
}

/* Runs the engine's work due until t, each at its own time. */
static void run_until(struct world *w, double t)
{
	double at;

	while (engine_next_due(w->e, &at) && at <= t) {
		if (at > w->now)
			w->now = at;
		engine_run_due(w->e);
	}
	w->now = t;
}

/* The status log so far. */
static const char *log_text(struct world *w)
{
	static char buf[16384];
	FILE *f = fopen(w->log_path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static int count_lines(struct world *w, const char *needle)
{
	const char *p = log_text(w);
	int n = 0;

	while ((p = strstr(p, needle))) {
		n++;
		p += strlen(needle);
	}
	return n;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_tracks_from_its_own_segments(void **state)
{
	struct world *w = *state;
	struct engine_counts n;

	frame(w, false, CODEC_TH_ACK, 1, 1, 0); /* the peer's alone starts nothing */
	assert_int_equal(engine_count(w->e), 0);
	open_conn(w);
	assert_int_equal(engine_count(w->e), 1);
	engine_counts(w->e, &n);
	assert_int_equal(n.tracked, 1);
	assert_int_equal(n.by_state[FSM_WATCH], 1);
	assert_int_equal(n.unconfirmed, 0);
	assert_int_equal(engine_stats(w->e)->tracked, 1);
	/* debug level: the track line at first sight */
	assert_int_equal(count_lines(w, "event=track rule=svc local=192.0.2.1:5432 "
	                                "remote=192.0.2.2:40000 source=capture"),
	                 1);
}

static void test_dead_on_schedule(void **state)
{
	struct world *w = *state;
	double t0, at;

	open_conn(w);
	t0 = w->now;
	assert_true(engine_next_due(w->e, &at));
	run_until(w, t0 + 0.999);
	assert_int_equal(w->nsent, 0);
	run_until(w, t0 + 2.6);
	assert_int_equal(w->nsent, 3); /* at idle, idle + interval, idle + 2 x interval */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(w->sent[i].kind, SENDER_PROBE);
		assert_int_equal(w->sent[i].probe.seq, w->ours - 1);
		assert_int_equal(w->sent[i].probe.ack, w->peers);
		assert_int_equal(w->sent[i].probe.payload_len, 1);
		assert_float_equal(w->sent_at[i], t0 + 1.0 + 0.5 * i, 1e-9);
	}
	assert_int_equal(engine_stats(w->e)->dead, 1);
	assert_int_equal(w->verdicts[FSM_EV_DEAD], 1);
	assert_int_equal(count_lines(w, "event=dead rule=svc local=192.0.2.1:5432 "
	                                "remote=192.0.2.2:40000 probes=3 idle=2.500 "
	                                "reason=no-reply"),
	                 1);
	/* ts from the clock given: 100 s after the epoch, plus 2.5 */
	assert_non_null(strstr(log_text(w), "ts=1970-01-01T00:01:42.500Z event=dead"));
}

static void test_answered_round(void **state)
{
	struct world *w = *state;
	double t0;

	open_conn(w);
	t0 = w->now;
	run_until(w, t0 + 1.0);
	assert_int_equal(w->nsent, 1);
	w->now += 0.0002; /* our probe seen leaving, then the peer's ACK */
	frame(w, true, CODEC_TH_ACK, w->ours - 1, w->peers, 1);
	w->now += 0.0003;
	frame(w, false, CODEC_TH_ACK, w->peers, w->ours, 0);
	assert_int_equal(engine_stats(w->e)->alive, 1);
	assert_int_equal(engine_stats(w->e)->ignored[FSM_IGN_OWN_PROBE], 1);
	assert_int_equal(count_lines(w, "event=alive"), 1);
	assert_non_null(strstr(log_text(w), "rtt=0.300 probes=1"));
	run_until(w, t0 + 2.0); /* the next round counts from the reply */
	assert_int_equal(w->nsent, 1);
	run_until(w, t0 + 2.001);
	assert_int_equal(w->nsent, 2);
	assert_int_equal(w->verdicts[FSM_EV_DEAD], 0);
}

static void test_reset_goes_to_the_hook(void **state)
{
	struct world *w = *state;

	open_conn(w);
	run_until(w, w->now + 1.0);
	assert_int_equal(w->nsent, 1);
	w->now += 0.001;
	frame(w, false, CODEC_TH_RST, w->peers + 7, 0, 0); /* a wrong SEQ: ignored */
	assert_int_equal(engine_stats(w->e)->reset, 0);
	frame(w, false, CODEC_TH_RST, w->peers, 0, 0);
	assert_int_equal(engine_stats(w->e)->reset, 1);
	assert_int_equal(w->verdicts[FSM_EV_RESET], 1);
	assert_int_equal(count_lines(w, "event=reset"), 1);
}

/* Replaces the engine's configuration by text; returns the connections dropped. */
static size_t reload(struct world *w, const char *text)
{
	struct config old = w->cfg;
	size_t n;

	parse(&w->cfg, text);
	n = engine_reload(w->e, &w->cfg, &old);
	config_free(&old);
	return n;
}

static void test_reload(void **state)
{
	struct world *w = *state;
	double at, t0;

	open_conn(w);
	t0 = w->now;
	/* a longer idle: kept, the armed timer left alone, then re-armed for the new idle */
	assert_int_equal(reload(w, "[svc]\nlocal = *:5432\nremote = *\nidle = 10s\n"), 0);
	run_until(w, t0 + 1.5);
	assert_int_equal(w->nsent, 0);
	assert_true(engine_next_due(w->e, &at));
	assert_true(at > t0 + 5);
	/* a shorter idle: the watching connection is re-armed at once */
	assert_int_equal(reload(w, "[svc]\nlocal = *:5432\nremote = *\nidle = 2s\n"), 0);
	run_until(w, t0 + 2.0);
	assert_int_equal(w->nsent, 1);
	assert_float_equal(w->sent_at[0], t0 + 2.0, 1e-9);
	/* no rule for it any more: dropped, with an untrack line */
	assert_int_equal(reload(w, "[other]\nlocal = *:80\nremote = *\n"), 1);
	assert_int_equal(engine_count(w->e), 0);
	assert_int_equal(count_lines(w, "event=untrack rule=svc local=192.0.2.1:5432 "
	                                "remote=192.0.2.2:40000 reason=config"),
	                 1);
	assert_false(engine_next_due(w->e, &at));
}

static void discovered(struct world *w, uint16_t rport, double idle, bool keepalive)
{
	struct addr_tuple key;

	addr_tuple_make(&key, AF_INET, our_ip, 5432, peer_ip, rport);
	engine_discovered(w->e, &key, idle, true, keepalive, engine_now(w->e));
}

static void test_discovery(void **state)
{
	struct world *w = *state;

	engine_discover_begin(w->e);
	discovered(w, 41000, 0.2, false);
	discovered(w, 41001, 0.2, true);
	discovered(w, 41002, 0.2, false);
	assert_int_equal(engine_discover_end(w->e), 0);
	assert_int_equal(engine_count(w->e), 3);
	assert_int_equal(engine_stats(w->e)->discovered, 3);
	assert_int_equal(engine_stats(w->e)->kernel_keepalive, 1);
	assert_int_equal(count_lines(w, "source=discovered"), 3);
	assert_int_equal(count_lines(w, "remote=192.0.2.2:41001 reason=kernel-keepalive"), 1);
	/* numbers are asked for (a SYN into our stack) before the first probe; not for the one
	 * left to the kernel */
	run_until(w, w->now + 0.8);
	assert_int_equal(w->nsent, 2);
	assert_int_equal(w->sent[0].kind, SENDER_SYN);
	assert_int_equal(w->sent[1].kind, SENDER_SYN);
	/* the next dump lists only 41002: 41000 is gone (and 41001, the kernel's) */
	engine_discover_begin(w->e);
	discovered(w, 41002, 0.9, false);
	assert_int_equal(engine_discover_end(w->e), 2);
	assert_int_equal(engine_count(w->e), 1);
	assert_int_equal(count_lines(w, "remote=192.0.2.2:41000 reason=gone"), 1);
	assert_int_equal(engine_stats(w->e)->gone, 2);
}

/* The expectation of the learning SYN to the end at a:ap (from b:bp), or NULL. */
static const struct hush_expect *expect_from(struct world *w, const uint8_t *a, uint16_t ap,
                                             const uint8_t *b, uint16_t bp)
{
	for (int i = 0; i < w->nexpect; i++) {
		const struct hush_expect *x = &w->expect[i];

		if (x->kind == HUSH_CHALLENGE && x->family == AF_INET && !memcmp(x->src, a, 4) &&
		    x->sport == ap && !memcmp(x->dst, b, 4) && x->dport == bp)
			return x;
	}
	return NULL;
}

/* A forwarded flow found in conntrack: each record's learning SYN goes to the end it speaks
 * for; the challenge ACK that end will send to the other (as the router's forward hook sees
 * it) is told to the expect hook before the batch goes, for 2 s. */
static void test_gateway_expect(void **state)
{
	static const uint8_t cli[4] = {198, 51, 100, 2}, srv[4] = {203, 0, 113, 1};
	struct world *w = *state;
	struct addr_tuple orig, reply;
	const struct hush_expect *x;

	assert_int_equal(reload(w, "[gw]\nmode = gateway\nclient = *\nserver = *:5432\n"
	                           "idle = 1s\ninterval = 500ms\nprobes = 3\n"),
	                 0);
	engine_set_expect(w->e, on_expect, w);
	addr_tuple_make(&orig, AF_INET, cli, 40000, srv, 5432);
	addr_tuple_make(&reply, AF_INET, srv, 5432, cli, 40000);
	engine_gateway_found(w->e, &orig, &reply, false, 0.2, engine_now(w->e));
	assert_int_equal(engine_count(w->e), 2);
	run_until(w, w->now + 0.8);
	assert_int_equal(w->nsent, 2);
	assert_int_equal(w->sent[0].kind, SENDER_SYN);
	assert_int_equal(w->sent[1].kind, SENDER_SYN);
	assert_int_equal(w->sent[0].mark, 0); /* no NAT: as the key says, unmarked */
	assert_int_equal(w->nexpect, 2);
	assert_int_equal(w->sent_at_expect, 0);    /* told before the batch went */
	x = expect_from(w, cli, 40000, srv, 5432); /* the client's challenge ACK */
	assert_non_null(x);
	assert_int_equal(x->timeout_ms, 2000);
	assert_non_null(expect_from(w, srv, 5432, cli, 40000)); /* the server's */
	/* a flow through NAT is left alone without a learn mark */
	addr_tuple_make(&orig, AF_INET, cli, 40001, srv, 5432);
	addr_tuple_make(&reply, AF_INET, srv, 5432, (const uint8_t[]){192, 0, 2, 254}, 41000);
	engine_gateway_found(w->e, &orig, &reply, true, 0.2, engine_now(w->e));
	assert_int_equal(engine_count(w->e), 2);
}

/* A forwarded flow of the gateway rule, client 198.51.100.2:port, server 203.0.113.1:5432:
 * its conntrack tuples. */
static void gw_flow(uint16_t port, struct addr_tuple *orig, struct addr_tuple *reply)
{
	const uint8_t c[4] = {198, 51, 100, 2}, s[4] = {203, 0, 113, 1};

	addr_tuple_make(orig, AF_INET, c, port, s, 5432);
	addr_tuple_make(reply, AF_INET, s, 5432, c, port);
}

/* Gateway records go with their conntrack entry: a destroy event forgets both records of
 * its flow (not a local connection with the same tuples); a complete dump forgets those it
 * did not list, except those made while it ran. */
static void test_gateway_expiry(void **state)
{
	static const char gw_text[] = "[global]\n"
	                              "[svc]\nlocal = *:5432\nremote = *\nidle = 1s\n"
	                              "[gw]\nmode = gateway\nclient = *\nserver = *:5432\n"
	                              "idle = 1s\ninterval = 500ms\nprobes = 3\n";
	struct world *w = *state;
	struct addr_tuple o[4], r[4], lo, lr;
	struct config old = w->cfg;
	uint16_t i;

	parse(&w->cfg, gw_text);
	engine_reload(w->e, &w->cfg, &old);
	config_free(&old);
	open_conn(w); /* a connection of this host, under [svc] */
	for (i = 0; i < 3; i++) {
		gw_flow((uint16_t)(40000 + i), &o[i], &r[i]);
		engine_gateway_found(w->e, &o[i], &r[i], false, 0.5, w->now);
	}
	assert_int_equal(engine_count(w->e), 7);
	assert_int_equal(engine_gateway_gone(w->e, &o[0], &r[0]), 2);
	assert_int_equal(engine_gateway_gone(w->e, &o[0], &r[0]), 0); /* already gone */
	assert_int_equal(count_lines(w, "reason=conntrack"), 2);
	addr_tuple_make(&lo, AF_INET, peer_ip, 40000, our_ip, 5432);
	addr_tuple_make(&lr, AF_INET, our_ip, 5432, peer_ip, 40000);
	assert_int_equal(engine_gateway_gone(w->e, &lo, &lr), 0); /* not a gateway record */
	assert_int_equal(engine_count(w->e), 5);
	/* a dump lists flow 2 only; flow 3 starts while it runs; flow 1 is forgotten */
	engine_gateway_mark_begin(w->e);
	engine_gateway_listed(w->e, &o[2], &r[2]);
	gw_flow(40003, &o[3], &r[3]);
	engine_gateway_found(w->e, &o[3], &r[3], false, 0.5, w->now);
	assert_int_equal(engine_gateway_mark_end(w->e), 2);
	assert_int_equal(count_lines(w, "client=198.51.100.2:40001 server=203.0.113.1:5432 "
	                                "side=server reason=conntrack-sweep"),
	                 1);
	assert_int_equal(engine_count(w->e), 5);
	assert_int_equal(engine_stats(w->e)->gateway_expired, 4);
	/* the next dump lists 2 and 3: nothing goes */
	engine_gateway_mark_begin(w->e);
	engine_gateway_listed(w->e, &o[2], &r[2]);
	engine_gateway_listed(w->e, &o[3], &r[3]);
	assert_int_equal(engine_gateway_mark_end(w->e), 0);
	assert_int_equal(engine_count(w->e), 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_tracks_from_its_own_segments, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dead_on_schedule, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_answered_round, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_goes_to_the_hook, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_discovery, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gateway_expect, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gateway_expiry, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* replay.c: kaprobed -r FILE. The same engine, on a capture's clock.
 *
 * The engine runs without a loop (engine_new with loop NULL) on a clock that reads the
 * capture's time: before a frame stamped t is handed over, every timer due at or before t
 * fires, each at its own time and in order (engine_next_due, engine_run_due); the log's
 * ts= reads the same clock, so the output depends on the file only. Nothing is sent: the
 * engine's send hook collects the probes it wants, and each is matched with the next own
 * probe of that connection the capture shows (the fsm recognises its own probe:
 * FSM_IGN_OWN_PROBE) within REPLAY_PROBE_WINDOW s; a probe not seen by then is logged
 * event=probe replay=unsent. The capture ends the replay: no timer runs past its last
 * frame, and a probe still waiting for its window then is unsent too. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <pcap/pcap.h>

#include "capture.h"
#include "codec.h"
#include "engine.h"
#include "log.h"
#include "replay.h"
#include "rule.h"

/* A probe the engine wanted, waiting to be seen in the capture. */
struct wanted {
	struct addr_tuple key;
	double at; /* when the engine sent it */
	int n;     /* its number in the round */
	bool seen; /* matched (left in the queue until the entries before it are done) */
};

/* One replay: the engine, its clock, and the probes it wanted, oldest first in w[head..nw)
 * (the capture shows them in about that order: a match is found near the head). */
struct replay {
	const char *path;
	const struct config *cfg;
	struct engine *e;
	double now; /* the capture's clock: the frame or timer at hand */
	struct wanted *w;
	size_t head, nw, capw;
	unsigned long long seen, unsent;
};

static double replay_clock(void *arg)
{
	return ((const struct replay *)arg)->now;
}

int replay_parse_local(const char *text, struct addr_set *set)
{
	char buf[1024], *save = NULL, *s;
	uint8_t ip[16];

	snprintf(buf, sizeof(buf), "%s", text);
	for (s = strtok_r(buf, ", ", &save); s; s = strtok_r(NULL, ", ", &save)) {
		if (inet_pton(AF_INET, s, ip) == 1) {
			if (addr_set_add(set, AF_INET, ip, 0) < 0)
				return -1;
		} else if (inet_pton(AF_INET6, s, ip) == 1) {
			if (addr_set_add(set, AF_INET6, ip, 0) < 0)
				return -1;
		} else {
			return -1;
		}
	}
	return 0;
}

/* The time of a frame, s since the epoch. */
static double stamp(const struct pcap_pkthdr *h)
{
	return (double)h->ts.tv_sec + h->ts.tv_usec / 1e6;
}

/* An error about the capture file on standard error, naming it once. */
static void file_error(const char *path, const char *msg)
{
	if (strncmp(msg, path, strlen(path)) == 0)
		fprintf(stderr, "kaprobed: %s\n", msg); /* libpcap named it already */
	else
		fprintf(stderr, "kaprobed: %s: %s\n", path, msg);
}

/* ---- the probes the engine wanted, matched against the capture ---------------------- */

/* The probe was not seen in time: one line, at the time that is known. */
static void log_unsent(struct replay *rp, const struct wanted *w)
{
	const struct rule *r = rule_match(rp->cfg->rules, rp->cfg->nrules, &w->key);
	char ep[ADDR_ENDPOINT_STRLEN];
	struct log_line l;

	rp->unsent++;
	log_line_begin(&l, "probe");
	log_line_str(&l, "rule", r ? r->name : "-");
	log_line_str(
	    &l, "local",
	    addr_format_endpoint(w->key.family, w->key.local, w->key.lport, ep, sizeof(ep)));
	log_line_str(
	    &l, "remote",
	    addr_format_endpoint(w->key.family, w->key.remote, w->key.rport, ep, sizeof(ep)));
	log_line_int(&l, "n", w->n);
	log_line_str(&l, "replay", "unsent");
	log_line_fixed(&l, "waited", rp->now - w->at, 3); /* s since the engine wanted it */
	log_line_emit(&l);
}

/* Drops the entries at the head that are matched. */
static void wanted_trim(struct replay *rp)
{
	while (rp->head < rp->nw && rp->w[rp->head].seen)
		rp->head++;
}

/* Room for one more wanted probe: the done head moved out, or the queue grown. */
static bool wanted_room(struct replay *rp)
{
	size_t cap = rp->capw ? rp->capw * 2 : 64;
	struct wanted *w;

	if (rp->nw < rp->capw)
		return true;
	if (rp->head > 0) {
		memmove(rp->w, rp->w + rp->head, (rp->nw - rp->head) * sizeof(*rp->w));
		rp->nw -= rp->head;
		rp->head = 0;
		return true;
	}
	w = realloc(rp->w, cap * sizeof(*w));
	if (!w)
		return false;
	rp->w = w;
	rp->capw = cap;
	return true;
}

/* Probes whose window closed by now (all of them when final) are unsent: each line is
 * stamped when its window closed (or now, at the end of the capture), before anything the
 * engine does at that time. */
static void expire_wanted(struct replay *rp, bool final)
{
	double now = rp->now, due;

	for (wanted_trim(rp); rp->head < rp->nw; wanted_trim(rp)) {
		due = rp->w[rp->head].at + REPLAY_PROBE_WINDOW;
		if (due > now && !final)
			break; /* the window is [sent, sent + REPLAY_PROBE_WINDOW) */
		rp->now = due < now ? due : now;
		log_unsent(rp, &rp->w[rp->head++]);
		rp->now = now;
	}
}

/* The engine's send hook: every probe is held until the capture shows it. */
static void on_send(void *arg, const struct sender_pkt *pkts, size_t n, int *errs)
{
	struct replay *rp = arg;
	size_t i;

	(void)errs; /* every packet "went out": what the wire shows decides */
	for (i = 0; i < n; i++) {
		if (pkts[i].kind != SENDER_PROBE)
			continue; /* learning SYNs are not matched */
		if (!wanted_room(rp))
			continue; /* out of memory: this probe is not followed */
		rp->w[rp->nw++] = (struct wanted){*pkts[i].key, rp->now, pkts[i].probe.n, false};
	}
}

/* The engine took the frame as its own probe: it matches the oldest probe wanted on that
 * connection (a learning SYN, the other packet it takes as its own, matches nothing). */
static void own_probe_seen(struct replay *rp, const struct pcap_pkthdr *h, const uint8_t *b,
                           int dlt)
{
	struct codec_packet pkt;
	struct addr_tuple key;
	const struct codec_tcp *t = &pkt.tcp;
	size_t i;

	if (codec_decode(dlt, b, h->caplen, h->len, &pkt) != CODEC_TCP || (t->flags & CODEC_TH_SYN))
		return;
	addr_tuple_make(&key, t->family, t->src, t->sport, t->dst, t->dport);
	for (i = rp->head; i < rp->nw; i++) {
		if (!rp->w[i].seen && addr_tuple_equal(&rp->w[i].key, &key)) {
			rp->w[i].seen = true;
			rp->seen++;
			wanted_trim(rp);
			return;
		}
	}
}

/* ---- the clock ------------------------------------------------------------------------ */

/* Runs the engine's timers (and its pacer) due by t, each at its own time. */
static void advance(struct replay *rp, double t)
{
	double at;

	while (engine_next_due(rp->e, &at) && at <= t) {
		if (at > rp->now)
			rp->now = at;
		expire_wanted(rp, false);
		engine_run_due(rp->e);
	}
	rp->now = t;
	expire_wanted(rp, false);
}

/* One frame at its time: the timers due before it, the frame, then what it made due. */
static void replay_frame(struct replay *rp, const struct pcap_pkthdr *h, const uint8_t *b, int dlt)
{
	const struct engine_stats *st = engine_stats(rp->e);
	unsigned long long own;
	double t = stamp(h);
	struct capture_frame f = {
	    .dlt = dlt,
	    .data = b,
	    .caplen = h->caplen,
	    .wirelen = h->len < h->caplen ? h->caplen : h->len,
	    .dir = CAPTURE_DIR_UNKNOWN,
	    .loopback = -1,
	};

	if (t < rp->now)
		t = rp->now; /* the engine's clock never goes back */
	advance(rp, t);
	f.when = t;
	own = st->ignored[FSM_IGN_OWN_PROBE];
	engine_on_frame(rp->e, &f);
	if (st->ignored[FSM_IGN_OWN_PROBE] > own)
		own_probe_seen(rp, h, b, dlt);
	advance(rp, t);
}

/* ---- this host's addresses, from the capture ------------------------------------------ */

/* Adds the local ends a frame proves: the source of a frame the capture saw leave, both
 * ends of one on loopback (SLL2 names the interface). */
static void learn_local(struct addr_set *set, const struct codec_tcp *t)
{
	if (t->pkttype == CODEC_PKT_OUTGOING)
		addr_set_add(set, t->family, t->src, 0);
	else if (t->ifindex == CODEC_LOOPBACK_IFINDEX && t->pkttype == CODEC_PKT_HOST) {
		addr_set_add(set, t->family, t->src, 0);
		addr_set_add(set, t->family, t->dst, 0);
	}
}

/* A first pass over the file: the addresses its frames prove local. Returns 0, or -1 with
 * err filled (unreadable, or a link type that tells no direction). */
static int infer_local(const char *path, struct addr_set *set, char *err)
{
	pcap_t *p = pcap_open_offline(path, err);
	struct pcap_pkthdr *h;
	struct codec_packet pkt;
	const u_char *b;
	int dlt, rc;

	if (!p)
		return -1;
	dlt = pcap_datalink(p);
	if (dlt != DLT_LINUX_SLL && dlt != DLT_LINUX_SLL2) {
		snprintf(err, PCAP_ERRBUF_SIZE,
		         "link type %s tells no direction: give the local addresses with -l",
		         pcap_datalink_val_to_name(dlt) ? pcap_datalink_val_to_name(dlt) : "?");
		pcap_close(p);
		return -1;
	}
	while ((rc = pcap_next_ex(p, &h, &b)) == 1)
		if (codec_decode(dlt, b, h->caplen, h->len, &pkt) == CODEC_TCP)
			learn_local(set, &pkt.tcp);
	if (rc == PCAP_ERROR)
		snprintf(err, PCAP_ERRBUF_SIZE, "%s", pcap_geterr(p));
	pcap_close(p);
	return rc == PCAP_ERROR ? -1 : 0;
}

/* ---- the run -------------------------------------------------------------------------- */

/* The link types kaprobed captures on (codec.c decodes them). */
static bool link_supported(int dlt)
{
	return dlt == CODEC_DLT_EN10MB || dlt == CODEC_DLT_LINUX_SLL ||
	       dlt == CODEC_DLT_LINUX_SLL2 || dlt == CODEC_DLT_RAW || dlt == 14; /* DLT_RAW, BSD */
}

/* The status log goes to standard output in cfg's format; nothing else is opened. */
static int open_output(const struct config *cfg)
{
	static struct config out;

	out = *cfg;
	snprintf(out.log_file, sizeof(out.log_file), "-");
	out.syslog = false;
	out.journal = false;
	return log_configure(&out);
}

/* The closing line, as the daemon's totals (the probes: wanted, seen, unsent). */
static void log_totals(const struct replay *rp)
{
	const struct engine_stats *s = engine_stats(rp->e);
	struct log_line l;

	log_line_begin(&l, NULL);
	log_line_str(&l, "level", "info");
	log_line_str(&l, "msg", "totals");
	log_line_int(&l, "packets", (long long)s->packets);
	log_line_int(&l, "decode_errors", (long long)s->decode_errors);
	log_line_int(&l, "tracked", (long long)s->tracked);
	log_line_int(&l, "probes_sent", (long long)s->probes_sent);
	log_line_int(&l, "probes_seen", (long long)rp->seen);
	log_line_int(&l, "probes_unsent", (long long)rp->unsent);
	log_line_int(&l, "replies", (long long)s->replies);
	log_line_int(&l, "alive", (long long)s->alive);
	log_line_int(&l, "dead", (long long)s->dead);
	log_line_int(&l, "reset", (long long)s->reset);
	log_line_int(&l, "unreachable", (long long)s->unreachable);
	log_line_int(&l, "closed", (long long)s->closed);
	log_line_int(&l, "uncertain", (long long)s->uncertain);
	log_line_int(&l, "learn_retries", (long long)s->learn_retries);
	log_line_int(&l, "ignored_own", (long long)s->ignored[FSM_IGN_OWN_PROBE]);
	log_line_int(&l, "ignored_bad_ack", (long long)s->ignored[FSM_IGN_BAD_ACK]);
	log_line_int(&l, "ignored_bad_rst", (long long)s->ignored[FSM_IGN_BAD_RST]);
	log_line_int(&l, "ignored_icmp", (long long)s->ignored[FSM_IGN_ICMP_MATCH]);
	log_line_int(&l, "ignored_syn", (long long)s->ignored[FSM_IGN_SYN]);
	log_line_int(&l, "ignored_no_ack", (long long)s->ignored[FSM_IGN_NO_ACK]);
	log_line_int(&l, "ignored_bad_seq", (long long)s->ignored[FSM_IGN_BAD_SEQ]);
	log_line_int(&l, "ignored_unverified", (long long)s->ignored[FSM_IGN_UNVERIFIED]);
	log_line_emit(&l);
}

/* Every frame of p through the engine, then the totals. Returns 0, or -1 (read error). */
static int replay_file(struct replay *rp, pcap_t *p)
{
	struct pcap_pkthdr *h;
	const u_char *b;
	int dlt = pcap_datalink(p), rc;

	while ((rc = pcap_next_ex(p, &h, &b)) == 1)
		replay_frame(rp, h, b, dlt);
	expire_wanted(rp, true); /* the capture ended before they could be seen */
	log_totals(rp);
	if (rc != PCAP_ERROR)
		return 0;
	file_error(rp->path, pcap_geterr(p));
	return -1;
}

/* The addresses to use: those given, or those the capture proves. */
static int local_addresses(const char *path, const struct addr_set *given, struct addr_set *set)
{
	char err[PCAP_ERRBUF_SIZE] = "";

	if (given) {
		*set = *given;
		return 0;
	}
	memset(set, 0, sizeof(*set));
	if (infer_local(path, set, err) < 0) {
		file_error(path, err);
		return -1;
	}
	return 0;
}

/* The capture, opened, of a link type kaprobed reads; NULL (with a message) otherwise. */
static pcap_t *open_capture(const char *path)
{
	char err[PCAP_ERRBUF_SIZE] = "";
	pcap_t *p = pcap_open_offline(path, err);

	if (!p) {
		file_error(path, err);
		return NULL;
	}
	if (link_supported(pcap_datalink(p)))
		return p;
	fprintf(stderr, "kaprobed: %s: link type %d is not one kaprobed reads\n", path,
	        pcap_datalink(p));
	pcap_close(p);
	return NULL;
}

/* An engine without a loop (the replay drives its time), or NULL (with a message). */
static struct engine *new_engine(const struct config *cfg, const struct addr_set *set)
{
	struct engine *e = engine_new(NULL, cfg, set, NULL, (size_t)cfg->max_connections);

	if (!e)
		fprintf(stderr, "kaprobed: out of memory\n");
	return e;
}

int replay_run(const char *path, const struct config *cfg, const struct addr_set *local)
{
	static struct addr_set set;
	struct replay rp = {.path = path, .cfg = cfg};
	pcap_t *p = open_capture(path);
	int rc;

	if (!p || local_addresses(path, local, &set) < 0 || !(rp.e = new_engine(cfg, &set))) {
		if (p)
			pcap_close(p);
		return 1;
	}
	if (open_output(cfg) < 0)
		fprintf(stderr, "kaprobed: standard output: cannot write the status log\n");
	engine_set_clock(rp.e, replay_clock, &rp);
	engine_set_send_hook(rp.e, on_send, &rp);
	log_set_clock(replay_clock, &rp);
	rc = replay_file(&rp, p);
	log_set_clock(NULL, NULL);
	engine_free(rp.e);
	free(rp.w);
	pcap_close(p);
	return rc < 0 ? 1 : 0;
}

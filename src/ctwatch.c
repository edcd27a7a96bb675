/* ctwatch.c: the router's conntrack table, watched for the gateway records (ctwatch.h).
 * Two NETLINK_NETFILTER sockets of their own: the event socket (destroy events) and the
 * dump socket, so that neither's datagrams mix with the other's nor with the one-entry
 * lookups main.c makes on its own socket. Both are read from the loop, in batches. */
#include "ctwatch.h"

#include <errno.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "actmsg.h"
#include "gateway.h"
#include "log.h"
#include "rule.h"

#define CTWATCH_EVENT_BATCH 64        /* event datagrams read per callback, at most */
#define CTWATCH_DUMP_BATCH  8         /* dump datagrams read per callback, at most */
#define CTWATCH_DUMP_WAIT   2.0       /* s without an answer: the dump is abandoned */
#define CTWATCH_RCVBUF      (4 << 20) /* the event socket's buffer: bursts of expiries */
#define CTWATCH_LOST_GAP    1.0       /* s between two dumps for lost events, at least */

struct ctwatch {
	struct ev_loop *loop;
	struct engine *engine;
	int evfd, dumpfd;
	ev_io ev_w, dump_w;
	ev_timer dump_t;  /* the dump under way gets no answer for CTWATCH_DUMP_WAIT s */
	ev_timer every_t; /* the periodic dump (discover_interval) */
	ev_timer lost_t;  /* events were lost: the dump that reconciles, CTWATCH_LOST_GAP apart */
	double lost_at;   /* when the last such dump was asked for */
	unsigned long long lost; /* ENOBUFS seen since the last warning */
	bool subscribed;         /* to NFNLGRP_CONNTRACK_DESTROY */
	int family;              /* the family being dumped; 0: no dump under way */
	bool again;              /* a dump was asked for while one was under way */
	const char *why, *next_why;
	uint32_t seq;
	double established; /* nf_conntrack_tcp_timeout_established, read as a dump starts */
	size_t found;       /* established TCP flows the dump listed */
};

/* Datagrams are read into this (netlink's alignment); one loop thread. */
static _Alignas(uint32_t) uint8_t rxbuf[65536];

int ctwatch_established_timeout(double *t)
{
	FILE *f = fopen(GATEWAY_CT_TIMEOUT_PATH, "re");
	int ok;

	if (!f)
		return -1;
	ok = fscanf(f, "%lf", t) == 1;
	fclose(f);
	return ok ? 0 : -1;
}

static int open_netfilter(void)
{
	return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
}

struct ctwatch *ctwatch_open(struct engine *e)
{
	struct ctwatch *w = calloc(1, sizeof(*w));
	/* bound (a port id of its own): the kernel's broadcasts skip a socket whose port id is
	 * the sender's, 0, as an unbound socket's is */
	struct sockaddr_nl self = {.nl_family = AF_NETLINK};
	int size = CTWATCH_RCVBUF;

	if (!w)
		return NULL;
	w->engine = e;
	w->evfd = open_netfilter();
	w->dumpfd = open_netfilter();
	if (w->evfd < 0 || w->dumpfd < 0 ||
	    bind(w->evfd, (struct sockaddr *)&self, sizeof(self)) < 0) {
		log_warn("NETLINK_NETFILTER: gateway records are not forgotten with their "
		         "conntrack entries, flows that existed before are not found");
		ctwatch_close(w);
		return NULL;
	}
	if (setsockopt(w->evfd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		(void)setsockopt(w->evfd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	return w;
}

/* ---- the dump ---------------------------------------------------------------------- */

static void dump_begin(struct ctwatch *w, const char *why);

/* One entry: its records are marked (listed); an established flow not yet tracked is
 * found (idle for the part of its timeout used). */
static void dump_entry(const struct actmsg_ct *ct, void *arg)
{
	struct ctwatch *w = arg;

	engine_gateway_listed(w->engine, &ct->orig, &ct->reply);
	if (!(ct->have & ACTMSG_CT_TIMEOUT) || !(ct->have & ACTMSG_CT_STATE) ||
	    ct->tcp_state != TCP_CONNTRACK_ESTABLISHED)
		return;
	w->found++;
	engine_gateway_found(w->engine, &ct->orig, &ct->reply,
	                     (ct->status & (IPS_SRC_NAT | IPS_DST_NAT)) != 0,
	                     w->established - (double)ct->timeout, engine_clock());
}

/* The dump is over: complete (ok) it sweeps, else nothing is concluded from it. A dump
 * asked for meanwhile starts now. */
static void dump_end(struct ctwatch *w, bool ok)
{
	size_t gone;

	ev_timer_stop(w->loop, &w->dump_t);
	if (ok) {
		gone = engine_gateway_mark_end(w->engine);
		if (gone || strcmp(w->why, "periodic") != 0)
			log_info("conntrack (%s): %zu established TCP flows listed for the gateway "
			         "rules, %zu records of flows no longer listed forgotten",
			         w->why, w->found, gone);
		else /* the periodic dump with nothing to say */
			log_debug("conntrack (%s): %zu established TCP flows listed", w->why,
			          w->found);
	} else
		log_warnx("conntrack dump (%s, %s) not complete: some forwarded flows are followed "
		          "only from their next segment",
		          w->why, w->family == AF_INET ? "IPv4" : "IPv6");
	w->family = 0;
	if (w->again) {
		w->again = false;
		dump_begin(w, w->next_why);
	}
}

/* Asks for family's entries. */
static void dump_family(struct ctwatch *w, int family)
{
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	size_t len = actmsg_ct_dump(family, ++w->seq, rxbuf, sizeof(rxbuf));

	w->family = family;
	if (!len ||
	    sendto(w->dumpfd, rxbuf, len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
		log_warn("conntrack dump request");
		dump_end(w, false);
		return;
	}
	ev_timer_again(w->loop, &w->dump_t);
}

/* Starts a dump (or asks for one after the one under way). Nothing without conntrack. */
static void dump_begin(struct ctwatch *w, const char *why)
{
	if (w->family) {
		w->again = true;
		w->next_why = why;
		return;
	}
	if (ctwatch_established_timeout(&w->established) < 0)
		return; /* conntrack not loaded (yet): no flow to find, none to forget */
	w->why = why;
	w->found = 0;
	engine_gateway_mark_begin(w->engine);
	dump_family(w, AF_INET);
}

/* One datagram of the dump: 1 when the dump goes on, 0 when it ended (or failed). */
static int dump_datagram(struct ctwatch *w, size_t n, uint32_t sender)
{
	const struct nlmsghdr *h = (const struct nlmsghdr *)rxbuf;
	int rc;

	if (n < sizeof(*h) || h->nlmsg_seq != w->seq)
		return 1; /* a late answer to an abandoned dump */
	rc = actmsg_ct_each(rxbuf, n, w->seq, sender, dump_entry, w);
	if (rc == 0) {
		ev_timer_again(w->loop, &w->dump_t);
		return 1;
	}
	if (rc == 1 && w->family == AF_INET) {
		dump_family(w, AF_INET6);
		return w->family != 0;
	}
	if (rc > 1)
		log_warnx("conntrack dump: %s", strerror(rc));
	dump_end(w, rc == 1);
	return 0;
}

/* One datagram of fd into rxbuf, without waiting; *src says who sent it. */
static ssize_t receive(int fd, struct sockaddr_nl *src)
{
	socklen_t slen = sizeof(*src);

	memset(src, 0, sizeof(*src));
	return recvfrom(fd, rxbuf, sizeof(rxbuf), MSG_DONTWAIT, (struct sockaddr *)src, &slen);
}

/* The dump socket is readable: up to CTWATCH_DUMP_BATCH datagrams (the loop runs between
 * batches: a large table costs no long stall). */
static void on_dump(struct ev_loop *loop, ev_io *io, int revents)
{
	struct ctwatch *w = io->data;
	struct sockaddr_nl src;
	ssize_t n;
	int i;

	(void)loop;
	(void)revents;
	for (i = 0; i < CTWATCH_DUMP_BATCH; i++) {
		n = receive(w->dumpfd, &src);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0 && w->family) {
			log_warn("conntrack dump");
			dump_end(w, false);
			return;
		}
		if (n > 0 && w->family && !dump_datagram(w, (size_t)n, src.nl_pid))
			return;
	}
}

/* No answer for CTWATCH_DUMP_WAIT s: the dump is abandoned. */
static void on_dump_wait(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct ctwatch *w = t->data;

	(void)loop;
	(void)revents;
	if (w->family)
		dump_end(w, false);
}

/* Every discover_interval: entries made before the event subscription (flows that
 * existed before start or before a gateway rule came) send no destroy event when
 * nf_conntrack_events is 2, the default; only a dump sees them go. */
static void on_every(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	dump_begin(t->data, "periodic");
}

/* ---- destroy events ---------------------------------------------------------------- */

static void on_gone(const struct actmsg_ct *ct, void *arg)
{
	struct ctwatch *w = arg;

	engine_gateway_gone(w->engine, &ct->orig, &ct->reply);
}

/* Events were lost (perhaps several times since): one warning, one dump. */
static void on_lost(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct ctwatch *w = t->data;

	(void)revents;
	log_warnx("conntrack events lost (ENOBUFS, %llu times): reconciling with a dump", w->lost);
	w->lost = 0;
	w->lost_at = ev_now(loop);
	dump_begin(w, "events-lost");
}

/* ENOBUFS: the dump that reconciles comes at once, or CTWATCH_LOST_GAP after the last one
 * (an event storm costs a dump a second at most). */
static void events_lost(struct ctwatch *w)
{
	double wait = w->lost_at + CTWATCH_LOST_GAP - ev_now(w->loop);

	if (w->lost++ > 0)
		return; /* the dump is already due */
	ev_timer_set(&w->lost_t, w->lost_at > 0 && wait > 0 ? wait : 0.0, 0.0);
	ev_timer_start(w->loop, &w->lost_t);
}

/* The event socket is readable: up to CTWATCH_EVENT_BATCH datagrams. ENOBUFS: events
 * were lost, a dump reconciles. */
static void on_events(struct ev_loop *loop, ev_io *io, int revents)
{
	struct ctwatch *w = io->data;
	struct sockaddr_nl src;
	ssize_t n;
	int i;

	(void)loop;
	(void)revents;
	for (i = 0; i < CTWATCH_EVENT_BATCH; i++) {
		n = receive(w->evfd, &src);
		if (n < 0 && errno == ENOBUFS) {
			events_lost(w);
			continue;
		}
		if (n < 0)
			return; /* EAGAIN (drained), EINTR: the watcher comes back */
		if (w->subscribed)
			(void)actmsg_ct_events(rxbuf, (size_t)n, src.nl_pid, on_gone, w);
	}
}

/* ---- configuration ----------------------------------------------------------------- */

static void subscribe(struct ctwatch *w, bool on)
{
	int grp = NFNLGRP_CONNTRACK_DESTROY;

	if (on == w->subscribed)
		return;
	if (setsockopt(w->evfd, SOL_NETLINK, on ? NETLINK_ADD_MEMBERSHIP : NETLINK_DROP_MEMBERSHIP,
	               &grp, sizeof(grp)) < 0) {
		log_warn("conntrack destroy events: %s", on ? "subscribe" : "unsubscribe");
		return;
	}
	w->subscribed = on;
	log_debug("conntrack destroy events %s", on ? "followed" : "no longer followed");
}

void ctwatch_start(struct ctwatch *w, struct ev_loop *loop)
{
	if (!w)
		return;
	w->loop = loop;
	ev_io_init(&w->ev_w, on_events, w->evfd, EV_READ);
	w->ev_w.data = w;
	ev_io_init(&w->dump_w, on_dump, w->dumpfd, EV_READ);
	w->dump_w.data = w;
	ev_init(&w->dump_t, on_dump_wait);
	w->dump_t.repeat = CTWATCH_DUMP_WAIT;
	w->dump_t.data = w;
	ev_init(&w->every_t, on_every);
	w->every_t.data = w;
	ev_init(&w->lost_t, on_lost);
	w->lost_t.data = w;
	ev_io_start(loop, &w->ev_w);
	ev_io_start(loop, &w->dump_w);
}

void ctwatch_configure(struct ctwatch *w, const struct config *cfg, const char *why)
{
	bool gateway = false;
	size_t i;

	if (!w || !w->loop)
		return;
	for (i = 0; i < cfg->nrules; i++)
		gateway |= cfg->rules[i].mode == RULE_MODE_GATEWAY;
	subscribe(w, gateway); /* before the dump: nothing goes between the two */
	ev_timer_stop(w->loop, &w->every_t);
	if (!gateway)
		return;
	dump_begin(w, why);
	if (cfg->discover_interval > 0) {
		ev_timer_set(&w->every_t, cfg->discover_interval, cfg->discover_interval);
		ev_timer_start(w->loop, &w->every_t);
	}
}

void ctwatch_close(struct ctwatch *w)
{
	if (!w)
		return;
	if (w->loop) {
		ev_io_stop(w->loop, &w->ev_w);
		ev_io_stop(w->loop, &w->dump_w);
		ev_timer_stop(w->loop, &w->dump_t);
		ev_timer_stop(w->loop, &w->every_t);
		ev_timer_stop(w->loop, &w->lost_t);
	}
	if (w->evfd >= 0)
		close(w->evfd);
	if (w->dumpfd >= 0)
		close(w->dumpfd);
	free(w);
}

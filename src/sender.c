/* sender.c: libnet edge. One LIBNET_RAW4 and one LIBNET_RAW6 context, opened once
 * (libnet's init is slow: ARCHITECTURE.md, Platform facts). Probes and learning SYNs are built by
 * sender_build and written with sendmmsg on the contexts' own raw sockets (libnet_getfd),
 * up to SENDER_BATCH per system call and family. Why not libnet_write: it makes one
 * system call per packet, and its build path (clear, options, TCP, IP, coalesce into a
 * fresh malloc'ed buffer) costs as much again: 0.28-0.8x a bare sendmmsg loop in make
 * bench. The bytes are the same (test_sender compares them with libnet's own build);
 * libnet still sums the checksums (libnet_in_cksum) and builds the rare RSTs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libnet.h>

#include "codec.h"
#include "sender.h"

#define SENDER_TTL     64
#define SENDER_BATCH   64
#define SENDER_BUF     80 /* SENDER_PKT_MAX rounded up to 8 */
#define SENDER_SYN_WIN 1024

/* The packets of one family waiting for their sendmmsg. */
struct sender_queue {
	int fd;
	int stop;                 /* ENOBUFS or EAGAIN seen in this call: send no more */
	size_t n;                 /* packets queued */
	size_t idx[SENDER_BATCH]; /* each one's index in the caller's array */
	struct mmsghdr msgs[SENDER_BATCH];
	struct iovec iov[SENDER_BATCH];
	union {
		struct sockaddr_in v4;
		struct sockaddr_in6 v6;
	} dst[SENDER_BATCH];
	union {
		struct cmsghdr h;
		uint8_t b[CMSG_SPACE(sizeof(uint32_t))];
	} ctl[SENDER_BATCH]; /* a marked packet's SO_MARK */
	_Alignas(8) uint8_t buf[SENDER_BATCH][SENDER_BUF];
};

struct sender {
	libnet_t *v4, *v6;
	uint16_t ip_id;
	struct sender_queue q4, q6;
};

/* Points each message at its buffer and destination, once. */
static void queue_init(struct sender_queue *q, int fd, int family)
{
	size_t i;

	memset(q, 0, sizeof(*q));
	q->fd = fd;
	for (i = 0; i < SENDER_BATCH; i++) {
		q->iov[i].iov_base = q->buf[i];
		q->msgs[i].msg_hdr.msg_iov = &q->iov[i];
		q->msgs[i].msg_hdr.msg_iovlen = 1;
		q->msgs[i].msg_hdr.msg_name = &q->dst[i];
		if (family == AF_INET) {
			q->dst[i].v4.sin_family = AF_INET;
			q->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
		} else {
			q->dst[i].v6.sin6_family = AF_INET6;
			q->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in6);
		}
	}
}

struct sender *sender_open(char *errbuf, size_t errlen)
{
	char le[LIBNET_ERRBUF_SIZE] = "";
	struct sender *s = calloc(1, sizeof(*s));

	if (!s) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	s->v4 = libnet_init(LIBNET_RAW4, NULL, le);
	if (s->v4)
		s->v6 = libnet_init(LIBNET_RAW6, NULL, le);
	if (!s->v4 || !s->v6) {
		snprintf(errbuf, errlen, "libnet: %s", le);
		sender_close(s);
		return NULL;
	}
	queue_init(&s->q4, libnet_getfd(s->v4), AF_INET);
	queue_init(&s->q6, libnet_getfd(s->v6), AF_INET6);
	s->ip_id = (uint16_t)libnet_get_prand(LIBNET_PRu16);
	return s;
}

void sender_close(struct sender *s)
{
	if (!s)
		return;
	if (s->v4)
		libnet_destroy(s->v4);
	if (s->v6)
		libnet_destroy(s->v6);
	free(s);
}

/* ---- building (pure) ---- */

/* One TCP segment's fields, in host order, and its ends. */
struct sender_seg {
	int family;
	const uint8_t *src, *dst;
	uint16_t sport, dport, window;
	uint32_t seq, ack;
	uint8_t flags;
	uint8_t optlen;  /* 0 or 12 (NOP NOP timestamps) */
	uint8_t datalen; /* 0 or 1 (one 0x00 byte) */
	uint32_t tsval, tsecr;
};

/* The segment packet p stands for; false when it is not a packet we make. */
static bool seg_of(const struct sender_pkt *p, struct sender_seg *g)
{
	const struct addr_tuple *k = p->key;
	const struct fsm_probe *pr = &p->probe;

	if (!k || (k->family != AF_INET && k->family != AF_INET6))
		return false;
	if (p->kind == SENDER_SYN) {
		*g = (struct sender_seg){.family = k->family,
		                         .src = k->remote,
		                         .dst = k->local,
		                         .sport = k->rport,
		                         .dport = k->lport,
		                         .window = SENDER_SYN_WIN,
		                         .seq = p->seq,
		                         .flags = TH_SYN};
		return true;
	}
	if (p->kind != SENDER_PROBE || pr->payload_len > 1)
		return false;
	*g = (struct sender_seg){.family = k->family,
	                         .src = k->local,
	                         .dst = k->remote,
	                         .sport = k->lport,
	                         .dport = k->rport,
	                         .window = pr->window,
	                         .seq = pr->seq,
	                         .ack = pr->ack,
	                         .flags = TH_ACK,
	                         .optlen = pr->has_ts ? 12 : 0,
	                         .datalen = pr->payload_len,
	                         .tsval = pr->tsval,
	                         .tsecr = pr->tsecr};
	return true;
}

static void wr16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

static void wr32(uint8_t *b, uint32_t v)
{
	wr16(b, (uint16_t)(v >> 16));
	wr16(b + 2, (uint16_t)v);
}

/* Folds a libnet_in_cksum sum (native 16-bit words) into a checksum at b. */
static void put_cksum(uint8_t *b, int sum)
{
	uint16_t c = (uint16_t)LIBNET_CKSUM_CARRY(sum);

	memcpy(b, &c, 2); /* native order, like the words it was summed from */
}

/* The IPv4 or IPv6 header of a packet with tcplen bytes of TCP; returns its length. */
static size_t put_ip(const struct sender_seg *g, uint16_t ip_id, size_t tcplen, uint8_t *b)
{
	if (g->family == AF_INET) {
		b[0] = 0x45;
		wr16(b + 2, (uint16_t)(LIBNET_IPV4_H + tcplen));
		wr16(b + 4, ip_id);
		b[8] = SENDER_TTL;
		b[9] = IPPROTO_TCP;
		memcpy(b + 12, g->src, 4);
		memcpy(b + 16, g->dst, 4);
		put_cksum(b + 10, libnet_in_cksum((uint16_t *)b, LIBNET_IPV4_H));
		return LIBNET_IPV4_H;
	}
	b[0] = 0x60;
	wr16(b + 4, (uint16_t)tcplen);
	b[6] = IPPROTO_TCP;
	b[7] = SENDER_TTL;
	memcpy(b + 8, g->src, 16);
	memcpy(b + 24, g->dst, 16);
	return LIBNET_IPV6_H;
}

/* The TCP header, options and payload at t (zeroed), then the checksum over the pseudo
 * header and the segment. In both IP headers the source and destination addresses (alen
 * bytes each) end where the TCP header starts: one libnet_in_cksum sums them both. */
static void put_tcp(const struct sender_seg *g, uint8_t *t, size_t tcplen, size_t alen)
{
	int sum;

	wr16(t, g->sport);
	wr16(t + 2, g->dport);
	wr32(t + 4, g->seq);
	wr32(t + 8, g->ack);
	t[12] = (uint8_t)((LIBNET_TCP_H + g->optlen) / 4 << 4);
	t[13] = g->flags;
	wr16(t + 14, g->window);
	if (g->optlen)
		codec_ts_option(g->tsval, g->tsecr, t + LIBNET_TCP_H);
	sum = libnet_in_cksum((uint16_t *)(t - 2 * alen), (int)(2 * alen + tcplen));
	sum += htons(IPPROTO_TCP) + htons((uint16_t)tcplen);
	put_cksum(t + 16, sum);
}

size_t sender_build(const struct sender_pkt *p, uint16_t ip_id, uint8_t *buf, size_t len)
{
	struct sender_seg g;
	size_t tcplen, iplen, alen;

	if (!p || !buf || ((uintptr_t)buf & 1) || !seg_of(p, &g))
		return 0;
	alen = g.family == AF_INET ? 4 : 16;
	iplen = g.family == AF_INET ? LIBNET_IPV4_H : LIBNET_IPV6_H;
	tcplen = LIBNET_TCP_H + g.optlen + g.datalen;
	if (len < iplen + tcplen)
		return 0;
	memset(buf, 0, iplen + tcplen);
	put_ip(&g, ip_id, tcplen, buf);
	put_tcp(&g, buf + iplen, tcplen, alen);
	return iplen + tcplen;
}

/* ---- sending ---- */

/* Sends the queued packets: sendmmsg stops at the first one that fails, so its error is
 * that packet's, and the rest are sent again from the one after. Never blocks (the event
 * loop must not stall on a full socket buffer): EAGAIN is reported like ENOBUFS, and
 * neither is retried here. Returns how many went. */
static size_t queue_flush(struct sender_queue *q, int *errs)
{
	size_t done = 0, sent = 0;
	int r, err;

	while (done < q->n) {
		r = sendmmsg(q->fd, q->msgs + done, (unsigned)(q->n - done), MSG_DONTWAIT);
		if (r > 0) {
			for (; r > 0; r--, done++, sent++)
				errs[q->idx[done]] = 0;
			continue;
		}
		err = r < 0 ? errno : EIO;
		if (err == EINTR)
			continue;
		if (err == ENOBUFS || err == EAGAIN)
			q->stop = err;
		for (errs[q->idx[done++]] = err; q->stop && done < q->n; done++)
			errs[q->idx[done]] = err;
	}
	q->n = 0;
	return sent;
}

/* Message k carries mark as its SO_MARK (the socket's own mark, none, when mark is 0). */
static void queue_mark(struct sender_queue *q, size_t k, uint32_t mark)
{
	struct msghdr *m = &q->msgs[k].msg_hdr;
	struct cmsghdr *c = &q->ctl[k].h;

	if (!mark) {
		m->msg_control = NULL;
		m->msg_controllen = 0;
		return;
	}
	m->msg_control = q->ctl[k].b;
	m->msg_controllen = sizeof(q->ctl[k].b);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SO_MARK;
	c->cmsg_len = CMSG_LEN(sizeof(mark));
	memcpy(CMSG_DATA(c), &mark, sizeof(mark));
}

/* Builds packet i into q (its IPv4 ID the next one); false when it cannot be built. */
static bool queue_add(struct sender *s, struct sender_queue *q, const struct sender_pkt *p,
                      size_t i)
{
	size_t k = q->n, len = sender_build(p, s->ip_id, q->buf[k], SENDER_BUF);
	const struct addr_tuple *t = p->key;
	const uint8_t *dst;

	if (!len)
		return false; /* (a NULL key among them) */
	dst = p->kind == SENDER_SYN ? t->local : t->remote;
	q->iov[k].iov_len = len;
	queue_mark(q, k, p->mark);
	if (t->family == AF_INET) {
		memcpy(&q->dst[k].v4.sin_addr, dst, 4);
		s->ip_id++;
	} else {
		memcpy(&q->dst[k].v6.sin6_addr, dst, 16);
	}
	q->idx[k] = i;
	q->n++;
	return true;
}

size_t sender_send_batch(struct sender *s, const struct sender_pkt *pkts, size_t n, int *errs)
{
	_Alignas(8) uint8_t scratch[SENDER_BUF];
	struct sender_queue *q;
	size_t i, sent = 0;

	s->q4.stop = s->q6.stop = 0;
	for (i = 0; i < n; i++) {
		q = pkts[i].key && pkts[i].key->family == AF_INET6 ? &s->q6 : &s->q4;
		if (q->stop) /* not sent; EPROTO still when it could not have been built */
			errs[i] = sender_build(&pkts[i], 0, scratch, SENDER_BUF) ? q->stop : EPROTO;
		else if (!queue_add(s, q, &pkts[i], i))
			errs[i] = EPROTO; /* not a packet we can build: not a routing error */
		else if (q->n == SENDER_BATCH)
			sent += queue_flush(q, errs);
	}
	sent += queue_flush(&s->q4, errs);
	return sent + queue_flush(&s->q6, errs);
}

int sender_send(struct sender *s, const struct addr_tuple *key, const struct fsm_probe *p)
{
	struct sender_pkt pkt = {.kind = SENDER_PROBE, .key = key, .probe = *p};
	int err = EPROTO;

	sender_send_batch(s, &pkt, 1, &err);
	return err;
}

int sender_send_syn(struct sender *s, const struct addr_tuple *key, uint32_t seq)
{
	struct sender_pkt pkt = {.kind = SENDER_SYN, .key = key, .seq = seq};
	int err = EPROTO;

	sender_send_batch(s, &pkt, 1, &err);
	return err;
}

/* ---- RSTs (rare: on_dead = rst), built and written by libnet ---- */

static int build_ip_between(struct sender *s, libnet_t *l, int family, const uint8_t *src,
                            const uint8_t *dst, int tcplen)
{
	struct libnet_in6_addr src6, dst6;
	uint32_t src4, dst4;

	if (family == AF_INET) {
		memcpy(&src4, src, 4);
		memcpy(&dst4, dst, 4);
		return libnet_build_ipv4((uint16_t)(LIBNET_IPV4_H + tcplen), 0, s->ip_id++, 0,
		                         SENDER_TTL, IPPROTO_TCP, 0, src4, dst4, NULL, 0, l, 0);
	}
	memcpy(&src6, src, 16);
	memcpy(&dst6, dst, 16);
	return libnet_build_ipv6(0, 0, (uint16_t)tcplen, IPPROTO_TCP, SENDER_TTL, src6, dst6, NULL,
	                         0, l, 0);
}

/* A TCP segment without options or payload on connection key: to_local true sends it to
 * our own end as if from the peer (delivered locally), false to the peer from our end. */
static int send_bare(struct sender *s, const struct addr_tuple *key, int to_local, uint8_t flags,
                     uint32_t seq, uint32_t ack, uint16_t window)
{
	libnet_t *l = key->family == AF_INET ? s->v4 : s->v6;
	const uint8_t *src = to_local ? key->remote : key->local;
	const uint8_t *dst = to_local ? key->local : key->remote;
	uint16_t sport = to_local ? key->rport : key->lport;
	uint16_t dport = to_local ? key->lport : key->rport;

	libnet_clear_packet(l);
	if (libnet_build_tcp(sport, dport, seq, ack, flags, window, 0, 0, LIBNET_TCP_H, NULL, 0, l,
	                     0) < 0 ||
	    build_ip_between(s, l, key->family, src, dst, LIBNET_TCP_H) < 0)
		return EPROTO;
	errno = 0;
	if (libnet_write(l) < 0)
		return errno ? errno : EIO;
	return 0;
}

int sender_send_rst(struct sender *s, const struct addr_tuple *key, int to_local, uint32_t seq,
                    uint32_t ack)
{
	return send_bare(s, key, to_local, TH_RST | TH_ACK, seq, ack, 0);
}

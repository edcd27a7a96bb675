/* sender.c: libnet edge. One LIBNET_RAW4 and one LIBNET_RAW6 context, opened once
 * (libnet's init is slow, PLATFORM.md); each probe is built from its fields
 * (TCP options, TCP, IP, inner to outer, as libnet wants) and written. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libnet.h>

#include "codec.h"
#include "sender.h"

#define SENDER_TTL 64

struct sender {
	libnet_t *v4, *v6;
	uint16_t ip_id;
};

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

/* TCP options and header; returns the TCP length (header + payload) or -1. */
static int build_tcp(libnet_t *l, const struct addr_tuple *k, const struct fsm_probe *p)
{
	static const uint8_t zero[1] = {0};
	uint8_t opt[12];
	size_t optlen = 0;

	if (p->has_ts) {
		optlen = codec_ts_option(p->tsval, p->tsecr, opt);
		if (libnet_build_tcp_options(opt, (uint32_t)optlen, l, 0) < 0)
			return -1;
	}
	if (libnet_build_tcp(k->lport, k->rport, p->seq, p->ack, TH_ACK, p->window, 0, 0,
	                     (uint16_t)(LIBNET_TCP_H + optlen + p->payload_len),
	                     p->payload_len ? zero : NULL, p->payload_len, l, 0) < 0)
		return -1;
	return (int)(LIBNET_TCP_H + optlen + p->payload_len);
}

static int build_ip(struct sender *s, libnet_t *l, const struct addr_tuple *k, int tcplen)
{
	struct libnet_in6_addr src6, dst6;
	uint32_t src4, dst4;

	if (k->family == AF_INET) {
		memcpy(&src4, k->local, 4);
		memcpy(&dst4, k->remote, 4);
		return libnet_build_ipv4((uint16_t)(LIBNET_IPV4_H + tcplen), 0, s->ip_id++, 0,
		                         SENDER_TTL, IPPROTO_TCP, 0, src4, dst4, NULL, 0, l, 0);
	}
	memcpy(&src6, k->local, 16);
	memcpy(&dst6, k->remote, 16);
	return libnet_build_ipv6(0, 0, (uint16_t)tcplen, IPPROTO_TCP, SENDER_TTL, src6, dst6, NULL,
	                         0, l, 0);
}

int sender_send(struct sender *s, const struct addr_tuple *key, const struct fsm_probe *p)
{
	libnet_t *l = key->family == AF_INET ? s->v4 : s->v6;
	int tcplen, err;

	libnet_clear_packet(l);
	tcplen = build_tcp(l, key, p);
	if (tcplen < 0 || build_ip(s, l, key, tcplen) < 0)
		return EPROTO; /* libnet could not build it: not a routing error */
	errno = 0;
	if (libnet_write(l) < 0) {
		err = errno ? errno : EIO;
		return err;
	}
	return 0;
}

/* IP header from src to dst (addresses of key's family) around tcplen bytes of TCP. */
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

int sender_send_syn(struct sender *s, const struct addr_tuple *key, uint32_t seq)
{
	return send_bare(s, key, 1, TH_SYN, seq, 0, 1024);
}

/* rule.c: endpoint patterns and rules; first match wins (pure, no I/O). */
#include "rule.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define DIGITS "0123456789"

/* Parses 1..digits decimal digits spanning exactly len bytes; returns 0 or -1. */
static int parse_uint(const char *s, size_t len, size_t max_digits, unsigned long *v)
{
	if (len == 0 || len > max_digits || strspn(s, DIGITS) < len)
		return -1;
	*v = 0;
	for (size_t i = 0; i < len; i++)
		*v = *v * 10 + (unsigned long)(s[i] - '0');
	return 0;
}

static int parse_port(const char *s, size_t len, uint16_t *port, const char **err)
{
	unsigned long v;

	if (len == 0) {
		*err = "missing port number";
		return -1;
	}
	if (strspn(s, DIGITS) < len) {
		*err = "invalid port (use 1..65535 or a range such as 8000-8080)";
		return -1;
	}
	if (parse_uint(s, len, 10, &v) < 0 || v > 65535) {
		*err = "port is out of range (1..65535)";
		return -1;
	}
	if (v == 0) {
		*err = "port 0 is not allowed (use 1..65535)";
		return -1;
	}
	*port = (uint16_t)v;
	return 0;
}

/* "PORT" or "LO-HI" filling p->port_lo/port_hi. */
static int parse_ports(const char *s, struct rule_pattern *p, const char **err)
{
	const char *dash = strchr(s, '-');
	size_t len = dash ? (size_t)(dash - s) : strlen(s);

	if (parse_port(s, len, &p->port_lo, err) < 0)
		return -1;
	p->port_hi = p->port_lo;
	if (!dash)
		return 0;
	if (parse_port(dash + 1, strlen(dash + 1), &p->port_hi, err) < 0)
		return -1;
	if (p->port_lo > p->port_hi) {
		*err = "port range is reversed (the first port is higher than the second)";
		return -1;
	}
	return 0;
}

/* True when no bit past the first prefix bits of ip is set. */
static bool host_bits_clear(const uint8_t *ip, size_t n, unsigned prefix)
{
	for (size_t i = 0; i < n; i++) {
		unsigned start = (unsigned)i * 8;
		uint8_t mask = 0xff;

		if (start + 8 <= prefix)
			continue;
		if (start < prefix)
			mask = (uint8_t)(0xff >> (prefix - start));
		if (ip[i] & mask)
			return false;
	}
	return true;
}

static int parse_prefix(const char *s, size_t len, int family, unsigned *prefix, const char **err)
{
	unsigned long v;
	unsigned max = family == AF_INET ? 32 : 128;

	if (len == 0) {
		*err = "missing prefix length after '/'";
		return -1;
	}
	if (strspn(s, DIGITS) < len) {
		*err = "invalid prefix length";
		return -1;
	}
	if (parse_uint(s, len, 10, &v) < 0 || v > max) {
		*err = family == AF_INET ? "prefix is longer than 32 bits (IPv4)"
		                         : "prefix is longer than 128 bits (IPv6)";
		return -1;
	}
	*prefix = (unsigned)v;
	return 0;
}

/* "ADDR[/PREFIX]" spanning len bytes of s, of the given family. */
static int parse_net(const char *s, size_t len, int family, struct rule_pattern *p,
                     const char **err)
{
	char buf[INET6_ADDRSTRLEN];
	const char *slash = memchr(s, '/', len);
	size_t alen = slash ? (size_t)(slash - s) : len;
	unsigned prefix = family == AF_INET ? 32 : 128;

	*err = family == AF_INET ? "invalid IPv4 address" : "invalid IPv6 address";
	if (alen == 0 || alen >= sizeof(buf))
		return -1;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(family, buf, p->ip) != 1)
		return -1;
	if (slash && parse_prefix(slash + 1, len - alen - 1, family, &prefix, err) < 0)
		return -1;
	if (!host_bits_clear(p->ip, addr_len(family), prefix)) {
		*err = "address has bits set beyond the prefix length";
		return -1;
	}
	p->family = (uint8_t)family;
	p->prefix = (uint8_t)prefix;
	return 0;
}

/* Parses the address part; sets *rest to what follows it. */
static int parse_addr_part(const char *text, struct rule_pattern *p, const char **rest,
                           const char **err)
{
	const char *end;

	if (text[0] == '*') {
		*rest = text + 1;
		return 0;
	}
	if (text[0] == '[') {
		end = strchr(text, ']');
		if (!end) {
			*err = "missing ']' after the IPv6 address";
			return -1;
		}
		*rest = end + 1;
		return parse_net(text + 1, (size_t)(end - text - 1), AF_INET6, p, err);
	}
	end = strchr(text, ':');
	if (end && strchr(end + 1, ':')) {
		*err = "an IPv6 address needs brackets, e.g. [2001:db8::1]:22 or [2001:db8::/32]";
		return -1;
	}
	*rest = end ? end : text + strlen(text);
	return parse_net(text, (size_t)(*rest - text), AF_INET, p, err);
}

int rule_pattern_parse(const char *text, struct rule_pattern *out, const char **err)
{
	struct rule_pattern p;
	const char *rest;
	const char *dummy;

	if (!err)
		err = &dummy;
	memset(&p, 0, sizeof(p));
	p.port_hi = 65535;
	if (!text || !*text) {
		*err = "empty pattern";
		return -1;
	}
	if (parse_addr_part(text, &p, &rest, err) < 0)
		return -1;
	if (*rest == ':') {
		if (parse_ports(rest + 1, &p, err) < 0)
			return -1;
	} else if (*rest) {
		*err = "unexpected text after the address (expected ':PORT' or the end)";
		return -1;
	}
	*out = p;
	return 0;
}

/* True when the first prefix bits of a and b are equal. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	unsigned whole = prefix / 8, rest = prefix % 8;
	uint8_t mask;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (uint8_t)(0xff << (8 - rest));
	return ((a[whole] ^ b[whole]) & mask) == 0;
}

bool rule_pattern_match(const struct rule_pattern *p, int family, const uint8_t *ip, uint16_t port)
{
	if (port < p->port_lo || port > p->port_hi)
		return false;
	if (p->family == 0)
		return true;
	if (p->family != family)
		return false;
	return prefix_equal(p->ip, ip, p->prefix);
}

const struct rule *rule_match(const struct rule *rules, size_t n, const struct addr_tuple *t)
{
	for (size_t i = 0; i < n; i++) {
		const struct rule *r = &rules[i];

		if (r->mode == RULE_MODE_LOCAL &&
		    rule_pattern_match(&r->local, t->family, t->local, t->lport) &&
		    rule_pattern_match(&r->remote, t->family, t->remote, t->rport))
			return r;
	}
	return NULL;
}

/* t.local as the client and t.remote as the server (way true), or the other way round. */
static bool gateway_way(const struct rule *r, const struct addr_tuple *t, bool local_is_client)
{
	if (local_is_client)
		return rule_pattern_match(&r->client, t->family, t->local, t->lport) &&
		       rule_pattern_match(&r->server, t->family, t->remote, t->rport);
	return rule_pattern_match(&r->client, t->family, t->remote, t->rport) &&
	       rule_pattern_match(&r->server, t->family, t->local, t->lport);
}

const struct rule *rule_match_gateway(const struct rule *rules, size_t n,
                                      const struct addr_tuple *t)
{
	for (size_t i = 0; i < n; i++) {
		const struct rule *r = &rules[i];

		if (r->mode == RULE_MODE_GATEWAY &&
		    (gateway_way(r, t, true) || gateway_way(r, t, false)))
			return r;
	}
	return NULL;
}

bool rule_gateway_probes_client(const struct rule *r, const struct addr_tuple *t)
{
	bool local_client = gateway_way(r, t, true), remote_client = gateway_way(r, t, false);
	int c;

	if (local_client != remote_client)
		return remote_client;
	/* either way round (or neither): the server is the end with the lower port (an
	 * ephemeral port is the client's), then the lower address: both records agree */
	if (t->lport != t->rport)
		return t->lport < t->rport;
	c = memcmp(t->local, t->remote, sizeof(t->local));
	return c < 0;
}

/* A bounded string builder: overflow is sticky and reported at the end. */
struct sbuf {
	char *buf;
	size_t len, pos;
	bool overflow;
};

static void sb_add(struct sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_add(struct sbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (sb->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(sb->buf + sb->pos, sb->len - sb->pos, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sb->len - sb->pos) {
		sb->overflow = true;
		sb->buf[sb->pos] = '\0';
		return;
	}
	sb->pos += (size_t)n;
}

static bool pattern_is_any(const struct rule_pattern *p)
{
	return p->family == 0 && p->port_lo == 0 && p->port_hi == 65535;
}

/* Conditions on one pattern seen on one side ("src" or "dst"), joined by " and ". */
static void sb_side(struct sbuf *sb, const struct rule_pattern *p, const char *dir)
{
	char ip[INET6_ADDRSTRLEN];
	const char *sep = "";

	if (p->family && p->prefix == 0) {
		sb_add(sb, "%s", p->family == AF_INET ? "ip" : "ip6");
		sep = " and ";
	} else if (p->family) {
		addr_format_ip(p->family, p->ip, ip, sizeof(ip));
		sb_add(sb, "%s net %s/%u", dir, ip, (unsigned)p->prefix);
		sep = " and ";
	}
	if (p->port_lo == 0 && p->port_hi == 65535)
		return;
	if (p->port_lo == p->port_hi)
		sb_add(sb, "%s%s port %u", sep, dir, (unsigned)p->port_lo);
	else
		sb_add(sb, "%s%s portrange %u-%u", sep, dir, (unsigned)p->port_lo,
		       (unsigned)p->port_hi);
}

/* "(A and B)", or just A or B when the other pattern is "*". */
static void sb_pair(struct sbuf *sb, const struct rule *r, const char *ldir, const char *rdir)
{
	bool l = !pattern_is_any(&r->local), rm = !pattern_is_any(&r->remote);

	sb_add(sb, "(");
	if (l)
		sb_side(sb, &r->local, ldir);
	if (l && rm)
		sb_add(sb, " and ");
	if (rm)
		sb_side(sb, &r->remote, rdir);
	sb_add(sb, ")");
}

static void sb_rule(struct sbuf *sb, const struct rule *r)
{
	if (pattern_is_any(&r->local) && pattern_is_any(&r->remote)) {
		sb_add(sb, "(tcp)");
		return;
	}
	sb_add(sb, "(tcp and (");
	sb_pair(sb, r, "src", "dst");
	sb_add(sb, " or ");
	sb_pair(sb, r, "dst", "src");
	sb_add(sb, "))");
}

int rule_bpf_filter(const struct rule *rules, size_t n, char *buf, size_t len)
{
	struct sbuf sb = {buf, len, 0, false};

	if (len == 0)
		return -1;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		sb_rule(&sb, &rules[i]);
		sb_add(&sb, " or ");
	}
	sb_add(&sb, "(icmp and (icmp[icmptype] == icmp-unreach or "
	            "icmp[icmptype] == icmp-timxceed)) or "
	            "(icmp6 and (ip6[40] == 1 or ip6[40] == 3))");
	if (sb.overflow) {
		buf[0] = '\0';
		return -1;
	}
	return 0;
}

/* One direction of one excluded connection: src -> dst, with no SYN, FIN or RST. libpcap's
 * tcp[] reaches IPv4 only: for IPv6 the flags byte is read at its place after a fixed
 * header (ip6[53]), with next header TCP. */
static void sb_exclude_way(struct sbuf *sb, int family, const uint8_t *src, uint16_t sport,
                           const uint8_t *dst, uint16_t dport)
{
	char s[ADDR_ENDPOINT_STRLEN], d[ADDR_ENDPOINT_STRLEN];

	addr_format_ip(family, src, s, sizeof(s));
	addr_format_ip(family, dst, d, sizeof(d));
	if (family == AF_INET)
		sb_add(sb,
		       "(ip src %s and ip dst %s and tcp src port %u and tcp dst port %u and "
		       "tcp[13] & 7 == 0)",
		       s, d, sport, dport);
	else
		sb_add(sb,
		       "(ip6 src %s and ip6 dst %s and ip6[6] == 6 and tcp src port %u and "
		       "tcp dst port %u and ip6[53] & 7 == 0)",
		       s, d, sport, dport);
}

int rule_bpf_exclude(const char *base, const struct addr_tuple *keys, size_t n, char *buf,
                     size_t len)
{
	struct sbuf sb = {buf, len, 0, false};

	if (len == 0)
		return -1;
	buf[0] = '\0';
	sb_add(&sb, n ? "(%s) and not (" : "%s", base);
	for (size_t i = 0; i < n; i++) {
		const struct addr_tuple *k = &keys[i];

		sb_add(&sb, i ? " or " : "");
		sb_exclude_way(&sb, k->family, k->local, k->lport, k->remote, k->rport);
		sb_add(&sb, " or ");
		sb_exclude_way(&sb, k->family, k->remote, k->rport, k->local, k->lport);
	}
	sb_add(&sb, n ? ")" : "");
	if (sb.overflow) {
		buf[0] = '\0';
		return -1;
	}
	return 0;
}

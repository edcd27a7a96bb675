/* addr.c: IP addresses, endpoints and connection keys (pure, no I/O). */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

size_t addr_len(int family)
{
	if (family == AF_INET)
		return 4;
	if (family == AF_INET6)
		return 16;
	return 0;
}

void addr_tuple_make(struct addr_tuple *t, int family, const uint8_t *local, uint16_t lport,
                     const uint8_t *remote, uint16_t rport)
{
	size_t n = addr_len(family);

	memset(t, 0, sizeof(*t));
	t->family = (uint8_t)family;
	t->lport = lport;
	t->rport = rport;
	if (n) {
		memcpy(t->local, local, n);
		memcpy(t->remote, remote, n);
	}
}

/* A 64-bit finaliser: every input bit affects every output bit. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

uint32_t addr_tuple_hash(const struct addr_tuple *t, uint32_t seed)
{
	uint64_t h = mix64(seed ^ 0x9e3779b97f4a7c15ULL);
	uint64_t head = (uint64_t)t->family << 32 | (uint64_t)t->lport << 16 | t->rport;

	h = mix64(h ^ head);
	h = mix64(h ^ load64(t->local));
	h = mix64(h ^ load64(t->local + 8));
	h = mix64(h ^ load64(t->remote));
	h = mix64(h ^ load64(t->remote + 8));
	return (uint32_t)(h ^ h >> 32);
}

bool addr_tuple_equal(const struct addr_tuple *a, const struct addr_tuple *b)
{
	return a->family == b->family && a->lport == b->lport && a->rport == b->rport &&
	       memcmp(a->local, b->local, sizeof(a->local)) == 0 &&
	       memcmp(a->remote, b->remote, sizeof(a->remote)) == 0;
}

char *addr_format_ip(int family, const uint8_t *ip, char *buf, size_t len)
{
	char tmp[INET6_ADDRSTRLEN];

	if (len == 0)
		return buf;
	if (addr_len(family) == 0 || !inet_ntop(family, ip, tmp, sizeof(tmp)))
		snprintf(tmp, sizeof(tmp), "?");
	snprintf(buf, len, "%s", tmp);
	return buf;
}

char *addr_format_endpoint(int family, const uint8_t *ip, uint16_t port, char *buf, size_t len)
{
	char tmp[INET6_ADDRSTRLEN];

	if (len == 0)
		return buf;
	addr_format_ip(family, ip, tmp, sizeof(tmp));
	if (family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", tmp, (unsigned)port);
	else
		snprintf(buf, len, "%s:%u", tmp, (unsigned)port);
	return buf;
}

/* The index of (family, ip, ifindex) in s, or -1. */
static long set_find(const struct addr_set *s, int family, const uint8_t *ip, int ifindex)
{
	size_t n = addr_len(family);

	for (size_t i = 0; n && i < s->n; i++) {
		const struct addr_local *a = &s->items[i];

		if (a->ip.family == family && a->ifindex == ifindex &&
		    memcmp(a->ip.bytes, ip, n) == 0)
			return (long)i;
	}
	return -1;
}

int addr_set_add(struct addr_set *s, int family, const uint8_t *ip, int ifindex)
{
	struct addr_local *a;
	size_t n = addr_len(family);

	if (n == 0)
		return -1;
	if (set_find(s, family, ip, ifindex) >= 0)
		return 0;
	if (s->n >= sizeof(s->items) / sizeof(s->items[0]))
		return -1;
	a = &s->items[s->n++];
	memset(a, 0, sizeof(*a));
	a->ip.family = (uint8_t)family;
	memcpy(a->ip.bytes, ip, n);
	a->ifindex = ifindex;
	return 0;
}

bool addr_set_contains(const struct addr_set *s, int family, const uint8_t *ip)
{
	size_t n = addr_len(family);

	if (n == 0)
		return false;
	for (size_t i = 0; i < s->n; i++) {
		if (s->items[i].ip.family == family && memcmp(s->items[i].ip.bytes, ip, n) == 0)
			return true;
	}
	return false;
}

int addr_set_remove(struct addr_set *s, int family, const uint8_t *ip, int ifindex)
{
	long i = set_find(s, family, ip, ifindex);

	if (i < 0)
		return -1;
	s->items[i] = s->items[--s->n];
	return 0;
}

void addr_tuple_from_socket(struct addr_tuple *t, int family, const uint8_t *local, uint16_t lport,
                            const uint8_t *remote, uint16_t rport)
{
	static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (family == AF_INET6 && memcmp(local, v4_mapped, 12) == 0 &&
	    memcmp(remote, v4_mapped, 12) == 0)
		addr_tuple_make(t, AF_INET, local + 12, lport, remote + 12, rport);
	else
		addr_tuple_make(t, family, local, lport, remote, rport);
}

/* addr.h: IP addresses, endpoints and connection keys (pure, no I/O). */
#ifndef KAPROBE_ADDR_H
#define KAPROBE_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest text made by addr_format_endpoint(): "[v6-address]:65535" and a NUL. */
#define ADDR_ENDPOINT_STRLEN 56

/* One IPv4 or IPv6 address. IPv4 uses the first 4 bytes; the rest are zero. */
struct addr_ip {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t bytes[16];
};

/* A connection seen from this host: our end (local) and the peer's (remote).
 * Ports in host byte order. Unused address bytes are zero, so memcmp works. */
struct addr_tuple {
	uint8_t family;
	uint8_t pad;
	uint16_t lport;
	uint16_t rport;
	uint8_t local[16];
	uint8_t remote[16];
};

/* Number of address bytes for a family: 4 for AF_INET, 16 for AF_INET6, 0 else. */
size_t addr_len(int family);

/* Fills *t; copies addr_len(family) bytes of each address and zeroes the rest. */
void addr_tuple_make(struct addr_tuple *t, int family, const uint8_t *local, uint16_t lport,
                     const uint8_t *remote, uint16_t rport);

/* Like addr_tuple_make, from a kernel socket's own view (addresses as 16 bytes): an IPv6
 * socket talking IPv4 (both addresses v4-mapped, ::ffff:a.b.c.d) becomes IPv4, as its
 * packets are on the wire. */
void addr_tuple_from_socket(struct addr_tuple *t, int family, const uint8_t *local, uint16_t lport,
                            const uint8_t *remote, uint16_t rport);

/* Hash of a tuple (seeded, well mixed), for the connection table. */
uint32_t addr_tuple_hash(const struct addr_tuple *t, uint32_t seed);

/* True when both tuples name the same connection. */
bool addr_tuple_equal(const struct addr_tuple *a, const struct addr_tuple *b);

/* Writes "a.b.c.d" or "v6" (no brackets); returns buf. */
char *addr_format_ip(int family, const uint8_t *ip, char *buf, size_t len);

/* Writes "a.b.c.d:port" or "[v6]:port"; returns buf. */
char *addr_format_endpoint(int family, const uint8_t *ip, uint16_t port, char *buf, size_t len);

/* One address of this host on one interface. */
struct addr_local {
	struct addr_ip ip;
	int ifindex;
};

/* The set of this host's addresses: decides which end of a segment is local. An address
 * is kept once per interface that has it, so that it stays local while one still does. */
struct addr_set {
	size_t n;
	struct addr_local items[64];
};

/* Adds an address of interface ifindex (ignored when already present for it); returns 0,
 * or -1 when full. */
int addr_set_add(struct addr_set *s, int family, const uint8_t *ip, int ifindex);

/* Removes an address from interface ifindex; returns 0, or -1 when it was not in the set
 * for it. The address stays local while another interface has it. */
int addr_set_remove(struct addr_set *s, int family, const uint8_t *ip, int ifindex);

/* True when ip is one of this host's addresses (on any interface). */
bool addr_set_contains(const struct addr_set *s, int family, const uint8_t *ip);

#endif

/* ifaddr.h: this host's addresses as they change (rtnetlink RTM_NEWADDR / RTM_DELADDR).
 *
 * Pure part: ifaddr_parse() turns a datagram of address messages into calls. Thin part:
 * ifaddr_open() subscribes to the IPv4 and IPv6 address groups; ifaddr_drain() reads. */
#ifndef KAPROBE_IFADDR_H
#define KAPROBE_IFADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One address added or removed. */
struct ifaddr_event {
	bool add;          /* RTM_NEWADDR (true) or RTM_DELADDR */
	int family;        /* AF_INET or AF_INET6 */
	int ifindex;       /* the interface that gained or lost it */
	const uint8_t *ip; /* 4 or 16 bytes, valid during the call only */
};

/* Called for each address added or removed. */
typedef void (*ifaddr_fn)(void *arg, const struct ifaddr_event *ev);

/* Parses one rtnetlink datagram (buf NLWALK_ALIGN-aligned, as netlink's: a misaligned one
 * is refused, -1) received from netlink port id sender (the nl_pid of its
 * source address): only the kernel's (0) are read, a datagram from another port (a local
 * program's) is ignored whole (returns 0). Returns the number of address messages used,
 * or -1 when a message is cut or inconsistent (the rest of the datagram is skipped). */
int ifaddr_parse(const uint8_t *buf, size_t len, uint32_t sender, ifaddr_fn fn, void *arg);

/* Opens a non-blocking rtnetlink socket subscribed to address changes. -1 on error. */
int ifaddr_open(void);

/* Reads every pending datagram of fd. Returns 0, or -1 on a read error other than
 * EAGAIN (ENOBUFS: changes were lost; the caller should reread the address list). */
int ifaddr_drain(int fd, ifaddr_fn fn, void *arg);

#endif

/* ifaddr.c: this host's addresses as they change, from rtnetlink. See ifaddr.h. */
#include "ifaddr.h"

#include <errno.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IFADDR_BUF 16384

/* The address of one message: IFA_LOCAL when present (point-to-point), else IFA_ADDRESS. */
static const uint8_t *msg_address(const uint8_t *p, size_t len, size_t alen)
{
	const uint8_t *address = NULL, *local = NULL;

	while (len >= RTA_LENGTH(0)) {
		struct rtattr a;

		memcpy(&a, p, sizeof(a));
		if (a.rta_len < RTA_LENGTH(0) || a.rta_len > len)
			return NULL;
		if (a.rta_len == RTA_LENGTH(alen) && a.rta_type == IFA_ADDRESS)
			address = p + RTA_LENGTH(0);
		if (a.rta_len == RTA_LENGTH(alen) && a.rta_type == IFA_LOCAL)
			local = p + RTA_LENGTH(0);
		if (RTA_ALIGN(a.rta_len) >= len)
			break;
		p += RTA_ALIGN(a.rta_len);
		len -= RTA_ALIGN(a.rta_len);
	}
	return local ? local : address;
}

/* One RTM_NEWADDR / RTM_DELADDR message. Returns 1 when used, 0 when not, -1 when bad. */
static int one_message(uint16_t type, const uint8_t *p, size_t len, ifaddr_fn fn, void *arg)
{
	const size_t head = NLMSG_ALIGN(sizeof(struct ifaddrmsg));
	struct ifaddrmsg m;
	struct ifaddr_event ev;
	size_t alen;

	if (len < sizeof(m))
		return -1;
	memcpy(&m, p, sizeof(m));
	alen = m.ifa_family == AF_INET ? 4 : m.ifa_family == AF_INET6 ? 16 : 0;
	if (alen == 0)
		return 0;
	ev.ip = len > head ? msg_address(p + head, len - head, alen) : NULL;
	if (!ev.ip)
		return -1;
	ev.add = type == RTM_NEWADDR;
	ev.family = m.ifa_family;
	ev.ifindex = (int)m.ifa_index;
	fn(arg, &ev);
	return 1;
}

int ifaddr_parse(const uint8_t *buf, size_t len, uint32_t sender, ifaddr_fn fn, void *arg)
{
	int used = 0;

	if (sender != 0)
		return 0; /* not the kernel's */
	while (len >= NLMSG_HDRLEN) {
		struct nlmsghdr h;
		int rc = 0;

		memcpy(&h, buf, sizeof(h));
		if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > len)
			return -1;
		if (h.nlmsg_type == RTM_NEWADDR || h.nlmsg_type == RTM_DELADDR)
			rc = one_message(h.nlmsg_type, buf + NLMSG_HDRLEN,
			                 h.nlmsg_len - NLMSG_HDRLEN, fn, arg);
		if (rc < 0)
			return -1;
		used += rc;
		if (NLMSG_ALIGN(h.nlmsg_len) >= len)
			break;
		buf += NLMSG_ALIGN(h.nlmsg_len);
		len -= NLMSG_ALIGN(h.nlmsg_len);
	}
	return used;
}

int ifaddr_open(void)
{
	struct sockaddr_nl nl = {.nl_family = AF_NETLINK,
	                         .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR};
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&nl, sizeof(nl)) < 0) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

int ifaddr_drain(int fd, ifaddr_fn fn, void *arg)
{
	static uint8_t buf[IFADDR_BUF];

	for (;;) {
		struct sockaddr_nl from;
		socklen_t flen = sizeof(from);
		ssize_t n;

		memset(&from, 0, sizeof(from));
		n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		if (n == 0)
			return 0;
		if (flen < sizeof(from) || from.nl_family != AF_NETLINK)
			continue;
		ifaddr_parse(buf, (size_t)n, from.nl_pid, fn, arg);
	}
}

/* ifaddr.c: this host's addresses as they change, from rtnetlink. See ifaddr.h. */
#include "ifaddr.h"
#include "nlwalk.h"

#include <errno.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IFADDR_BUF 16384

/* The address attributes of one message (nlwalk_attrs callback state). */
struct msg_addrs {
	size_t alen;                    /* 4 or 16 */
	const uint8_t *address, *local; /* IFA_ADDRESS, IFA_LOCAL of exactly alen bytes */
};

static int address_attr(const struct nlattr *a, void *data)
{
	struct msg_addrs *m = data;

	if ((a->nla_type == IFA_ADDRESS || a->nla_type == IFA_LOCAL) &&
	    mnl_attr_validate2(a, MNL_TYPE_BINARY, m->alen) == 0)
		*(a->nla_type == IFA_LOCAL ? &m->local : &m->address) = mnl_attr_get_payload(a);
	return MNL_CB_OK;
}

/* One RTM_NEWADDR / RTM_DELADDR message; the address is IFA_LOCAL when present
 * (point-to-point), else IFA_ADDRESS. Returns 1 when used, 0 when not, -1 when bad. */
static int one_message(const struct nlmsghdr *h, ifaddr_fn fn, void *arg)
{
	struct msg_addrs addrs = {0, NULL, NULL};
	struct ifaddrmsg m;
	struct ifaddr_event ev;

	if (mnl_nlmsg_get_payload_len(h) < sizeof(m))
		return -1;
	memcpy(&m, mnl_nlmsg_get_payload(h), sizeof(m));
	addrs.alen = m.ifa_family == AF_INET ? 4 : m.ifa_family == AF_INET6 ? 16 : 0;
	if (addrs.alen == 0)
		return 0;
	if (nlwalk_attrs(h, sizeof(m), address_attr, &addrs) == MNL_CB_ERROR)
		return -1;
	ev.ip = addrs.local ? addrs.local : addrs.address;
	if (!ev.ip)
		return -1;
	ev.add = h->nlmsg_type == RTM_NEWADDR;
	ev.family = m.ifa_family;
	ev.ifindex = (int)m.ifa_index;
	fn(arg, &ev);
	return 1;
}

int ifaddr_parse(const uint8_t *buf, size_t len, uint32_t sender, ifaddr_fn fn, void *arg)
{
	const struct nlmsghdr *h;
	int rest, rc, used = 0;

	if (sender != 0)
		return 0; /* not the kernel's */
	for (h = nlwalk_first(buf, len, &rest); nlwalk_ok(h, rest); h = mnl_nlmsg_next(h, &rest)) {
		if (h->nlmsg_type != RTM_NEWADDR && h->nlmsg_type != RTM_DELADDR)
			continue;
		rc = one_message(h, fn, arg);
		if (rc < 0)
			return -1;
		used += rc;
	}
	return nlwalk_cut(h, rest) ? -1 : used;
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
	static _Alignas(uint32_t) uint8_t buf[IFADDR_BUF]; /* netlink's alignment */

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

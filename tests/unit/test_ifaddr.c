/* test_ifaddr.c: rtnetlink address messages (hand-built fixtures) and addr_set removal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "ifaddr.h"

struct seen {
	int n, adds;
	struct addr_set set;
};

static void apply(void *arg, const struct ifaddr_event *ev)
{
	struct seen *s = arg;

	s->n++;
	s->adds += ev->add;
	if (ev->add)
		addr_set_add(&s->set, ev->family, ev->ip, ev->ifindex);
	else
		addr_set_remove(&s->set, ev->family, ev->ip, ev->ifindex);
}

static size_t put_attr(uint8_t *p, uint16_t type, int family, const char *ip)
{
	struct rtattr a = {.rta_type = type};
	size_t alen = family == AF_INET ? 4 : 16;

	a.rta_len = (uint16_t)RTA_LENGTH(alen);
	memcpy(p, &a, sizeof(a));
	inet_pton(family, ip, p + RTA_LENGTH(0));
	return RTA_ALIGN(a.rta_len);
}

/* One address message of interface ifindex at buf+at with IFA_ADDRESS (and IFA_LOCAL when
 * local). */
static size_t put_msg_if(uint8_t *buf, size_t at, uint16_t type, int family, const char *address,
                         const char *local, int ifindex)
{
	struct nlmsghdr h = {.nlmsg_type = type};
	struct ifaddrmsg m = {.ifa_family = (uint8_t)family, .ifa_index = (uint32_t)ifindex};
	size_t n = NLMSG_HDRLEN;
	uint8_t *p = buf + at;

	memcpy(p + n, &m, sizeof(m));
	n += NLMSG_ALIGN(sizeof(m));
	n += put_attr(p + n, IFA_ADDRESS, family, address);
	if (local)
		n += put_attr(p + n, IFA_LOCAL, family, local);
	h.nlmsg_len = (uint32_t)n;
	memcpy(p, &h, sizeof(h));
	return at + NLMSG_ALIGN(n);
}

/* The same on interface 2. */
static size_t put_msg(uint8_t *buf, size_t at, uint16_t type, int family, const char *address,
                      const char *local)
{
	return put_msg_if(buf, at, type, family, address, local, 2);
}

static bool has(const struct addr_set *s, int family, const char *ip)
{
	uint8_t b[16];

	inet_pton(family, ip, b);
	return addr_set_contains(s, family, b);
}

static void test_new_and_del(void **state)
{
	uint8_t buf[1024];
	struct seen s;
	size_t at = 0;

	(void)state;
	memset(&s, 0, sizeof(s));
	at = put_msg(buf, at, RTM_NEWADDR, AF_INET, "192.0.2.1", NULL);
	at = put_msg(buf, at, RTM_NEWADDR, AF_INET, "10.9.9.9", "10.0.0.1"); /* p-t-p: local */
	at = put_msg(buf, at, RTM_NEWADDR, AF_INET6, "2001:db8::1", NULL);
	assert_int_equal(ifaddr_parse(buf, at, 0, apply, &s), 3);
	assert_true(has(&s.set, AF_INET, "192.0.2.1"));
	assert_true(has(&s.set, AF_INET, "10.0.0.1"));
	assert_false(has(&s.set, AF_INET, "10.9.9.9"));
	assert_true(has(&s.set, AF_INET6, "2001:db8::1"));
	at = put_msg(buf, 0, RTM_DELADDR, AF_INET, "192.0.2.1", NULL);
	assert_int_equal(ifaddr_parse(buf, at, 0, apply, &s), 1);
	assert_false(has(&s.set, AF_INET, "192.0.2.1"));
	assert_int_equal(s.set.n, 2);
	assert_int_equal(s.adds, 3);
}

static void test_bad_messages(void **state)
{
	uint8_t buf[1024];
	struct nlmsghdr h;
	struct seen s;
	size_t at, cut;

	(void)state;
	memset(&s, 0, sizeof(s));
	at = put_msg(buf, 0, RTM_NEWADDR, AF_INET6, "2001:db8::1", NULL);
	for (cut = NLMSG_HDRLEN; cut < at; cut++)
		assert_int_equal(ifaddr_parse(buf, cut, 0, apply, &s), -1);
	assert_int_equal(s.n, 0);
	buf[NLMSG_HDRLEN] = 99; /* unknown family: skipped, not an error */
	assert_int_equal(ifaddr_parse(buf, at, 0, apply, &s), 0);
	at = put_msg(buf, 0, RTM_NEWADDR, AF_INET, "192.0.2.1", NULL);
	buf[NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct ifaddrmsg))] = 6; /* attr length != 4+4 */
	assert_int_equal(ifaddr_parse(buf, at, 0, apply, &s), -1);
	at = put_msg(buf, 0, RTM_NEWLINK, AF_INET, "192.0.2.1", NULL); /* other type */
	assert_int_equal(ifaddr_parse(buf, at, 0, apply, &s), 0);
	memcpy(&h, buf, sizeof(h));
	h.nlmsg_len += 0x80000000u; /* what libmnl's mnl_nlmsg_ok alone takes (a negative int) */
	memcpy(buf, &h, sizeof(h));
	assert_int_equal(ifaddr_parse(buf, at, 0, apply, &s), -1);
	assert_int_equal(s.n, 0);
}

/* An address on two interfaces: RTM_DELADDR on one leaves it local. */
static void test_del_on_one_interface(void **state)
{
	uint8_t buf[1024];
	struct seen s;
	size_t at = 0;

	(void)state;
	memset(&s, 0, sizeof(s));
	at = put_msg_if(buf, at, RTM_NEWADDR, AF_INET, "192.0.2.1", NULL, 2);
	at = put_msg_if(buf, at, RTM_NEWADDR, AF_INET, "192.0.2.1", NULL, 3);
	assert_int_equal(ifaddr_parse(buf, at, 0, apply, &s), 2);
	at = put_msg_if(buf, 0, RTM_DELADDR, AF_INET, "192.0.2.1", NULL, 2);
	assert_int_equal(ifaddr_parse(buf, at, 0, apply, &s), 1);
	assert_true(has(&s.set, AF_INET, "192.0.2.1"));
	at = put_msg_if(buf, 0, RTM_DELADDR, AF_INET, "192.0.2.1", NULL, 3);
	assert_int_equal(ifaddr_parse(buf, at, 0, apply, &s), 1);
	assert_false(has(&s.set, AF_INET, "192.0.2.1"));
}

/* Only the kernel (port id 0) is believed: a local program may send to our port. */
static void test_foreign_sender(void **state)
{
	uint8_t buf[1024];
	struct seen s;
	size_t at;

	(void)state;
	memset(&s, 0, sizeof(s));
	at = put_msg(buf, 0, RTM_NEWADDR, AF_INET, "192.0.2.9", NULL);
	assert_int_equal(ifaddr_parse(buf, at, 4242, apply, &s), 0);
	assert_int_equal(s.n, 0);
	assert_false(has(&s.set, AF_INET, "192.0.2.9"));
	assert_int_equal(ifaddr_parse(buf, at, 0, apply, &s), 1);
	assert_true(has(&s.set, AF_INET, "192.0.2.9"));
}

static void test_set_remove(void **state)
{
	struct addr_set set;
	uint8_t a[4] = {192, 0, 2, 1}, b[4] = {192, 0, 2, 2};

	(void)state;
	memset(&set, 0, sizeof(set));
	assert_int_equal(addr_set_remove(&set, AF_INET, a, 2), -1);
	addr_set_add(&set, AF_INET, a, 2);
	addr_set_add(&set, AF_INET, b, 2);
	assert_int_equal(addr_set_remove(&set, AF_INET, a, 2), 0);
	assert_false(addr_set_contains(&set, AF_INET, a));
	assert_true(addr_set_contains(&set, AF_INET, b));
	assert_int_equal(addr_set_remove(&set, AF_INET6, b, 2), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_and_del),    cmocka_unit_test(test_bad_messages),
	    cmocka_unit_test(test_set_remove),     cmocka_unit_test(test_del_on_one_interface),
	    cmocka_unit_test(test_foreign_sender),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

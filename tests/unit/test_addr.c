/* test_addr.c: unit tests of addr.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"

static const uint8_t v4a[4] = {192, 0, 2, 1};
static const uint8_t v4b[4] = {198, 51, 100, 7};

static void v6(const char *text, uint8_t *out)
{
	assert_int_equal(inet_pton(AF_INET6, text, out), 1);
}

static void test_len(void **state)
{
	(void)state;
	assert_int_equal(addr_len(AF_INET), 4);
	assert_int_equal(addr_len(AF_INET6), 16);
	assert_int_equal(addr_len(0), 0);
	assert_int_equal(addr_len(AF_UNIX), 0);
}

static void test_tuple_make_v4_zeroes_the_rest(void **state)
{
	struct addr_tuple t;
	/* 16 bytes so that garbage past the first 4 must not be copied */
	uint8_t l[16], r[16];

	(void)state;
	memset(&t, 0xaa, sizeof(t));
	memset(l, 0xee, sizeof(l));
	memset(r, 0xee, sizeof(r));
	memcpy(l, v4a, 4);
	memcpy(r, v4b, 4);
	addr_tuple_make(&t, AF_INET, l, 22, r, 40000);
	assert_int_equal(t.family, AF_INET);
	assert_int_equal(t.pad, 0);
	assert_int_equal(t.lport, 22);
	assert_int_equal(t.rport, 40000);
	assert_memory_equal(t.local, v4a, 4);
	assert_memory_equal(t.remote, v4b, 4);
	for (int i = 4; i < 16; i++) {
		assert_int_equal(t.local[i], 0);
		assert_int_equal(t.remote[i], 0);
	}
}

static void test_tuple_make_v6(void **state)
{
	struct addr_tuple t;
	uint8_t l[16], r[16];

	(void)state;
	v6("2001:db8::1", l);
	v6("2001:db8:ffff::abcd", r);
	addr_tuple_make(&t, AF_INET6, l, 443, r, 1);
	assert_int_equal(t.family, AF_INET6);
	assert_memory_equal(t.local, l, 16);
	assert_memory_equal(t.remote, r, 16);
	assert_int_equal(t.lport, 443);
	assert_int_equal(t.rport, 1);
}

static void test_tuple_equal(void **state)
{
	struct addr_tuple a, b;
	uint8_t l[16], r[16];

	(void)state;
	v6("2001:db8::1", l);
	v6("2001:db8::2", r);
	addr_tuple_make(&a, AF_INET6, l, 80, r, 5000);
	addr_tuple_make(&b, AF_INET6, l, 80, r, 5000);
	assert_true(addr_tuple_equal(&a, &b));
	b.lport = 81;
	assert_false(addr_tuple_equal(&a, &b));
	addr_tuple_make(&b, AF_INET6, l, 80, r, 5001);
	assert_false(addr_tuple_equal(&a, &b));
	addr_tuple_make(&b, AF_INET6, r, 80, l, 5000); /* ends swapped */
	assert_false(addr_tuple_equal(&a, &b));
	addr_tuple_make(&b, AF_INET6, l, 80, r, 5000);
	b.remote[15] ^= 1;
	assert_false(addr_tuple_equal(&a, &b));
	addr_tuple_make(&b, AF_INET, l, 80, r, 5000); /* same first bytes, other family */
	assert_false(addr_tuple_equal(&a, &b));
}

static void test_hash_is_stable_and_seeded(void **state)
{
	struct addr_tuple a, b;

	(void)state;
	addr_tuple_make(&a, AF_INET, v4a, 22, v4b, 40000);
	addr_tuple_make(&b, AF_INET, v4a, 22, v4b, 40000);
	assert_int_equal(addr_tuple_hash(&a, 1), addr_tuple_hash(&b, 1));
	assert_int_not_equal(addr_tuple_hash(&a, 1), addr_tuple_hash(&a, 2));
	b.rport = 40001;
	assert_int_not_equal(addr_tuple_hash(&a, 1), addr_tuple_hash(&b, 1));
	addr_tuple_make(&b, AF_INET, v4b, 22, v4a, 40000);
	assert_int_not_equal(addr_tuple_hash(&a, 1), addr_tuple_hash(&b, 1));
}

/* Sequential ports (the common case: one client, many ephemeral ports) spread evenly. */
static void test_hash_spreads_sequential_ports(void **state)
{
	enum { BUCKETS = 1024, N = 64 * 1024 };
	static unsigned count[BUCKETS];
	struct addr_tuple t;
	unsigned max = 0;

	(void)state;
	memset(count, 0, sizeof(count));
	for (unsigned i = 0; i < N; i++) {
		addr_tuple_make(&t, AF_INET, v4a, 5432, v4b, (uint16_t)i);
		count[addr_tuple_hash(&t, 0x12345678) % BUCKETS]++;
	}
	for (unsigned i = 0; i < BUCKETS; i++)
		max = count[i] > max ? count[i] : max;
	/* 64 expected per bucket; a poor hash piles them up */
	assert_true(max < 64 * 2);
}

/* Flipping one input bit flips about half of the output bits. */
static void test_hash_avalanche(void **state)
{
	struct addr_tuple a, b;
	unsigned total = 0, trials = 0;

	(void)state;
	addr_tuple_make(&a, AF_INET6, (const uint8_t *)"0123456789abcdef", 1234,
	                (const uint8_t *)"fedcba9876543210", 4321);
	for (size_t byte = 0; byte < 16; byte++) {
		for (int bit = 0; bit < 8; bit++) {
			b = a;
			b.remote[byte] ^= (uint8_t)(1u << bit);
			total += (unsigned)__builtin_popcount(addr_tuple_hash(&a, 7) ^
			                                      addr_tuple_hash(&b, 7));
			trials++;
		}
	}
	assert_in_range(total / trials, 13, 19);
}

static void test_format_ip(void **state)
{
	char buf[64];
	uint8_t ip[16];

	(void)state;
	assert_string_equal(addr_format_ip(AF_INET, v4a, buf, sizeof(buf)), "192.0.2.1");
	v6("2001:db8::1", ip);
	assert_string_equal(addr_format_ip(AF_INET6, ip, buf, sizeof(buf)), "2001:db8::1");
	assert_string_equal(addr_format_ip(0, ip, buf, sizeof(buf)), "?");
}

static void test_format_ip_small_buffers(void **state)
{
	char buf[8];

	(void)state;
	memset(buf, 'x', sizeof(buf));
	assert_ptr_equal(addr_format_ip(AF_INET, v4a, buf, 5), buf);
	assert_string_equal(buf, "192.");
	assert_int_equal(buf[5], 'x');
	memset(buf, 'x', sizeof(buf));
	addr_format_ip(AF_INET, v4a, buf, 0); /* writes nothing */
	assert_int_equal(buf[0], 'x');
	addr_format_ip(AF_INET, v4a, buf, 1);
	assert_string_equal(buf, "");
}

static void test_format_endpoint(void **state)
{
	char buf[ADDR_ENDPOINT_STRLEN];
	uint8_t ip[16];

	(void)state;
	assert_string_equal(addr_format_endpoint(AF_INET, v4a, 22, buf, sizeof(buf)),
	                    "192.0.2.1:22");
	v6("::1", ip);
	assert_string_equal(addr_format_endpoint(AF_INET6, ip, 65535, buf, sizeof(buf)),
	                    "[::1]:65535");
	/* the longest text fits ADDR_ENDPOINT_STRLEN */
	v6("1111:2222:3333:4444:5555:6666:7777:8888", ip);
	addr_format_endpoint(AF_INET6, ip, 65535, buf, sizeof(buf));
	assert_string_equal(buf, "[1111:2222:3333:4444:5555:6666:7777:8888]:65535");
	v6("::ffff:255.255.255.255", ip);
	addr_format_endpoint(AF_INET6, ip, 65535, buf, sizeof(buf));
	assert_string_equal(buf, "[::ffff:255.255.255.255]:65535");
}

static void test_format_endpoint_truncates_safely(void **state)
{
	char buf[10];
	uint8_t ip[16];

	(void)state;
	memset(buf, 'x', sizeof(buf));
	v6("2001:db8::1", ip);
	addr_format_endpoint(AF_INET6, ip, 443, buf, 6);
	assert_string_equal(buf, "[2001");
	assert_int_equal(buf[6], 'x');
}

static void test_set(void **state)
{
	static struct addr_set s;
	uint8_t ip[16];

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_false(addr_set_contains(&s, AF_INET, v4a));
	assert_int_equal(addr_set_add(&s, AF_INET, v4a, 1), 0);
	assert_int_equal(addr_set_add(&s, AF_INET, v4a, 1), 0); /* already there */
	assert_int_equal(s.n, 1);
	assert_true(addr_set_contains(&s, AF_INET, v4a));
	assert_false(addr_set_contains(&s, AF_INET, v4b));
	/* an IPv6 address whose first 4 bytes equal v4a is another address */
	memset(ip, 0, sizeof(ip));
	memcpy(ip, v4a, 4);
	assert_false(addr_set_contains(&s, AF_INET6, ip));
	assert_int_equal(addr_set_add(&s, AF_INET6, ip, 1), 0);
	assert_true(addr_set_contains(&s, AF_INET6, ip));
	assert_int_equal(s.n, 2);
	assert_int_equal(addr_set_add(&s, 0, ip, 1), -1);
	assert_false(addr_set_contains(&s, 0, ip));
}

/* An address on two interfaces stays local until both lost it (RTM_DELADDR on one). */
static void test_set_two_interfaces(void **state)
{
	static struct addr_set s;

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(addr_set_add(&s, AF_INET, v4a, 2), 0);
	assert_int_equal(addr_set_add(&s, AF_INET, v4a, 3), 0);
	assert_int_equal(addr_set_add(&s, AF_INET, v4a, 3), 0); /* again: no second entry */
	assert_int_equal(s.n, 2);
	assert_int_equal(addr_set_remove(&s, AF_INET, v4a, 2), 0);
	assert_true(addr_set_contains(&s, AF_INET, v4a));
	assert_int_equal(addr_set_remove(&s, AF_INET, v4a, 2), -1); /* not on 2 any more */
	assert_true(addr_set_contains(&s, AF_INET, v4a));
	assert_int_equal(addr_set_remove(&s, AF_INET, v4a, 3), 0);
	assert_false(addr_set_contains(&s, AF_INET, v4a));
}

static void test_set_full(void **state)
{
	static struct addr_set s;
	const size_t cap = sizeof(s.items) / sizeof(s.items[0]);
	uint8_t ip[4] = {10, 0, 0, 0};

	(void)state;
	memset(&s, 0, sizeof(s));
	for (size_t i = 0; i < cap; i++) {
		ip[3] = (uint8_t)i;
		assert_int_equal(addr_set_add(&s, AF_INET, ip, 1), 0);
	}
	ip[3] = 200;
	assert_int_equal(addr_set_add(&s, AF_INET, ip, 1), -1);
	assert_false(addr_set_contains(&s, AF_INET, ip));
	ip[3] = 5;
	assert_int_equal(addr_set_add(&s, AF_INET, ip, 1), 0); /* present: not an error */
	assert_int_equal(s.n, cap);
}

static void test_tuple_from_socket_unmaps_v4(void **state)
{
	uint8_t l[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1};
	uint8_t r[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 2};
	uint8_t l4[4] = {192, 0, 2, 1}, r4[4] = {198, 51, 100, 2};
	struct addr_tuple t, want;

	(void)state;
	addr_tuple_from_socket(&t, AF_INET6, l, 5432, r, 40000);
	addr_tuple_make(&want, AF_INET, l4, 5432, r4, 40000);
	assert_true(addr_tuple_equal(&t, &want));
	r[11] = 0; /* only one end mapped: a real IPv6 tuple */
	addr_tuple_from_socket(&t, AF_INET6, l, 5432, r, 40000);
	assert_int_equal(t.family, AF_INET6);
	assert_memory_equal(t.remote, r, 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tuple_from_socket_unmaps_v4),
	    cmocka_unit_test(test_len),
	    cmocka_unit_test(test_tuple_make_v4_zeroes_the_rest),
	    cmocka_unit_test(test_tuple_make_v6),
	    cmocka_unit_test(test_tuple_equal),
	    cmocka_unit_test(test_hash_is_stable_and_seeded),
	    cmocka_unit_test(test_hash_spreads_sequential_ports),
	    cmocka_unit_test(test_hash_avalanche),
	    cmocka_unit_test(test_format_ip),
	    cmocka_unit_test(test_format_ip_small_buffers),
	    cmocka_unit_test(test_format_endpoint),
	    cmocka_unit_test(test_format_endpoint_truncates_safely),
	    cmocka_unit_test(test_set),
	    cmocka_unit_test(test_set_two_interfaces),
	    cmocka_unit_test(test_set_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

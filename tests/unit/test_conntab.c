/* test_conntab.c: the connection table: insert, find, remove, growth, the cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "conntab.h"

static struct addr_tuple key_n(uint32_t n)
{
	uint8_t l[4] = {192, 0, 2, 1}, r[4] = {198, 51, (uint8_t)(n >> 16), (uint8_t)(n >> 8)};
	struct addr_tuple k;

	addr_tuple_make(&k, AF_INET, l, 5432, r, (uint16_t)(1024 + (n & 0xff)));
	return k;
}

static void test_insert_find_remove(void **state)
{
	struct conntab *t = conntab_new(100, 42);
	struct addr_tuple k = key_n(1), k2 = key_n(2);
	struct conn *c;

	(void)state;
	assert_null(conntab_find(t, &k));
	c = conntab_insert(t, &k);
	assert_non_null(c);
	assert_true(addr_tuple_equal(&c->key, &k));
	assert_ptr_equal(conntab_find(t, &k), c);
	assert_null(conntab_find(t, &k2));
	assert_int_equal(conntab_count(t), 1);
	conntab_remove(t, c);
	assert_null(conntab_find(t, &k));
	assert_int_equal(conntab_count(t), 0);
	conntab_free(t);
}

static void test_many_and_growth(void **state)
{
	enum { N = 50000 };
	struct conntab *t = conntab_new(N, 7);
	struct addr_tuple k;
	uint32_t i;

	(void)state;
	for (i = 0; i < N; i++) {
		k = key_n(i);
		assert_non_null(conntab_insert(t, &k));
	}
	assert_int_equal(conntab_count(t), N);
	for (i = 0; i < N; i++) {
		k = key_n(i);
		assert_non_null(conntab_find(t, &k));
	}
	for (i = 0; i < N; i += 2) {
		k = key_n(i);
		conntab_remove(t, conntab_find(t, &k));
	}
	for (i = 0; i < N; i++) {
		k = key_n(i);
		if (i % 2)
			assert_non_null(conntab_find(t, &k));
		else
			assert_null(conntab_find(t, &k));
	}
	assert_int_equal(conntab_count(t), N / 2);
	conntab_free(t);
}

static void test_cap_is_enforced(void **state)
{
	struct conntab *t = conntab_new(3, 1);
	struct addr_tuple k;
	uint32_t i;

	(void)state;
	for (i = 0; i < 3; i++) {
		k = key_n(i);
		assert_non_null(conntab_insert(t, &k));
	}
	k = key_n(3);
	assert_null(conntab_insert(t, &k));
	conntab_free(t);
}

static void count_one(struct conn *c, void *arg)
{
	(void)c;
	(*(int *)arg)++;
}

static void test_foreach_visits_all(void **state)
{
	struct conntab *t = conntab_new(1000, 3);
	struct addr_tuple k;
	int n = 0;
	uint32_t i;

	(void)state;
	for (i = 0; i < 777; i++) {
		k = key_n(i);
		conntab_insert(t, &k);
	}
	conntab_foreach(t, count_one, &n);
	assert_int_equal(n, 777);
	conntab_free(t);
}

struct remove_ctx {
	struct conntab *t;
	int seen;
};

/* Removes every other record it is given, during the walk. */
static void remove_odd(struct conn *c, void *arg)
{
	struct remove_ctx *rc = arg;

	if (rc->seen++ % 2)
		conntab_remove(rc->t, c);
}

static void test_foreach_may_remove_current(void **state)
{
	struct conntab *t = conntab_new(5000, 5);
	struct remove_ctx rc = {t, 0};
	struct addr_tuple k;
	int n = 0;
	uint32_t i;

	(void)state;
	for (i = 0; i < 3000; i++) { /* more than the buckets: chains of several records */
		k = key_n(i);
		conntab_insert(t, &k);
	}
	conntab_foreach(t, remove_odd, &rc);
	assert_int_equal(rc.seen, 3000);
	assert_int_equal(conntab_count(t), 1500);
	conntab_foreach(t, count_one, &n);
	assert_int_equal(n, 1500);
	conntab_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_insert_find_remove),
	    cmocka_unit_test(test_many_and_growth),
	    cmocka_unit_test(test_cap_is_enforced),
	    cmocka_unit_test(test_foreach_visits_all),
	    cmocka_unit_test(test_foreach_may_remove_current),
	};

	return cmocka_run_group_tests_name("conntab", tests, NULL, NULL);
}

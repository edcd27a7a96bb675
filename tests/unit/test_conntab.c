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

/* Grows from 1024 buckets past 7 doublings; every record stays findable at every step. */
static void test_incremental_growth(void **state)
{
	enum { N = 150000 };
	struct conntab *t = conntab_new(N, 11);
	struct addr_tuple k;
	uint32_t i, j;

	(void)state;
	for (i = 0; i < N; i++) {
		k = key_n(i);
		assert_non_null(conntab_insert(t, &k));
		assert_non_null(conntab_find(t, &k));
		if (i % 9973 == 0) {
			for (j = 0; j <= i; j++) {
				k = key_n(j);
				assert_non_null(conntab_find(t, &k));
			}
		}
	}
	assert_true(conntab_buckets(t) >= 131072);
	for (i = 0; i < N; i += 3) { /* removal while a resize may be going on */
		k = key_n(i);
		conntab_remove(t, conntab_find(t, &k));
	}
	for (i = 0; i < N; i++) {
		k = key_n(i);
		if (i % 3)
			assert_non_null(conntab_find(t, &k));
		else
			assert_null(conntab_find(t, &k));
	}
	conntab_free(t);
}

/* Visit counts kept in the record's rule field (the table never touches it). */
static void mark_visit(struct conn *c, void *arg)
{
	(void)arg;
	c->rule++;
}

static void test_walk_visits_each_once(void **state)
{
	enum { N = 5000 };
	struct conntab *t = conntab_new(N, 13);
	struct conntab_cursor cur;
	struct addr_tuple k;
	size_t steps = 0, n;
	uint32_t i;

	(void)state;
	for (i = 0; i < N; i++) {
		k = key_n(i);
		conntab_insert(t, &k);
	}
	conntab_cursor_init(&cur);
	while ((n = conntab_walk(t, &cur, 7, mark_visit, NULL)) > 0) {
		assert_true(n <= 7);
		steps++;
	}
	assert_true(steps >= N / 7);
	assert_int_equal(conntab_walk(t, &cur, 7, mark_visit, NULL), 0);
	for (i = 0; i < N; i++) {
		k = key_n(i);
		assert_int_equal(conntab_find(t, &k)->rule, 1);
	}
	conntab_free(t);
}

struct churn {
	uint8_t removed[20000]; /* by key number: removed and not inserted again */
	int bad;
};

static uint32_t key_number(const struct addr_tuple *k)
{
	return (uint32_t)k->remote[2] << 16 | (uint32_t)k->remote[3] << 8 | (k->rport - 1024u);
}

static void check_visit(struct conn *c, void *arg)
{
	struct churn *ch = arg;

	if (ch->removed[key_number(&c->key)])
		ch->bad++; /* a removed record must never be handed out */
	c->rule++;
}

/* Inserts and removes between steps (growth included): the records present all along
 * are visited exactly once, removed ones never after their removal. */
static void test_walk_tolerates_changes(void **state)
{
	static struct churn ch;
	struct conntab *t = conntab_new(20000, 17);
	struct conntab_cursor cur;
	struct addr_tuple k;
	uint32_t i, next = 3000, victim = 0;

	(void)state;
	for (i = 0; i < 3000; i++) {
		k = key_n(i);
		conntab_insert(t, &k);
	}
	conntab_cursor_init(&cur);
	while (conntab_walk(t, &cur, 50, check_visit, &ch) > 0) {
		for (i = 0; i < 5; i++, next++) { /* new records, past several doublings */
			k = key_n(next);
			conntab_insert(t, &k);
		}
		k = key_n(victim); /* removes records 0, 7, 14, ... of the first 3000 */
		conntab_remove(t, conntab_find(t, &k));
		ch.removed[victim] = 1;
		victim = (victim + 7) % 3000;
	}
	assert_int_equal(ch.bad, 0);
	for (i = 0; i < 3000; i++) {
		struct conn *c;

		k = key_n(i);
		c = conntab_find(t, &k);
		if (c)
			assert_int_equal(c->rule, 1); /* present all along: once */
	}
	conntab_free(t);
}

struct walk_remove {
	struct conntab *t;
	int seen;
};

static void remove_each(struct conn *c, void *arg)
{
	struct walk_remove *w = arg;

	w->seen++;
	conntab_remove(w->t, c);
}

static void test_walk_may_remove_current(void **state)
{
	struct conntab *t = conntab_new(5000, 19);
	struct walk_remove w = {t, 0};
	struct conntab_cursor cur;
	struct addr_tuple k;
	uint32_t i;

	(void)state;
	for (i = 0; i < 4000; i++) {
		k = key_n(i);
		conntab_insert(t, &k);
	}
	conntab_cursor_init(&cur);
	while (conntab_walk(t, &cur, 333, remove_each, &w) > 0)
		;
	assert_int_equal(w.seen, 4000);
	assert_int_equal(conntab_count(t), 0);
	for (i = 0; i < 4000; i++) { /* the records are reusable */
		k = key_n(i);
		assert_non_null(conntab_insert(t, &k));
	}
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
	    cmocka_unit_test(test_incremental_growth),
	    cmocka_unit_test(test_walk_visits_each_once),
	    cmocka_unit_test(test_walk_tolerates_changes),
	    cmocka_unit_test(test_walk_may_remove_current),
	};

	return cmocka_run_group_tests_name("conntab", tests, NULL, NULL);
}

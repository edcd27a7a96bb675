/* test_timerheap.c: the timer heap against a brute-force model, with random operations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "timerheap.h"

#define N 500

struct item {
	uint32_t pos;
	int armed;
	double at;
};

static struct item items[N];

static uint32_t *pos_of(void *it)
{
	return &((struct item *)it)->pos;
}

/* The heap's top is an armed item with the smallest time; every position is right. */
static void check(const struct timerheap *h)
{
	size_t i, armed = 0;
	double best = 1e300, at;
	struct item *top;

	for (i = 0; i < N; i++) {
		if (!items[i].armed) {
			assert_int_equal(items[i].pos, 0);
			continue;
		}
		armed++;
		assert_true(items[i].pos >= 1 && items[i].pos <= h->n);
		assert_ptr_equal(h->v[items[i].pos - 1].item, &items[i]);
		if (items[i].at < best)
			best = items[i].at;
	}
	assert_int_equal(timerheap_count(h), armed);
	top = timerheap_top(h, &at);
	if (!armed) {
		assert_null(top);
		return;
	}
	assert_non_null(top);
	assert_true(at == best && top->at == best);
	for (i = 1; i < h->n; i++)
		assert_false(h->v[i].at < h->v[(i - 1) / 4].at);
}

static void test_random_operations(void **state)
{
	struct timerheap h;
	int step, k;

	(void)state;
	srand(7);
	timerheap_init(&h, pos_of);
	for (step = 0; step < 20000; step++) {
		k = rand() % N;
		if (rand() % 3 == 0) {
			timerheap_remove(&h, &items[k]);
			items[k].armed = 0;
		} else {
			items[k].at = (double)(rand() % 1000) / 10.0;
			assert_int_equal(timerheap_set(&h, &items[k], items[k].at), 0);
			items[k].armed = 1;
		}
		if (step % 97 == 0)
			check(&h);
	}
	check(&h);
	timerheap_free(&h);
}

/* Popping the top in turn gives the times in order. */
static void test_pops_in_order(void **state)
{
	struct timerheap h;
	struct item *it;
	double at, last = -1;
	int i;

	(void)state;
	timerheap_init(&h, pos_of);
	for (i = 0; i < N; i++) {
		items[i].pos = 0;
		items[i].at = (double)((i * 7919) % N);
		timerheap_set(&h, &items[i], items[i].at);
	}
	while ((it = timerheap_top(&h, &at))) {
		assert_true(at >= last);
		last = at;
		timerheap_remove(&h, it);
		assert_int_equal(it->pos, 0);
	}
	assert_int_equal(timerheap_count(&h), 0);
	timerheap_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_random_operations),
	    cmocka_unit_test(test_pops_in_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

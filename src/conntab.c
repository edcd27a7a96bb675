/* conntab.c: connection table. Chained hash on the 4-tuple; records come from slabs
 * and go back to a free list, so per-packet work never allocates. The bucket array
 * doubles when the load passes one record per bucket (amortised O(1)). */
#include <stdlib.h>
#include <string.h>

#include "conntab.h"

#define CONNTAB_SLAB        1024 /* records allocated at once */
#define CONNTAB_MIN_BUCKETS 1024

struct slab {
	struct slab *next;
	struct conn recs[CONNTAB_SLAB];
};

struct conntab {
	struct conn **buckets;
	size_t mask; /* buckets - 1 */
	size_t count, max;
	uint32_t seed;
	struct conn *free;
	struct slab *slabs;
};

struct conntab *conntab_new(size_t max, uint32_t seed)
{
	struct conntab *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->buckets = calloc(CONNTAB_MIN_BUCKETS, sizeof(*t->buckets));
	if (!t->buckets) {
		free(t);
		return NULL;
	}
	t->mask = CONNTAB_MIN_BUCKETS - 1;
	t->max = max;
	t->seed = seed;
	return t;
}

void conntab_free(struct conntab *t)
{
	struct slab *s, *next;

	if (!t)
		return;
	for (s = t->slabs; s; s = next) {
		next = s->next;
		free(s);
	}
	free(t->buckets);
	free(t);
}

static struct conn **bucket_of(const struct conntab *t, const struct addr_tuple *key)
{
	return &t->buckets[addr_tuple_hash(key, t->seed) & t->mask];
}

struct conn *conntab_find(const struct conntab *t, const struct addr_tuple *key)
{
	struct conn *c;

	for (c = *bucket_of(t, key); c; c = c->next)
		if (addr_tuple_equal(&c->key, key))
			return c;
	return NULL;
}

/* Doubles the bucket array; on allocation failure the table just stays denser. */
static void grow(struct conntab *t)
{
	size_t n = (t->mask + 1) * 2, i;
	struct conn **nb = calloc(n, sizeof(*nb));
	struct conn *c, *next;

	if (!nb)
		return;
	for (i = 0; i <= t->mask; i++) {
		for (c = t->buckets[i]; c; c = next) {
			next = c->next;
			c->next = nb[addr_tuple_hash(&c->key, t->seed) & (n - 1)];
			nb[addr_tuple_hash(&c->key, t->seed) & (n - 1)] = c;
		}
	}
	free(t->buckets);
	t->buckets = nb;
	t->mask = n - 1;
}

static int add_slab(struct conntab *t)
{
	struct slab *s = malloc(sizeof(*s));
	size_t i;

	if (!s)
		return -1;
	s->next = t->slabs;
	t->slabs = s;
	for (i = 0; i < CONNTAB_SLAB; i++) {
		s->recs[i].next = t->free;
		t->free = &s->recs[i];
	}
	return 0;
}

struct conn *conntab_insert(struct conntab *t, const struct addr_tuple *key)
{
	struct conn *c, **b;

	if (t->count >= t->max)
		return NULL;
	if (!t->free && add_slab(t) < 0)
		return NULL;
	if (t->count >= t->mask + 1)
		grow(t);
	c = t->free;
	t->free = c->next;
	memset(c, 0, sizeof(*c));
	c->key = *key;
	b = bucket_of(t, key);
	c->next = *b;
	*b = c;
	t->count++;
	return c;
}

void conntab_remove(struct conntab *t, struct conn *c)
{
	struct conn **pp;

	for (pp = bucket_of(t, &c->key); *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			c->next = t->free;
			t->free = c;
			t->count--;
			return;
		}
	}
}

size_t conntab_count(const struct conntab *t)
{
	return t->count;
}

void conntab_foreach(const struct conntab *t, void (*fn)(struct conn *c, void *arg), void *arg)
{
	size_t i;
	struct conn *c, *next;

	for (i = 0; i <= t->mask; i++) {
		for (c = t->buckets[i]; c; c = next) {
			next = c->next;
			fn(c, arg);
		}
	}
}

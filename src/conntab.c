/* conntab.c: connection table. Chained hash on the 4-tuple; records come from slabs
 * and go back to a free list, so per-packet work never allocates.
 *
 * The bucket array doubles when the load passes one record per bucket, incrementally
 * (as Redis does): during a resize both arrays exist, every insert moves a few buckets
 * of the old array to the new one and every lookup one, and lookups check both. No
 * single call costs O(n). Slabs are never freed, so a cursor over them (slab, index)
 * stays valid across inserts and removes: that is the resumable walk. */
#include <stdlib.h>
#include <string.h>

#include "conntab.h"

#define CONNTAB_SLAB        1024 /* records allocated at once */
#define CONNTAB_MIN_BUCKETS 1024
#define CONNTAB_MOVE_INSERT 4 /* old buckets moved per insert during a resize */
#define CONNTAB_MOVE_FIND   1 /* ... per lookup */

struct slab {
	struct conn recs[CONNTAB_SLAB];
};

struct ht {
	struct conn **b;
	size_t mask; /* buckets - 1 */
};

struct conntab {
	struct ht ht[2]; /* ht[1] is the new array during a resize (b NULL otherwise) */
	size_t moved;    /* buckets of ht[0] already moved to ht[1] */
	size_t count, max;
	uint32_t seed;
	struct conn *free;
	struct slab **slabs; /* in allocation order, never freed before the table */
	size_t nslabs, slabs_cap;
};

struct conntab *conntab_new(size_t max, uint32_t seed)
{
	struct conntab *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ht[0].b = calloc(CONNTAB_MIN_BUCKETS, sizeof(*t->ht[0].b));
	if (!t->ht[0].b) {
		free(t);
		return NULL;
	}
	t->ht[0].mask = CONNTAB_MIN_BUCKETS - 1;
	t->max = max;
	t->seed = seed;
	return t;
}

void conntab_free(struct conntab *t)
{
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->nslabs; i++)
		free(t->slabs[i]);
	free(t->slabs);
	free(t->ht[0].b);
	free(t->ht[1].b);
	free(t);
}

static int resizing(const struct conntab *t)
{
	return t->ht[1].b != NULL;
}

static struct conn **bucket_in(const struct conntab *t, int which, const struct addr_tuple *key)
{
	return &t->ht[which].b[addr_tuple_hash(key, t->seed) & t->ht[which].mask];
}

/* Moves up to n buckets of the old array; the resize ends when all are moved. */
static void move_buckets(struct conntab *t, size_t n)
{
	struct conn *c, *next, **to;

	for (; n > 0 && t->moved <= t->ht[0].mask; n--, t->moved++) {
		for (c = t->ht[0].b[t->moved]; c; c = next) {
			next = c->next;
			to = bucket_in(t, 1, &c->key);
			c->next = *to;
			*to = c;
		}
		t->ht[0].b[t->moved] = NULL;
	}
	if (t->moved > t->ht[0].mask) {
		free(t->ht[0].b);
		t->ht[0] = t->ht[1];
		t->ht[1].b = NULL;
		t->ht[1].mask = 0;
		t->moved = 0;
	}
}

/* Starts a resize to twice the buckets; on allocation failure the table stays denser. */
static void start_grow(struct conntab *t)
{
	size_t n = (t->ht[0].mask + 1) * 2;
	struct conn **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return;
	t->ht[1].b = nb;
	t->ht[1].mask = n - 1;
	t->moved = 0;
}

static struct conn *find_in(const struct conntab *t, int which, const struct addr_tuple *key)
{
	struct conn *c;

	for (c = *bucket_in(t, which, key); c; c = c->next)
		if (addr_tuple_equal(&c->key, key))
			return c;
	return NULL;
}

struct conn *conntab_find(struct conntab *t, const struct addr_tuple *key)
{
	struct conn *c;

	if (!resizing(t))
		return find_in(t, 0, key);
	move_buckets(t, CONNTAB_MOVE_FIND);
	c = find_in(t, 0, key);
	if (!c && resizing(t))
		c = find_in(t, 1, key);
	return c;
}

static int add_slab(struct conntab *t)
{
	struct slab *s;
	size_t i;

	if (t->nslabs == t->slabs_cap) {
		size_t cap = t->slabs_cap ? t->slabs_cap * 2 : 16;
		struct slab **ns = realloc(t->slabs, cap * sizeof(*ns));

		if (!ns)
			return -1;
		t->slabs = ns;
		t->slabs_cap = cap;
	}
	s = malloc(sizeof(*s));
	if (!s)
		return -1;
	t->slabs[t->nslabs++] = s;
	for (i = CONNTAB_SLAB; i-- > 0;) {
		s->recs[i].in_use = 0;
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
	if (resizing(t))
		move_buckets(t, CONNTAB_MOVE_INSERT);
	else if (t->count >= t->ht[0].mask + 1)
		start_grow(t);
	c = t->free;
	t->free = c->next;
	memset(c, 0, sizeof(*c));
	c->key = *key;
	c->in_use = 1;
	b = bucket_in(t, resizing(t) ? 1 : 0, key);
	c->next = *b;
	*b = c;
	t->count++;
	return c;
}

/* Unlinks c from its chain in array `which`; returns 1 when it was there. */
static int unlink_in(struct conntab *t, int which, struct conn *c)
{
	struct conn **pp;

	for (pp = bucket_in(t, which, &c->key); *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			return 1;
		}
	}
	return 0;
}

void conntab_remove(struct conntab *t, struct conn *c)
{
	if (!unlink_in(t, 0, c) && !(resizing(t) && unlink_in(t, 1, c)))
		return;
	c->in_use = 0;
	c->next = t->free;
	t->free = c;
	t->count--;
}

size_t conntab_count(const struct conntab *t)
{
	return t->count;
}

size_t conntab_buckets(const struct conntab *t)
{
	return resizing(t) ? t->ht[1].mask + 1 : t->ht[0].mask + 1;
}

void conntab_cursor_init(struct conntab_cursor *cur)
{
	cur->pos = 0;
}

size_t conntab_walk(const struct conntab *t, struct conntab_cursor *cur, size_t max,
                    void (*fn)(struct conn *c, void *arg), void *arg)
{
	size_t end = t->nslabs * CONNTAB_SLAB, n = 0;
	struct conn *c;

	for (; n < max && cur->pos < end; n++, cur->pos++) {
		c = &t->slabs[cur->pos / CONNTAB_SLAB]->recs[cur->pos % CONNTAB_SLAB];
		if (c->in_use)
			fn(c, arg);
	}
	return n;
}

void conntab_foreach(const struct conntab *t, void (*fn)(struct conn *c, void *arg), void *arg)
{
	struct conntab_cursor cur;

	conntab_cursor_init(&cur);
	while (conntab_walk(t, &cur, CONNTAB_SLAB, fn, arg) > 0)
		;
}

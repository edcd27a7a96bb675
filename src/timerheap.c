/* timerheap.c: a 4-ary min-heap of timers keyed by their time. See timerheap.h.
 *
 * Four children per node: half the levels of a binary heap, and a node's children's times
 * sit in one 64-byte line; each level an entry moves writes its item's position (a cache
 * miss at 100 000 connections), so fewer levels is what counts (perf: a binary heap took 8 %
 * of kaprobed's CPU in the 100 000-connection benchmark). */
#include <stdlib.h>

#include "timerheap.h"

#define TIMERHEAP_MIN_CAP 1024
#define D                 4 /* children per node */
#define PARENT(i)         (((i)-1) / D)

void timerheap_init(struct timerheap *h, uint32_t *(*index_of)(void *item))
{
	h->v = NULL;
	h->n = h->cap = 0;
	h->index_of = index_of;
}

/* Puts entry e at position i and tells its item. */
static void place(struct timerheap *h, size_t i, struct timerheap_entry e)
{
	h->v[i] = e;
	*h->index_of(e.item) = (uint32_t)(i + 1);
}

/* Moves the entry at i up while it is earlier than its parent. */
static void sift_up(struct timerheap *h, size_t i)
{
	struct timerheap_entry e = h->v[i];

	while (i > 0 && e.at < h->v[PARENT(i)].at) {
		place(h, i, h->v[PARENT(i)]);
		i = PARENT(i);
	}
	place(h, i, e);
}

/* Moves the entry at i down while a child is earlier. */
static void sift_down(struct timerheap *h, size_t i)
{
	struct timerheap_entry e = h->v[i];
	size_t c, k, best;

	for (;;) {
		c = D * i + 1;
		if (c >= h->n)
			break;
		best = c;
		for (k = c + 1; k < c + D && k < h->n; k++)
			if (h->v[k].at < h->v[best].at)
				best = k;
		if (!(h->v[best].at < e.at))
			break;
		place(h, i, h->v[best]);
		i = best;
	}
	place(h, i, e);
}

static int grow(struct timerheap *h)
{
	size_t cap = h->cap ? h->cap * 2 : TIMERHEAP_MIN_CAP;
	struct timerheap_entry *v;

	if (cap > UINT32_MAX)
		return -1;
	v = realloc(h->v, cap * sizeof(*v));
	if (!v)
		return -1;
	h->v = v;
	h->cap = cap;
	return 0;
}

/* The entry at i changed (or is new there): it moves up or down to its place. */
static void settle(struct timerheap *h, size_t i)
{
	if (i > 0 && h->v[i].at < h->v[PARENT(i)].at)
		sift_up(h, i);
	else
		sift_down(h, i);
}

int timerheap_set(struct timerheap *h, void *item, double at)
{
	uint32_t pos = *h->index_of(item);

	if (pos) {
		h->v[pos - 1].at = at;
		settle(h, pos - 1);
		return 0;
	}
	if (h->n == h->cap && grow(h) < 0)
		return -1;
	h->v[h->n].at = at;
	h->v[h->n].item = item;
	sift_up(h, h->n++);
	return 0;
}

void timerheap_remove(struct timerheap *h, void *item)
{
	uint32_t *pos = h->index_of(item);
	size_t i;

	if (!*pos)
		return;
	i = *pos - 1;
	*pos = 0;
	if (i == --h->n)
		return;
	place(h, i, h->v[h->n]); /* the last entry fills the hole, then finds its place */
	settle(h, i);
}

void *timerheap_top(const struct timerheap *h, double *at)
{
	if (h->n == 0)
		return NULL;
	*at = h->v[0].at;
	return h->v[0].item;
}

size_t timerheap_count(const struct timerheap *h)
{
	return h->n;
}

void timerheap_free(struct timerheap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}

/* timerheap.h: the connections' timers as one 4-ary min-heap (pure: no clock, no I/O).
 *
 * One libev timer per connection costs 48 bytes in every record plus libev's heap entry;
 * this heap keeps only its own entry (16 bytes) per armed record and a 4-byte position in
 * the record, and lets the engine fire a bounded number of timers per loop iteration
 * (ARCHITECTURE.md, "Timers"). Each item stores its position (1-based; 0 = not armed) in a
 * uint32_t the heap finds through index_of. */
#ifndef KAPROBE_TIMERHEAP_H
#define KAPROBE_TIMERHEAP_H

#include <stddef.h>
#include <stdint.h>

struct timerheap_entry {
	double at;  /* when the item's timer fires */
	void *item; /* the armed item */
};

struct timerheap {
	struct timerheap_entry *v; /* v[0] is the earliest */
	size_t n, cap;
	uint32_t *(*index_of)(void *item); /* where an item keeps its position */
};

/* An empty heap whose items keep their position where index_of says. */
void timerheap_init(struct timerheap *h, uint32_t *(*index_of)(void *item));

/* Arms item at `at`, or moves it there when already armed. Returns 0, or -1 when memory
 * ran out (the item is then not armed). O(log n). */
int timerheap_set(struct timerheap *h, void *item, double at);

/* Disarms item (nothing when it is not armed). O(log n). */
void timerheap_remove(struct timerheap *h, void *item);

/* The earliest armed item and its time in *at, or NULL when none is armed. O(1). */
void *timerheap_top(const struct timerheap *h, double *at);

/* Number of armed items. */
size_t timerheap_count(const struct timerheap *h);

/* Frees the heap's memory (the items are the caller's). */
void timerheap_free(struct timerheap *h);

#endif

/* conntab.h: the table of tracked connections. O(1) lookup by 4-tuple, records from a
 * pool (no malloc per packet), bounded by a maximum count. Pure: no I/O. */
#ifndef KAPROBE_CONNTAB_H
#define KAPROBE_CONNTAB_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "fsm.h"

/* One tracked connection. */
struct conn {
	struct conn *next; /* hash chain, or free list */
	struct addr_tuple key;
	uint16_t rule;      /* index into the active rules */
	uint16_t flags;     /* CONN_F_* (the engine's) */
	uint8_t verdict;    /* last verdict: FSM_EV_ALIVE, _DEAD, _RESET, _UNREACHABLE; 0 = none */
	uint8_t counted;    /* the fsm state the engine's counts hold it under */
	float rtt;          /* s from the last answered probe to its reply; 0 = none measured */
	double verdict_at;  /* when the last verdict was given (the fsm's clock) */
	uint32_t timer_pos; /* its place in the engine's timer heap (1-based; 0: not armed) */
	uint8_t in_use;     /* the table's: 1 while tracked (a cursor walk skips free records) */
	uint8_t rate_epoch; /* the engine's: the 100 ms window rate_frames counts in */
	uint16_t rate_frames; /* the engine's: frames seen in that window (busy detection) */
	struct fsm_conn fsm;
};

struct conntab;

/* A table for at most max connections, hashing with seed (random, against flooding).
 * NULL on allocation failure. */
struct conntab *conntab_new(size_t max, uint32_t seed);

/* Frees the table and every record. */
void conntab_free(struct conntab *t);

/* The record for key, or NULL. During a resize it also moves one bucket (O(1)). */
struct conn *conntab_find(struct conntab *t, const struct addr_tuple *key);

/* A new zeroed record for key (which must not be present); NULL when the table is full. */
struct conn *conntab_insert(struct conntab *t, const struct addr_tuple *key);

/* Removes and frees a record returned by conntab_find/conntab_insert. */
void conntab_remove(struct conntab *t, struct conn *c);

/* Number of records. */
size_t conntab_count(const struct conntab *t);

/* Number of buckets (of the new array during a resize). */
size_t conntab_buckets(const struct conntab *t);

/* Calls fn for every record (O(n): start-up, shutdown and tests only). fn may remove the
 * record it was given (conntab_remove), but must not insert nor remove any other. */
void conntab_foreach(const struct conntab *t, void (*fn)(struct conn *c, void *arg), void *arg);

/* A resumable walk over the records (their slabs, in allocation order). */
struct conntab_cursor {
	size_t pos; /* next record slot */
};

/* Starts a walk at the first record slot. */
void conntab_cursor_init(struct conntab_cursor *cur);

/* Examines up to max record slots from the cursor, calling fn for each record in use, and
 * advances the cursor. Returns the number of slots examined (free ones included), 0 when
 * the walk is over. Between calls the table may change freely: a record present during
 * the whole walk is visited exactly once; one inserted or removed meanwhile at most once.
 * fn may remove the record it was given, but must not insert nor remove any other. */
size_t conntab_walk(const struct conntab *t, struct conntab_cursor *cur, size_t max,
                    void (*fn)(struct conn *c, void *arg), void *arg);

#endif

/* statusview.h: `kaprobed -s`: reads the state file the daemon writes (state.h) and prints
 * it as an ss-like table. The reader (jansson for each value) takes only that JSON,
 * defensively: a truncated or garbage file gives an error message, never a crash or a read
 * past the buffer. */
#ifndef KAPROBE_STATUSVIEW_H
#define KAPROBE_STATUSVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define STATUSVIEW_STR 64 /* longer strings are cut */

/* The document's header fields. */
struct statusview_header {
	long version;
	long pid;
	char written[STATUSVIEW_STR];
	size_t nconn; /* connections parsed */
};

/* One connection of the file (strings empty, has_* false when absent or null; non-ASCII
 * characters as '?'). */
struct statusview_row {
	char rule[STATUSVIEW_STR], local[STATUSVIEW_STR], remote[STATUSVIEW_STR];
	char state[STATUSVIEW_STR], verdict[STATUSVIEW_STR];
	char stall[STATUSVIEW_STR]; /* "zero-window", "retransmit" or empty */
	char side[STATUSVIEW_STR];  /* a gateway record: the end it probes, "client" or "server" */
	double idle, rtt_ms, verdict_age;
	long probes;
	bool has_idle, has_rtt, has_verdict_age;
};

/* Parses len bytes of text (need not be NUL-terminated), calling fn (may be NULL) for each
 * connection in order. Returns 0, or -1 with a message in err (the rows already passed to
 * fn were complete). */
int statusview_parse(const char *text, size_t len, struct statusview_header *h,
                     void (*fn)(const struct statusview_row *row, void *arg), void *arg, char *err,
                     size_t errlen);

/* Reads the state file at path and prints the table to out. Returns the exit status:
 * 0, or 1 with a message on errf (no state_file configured, unreadable, malformed). */
int statusview_print(const char *path, FILE *out, FILE *errf);

#endif

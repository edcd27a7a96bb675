/* state.h: the state file's JSON text, rendered to a stream one connection at a time (pure:
 * views in, text out; the caller opens and commits the file, see atomicfile.h).
 *
 * {"version":1,"pid":P,"written":"2026-11-23T12:00:00.123Z","connections":[
 * {"rule":"pg","local":"192.0.2.1:5432","remote":"192.0.2.7:40000","state":"probing",
 *  "idle":31.2,"probes_out":1,"rtt_ms":null,"last_verdict":null,"verdict_age":null},
 * ...
 * ]}
 */
#ifndef KAPROBE_STATE_H
#define KAPROBE_STATE_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "records.h"

/* Version number written in the file ("version"). */
#define STATE_VERSION 1

/* Length of a buffer for state_format_time(). */
#define STATE_TIME_STRLEN 32

/* Formats a wall-clock time as UTC ISO 8601 with milliseconds: 2026-11-23T12:00:00.123Z. */
void state_format_time(const struct timespec *ts, char *buf, size_t len);

/* Writes the opening of the document, up to the connections array's '['. */
void state_render_begin(FILE *f, long pid, const char *written);

/* Writes one connection; n is the number written before it (a comma separates them). */
void state_render_conn(FILE *f, const struct engine_view *v, size_t n);

/* Closes the array and the document. */
void state_render_end(FILE *f);

/* Writes s as a JSON string (quoted; '"', '\\' and control characters escaped). */
void state_json_string(FILE *f, const char *s);

#endif

/* logline.h: one status line as typed key/value fields, rendered as logfmt or JSON, or
 * listed as journald fields (pure: no clock, no I/O). */
#ifndef KAPROBE_LOGLINE_H
#define KAPROBE_LOGLINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define LOG_LINE_FIELDS 32   /* fields in one line; more are dropped */
#define LOG_LINE_TEXT   1024 /* bytes of keys and values in one line; longer values are cut */
/* A rendered line (with "\n"): large enough for LOG_LINE_TEXT bytes all escaped as \u00XX. */
#define LOG_LINE_OUT (LOG_LINE_TEXT * 6 + LOG_LINE_FIELDS * 8 + 8)
/* Journal fields: MESSAGE=, PRIORITY=, SYSLOG_IDENTIFIER=, SYSLOG_FACILITY= and one per field. */
#define LOG_LINE_JOURNAL_IOV (LOG_LINE_FIELDS + 4)
#define LOG_LINE_JOURNAL_BUF (LOG_LINE_OUT + LOG_LINE_TEXT * 2 + LOG_LINE_FIELDS * 16 + 128)

enum log_line_format {
	LOG_LINE_LOGFMT = 0, /* key=value pairs, values quoted when needed */
	LOG_LINE_JSON,       /* one JSON object, numbers as JSON numbers */
};

enum log_field_kind {
	LOG_FIELD_STR = 0, /* a string, quoted in logfmt only when needed */
	LOG_FIELD_QUOTED,  /* a string, always quoted in logfmt (msg="...") */
	LOG_FIELD_NUM,     /* a number (its decimal text), bare in both formats */
};

struct log_field {
	uint16_t key;   /* offset of the NUL-terminated key in text */
	uint16_t value; /* offset of the NUL-terminated value text in text */
	uint8_t kind;   /* enum log_field_kind */
};

/* A status line under construction: fields in order, their text in one buffer. */
struct log_line {
	size_t nf;
	size_t used; /* bytes of text in use */
	struct log_field f[LOG_LINE_FIELDS];
	char text[LOG_LINE_TEXT];
};

/* Empties a line (no ts=, no event=). */
void log_line_reset(struct log_line *l);
/* Appends a string field; the value is cut (at a UTF-8 boundary) when the line is full. */
void log_line_str(struct log_line *l, const char *key, const char *value);
/* Appends a string field that logfmt always quotes (a daemon message's msg=). */
void log_line_quoted(struct log_line *l, const char *key, const char *value);
/* Appends key=integer. */
void log_line_int(struct log_line *l, const char *key, long long value);
/* Appends key=value with `decimals` digits after the point (a string if not finite). */
void log_line_fixed(struct log_line *l, const char *key, double value, int decimals);

/* Number of fields, and field i's key, value text and kind. */
size_t log_line_count(const struct log_line *l);
const char *log_line_key(const struct log_line *l, size_t i);
const char *log_line_value(const struct log_line *l, size_t i);
int log_line_kind(const struct log_line *l, size_t i);
/* The value of the first field named key, or NULL. */
const char *log_line_get(const struct log_line *l, const char *key);

/* Renders the line in format fmt, ending with "\n", NUL-terminated; returns its length.
 * out should hold LOG_LINE_OUT bytes; a smaller buffer gets a line cut short. */
size_t log_line_render(const struct log_line *l, int fmt, char *out, size_t len);

/* syslog(3) priority of a status line: warning for dead and reset, debug for probe and
 * reply, info for the other events; for a daemon message (level=) its level. */
int log_line_priority(const struct log_line *l);

/* Turns a key into a journal/environment name: KAPROBE_ + the key uppercased, every
 * character other than A-Z, 0-9 and _ replaced by _. Returns the length (cut to fit). */
size_t log_line_field_name(const char *key, char *out, size_t len);

/* Fills iov with the journal fields of the line: MESSAGE=message, PRIORITY=prio,
 * SYSLOG_IDENTIFIER=kaprobed, SYSLOG_FACILITY=3, then KAPROBE_KEY=value for every field.
 * The strings live in buf (LOG_LINE_JOURNAL_BUF bytes). Returns the number of iovecs. */
size_t log_line_journal(const struct log_line *l, const char *message, int prio, char *buf,
                        size_t len, struct iovec *iov, size_t max);

#endif

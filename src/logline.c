/* logline.c: a status line as typed fields; logfmt, JSON and journald renderings.
 *
 * Fields keep their key, their value as text and a kind (string, always-quoted string,
 * number), so one line renders as logfmt (`key=value`), as a JSON object (numbers bare,
 * strings escaped) or as journald's KAPROBE_KEY=value fields. Values are UTF-8: a byte
 * that does not start a valid sequence is written as U+FFFD; control characters are
 * escaped the same way in both formats (\n \r \t \" \\ and \u00XX). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "logline.h"

void log_line_reset(struct log_line *l)
{
	l->nf = 0;
	l->used = 0;
}

/* Copies s (at most max bytes, cut at a UTF-8 boundary) into the text; returns its offset. */
static uint16_t text_add(struct log_line *l, const char *s, size_t max)
{
	size_t n = strlen(s), at = l->used;

	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--; /* do not split a multi-byte character */
	}
	memcpy(l->text + at, s, n);
	l->text[at + n] = '\0';
	l->used = at + n + 1;
	return (uint16_t)at;
}

static void add_field(struct log_line *l, const char *key, const char *value, int kind)
{
	size_t klen = strlen(key), room;
	struct log_field *f;

	if (l->nf >= LOG_LINE_FIELDS || l->used + klen + 2 > sizeof(l->text))
		return; /* no room even for the key and an empty value */
	f = &l->f[l->nf++];
	f->kind = (uint8_t)kind;
	f->key = text_add(l, key, klen);
	room = sizeof(l->text) - l->used - 1;
	f->value = text_add(l, value, room);
}

void log_line_str(struct log_line *l, const char *key, const char *value)
{
	add_field(l, key, value ? value : "", LOG_FIELD_STR);
}

void log_line_quoted(struct log_line *l, const char *key, const char *value)
{
	add_field(l, key, value ? value : "", LOG_FIELD_QUOTED);
}

void log_line_int(struct log_line *l, const char *key, long long value)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", value);
	add_field(l, key, buf, LOG_FIELD_NUM);
}

void log_line_fixed(struct log_line *l, const char *key, double value, int decimals)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%.*f", decimals, value);
	add_field(l, key, buf, isfinite(value) ? LOG_FIELD_NUM : LOG_FIELD_STR);
}

size_t log_line_count(const struct log_line *l)
{
	return l->nf;
}

const char *log_line_key(const struct log_line *l, size_t i)
{
	return i < l->nf ? l->text + l->f[i].key : NULL;
}

const char *log_line_value(const struct log_line *l, size_t i)
{
	return i < l->nf ? l->text + l->f[i].value : NULL;
}

int log_line_kind(const struct log_line *l, size_t i)
{
	return i < l->nf ? l->f[i].kind : -1;
}

const char *log_line_get(const struct log_line *l, const char *key)
{
	size_t i;

	for (i = 0; i < l->nf; i++)
		if (strcmp(l->text + l->f[i].key, key) == 0)
			return l->text + l->f[i].value;
	return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Rendering into a bounded buffer */

struct out {
	char *p;
	size_t len; /* bytes in p, always < cap */
	size_t cap; /* usable bytes (the buffer's size less one for the NUL) */
};

static void put(struct out *o, const char *s, size_t n)
{
	if (n > o->cap - o->len)
		n = o->cap - o->len;
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if s[0] starts none. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xBF;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4;
	else
		return 0;
	if (c == 0xE0)
		lo = 0xA0;
	else if (c == 0xED)
		hi = 0x9F; /* no UTF-16 surrogates */
	else if (c == 0xF0)
		lo = 0x90;
	else if (c == 0xF4)
		hi = 0x8F;
	for (i = 1; i < n; i++, lo = 0x80, hi = 0xBF)
		if (s[i] < lo || s[i] > hi)
			return 0;
	return n;
}

/* The letter of a two-character escape (\" \\ \n \r \t), or 0. */
static char short_escape(unsigned char c)
{
	switch (c) {
	case '"':
	case '\\':
		return (char)c;
	case '\n':
		return 'n';
	case '\r':
		return 'r';
	case '\t':
		return 't';
	}
	return 0;
}

/* One character of a quoted string; returns the bytes of s consumed. */
static size_t put_escaped_char(struct out *o, const unsigned char *s)
{
	char esc[8] = {'\\', short_escape(*s)};
	size_t n;

	if (esc[1]) {
		put(o, esc, 2);
		return 1;
	}
	if (*s < 0x20 || *s == 0x7F) {
		snprintf(esc, sizeof(esc), "\\u%04x", *s);
		puts_(o, esc);
		return 1;
	}
	n = utf8_len(s);
	if (n == 0) {
		puts_(o, "\xEF\xBF\xBD"); /* U+FFFD for a byte that is not UTF-8 */
		return 1;
	}
	put(o, (const char *)s, n);
	return n;
}

static void put_quoted(struct out *o, const char *v)
{
	const unsigned char *s = (const unsigned char *)v;

	puts_(o, "\"");
	while (*s)
		s += put_escaped_char(o, s);
	puts_(o, "\"");
}

/* logfmt quotes a value that is empty or holds a space, '"', '=', '\\', a control
 * character or a byte that is not UTF-8. */
static int logfmt_needs_quotes(const char *v)
{
	const unsigned char *s = (const unsigned char *)v;
	size_t n;

	if (*s == '\0')
		return 1;
	while (*s) {
		if (*s <= ' ' || *s == '"' || *s == '=' || *s == '\\' || *s == 0x7F)
			return 1;
		n = utf8_len(s);
		if (n == 0)
			return 1;
		s += n;
	}
	return 0;
}

static void render_logfmt(const struct log_line *l, struct out *o)
{
	const char *v;
	size_t i;

	for (i = 0; i < l->nf; i++) {
		if (i > 0)
			puts_(o, " ");
		puts_(o, l->text + l->f[i].key);
		puts_(o, "=");
		v = l->text + l->f[i].value;
		if (l->f[i].kind == LOG_FIELD_QUOTED ||
		    (l->f[i].kind == LOG_FIELD_STR && logfmt_needs_quotes(v)))
			put_quoted(o, v);
		else
			puts_(o, v);
	}
}

static void render_json(const struct log_line *l, struct out *o)
{
	size_t i;

	puts_(o, "{");
	for (i = 0; i < l->nf; i++) {
		if (i > 0)
			puts_(o, ",");
		put_quoted(o, l->text + l->f[i].key);
		puts_(o, ":");
		if (l->f[i].kind == LOG_FIELD_NUM)
			puts_(o, l->text + l->f[i].value);
		else
			put_quoted(o, l->text + l->f[i].value);
	}
	puts_(o, "}");
}

size_t log_line_render(const struct log_line *l, int fmt, char *out, size_t len)
{
	struct out o = {out, 0, len > 2 ? len - 2 : 0}; /* room for "\n\0" */

	if (len == 0)
		return 0;
	if (len < 3) {
		out[0] = '\0';
		return 0;
	}
	if (fmt == LOG_LINE_JSON)
		render_json(l, &o);
	else
		render_logfmt(l, &o);
	out[o.len++] = '\n';
	out[o.len] = '\0';
	return o.len;
}

/* ---------------------------------------------------------------------------------- */
/* Priority and journal fields */

static int level_priority(const char *level)
{
	if (strcmp(level, "error") == 0)
		return LOG_ERR;
	if (strcmp(level, "warning") == 0)
		return LOG_WARNING;
	if (strcmp(level, "debug") == 0)
		return LOG_DEBUG;
	return LOG_INFO;
}

int log_line_priority(const struct log_line *l)
{
	const char *ev = log_line_get(l, "event");

	if (!ev) {
		ev = log_line_get(l, "level");
		return ev ? level_priority(ev) : LOG_INFO;
	}
	if (strcmp(ev, "dead") == 0 || strcmp(ev, "reset") == 0)
		return LOG_WARNING;
	if (strcmp(ev, "probe") == 0 || strcmp(ev, "reply") == 0)
		return LOG_DEBUG;
	return LOG_INFO;
}

size_t log_line_field_name(const char *key, char *out, size_t len)
{
	static const char prefix[] = "KAPROBE_";
	size_t n = 0;
	char c;

	if (len == 0)
		return 0;
	for (; prefix[n] && n + 1 < len; n++)
		out[n] = prefix[n];
	for (; *key && n + 1 < len; key++) {
		c = *key;
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			c = '_';
		out[n++] = c;
	}
	out[n] = '\0';
	return n;
}

/* Appends "NAME=value" to buf at *used and points the next iovec at it. */
static void add_iov(char *buf, size_t len, size_t *used, struct iovec *iov, size_t *n,
                    const char *name, const char *value)
{
	int w;

	if (*used >= len)
		return;
	w = snprintf(buf + *used, len - *used, "%s=%s", name, value);
	if (w < 0 || (size_t)w >= len - *used)
		return; /* does not fit: left out */
	iov[*n].iov_base = buf + *used;
	iov[*n].iov_len = (size_t)w;
	*used += (size_t)w + 1;
	(*n)++;
}

size_t log_line_journal(const struct log_line *l, const char *message, int prio, char *buf,
                        size_t len, struct iovec *iov, size_t max)
{
	char name[65], num[16]; /* journald: names of at most 64 characters */
	size_t i, n = 0, used = 0;

	snprintf(num, sizeof(num), "%d", prio);
	if (max < 4)
		return 0;
	add_iov(buf, len, &used, iov, &n, "MESSAGE", message);
	add_iov(buf, len, &used, iov, &n, "PRIORITY", num);
	add_iov(buf, len, &used, iov, &n, "SYSLOG_IDENTIFIER", "kaprobed");
	add_iov(buf, len, &used, iov, &n, "SYSLOG_FACILITY", "3"); /* LOG_DAEMON >> 3 */
	for (i = 0; i < l->nf && n < max; i++) {
		log_line_field_name(l->text + l->f[i].key, name, sizeof(name));
		add_iov(buf, len, &used, iov, &n, name, l->text + l->f[i].value);
	}
	return n;
}

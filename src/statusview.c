/* statusview.c: `kaprobed -s` (see statusview.h). A small recursive-descent JSON reader
 * with a depth limit, bounded string copies and an explicit end pointer, then a table
 * printed in two passes (widths, then rows). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statusview.h"

#define SV_MAX_DEPTH 16
#define SV_MAX_FILE  (1024L * 1024 * 1024) /* a million connections take ~200 MB */
#define SV_COLS      8

struct sv {
	const char *start, *p, *end;
	int depth;
	char *err;
	size_t errlen;
	int failed;
};

static int sv_fail(struct sv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int sv_fail(struct sv *s, const char *fmt, ...)
{
	char msg[160];
	va_list ap;

	if (!s->failed) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		if (s->p >= s->end)
			snprintf(s->err, s->errlen, "truncated: %s at the end (byte %zu)", msg,
			         (size_t)(s->p - s->start));
		else
			snprintf(s->err, s->errlen, "malformed: %s at byte %zu", msg,
			         (size_t)(s->p - s->start));
	}
	s->failed = 1;
	return -1;
}

static void ws(struct sv *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* Consumes c (after blanks) when it is next; returns 1 if it was. */
static int eat(struct sv *s, char c)
{
	ws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return 1;
	}
	return 0;
}

static int expect(struct sv *s, char c)
{
	return eat(s, c) ? 0 : sv_fail(s, "expected '%c'", c);
}

/* Appends one byte to out (cut silently at outlen - 1). */
static void put(char *out, size_t outlen, size_t *n, char c)
{
	if (out && *n + 1 < outlen)
		out[(*n)++] = c;
}

static int hex4(struct sv *s, unsigned *v)
{
	int i;

	*v = 0;
	for (i = 0; i < 4; i++, s->p++) {
		if (s->p >= s->end)
			return sv_fail(s, "short \\u escape");
		char c = *s->p;
		unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
		             : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
		             : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
		                                    : 16;
		if (d > 15)
			return sv_fail(s, "bad \\u escape");
		*v = *v << 4 | d;
	}
	return 0;
}

/* One escape after the backslash; non-ASCII \u escapes become '?'. */
static int escape(struct sv *s, char *out, size_t outlen, size_t *n)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *hit;
	unsigned u;

	if (s->p >= s->end)
		return sv_fail(s, "unfinished escape");
	hit = memchr(from, *s->p, sizeof(from) - 1);
	if (hit) {
		s->p++;
		put(out, outlen, n, to[hit - from]);
		return 0;
	}
	if (*s->p++ != 'u')
		return sv_fail(s, "bad escape");
	if (hex4(s, &u) < 0)
		return -1;
	put(out, outlen, n, u < 0x80 ? (char)u : '?');
	return 0;
}

/* A string into out (NUL-terminated, cut to outlen - 1; out NULL: skipped). */
static int string(struct sv *s, char *out, size_t outlen)
{
	size_t n = 0;

	if (!eat(s, '"'))
		return sv_fail(s, "expected a string");
	for (;;) {
		if (s->p >= s->end)
			return sv_fail(s, "unfinished string");
		char c = *s->p++;
		if (c == '"')
			break;
		if ((unsigned char)c < 0x20)
			return sv_fail(s, "control character in a string");
		if (c == '\\') {
			if (escape(s, out, outlen, &n) < 0)
				return -1;
		} else {
			put(out, outlen, &n, c);
		}
	}
	if (out && outlen)
		out[n] = '\0';
	return 0;
}

static int number(struct sv *s, double *v)
{
	char buf[64], *endp;
	size_t n = 0;

	ws(s);
	while (s->p + n < s->end && n < sizeof(buf) - 1 && strchr("+-0123456789.eE", s->p[n]) &&
	       s->p[n] != '\0')
		n++;
	if (n == 0 || n == sizeof(buf) - 1)
		return sv_fail(s, "expected a number");
	memcpy(buf, s->p, n);
	buf[n] = '\0';
	*v = strtod(buf, &endp);
	if (endp != buf + n)
		return sv_fail(s, "bad number");
	s->p += n;
	return 0;
}

/* Consumes the literal word when it is next; returns 1 if it was. */
static int word(struct sv *s, const char *w)
{
	size_t n = strlen(w);

	ws(s);
	if ((size_t)(s->end - s->p) >= n && memcmp(s->p, w, n) == 0) {
		s->p += n;
		return 1;
	}
	return 0;
}

static int skip_value(struct sv *s);

/* The members of an object or the elements of an array, skipped. */
static int skip_container(struct sv *s, char close, int members)
{
	if (++s->depth > SV_MAX_DEPTH)
		return sv_fail(s, "nested too deep");
	if (!eat(s, close)) {
		do {
			if (members && (string(s, NULL, 0) < 0 || expect(s, ':') < 0))
				return -1;
			if (skip_value(s) < 0)
				return -1;
		} while (eat(s, ','));
		if (expect(s, close) < 0)
			return -1;
	}
	s->depth--;
	return 0;
}

static int skip_value(struct sv *s)
{
	double d;

	ws(s);
	if (s->p >= s->end)
		return sv_fail(s, "expected a value");
	if (eat(s, '{'))
		return skip_container(s, '}', 1);
	if (eat(s, '['))
		return skip_container(s, ']', 0);
	if (*s->p == '"')
		return string(s, NULL, 0);
	if (word(s, "null") || word(s, "true") || word(s, "false"))
		return 0;
	return number(s, &d);
}

/* A number or null: *has says which. */
static int opt_number(struct sv *s, double *v, bool *has)
{
	*has = false;
	if (word(s, "null"))
		return 0;
	*has = true;
	return number(s, v);
}

/* A string or null (null: empty). */
static int opt_string(struct sv *s, char *out, size_t outlen)
{
	out[0] = '\0';
	if (word(s, "null"))
		return 0;
	return string(s, out, outlen);
}

static int conn_member(struct sv *s, const char *key, struct statusview_row *r)
{
	double d;
	bool has;

	if (strcmp(key, "rule") == 0)
		return string(s, r->rule, sizeof(r->rule));
	if (strcmp(key, "local") == 0)
		return string(s, r->local, sizeof(r->local));
	if (strcmp(key, "remote") == 0)
		return string(s, r->remote, sizeof(r->remote));
	if (strcmp(key, "state") == 0)
		return string(s, r->state, sizeof(r->state));
	if (strcmp(key, "last_verdict") == 0)
		return opt_string(s, r->verdict, sizeof(r->verdict));
	if (strcmp(key, "idle") == 0)
		return opt_number(s, &r->idle, &r->has_idle);
	if (strcmp(key, "rtt_ms") == 0)
		return opt_number(s, &r->rtt_ms, &r->has_rtt);
	if (strcmp(key, "verdict_age") == 0)
		return opt_number(s, &r->verdict_age, &r->has_verdict_age);
	if (strcmp(key, "probes_out") == 0) {
		if (opt_number(s, &d, &has) < 0)
			return -1;
		r->probes = has && d >= 0 && d < 1e9 ? (long)d : -1;
		return 0;
	}
	return skip_value(s); /* a newer writer's field */
}

static int conn(struct sv *s, struct statusview_row *r)
{
	char key[STATUSVIEW_STR];

	memset(r, 0, sizeof(*r));
	r->probes = -1;
	if (expect(s, '{') < 0)
		return -1;
	if (eat(s, '}'))
		return 0;
	do {
		if (string(s, key, sizeof(key)) < 0 || expect(s, ':') < 0 ||
		    conn_member(s, key, r) < 0)
			return -1;
	} while (eat(s, ','));
	return expect(s, '}');
}

struct sv_cb {
	void (*fn)(const struct statusview_row *row, void *arg);
	void *arg;
};

static int connections(struct sv *s, struct statusview_header *h, const struct sv_cb *cb)
{
	struct statusview_row r;

	if (expect(s, '[') < 0)
		return -1;
	if (eat(s, ']'))
		return 0;
	do {
		if (conn(s, &r) < 0)
			return -1;
		h->nconn++;
		if (cb->fn)
			cb->fn(&r, cb->arg);
	} while (eat(s, ','));
	return expect(s, ']');
}

static int doc_member(struct sv *s, const char *key, struct statusview_header *h,
                      const struct sv_cb *cb, int *seen)
{
	double d;

	if (strcmp(key, "connections") == 0) {
		*seen = 1;
		return connections(s, h, cb);
	}
	if (strcmp(key, "written") == 0)
		return string(s, h->written, sizeof(h->written));
	if (strcmp(key, "version") == 0 || strcmp(key, "pid") == 0) {
		if (number(s, &d) < 0)
			return -1;
		*(key[0] == 'v' ? &h->version : &h->pid) = d >= 0 && d < 1e9 ? (long)d : -1;
		return 0;
	}
	return skip_value(s);
}

static int document(struct sv *s, struct statusview_header *h, const struct sv_cb *cb)
{
	char key[STATUSVIEW_STR];
	int seen = 0;

	if (expect(s, '{') < 0)
		return -1;
	if (!eat(s, '}')) {
		do {
			if (string(s, key, sizeof(key)) < 0 || expect(s, ':') < 0 ||
			    doc_member(s, key, h, cb, &seen) < 0)
				return -1;
		} while (eat(s, ','));
		if (expect(s, '}') < 0)
			return -1;
	}
	ws(s);
	if (s->p < s->end)
		return sv_fail(s, "text after the document");
	if (h->version < 0)
		return sv_fail(s, "no \"version\"");
	if (h->version != 1)
		return sv_fail(s, "version %ld is not 1", h->version);
	if (!seen)
		return sv_fail(s, "no \"connections\"");
	return 0;
}

int statusview_parse(const char *text, size_t len, struct statusview_header *h,
                     void (*fn)(const struct statusview_row *row, void *arg), void *arg, char *err,
                     size_t errlen)
{
	struct sv s = {text, text, text + len, 0, err, errlen, 0};
	struct sv_cb cb = {fn, arg};

	memset(h, 0, sizeof(*h));
	h->version = -1;
	h->pid = -1;
	if (errlen)
		err[0] = '\0';
	return document(&s, h, &cb);
}

/* ---- the table ------------------------------------------------------------------- */

static const char *const sv_titles[SV_COLS] = {"State", "Rule",   "Local", "Remote",
                                               "Idle",  "Probes", "RTT",   "Verdict"};

struct sv_table {
	FILE *out;
	int width[SV_COLS];
	int printing; /* 0: measuring the widths, 1: printing rows */
};

/* Copies s for the terminal: control characters and non-ASCII bytes become '?'. */
static void cell_str(char *cell, size_t len, const char *s)
{
	size_t i;

	if (!s[0])
		s = "-";
	for (i = 0; s[i] && i + 1 < len; i++)
		cell[i] = (unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f ? '?' : s[i];
	cell[i] = '\0';
}

static void row_cells(const struct statusview_row *r, char cells[SV_COLS][STATUSVIEW_STR * 2])
{
	const size_t n = STATUSVIEW_STR * 2;
	char v[STATUSVIEW_STR];

	cell_str(cells[0], n, r->state);
	cell_str(cells[1], n, r->rule);
	cell_str(cells[2], n, r->local);
	cell_str(cells[3], n, r->remote);
	if (r->has_idle)
		snprintf(cells[4], n, "%.1fs", r->idle);
	else
		snprintf(cells[4], n, "-");
	if (r->probes >= 0)
		snprintf(cells[5], n, "%ld", r->probes);
	else
		snprintf(cells[5], n, "-");
	if (r->has_rtt)
		snprintf(cells[6], n, "%.3fms", r->rtt_ms);
	else
		snprintf(cells[6], n, "-");
	cell_str(v, sizeof(v), r->verdict);
	if (r->verdict[0] && r->has_verdict_age)
		snprintf(cells[7], n, "%s (%.1fs ago)", v, r->verdict_age);
	else
		snprintf(cells[7], n, "%s", v);
}

static void print_cells(struct sv_table *t, char cells[SV_COLS][STATUSVIEW_STR * 2])
{
	int i;

	for (i = 0; i < SV_COLS - 1; i++)
		fprintf(t->out, "%-*s  ", t->width[i], cells[i]);
	fprintf(t->out, "%s\n", cells[SV_COLS - 1]);
}

static void table_row(const struct statusview_row *r, void *arg)
{
	struct sv_table *t = arg;
	char cells[SV_COLS][STATUSVIEW_STR * 2];
	int i, w;

	row_cells(r, cells);
	if (t->printing) {
		print_cells(t, cells);
		return;
	}
	for (i = 0; i < SV_COLS; i++) {
		w = (int)strlen(cells[i]);
		if (w > t->width[i])
			t->width[i] = w;
	}
}

/* Reads the whole file (at most SV_MAX_FILE bytes); NULL with errno set. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL, *nb;
	size_t cap = 0, n = 0;

	if (!f)
		return NULL;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			if (cap > (size_t)SV_MAX_FILE || !(nb = realloc(buf, cap))) {
				free(buf);
				fclose(f);
				errno = cap > (size_t)SV_MAX_FILE ? EFBIG : ENOMEM;
				return NULL;
			}
			buf = nb;
		}
		n += fread(buf + n, 1, cap - n, f);
		if (n < cap)
			break;
	}
	if (ferror(f)) {
		free(buf);
		fclose(f);
		errno = EIO;
		return NULL;
	}
	fclose(f);
	*len = n;
	return buf;
}

static void print_table(const char *text, size_t len, const struct statusview_header *h, FILE *out)
{
	struct sv_table t = {out, {0}, 0};
	struct statusview_header h2;
	char cells[SV_COLS][STATUSVIEW_STR * 2], err[8];
	int i;

	for (i = 0; i < SV_COLS; i++) {
		snprintf(cells[i], sizeof(cells[i]), "%s", sv_titles[i]);
		t.width[i] = (int)strlen(sv_titles[i]);
	}
	statusview_parse(text, len, &h2, table_row, &t, err, sizeof(err));
	cell_str(cells[7], sizeof(cells[7]), h->written); /* reused for the header line */
	fprintf(out, "kaprobed state written %s by pid %ld: %zu connection%s\n", cells[7], h->pid,
	        h->nconn, h->nconn == 1 ? "" : "s");
	snprintf(cells[7], sizeof(cells[7]), "%s", sv_titles[7]);
	print_cells(&t, cells);
	t.printing = 1;
	statusview_parse(text, len, &h2, table_row, &t, err, sizeof(err));
}

int statusview_print(const char *path, FILE *out, FILE *errf)
{
	struct statusview_header h;
	char err[256];
	char *text;
	size_t len = 0;

	if (!path[0]) {
		fprintf(errf, "kaprobed: no state file: state_file is none in the configuration\n");
		return 1;
	}
	text = slurp(path, &len);
	if (!text) {
		fprintf(errf, "kaprobed: cannot read the state file %s: %s%s\n", path,
		        strerror(errno),
		        errno == ENOENT ? " (is kaprobed running? it writes the file every "
		                          "state_interval and on SIGUSR2)"
		                        : "");
		return 1;
	}
	if (statusview_parse(text, len, &h, NULL, NULL, err, sizeof(err)) < 0) {
		fprintf(errf, "kaprobed: state file %s: %s\n", path, err);
		free(text);
		return 1;
	}
	print_table(text, len, &h, out);
	free(text);
	return 0;
}

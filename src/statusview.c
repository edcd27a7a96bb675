/* statusview.c: `kaprobed -s` (see statusview.h). jansson parses every JSON value; this file
 * walks only the document's outer object and its "connections" array, one connection at a
 * time, so that memory stays that of the file, not of a million-object tree. Then a table
 * printed in two passes (widths, then rows). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "statusview.h"

#define SV_MAX_FILE (1024L * 1024 * 1024) /* a million connections take ~200 MB */
#define SV_COLS     8
/* One value at a time; integers as reals (pid, version and counts are compared as doubles). */
#define SV_JSON_FLAGS (JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_DECODE_INT_AS_REAL)

struct sv {
	const char *start, *p, *end;
	char *err;
	size_t errlen;
	int failed;
};

static int sv_fail(struct sv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records the first error, "truncated" when it is at the end of the text. */
static int sv_fail(struct sv *s, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	size_t i;

	if (!s->failed) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		for (i = 0; msg[i]; i++) /* jansson quotes the input: keep the terminal safe */
			if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] >= 0x7f)
				msg[i] = '?';
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

/* The next JSON value, parsed by jansson; s->p moves past it. NULL on error (recorded). */
static json_t *value(struct sv *s)
{
	json_error_t e;
	json_t *v;

	ws(s);
	v = json_loadb(s->p, (size_t)(s->end - s->p), SV_JSON_FLAGS, &e);
	if (e.position > 0 && (size_t)e.position <= (size_t)(s->end - s->p))
		s->p += e.position;
	if (v)
		return v;
	if (json_error_code(&e) == json_error_premature_end_of_input)
		s->p = s->end;
	if (json_error_code(&e) == json_error_stack_overflow)
		sv_fail(s, "nested too deep");
	else
		sv_fail(s, "%s", e.text);
	return NULL;
}

/* A string value into out: non-ASCII characters become '?', cut to outlen - 1 bytes. */
static void copy_ascii(char *out, size_t outlen, const json_t *v)
{
	const unsigned char *in = (const unsigned char *)json_string_value(v);
	size_t i, n = 0, len = json_string_length(v);

	for (i = 0; i < len && n + 1 < outlen; i++) {
		if (in[i] < 0x80)
			out[n++] = (char)in[i];
		else if (in[i] >= 0xc0) /* a UTF-8 lead byte; continuation bytes are skipped */
			out[n++] = '?';
	}
	out[n] = '\0';
}

/* A member key: the next value, which must be a string. */
static json_t *key(struct sv *s)
{
	json_t *k;

	ws(s);
	if (s->p >= s->end || *s->p != '"') {
		sv_fail(s, "expected a string");
		return NULL;
	}
	k = value(s);
	if (k && expect(s, ':') < 0) {
		json_decref(k);
		return NULL;
	}
	return k;
}

/* Connection member name (o's member) into out: a string, or null (empty) when nullable. */
static int row_string(struct sv *s, const json_t *o, const char *name, char *out, size_t outlen,
                      int nullable)
{
	const json_t *v = json_object_get(o, name);

	out[0] = '\0';
	if (!v || (nullable && json_is_null(v)))
		return 0;
	if (!json_is_string(v))
		return sv_fail(s, "expected a string in \"%s\"", name);
	copy_ascii(out, outlen, v);
	return 0;
}

/* Connection member name: a number or null; *has says which. */
static int row_number(struct sv *s, const json_t *o, const char *name, double *out, bool *has)
{
	const json_t *v = json_object_get(o, name);

	*has = false;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return sv_fail(s, "expected a number in \"%s\"", name);
	*out = json_number_value(v);
	*has = true;
	return 0;
}

/* One connection object into r (members of a newer writer are ignored). */
static int row(struct sv *s, const json_t *o, struct statusview_row *r)
{
	double d = 0;
	bool has;

	memset(r, 0, sizeof(*r));
	if (row_string(s, o, "rule", r->rule, sizeof(r->rule), 0) < 0 ||
	    row_string(s, o, "local", r->local, sizeof(r->local), 0) < 0 ||
	    row_string(s, o, "remote", r->remote, sizeof(r->remote), 0) < 0 ||
	    row_string(s, o, "state", r->state, sizeof(r->state), 0) < 0 ||
	    row_string(s, o, "last_verdict", r->verdict, sizeof(r->verdict), 1) < 0 ||
	    row_string(s, o, "stall", r->stall, sizeof(r->stall), 1) < 0 ||
	    row_string(s, o, "side", r->side, sizeof(r->side), 1) < 0 ||
	    row_number(s, o, "idle", &r->idle, &r->has_idle) < 0 ||
	    row_number(s, o, "rtt_ms", &r->rtt_ms, &r->has_rtt) < 0 ||
	    row_number(s, o, "verdict_age", &r->verdict_age, &r->has_verdict_age) < 0 ||
	    row_number(s, o, "probes_out", &d, &has) < 0)
		return -1;
	r->probes = has && d >= 0 && d < 1e9 ? (long)d : -1;
	return 0;
}

struct sv_cb {
	void (*fn)(const struct statusview_row *row, void *arg);
	void *arg;
};

/* One element of "connections", handed to the callback. */
static int conn(struct sv *s, struct statusview_header *h, const struct sv_cb *cb)
{
	struct statusview_row r;
	const char *at, *after;
	json_t *o;
	int rc;

	ws(s);
	at = s->p;
	if (!(o = value(s)))
		return -1;
	if (!json_is_object(o)) {
		s->p = at;
		json_decref(o);
		return sv_fail(s, "expected '{'");
	}
	after = s->p;
	s->p = at; /* a member of the wrong type is reported at the object */
	rc = row(s, o, &r);
	s->p = after;
	json_decref(o);
	if (rc < 0)
		return -1;
	h->nconn++;
	if (cb->fn)
		cb->fn(&r, cb->arg);
	return 0;
}

static int connections(struct sv *s, struct statusview_header *h, const struct sv_cb *cb)
{
	if (expect(s, '[') < 0)
		return -1;
	if (eat(s, ']'))
		return 0;
	do {
		if (conn(s, h, cb) < 0)
			return -1;
	} while (eat(s, ','));
	return expect(s, ']');
}

/* A header member: "written", "version" or "pid"; anything else is skipped. */
static int header_member(struct sv *s, const char *name, struct statusview_header *h)
{
	const char *at, *after;
	json_t *v;
	double d;
	int rc = 0;

	ws(s);
	at = s->p;
	if (!(v = value(s)))
		return -1;
	after = s->p;
	s->p = at; /* a value of the wrong type is reported where it starts */
	if (strcmp(name, "written") == 0) {
		if (json_is_string(v))
			copy_ascii(h->written, sizeof(h->written), v);
		else
			rc = sv_fail(s, "expected a string in \"written\"");
	} else if (strcmp(name, "version") == 0 || strcmp(name, "pid") == 0) {
		d = json_number_value(v);
		if (!json_is_number(v))
			rc = sv_fail(s, "expected a number in \"%s\"", name);
		else
			*(name[0] == 'v' ? &h->version : &h->pid) =
			    d >= 0 && d < 1e9 ? (long)d : -1;
	}
	s->p = after;
	json_decref(v);
	return rc;
}

static int doc_member(struct sv *s, struct statusview_header *h, const struct sv_cb *cb, int *seen)
{
	json_t *k = key(s);
	int rc;

	if (!k)
		return -1;
	if (strcmp(json_string_value(k), "connections") == 0) {
		*seen = 1;
		rc = connections(s, h, cb);
	} else {
		rc = header_member(s, json_string_value(k), h);
	}
	json_decref(k);
	return rc;
}

static int document(struct sv *s, struct statusview_header *h, const struct sv_cb *cb)
{
	int seen = 0;

	if (expect(s, '{') < 0)
		return -1;
	if (!eat(s, '}')) {
		do {
			if (doc_member(s, h, cb, &seen) < 0)
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
	struct sv s = {text, text, text + len, err, errlen, 0};
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
	if (r->side[0]) { /* a gateway record: which end it probes */
		cell_str(v, sizeof(v), r->side);
		snprintf(cells[0] + strlen(cells[0]), n - strlen(cells[0]), " (%.16s)", v);
	}
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
	if (r->verdict[0] && r->has_verdict_age && r->stall[0])
		snprintf(cells[7], n, "%s (%.1fs ago, stall %.32s)", v, r->verdict_age, r->stall);
	else if (r->verdict[0] && r->has_verdict_age)
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

/* The table: the header line, the titles and the rows (t's widths measured already). */
static void print_table(const char *text, size_t len, const struct statusview_header *h,
                        struct sv_table *t)
{
	struct statusview_header h2;
	char cells[SV_COLS][STATUSVIEW_STR * 2], err[8];
	int i;

	cell_str(cells[0], sizeof(cells[0]), h->written);
	fprintf(t->out, "kaprobed state written %s by pid %ld: %zu connection%s\n", cells[0],
	        h->pid, h->nconn, h->nconn == 1 ? "" : "s");
	for (i = 0; i < SV_COLS; i++)
		snprintf(cells[i], sizeof(cells[i]), "%s", sv_titles[i]);
	print_cells(t, cells);
	t->printing = 1;
	statusview_parse(text, len, &h2, table_row, t, err, sizeof(err));
}

int statusview_print(const char *path, FILE *out, FILE *errf)
{
	struct sv_table t = {out, {0}, 0};
	struct statusview_header h;
	char err[256];
	char *text;
	size_t len = 0;
	int i;

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
	for (i = 0; i < SV_COLS; i++)
		t.width[i] = (int)strlen(sv_titles[i]);
	/* The first pass checks the whole file and measures the columns, the second prints. */
	if (statusview_parse(text, len, &h, table_row, &t, err, sizeof(err)) < 0) {
		fprintf(errf, "kaprobed: state file %s: %s\n", path, err);
		free(text);
		return 1;
	}
	print_table(text, len, &h, &t);
	free(text);
	return 0;
}

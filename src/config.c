/* config.c: the INI file -> struct config, every value range-checked (pure: parses text).
 *
 * Every key is one line of keys[]: its name, the sections it may appear in, its
 * setter (which parses and range-checks the value), the limits and the field its
 * value goes to. The parser walks that table: to find a key, to store its value,
 * and to give a rule each key it leaves out from [global] (inherit()).
 *
 * inih (Debian's libinih 55) splits "key = value" lines and strips comments; it
 * reads the text through cfg_reader(), which counts lines (so every error gets
 * its FILE:LINE), recognises section headers itself (inih cuts section names at
 * 49 characters and never reports an empty section) and turns every line inih
 * would reject or cut into a blank line after reporting it. Errors are kept in
 * line order; all of them are collected, up to CONFIG_MAX_ERRORS. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* inih's line buffer; the longest accepted line is 2 bytes shorter ('\n', NUL). */
#define LINE_BUF      (CONFIG_PATH_MAX + 256)
#define DUR_MIN       0.1
#define DUR_MAX       32767.0
#define DUR_RANGE     "100ms..32767s"
#define DUR_HELP      "use e.g. 30, 30s, 500ms, 1.5s, 2m or 2h"
#define VALUE_SHOW    64 /* longest value quoted in full in a message */
#define IFNAME_MAX    15
#define IFNAME_CHARS  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-@:"
#define SECTION_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
#define SPACES        " \t\v\f\r"
#define PERIOD_MAX    86400.0
#define PERIOD_RANGE  "0 (off) or 1s..24h"
#define USER_CHARS    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

/* ---- the keys ---------------------------------------------------------------- */

enum { IN_GLOBAL = 1, IN_RULE = 2 };

struct parser;
struct key;

/* Parses and checks value v of key k; stores it at dst only when it is valid. */
typedef void key_setter(struct parser *p, const struct key *k, const char *v, void *dst);

struct key {
	const char *name;
	int where;         /* IN_GLOBAL, IN_RULE or both */
	size_t goff, roff; /* the field in struct config ([global]) and in struct rule */
	size_t size;       /* of the field (the same type at both levels) */
	key_setter *set;
	double lo, hi;            /* limits of the value (setters of numbers) */
	const char *range;        /* the limits as out-of-range messages give them */
	const char *const *names; /* set_choice: the values, an index each (NULL-ended) */
	bool required;            /* a rule (of its mode) without it is an error */
	int modes;                /* rule keys of one mode only: MODE_BIT(RULE_MODE_*) (in a rule
	                             of another mode it is an error); 0: every mode */
	size_t own;               /* when neither the rule nor [global] sets it: this field
	                             of the rule (set before, by an earlier key); 0: none */
};

#define FIELD_SIZE(type, f) sizeof(((type *)0)->f)
/* Where a key's value goes: [global] only, rules only, or both ([global] giving the
 * rules' default: the same field in struct config and struct rule, or in their
 * struct fsm_params, which the host's kernel settings fill when [global] does not). */
#define AT_GLOBAL(f)                                                                               \
	.where = IN_GLOBAL, .goff = offsetof(struct config, f), .size = FIELD_SIZE(struct config, f)
#define AT_RULE(f)                                                                                 \
	.where = IN_RULE, .roff = offsetof(struct rule, f), .size = FIELD_SIZE(struct rule, f)
#define AT_BOTH(f)                                                                                 \
	.where = IN_GLOBAL | IN_RULE, .goff = offsetof(struct config, f),                          \
	.roff = offsetof(struct rule, f), .size = FIELD_SIZE(struct rule, f)
#define PARAM(f)                                                                                   \
	.where = IN_GLOBAL | IN_RULE, .goff = offsetof(struct config, defaults.f),                 \
	.roff = offsetof(struct rule, params.f), .size = FIELD_SIZE(struct fsm_params, f)
/* The kinds of value. */
#define DURATION .set = set_duration, .lo = DUR_MIN, .hi = DUR_MAX, .range = DUR_RANGE
#define PERIOD   .set = set_duration_or_off, .lo = 1.0, .hi = PERIOD_MAX, .range = PERIOD_RANGE
#define DURATION_OR_OFF                                                                            \
	.set = set_duration_or_off, .lo = DUR_MIN, .hi = DUR_MAX, .range = "0 (off) or " DUR_RANGE
#define INT(a, b)       .set = set_int, .lo = (a), .hi = (b)
#define LONG(a, b)      .set = set_long, .lo = (a), .hi = (b)
#define SIZE(a, b)      .set = set_size, .lo = (a), .hi = (b)
#define CHOICE(n, text) .set = set_choice, .names = (n), .range = (text)
/* Rule keys of one mode (enum rule_mode) only. */
#define MODE_BIT(m)  (1 << (m))
#define ONLY_LOCAL   .modes = MODE_BIT(RULE_MODE_LOCAL)
#define ONLY_GATEWAY .modes = MODE_BIT(RULE_MODE_GATEWAY)
#define MODE_UNSET   (-1) /* struct rule.mode until the rule ends (then local by default) */

static key_setter set_interface, set_log_file, set_choice, set_duration, set_duration_or_off,
    set_int, set_long, set_size, set_bool, set_user, set_opt_path, set_pattern, set_actions,
    set_actions_log;

static const char *const level_names[] = {[CONFIG_LOG_ERROR] = "error",
                                          [CONFIG_LOG_WARNING] = "warning",
                                          [CONFIG_LOG_INFO] = "info",
                                          [CONFIG_LOG_DEBUG] = "debug",
                                          NULL};
static const char *const format_names[] = {
    [CONFIG_FMT_LOGFMT] = "logfmt", [CONFIG_FMT_JSON] = "json", NULL};
static const char *const alive_names[] = {"changes", "every", NULL};
static const char *const mode_names[] = {
    [RULE_MODE_LOCAL] = "local", [RULE_MODE_GATEWAY] = "gateway", NULL};

/* Every key. Rules inherit keys in this order: a key's `own` field comes from an earlier key. */
static const struct key keys[] = {
    {"interface", AT_GLOBAL(interface), .set = set_interface},
    {"log_file", AT_GLOBAL(log_file), .set = set_log_file},
    {"log_level", AT_GLOBAL(log_level), CHOICE(level_names, "one of error, warning, info, debug")},
    {"log_format", AT_GLOBAL(log_format), CHOICE(format_names, "logfmt or json")},
    {"log_alive", AT_GLOBAL(log_alive_every), CHOICE(alive_names, "changes or every")},
    {"syslog", AT_GLOBAL(syslog), .set = set_bool},
    {"journal", AT_GLOBAL(journal), .set = set_bool},
    {"user", AT_GLOBAL(user), .set = set_user},
    {"summary_interval", AT_GLOBAL(summary_interval), PERIOD},
    {"state_file", AT_GLOBAL(state_file), .set = set_opt_path},
    {"state_interval", AT_GLOBAL(state_interval), PERIOD},
    {"metrics_file", AT_GLOBAL(metrics_file), .set = set_opt_path},
    {"metrics_interval", AT_GLOBAL(metrics_interval), PERIOD},
    {"action_timeout", AT_GLOBAL(action_timeout), DURATION},
    {"discover_interval", AT_GLOBAL(discover_interval), PERIOD},
    {"max_connections", AT_GLOBAL(max_connections), LONG(1, CONFIG_MAX_CONNECTIONS)},
    {"skip_kernel_keepalive", AT_GLOBAL(skip_kernel_keepalive), .set = set_bool},
    {"gateway_drop_answers", AT_GLOBAL(gateway_drop_answers), .set = set_bool},
    {"max_probe_rate", AT_GLOBAL(max_probe_rate),
     LONG(CONFIG_PROBE_RATE_MIN, CONFIG_PROBE_RATE_MAX)},
    {"capture_buffer", AT_GLOBAL(capture_buffer),
     SIZE(CONFIG_CAPTURE_BUFFER_MIN, CONFIG_CAPTURE_BUFFER_MAX)},
    {"idle", PARAM(idle), DURATION},
    {"interval", PARAM(interval), DURATION},
    {"probes", PARAM(probes), INT(1, 127)},
    {"probe_bytes", PARAM(probe_bytes), INT(0, 1), .range = "0 or 1"},
    {"stall_timeout", PARAM(stall_timeout), DURATION_OR_OFF},
    {"observe", PARAM(observe), .set = set_bool},
    {"on_dead", AT_BOTH(on_dead), .set = set_actions},
    {"on_reset", AT_BOTH(on_reset), .set = set_actions_log},
    {"on_stall", AT_BOTH(on_stall), .set = set_actions, .own = offsetof(struct rule, on_dead)},
    {"mode", AT_RULE(mode), CHOICE(mode_names, "local or gateway")},
    {"local", AT_RULE(local), .set = set_pattern, .required = true, ONLY_LOCAL},
    {"remote", AT_RULE(remote), .set = set_pattern, .required = true, ONLY_LOCAL},
    {"client", AT_RULE(client), .set = set_pattern, .required = true, ONLY_GATEWAY},
    {"server", AT_RULE(server), .set = set_pattern, .required = true, ONLY_GATEWAY},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* Linux's own defaults, used when the caller passes no host_defaults. */
static const struct fsm_params linux_defaults = {
    .idle = 7200.0, .interval = 75.0, .probes = 9, .probe_bytes = 1};

enum sect_kind {
	S_NONE,   /* before the first section header */
	S_GLOBAL, /* in [global] */
	S_RULE,   /* in rules[cur] */
	S_SKIP,   /* in a section already reported as bad: its keys are ignored */
};

struct pend_rule {
	struct rule r;
	int key_line[NKEYS]; /* line where each key was set, 0 when absent */
};

struct parser {
	const char *file;
	const char *pos; /* next unread byte of the text */
	const char *end; /* the byte after its last */
	int line;        /* line being handled */
	enum sect_kind kind;
	size_t cur; /* rule being filled when kind == S_RULE */
	int global_line;
	int gkey_line[NKEYS];
	struct config *c;
	struct pend_rule *rules;
	size_t nrules, cap;
	bool saw_rule_header, told_too_many, oom;
	struct config_errors *errs;
	int err_line[CONFIG_MAX_ERRORS];
};

/* Adds "FILE:LINE: message", keeping the list sorted by line (stable). */
static void cfg_err(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cfg_err(struct parser *p, int line, const char *fmt, ...)
{
	struct config_errors *e = p->errs;
	va_list ap;
	size_t i;
	int n;

	if (e->n >= CONFIG_MAX_ERRORS) {
		e->dropped++;
		return;
	}
	for (i = e->n; i > 0 && p->err_line[i - 1] > line; i--)
		;
	memmove(&e->msg[i + 1], &e->msg[i], (e->n - i) * sizeof(e->msg[0]));
	memmove(&p->err_line[i + 1], &p->err_line[i], (e->n - i) * sizeof(p->err_line[0]));
	p->err_line[i] = line;
	e->n++;
	n = snprintf(e->msg[i], sizeof(e->msg[i]), "%s:%d: ", p->file, line);
	if (n < 0 || (size_t)n >= sizeof(e->msg[i]))
		return;
	va_start(ap, fmt);
	vsnprintf(e->msg[i] + n, sizeof(e->msg[i]) - (size_t)n, fmt, ap);
	va_end(ap);
}

/* A value as quoted in messages: cut with "..." past VALUE_SHOW characters. */
static const char *shown(const char *v, char *buf, size_t len)
{
	if (strlen(v) <= VALUE_SHOW)
		return v;
	snprintf(buf, len, "%.*s...", VALUE_SHOW, v);
	return buf;
}

static const char *sect_name(const struct parser *p)
{
	return p->kind == S_RULE ? p->rules[p->cur].r.name : "global";
}

/* ---- values ---------------------------------------------------------------- */

static int unit_scale(const char *unit, double *mul, double *div)
{
	static const struct {
		const char *name;
		double mul, div;
	} units[] = {{"", 1, 1}, {"ms", 1, 1000}, {"s", 1, 1}, {"m", 60, 1}, {"h", 3600, 1}};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(unit, units[i].name) == 0) {
			*mul = units[i].mul;
			*div = units[i].div;
			return 0;
		}
	}
	return -1;
}

int config_parse_duration(const char *text, double *seconds)
{
	static const char digits[] = "0123456789";
	char num[64];
	size_t n, frac = 0;
	double mul, div, v;
	char *end;

	if (!text || (n = strspn(text, digits)) == 0)
		return -1;
	if (text[n] == '.' && (frac = strspn(text + n + 1, digits)) == 0)
		return -1;
	if (frac)
		n += frac + 1;
	if (unit_scale(text + n, &mul, &div) < 0 || (frac && text[n] == '\0'))
		return -1;
	if (n >= sizeof(num))
		return -1;
	memcpy(num, text, n);
	num[n] = '\0';
	errno = 0;
	v = strtod(num, &end);
	if (end != num + n || errno || !isfinite(v))
		return -1;
	*seconds = v * mul / div;
	return 0;
}

/* A duration in k->lo..k->hi, or 0 when off_ok. */
static void duration(struct parser *p, const struct key *k, const char *v, double *dst, bool off_ok)
{
	char buf[VALUE_SHOW + 4];
	double s;

	if (config_parse_duration(v, &s) < 0) {
		cfg_err(p, p->line, "%s: \"%s\" is not a duration (%s)", k->name,
		        shown(v, buf, sizeof(buf)), DUR_HELP);
		return;
	}
	if ((s != 0.0 || !off_ok) && (s < k->lo || s > k->hi)) {
		cfg_err(p, p->line, "%s: %s is out of range (%s)", k->name,
		        shown(v, buf, sizeof(buf)), k->range);
		return;
	}
	*dst = s;
}

static void set_duration(struct parser *p, const struct key *k, const char *v, void *dst)
{
	duration(p, k, v, dst, false);
}

/* 0 turns it off. */
static void set_duration_or_off(struct parser *p, const struct key *k, const char *v, void *dst)
{
	duration(p, k, v, dst, true);
}

/* An optional '-' and digits, nothing else (too large: LONG_MAX, out of every range). */
static int parse_long(const char *v, long *out)
{
	const char *d = v + (v[0] == '-');
	size_t n = strspn(d, "0123456789");
	char *end;

	if (n == 0 || d[n] != '\0')
		return -1;
	errno = 0;
	*out = strtol(v, &end, 10);
	if (*end != '\0')
		return -1;
	if (errno == ERANGE)
		*out = v[0] == '-' ? -1 : LONG_MAX;
	return 0;
}

/* A whole number in k->lo..k->hi (shown as k->range, else as "LO..HI"); 0 or -1. */
static int whole(struct parser *p, const struct key *k, const char *v, long *n)
{
	char buf[VALUE_SHOW + 4];

	if (parse_long(v, n) < 0) {
		cfg_err(p, p->line, "%s: \"%s\" is not a whole number", k->name,
		        shown(v, buf, sizeof(buf)));
		return -1;
	}
	if (*n >= k->lo && *n <= k->hi)
		return 0;
	if (k->range)
		cfg_err(p, p->line, "%s: %s is out of range (%s)", k->name,
		        shown(v, buf, sizeof(buf)), k->range);
	else
		cfg_err(p, p->line, "%s: %s is out of range (%ld..%ld)", k->name,
		        shown(v, buf, sizeof(buf)), (long)k->lo, (long)k->hi);
	return -1;
}

static void set_int(struct parser *p, const struct key *k, const char *v, void *dst)
{
	long n;

	if (whole(p, k, v, &n) == 0)
		*(int *)dst = (int)n;
}

static void set_long(struct parser *p, const struct key *k, const char *v, void *dst)
{
	long n;

	if (whole(p, k, v, &n) == 0)
		*(long *)dst = n;
}

/* The multiplier of a size suffix: k, M or G (powers of 1024); 0 when unknown. */
static long size_suffix(char c)
{
	switch (c) {
	case 'k':
	case 'K':
		return 1L << 10;
	case 'm':
	case 'M':
		return 1L << 20;
	case 'g':
	case 'G':
		return 1L << 30;
	default:
		return 0;
	}
}

/* A size in bytes: a whole number with an optional k, M or G (powers of 1024). */
static void set_size(struct parser *p, const struct key *k, const char *v, void *dst)
{
	long min = (long)k->lo, max = (long)k->hi, mult = 1;
	char buf[VALUE_SHOW + 4], *end;
	long long val;

	errno = 0;
	val = strtoll(v, &end, 10);
	if (end != v && *end && !end[1] && size_suffix(*end))
		mult = size_suffix(*end++);
	if (end == v || *end || errno || !isdigit((unsigned char)v[0])) {
		cfg_err(p, p->line, "%s: \"%s\" is not a size (e.g. 8M, 64k, 65536)", k->name,
		        shown(v, buf, sizeof(buf)));
		return;
	}
	if (val > max / mult || val * mult < min) {
		cfg_err(p, p->line, "%s: %s is out of range (%ldk..%ldM)", k->name,
		        shown(v, buf, sizeof(buf)), min >> 10, max >> 20);
		return;
	}
	*(long *)dst = (long)(val * mult);
}

/* One of k->names, stored as its index: in an int (an enum) or a bool field. */
static void set_choice(struct parser *p, const struct key *k, const char *v, void *dst)
{
	char buf[VALUE_SHOW + 4];

	for (int i = 0; k->names[i]; i++) {
		if (strcmp(v, k->names[i]) != 0)
			continue;
		if (k->size == sizeof(bool))
			*(bool *)dst = i != 0;
		else
			*(int *)dst = i;
		return;
	}
	cfg_err(p, p->line, "%s: \"%s\" is not %s", k->name, shown(v, buf, sizeof(buf)), k->range);
}

/* A path, or "none" (stored as ""). */
static void set_log_file(struct parser *p, const struct key *k, const char *v, void *dst)
{
	if (strlen(v) >= k->size) {
		cfg_err(p, p->line, "%s: path is too long (at most %zu characters)", k->name,
		        k->size - 1);
		return;
	}
	if (strcmp(v, "none") == 0)
		*(char *)dst = '\0';
	else
		snprintf(dst, k->size, "%s", v);
}

/* True when the comma-separated list holds the name of len bytes. */
static bool list_has(const char *list, const char *name, size_t len)
{
	while (*list) {
		size_t n = strcspn(list, ",");

		if (n == len && memcmp(list, name, len) == 0)
			return true;
		list += n + (list[n] == ',');
	}
	return false;
}

/* Checks one interface name (len bytes, trimmed) and appends it to list. */
static int add_ifname(struct parser *p, const struct key *k, const char *name, size_t len,
                      char *list, size_t size)
{
	const char *key = k->name;
	size_t used = strlen(list);

	if (len == 0)
		cfg_err(p, p->line, "%s: empty name in the list", key);
	else if (len > IFNAME_MAX)
		cfg_err(p, p->line, "%s: \"%.*s\" is longer than %d characters", key,
		        (int)(len > VALUE_SHOW ? VALUE_SHOW : len), name, IFNAME_MAX);
	else if (strspn(name, IFNAME_CHARS) < len)
		cfg_err(p, p->line, "%s: \"%.*s\" has a character other than %s", key, (int)len,
		        name, "A-Z a-z 0-9 . _ - @ :");
	else if (len == 3 && memcmp(name, "any", 3) == 0)
		cfg_err(p, p->line, "%s: \"any\" cannot be combined with other names", key);
	else if (list_has(list, name, len))
		cfg_err(p, p->line, "%s: \"%.*s\" is listed twice", key, (int)len, name);
	else if (used + (used > 0) + len >= size)
		cfg_err(p, p->line, "%s: the list is too long (at most %zu characters)", key,
		        size - 1);
	else {
		snprintf(list + used, size - used, "%s%.*s", used ? "," : "", (int)len, name);
		return 0;
	}
	return -1;
}

/* "any", or a comma-separated list of interface names. */
static void set_interface(struct parser *p, const struct key *k, const char *v, void *dst)
{
	char list[sizeof(p->c->interface)] = "";

	if (strcmp(v, "any") == 0) {
		snprintf(dst, k->size, "any");
		return;
	}
	for (;;) {
		size_t n = strcspn(v, ","), lead = strspn(v, SPACES);
		size_t len = lead < n ? n - lead : 0;

		while (len > 0 && isspace((unsigned char)v[lead + len - 1]))
			len--;
		if (add_ifname(p, k, v + lead, len, list, sizeof(list)) < 0)
			return;
		if (v[n] == '\0')
			break;
		v += n + 1;
	}
	snprintf(dst, k->size, "%s", list);
}

static void set_pattern(struct parser *p, const struct key *k, const char *v, void *dst)
{
	char buf[VALUE_SHOW + 4];
	const char *err = "invalid pattern";

	if (rule_pattern_parse(v, dst, &err) < 0)
		cfg_err(p, p->line, "%s: \"%s\": %s", k->name, shown(v, buf, sizeof(buf)), err);
}

static void set_bool(struct parser *p, const struct key *k, const char *v, void *dst)
{
	char buf[VALUE_SHOW + 4];

	if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		*(bool *)dst = true;
	else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
		*(bool *)dst = false;
	else
		cfg_err(p, p->line, "%s: \"%s\" is not yes or no", k->name,
		        shown(v, buf, sizeof(buf)));
}

/* An unprivileged user name; marks the user as given (user_set). */
static void set_user(struct parser *p, const struct key *k, const char *v, void *dst)
{
	char buf[VALUE_SHOW + 4];
	size_t n = strlen(v);

	if (n >= k->size)
		cfg_err(p, p->line, "%s: \"%s\" is too long (at most %zu characters)", k->name,
		        shown(v, buf, sizeof(buf)), k->size - 1);
	else if (strspn(v, USER_CHARS) < n || v[0] == '-')
		cfg_err(p, p->line, "%s: \"%s\" is not a valid user name", k->name,
		        shown(v, buf, sizeof(buf)));
	else if (strcmp(v, "root") == 0)
		cfg_err(p, p->line, "%s: kaprobed never runs as root; name an unprivileged user",
		        k->name);
	else {
		snprintf(dst, k->size, "%s", v);
		p->c->user_set = true;
	}
}

/* An absolute path, or "none" (stored as ""). */
static void set_opt_path(struct parser *p, const struct key *k, const char *v, void *dst)
{
	char buf[VALUE_SHOW + 4];

	if (strcmp(v, "none") == 0)
		*(char *)dst = '\0';
	else if (v[0] != '/')
		cfg_err(p, p->line, "%s: \"%s\" is not an absolute path (or none)", k->name,
		        shown(v, buf, sizeof(buf)));
	else if (strlen(v) >= k->size)
		cfg_err(p, p->line, "%s: path is too long (at most %zu characters)", k->name,
		        k->size - 1);
	else
		snprintf(dst, k->size, "%s", v);
}

/* Index (1-based) of an exec: target, added to the config's table when new; 0 on error. */
static uint8_t exec_index(struct parser *p, const char *key, const char *path, size_t len)
{
	struct config *c = p->c;

	if (len == 0 || path[0] != '/') {
		cfg_err(p, p->line, "%s: exec: needs an absolute path (exec:/path/to/program)",
		        key);
		return 0;
	}
	if (len >= CONFIG_PATH_MAX) {
		cfg_err(p, p->line, "%s: exec: path is too long", key);
		return 0;
	}
	for (size_t i = 0; i < c->nexec; i++) {
		if (strlen(c->exec_paths[i]) == len && memcmp(c->exec_paths[i], path, len) == 0)
			return (uint8_t)(i + 1);
	}
	if (c->nexec >= CONFIG_MAX_EXEC) {
		cfg_err(p, p->line, "%s: too many different exec: programs (at most %d)", key,
		        CONFIG_MAX_EXEC);
		return 0;
	}
	snprintf(c->exec_paths[c->nexec], CONFIG_PATH_MAX, "%.*s", (int)len, path);
	return (uint8_t)++c->nexec;
}

/* The bit of a named action or of exec:PATH (len bytes): 0 when it is neither, -1 after
 * reporting one this key cannot have. */
static int action_bit(struct parser *p, const char *key, bool dead, const char *it, size_t len,
                      struct rule_actions *a)
{
	static const struct {
		const char *name;
		int bit;
		bool dead_only;
	} acts[] = {{"log", RULE_ACT_LOG, false},
	            {"close", RULE_ACT_CLOSE, true},
	            {"rst", RULE_ACT_RST, true},
	            {"flush", RULE_ACT_FLUSH, true}};

	for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) {
		if (strlen(acts[i].name) != len || memcmp(it, acts[i].name, len) != 0)
			continue;
		if (!acts[i].dead_only || dead)
			return acts[i].bit;
		cfg_err(p, p->line, "%s: \"%s\" is for on_dead only (use log or exec:PATH)", key,
		        acts[i].name);
		return -1;
	}
	if (len < 5 || memcmp(it, "exec:", 5) != 0)
		return 0;
	if (a->mask & RULE_ACT_EXEC) {
		cfg_err(p, p->line, "%s: only one exec: action per key", key);
		return -1;
	}
	if (!(a->exec = exec_index(p, key, it + 5, len - 5)))
		return -1;
	return RULE_ACT_EXEC;
}

/* One item of an actions list (len bytes, trimmed) into a; -1 on error. */
static int add_action(struct parser *p, const char *key, bool dead, const char *it, size_t len,
                      struct rule_actions *a)
{
	int bit = action_bit(p, key, dead, it, len, a);

	if (bit < 0)
		return -1;
	if (!bit) {
		cfg_err(p, p->line, "%s: \"%.*s\" is not one of %s", key,
		        (int)(len > VALUE_SHOW ? VALUE_SHOW : len), it,
		        dead ? "log, close, rst, flush, exec:PATH" : "log, exec:PATH");
		return -1;
	}
	if (a->mask & bit & ~RULE_ACT_EXEC) {
		cfg_err(p, p->line, "%s: \"%.*s\" is listed twice", key, (int)len, it);
		return -1;
	}
	a->mask |= (uint8_t)bit;
	return 0;
}

/* "log", "close, exec:/usr/local/bin/page-oncall", ...; close and rst only when dead. */
static void actions(struct parser *p, const char *key, bool dead, const char *v,
                    struct rule_actions *dst)
{
	struct rule_actions a = {0, 0};

	for (;;) {
		size_t n = strcspn(v, ","), lead = strspn(v, SPACES);
		size_t len = lead < n ? n - lead : 0;

		while (len > 0 && isspace((unsigned char)v[lead + len - 1]))
			len--;
		if (len == 0) {
			cfg_err(p, p->line, "%s: empty item in the list", key);
			return;
		}
		if (add_action(p, key, dead, v + lead, len, &a) < 0)
			return;
		if (v[n] == '\0')
			break;
		v += n + 1;
	}
	*dst = a;
}

/* The actions on a verdict about the peer: log, close, rst, flush, exec:PATH. */
static void set_actions(struct parser *p, const struct key *k, const char *v, void *dst)
{
	actions(p, k->name, true, v, dst);
}

/* The actions on a verdict the peer gave itself (reset): log, exec:PATH. */
static void set_actions_log(struct parser *p, const struct key *k, const char *v, void *dst)
{
	actions(p, k->name, false, v, dst);
}

/* ---- lines "key = value" ----------------------------------------------------- */

static int key_find(const char *name)
{
	for (size_t k = 0; k < NKEYS; k++) {
		if (strcmp(name, keys[k].name) == 0)
			return (int)k;
	}
	return -1;
}

/* Reports a key that is out of any section, unknown or misplaced; returns its index or -1. */
static int check_key(struct parser *p, const char *name)
{
	char buf[VALUE_SHOW + 4];
	int k = key_find(name);

	if (p->kind == S_NONE)
		cfg_err(p, p->line,
		        "\"%s\" is outside any section: put it under [global] or a rule",
		        shown(name, buf, sizeof(buf)));
	else if (name[0] == '\0')
		cfg_err(p, p->line, "missing key name before '='");
	else if (k < 0)
		cfg_err(p, p->line, "unknown key \"%s\" in [%s]", shown(name, buf, sizeof(buf)),
		        sect_name(p));
	else if (p->kind == S_GLOBAL && !(keys[k].where & IN_GLOBAL))
		cfg_err(p, p->line, "\"%s\" belongs in a rule section, not in [global]", name);
	else if (p->kind == S_RULE && !(keys[k].where & IN_RULE))
		cfg_err(p, p->line, "\"%s\" belongs in [global], not in rule [%s]", name,
		        sect_name(p));
	else
		return k;
	return -1;
}

/* The field of the section being read that key k sets. */
static void *key_field(struct parser *p, const struct key *k)
{
	if (p->kind == S_RULE)
		return (char *)&p->rules[p->cur].r + k->roff;
	return (char *)p->c + k->goff;
}

/* inih's callback for each "key = value": checks the key, then the value. */
static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;
	int *lines;
	int k;

	(void)section; /* inih cuts long names: the reader tracks sections itself */
	if (p->kind == S_SKIP || p->oom || (k = check_key(p, name)) < 0)
		return 1;
	lines = p->kind == S_GLOBAL ? p->gkey_line : p->rules[p->cur].key_line;
	if (lines[k]) {
		cfg_err(p, p->line, "duplicate key \"%s\" in [%s] (first set at line %d)", name,
		        sect_name(p), lines[k]);
		return 1;
	}
	lines[k] = p->line;
	if (value[0] == '\0')
		cfg_err(p, p->line, "%s: missing value", name);
	else
		keys[k].set(p, &keys[k], value, key_field(p, &keys[k]));
	return 1;
}

/* ---- sections -------------------------------------------------------------- */

static struct pend_rule *rule_add(struct parser *p)
{
	if (p->nrules == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct pend_rule *n = realloc(p->rules, cap * sizeof(*n));

		if (!n) {
			p->oom = true;
			cfg_err(p, 0, "out of memory");
			return NULL;
		}
		p->rules = n;
		p->cap = cap;
	}
	memset(&p->rules[p->nrules], 0, sizeof(p->rules[0]));
	return &p->rules[p->nrules++];
}

static void begin_global(struct parser *p)
{
	if (p->global_line) {
		cfg_err(p, p->line, "duplicate section [global] (first at line %d)",
		        p->global_line);
		p->kind = S_SKIP;
		return;
	}
	p->global_line = p->line;
	p->kind = S_GLOBAL;
}

static void begin_rule(struct parser *p, const char *name)
{
	struct pend_rule *pr;

	p->saw_rule_header = true;
	for (size_t i = 0; i < p->nrules; i++) {
		if (strcmp(p->rules[i].r.name, name) == 0) {
			cfg_err(p, p->line, "duplicate section [%s] (first at line %d)", name,
			        p->rules[i].r.line);
			return;
		}
	}
	if (p->nrules >= CONFIG_MAX_RULES) {
		if (!p->told_too_many)
			cfg_err(p, p->line, "too many rules (at most %d)", CONFIG_MAX_RULES);
		p->told_too_many = true;
		return;
	}
	if (!(pr = rule_add(p)))
		return;
	snprintf(pr->r.name, sizeof(pr->r.name), "%s", name);
	pr->r.line = p->line;
	pr->r.mode = MODE_UNSET;
	p->cur = p->nrules - 1;
	p->kind = S_RULE;
}

/* A header "[name]" whose name (len bytes, trimmed) starts at name. */
static bool begin_section(struct parser *p, const char *name, size_t len)
{
	char buf[RULE_NAME_MAX];

	p->kind = S_SKIP;
	if (len == 0) {
		cfg_err(p, p->line, "empty section name \"[]\"");
	} else if (len >= RULE_NAME_MAX) {
		cfg_err(p, p->line, "section name \"%.*s...\" is too long (at most %d characters)",
		        VALUE_SHOW, name, RULE_NAME_MAX - 1);
	} else if (strspn(name, SECTION_CHARS) < len) {
		cfg_err(p, p->line,
		        "invalid section name \"%.*s\": use letters, digits, '_', '.', '-'",
		        (int)len, name);
	} else {
		memcpy(buf, name, len);
		buf[len] = '\0';
		if (strcmp(buf, "global") == 0)
			begin_global(p);
		else
			begin_rule(p, buf);
		return p->kind != S_SKIP;
	}
	p->saw_rule_header = true;
	return false;
}

/* A line starting with '['; returns false when inih must not see it. */
static bool section_line(struct parser *p, const char *s)
{
	const char *close = strchr(s, ']');
	const char *name = s + 1 + strspn(s + 1, SPACES);
	const char *after;
	size_t len;

	if (!close) {
		cfg_err(p, p->line, "section header without a closing ']'");
		p->kind = S_SKIP;
		p->saw_rule_header = true;
		return false;
	}
	after = close + 1 + strspn(close + 1, SPACES);
	len = name < close ? (size_t)(close - name) : 0;
	while (len > 0 && isspace((unsigned char)name[len - 1]))
		len--;
	if (!begin_section(p, name, len))
		return false;
	if (*after && *after != ';' && *after != '#') {
		cfg_err(p, p->line, "unexpected text after the section header");
		return false;
	}
	return true;
}

/* ---- reader ---------------------------------------------------------------- */

/* A "key = value" line: inih needs '=' or ':' before any inline comment. */
static bool pair_line(struct parser *p, const char *s)
{
	bool was_space = false;

	for (; *s; s++) {
		if (*s == '=' || *s == ':')
			return true;
		if (was_space && (*s == ';' || *s == '#'))
			break;
		was_space = isspace((unsigned char)*s);
	}
	cfg_err(p, p->line, "syntax error: expected \"key = value\", a [section] or a comment");
	return false;
}

/* Checks a whole line; returns false when inih must get a blank line instead. */
static bool line_ok(struct parser *p, const char *line)
{
	const char *s = line;

	if (p->line == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;
	s += strspn(s, SPACES);
	if (*s == '\0' || *s == ';' || *s == '#')
		return true;
	if (*s == '[')
		return section_line(p, s);
	return pair_line(p, s);
}

static void too_long(struct parser *p, const char *start, int max)
{
	cfg_err(p, p->line, "line too long (more than %d characters)", max);
	if (start[strspn(start, SPACES)] == '[') {
		p->kind = S_SKIP; /* a header we cannot read: ignore its keys */
		p->saw_rule_header = true;
	}
}

/* inih's fgets: hands over one line of the text (with '\n'), or NULL at its end. A line
 * holding a NUL byte is an error (and handed over blank), not the end of the file. */
static char *cfg_reader(char *str, int num, void *stream)
{
	struct parser *p = stream;
	const char *start = p->pos;
	const char *eol;
	size_t len;

	if (start >= p->end || num < 2)
		return NULL;
	eol = memchr(start, '\n', (size_t)(p->end - start));
	len = eol ? (size_t)(eol - start) : (size_t)(p->end - start);
	p->pos = start + len + (eol != NULL);
	p->line++;
	if (len > 0 && start[len - 1] == '\r')
		len--;
	if (memchr(start, '\0', len)) {
		cfg_err(p, p->line, "NUL byte in the line (the file is not text)");
		len = 0;
	} else if (len > (size_t)num - 2) {
		too_long(p, start, num - 2);
		len = 0;
	}
	memcpy(str, start, len);
	str[len] = '\0';
	if (!line_ok(p, str))
		len = 0;
	str[len] = '\n';
	str[len + 1] = '\0';
	return str;
}

/* ---- inih's settings (process-wide globals in Debian's build) -------------- */

struct ini_settings {
	bool use_stack, allow_realloc, multiline, bom, inline_comments, no_value, stop_first;
	int max_line, initial_alloc;
	char *start_prefixes, *inline_prefixes;
};

static void ini_settings_get(struct ini_settings *s)
{
	s->use_stack = ini_use_stack;
	s->allow_realloc = ini_allow_realloc;
	s->multiline = ini_allow_multiline;
	s->bom = ini_allow_bom;
	s->inline_comments = ini_allow_inline_comments;
	s->no_value = ini_allow_no_value;
	s->stop_first = ini_stop_on_first_error;
	s->max_line = ini_max_line;
	s->initial_alloc = ini_initial_alloc;
	s->start_prefixes = ini_start_comment_prefixes;
	s->inline_prefixes = ini_inline_comment_prefixes;
}

static void ini_settings_set(const struct ini_settings *s)
{
	ini_use_stack = s->use_stack;
	ini_allow_realloc = s->allow_realloc;
	ini_allow_multiline = s->multiline;
	ini_allow_bom = s->bom;
	ini_allow_inline_comments = s->inline_comments;
	ini_allow_no_value = s->no_value;
	ini_stop_on_first_error = s->stop_first;
	ini_max_line = s->max_line;
	ini_initial_alloc = s->initial_alloc;
	ini_start_comment_prefixes = s->start_prefixes;
	ini_inline_comment_prefixes = s->inline_prefixes;
}

/* Heap line buffer of LINE_BUF bytes, no multi-line values, ';' and '#' comments. */
static int run_inih(struct parser *p)
{
	static char start_prefixes[] = ";#", inline_prefixes[] = ";#";
	const struct ini_settings ours = {
	    .use_stack = false, /* so that initial_alloc sets the buffer size */
	    .allow_realloc = false,
	    .multiline = false, /* an indented line is a line of its own */
	    .bom = true,
	    .inline_comments = true,
	    .no_value = false,
	    .stop_first = false,
	    .max_line = LINE_BUF,
	    .initial_alloc = LINE_BUF,
	    .start_prefixes = start_prefixes,
	    .inline_prefixes = inline_prefixes,
	};
	struct ini_settings saved;
	int rc;

	ini_settings_get(&saved);
	ini_settings_set(&ours);
	rc = ini_parse_stream(cfg_reader, p, cfg_handler, p);
	ini_settings_set(&saved);
	return rc;
}

/* ---- the whole file -------------------------------------------------------- */

/* Gives a rule each key it does not set: [global]'s value (or default), or, for a key
 * with an `own` field that [global] does not set either, the rule's own value there. */
static void inherit(struct parser *p, struct pend_rule *pr)
{
	char *r = (char *)&pr->r;

	for (size_t k = 0; k < NKEYS; k++) {
		const struct key *key = &keys[k];
		const char *from = (const char *)p->c + key->goff;

		if (key->where != (IN_GLOBAL | IN_RULE) || pr->key_line[k])
			continue;
		if (key->own && !p->gkey_line[k])
			from = r + key->own;
		memcpy(r + key->roff, from, key->size);
	}
}

/* True when key k may be set in a rule of pr's mode. */
static bool key_in_mode(const struct key *k, const struct pend_rule *pr)
{
	return k->modes == 0 || (k->modes & MODE_BIT(pr->r.mode));
}

/* Reports each key set in a rule of another mode ("local" in a gateway rule); true if any. */
static bool wrong_mode(struct parser *p, const struct pend_rule *pr)
{
	bool bad = false;

	for (size_t k = 0; k < NKEYS; k++) {
		if (!pr->key_line[k] || key_in_mode(&keys[k], pr))
			continue;
		cfg_err(p, pr->key_line[k], "%s: not in a rule with mode = %s (%s)", keys[k].name,
		        mode_names[pr->r.mode],
		        pr->r.mode == RULE_MODE_GATEWAY
		            ? "a gateway rule takes client and server"
		            : "client and server are for mode = gateway; use local and remote");
		bad = true;
	}
	return bad;
}

/* Reports a rule without its required keys, as 'no "local" and no "remote"'; true if so. */
static bool lacks_required(struct parser *p, const struct pend_rule *pr)
{
	char miss[256] = "";

	for (size_t k = 0; k < NKEYS; k++) {
		size_t n = strlen(miss);

		if (keys[k].required && key_in_mode(&keys[k], pr) && !pr->key_line[k])
			snprintf(miss + n, sizeof(miss) - n, "%sno \"%s\"", n ? " and " : "",
			         keys[k].name);
	}
	if (miss[0])
		cfg_err(p, pr->r.line, "rule [%s] has %s", pr->r.name, miss);
	return miss[0] != '\0';
}

/* The actions of a rule's mode: close needs a socket of this host (a gateway rule has
 * none), flush a forwarded flow (a local rule has none). */
static void mode_actions(struct parser *p, const struct pend_rule *pr)
{
	static const char *const names[] = {"on_dead", "on_stall"};
	const struct rule_actions *acts[] = {&pr->r.on_dead, &pr->r.on_stall};
	bool gw = pr->r.mode == RULE_MODE_GATEWAY;

	for (size_t i = 0; i < 2; i++) {
		int k = key_find(names[i]);
		int line = pr->key_line[k] ? pr->key_line[k] : p->gkey_line[k];

		if (i == 1 && !line)
			continue; /* on_stall is on_dead's copy: told once, for on_dead */
		if (gw && (acts[i]->mask & RULE_ACT_CLOSE))
			cfg_err(p, line ? line : pr->r.line,
			        "%s: close is not for rule [%s] (mode = gateway: no socket of this "
			        "host; use log, rst, flush or exec:PATH)",
			        names[i], pr->r.name);
		if (!gw && (acts[i]->mask & RULE_ACT_FLUSH))
			cfg_err(p, line ? line : pr->r.line,
			        "%s: flush is for rules with mode = gateway, not for rule [%s]",
			        names[i], pr->r.name);
	}
}

static void finish_rule(struct parser *p, struct pend_rule *pr)
{
	const struct rule *r = &pr->r;
	bool gw, bad;

	inherit(p, pr);
	if (pr->r.mode == MODE_UNSET && pr->key_line[key_find("mode")])
		return; /* a bad mode (told): which keys it needs is unknown */
	if (pr->r.mode == MODE_UNSET)
		pr->r.mode = RULE_MODE_LOCAL;
	bad = wrong_mode(p, pr);
	if (lacks_required(p, pr) || bad)
		return; /* (both told) */
	mode_actions(p, pr);
	gw = r->mode == RULE_MODE_GATEWAY;
	if (r->local.family && r->remote.family && r->local.family != r->remote.family)
		cfg_err(p, r->line, "rule [%s] can never match: \"%s\" is %s but \"%s\" is %s",
		        r->name, gw ? "client" : "local",
		        r->local.family == AF_INET ? "IPv4" : "IPv6", gw ? "server" : "remote",
		        r->remote.family == AF_INET ? "IPv4" : "IPv6");
}

static void finish(struct parser *p)
{
	for (size_t i = 0; i < p->nrules; i++)
		finish_rule(p, &p->rules[i]);
	if (!p->saw_rule_header)
		cfg_err(p, 0,
		        "no rules: add a rule section, e.g. [ssh] with local = *:22 and "
		        "remote = *");
}

static int publish(struct parser *p, struct config *out)
{
	struct config *c = p->c;

	c->rules = calloc(p->nrules, sizeof(c->rules[0]));
	if (!c->rules) {
		cfg_err(p, 0, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < p->nrules; i++)
		c->rules[i] = p->rules[i].r;
	c->nrules = p->nrules;
	*out = *c;
	return 0;
}

/* The defaults of the [global] keys; those of the fsm_params keys are the host's. */
static void config_init(struct config *c, const struct fsm_params *host)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->interface, sizeof(c->interface), "any");
	snprintf(c->log_file, sizeof(c->log_file), "/var/log/kaprobe/status.log");
	c->log_level = CONFIG_LOG_INFO;
	c->log_format = CONFIG_FMT_LOGFMT;
	snprintf(c->user, sizeof(c->user), "kaprobe");
	c->summary_interval = 300.0;
	snprintf(c->state_file, sizeof(c->state_file), "/run/kaprobe/state.json");
	c->state_interval = 30.0;
	c->metrics_interval = 15.0;
	c->action_timeout = 10.0;
	c->discover_interval = 30.0;
	c->max_connections = 1000000;
	c->skip_kernel_keepalive = true;
	c->gateway_drop_answers = true;
	c->max_probe_rate = CONFIG_PROBE_RATE_DEFAULT;
	c->capture_buffer = CONFIG_CAPTURE_BUFFER_DEFAULT;
	c->on_dead.mask = RULE_ACT_LOG;
	c->on_reset.mask = RULE_ACT_LOG;
	c->defaults = host ? *host : linux_defaults;
}

static int parse_all(struct parser *p, const char *text, size_t len, struct config *out)
{
	int rc;

	p->pos = text;
	p->end = text + len;
	rc = run_inih(p);
	if (rc == -2)
		cfg_err(p, 0, "out of memory");
	else if (rc > 0 && p->errs->n == 0 && !p->errs->dropped)
		cfg_err(p, rc, "syntax error");
	finish(p);
	if (p->errs->n || p->errs->dropped || publish(p, out) < 0)
		return -1;
	return 0;
}

/* When even the parser cannot be allocated: one error, by hand. */
static void oom_error(const char *name, struct config_errors *e)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->msg[0], sizeof(e->msg[0]), "%s:0: out of memory", name);
	e->n = 1;
}

int config_parse(const char *name, const char *text, const struct fsm_params *host_defaults,
                 struct config *out, struct config_errors *errs)
{
	return config_parse_len(name, text, text ? strlen(text) : 0, host_defaults, out, errs);
}

int config_parse_len(const char *name, const char *text, size_t len,
                     const struct fsm_params *host_defaults, struct config *out,
                     struct config_errors *errs)
{
	struct config_errors *e = errs ? errs : malloc(sizeof(*e));
	struct parser *p = calloc(1, sizeof(*p));
	struct config *c = malloc(sizeof(*c));
	int rc = -1;

	memset(out, 0, sizeof(*out));
	name = name ? name : "(config)";
	if (p && c && e) {
		memset(e, 0, sizeof(*e));
		config_init(c, host_defaults);
		p->file = name;
		p->c = c;
		p->errs = e;
		rc = parse_all(p, text ? text : "", text ? len : 0, out);
		free(p->rules);
	} else if (e) {
		oom_error(name, e);
	}
	free(p);
	free(c);
	if (e != errs)
		free(e);
	return rc;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->rules);
	c->rules = NULL;
	c->nrules = 0;
}

/* test_config.c: unit tests of config.c, and the files under tests/configs/ (run from the
 * repository root: each bad/NAME.ini must give exactly the lines of bad/NAME.expected). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"

static const struct fsm_params host = {
    .idle = 3600.0, .interval = 60.0, .probes = 5, .probe_bytes = 1};

/* The parse result of the last parse(), freed by the next call and at teardown. */
static struct config cfg;
static struct config_errors errs;

static int parse_as(const char *name, const char *text)
{
	config_free(&cfg);
	return config_parse(name, text, &host, &cfg, &errs);
}

/* The same for len bytes that may hold NUL bytes (a file as read). */
static int parse_len_as(const char *name, const char *text, size_t len)
{
	config_free(&cfg);
	return config_parse_len(name, text, len, &host, &cfg, &errs);
}

static int parse(const char *text)
{
	return parse_as("t.ini", text);
}

static int teardown(void **state)
{
	(void)state;
	config_free(&cfg);
	return 0;
}

static void print_errors(void)
{
	for (size_t i = 0; i < errs.n; i++)
		print_message("  %s\n", errs.msg[i]);
}

static void parse_good(const char *text)
{
	if (parse(text) != 0) {
		print_errors();
		fail_msg("rejected:\n%s", text);
	}
	assert_int_equal(errs.n, 0);
}

/* Parses text expecting exactly one error, equal to want. */
static void parse_bad(const char *text, const char *want)
{
	assert_int_equal(parse(text), -1);
	if (errs.n != 1 || strcmp(errs.msg[0], want) != 0) {
		print_errors();
		fail_msg("want exactly: %s", want);
	}
	assert_null(cfg.rules);
	assert_int_equal(cfg.nrules, 0);
}

#define RULE "[r]\nlocal = *\nremote = *\n"

static const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static const char *fmt(const char *f, ...)
{
	static char buf[2][16384]; /* two at a time: the text and the message */
	static int which;
	va_list ap;

	which = !which;
	va_start(ap, f);
	vsnprintf(buf[which], sizeof(buf[which]), f, ap);
	va_end(ap);
	return buf[which];
}

/* ---- durations --------------------------------------------------------------- */

static void test_duration_good(void **state)
{
	static const struct {
		const char *text;
		double s;
	} t[] = {
	    {"30", 30},    {"0", 0},          {"1.5s", 1.5}, {"500ms", 0.5}, {"100ms", 0.1},
	    {"0.1s", 0.1}, {"2m", 120},       {"1h", 3600},  {"1.25m", 75},  {"32767s", 32767},
	    {"007s", 7},   {"1.5ms", 0.0015}, {"2h", 7200},  {"0.5h", 1800}, {"10s", 10},
	};
	double s;

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		s = -1;
		if (config_parse_duration(t[i].text, &s) != 0)
			fail_msg("\"%s\" rejected", t[i].text);
		assert_true(s == t[i].s);
	}
}

static void test_duration_bad(void **state)
{
	static const char *const t[] = {
	    "",
	    "s",
	    "1.5",
	    ".5s",
	    "5.s",
	    "-1s",
	    "+1s",
	    "1 s",
	    " 1s",
	    "1s ",
	    "1S",
	    "1sec",
	    "1d",
	    "1e3s",
	    "0x10s",
	    "inf",
	    "nan",
	    "1.2.3s",
	    "1,5s",
	    "10us",
	    "1ms2",
	    "1hm",
	    "abc",
	    "1.5e",
	    "s1",
	    "1..2s",
	    "9999999999999999999999999999999"
	    "999999999999999999999999999999999s",
	};
	double s;

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (config_parse_duration(t[i], &s) == 0)
			fail_msg("\"%s\" accepted", t[i]);
	}
	assert_int_equal(config_parse_duration(NULL, &s), -1);
}

static void test_duration_range(void **state)
{
	(void)state;
	parse_good("[global]\nidle = 100ms\ninterval = 32767s\n" RULE);
	assert_true(cfg.defaults.idle == 0.1);
	assert_true(cfg.defaults.interval == 32767);
	parse_good("[global]\nidle = 0.1s\ninterval = 546m\n" RULE);
	parse_bad("[global]\nidle = 99ms\n" RULE,
	          "t.ini:2: idle: 99ms is out of range (100ms..32767s)");
	parse_bad("[global]\ninterval = 32767.5s\n" RULE,
	          "t.ini:2: interval: 32767.5s is out of range (100ms..32767s)");
	parse_bad("[global]\ninterval = 10h\n" RULE,
	          "t.ini:2: interval: 10h is out of range (100ms..32767s)");
	parse_bad("[global]\nidle = 0\n" RULE, "t.ini:2: idle: 0 is out of range (100ms..32767s)");
}

/* ---- [global] ---------------------------------------------------------------- */

static void test_defaults_from_host(void **state)
{
	struct config c;
	struct config_errors e;

	(void)state;
	parse_good("[ssh]\nlocal = *:22\nremote = *\n");
	assert_string_equal(cfg.interface, "any");
	assert_string_equal(cfg.log_file, "/var/log/kaprobe/status.log");
	assert_int_equal(cfg.log_level, CONFIG_LOG_INFO);
	assert_memory_equal(&cfg.defaults, &host, sizeof(host));
	assert_int_equal(cfg.nrules, 1);
	assert_memory_equal(&cfg.rules[0].params, &host, sizeof(host));
	/* no host_defaults: Linux's own */
	assert_int_equal(config_parse("x", RULE, NULL, &c, &e), 0);
	assert_true(c.defaults.idle == 7200 && c.defaults.interval == 75);
	assert_int_equal(c.defaults.probes, 9);
	assert_int_equal(c.defaults.probe_bytes, 1);
	config_free(&c);
}

static void test_global_values(void **state)
{
	(void)state;
	parse_good("[global]\ninterface = eth0\nlog_file = -\nlog_level = debug\nidle = 2h\n"
	           "interval = 75s\nprobes = 9\nprobe_bytes = 0\n" RULE);
	assert_string_equal(cfg.interface, "eth0");
	assert_string_equal(cfg.log_file, "-");
	assert_int_equal(cfg.log_level, CONFIG_LOG_DEBUG);
	assert_true(cfg.defaults.idle == 7200 && cfg.defaults.interval == 75);
	assert_int_equal(cfg.defaults.probes, 9);
	assert_int_equal(cfg.defaults.probe_bytes, 0);
	assert_int_equal(cfg.rules[0].params.probe_bytes, 0);
}

/* [global] sets the defaults of every rule, even of rules above it; rules override. */
static void test_global_after_rules(void **state)
{
	(void)state;
	parse_good("[a]\nlocal = *:1\nremote = *\nprobes = 3\n"
	           "[global]\nidle = 10s\nprobes = 4\n"
	           "[b]\nlocal = *:2\nremote = *\ninterval = 1s\n");
	assert_int_equal(cfg.nrules, 2);
	assert_string_equal(cfg.rules[0].name, "a");
	assert_int_equal(cfg.rules[0].line, 1);
	assert_true(cfg.rules[0].params.idle == 10);
	assert_true(cfg.rules[0].params.interval == 60); /* host */
	assert_int_equal(cfg.rules[0].params.probes, 3);
	assert_string_equal(cfg.rules[1].name, "b");
	assert_int_equal(cfg.rules[1].line, 8);
	assert_true(cfg.rules[1].params.idle == 10);
	assert_true(cfg.rules[1].params.interval == 1);
	assert_int_equal(cfg.rules[1].params.probes, 4);
	assert_int_equal(cfg.rules[1].local.port_lo, 2);
}

static void test_log_level(void **state)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};

	(void)state;
	for (int i = 0; i < 4; i++) {
		parse_good(fmt("[global]\nlog_level = %s\n" RULE, names[i]));
		assert_int_equal(cfg.log_level, i);
	}
	parse_bad("[global]\nlog_level = DEBUG\n" RULE,
	          "t.ini:2: log_level: \"DEBUG\" is not one of error, warning, info, debug");
}

static void test_log_file_length(void **state)
{
	static char path[CONFIG_PATH_MAX + 1];

	(void)state;
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[CONFIG_PATH_MAX - 1] = '\0'; /* 4095 characters: the longest */
	parse_good(fmt("[global]\nlog_file = %s\n" RULE, path));
	assert_string_equal(cfg.log_file, path);
	path[CONFIG_PATH_MAX - 1] = 'a';
	parse_bad(fmt("[global]\nlog_file = %s\n" RULE, path),
	          "t.ini:2: log_file: path is too long (at most 4095 characters)");
}

static void test_interface_lists(void **state)
{
	(void)state;
	parse_good("[global]\ninterface = eth0, veth-a.1 ,wg0@x,a:b\n" RULE);
	assert_string_equal(cfg.interface, "eth0,veth-a.1,wg0@x,a:b");
	parse_good("[global]\ninterface = 123456789012345\n" RULE);
	parse_bad("[global]\ninterface = eth0,eth1,eth0\n" RULE,
	          "t.ini:2: interface: \"eth0\" is listed twice");
	parse_bad("[global]\ninterface = eth0,any\n" RULE,
	          "t.ini:2: interface: \"any\" cannot be combined with other names");
	parse_bad("[global]\ninterface = eth0,,eth1\n" RULE,
	          "t.ini:2: interface: empty name in the list");
	parse_bad("[global]\ninterface = eth0,\n" RULE,
	          "t.ini:2: interface: empty name in the list");
	parse_bad("[global]\ninterface = eth 0\n" RULE,
	          "t.ini:2: interface: \"eth 0\" has a character other than A-Z a-z 0-9 . _ - @ :");
	parse_bad("[global]\ninterface = 1234567890123456\n" RULE,
	          "t.ini:2: interface: \"1234567890123456\" is longer than 15 characters");
}

static void test_interface_list_too_long(void **state)
{
	char list[400] = "";

	(void)state;
	for (int i = 0; i < 40; i++) /* 40 names of 9 characters and commas: 399 */
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%sveth%05d",
		         i ? "," : "", i);
	parse_bad(fmt("[global]\ninterface = %s\n" RULE, list),
	          "t.ini:2: interface: the list is too long (at most 255 characters)");
}

static void test_probes_and_bytes(void **state)
{
	(void)state;
	parse_good("[global]\nprobes = 1\n[r]\nlocal = *\nremote = *\nprobes = 127\n");
	assert_int_equal(cfg.defaults.probes, 1);
	assert_int_equal(cfg.rules[0].params.probes, 127);
	parse_bad("[global]\nprobes = 128\n" RULE, "t.ini:2: probes: 128 is out of range (1..127)");
	parse_bad("[global]\nprobes = 99999999999999999999999\n" RULE,
	          "t.ini:2: probes: 99999999999999999999999 is out of range (1..127)");
	parse_bad("[global]\nprobes = 1.0\n" RULE,
	          "t.ini:2: probes: \"1.0\" is not a whole number");
	parse_bad("[global]\nprobes = +3\n" RULE, "t.ini:2: probes: \"+3\" is not a whole number");
	parse_bad("[global]\nprobes = 0x3\n" RULE,
	          "t.ini:2: probes: \"0x3\" is not a whole number");
	parse_bad("[global]\nprobe_bytes = -1\n" RULE,
	          "t.ini:2: probe_bytes: -1 is out of range (0 or 1)");
}

/* ---- rules ------------------------------------------------------------------- */

static void test_rule_patterns(void **state)
{
	(void)state;
	parse_good("[v6]\nlocal = [2001:db8::/32]:443\nremote = [::1]:1000-2000 ; comment\n");
	assert_int_equal(cfg.rules[0].local.family, AF_INET6);
	assert_int_equal(cfg.rules[0].local.prefix, 32);
	assert_int_equal(cfg.rules[0].local.port_lo, 443);
	assert_int_equal(cfg.rules[0].remote.prefix, 128);
	assert_int_equal(cfg.rules[0].remote.port_hi, 2000);
	parse_bad("[r]\nlocal = 10.0.0.0/8\nremote = [::1]\n",
	          "t.ini:1: rule [r] can never match: \"local\" is IPv4 but \"remote\" is IPv6");
	parse_bad("[r]\nlocal = *\nremote = 10.1.0.0/8\n",
	          "t.ini:3: remote: \"10.1.0.0/8\": address has bits set beyond the prefix length");
}

static void test_rule_names(void **state)
{
	char name[80];

	(void)state;
	/* longer than inih's own 49-character section names */
	memset(name, 'n', sizeof(name));
	name[RULE_NAME_MAX - 1] = '\0';
	parse_good(
	    fmt("[%s]\nlocal = *\nremote = *\n[%.*s]\nlocal = *\nremote = *\n", name, 50, name));
	assert_int_equal(cfg.nrules, 2);
	assert_string_equal(cfg.rules[0].name, name);
	assert_int_equal(strlen(cfg.rules[1].name), 50);
	parse_good("[ spaced.Name_1-2 ]\nlocal = *\nremote = *\n");
	assert_string_equal(cfg.rules[0].name, "spaced.Name_1-2");
	name[RULE_NAME_MAX - 1] = 'n';
	name[RULE_NAME_MAX] = '\0';
	parse_bad(
	    fmt("[%s]\nlocal = *\nremote = *\n" RULE, name),
	    fmt("t.ini:1: section name \"%.64s...\" is too long (at most 63 characters)", name));
	/* section names are case-sensitive: [Global] is a rule */
	parse_bad("[Global]\nidle = 5s\n" RULE, "t.ini:1: rule [Global] has no \"local\" and no "
	                                        "\"remote\"");
}

static void test_too_many_rules(void **state)
{
	size_t size = (CONFIG_MAX_RULES + 5) * 40;
	char *text = malloc(size);
	size_t used = 0, cut = 0;

	(void)state;
	assert_non_null(text);
	for (int i = 0; i < CONFIG_MAX_RULES + 3; i++) {
		if (i == CONFIG_MAX_RULES)
			cut = used;
		used += (size_t)snprintf(text + used, size - used,
		                         "[r%d]\nlocal = *:%d\nremote = *\n", i, i + 1);
	}
	assert_int_equal(parse(text), -1);
	assert_int_equal(errs.n, 1);
	assert_string_equal(
	    errs.msg[0], fmt("t.ini:%d: too many rules (at most 1024)", CONFIG_MAX_RULES * 3 + 1));
	text[cut] = '\0';
	parse_good(text);
	assert_int_equal(cfg.nrules, CONFIG_MAX_RULES);
	assert_string_equal(cfg.rules[CONFIG_MAX_RULES - 1].name, "r1023");
	free(text);
}

/* ---- errors ------------------------------------------------------------------ */

static void test_errors_sorted_and_all_collected(void **state)
{
	(void)state;
	assert_int_equal(parse_as("conf/x.ini", "[web]\nlocal = *:80\n"
	                                        "[global]\nidel = 5\nprobes = 0\n"
	                                        "[db]\nremote = *\nlocal = *:0\n"),
	                 -1);
	assert_int_equal(errs.n, 4);
	assert_int_equal(errs.dropped, 0);
	assert_string_equal(errs.msg[0], "conf/x.ini:1: rule [web] has no \"remote\"");
	assert_string_equal(errs.msg[1], "conf/x.ini:4: unknown key \"idel\" in [global]");
	assert_string_equal(errs.msg[2], "conf/x.ini:5: probes: 0 is out of range (1..127)");
	assert_string_equal(errs.msg[3],
	                    "conf/x.ini:8: local: \"*:0\": port 0 is not allowed (use 1..65535)");
}

static void test_errors_capped(void **state)
{
	char text[4096] = "[global]\n";

	(void)state;
	for (int i = 0; i < CONFIG_MAX_ERRORS + 10; i++)
		strcat(text, "x = 1\n");
	strcat(text, RULE);
	assert_int_equal(parse(text), -1);
	assert_int_equal(errs.n, CONFIG_MAX_ERRORS);
	assert_int_equal(errs.dropped, 10);
	assert_string_equal(errs.msg[0], "t.ini:2: unknown key \"x\" in [global]");
	assert_string_equal(errs.msg[CONFIG_MAX_ERRORS - 1],
	                    fmt("t.ini:%d: unknown key \"x\" in [global]", CONFIG_MAX_ERRORS + 1));
}

static void test_messages_stay_bounded(void **state)
{
	static char name[CONFIG_PATH_MAX], value[2000];

	(void)state;
	memset(name, 'f', sizeof(name) - 1);
	memset(value, 'v', sizeof(value) - 1);
	assert_int_equal(parse_as(name, fmt("[global]\nidle = %s\n" RULE, value)), -1);
	assert_int_equal(errs.n, 1);
	assert_int_equal(strlen(errs.msg[0]), CONFIG_ERROR_LEN - 1);
	parse_bad(fmt("[global]\nidle = %s\n" RULE, value),
	          fmt("t.ini:2: idle: \"%.64s...\" is not a duration (use e.g. 30, 30s, 500ms, "
	              "1.5s, 2m or 2h)",
	              value));
}

static void test_line_length_limit(void **state)
{
	static char line[5000];
	const size_t max = CONFIG_PATH_MAX + 254;

	(void)state;
	memset(line, 'c', sizeof(line) - 1);
	line[0] = ';';
	line[max] = '\0';
	parse_good(fmt("%s\n" RULE, line));
	line[max] = 'c';
	line[max + 1] = '\0';
	parse_bad(fmt("%s\n" RULE, line), "t.ini:1: line too long (more than 4350 characters)");
	parse_bad(fmt("%s\r\n" RULE, line), "t.ini:1: line too long (more than 4350 characters)");
	line[max] = '\0';
	parse_good(fmt("%s\r\n" RULE, line)); /* the '\r' does not count */
}

static void test_crlf_bom_comments_indent(void **state)
{
	(void)state;
	parse_good("\xef\xbb\xbf[global]\r\n"
	           "# comment\r\n"
	           "; comment\r\n"
	           "  log_level = debug  # inline\r\n"
	           "\tidle = 5s ; inline\r\n"
	           "log_file = /a;b#c\r\n"
	           "\r\n"
	           "[r]  ; comment\r\n"
	           "local = *:22\r\n"
	           "  remote = *");
	assert_int_equal(cfg.log_level, CONFIG_LOG_DEBUG);
	assert_true(cfg.defaults.idle == 5);
	assert_string_equal(cfg.log_file, "/a;b#c");
	assert_int_equal(cfg.rules[0].line, 8);
}

static void test_bom_only_on_line_one(void **state)
{
	(void)state;
	parse_bad(RULE "\xef\xbb\xbf[global]\n",
	          "t.ini:4: syntax error: expected \"key = value\", a [section] or a comment");
}

static void test_odd_inputs(void **state)
{
	struct config c;
	struct config_errors e;

	(void)state;
	memset(&c, 0x55, sizeof(c));
	assert_int_equal(config_parse(NULL, NULL, &host, &c, &e), -1);
	assert_int_equal(e.n, 1);
	assert_string_equal(e.msg[0], "(config):0: no rules: add a rule section, e.g. [ssh] with "
	                              "local = *:22 and remote = *");
	assert_null(c.rules);
	assert_int_equal(c.nrules, 0);
	assert_int_equal(config_parse("x", "[global\n", &host, &c, NULL), -1); /* no errs */
	assert_int_equal(config_parse("x", RULE, &host, &c, NULL), 0);
	config_free(&c);
	config_free(&c); /* twice is harmless */
	config_free(NULL);
	parse_bad("[r]\nlocal = *\nremote = *\nlocal=*\n",
	          "t.ini:4: duplicate key \"local\" in [r] (first set at line 2)");
	parse_bad("[r]\nlocal = *\nremote = *\nbogus\n",
	          "t.ini:4: syntax error: expected \"key = value\", a [section] or a comment");
	parse_bad("[r]\nlocal = *\nremote = *\nremote ; = *\n",
	          "t.ini:4: syntax error: expected \"key = value\", a [section] or a comment");
	parse_bad("[r]\nlocal = *\nremote =\n", "t.ini:3: remote: missing value");
	parse_bad("[r]\nlocal = *\nremote = ; nothing\n", "t.ini:3: remote: missing value");
	parse_bad("[r]\nlocal: *\nremote = *\n[r ]\n", "t.ini:4: duplicate section [r] (first at "
	                                               "line 1)");
}

/* inih's settings are process-wide: config_parse() must put them back. */
static void test_inih_settings_restored(void **state)
{
	(void)state;
	ini_max_line = 123;
	ini_allow_multiline = true;
	ini_use_stack = true;
	parse_good(RULE);
	assert_int_equal(ini_max_line, 123);
	assert_true(ini_allow_multiline);
	assert_true(ini_use_stack);
	ini_max_line = 200;
}

/* Service keys: defaults, values, and actions inherited from [global] unless a rule sets them. */
static void test_service_keys(void **state)
{
	(void)state;
	parse_good("[a]\nlocal = *:1\nremote = *\n");
	assert_string_equal(cfg.user, "kaprobe");
	assert_false(cfg.user_set);
	assert_false(cfg.syslog);
	assert_int_equal(cfg.log_format, CONFIG_FMT_LOGFMT);
	assert_true(cfg.summary_interval == 300.0);
	assert_string_equal(cfg.state_file, "/run/kaprobe/state.json");
	assert_string_equal(cfg.metrics_file, "");
	assert_int_equal(cfg.rules[0].on_dead.mask, RULE_ACT_LOG);
	assert_int_equal(cfg.rules[0].on_reset.mask, RULE_ACT_LOG);

	parse_good("[global]\nuser = nobody\njournal = yes\nlog_format = json\n"
	           "log_file = none\nsummary_interval = 0\nstate_file = none\n"
	           "metrics_file = /run/m.prom\non_dead = close, exec:/bin/x\n"
	           "[a]\nlocal = *:1\nremote = *\n"
	           "[b]\nlocal = *:2\nremote = *\non_dead = rst\non_reset = exec:/bin/y\n");
	assert_string_equal(cfg.user, "nobody");
	assert_true(cfg.user_set);
	assert_true(cfg.journal);
	assert_int_equal(cfg.log_format, CONFIG_FMT_JSON);
	assert_string_equal(cfg.log_file, "");
	assert_true(cfg.summary_interval == 0);
	assert_string_equal(cfg.state_file, "");
	assert_string_equal(cfg.metrics_file, "/run/m.prom");
	assert_int_equal(cfg.rules[0].on_dead.mask, RULE_ACT_CLOSE | RULE_ACT_EXEC);
	assert_string_equal(cfg.exec_paths[cfg.rules[0].on_dead.exec - 1], "/bin/x");
	assert_int_equal(cfg.rules[1].on_dead.mask, RULE_ACT_RST);
	assert_int_equal(cfg.rules[1].on_reset.mask, RULE_ACT_EXEC);
	assert_string_equal(cfg.exec_paths[cfg.rules[1].on_reset.exec - 1], "/bin/y");
	assert_int_equal(cfg.nexec, 2);
}

/* stall_timeout: 0 (off) by default, both levels; on_stall: [global] on_stall, else the rule's
 * own on_dead. */
static void test_stall_keys(void **state)
{
	(void)state;
	parse_good("[a]\nlocal = *:1\nremote = *\non_dead = close\n");
	assert_true(cfg.rules[0].params.stall_timeout == 0.0);
	assert_int_equal(cfg.rules[0].on_stall.mask, RULE_ACT_CLOSE);

	parse_good("[global]\nstall_timeout = 30s\n"
	           "[a]\nlocal = *:1\nremote = *\nstall_timeout = 0\non_dead = rst\n"
	           "[b]\nlocal = *:2\nremote = *\nstall_timeout = 2.5s\non_stall = log\n"
	           "[c]\nlocal = *:3\nremote = *\non_dead = close\n");
	assert_true(cfg.rules[0].params.stall_timeout == 0.0);
	assert_int_equal(cfg.rules[0].on_stall.mask, RULE_ACT_RST);
	assert_true(cfg.rules[1].params.stall_timeout == 2.5);
	assert_int_equal(cfg.rules[1].on_stall.mask, RULE_ACT_LOG);
	assert_true(cfg.rules[2].params.stall_timeout == 30.0);
	assert_int_equal(cfg.rules[2].on_stall.mask, RULE_ACT_CLOSE);

	parse_good("[global]\non_stall = exec:/bin/s\n[a]\nlocal = *:1\nremote = *\n"
	           "on_dead = close\n");
	assert_int_equal(cfg.rules[0].on_stall.mask, RULE_ACT_EXEC);
	assert_string_equal(cfg.exec_paths[cfg.rules[0].on_stall.exec - 1], "/bin/s");

	parse_bad("[global]\nstall_timeout = 50ms\n[a]\nlocal = *:1\nremote = *\n",
	          "t.ini:2: stall_timeout: 50ms is out of range (0 (off) or 100ms..32767s)");
	parse_bad("[a]\nlocal = *:1\nremote = *\non_stall = nap\n",
	          "t.ini:4: on_stall: \"nap\" is not one of log, close, rst, flush, exec:PATH");
}

/* observe: no by default; a rule takes [global]'s unless it sets its own. */
static void test_observe_key(void **state)
{
	(void)state;
	parse_good("[a]\nlocal = *:1\nremote = *\n");
	assert_false(cfg.rules[0].params.observe);
	assert_false(cfg.defaults.observe);

	parse_good("[global]\nobserve = yes\n"
	           "[a]\nlocal = *:1\nremote = *\nobserve = no\n"
	           "[b]\nlocal = *:2\nremote = *\n");
	assert_false(cfg.rules[0].params.observe);
	assert_true(cfg.rules[1].params.observe);

	parse_good("[a]\nlocal = *:1\nremote = *\nobserve = yes\n[b]\nlocal = *:2\nremote = *\n");
	assert_true(cfg.rules[0].params.observe);
	assert_false(cfg.rules[1].params.observe);

	parse_bad("[a]\nlocal = *:1\nremote = *\nobserve = maybe\n",
	          "t.ini:4: observe: \"maybe\" is not yes or no");
}

static void test_gateway_rules(void **state)
{
	(void)state;
	parse_good("[a]\nlocal = *:22\nremote = *\n"
	           "[gw]\nmode = gateway\nclient = 192.0.2.0/24\nserver = *:5432\non_dead = rst\n");
	assert_int_equal(cfg.nrules, 2);
	assert_int_equal(cfg.rules[0].mode, RULE_MODE_LOCAL);
	assert_int_equal(cfg.rules[1].mode, RULE_MODE_GATEWAY);
	assert_int_equal(cfg.rules[1].client.family, AF_INET);
	assert_int_equal(cfg.rules[1].client.prefix, 24);
	assert_int_equal(cfg.rules[1].server.port_lo, 5432);
	assert_int_equal(cfg.rules[1].on_dead.mask, RULE_ACT_RST);

	assert_true(cfg.gateway_drop_answers); /* the default */

	parse_good("[gw]\nclient = *\nserver = *:1\nmode = gateway\n"); /* order is free */
	assert_int_equal(cfg.rules[0].mode, RULE_MODE_GATEWAY);
	parse_good("[global]\ngateway_drop_answers = no\n[gw]\nmode = gateway\nclient = *\n"
	           "server = *:1\n");
	assert_false(cfg.gateway_drop_answers);
	parse_bad("[gw]\nmode = gateway\nclient = *\nserver = *\ngateway_drop_answers = no\n",
	          "t.ini:5: \"gateway_drop_answers\" belongs in [global], not in rule [gw]");

	parse_bad("[gw]\nmode = router\nclient = *\nserver = *\n",
	          "t.ini:2: mode: \"router\" is not local or gateway");
	parse_bad("[gw]\nmode = gateway\nclient = *\n", "t.ini:1: rule [gw] has no \"server\"");
	parse_bad("[gw]\nmode = gateway\n",
	          "t.ini:1: rule [gw] has no \"client\" and no \"server\"");
	parse_bad("[gw]\nmode = gateway\nclient = *\nserver = *\nlocal = *:1\n",
	          "t.ini:5: local: not in a rule with mode = gateway (a gateway rule takes client "
	          "and server)");
	parse_bad("[a]\nlocal = *\nremote = *\nserver = *:1\n",
	          "t.ini:4: server: not in a rule with mode = local (client and server are for "
	          "mode = gateway; use local and remote)");
	parse_bad("[gw]\nmode = gateway\nclient = 192.0.2.1\nserver = [2001:db8::1]\n",
	          "t.ini:1: rule [gw] can never match: \"client\" is IPv4 but \"server\" is IPv6");
	parse_bad("[gw]\nmode = gateway\nclient = *\nserver = *\non_dead = close\n",
	          "t.ini:5: on_dead: close is not for rule [gw] (mode = gateway: no socket of this "
	          "host; use log, rst, flush or exec:PATH)");
	parse_bad("[global]\non_dead = close\n[a]\nlocal = *\nremote = *\n"
	          "[gw]\nmode = gateway\nclient = *\nserver = *\n",
	          "t.ini:2: on_dead: close is not for rule [gw] (mode = gateway: no socket of this "
	          "host; use log, rst, flush or exec:PATH)");
	parse_good("[gw]\nmode = gateway\nclient = *\nserver = *\non_dead = flush, rst\n");
	assert_int_equal(cfg.rules[0].on_dead.mask, RULE_ACT_FLUSH | RULE_ACT_RST);
	parse_bad("[a]\nlocal = *\nremote = *\non_dead = flush\n",
	          "t.ini:4: on_dead: flush is for rules with mode = gateway, not for rule [a]");
	parse_bad("[global]\nmode = gateway\n[a]\nlocal = *\nremote = *\n",
	          "t.ini:2: \"mode\" belongs in a rule section, not in [global]");
}

/* ---- the files under tests/configs and conf/ ---------------------------------- */

/* The file at path, NUL-terminated; *len (when not NULL) gets its length. */
static char *read_file_len(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		fail_msg("cannot open %s (run from the repository root)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

static char *read_file(const char *path)
{
	return read_file_len(path, NULL);
}

/* Compares the errors with the lines of the .expected file, reporting every difference. */
static void compare_expected(const char *ini, const char *expected_path)
{
	char *want = read_file(expected_path), *line, *save = NULL;
	size_t i = 0;
	int bad = 0;

	for (line = strtok_r(want, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
		if (i >= errs.n || strcmp(errs.msg[i], line) != 0) {
			print_error("%s: want: %s\n%s:  got: %s\n", ini, line, ini,
			            i < errs.n ? errs.msg[i] : "(nothing)");
			bad = 1;
		}
	}
	for (; i < errs.n; i++, bad = 1)
		print_error("%s: extra: %s\n", ini, errs.msg[i]);
	free(want);
	if (bad)
		fail_msg("%s does not give %s", ini, expected_path);
}

static int for_each_ini(const char *dir, void (*fn)(const char *path))
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[1024];
	int n = 0;

	if (!d)
		fail_msg("cannot open %s (run from the repository root)", dir);
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);

		if (len < 5 || strcmp(de->d_name + len - 4, ".ini") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fn(path);
		n++;
	}
	closedir(d);
	return n;
}

static void check_bad_file(const char *path)
{
	char expected[1024];
	size_t len;
	char *text = read_file_len(path, &len);

	snprintf(expected, sizeof(expected), "%.*s.expected", (int)(strlen(path) - 4), path);
	assert_int_equal(parse_len_as(path, text, len), -1);
	assert_int_equal(errs.dropped, 0);
	compare_expected(path, expected);
	free(text);
}

static void check_good_file(const char *path)
{
	char *text = read_file(path);

	if (parse_as(path, text) != 0) {
		print_errors();
		fail_msg("%s rejected", path);
	}
	assert_true(cfg.nrules > 0);
	free(text);
}

/* A NUL byte is an error on its line, not the end of the file (which would silently drop
 * the rest: here a rule). */
static void test_nul_byte(void **state)
{
	static const char text[] = "[global]\nidle = 30s ; \0 cut\n[r]\nlocal = *:22\n"
	                           "remote = *\n";
	static const char rule[] = "[r]\nlocal = *:22\nremote = *\n\0";

	(void)state;
	assert_int_equal(parse_len_as("t.ini", text, sizeof(text) - 1), -1);
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.msg[0], "t.ini:2: NUL byte in the line (the file is not text)");
	assert_int_equal(parse_len_as("t.ini", text, 14), -1);              /* "[global]\nidle" */
	assert_int_equal(parse_len_as("t.ini", rule, sizeof(rule) - 2), 0); /* no NUL */
	assert_int_equal(cfg.nrules, 1);
	assert_int_equal(parse_len_as("t.ini", rule, sizeof(rule) - 1), -1);
	assert_string_equal(errs.msg[0], "t.ini:4: NUL byte in the line (the file is not text)");
}

/* Issue 8: the pacer's rate, the capture ring and the log policy. */
static void test_scale_keys(void **state)
{
	(void)state;
	parse_good(RULE);
	assert_int_equal(cfg.max_probe_rate, CONFIG_PROBE_RATE_DEFAULT);
	assert_int_equal(cfg.capture_buffer, CONFIG_CAPTURE_BUFFER_DEFAULT);
	assert_false(cfg.log_alive_every);
	parse_good(
	    "[global]\nmax_probe_rate = 2000\ncapture_buffer = 64k\nlog_alive = every\n" RULE);
	assert_int_equal(cfg.max_probe_rate, 2000);
	assert_int_equal(cfg.capture_buffer, 65536);
	assert_true(cfg.log_alive_every);
	parse_good("[global]\ncapture_buffer = 1G\nlog_alive = changes\n" RULE);
	assert_int_equal(cfg.capture_buffer, 1L << 30);
	assert_false(cfg.log_alive_every);
	parse_good("[global]\ncapture_buffer = 8388608\n" RULE);
	assert_int_equal(cfg.capture_buffer, 8L << 20);
	parse_bad("[global]\nmax_probe_rate = 5\n" RULE,
	          "t.ini:2: max_probe_rate: 5 is out of range (10..10000000)");
	parse_bad("[global]\nmax_probe_rate = fast\n" RULE,
	          "t.ini:2: max_probe_rate: \"fast\" is not a whole number");
	parse_bad("[global]\ncapture_buffer = 2G\n" RULE,
	          "t.ini:2: capture_buffer: 2G is out of range (64k..1024M)");
	parse_bad("[global]\ncapture_buffer = 1k\n" RULE,
	          "t.ini:2: capture_buffer: 1k is out of range (64k..1024M)");
	parse_bad("[global]\ncapture_buffer = 8MB\n" RULE,
	          "t.ini:2: capture_buffer: \"8MB\" is not a size (e.g. 8M, 64k, 65536)");
	parse_bad("[global]\ncapture_buffer = -8M\n" RULE,
	          "t.ini:2: capture_buffer: \"-8M\" is not a size (e.g. 8M, 64k, 65536)");
	parse_bad("[global]\nlog_alive = sometimes\n" RULE,
	          "t.ini:2: log_alive: \"sometimes\" is not changes or every");
	parse_bad(RULE "max_probe_rate = 100\n",
	          "t.ini:4: \"max_probe_rate\" belongs in [global], not in rule [r]");
}

static void test_bad_files(void **state)
{
	(void)state;
	assert_true(for_each_ini("tests/configs/bad", check_bad_file) >= 10);
}

static void test_good_files(void **state)
{
	(void)state;
	assert_true(for_each_ini("tests/configs/good", check_good_file) >= 2);
}

/* The shipped file is valid and safe: kernel timing, SSH only. */
static void test_shipped_config(void **state)
{
	(void)state;
	check_good_file("conf/kaprobed.ini");
	assert_memory_equal(&cfg.defaults, &host, sizeof(host));
	assert_string_equal(cfg.log_file, "/var/log/kaprobe/status.log");
	assert_string_equal(cfg.interface, "any");
	assert_int_equal(cfg.log_level, CONFIG_LOG_INFO);
	assert_int_equal(cfg.nrules, 1);
	assert_int_equal(cfg.rules[0].local.port_lo, 22);
	assert_memory_equal(&cfg.rules[0].params, &host, sizeof(host));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_duration_good),
	    cmocka_unit_test(test_duration_bad),
	    cmocka_unit_test(test_duration_range),
	    cmocka_unit_test(test_defaults_from_host),
	    cmocka_unit_test(test_global_values),
	    cmocka_unit_test(test_global_after_rules),
	    cmocka_unit_test(test_log_level),
	    cmocka_unit_test(test_log_file_length),
	    cmocka_unit_test(test_interface_lists),
	    cmocka_unit_test(test_interface_list_too_long),
	    cmocka_unit_test(test_probes_and_bytes),
	    cmocka_unit_test(test_rule_patterns),
	    cmocka_unit_test(test_rule_names),
	    cmocka_unit_test(test_too_many_rules),
	    cmocka_unit_test(test_errors_sorted_and_all_collected),
	    cmocka_unit_test(test_errors_capped),
	    cmocka_unit_test(test_messages_stay_bounded),
	    cmocka_unit_test(test_line_length_limit),
	    cmocka_unit_test(test_crlf_bom_comments_indent),
	    cmocka_unit_test(test_bom_only_on_line_one),
	    cmocka_unit_test(test_odd_inputs),
	    cmocka_unit_test(test_inih_settings_restored),
	    cmocka_unit_test(test_service_keys),
	    cmocka_unit_test(test_nul_byte),
	    cmocka_unit_test(test_scale_keys),
	    cmocka_unit_test(test_stall_keys),
	    cmocka_unit_test(test_observe_key),
	    cmocka_unit_test(test_gateway_rules),
	    cmocka_unit_test(test_bad_files),
	    cmocka_unit_test(test_good_files),
	    cmocka_unit_test(test_shipped_config),
	};

	return cmocka_run_group_tests(tests, NULL, teardown);
}

/* state.c: the state file's JSON (see state.h). Pure: writes text to a stream it is given;
 * numbers in the C locale (the daemon never calls setlocale). */
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "addr.h"
#include "fsm.h"
#include "state.h"

void state_format_time(const struct timespec *ts, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&ts->tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts->tv_nsec / 1000000);
}

void state_json_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	for (; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

/* A number with 3 decimals, or null when unknown (negative) or not finite. */
static void json_number(FILE *f, double v)
{
	if (v < 0 || !isfinite(v))
		fputs("null", f);
	else
		fprintf(f, "%.3f", v);
}

void state_render_begin(FILE *f, long pid, const char *written)
{
	fprintf(f, "{\"version\":%d,\"pid\":%ld,\"written\":", STATE_VERSION, pid);
	state_json_string(f, written);
	fputs(",\"connections\":[", f);
}

static void render_endpoints(FILE *f, const struct addr_tuple *k)
{
	char ep[ADDR_ENDPOINT_STRLEN];

	fputs(",\"local\":", f);
	state_json_string(f, addr_format_endpoint(k->family, k->local, k->lport, ep, sizeof(ep)));
	fputs(",\"remote\":", f);
	state_json_string(f, addr_format_endpoint(k->family, k->remote, k->rport, ep, sizeof(ep)));
}

void state_render_conn(FILE *f, const struct engine_view *v, size_t n)
{
	fputs(n ? ",\n{\"rule\":" : "\n{\"rule\":", f);
	state_json_string(f, v->rule);
	render_endpoints(f, v->key);
	if (v->side) {
		fputs(",\"side\":", f);
		state_json_string(f, v->side);
	}
	fputs(",\"state\":", f);
	state_json_string(f, fsm_state_name(v->state));
	fputs(",\"idle\":", f);
	json_number(f, v->idle < 0 ? 0.0 : v->idle); /* capture stamps may lead the clock */
	fprintf(f, ",\"probes_out\":%d,\"rtt_ms\":", v->probes_out);
	json_number(f, v->rtt < 0 ? -1.0 : v->rtt * 1000.0);
	fputs(",\"last_verdict\":", f);
	if (v->verdict)
		state_json_string(f, fsm_event_name(v->verdict));
	else
		fputs("null", f);
	fputs(",\"verdict_age\":", f);
	json_number(f, v->verdict ? (v->verdict_age < 0 ? 0.0 : v->verdict_age) : -1.0);
	fputs(",\"stall\":", f);
	if (v->stall)
		state_json_string(f, v->stall);
	else
		fputs("null", f);
	fputc('}', f);
}

void state_render_end(FILE *f)
{
	fputs("\n]}\n", f);
}

/* metrics.c: Prometheus text exposition (see metrics.h). Every family is always written,
 * zeros included, so series never vanish between scrapes. */
#include <math.h>
#include <stdio.h>

#include "metrics.h"

void metrics_label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '"')
			fputs("\\\"", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(FILE *f, const char *name, const char *help, unsigned long long v)
{
	family(f, name, "counter", help);
	fprintf(f, "%s %llu\n", name, v);
}

static void gauge(FILE *f, const char *name, const char *help, double v)
{
	family(f, name, "gauge", help);
	fprintf(f, "%s %.9g\n", name, isfinite(v) ? v : 0.0);
}

/* Gateway mode (issue 11): forwarded connections. */
static void gateway(FILE *f, const struct engine_stats *st)
{
	counter(f, "kaprobe_forwarded_segments_total",
	        "Captured segments of connections this host forwards (gateway rules), each copy.",
	        st->forwarded);
	counter(f, "kaprobe_gateway_oneway_total",
	        "Times a forwarded connection seen one way only (NAT, asymmetric routing) was "
	        "left unprobed.",
	        st->gateway_oneway);
	counter(f, "kaprobe_gateway_expired_total",
	        "Gateway records forgotten because their flow's conntrack entry was gone.",
	        st->gateway_expired);
}

/* The capture's blindness and the pacer (issue 8). */
static void blindness(FILE *f, const struct engine_stats *st)
{
	counter(f, "kaprobe_uncertain_rounds_total",
	        "Probe rounds that gave no verdict because the capture may have missed a reply.",
	        st->uncertain);
	counter(f, "kaprobe_learn_retries_total",
	        "Sequence learning asked again because the capture may have missed the answer.",
	        st->learn_retries);
	counter(f, "kaprobe_capture_reopens_total",
	        "Captures reopened after failing at run time (no verdict while one is down).",
	        st->capture_reopens);
	counter(f, "kaprobe_unconfirmed_dropped_total",
	        "Records seen only from this host's side, dropped before the peer proved them real "
	        "(a SYN flood shows here).",
	        st->unconfirmed_dropped);
	gauge(f, "kaprobe_probe_rate", "Probes and learning SYNs per second the pacer allows now.",
	      st->probe_rate);
	gauge(f, "kaprobe_probe_lateness_max_seconds",
	      "Longest time a probe waited for the pacer since start.", st->probe_late_max);
}

static void connections(FILE *f, const struct metrics_input *in)
{
	size_t i;
	int s;

	family(f, "kaprobe_connections", "gauge", "Tracked connections by rule and state.");
	for (i = 0; i < in->nrules; i++) {
		for (s = 0; s < FSM_STATE_COUNT; s++) {
			fputs("kaprobe_connections{rule=\"", f);
			metrics_label_value(f, in->rules[i].name);
			fprintf(f, "\",state=\"%s\"} %llu\n", fsm_state_name(s),
			        in->rules[i].by_state[s]);
		}
	}
}

/* The table's fill against its cap (issue 12: a fleet alert when it nears the cap). */
static void table(FILE *f, const struct metrics_input *in)
{
	gauge(f, "kaprobe_max_connections", "Most connections tracked at once (max_connections).",
	      (double)in->max_connections);
	counter(f, "kaprobe_table_full_total",
	        "Times a connection was not tracked because the table was full.",
	        in->st->table_full);
}

/* Dead verdicts by rule (a reload, which may rename or reorder rules, starts them again:
 * a counter reset to Prometheus). */
static void rule_dead(FILE *f, const struct metrics_input *in)
{
	size_t i;

	family(f, "kaprobe_rule_dead_verdicts_total", "counter",
	       "Dead verdicts by rule, since the rules were loaded.");
	for (i = 0; i < in->nrules; i++) {
		fputs("kaprobe_rule_dead_verdicts_total{rule=\"", f);
		metrics_label_value(f, in->rules[i].name);
		fprintf(f, "\"} %llu\n", in->rules[i].dead_verdicts);
	}
}

static void verdicts(FILE *f, const struct engine_stats *st)
{
	family(f, "kaprobe_verdicts_total", "counter", "Verdicts given, by kind.");
	fprintf(f, "kaprobe_verdicts_total{kind=\"alive\"} %llu\n", st->alive);
	fprintf(f, "kaprobe_verdicts_total{kind=\"dead\"} %llu\n", st->dead);
	fprintf(f, "kaprobe_verdicts_total{kind=\"reset\"} %llu\n", st->reset);
	fprintf(f, "kaprobe_verdicts_total{kind=\"unreachable\"} %llu\n", st->unreachable);
}

static void stalls(FILE *f, const struct metrics_input *in)
{
	family(f, "kaprobe_stalls_total", "counter",
	       "Stalls told, by kind: retransmit (a dead verdict), zero-window (event=stalled).");
	fprintf(f, "kaprobe_stalls_total{kind=\"retransmit\"} %llu\n", in->st->stall_retransmit);
	fprintf(f, "kaprobe_stalls_total{kind=\"zero-window\"} %llu\n", in->st->stall_zero_window);
	family(f, "kaprobe_stalled_connections", "gauge",
	       "Connections whose peer keeps its window shut past stall_timeout now.");
	fprintf(f, "kaprobe_stalled_connections %zu\n", in->zw_stalled);
}

static void busy(FILE *f, const struct metrics_input *in)
{
	family(f, "kaprobe_busy_connections", "gauge",
	       "Busy connections left out of the capture now (watched through sock_diag).");
	fprintf(f, "kaprobe_busy_connections %zu\n", in->busy);
	counter(f, "kaprobe_busy_left_out_total",
	        "Times a busy connection was left out of the capture.", in->st->busy_left_out);
	counter(f, "kaprobe_busy_queries_total",
	        "sock_diag queries of busy connections (one per period each).",
	        in->st->busy_queries);
}

/* Connections under an observe-only rule: tracked, told, never probed. */
static void observed(FILE *f, const struct metrics_input *in)
{
	family(f, "kaprobe_observed_connections", "gauge",
	       "Tracked connections under an observe-only rule (observe = yes): never probed.");
	fprintf(f, "kaprobe_observed_connections %zu\n", in->observed);
}

static void rtt_histogram(FILE *f, const struct metrics_input *in)
{
	const struct engine_stats *st = in->st;
	unsigned long long cum = 0;
	int i;

	family(f, "kaprobe_rtt_seconds", "histogram",
	       "Round-trip time from a probe to its reply, wire to wire.");
	for (i = 0; i < ENGINE_RTT_BUCKETS; i++) {
		cum += st->rtt_hist[i];
		fprintf(f, "kaprobe_rtt_seconds_bucket{le=\"%g\"} %llu\n", in->rtt_bounds[i], cum);
	}
	cum += st->rtt_hist[ENGINE_RTT_BUCKETS];
	fprintf(f, "kaprobe_rtt_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
	fprintf(f, "kaprobe_rtt_seconds_sum %.9g\n", isfinite(st->rtt_sum) ? st->rtt_sum : 0.0);
	fprintf(f, "kaprobe_rtt_seconds_count %llu\n", cum);
}

static void ignored(FILE *f, const struct engine_stats *st)
{
	static const struct {
		int reason;
		const char *label;
	} reasons[] = {
	    {FSM_IGN_OWN_PROBE, "own_probe"},
	    {FSM_IGN_BAD_ACK, "bad_ack"},
	    {FSM_IGN_BAD_RST, "bad_rst"},
	    {FSM_IGN_ICMP_MATCH, "icmp_match"},
	    {FSM_IGN_SYN, "syn"},
	    {FSM_IGN_NO_ACK, "no_ack"},
	    {FSM_IGN_BAD_SEQ, "bad_seq"},
	    {FSM_IGN_UNVERIFIED, "unverified"},
	};
	size_t i;

	family(f, "kaprobe_ignored_packets_total", "counter",
	       "Packets ignored (not taken as a reply), by reason.");
	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		fprintf(f, "kaprobe_ignored_packets_total{reason=\"%s\"} %llu\n", reasons[i].label,
		        st->ignored[reasons[i].reason]);
}

void metrics_render(FILE *f, const struct metrics_input *in)
{
	const struct engine_stats *st = in->st;

	connections(f, in);
	table(f, in);
	observed(f, in);
	counter(f, "kaprobe_probes_sent_total", "Keepalive probes sent.", st->probes_sent);
	counter(f, "kaprobe_replies_total", "Segments that answered a probe.", st->replies);
	verdicts(f, st);
	rule_dead(f, in);
	stalls(f, in);
	busy(f, in);
	rtt_histogram(f, in);
	counter(f, "kaprobe_pcap_drops_total", "Packets dropped by the captures (kernel count).",
	        in->pcap_drops);
	blindness(f, st);
	gateway(f, st);
	ignored(f, st);
	counter(f, "kaprobe_decode_errors_total", "Captured frames that could not be decoded.",
	        st->decode_errors);
	family(f, "kaprobe_loop_stall_max_seconds", "gauge",
	       "Longest work of one event loop iteration since start (nothing else handled).");
	fprintf(f, "kaprobe_loop_stall_max_seconds %.6f\n",
	        isfinite(in->loop_stall_max) ? in->loop_stall_max : 0.0);
}

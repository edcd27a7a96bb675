/* test_metrics.c: Prometheus text exposition from fixture counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static const double bounds[ENGINE_RTT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0,
};

static char *render(const struct metrics_input *in)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	metrics_render(f, in);
	fclose(f);
	return buf;
}

static void has_line(const char *text, const char *line)
{
	char want[512];

	snprintf(want, sizeof(want), "\n%s\n", line);
	if (!strstr(text, want))
		fail_msg("missing line: %s\nin:\n%s", line, text);
}

static void test_counters_and_gauges(void **state)
{
	struct engine_stats st = {0};
	struct metrics_rule rules[2] = {{"pg", {3, 1, 2, 0}, 4}, {"web", {0}, 0}};
	struct metrics_input in = {&st, bounds, 7, rules, 2, 0.0123, 1000000, 2, 3, 5};
	char *s;

	(void)state;
	st.probes_sent = 11;
	st.table_full = 3;
	st.replies = 4;
	st.alive = 4;
	st.dead = 1;
	st.reset = 2;
	st.unreachable = 5;
	st.decode_errors = 9;
	st.ignored[FSM_IGN_OWN_PROBE] = 11;
	st.ignored[FSM_IGN_SYN] = 6;
	st.stall_retransmit = 3;
	st.stall_zero_window = 8;
	s = render(&in);
	has_line(s, "kaprobe_stalls_total{kind=\"retransmit\"} 3");
	has_line(s, "kaprobe_stalls_total{kind=\"zero-window\"} 8");
	has_line(s, "# TYPE kaprobe_stalled_connections gauge");
	has_line(s, "kaprobe_stalled_connections 2");
	has_line(s, "kaprobe_rule_dead_verdicts_total{rule=\"pg\"} 4");
	has_line(s, "kaprobe_rule_dead_verdicts_total{rule=\"web\"} 0");
	has_line(s, "# TYPE kaprobe_busy_connections gauge");
	has_line(s, "kaprobe_busy_connections 3");
	has_line(s, "kaprobe_busy_left_out_total 0");
	has_line(s, "# TYPE kaprobe_observed_connections gauge");
	has_line(s, "kaprobe_observed_connections 5");
	assert_memory_equal(s, "# HELP kaprobe_connections ", 27);
	has_line(s, "# TYPE kaprobe_connections gauge");
	has_line(s, "kaprobe_connections{rule=\"pg\",state=\"watch\"} 3");
	has_line(s, "kaprobe_connections{rule=\"pg\",state=\"probing\"} 1");
	has_line(s, "kaprobe_connections{rule=\"pg\",state=\"dead\"} 2");
	has_line(s, "kaprobe_connections{rule=\"web\",state=\"closed\"} 0");
	has_line(s, "# TYPE kaprobe_max_connections gauge");
	has_line(s, "kaprobe_max_connections 1000000");
	has_line(s, "# TYPE kaprobe_table_full_total counter");
	has_line(s, "kaprobe_table_full_total 3");
	has_line(s, "# TYPE kaprobe_probes_sent_total counter");
	has_line(s, "kaprobe_probes_sent_total 11");
	has_line(s, "kaprobe_replies_total 4");
	has_line(s, "kaprobe_verdicts_total{kind=\"alive\"} 4");
	has_line(s, "kaprobe_verdicts_total{kind=\"dead\"} 1");
	has_line(s, "kaprobe_verdicts_total{kind=\"reset\"} 2");
	has_line(s, "kaprobe_verdicts_total{kind=\"unreachable\"} 5");
	has_line(s, "kaprobe_pcap_drops_total 7");
	has_line(s, "kaprobe_ignored_packets_total{reason=\"own_probe\"} 11");
	has_line(s, "kaprobe_ignored_packets_total{reason=\"bad_ack\"} 0");
	has_line(s, "kaprobe_ignored_packets_total{reason=\"icmp_match\"} 0");
	has_line(s, "kaprobe_ignored_packets_total{reason=\"syn\"} 6");
	has_line(s, "kaprobe_decode_errors_total 9");
	has_line(s, "# TYPE kaprobe_loop_stall_max_seconds gauge");
	has_line(s, "kaprobe_loop_stall_max_seconds 0.012300");
	assert_int_equal(s[strlen(s) - 1], '\n');
	free(s);
}

static void test_histogram_is_cumulative(void **state)
{
	struct engine_stats st = {0};
	struct metrics_input in = {&st, bounds, 0, NULL, 0, 0.0, 0, 0, 0, 0};
	char *s;

	(void)state;
	st.rtt_hist[0] = 2;                  /* <= 0.1 ms */
	st.rtt_hist[3] = 1;                  /* <= 1 ms */
	st.rtt_hist[ENGINE_RTT_BUCKETS] = 1; /* > 10 s */
	st.rtt_sum = 12.0016;
	s = render(&in);
	has_line(s, "# TYPE kaprobe_rtt_seconds histogram");
	has_line(s, "kaprobe_rtt_seconds_bucket{le=\"0.0001\"} 2");
	has_line(s, "kaprobe_rtt_seconds_bucket{le=\"0.00025\"} 2");
	has_line(s, "kaprobe_rtt_seconds_bucket{le=\"0.001\"} 3");
	has_line(s, "kaprobe_rtt_seconds_bucket{le=\"10\"} 3");
	has_line(s, "kaprobe_rtt_seconds_bucket{le=\"+Inf\"} 4");
	has_line(s, "kaprobe_rtt_seconds_sum 12.0016");
	has_line(s, "kaprobe_rtt_seconds_count 4");
	/* No rules: no connection samples, but the family is still declared. */
	has_line(s, "# TYPE kaprobe_connections gauge");
	assert_null(strstr(s, "kaprobe_connections{"));
	free(s);
}

static void test_label_values_are_escaped(void **state)
{
	struct engine_stats st = {0};
	struct metrics_rule rules[1] = {{"a\"b\\c\nd", {0}, 0}};
	struct metrics_input in = {&st, bounds, 0, rules, 1, 0.0, 0, 0, 0, 0};
	char *s;

	(void)state;
	s = render(&in);
	has_line(s, "kaprobe_connections{rule=\"a\\\"b\\\\c\\nd\",state=\"watch\"} 0");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counters_and_gauges),
	    cmocka_unit_test(test_histogram_is_cumulative),
	    cmocka_unit_test(test_label_values_are_escaped),
	};

	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}

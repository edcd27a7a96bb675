/* metrics_sample.c: writes one metrics file as kaprobed would (one rule, every family), to
 * stdout; check_dashboard.py takes the metric names kaprobed writes from it. */
#include <stdio.h>

#include "metrics.h"

int main(void)
{
	static const double bounds[ENGINE_RTT_BUCKETS] = {
	    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0,
	};
	struct engine_stats st = {0};
	struct metrics_rule rule = {"sample", {1, 0, 0, 0}, 0};
	struct metrics_input in = {
	    .st = &st,
	    .rtt_bounds = bounds,
	    .rules = &rule,
	    .nrules = 1,
	    .max_connections = 1000000,
	};

	metrics_render(stdout, &in);
	return fflush(stdout) == 0 ? 0 : 1;
}

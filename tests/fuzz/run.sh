#!/bin/sh
# Runs each libFuzzer target for SECONDS s: sh tests/fuzz/run.sh BUILDDIR SECONDS TARGET...
# The corpus grows in BUILDDIR/corpus/TARGET (seeds: BUILDDIR/seeds/TARGET and
# tests/fuzz/corpus/TARGET); a crash leaves BUILDDIR/crash-TARGET-* and fails the run.
# Each target's last libFuzzer line (runs, cov:, ft:, corp:) is printed.
set -u
build=$1
seconds=$2
shift 2
failed=""
for t in "$@"; do
	corpus="$build/corpus/$t"
	mkdir -p "$corpus" "$build/seeds/$t"
	dirs="$corpus $build/seeds/$t"
	[ -d "tests/fuzz/corpus/$t" ] && dirs="$dirs tests/fuzz/corpus/$t"
	log="$build/fuzz-$t.log"
	# shellcheck disable=SC2086
	"$build/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$build/crash-$t-" $dirs >"$log" 2>&1
	rc=$?
	last=$(grep -E '^#[0-9]+' "$log" | tail -1)
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	echo "fuzz $t: ${seconds}s, ${runs:-?} runs, ${last:-no stats}"
	if [ "$rc" != 0 ]; then
		echo "fuzz $t: FAILED (exit $rc), see $log:" >&2
		grep -E 'ERROR|SUMMARY|Test unit written' "$log" >&2
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz: crashes in:$failed" >&2
	exit 1
fi

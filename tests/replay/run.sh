#!/bin/sh
# Replay fixtures, the engine's regression tests (no root, no network): each NAME.pcap (or
# NAME.pcapng) here is replayed (kaprobed -r NAME.pcap -c NAME.ini, plus the options in
# NAME.args if any) and its status log must equal NAME.expected, byte for byte (its ts=
# come from the packets: reproducible).
#   sh tests/replay/run.sh KAPROBED            check every fixture
#   sh tests/replay/run.sh KAPROBED --update   rewrite the .expected files (review the diff)
# make-fixtures.sh makes new fixtures from live runs.
set -u
bin=${1:?usage: run.sh KAPROBED [--update]}
update=${2:-}
dir=$(dirname "$0")
out=$(mktemp)
trap 'rm -f "$out"' EXIT
pass=0
fail=0
for pcap in "$dir"/*.pcap "$dir"/*.pcapng; do
	name=${pcap%.pcap*}
	args=""
	[ -f "$name.args" ] && args=$(cat "$name.args")
	# shellcheck disable=SC2086
	if ! "$bin" -r "$pcap" -c "$name.ini" $args >"$out" 2>&1; then
		echo "FAILED: $pcap: kaprobed -r exited $?"
		cat "$out"
		fail=$((fail + 1))
		continue
	fi
	if [ "$update" = --update ]; then
		cat "$out" >"$name.expected"
		echo "updated $name.expected"
	elif diff -u "$name.expected" "$out"; then
		pass=$((pass + 1))
	else
		echo "FAILED: $pcap: output differs from $name.expected (- expected, + replayed)"
		fail=$((fail + 1))
	fi
done
# A file it cannot read: exit 1, a message naming it.
for bad in "$dir/no-such.pcap" "$dir/README.md"; do
	if "$bin" -r "$bad" -c "$dir/dead.ini" >"$out" 2>&1; then
		echo "FAILED: kaprobed -r $bad exited 0"
		fail=$((fail + 1))
	elif ! grep -q "kaprobed: $bad" "$out"; then
		echo "FAILED: kaprobed -r $bad: the message does not name the file:"
		cat "$out"
		fail=$((fail + 1))
	else
		pass=$((pass + 1))
	fi
done
echo "replay: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# Makes the replay fixtures from live runs (as root): the test_replay integration cases run
# kaprobed in a namespace under `tcpdump -i any` and check that the replay agrees with the
# live log; each leaves NAME.pcap and NAME.ini, copied here, then run.sh --update writes
# NAME.expected. Review the diff before committing.
#   sh tests/replay/make-fixtures.sh [KAPROBED] [NAME...]   (default: every replay_ case)
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
bin=${1:-build/rel/kaprobed}
[ $# -gt 0 ] && shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ks=""
for n in "$@"; do ks="$ks -k replay_$n"; done
[ -z "$ks" ] && ks="-k replay_"
# shellcheck disable=SC2086
KAPROBE_REPLAY_SAVE="$tmp" python3 "$dir/../integration/run.py" --kaprobed "$bin" $ks
for pcap in "$tmp"/*.pcap; do
	name=$(basename "$pcap" .pcap)
	cp "$pcap" "$tmp/$name.ini" "$dir/"
	echo "fixture $name: $(wc -c <"$pcap") bytes"
done
sh "$dir/run.sh" "$bin" --update

#!/bin/sh
# make bench: prints figures, never fails the build. Sends only inside namespaces it makes
# (sender: 192.0.2.1 -> 192.0.2.2, whose namespace drops everything; discovery: N idle
# connections between two namespaces, see discover.py; scale: N connections between two
# namespaces, see scale.py; busy: one iperf3 stream between two namespaces, see busy.py)
# and removes them after.
BUILD=${1:-build/rel}
A=kpbench$$a
B=kpbench$$b
cleanup() { ip netns del "$A" 2>/dev/null; ip netns del "$B" 2>/dev/null; }
trap cleanup EXIT INT TERM
echo "== core (codec, engine, memory)"
"$BUILD/bench/bench_core" || echo "bench_core failed"
echo "== loop stall (1 000 000 synthetic connections)"
"$BUILD/bench/bench_stall" "${KAPROBE_BENCH_STALL_CONNS:-1000000}" || echo "bench_stall failed"
echo "== sender"
if ip netns add "$A" && ip netns add "$B" &&
	ip link add va$$ netns "$A" type veth peer name vb$$ netns "$B" &&
	ip -n "$A" addr add 192.0.2.1/24 dev va$$ && ip -n "$B" addr add 192.0.2.2/24 dev vb$$ &&
	ip -n "$A" link set va$$ up && ip -n "$B" link set vb$$ up &&
	printf 'table inet t {\nchain c {\ntype filter hook prerouting priority -300; policy drop;\n}\n}\n' |
	ip netns exec "$B" nft -f -; then
	ip netns exec "$A" "$BUILD/bench/bench_send" 192.0.2.1 192.0.2.2 1000000 || echo "bench_send failed"
else
	echo "could not make namespaces (root needed): sender benchmark skipped"
fi
cleanup
echo "== gateway: expected answers added to kaprobed's nftables table"
if ip netns add "$A"; then
	ip netns exec "$A" "$BUILD/bench/bench_hush" || echo "bench_hush failed"
else
	echo "could not make a namespace (root needed): nftables benchmark skipped"
fi
cleanup
echo "== discovery (10000 idle connections: dump time, learning rate)"
python3 tests/bench/discover.py "$BUILD/kaprobed" 10000 || echo "discovery benchmark failed"
echo "== busy connection (one saturating iperf3 stream on a matching rule; see tests/bench/busy.py)"
missing=
command -v iperf3 >/dev/null 2>&1 || missing="$missing iperf3"
command -v perf >/dev/null 2>&1 || missing="$missing linux-perf"
[ -z "$missing" ] || { [ "$(id -u)" = 0 ] &&
	{ apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends $missing; } >/dev/null 2>&1; }
python3 tests/bench/busy.py "$BUILD/kaprobed" --profile || echo "busy benchmark failed"
N=${KAPROBE_BENCH_CONNS:-100000}
echo "== scale ($N connections, half the peers silenced after round 1; see tests/bench/scale.py)"
python3 tests/bench/scale.py "$BUILD/kaprobed" "$N" || echo "scale benchmark failed"
exit 0

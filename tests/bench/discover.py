#!/usr/bin/env python3
"""make bench, discovery figures (issue 4): N idle connections between two namespaces this
script makes (N/4 per client process), then kaprobed started beside them.

Prints:
  - the dump time and socket count as kaprobed logs them on stderr, from its line
      level=info msg="discovery: S sockets listed, T tracked, G gone, M ms"
    ("n/a" when the daemon logs no such line);
  - start -> last `event=track source=discovered` line (includes process start-up);
  - the learning rate: connections whose numbers were learned (their `event=idle` line:
    every connection is overdue at start, so it is logged as soon as the challenge ACK
    taught the numbers) per second, from the first track line to the last idle line;
  - how many were then found alive.
Never fails the build: prints what it could measure and exits 0.

  python3 tests/bench/discover.py KAPROBED [N]
"""

import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import netns  # noqa: E402
from netns import endpoint  # noqa: E402

HOLDCONNS = os.path.join(os.path.dirname(HERE), "integration", "holdconns.py")
CLIENTS = 4
IDLE = 1.0  # every connection is overdue by the time kaprobed starts

DISCOVERY_RE = re.compile(r"discovery: (\d+) sockets listed, (\d+) tracked, \d+ gone, ([\d.]+) ms")


def hold(topo, net, n, port=5432):
    lns, pns = net["local"], net["peer"]
    topo.sysctl(pns, "net.ipv4.ip_local_port_range", "1024 65535")
    topo.sysctl(lns, "net.core.somaxconn", 65535)
    topo.sysctl(lns, "net.ipv4.tcp_max_syn_backlog", 65535)
    addr = net[4]["local"]
    lp = topo.spawn(lns, [sys.executable, "-u", HOLDCONNS, "listen", addr, str(port), str(n)],
                    "listen")
    lp.wait_line(lambda l: l.startswith("listening"), 5, "listening")
    per = [n // CLIENTS + (1 if i < n % CLIENTS else 0) for i in range(CLIENTS)]
    cps = [topo.spawn(pns, [sys.executable, "-u", HOLDCONNS, "connect", addr, str(port),
                            str(k)], "connect-%d" % i) for i, k in enumerate(per) if k]
    for p in cps + [lp]:
        _, l = p.wait_line(lambda l: l.startswith(("ready", "err")), 60, "ready")
        if not l.startswith("ready"):
            raise RuntimeError("%s: %s" % (p.name, l))


def measure(binary, n):
    topo = netns.Topo("bench-disc")
    try:
        net = netns.two_hosts(topo)
        t = time.monotonic()
        hold(topo, net, n)
        print("  %d idle connections up in %.1f s (%d client processes)" % (
            n, time.monotonic() - t, CLIENTS))
        time.sleep(IDLE + 0.2)  # all overdue: learning starts at discovery
        rules = [("bench", {"local": "*:5432", "remote": "*", "idle": "%gs" % IDLE,
                            "interval": "30s", "probes": 3})]
        t0 = time.time()
        kap = topo.kaprobed(binary, net["local"],
                            netns.conf_text("{log}", rules, log_level="info",
                                            extra={"log_alive": "every"}))
        local = endpoint(net[4]["local"], 5432)
        track, idle, alive = [], [], 0
        seen, last_new = 0, time.monotonic()
        deadline = time.monotonic() + 60
        while (len(idle) < n or alive < n) and time.monotonic() < deadline:
            kap.log.poll()
            evs = kap.log.events[seen:]
            seen += len(evs)
            for e in evs:
                if e.get("local") != local:
                    continue
                ev = e.get("event")
                if ev == "track" and e.get("source") == "discovered":
                    track.append(e.t)
                elif ev == "idle":
                    idle.append(e.t)
                elif ev == "alive":
                    alive += 1
            if evs:
                last_new = time.monotonic()
            elif time.monotonic() - last_new > 5:
                break  # nothing new for 5 s: report what there is
            if not kap.proc.alive():
                break
            time.sleep(0.1)
        disc = [m.groups() for m in (DISCOVERY_RE.search(l) for l in
                                     kap.proc.text("err").splitlines()) if m]
        if disc:
            sockets, tracked, ms = disc[0]
            print("  dump (kaprobed's own figure): %s ms for %s sockets, %s tracked" % (
                ms, sockets, tracked))
        else:
            print('  dump: n/a (kaprobed logged no msg="discovery: ..." line)')
        if not track:
            print("  no event=track source=discovered line: kaprobed without discovery?")
            return
        print("  start -> last of %d discovered track lines: %.3f s (process start-up "
              "included)" % (len(track), max(track) - t0))
        if idle:
            span = max(idle) - min(track)
            rate = len(idle) / span if span > 0 else float("inf")
            print("  learning: %d of %d connections learned in %.3f s: %.0f connections/s; "
                  "%d alive" % (len(idle), n, span, rate, alive))
        else:
            print("  learning: no connection learned its numbers (no event=idle line)")
        kap.stop()
    finally:
        topo.cleanup()


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 0
    binary = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    if os.geteuid() != 0:
        print("  root needed (namespaces): discovery benchmark skipped")
        return 0
    if not os.access(binary, os.X_OK):
        print("  %s: not built: discovery benchmark skipped" % binary)
        return 0
    try:
        measure(binary, n)
    except Exception as e:  # a figure, never a build failure
        print("  discovery benchmark failed: %s" % str(e).splitlines()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""kaprobed -r (issue 12): a live case runs with `tcpdump -i any` capturing in kaprobed's
namespace; the capture is then replayed (`kaprobed -r`, same configuration, no root
needed) and must give the same lines (idle, probe, alive, dead, reset, unreachable,
close: event, local, remote, reason, probes, n, icmp) in the same order, and no probe the
capture does not show.

Times: a live line's ts is when it was written. The replay fires a timer at its due
time, the live daemon when its loop wakes (epoll rounds up to the ms; on this shared
machine a few ms later still); a line a packet gave (alive, reset, unreachable, close) is
decided at the frame's capture time in both, but written live when the loop got to the
frame. So a line with idle= (idle, dead) is compared by the moment it counts from,
ts - idle (the last segment from the peer, as each saw it): within 1 ms. Any other line
may come late live by the loop's latency, at most LIVE_LATE, never early.

With KAPROBE_REPLAY_SAVE=DIR each case also leaves DIR/NAME.pcap, NAME.ini (the rules,
outputs off) and NAME.live.log: tests/replay/make-fixtures.sh turns them into the replay
fixtures of `make check`.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

from netns import Event, check, fail, svc_rule, two_hosts
import test_cases
import test_scale
import test_spoof

COMPARED = ("idle", "probe", "alive", "dead", "reset", "unreachable", "close")
KEYS = ("event", "local", "remote", "reason", "probes", "n", "icmp")
TOLERANCE = 0.001  # s between a live line and its replayed twin (see above)
LIVE_LATE = 0.010  # s a live line without idle= may come after its replayed twin
MS = 0.001 + 1e-6  # ts has whole ms: two stamps of one instant differ by < 1 ms
SNAPLEN = 256
# [global] keys a fixture leaves out: outputs and the run user mean nothing to a replay.
NOT_REPLAYED = ("log_file", "user", "state_file", "metrics_file")


class Capture:
    """tcpdump -i any in the namespace kaprobed runs in, started before it: wraps the
    case's topo.kaprobed so that any case can be captured."""

    def __init__(self, ctx):
        self.ctx, self.ns, self.kap, self.t_stop = ctx, None, None, None
        self.path = os.path.join(ctx.topo.tmp, "capture.pcap")
        self.tcpdump = None
        self._orig = ctx.topo.kaprobed
        ctx.topo.kaprobed = self._kaprobed

    def _kaprobed(self, binary, ns, conf, *a, **kw):
        self.ns = ns
        self.tcpdump = self.ctx.topo.spawn(ns, [
            "tcpdump", "-i", "any", "-y", "LINUX_SLL2", "-s", str(SNAPLEN), "-U", "-n",
            "--immediate-mode",
            "-Z", "root", "-w", self.path], "tcpdump", stdin=False)
        self.tcpdump.wait_line(lambda l: "listening on" in l, 5, "tcpdump to start", "err")
        self.kap = self._orig(binary, ns, conf, *a, **kw)
        stop = self.kap.stop

        def stop_and_note():
            if self.t_stop is None:
                self.t_stop = time.time()
            return stop()
        self.kap.stop = stop_and_note
        return self.kap

    def finish(self):
        """After the case: a last frame (a datagram over lo) carries the capture's clock past
        kaprobed's stop, then tcpdump ends."""
        check(self.kap is not None and self.t_stop is not None,
              "the case did not run and stop kaprobed")
        subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c",
                        "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                        ".sendto(b'end', ('127.0.0.1', 9))"], check=True, timeout=10)
        time.sleep(0.3)
        self.tcpdump.stop()
        check(os.path.getsize(self.path) > 24, "tcpdump wrote no frame")


def replay(ctx, cap):
    p = subprocess.run([ctx.binary, "-r", cap.path, "-c", cap.kap.conf_path],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "kaprobed -r exited %d: %s" % (p.returncode, p.stderr))
    lines = [Event(l) for l in p.stdout.splitlines() if l.strip()]
    check(lines and lines[-1].get("msg") == "totals",
          "replay output does not end with the totals line:\n%s" % p.stdout[-2000:])
    return lines


def compared(events, t_max=None):
    return [e for e in events if e.get("event") in COMPARED and (t_max is None or e.t <= t_max)]


def fmt(pairs):
    return "\n".join("live:   %s\nreplay: %s" % (a.raw if a else "-", b.raw if b else "-")
                     for a, b in pairs)


def gap(x, y):
    """live x - replay y (s), and what is allowed (lo, hi): see the module's comment."""
    if "idle" in x and "idle" in y:
        return (x.t - x.num("idle")) - (y.t - y.num("idle")), (-TOLERANCE - MS, TOLERANCE + MS)
    return x.t - y.t, (-MS, LIVE_LATE + MS)


def compare(live, rep, t_stop):
    """Same lines in the same order, each in time; returns how many and the largest gap of
    a dead line (ts - idle) in s."""
    a = compared(live)
    b = compared(rep, t_stop + TOLERANCE)
    pairs = [(a[i] if i < len(a) else None, b[i] if i < len(b) else None)
             for i in range(max(len(a), len(b)))]
    worst = 0.0
    for i, (x, y) in enumerate(pairs):
        if x is None or y is None or any(x.get(k) != y.get(k) for k in KEYS):
            fail("line %d differs (live vs replay):\n%s" % (i + 1, fmt(pairs)))
        g, (lo, hi) = gap(x, y)
        check(lo <= g <= hi, "line %d: live %.3f ms from its replay (allowed %.1f..%.1f):\n%s"
              % (i + 1, g * 1000, lo * 1000, hi * 1000, fmt(pairs)))
        if x["event"] == "dead":
            worst = max(worst, abs(g))
    return len(pairs), worst


def fixture_ini(conf_path):
    out = []
    for line in open(conf_path).read().splitlines():
        key = line.split("=", 1)[0].strip()
        if key in NOT_REPLAYED:
            continue
        out.append(line)
        if line.strip() == "[global]":
            out.append("log_file = -")
    return "\n".join(out) + "\n"


def save(ctx, cap, name):
    d = os.environ.get("KAPROBE_REPLAY_SAVE")
    if not d:
        return
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(cap.path, os.path.join(d, name + ".pcap"))
    with open(os.path.join(d, name + ".ini"), "w") as f:
        f.write(fixture_ini(cap.kap.conf_path))
    with open(os.path.join(d, name + ".live.log"), "w") as f:
        f.write(cap.kap.log.text() + "\n")


def replayed(name, case):
    """A case run live under capture, then replayed and compared."""
    def run(ctx):
        if ctx.netcheck:
            return case(ctx)
        cap = Capture(ctx)
        summary = case(ctx)
        cap.finish()
        rep = replay(ctx, cap)
        n, worst = compare(cap.kap.log.events, rep, cap.t_stop)
        totals = rep[-1]
        # a probe wanted after kaprobed stopped (the capture runs on a little) was never sent
        unsent = [e for e in rep if e.get("replay") == "unsent"
                  and e.t - e.num("waited") <= cap.t_stop]
        check(not unsent, "replay found probes the capture does not show:\n%s" % "\n".join(
            e.raw for e in unsent))
        save(ctx, cap, name)
        return "%s; replay: %d lines the same, dead lines %.3f ms apart at most, %s probes " \
            "seen, %d KB" % (
            summary, n, worst * 1000, totals.get("probes_seen"),
            os.path.getsize(cap.path) // 1024)
    return run


def case_spoofed(ctx):
    """A silenced peer, and a few forged RSTs and ACKs with random numbers during the
    round: dead on time, nothing believed."""
    log, c, t_last, inj = test_spoof.silenced(ctx)
    if log is None:
        return inj
    log.wait_conn(c.local, c.remote, "probe", test_cases.IDLE + 2)
    peer, ours = test_spoof.ip_port(c.remote), test_spoof.ip_port(c.local)
    for flags in ("R", "RA", "A", "P"):
        inj.spray(peer, ours, flags, 5, length=1 if flags == "P" else 0)
    err = test_spoof.expect_dead_on_time(log, c, t_last, "forged segments")
    ctx.kap.stop_ok()
    ign = test_spoof.ignored_count(ctx)
    check(ign >= 15, "only %d forged segments counted as ignored" % ign)
    return "20 forged segments during the round: dead %+.0f ms, %d ignored" % (err * 1000, ign)


def case_loopback(ctx):
    """A connection over lo (both ends this host's): two answered rounds. The replay takes
    its local addresses from the capture: both ends of a frame SLL2 says came through lo."""
    net = two_hosts(ctx.topo)
    ns = net["local"]
    if ctx.netcheck:
        return "loopback only"
    kap = ctx.start_kaprobed(ns, [svc_rule()])
    srv = ctx.peer(ns, "server")
    srv.listen("127.0.0.1", 5432)
    cli = ctx.peer(ns, "client")
    r = cli.connect("127.0.0.1", 5432)
    srv.accept()
    c = test_cases.Conn(srv, cli, "127.0.0.1:5432", "127.0.0.1:%s" % r["lport"])
    c.exchange()
    after = None
    for _ in range(2):
        after = kap.log.wait_conn(c.local, c.remote, "alive", test_cases.DEAD_AFTER + 2,
                                  after=after)
    bad = [e.raw for e in c.events(kap.log) if e["event"] in ("dead", "reset", "unreachable")]
    check(not bad, "verdicts on a healthy loopback connection: %s" % bad)
    kap.stop_ok()
    return "two answered rounds over lo (rtt %s ms)" % after["rtt"]


CASES = [
    ("replay_alive", replayed("alive", test_cases.case_alive)),
    ("replay_dead", replayed("dead", test_cases.case_dead)),
    ("replay_reset", replayed("reset", test_cases.case_reset)),
    ("replay_unreachable", replayed("unreachable", test_cases.case_unreachable)),
    ("replay_spoofed", replayed("spoofed", case_spoofed)),
    # two rules (accepting, connecting), connections seen only from their handshake: their
    # numbers learnt through the challenge ACK to a SYN into our own stack, then probed
    ("replay_handshake", replayed("handshake", test_scale.case_handshake_only)),
    ("replay_loopback", replayed("loopback", case_loopback)),
]

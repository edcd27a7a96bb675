"""Off-path spoofing (issue 9): the real kaprobed against real kernel connections, with
forged segments written by raw sockets in the peer's namespace (wire.py: correct
checksums, so both kernels handle them as they would real ones). An off-path sender knows
the 4-tuple but not the sequence numbers. Each case shows that what it forges changes
nothing: a silent peer is still declared dead on time, no false reset, close or alive, and
a real connection is still tracked under a table flood.
"""

import sys
import time

from netns import check, conf_text, svc_rule, two_hosts
from test_cases import DEAD_AFTER, IDLE, Conn, connect
from test_discover import WIRE, Wire

PORT = 5432
TOLERANCE = 0.15  # s: a dead verdict this close to last segment + idle + interval x probes


class Injector(Wire):
    """wire.py in a namespace, only writing segments (no sniffer)."""

    def __init__(self, ctx, ns, name="injector"):
        self.name, self.ns, self.tx = name, ns, 0
        self.proc = ctx.topo.spawn(ns, [sys.executable, "-u", WIRE, name], name)
        ctx.peers.append(self)

    def spray(self, src, dst, flags, n, length=0):
        """n segments src -> dst (ip, port pairs) with random SEQ/ACK."""
        return self.cmd("spray %s %d %s %d %s %d %d" % (src[0], src[1], dst[0], dst[1], flags,
                                                       length, n), timeout=60)

    def flood(self, src_ip, dst, flags, n):
        return self.cmd("flood %s %s %d %s %d" % (src_ip, dst[0], dst[1], flags, n), timeout=60)


def silence_input(ctx, ns):
    """The peer hears nothing from port PORT any more (our probes are lost), while raw
    segments written in its namespace still leave (no output rule)."""
    ctx.topo.nft(ns, "\n".join([
        "add table inet kptspoof",
        "add chain inet kptspoof in_c { type filter hook input priority -10; policy accept; }",
        "add rule inet kptspoof in_c tcp sport %d drop" % PORT,
        ""]))


def ip_port(ep):
    host, port = ep.rsplit(":", 1)
    return host.strip("[]"), int(port)


def setup(ctx, extra=None):
    net = two_hosts(ctx.topo)
    rule = svc_rule(PORT)
    if ctx.netcheck:
        c = connect(ctx, net, 4, PORT)
        c.exchange()
        return net, None, c, None
    ctx.kap = ctx.topo.kaprobed(ctx.binary, net["local"], conf_text("{log}", [rule],
                                                                      extra=extra))
    c = connect(ctx, net, 4, PORT)
    t_last = c.exchange()
    return net, ctx.kap.log, c, t_last


def expect_dead_on_time(log, c, t_last, what, dead_after=DEAD_AFTER):
    dead = log.wait_conn(c.local, c.remote, "dead", dead_after + 5)
    err = dead.t - (t_last + dead_after)
    check(abs(err) <= TOLERANCE, "%s: dead %.3f s from last segment + %.1f s (tolerance %.2f): "
          "the forged segments moved the verdict: %s" % (what, err, dead_after, TOLERANCE,
                                                          dead.raw))
    bad = [e.raw for e in c.events(log) if e["event"] in ("reset", "close", "alive")]
    check(not bad, "%s: forged segments gave %s" % (what, bad[:3]))
    return err


def ignored_count(ctx):
    """kaprobed's closing totals: ignored_* counters summed (after stop)."""
    err = ctx.kap.proc.text("err")
    total = 0
    for key in ("ignored_bad_ack", "ignored_bad_rst", "ignored_syn", "ignored_no_ack",
                "ignored_bad_seq", "ignored_unverified"):
        for part in err.split():
            if part.startswith(key + "="):
                total += int(part.split("=")[1].strip('"'))
    return total


def silenced(ctx):
    """A connection exchanged then silenced, an injector in the peer's namespace. Returns
    (log, conn, last segment time, injector), or (None, conn, None, summary) in netcheck."""
    net, log, c, t_last = setup(ctx)
    if ctx.netcheck:
        return None, c, None, netcheck_silence(ctx, net, c)
    silence_input(ctx, net["peer"])
    return log, c, t_last, Injector(ctx, net["peer"])


def netcheck_silence(ctx, net, c):
    silence_input(ctx, net["peer"])
    inj = Injector(ctx, net["peer"])
    r = inj.spray(ip_port(c.remote), ip_port(c.local), "A", 10)
    check(r["sent"] != "0", "raw segments could not be written: %s" % r["line"])
    return "peer silenced by an input rule; raw segments still leave its namespace"


# 1, 2: ACK-less segments (data, FIN) with any SEQ during a probe round: no alive, no close.
def case_spoof_noack(ctx):
    log, c, t_last, inj = silenced(ctx)
    if log is None:
        return inj
    log.wait_conn(c.local, c.remote, "probe", IDLE + 2)
    for flags in ("P", "F", "PF", "-"):
        inj.spray(ip_port(c.remote), ip_port(c.local), flags, 300, length=1)
    err = expect_dead_on_time(log, c, t_last, "ACK-less segments")
    ctx.kap.stop_ok()
    return "1200 ACK-less segments (data, FIN) during the round: dead %+.0f ms, no alive/close" \
        % (err * 1000)


# 2: RSTs with any SEQ (and RST|ACK), also on a connection discovered before its numbers
# are learnt (RCV.NXT unknown: a RST of any SEQ used to close it): no reset, no close.
def case_spoof_rst(ctx):
    net = two_hosts(ctx.topo)
    c = connect(ctx, net, 4, PORT)
    t_last = c.exchange()
    if ctx.netcheck:
        return netcheck_silence(ctx, net, c)
    silence_input(ctx, net["peer"])
    inj = Injector(ctx, net["peer"])
    # idle 3 s: its numbers are asked for 1 s before the first probe, so the first RSTs
    # come while they are unknown
    ctx.kap = ctx.topo.kaprobed(ctx.binary, net["local"],
                                conf_text("{log}", [svc_rule(PORT, idle="3s")]))
    log = ctx.kap.log
    log.wait_conn(c.local, c.remote, "track", 2)
    inj.spray(ip_port(c.remote), ip_port(c.local), "R", 1000)  # before learning
    log.wait_conn(c.local, c.remote, "probe", 5)
    inj.spray(ip_port(c.remote), ip_port(c.local), "R", 1000)
    inj.spray(ip_port(c.remote), ip_port(c.local), "RA", 1000)
    err = expect_dead_on_time(log, c, t_last, "random RSTs", 3.0 + DEAD_AFTER - IDLE)
    ctx.kap.stop_ok()
    return "3000 RSTs with random SEQ, before learning and while probing: dead %+.0f ms, no " \
        "reset/close" % (err * 1000)


# 3: random ACKs all through the idle time never restart the idle clock.
def case_spoof_idle(ctx):
    log, c, t_last, inj = silenced(ctx)
    if log is None:
        return inj
    sent = 0
    while time.time() < t_last + DEAD_AFTER - 0.2:
        inj.spray(ip_port(c.remote), ip_port(c.local), "A", 500, length=sent % 2)
        sent += 500
    err = expect_dead_on_time(log, c, t_last, "random ACKs")
    ctx.kap.stop_ok()
    ign = ignored_count(ctx)
    check(ign >= sent * 0.9, "only %d of %d forged ACKs counted as ignored" % (ign, sent))
    return "%d ACKs with random SEQ/ACK through idle and round: dead %+.0f ms (%d ignored)" % (
        sent, err * 1000, ign)


# 5: a table flood (one-way ACKs and SYNs from random ports) never crowds out a real one.
def case_spoof_flood(ctx):
    net = two_hosts(ctx.topo)
    a = net[4]
    if ctx.netcheck:
        inj = Injector(ctx, net["peer"])
        r = inj.flood(a["peer"], (a["local"], PORT), "A", 100)
        return "flood of %s segments written" % r["sent"]
    ctx.kap = ctx.topo.kaprobed(ctx.binary, net["local"], conf_text(
        "{log}", [svc_rule(PORT)], extra={"max_connections": "10"}))
    log = ctx.kap.log
    srv = ctx.peer(net["local"], "server")
    srv.listen(a["local"], PORT)
    inj = Injector(ctx, net["peer"])
    inj.flood(a["peer"], (a["local"], PORT), "A", 2000)
    inj.flood(a["peer"], (a["local"], PORT), "S", 2000)
    cli = ctx.peer(net["peer"], "client")
    cc = cli.connect(a["local"], PORT)
    srv.accept()
    from netns import endpoint
    c = Conn(srv, cli, endpoint(a["local"], PORT), endpoint(cc["laddr"], int(cc["lport"])))
    t_last = c.exchange()
    silence_input(ctx, net["peer"])
    err = expect_dead_on_time(log, c, t_last, "under a flood")
    limit = [e.raw for e in log.events if e.get("event") == "untrack" and
             e.get("reason") == "limit"]
    check(not limit, "the flood filled the table: %s" % limit[:2])
    tracks = [e for e in log.events if e.get("event") == "track"]
    check(len(tracks) == 1, "%d track lines (expected only the real connection's): %s" % (
        len(tracks), [e.raw for e in tracks[:3]]))
    ctx.kap.stop_ok()
    return "4000 forged ACKs and SYNs from random ports, max_connections 10: the real " \
        "connection tracked, dead %+.0f ms; no limit line" % (err * 1000)


def probing_on_eth0(ctx, net):
    """kaprobed capturing the named interface eth0, a connection whose peer is silenced,
    its first probe out; then eth0 is deleted. Returns (log, conn, time of the deletion)."""
    from netns import run
    from test_cases import nft_drop_all
    lns = net["local"]
    ctx.kap = ctx.topo.kaprobed(ctx.binary, lns, conf_text("{log}", [svc_rule(PORT)],
                                                            interface="eth0"))
    log = ctx.kap.log
    c = connect(ctx, net, 4, PORT)
    c.exchange()
    nft_drop_all(ctx, net["peer"])
    log.wait_conn(c.local, c.remote, "probe", IDLE + 2)
    run(["ip", "-n", lns, "link", "del", "eth0"])
    return log, c, time.time()


# kaprobed never probes blind: a capture that fails at run time (its interface deleted) is
# reopened, and no round heard while it was down gives a verdict.
def case_capture_reopen(ctx):
    from netns import run
    from test_cases import INTERVAL, PROBES
    net = two_hosts(ctx.topo)
    lns, pns = net["local"], net["peer"]

    def relink():
        ctx.topo.link(lns, "eth0", pns, "eth0")
        ctx.topo.addr(lns, "eth0", "192.0.2.1/24")
        ctx.topo.addr(pns, "eth0", "192.0.2.2/24")

    if ctx.netcheck:
        run(["ip", "-n", lns, "link", "del", "eth0"])
        relink()
        return "the link deleted and made again with its addresses"
    log, c, t_down = probing_on_eth0(ctx, net)
    ctx.kap.proc.wait_line(lambda l: "capture on eth0 failed" in l, 3, "capture failed",
                           stream="err")
    time.sleep(DEAD_AFTER + 0.5)  # the round's verdict falls while the capture is down
    relink()
    ctx.kap.proc.wait_line(lambda l: "capture on eth0 reopened" in l, 3, "capture reopened",
                           stream="err")
    t_up = time.time()
    dead = log.wait_conn(c.local, c.remote, "dead", 2 * INTERVAL * PROBES + 3)
    evs = c.events(log)
    unc = [e for e in evs if e["event"] == "uncertain"]
    check(unc and all(e.get("reason") == "capture-down" for e in unc),
          "no uncertain reason=capture-down while the capture was down: %s" %
          [e.raw for e in evs][-8:])
    early = [e.raw for e in evs if e["event"] == "dead" and e.t < t_up]
    check(not early, "a verdict while the capture was down: %s" % early)
    # The round under way at the reopening was blind too: the verdict comes from the next,
    # heard whole.
    check(dead.t - t_up <= 2 * INTERVAL * PROBES + 0.3,
          "dead %.3f s after the reopening (two rounds are %.1f s)" % (
              dead.t - t_up, 2 * INTERVAL * PROBES))
    ctx.kap.stop_ok()
    return "down %.1f s: %d uncertain (capture-down), no verdict; reopened, dead %.2f s " \
        "later" % (t_up - t_down, len(unc), dead.t - t_up)


# A capture that cannot be reopened: kaprobed gives no verdict meanwhile and, after 30 s,
# exits with status 1 so that systemd restarts it (a daemon that cannot hear must not go
# on probing).
GIVE_UP = 30.0


def case_capture_gone(ctx):
    from netns import run
    net = two_hosts(ctx.topo)
    lns = net["local"]
    if ctx.netcheck:
        run(["ip", "-n", lns, "link", "del", "eth0"])
        return "the link deleted for good"
    log, c, t_down = probing_on_eth0(ctx, net)
    ctx.kap.proc.wait_line(lambda l: "cannot be reopened" in l, GIVE_UP + 5,
                           "the give-up line", stream="err")
    deadline = time.monotonic() + 5
    while ctx.kap.proc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    check(not ctx.kap.proc.alive(), "kaprobed still runs after giving up")
    status = ctx.kap.proc.p.returncode
    took = time.time() - t_down
    check(status == 1, "exit status %s after giving up (expected 1)" % status)
    check(GIVE_UP - 0.5 <= took <= GIVE_UP + 3, "gave up %.1f s after the capture failed "
          "(expected %.0f s)" % (took, GIVE_UP))
    verdicts = [e.raw for e in c.events(log) if e["event"] in ("dead", "reset") and
                e.t >= t_down]
    check(not verdicts, "a verdict while the capture was down: %s" % verdicts)
    return "capture gone for good: no verdict, exit status 1 after %.1f s" % took


CASES = [
    ("spoof_noack", case_spoof_noack),
    ("spoof_rst", case_spoof_rst),
    ("spoof_idle", case_spoof_idle),
    ("spoof_flood", case_spoof_flood),
    ("capture_reopen", case_capture_reopen),
    ("capture_gone", case_capture_gone),
]

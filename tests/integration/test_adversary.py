"""kaprobe integration cases: the attacks of issue 9 against the real daemon.

The off-path ones (ACK-less segments, random RSTs, random ACKs through the idle time, an
ACK and SYN flood against max_connections, and a capture that fails under a round) are in
test_spoof.py and run as part of this suite; below, an attacker on the same L2 segment.

Three namespaces (local, peer, attacker) on one bridge, kaprobed in local capturing a
NAMED interface (eth0, Ethernet: the link type carries no direction). The attacker sends
Ethernet frames to local's MAC address with local's own IP address as source (RSTs, FINs
and ACKs with random SEQ/ACK, "from" local's server port to the peer's client port). They
arrive: they must never be taken as local's own segments (a false reset or close, or
numbers overwritten so that the live peer's replies no longer match: a false dead). The
live peer must stay alive.
"""

import json
import os
import sys

from netns import TcpPeer, check, conf_text, endpoint, run, svc_rule
from test_cases import (DEAD_AFTER, IDLE, connect, fmt_events, no_errors)

import test_spoof

HERE = os.path.dirname(os.path.abspath(__file__))
WIRE = os.path.join(HERE, "wire.py")
ADDRS = {4: ("192.0.2.1", "192.0.2.2", "192.0.2.3", 24),
         6: ("2001:db8::1", "2001:db8::2", "2001:db8::3", 64)}


class Attacker(TcpPeer):
    """wire.py in the attacker's namespace (raw frames only)."""

    def __init__(self, ctx, ns, name="wire-attacker"):
        self.name, self.ns, self.tx = name, ns, 0
        self.proc = ctx.topo.spawn(ns, [sys.executable, "-u", WIRE, name], name)
        ctx.peers.append(self)

    def frames(self, dstmac, src, dst, flags, count, gap):
        (sa, sp), (da, dp) = split(src), split(dst)
        return self.cmd("frames eth0 %s %s %d %s %d %s %d %g" % (
            dstmac, sa, sp, da, dp, flags, count, gap), timeout=count * gap + 5)


def split(ep):
    host, port = ep.rsplit(":", 1)
    return host.strip("[]"), int(port)


def one_segment(topo):
    """local, peer and attacker on one bridge (in a switch namespace), dual stack."""
    sw = topo.netns("switch")
    run(["ip", "-n", sw, "link", "add", "br0", "type", "bridge"])
    run(["ip", "-n", sw, "link", "set", "br0", "up"])
    net = {"switch": sw}
    for role, port in (("local", "pl"), ("peer", "pp"), ("attacker", "pa")):
        ns = topo.netns(role)
        topo.link(ns, "eth0", sw, port)
        run(["ip", "-n", sw, "link", "set", port, "master", "br0"])
        net[role] = ns
    for fam, (l, p, a, plen) in ADDRS.items():
        for role, addr in (("local", l), ("peer", p), ("attacker", a)):
            topo.addr(net[role], "eth0", "%s/%d" % (addr, plen))
        net[fam] = {"local": l, "peer": p, "attacker": a}
    return net


def mac_of(ns, ifname="eth0"):
    out = run(["ip", "-n", ns, "-j", "link", "show", ifname]).stdout
    return json.loads(out)[0]["address"]


def impersonation(ctx, fam):
    net = one_segment(ctx.topo)
    if ctx.netcheck:
        return "bridge of three namespaces built (the attack needs kaprobed)"
    conf = conf_text("{log}", [svc_rule()], interface="eth0")
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["local"], conf)
    log = kap.log
    err = kap.proc.text("err")
    check("direction of frames cannot be known" not in err,
          "kaprobed could not open per-direction captures on eth0:\n%s" % err)
    c = connect(ctx, net, fam)
    c.exchange()
    first = log.wait_conn(c.local, c.remote, "alive", IDLE + DEAD_AFTER + 3)
    attacker = Attacker(ctx, net["attacker"])
    mac = mac_of(net["local"])
    # Local's server end impersonated toward the peer's client end; then toward us.
    sent = 0
    for flags in ("R", "A", "FA", "RA", "A", "R"):
        attacker.frames(mac, c.local, c.remote, flags, 8, 0.1)
        sent += 8
    attacker.frames(mac, c.remote, c.local, "A", 4, 0.1)  # the peer's source, too
    sent += 4
    # A probe round falls inside the attack (idle 1 s); the next must still be answered.
    later = log.wait_conn(c.local, c.remote, "alive", DEAD_AFTER + 3, after=first)
    bad = [e for e in c.events(log) if e.idx > first.idx and
           e.get("event") in ("reset", "close", "dead", "unreachable")]
    check(not bad, "spoofed frames with our address changed the verdict:\n%s" % fmt_events(bad))
    c.exchange(300, 400)
    s = c.srv.stats()
    check(s["error"] == "none", "the connection broke: %s" % s["line"])
    no_errors(ctx)
    kap.stop_ok()
    return "%d spoofed frames with our address as source ignored on a named interface; " \
           "alive again (rtt %s ms), no reset/close/dead" % (sent, later["rtt"])


def case_adv_impersonate(ctx):
    return impersonation(ctx, 4)


def case_adv_impersonate6(ctx):
    return impersonation(ctx, 6)


def case_adv_loopback_named(ctx):
    """interface = lo (named, Ethernet link type too): per-direction captures there see
    each loopback packet once, arriving, with both ends local: both ends are tracked and
    a probe from either end is answered."""
    ns = ctx.topo.netns("local")
    if ctx.netcheck:
        return "loopback only"
    conf = conf_text("{log}", [svc_rule()], interface="lo")
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, ns, conf)
    log = kap.log
    net = {"local": ns, "peer": ns, 4: {"local": "127.0.0.1", "peer": "127.0.0.1"}}
    c = connect(ctx, net, 4)
    c.exchange()
    a = log.wait_conn(c.local, c.remote, "alive", IDLE + DEAD_AFTER + 3)
    bad = [e for e in log.events if e.get("event") in ("reset", "close", "dead")]
    check(not bad, "verdicts on a loopback connection:\n%s" % fmt_events(bad))
    no_errors(ctx)
    kap.stop_ok()
    return "loopback connection probed and alive (rtt %s ms) on interface = lo" % a["rtt"]


def case_adv_loopback_spoof(ctx):
    """interface = any: frames from the attacker claiming to be loopback traffic
    (127.0.0.1 -> 127.0.0.1, the 4-tuple of a real loopback connection) arrive on eth0. Only
    a frame that came through lo has both ends ours: SLL2 names the interface."""
    net = one_segment(ctx.topo)
    if ctx.netcheck:
        return "bridge of three namespaces built (the attack needs kaprobed)"
    conf = conf_text("{log}", [svc_rule()], interface="any")
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["local"], conf)
    log = kap.log
    lo = {"local": net["local"], "peer": net["local"],
          4: {"local": "127.0.0.1", "peer": "127.0.0.1"}}
    c = connect(ctx, lo, 4)
    c.exchange()
    first = log.wait_conn(c.local, c.remote, "alive", IDLE + DEAD_AFTER + 3)
    attacker = Attacker(ctx, net["attacker"])
    mac = mac_of(net["local"])
    sent = 0
    for flags in ("R", "A", "FA", "RA", "R"):
        attacker.frames(mac, c.local, c.remote, flags, 8, 0.1)
        sent += 8
    later = log.wait_conn(c.local, c.remote, "alive", DEAD_AFTER + 3, after=first)
    bad = [e for e in c.events(log) if e.idx > first.idx and
           e.get("event") in ("reset", "close", "dead", "unreachable")]
    check(not bad, "spoofed loopback frames from eth0 changed the verdict:\n%s" %
          fmt_events(bad))
    no_errors(ctx)
    kap.stop_ok()
    return "%d spoofed 127.0.0.1 frames arriving on eth0 ignored on any; loopback connection " \
           "alive again (rtt %s ms)" % (sent, later["rtt"])


# In run order: (name, function)
CASES = test_spoof.CASES + [
    ("adv_impersonate", case_adv_impersonate),
    ("adv_impersonate6", case_adv_impersonate6),
    ("adv_loopback_named", case_adv_loopback_named),
    ("adv_loopback_spoof", case_adv_loopback_spoof),
]

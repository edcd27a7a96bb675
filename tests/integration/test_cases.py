"""kaprobe integration cases: the real kaprobed, real kernel TCP between namespaces.

Each case is a function case_NAME(ctx) returning a one-line summary, or raising
CaseFailure. With ctx.netcheck set, a case checks only the network side of its scenario
(no kaprobed): that the drop really silences the peer, that the router really answers
with ICMP, and so on. run.py runs them.
"""

import glob
import os
import re
import time

from netns import (REPO, CaseSkip, Topo, check, conf_text, endpoint, fail,
                   routed, run, svc_rule, two_hosts)

# Default schedule of the cases: idle 1s, interval 500ms, probes 3.
IDLE, INTERVAL, PROBES = 1.0, 0.5, 3
DEAD_AFTER = IDLE + INTERVAL * PROBES
VERDICTS = ("idle", "probe", "reply", "alive", "unreachable", "dead", "reset")


class Ctx:
    """What a case gets: its topology, the daemon binary, the mode."""

    def __init__(self, name, binary, netcheck=False):
        self.name = name
        self.binary = binary
        self.netcheck = netcheck
        self.topo = Topo(name)
        self.kap = None
        self.peers = []

    def start_kaprobed(self, ns, rules):
        self.kap = self.topo.kaprobed(self.binary, ns, conf_text("{log}", rules))
        return self.kap

    def peer(self, ns, name):
        p = self.topo.peer(ns, name)
        self.peers.append(p)
        return p

    def details(self):
        parts = []
        if self.kap is not None:
            parts.append(self.kap.report())
        for p in self.peers:
            lines = [l for _, l in p.proc.out if not l.startswith("ev=data")]
            parts.append("--- %s (%s) transcript (last 15 lines, ev=data left out):\n%s" % (
                p.name, p.ns, "\n".join(lines[-15:])))
            if p.proc.err:
                parts.append("--- %s stderr:\n%s" % (p.name, p.proc.text("err")))
        return "\n".join(parts)

    def cleanup(self):
        self.topo.cleanup()


class Conn:
    """One connection: server program in the local namespace, client in the peer's."""

    def __init__(self, srv, cli, local, remote):
        self.srv, self.cli = srv, cli
        self.local, self.remote = local, remote

    def exchange(self, up=100, down=200):
        """Client sends, server reads and replies, client reads the reply. Returns the
        moment the client read it: its kernel acknowledged the reply at once (quick ACK),
        so that is the last segment from the peer until it speaks again."""
        self.cli.send(up)
        self.srv.wait_rx(self.cli.tx)
        self.srv.send(down)
        return float(self.cli.wait_rx(self.srv.tx)["rx_t"])

    def events(self, log):
        return log.conn(self.local, self.remote)


def connect(ctx, net, fam, port=5432, tag="", rcvbuf=0):
    """rcvbuf: the client's SO_RCVBUF (a small window that a paused reader shuts)."""
    a = net[fam]
    srv = ctx.peer(net["local"], "server" + tag)
    srv.listen(a["local"], port)
    cli = ctx.peer(net["peer"], "client" + tag)
    if rcvbuf:
        cli.cmd("rcvbuf %d" % rcvbuf)
    c = cli.connect(a["local"], port)
    srv.accept()
    return Conn(srv, cli, endpoint(a["local"], port), endpoint(c["laddr"], int(c["lport"])))


# nft scripts: one statement per line (ARCHITECTURE.md, Platform facts). Table/chain names avoid keywords.
def nft_drop_all(ctx, ns):
    ctx.topo.nft(ns, "\n".join([
        "add table inet kptdrop",
        "add chain inet kptdrop in_c { type filter hook input priority -10; policy drop; }",
        "add chain inet kptdrop out_c { type filter hook output priority -10; policy drop; }",
        ""]))


def nft_drop_port(ctx, ns, port):
    """In the peer's namespace: silence one server port only (both directions)."""
    ctx.topo.nft(ns, "\n".join([
        "add table inet kptport",
        "add chain inet kptport in_c { type filter hook input priority -10; policy accept; }",
        "add chain inet kptport out_c { type filter hook output priority -10; policy accept; }",
        "add rule inet kptport in_c tcp sport %d drop" % port,
        "add rule inet kptport out_c tcp dport %d drop" % port,
        ""]))


def nft_drop_rst(ctx, ns):
    ctx.topo.nft(ns, "\n".join([
        "add table inet kptrst",
        "add chain inet kptrst out_c { type filter hook output priority -10; policy accept; }",
        "add rule inet kptrst out_c tcp flags & rst == rst drop",
        ""]))


def nft_undrop_rst(ctx, ns):
    ctx.topo.nft(ns, "delete table inet kptrst\n")


def nft_reject(ctx, router, fam, peer_addr):
    if fam == 4:
        rule = "add rule inet kptrej fwd_c ip daddr %s reject with icmp type host-unreachable"
    else:
        rule = "add rule inet kptrej fwd_c ip6 daddr %s reject with icmpv6 type addr-unreachable"
    ctx.topo.nft(router, "\n".join([
        "add table inet kptrej",
        "add chain inet kptrej fwd_c { type filter hook forward priority 0; policy accept; }",
        rule % peer_addr,
        ""]))


# Fields every status line of an event carries (beyond ts, event, rule, local, remote).
EVENT_FIELDS = {
    "track": ("source",), "idle": ("idle",), "probe": ("n",), "reply": ("rtt",),
    "alive": ("rtt", "probes"), "unreachable": ("icmp", "from"),
    "dead": ("probes", "idle", "reason"), "reset": ("probes",), "close": ("reason",),
}
TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ENDPOINT_RE = re.compile(r"(\d+\.\d+\.\d+\.\d+|\[[0-9a-f:.]+\]):\d+")


def no_errors(ctx, fields=EVENT_FIELDS):
    """No level=error line, and every line has the documented shape: ts, event, rule,
    local, remote first (in that order), then the event's own fields (fields: the events
    this case may log, each with its fields)."""
    log = ctx.kap.log
    errs = log.errors()
    check(not errs, "status log has level=error lines:\n%s" % "\n".join(e.raw for e in errs))
    bad = []
    for e in log.events:
        keys = list(e.keys())
        ev = e.get("event")
        if keys[:5] != ["ts", "event", "rule", "local", "remote"]:
            bad.append("does not start with ts, event, rule, local, remote: " + e.raw)
        elif not TS_RE.fullmatch(e["ts"]):
            bad.append("ts is not UTC ISO 8601 with milliseconds: " + e.raw)
        elif ev not in fields:
            bad.append("unknown event: " + e.raw)
        elif not (ENDPOINT_RE.fullmatch(e["local"]) and ENDPOINT_RE.fullmatch(e["remote"])):
            bad.append("local/remote not ADDR:PORT or [ADDR]:PORT: " + e.raw)
        else:
            missing = [k for k in fields[ev] if k not in e]
            if missing:
                bad.append("lacks %s: %s" % (", ".join(missing), e.raw))
    check(not bad, "malformed status lines:\n%s" % "\n".join(bad))


def only_events(evs, allowed, what):
    check(evs and evs[0].get("event") == "track",
          "%s: the connection's first line is not track:\n%s" % (what, fmt_events(evs)))
    bad = [e for e in evs if e.get("event") not in allowed]
    check(not bad, "%s: unexpected lines:\n%s" % (what, "\n".join(e.raw for e in bad)))


def fmt_events(evs):
    return "\n".join(e.raw for e in evs)


# --------------------------------------------------------------------------------------
# 1 / 8: alive

def alive(ctx, fam):
    net = two_hosts(ctx.topo)
    if ctx.netcheck:
        # A healthy link both ways, and the byte check works.
        c = connect(ctx, net, fam)
        c.exchange()
        c.exchange(3000, 5000)
        s, k = c.srv.stats(), c.cli.stats()
        check(s["rx"] == str(c.cli.tx) and k["rx"] == str(c.srv.tx) and s["bad"] == "0"
              and k["bad"] == "0", "byte counts wrong: server %s, client %s" % (
                  s["line"], k["line"]))
        return "data flows both ways, byte check sound"
    kap = ctx.start_kaprobed(net["local"], [svc_rule()])
    log = kap.log
    c = connect(ctx, net, fam)
    t_last = c.exchange()
    log.wait_conn(c.local, c.remote, "track", 3)
    rounds = []
    after = None
    for r in range(2):
        idle = log.wait_conn(c.local, c.remote, "idle", IDLE + 3, after=after)
        alive_ev = log.wait_conn(c.local, c.remote, "alive", DEAD_AFTER + 2, after=idle)
        bad = [e for e in c.events(log) if idle.idx < e.idx < alive_ev.idx
               and e.get("event") in ("dead", "reset", "unreachable")]
        check(not bad, "verdicts between idle and alive:\n%s" % fmt_events(bad))
        check(int(alive_ev.num("probes")) >= 1, "alive line has probes < 1: %s" % alive_ev.raw)
        alive_ev.num("rtt")
        rounds.append((idle, alive_ev))
        after = alive_ev
    first_idle = rounds[0][0]
    gap = first_idle.t - t_last
    check(IDLE * 0.9 <= gap <= IDLE * 1.1 + 0.05,
          "first idle line %.3f s after the last segment, expected %.1f s (+-10%%): %s" % (
              gap, IDLE, first_idle.raw))
    # Data still flows both ways, and nobody received a byte it was not sent.
    c.exchange(1000, 2000)
    c.cli.send(500)
    c.srv.wait_rx(c.cli.tx)
    s, k = c.srv.stats(), c.cli.stats()
    check(int(s["rx"]) == c.cli.tx and int(k["rx"]) == c.srv.tx,
          "bytes received differ from bytes sent: server rx=%s (client sent %d), client rx=%s "
          "(server sent %d)" % (s["rx"], c.cli.tx, k["rx"], c.srv.tx))
    check(s["bad"] == "0" and k["bad"] == "0",
          "received bytes differ from the sent pattern (probe bytes delivered?): server bad=%s, "
          "client bad=%s" % (s["bad"], k["bad"]))
    check(s["error"] == "none" and k["error"] == "none",
          "connection broke: server %s, client %s" % (s["error"], k["error"]))
    evs = c.events(log)
    only_events(evs, ("track", "idle", "probe", "reply", "alive"), "alive case")
    no_errors(ctx)
    kap.stop_ok()
    return "%d idle/alive rounds (rtt %s ms, %s ms), first idle %.3f s after last segment, " \
           "%d/%d bytes delivered exactly" % (
               len(rounds), rounds[0][1]["rtt"], rounds[1][1]["rtt"], gap, c.cli.tx, c.srv.tx)


def case_alive(ctx):
    return alive(ctx, 4)


def case_alive6(ctx):
    return alive(ctx, 6)


# --------------------------------------------------------------------------------------
# 2 / 8: dead

def check_dead_timing(dead, t_last, expect, what):
    took = dead.t - t_last
    check(abs(took - expect) <= 0.1 * expect,
          "%s: dead %.3f s after the last segment from the peer, expected %.3f s +-10%%: %s" % (
              what, took, expect, dead.raw))
    idle = dead.num("idle")
    check(abs(idle - expect) <= 0.1 * expect,
          "%s: dead line idle=%s, expected %.3f +-10%%: %s" % (what, dead["idle"], expect,
                                                              dead.raw))
    return took


def dead(ctx, fam):
    net = two_hosts(ctx.topo)
    if ctx.netcheck:
        c = connect(ctx, net, fam)
        c.exchange()
        nft_drop_all(ctx, net["peer"])
        c.srv.send(10)
        r = c.cli.wait_rx(c.srv.tx, 1.5, expect_ok=False)
        check(not r["ok"], "client still received data through the drop: %s" % r["line"])
        c.cli.send(10)
        r = c.srv.wait_rx(c.cli.tx, 1.5, expect_ok=False)
        check(not r["ok"], "server still received data from the dropped peer: %s" % r["line"])
        info = c.srv.cmd("info")
        check(int(info["unacked"]) >= 1, "server's data got acknowledged through the drop: %s"
              % info["line"])
        return "nft drop silences the peer both ways (server unacked=%s)" % info["unacked"]
    kap = ctx.start_kaprobed(net["local"], [svc_rule()])
    log = kap.log
    c = connect(ctx, net, fam)
    t_last = c.exchange()
    nft_drop_all(ctx, net["peer"])
    d = log.wait_conn(c.local, c.remote, "dead", DEAD_AFTER + 3)
    check(d.get("reason") == "no-reply", "dead line reason is not no-reply: %s" % d.raw)
    check(d.get("probes") == str(PROBES), "dead line probes is not %d: %s" % (PROBES, d.raw))
    took = check_dead_timing(d, t_last, DEAD_AFTER, "dead")
    evs = c.events(log)
    kinds = [e["event"] for e in evs]
    check("idle" in kinds and kinds.index("idle") < kinds.index("dead"),
          "no idle line before dead:\n%s" % fmt_events(evs))
    probes = [e for e in evs if e["event"] == "probe"]
    check(len(probes) == PROBES, "expected %d probe lines, got %d:\n%s" % (
        PROBES, len(probes), fmt_events(evs)))
    only_events(evs, ("track", "idle", "probe", "dead"), "dead case")
    no_errors(ctx)
    kap.stop_ok()
    return "dead reason=no-reply %.3f s after the last segment (expected %.1f)" % (
        took, DEAD_AFTER)


def case_dead(ctx):
    return dead(ctx, 4)


def case_dead6(ctx):
    return dead(ctx, 6)


# --------------------------------------------------------------------------------------
# 3 / 8: reset

def vanish(ctx, net, c):
    """The peer's socket disappears without a word: its RST is dropped."""
    nft_drop_rst(ctx, net["peer"])
    c.cli.cmd("abort")
    nft_undrop_rst(ctx, net["peer"])


def reset(ctx, fam):
    net = two_hosts(ctx.topo)
    if ctx.netcheck:
        c = connect(ctx, net, fam)
        c.exchange()
        vanish(ctx, net, c)
        r = c.srv.wait_err(1.5, expect_ok=False)
        check(not r["ok"], "the server heard of the peer's abort (RST not dropped?): %s"
              % r["line"])
        c.srv.send(10)
        r = c.srv.wait_err(3)
        check(r["errno"] == "ECONNRESET", "server got %s, expected ECONNRESET" % r["errno"])
        return "abort with RST dropped is silent; the next segment draws a RST (ECONNRESET)"
    kap = ctx.start_kaprobed(net["local"], [svc_rule()])
    log = kap.log
    c = connect(ctx, net, fam)
    t_last = c.exchange()
    vanish(ctx, net, c)
    r = log.wait_conn(c.local, c.remote, "reset", DEAD_AFTER + 3)
    check(int(r.num("probes")) >= 1, "reset line has probes < 1: %s" % r.raw)
    took = r.t - t_last
    check(took < DEAD_AFTER, "reset came %.3f s after the last segment, after the dead time "
          "%.1f: %s" % (took, DEAD_AFTER, r.raw))
    e = c.srv.wait_err(3, expect_ok=False)
    check(e["ok"] and e.get("errno") == "ECONNRESET",
          "server program: expected its recv to fail with ECONNRESET, got: %s" % e["line"])
    evs = c.events(log)
    only_events(evs, ("track", "idle", "probe", "reset", "close"), "reset case")
    no_errors(ctx)
    kap.stop_ok()
    return "reset probes=%s %.3f s after the last segment; server recv got ECONNRESET " \
           "%.3f s after the reset line" % (r["probes"], took, float(e["err_t"]) - r.t)


def case_reset(ctx):
    return reset(ctx, 4)


def case_reset6(ctx):
    return reset(ctx, 6)


# --------------------------------------------------------------------------------------
# 4: unreachable (router answers ICMP host-unreachable / ICMPv6 address-unreachable)

ICMP = {4: ("host-unreachable", 3, 1), 6: ("addr-unreachable", 1, 3)}


def unreachable(ctx, fam):
    net = routed(ctx.topo)
    a = net[fam]
    name, itype, icode = ICMP[fam]
    if ctx.netcheck:
        c = connect(ctx, net, fam)
        c.exchange()
        watch = ctx.peer(net["local"], "icmpwatch")
        watch.cmd("icmp_open %d" % fam)
        nft_reject(ctx, net["router"], fam, a["peer"])
        for _ in range(3):
            c.srv.send(10)
        r = watch.cmd("icmp_wait %d %d 3 3" % (itype, icode), expect_ok=False)
        check(r["ok"], "expected 3 ICMP type %d code %d from the router: %s" % (
            itype, icode, r["line"]))
        check(r["from"] == a["router"], "ICMP came from %s, expected %s" % (r["from"],
                                                                           a["router"]))
        return "router answers every segment with ICMP type %d code %d from %s" % (
            itype, icode, r["from"])
    kap = ctx.start_kaprobed(net["local"], [svc_rule()])
    log = kap.log
    c = connect(ctx, net, fam)
    t_last = c.exchange()
    nft_reject(ctx, net["router"], fam, a["peer"])
    u = log.wait_conn(c.local, c.remote, "unreachable", DEAD_AFTER + 3)
    check(u.get("icmp") == name, "unreachable line: expected icmp=%s: %s" % (name, u.raw))
    check(u.get("from") == a["router"], "unreachable line: expected from=%s: %s" % (
        a["router"], u.raw))
    d = log.wait_conn(c.local, c.remote, "dead", DEAD_AFTER + 3)
    check(d.get("reason") == "unreachable", "dead line: expected reason=unreachable: %s" % d.raw)
    took = check_dead_timing(d, t_last, DEAD_AFTER, "unreachable")
    evs = c.events(log)
    unr = [e for e in evs if e["event"] == "unreachable"]
    bad = [e for e in unr if e.get("icmp") != name or e.get("from") != a["router"]]
    check(not bad, "unreachable lines with wrong icmp=/from=:\n%s" % fmt_events(bad))
    only_events(evs, ("track", "idle", "probe", "unreachable", "dead"), "unreachable case")
    no_errors(ctx)
    kap.stop_ok()
    return "%d unreachable lines icmp=%s from=%s, dead reason=unreachable %.3f s after the " \
           "last segment" % (len(unr), name, a["router"], took)


def case_unreachable(ctx):
    return unreachable(ctx, 4)


def case_unreachable6(ctx):
    return unreachable(ctx, 6)


# --------------------------------------------------------------------------------------
# 5: kaprobed against the kernel's own keepalive, side by side

TWIN_IDLE, TWIN_INTVL, TWIN_CNT = 2, 1, 3


def case_twin(ctx):
    net = two_hosts(ctx.topo)
    expect = TWIN_IDLE + TWIN_INTVL * TWIN_CNT
    kap = None
    if not ctx.netcheck:
        kap = ctx.start_kaprobed(net["local"], [svc_rule(
            5432, "%ds" % TWIN_IDLE, "%ds" % TWIN_INTVL, TWIN_CNT)])
    probed = connect(ctx, net, 4, 5432, "-probed")
    twin = connect(ctx, net, 4, 5433, "-twin")
    twin.srv.cmd("keepalive %d %d %d" % (TWIN_IDLE, TWIN_INTVL, TWIN_CNT))
    t_probed = probed.exchange()
    t_twin = twin.exchange()
    nft_drop_all(ctx, net["peer"])
    e = twin.srv.wait_err(expect + 5, expect_ok=False)
    check(e["ok"] and e.get("errno") == "ETIMEDOUT",
          "twin server: expected recv to fail with ETIMEDOUT, got %s" % e["line"])
    kern = float(e["err_t"]) - t_twin
    if ctx.netcheck:
        check(abs(kern - expect) <= 0.1 * expect,
              "kernel keepalive gave up %.3f s after the last segment, expected %d s +-10%%"
              % (kern, expect))
        return "kernel keepalive (2/1/3) ETIMEDOUT %.3f s after the last segment" % kern
    d = kap.log.wait_conn(probed.local, probed.remote, "dead", 5)
    check(d.get("reason") == "no-reply", "dead line reason is not no-reply: %s" % d.raw)
    kp = d.t - t_probed
    ratio = kp / kern
    print("    twin: kaprobed dead after %.3f s, kernel ETIMEDOUT after %.3f s, ratio %.3f"
          % (kp, kern, ratio))
    check(0.9 <= ratio <= 1.1, "kaprobed/kernel = %.3f / %.3f = %.3f, outside 0.9..1.1" % (
        kp, kern, ratio))
    twin_evs = twin.events(kap.log)
    check(not [x for x in twin_evs if x["event"] in VERDICTS],
          "the twin (port 5433, no rule) was probed:\n%s" % fmt_events(twin_evs))
    no_errors(ctx)
    kap.stop_ok()
    return "kaprobed %.3f s, kernel %.3f s, ratio %.3f" % (kp, kern, ratio)


# --------------------------------------------------------------------------------------
# 6: stateful firewall whose conntrack entry expires after 4 s idle

CT_TIMEOUT = 4
MB_IDLE = 7.0
MB_WAIT = 3.0


def firewall(ctx, router):
    ctx.topo.nft(router, "\n".join([
        "add table inet kptfw",
        "add chain inet kptfw fwd_c { type filter hook forward priority 0; policy drop; }",
        "add rule inet kptfw fwd_c ct state established accept",
        "add rule inet kptfw fwd_c ct state invalid drop",
        "add rule inet kptfw fwd_c tcp dport 5432 tcp flags & (fin|syn|rst|ack) == syn "
        "ct state new accept",
        ""]))
    # The per-namespace conntrack sysctls exist once a ruleset using ct is loaded.
    key = "net.netfilter.nf_conntrack_tcp_timeout_established"
    ctx.topo.sysctl(router, key, CT_TIMEOUT)
    got = run(["sysctl", "-n", key], ns=router).stdout.strip()
    check(got == str(CT_TIMEOUT), "router %s is %s, expected %d" % (key, got, CT_TIMEOUT))


def idle_until(t, log=None):
    """The scenario's idle period: nothing is sent until wall-clock time t."""
    while time.time() < t:
        if log is not None and log.alive is not None and not log.alive():
            fail("kaprobed exited during the idle period")
        time.sleep(min(0.1, max(0.0, t - time.time())))


def case_middlebox(ctx):
    net = routed(ctx.topo)
    firewall(ctx, net["router"])
    # Without kaprobed: the entry expires, the firewall drops the next data.
    c = connect(ctx, net, 4, 5432, "-a")
    t_last = c.exchange()
    idle_until(t_last + MB_IDLE)
    c.srv.send(100)
    r = c.cli.wait_rx(c.srv.tx, MB_WAIT, expect_ok=False)
    check(not r["ok"], "without kaprobed, data after %.0f s idle still crossed the firewall "
          "(conntrack timeout %d s): %s" % (MB_IDLE, CT_TIMEOUT, r["line"]))
    c.srv.cmd("abort")
    c.cli.cmd("abort")
    c.srv.close()
    c.cli.close()
    if ctx.netcheck:
        # Control: idle for less than the conntrack timeout, data still crosses.
        c = connect(ctx, net, 4, 5432, "-c")
        t_last = c.exchange()
        idle_until(t_last + CT_TIMEOUT / 2)
        c.srv.send(100)
        r = c.cli.wait_rx(c.srv.tx, MB_WAIT, expect_ok=False)
        check(r["ok"], "control: data after %.0f s idle (< conntrack timeout) was lost: %s" % (
            CT_TIMEOUT / 2, r["line"]))
        return "conntrack entry expires: data after %.0f s idle is lost, after %.0f s it " \
               "crosses" % (MB_IDLE, CT_TIMEOUT / 2)
    # With kaprobed: its probes keep the entry alive.
    kap = ctx.start_kaprobed(net["local"], [svc_rule()])
    log = kap.log
    c = connect(ctx, net, 4, 5432, "-b")
    t_last = c.exchange()
    idle_until(t_last + MB_IDLE, log)
    alive = [e for e in c.events(log) if e["event"] == "alive"]
    c.srv.send(100)
    r = c.cli.wait_rx(c.srv.tx, MB_WAIT, expect_ok=False)
    check(r["ok"], "with kaprobed probing (idle 1s), data after %.0f s idle did not cross the "
          "firewall within %.0f s: %s (alive lines during the idle period: %d)" % (
              MB_IDLE, MB_WAIT, r["line"], len(alive)))
    check(len(alive) >= 3, "expected an alive line about every %.1f s while idle, got %d:\n%s" % (
        IDLE, len(alive), fmt_events(c.events(log))))
    only_events(c.events(log), ("track", "idle", "probe", "reply", "alive"), "middlebox case")
    no_errors(ctx)
    kap.stop_ok()
    return "no probes: data lost after %.0f s idle; with kaprobed (%d alive rounds): data " \
           "arrived" % (MB_IDLE, len(alive))


# --------------------------------------------------------------------------------------
# 7: a busy connection is never probed

def case_busy(ctx):
    net = two_hosts(ctx.topo)
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    kap = ctx.start_kaprobed(net["local"], [svc_rule()])
    log = kap.log
    c = connect(ctx, net, 4)
    c.exchange()
    log.wait_conn(c.local, c.remote, "track", 3)
    s = c.cli.cmd("stream 8 150 4", timeout=10)
    t_end = float(s["t_last"])
    c.srv.wait_rx(int(s["total"]))
    c.cli.cmd("close")
    c.srv.wait_err(3)
    c.srv.cmd("close")
    cl = log.wait_conn(c.local, c.remote, "close", 3)
    evs = c.events(log)
    probed = [e for e in evs if e["event"] in VERDICTS]
    check(not probed, "a connection busy every 150 ms was probed:\n%s" % fmt_events(evs))
    check(cl.t - t_end < IDLE * 0.9,
          "inconclusive: the connection closed %.3f s after its last data (harness too slow)"
          % (cl.t - t_end))
    check(cl.get("reason") == "fin", "close line: expected reason=fin: %s" % cl.raw)
    no_errors(ctx)
    kap.stop_ok()
    return "%s sends in 4 s, lines: %s" % (s["sends"], " ".join(e["event"] for e in evs))


# --------------------------------------------------------------------------------------
# 9: configuration checking (kaprobed -n)

def case_config(ctx):
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    binary = os.path.abspath(ctx.binary)
    bad = sorted(glob.glob(os.path.join(REPO, "tests/configs/bad/*.ini")))
    good = sorted(glob.glob(os.path.join(REPO, "tests/configs/good/*.ini")))
    good += [os.path.join(REPO, "conf/kaprobed.ini"), os.path.join(REPO, "conf/demo.ini")]
    problems = []
    for path in good:
        rel = os.path.relpath(path, REPO)
        if not os.path.exists(path):
            problems.append("%s: missing" % rel)
            continue
        p = run([binary, "-n", "-c", rel], check=False, cwd=REPO)
        if p.returncode != 0 or "configuration OK" not in (p.stdout + p.stderr).splitlines():
            problems.append("%s: expected 'configuration OK' and exit 0, got exit %d\n"
                            "  stdout: %r\n  stderr: %r" % (rel, p.returncode, p.stdout,
                                                             p.stderr))
    nbad = 0
    for path in bad:
        rel = os.path.relpath(path, REPO)
        exp_path = path[:-len(".ini")] + ".expected"
        if not os.path.exists(exp_path):
            problems.append("%s: no %s" % (rel, os.path.basename(exp_path)))
            continue
        with open(exp_path) as f:
            expected = [l for l in f.read().splitlines() if l.strip()]
        p = run([binary, "-n", "-c", rel], check=False, cwd=REPO)
        got = [l for l in p.stderr.splitlines() if l.strip()]
        nbad += 1
        if p.returncode != 1 or got != expected:
            problems.append("%s: expected exit 1 and stderr\n    %s\n  got exit %d and stderr\n"
                            "    %s" % (rel, "\n    ".join(expected), p.returncode,
                                        "\n    ".join(got)))
    check(not problems, "%d problem(s):\n  %s" % (len(problems), "\n  ".join(problems)))
    if not bad:
        raise CaseSkip("no tests/configs/bad/*.ini yet; %d good configs OK" % len(good))
    return "%d bad configs rejected with the expected lines, %d good configs OK" % (
        nbad, len(good))


# In run order: (name, function, needs namespaces)
CASES = [
    ("alive", case_alive),
    ("dead", case_dead),
    ("reset", case_reset),
    ("unreachable", case_unreachable),
    ("unreachable6", case_unreachable6),
    ("twin", case_twin),
    ("middlebox", case_middlebox),
    ("busy", case_busy),
    ("alive6", case_alive6),
    ("dead6", case_dead6),
    ("reset6", case_reset6),
    ("config", case_config),
]

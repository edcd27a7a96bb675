"""Gateway mode (issue 11): kaprobed on a router probes both ends of the connections it
forwards, each in the other end's name.

Three namespaces (netns.routed, connect of test_cases): the server program in "local"
(192.0.2.1 / 2001:db8:1::1) - the router (kaprobed, forwarding) - the client program in "peer"
(198.51.100.2 / 2001:db8:2::2). An nft counter in each end's namespace counts
the 1-byte TCP segments that arrive from the other end's address (the probes: the programs
only ever send 100 bytes or more), before any drop.
"""

import json
import os
import re
import signal
import time

from netns import check, conf_text, endpoint, routed, run, svc_rule
from test_cases import (CT_TIMEOUT, DEAD_AFTER, IDLE, INTERVAL, MB_IDLE, MB_WAIT, PROBES,
                        Conn, connect, firewall, fmt_events, idle_until, nft_drop_all)

PORT = 5432
GW_FIELDS = ["ts", "event", "rule", "client", "server", "side"]


def gw_rule(**extra):
    kv = {"mode": "gateway", "client": "*", "server": "*:%d" % PORT, "idle": "%gs" % IDLE,
          "interval": "%dms" % (INTERVAL * 1000), "probes": PROBES}
    kv.update(extra)
    return ("gw", kv)


def count_probes(ctx, ns, fam, src):
    """In ns: counts the 1-byte TCP segments from src (IPv4 total length 41 or 53 with
    timestamps; IPv6 payload length 21 or 33), ahead of any drop."""
    if fam == 4:
        rule = "add rule inet kptcnt in_c ip saddr %s ip length { 41, 53 } counter" % src
    else:
        rule = "add rule inet kptcnt in_c ip6 saddr %s ip6 length { 21, 33 } counter" % src
    ctx.topo.nft(ns, "\n".join([
        "add table inet kptcnt",
        "add chain inet kptcnt in_c { type filter hook input priority -20; policy accept; }",
        "add rule inet kptcnt in_c meta l4proto != tcp accept",
        rule,
        ""]))


def probes_seen(ns):
    out = run(["nft", "list", "chain", "inet", "kptcnt", "in_c"], ns=ns).stdout
    m = re.search(r"counter packets (\d+)", out)
    return int(m.group(1)) if m else 0


class Flow:
    """The forwarded connection: server program in "local", client program in "peer"."""

    def __init__(self, c):
        self.c = c
        self.client, self.server = c.remote, c.local  # as connect() names them

    def events(self, log, side=None):
        log.poll()
        return [e for e in log.events if e.get("client") == self.client
                and e.get("server") == self.server and (side is None or e.get("side") == side)]

    def wait(self, log, side, event, timeout, after=None):
        def pred(e):
            return (e.get("client") == self.client and e.get("server") == self.server
                    and e.get("side") == side and e.get("event") == event)
        return log.wait(pred, timeout, "event=%s side=%s" % (event, side), log.alive, after)


def lines_shaped(log):
    bad = [e.raw for e in log.events if "client" in e and list(e.keys())[:6] != GW_FIELDS]
    check(not bad, "gateway lines not starting with %s:\n%s" % (", ".join(GW_FIELDS),
                                                               "\n".join(bad)))
    errs = log.errors()
    check(not errs, "status log has level=error lines:\n%s" % "\n".join(e.raw for e in errs))


def state_sides(ctx, kap, timeout=3.0):
    """(side, local, remote) of each gateway record in the state file, once written."""
    path = os.path.join(ctx.topo.tmp, "state.json")
    os.kill(kap.proc.pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as fh:
                doc = json.load(fh)
            got = {(c.get("side"), c["local"], c["remote"]) for c in doc["connections"]
                   if c.get("side")}
            if got:
                return got
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return set()


def setup(ctx, fam, **extra):
    net = routed(ctx.topo)
    a = net[fam]
    count_probes(ctx, net["local"], fam, a["peer"])
    count_probes(ctx, net["peer"], fam, a["local"])
    kap = None
    if not ctx.netcheck:
        kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"],
                                          conf_text("{log}", [gw_rule(**extra)]))
    return net, kap


def gw_alive(ctx, fam):
    net, kap = setup(ctx, fam)
    f = Flow(connect(ctx, net, fam, PORT))
    c = f.c
    t_last = c.exchange()
    if ctx.netcheck:
        c.exchange(3000, 5000)
        s, k = c.srv.stats(), c.cli.stats()
        check(s["bad"] == "0" and k["bad"] == "0" and int(s["rx"]) == c.cli.tx,
              "byte counts wrong: %s / %s" % (s["line"], k["line"]))
        return "data crosses the router both ways"
    log = kap.log
    rounds = {}
    for side in ("server", "client"):
        after, rounds[side] = None, []
        for _ in range(2):
            idle = f.wait(log, side, "idle", IDLE + 3, after)
            alive = f.wait(log, side, "alive", DEAD_AFTER + 2, idle)
            bad = [e for e in f.events(log, side) if idle.idx < e.idx < alive.idx
                   and e.get("event") in ("dead", "reset", "unreachable")]
            check(not bad, "side=%s: verdicts between idle and alive:\n%s" % (
                side, fmt_events(bad)))
            rounds[side].append((idle, alive))
            after = alive
        gap = rounds[side][0][0].t - t_last
        check(IDLE * 0.9 <= gap <= IDLE * 1.1 + 0.05,
              "side=%s: first idle %.3f s after the last segment, expected %.1f s (+-10%%)"
              % (side, gap, IDLE))
    # The state file names the side of each record (SIGUSR2 writes it now).
    sides = state_sides(ctx, kap)
    check(sides == {("server", f.client, f.server), ("client", f.server, f.client)},
          "state file: side, local, remote of the flow's records: %s" % sides)
    # Each end got the probes, from the other end's address.
    at_cli, at_srv = probes_seen(net["peer"]), probes_seen(net["local"])
    check(at_cli >= 2 and at_srv >= 2,
          "1-byte segments from the other end: %d at the client, %d at the server (>= 2 "
          "each expected)" % (at_cli, at_srv))
    # No probe byte reached either program, and the connection still works.
    c.exchange(1000, 2000)
    s, k = c.srv.stats(), c.cli.stats()
    check(int(s["rx"]) == c.cli.tx and int(k["rx"]) == c.srv.tx,
          "bytes received differ from bytes sent: %s / %s" % (s["line"], k["line"]))
    check(s["bad"] == "0" and k["bad"] == "0" and s["error"] == "none" and k["error"] == "none",
          "probe bytes delivered, or the connection broke: %s / %s" % (s["line"], k["line"]))
    bad = [e for e in f.events(log) if e.get("event") not in
           ("track", "idle", "probe", "reply", "alive")]
    check(not bad, "unexpected lines:\n%s" % fmt_events(bad))
    lines_shaped(log)
    kap.stop_ok()
    return "2 rounds each side (rtt server %s ms, client %s ms); probes seen at the client %d, " \
           "at the server %d; bytes exact" % (rounds["server"][0][1]["rtt"],
                                              rounds["client"][0][1]["rtt"], at_cli, at_srv)


def gw_dead(ctx, fam):
    net, kap = setup(ctx, fam)
    f = Flow(connect(ctx, net, fam, PORT))
    c = f.c
    t_last = c.exchange()
    nft_drop_all(ctx, net["local"])  # the server's namespace
    if ctx.netcheck:
        c.cli.send(10)
        r = c.srv.wait_rx(c.cli.tx, 1.5, expect_ok=False)
        check(not r["ok"], "the silenced server still received data: %s" % r["line"])
        return "nft drop silences the server"
    log = kap.log
    d = f.wait(log, "server", "dead", DEAD_AFTER + 3)
    check(d.get("reason") == "no-reply" and d.get("probes") == str(PROBES),
          "dead line: %s" % d.raw)
    took = d.t - t_last
    check(abs(took - DEAD_AFTER) <= 0.1 * DEAD_AFTER,
          "dead side=server %.3f s after the last segment, expected %.3f s +-10%%: %s"
          % (took, DEAD_AFTER, d.raw))
    # The client still answers in the server's name.
    f.wait(log, "client", "alive", 3)
    check(not [e for e in f.events(log, "client") if e.get("event") == "dead"],
          "the client side was judged dead:\n%s" % fmt_events(f.events(log, "client")))
    at_srv = probes_seen(net["local"])
    check(at_srv >= PROBES, "the server got %d probes (>= %d expected)" % (at_srv, PROBES))
    lines_shaped(log)
    kap.stop_ok()
    return "dead side=server %.3f s after the last segment (expected %.1f); client side alive; " \
           "%d probes reached the server" % (took, DEAD_AFTER, at_srv)


def gw_rst(ctx, fam, dead_side="server"):
    """on_dead = rst: one end goes silent; the other, still alive, gets a RST in the dead
    end's name with exact numbers, and its program's blocked read fails at once."""
    live_side = "client" if dead_side == "server" else "server"
    net, kap = setup(ctx, fam, on_dead="rst")
    f = Flow(connect(ctx, net, fam, PORT))
    c = f.c
    t_last = c.exchange()
    nft_drop_all(ctx, net["local" if dead_side == "server" else "peer"])
    if ctx.netcheck:
        return "nft drop silences the %s" % dead_side
    log = kap.log
    d = f.wait(log, dead_side, "dead", DEAD_AFTER + 3)
    took = d.t - t_last
    check(abs(took - DEAD_AFTER) <= 0.1 * DEAD_AFTER,
          "dead side=%s %.3f s after the last segment, expected %.3f s" % (
              dead_side, took, DEAD_AFTER))
    a = log.wait(lambda e: e.get("event") == "action" and e.get("client") == f.client and
                 e.get("server") == f.server, 3, "event=action", log.alive, d)
    check(list(a.keys())[:7] == GW_FIELDS[:3] + ["client", "server", "side", "action"] and
          a.get("side") == dead_side and a.get("action") == "rst" and a.get("result") == "ok",
          "action line: %s" % a.raw)
    live = c.cli if live_side == "client" else c.srv
    e = live.wait_err(3, expect_ok=False)
    check(e["ok"] and e.get("errno") == "ECONNRESET",
          "the %s program's read did not fail with ECONNRESET: %s" % (live_side, e["line"]))
    late = float(e["err_t"]) - d.t
    check(late <= 0.5, "the %s's read failed %.3f s after the dead line" % (live_side, late))
    kap.stop_ok()
    return "dead side=%s %.3f s after the last segment; rst: the %s's read failed " \
           "with ECONNRESET %.3f s later" % (dead_side, took, live_side, late)


def gw_flush(ctx, fam):
    """on_dead = flush: the server goes silent; the router's conntrack entry of the flow
    (its firewall only lets a SYN make one) is deleted at the dead verdict."""
    net = routed(ctx.topo)
    firewall(ctx, net["router"])
    if ctx.netcheck:
        return "firewall loaded (conntrack on in the router)"
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"],
                                      conf_text("{log}", [gw_rule(on_dead="flush")]))
    log = kap.log
    f = Flow(connect(ctx, net, fam, PORT))
    c = f.c
    t_last = c.exchange()
    before = ct_entries(net["router"])
    check(len(before) == 1, "router conntrack before: %s" % before)
    nft_drop_all(ctx, net["local"])  # the server's namespace
    d = f.wait(log, "server", "dead", DEAD_AFTER + 3)
    took = d.t - t_last
    check(abs(took - DEAD_AFTER) <= 0.1 * DEAD_AFTER,
          "dead side=server %.3f s after the last segment, expected %.3f s" % (took, DEAD_AFTER))
    a = log.wait(lambda e: e.get("event") == "action" and e.get("client") == f.client and
                 e.get("server") == f.server, 3, "event=action", log.alive, d)
    after = ct_entries(net["router"])
    check(a.get("action") == "flush" and a.get("result") == "ok" and a.get("side") == "server",
          "action line: %s" % a.raw)
    check(not after, "router conntrack after flush: %s" % after)
    kap.stop_ok()
    return "dead side=server %.3f s after the last segment; flush removed the router's " \
           "conntrack entry" % took


def gw_existing(ctx, fam, nat=None):
    """A flow established and idle before kaprobed starts (its segments all gone by): the
    conntrack dump at start finds it, each record asks its end for the numbers (a learning
    SYN in the other end's name), probes only once each end's answer shows nothing in
    flight, and both sides are alive; no byte reaches either program."""
    net = routed(ctx.topo)
    firewall(ctx, net["router"])  # conntrack on in the router
    if nat:
        ctx.topo.nft(net["router"], "\n".join(nat_rules(nat, fam) + [""]))
    f = nat_connect(ctx, net, nat, fam)[0] if nat else Flow(connect(ctx, net, fam, PORT))
    c = f.c
    c.exchange()
    if ctx.netcheck:
        return "flow set up"
    time.sleep(IDLE + 0.5)
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"], conf_text("{log}", [gw_rule()]))
    log = kap.log
    kap.proc.wait_line(lambda l: "established TCP flows listed" in l, 3, "the dump line",
                       stream="err")
    for side in ("server", "client"):
        f.wait(log, side, "alive", IDLE + DEAD_AFTER + 3)
    kinds = sorted({(e.get("side"), e.get("event")) for e in f.events(log)})
    bad = [e.raw for e in f.events(log) if e.get("event") in ("dead", "reset", "unreachable")]
    check(not bad, "verdicts on a healthy flow:\n%s" % "\n".join(bad))
    tracks = [e for e in f.events(log) if e.get("event") == "track"]
    check(all(e.get("source") == "discovered" for e in tracks) and len(tracks) == 2,
          "track lines: %s" % [e.raw for e in tracks])
    c.exchange(300, 400)
    s_, k = c.srv.stats(), c.cli.stats()
    check(s_["bad"] == "0" and k["bad"] == "0" and s_["error"] == "none" and
          k["error"] == "none", "bytes or connection wrong: %s / %s" % (s_["line"], k["line"]))
    lines_shaped(log)
    kap.stop_ok()
    return "%sfound in conntrack at start, learnt and alive both sides (%s)" % (
        nat + ": " if nat else "", ", ".join("%s %s" % k for k in kinds if k[1] == "learn"))


def ct_entries(router, port=PORT):
    """The router's conntrack entries of TCP port `port` (/proc/net/nf_conntrack)."""
    out = run(["cat", "/proc/net/nf_conntrack"], ns=router).stdout
    return [l for l in out.splitlines() if " tcp " in l and "dport=%d " % port in l]


def gw_conntrack(ctx, fam, nat=None):
    """The router's firewall forgets a flow idle for CT_TIMEOUT s (its conntrack entry
    expires; only a SYN may make a new one). The probes kaprobed sends in each end's name,
    and their answers, keep the entry: data crosses after MB_IDLE s of silence (also
    through masquerade: the probes carry the entry's own tuples)."""
    net = routed(ctx.topo)
    firewall(ctx, net["router"])
    if nat:
        ctx.topo.nft(net["router"], "\n".join(nat_rules(nat, fam) + [""]))
    if ctx.netcheck:
        c = connect(ctx, net, fam, PORT, "-a")
        t_last = c.exchange()
        idle_until(t_last + MB_IDLE)
        c.srv.send(100)
        r = c.cli.wait_rx(c.srv.tx, MB_WAIT, expect_ok=False)
        check(not r["ok"], "without kaprobed, data after %.0f s idle crossed the firewall "
              "(conntrack timeout %d s): %s" % (MB_IDLE, CT_TIMEOUT, r["line"]))
        return "without probes the entry expires: data after %.0f s idle is lost" % MB_IDLE
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"], conf_text("{log}", [gw_rule()]))
    log = kap.log
    f = nat_connect(ctx, net, nat, fam)[0] if nat else Flow(connect(ctx, net, fam, PORT))
    c = f.c
    t_last = c.exchange()
    idle_until(t_last + MB_IDLE, log)
    entries = ct_entries(net["router"])
    c.srv.send(100)
    r = c.cli.wait_rx(c.srv.tx, MB_WAIT, expect_ok=False)
    alive = {side: len([e for e in f.events(log, side) if e["event"] == "alive"])
             for side in ("client", "server")}
    check(r["ok"], "with kaprobed probing both ends (idle 1s), data after %.0f s idle did not "
          "cross the firewall (conntrack timeout %d s): %s (alive lines: %s; conntrack: %s)" % (
              MB_IDLE, CT_TIMEOUT, r["line"], alive, entries))
    check(min(alive.values()) >= 3, "expected an alive line per side about every %.1f s, got "
          "%s" % (IDLE, alive))
    check(len(entries) == 1 and "ESTABLISHED" in entries[0],
          "router conntrack after %.0f s idle: %s" % (MB_IDLE, entries))
    bad = [e for e in f.events(log) if e.get("event") not in
           ("track", "idle", "probe", "reply", "alive")]
    check(not bad, "unexpected lines:\n%s" % fmt_events(bad))
    lines_shaped(log)
    kap.stop_ok()
    return "flow idle %.0f s through a %d s conntrack timeout: entry kept, data crossed " \
           "(alive lines: client %d, server %d)" % (MB_IDLE, CT_TIMEOUT, alive["client"],
                                                    alive["server"])


def gw_ct_warning(ctx):
    """A gateway rule whose idle is not shorter than the router's conntrack established
    timeout is warned about at start (its flows would be forgotten before a probe)."""
    net = routed(ctx.topo)
    firewall(ctx, net["router"])  # conntrack on, established timeout CT_TIMEOUT s
    if ctx.netcheck:
        return "firewall loaded"
    rules = [gw_rule(idle="%ds" % (CT_TIMEOUT + 1)), ("ok", dict(gw_rule()[1], server="*:1"))]
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"], conf_text("{log}", rules))
    i, line = kap.proc.wait_line(lambda l: "nf_conntrack_tcp_timeout_established" in l, 3,
                                 "the conntrack timeout warning", stream="err")
    check("rule [gw]" in line and "level=warning" in line, "warning: %s" % line)
    others = [l for _, l in kap.proc.err if "rule [ok]" in l]
    check(not others, "rule [ok] (idle %gs) warned about: %s" % (IDLE, others))
    kap.stop_ok()
    return "warned: %s" % line.split("msg=", 1)[-1][:90]


def gw_mixed(ctx, fam):
    """Local and gateway rules in one file, same server port: the router's own connection
    to the server follows the local rule (local=, remote=), the forwarded flow the gateway
    rule (client=, server=, side=), each probed and alive."""
    net = routed(ctx.topo)
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    a = net[fam]
    rules = [svc_rule(port=PORT), gw_rule()]
    rules[0][1].update({"local": "*", "remote": "*:%d" % PORT})  # the router as a client
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"], conf_text("{log}", rules))
    log = kap.log
    f = Flow(connect(ctx, net, fam, PORT))
    # A second server address in the server's namespace, for the router's own connection.
    srv2 = "192.0.2.3" if fam == 4 else "2001:db8:1::3"
    ctx.topo.addr(net["local"], "eth0", srv2 + ("/24" if fam == 4 else "/64"))
    srv = ctx.peer(net["local"], "server2")
    srv.listen(srv2, PORT)
    own = ctx.peer(net["router"], "router-client")
    r = own.connect(srv2, PORT)
    srv.accept()
    router_end = endpoint(r["laddr"], int(r["lport"]))
    f.c.exchange()
    own.send(50)
    srv.wait_rx(50)
    f.wait(log, "server", "alive", IDLE + DEAD_AFTER + 2)
    f.wait(log, "client", "alive", IDLE + DEAD_AFTER + 2)
    al = log.wait_conn(router_end, endpoint(srv2, PORT), "alive", IDLE + DEAD_AFTER + 2)
    check(al.get("rule") == "svc", "the router's own connection: %s" % al.raw)
    gw_rules = {e.get("rule") for e in f.events(log)}
    check(gw_rules == {"gw"}, "the forwarded flow's lines name rules %s" % gw_rules)
    wrong = [e.raw for e in log.events if e.get("rule") == "svc" and "client" in e]
    check(not wrong, "local rule lines with client=: %s" % wrong)
    lines_shaped(log)
    kap.stop_ok()
    return "router's own connection alive under [svc] (local=%s), forwarded flow alive both " \
           "sides under [gw]" % router_end


def gw_handshake_only(ctx, fam):
    """A connection that carried nothing since its handshake: the server's window was never
    seen in a non-SYN segment, so its record asks for its numbers with a SYN to the server
    in the client's name; the server's challenge ACK, forwarded, teaches them; both sides
    are then probed and alive, and no byte reaches either program."""
    net, kap = setup(ctx, fam)
    f = Flow(connect(ctx, net, fam, PORT))
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    log = kap.log
    for side in ("server", "client"):
        f.wait(log, side, "alive", IDLE + DEAD_AFTER + 3)
    learn = [e for e in f.events(log) if e.get("event") == "learn"]
    c = f.c
    c.exchange()
    s, k = c.srv.stats(), c.cli.stats()
    check(s["bad"] == "0" and k["bad"] == "0" and s["error"] == "none" and k["error"] == "none",
          "probe bytes delivered, or the connection broke: %s / %s" % (s["line"], k["line"]))
    lines_shaped(log)
    kap.stop_ok()
    return "alive both sides after a bare handshake; learn lines: %s" % (
        ", ".join("side=%s result=%s" % (e.get("side"), e.get("result")) for e in learn)
        or "none")


# The router's addresses: towards the server (eth0), towards the client (eth1).
ROUTER = {4: ("192.0.2.254", "198.51.100.254"), 6: ("2001:db8:1::fe", "2001:db8:2::fe")}


def nat_rules(kind, fam):
    """masq: the client's connections leave towards the server with the router's address;
    dnat: the server is published on the router's client-side address."""
    t = "ip" if fam == 4 else "ip6"
    srv = "192.0.2.1" if fam == 4 else "[2001:db8:1::1]"
    if kind == "masq":
        return ["add table %s kptnat" % t,
                "add chain %s kptnat post { type nat hook postrouting priority 100; }" % t,
                "add rule %s kptnat post oifname eth0 masquerade" % t]
    return ["add table %s kptnat" % t,
            "add chain %s kptnat pre { type nat hook prerouting priority -100; }" % t,
            "add rule %s kptnat pre iifname eth1 tcp dport %d dnat to %s:%d" % (
                t, PORT, srv, PORT)]


def nat_connect(ctx, net, kind, fam):
    """The flow through NAT; returns (Flow, the address the server sees the client at, the
    address the client sees the server at)."""
    a = net[fam]
    srv = ctx.peer(net["local"], "server")
    srv.listen(a["local"], PORT)
    cli = ctx.peer(net["peer"], "client")
    dst = ROUTER[fam][1] if kind == "dnat" else a["local"]
    r = cli.connect(dst, PORT)
    srv.accept()
    c = Conn(srv, cli, endpoint(dst, PORT), endpoint(r["laddr"], int(r["lport"])))
    seen_at_srv = ROUTER[fam][0] if kind == "masq" else r["laddr"]
    return Flow(c), seen_at_srv, dst


def gw_nat(ctx, kind, what, fam=4):
    """Through masquerade or DNAT: the records are keyed as each end sees the flow, named as
    the client sees it, and probed with the conntrack entry's own tuples (a probe with the
    addresses the end sees would get another port from the router's NAT). Both ends alive,
    each probed from the address it knows the other by; or the server silenced: dead
    side=server on time, and flush removes the entry."""
    net = routed(ctx.topo)
    ctx.topo.nft(net["router"], "\n".join(nat_rules(kind, fam) + [""]))
    if ctx.netcheck:
        f, _, _ = nat_connect(ctx, net, kind, fam)
        f.c.exchange()
        return "data crosses the %s" % kind
    rule = gw_rule(on_dead={"dead": "flush", "rst": "rst, flush"}.get(what, "log"))
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"], conf_text("{log}", [rule]))
    log = kap.log
    f, seen_at_srv, dst = nat_connect(ctx, net, kind, fam)
    count_probes(ctx, net["local"], fam, seen_at_srv)
    count_probes(ctx, net["peer"], fam, dst)
    c = f.c
    t_last = c.exchange()
    if what == "alive":
        for side in ("server", "client"):
            idle = f.wait(log, side, "idle", IDLE + 3)
            f.wait(log, side, "alive", DEAD_AFTER + 2, idle)
        at_srv, at_cli = probes_seen(net["local"]), probes_seen(net["peer"])
        check(at_srv >= 1 and at_cli >= 1, "probes seen: server %d (from %s), client %d (from "
              "%s)" % (at_srv, seen_at_srv, at_cli, dst))
        c.exchange(300, 400)
        s, k = c.srv.stats(), c.cli.stats()
        check(s["bad"] == "0" and k["bad"] == "0" and s["error"] == "none" and
              k["error"] == "none", "bytes or connection wrong: %s / %s" % (s["line"], k["line"]))
        bad = [e for e in f.events(log) if e.get("event") not in
               ("track", "idle", "probe", "reply", "alive")]
        check(not bad, "unexpected lines:\n%s" % fmt_events(bad))
        lines_shaped(log)
        kap.stop_ok()
        return "%s: alive both sides, named client=%s server=%s; probes seen at the server " \
               "from %s (%d), at the client from %s (%d)" % (kind, f.client, f.server,
                                                             seen_at_srv, at_srv, dst, at_cli)
    before = ct_entries(net["router"])
    check(len(before) == 1, "router conntrack before: %s" % before)
    nft_drop_all(ctx, net["local"])  # the server's namespace
    d = f.wait(log, "server", "dead", DEAD_AFTER + 3)
    took = d.t - t_last
    check(abs(took - DEAD_AFTER) <= 0.1 * DEAD_AFTER,
          "dead side=server %.3f s after the last segment, expected %.3f s" % (took, DEAD_AFTER))
    bad = [e for e in f.events(log, "client") if e.get("event") == "dead"]
    check(not bad, "the client side was judged dead:\n%s" % fmt_events(bad))
    acts = {}
    while len(acts) < (2 if what == "rst" else 1):
        a = log.wait(lambda e: e.get("event") == "action" and e.get("client") == f.client,
                     3, "event=action", log.alive, d)
        acts[a.get("action")] = a
        d = a
    after = ct_entries(net["router"])
    bad = [a.raw for a in acts.values() if a.get("result") != "ok"]
    check(not bad and "flush" in acts, "action lines: %s" % [a.raw for a in acts.values()])
    check(not after, "router conntrack after flush: %s" % after)
    late = ""
    if what == "rst":
        e = c.cli.wait_err(3, expect_ok=False)
        check(e["ok"] and e.get("errno") == "ECONNRESET",
              "the client program's read did not fail with ECONNRESET: %s" % e["line"])
        late = "; the client's read failed with ECONNRESET %.3f s later" % (
            float(e["err_t"]) - acts["rst"].t)
    kap.stop_ok()
    return "%s: dead side=server %.3f s after the last segment; actions %s ok, entry gone%s" % (
        kind, took, ", ".join(sorted(acts)), late)


CASES = [
    ("gateway_alive", lambda ctx: gw_alive(ctx, 4)),
    ("gateway_dead", lambda ctx: gw_dead(ctx, 4)),
    ("gateway_alive6", lambda ctx: gw_alive(ctx, 6)),
    ("gateway_dead6", lambda ctx: gw_dead(ctx, 6)),
    ("gateway_rst", lambda ctx: gw_rst(ctx, 4)),
    ("gateway_rst6", lambda ctx: gw_rst(ctx, 6)),
    ("gateway_rst_client", lambda ctx: gw_rst(ctx, 4, "client")),
    ("gateway_flush", lambda ctx: gw_flush(ctx, 4)),
    ("gateway_flush6", lambda ctx: gw_flush(ctx, 6)),
    ("gateway_conntrack", lambda ctx: gw_conntrack(ctx, 4)),
    ("gateway_conntrack6", lambda ctx: gw_conntrack(ctx, 6)),
    ("gateway_masq_conntrack", lambda ctx: gw_conntrack(ctx, 4, "masq")),
    ("gateway_ct_warning", gw_ct_warning),
    ("gateway_existing", lambda ctx: gw_existing(ctx, 4)),
    ("gateway_existing6", lambda ctx: gw_existing(ctx, 6)),
    ("gateway_handshake", lambda ctx: gw_handshake_only(ctx, 4)),
    ("gateway_handshake6", lambda ctx: gw_handshake_only(ctx, 6)),
    ("gateway_masq_alive", lambda ctx: gw_nat(ctx, "masq", "alive")),
    ("gateway_masq_dead", lambda ctx: gw_nat(ctx, "masq", "dead")),
    ("gateway_dnat_alive", lambda ctx: gw_nat(ctx, "dnat", "alive")),
    ("gateway_dnat_dead", lambda ctx: gw_nat(ctx, "dnat", "dead")),
    ("gateway_masq_rst", lambda ctx: gw_nat(ctx, "masq", "rst")),
    ("gateway_dnat_rst", lambda ctx: gw_nat(ctx, "dnat", "rst")),
    ("gateway_masq_alive6", lambda ctx: gw_nat(ctx, "masq", "alive", 6)),
    ("gateway_masq_dead6", lambda ctx: gw_nat(ctx, "masq", "dead", 6)),
    ("gateway_dnat_alive6", lambda ctx: gw_nat(ctx, "dnat", "alive", 6)),
    ("gateway_mixed", lambda ctx: gw_mixed(ctx, 4)),
    ("gateway_mixed6", lambda ctx: gw_mixed(ctx, 6)),
]

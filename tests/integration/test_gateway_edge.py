"""Gateway mode (issue 11), edge cases: ICMP errors about probes that the router's NAT
translated (gateway_*_unreach: the server's namespace rejects the probes; gateway_*_vanish:
the server leaves the router's LAN and the router's own kernel answers), and flows found in
conntrack at start whose one end is already dead (gateway_existing_dead*).

The topology is test_gateway's: the server program in "local" (192.0.2.1 / 2001:db8:1::1) -
the router (kaprobed, forwarding) - the client program in "peer" (198.51.100.2 /
2001:db8:2::2).
"""

import os
import re
import shutil
import time

from netns import check, conf_text, routed, run
from test_cases import (DEAD_AFTER, IDLE, INTERVAL, PROBES, connect, firewall, fmt_events,
                        nft_drop_all)
from test_gateway import Flow, PORT, ROUTER, gw_rule, lines_shaped, nat_connect, nat_rules

LEARN_RETRY = 0.6  # FSM_LEARN_RETRY: a learning SYN's challenge ACK gets its time
LEAD = 1.0  # FSM_LEARN_LEAD: numbers are asked for this long before the first probe

ICMP = {4: ("host-unreachable", "icmp type host-unreachable"),
        6: ("addr-unreachable", "icmpv6 type addr-unreachable")}


def reject_from(ctx, ns, fam, src):
    """In ns (an end's namespace): every TCP segment from src is refused with an ICMP
    error (host-unreachable / addr-unreachable) before TCP sees it; the end sends nothing."""
    t = "ip" if fam == 4 else "ip6"
    ctx.topo.nft(ns, "\n".join([
        "add table inet kptrej",
        "add chain inet kptrej in_c { type filter hook input priority -10; policy accept; }",
        "add rule inet kptrej in_c %s saddr %s meta l4proto tcp reject with %s" % (
            t, src, ICMP[fam][1]),
        ""]))


def tcpdump(ctx, ns, name):
    """Debugging aid (KPT_TCPDUMP=1): tcpdump -i any in ns, into the test's temp dir;
    keep_dump copies it to /tmp/kpt-edge-CASE.pcap."""
    if not os.environ.get("KPT_TCPDUMP"):
        return None
    path = os.path.join(ctx.topo.tmp, name + ".pcap")
    p = ctx.topo.spawn(ns, ["tcpdump", "-i", "any", "-nn", "-U", "-w", path], "tcpdump-" + name,
                       stdin=False)
    time.sleep(0.5)
    return p, path


def keep_dump(dump, name):
    if dump:
        dump[0].stop()
        shutil.copy(dump[1], "/tmp/kpt-edge-%s.pcap" % name)


def vanish(ctx, net, side):
    """One end's host (side: "server" or "client") leaves the router's LAN: its link goes
    down, and the router's neighbour entry for it is flushed and fails after one 100 ms
    solicitation, so the router's own kernel answers each packet for it with
    host-unreachable / addr-unreachable (ipv4_link_failure, ip6_link_failure)."""
    r = net["router"]
    dev, ns = ("eth0", net["local"]) if side == "server" else ("eth1", net["peer"])
    for f in ("ipv4", "ipv6"):
        ctx.topo.sysctl(r, "net.%s.neigh.%s.retrans_time_ms" % (f, dev), 100)
        ctx.topo.sysctl(r, "net.%s.neigh.%s.mcast_solicit" % (f, dev), 1)
        ctx.topo.sysctl(r, "net.%s.neigh.%s.ucast_solicit" % (f, dev), 1)
    run(["ip", "-n", ns, "link", "set", "eth0", "down"])
    run(["ip", "-n", r, "neigh", "flush", "dev", dev])


def gw_unreachable(ctx, kind, fam=4, how="reject", side="server"):
    """The probes to one end (side; through masquerade or DNAT: with the conntrack entry's
    tuple, translated by the router) are answered with ICMP errors: how = "reject", from
    that end's namespace (quoting the probe as translated, seen arriving); "vanish", from
    the router's own kernel when that end's neighbour entry fails (translated back by
    conntrack before the capture sees it leaving). One unreachable per probe, then dead
    side=<that end> reason=unreachable at idle + interval x probes; the other side
    alive."""
    live = "client" if side == "server" else "server"
    net = routed(ctx.topo)
    if kind != "plain":
        ctx.topo.nft(net["router"], "\n".join(nat_rules(kind, fam) + [""]))
    if ctx.netcheck:
        f = nat_connect(ctx, net, kind, fam)[0] if kind != "plain" else \
            Flow(connect(ctx, net, fam, PORT))
        f.c.exchange()
        return "data crosses the router (%s)" % kind
    dump = tcpdump(ctx, net["router"], "router")
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"],
                                      conf_text("{log}", [gw_rule()]))
    log = kap.log
    if kind == "plain":
        f = Flow(connect(ctx, net, fam, PORT))
        seen_at_srv, seen_at_cli = net[fam]["peer"], net[fam]["local"]
    else:
        f, seen_at_srv, seen_at_cli = nat_connect(ctx, net, kind, fam)
    c = f.c
    t_last = c.exchange()
    if how == "reject" and side == "server":
        reject_from(ctx, net["local"], fam, seen_at_srv)
        src = (net[fam]["local"],)
    elif how == "reject":
        reject_from(ctx, net["peer"], fam, seen_at_cli)
        src = (net[fam]["peer"],)
    else:
        vanish(ctx, net, side)
        src = ROUTER[fam]  # the router's own kernel: from an address of its choice
    d = f.wait(log, side, "dead", DEAD_AFTER + 3)
    keep_dump(dump, ctx.name)
    unr = [e for e in f.events(log, side) if e.get("event") == "unreachable"]
    bad = [e for e in unr if e.get("icmp") != ICMP[fam][0] or e.get("from") not in src]
    # One per probe: exactly, when the end rejects each; at most, from the router's own
    # neighbour resolution (its timing under load is not ours).
    want = (PROBES, PROBES) if how == "reject" else (1, PROBES)
    check(want[0] <= len(unr) <= want[1] and not bad, "unreachable lines: expected %d..%d "
          "(one per probe), icmp=%s from %s:\n%s" % (want + (ICMP[fam][0], "/".join(src),
                                                              fmt_events(unr))))
    check(d.get("reason") == "unreachable", "dead line: %s" % d.raw)
    took = d.t - t_last
    check(abs(took - DEAD_AFTER) <= 0.1 * DEAD_AFTER,
          "dead side=%s %.3f s after the last segment, expected %.3f s" % (
              side, took, DEAD_AFTER))
    f.wait(log, live, "alive", 3)
    bad = [e for e in f.events(log, live) if e.get("event") in ("dead", "unreachable")]
    check(not bad, "the %s side was judged:\n%s" % (live, fmt_events(bad)))
    lines_shaped(log)
    kap.stop_ok()
    return "%s, %s: %d unreachable lines icmp=%s from=%s, dead side=%s " \
           "reason=unreachable %.3f s after the last segment; %s side alive" % (
               kind, how, len(unr), ICMP[fam][0], unr[0].get("from"), side, took, live)


def count_sizes(ctx, ns, fam, src):
    """In ns: counts the TCP segments from src with one byte of payload, and those with
    none (ACK only), ahead of any drop (IPv4 total length 41/53 and 40/52 with
    timestamps; IPv6 payload length 21/33 and 20/32)."""
    if fam == 4:
        m, one, zero = "ip saddr %s ip length" % src, "{ 41, 53 }", "{ 40, 52 }"
    else:
        m, one, zero = "ip6 saddr %s ip6 length" % src, "{ 21, 33 }", "{ 20, 32 }"
    ctx.topo.nft(ns, "\n".join([
        "add table inet kptsz",
        "add chain inet kptsz in_c { type filter hook input priority -20; policy accept; }",
        "add rule inet kptsz in_c meta l4proto != tcp accept",
        "add rule inet kptsz in_c %s %s counter" % (m, one),
        "add rule inet kptsz in_c %s %s tcp flags & (syn|fin|rst) == 0 counter" % (m, zero),
        ""]))


def sizes_seen(ns):
    """(one-byte, zero-byte) segments counted by count_sizes."""
    out = run(["nft", "list", "chain", "inet", "kptsz", "in_c"], ns=ns).stdout
    n = [int(x) for x in re.findall(r"counter packets (\d+)", out)]
    return tuple(n) if len(n) == 2 else (-1, -1)


def gw_existing_dead(ctx, fam, dead="server", idle=None, nat=None):
    """A flow set up and idle before kaprobed starts, one end (the server, or the client)
    already silenced (nft drops all in its namespace): found in conntrack at start, that
    end never answers its learning SYN (learn result=blocked). The live end's challenge
    ACK, swapped, gives the numbers for both ends; each is probed with zero-byte probes
    only (SEQ one below what the probed end expects, no byte that could enter a stream
    whatever the truth): dead side=<silent end> reason=no-reply at the learning tries
    (1.2 s) + interval x probes after start, the other side alive, and no 1-byte segment
    reaches either end. With idle (s, longer than the flow's silence at start): on its
    schedule, the learning SYNs LEAD s before the first probe is due (conntrack tells the
    silence to the second)."""
    live = "client" if dead == "server" else "server"
    net = routed(ctx.topo)
    a = net[fam]
    firewall(ctx, net["router"])  # conntrack on in the router
    if nat:  # (through NAT: each end sees the other at an address of the router's)
        ctx.topo.nft(net["router"], "\n".join(nat_rules(nat, fam) + [""]))
    if nat:
        f, at_server, at_client = nat_connect(ctx, net, nat, fam)
    else:
        f, at_server, at_client = Flow(connect(ctx, net, fam, PORT)), a["peer"], a["local"]
    c = f.c
    t_last = c.exchange()
    count_sizes(ctx, net["local"], fam, at_server)  # what comes from the client's address
    count_sizes(ctx, net["peer"], fam, at_client)   # ... from the server's, as each sees it
    nft_drop_all(ctx, net["local" if dead == "server" else "peer"])
    if ctx.netcheck:
        tx, rx = (c.cli, c.srv) if dead == "server" else (c.srv, c.cli)
        tx.send(10)
        r = rx.wait_rx(tx.tx, 1.5, expect_ok=False)
        check(not r["ok"], "the silenced %s still received data: %s" % (dead, r["line"]))
        return "nft drop silences the %s" % dead
    time.sleep(0.5 if idle else IDLE + 0.5)
    rule = gw_rule(idle="%gs" % idle) if idle else gw_rule()
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"], conf_text("{log}", [rule]))
    log = kap.log
    _, line = kap.proc.wait_line(lambda l: "established TCP flows listed" in l, 3,
                                 "the dump line", stream="err")
    t0 = [t for t, l in kap.proc.err if l == line][0]
    # Overdue at start: SYNs at once and LEARN_RETRY later, blocked LEARN_RETRY after
    # that, then a round of its own. On schedule: the same from due - LEAD.
    expect = 2 * LEARN_RETRY + INTERVAL * PROBES
    d = f.wait(log, dead, "dead", expect + (idle or 0) + 3)
    if idle:
        took, expect, what = d.t - t_last, expect + idle - LEAD, "the last segment"
        ok = expect - 1.05 <= took <= expect + 0.3  # conntrack's timeout: whole seconds
    else:
        took, what = d.t - t0, "start"
        ok = abs(took - expect) <= 0.3
    check(d.get("reason") == "no-reply", "dead line: %s" % d.raw)
    check(ok, "dead side=%s %.3f s after %s, expected %.1f s" % (dead, took, what, expect))
    # The record that asks the silent end for its numbers is the one probing the other.
    blocked = [e for e in f.events(log, live) if e.get("event") == "learn" and
               e.get("result") == "blocked"]
    check(blocked and blocked[0].t < d.t, "no learn side=%s result=blocked before the "
          "verdict:\n%s" % (live, fmt_events(f.events(log))))
    al = f.wait(log, live, "alive", (idle or IDLE) + 2)
    f.wait(log, live, "alive", (idle or IDLE) + 2, al)  # a second round
    bad = [e for e in f.events(log, live) if e.get("event") in ("dead", "reset",
                                                                "unreachable")]
    check(not bad, "the %s side was judged:\n%s" % (live, fmt_events(bad)))
    tracks = [e for e in f.events(log) if e.get("event") == "track"]
    check(len(tracks) == 2 and all(e.get("source") == "discovered" for e in tracks),
          "track lines: %s" % [e.raw for e in tracks])
    at_srv, at_cli = sizes_seen(net["local"]), sizes_seen(net["peer"])
    check(at_srv[0] == 0 and at_cli[0] == 0, "1-byte segments reached the server (%d) or the "
          "client (%d): only zero-byte probes may go out on numbers an end did not confirm" %
          (at_srv[0], at_cli[0]))
    at_dead, at_live = (at_srv, at_cli) if dead == "server" else (at_cli, at_srv)
    check(at_dead[1] >= PROBES and at_live[1] >= 2, "zero-byte segments: %d at the %s, %d "
          "at the %s (>= %d, >= 2 expected)" % (at_dead[1], dead, at_live[1], live, PROBES))
    k, other = (c.cli, c.srv) if live == "client" else (c.srv, c.cli)
    k = k.stats()
    check(k["bad"] == "0" and k["error"] == "none" and int(k["rx"]) == other.tx,
          "the %s program got bytes it was not sent, or an error: %s" % (live, k["line"]))
    lines_shaped(log)
    kap.stop_ok()
    return "dead side=%s reason=no-reply %.3f s after %s (after learn blocked); " \
           "%s side alive; zero-byte probes only (server %d, client %d), no byte " \
           "delivered" % (dead, took, what, live, at_srv[1], at_cli[1])


CASES = [
    ("gateway_plain_unreach", lambda ctx: gw_unreachable(ctx, "plain")),
    ("gateway_masq_unreach", lambda ctx: gw_unreachable(ctx, "masq")),
    ("gateway_dnat_unreach", lambda ctx: gw_unreachable(ctx, "dnat")),
    ("gateway_masq_unreach6", lambda ctx: gw_unreachable(ctx, "masq", 6)),
    ("gateway_plain_vanish", lambda ctx: gw_unreachable(ctx, "plain", how="vanish")),
    ("gateway_masq_vanish", lambda ctx: gw_unreachable(ctx, "masq", how="vanish")),
    ("gateway_dnat_vanish", lambda ctx: gw_unreachable(ctx, "dnat", how="vanish")),
    ("gateway_masq_vanish6", lambda ctx: gw_unreachable(ctx, "masq", 6, how="vanish")),
    ("gateway_masq_unreach_client",
     lambda ctx: gw_unreachable(ctx, "masq", side="client")),
    ("gateway_masq_vanish_client",
     lambda ctx: gw_unreachable(ctx, "masq", how="vanish", side="client")),
    ("gateway_dnat_vanish_client",
     lambda ctx: gw_unreachable(ctx, "dnat", how="vanish", side="client")),
    ("gateway_existing_dead", lambda ctx: gw_existing_dead(ctx, 4)),
    ("gateway_existing_dead6", lambda ctx: gw_existing_dead(ctx, 6)),
    ("gateway_existing_dead_client", lambda ctx: gw_existing_dead(ctx, 4, "client")),
    ("gateway_existing_dead_due", lambda ctx: gw_existing_dead(ctx, 4, idle=2.0)),
    ("gateway_existing_dead_masq", lambda ctx: gw_existing_dead(ctx, 4, nat="masq")),
    ("gateway_existing_dead_dnat", lambda ctx: gw_existing_dead(ctx, 4, nat="dnat")),
]

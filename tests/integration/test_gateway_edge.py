"""Gateway mode (issue 11), edge cases: ICMP errors about probes that the router's NAT
translated, and flows found in conntrack at start whose one end is already dead.

The topology is test_gateway's: the server program in "local" (192.0.2.1 / 2001:db8:1::1) -
the router (kaprobed, forwarding) - the client program in "peer" (198.51.100.2 /
2001:db8:2::2).
"""

import os
import shutil
import time

from netns import check, conf_text, routed, run
from test_cases import DEAD_AFTER, IDLE, PROBES, connect, fmt_events, firewall, nft_drop_all
from test_gateway import Flow, PORT, ROUTER, gw_rule, lines_shaped, nat_connect, nat_rules

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


def vanish(ctx, net, fam):
    """The server's host leaves the router's LAN: its link goes down, and the router's
    neighbour entry for it is flushed and fails after one 100 ms solicitation, so the
    router's own kernel answers each packet for it with host-unreachable /
    addr-unreachable (ipv4_link_failure, ip6_link_failure)."""
    r = net["router"]
    for f in ("ipv4", "ipv6"):
        ctx.topo.sysctl(r, "net.%s.neigh.eth0.retrans_time_ms" % f, 100)
        ctx.topo.sysctl(r, "net.%s.neigh.eth0.mcast_solicit" % f, 1)
        ctx.topo.sysctl(r, "net.%s.neigh.eth0.ucast_solicit" % f, 1)
    run(["ip", "-n", net["local"], "link", "set", "eth0", "down"])
    run(["ip", "-n", r, "neigh", "flush", "dev", "eth0"])


def gw_unreachable(ctx, kind, fam=4, how="reject"):
    """The probes to the server (through masquerade or DNAT: with the conntrack entry's
    tuple, translated by the router) are answered with ICMP errors: how = "reject", from
    the server's namespace (quoting the probe as translated, seen arriving); "vanish", from
    the router's own kernel when the server's neighbour entry fails (translated back by
    conntrack before the capture sees it leaving). One unreachable side=server per probe,
    then dead side=server reason=unreachable at idle + interval x probes; the client side
    alive."""
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
        seen_at_srv = net[fam]["peer"]
    else:
        f, seen_at_srv, _ = nat_connect(ctx, net, kind, fam)
    c = f.c
    t_last = c.exchange()
    if how == "reject":
        reject_from(ctx, net["local"], fam, seen_at_srv)
        src = (net[fam]["local"],)
    else:
        vanish(ctx, net, fam)
        src = ROUTER[fam]  # the router's own kernel: from an address of its choice
    d = f.wait(log, "server", "dead", DEAD_AFTER + 3)
    keep_dump(dump, ctx.name)
    unr = [e for e in f.events(log, "server") if e.get("event") == "unreachable"]
    bad = [e for e in unr if e.get("icmp") != ICMP[fam][0] or e.get("from") not in src]
    check(len(unr) == PROBES and not bad, "unreachable lines: expected %d (one per probe), "
          "icmp=%s from %s:\n%s" % (PROBES, ICMP[fam][0], "/".join(src), fmt_events(unr)))
    check(d.get("reason") == "unreachable", "dead line: %s" % d.raw)
    took = d.t - t_last
    check(abs(took - DEAD_AFTER) <= 0.1 * DEAD_AFTER,
          "dead side=server %.3f s after the last segment, expected %.3f s" % (took, DEAD_AFTER))
    f.wait(log, "client", "alive", 3)
    bad = [e for e in f.events(log, "client") if e.get("event") in ("dead", "unreachable")]
    check(not bad, "the client side was judged:\n%s" % fmt_events(bad))
    lines_shaped(log)
    kap.stop_ok()
    return "%s, %s: %d unreachable lines icmp=%s from=%s, dead side=server " \
           "reason=unreachable %.3f s after the last segment; client side alive" % (
               kind, how, len(unr), ICMP[fam][0], unr[0].get("from"), took)


CASES = [
    ("gateway_plain_unreach", lambda ctx: gw_unreachable(ctx, "plain")),
    ("gateway_masq_unreach", lambda ctx: gw_unreachable(ctx, "masq")),
    ("gateway_dnat_unreach", lambda ctx: gw_unreachable(ctx, "dnat")),
    ("gateway_masq_unreach6", lambda ctx: gw_unreachable(ctx, "masq", 6)),
    ("gateway_plain_vanish", lambda ctx: gw_unreachable(ctx, "plain", how="vanish")),
    ("gateway_masq_vanish", lambda ctx: gw_unreachable(ctx, "masq", how="vanish")),
    ("gateway_dnat_vanish", lambda ctx: gw_unreachable(ctx, "dnat", how="vanish")),
    ("gateway_masq_vanish6", lambda ctx: gw_unreachable(ctx, "masq", 6, how="vanish")),
]

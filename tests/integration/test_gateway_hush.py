"""Gateway mode (issue 11): the router drops the answers to its own probes and learning SYNs
(kaprobed's nftables table, hush.c) instead of forwarding them to the other end; and flows
through NAT that existed before kaprobed started are learnt (learning SYNs marked, not
tracked by the router's conntrack).

The namespaces of test_gateway.py: server in "local", router running kaprobed, client in
"peer". In each end's namespace an nft counter counts the pure ACKs (no payload, flags
exactly ACK) that arrive from the address it knows the other end by: during the probe
rounds, with the drop on, there are none (the probes' answers stay in the router); with
`gateway_drop_answers = no` each round's answer arrives, so the check can fail.
"""

import re
import time

from netns import check, conf_text, routed, run
from test_cases import DEAD_AFTER, IDLE, connect, fmt_events, firewall
from test_gateway import (PORT, Flow, count_probes, gw_rule, lines_shaped, nat_connect,
                          nat_rules, probes_seen)


def count_pure_acks(ctx, ns, fam, src):
    """In ns: counts the segments from src with flags exactly ACK and no payload (the
    programs send 100 bytes or more; the probes carry 1 byte), ahead of any drop."""
    if fam == 4:
        match = "ip saddr %s ip length < 100 ip length != { 41, 53 }" % src
    else:
        match = "ip6 saddr %s ip6 length < 80 ip6 length != { 21, 33 }" % src
    ctx.topo.nft(ns, "\n".join([
        "add table inet kptack",
        "add chain inet kptack in_a { type filter hook input priority -30; policy accept; }",
        "add rule inet kptack in_a meta l4proto tcp tcp flags == ack %s counter" % match,
        ""]))


def acks_seen(ns):
    out = run(["nft", "list", "chain", "inet", "kptack", "in_a"], ns=ns).stdout
    m = re.search(r"counter packets (\d+)", out)
    return int(m.group(1)) if m else 0


def router_tables(router):
    return run(["nft", "list", "tables"], ns=router).stdout


def hush_drops(router):
    """The packets kaprobed's table dropped (its counters), or None without the table."""
    r = run(["nft", "list", "table", "inet", "kaprobed"], ns=router, check=False)
    if r.returncode != 0:
        return None
    return sum(int(n) for n in re.findall(r"counter packets (\d+)", r.stdout))


def start(ctx, net, drop, nat=None, fam=4):
    extra = {} if drop else {"gateway_drop_answers": "no"}
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"],
                                      conf_text("{log}", [gw_rule()], extra=extra))
    kap.proc.wait_line(lambda l: "started" in l, 3, "the started line", stream="err")
    tables = router_tables(net["router"])
    check(("kaprobed" in tables) == drop, "router tables with gateway_drop_answers=%s: %s" % (
        "yes" if drop else "no", tables.strip()))
    return kap


def gw_hush(ctx, fam, nat=None, drop=True):
    """Both ends alive, two rounds each side: each end is probed (1-byte segments from the
    other end's address) and answers (alive); with the drop on, no pure ACK from the other
    end reaches either end during the rounds, and the table counted the answers it dropped;
    with it off, the answers do arrive. No byte reaches either program, the flow carries data
    afterwards, and the router has no kaprobed table once kaprobed has stopped."""
    net = routed(ctx.topo)
    a = net[fam]
    if nat:
        ctx.topo.nft(net["router"], "\n".join(nat_rules(nat, fam) + [""]))
    if ctx.netcheck:
        f = nat_connect(ctx, net, nat, fam)[0] if nat else Flow(connect(ctx, net, fam, PORT))
        f.c.exchange()
        return "data crosses the router"
    kap = start(ctx, net, drop, nat, fam)
    log = kap.log
    if nat:
        f, seen_at_srv, seen_at_cli = nat_connect(ctx, net, nat, fam)
    else:
        f, seen_at_srv, seen_at_cli = Flow(connect(ctx, net, fam, PORT)), a["peer"], a["local"]
    count_probes(ctx, net["local"], fam, seen_at_srv)
    count_probes(ctx, net["peer"], fam, seen_at_cli)
    count_pure_acks(ctx, net["local"], fam, seen_at_srv)
    count_pure_acks(ctx, net["peer"], fam, seen_at_cli)
    c = f.c
    c.exchange()
    # The exchange's own ACKs are out by the first idle line (IDLE s later).
    first = f.wait(log, "server", "idle", IDLE + 3)
    base = (acks_seen(net["local"]), acks_seen(net["peer"]))
    alive = {}
    for side in ("server", "client"):
        after = None if side == "client" else first
        alive[side] = []
        for _ in range(2):
            idle = f.wait(log, side, "idle", IDLE + 3, after)
            after = f.wait(log, side, "alive", DEAD_AFTER + 2, idle)
            alive[side].append(after)
    time.sleep(0.05)  # an answer forwarded is delivered within microseconds
    at_srv = acks_seen(net["local"]) - base[0]
    at_cli = acks_seen(net["peer"]) - base[1]
    probes = (probes_seen(net["local"]), probes_seen(net["peer"]))
    check(min(probes) >= 2, "probes seen: server %d, client %d (>= 2 each)" % probes)
    dropped = hush_drops(net["router"])
    if drop:
        check(at_srv == 0 and at_cli == 0, "pure ACKs from the other end during the rounds: "
              "%d at the server, %d at the client (0 expected: the router drops the "
              "answers)" % (at_srv, at_cli))
        check(dropped is not None and dropped >= 4,
              "kaprobed's table dropped %s packets (>= 4 answers expected)" % dropped)
    else:
        check(at_srv >= 2 and at_cli >= 2, "with gateway_drop_answers = no, pure ACKs from "
              "the other end: %d at the server, %d at the client (>= 2 each expected)"
              % (at_srv, at_cli))
    c.exchange(300, 400)
    s, k = c.srv.stats(), c.cli.stats()
    check(int(s["rx"]) == c.cli.tx and int(k["rx"]) == c.srv.tx,
          "bytes received differ from bytes sent: %s / %s" % (s["line"], k["line"]))
    check(s["bad"] == "0" and k["bad"] == "0" and s["error"] == "none" and k["error"] == "none",
          "probe bytes delivered, or the connection broke: %s / %s" % (s["line"], k["line"]))
    bad = [e for e in f.events(log) if e.get("event") not in
           ("track", "idle", "probe", "reply", "alive", "learn")]
    check(not bad, "unexpected lines:\n%s" % fmt_events(bad))
    lines_shaped(log)
    kap.stop_ok()
    tables = router_tables(net["router"])
    check("kaprobed" not in tables, "the router's tables after kaprobed stopped: %s" % tables)
    return "%s%s: probes seen server %d, client %d; pure ACKs from the other end during the " \
           "rounds: server %d, client %d; table dropped %s; bytes exact, no table after stop" % (
               nat + " " if nat else "", "drop" if drop else "no drop", probes[0], probes[1],
               at_srv, at_cli, dropped)


CASES = [
    ("gateway_hush", lambda ctx: gw_hush(ctx, 4)),
    ("gateway_hush6", lambda ctx: gw_hush(ctx, 6)),
    ("gateway_hush_off", lambda ctx: gw_hush(ctx, 4, drop=False)),
    ("gateway_hush_masq", lambda ctx: gw_hush(ctx, 4, "masq")),
    ("gateway_hush_masq6", lambda ctx: gw_hush(ctx, 6, "masq")),
    ("gateway_hush_dnat", lambda ctx: gw_hush(ctx, 4, "dnat")),
    ("gateway_hush_dnat6", lambda ctx: gw_hush(ctx, 6, "dnat")),
]

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

from netns import check, conf_text, routed, run, svc_rule
from test_actions import rewrite
from test_cases import DEAD_AFTER, IDLE, connect, firewall, fmt_events, idle_until
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


def start(ctx, net, drop):
    extra = {} if drop else {"gateway_drop_answers": "no"}
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"],
                                      conf_text("{log}", [gw_rule()], extra=extra))
    kap.proc.wait_line(lambda l: "started" in l, 3, "the started line", stream="err")
    tables = router_tables(net["router"])
    check("kaprobed" in tables, "router tables with a gateway rule: %s" % tables.strip())
    return kap


def gw_hush(ctx, fam, nat=None, drop=True, flushed=False):
    """Both ends alive, two rounds each side: each end is probed (1-byte segments from the
    other end's address) and answers (alive); with the drop on, no pure ACK from the other
    end reaches either end during the rounds, and the table counted the answers it dropped;
    with it off, the answers do arrive. No byte reaches either program, the flow carries data
    afterwards, and the router has no kaprobed table once kaprobed has stopped. flushed: the
    table is deleted by hand before the rounds (as a firewall reload's `flush ruleset`
    would): kaprobed installs it again, warned, when its first batch finds it gone, before
    that batch's probes go, so no answer gets through either."""
    net = routed(ctx.topo)
    a = net[fam]
    if nat:
        ctx.topo.nft(net["router"], "\n".join(nat_rules(nat, fam) + [""]))
    if ctx.netcheck:
        f = nat_connect(ctx, net, nat, fam)[0] if nat else Flow(connect(ctx, net, fam, PORT))
        f.c.exchange()
        return "data crosses the router"
    kap = start(ctx, net, drop)
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
    t_last = c.exchange()
    # The exchange's own ACKs (quick, or delayed by 200 ms at most) are out half an idle
    # later, and the first probes go an idle after it.
    idle_until(t_last + IDLE / 2, log)
    base = (acks_seen(net["local"]), acks_seen(net["peer"]))
    check(not [e for e in f.events(log) if e.get("event") == "probe"],
          "probes before the counters' base was read: the check would miss answers")
    if flushed:
        run(["nft", "delete", "table", "inet", "kaprobed"], ns=net["router"])
    alive = {}
    for side in ("server", "client"):
        after = None
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
        check(at_srv >= 2 and at_cli >= 2 and dropped == 0, "with gateway_drop_answers = no, "
              "pure ACKs from the other end: %d at the server, %d at the client (>= 2 each "
              "expected); dropped by the table: %s (0 expected)" % (at_srv, at_cli, dropped))
    c.exchange(300, 400)
    s, k = c.srv.stats(), c.cli.stats()
    check(int(s["rx"]) == c.cli.tx and int(k["rx"]) == c.srv.tx,
          "bytes received differ from bytes sent: %s / %s" % (s["line"], k["line"]))
    check(s["bad"] == "0" and k["bad"] == "0" and s["error"] == "none" and k["error"] == "none",
          "probe bytes delivered, or the connection broke: %s / %s" % (s["line"], k["line"]))
    bad = [e for e in f.events(log) if e.get("event") not in
           ("track", "idle", "probe", "reply", "alive", "learn")]
    check(not bad, "unexpected lines:\n%s" % fmt_events(bad))
    if flushed:
        again = [l for l in kap.proc.text("err").splitlines() if "installed again" in l]
        check(len(again) == 1, "lines saying the table was installed again: %s" % again)
    lines_shaped(log)
    kap.stop_ok()
    tables = router_tables(net["router"])
    check("kaprobed" not in tables, "the router's tables after kaprobed stopped: %s" % tables)
    return "%s%s%s: probes seen server %d, client %d; pure ACKs from the other end during the " \
           "rounds: server %d, client %d; table dropped %s; bytes exact, no table after stop" % (
               nat + " " if nat else "", "drop" if drop else "no drop",
               " (table deleted by hand, installed again)" if flushed else "", probes[0], probes[1],
               at_srv, at_cli, dropped)


def gw_existing_nat(ctx, fam, nat):
    """A flow through NAT established and idle before kaprobed starts: found in conntrack,
    each record asks its end for the numbers with a learning SYN carrying the addresses that
    end knows the flow by (marked, left untracked by the router's conntrack, which would
    take a SYN in the entry's reply direction as invalid and not translate it); the
    challenge ACKs are heard arriving and dropped; both sides alive, no pure ACK from the
    other end reaches either end, no byte either program, and data flows afterwards."""
    net = routed(ctx.topo)
    firewall(ctx, net["router"])  # conntrack on in the router (ct state invalid drop)
    ctx.topo.nft(net["router"], "\n".join(nat_rules(nat, fam) + [""]))
    f, seen_at_srv, seen_at_cli = nat_connect(ctx, net, nat, fam)
    c = f.c
    c.exchange()
    if ctx.netcheck:
        return "flow set up through %s" % nat
    count_pure_acks(ctx, net["local"], fam, seen_at_srv)
    count_pure_acks(ctx, net["peer"], fam, seen_at_cli)
    time.sleep(IDLE + 0.5)  # idle before kaprobed starts (the dump's idle time)
    kap = start(ctx, net, True)
    log = kap.log
    kap.proc.wait_line(lambda l: "established TCP flows listed" in l, 3, "the dump line",
                       stream="err")
    for side in ("server", "client"):
        f.wait(log, side, "alive", IDLE + DEAD_AFTER + 3)
    tracks = [e for e in f.events(log) if e.get("event") == "track"]
    check(len(tracks) == 2 and all(e.get("source") == "discovered" for e in tracks),
          "track lines: %s" % [e.raw for e in tracks])
    learn = sorted({e.get("side") for e in f.events(log) if e.get("event") == "learn"})
    check(learn == ["client", "server"], "learn lines for the sides %s (both expected)" % learn)
    bad = [e for e in f.events(log) if e.get("event") in ("dead", "reset", "unreachable")]
    check(not bad, "verdicts on a healthy flow:\n%s" % fmt_events(bad))
    time.sleep(0.05)  # an answer forwarded is delivered within microseconds
    at_srv, at_cli = acks_seen(net["local"]), acks_seen(net["peer"])
    dropped = hush_drops(net["router"])
    check(at_srv == 0 and at_cli == 0, "pure ACKs from the other end since kaprobed started: "
          "%d at the server, %d at the client (0 expected)" % (at_srv, at_cli))
    check(dropped is not None and dropped >= 4, "kaprobed's table dropped %s packets (>= 2 "
          "challenge ACKs and 2 answers expected)" % dropped)
    c.exchange(300, 400)
    s, k = c.srv.stats(), c.cli.stats()
    check(int(s["rx"]) == c.cli.tx and int(k["rx"]) == c.srv.tx and s["bad"] == "0" and
          k["bad"] == "0" and s["error"] == "none" and k["error"] == "none",
          "bytes or connection wrong: %s / %s" % (s["line"], k["line"]))
    lines_shaped(log)
    kap.stop_ok()
    tables = router_tables(net["router"])
    check("kaprobed" not in tables, "the router's tables after kaprobed stopped: %s" % tables)
    return "%s: found in conntrack at start, learnt (sides %s) and alive both sides; pure ACKs " \
           "at the ends 0; table dropped %s; data flows after" % (nat, ", ".join(learn), dropped)


def gw_hush_reload(ctx):
    """A table left over (by a kaprobed killed) is replaced at start; the table follows the
    gateway rules: a reload to a file without one deletes it, a reload with one installs it
    again, and kaprobed's exit deletes it."""
    net = routed(ctx.topo)
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    ctx.topo.nft(net["router"], "add table inet kaprobed\nadd chain inet kaprobed leftover\n")
    kap = start(ctx, net, True)
    text = run(["nft", "list", "table", "inet", "kaprobed"], ns=net["router"]).stdout
    check("leftover" not in text and "ans4" in text, "the table at start:\n%s" % text)
    at = 0
    for rules, want in (([svc_rule(port=PORT)], False), ([gw_rule()], True)):
        rewrite(ctx, rules)
        at = kap.proc.wait_line(lambda l: "configuration reloaded" in l, 3, "the reload line",
                                stream="err", start=at)[0] + 1
        tables = router_tables(net["router"])
        check(("kaprobed" in tables) == want, "after a reload %s a gateway rule, the router's "
              "tables: %s" % ("with" if want else "without", tables.strip()))
    kap.stop_ok()
    tables = router_tables(net["router"])
    check("kaprobed" not in tables, "the router's tables after kaprobed stopped: %s" % tables)
    return "leftover table replaced at start; gone after a reload without gateway rules, " \
        "back after one with, gone at exit"


CASES = [
    ("gateway_hush", lambda ctx: gw_hush(ctx, 4)),
    ("gateway_hush_flushed", lambda ctx: gw_hush(ctx, 4, flushed=True)),
    ("gateway_hush6", lambda ctx: gw_hush(ctx, 6)),
    ("gateway_hush_off", lambda ctx: gw_hush(ctx, 4, drop=False)),
    ("gateway_hush_masq", lambda ctx: gw_hush(ctx, 4, "masq")),
    ("gateway_hush_masq6", lambda ctx: gw_hush(ctx, 6, "masq")),
    ("gateway_hush_dnat", lambda ctx: gw_hush(ctx, 4, "dnat")),
    ("gateway_hush_dnat6", lambda ctx: gw_hush(ctx, 6, "dnat")),
    ("gateway_hush_reload", gw_hush_reload),
    ("gateway_existing_masq", lambda ctx: gw_existing_nat(ctx, 4, "masq")),
    ("gateway_existing_dnat", lambda ctx: gw_existing_nat(ctx, 4, "dnat")),
    ("gateway_existing_masq6", lambda ctx: gw_existing_nat(ctx, 6, "masq")),
    ("gateway_existing_dnat6", lambda ctx: gw_existing_nat(ctx, 6, "dnat")),
]

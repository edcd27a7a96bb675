"""Gateway mode (issue 11): the life of a gateway record against the router's conntrack.

- gateway_ct_gone(6), _masq, _dnat6: a forwarded flow probed alive both sides; its
  conntrack entry is deleted in the router (`conntrack -D`): the destroy event makes kaprobed
  forget both records at once (untrack reason=conntrack; through NAT too, where the records
  are keyed by the translated views), the state file lists none, and no probe reaches either
  end for 2 x (idle + interval x probes).
- gateway_ct_flush: on_dead = flush; the flush deletes the entry and its destroy event then
  forgets both records (the dead one, after its verdict, and the live one): one action
  line, no second verdict, a clean exit.
- gateway_ct_sweep: with conntrack events off in the router (nf_conntrack_events = 0, as
  when events are lost), the entry deleted (after a first dump listed it) is not noticed
  until a reload's dump, whose sweep forgets both records (reason=conntrack-sweep).
- gateway_ct_lost: events lost (ENOBUFS: a flush of 20000 entries while kaprobed is
  stopped): a warning, a reconciling dump, and the flushed gateway flow is forgotten.
- gateway_ct_periodic(6): a flow older than kaprobed (its entry, made with no listener,
  sends no destroy event): deleted, its records are forgotten by the periodic dump
  (discover_interval).
- gateway_ct_untracked6: IPv6 flows through a router whose conntrack tracks IPv4 only:
  the periodic dumps never list them and do not forget them.
- gateway_reload_found(6): a flow established while kaprobed runs with a local rule only;
  a reload adds the gateway rule: the dump finds the flow (source=discovered), alive both
  sides.
- gateway_oneway: asymmetric routing (four namespaces: the client's segments go through the
  kaprobed router, the server's answers come back through a second router): the router sees
  one direction only, warns, sends no probe and gives no verdict. (Its record is also
  never confirmed, since the server's segments never reach it.)
- gateway_oneway_confirmed: the router captures its server-side interface only: one record,
  confirmed, every number known, no partner: the guard alone holds the probe back.

Topology of test_gateway (netns.routed): server in "local", router, client in "peer".
"""

import json
import os
import signal
import time

from netns import check, conf_text, routed, run, svc_rule
from test_cases import DEAD_AFTER, connect, firewall, fmt_events, nft_drop_all
from test_gateway import (PORT, Flow, count_probes, ct_entries, gw_rule, lines_shaped,
                          nat_connect, nat_rules, probes_seen)

VERDICT_EVENTS = ("idle", "probe", "reply", "alive", "dead", "reset", "unreachable")


def ct_delete(router, fam):
    """Deletes the router's conntrack entries of TCP port PORT (`conntrack -D`)."""
    argv = ["conntrack", "-D", "-p", "tcp", "--orig-port-dst", str(PORT)]
    if fam == 6:
        argv[2:2] = ["-f", "ipv6"]
    p = run(argv, ns=router, check=False)
    check("flow entries have been deleted" in p.stderr and not p.stderr.startswith("0 "),
          "conntrack -D: %s %s" % (p.stdout, p.stderr))


def state_records(ctx, kap, timeout=3.0):
    """The state file's connections, written anew now (SIGUSR2)."""
    path = os.path.join(ctx.topo.tmp, "state.json")
    if os.path.exists(path):
        os.unlink(path)
    os.kill(kap.proc.pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as fh:
                return json.load(fh)["connections"]
        except (OSError, ValueError):
            time.sleep(0.05)
    check(False, "no state file %.0f s after SIGUSR2" % timeout)


def flow_records(ctx, kap, f):
    """The state file's gateway records (one flow per case: through NAT, one record is
    listed by its key, the flow as the server sees it, not by f's names)."""
    return [c for c in state_records(ctx, kap) if c.get("side")]


def wait_untracked(log, f, reason, timeout, after=None):
    """Both records' untrack lines (reason given); returns them by side."""
    got = {}
    for side in ("server", "client"):
        got[side] = log.wait(lambda e, s=side: e.get("event") == "untrack" and
                             e.get("client") == f.client and e.get("server") == f.server and
                             e.get("side") == s and e.get("reason") == reason,
                             timeout, "untrack side=%s reason=%s" % (side, reason), log.alive,
                             after)
    return got


def quiet_afterwards(net, log, f, fam, since, wait=2 * DEAD_AFTER):
    """No probe reaches either end and no line of the flow comes for `wait` s."""
    before = probes_seen(net["local"]), probes_seen(net["peer"])
    time.sleep(wait)
    after = probes_seen(net["local"]), probes_seen(net["peer"])
    check(after == before, "probes after the records were forgotten (server, client): %s -> %s"
          % (before, after))
    late = [e for e in f.events(log) if e.idx > since.idx and e.get("event") != "untrack"]
    check(not late, "lines of the flow after it was forgotten:\n%s" % fmt_events(late))
    return "IPv%d: no probe for %.1f s after (1-byte segments from the other end counted at " \
           "the server, at the client: %s, unchanged)" % (fam, wait, before)


def setup_ct(ctx, fam, rules, nat=None):
    """routed, conntrack on in the router (its firewall), probe counters at each end (by
    nat_connect's addresses through NAT)."""
    net = routed(ctx.topo)
    firewall(ctx, net["router"])
    a = net[fam]
    if nat:
        ctx.topo.nft(net["router"], "\n".join(nat_rules(nat, fam) + [""]))
    else:
        count_probes(ctx, net["local"], fam, a["peer"])
        count_probes(ctx, net["peer"], fam, a["local"])
    kap = None
    if not ctx.netcheck:
        kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"], conf_text("{log}", rules))
    return net, kap



def both_alive(f, log, timeout):
    """Waits for an alive line of each side of flow f; returns the later of the two."""
    lines = [f.wait(log, side, "alive", timeout) for side in ("server", "client")]
    return max(lines, key=lambda e: e.idx)

def gw_ct_gone(ctx, fam, nat=None):
    net, kap = setup_ct(ctx, fam, [gw_rule()], nat)
    if nat:
        f, seen_at_srv, dst = nat_connect(ctx, net, nat, fam)
        count_probes(ctx, net["local"], fam, seen_at_srv)
        count_probes(ctx, net["peer"], fam, dst)
    else:
        f = Flow(connect(ctx, net, fam, PORT))
    f.c.exchange()
    if ctx.netcheck:
        check(len(ct_entries(net["router"])) == 1, "router conntrack: %s" %
              ct_entries(net["router"]))
        ct_delete(net["router"], fam)
        return "conntrack -D removes the flow's entry"
    log = kap.log
    last = both_alive(f, log, DEAD_AFTER + 3)
    recs = flow_records(ctx, kap, f)
    check(len(recs) == 2, "state file before: %s" % recs)
    ct_delete(net["router"], fam)  # right after a round: no probe in flight
    gone = wait_untracked(log, f, "conntrack", 2, last)
    recs = flow_records(ctx, kap, f)
    check(not recs, "state file after the entry was deleted: %s" % recs)
    quiet = quiet_afterwards(net, log, f, fam, max(gone.values(), key=lambda e: e.idx))
    lines_shaped(log)
    kap.stop_ok()
    _, tot = kap.proc.wait_line(lambda l: "totals:" in l, 2, "the totals line", stream="err")
    check("gateway_expired=2" in tot, "totals: %s" % tot)
    took = max(e.t for e in gone.values()) - last.t
    return "%sboth records forgotten %.3f s after the last alive (entry deleted then); %s; " \
           "totals gateway_expired=2" % (nat + ": " if nat else "", took, quiet)


def gw_ct_flush(ctx):
    net, kap = setup_ct(ctx, 4, [gw_rule(on_dead="flush")])
    if ctx.netcheck:
        return "firewall loaded"
    log = kap.log
    f = Flow(connect(ctx, net, 4, PORT))
    f.c.exchange()
    nft_drop_all(ctx, net["local"])  # the server's namespace
    d = f.wait(log, "server", "dead", DEAD_AFTER + 3)
    a = log.wait(lambda e: e.get("event") == "action" and e.get("client") == f.client, 3,
                 "event=action", log.alive, d)
    check(a.get("action") == "flush" and a.get("result") == "ok", "action line: %s" % a.raw)
    gone = wait_untracked(log, f, "conntrack", 2, d)
    check(gone["server"].get("after") == "verdict" and "after" not in gone["client"],
          "untrack lines: %s / %s" % (gone["server"].raw, gone["client"].raw))
    check(not flow_records(ctx, kap, f), "state file lists the flushed flow")
    time.sleep(DEAD_AFTER)
    acts = [e for e in log.events if e.get("event") == "action"]
    dead = [e for e in f.events(log) if e.get("event") in ("dead", "reset")]
    check(len(acts) == 1 and len(dead) == 1, "one flush and one verdict expected:\n%s" %
          fmt_events(acts + dead))
    lines_shaped(log)
    kap.stop_ok()
    return "dead side=server, flush ok, then both records forgotten by the destroy event " \
           "(%.3f s after the action); one action, one verdict" % (
               max(e.t for e in gone.values()) - a.t)


def gw_ct_sweep(ctx):
    net, kap = setup_ct(ctx, 4, [gw_rule()])
    if ctx.netcheck:
        return "firewall loaded"
    ctx.topo.sysctl(net["router"], "net.netfilter.nf_conntrack_events", 0)
    # a probe must not make the entry anew (mid-stream pickup) before the dump
    ctx.topo.sysctl(net["router"], "net.netfilter.nf_conntrack_tcp_loose", 0)
    log = kap.log
    f = Flow(connect(ctx, net, 4, PORT))
    f.c.exchange()
    last = both_alive(f, log, DEAD_AFTER + 3)
    # a first dump lists the flow (a record no dump ever listed is never swept: it may be a
    # flow conntrack does not track)
    os.kill(kap.proc.pid, signal.SIGHUP)
    kap.proc.wait_line(lambda l: "conntrack (reload)" in l, 2, "the first dump", stream="err")
    ct_delete(net["router"], 4)
    time.sleep(0.3)
    check(len(flow_records(ctx, kap, f)) == 2, "the records went without a destroy event")
    i, _ = kap.proc.wait_line(lambda l: "conntrack (reload)" in l, 1, "the first dump",
                              stream="err")
    os.kill(kap.proc.pid, signal.SIGHUP)  # the same file: a dump reconciles
    gone = wait_untracked(log, f, "conntrack-sweep", 3, last)
    _, line = kap.proc.wait_line(lambda l: "conntrack (reload)" in l, 2, "the dump line",
                                 stream="err", start=i + 1)
    check("2 records of flows no longer listed forgotten" in line, "dump line: %s" % line)
    check(not flow_records(ctx, kap, f), "state file lists the deleted flow")
    lines_shaped(log)
    kap.stop_ok()
    return "no destroy event (nf_conntrack_events=0); the reload's dump forgot both records " \
           "%.3f s after the last alive: %s" % (
               max(e.t for e in gone.values()) - last.t, line.split("msg=", 1)[-1][:100])


def gw_ct_periodic(ctx, fam):
    """A flow made before kaprobed starts: its conntrack entry was made with no listener,
    so (nf_conntrack_events = 2, the default) its deletion sends no destroy event. Found by
    the start dump, probed alive both sides; deleted; the periodic dump (discover_interval
    1s) forgets both records, and no probe follows."""
    net = routed(ctx.topo)
    firewall(ctx, net["router"])
    ctx.topo.sysctl(net["router"], "net.netfilter.nf_conntrack_tcp_loose", 0)  # no pickup
    a = net[fam]
    count_probes(ctx, net["local"], fam, a["peer"])
    count_probes(ctx, net["peer"], fam, a["local"])
    # Whether an entry gets conntrack's event extension at creation depends on a listener
    # anywhere on the host (netlink's listener bitmap is not per namespace): another
    # kaprobed in a case running alongside would give this one a destroy event. With
    # events off while it is made, it never has one, whatever else runs.
    ctx.topo.sysctl(net["router"], "net.netfilter.nf_conntrack_events", 0)
    f = Flow(connect(ctx, net, fam, PORT))
    f.c.exchange()
    ctx.topo.sysctl(net["router"], "net.netfilter.nf_conntrack_events", 2)
    if ctx.netcheck:
        return "flow set up"
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"], conf_text(
        "{log}", [gw_rule()], extra={"discover_interval": "1s"}))
    log = kap.log
    last = both_alive(f, log, DEAD_AFTER + 4)
    ct_delete(net["router"], fam)
    gone = wait_untracked(log, f, "conntrack-sweep", 3, last)
    check(not flow_records(ctx, kap, f), "state file lists the deleted flow")
    quiet = quiet_afterwards(net, log, f, fam, max(gone.values(), key=lambda e: e.idx))
    kap.stop_ok()
    return "no destroy event for an entry older than the listener; the periodic dump forgot " \
           "both records %.3f s after the last alive; %s" % (
               max(e.t for e in gone.values()) - last.t, quiet)


FLOOD = 20000  # UDP conntrack entries: their destroy events overflow the event socket

FLOOD_PY = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in range(1, %d):
    s.sendto(b"x", ("198.51.100.2", port))
""" % (FLOOD + 1)


def gw_ct_lost(ctx):
    """Events lost: FLOOD conntrack entries (UDP from the router to the client's namespace)
    are flushed at once while kaprobed is stopped; the event socket overflows (ENOBUFS),
    kaprobed warns and reconciles with a dump; the gateway flow, flushed too, is forgotten
    (by its event if it got through, else by the dump's sweep)."""
    net, kap = setup_ct(ctx, 4, [gw_rule()])
    run(["python3", "-c", FLOOD_PY], ns=net["router"], timeout=60)
    n = int(run(["sysctl", "-n", "net.netfilter.nf_conntrack_count"], ns=net["router"]).stdout)
    check(n >= FLOOD, "router conntrack entries after the flood: %d" % n)
    if ctx.netcheck:
        return "%d conntrack entries made" % n
    log = kap.log
    f = Flow(connect(ctx, net, 4, PORT))
    f.c.exchange()
    last = both_alive(f, log, DEAD_AFTER + 3)
    os.kill(kap.proc.pid, signal.SIGHUP)  # a dump lists the flow (see gw_ct_sweep)
    kap.proc.wait_line(lambda l: "conntrack (reload)" in l, 3, "the listing dump", stream="err")
    os.kill(kap.proc.pid, signal.SIGSTOP)
    try:
        run(["conntrack", "-F"], ns=net["router"])
    finally:
        os.kill(kap.proc.pid, signal.SIGCONT)
    _, warn = kap.proc.wait_line(lambda l: "ENOBUFS" in l, 3, "the events-lost warning",
                                 stream="err")
    _, dump = kap.proc.wait_line(lambda l: "conntrack (events-lost)" in l, 5,
                                 "the reconciling dump", stream="err")
    reasons = {}
    for side in ("server", "client"):
        u = log.wait(lambda e, s=side: e.get("event") == "untrack" and e.get("side") == s and
                     e.get("client") == f.client, 3, "untrack side=%s" % side, log.alive, last)
        reasons[side] = u.get("reason")
    check(set(reasons.values()) <= {"conntrack", "conntrack-sweep"}, "reasons: %s" % reasons)
    check(not flow_records(ctx, kap, f), "state file lists the flushed flow")
    kap.stop_ok()
    return "%d entries flushed: %s; %s; records forgotten (%s)" % (
        n, warn.split("msg=", 1)[-1][:50], dump.split("msg=", 1)[-1][:90],
        ", ".join("%s: %s" % kv for kv in sorted(reasons.items())))


def gw_ct_untracked6(ctx):
    """IPv6 flows through a router whose conntrack tracks IPv4 only (its one ct rule is in
    an ip table): no dump ever lists them, and the periodic dumps (discover_interval 1s)
    must not forget their records: alive both sides round after round."""
    net = routed(ctx.topo)
    ctx.topo.nft(net["router"], "\n".join([
        "add table ip kptfw4",
        "add chain ip kptfw4 fwd_c { type filter hook forward priority 0; policy accept; }",
        "add rule ip kptfw4 fwd_c ct state invalid drop",
        ""]))
    if ctx.netcheck:
        return "IPv4 conntrack only"
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"], conf_text(
        "{log}", [gw_rule()], extra={"discover_interval": "1s"}))
    log = kap.log
    f = Flow(connect(ctx, net, 6, PORT))
    f.c.exchange()
    after = None
    for _ in range(4):
        for side in ("server", "client"):
            after = f.wait(log, side, "alive", DEAD_AFTER + 2, after)
    dumps = [l for _, l in kap.proc.err if "conntrack (periodic)" in l]
    check(len(dumps) >= 3, "periodic dumps: %s" % dumps)
    gone = [e for e in f.events(log) if e.get("event") in ("untrack", "dead", "track")]
    check(len(gone) == 2 and all(e["event"] == "track" for e in gone),
          "track/untrack/dead lines:\n%s" % fmt_events(gone))
    kap.stop_ok()
    return "4 alive rounds per side through %d periodic dumps that never list the flow" % (
        len(dumps))


def gw_reload_found(ctx, fam):
    local_only = [svc_rule(port=7000)]
    net, kap = setup_ct(ctx, fam, local_only)
    f = Flow(connect(ctx, net, fam, PORT))
    f.c.exchange()
    if ctx.netcheck:
        return "flow set up"
    log = kap.log
    time.sleep(0.5)
    check(not f.events(log), "the flow was followed without a gateway rule:\n%s" %
          fmt_events(f.events(log)))
    with open(kap.conf_path + ".new", "w") as fh:
        fh.write(conf_text(kap.log_path, local_only + [gw_rule()]).replace(
            "{tmp}", ctx.topo.tmp))
    os.rename(kap.conf_path + ".new", kap.conf_path)
    os.kill(kap.proc.pid, signal.SIGHUP)
    _, line = kap.proc.wait_line(lambda l: "conntrack (reload)" in l, 3, "the dump line",
                                 stream="err")
    check("1 established TCP flows listed" in line, "dump line: %s" % line)
    for side in ("server", "client"):
        f.wait(log, side, "alive", DEAD_AFTER + 4)
    tracks = [e for e in f.events(log) if e.get("event") == "track"]
    check(len(tracks) == 2 and all(e.get("source") == "discovered" for e in tracks),
          "track lines: %s" % [e.raw for e in tracks])
    bad = [e for e in f.events(log) if e.get("event") in ("dead", "reset", "unreachable")]
    check(not bad, "verdicts on a healthy flow:\n%s" % fmt_events(bad))
    f.c.exchange(300, 400)
    s, k = f.c.srv.stats(), f.c.cli.stats()
    check(s["bad"] == "0" and k["bad"] == "0" and s["error"] == "none" and k["error"] == "none",
          "bytes or connection wrong: %s / %s" % (s["line"], k["line"]))
    at_srv, at_cli = probes_seen(net["local"]), probes_seen(net["peer"])
    check(at_srv >= 1 and at_cli >= 1, "probes seen: server %d, client %d" % (at_srv, at_cli))
    lines_shaped(log)
    kap.stop_ok()
    return "IPv%d: found by the reload's dump (source=discovered), alive both sides; probes " \
           "seen at the server %d, at the client %d" % (fam, at_srv, at_cli)


def asymmetric(topo):
    """client ("peer") -> router (kaprobed) -> server ("local"); server -> router2 ->
    client. Reverse-path filters off: each end receives on one link and sends on another."""
    local, router, peer = (topo.netns(r) for r in ("local", "router", "peer"))
    router2 = topo.netns("router2")
    topo.link(local, "eth0", router, "eth0")
    topo.link(router, "eth1", peer, "eth0")
    topo.link(local, "eth1", router2, "eth0")
    topo.link(router2, "eth1", peer, "eth1")
    for ns, ifn, cidr in ((local, "eth0", "192.0.2.1/24"), (router, "eth0", "192.0.2.254/24"),
                          (router, "eth1", "198.51.100.254/24"),
                          (peer, "eth0", "198.51.100.2/24"), (local, "eth1", "10.9.1.1/24"),
                          (router2, "eth0", "10.9.1.254/24"), (router2, "eth1", "10.9.2.254/24"),
                          (peer, "eth1", "10.9.2.2/24")):
        topo.addr(ns, ifn, cidr)
    topo.route(peer, "192.0.2.0/24", "198.51.100.254")   # requests via the router
    topo.route(local, "198.51.100.0/24", "10.9.1.254")   # answers via router2
    topo.route(router2, "198.51.100.0/24", "10.9.2.2")
    topo.route(router2, "192.0.2.0/24", "10.9.1.1")
    for ns in (router, router2):
        topo.sysctl(ns, "net.ipv4.ip_forward", 1)
    for ns in (local, router, peer, router2):
        for ifn in ("all", "default", "eth0", "eth1"):
            topo.sysctl(ns, "net.ipv4.conf.%s.rp_filter" % ifn, 0)
    return {"local": local, "router": router, "peer": peer, "router2": router2,
            4: {"local": "192.0.2.1", "peer": "198.51.100.2"}}


def gw_oneway(ctx):
    net = asymmetric(ctx.topo)
    count_probes(ctx, net["local"], 4, net[4]["peer"])
    count_probes(ctx, net["peer"], 4, net[4]["local"])
    # the router sees the client's segments only: count what it forwards
    ctx.topo.nft(net["router"], "\n".join([
        "add table inet kptfwd",
        "add chain inet kptfwd fwd_c { type filter hook forward priority 0; policy accept; }",
        "add rule inet kptfwd fwd_c ip saddr 198.51.100.2 counter",
        "add rule inet kptfwd fwd_c ip saddr 192.0.2.1 counter",
        ""]))
    kap = None
    if not ctx.netcheck:
        kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"],
                                          conf_text("{log}", [gw_rule()]))
    f = Flow(connect(ctx, net, 4, PORT))
    t_last = f.c.exchange()
    fwd = run(["nft", "list", "chain", "inet", "kptfwd", "fwd_c"], ns=net["router"]).stdout
    counts = [int(x.split()[0]) for x in fwd.split("counter packets ")[1:]]
    check(len(counts) == 2 and counts[0] > 0 and counts[1] == 0,
          "router forwarded (client's, server's) segments: %s" % counts)
    if ctx.netcheck:
        return "the router forwards the client's segments only (%d), router2 the server's" \
               % counts[0]
    log = kap.log
    _, warn = kap.proc.wait_line(lambda l: "seen one way only" in l, 2 * DEAD_AFTER,
                                 "the one-way warning", stream="err")
    check("level=warning" in warn and "rule [gw]" in warn, "warning: %s" % warn)
    left = t_last + 2 * DEAD_AFTER - time.time()
    if left > 0:
        time.sleep(left)
    at_srv, at_cli = probes_seen(net["local"]), probes_seen(net["peer"])
    check(at_srv == 0 and at_cli == 0, "probes seen: server %d, client %d" % (at_srv, at_cli))
    bad = [e for e in f.events(log) if e.get("event") in VERDICT_EVENTS]
    check(not bad, "lines of a one-way flow:\n%s" % fmt_events(bad))
    f.c.exchange(100, 200)
    s, k = f.c.srv.stats(), f.c.cli.stats()
    check(s["bad"] == "0" and k["bad"] == "0" and s["error"] == "none" and k["error"] == "none",
          "bytes or connection wrong: %s / %s" % (s["line"], k["line"]))
    kap.stop_ok()
    _, tot = kap.proc.wait_line(lambda l: "totals:" in l, 2, "the totals line", stream="err")
    oneway = tot.split("gateway_oneway=", 1)[-1].split()[0]
    check(int(oneway) >= 1, "totals: %s" % tot)
    return "warned (%s); no probe at either end and no line for %.1f s; gateway_oneway=%s" % (
        warn.split("msg=", 1)[-1][:60], 2 * DEAD_AFTER, oneway)


def gw_oneway_confirmed(ctx):
    """The router captures its server-side interface only (interface = eth0): the client's
    segments leaving there and the server's arriving there make one record (probing the
    server), confirmed by the server's own segments and with every number known; the
    server's segments leave through eth1, never seen, so its partner never exists. Only the
    guard holds the probe back: warned, no probe at either end, no line of the flow."""
    net = routed(ctx.topo)
    a = net[4]
    count_probes(ctx, net["local"], 4, a["peer"])
    count_probes(ctx, net["peer"], 4, a["local"])
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, net["router"],
                                      conf_text("{log}", [gw_rule()], interface="eth0"))
    log = kap.log
    f = Flow(connect(ctx, net, 4, PORT))
    t_last = f.c.exchange()
    _, warn = kap.proc.wait_line(lambda l: "seen one way only" in l, 2 * DEAD_AFTER,
                                 "the one-way warning", stream="err")
    check("level=warning" in warn and "rule [gw]" in warn, "warning: %s" % warn)
    tracks = [e for e in f.events(log) if e.get("event") == "track"]
    check([e.get("side") for e in tracks] == ["server"],
          "track lines (one confirmed record, probing the server): %s" % [e.raw for e in tracks])
    left = t_last + 2 * DEAD_AFTER - time.time()
    if left > 0:
        time.sleep(left)
    at_srv, at_cli = probes_seen(net["local"]), probes_seen(net["peer"])
    check(at_srv == 0 and at_cli == 0, "probes seen: server %d, client %d" % (at_srv, at_cli))
    bad = [e for e in f.events(log) if e.get("event") in VERDICT_EVENTS]
    check(not bad, "lines of a one-way flow:\n%s" % fmt_events(bad))
    recs = flow_records(ctx, kap, f)
    check(len(recs) == 1 and recs[0]["state"] == "watch", "state file: %s" % recs)
    kap.stop_ok()
    return "one confirmed record (side=server), warned, no probe at either end and no " \
           "verdict for %.1f s" % (2 * DEAD_AFTER)


# Run alone by run.py -j (they load the machine: bulk transfers, floods, many connections,
# a booted systemd), after the cases that run side by side.
SERIAL = {"gateway_ct_lost"}

CASES = [
    ("gateway_ct_gone", lambda ctx: gw_ct_gone(ctx, 4)),
    ("gateway_ct_gone6", lambda ctx: gw_ct_gone(ctx, 6)),
    ("gateway_ct_gone_masq", lambda ctx: gw_ct_gone(ctx, 4, "masq")),
    ("gateway_ct_gone_dnat6", lambda ctx: gw_ct_gone(ctx, 6, "dnat")),
    ("gateway_ct_flush", gw_ct_flush),
    ("gateway_ct_sweep", gw_ct_sweep),
    ("gateway_ct_lost", gw_ct_lost),
    ("gateway_ct_periodic", lambda ctx: gw_ct_periodic(ctx, 4)),
    ("gateway_ct_periodic6", lambda ctx: gw_ct_periodic(ctx, 6)),
    ("gateway_ct_untracked6", gw_ct_untracked6),
    ("gateway_reload_found", lambda ctx: gw_reload_found(ctx, 4)),
    ("gateway_reload_found6", lambda ctx: gw_reload_found(ctx, 6)),
    ("gateway_oneway", gw_oneway),
    ("gateway_oneway_confirmed", gw_oneway_confirmed),
]

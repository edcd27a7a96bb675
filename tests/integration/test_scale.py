"""Scale and blind-spot cases (issue 8): 20 000 connections in both modes, connections that
never carried data (handshake only), and capture drops that must never become a dead
verdict.

  scale_disc, scale_cap  the bench's shape (tests/integration/scale.py) at 20 000
                         connections: opened before kaprobed (discovery) or while it runs
                         (capture); round 1, half the peers silenced on the client side,
                         every verdict against the server kernel's tcp_info.
  handshake_only         kaprobed first, then connections that carry nothing either way:
                         probed at last-received + idle; alive, or dead on time once the
                         peer is silenced; on the accepting and on the connecting side.
  capture_drops          a 64 KiB capture buffer and 3 000 connections falling due at the
                         same instant: drops must happen, no live peer may be declared dead,
                         uncertain lines or re-probes instead, then every verdict right.

With ctx.netcheck each case checks only its network side (connections, kernel view,
silence), without kaprobed.
"""

import json
import os
import signal
import time

import scale
from netns import check, conf_text, endpoint, two_hosts
from test_cases import Conn, connect, fmt_events
from test_discover import kernel_last

N_SCALE = 20000
# |dead time - (kernel last-received + idle + interval x probes)|, 99th percentile. kaprobed's
# own timing is exact to the millisecond (README: 5.001 s against the kernel's 5.06-5.09 s),
# the kernel's last-received in tcp_info is in jiffies (4 ms at HZ=250) and ts= has
# milliseconds: a quiet machine gives |p99| <= 10 ms (issue 8's bench target), and here
# 20 000 connections gave p99 4-18 ms in most runs. This machine is shared (2 cores, load
# average 4-5 from other developers' tests while these cases ran): one run gave p99 49.7 ms
# with a healthy daemon. 100 ms is twice that, the tolerance test_discover allows one
# connection, and still far below what goes wrong at scale: verdicts queued behind a burst
# or a pacer (+0.3 to +1.5 s at 100 000 here) or the kernel's own keepalive (p50 +2.3 s at
# 20 000, ARCHITECTURE.md Platform facts).
P99_BOUND = 0.100
TOL = 0.100  # one connection's probe or verdict against the kernel's time (as test_discover)


def figures_details(ctx, F, kap=None):
    """Failure details: the figures, kaprobed's stderr and the status log's last lines (the
    whole log of a scale run is megabytes)."""
    def details():
        try:
            out = list(scale.format_figures(F)) if F else []
        except (KeyError, TypeError):  # a run that stopped half-way
            out = ["figures so far: %s" % {k: v for k, v in F.items() if k != "kap"}]
        k = kap or (F or {}).get("kap")
        if k is not None:
            k.log.poll()
            out.append("--- kaprobed stderr:\n" + k.proc.text("err")[-3000:])
            out.append("--- status log %s, last 40 lines:\n%s" % (
                k.log_path, "\n".join(e.raw for e in k.log.events[-40:])))
        return "\n".join(out)
    ctx.details = details


def ms(v):
    return "n/a" if v is None else "%+.1f" % (v * 1000)


# --------------------------------------------------------------------------------------
# scale_disc, scale_cap: 20 000 connections

def scale_case(ctx, mode):
    F = {}
    figures_details(ctx, F)
    scale.scale_run(ctx.topo, None if ctx.netcheck else ctx.binary, N_SCALE, mode,
                    say=lambda s: None, round1_grace=6.0, dead_grace=3.0, F=F)
    if ctx.netcheck:
        return F["netcheck"]
    n, half = N_SCALE, N_SCALE // 2
    bad = []
    if F["errors"]:
        bad.append("level=error lines: %s" % F["errors"])
    if F["exit"] != 0:
        bad.append("kaprobed exited with status %s after SIGTERM" % F["exit"])
    if F["tracked"] != n:
        bad.append("%s connections tracked, expected %d" % (F["tracked"], n))
    if F["answered"] != n:
        bad.append("%d of %d connections probed and answered in round 1 (the server kernel "
                   "saw no reply on the others)" % (F["answered"], n))
    if F["false_dead"]:
        bad.append("%d live peers declared dead, first: %s %s" % (
            len(F["false_dead"]), *F["false_dead"][0]))
    if F["silenced"] != half or F["not_dead"]:
        bad.append("%d of %d silenced peers dead" % (F["dead"], F["silenced"]))
    if F["abs_err_p99"] is None or F["abs_err_p99"] > P99_BOUND:
        bad.append("|dead error| p99 %s ms (bound %.0f ms; p50 %s max %s)" % (
            ms(F["abs_err_p99"]), P99_BOUND * 1000, ms(F["err_p50"]), ms(F["err_max"])))
    if F["pcap_drops"] is None:
        bad.append("kaprobed reported no pcap_drops= (summary or totals)")
    elif float(F["pcap_drops"]) != 0:
        bad.append("%s pcap drops with the default capture settings" % F["pcap_drops"])
    check(not bad, "; ".join(bad))
    return "%d tracked and probed, round 1 %.2f s; %d/%d silenced dead, error p50 %s p99 %s " \
           "max %s ms; 0 false dead, %d uncertain, 0 pcap drops, learn retries %s; log %d+%d " \
           "B per round; RSS %s B/conn" % (
               n, F["round1_s"], F["dead"], half, ms(F["err_p50"]), ms(F["err_p99"]),
               ms(F["err_max"]), F["uncertain"], F["learn_retries"] or "n/a",
               F["log_r1"] or 0, F["log_r2"] or 0,
               "n/a" if F["rss_per_conn"] is None else "%.0f" % F["rss_per_conn"])


def case_scale_disc(ctx):
    return scale_case(ctx, "disc")


def case_scale_cap(ctx):
    return scale_case(ctx, "cap")


# --------------------------------------------------------------------------------------
# handshake_only: a connection that never carried data is probed like any other

HS_IDLE, HS_INTERVAL, HS_PROBES = 1.0, 0.5, 3
HS_DEAD = HS_IDLE + HS_INTERVAL * HS_PROBES
ACC_ALIVE, ACC_DEAD, CON_ALIVE, CON_DEAD = 5440, 5441, 5450, 5451


def hs_rule(name, local, remote):
    return (name, {"local": local, "remote": remote, "idle": "%gs" % HS_IDLE,
                   "interval": "%gms" % (HS_INTERVAL * 1000), "probes": HS_PROBES})


def connect_out(ctx, net, port, tag):
    """Our program (local namespace) connects to the peer's server: Conn.srv is still the
    local program, Conn.cli the peer's."""
    a = net[4]
    far = ctx.peer(net["peer"], "server-peer" + tag)
    far.listen(a["peer"], port)
    near = ctx.peer(net["local"], "client-local" + tag)
    r = near.connect(a["peer"], port)
    far.accept()
    return Conn(near, far, endpoint(r["laddr"], int(r["lport"])), endpoint(a["peer"], port))


def nft_silence_ports(ctx, ns, ports):
    """In the peer's namespace: everything from or to these ports (either end) is dropped."""
    lines = ["add table inet kpths",
             "add chain inet kpths in_c { type filter hook input priority -10; policy accept; }",
             "add chain inet kpths out_c { type filter hook output priority -10; policy accept; }"]
    for p in ports:
        for chain in ("in_c", "out_c"):
            lines.append("add rule inet kpths %s tcp sport %d drop" % (chain, p))
            lines.append("add rule inet kpths %s tcp dport %d drop" % (chain, p))
    ctx.topo.nft(ns, "\n".join(lines + [""]))


def case_handshake_only(ctx):
    net = two_hosts(ctx.topo)
    lns = net["local"]
    kap = None
    if not ctx.netcheck:
        rules = [hs_rule("accepting", "*:%d-%d" % (ACC_ALIVE, ACC_DEAD), "*"),
                 hs_rule("connecting", "*", "*:%d-%d" % (CON_ALIVE, CON_DEAD))]
        kap = ctx.kap = ctx.topo.kaprobed(ctx.binary, lns, conf_text("{log}", rules))
    conns = {
        ("accepting", "alive"): connect(ctx, net, 4, ACC_ALIVE, "-acc-alive"),
        ("accepting", "dead"): connect(ctx, net, 4, ACC_DEAD, "-acc-dead"),
        ("connecting", "alive"): connect_out(ctx, net, CON_ALIVE, "-con-alive"),
        ("connecting", "dead"): connect_out(ctx, net, CON_DEAD, "-con-dead"),
    }
    nft_silence_ports(ctx, net["peer"], (ACC_DEAD, CON_DEAD))
    k = {key: kernel_last(c) for key, c in conns.items()}
    if ctx.netcheck:
        for key, c in conns.items():
            s = c.srv.stats()
            check(s["tx"] == "0" and s["rx"] == "0", "%s %s: data moved: %s" % (*key, s["line"]))
            check(time.time() - k[key] < 2.0, "%s %s: kernel last-received %.1f s ago" % (
                *key, time.time() - k[key]))
        for key in (("accepting", "dead"), ("connecting", "dead")):
            c = conns[key]
            c.srv.send(10)
            r = c.cli.wait_rx(c.srv.tx, 1.0, expect_ok=False)
            check(not r["ok"], "%s %s: the peer still receives: %s" % (*key, r["line"]))
        for key in (("accepting", "alive"), ("connecting", "alive")):
            c = conns[key]
            c.srv.send(10)
            c.cli.wait_rx(c.srv.tx, 1.0)
        return "4 connections, nothing sent; kernel last-received = handshake; ports %d and " \
               "%d silenced on the peer's side, the others carry data" % (ACC_DEAD, CON_DEAD)
    log = kap.log
    bad, got = [], []
    for key, c in conns.items():
        side, fate = key
        what = "%s side, peer %s (local=%s remote=%s)" % (side, "alive" if fate == "alive"
                                                          else "silenced", c.local, c.remote)
        due = k[key] + HS_IDLE
        try:
            p1 = log.wait_conn(c.local, c.remote, "probe", max(0.5, due + 1.0 - time.time()),
                               extra=lambda e: e.get("n") == "1")
        except Exception:
            evs = c.events(log)
            bad.append("%s: no probe n=1 by last-received + idle + 1 s (its lines: %s)" % (
                what, " ".join(e["event"] for e in evs) or "none"))
            continue
        if abs(p1.t - due) > TOL:
            bad.append("%s: first probe %+.3f s from kernel last-received + idle" % (
                what, p1.t - due))
        verdict = "alive" if fate == "alive" else "dead"
        limit = k[key] + HS_DEAD + 1.0
        try:
            v = log.wait_conn(c.local, c.remote, verdict, max(0.5, limit - time.time()))
        except Exception:
            bad.append("%s: probed, but no %s line:\n%s" % (what, verdict,
                                                           fmt_events(c.events(log))))
            continue
        if verdict == "dead":
            if abs(v.t - (k[key] + HS_DEAD)) > TOL:
                bad.append("%s: dead %+.3f s from kernel last-received + %.1f s" % (
                    what, v.t - (k[key] + HS_DEAD), HS_DEAD))
            got.append("%s dead %+.0f ms" % (side, (v.t - k[key] - HS_DEAD) * 1000))
        else:
            got.append("%s alive rtt=%s" % (side, v.get("rtt")))
        got[-1] += " (probe %+.0f ms)" % ((p1.t - due) * 1000)
    # The live ones must not be declared dead later either.
    later = max(k.values()) + HS_DEAD + 0.3
    while time.time() < later:
        time.sleep(0.05)
    for key in (("accepting", "alive"), ("connecting", "alive")):
        c = conns[key]
        d = [e for e in c.events(log) if e.get("event") in ("dead", "reset", "unreachable")]
        if d:
            bad.append("%s side, live peer: %s" % (key[0], d[0].raw))
    errs = log.errors()
    if errs:
        bad.append("level=error lines: %s" % errs[0].raw)
    check(not bad, "handshake-only connections: " + "\n".join(bad))
    kap.stop_ok()
    return "; ".join(got)


# --------------------------------------------------------------------------------------
# capture_drops: a tiny capture buffer and a burst: drops, but never a false dead

CD_N, CD_SILENT = 3000, 30
CD_IDLE, CD_INTERVAL, CD_PROBES = 2.0, 1.0, 3
CD_SPREAD = 2.0      # s over which the live peers each send a byte after the burst
CD_TIMEOUT = 30.0    # s after kaprobed's start for every verdict


def reprobes(evs_by_conn):
    """Connections probed more than PROBES times before their first verdict, or whose probe
    numbering started again without a verdict in between (a re-probed round)."""
    n = 0
    for evs in evs_by_conn.values():
        probes, last = 0, 0
        for e in evs:
            ev = e.get("event")
            if ev in ("alive", "dead", "reset", "unreachable"):
                break
            if ev == "probe":
                probes += 1
                num = int(e.get("n", "0") or 0)
                if probes > CD_PROBES or num <= last:
                    n += 1
                    break
                last = num
    return n


def case_capture_drops(ctx):
    topo = ctx.topo
    net = scale.topology(topo)
    live = scale.Conns(topo, net, CD_N - CD_SILENT, srcs=(scale.LIVE,), port=5432)
    quiet = scale.Conns(topo, net, CD_SILENT, srcs=(scale.SILENT,), port=5433)
    for c in (live, quiet):
        c.listen()
    t_up = max(live.connect(), quiet.connect())
    scale.silence(topo, net["cli"])  # the silenced few are silent from the start
    kern, _ = scale.diag(net["srv"])
    check(len(kern) == CD_N, "%d established sockets on the server side, expected %d" % (
        len(kern), CD_N))
    if ctx.netcheck:
        return "%d connections (%d from %s, silenced); %s" % (
            CD_N, CD_SILENT, scale.SILENT, scale.check_silence(net["cli"]))
    # Start when every connection is past its idle time: all fall due at start, at once
    # (learning SYNs, challenge ACKs, probes and replies in one burst).
    while time.time() < t_up + CD_IDLE + 0.3:
        time.sleep(0.05)
    rules = [("burst", {"local": "*:5432-5433", "remote": "*", "idle": "%gs" % CD_IDLE,
                        "interval": "%gs" % CD_INTERVAL, "probes": CD_PROBES})]
    extra = {"capture_buffer": "64k", "max_probe_rate": "1000000", "summary_interval": "1s",
             "state_interval": "0"}
    t0 = time.time()
    kap = ctx.kap = topo.kaprobed(ctx.binary, net["srv"],
                                  conf_text("{log}", rules, log_level="debug", extra=extra))
    figures_details(ctx, None, kap)
    log = kap.log
    live_keys = {k for k in kern if k[1].startswith(scale.LIVE + ":")}
    quiet_keys = {k for k in kern if k[1].startswith(scale.SILENT + ":")}
    # After the burst, each live peer sends one byte, spread over CD_SPREAD s: their next
    # rounds no longer fall due together, so the capture can keep up and the real verdicts
    # can come (in lockstep every round would be another burst and another drop).
    while time.time() < t0 + CD_IDLE and kap.proc.alive():  # the burst, or its first drops
        log.poll()
        if any(e.get("event") == "summary" and e.get("pcap_drops", "0") != "0"
               for e in log.events):
            break
        time.sleep(0.1)
    live.spread(CD_SPREAD)
    deadline = t0 + CD_TIMEOUT
    alive, dead, seen = set(), {}, 0
    while True:
        log.poll()
        for e in log.events[seen:]:
            if e.get("event") == "alive":
                alive.add((e["local"], e["remote"]))
            elif e.get("event") == "dead":
                dead.setdefault((e["local"], e["remote"]), e)
        seen = len(log.events)
        if live_keys <= alive and quiet_keys <= set(dead):
            break
        if time.time() > deadline or not kap.proc.alive():
            break
        time.sleep(0.25)
    # The state file's word for the live ones without an alive line (alive lines at debug
    # are the documented policy, the state file is the fallback).
    missing = live_keys - alive
    if missing and kap.proc.alive():
        path = os.path.join(topo.tmp, "state.json")
        before = os.path.getmtime(path) if os.path.exists(path) else 0
        os.kill(kap.proc.pid, signal.SIGUSR2)
        t = time.time() + 3
        while time.time() < t and (not os.path.exists(path) or os.path.getmtime(path) == before):
            time.sleep(0.05)
        try:
            with open(path) as f:
                doc = json.load(f)
            st = {(c["local"], c["remote"]): c.get("last_verdict") for c in doc["connections"]}
            missing = {k for k in missing if st.get(k) != "alive"}
        except (OSError, ValueError, KeyError):
            pass
    st = kap.stop()
    tot = scale.totals(kap)
    log.poll()
    summ = [e for e in log.events if e.get("event") == "summary"]
    drops = tot.get("pcap_drops") or (summ[-1].get("pcap_drops") if summ else None)
    unc = [e for e in log.events if e.get("event") == "uncertain"]
    by_conn = {}
    for e in log.events:
        if e.get("event") in ("probe", "alive", "dead", "reset", "unreachable"):
            by_conn.setdefault((e.get("local"), e.get("remote")), []).append(e)
    rp = reprobes(by_conn)
    retries = sum(1 for e in log.events if e.get("event") == "learn" and
                  (e.get("result") == "retry" or
                   e.get("result") == "asked" and e.get("n") not in (None, "1")))
    retries_ctr = tot.get("learn_retries") or (summ[-1].get("learn_retries") if summ else None)
    blocked = [e for e in log.events if e.get("event") == "learn" and e.get("result") == "blocked"]
    false_dead = [e for k, e in dead.items() if k in live_keys]
    check(drops is not None, "kaprobed reported no pcap_drops= (summary or totals)")
    check(int(drops) > 0, "no capture drop happened (pcap_drops=0 with capture_buffer = 64k "
          "and %d connections due at once): the case proves nothing; enlarge the burst" % CD_N)
    bad = []
    if false_dead:
        bad.append("%d live peers declared dead, first: %s" % (len(false_dead),
                                                               false_dead[0].raw))
    malformed = [e for e in unc if e.get("reason") != "capture-drops" or "probes" not in e]
    if malformed:
        bad.append("uncertain lines without reason=capture-drops probes=N: %s" % malformed[0].raw)
    evidence = len(unc) + rp + retries + int(float(retries_ctr or 0))
    if not evidence:
        bad.append("%s pcap drops, but no uncertain line, no re-probed round and no learning "
                   "retry: were the rounds during the drops judged as if nothing was lost?"
                   % drops)
    if missing:
        bad.append("%d of %d live peers never alive (neither an alive line nor last_verdict "
                   "alive in the state file), e.g. %s %s" % (len(missing), len(live_keys),
                                                            *sorted(missing)[0]))
    not_dead = quiet_keys - set(dead)
    if not_dead:
        bad.append("%d of %d silenced peers not dead within %.0f s, e.g. %s %s" % (
            len(not_dead), len(quiet_keys), CD_TIMEOUT, *sorted(not_dead)[0]))
    if blocked:
        bad.append("%d learn result=blocked (nothing blocks the SYNs here: a lost challenge "
                   "ACK must be asked again), first: %s" % (len(blocked), blocked[0].raw))
    if log.errors():
        bad.append("level=error lines: %s" % log.errors()[0].raw)
    if st != 0:
        bad.append("kaprobed exited with status %s after SIGTERM" % st)
    check(not bad, "; ".join(bad))
    last = max(e.t for e in dead.values())
    return "%s pcap drops; 0 false dead; %d uncertain lines, %d re-probed rounds, %d learn retry " \
           "lines (learn_retries=%s); %d/%d live alive, %d/%d silenced dead (last %.1f s after " \
           "start)" % (drops, len(unc), rp, retries, retries_ctr or "n/a",
                       len(live_keys) - len(missing), len(live_keys), len(quiet_keys),
                       len(quiet_keys), last - t0)


# Run alone by run.py -j (they load the machine: bulk transfers, floods, many connections,
# a booted systemd), after the cases that run side by side.
SERIAL = {"capture_drops", "scale_disc", "scale_cap"}

CASES = [
    ("handshake_only", case_handshake_only),
    ("capture_drops", case_capture_drops),
    ("scale_disc", case_scale_disc),
    ("scale_cap", case_scale_cap),
]

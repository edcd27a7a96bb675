"""kaprobe integration cases for issue 10: stalled connections (stall_timeout, on_stall).

stall_retransmit*: the server's data goes unanswered (the client's namespace drops
everything): dead reason=stalled stall_timeout after the first unacknowledged segment, and
on_stall = close makes the server program's read fail at once, while a twin connection that
no rule matches is still retransmitting (the kernel would give up only after about 924 s,
tcp_retries2 = 15).
stall_zero_window: the client stops reading; the server fills the window: stalled
reason=zero-window after the timeout, unstalled when it reads again, every byte delivered.
stall_slow_alive: a reader that drains its small window every 2 s, and a bulk transfer that
loses every fifth segment: neither is stalled (progress restarts the clock).
stall_idle: stall_timeout set, an idle connection is probed and judged as without it.
"""

import os
import signal
import time

from netns import check, conf_text, run, two_hosts
from test_cases import (DEAD_AFTER, IDLE, check_dead_timing, connect, fmt_events, no_errors,
                        nft_drop_all, only_events, EVENT_FIELDS)
from test_actions import action_line, err_after
from test_state import find_conn, state_path, status_table, wait_state

STALL = 3.0          # stall_timeout of these cases, s
STALL_SLACK = 0.1    # the tolerance on the verdict's time
FIELDS = dict(EVENT_FIELDS)
FIELDS.update({"stalled": ("reason", "since"), "unstalled": ("since",),
               "action": ("action", "result"), "uncertain": ("reason",),
               "learn": ("result",)})


def stall_rule(port=5432, name="svc", **kw):
    kv = {"local": "*:%d" % port, "remote": "*", "idle": "10s", "interval": "1s",
          "probes": 3, "stall_timeout": "%gs" % STALL}
    kv.update(kw)
    return (name, kv)


def start(ctx, net, rules):
    extra = {"metrics_file": "{tmp}/kaprobe.prom", "metrics_interval": "1s",
             "state_interval": "0"}
    ctx.kap = ctx.topo.kaprobed(ctx.binary, net["local"], conf_text("{log}", rules, extra=extra))
    return ctx.kap


def shows_stall(ctx, kap, c, kind, metric_lines):
    """The state file (written on SIGUSR2), `kaprobed -s` and the metrics file show the
    connection's stall of this kind."""
    os.kill(kap.proc.pid, signal.SIGUSR2)
    doc = wait_state(state_path(ctx), lambda d: (find_conn(d, c) or {}).get("stall") == kind,
                     3.0, "stall=%s for %s" % (kind, c.local))
    rc, out, err = status_table(ctx, kap)
    check(rc == 0 and ("stall %s" % kind) in out, "kaprobed -s does not show stall %s (rc "
          "%d):\n%s%s" % (kind, rc, out, err))
    path = os.path.join(ctx.topo.tmp, "kaprobe.prom")
    deadline = time.monotonic() + 20
    while True:
        text = open(path).read() if os.path.exists(path) else ""
        missing = [m for m in metric_lines if m not in text.splitlines()]
        if not missing:
            return find_conn(doc, c)
        check(time.monotonic() < deadline, "metrics file lacks %s:\n%s" % (missing, text))
        time.sleep(0.2)


def no_verdict(log, c, kinds=("dead", "stalled", "reset", "uncertain")):
    bad = [e for e in c.events(log) if e.get("event") in kinds]
    check(not bad, "unexpected lines for %s:\n%s" % (c.local, fmt_events(bad)))


def delivered(c, sent, timeout=30):
    """Every byte the server sent reached the client program, exactly."""
    r = c.cli.wait_rx(sent, timeout)
    check(r["bad"] == "0", "client received bytes that differ from the pattern: %s" % r["line"])
    st = c.srv.stats()
    check(st["error"] == "none", "server connection broke: %s" % st["line"])


def sent_bg(c, n, timeout=30):
    """The server sends n bytes from a thread; waits for its ev=sent line."""
    start = len(c.srv.proc.out)
    c.srv.cmd("send_bg %d" % n)
    c.srv.tx += n
    return start


def wait_sent(c, start, timeout=30):
    c.srv.proc.wait_line(lambda l: l.startswith("ev=sent") or l.startswith("ev=send_error"),
                         timeout, "server's send_bg to finish", start=start)


# --------------------------------------------------------------------------------------

def retransmit(ctx, fam):
    net = two_hosts(ctx.topo)
    kap = start(ctx, net, [stall_rule(on_stall="close")])
    log = kap.log
    c = connect(ctx, net, fam)
    twin = connect(ctx, net, fam, port=5433, tag="-twin")  # no rule: the kernel alone
    c.exchange()
    twin.exchange()
    log.wait_conn(c.local, c.remote, "track", 3)
    nft_drop_all(ctx, net["peer"])
    t_sent = float(c.srv.send(1000)["t"])  # the first unacknowledged segment
    twin.srv.send(1000)
    d = log.wait_conn(c.local, c.remote, "dead", STALL + 3)
    check(d.get("reason") == "stalled", "dead line reason is not stalled: %s" % d.raw)
    took = d.t - t_sent
    check(abs(took - STALL) <= STALL_SLACK,
          "dead reason=stalled %.3f s after the first unacknowledged segment, expected "
          "%.1f s (+-%.1f): %s" % (took, STALL, STALL_SLACK, d.raw))
    check(d.get("unacked") == "1000", "dead line unacked is not 1000: %s" % d.raw)
    check(int(d["retransmits"]) >= 2, "dead line counts < 2 retransmissions: %s" % d.raw)
    check(abs(d.num("since") - STALL) <= STALL_SLACK, "dead line since is not ~%g: %s" % (
        STALL, d.raw))
    a = action_line(log, c, "close", after=d)
    check(a.get("result") == "ok", "close action failed: %s" % a.raw)
    _, err_took = err_after(c.srv, d, "stall close")
    if fam == 4:
        shows_stall(ctx, kap, c, "retransmit", ['kaprobe_stalls_total{kind="retransmit"} 1'])
    info = twin.srv.cmd("info")
    st = twin.srv.stats()
    check(info["state"] == "1" and int(info["unacked"]) >= 1 and int(info["retransmits"]) >= 1
          and st["error"] == "none",
          "the twin connection (no kaprobed rule) should still be retransmitting: %s / %s" % (
              info["line"], st["line"]))
    probes = [e for e in c.events(log) if e.get("event") in ("idle", "probe")]
    check(not probes, "keepalive probes while data was in flight:\n%s" % fmt_events(probes))
    no_errors(ctx, FIELDS)
    kap.stop_ok()
    return ("dead reason=stalled %.3f s after the first unacked segment (retransmits=%s), "
            "read failed %.3f s later; twin still retransmitting (retransmits=%s, kernel "
            "gives up after ~924 s)" % (took, d["retransmits"], err_took, info["retransmits"]))


def case_stall_retransmit(ctx):
    return retransmit(ctx, 4)


def case_stall_retransmit6(ctx):
    return retransmit(ctx, 6)


def case_stall_zero_window(ctx):
    net = two_hosts(ctx.topo)
    kap = start(ctx, net, [stall_rule()])
    log = kap.log
    c = connect(ctx, net, 4, rcvbuf=4096)
    c.exchange()
    log.wait_conn(c.local, c.remote, "track", 3)
    c.cli.cmd("pause")
    t_pause = time.time()
    mark = sent_bg(c, 1000000)
    s = log.wait_conn(c.local, c.remote, "stalled", STALL + 5)
    check(s.get("reason") == "zero-window", "stalled line reason is not zero-window: %s" % s.raw)
    check(STALL - 0.001 <= s.num("since") <= STALL + 1.0,
          "stalled line since=%s, expected about %g: %s" % (s["since"], STALL, s.raw))
    check(s.t - t_pause >= STALL, "stalled %.3f s after the reader paused (< %g)" % (
        s.t - t_pause, STALL))
    no_verdict(log, c, ("dead", "reset", "close"))
    shows_stall(ctx, kap, c, "zero-window", ['kaprobe_stalls_total{kind="zero-window"} 1',
                                              "kaprobe_stalled_connections 1"])
    c.cli.cmd("resume")
    t_resume = time.time()
    u = log.wait_conn(c.local, c.remote, "unstalled", 5, after=s)
    check(u.t >= t_resume - 0.05, "unstalled before the reader resumed: %s" % u.raw)
    wait_sent(c, mark)
    delivered(c, c.srv.tx)
    c.exchange()
    no_verdict(log, c, ("dead", "reset", "close", "uncertain"))
    no_errors(ctx, FIELDS)
    kap.stop_ok()
    return "stalled reason=zero-window since=%s (%.3f s after pause), unstalled %.3f s after " \
           "resume, %d bytes delivered exactly" % (s["since"], s.t - t_pause, u.t - t_resume,
                                                   c.srv.tx)


def nft_lose_every_fifth(ctx, ns, port):
    """In the client's namespace: every fifth segment from the server port is lost (20 %,
    deterministic: never two in a row, so no retransmission is lost twice)."""
    ctx.topo.nft(ns, "\n".join([
        "add table inet kptloss",
        "add chain inet kptloss in_c { type filter hook input priority -10; policy accept; }",
        "add rule inet kptloss in_c tcp sport %d numgen inc mod 5 == 0 counter drop" % port,
        ""]))


def nft_lost(ns):
    out = run(["nft", "list", "table", "inet", "kptloss"], ns=ns).stdout
    for w, n in zip(out.split(), out.split()[1:]):
        if w == "packets":
            return int(n)
    return 0


def case_stall_slow_alive(ctx):
    net = two_hosts(ctx.topo)
    kap = start(ctx, net, [stall_rule(), stall_rule(port=5433, name="bulk")])
    log = kap.log
    slow = connect(ctx, net, 4, rcvbuf=4096)
    bulk = connect(ctx, net, 4, port=5433, tag="-bulk")
    slow.exchange()
    bulk.exchange()
    log.wait_conn(slow.local, slow.remote, "track", 3)
    # The slow reader drains its small window every 2 s: the window shuts, then opens.
    slow.cli.cmd("trickle 65536 2000")
    nft_lose_every_fifth(ctx, net["peer"], 5433)
    mark_s = sent_bg(slow, 30000)
    mark_b = sent_bg(bulk, 8000000)
    wait_sent(bulk, mark_b, 60)
    delivered(bulk, bulk.srv.tx, 60)
    wait_sent(slow, mark_s, 60)
    delivered(slow, slow.srv.tx, 60)
    lost = nft_lost(net["peer"])
    check(lost >= 10, "the lossy path lost only %d segments" % lost)
    for c in (slow, bulk):
        no_verdict(log, c)
    no_errors(ctx, FIELDS)
    kap.stop_ok()
    return "slow reader (%d B, window shut 2 s at a time) and bulk transfer (%d B, %d " \
           "segments lost) never stalled" % (slow.srv.tx, bulk.srv.tx, lost)


def case_stall_idle(ctx):
    """stall_timeout shorter than idle: idle connections are probed and judged as before."""
    net = two_hosts(ctx.topo)
    rule = stall_rule(idle="1s", interval="500ms", stall_timeout="500ms")
    kap = start(ctx, net, [rule])
    log = kap.log
    c = connect(ctx, net, 4)
    t_last = c.exchange()
    idle = log.wait_conn(c.local, c.remote, "idle", IDLE + 3)
    gap = idle.t - t_last
    check(IDLE * 0.9 <= gap <= IDLE * 1.1 + 0.05,
          "first idle %.3f s after the last segment, expected %.1f: %s" % (gap, IDLE, idle.raw))
    log.wait_conn(c.local, c.remote, "alive", DEAD_AFTER + 2, after=idle)
    t_last = c.exchange()
    nft_drop_all(ctx, net["peer"])
    d = log.wait_conn(c.local, c.remote, "dead", DEAD_AFTER + 3)
    check(d.get("reason") == "no-reply", "dead reason is not no-reply: %s" % d.raw)
    took = check_dead_timing(d, t_last, DEAD_AFTER, "stall_idle")
    only_events(c.events(log), ("track", "idle", "probe", "reply", "alive", "dead"),
                "stall_idle")
    no_errors(ctx, FIELDS)
    kap.stop_ok()
    return "idle %.3f s, dead reason=no-reply %.3f s after the last segment, as without " \
           "stall_timeout" % (gap, took)


def case_stall_discovered(ctx):
    """A connection already stalled when kaprobed starts: its numbers cannot be learnt (data
    in flight, a silent peer), so the kernel's tcp_info in each dump decides: dead
    reason=stalled no sooner than stall_timeout after the first unacked segment, and at most
    one discover_interval later."""
    net = two_hosts(ctx.topo)
    c = connect(ctx, net, 4)
    c.exchange()
    nft_drop_all(ctx, net["peer"])
    t_sent = float(c.srv.send(1000)["t"])
    time.sleep(0.5)  # (the connection must be stalled before kaprobed exists)
    kap = ctx.topo.kaprobed(ctx.binary, net["local"], conf_text(
        "{log}", [stall_rule()], extra={"discover_interval": "1s"}))
    ctx.kap = kap
    log = kap.log
    d = log.wait_conn(c.local, c.remote, "dead", STALL + 4)
    took = d.t - t_sent
    check(d.get("reason") == "stalled", "dead line reason is not stalled: %s" % d.raw)
    check(STALL - 0.01 <= took <= STALL + 1.0 + 0.3,
          "dead reason=stalled %.3f s after the first unacked segment, expected %g..%g s "
          "(one discover_interval): %s" % (took, STALL, STALL + 1.3, d.raw))
    check(d.num("since") >= STALL, "dead line since < %g: %s" % (STALL, d.raw))
    no_errors(ctx, FIELDS)
    kap.stop_ok()
    return "found stalled by discovery: dead reason=stalled %.3f s after the first unacked " \
           "segment (since=%s, retransmits=%s)" % (took, d["since"], d["retransmits"])


# Run alone by run.py -j (they load the machine: bulk transfers, floods, many connections,
# a booted systemd), after the cases that run side by side.
SERIAL = {"stall_slow_alive"}

CASES = [
    ("stall_retransmit", case_stall_retransmit),
    ("stall_retransmit6", case_stall_retransmit6),
    ("stall_zero_window", case_stall_zero_window),
    ("stall_slow_alive", case_stall_slow_alive),
    ("stall_idle", case_stall_idle),
    ("stall_discovered", case_stall_discovered),
]

"""Discovery cases (issue 4): connections that exist before kaprobed starts, numbers
learned through a SYN into our own stack (challenge ACK), restart without a gap,
sockets that vanish, SO_KEEPALIVE sockets, the table cap, new local addresses.

Times are checked against the kernel's own clock of the connection: the local server
program reads tcp_info (tcppeer `info`: last_data_recv, last_ack_recv, in ms) and the
moment of the last segment from the peer is t - min(last_data_recv, last_ack_recv),
which is exactly what kaprobed is meant to read from the socket list. With ctx.netcheck
each case checks only its network side (no kaprobed): the drops, the challenge ACK, the
kernel's view, the socket states.
"""

import os
import re
import signal
import sys
import time

from netns import (HERE, TcpPeer, check, conf_text, endpoint, fail, run, two_hosts)
from test_cases import (EVENT_FIELDS, VERDICTS, Conn, connect, fmt_events, idle_until,
                        nft_drop_all, nft_drop_port, no_errors, only_events)

WIRE = os.path.join(HERE, "wire.py")
HOLDCONNS = os.path.join(HERE, "holdconns.py")

# Schedule of the discovery cases: first probe 2 s after the last segment received (so
# that the SYN asking for the numbers, 1 s before, comes after kaprobed's start), then one
# every 500 ms; dead 3.5 s after the last segment.
D_IDLE, D_INTERVAL, D_PROBES = 2.0, 0.5, 3
D_DEAD = D_IDLE + D_INTERVAL * D_PROBES
PRE_IDLE = 0.7  # how long a connection sits idle before kaprobed starts
TOL = 0.100     # the tolerance for the kernel's times
DISC = 1.0      # discover_interval of the cases that watch the periodic dump

# The core events plus issue 4's learn and untrack, each with its fields.
DISC_EVENT_FIELDS = dict(EVENT_FIELDS, learn=("result",), untrack=("reason",))


# --------------------------------------------------------------------------------------
# Helpers

def rule(port="5432", idle=D_IDLE, interval=D_INTERVAL, probes=D_PROBES, name="svc"):
    return (name, {"local": "*:%s" % port, "remote": "*", "idle": "%gs" % idle,
                   "interval": "%gms" % (interval * 1000), "probes": probes})


def start(ctx, ns, rules, extra=None, name="kaprobed", log_level="debug"):
    """Starts kaprobed; an earlier instance of the case stays in the failure report."""
    if ctx.kap is not None:
        older = ctx.__dict__.setdefault("older_kaps", [])
        older.append(ctx.kap)
        base = type(ctx).details

        def details():
            return "\n".join(["(earlier instance %s)\n%s" % (k.proc.name, k.report())
                              for k in older] + [base(ctx)])
        ctx.details = details
    ctx.kap = ctx.topo.kaprobed(ctx.binary, ns, conf_text("{log}", rules, log_level=log_level,
                                                          extra=extra), name=name)
    return ctx.kap


class Wire(TcpPeer):
    """wire.py in a namespace, recording the TCP segments seen on one interface."""

    def __init__(self, ctx, ns, name, iface="eth0"):
        self.name, self.ns, self.tx = name, ns, 0
        self.proc = ctx.topo.spawn(ns, [sys.executable, "-u", WIRE, name], name)
        ctx.peers.append(self)
        self.cmd("sniff %s" % iface)

    def segs(self, src, dst, since):
        """Segments src -> dst (endpoints as the status log writes them) since a time."""
        (sa, sp), (da, dp) = split_ep(src), split_ep(dst)
        r = self.cmd("segs %s %d %s %d %.6f" % (sa, sp, da, dp, since))
        out = []
        for i in range(int(r["n"])):
            d = dict(kv.split("=", 1) for kv in r["s%d" % i].split())
            out.append(d)
        return out

    def wait_seg(self, src, dst, since, timeout):
        (sa, sp), (da, dp) = split_ep(src), split_ep(dst)
        r = self.cmd("wait_seg %s %d %s %d %.6f %g" % (sa, sp, da, dp, since, timeout),
                     timeout, expect_ok=False)
        return r if r["ok"] else None

    def syn(self, src, dst, seq=0x12345678):
        (sa, sp), (da, dp) = split_ep(src), split_ep(dst)
        return self.cmd("syn %s %d %s %d %d" % (sa, sp, da, dp, seq))


def split_ep(ep):
    m = re.fullmatch(r"\[?([0-9a-fA-F:.]+)\]?:(\d+)", ep)
    if not m:
        fail("not an endpoint: %r" % ep)
    return m.group(1), int(m.group(2))


def kernel_last(c):
    """When our kernel last received a segment of connection c, from its tcp_info (read by
    the local program that owns the socket, so the moment of reading is exact)."""
    r = c.srv.cmd("info")
    ms = min(int(r["last_data_recv"]), int(r["last_ack_recv"]))
    return float(r["t"]) - ms / 1000.0


def ss_lines(ns, *filt, opts="-tanoH"):
    return run(["ss", opts] + list(filt), ns=ns).stdout.splitlines()


def ss_state(ns, local, remote):
    """ss's state of the local socket local <-> remote, or None when not listed."""
    for l in ss_lines(ns):
        f = l.split()
        if len(f) >= 5 and f[3] == local and f[4] == remote:
            return f[0]
    return None


def challenge_ack(w, c, since=None):
    """Netcheck of the learning path: a SYN injected into our stack as if from the peer
    draws our kernel's challenge ACK toward the peer (seen on the local link). Returns its
    fields, or None when none came within 1 s."""
    since = time.time() if since is None else since
    w.syn(c.remote, c.local)
    return w.wait_seg(c.local, c.remote, since, 1.0)


def well_formed(ctx):
    """No level=error line; every line has ts, event, rule, local, remote first, then its
    event's fields (issue 4's learn and untrack included)."""
    no_errors(ctx, DISC_EVENT_FIELDS)


def near(t, expect, what, ev, tol=TOL):
    check(abs(t - expect) <= tol, "%s at %+.3f s from the kernel's time (tolerance %d ms): %s"
          % (what, t - expect, tol * 1000, ev.raw))
    return t - expect


def wait_track(log, c, timeout, source):
    tr = log.wait_conn(c.local, c.remote, "track", timeout)
    check(tr.get("source") == source, "expected a track line with source=%s: %s" % (
        source, tr.raw))
    return tr


def of(evs, event, **kw):
    return [e for e in evs if e.get("event") == event and
            all(e.get(k) == v for k, v in kw.items())]


def data_intact(c):
    """The connection still carries data both ways, byte for byte."""
    c.exchange(1000, 2000)
    s, k = c.srv.stats(), c.cli.stats()
    check(int(s["rx"]) == c.cli.tx and int(k["rx"]) == c.srv.tx and s["bad"] == "0"
          and k["bad"] == "0" and s["error"] == "none" and k["error"] == "none",
          "connection damaged: server %s, client %s" % (s["line"], k["line"]))


def wire_probes_now(w, c, since, after=0.0):
    """Probes of connection c seen by w (a sniffer that saw all of c's data from since):
    pure ACKs of at most one byte with SEQ = SND.UNA - 1, where SND.UNA is the end of our
    last data segment (the peer acknowledged it all). The challenge ACK (SEQ = SND.NXT)
    and guessed numbers do not qualify. Returns (probes, all our segments)."""
    ours = w.segs(c.local, c.remote, since)
    data = [s for s in ours if int(s["len"]) > 1]
    if not data:
        return [], ours
    una = (int(data[-1]["seq"]) + int(data[-1]["len"])) % 2 ** 32
    probes = [s for s in ours if s["flags"] == "A" and int(s["len"]) <= 1
              and int(s["seq"]) == (una - 1) % 2 ** 32 and float(s["at"]) >= after]
    return probes, ours


def wire_probes(w, c, since, after=0.0, timeout=1.0):
    """wire_probes_now, polled until a probe shows or timeout s pass: the status log line
    can be read before the sniffer (another process) has recorded the packet."""
    deadline = time.monotonic() + timeout
    while True:
        probes, ours = wire_probes_now(w, c, since, after)
        if probes or time.monotonic() >= deadline:
            return probes, ours
        time.sleep(0.02)


def nft_invalid_drop(ctx, ns):
    """A common host firewall: drop what conntrack calls invalid on input."""
    ctx.topo.nft(ns, "\n".join([
        "add table inet kptinv",
        "add chain inet kptinv in_c { type filter hook input priority 0; policy accept; }",
        "add rule inet kptinv in_c ct state invalid drop",
        ""]))


# --------------------------------------------------------------------------------------
# 1 / 8: a connection idle before kaprobed starts: discovered, first probe at the
# kernel's time, alive

def disc_up(ctx, fam):
    net = two_hosts(ctx.topo)
    c = connect(ctx, net, fam)
    t_last = c.exchange()
    if ctx.netcheck:
        w = Wire(ctx, net["local"], "wire-local")
        idle_until(t_last + PRE_IDLE)
        k0 = kernel_last(c)
        check(abs(k0 - t_last) <= 0.02, "kernel's last received %+.3f s from the harness's "
              "(the reference clock is wrong)" % (k0 - t_last))
        ack = challenge_ack(w, c)
        check(ack is not None, "no challenge ACK from our kernel to a SYN injected as if from "
              "the peer (learning cannot work here)")
        check(ack["flags"] == "A" and ack["len"] == "0",
              "the answer to the injected SYN is not a pure ACK: %s" % ack["line"])
        k1 = kernel_last(c)
        check(abs(k1 - k0) <= 0.01, "the injected SYN moved the kernel's last-received time "
              "by %.3f s" % (k1 - k0))
        data_intact(c)
        return "kernel clock = harness clock %+.3f s; injected SYN -> challenge ACK (seq=%s " \
               "ack=%s), kernel idle clock untouched, data intact" % (
                   k0 - t_last, ack["seq"], ack["ack"])
    idle_until(t_last + PRE_IDLE)
    k = kernel_last(c)
    t0 = time.time()
    kap = start(ctx, net["local"], [rule()])
    log = kap.log
    tr = wait_track(log, c, 2, "discovered")
    check(tr.t - t0 < 1.0, "tracked %.3f s after start (expected at start): %s" % (
        tr.t - t0, tr.raw))
    idle = log.wait_conn(c.local, c.remote, "idle", D_IDLE + 2)
    p1 = log.wait_conn(c.local, c.remote, "probe", 2, extra=lambda e: e.get("n") == "1")
    d_idle = near(idle.t, k + D_IDLE, "idle line", idle)
    d_probe = near(p1.t, k + D_IDLE, "first probe", p1)
    check(abs(idle.num("idle") - D_IDLE) <= TOL, "idle line: idle=%s, expected %.1f: %s" % (
        idle["idle"], D_IDLE, idle.raw))
    alive = log.wait_conn(c.local, c.remote, "alive", D_INTERVAL * D_PROBES + 1, after=idle)
    evs = c.events(log)
    asked = [e for e in of(evs, "learn", result="asked") if e.idx < p1.idx]
    check(asked, "no event=learn result=asked before the first probe:\n%s" % fmt_events(evs))
    check(not of(evs, "learn", result="blocked"), "learning reported blocked:\n%s"
          % fmt_events(evs))
    check(not [e for e in evs if e["event"] in ("dead", "reset", "unreachable")],
          "verdicts other than alive:\n%s" % fmt_events(evs))
    data_intact(c)
    only_events(c.events(log), ("track", "learn", "idle", "probe", "reply", "alive"),
                "discovered alive")
    well_formed(ctx)
    kap.stop_ok()
    return "source=discovered; idle %+.0f ms and probe n=1 %+.0f ms from kernel last-received " \
           "+ %gs; learn asked %.3f s before; alive rtt=%s" % (
               d_idle * 1000, d_probe * 1000, D_IDLE, p1.t - asked[0].t, alive["rtt"])


def case_disc_up(ctx):
    return disc_up(ctx, 4)


def case_disc_up6(ctx):
    return disc_up(ctx, 6)


# --------------------------------------------------------------------------------------
# 2 / 8: the peer vanished before kaprobed started: dead at the kernel's time

def disc_down(ctx, fam):
    net = two_hosts(ctx.topo)
    c = connect(ctx, net, fam)
    t_last = c.exchange()
    nft_drop_all(ctx, net["peer"])
    if ctx.netcheck:
        w = Wire(ctx, net["local"], "wire-local")
        idle_until(t_last + PRE_IDLE)
        k = kernel_last(c)
        check(abs(k - t_last) <= 0.02, "kernel's last received %+.3f s from the harness's"
              % (k - t_last))
        ack = challenge_ack(w, c)
        check(ack is not None and ack["flags"] == "A",
              "no challenge ACK leaves toward the silenced peer: %s" % (ack and ack["line"]))
        c.srv.send(10)
        r = c.cli.wait_rx(c.srv.tx, 1.0, expect_ok=False)
        check(not r["ok"], "client still received data through the drop: %s" % r["line"])
        return "challenge ACK leaves toward the dropped peer; the peer hears nothing"
    idle_until(t_last + PRE_IDLE)
    k = kernel_last(c)
    kap = start(ctx, net["local"], [rule()])
    log = kap.log
    wait_track(log, c, 2, "discovered")
    idle = log.wait_conn(c.local, c.remote, "idle", D_IDLE + 2)
    d = log.wait_conn(c.local, c.remote, "dead", D_DEAD + 2)
    near(idle.t, k + D_IDLE, "idle line", idle)
    dd = near(d.t, k + D_DEAD, "dead line", d)
    check(d.get("reason") == "no-reply", "dead line reason is not no-reply: %s" % d.raw)
    check(d.get("probes") == str(D_PROBES), "dead line probes is not %d: %s" % (D_PROBES,
                                                                               d.raw))
    check(abs(d.num("idle") - D_DEAD) <= TOL, "dead line idle=%s, expected %.1f: %s" % (
        d["idle"], D_DEAD, d.raw))
    evs = c.events(log)
    probes = of(evs, "probe")
    check(len(probes) == D_PROBES, "expected %d probe lines, got %d:\n%s" % (
        D_PROBES, len(probes), fmt_events(evs)))
    only_events(evs, ("track", "learn", "idle", "probe", "dead"), "discovered dead")
    well_formed(ctx)
    kap.stop_ok()
    return "source=discovered; dead reason=no-reply probes=%d %+.0f ms from kernel " \
           "last-received + %.1f s" % (D_PROBES, dd * 1000, D_DEAD)


def case_disc_down(ctx):
    return disc_down(ctx, 4)


def case_disc_down6(ctx):
    return disc_down(ctx, 6)


# --------------------------------------------------------------------------------------
# 3: kill -9 in the middle of probing, start again: the verdicts keep their times

R_IDLE, R_INTERVAL, R_PROBES = 2.0, 1.0, 3
R_DEAD = R_IDLE + R_INTERVAL * R_PROBES


def case_disc_restart(ctx):
    net = two_hosts(ctx.topo)
    rules = [rule("5432-5433", R_IDLE, R_INTERVAL, R_PROBES)]
    if not ctx.netcheck:
        start(ctx, net["local"], rules, name="kaprobed1")
    a = connect(ctx, net, 4, 5432, "-a")  # its peer goes silent
    b = connect(ctx, net, 4, 5433, "-b")  # its peer stays
    ta = a.exchange()
    b.exchange()
    nft_drop_port(ctx, net["peer"], 5432)
    if ctx.netcheck:
        w = Wire(ctx, net["local"], "wire-local")
        ka = kernel_last(a)
        check(challenge_ack(w, a) is not None, "no challenge ACK for the silenced connection")
        check(challenge_ack(w, b) is not None, "no challenge ACK for the living connection")
        check(abs(kernel_last(a) - ka) <= 0.01, "the injected SYN moved the kernel's clock")
        a.srv.send(10)
        r = a.cli.wait_rx(a.srv.tx, 1.0, expect_ok=False)
        check(not r["ok"], "port 5432 not silenced: %s" % r["line"])
        data_intact(b)
        return "port 5432 silenced, port 5433 intact; re-asking the numbers leaves the " \
               "kernel's clock alone (ka=%+.3f s)" % (ka - ta)
    old = ctx.kap
    ka = kernel_last(a)
    # Kill after A's second probe: in the middle of its round, B already found alive.
    p2 = old.log.wait_conn(a.local, a.remote, "probe", R_IDLE + R_INTERVAL + 2,
                           extra=lambda e: e.get("n") == "2")
    old_b = old.log.wait_conn(b.local, b.remote, "alive", 1)
    old.proc.stop(signal.SIGKILL)
    t_kill = time.time()
    check(not of(old.log.conn(a.local, a.remote), "dead"),
          "inconclusive: A was already dead before the kill")
    kb = kernel_last(b)
    new = start(ctx, net["local"], rules, name="kaprobed2")
    log = new.log
    t_start = time.time()
    wait_track(log, a, 2, "discovered")
    wait_track(log, b, 2, "discovered")
    d = log.wait_conn(a.local, a.remote, "dead", R_DEAD + 2)
    check(abs(kernel_last(a) - ka) <= 0.01, "A's kernel clock moved (its peer is not silent?)")
    dd = near(d.t, ka + R_DEAD, "A's dead line after the restart", d)
    check(d.get("reason") == "no-reply", "dead line reason is not no-reply: %s" % d.raw)
    check(d.get("probes") == str(R_PROBES), "dead line probes is not %d (the probes sent before "
          "the restart count): %s" % (R_PROBES, d.raw))
    evs_a = a.events(log)
    check(of(evs_a, "probe"), "A declared dead without a probe sent after the restart:\n%s"
          % fmt_events(evs_a))
    ib = log.wait_conn(b.local, b.remote, "idle", R_IDLE + 2)
    db = near(ib.t, kb + R_IDLE, "B's first idle line after the restart", ib)
    check(abs(kb - old_b.t) <= 0.05, "B's kernel last-received is %.3f s from the old alive "
          "line (harness assumption)" % (kb - old_b.t))
    log.wait_conn(b.local, b.remote, "alive", R_INTERVAL * R_PROBES + 1, after=ib)
    only_events(evs_a, ("track", "learn", "idle", "probe", "dead"), "restart, A")
    only_events(b.events(log), ("track", "learn", "idle", "probe", "reply", "alive"),
                "restart, B")
    well_formed(ctx)
    new.stop_ok()
    return "killed %.3f s after A's probe n=2, restarted in %.3f s; A dead %+.0f ms from " \
           "kernel last-received + %.0f s; B's next round %+.0f ms from its kernel time" % (
               t_kill - p2.t, t_start - t_kill, dd * 1000, R_DEAD, db * 1000)


# --------------------------------------------------------------------------------------
# 4: closed while kaprobed was down: not tracked; closed locally unseen while tracked:
# forgotten (reason=gone) within discover_interval

def nft_drop_local_rst(ctx, ns, port):
    ctx.topo.nft(ns, "\n".join([
        "add table inet kptlrst",
        "add chain inet kptlrst out_c { type filter hook output priority -10; policy accept; }",
        "add rule inet kptlrst out_c tcp sport %d tcp flags & (fin|rst) != 0 drop" % port,
        ""]))


def close_to_time_wait(c, ns):
    """Our program closes first, then the peer: our socket sits in TIME-WAIT."""
    c.srv.cmd("close")
    c.cli.wait_err(3)
    c.cli.cmd("close")
    deadline = time.monotonic() + 3
    while ss_state(ns, c.local, c.remote) != "TIME-WAIT":
        if time.monotonic() > deadline:
            fail("closed connection %s not in TIME-WAIT: %s" % (
                c.local, ss_state(ns, c.local, c.remote)))
        time.sleep(0.05)


def destroy_unseen(ctx, ns, c):
    """Destroys our socket (SOCK_DESTROY, `ss -K`) with its RST dropped on output, so no
    capture can see the end. Returns the time just before."""
    nft_drop_local_rst(ctx, ns, split_ep(c.local)[1])
    t = time.time()
    run(["ss", "-K", "-tn", "src", c.local, "dst", c.remote], ns=ns)
    e = c.srv.wait_err(3)
    check(e["errno"] == "ECONNABORTED", "destroyed socket: program got %s, expected "
          "ECONNABORTED" % e["errno"])
    check(ss_state(ns, c.local, c.remote) is None, "destroyed socket still listed")
    return t


def case_disc_gone(ctx):
    net = two_hosts(ctx.topo)
    lns = net["local"]
    rules = [rule("5432-5434", idle=30.0, interval=1.0)]  # no probe in this case
    extra = {"discover_interval": "%gs" % DISC}
    if ctx.netcheck:
        x = connect(ctx, net, 4, 5432, "-x")
        y = connect(ctx, net, 4, 5433, "-y")
        x.exchange()
        y.exchange()
        w = Wire(ctx, lns, "wire-local")
        close_to_time_wait(x, lns)
        t = destroy_unseen(ctx, lns, y)
        ends = [s for s in w.segs(y.local, y.remote, t) if set(s["flags"]) & set("FR")]
        check(not ends, "FIN/RST of the destroyed socket reached the link: %s" % ends)
        st = y.cli.stats()
        check(st["error"] == "none", "the peer heard of the destroy: %s" % st["line"])
        return "closed socket in TIME-WAIT; ss -K with FIN/RST dropped: ECONNABORTED, not " \
               "listed, nothing on the wire, the peer unaware"
    start(ctx, lns, rules, extra=extra, name="kaprobed1")
    x = connect(ctx, net, 4, 5432, "-x")  # closed while kaprobed is down
    y = connect(ctx, net, 4, 5433, "-y")  # destroyed unseen while tracked
    z = connect(ctx, net, 4, 5434, "-z")  # lives on
    for c in (x, y, z):
        c.exchange()
        wait_track(ctx.kap.log, c, 3, "capture")
    ctx.kap.stop_ok()
    close_to_time_wait(x, lns)
    w = Wire(ctx, lns, "wire-local")
    kap = start(ctx, lns, rules, extra=extra, name="kaprobed2")
    log = kap.log
    wait_track(log, y, 2, "discovered")
    wait_track(log, z, 2, "discovered")
    t_destroy = destroy_unseen(ctx, lns, y)
    cl = log.wait_conn(y.local, y.remote, "close", DISC + 2)
    check(cl.get("reason") == "gone", "close line: expected reason=gone: %s" % cl.raw)
    took = cl.t - t_destroy
    check(took <= DISC + 0.15, "forgotten %.3f s after the socket was destroyed, "
          "discover_interval is %gs: %s" % (took, DISC, cl.raw))
    ends = [s for s in w.segs(y.local, y.remote, t_destroy) if set(s["flags"]) & set("FR")]
    check(not ends, "inconclusive: the destroyed socket's FIN/RST reached the link: %s" % ends)
    idle_until(time.time() + 2 * DISC + 0.2, log)  # two more dumps
    check(not x.events(log), "a connection closed while kaprobed was down was tracked:\n%s"
          % fmt_events(x.events(log)))
    evs_y = y.events(log)
    check(len(of(evs_y, "close")) == 1 and evs_y[-1].idx == cl.idx,
          "lines after the gone connection's close:\n%s" % fmt_events(evs_y))
    check(not of(z.events(log), "close"), "a living connection was closed:\n%s"
          % fmt_events(z.events(log)))
    only_events(evs_y, ("track", "close"), "gone")
    well_formed(ctx)
    kap.stop_ok()
    return "TIME-WAIT socket not tracked; destroyed socket forgotten reason=gone %.3f s " \
           "after (discover_interval %gs)" % (took, DISC)


# --------------------------------------------------------------------------------------
# 5: a socket with SO_KEEPALIVE is left to the kernel (skip_kernel_keepalive = yes, the
# default), probed when skip_kernel_keepalive = no

def case_disc_kernelka(ctx):
    net = two_hosts(ctx.topo)
    lns = net["local"]
    p = connect(ctx, net, 4, 5432, "-plain")
    k = connect(ctx, net, 4, 5433, "-ka")
    k.srv.cmd("keepalive 60 10 5")  # the kernel's own probes far beyond this case
    w = Wire(ctx, net["peer"], "wire-peer")
    t_w = time.time()
    p.exchange()
    k.exchange()
    timers = {}
    for name, c in (("plain", p), ("ka", k)):
        line = [l for l in ss_lines(lns, opts="-tnoH") if c.local in l and c.remote in l]
        check(len(line) == 1, "ss lists %d lines for %s" % (len(line), c.local))
        timers[name] = "timer:(keepalive" in line[0]
    check(timers == {"plain": False, "ka": True}, "inet_diag keepalive timers: %s (expected "
          "only the SO_KEEPALIVE socket)" % timers)
    if ctx.netcheck:
        return "inet_diag shows the keepalive timer on the SO_KEEPALIVE socket only"
    rules = [rule("5432-5433")]
    t0 = time.time()
    kap = start(ctx, lns, rules, extra={"discover_interval": "%gs" % DISC}, name="kaprobed1")
    log = kap.log
    wait_track(log, p, 2, "discovered")
    u = log.wait_conn(k.local, k.remote, "untrack", 2)
    check(u.get("reason") == "kernel-keepalive", "expected reason=kernel-keepalive: %s" % u.raw)
    log.wait_conn(p.local, p.remote, "alive", D_DEAD + 2)
    idle_until(max(time.time(), t0 + 3 * DISC + 0.2), log)  # several dumps
    evs = k.events(log)
    check(len(of(evs, "untrack")) == 1, "untrack logged %d times (expected once):\n%s" % (
        len(of(evs, "untrack")), fmt_events(evs)))
    check(not [e for e in evs if e["event"] not in ("track", "untrack")],
          "the SO_KEEPALIVE socket was handled:\n%s" % fmt_events(evs))
    sent = w.segs(k.local, k.remote, t0)
    check(not sent, "segments of the SO_KEEPALIVE connection reached the peer while it was "
          "left to the kernel: %s" % sent)
    well_formed(ctx)
    kap.stop_ok()
    t1 = time.time()
    kap = start(ctx, lns, rules, extra={"skip_kernel_keepalive": "no"}, name="kaprobed2")
    log = kap.log
    wait_track(log, k, 2, "discovered")
    a = log.wait_conn(k.local, k.remote, "alive", D_DEAD + 2)
    evs = k.events(log)
    check(not of(evs, "untrack"), "untracked with skip_kernel_keepalive = no:\n%s"
          % fmt_events(evs))
    probes, ours = wire_probes(w, k, t_w, t1)
    check(probes, "no probe (SEQ = SND.UNA - 1) of the SO_KEEPALIVE connection reached the "
          "peer: %s" % ours)
    only_events(evs, ("track", "learn", "idle", "probe", "reply", "alive"), "keepalive, no skip")
    well_formed(ctx)
    kap.stop_ok()
    return "skipped: one untrack reason=kernel-keepalive, nothing sent to its peer; with " \
           "skip_kernel_keepalive = no: probed, alive rtt=%s" % a["rtt"]


# --------------------------------------------------------------------------------------
# 6: a local `ct state invalid drop` eats the SYN: learning blocked, nothing guessed sent,
# traffic teaches the numbers

def connect_out(ctx, net, fam, port=5432):
    """A connection opened from the local namespace (our program is the client), as a
    database pool is. Conn.srv is still the local program, Conn.cli the peer's."""
    a = net[fam]
    far = ctx.peer(net["peer"], "server-peer")
    far.listen(a["peer"], port)
    near_ = ctx.peer(net["local"], "client-local")
    r = near_.connect(a["peer"], port)
    far.accept()
    return Conn(near_, far, endpoint(r["laddr"], int(r["lport"])), endpoint(a["peer"], port))


def case_disc_blocked(ctx):
    net = two_hosts(ctx.topo)
    lns = net["local"]
    # Before the connection, so that conntrack knows it as established. Our SYN (as if
    # from the peer) then goes in conntrack's reply direction: INVALID, dropped. (A SYN
    # in the original direction, toward a local server, is "ignored" and let through by
    # Linux 6.x conntrack: the netcheck shows it.)
    nft_invalid_drop(ctx, lns)
    c = connect_out(ctx, net, 4)
    t_last = c.exchange()
    wp = Wire(ctx, net["peer"], "wire-peer")
    if ctx.netcheck:
        wl = Wire(ctx, lns, "wire-local")
        since = time.time()
        ack = challenge_ack(wl, c, since)
        check(ack is None, "the injected SYN got through `ct state invalid drop`: %s"
              % (ack and ack["line"]))
        check(not wp.segs(c.local, c.remote, since), "the peer received something")
        data_intact(c)
        # For the report: the other direction (a local server) on this kernel.
        srv = connect(ctx, net, 4, 5433, "-in")
        srv.exchange()
        inbound = challenge_ack(wl, srv)
        ctx.topo.nft(lns, "delete table inet kptinv\n")
        ack = challenge_ack(wl, c)
        check(ack is not None, "control: no challenge ACK without the firewall either")
        return "ct state invalid drop eats the SYN injected on an outbound connection (no " \
               "challenge ACK, the peer hears nothing), data still flows; without the rule " \
               "the challenge ACK comes; (on an inbound connection the SYN %s)" % (
                   "passes the rule" if inbound else "is dropped too")
    t0 = time.time()
    kap = start(ctx, lns, [("svc", {"local": "*", "remote": "*:5432", "idle": "%gs" % D_IDLE,
                                    "interval": "%gms" % (D_INTERVAL * 1000),
                                    "probes": D_PROBES})])
    log = kap.log
    wait_track(log, c, 2, "discovered")
    b = log.wait_conn(c.local, c.remote, "learn", D_IDLE + 2,
                      extra=lambda e: e.get("result") == "blocked")
    # Past the due time and the whole round a guessed probe would have taken.
    idle_until(max(time.time(), t_last + D_DEAD + 0.5), log)
    evs = c.events(log)
    asked = [e.get("n") for e in of(evs, "learn", result="asked") if e.idx < b.idx]
    check(asked == ["1", "2"], "expected learn result=asked n=1 then n=2 before blocked, got "
          "%s:\n%s" % (asked, fmt_events(evs)))
    early = [e for e in evs if e["event"] in VERDICTS]
    check(not early, "probing without the numbers:\n%s" % fmt_events(early))
    sent = wp.segs(c.local, c.remote, t0)
    check(not sent, "segments reached the peer before any traffic (guessed probe?): %s" % sent)
    t2 = c.exchange()
    idle = log.wait_conn(c.local, c.remote, "idle", D_IDLE + 2, after=b)
    near(idle.t, t2 + D_IDLE, "idle after the traffic", idle, 0.1 * D_IDLE)
    alive = log.wait_conn(c.local, c.remote, "alive", D_INTERVAL * D_PROBES + 1, after=idle)
    # The probe on the wire carries the real numbers: SEQ = SND.UNA - 1 (our last data
    # segment's end minus one; the peer acknowledged all of it).
    probes, ours = wire_probes(wp, c, t0, idle.t - 0.05)
    check(probes, "no probe with SEQ = SND.UNA - 1 reached the peer after the traffic; our "
          "segments: %s" % ours)
    evs = c.events(log)
    check(len(of(evs, "learn", result="blocked")) == 1, "blocked logged more than once:\n%s"
          % fmt_events(evs))
    only_events(evs, ("track", "learn", "idle", "probe", "reply", "alive"), "blocked")
    well_formed(ctx)
    kap.stop_ok()
    return "learn asked n=1,2 then blocked; nothing reached the peer for %.1f s; after " \
           "traffic: probe SEQ=SND.UNA-1 on the wire, alive rtt=%s" % (t2 - t0, alive["rtt"])


# --------------------------------------------------------------------------------------
# 7: 10 000 idle connections from 4 client processes: discovered in under 1 s, all alive

N_CONNS, N_CLIENTS = 10000, 4


def hold_connections(ctx, net, n=N_CONNS, clients=N_CLIENTS, port=5432):
    """n idle connections to local:port (one listener, `clients` client processes).
    Returns the moment the last one was up."""
    lns, pns = net["local"], net["peer"]
    ctx.topo.sysctl(pns, "net.ipv4.ip_local_port_range", "1024 65535")
    ctx.topo.sysctl(lns, "net.core.somaxconn", 65535)
    ctx.topo.sysctl(lns, "net.ipv4.tcp_max_syn_backlog", 65535)
    addr = net[4]["local"]
    lp = ctx.topo.spawn(lns, [sys.executable, "-u", HOLDCONNS, "listen", addr, str(port),
                              str(n)], "holdconns-listen")
    lp.wait_line(lambda l: l.startswith("listening"), 5, "listening")
    cps = [ctx.topo.spawn(pns, [sys.executable, "-u", HOLDCONNS, "connect", addr, str(port),
                                str(n // clients)], "holdconns-%d" % i) for i in range(clients)]
    last = 0.0
    for p in cps + [lp]:
        _, l = p.wait_line(lambda l: l.startswith("ready") or l.startswith("err"), 30, "ready")
        check(l.startswith("ready"), "%s: %s" % (p.name, l))
        last = max(last, float(l.split("t=")[1]))
    return last


def case_disc_10k(ctx):
    net = two_hosts(ctx.topo)
    t_case = time.monotonic()
    lns = net["local"]
    local = endpoint(net[4]["local"], 5432)
    t_up = hold_connections(ctx, net)
    est = [l for l in ss_lines(lns, "state", "established", "sport", "=", ":5432",
                               opts="-tnH")]
    check(len(est) == N_CONNS, "%d established sockets on port 5432, expected %d" % (
        len(est), N_CONNS))
    if ctx.netcheck:
        return "%d idle connections from %d processes up in %.1f s" % (
            N_CONNS, N_CLIENTS, time.monotonic() - t_case)
    idle_until(t_up + 0.3)
    t0 = time.time()
    # log_alive = every: a track line at discovery and an alive line per round, at info.
    kap = start(ctx, lns, [rule(idle=D_IDLE, interval=1.0)], log_level="info",
                extra={"log_alive": "every"})
    log = kap.log
    tracked, alive, src_bad, bad = {}, set(), [], []
    seen = 0
    deadline = time.monotonic() + D_IDLE + 15
    while len(alive) < N_CONNS:
        log.poll()
        for e in log.events[seen:]:
            if e.get("local") != local:
                continue
            ev = e.get("event")
            if ev == "track":
                tracked[e["remote"]] = e.t
                if e.get("source") != "discovered":
                    src_bad.append(e.raw)
            elif ev == "alive":
                alive.add(e["remote"])
            elif ev in ("dead", "reset", "unreachable", "untrack", "close"):
                bad.append(e.raw)
        seen = len(log.events)
        check(not bad, "%d unexpected lines, first: %s" % (len(bad), bad[:3]))
        if time.monotonic() > deadline:
            fail("after %.0f s: %d tracked, %d alive of %d" % (
                time.time() - t0, len(tracked), len(alive), N_CONNS))
        if not kap.proc.alive():
            fail("kaprobed exited")
        time.sleep(0.1)
    check(len(tracked) == N_CONNS, "%d connections tracked, expected %d" % (len(tracked),
                                                                           N_CONNS))
    check(not src_bad, "%d track lines without source=discovered, first: %s" % (
        len(src_bad), src_bad[0] if src_bad else ""))
    took = max(tracked.values()) - t0
    check(took < 1.0, "the last of %d track lines came %.3f s after kaprobed's start "
          "(expected < 1 s)" % (N_CONNS, took))
    m = re.search(r'msg="?discovery"?.*', kap.proc.text("err"))
    well_formed(ctx)
    kap.stop_ok()
    return "%d discovered %.3f s after start (%s), all alive %.1f s after start; case %.0f s" % (
        N_CONNS, took, m.group(0) if m else "no discovery line on stderr",
        time.time() - t0, time.monotonic() - t_case)


# --------------------------------------------------------------------------------------
# Local addresses: one added while kaprobed runs is recognised (rtnetlink), no restart

NEW_ADDR = {4: ("192.0.2.11", "192.0.2.11/24"), 6: ("2001:db8::11", "2001:db8::11/64")}


def case_disc_newaddr(ctx):
    net = two_hosts(ctx.topo)
    lns = net["local"]
    if not ctx.netcheck:
        # No periodic dump: only the address change itself can make the new address local.
        start(ctx, lns, [rule(idle=1.0)], extra={"discover_interval": "0"})
    out = []
    for fam in (4, 6):
        addr, cidr = NEW_ADDR[fam]
        ctx.topo.addr(lns, "eth0", cidr)
        srv = ctx.peer(lns, "server%d" % fam)
        srv.listen(addr, 5432)
        cli = ctx.peer(net["peer"], "client%d" % fam)
        r = cli.connect(addr, 5432)
        srv.accept()
        c = Conn(srv, cli, endpoint(addr, 5432), endpoint(r["laddr"], int(r["lport"])))
        c.exchange()
        if ctx.netcheck:
            data_intact(c)
            out.append(addr)
            continue
        log = ctx.kap.log
        wait_track(log, c, 2, "capture")
        a = log.wait_conn(c.local, c.remote, "alive", 1.0 + D_INTERVAL * D_PROBES + 2)
        only_events(c.events(log), ("track", "idle", "probe", "reply", "alive"), "new address")
        out.append("%s alive rtt=%s" % (c.local, a["rtt"]))
    if ctx.netcheck:
        return "connections to the added addresses work: %s" % ", ".join(out)
    well_formed(ctx)
    ctx.kap.stop_ok()
    return "addresses added after start tracked and probed: %s" % "; ".join(out)


# --------------------------------------------------------------------------------------
# The table cap: max_connections, untrack reason=limit once per rule

def case_disc_limit(ctx):
    net = two_hosts(ctx.topo)
    conns = [connect(ctx, net, 4, 5432 + i, "-%d" % i) for i in range(5)]
    for c in conns:
        c.exchange()
    if ctx.netcheck:
        return "5 connections up"
    kap = start(ctx, net["local"], [rule("5432-5437", idle=30.0, interval=1.0)],
                extra={"max_connections": "3", "discover_interval": "%gs" % DISC})
    log = kap.log
    log.wait(lambda e: e.get("event") == "untrack", 2, "event=untrack")
    late = connect(ctx, net, 4, 5437, "-late")  # learned from traffic: over the cap too
    late.exchange()
    idle_until(time.time() + 2 * DISC + 0.2, log)
    log.poll()
    tracked = [e for e in log.events if e.get("event") == "track"]
    untrack = [e for e in log.events if e.get("event") == "untrack"]
    check(len(tracked) == 3, "%d connections tracked with max_connections = 3:\n%s" % (
        len(tracked), fmt_events(tracked)))
    check(len(untrack) == 1 and untrack[0].get("reason") == "limit"
          and untrack[0].get("rule") == "svc",
          "expected one untrack reason=limit rule=svc:\n%s" % fmt_events(untrack))
    well_formed(ctx)
    kap.stop_ok()
    return "3 of 6 tracked; one line %s" % untrack[0].raw.split(" ", 1)[1]


# Run alone by run.py -j (they load the machine: bulk transfers, floods, many connections,
# a booted systemd), after the cases that run side by side.
SERIAL = {"disc_10k"}

CASES = [
    ("disc_up", case_disc_up),
    ("disc_down", case_disc_down),
    ("disc_restart", case_disc_restart),
    ("disc_gone", case_disc_gone),
    ("disc_kernelka", case_disc_kernelka),
    ("disc_blocked", case_disc_blocked),
    ("disc_10k", case_disc_10k),
    ("disc_up6", case_disc_up6),
    ("disc_down6", case_disc_down6),
    ("disc_newaddr", case_disc_newaddr),
    ("disc_limit", case_disc_limit),
]

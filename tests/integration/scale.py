"""Scale runs (issue 8), shared by `make bench` (tests/bench/scale.py) and the integration
cases (test_scale.py): N idle connections between two namespaces, kaprobed on the
server's side with one rule (idle 6 s, interval 1 s, probes 3, log_level info), half the
peers silenced after the first round, every figure measured against the kernel's clock.

Shape:
  - namespace "srv" (192.0.2.1, where kaprobed runs) and "cli" (192.0.2.2 for the live
    peers, 192.0.2.3 for the ones to silence) on one veth link;
  - one server port per PER_PROC connections (5432, 5433, ...), one holdconns.py server
    and one client process per port (at most 20 000 descriptors per process here), each
    client's connections alternating between the two client addresses, so live and
    silenced connections are interleaved on every port;
  - every connection carries one request and reply (holdconns --hello), then nothing;
  - mode "disc": opened before kaprobed starts (discovery); "cap": kaprobed runs while they
    open (capture).

The kernel's view is read on the server side through sock_diag (tcpdiag.py): its last
received segment (min of tcpi_last_data_recv and tcpi_last_ack_recv) before the first
round (last_rx0; due = last_rx0 + idle), every DUMP_GAP s during round 1, and right after
the silence (last_rx1). A probe's reply refreshes the server socket's last_ack_recv
(ARCHITECTURE.md, Platform facts), so the first dump in which a socket's last-received
moved past last_rx0 shows when the server kernel saw its round-1 reply (round 2's comes
an idle period later, after another dump): round 1 (first probe to last alive: first to last reply) and each
probe's lateness (reply - due, RTT included) are measured for any daemon, without any
per-connection log line. A silenced peer's dead verdict is due at last_rx1 + idle +
interval x probes; its error is the `ts=` of its `event=dead` line minus that.

Figures that kaprobed reports itself (summary line, closing `totals:` line on stderr) are
taken when present, else "n/a": probe_late_max_ms, learn_retries, loop_stall_max_ms,
pcap_drops.
"""

import math
import os
import re
import subprocess
import sys
import time

from netns import HERE, LineTail, conf_text, fail, parse_logfmt, parse_ts, run

HOLDCONNS = os.path.join(HERE, "holdconns.py")
TCPDIAG = os.path.join(HERE, "tcpdiag.py")

IDLE, INTERVAL, PROBES = 6.0, 1.0, 3
DEAD_AFTER = IDLE + INTERVAL * PROBES
PER_PROC = 10000          # connections per server and per client process (limit: 20 000 fds)
BASE_PORT = 5432
SRV, LIVE, SILENT = "192.0.2.1", "192.0.2.2", "192.0.2.3"
SUMMARY_INTERVAL = 1      # s: the summary line is how a quiet info log shows progress
DUMP_GAP = 2.0            # s between the server kernel dumps of round 1 (each < 1 s at 100 000)


# --------------------------------------------------------------------------------------
# Network side

def topology(topo):
    """Two namespaces on a veth link; returns {"srv": ns, "cli": ns}."""
    srv = topo.netns("srv")
    cli = topo.netns("cli")
    topo.link(srv, "eth0", cli, "eth0")
    topo.addr(srv, "eth0", SRV + "/24")
    topo.addr(cli, "eth0", LIVE + "/24")
    topo.addr(cli, "eth0", SILENT + "/24")
    topo.sysctl(cli, "net.ipv4.ip_local_port_range", "1024 65535")
    topo.sysctl(srv, "net.core.somaxconn", 65535)
    topo.sysctl(srv, "net.ipv4.tcp_max_syn_backlog", 65535)
    return {"srv": srv, "cli": cli}


def group_sizes(n, per=PER_PROC):
    g = max(1, math.ceil(n / per))
    return [n // g + (1 if i < n % g else 0) for i in range(g)]


def port_range(n):
    return "%d-%d" % (BASE_PORT, BASE_PORT + len(group_sizes(n)) - 1)


class Conns:
    """The held connections: one server and one client holdconns.py process per port."""

    def __init__(self, topo, net, n, srcs=(LIVE, SILENT), hello=True, port=BASE_PORT):
        self.topo, self.net, self.n, self.port = topo, net, n, port
        self.sizes = group_sizes(n)
        self.srcs = srcs
        self.hello = ["--hello"] if hello else []
        self.servers, self.clients = [], []

    def listen(self):
        for i, k in enumerate(self.sizes):
            p = self.topo.spawn(self.net["srv"], [sys.executable, "-u", HOLDCONNS, "listen", SRV,
                                                  str(self.port + i), str(k)] + self.hello,
                                "holdconns-srv%d" % (self.port + i))
            self.servers.append(p)
        for p in self.servers:
            p.wait_line(lambda l: l.startswith("listening"), 10, "listening")

    def connect(self, timeout=120):
        """Opens them all; returns the wall-clock moment the last one was up."""
        for i, k in enumerate(self.sizes):
            self.clients.append(self.topo.spawn(
                self.net["cli"], [sys.executable, "-u", HOLDCONNS, "connect", SRV,
                                  str(self.port + i), str(k), "--src", ",".join(self.srcs)]
                + self.hello, "holdconns-cli%d" % (self.port + i)))
        last = 0.0
        for p in self.clients + self.servers:
            _, l = p.wait_line(lambda l: l.startswith(("ready", "err")), timeout, "ready")
            if not l.startswith("ready"):
                fail("%s: %s" % (p.name, l))
            last = max(last, float(parse_logfmt(l)["t"]))
        return last

    def spread(self, secs):
        """Every client sends one byte on each of its connections, evenly over secs."""
        start = [len(p.out) for p in self.clients]
        for p in self.clients:
            p.write("spread %g" % secs)
        for p, i in zip(self.clients, start):
            p.wait_line(lambda l: l.startswith("spread done"), secs + 10, "spread done",
                        start=i)


def silence(topo, cli_ns, addr=SILENT):
    """On the client side: everything to or from addr is dropped (the peer falls silent)."""
    topo.nft(cli_ns, "\n".join([
        "add table inet kptsil",
        "add chain inet kptsil in_c { type filter hook input priority -10; policy accept; }",
        "add chain inet kptsil out_c { type filter hook output priority -10; policy accept; }",
        "add rule inet kptsil in_c ip daddr %s drop" % addr,
        "add rule inet kptsil out_c ip saddr %s drop" % addr,
        ""]))


def check_silence(cli_ns, port=BASE_PORT - 1):
    """Netcheck of the silence: from the live address a connect to a closed server port is
    refused at once (the path works); from the silenced one it times out. Returns a text."""
    code = ("import socket,sys\n"
            "for src in sys.argv[1:]:\n"
            "    s=socket.socket(); s.settimeout(1.0); s.bind((src,0))\n"
            "    try:\n"
            "        s.connect(('%s',%d)); r='connected'\n"
            "    except ConnectionRefusedError: r='refused'\n"
            "    except socket.timeout: r='timeout'\n"
            "    print(src, r)\n" % (SRV, port))
    out = run([sys.executable, "-c", code, LIVE, SILENT], ns=cli_ns, timeout=10).stdout
    got = dict(l.split() for l in out.splitlines())
    if got.get(LIVE) != "refused" or got.get(SILENT) != "timeout":
        fail("silence not as expected (want %s refused, %s timeout): %s" % (LIVE, SILENT, got))
    return "%s answers (refused), %s silent (timeout)" % (LIVE, SILENT)


def diag(ns):
    """The server kernel's view: {(local, remote): (last_rx, unacked)} of every established
    IPv4 socket in ns, and the moment the dump ended."""
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, TCPDIAG, "4"],
                       capture_output=True, text=True, timeout=60)
    t = time.time()
    if p.returncode != 0 or not p.stdout.rstrip().endswith(tuple("0123456789")):
        fail("tcpdiag failed (%d): %s" % (p.returncode, p.stderr.strip()[-500:]))
    out = {}
    for l in p.stdout.splitlines():
        f = l.split()
        if len(f) == 4:
            out[(f[0], f[1])] = (float(f[2]), int(f[3]))
    return out, t


def softnet_drops():
    """Packets dropped for lack of room in the per-CPU backlog, all CPUs (host-wide)."""
    try:
        with open("/proc/net/softnet_stat") as f:
            return sum(int(l.split()[1], 16) for l in f if l.strip())
    except (OSError, IndexError, ValueError):
        return None


def proc_cpu(pid):
    """utime + stime of pid in seconds, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def proc_rss(pid):
    """VmRSS of pid in bytes, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for l in f:
                if l.startswith("VmRSS:"):
                    return int(l.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


# --------------------------------------------------------------------------------------
# The status log, read cheaply: at 100 000 connections today's daemon writes ~2 lines per
# connection per round; only the lines that matter are parsed in full.

_ENDS = re.compile(r" local=(\S+) remote=(\S+)")


class LogScan:
    def __init__(self, path):
        self.path = path
        self.tail = LineTail(path, errors="replace")
        self.counts = {}
        self.alive = set()          # (local, remote) with an alive line
        self.tracked = set()        # (local, remote) with a track line
        self.dead = {}              # (local, remote) -> its dead lines (parsed)
        self.dead_lines = 0
        self.uncertain = []
        self.learn_blocked = 0
        self.learn_retry_lines = 0  # learn result=asked n>=2 (debug level only)
        self.summaries = []
        self.errors = []
        self.first = {}             # event -> ts of its first line

    def poll(self):
        for l in self.tail.lines():
            i = l.find(" event=")
            if i < 0:
                if " level=error" in l:
                    self.errors.append(l)
                continue
            j = l.find(" ", i + 7)
            ev = l[i + 7:j] if j > 0 else l[i + 7:]
            self.counts[ev] = self.counts.get(ev, 0) + 1
            if ev not in self.first:
                self.first[ev] = parse_ts(l[3:l.find(" ")])
            if ev == "alive":
                m = _ENDS.search(l)
                if m:
                    self.alive.add(m.groups())
            elif ev == "track":
                m = _ENDS.search(l)
                if m:
                    self.tracked.add(m.groups())
            elif ev == "dead":
                e = parse_logfmt(l)
                e["t"] = parse_ts(e.get("ts"))
                self.dead_lines += 1
                self.dead.setdefault((e.get("local"), e.get("remote")), []).append(e)
            elif ev == "uncertain":
                self.uncertain.append(parse_logfmt(l))
            elif ev == "summary":
                self.summaries.append(parse_logfmt(l))
            elif ev == "learn":
                e = parse_logfmt(l)
                if e.get("result") == "blocked":
                    self.learn_blocked += 1
                elif e.get("result") == "retry" or (
                        e.get("result") == "asked" and e.get("n", "1") not in ("1", "")):
                    self.learn_retry_lines += 1

    def summary(self, key, default=None):
        """The latest summary's key as a number, or default."""
        for s in reversed(self.summaries):
            if key in s:
                try:
                    return float(s[key])
                except ValueError:
                    return default
        return default

    def size(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0


def totals(kap):
    """The key=value pairs of kaprobed's closing `totals:` line on stderr ({} if none)."""
    for _, l in reversed(list(kap.proc.err)):
        m = re.search(r"totals: (.*?)\"?$", l)
        if m:
            return dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv)
    return {}


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q / 100.0 * len(v)) - 1))]


# --------------------------------------------------------------------------------------
# One run

def scale_conf(n, extra=None):
    rules = [("scale", {"local": "*:%s" % port_range(n), "remote": "*", "idle": "%gs" % IDLE,
                        "interval": "%gs" % INTERVAL, "probes": PROBES})]
    g = {"summary_interval": "%ds" % SUMMARY_INTERVAL, "state_file": "none"}
    g.update(extra or {})
    return conf_text("{log}", rules, log_level="info", extra=g)


class Samples:
    """(time, value) pairs; at(t): the last value sampled at or before t (else the first)."""

    def __init__(self):
        self.s = []

    def add(self, t, v):
        if v is not None:
            self.s.append((t, v))

    def at(self, t):
        best = self.s[0][1] if self.s else None
        for ts, v in self.s:
            if ts > t:
                break
            best = v
        return best

    def delta(self, t0, t1):
        a, b = self.at(t0), self.at(t1)
        return None if a is None or b is None else b - a


def scale_run(topo, binary, n, mode, say=print, extra=None, round1_grace=10.0,
              dead_grace=5.0, F=None):
    """One run (mode "disc" or "cap"); returns a dict of figures (see format_figures), filled
    in as they come (pass F to see a run that failed half-way; F["kap"] is kaprobed).
    binary None: the network side only (connections, kernel view, silence)."""
    assert mode in ("disc", "cap")
    F = {} if F is None else F
    F.update(mode=mode, n=n)
    net = topology(topo)
    conns = Conns(topo, net, n)
    conns.listen()
    conf = scale_conf(n, extra)
    kap = None
    rss0 = None
    soft0 = softnet_drops()
    if binary and mode == "disc":
        # RSS without connections: a first instance, started and stopped before them.
        empty = topo.kaprobed(binary, net["srv"], conf, name="kaprobed-empty")
        time.sleep(0.3)
        rss0 = proc_rss(empty.proc.pid)
        empty.stop()
    if binary and mode == "cap":
        kap = F["kap"] = topo.kaprobed(binary, net["srv"], conf, name="kaprobed")
        time.sleep(0.3)
        rss0 = proc_rss(kap.proc.pid)
    t_open = time.time()
    t_up = conns.connect()
    F["open_s"] = t_up - t_open
    say("  %d connections up in %.1f s (%d server and %d client processes)" % (
        n, t_up - t_open, len(conns.servers), len(conns.clients)))
    k0, t_d0 = diag(net["srv"])
    F["listed"] = len(k0)
    if len(k0) < n:
        fail("the server kernel lists %d established sockets, expected %d" % (len(k0), n))
    due = {k: v[0] + IDLE for k, v in k0.items()}
    min_due, max_due = min(due.values()), max(due.values())
    if binary is None:
        silence(topo, net["cli"])
        F["silence"] = check_silence(net["cli"])
        spread = max(v[0] for v in k0.values()) - min(v[0] for v in k0.values())
        F["netcheck"] = "%d established, last received spread over %.2f s, dump %.2f s after" \
                        " the last; %s" % (len(k0), spread, t_d0 - t_up, F["silence"])
        return F
    if mode == "disc":
        kap = F["kap"] = topo.kaprobed(binary, net["srv"], conf, name="kaprobed")
    pid = kap.proc.pid
    scan = LogScan(kap.log_path)
    cpu, size = Samples(), Samples()

    def sample():
        now = time.time()
        scan.poll()
        cpu.add(now, proc_cpu(pid))
        size.add(now, scan.size())
        return now

    # Round 1: the server kernel is dumped every DUMP_GAP s from the first due time on; a
    # socket whose last-received moved past last_rx0 got its round-1 reply then (the next
    # reply, round 2's, comes an idle period later: a dump in between always sees the first).
    # Done when every connection answered, or past max_due + round1_grace. The log (alive
    # lines, or the summary's replies counter) only says when to look again at once.
    first = {}

    def note_replies(kd):
        for k, (lr, _) in kd.items():
            if k not in first and k in k0 and lr > k0[k][0] + 0.5:
                first[k] = lr

    tracked_max = 0
    next_dump = min_due + 1.0
    hinted = False
    while True:
        now = sample()
        tracked_max = max(tracked_max, scan.summary("tracked", 0))
        hint = now >= max_due and (len(scan.alive) >= n or scan.summary("replies", 0) >= n)
        if now >= next_dump or (hint and not hinted):
            hinted = hinted or hint
            note_replies(diag(net["srv"])[0])
            next_dump = time.time() + DUMP_GAP
            if len(first) >= n:
                break
        if now >= max_due + round1_grace or not kap.proc.alive():
            say("  round 1 incomplete %.0f s past the last due time: %d of %d answered" % (
                now - max_due, len(first), n))
            break
        time.sleep(0.2)
    t_r1 = sample()
    rss1 = proc_rss(pid)
    F["rss_per_conn"] = (rss1 - rss0) / n if rss0 is not None and rss1 is not None else None
    F["tracked"] = max(tracked_max, scan.summary("tracked", 0)) if scan.summaries else \
        scan.counts.get("track")
    # Silence half the peers, then the kernel's last-received of every socket.
    t_sil = time.time()
    silence(topo, net["cli"])
    k1, _ = diag(net["srv"])
    F["silence_s"] = time.time() - t_sil
    note_replies(k1)
    F["answered"] = len(first)
    F["round1_s"] = max(first.values()) - min(first.values()) if first else None
    late = [first[k] - due[k] for k in first]
    F["late_p50"], F["late_p99"], F["late_max"] = pct(late, 50), pct(late, 99), pct(late, 100)
    silenced = [k for k in k1 if k[1].startswith(SILENT + ":")]
    F["silenced"] = len(silenced)
    expect = {k: k1[k][0] + DEAD_AFTER for k in silenced}
    end = max(v[0] for v in k1.values()) + DEAD_AFTER
    # Dead verdicts: until every silenced peer is dead and every live one had the time
    # to be judged again, or dead_grace past the last due verdict.
    def dead_after_silence(k):
        return next((e for e in scan.dead.get(k, ()) if e["t"] >= t_sil), None)

    while True:
        now = sample()
        done = all(dead_after_silence(k) for k in silenced)
        if (done and now >= end + 0.5) or now >= end + dead_grace or not kap.proc.alive():
            break
        time.sleep(0.2)
    t_end = sample()
    F["dead_lines"] = scan.dead_lines
    # A dead line before the silence is false whoever the peer: it was answering then.
    errs = [e["t"] - expect[k] for k, e in ((k, dead_after_silence(k)) for k in silenced) if e]
    F["dead"] = len(errs)
    F["not_dead"] = len(silenced) - len(errs)
    F["err_min"], F["err_p50"] = pct(errs, 0), pct(errs, 50)
    F["err_p99"], F["err_max"] = pct(errs, 99), pct(errs, 100)
    F["abs_err_p99"] = pct([abs(e) for e in errs], 99)
    F["false_dead"] = sorted(k for k, evs in scan.dead.items()
                             if not k[1].startswith(SILENT + ":") or evs[0]["t"] < t_sil)
    F["false_dead_silenced"] = sum(1 for k in F["false_dead"] if k[1].startswith(SILENT + ":"))
    F["uncertain"] = len(scan.uncertain)
    F["learn_blocked"] = scan.learn_blocked
    t_r1_start = min(min_due - 1.5, t_r1)
    F["cpu_r1"] = cpu.delta(t_r1_start, t_r1)
    F["cpu_r2"] = cpu.delta(t_sil, t_end)
    F["log_r1"] = size.delta(t_r1_start, t_r1)
    F["log_r2"] = size.delta(t_sil, t_end)
    F["log_total"] = scan.size()
    F["errors"] = scan.errors[:5]
    F["track_distinct"] = len(scan.tracked)
    F["last_summary"] = " ".join("%s=%s" % kv for kv in scan.summaries[-1].items()
                                 if kv[0] not in ("ts", "event")) if scan.summaries else None
    F["events"] = dict(scan.counts)
    F["exit"] = kap.stop()
    scan.poll()
    tot = totals(kap)
    F["totals"] = tot

    def reported(key):
        if key in tot:
            return tot[key]
        v = scan.summary(key)
        return None if v is None else ("%g" % v)
    F["pcap_drops"] = reported("pcap_drops")
    F["probe_late_max_ms"] = reported("probe_late_max_ms")
    F["learn_retries"] = reported("learn_retries")
    F["loop_stall_max_ms"] = tot.get("loop_stall_max_ms")
    soft1 = softnet_drops()
    F["softnet_drops"] = soft1 - soft0 if soft0 is not None and soft1 is not None else None
    return F


def _ms(v):
    return "n/a" if v is None else "%+.1f" % (v * 1000)


def _na(v, fmt="%s"):
    return "n/a" if v is None else fmt % v


def format_figures(F):
    """The figures of a run as indented lines."""
    if "netcheck" in F:
        return ["  netcheck: " + F["netcheck"]]
    n = F["n"]
    fd = F["false_dead"]
    return [
        "  connections up in %.1f s; silence + server kernel dump after round 1: %.1f s" % (
            F["open_s"], F["silence_s"]),
        "  tracked: %s of %d (summary line; track lines for %d distinct connections); probed "
        "and answered in round 1 (server kernel saw the reply): %d" % (
            _na(F["tracked"], "%d"), n, F["track_distinct"], F["answered"]),
        "  round 1 (first reply to last reply, server kernel): %s s; probe lateness (reply -"
        " due): p50 %s p99 %s max %s ms; kaprobed probe_late_max_ms=%s" % (
            _na(F["round1_s"], "%.3f"), _ms(F["late_p50"]), _ms(F["late_p99"]),
            _ms(F["late_max"]), _na(F["probe_late_max_ms"])),
        "  dead: %d lines; %d of %d silenced peers dead after the silence (%d not); error vs "
        "kernel last-received + %gs: min %s p50 %s p99 %s max %s ms (|error| p99 %s ms)" % (
            F["dead_lines"], F["dead"], F["silenced"], F["not_dead"], DEAD_AFTER,
            _ms(F["err_min"]), _ms(F["err_p50"]), _ms(F["err_p99"]), _ms(F["err_max"]),
            _ms(F["abs_err_p99"]).lstrip("+")),
        "  false dead: %d (%d of them before the silence, on peers silenced later)%s; "
        "uncertain lines: %d" % (
            len(fd), F["false_dead_silenced"], (" (first: %s %s)" % fd[0]) if fd else "",
            F["uncertain"]),
        "  pcap drops: %s; softnet drops (host-wide): %s; learn retries: %s; learn "
        "blocked lines: %d" % (_na(F["pcap_drops"]), _na(F["softnet_drops"]),
                               _na(F["learn_retries"]), F["learn_blocked"]),
        "  kaprobed CPU: round 1 %s s, round 2 %s s; RSS per connection: %s B; longest loop "
        "stall: %s ms" % (_na(F["cpu_r1"], "%.2f"), _na(F["cpu_r2"], "%.2f"),
                          _na(F["rss_per_conn"], "%.0f"), _na(F["loop_stall_max_ms"])),
        "  status log at info: round 1 %s B, round 2 %s B, %d B in all; events %s" % (
            _na(F["log_r1"], "%d"), _na(F["log_r2"], "%d"), F["log_total"],
            " ".join("%s=%d" % kv for kv in sorted(F["events"].items()))),
        "  last summary: %s" % _na(F["last_summary"]),
        "  totals: %s" % (" ".join("%s=%s" % kv for kv in F["totals"].items()) or "n/a"),
    ]

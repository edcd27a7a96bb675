"""kaprobe integration cases for the status outputs: JSON Lines, syslog and journald
(real AF_UNIX datagram sockets the test binds, seen by kaprobed in a private mount
namespace at /dev/log and /run/systemd/journal/socket), and rotation under load
(rename + SIGUSR1, and the real logrotate).

Nothing is created in the host's /dev or /run: the sockets live in the test's temp dir
and are bind-mounted onto those paths inside a mount namespace that only kaprobed sees.
"""

import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
import threading
import time

from netns import HERE, REPO, RUN_USER, CaseFailure, LineTail, check, conf_text, endpoint, fail, \
    parse_logfmt, parse_ts, run, svc_rule, two_hosts
from test_cases import DEAD_AFTER, EVENT_FIELDS, IDLE, INTERVAL, PROBES, connect, \
    nft_drop_all

CONNLOAD = os.path.join(HERE, "connload.py")
TIMING_KEYS = ("ts", "idle", "rtt")
NUMBER_KEYS = ("probes", "n", "idle", "rtt")


# --------------------------------------------------------------------------------------
# Helpers

class JsonLog:
    """Reads a growing JSON Lines file; every complete line must be one JSON object."""

    def __init__(self, path, alive=None):
        self.alive = alive
        self.objs = []
        self.raw = []
        self._tail = LineTail(path)

    @property
    def path(self):
        return self._tail.path

    @path.setter
    def path(self, path):
        self._tail.path = path  # the same file, renamed: read on where it was

    def poll(self):
        for l in self._tail.lines():
            try:
                o = json.loads(l)
            except ValueError as e:
                fail("%s: line %d is not JSON (%s): %r" % (self.path, len(self.raw) + 1, e, l))
            check(isinstance(o, dict), "%s: line is not a JSON object: %r" % (self.path, l))
            self.raw.append(l)
            self.objs.append(o)

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            self.poll()
            for o in self.objs[seen:]:
                if pred(o):
                    return o
            seen = len(self.objs)
            if time.monotonic() >= deadline:
                fail("timed out after %.1f s waiting for %s in %s" % (timeout, what, self.path))
            if self.alive is not None and not self.alive():
                fail("kaprobed exited while waiting for %s" % what)
            time.sleep(0.02)


class DgramSink:
    """An AF_UNIX datagram socket bound in the temp dir; a thread keeps every datagram."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(path)
        os.chmod(path, 0o666)  # kaprobed may send as an unprivileged user
        self.sock.settimeout(0.1)
        self.msgs = []
        self._cond = threading.Condition()
        self._stop = False
        self._t = threading.Thread(target=self._reader, daemon=True)
        self._t.start()

    def _reader(self):
        while not self._stop:
            try:
                data = self.sock.recv(1 << 17)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._cond:
                self.msgs.append(data)
                self._cond.notify_all()

    def wait(self, pred, timeout, what, alive=None):
        """Returns the first message (parsed by the caller's pred: value or None)."""
        deadline = time.monotonic() + timeout
        i = 0
        with self._cond:
            while True:
                while i < len(self.msgs):
                    r = pred(self.msgs[i])
                    if r is not None:
                        return r
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    fail("timed out after %.1f s waiting for %s on %s (%d datagrams)" % (
                        timeout, what, os.path.basename(self.path), len(self.msgs)))
                if alive is not None and not alive():
                    fail("kaprobed exited while waiting for %s" % what)
                self._cond.wait(min(left, 0.05))

    def all(self):
        with self._cond:
            return list(self.msgs)

    def close(self):
        self._stop = True
        self._t.join(1)
        self.sock.close()


def mount_wrapper(ctx, name, lines):
    """A script that runs kaprobed ("$@") in a private mount namespace after `lines`
    (shell commands with $T = the temp dir). Returns its path (used as the binary)."""
    path = os.path.join(ctx.topo.tmp, name)
    inner = "set -e; T=%s; %s; exec \"$0\" \"$@\"" % (ctx.topo.tmp, "; ".join(lines))
    with open(path, "w") as f:
        f.write("#!/bin/sh\n# Private mount namespace: nothing here reaches the host.\n"
                "exec unshare --mount --propagation private sh -c '%s' %s \"$@\"\n"
                % (inner, os.path.abspath(ctx.binary)))
    os.chmod(path, 0o755)
    return path


def start(ctx, ns, conf, name="kaprobed", binary=None):
    kap = ctx.topo.kaprobed(binary or ctx.binary, ns, conf, name=name)
    if ctx.kap is None:
        ctx.kap = kap
    return kap


def dead_scenario(ctx, net):
    """A connection whose peer goes silent: track, idle, probes, dead. Returns it."""
    c = connect(ctx, net, 4)
    c.exchange()
    nft_drop_all(ctx, net["peer"])
    return c


def reopen_count(kap):
    return sum(1 for _, l in list(kap.proc.err) if "reopened" in l and "level=info" in l)


def signal_kap(kap, sig):
    check(kap.proc.alive(), "kaprobed is not running")
    os.kill(kap.proc.pid, sig)


# --------------------------------------------------------------------------------------
# (a) JSON Lines: the same keys and values as logfmt, for a real dead scenario

def same_values(lf, js, what):
    """Compares one logfmt event with one JSON object: keys in the same order, values
    equal (timing values within 0.2 s), numbers as JSON numbers."""
    check(list(lf.keys()) == list(js.keys()), "%s: keys differ:\n  logfmt %s\n  json   %s" % (
        what, list(lf.keys()), list(js.keys())))
    for k, v in js.items():
        if k in NUMBER_KEYS:
            check(isinstance(v, (int, float)) and not isinstance(v, bool),
                  "%s: %s is not a JSON number: %r" % (what, k, v))
        else:
            check(isinstance(v, str), "%s: %s is not a JSON string: %r" % (what, k, v))
        if k == "ts":
            tj = parse_ts(v)
            check(tj is not None and abs(tj - lf.t) < 0.2, "%s: ts %s vs %s" % (what, v, lf[k]))
        elif k in TIMING_KEYS:
            check(abs(float(v) - float(lf[k])) < 0.2, "%s: %s %r vs %s" % (what, k, v, lf[k]))
        else:
            check(str(v) == lf[k], "%s: %s: json %r, logfmt %r" % (what, k, v, lf[k]))


def case_json(ctx):
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    net = two_hosts(ctx.topo)
    jdir = os.path.join(ctx.topo.tmp, "jsondir")
    os.mkdir(jdir)
    os.chmod(jdir, 0o1777)
    jpath = os.path.join(jdir, "status.log")
    kap_l = start(ctx, net["local"], conf_text("{log}", [svc_rule()]), "kap-logfmt")
    kap_j = start(ctx, net["local"], conf_text(jpath, [svc_rule()],
                                               extra={"log_format": "json"}), "kap-json")
    try:
        jlog = JsonLog(jpath, kap_j.proc.alive)
        c = dead_scenario(ctx, net)
        kap_l.log.wait_conn(c.local, c.remote, "dead", DEAD_AFTER + 3)
        jd = jlog.wait(lambda o: o.get("event") == "dead" and o.get("remote") == c.remote,
                       DEAD_AFTER + 3, "a JSON dead line")
        lf = c.events(kap_l.log)
        js = [o for o in jlog.objs if o.get("local") == c.local and o.get("remote") == c.remote]
        check([e["event"] for e in lf] == [o["event"] for o in js],
              "events differ:\n  logfmt %s\n  json   %s" % ([e["event"] for e in lf],
                                                          [o["event"] for o in js]))
        for e, o in zip(lf, js):
            same_values(e, o, "event=%s" % e["event"])
            want = ["ts", "event", "rule", "local", "remote"] + list(EVENT_FIELDS[e["event"]])
            check(list(o.keys()) == want, "json keys %s, expected %s" % (list(o.keys()), want))
        check(jd["probes"] == PROBES and jd["reason"] == "no-reply", "json dead line: %r" % jd)
        # A daemon warning in the status file is JSON too: the reopen fails (its directory
        # is gone), kaprobed warns and keeps writing to the old file.
        os.rename(jdir, jdir + ".gone")
        jlog.path = os.path.join(jdir + ".gone", "status.log")
        signal_kap(kap_j, signal.SIGUSR1)
        w = jlog.wait(lambda o: o.get("level") == "warning", 3, "a JSON warning line")
        check(list(w.keys()) == ["ts", "level", "msg"] and "reopening status log" in w["msg"],
              "warning line: %r" % w)
        check(kap_j.proc.alive(), "kaprobed died after a failed reopen")
        for name, kap in (("logfmt", kap_l), ("json", kap_j)):
            st = kap.stop()
            check(st == 0, "%s kaprobed exited with status %s" % (name, st))
    except CaseFailure as e:
        raise CaseFailure("%s\n%s" % (e, kap_j.report()))
    return "%d JSON lines, all valid; %d events of the connection equal to logfmt's (%s); " \
           "warning line is JSON" % (len(jlog.objs), len(js), " ".join(o["event"] for o in js))


# --------------------------------------------------------------------------------------
# (b) syslog: RFC 3164 datagrams on /dev/log, facility daemon

SYSLOG_RE = re.compile(r"<(\d+)>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) kaprobed\[(\d+)\]: (.*)")
FAC_DAEMON = 3
PRIO = {"dead": 4, "reset": 4, "probe": 7, "reply": 7}  # others 6 (info)


def case_syslog(ctx):
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    net = two_hosts(ctx.topo)
    sink = DgramSink(os.path.join(ctx.topo.tmp, "syslog.sock"))
    try:
        wrapper = mount_wrapper(ctx, "kaprobed-syslog.sh", [
            "mkdir $T/hostdev", "mount --bind /dev $T/hostdev",
            "mount -t tmpfs -o mode=755 kptdev /dev",
            "for n in null zero full random urandom; do touch /dev/$n; "
            "mount --bind $T/hostdev/$n /dev/$n; done",
            "umount $T/hostdev",
            "touch /dev/log", "mount --bind $T/syslog.sock /dev/log"])
        conf = conf_text("none", [svc_rule()], extra={"syslog": "yes"})
        kap = start(ctx, net["local"], conf, binary=wrapper)
        c = dead_scenario(ctx, net)

        def parsed(data):
            m = SYSLOG_RE.fullmatch(data.decode("utf-8", "replace"))
            return m

        def is_dead(data):
            m = parsed(data)
            if m and "event=dead" in m.group(4) and c.remote in m.group(4):
                return m
            return None
        sink.wait(is_dead, DEAD_AFTER + 3, "the dead line", kap.proc.alive)
        seen = {}
        for data in sink.all():
            m = parsed(data)
            check(m is not None, "datagram is not '<PRI>TIMESTAMP kaprobed[PID]: line': %r"
                  % data)
            pri, pid, line = int(m.group(1)), int(m.group(3)), m.group(4)
            check(pid == kap.proc.pid, "syslog pid %d, kaprobed is %d" % (pid, kap.proc.pid))
            f = parse_logfmt(line)
            if f.get("remote") != c.remote:
                continue
            ev = f.get("event")
            want = FAC_DAEMON * 8 + PRIO.get(ev, 6)
            check(pri == want, "event=%s has <%d>, expected <%d>: %r" % (ev, pri, want, data))
            check(line.startswith("ts=") and f.get("local") == c.local and f.get("rule") == "svc",
                  "line lacks ts/local/rule: %r" % line)
            seen[ev] = seen.get(ev, 0) + 1
        for ev in ("track", "idle", "probe", "dead"):
            check(ev in seen, "no event=%s datagram; got %s" % (ev, seen))
        check(seen["probe"] == PROBES, "expected %d probe datagrams, got %d" % (PROBES,
                                                                                 seen["probe"]))
        check(not os.path.exists(os.path.join(ctx.topo.tmp, "kaprobed.status.log")),
              "log_file = none, yet a status file was written")
        kap.stop_ok()
    finally:
        sink.close()
    return "datagrams on /dev/log: %s; <28> dead, <30> track/idle, <31> probe, " \
           "ident kaprobed[pid]" % " ".join("%s=%d" % kv for kv in sorted(seen.items()))


# --------------------------------------------------------------------------------------
# (c) journald native protocol on /run/systemd/journal/socket

def journal_fields(data):
    """Parses one native-protocol datagram: KEY=value\\n, or KEY\\n + le64 size + value + \\n."""
    out = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        eq = data.find(b"=", i, nl)
        if eq >= 0:
            out[data[i:eq].decode()] = data[eq + 1:nl].decode("utf-8", "replace")
            i = nl + 1
        else:
            key = data[i:nl].decode()
            n = struct.unpack("<Q", data[nl + 1:nl + 9])[0]
            out[key] = data[nl + 9:nl + 9 + n].decode("utf-8", "replace")
            check(data[nl + 9 + n:nl + 10 + n] == b"\n", "journal field %s: no newline" % key)
            i = nl + 10 + n
    return out


def case_journal(ctx):
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    net = two_hosts(ctx.topo)
    sink = DgramSink(os.path.join(ctx.topo.tmp, "journal.sock"))
    jdir = os.path.join(ctx.topo.tmp, "jdir")
    os.mkdir(jdir)
    os.chmod(jdir, 0o1777)
    jpath = os.path.join(jdir, "status.log")
    try:
        wrapper = mount_wrapper(ctx, "kaprobed-journal.sh", [
            "mount -t tmpfs -o mode=755 kptrun /run/systemd",
            "mkdir /run/systemd/journal", "touch /run/systemd/journal/socket",
            "mount --bind $T/journal.sock /run/systemd/journal/socket",
            # As under systemd: stderr is (here: stands for) the journal stream.
            "export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2)"])
        conf = conf_text(jpath, [svc_rule()], extra={"journal": "yes", "log_format": "json"})
        kap = start(ctx, net["local"], conf, binary=wrapper)
        jlog = JsonLog(jpath, kap.proc.alive)
        c = dead_scenario(ctx, net)

        def is_dead(data):
            f = journal_fields(data)
            return f if f.get("KAPROBE_EVENT") == "dead" else None
        sink.wait(is_dead, DEAD_AFTER + 3, "KAPROBE_EVENT=dead", kap.proc.alive)
        jlog.poll()
        lines = set(jlog.raw)
        got = {}
        for data in sink.all():
            f = journal_fields(data)
            check(f.get("SYSLOG_IDENTIFIER") == "kaprobed", "no SYSLOG_IDENTIFIER: %r" % f)
            check(f.get("MESSAGE") in lines, "MESSAGE is not a line of the status file: %r"
                  % f.get("MESSAGE"))
            o = json.loads(f["MESSAGE"])
            kf = {k: v for k, v in f.items() if k.startswith("KAPROBE_")}
            check(sorted(kf) == sorted("KAPROBE_" + k.upper() for k in o),
                  "KAPROBE_* fields %s do not match the line's keys %s" % (sorted(kf), list(o)))
            for k, v in o.items():
                jv = kf["KAPROBE_" + k.upper()]
                check(float(jv) == v if isinstance(v, (int, float)) else jv == v,
                      "KAPROBE_%s=%r, line has %r" % (k.upper(), kf["KAPROBE_" + k.upper()], v))
            if o.get("remote") == c.remote:
                ev = o["event"]
                want = PRIO.get(ev, 6)
                check(f.get("PRIORITY") == str(want), "event=%s PRIORITY=%s, expected %d" % (
                    ev, f.get("PRIORITY"), want))
                got[ev] = got.get(ev, 0) + 1
        for ev in ("track", "idle", "probe", "dead"):
            check(ev in got, "no KAPROBE_EVENT=%s entry; got %s" % (ev, got))
        # A warning reaches the journal too, with PRIORITY=4.
        os.rename(jdir, jdir + ".gone")
        signal_kap(kap, signal.SIGUSR1)
        w = sink.wait(lambda d: journal_fields(d) if journal_fields(d).get("KAPROBE_LEVEL")
                      == "warning" else None, 3, "KAPROBE_LEVEL=warning", kap.proc.alive)
        check(w.get("PRIORITY") == "4" and "reopening status log" in w.get("KAPROBE_MSG", ""),
              "warning entry: %r" % w)
        check(not [l for _, l in list(kap.proc.err) if "level=warning" in l],
              "with JOURNAL_STREAM naming stderr, the warning went to stderr as well:\n%s"
              % kap.proc.text("err"))
        kap.stop_ok()
    finally:
        sink.close()
    return "%d journal entries, MESSAGE = the JSON line, KAPROBE_* = its fields; %s; " \
           "warning PRIORITY=4 (not repeated on the journal's stderr)" % (len(sink.msgs), " ".join("%s=%d" % kv for kv in
                                                            sorted(got.items())))


# --------------------------------------------------------------------------------------
# (d) rotation under load: rename + SIGUSR1, and the real logrotate

LOAD_CONNS = 2500  # 5 000 lines (track + close) ...
LOAD_RATE = 1250   # ... over about 2 s
LINE_RE = re.compile(r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z event=(track|close) rule=svc "
                     r"local=192\.0\.2\.1:5432 remote=192\.0\.2\.2:(\d+)"
                     r"( reason=(fin|rst)| source=capture)?")


def logrotate_conf(ctx, log, pid):
    path = os.path.join(ctx.topo.tmp, "logrotate.conf")
    with open(path, "w") as f:
        f.write("%s {\n\tsu root root\n\trotate 20\n\tcreate 0640 %s %s\n\tmissingok\n"
                "\tpostrotate\n\t\tkill -USR1 %d\n\tendscript\n}\n" % (
                    log, RUN_USER, run(["id", "-gn", RUN_USER]).stdout.strip(), pid))
    os.chmod(path, 0o644)
    return path


def rotate(ctx, kap, n, conf):
    """Rotation n: by hand (rename + SIGUSR1), or (conf given) by logrotate -f.
    Returns when kaprobed has said it reopened the file (and, for logrotate, the stat of
    the file logrotate created)."""
    before = reopen_count(kap)
    created = None
    if conf:
        st = os.path.join(ctx.topo.tmp, "logrotate.state")
        p = run(["logrotate", "-f", "-s", st, conf], check=False)
        check(p.returncode == 0, "logrotate -f failed (%d): %s%s" % (p.returncode, p.stdout,
                                                                    p.stderr))
        created = os.stat(kap.log_path)
    else:
        check(os.path.exists(kap.log_path), "rotation %d: no new status file after the "
              "previous reopen" % n)
        os.rename(kap.log_path, "%s.manual%d" % (kap.log_path, n))
        signal_kap(kap, signal.SIGUSR1)
    deadline = time.monotonic() + 3
    while reopen_count(kap) <= before:
        check(time.monotonic() < deadline, "rotation %d: kaprobed did not reopen within 3 s"
              % n)
        check(kap.proc.alive(), "kaprobed exited during rotation %d" % n)
        time.sleep(0.005)
    return created


def proc_uid(pid):
    """The effective uid of a running process (the reopen runs as this user)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[2])
    return -1


def log_files(kap):
    d, base = os.path.split(kap.log_path)
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.startswith(base))


def wait_closed(kap, ports, timeout):
    """Waits until every port has its close line in one of the files (loosely read)."""
    want = set(ports)
    deadline = time.monotonic() + timeout
    while True:
        got = set()
        for path in log_files(kap):
            with open(path, "r", errors="replace") as f:
                for m in re.finditer(r"event=close rule=svc \S+ remote=\S+:(\d+)", f.read()):
                    got.add(int(m.group(1)))
        if want <= got:
            return
        if time.monotonic() >= deadline:
            fail("after %.0f s, %d of %d close lines are still missing" % (
                timeout, len(want - got), len(want)))
        time.sleep(0.05)


def count_lines(files):
    """Every line of every file: must match LINE_RE whole. Returns {(event, port): count}
    and the number of lines per file."""
    seen, per_file, torn = {}, {}, []
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            torn.append("%s does not end with a newline: %r" % (path, data[-80:]))
        lines = data.decode("utf-8", "replace").split("\n")[:-1] if data else []
        per_file[os.path.basename(path)] = len(lines)
        for l in lines:
            m = LINE_RE.fullmatch(l)
            if not m:
                torn.append("%s: %r" % (os.path.basename(path), l))
                continue
            key = (m.group(1), int(m.group(2)))
            seen[key] = seen.get(key, 0) + 1
    check(not torn, "%d torn or unexpected lines:\n%s" % (len(torn), "\n".join(torn[:20])))
    return seen, per_file


def case_rotate(ctx):
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    net = two_hosts(ctx.topo)
    a = net[4]
    rule = svc_rule(idle="60s", interval="10s")
    # log_alive = every: track and close lines of short-lived connections at info (the
    # load this case rotates under); the default (changes) writes nothing for them.
    kap = start(ctx, net["local"], conf_text("{log}", [rule], log_level="info",
                                             extra={"log_alive": "every"}))
    lr_conf = logrotate_conf(ctx, kap.log_path, kap.proc.pid)
    srv = ctx.topo.spawn(net["local"], [sys.executable, "-u", CONNLOAD, "server", a["local"],
                                        "5432"], "connload-server")
    srv.wait_line(lambda l: l == "listening", 5, "the load server")
    cli = ctx.topo.spawn(net["peer"], [sys.executable, "-u", CONNLOAD, "client", a["local"],
                                       "5432", str(LOAD_CONNS), str(LOAD_RATE)],
                         "connload-client")
    # Rotate only once the load is on (the client takes a moment to start).
    kap.log.wait(lambda e: e.idx >= 20, 5, "the first 20 lines of the load", kap.proc.alive)
    rotations = []
    created = None
    while cli.alive() or not rotations:
        n = len(rotations) + 1
        created = rotate(ctx, kap, n, lr_conf if n == 3 else None) or created
        rotations.append(time.time())
        time.sleep(0.15)
    _, done = cli.wait_line(lambda l: l.startswith("done ") or l.startswith("error"), 10,
                            "the load client")
    check(done.startswith("done "), "load client: %s" % done)
    ports = [int(p) for p in re.search(r"ports=(\S+)", done).group(1).split(",")]
    t_end = float(re.search(r" t=(\S+)", done).group(1))
    check(len(set(ports)) == len(ports), "harness: the client reused a local port")
    during = [t for t in rotations if t < t_end]
    check(len(during) >= 4,
          "only %d rotations happened while the load ran (need >= 4, incl. logrotate)"
          % len(during))
    check(created is not None, "logrotate never ran during the load")
    uid = proc_uid(kap.proc.pid)
    wait_closed(kap, ports, 5)
    kap.stop_ok()
    files = log_files(kap)
    seen, per_file = count_lines(files)
    missing = [(ev, p) for p in ports for ev in ("track", "close") if seen.get((ev, p)) != 1]
    extra = [k for k in seen if k[1] not in set(ports)]
    check(not missing, "%d expected lines missing or repeated, e.g. %s" % (
        len(missing), ", ".join("%s port %d x%d" % (e, p, seen.get((e, p), 0))
                                for e, p in missing[:10])))
    check(not extra, "lines of unknown connections: %s" % extra[:10])
    empty = [f for f, n in per_file.items() if n == 0]
    check(not empty, "rotated files without a line (reopen did not take effect?): %s "
          "(lines per file: %s)" % (empty, per_file))
    check(len(files) == len(rotations) + 1, "expected %d files, found %s" % (
        len(rotations) + 1, per_file))
    total = sum(per_file.values())
    check(total >= 1000, "only %d lines written (need >= 1000)" % total)
    return "%d lines (%d connections x track+close) across %d files, %d rotations during " \
           "load (one by logrotate -f, new file mode %o uid %d), each line exactly once, " \
           "none torn; kaprobed ran as uid %d" % (total, len(ports), len(files), len(during),
                                                 created.st_mode & 0o777, created.st_uid, uid)


# --------------------------------------------------------------------------------------
# The shipped logrotate file

def case_logrotate_conf(ctx):
    src = os.path.join(REPO, "conf", "logrotate.d", "kaprobe")
    check(os.path.exists(src), "conf/logrotate.d/kaprobe is missing")
    with open(src) as f:
        text = f.read()
    for d in ("daily", "rotate 14", "compress", "delaycompress", "missingok", "notifempty",
              "create 0640 kaprobe adm", "postrotate", "USR1"):
        check(d in text, "conf/logrotate.d/kaprobe lacks %r" % d)
    note = ""
    if run(["id", "kaprobe"], check=False).returncode != 0:
        # logrotate refuses a create line naming an unknown user: check with nobody.
        text = text.replace("create 0640 kaprobe adm", "create 0640 %s adm" % RUN_USER)
        note = " (user kaprobe absent here: checked with %s)" % RUN_USER
    path = os.path.join(ctx.topo.tmp, "kaprobe.logrotate")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    p = run(["logrotate", "-d", "-s", os.path.join(ctx.topo.tmp, "state"), path], check=False)
    out = p.stdout + p.stderr
    errors = [l for l in out.splitlines() if l.startswith("error")]
    check(p.returncode == 0 and not errors, "logrotate -d: exit %d\n%s" % (p.returncode, out))
    check("rotating pattern: /var/log/kaprobe/*.log" in out and "14 rotations" in out,
          "logrotate -d did not read the expected rule:\n%s" % out)
    script = re.search(r"postrotate\n(.*?)\n\s*endscript", text, re.S).group(1)
    p = run(["sh", "-n", "-c", script], check=False)
    check(p.returncode == 0, "postrotate script is not valid sh: %s" % p.stderr)
    return "logrotate -d accepts it%s; postrotate parses" % note


# Issue 8: the status log grows with what happens, not with connections or rounds. At info
# with log_alive = changes (the default): a healthy idle connection writes one track line
# (at its first idle time) and nothing for its rounds; hundreds of short-lived connections
# write nothing; a silenced one writes track and dead.
POLICY_SHORT = 400


def case_log_policy(ctx):
    from test_cases import nft_drop_port
    net = two_hosts(ctx.topo)
    a = net[4]
    rules = [("svc", {"local": "*:5432-5434", "remote": "*", "idle": "1s",
                      "interval": "500ms", "probes": 3})]
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    kap = start(ctx, net["local"], conf_text("{log}", rules, log_level="info"))
    srv = ctx.topo.spawn(net["local"], [sys.executable, "-u", CONNLOAD, "server", a["local"],
                                        "5434"], "connload-server")
    srv.wait_line(lambda l: l == "listening", 5, "the load server")
    healthy = connect(ctx, net, 4, 5432, "-h")
    healthy.exchange()
    silent = connect(ctx, net, 4, 5433, "-s")
    silent.exchange()
    nft_drop_port(ctx, net["peer"], 5433)
    cli = ctx.topo.spawn(net["peer"], [sys.executable, "-u", CONNLOAD, "client", a["local"],
                                       "5434", str(POLICY_SHORT), "400"], "connload-client")
    _, done = cli.wait_line(lambda l: l.startswith("done ") or l.startswith("error"), 20,
                            "the load client")
    check(done.startswith("done "), "load client: %s" % done)
    kap.log.wait_conn(silent.local, silent.remote, "dead", DEAD_AFTER + 3)
    # An observation window, not a wait for an event: two more rounds of the healthy
    # connection, during which nothing may be written for it.
    time.sleep(2.0)
    kap.stop_ok()
    kap.log.poll()
    evs = [e for e in kap.log.events if "event" in e and e.get("event") != "summary"]
    h = [e["event"] for e in evs if e.get("remote") == healthy.remote]
    sl = [e["event"] for e in evs if e.get("remote") == silent.remote]
    check(h == ["track"], "healthy idle connection: expected one track line, got %s" % h)
    check(sl == ["track", "dead"], "silenced connection: expected track, dead, got %s" % sl)
    others = [e.raw for e in evs if e.get("remote") not in (healthy.remote, silent.remote)]
    check(not others, "%d lines for the %d short-lived connections, e.g. %s" % (
        len(others), POLICY_SHORT, others[:2]))
    return "info, log_alive = changes: %d short-lived connections 0 lines; a healthy idle " \
        "one 1 line (track) over its rounds; a silenced one 2 (track, dead)" % POLICY_SHORT


# --------------------------------------------------------------------------------------
# observe = yes: the would-probe line, nothing on the wire, no verdict; probed after a reload

OBS_PORT, LIVE_PORT = 5440, 5441


def nft_count_from(ctx, ns, ports):
    """In ns (the peer's): counts every TCP segment arriving from each server port, ahead of
    any drop rule (priority -20), so that what was sent is counted even when silenced."""
    ctx.topo.nft(ns, "\n".join(
        ["add table inet kptcount",
         "add chain inet kptcount in_c { type filter hook input priority -20; policy accept; }"] +
        ["add rule inet kptcount in_c tcp sport %d counter" % p for p in ports] + [""]))


def nft_counts(ns):
    """{port: packets} of nft_count_from's counters."""
    out = run(["nft", "list", "table", "inet", "kptcount"], ns=ns).stdout
    return {int(m.group(1)): int(m.group(2)) for m in
            re.finditer(r"tcp sport (\d+) counter packets (\d+)", out)}


def observe_rules(observe):
    timing = {"idle": "1s", "interval": "500ms", "probes": PROBES}
    return [("obs", dict({"local": "*:%d" % OBS_PORT, "remote": "*", "observe": observe},
                         **timing)),
            ("live", dict({"local": "*:%d" % LIVE_PORT, "remote": "*"}, **timing))]


def case_observe(ctx):
    net = two_hosts(ctx.topo)
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    extra = {"summary_interval": "1s", "on_dead": "rst"}
    kap = start(ctx, net["local"], conf_text("{log}", observe_rules("yes"), log_level="info",
                                             extra=extra))
    nft_count_from(ctx, net["peer"], (OBS_PORT, LIVE_PORT))
    obs = connect(ctx, net, 4, OBS_PORT, "-o")
    live = connect(ctx, net, 4, LIVE_PORT, "-l")
    obs.exchange()
    t_last = live.exchange()
    time.sleep(0.2)  # the last ACKs of the exchanges
    base = nft_counts(net["peer"])
    nft_drop_all(ctx, net["peer"])  # both peers silent from now on
    idle = kap.log.wait_conn(obs.local, obs.remote, "idle", IDLE + 3)
    check(idle.get("observe") == "1", "observed idle line without observe=1: " + idle.raw)
    kap.log.wait_conn(live.local, live.remote, "dead", DEAD_AFTER + 3)
    # An observation window: two more idle periods of silence, in which the observed
    # connection may write nothing more (one idle line per silence) and get no verdict.
    time.sleep(2 * IDLE + 0.5)
    sent = nft_counts(net["peer"])
    o_sent, l_sent = sent[OBS_PORT] - base[OBS_PORT], sent[LIVE_PORT] - base[LIVE_PORT]
    check(o_sent == 0, "%d segments reached the observed connection's peer" % o_sent)
    check(l_sent >= PROBES, "only %d segments reached the probed connection's peer "
          "(expected its %d probes)" % (l_sent, PROBES))
    kap.log.poll()
    o_evs = [e.get("event") for e in obs.events(kap.log)]
    l_evs = [e.get("event") for e in live.events(kap.log)]
    check(o_evs == ["track", "idle"], "observed connection: expected track, idle; got %s" % o_evs)
    check(l_evs[:1] == ["track"] and "dead" in l_evs and "action" in l_evs,
          "probed connection: expected track, dead, action; got %s" % l_evs)
    summ = [e for e in kap.log.events if e.get("event") == "summary"]
    check(summ and summ[-1].get("observed") == "1",
          "summary: expected observed=1, got %s" % (summ[-1].raw if summ else None))
    # observe = no: the same connection is probed at once (overdue) and judged.
    mark = kap.log.events[-1]
    with open(kap.conf_path + ".new", "w") as f:
        f.write(conf_text(kap.log_path, observe_rules("no"), log_level="info", extra=extra)
                .replace("{tmp}", ctx.topo.tmp))
    os.rename(kap.conf_path + ".new", kap.conf_path)
    t_reload = time.time()
    signal_kap(kap, signal.SIGHUP)
    d = kap.log.wait_conn(obs.local, obs.remote, "dead", INTERVAL * PROBES + 3, after=mark)
    reprobed = nft_counts(net["peer"])[OBS_PORT] - sent[OBS_PORT]
    check(reprobed >= PROBES, "after observe = no: %d segments reached the peer" % reprobed)
    kap.stop_ok()
    return "observe = yes: one idle observe=1 line, 0 segments to the peer, no verdict in " \
        "%.1f s of silence (the other rule: %d segments, dead, rst); after a reload to no: " \
        "%d segments, dead %.1f s after the reload" % (
            t_reload - t_last, l_sent, reprobed, d.t - t_reload)


CASES = [
    ("log_policy", case_log_policy),
    ("observe", case_observe),
    ("logs_json", case_json),
    ("logs_syslog", case_syslog),
    ("logs_journal", case_journal),
    ("logs_rotate", case_rotate),
    ("logs_logrotate_conf", case_logrotate_conf),
]

"""kaprobe integration cases for running as a service: the privilege drop, start-up as the
systemd unit would do it (User= + AmbientCapabilities, under its SystemCallFilter's
list), sd_notify, and make install / uninstall.

These run without a systemd: the unit is checked with `systemd-analyze verify` and
`security --offline`, its start is emulated with setpriv (same uid, groups, capability
sets), its system call filter is compared with what kaprobed really calls (strace), and a
Python AF_UNIX datagram socket stands in for NOTIFY_SOCKET. test_systemd.py runs the
real unit under a real systemd (booted in a container).
"""

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

from netns import (REPO, RUN_USER, CaseSkip, check, conf_text, fail, run, svc_rule,
                   two_hosts)
from test_cases import DEAD_AFTER, IDLE, connect

CAP_NET_ADMIN, CAP_NET_RAW = 12, 13
KEPT = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW)
UNIT = os.path.join(REPO, "systemd", "kaprobed.service")


def proc_status(pid):
    """Fields of /proc/PID/status as a dict of strings."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def check_unprivileged(pid, user, what):
    """Every thread of pid: all uids/gids of user, no group 0, CapPrm = CapEff = CapBnd =
    NET_RAW + NET_ADMIN exactly, CapInh = CapAmb = 0, no_new_privs. Returns a summary."""
    pw = pwd.getpwnam(user)
    tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
    for tid in tids:
        try:
            st = proc_status(tid)
        except FileNotFoundError:
            continue  # a short-lived thread (a discovery dump, a file commit) just ended
        uids, gids = st["Uid"].split(), st["Gid"].split()
        check(uids == [str(pw.pw_uid)] * 4, "%s: thread %d Uid is %s, expected %d x4 (%s)" % (
            what, tid, st["Uid"], pw.pw_uid, user))
        check(gids == [str(pw.pw_gid)] * 4, "%s: thread %d Gid is %s, expected %d x4" % (
            what, tid, st["Gid"], pw.pw_gid))
        check("0" not in st["Groups"].split(), "%s: supplementary group 0: %s" % (
            what, st["Groups"]))
        caps = {k: int(st[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
        want = {"CapInh": 0, "CapPrm": KEPT, "CapEff": KEPT, "CapBnd": KEPT, "CapAmb": 0}
        bad = ["%s=%016x (expected %016x)" % (k, caps[k], want[k]) for k in want
               if caps[k] != want[k]]
        check(not bad, "%s: thread %d capabilities: %s" % (what, tid, ", ".join(bad)))
        check(st.get("NoNewPrivs") == "1", "%s: NoNewPrivs is %s" % (what, st.get("NoNewPrivs")))
    return "uid/gid %d/%d, CapPrm=CapEff=CapBnd=%04x, CapInh=CapAmb=0, %d thread(s)" % (
        pw.pw_uid, pw.pw_gid, KEPT, len(tids))


def probe_alive(ctx, net, kap):
    """A connection through the rule goes idle and is found alive."""
    c = connect(ctx, net, 4)
    c.exchange()
    kap.log.wait_conn(c.local, c.remote, "idle", IDLE + 3)
    return kap.log.wait_conn(c.local, c.remote, "alive", DEAD_AFTER + 2)


# --------------------------------------------------------------------------------------
# Privilege drop, started as root

def case_privdrop(ctx):
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    net = two_hosts(ctx.topo)
    tmp = ctx.topo.tmp
    conf = conf_text("{log}", [svc_rule()],
                     extra={"state_file": "{tmp}/run/sub/state.json",
                            "metrics_file": "{tmp}/metrics/kaprobe.prom"})
    ctx.kap = kap = ctx.topo.kaprobed(ctx.binary, net["local"], conf)
    summary = check_unprivileged(kap.proc.pid, RUN_USER, "loop process")
    pw = pwd.getpwnam(RUN_USER)
    for d in ("run", "run/sub", "metrics"):
        st = os.stat(os.path.join(tmp, d))
        check(st.st_uid == pw.pw_uid and st.st_mode & 0o7777 == 0o755,
              "%s/%s: expected a directory of %s with mode 0755, got uid %d mode %o" % (
                  tmp, d, RUN_USER, st.st_uid, st.st_mode & 0o7777))
    st = os.stat(kap.log_path)
    check(st.st_uid == pw.pw_uid, "status log owned by uid %d, not %s" % (st.st_uid, RUN_USER))
    check(re.search(r'running as user %s \(uid %d, gid %d\), capabilities '
                    r'cap_net_admin,cap_net_raw=ep' % (RUN_USER, pw.pw_uid, pw.pw_gid),
                    kap.proc.text("err")), "no 'running as user' line on stderr")
    a = probe_alive(ctx, net, kap)
    kap.stop_ok()
    return "%s; directories made for the user; still probes (alive rtt=%s ms)" % (
        summary, a["rtt"])


def start_fail(ctx, ns, conf, name):
    path = os.path.join(ctx.topo.tmp, name + ".ini")
    with open(path, "w") as f:
        f.write(conf.replace("{log}", os.path.join(ctx.topo.tmp, name + ".log"))
                .replace("{tmp}", ctx.topo.tmp))
    try:
        return run([ctx.binary, "-c", path], ns=ns, check=False, timeout=5)
    except subprocess.TimeoutExpired:  # run() killed it
        fail("%s: kaprobed was still running after 5 s (expected exit status 1)" % name)


def case_nouser(ctx):
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    net = two_hosts(ctx.topo)
    missing = "kaprobe-no-such-user"
    conf = conf_text("{log}", [svc_rule()]).replace("user = %s" % RUN_USER,
                                                    "user = %s" % missing)
    p = start_fail(ctx, net["local"], conf, "missing")
    check(p.returncode == 1, "user = %s: exit status %d, expected 1\nstderr: %s" % (
        missing, p.returncode, p.stderr))
    want = 'user \\"%s\\" (user = in [global]) does not exist' % missing
    check(want in p.stderr, "stderr lacks %r:\n%s" % (want, p.stderr))
    check('msg="started"' not in p.stderr, "it started anyway:\n%s" % p.stderr)
    # Without user = in the file: the default "kaprobe", or "nobody" with a warning.
    conf = conf_text("{log}", [svc_rule()]).replace("user = %s\n" % RUN_USER, "")
    ctx.kap = kap = ctx.topo.kaprobed(ctx.binary, net["local"], conf)
    try:
        expect = pwd.getpwnam("kaprobe").pw_name
        fallback = "user kaprobe exists: runs as kaprobe"
    except KeyError:
        expect = "nobody"
        check('user \\"kaprobe\\" does not exist: running as \\"nobody\\"' in
              kap.proc.text("err"), "no fallback warning on stderr")
        fallback = "no user kaprobe: warned, runs as nobody"
    check_unprivileged(kap.proc.pid, expect, "default user")
    kap.stop_ok()
    return "missing user = %s: exit 1 with %r; %s" % (missing, want.replace("\\", ""),
                                                       fallback)


# --------------------------------------------------------------------------------------
# Started the way the unit starts it (User=, AmbientCapabilities=), under strace

def filter_syscalls():
    """The set of system calls the unit's SystemCallFilter= lines allow."""
    groups = {}

    def expand(name):
        if not name.startswith("@"):
            return {name}
        if name not in groups:
            out = run(["systemd-analyze", "syscall-filter", "--no-pager", name]).stdout
            members = set()
            for line in out.splitlines()[1:]:
                line = line.strip()
                if line and not line.startswith("#"):
                    members |= expand(line)
            groups[name] = members
        return groups[name]

    allowed = None
    with open(UNIT) as f:
        for line in f:
            m = re.match(r"SystemCallFilter=(~?)(.*)", line.strip())
            if not m:
                continue
            names = set()
            for n in m.group(2).split():
                names |= expand(n)
            if allowed is None:
                check(not m.group(1), "the unit's first SystemCallFilter= is a deny list")
                allowed = names
            elif m.group(1):
                allowed -= names
            else:
                allowed |= names
    check(allowed, "the unit has no SystemCallFilter=")
    return allowed


def case_unitlike(ctx):
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    for tool in ("setpriv", "strace", "systemd-analyze"):
        if not shutil.which(tool):
            raise CaseSkip("%s is not installed" % tool)
    allowed = filter_syscalls()
    for must in ("socket", "setsockopt", "sendto", "recvfrom", "capset", "prctl"):
        check(must in allowed, "the unit's filter does not allow %s" % must)
    for never in ("setresuid", "setuid", "setgroups", "setrlimit", "chown"):
        check(never not in allowed, "the unit's filter allows %s" % never)
    net = two_hosts(ctx.topo)
    trace = os.path.join(ctx.topo.tmp, "strace.out")
    wrapper = os.path.join(ctx.topo.tmp, "as-unit.sh")
    caps = "+net_raw,+net_admin"
    tmp = ctx.topo.tmp
    setpriv = ("setpriv --reuid=%s --regid=%d --init-groups --inh-caps=%s --ambient-caps=%s "
               "--bounding-set=-all,%s --no-new-privs" % (
                   RUN_USER, pwd.getpwnam(RUN_USER).pw_gid, caps, caps, caps))
    with open(wrapper, "w") as f:
        # What systemd does for the unit, approximately: a private mount namespace with a
        # /dev of pseudo devices only (PrivateDevices=), the root read-only but for the
        # test's directory (ProtectSystem=strict + LogsDirectory=); User=nobody,
        # AmbientCapabilities=, CapabilityBoundingSet=, NoNewPrivileges= (setpriv).
        # LeakSanitizer (SANITIZE=1) cannot run under ptrace.
        f.write("""#!/bin/sh
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
exec unshare -m sh -c '
set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755 kaprobe-dev /dev
for d in null:3 zero:5 full:7 random:8 urandom:9; do
  mknod -m 0666 /dev/${d%%:*} c 1 ${d#*:}
done
mount --bind %s %s
mount -o remount,bind,ro /
exec strace -f -qq -o %s %s %s "$@"' kaprobed "$@"
""" % (tmp, tmp, trace, setpriv, ctx.binary))
    os.chmod(wrapper, 0o755)
    ctx.kap = kap = ctx.topo.kaprobed(wrapper, net["local"],
                                      conf_text("{log}", [svc_rule()]), timeout=10)
    with open("/proc/%d/task/%d/children" % (kap.proc.pid, kap.proc.pid)) as f:
        pid = int(f.read().split()[0])
    try:
        summary = check_unprivileged(pid, RUN_USER, "kaprobed started as the unit would")
        with open("/proc/%d/mountinfo" % pid) as f:
            root = [l.split() for l in f if l.split()[4] == "/"][-1]
        devs = sorted(os.listdir("/proc/%d/root/dev" % pid))
        check(root[5].split(",")[0] == "ro" and devs == ["full", "null", "random", "urandom",
                                                          "zero"],
              "sandbox not in place: / mounted %s, /dev holds %s" % (root[5], devs))
        check("CAP_NET_RAW" not in kap.proc.text("err"), "warned about CAP_NET_RAW:\n%s"
              % kap.proc.text("err"))
        a = probe_alive(ctx, net, kap)
        n = len(kap.proc.err)
        os.kill(pid, signal.SIGHUP)  # the reload path runs under the filter too
        kap.proc.wait_line(lambda l: True, 3, "a line after SIGHUP", stream="err", start=n)
        os.kill(pid, signal.SIGTERM)  # strace would only detach on SIGTERM
        kap.proc.p.wait(5)
        kap.stop_ok()
    finally:
        # strace does not take its tracee along when it is killed: never leave it running.
        with contextlib.suppress(OSError):
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if f.read().split(b"\0")[0] == ctx.binary.encode():
                    os.kill(pid, signal.SIGKILL)
    used, started = set(), False
    with open(trace) as f:
        for line in f:
            if not started:
                started = re.search(r'execve\("%s"' % re.escape(ctx.binary), line)
                continue
            m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
            if m:
                used.add(m.group(1))
    check(started and used, "strace saw no execve of kaprobed")
    denied = sorted(used - allowed)
    check(not denied, "kaprobed made system calls the unit's SystemCallFilter denies: %s"
          % ", ".join(denied))
    return "%s; read-only root, minimal /dev; alive rtt=%s ms; its %d distinct system " \
           "calls are all allowed by the unit's filter" % (summary, a["rtt"], len(used))


# --------------------------------------------------------------------------------------
# sd_notify, with a socket standing in for systemd's

class NotifySocket:
    """A bound AF_UNIX datagram socket with SO_PASSCRED; a thread collects
    (time, pid, uid, {key: value}) per message."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        os.chmod(path, 0o777)  # kaprobed sends after dropping to an unprivileged user
        self.sock.settimeout(0.1)
        self.msgs = []
        self.cond = threading.Condition()
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while self.running:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = uid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid, uid, _ = struct.unpack("iII", payload[:12])
            kv = dict(l.split("=", 1) for l in data.decode().split("\n") if "=" in l)
            with self.cond:
                self.msgs.append((time.monotonic(), pid, uid, kv))
                self.cond.notify_all()

    def wait(self, key, timeout, start=0):
        """Index and message of the first message from index start having key."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.msgs)):
                    if key in self.msgs[i][3]:
                        return i, self.msgs[i]
                left = deadline - time.monotonic()
                if left <= 0:
                    fail("timed out after %.1f s waiting for %s= on NOTIFY_SOCKET; got: %s" % (
                        timeout, key, [m[3] for m in self.msgs]))
                self.cond.wait(left)

    def close(self):
        self.running = False
        self.thread.join(1)
        self.sock.close()


@contextlib.contextmanager
def environ(**kv):
    """Sets environment variables for the processes started inside the block."""
    old = {k: os.environ.get(k) for k in kv}
    os.environ.update(kv)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def case_notify(ctx):
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    net = two_hosts(ctx.topo)
    ns = NotifySocket(os.path.join(ctx.topo.tmp, "notify.sock"))
    try:
        with environ(NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="1000000"):
            ctx.kap = kap = ctx.topo.kaprobed(ctx.binary, net["local"],
                                              conf_text("{log}", [svc_rule()]))
        return notify_checks(ctx, net, kap, ns)
    finally:
        ns.close()


def notify_checks(ctx, net, kap, ns):
    pid, nobody = kap.proc.pid, pwd.getpwnam(RUN_USER).pw_uid
    i, (_, spid, suid, ready) = ns.wait("READY", 5)
    check(i == 0, "READY=1 is not the first message: %s" % [m[3] for m in ns.msgs])
    check(ready["READY"] == "1" and spid == pid, "bad READY message %s from pid %s" % (
        ready, spid))
    # Sent by the loop after start-up: captures and sockets open, privileges dropped.
    check(suid == nobody, "READY=1 sent by uid %s, i.e. before the privilege drop" % suid)
    check('msg="started"' in kap.proc.text("err"), "READY=1 but no msg=\"started\"")
    check(ready.get("STATUS") == "0 connections tracked, 0 probes sent, 0 dead",
          "READY=1 carries STATUS=%r" % ready.get("STATUS"))
    j, (t1, _, _, _) = ns.wait("WATCHDOG", 3)
    k, (t2, _, _, _) = ns.wait("WATCHDOG", 3, j + 1)
    check(0.3 <= t2 - t1 <= 0.8, "WATCHDOG=1 every %.3f s; WATCHDOG_USEC=1 s asks for about "
          "0.5 s" % (t2 - t1))
    c = connect(ctx, net, 4)
    c.exchange()
    kap.log.wait_conn(c.local, c.remote, "track", 3)
    n0 = len(ns.msgs)
    os.kill(pid, signal.SIGHUP)
    r, (_, _, _, rel) = ns.wait("RELOADING", 3, n0)
    check(int(rel.get("MONOTONIC_USEC", "0")) > 0, "RELOADING=1 without MONOTONIC_USEC: %s"
          % rel)
    _, (_, _, _, again) = ns.wait("READY", 3, r + 1)
    check(again.get("STATUS", "").startswith("1 connection tracked"),
          "READY=1 after the reload carries STATUS=%r" % again.get("STATUS"))
    n1 = len(ns.msgs)
    kap.stop_ok()
    ns.wait("STOPPING", 2, n1)
    return "READY=1 (uid %d, STATUS=%r) after start-up; WATCHDOG=1 every %.2f s; SIGHUP: " \
           "RELOADING=1 then READY=1 (%r); STOPPING=1" % (
               suid, ready["STATUS"], t2 - t1, again["STATUS"])


# --------------------------------------------------------------------------------------
# make install / uninstall

def make(args, cwd=REPO):
    p = subprocess.run(["make", "--no-print-directory"] + args, cwd=cwd, capture_output=True,
                       text=True, timeout=120,
                       env=dict(os.environ, MAKEFLAGS="", MAKELEVEL=""))
    check(p.returncode == 0, "make %s failed (%d):\n%s%s" % (" ".join(args), p.returncode,
                                                            p.stdout, p.stderr))
    return p.stdout


def tree(root):
    out = set()
    for d, _, files in os.walk(root):
        for f in files:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


def case_install(ctx):
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    build = os.path.relpath(os.path.dirname(os.path.realpath(ctx.binary)), REPO)
    if build.startswith(".."):
        raise CaseSkip("kaprobed %s is not built in this tree" % ctx.binary)
    dest = os.path.join(ctx.topo.tmp, "root")
    args = ["DESTDIR=" + dest, "PREFIX=/usr", "BUILD=" + build]
    if os.path.basename(build) == "san":
        args.append("SANITIZE=1")  # so that `install: all` finds everything up to date
    make(["install"] + args)
    expect = {"usr/sbin/kaprobed", "etc/kaprobe/kaprobed.ini",
              "lib/systemd/system/kaprobed.service", "usr/share/man/man8/kaprobed.8",
              "usr/share/man/man5/kaprobed.ini.5"}
    if os.path.exists(os.path.join(REPO, "conf/logrotate.d/kaprobe")):
        expect.add("etc/logrotate.d/kaprobe")
    got = tree(dest)
    check(got == expect, "installed tree differs: missing %s, extra %s" % (
        sorted(expect - got), sorted(got - expect)))
    check(os.access(os.path.join(dest, "usr/sbin/kaprobed"), os.X_OK), "kaprobed not executable")
    unit = os.path.join(dest, "lib/systemd/system/kaprobed.service")
    with open(unit) as f:
        text = f.read()
    check("ExecStart=/usr/sbin/kaprobed -c /etc/kaprobe/kaprobed.ini" in text and "@" not in
          text.replace("@system-service", "").replace("@privileged", "").replace(
              "@resources", ""), "unit's paths not substituted:\n%s" % text)
    ini = os.path.join(dest, "etc/kaprobe/kaprobed.ini")
    p = run([os.path.join(dest, "usr/sbin/kaprobed"), "-n", "-c", ini], check=False)
    check(p.returncode == 0 and "configuration OK" in p.stdout,
          "installed kaprobed.ini: %s%s" % (p.stdout, p.stderr))
    # verify needs ExecStart's binary at its path (--root lacks the rest of the system):
    # a copy of the installed unit pointing into DESTDIR.
    vdir = os.path.join(ctx.topo.tmp, "verify")
    os.mkdir(vdir)
    with open(os.path.join(vdir, "kaprobed.service"), "w") as f:
        f.write(text.replace("/usr/sbin/kaprobed", os.path.join(dest, "usr/sbin/kaprobed")))
    p = run(["systemd-analyze", "verify", "--man=no", os.path.join(vdir, "kaprobed.service")],
            check=False)
    check(p.returncode == 0 and not p.stderr.strip(), "systemd-analyze verify: %d\n%s%s" % (
        p.returncode, p.stdout, p.stderr))
    sec = run(["systemd-analyze", "security", "--offline=true", unit], check=False)
    score = re.search(r"Overall exposure level for kaprobed.service: ([\d.]+ \w+)", sec.stdout)
    check(score, "systemd-analyze security printed no score:\n%s" % sec.stdout[-500:])
    for page in ("usr/share/man/man8/kaprobed.8", "usr/share/man/man5/kaprobed.ini.5"):
        p = run(["mandoc", "-T", "lint", "-W", "warning", os.path.join(dest, page)], check=False)
        check(p.returncode == 0 and not (p.stdout + p.stderr).strip(),
              "mandoc -T lint %s:\n%s%s" % (page, p.stdout, p.stderr))
        if shutil.which("groff"):
            p = run(["groff", "-ww", "-man", "-z", os.path.join(dest, page)], check=False)
            check(p.returncode == 0 and not p.stderr.strip(), "groff -ww %s:\n%s" % (
                page, p.stderr))
        p = subprocess.run(["man", "-l", os.path.join(dest, page)], capture_output=True,
                           text=True, timeout=20, env=dict(os.environ, MANPAGER="cat",
                                                           MANWIDTH="80"))
        check(p.returncode == 0 and "SEE ALSO" in p.stdout and "\n.TH" not in p.stdout,
              "man -l %s did not render:\n%s" % (page, (p.stdout + p.stderr)[-500:]))
    # An operator's change survives a second install and the uninstall.
    with open(ini, "a") as f:
        f.write("; changed by the operator\n")
    out = make(["install"] + args)
    check("keeping" in out, "second install did not say it keeps kaprobed.ini:\n%s" % out)
    with open(ini) as f:
        check(f.read().endswith("; changed by the operator\n"), "install overwrote kaprobed.ini")
    make(["uninstall"] + args)
    left = tree(dest)
    check(left == {"etc/kaprobe/kaprobed.ini"}, "after uninstall: %s left" % sorted(left))
    # Unchanged, it goes too.
    shutil.copy(os.path.join(REPO, "conf/kaprobed.ini"), ini)
    make(["uninstall"] + args)
    check(not tree(dest), "after uninstall of an unchanged config: %s left" % sorted(tree(dest)))
    return "%d files under DESTDIR; verify clean; security %s; man pages lint-clean; a " \
           "changed kaprobed.ini kept by install and uninstall" % (len(expect), score.group(1))


CASES = [
    ("service_privdrop", case_privdrop),
    ("service_nouser", case_nouser),
    ("service_unitlike", case_unitlike),
    ("service_notify", case_notify),
    ("service_install", case_install),
]

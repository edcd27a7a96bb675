"""kaprobe integration case: the unit as shipped, under a real systemd.

`make install DESTDIR=` into a staging tree, a throw-away root built from it (the host's
/usr bind-mounted read-only, a copy of /etc), and one boot of systemd as PID 1 in a
container (systemd-nspawn, private network: loopback only). The boot unit runs
systemd_inside.py, which drives kaprobed.service with systemctl and writes one JSON line
per check to a bind-mounted directory; this side reads them. See ARCHITECTURE.md,
Platform facts, "Test machine".

The unit file is the installed one, byte for byte; a drop-in only shortens WatchdogSec
and RestartSec (and, for a sanitized build, turns LeakSanitizer off: it needs ptrace,
which the unit's system call filter forbids).
"""

import json
import os
import shutil
import signal
import subprocess
import time

from netns import HERE, REPO, CaseSkip, check, fail, run
from test_service import make

NSPAWN = "systemd-nspawn"
BOOT_TIMEOUT = 120

# The test's configuration: a rule for the container's loopback port 5432, short timers,
# the journal besides the status log, and the two actions that need something of the
# sandbox (close: CAP_NET_ADMIN; exec: fork, setsid, capset, execve).
CONFIG = """\
[global]
interface = any
journal = yes
log_level = info
discover_interval = 2s

[svc]
local = 127.0.0.1:5432
remote = 127.0.0.1
idle = 1s
interval = 500ms
probes = 2
on_dead = log, close, exec:/opt/kaprobe-test/hook

# A gateway rule (nothing is forwarded here): kaprobed installs its nftables table under
# the unit's sandbox (CAP_NET_ADMIN, AF_NETLINK) and deletes it at stop.
[gw]
mode = gateway
client = *
server = *:6543
"""

# Records who it ran as and with which capabilities (/run/kaprobe: the RuntimeDirectory,
# writable by the run user under ProtectSystem=strict).
HOOK = """\
#!/bin/sh
{ echo "KAPROBE_EVENT: $KAPROBE_EVENT"
  echo "Pid: $$"
  echo "Session: $(cut -d' ' -f6 /proc/$$/stat)"
  grep -E '^(Uid|Gid|Cap[A-Za-z]+|NoNewPrivs|Seccomp):' /proc/$$/status
} > /run/kaprobe/hook.tmp && mv /run/kaprobe/hook.tmp /run/kaprobe/hook.out
"""

# Shortened only where the shipped unit sets them: a unit that lost its WatchdogSec= must
# fail the watchdog checks, not be rescued by the drop-in.
SHORTER = {"WatchdogSec": "3s", "RestartSec": "500ms"}

BOOT_UNIT = """\
[Unit]
Description=kaprobe test driver
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
TimeoutStartSec=%d
ExecStart=/usr/bin/python3 /opt/kaprobe-test/inside.py
""" % (BOOT_TIMEOUT - 10)


def nspawn_usable():
    """None, or why systemd-nspawn cannot boot a container here."""
    if not shutil.which(NSPAWN):
        # Debian's systemd-container: tests/deps.sh installs it; try once more here.
        p = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                            "systemd-container"], capture_output=True, text=True,
                           timeout=300, env=dict(os.environ,
                                                 DEBIAN_FRONTEND="noninteractive"))
        if not shutil.which(NSPAWN):
            return "systemd-nspawn is missing and apt-get install systemd-container " \
                   "failed: %s" % (p.stderr.strip().splitlines() or ["?"])[-1]
    if not os.path.exists("/usr/lib/systemd/systemd"):
        return "/usr/lib/systemd/systemd is missing (package systemd)"
    return None


def make_root(ctx, root, build):
    """The container's root: a copy of the host's /etc, the host's /usr (bound at boot),
    and what `make install` put into a staging tree."""
    stage = os.path.join(ctx.topo.tmp, "stage")
    args = ["DESTDIR=" + stage, "PREFIX=/opt/kaprobe", "BUILD=" + build]
    if os.path.basename(build) == "san":
        args.append("SANITIZE=1")
    make(["install"] + args)
    os.makedirs(root)
    for d in ("usr/lib", "var", "tmp", "run", "dev", "proc", "sys", "root", "opt"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    for l in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink("/" + l):
            os.symlink(os.readlink("/" + l), os.path.join(root, l))
    shutil.copy("/usr/lib/os-release", os.path.join(root, "usr/lib/os-release"))
    run(["cp", "-a", "/etc", os.path.join(root, "etc")])
    for f in ("machine-id", "kaprobe"):
        p = os.path.join(root, "etc", f)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        elif os.path.lexists(p):
            os.unlink(p)
    # A kaprobe user copied from the host would hide what the test creates inside.
    for f in ("passwd", "group", "shadow", "gshadow"):
        p = os.path.join(root, "etc", f)
        if os.path.exists(p):
            with open(p) as fh:
                lines = [l for l in fh if not l.startswith("kaprobe:")]
            with open(p, "w") as fh:
                fh.writelines(lines)
    sysd = os.path.join(root, "etc/systemd/system")
    shutil.copytree(os.path.join(stage, "opt/kaprobe"), os.path.join(root, "opt/kaprobe"))
    shutil.copytree(os.path.join(stage, "etc/kaprobe"), os.path.join(root, "etc/kaprobe"))
    shutil.copy(os.path.join(stage, "lib/systemd/system/kaprobed.service"),
                os.path.join(sysd, "kaprobed.service"))
    with open(os.path.join(root, "etc/kaprobe/kaprobed.ini"), "w") as f:
        f.write(CONFIG)
    # Only the test's drop-in (one the host may have is not copied along).
    shutil.rmtree(os.path.join(sysd, "kaprobed.service.d"), ignore_errors=True)
    os.makedirs(os.path.join(sysd, "kaprobed.service.d"))
    with open(os.path.join(sysd, "kaprobed.service")) as f:
        keys = {l.split("=", 1)[0].strip() for l in f if "=" in l}
    dropin = "[Service]\n" + "".join("%s=%s\n" % kv for kv in SHORTER.items()
                                     if kv[0] in keys)
    if os.path.basename(build) == "san":
        dropin += "Environment=ASAN_OPTIONS=detect_leaks=0\n"
    with open(os.path.join(sysd, "kaprobed.service.d", "test.conf"), "w") as f:
        f.write(dropin)
    with open(os.path.join(sysd, "kaprobe-test.service"), "w") as f:
        f.write(BOOT_UNIT)
    tdir = os.path.join(root, "opt/kaprobe-test")
    os.makedirs(tdir)
    shutil.copy(os.path.join(HERE, "systemd_inside.py"), os.path.join(tdir, "inside.py"))
    with open(os.path.join(tdir, "hook"), "w") as f:
        f.write(HOOK)
    os.chmod(os.path.join(tdir, "hook"), 0o755)


def cgroup_dirs():
    """This process's directories in the cgroup hierarchies nspawn uses (cgroup2, and the
    named v1 hierarchy "systemd" of a hybrid setup)."""
    mine = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrl, path = line.rstrip("\n").split(":", 2)
            mine[ctrl] = path
    dirs = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, opts = fields[sep + 1], fields[sep + 3].split(",")
            if fstype == "cgroup2" and "" in mine:
                path = mine[""]
            elif fstype == "cgroup" and "name=systemd" in opts and "name=systemd" in mine:
                path = mine["name=systemd"]
            else:
                continue
            rel = os.path.relpath(path, fields[3])
            if not rel.startswith(".."):
                dirs.append(os.path.normpath(os.path.join(fields[4], rel)))
    return dirs


def private_cgroups(name):
    """A new cgroup NAME under ours in each of those hierarchies. With --keep-unit, nspawn
    puts itself and the container into subgroups of its own cgroup ("supervisor",
    "payload"): without this, two tests booting at once (other worktrees' make check)
    would share them. Returns the directories made (none where that is not allowed)."""
    made = []
    for d in cgroup_dirs():
        try:
            os.mkdir(os.path.join(d, name))
            made.append(os.path.join(d, name))
        except OSError:
            pass
    return made


def remove_cgroups(dirs):
    for top in dirs:
        for d, _, _ in os.walk(top, topdown=False):
            try:
                os.rmdir(d)
            except OSError:
                pass


def boot(ctx, root, outdir):
    """One boot of the container running kaprobe-test.service; returns (rc, console)."""
    console = os.path.join(ctx.topo.tmp, "console.txt")
    name = "kpt%d-systemd" % os.getpid()
    cgroups = private_cgroups(name)

    def enter_cgroups():  # in the child, before exec
        for d in cgroups:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write("0")

    argv = [NSPAWN, "--quiet", "--register=no", "--keep-unit", "--machine=" + name,
            "-D", root, "--bind-ro=/usr", "--bind=%s:/out" % outdir, "--private-network",
            "--link-journal=no", "--console=pipe", "--boot",
            "systemd.unit=kaprobe-test.service"]
    try:
        with open(console, "w") as f:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 preexec_fn=enter_cgroups)
            try:
                rc = p.wait(BOOT_TIMEOUT)
            except subprocess.TimeoutExpired:
                rc = "timeout"
            finally:  # also on Ctrl-C: never leave the container running
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)  # nspawn powers the container off
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait(5)
    finally:
        remove_cgroups(cgroups)
    with open(console, errors="replace") as f:
        return rc, f.read()


def case_systemd_unit(ctx):
    if ctx.netcheck:
        return "nothing to check without kaprobed"
    build = os.path.relpath(os.path.dirname(os.path.realpath(ctx.binary)), REPO)
    if build.startswith(".."):
        raise CaseSkip("kaprobed %s is not built in this tree (make install needs it)" %
                       ctx.binary)
    why = nspawn_usable()
    if why:
        raise CaseSkip("cannot boot systemd in a container: %s" % why)
    root = os.path.join(ctx.topo.tmp, "root")
    outdir = os.path.join(ctx.topo.tmp, "out")
    os.makedirs(outdir)
    make_root(ctx, root, build)
    t = time.monotonic()
    rc, console = boot(ctx, root, outdir)
    took = time.monotonic() - t
    results, done = [], None
    path = os.path.join(outdir, "results.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("done"):
                    done = r
                else:
                    results.append(r)
    diag = []
    for name in ("systemctl-status.txt", "journal.txt", "status.log.txt"):
        p = os.path.join(outdir, name)
        if os.path.exists(p):
            with open(p, errors="replace") as f:
                diag.append("--- %s (last 40 lines):\n%s" % (
                    name, "\n".join(f.read().splitlines()[-40:])))
    if not results:
        if "Failed to" in console or rc not in (0, "timeout"):
            # nspawn itself could not run here (e.g. no permission to set up the container).
            raise CaseSkip("systemd-nspawn could not boot the container (exit %s): %s" % (
                rc, " | ".join(console.strip().splitlines()[-3:])))
        fail("the container booted (nspawn exit %s, %.1f s) but the test script wrote no "
             "result:\n%s" % (rc, took, console[-2000:]))
    failed = [r for r in results if not r["ok"]]
    lines = "\n".join("%s %-14s %s" % ("ok  " if r["ok"] else "FAIL", r["check"],
                                       r["detail"]) for r in results)
    if failed or done is None:
        fail("%s under systemd (nspawn exit %s, %.1f s)%s\n%s\n%s" % (
            ", ".join(r["check"] for r in failed) or "no end mark", rc, took,
            "" if done else ": the script did not finish", lines, "\n".join(diag)))
    ctx.details = lambda: lines  # what run.py -v prints for a passing case
    want = {"start", "ready", "user", "caps", "nnp_seccomp", "logsdir", "reload",
            "reload_bad", "track", "verdict", "close", "exec", "journal", "watchdog_ping",
            "watchdog", "crash", "stop", "quiet", "security", "nft_table", "nft_gone"}
    missing = want - {r["check"] for r in results}
    check(not missing, "checks that did not run: %s\n%s" % (sorted(missing), lines))
    return "%d checks in one boot (%.1f s): notify start + StatusText, uid/CapEff 3000/" \
           "NoNewPrivs/Seccomp, LogsDirectory, reload (good, bad), dead verdict in status " \
           "log and journal, close + exec under the sandbox, watchdog and crash restarts, " \
           "clean stop, nftables table installed and deleted, no stray warning" % (
               len(results), took)


# Run alone by run.py -j (they load the machine: bulk transfers, floods, many connections,
# a booted systemd), after the cases that run side by side.
SERIAL = {"systemd_unit"}

CASES = [
    ("systemd_unit", case_systemd_unit),
]

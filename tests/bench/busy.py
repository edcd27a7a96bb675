#!/usr/bin/env python3
"""make bench, busy connections (issue 14): one saturating iperf3 stream over a veth between
two namespaces (srv 192.0.2.1 / 2001:db8::1, cli .2 / ::2), measured without kaprobed and
with kaprobed running in srv with a rule matching the iperf3 port, alternating, ROUNDS
rounds each, IPv4 and IPv6, the bulk into and out of kaprobed's side. Prints per run:
throughput, iperf3's own CPU per GB (client and server, kernel work done in their context
included), kaprobed's CPU (utime+stime from /proc/PID/stat over the stream, as % of one
core) and wake-ups (voluntary context switches), the whole machine's busy CPU (from
/proc/stat: user, system and softirq, % of one core: other jobs show there) and the frames
that crossed the veth; then per case the medians and the with/without throughput ratio.
On a shared 2-core VM single runs move by +-10 % (see docs/capture-cost.md), so the rounds
are paired (without/with next to each other, in ABBA order so that a drift of the machine
cancels) and the summary is the median of the per-pair ratios with a bootstrap 90 %
interval. --versus none runs the same pairs with nothing in the "with" slot (A/A: the
noise floor); --versus socket puts there a bare packet socket on all interfaces whose
kernel filter drops every frame: the least any libpcap capture can cost (each frame
still passes the tap, each outgoing one is cloned for it). Figures only: never fails the
build. Every namespace and process is removed at the end, also on failure.

  python3 tests/bench/busy.py KAPROBED [options]
    --secs S         stream length (default 8, the issue's iperf3 -t 8)
    --rounds N       pairs of (without, with) (default 6)
    --versus WHAT    kaprobed (default), socket (a bare packet socket dropping every frame
                     in its filter) or none (A/A)
    --pin            iperf3's server on CPU 1, its client on CPU 0
    --profile        a system-wide perf profile (cpu-clock samples) during each stream: the
                     share of the machine's busy samples whose stack passes through the
                     packet tap (TAP_FUNCS), a figure the machine's noise hardly moves
    --fam 4,6        families (default 4,6)
    --dir rx         rx: the bulk flows into srv (kaprobed's side receives it);
                     tx: srv sends the bulk (iperf3 -R); a comma list (default rx,tx)
    --set KEY=VALUE  extra [global] key of kaprobed's configuration (repeatable)
    --rule KEY=VALUE extra key of the rule (repeatable)
    --iface NAME     kaprobed's interface: any (default) or veth (the srv end)
    --routed         the stream is forwarded by a third namespace, where kaprobed runs with
                     a gateway rule (mode = gateway, server *:PORT): a forwarded connection
                     has no socket to ask, so its frames all stay in the capture
    --label TEXT     printed in the header (for comparing builds)
    --grep REGEX     also print kaprobed's standard error lines that match (experiments)
"""

import ctypes  # noqa: F401 (BARE_SOCKET's, checked here)
import json
import os
import random
import re
import signal
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import netns  # noqa: E402

PORT = 5201
ADDR = {4: ("192.0.2.1", "192.0.2.2", "24"), 6: ("2001:db8::1", "2001:db8::2", "64")}
HZ = os.sysconf("SC_CLK_TCK")

# --versus socket: a packet socket on every interface (ETH_P_ALL, as libpcap's "any") whose
# classic BPF filter is one instruction, "return 0": every frame is dropped in the kernel.
BARE_SOCKET = """
import ctypes, socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
insn = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))
s.setsockopt(socket.SOL_SOCKET, 26, struct.pack("HxxxxxxQ", 1, ctypes.addressof(insn)))
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


# The kernel's packet tap: every frame that reaches a packet socket passes one of these
# (dev_queue_xmit_nit clones an outgoing frame for the taps; packet_rcv / tpacket_rcv run
# the socket's filter, and copy what passes into its buffer or ring).
TAP_FUNCS = ("dev_queue_xmit_nit", "packet_rcv", "tpacket_rcv")
IDLE_FUNCS = ("pv_native_safe_halt", "default_idle", "native_safe_halt", "cpu_idle_poll")


def profile_start(secs):
    """perf record, system-wide, for secs (None without perf)."""
    if not shutil.which("perf"):
        return None
    fd, path = tempfile.mkstemp(prefix="kpbusy.", suffix=".perf")
    os.close(fd)
    p = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "1000", "-a", "-g",
                          "-o", path, "--", "sleep", "%g" % secs],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, path


def profile_share(prof):
    """(samples whose stack has a TAP_FUNCS frame, non-idle samples), one a millisecond of
    a CPU's time; None without perf."""
    if not prof:
        return None
    p, path = prof
    p.wait()
    out = subprocess.run(["perf", "script", "-i", path, "-F", "comm,ip,sym"], capture_output=True,
                         text=True).stdout
    os.unlink(path)
    busy = tap = 0
    for sample in out.split("\n\n"):
        syms = set(sample.split())
        if not syms or syms & set(IDLE_FUNCS):
            continue
        busy += 1
        tap += bool(syms & set(TAP_FUNCS))
    return (tap, busy) if busy else None


def bootstrap_median(xs, n=2000):
    """(median, 5th, 95th percentile of the median over n resamples), seeded: repeatable."""
    rnd = random.Random(1)
    meds = sorted(statistics.median(rnd.choices(xs, k=len(xs))) for _ in range(n))
    return statistics.median(xs), meds[n // 20], meds[n - 1 - n // 20]


def opts(argv):
    o = {"secs": 8.0, "rounds": 6, "fam": [4, 6], "dir": ["rx", "tx"], "set": [], "rule": [],
         "iface": "any", "label": "", "grep": None, "versus": "kaprobed", "pin": False,
         "profile": False, "routed": False}
    i = 0
    while i < len(argv):
        k, v = argv[i], argv[i + 1] if i + 1 < len(argv) else ""
        if k in ("--pin", "--profile", "--routed"):
            o[k[2:]] = True
            i += 1
            continue
        if k == "--secs":
            o["secs"] = float(v)
        elif k == "--rounds":
            o["rounds"] = int(v)
        elif k == "--fam":
            o["fam"] = [int(x) for x in v.split(",")]
        elif k == "--dir":
            o["dir"] = v.split(",")
        elif k in ("--set", "--rule"):
            o[k[2:]].append(tuple(v.split("=", 1)))
        elif k == "--iface":
            o["iface"] = v
        elif k == "--versus" and v in ("kaprobed", "socket", "none"):
            o["versus"] = v
        elif k == "--label":
            o["label"] = v
        elif k == "--grep":
            o["grep"] = re.compile(v)
        else:
            raise SystemExit("unknown option %s" % k)
        i += 2
    return o


def proc_cpu(pid):
    """utime+stime of pid in seconds, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / HZ


def proc_wakeups(pid):
    """Voluntary context switches of pid (each a sleep in epoll_wait, then a wake-up)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_cpu():
    """(user+nice, system, softirq) jiffies of all CPUs, in seconds."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return ((v[0] + v[1]) / HZ, v[2] / HZ, v[6] / HZ)


def link_frames(ns, ifname):
    out = netns.run(["ip", "-j", "-s", "link", "show", "dev", ifname], ns=ns).stdout
    st = json.loads(out)[0]["stats64"]
    return st["rx"]["packets"] + st["tx"]["packets"]


def iperf(ns, dst, secs, reverse, pin):
    """Runs the client; returns (Gbit/s received, bytes received, the client's CPU s)."""
    argv = ["ip", "netns", "exec", ns] + (["taskset", "-c", "0"] if pin else []) + ["iperf3", "-c", dst, "-p", str(PORT), "-t", "%g" % secs,
            "-J"]
    if reverse:
        argv.append("-R")
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise RuntimeError("iperf3 client exited with status %d" % p.returncode)
        out.seek(0)
        d = json.loads(out.read())
    got = d["end"]["sum_received"]
    return got["bits_per_second"] / 1e9, got["bytes"], ru.ru_utime + ru.ru_stime


def one_run(topo, o, binary, fam, rev, with_k):
    srv, cli = topo.srv, topo.cli
    k = sock = None
    if with_k and o["versus"] == "socket":
        sock = topo.spawn(topo.kns, ["python3", "-c", BARE_SOCKET], "bare-socket",
                          stdin=False)
        sock.wait_line(lambda l: "ready" in l, 3, "the bare socket")
    if with_k and o["versus"] == "kaprobed":
        ends = [("mode", "gateway"), ("client", "*"), ("server", "*:%d" % PORT)] \
            if o["routed"] else [("local", "*:%d" % PORT), ("remote", "*")]
        conf = netns.conf_text(
            "{log}", [("busy", dict(ends + [("idle", "60s"), ("interval", "5s"),
                                            ("probes", "3")] + o["rule"]))],
            log_level="info", interface=topo.kiface,
            extra=dict([("state_file", "none"), ("summary_interval", "0")] + o["set"]))
        k = topo.kaprobed(binary, topo.kns, conf, name="kaprobed-%d" % len(topo.procs))
        time.sleep(0.3)
    f0 = link_frames(srv, topo.sif)
    kpid = k.proc.pid if k else sock.pid if sock else None
    c0 = proc_cpu(kpid) if kpid else 0.0
    w0 = proc_wakeups(kpid) if kpid else None
    m0 = machine_cpu()
    t0 = time.monotonic()
    s0 = proc_cpu(topo.iperf_srv.pid)
    psecs = max(o["secs"] - 1.0, 0.5)
    prof = profile_start(psecs) if o["profile"] else None
    gbps, nbytes, ccpu = iperf(cli, topo.addrs[fam][0], o["secs"], rev, o["pin"])
    s1 = proc_cpu(topo.iperf_srv.pid)
    t1 = time.monotonic()
    c1 = proc_cpu(kpid) if kpid else 0.0
    w1 = proc_wakeups(kpid) if kpid else None
    m1 = machine_cpu()
    f1 = link_frames(srv, topo.sif)
    tap = profile_share(prof)
    if tap:  # the tap's CPU per GB carried while perf ran (1 sample = 1 ms of a CPU)
        tap = (100.0 * tap[0] / tap[1], tap[0] / (nbytes * psecs / o["secs"] / 1e9))
    extra = ""
    if sock:
        sock.stop(signal.SIGTERM, 2.0)
    if k:
        st = k.stop()
        if st != 0:
            extra = " (kaprobed exit %s)" % st
        errs = [l for l in k.log.text().splitlines() if "level=error" in l or "drops" in l]
        if errs:
            extra += " log: " + " | ".join(errs[:2])
        if o["grep"]:
            extra += "".join("\n           " + l for l in k.proc.text("err").splitlines()
                             if o["grep"].search(l))
    wall = t1 - t0
    kcpu = None if c1 is None else 100.0 * (c1 - c0) / wall
    wake = None if w0 is None or w1 is None else (w1 - w0) / wall
    mu, ms, mq = ((b - a) * 100.0 / wall for a, b in zip(m0, m1))
    return {"gbps": gbps, "kcpu": kcpu, "mu": mu, "ms": ms, "mq": mq,
            "frames": (f1 - f0) / wall, "wake": wake, "extra": extra, "tap": tap,
            "ipcpu": (ccpu + s1 - s0) / (nbytes / 1e9)}


def fmt(r):
    kc = "its CPU " + ("-" if r["kcpu"] is None else "%.1f %%" % r["kcpu"])
    if r["tap"] is not None:
        kc = "tap %4.1f %% of busy samples (%3.0f ms/GB), " % r["tap"] + kc
    if r["wake"] is not None:
        kc += " (%5.0f wake-ups/s)" % r["wake"]
    return "%6.2f Gbit/s  iperf3 %.3f CPU s/GB  %s  machine user %3.0f %% sys %3.0f %% " \
           "softirq %3.0f %%  %3.0f kframes/s on the veth%s" % (
               r["gbps"], r["ipcpu"], kc, r["mu"], r["ms"], r["mq"], r["frames"] / 1e3,
               r["extra"])


def setup(topo, routed):
    """srv - cli over one veth; or srv - rtr - cli (ROUTED addresses), rtr forwarding."""
    if routed:
        net = netns.routed(topo)
        topo.srv, topo.cli, topo.kns = net["local"], net["peer"], net["router"]
        topo.addrs = {f: (net[f]["local"], net[f]["peer"]) for f in (4, 6)}
        topo.sif = "eth0"
    else:
        topo.srv = topo.kns = topo.netns("srv")
        topo.cli = topo.netns("cli")
        topo.link(topo.srv, "vs", topo.cli, "vc")
        for fam, (a, b, plen) in ADDR.items():
            topo.addr(topo.srv, "vs", "%s/%s" % (a, plen))
            topo.addr(topo.cli, "vc", "%s/%s" % (b, plen))
        topo.addrs = {f: ADDR[f][:2] for f in (4, 6)}
        topo.sif = "vs"
    pin = ["taskset", "-c", "1"] if topo.pin else []
    topo.iperf_srv = topo.spawn(topo.srv, pin + ["iperf3", "-s", "-p", str(PORT)],
                                "iperf3-server", stdin=False)
    time.sleep(0.5)


def run_pairs(topo, o, binary, fam, d):
    """o["rounds"] pairs, each (without, with) or (with, without) in turn (ABBA)."""
    res = {False: [], True: []}
    for rnd in range(o["rounds"]):
        for with_k in ((False, True) if rnd % 2 == 0 else (True, False)):
            r = one_run(topo, o, binary, fam, d == "tx", with_k)
            res[with_k].append(r)
            print("  %-8s %s" % ("with" if with_k else "without", fmt(r)), flush=True)
    return res


def run_case(topo, o, binary, fam, d, what):
    """One family and direction: the pairs, then their summary line."""
    name = "IPv%d, %s" % (fam, "bulk into kaprobed's side" if d == "rx"
                          else "bulk out of kaprobed's side")
    print("-- %s" % name)
    res = run_pairs(topo, o, binary, fam, d)
    ratios = [w["gbps"] / wo["gbps"] for wo, w in zip(res[False], res[True]) if wo["gbps"]]
    med, lo, hi = bootstrap_median(ratios)
    kc = [r["kcpu"] for r in res[True] if r["kcpu"] is not None]
    cwo = statistics.median(r["ipcpu"] for r in res[False])
    cwi = statistics.median(r["ipcpu"] for r in res[True])
    taps = [r["tap"] for r in res[True] if r["tap"] is not None]
    if taps:
        ms = statistics.median(t[1] for t in taps)
        print("  => packet tap with %s: %.2f %% of the machine's busy CPU samples, %.1f ms of "
              "CPU per GB carried = %.2f %% of iperf3's own %.0f ms/GB (medians)" % (
                  what, statistics.median(t[0] for t in taps), ms,
                  100.0 * ms / (1000.0 * statistics.median(r["ipcpu"] for r in res[True])),
                  1000.0 * statistics.median(r["ipcpu"] for r in res[True])))
        own = statistics.median((r["kcpu"] or 0.0) * 10.0 / (r["gbps"] / 8.0)
                                for r in res[True])  # ms of CPU per GB (10 ms/s per %)
        est = 1.0 / (1.0 + (ms + own) / (1000.0 * statistics.median(r["ipcpu"]
                                                                   for r in res[True])))
        print("  => so %s costs the stream %.1f + %.1f ms of CPU per GB (tap + its own): a "
              "CPU-bound stream's throughput ratio would be %.3f" % (what, ms, own, est))
    print("  => %s, with %s: throughput ratio %.3f (median of %d pairs; 90 %% interval "
          "%.3f-%.3f; pairs %s); without %.2f, with %.2f Gbit/s (medians); its CPU %s %% of "
          "a core (max %.1f); iperf3 (kernel included) %.3f -> %.3f CPU s/GB (%+.0f %%)" % (
              name, what, med, len(ratios), lo, hi, " ".join("%.2f" % x for x in ratios),
              statistics.median(r["gbps"] for r in res[False]),
              statistics.median(r["gbps"] for r in res[True]),
              "%.1f" % statistics.median(kc) if kc else "-", max(kc) if kc else 0.0,
              cwo, cwi, 100.0 * (cwi / cwo - 1) if cwo else 0.0), flush=True)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 0
    binary = os.path.abspath(sys.argv[1])
    o = opts(sys.argv[2:])
    if os.geteuid() != 0:
        print("  root needed (namespaces): busy benchmark skipped")
        return 0
    if not shutil.which("iperf3"):
        print("  iperf3 not installed: busy benchmark skipped")
        return 0
    if not os.access(binary, os.X_OK):
        print("  %s: not built: busy benchmark skipped" % binary)
        return 0
    netns.install_signal_handlers()
    what = {"kaprobed": "kaprobed", "socket": "a bare packet socket",
            "none": "nothing (A/A)"}[o["versus"]]
    print("  (one iperf3 stream, %g s, %d pairs of without/with %s in ABBA order; rule %s "
          "*:%d; interface %s; %s%s%s; CPU %% of one core, this machine has %d)" % (
              o["secs"], o["rounds"], what, "server" if o["routed"] else "local", PORT,
              o["iface"],
              ", ".join("%s=%s" % kv for kv in o["set"] + o["rule"]) or "defaults",
              ("; iperf3 pinned" if o["pin"] else "") +
              ("; forwarded by a router running kaprobed (gateway rule)" if o["routed"] else ""),
              (" [%s]" % o["label"]) if o["label"] else "", os.cpu_count()))
    topo = netns.Topo("busy")
    topo.pin = o["pin"]
    try:
        setup(topo, o["routed"])
        topo.kiface = topo.sif if o["iface"] == "veth" else "any"
        for d in o["dir"]:
            for fam in o["fam"]:
                run_case(topo, o, binary, fam, d, what)
    except KeyboardInterrupt:
        print("  interrupted: namespaces and processes removed")
    except Exception as e:  # a figure, never a build failure
        print("  busy benchmark failed: %s" % str(e).splitlines()[0])
    finally:
        topo.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

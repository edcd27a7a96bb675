#!/usr/bin/env python3
"""Runs kaprobe's integration cases (as root: they make network namespaces).

  python3 tests/integration/run.py --kaprobed build/rel/kaprobed [-k NAME]... [-v] [-j N]
  python3 tests/integration/run.py --netcheck [-k NAME]   # network side only, no daemon

Prints PASS/FAIL per case with the reason, the status log and kaprobed's stderr for a
failure, and ends with "integration: N passed, M failed". Exit status 1 if any failed.
With -j N (make check uses 2), N cases run at a time, each in a forked child with its own
namespaces (most of a case is waiting on timers); the cases a module lists in SERIAL
(bulk transfers, floods, thousands of connections, a booted systemd) run alone after them.
"""

import argparse
import os
import signal
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import netns  # noqa: E402
from netns import CaseFailure, CaseSkip, Kaprobed  # noqa: E402
from test_cases import Ctx  # noqa: E402

# Every module named test_*.py here contributes its CASES list, in this order.
MODULES = ["test_cases", "test_service", "test_logs", "test_state", "test_actions",
           "test_discover", "test_stall", "test_busy", "test_scale", "test_systemd", "test_adversary",
           "test_replay", "test_gateway", "test_gateway_hush", "test_gateway_life",
           "test_gateway_edge"]


def all_cases():
    """(every module's CASES, the names its SERIAL set keeps out of parallel runs)."""
    cases, serial = [], set()
    for name in MODULES:
        if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       name + ".py")):
            mod = __import__(name)
            cases += mod.CASES
            serial |= set(getattr(mod, "SERIAL", ()))
    return cases, serial


CASES, SERIAL = all_cases()


def indent(text, pad="    "):
    return "\n".join(pad + l for l in text.splitlines())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kaprobed", help="path of the kaprobed binary")
    ap.add_argument("-k", action="append", default=[], metavar="NAME",
                    help="run only cases whose name contains NAME (repeatable)")
    ap.add_argument("--netcheck", action="store_true",
                    help="check each scenario's network side without the daemon")
    ap.add_argument("-v", action="store_true", help="print details for passing cases too")
    ap.add_argument("-j", type=int, default=1, metavar="N",
                    help="run N cases at a time, each in a child process (the modules' "
                    "SERIAL cases still alone, after the others)")
    ap.add_argument("--list", action="store_true", help="list the cases")
    args = ap.parse_args()

    if args.list:
        for name, _ in CASES:
            print(name)
        return 0
    if os.geteuid() != 0:
        print("integration: needs root (network namespaces)", file=sys.stderr)
        return 1
    binary = None
    if not args.netcheck:
        if not args.kaprobed:
            ap.error("--kaprobed PATH is required (or --netcheck)")
        binary = os.path.abspath(args.kaprobed)
        if not os.access(binary, os.X_OK):
            print("integration: %s: not an executable file" % args.kaprobed, file=sys.stderr)
            print("integration: 0 passed, %d failed" % len(CASES))
            return 1

    cases = [(n, f) for n, f in CASES if not args.k or any(k in n for k in args.k)]
    if not cases:
        print("integration: no case matches %s" % " ".join(args.k), file=sys.stderr)
        return 1
    netns.install_signal_handlers()
    t0 = time.monotonic()
    if args.j > 1:
        counts = run_parallel(cases, binary, args)
    else:
        counts = run_serial(cases, binary, args)
    if counts is None:
        return 130
    passed, failed, skipped = counts
    for w in Kaprobed.warnings:
        print("note: %s" % w)
    if skipped:
        print("(%d skipped)" % skipped)
    print("(%s: %.1f s%s)" % ("netcheck" if args.netcheck else "all cases",
                              time.monotonic() - t0,
                              ", %d at a time" % args.j if args.j > 1 else ""))
    print("integration: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def run_case(name, fn, binary, args, out):
    """Runs one case, writing its report to out; returns "pass", "fail" or "skip"."""
    ctx = Ctx(name, binary, args.netcheck)
    t = time.monotonic()
    try:
        summary = fn(ctx)
        print("PASS %-13s %s (%.1f s)" % (name, summary, time.monotonic() - t), file=out)
        if args.v:
            print(indent(ctx.details()), file=out)
        return "pass"
    except CaseSkip as e:
        print("SKIP %-13s %s" % (name, e), file=out)
        return "skip"
    except CaseFailure as e:
        print("FAIL %-13s %s (%.1f s)" % (name, str(e).splitlines()[0],
                                          time.monotonic() - t), file=out)
        rest = str(e).splitlines()[1:]
        if rest:
            print(indent("\n".join(rest)), file=out)
        print(indent(ctx.details()), file=out)
    except Exception:
        print("FAIL %-13s harness error (%.1f s)" % (name, time.monotonic() - t), file=out)
        print(indent(traceback.format_exc()), file=out)
        print(indent(ctx.details()), file=out)
    finally:
        ctx.cleanup()
    return "fail"


def run_serial(cases, binary, args):
    """One case after another in this process; (passed, failed, skipped), None when
    interrupted."""
    n = {"pass": 0, "fail": 0, "skip": 0}
    try:
        for name, fn in cases:
            n[run_case(name, fn, binary, args, sys.stdout)] += 1
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("\ninterrupted: namespaces and processes removed")
        print("integration: %d passed, %d failed" % (n["pass"], n["fail"] + 1))
        return None
    return n["pass"], n["fail"], n["skip"]


STATUS = {0: "pass", 1: "fail", 2: "skip"}


def start_case(name, fn, binary, args):
    """Forks a child that runs one case into a file; returns (pid, file)."""
    out = tempfile.TemporaryFile(mode="w+")
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = {"pass": 0, "fail": 1, "skip": 2}[run_case(name, fn, binary, args, out)]
            for w in Kaprobed.warnings:
                print("note: %s" % w, file=out)
        except BaseException:
            print("FAIL %-13s interrupted" % name, file=out)
        finally:
            out.flush()
            os._exit(code)
    return pid, out


def run_parallel(cases, binary, args):
    """Cases in forked children, args.j at a time (each in its own namespaces), then the
    SERIAL ones of each module alone: those that load the machine (bulk transfers, floods,
    thousands of connections) or boot systemd, which would skew the others' timing. Reports
    are printed whole, as each case ends."""
    batches = [[c for c in cases if c[0] not in SERIAL], [c for c in cases if c[0] in SERIAL]]
    n = {"pass": 0, "fail": 0, "skip": 0}
    running = {}
    try:
        for batch, width in ((batches[0], args.j), (batches[1], 1)):
            queue = list(batch)
            while queue or running:
                while queue and len(running) < width:
                    name, fn = queue.pop(0)
                    pid, out = start_case(name, fn, binary, args)
                    running[pid] = (name, out)
                pid, status = os.wait()
                if pid not in running:
                    continue
                name, out = running.pop(pid)
                out.seek(0)
                sys.stdout.write(out.read())
                sys.stdout.flush()
                out.close()
                n[STATUS.get(os.waitstatus_to_exitcode(status), "fail")] += 1
    except KeyboardInterrupt:
        for pid in running:
            os.kill(pid, signal.SIGTERM)
        for pid in running:
            os.waitpid(pid, 0)
        print("\ninterrupted: namespaces and processes removed")
        print("integration: %d passed, %d failed" % (n["pass"], n["fail"] + len(running)))
        return None
    return n["pass"], n["fail"], n["skip"]


if __name__ == "__main__":
    sys.exit(main())

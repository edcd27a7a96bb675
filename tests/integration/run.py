#!/usr/bin/env python3
"""Runs kaprobe's integration cases (as root: they make network namespaces).

  python3 tests/integration/run.py --kaprobed build/rel/kaprobed [-k NAME]... [-v]
  python3 tests/integration/run.py --netcheck [-k NAME]   # network side only, no daemon

Prints PASS/FAIL per case with the reason, the status log and kaprobed's stderr for a
failure, and ends with "integration: N passed, M failed". Exit status 1 if any failed.
"""

import argparse
import os
import sys
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
    cases = []
    for name in MODULES:
        if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       name + ".py")):
            cases += __import__(name).CASES
    return cases


CASES = all_cases()


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
    passed = failed = skipped = 0
    t0 = time.monotonic()
    try:
        for name, fn in cases:
            ctx = Ctx(name, binary, args.netcheck)
            t = time.monotonic()
            try:
                summary = fn(ctx)
                passed += 1
                print("PASS %-13s %s (%.1f s)" % (name, summary, time.monotonic() - t))
                if args.v:
                    print(indent(ctx.details()))
            except CaseSkip as e:
                skipped += 1
                print("SKIP %-13s %s" % (name, e))
            except CaseFailure as e:
                failed += 1
                print("FAIL %-13s %s (%.1f s)" % (name, str(e).splitlines()[0],
                                                  time.monotonic() - t))
                rest = str(e).splitlines()[1:]
                if rest:
                    print(indent("\n".join(rest)))
                print(indent(ctx.details()))
            except Exception:
                failed += 1
                print("FAIL %-13s harness error (%.1f s)" % (name, time.monotonic() - t))
                print(indent(traceback.format_exc()))
                print(indent(ctx.details()))
            finally:
                ctx.cleanup()
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("\ninterrupted: namespaces and processes removed")
        print("integration: %d passed, %d failed" % (passed, failed + 1))
        return 130
    for w in Kaprobed.warnings:
        print("note: %s" % w)
    if skipped:
        print("(%d skipped)" % skipped)
    print("(%s: %.1f s)" % ("netcheck" if args.netcheck else "all cases",
                            time.monotonic() - t0))
    print("integration: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m conveyor bench``: parse the command line, run the matrix, print the table.

Progress goes to stderr, one line per run, so stdout holds only the table and can be
redirected into a file or a pull-request comment as it is.

Before anything runs, the interpreter the workloads will run under (``--python``, default
this one) is asked which loops it has, and, when a selected workload is a server, the load
generator is built and the cores are shared out (:func:`conveyor.bench.loadgen.resolve`);
anything that falls back is said on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from . import harness, loadgen, loops, registry, report

__all__ = ["main", "build_parser"]

DEFAULT_REPEAT = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conveyor bench",
        description="Run benchmark workloads under several event loops, one process per "
                    "run, and compare medians.")
    parser.add_argument("suites", nargs="*", metavar="suite[.workload]",
                        help="suites to run (e.g. core) or single workloads (core.timers); "
                             "default: every suite")
    parser.add_argument("--repeat", type=_positive_int, default=None, metavar="N",
                        help=f"runs per (workload, loop); default {DEFAULT_REPEAT}, "
                             "1 with --quick")
    parser.add_argument("--loops", type=_loop_list, default=list(loops.LOOP_NAMES),
                        metavar="L1,L2", help="comma-separated loops from "
                                              f"{','.join(loops.LOOP_NAMES)} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and one run: a smoke test, not a measurement")
    parser.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                        help="measured seconds per run of the workloads that run for a set "
                             "time (the echo servers, wrk); default: each workload's own")
    parser.add_argument("--python", metavar="PATH", default=sys.executable,
                        help="run the workloads under this interpreter (it imports this "
                             "conveyor; uvloop is used if it has it); default: this one")
    parser.add_argument("--client", choices=("auto", "python"), default="auto",
                        help="the load generator for the echo servers: the C client, "
                             "built on first use (auto, the default, falls back to the "
                             "Python one without a C compiler), or the Python client")
    parser.add_argument("--json", metavar="PATH", help="also write all samples as JSON")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                        help="kill a run that takes longer (default 120)")
    parser.add_argument("--list", action="store_true", help="list workloads and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _loop_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in loops.LOOP_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown loop(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {','.join(loops.LOOP_NAMES)}")
    return list(dict.fromkeys(names))


_shown_tracebacks: set[tuple[str, str]] = set()


def _print_progress(done: int, total: int, label: str, loop: str,
                    result: dict[str, Any]) -> None:
    if "error" in result:
        detail = f"FAILED: {result['error']}"
    else:
        detail = f"{report.format_rate(result['rate'])} in {result['seconds']:.2f} s"
        if result.get("cpu") is not None and result["ops"]:
            detail += f", {result['cpu'] / result['ops'] * 1e6:.3g} µs server CPU each"
        if result.get("client_cpu") is not None:
            detail += f", client {result['client_cpu'] / result['seconds']:.0%} busy"
    width = len(str(total))
    print(f"[{done:{width}}/{total}] {label} under {loop}: {detail}", file=sys.stderr,
          flush=True)
    stderr = result.get("stderr")
    if stderr and (label, loop) not in _shown_tracebacks:  # once per cell is enough
        _shown_tracebacks.add((label, loop))
        print("  | " + "\n  | ".join(stderr.rstrip().splitlines()[-15:]), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m conveyor bench``; returns the exit status."""
    ns = build_parser().parse_args(argv)
    try:
        pairs, notes = registry.select(ns.suites)
    except registry.SuiteError as exc:
        print(f"conveyor bench: {exc}", file=sys.stderr)
        return 2
    if not pairs:
        print("conveyor bench: no workloads selected", file=sys.stderr)
        return 2

    if ns.list:
        for suite, w in pairs:
            print(f"{suite}.{w.name:24} {w.unit:12} {w.summary()}")
        return 0

    try:
        interpreter = harness.probe(ns.python)
    except RuntimeError as exc:
        print(f"conveyor bench: --python: {exc}", file=sys.stderr)
        return 2
    loop_names = []
    for name in ns.loops:
        reason = interpreter["loops"].get(name)
        if reason is None:
            loop_names.append(name)
        else:
            notes.append(f"skipped loop {name}: {reason}")
    plan = None
    if any(w.served for _, w in pairs):
        plan = loadgen.resolve(client=ns.client)
        notes.extend(plan.notes)
    for note in notes:
        print(f"conveyor bench: {note}", file=sys.stderr)
    if not loop_names:
        print("conveyor bench: none of the requested loops is available", file=sys.stderr)
        return 2

    repeat = ns.repeat if ns.repeat is not None else (1 if ns.quick else DEFAULT_REPEAT)
    rows = harness.run_matrix(pairs, loop_names, repeat=repeat, quick=ns.quick,
                              timeout=ns.timeout,
                              progress=None if ns.quiet else _print_progress,
                              python=ns.python, plan=plan,
                              overrides={"duration": ns.duration} if ns.duration else None)

    python = interpreter["version"]
    if ns.python != sys.executable:
        python += f" ({interpreter['executable']})"
    print(report.format_table(rows, loop_names, repeat=repeat, notes=notes, python=python,
                              load=plan.describe() if plan else None), flush=True)
    if ns.json:
        doc = report.to_json(rows, loop_names, repeat=repeat, notes=notes,
                             interpreter=interpreter, load=asdict(plan) if plan else None)
        with open(ns.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, default=repr)
            fh.write("\n")
    failed = any(s.errors for row in rows for s in row.by_loop.values())
    return 1 if failed else 0

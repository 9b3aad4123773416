"""What observing the loop costs: ``python -m conveyor.bench.observe``.

Runs a few workloads on conveyor's loop in several modes, alternating the modes within each
repetition so drift on a shared machine hits them all alike, and prints the median rate of
each mode and its ratio to the plain loop:

- ``bare``: the loop with its instrument checks cut out of ``_run_once`` (the source is
  rewritten at start-up, so it always matches the current loop): the loop as if
  conveyor.observe did not exist;
- ``plain``: the loop as shipped, no instrument installed (the figure users get);
- ``stats``: `collect_stats` counting; ``watchdog``: a 0.1 s watchdog watching;
- ``trace``: the tracer recording into its ring buffer (writing the file afterwards is not
  timed);
- ``otel`` (when the OpenTelemetry SDK is installed): `conveyor.observe.otel` reporting to
  SDK providers that keep everything in memory, nothing collected or exported while timed:
  the cost on the loop's side.

The workloads are the bench suites' own: ``core.callbacks`` (call_soon chains), and
``net.proto_echo`` / ``net.streams_echo`` (1 KiB echo, 50 connections, the load from a
separate client process).

    python -m conveyor.bench.observe [--reps 5] [--duration 1.5] [--only callbacks,proto_echo]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import inspect
import os
import statistics
import sys
import textwrap
import time
from typing import Any, Callable

from .. import core as loop_core
from .. import loop as loop_mod
from ..observe.stats import collect_stats
from ..observe.trace import Tracer
from ..observe.watchdog import Watchdog
from . import core, net
from .registry import Measured


def bare_loop_class() -> type:
    """EventLoop with every line about instruments removed from ``_run_once``."""
    source = textwrap.dedent(inspect.getsource(loop_mod.EventLoop._run_once))
    lines = source.splitlines()
    out: list[str] = []
    skip_deeper_than: int | None = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_deeper_than is not None:
            if stripped and indent <= skip_deeper_than:
                skip_deeper_than = None
            else:
                continue  # the body of an "if hooks is not None:"
        if stripped == "hooks = self._hooks":
            continue
        if stripped == "if hooks is not None:":
            skip_deeper_than = indent
            continue
        for guarded in ("if hooks is not None or self._debug:",
                        "if self._debug or (hooks is not None and hooks.per_callback):"):
            line = line.replace(guarded, "if self._debug:")
        out.append(line)
    text = "\n".join(out)
    if "hooks" in text:
        raise RuntimeError("could not strip the instrument checks from _run_once")
    namespace: dict[str, Any] = {}
    exec(compile(text, "<bare _run_once>", "exec"), vars(loop_core), namespace)
    return type("BareEventLoop", (loop_mod.EventLoop,), {"_run_once": namespace["_run_once"]})


def _mode_setup(mode: str, loop: Any) -> Callable[[], None]:
    """Switch ``mode`` on for ``loop``; returns the function that switches it off."""
    if mode == "stats":
        stats = collect_stats(loop)
        return stats.close
    if mode == "watchdog":
        dog = Watchdog(0.1)
        dog.attach(loop)
        dog.start()
        return dog.stop
    if mode == "trace":
        tracer = Tracer()
        tracer.attach(loop)
        return lambda: tracer.detach(loop)
    if mode == "otel":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider

        from ..observe import otel
        return otel.instrument(loop, tracer_provider=TracerProvider(), meter_provider=(
            MeterProvider(metric_readers=[InMemoryMetricReader()]))).close
    if mode in ("console", "top", "top-left"):
        return _console_mode(attached=mode == "top", visited=mode == "top-left")
    return lambda: None


def _console_mode(*, attached: bool, visited: bool = False) -> Callable[[], None]:
    """The live console listening; with `attached`, a client asking for a snapshot once a
    second, as ``python -m conveyor top`` does (its instruments installed meanwhile); with
    `visited`, a client that attached and left before the run (its instruments removed)."""
    import tempfile
    import threading

    from ..console_client import ConsoleClient
    from ..observe.console import Console

    folder = tempfile.mkdtemp(prefix="conveyor-bench-")
    console = Console(os.path.join(folder, "console.sock")).start()
    done = threading.Event()
    poller: threading.Thread | None = None
    if visited:
        with ConsoleClient(console.path) as client:
            client.request("snapshot")
        deadline = time.monotonic() + 5
        while console.removals < console.installs and time.monotonic() < deadline:
            time.sleep(0.01)  # the console removes the probe as it notices the client left
    if attached:
        client = ConsoleClient(console.path)
        client.request("tasks")  # attaches: the probe is installed before the run starts

        def poll() -> None:
            with client:
                while not done.wait(1.0):
                    client.request("snapshot")

        poller = threading.Thread(target=poll, name="bench-top", daemon=True)
        poller.start()

    def stop() -> None:
        done.set()
        if poller is not None:
            poller.join(5)
        console.close()
        os.rmdir(folder)
    return stop


def _has_otel_sdk() -> bool:
    """Without importing it: ``import conveyor.bench.observe`` must not load OpenTelemetry."""
    try:
        importlib.metadata.version("opentelemetry-sdk")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


#: Not named WORKLOADS: this module is a script over other suites' workloads, not a suite
#: of its own for ``python -m conveyor bench``.
OBSERVED_WORKLOADS: dict[str, Callable[[float], Any]] = {
    "callbacks": lambda duration: core.callbacks(total=300_000),
    "proto_echo": lambda duration: net.proto_echo(duration=duration, warmup=0.3),
    "streams_echo": lambda duration: net.streams_echo(duration=duration, warmup=0.3),
}
MODES = ("bare", "plain", "stats", "watchdog", "trace", "console", "top", "top-left") + (("otel",) if _has_otel_sdk() else ())


def measure(workload: str, mode: str, duration: float) -> tuple[float, float]:
    """(operations per wall-clock second, operations per CPU second of this process).

    The second figure is what this machine's neighbours disturb least: on a shared box the
    wall-clock rate swings with other people's load, the CPU spent per operation much less.
    """
    cls = bare_loop_class() if mode == "bare" else loop_mod.EventLoop
    loop = cls()
    try:
        stop = _mode_setup(mode, loop)
        try:
            started = time.perf_counter()
            cpu_started = time.process_time()
            result = loop.run_until_complete(OBSERVED_WORKLOADS[workload](duration))
            cpu = time.process_time() - cpu_started
            elapsed = time.perf_counter() - started
        finally:
            stop()
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    if isinstance(result, Measured):
        # The echo workloads time their measured window and the server's CPU over it.
        ops, elapsed, cpu = result.ops, result.seconds, result.cpu or cpu
    elif isinstance(result, tuple):
        ops, elapsed = result
    else:
        ops = result
    return ops / elapsed, ops / cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor.bench.observe",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--duration", type=float, default=1.5,
                        help="seconds per echo run (default 1.5)")
    parser.add_argument("--only", default=",".join(OBSERVED_WORKLOADS),
                        help="comma-separated workloads: " + ", ".join(OBSERVED_WORKLOADS))
    parser.add_argument("--modes", default=",".join(MODES))
    ns = parser.parse_args(argv)
    modes = [m for m in ns.modes.split(",") if m]
    for workload in [w for w in ns.only.split(",") if w]:
        rates: dict[str, list[float]] = {mode: [] for mode in modes}
        per_cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        for rep in range(ns.reps):
            order = modes[rep % len(modes):] + modes[:rep % len(modes)]
            for mode in order:
                rate, cpu_rate = measure(workload, mode, ns.duration)
                rates[mode].append(rate)
                per_cpu[mode].append(cpu_rate)
        base = statistics.median(rates["plain"]) if "plain" in rates else None
        cpu_base = statistics.median(per_cpu["plain"]) if "plain" in per_cpu else None
        print(f"{workload} (median of {ns.reps}; ops per wall second [range], "
              f"ops per CPU second)")
        for mode in modes:
            median = statistics.median(rates[mode])
            spread = f"{min(rates[mode]):,.0f}..{max(rates[mode]):,.0f}"
            ratio = f"{median / base:6.3f}x" if base else ""
            cpu_median = statistics.median(per_cpu[mode])
            cpu_ratio = f"{cpu_median / cpu_base:6.3f}x" if cpu_base else ""
            print(f"  {mode:9s} {median:12,.0f} [{spread}] {ratio}   "
                  f"{cpu_median:12,.0f} {cpu_ratio}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

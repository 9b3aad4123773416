"""OpenTelemetry for conveyor's loop: its figures as OTel metrics, slow callbacks and stalls
as OTel spans, only while asked.

    from conveyor.observe import otel
    telemetry = otel.instrument()          # the running loop, with the global providers
    ...
    telemetry.close()                      # the loop is back on its fast path

    with otel.instrument(meter_provider=mp, tracer_provider=tp):
        conveyor.run(main())               # loops created inside are measured too

Needs the ``otel`` extra (``pip install 'conveyor[otel]'``); nothing in conveyor imports
this module, so ``import conveyor`` never imports OpenTelemetry.

What runs where (the live console is the model: nothing is measured until asked, and
everything installed is removed again):

- On each loop, two instruments: a private `LoopStats` (the counting behind
  ``collect_stats``, so the metrics mean exactly what its snapshot fields mean) and a
  `_Probe`, which is a watchdog `Heartbeat` (two timestamps per iteration) that also looks
  at each callback's duration: a timer callback records its lateness in the lag histogram,
  a callback over ``slow_callback`` becomes a span.
- The other metrics are OTel *observable* instruments: the SDK calls them when a reader
  collects, on the reader's thread, and they read one `LoopStats.snapshot` per collection.
  Between collections they cost nothing.
- If ``stall`` is set, one thread (``conveyor-otel``) looks at every heartbeat a few times
  per threshold, as the watchdog's does; a loop that has not come back to poll for
  ``stall`` seconds has its stack taken at that moment, and the loop itself emits the span
  when it comes back (so the span has its real end).

Spans are started and ended on the loop's thread, at the moment the slow callback or the
stall ends: configure the tracer provider with a batching span processor (the SDK's
``BatchSpanProcessor``) so exporting never runs on the loop's thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
import traceback
import weakref
from typing import Any, Callable, Iterable

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
    from opentelemetry.context import get_current as _current_otel_context
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("conveyor.observe.otel needs OpenTelemetry: "
                      "pip install 'conveyor[otel]'") from exc

from ..contract import LoopInternals
from .. import __version__
from ..core import on_new_loop
from .hooks import add_instrument, instruments, on_loop_thread, remove_instrument
from .sites import callback_site, coroutine_name
from .stats import BUCKETS, LoopStats, Snapshot
from .taskstats import where_suspended
from .watchdog import Heartbeat, Stall, capture_stall

__all__ = ["instrument", "LoopTelemetry", "SCOPE", "METRICS"]

logger = logging.getLogger("conveyor.observe")

#: The instrumentation scope (meter and tracer name) everything here is reported under.
SCOPE = "conveyor.observe.otel"
_clock = time.monotonic

#: The metrics: name, kind, unit, description. Every data point carries
#: ``conveyor.loop.id``; docs/observe.md says which conventions each name follows.
METRICS = (
    ("conveyor.loop.utilization", "gauge", "1",
     "Share of the time since the previous collection the loop spent outside its kernel "
     "wait (running callbacks and its own work)."),
    ("conveyor.loop.time", "counter", "s",
     "Time since instrumenting, by conveyor.loop.state: active (running code) or idle "
     "(waiting in the kernel)."),
    ("conveyor.loop.iterations", "counter", "{iteration}", "Loop iterations run."),
    ("conveyor.loop.callbacks", "counter", "{callback}",
     "Callbacks run, by conveyor.callback.type: task_step (a step of an asyncio Task) or "
     "other."),
    ("conveyor.loop.timer.lag", "histogram", "s",
     "How late each timer callback started after its deadline."),
    ("conveyor.loop.task.count", "updowncounter", "{task}", "Tasks of the loop not done."),
    ("conveyor.loop.queue.length", "updowncounter", "{callback}",
     "Callbacks in the loop's ready queue."),
    ("conveyor.loop.fd.count", "updowncounter", "{file_descriptor}",
     "File descriptors registered with the loop's poller."),
    ("conveyor.loop.timer.count", "updowncounter", "{timer}",
     "Timers scheduled and not cancelled."),
)

#: What a data point of each observable metric is made of: (value, extra attributes).
_READINGS: dict[str, Callable[["_Probe", Snapshot], list[tuple[float, dict]]]] = {
    "conveyor.loop.utilization": lambda probe, snap: [(probe.utilization(snap), {})],
    "conveyor.loop.time": lambda probe, snap: [
        (max(snap.elapsed - snap.poll_time, 0.0), {"conveyor.loop.state": "active"}),
        (snap.poll_time, {"conveyor.loop.state": "idle"})],
    "conveyor.loop.iterations": lambda probe, snap: [(snap.iterations, {})],
    "conveyor.loop.callbacks": lambda probe, snap: [
        (snap.task_steps, {"conveyor.callback.type": "task_step"}),
        (snap.callbacks - snap.task_steps, {"conveyor.callback.type": "other"})],
    "conveyor.loop.task.count": lambda probe, snap: [(snap.tasks_alive, {})],
    "conveyor.loop.queue.length": lambda probe, snap: [(snap.ready_callbacks, {})],
    "conveyor.loop.fd.count": lambda probe, snap: [(snap.active_fds, {})],
    "conveyor.loop.timer.count": lambda probe, snap: [(snap.pending_timers, {})],
}


# ---------------------------------------------------------------- metrics, per provider

class _Instruments:
    """The OTel instruments of one meter provider, shared by every loop measured through it.

    An SDK meter hands back the first instrument of a name to a second registration and
    ignores the second one's callbacks, so the instruments are made once per provider and
    their callbacks walk the probes currently registered here.
    """

    def __init__(self, meter_provider: Any) -> None:
        meter = meter_provider.get_meter(SCOPE, __version__)
        self._lock = threading.Lock()
        self._probes: list[_Probe] = []
        self.timer_lag: Any = None
        for name, kind, unit, description in METRICS:
            if kind == "histogram":
                self.timer_lag = _histogram(meter, name, unit, description)
                continue
            create = {"gauge": meter.create_observable_gauge,
                      "counter": meter.create_observable_counter,
                      "updowncounter": meter.create_observable_up_down_counter}[kind]
            create(name, [self._callback(name)], unit=unit, description=description)

    def _callback(self, name: str) -> Callable[[Any], Iterable[Any]]:
        reading = _READINGS[name]

        def observe(options: Any) -> list[Any]:
            observations = []
            for probe in self.probes():
                snap = probe.reading(name)
                if snap is None:
                    continue
                for value, extra in reading(probe, snap):
                    observations.append(otel_metrics.Observation(
                        value, {**probe.attributes, **extra} if extra else probe.attributes))
            return observations

        return observe

    def probes(self) -> list["_Probe"]:
        with self._lock:
            return list(self._probes)

    def add(self, probe: "_Probe") -> None:
        with self._lock:
            self._probes.append(probe)

    def discard(self, probe: "_Probe") -> None:
        with self._lock:
            if probe in self._probes:
                self._probes.remove(probe)


def _histogram(meter: Any, name: str, unit: str, description: str) -> Any:
    """A histogram with conveyor's own bucket bounds (10 us to 10 s, as the statistics use)
    where the API has bucket advice (1.23+); the SDK's default bounds suit milliseconds."""
    try:
        return meter.create_histogram(name, unit=unit, description=description,
                                      explicit_bucket_boundaries_advisory=list(BUCKETS))
    except TypeError:
        return meter.create_histogram(name, unit=unit, description=description)


_by_provider: "weakref.WeakKeyDictionary[Any, _Instruments]" = weakref.WeakKeyDictionary()
_by_provider_lock = threading.Lock()


def _instruments_for(meter_provider: Any) -> _Instruments:
    with _by_provider_lock:
        found = _by_provider.get(meter_provider)
        if found is None:
            found = _by_provider[meter_provider] = _Instruments(meter_provider)
        return found


# ---------------------------------------------------------------- on each loop

_loop_numbers = itertools.count(1)


class _Probe(Heartbeat):
    """What a `LoopTelemetry` keeps on one loop (installed next to a private `LoopStats`).

    As a `Heartbeat` it marks when the loop leaves and re-enters its poll, which is all the
    stall thread needs; ``after_callback`` adds the per-callback work: a timer callback's
    lateness goes to the histogram, a slow callback becomes a span.
    """

    def __init__(self, telemetry: "LoopTelemetry", loop: LoopInternals) -> None:
        super().__init__(None, loop)
        self.telemetry = telemetry
        self.stats = LoopStats(loop)
        #: On every data point and span: which loop (numbered in instrumenting order).
        self.attributes = {"conveyor.loop.id": next(_loop_numbers)}
        self.slow_callback = telemetry.slow_callback
        self.timer_lag = telemetry._instruments.timer_lag
        #: A stall the thread has seen and the loop has not yet come back from.
        self.pending: Stall | None = None
        self.seen_blocked = 0.0  #: when the thread last saw the pending stall still on
        self.pending_lock = threading.Lock()
        self._reading_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._taken: set[str] = set()
        self._busy_base = (0.0, 0.0)  # (elapsed, poll_time) at the previous utilisation
        self.removed = False

    # ------------------------------------------------------------ hooks (loop thread)

    def before_poll(self, timeout: float | None) -> None:
        since = self.busy_since
        Heartbeat.before_poll(self, timeout)
        if self.pending is not None:
            self.end_stall(since)

    def after_callback(self, handle: Any, task: asyncio.Task | None, took: float) -> None:
        if took >= self.slow_callback:
            self.telemetry._slow_callback_span(self, handle, task, took)
        when = getattr(handle, "_when", None)
        if when is not None and self.timer_lag is not None:
            self.timer_lag.record(_clock() - took - when, self.attributes)

    # ------------------------------------------------------------ stalls

    def end_stall(self, since: float | None) -> None:
        """The loop is back in poll (or we are detaching): report the pending stall.

        ``since`` is when the busy period that just ended began; if it is not the stall's,
        the thread recorded the stall just after the loop came back, and the last time the
        thread saw it still blocked is the best end we have.
        """
        with self.pending_lock:
            stall, self.pending = self.pending, None
            seen = self.seen_blocked
        if stall is None:
            return
        end = _clock() if since == stall.started else max(seen, stall.started +
                                                         stall.noticed_after)
        self.telemetry._stall_span(self, stall, end)

    def watch(self, threshold: float) -> None:
        """One look from the stall thread."""
        pending = self.pending
        if pending is not None:
            if self.busy_since == pending.started:
                self.seen_blocked = _clock()
            return
        stall = capture_stall(self, threshold)
        if stall is None:
            return
        with self.pending_lock:
            if self.busy_since == stall.started:  # else the loop came back meanwhile
                self.pending = stall
                self.seen_blocked = stall.started + stall.noticed_after

    # ------------------------------------------------------------ metrics (reader thread)

    def reading(self, name: str) -> Snapshot | None:
        """The loop's snapshot for this collection: one `LoopStats.snapshot` serves every
        instrument; a second request from the same instrument starts the next collection."""
        if self.loop.is_closed():
            return None
        with self._reading_lock:
            if self._snapshot is None or name in self._taken:
                self._snapshot = self.stats.snapshot()
                self._taken.clear()
            self._taken.add(name)
            return self._snapshot

    def utilization(self, snap: Snapshot) -> float:
        """Busy share since the previous collection (since instrumenting, the first time)."""
        elapsed, polled = self._busy_base
        self._busy_base = (snap.elapsed, snap.poll_time)
        span = snap.elapsed - elapsed
        if span <= 0:
            return 0.0
        return min(max(1.0 - (snap.poll_time - polled) / span, 0.0), 1.0)

    # ------------------------------------------------------------ (un)installing

    def install(self) -> None:
        """On the loop's thread (or before it runs)."""
        if self.removed or self.loop.is_closed():
            return
        self.stats.reset()
        add_instrument(self.stats, self.loop)
        add_instrument(self, self.loop)

    def uninstall(self) -> None:
        """On the loop's thread (or with the loop stopped)."""
        if self.loop.is_closed():
            return
        remove_instrument(self, self.loop)
        remove_instrument(self.stats, self.loop)


# ---------------------------------------------------------------- spans

def _callback_code(handle: Any, task: asyncio.Task | None) -> tuple[str, dict[str, Any]]:
    """(what ran, its ``code.*`` attributes), from the site every instrument names."""
    site = callback_site(handle, task)
    attributes: dict[str, Any] = {"code.function.name": site.name}
    if site.filename:
        attributes["code.file.path"] = site.filename
        attributes["code.line.number"] = site.lineno
    return site.name, attributes


def _task_attributes(task: asyncio.Task) -> dict[str, Any]:
    return {"conveyor.task.name": task.get_name(),
            "conveyor.task.coroutine": coroutine_name(task.get_coro())}


def _format_stack(stack: list[traceback.FrameSummary]) -> str:
    """A stack as Python prints one that is not an exception's (``logging``'s stack_info)."""
    return "Stack (most recent call last):\n" + "".join(traceback.format_list(stack))


def _parent_context(context: Any) -> Any:
    """The OTel context current in a callback's ``contextvars`` context (its span becomes
    the parent), or None. Entering the context fails if another thread is inside it."""
    if context is None:
        return None
    try:
        return context.run(_current_otel_context)
    except RuntimeError:
        return None


def _epoch_ns(monotonic: float, now: float, now_ns: int) -> int:
    return now_ns - round((now - monotonic) * 1e9)


# ---------------------------------------------------------------- the handle

class LoopTelemetry:
    """Metrics and spans for some conveyor loops; made by `instrument`.

    ``close()`` (or leaving the ``with`` block) removes everything it installed: the loops go
    back to their fast path, the stall thread stops, the metrics get no more data points.
    """

    def __init__(self, *, meter_provider: Any = None, tracer_provider: Any = None,
                 slow_callback: float | None = 0.1, stall: float | None = 0.1,
                 interval: float | None = None) -> None:
        for label, value in (("slow_callback", slow_callback), ("stall", stall)):
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"{label} must be a positive number of seconds or None, "
                                 f"got {value!r}")
        if interval is None:
            interval = min(stall / 4, 0.05) if stall is not None else 0.05
        if not isinstance(interval, (int, float)) or interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds, got "
                             f"{interval!r}")
        self.slow_callback = math.inf if slow_callback is None else float(slow_callback)
        self.stall = None if stall is None else float(stall)
        self.interval = float(interval)
        self._instruments = _instruments_for(
            meter_provider if meter_provider is not None else otel_metrics.get_meter_provider())
        self._tracer = (tracer_provider if tracer_provider is not None
                        else otel_trace.get_tracer_provider()).get_tracer(SCOPE, __version__)
        self._probes: dict[Any, _Probe] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unwatch: Callable[[], None] | None = None
        self.closed = False

    # ------------------------------------------------------------ attaching

    def attach(self, loop: LoopInternals) -> None:
        """Measure ``loop`` (a conveyor EventLoop) from now on."""
        _require_conveyor(loop)
        if self.closed:
            raise RuntimeError("this LoopTelemetry is closed")
        with self._lock:
            if loop in self._probes or loop.is_closed():
                return
            probe = self._probes[loop] = _Probe(self, loop)
            if self.stall is not None and self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="conveyor-otel",
                                                daemon=True)
                self._thread.start()
        self._instruments.add(probe)
        on_loop_thread(loop, probe.install)

    def detach(self, loop: LoopInternals) -> None:
        """Stop measuring ``loop``; a stall it is in now is reported as seen so far."""
        with self._lock:
            probe = self._probes.pop(loop, None)
        if probe is None:
            return
        self._instruments.discard(probe)
        probe.end_stall(probe.busy_since)
        # Until the uninstall below runs on the loop's thread, record nothing more.
        probe.slow_callback = math.inf
        probe.timer_lag = None
        probe.removed = True
        on_loop_thread(loop, probe.uninstall)

    @property
    def loops(self) -> list[Any]:
        """The loops measured now."""
        with self._lock:
            return list(self._probes)

    def _watch_new_loops(self) -> None:
        if self._unwatch is None:
            self._unwatch = on_new_loop(self.attach)

    def close(self) -> None:
        """Remove every instrument, stop the thread; nothing is recorded afterwards."""
        if self.closed:
            return
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()
        for loop in self.loops:
            self.detach(loop)
        self.closed = True
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def __enter__(self) -> "LoopTelemetry":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------ the stall thread

    def _watch(self) -> None:
        threshold = self.stall
        while not self._stop.wait(self.interval):
            with self._lock:
                probes = list(self._probes.values())
            for probe in probes:
                try:
                    probe.watch(threshold)
                except Exception:  # must outlive anything it looks at, like the watchdog
                    logger.exception("conveyor.observe.otel failed to inspect %r",
                                     probe.loop)

    # ------------------------------------------------------------ spans

    def _slow_callback_span(self, probe: _Probe, handle: Any, task: asyncio.Task | None,
                            took: float) -> None:
        """On the loop's thread, just after the callback returned."""
        now, now_ns = _clock(), time.time_ns()
        start = now - took
        name, attributes = _callback_code(handle, task)
        attributes.update(probe.attributes)
        attributes["conveyor.callback.type"] = "task_step" if task is not None else "other"
        thread = threading.current_thread()
        attributes["thread.id"] = thread.ident
        attributes["thread.name"] = thread.name
        if task is not None:
            attributes.update(_task_attributes(task))
            where = where_suspended(task)
            if where:
                attributes["conveyor.task.suspended_at"] = where
        stall = probe.pending
        if stall is not None and start <= stall.started + stall.noticed_after <= now:
            # The stall thread took the stack while this callback was running: it is the
            # stack that made it slow.
            attributes["code.stacktrace"] = _format_stack(stall.stack)
        self._emit(f"slow callback {name}", start, now, now, now_ns, attributes,
                   _parent_context(getattr(handle, "_context", None)))

    def _stall_span(self, probe: _Probe, stall: Stall, end: float) -> None:
        now, now_ns = _clock(), time.time_ns()
        attributes: dict[str, Any] = dict(probe.attributes)
        if stall.stack:
            innermost = stall.stack[-1]
            attributes["code.function.name"] = innermost.name
            attributes["code.file.path"] = innermost.filename
            if innermost.lineno is not None:
                attributes["code.line.number"] = innermost.lineno
            attributes["code.stacktrace"] = _format_stack(stall.stack)
        attributes["conveyor.stall.callback"] = stall.callback
        attributes["conveyor.stall.noticed_after"] = stall.noticed_after
        if probe.thread_id is not None:
            attributes["thread.id"] = probe.thread_id
            name = next((t.name for t in threading.enumerate()
                         if t.ident == probe.thread_id), None)
            if name is not None:
                attributes["thread.name"] = name
        task = stall.task
        if task is not None:
            attributes.update(_task_attributes(task))
        self._emit("loop stall", stall.started, end, now, now_ns, attributes, None)

    def _emit(self, name: str, start: float, end: float, now: float, now_ns: int,
              attributes: dict[str, Any], parent: Any) -> None:
        """A finished span from monotonic start/end times (converted to epoch ns)."""
        span = self._tracer.start_span(name, context=parent,
                                       kind=otel_trace.SpanKind.INTERNAL,
                                       attributes=attributes,
                                       start_time=_epoch_ns(start, now, now_ns))
        span.end(end_time=_epoch_ns(end, now, now_ns))


def _require_conveyor(loop: LoopInternals) -> None:
    """TypeError unless ``loop`` has conveyor's instrument interface (the rule is hooks'.)"""
    try:
        instruments(loop)
    except TypeError as exc:
        raise TypeError(f"conveyor.observe.otel measures through conveyor's instrument "
                        f"interface, which other loops lack: {exc}") from None


# ---------------------------------------------------------------- entry point

def instrument(loop: LoopInternals = None, *, meter_provider: Any = None, tracer_provider: Any = None,
               slow_callback: float | None = 0.1, stall: float | None = 0.1,
               interval: float | None = None) -> LoopTelemetry:
    """Report conveyor loop metrics and slow-callback / stall spans to OpenTelemetry.

    ``loop``: the conveyor loop to measure; by default the running loop, if any, and every
    conveyor loop created until the returned object is closed. ``meter_provider`` /
    ``tracer_provider``: default the global ones. ``slow_callback``: a callback running at
    least this many seconds becomes a span (None: no such spans). ``stall``: the loop not
    coming back to poll for this many seconds becomes a span with the stack that blocks it
    (None: no stall thread, no such spans); ``interval``: how often the stall thread looks
    (default ``min(stall / 4, 0.05)``).

    Raises TypeError for a loop that is not conveyor's (stock asyncio has no instrument
    interface). Returns a `LoopTelemetry`: call ``close()`` or use it in ``with``.
    """
    target = loop
    if target is None:
        try:
            target = asyncio.get_running_loop()
        except RuntimeError:
            pass
    if target is not None:
        _require_conveyor(target)
    telemetry = LoopTelemetry(meter_provider=meter_provider, tracer_provider=tracer_provider,
                              slow_callback=slow_callback, stall=stall, interval=interval)
    if loop is None:
        telemetry._watch_new_loops()
    if target is not None:
        telemetry.attach(target)
    return telemetry

"""OpenTelemetry export, checked with the SDK's in-memory reader and exporter: the metrics
describe a known workload, a blocking callback becomes spans that name its code, and closing
puts the loop back on its fast path with nothing recorded afterwards."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the otel extra")

from opentelemetry.metrics import Meter  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter)

import conveyor  # noqa: E402
from conveyor.observe import otel  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: Bucket advice on histograms came with API 1.30; before it the SDK's default bounds apply.
BUCKET_ADVICE = "explicit_bucket_boundaries_advisory" in \
    inspect.signature(Meter.create_histogram).parameters


def blocker():
    time.sleep(0.2)  # BLOCKS


BLOCK_LINE = blocker.__code__.co_firstlineno + 1


class Sink:
    """An SDK meter provider and tracer provider that keep everything in memory."""

    def __init__(self):
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def instrument(self, loop=None, **options):
        return otel.instrument(loop, meter_provider=self.meter_provider,
                               tracer_provider=self.tracer_provider, **options)

    def metrics(self):
        """{metric name: [(attributes, data point)]} collected now."""
        found = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = [(dict(point.attributes), point)
                                          for point in metric.data.data_points]
        return found

    def value(self, name, **attributes):
        """The one data point of ``name`` whose attributes include ``attributes``."""
        points = [point for attrs, point in self.metrics()[name]
                  if all(attrs.get(key) == want for key, want in attributes.items())]
        assert len(points) == 1, (name, attributes, points)
        return points[0]

    def spans(self, prefix=""):
        return [span for span in self.exporter.get_finished_spans()
                if span.name.startswith(prefix)]


def _otel_threads():
    return [t for t in threading.enumerate() if t.name == "conveyor-otel"]


def seconds(span):
    return (span.end_time - span.start_time) / 1e9


def test_import_conveyor_does_not_import_opentelemetry():
    code = ("import sys, conveyor, conveyor.observe, conveyor.bench.observe\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
            "assert not loaded, loaded\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                              ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_metrics_describe_a_known_workload(loop):
    sink = Sink()
    a, b = socket.socketpair()

    async def main():
        telemetry = sink.instrument()
        assert telemetry.loops == [loop]
        ran = []
        for i in range(200):
            loop.call_soon(ran.append, i)
        loop.call_later(0.01, ran.append, "timer")  # fires ~0.19 s late: blocker runs first
        await asyncio.sleep(0)
        loop.call_soon(blocker)
        await asyncio.sleep(0.05)
        assert len(ran) == 201
        gate = asyncio.Event()
        waiting = [asyncio.create_task(gate.wait()) for _ in range(3)]
        await asyncio.sleep(0)
        far = loop.call_later(60, ran.append, "never")
        loop.add_reader(a, lambda: None)
        for _ in range(5):
            loop.call_soon(ran.append, "queued")
        alive = len(asyncio.all_tasks())
        with_reader = sink.metrics()
        loop.remove_reader(a)
        far.cancel()
        without_reader = sink.metrics()
        gate.set()
        await asyncio.gather(*waiting)
        telemetry.close()
        return with_reader, without_reader, alive

    try:
        with_reader, without_reader, alive = loop.run_until_complete(asyncio.wait_for(main(), 10))
    finally:
        a.close()
        b.close()

    def one(metrics, name, **attributes):
        points = [point for attrs, point in metrics[name]
                  if all(attrs.get(key) == want for key, want in attributes.items())]
        assert len(points) == 1, (name, points)
        return points[0]

    assert one(with_reader, "conveyor.loop.callbacks",
               **{"conveyor.callback.type": "other"}).value >= 201
    assert one(with_reader, "conveyor.loop.callbacks",
               **{"conveyor.callback.type": "task_step"}).value >= 3
    assert one(with_reader, "conveyor.loop.iterations").value >= 3
    assert 0 < one(with_reader, "conveyor.loop.utilization").value <= 1
    assert one(with_reader, "conveyor.loop.time",
               **{"conveyor.loop.state": "active"}).value >= 0.19
    assert one(with_reader, "conveyor.loop.task.count").value == alive >= 4  # 3 waiting
    assert one(with_reader, "conveyor.loop.queue.length").value >= 5
    assert one(with_reader, "conveyor.loop.timer.count").value >= 1
    fds = one(with_reader, "conveyor.loop.fd.count").value
    assert fds >= 1 and one(without_reader, "conveyor.loop.fd.count").value == fds - 1
    lag = one(with_reader, "conveyor.loop.timer.lag")
    assert lag.count >= 2 and lag.max >= 0.15  # the timer that waited behind blocker
    if BUCKET_ADVICE:
        assert lag.explicit_bounds[0] == pytest.approx(1e-5)  # conveyor's, in seconds
    # Every data point says which loop it is about.
    loop_ids = {attrs["conveyor.loop.id"] for points in with_reader.values()
                for attrs, _ in points}
    assert len(loop_ids) == 1
    units = {name: unit for name, _, unit, _ in otel.METRICS}
    assert units["conveyor.loop.utilization"] == "1"
    assert units["conveyor.loop.callbacks"] == "{callback}"
    assert set(with_reader) == set(units)


def test_slow_callback_and_stall_spans_name_the_blocking_code(loop):
    sink = Sink()

    async def main():
        with sink.instrument(stall=0.05):
            loop.call_soon(blocker)
            await asyncio.sleep(0.01)
            await asyncio.sleep(0)
        assert _otel_threads() == []

    loop.run_until_complete(asyncio.wait_for(main(), 10))
    [slow] = sink.spans("slow callback")
    assert slow.name == "slow callback blocker"
    assert slow.attributes["code.function.name"] == "blocker"
    assert slow.attributes["code.file.path"] == __file__
    assert slow.attributes["code.line.number"] == blocker.__code__.co_firstlineno
    assert slow.attributes["conveyor.callback.type"] == "other"
    assert slow.attributes["thread.id"] == threading.get_ident()
    assert 0.19 <= seconds(slow) < 2.0
    assert slow.end_time <= time.time_ns()
    # The stall thread took the stack while blocker ran, so the span has it too.
    assert f'File "{__file__}", line {BLOCK_LINE}, in blocker' in \
        slow.attributes["code.stacktrace"]

    [stall] = sink.spans("loop stall")
    assert stall.attributes["code.function.name"] == "blocker"
    assert stall.attributes["code.file.path"] == __file__
    assert stall.attributes["code.line.number"] == BLOCK_LINE
    stack = stall.attributes["code.stacktrace"]
    assert stack.startswith("Stack (most recent call last):\n")
    assert "time.sleep(0.2)  # BLOCKS" in stack
    assert stall.attributes["conveyor.stall.callback"].startswith("callback blocker (")
    assert 0.05 <= stall.attributes["conveyor.stall.noticed_after"] < 0.2
    assert 0.19 <= seconds(stall) < 2.0
    assert stall.start_time <= slow.start_time and stall.end_time >= slow.end_time
    assert loop._hooks is None


def test_slow_task_step_is_a_child_of_the_span_current_in_the_task(loop):
    sink = Sink()
    tracer = sink.tracer_provider.get_tracer("test")

    async def handler():
        with tracer.start_as_current_span("request"):
            await asyncio.sleep(0)
            blocker()
            await asyncio.sleep(0)  # SUSPENDED

    async def main():
        with sink.instrument(stall=None):
            await asyncio.create_task(handler(), name="handler-1")
            assert _otel_threads() == []

    loop.run_until_complete(asyncio.wait_for(main(), 10))
    [request] = sink.spans("request")
    [slow] = sink.spans("slow callback")
    assert sink.spans("loop stall") == []
    assert slow.parent is not None and slow.parent.span_id == request.context.span_id
    assert slow.context.trace_id == request.context.trace_id
    assert slow.attributes["conveyor.callback.type"] == "task_step"
    assert slow.attributes["conveyor.task.name"] == "handler-1"
    assert slow.attributes["conveyor.task.coroutine"].endswith("handler")
    assert slow.attributes["code.function.name"].endswith("handler")
    assert slow.attributes["code.file.path"] == __file__
    suspended = handler.__code__.co_firstlineno + 4
    assert slow.attributes["code.line.number"] == suspended
    assert slow.attributes["conveyor.task.suspended_at"] == f"{__file__}:{suspended}"
    assert "code.stacktrace" not in slow.attributes  # no stall thread, no stack
    assert 0.19 <= seconds(slow) < 2.0


def test_close_removes_everything_and_records_nothing_more(loop):
    sink = Sink()

    async def main():
        telemetry = sink.instrument(slow_callback=0.05, stall=0.05)
        assert loop._hooks is not None and _otel_threads()
        await asyncio.sleep(0)
        loop.call_later(0, lambda: None)
        await asyncio.sleep(0.01)
        telemetry.close()
        telemetry.close()  # idempotent
        assert loop._hooks is None  # back on the fast path
        assert telemetry.loops == [] and _otel_threads() == []
        before = sink.metrics()
        for _ in range(100):
            loop.call_soon(lambda: None)
        loop.call_later(0, lambda: None)
        loop.call_soon(blocker)
        await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        return before

    before = loop.run_until_complete(asyncio.wait_for(main(), 10))
    after = sink.metrics()
    assert sink.spans() == []
    # The observable instruments report nothing once closed; the histogram gets no new
    # measurement (newer SDKs repeat its cumulative point, older ones leave it out).
    assert set(before) == {"conveyor.loop.timer.lag"}
    assert set(after) <= {"conveyor.loop.timer.lag"}
    [(_, lag_before)] = before["conveyor.loop.timer.lag"]
    assert lag_before.count >= 1
    assert [point.count for _, point in after.get("conveyor.loop.timer.lag", [])] in \
        ([], [lag_before.count])
    closed = sink.instrument(loop)
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        closed.attach(loop)


def test_stock_asyncio_loop_is_refused():
    sink = Sink()
    stock = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match="must be a conveyor EventLoop"):
            sink.instrument(stock)

        async def main():
            with pytest.raises(TypeError, match="instrument interface.*_UnixSelectorEventLoop"):
                sink.instrument()

        stock.run_until_complete(main())
    finally:
        stock.close()


def test_bad_thresholds_are_refused(loop):
    sink = Sink()
    for options in ({"slow_callback": 0}, {"stall": -1}, {"interval": 0},
                    {"slow_callback": "1"}):
        with pytest.raises(ValueError):
            sink.instrument(loop, **options)
    assert loop._hooks is None


def test_with_block_measures_loops_created_inside_each_as_its_own_series():
    sink = Sink()

    async def work():
        await asyncio.sleep(0)
        return (len(conveyor.observe.instruments()),
                {attrs["conveyor.loop.id"]
                 for attrs, _ in sink.metrics().get("conveyor.loop.iterations", [])})

    with sink.instrument(stall=None) as telemetry:
        assert telemetry.loops == []
        first, first_ids = conveyor.run(work())
        second, second_ids = conveyor.run(work())
    # LoopStats and the probe on each loop; a closed loop has no more data points.
    assert first == second == 2
    assert len(first_ids) == len(second_ids) == 1 and first_ids != second_ids
    # A second handle on the same providers joins the same instruments.
    third = conveyor.new_event_loop()
    try:
        with sink.instrument(third, stall=None), sink.instrument(third, stall=None):
            third.run_until_complete(asyncio.sleep(0))
            points = sink.metrics()["conveyor.loop.iterations"]
        assert len({attrs["conveyor.loop.id"] for attrs, _ in points}) == 2
        assert third._hooks is None
    finally:
        third.close()
    assert conveyor.run(work()) == (0, set())  # not measured after the block


def test_instrument_a_loop_running_in_another_thread():
    sink = Sink()
    loop = conveyor.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()

    def on_loop(func):
        done = threading.Event()
        result = []
        loop.call_soon_threadsafe(lambda: (result.append(func()), done.set()))
        assert done.wait(10)
        return result[0]

    try:
        telemetry = sink.instrument(loop, stall=0.05)
        assert on_loop(lambda: loop._hooks is not None)  # installed on the loop's thread
        loop.call_soon_threadsafe(blocker)
        on_loop(lambda: None)  # after blocker, and the loop is back in poll once
        on_loop(lambda: None)
        telemetry.close()
        assert on_loop(lambda: loop._hooks is None)
        spans = sink.spans()
        assert sorted(span.name for span in spans) == ["loop stall",
                                                       "slow callback blocker"]
        assert all(span.attributes["thread.id"] == thread.ident for span in spans)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

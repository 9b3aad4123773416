"""The tracer on real programs: the Chrome trace JSON is well formed and its lanes and
events match what the program did; the HTML page is self-contained; memory is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import threading
import time
import types
import typing

import pytest

import conveyor
from conveyor.observe import trace_events
from conveyor.observe.trace import LOOP_TID, POLL_TID, TASK_TID_BASE, Tracer

from support import run

PHASES = {"X", "i", "M"}


def _fds():
    return sorted(os.listdir("/proc/self/fd"))


def validate(data):
    """The Trace Event Format's required fields, per event phase."""
    assert isinstance(data, dict) and isinstance(data["traceEvents"], list)
    for event in data["traceEvents"]:
        assert event["ph"] in PHASES, event
        assert isinstance(event["name"], str) and event["name"], event
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int), event
        if event["ph"] == "M":
            assert isinstance(event["args"], dict)
            continue
        assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0, event
        if event["ph"] == "X":
            assert isinstance(event["dur"], (int, float)) and event["dur"] >= 0, event
        if event["ph"] == "i":
            assert event["s"] in ("t", "p", "g"), event


def lanes(data):
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in data["traceEvents"]
            if e["ph"] == "M" and e["name"] == "thread_name"}


def events_on(data, tid, ph=None):
    return [e for e in data["traceEvents"] if e["ph"] != "M" and e["tid"] == tid
            and (ph is None or e["ph"] == ph)]


BLOCK_LINE = None


def blocking_callback():
    time.sleep(0.05)


async def sleeper(delay):
    await asyncio.sleep(delay)
    return delay


async def scripted():
    """Two tasks sleeping, and a blocking timer callback in between."""
    loop = asyncio.get_running_loop()
    a = asyncio.create_task(sleeper(0.02), name="a")
    b = asyncio.create_task(sleeper(0.04), name="b")
    loop.call_later(0.005, blocking_callback)
    assert await asyncio.gather(a, b) == [0.02, 0.04]


def test_json_matches_scripted_program(tmp_path):
    out = tmp_path / "trace.json"
    before = _fds()
    errors = []

    def handler(loop, context):
        errors.append(context)

    with conveyor.trace(out, slow=0.02):
        loop = conveyor.new_event_loop()
        loop.set_exception_handler(handler)
        try:
            # Not under wait_for: on 3.12+ it runs the coroutine in its own task, which
            # would change who spawned the sleepers. pytest-timeout bounds the test.
            loop.run_until_complete(scripted())
        finally:
            loop.close()
    assert errors == []
    assert _fds() == before
    data = json.loads(out.read_text())
    validate(data)
    names = lanes(data)
    assert names[(1, POLL_TID)] == "kernel wait (poll)"
    assert names[(1, LOOP_TID)] == "loop"
    task_lanes = {name: tid for (pid, tid), name in names.items() if tid >= TASK_TID_BASE}
    assert "task a (sleeper)" in task_lanes and "task b (sleeper)" in task_lanes

    # The blocking callback: on the loop lane, marked slow, at least 50 ms, named.
    slow = [e for e in events_on(data, LOOP_TID, "X") if e["args"].get("slow")]
    assert [e["name"] for e in slow] == ["blocking_callback"]
    assert slow[0]["dur"] >= 50_000
    assert slow[0]["cat"] == "timer"
    assert slow[0]["args"]["source"] == \
        f"{__file__}:{blocking_callback.__code__.co_firstlineno}"

    # Each sleeper: created (spawned by the scripted task), 2 steps, returned.
    for name in ("a", "b"):
        tid = task_lanes[f"task {name} (sleeper)"]
        marks = [e["name"] for e in events_on(data, tid, "i")]
        assert marks == ["created", "returned"]
        created = events_on(data, tid, "i")[0]
        assert created["args"]["spawned_by"].endswith("(scripted)")
        steps = events_on(data, tid, "X")
        assert len(steps) == 2
        assert all(s["name"] == "step" for s in steps)
    # b finished after a, and after the blocking callback.
    end_a = events_on(data, task_lanes["task a (sleeper)"], "i")[-1]["ts"]
    end_b = events_on(data, task_lanes["task b (sleeper)"], "i")[-1]["ts"]
    assert slow[0]["ts"] + slow[0]["dur"] <= end_a < end_b

    # Kernel waits: one poll per iteration, and some real waiting happened.
    polls = events_on(data, POLL_TID, "X")
    iterations = [e for e in events_on(data, LOOP_TID, "X") if e["name"] == "iteration"]
    assert len(polls) == len(iterations) > 3
    assert max(p["dur"] for p in polls) >= 3_000
    # Callbacks nest inside their iteration on the loop lane.
    for callback in slow:
        assert any(i["ts"] <= callback["ts"] and
                   callback["ts"] + callback["dur"] <= i["ts"] + i["dur"] + 1
                   for i in iterations)


def test_fd_readiness_is_recorded(tmp_path):
    out = tmp_path / "io.json"
    a, b = socket.socketpair()
    fd = a.fileno()
    try:
        async def main():
            loop = asyncio.get_running_loop()
            got = loop.create_future()

            def readable():
                got.set_result(a.recv(100))

            loop.add_reader(a.fileno(), readable)
            loop.call_later(0.01, b.send, b"x")
            try:
                assert await got == b"x"
            finally:
                loop.remove_reader(a.fileno())

        loop = conveyor.new_event_loop()
        try:
            with conveyor.trace(out):
                run(loop, main())
        finally:
            loop.close()
    finally:
        a.close()
        b.close()
    data = json.loads(out.read_text())
    validate(data)
    io = [e for e in events_on(data, POLL_TID, "i") if e["args"].get("fd") == fd]
    assert io and io[0]["name"] == f"fd {fd} readable"
    assert any(e["name"] == "test_fd_readiness_is_recorded.<locals>.main.<locals>.readable"
               for e in events_on(data, LOOP_TID, "X"))


def test_ring_buffer_bounds_memory():
    tracer = Tracer(max_events=200)
    loop = conveyor.new_event_loop()
    try:
        tracer.attach(loop)
        count = 0

        def tick():
            nonlocal count
            count += 1
            if count < 5000:
                loop.call_soon(tick)
            else:
                loop.stop()

        loop.call_soon(tick)
        loop.run_forever()
        tracer.detach(loop)
    finally:
        loop.close()
    assert loop._hooks is None
    assert len(tracer._events) == 200
    data = tracer.to_chrome()
    validate(data)
    assert data["otherData"]["ring_buffer_overflowed"] is True


def test_decorators_trace_each_call(tmp_path):
    out_async = tmp_path / "async.json"
    out_sync = tmp_path / "sync.json"

    @conveyor.trace(out_async)
    async def traced():
        await asyncio.sleep(0)
        return 7

    @conveyor.trace(out_sync)
    def traced_sync():
        return conveyor.run(traced_plain())

    async def traced_plain():
        await asyncio.sleep(0)
        return 8

    assert conveyor.run(traced()) == 7
    assert traced_sync() == 8
    for out in (out_async, out_sync):
        data = json.loads(out.read_text())
        validate(data)
        assert events_on(data, POLL_TID, "X")
    # The sync decorator saw the loop from its creation: the main task has a lane.
    assert any("traced_plain" in name for name in lanes(json.loads(out_sync.read_text()))
               .values())
    from conveyor import core
    assert not [observer for observer in core._new_loop_observers
                if isinstance(getattr(observer, "__self__", None), Tracer)]


def test_html_is_self_contained(tmp_path):
    out = tmp_path / "trace.html"
    with conveyor.trace(out):
        conveyor.run(scripted())
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "https://" not in html and "http://" not in html
    payload = re.search(r'<script type="application/json" id="trace-data">(.*?)</script>',
                        html, re.S).group(1)
    data = json.loads(payload)
    validate(data)
    assert "</" not in payload


def test_bad_arguments():
    with pytest.raises(ValueError, match="slow"):
        conveyor.trace("x.json", slow=-1)
    with pytest.raises(ValueError, match="max_events"):
        conveyor.trace("x.json", max_events=0)
    with pytest.raises(TypeError, match="loop"):
        Tracer().attach(object())


def test_tracing_does_not_retrieve_task_exceptions(tmp_path):
    """asyncio still reports a failed task nobody awaited: the tracer only looked."""
    import gc

    contexts = []
    loop = conveyor.new_event_loop()
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))

    async def fails():
        raise ValueError("nobody awaits me")

    async def main():
        task = asyncio.create_task(fails())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert task.done()

    try:
        with conveyor.trace(tmp_path / "t.json"):
            loop.run_until_complete(main())
        gc.collect()
    finally:
        loop.close()
    assert [c["message"] for c in contexts] == ["Task exception was never retrieved"]
    data = json.loads((tmp_path / "t.json").read_text())
    outcomes = [e["args"]["outcome"] for e in data["traceEvents"]
                if e["ph"] == "i" and e["cat"] == "task" and "outcome" in e["args"]]
    assert "raised ValueError: nobody awaits me" in outcomes


def test_task_lanes_are_forgotten_when_tasks_are_collected():
    """Finished tasks leave the recorder's map at task_done; tasks that never finish leave
    it when collected, so the map is as small as the set of live tasks."""
    import gc

    tracer = Tracer()
    contexts = []
    loop = conveyor.new_event_loop()
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    try:
        tracer.attach(loop)
        recorder = tracer._recorders[loop]

        async def forever():
            await asyncio.get_running_loop().create_future()  # nothing else refers to it

        async def main():
            finishing = [asyncio.create_task(asyncio.sleep(0)) for _ in range(20)]
            abandoned = [asyncio.create_task(forever()) for _ in range(30)]
            await asyncio.sleep(0)
            assert len(recorder._serials) == 51  # the 50 and main
            await asyncio.gather(*finishing)
            assert len(recorder._serials) == 31
            abandoned.clear()
            gc.collect()
            return len(recorder._serials)

        assert loop.run_until_complete(main()) == 1
        tracer.detach(loop)
    finally:
        loop.close()
    assert {c["message"] for c in contexts} == {"Task was destroyed but it is pending!"}


def _fits(value, hint):
    """isinstance for the schema's annotations (unions, Any, tuple[...])."""
    if hint is typing.Any:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return isinstance(value, tuple)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def test_every_recorded_event_fits_its_schema():
    """The recorder appends plain tuples for speed; each must have the length, order and
    field types its NamedTuple in trace_events.py declares. Every kind is produced here."""
    tracer = Tracer(slow=0)  # every step slow: Step.suspended_at is filled in
    loop = conveyor.new_event_loop()
    a, b = socket.socketpair()

    async def main():
        tracer.attach(loop)  # main predates tracing: it gets an "existing" lane
        lingering = asyncio.create_task(asyncio.sleep(10))  # still alive at detach
        await asyncio.create_task(asyncio.sleep(0))
        loop.call_soon(lambda: None)
        got = loop.create_future()
        loop.add_reader(a.fileno(), lambda: got.set_result(a.recv(1)))
        loop.call_later(0.001, b.send, b"x")
        try:
            assert await got == b"x"
        finally:
            loop.remove_reader(a.fileno())
        await asyncio.sleep(0)
        tracer.detach(loop)
        lingering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lingering

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        a.close()
        b.close()
    events = list(trace_events.named(tracer._events))
    assert {type(e) for e in events} == set(trace_events.KINDS.values())
    for event in events:
        for field, hint in typing.get_type_hints(type(event)).items():
            assert _fits(getattr(event, field), hint), (field, event)
    assert any(e.existing for e in events if isinstance(e, trace_events.TaskCreated))
    assert any(e.ready for e in events if isinstance(e, trace_events.Poll))


async def blocker():
    await asyncio.sleep(0)
    time.sleep(0.1)  # BLOCKS: the slow step's name points here
    await asyncio.sleep(0)  # STOPS: and then here


def _line_of(marker):
    """The line of this file whose comment starts with ``# marker:``."""
    with open(__file__, encoding="utf-8") as file:
        return next(n for n, text in enumerate(file, 1) if f"# {marker}:" in text
                    and not text.lstrip().startswith(("#", '"')))


def test_slow_step_is_named_by_its_coroutine_and_the_line_that_blocked(tmp_path):
    """A sampler thread catches the line a step is running when it blocks (time.sleep in
    blocker()); the step's name gives it, with the await it then stopped at."""
    out = tmp_path / "t.json"
    with conveyor.trace(out, slow=0.05):
        conveyor.run(blocker())
    data = json.loads(out.read_text())
    blocks, stops = _line_of("BLOCKS"), _line_of("STOPS")
    slow = [e for e in events_on(data, LOOP_TID, "X") if e["args"].get("slow")]
    assert [e["name"] for e in slow] == \
        [f"blocker() {os.path.basename(__file__)}:{blocks}\u2192{stops}"]
    assert slow[0]["args"]["blocked_at"] == f"{__file__}:{blocks}"
    assert slow[0]["args"]["suspended_at"] == f"{__file__}:{stops}"
    assert slow[0]["dur"] >= 100_000
    # The same name on the task's own lane; fast steps stay plain "step".
    task_steps = [e for e in data["traceEvents"] if e["ph"] == "X"
                  and e["tid"] >= TASK_TID_BASE]
    assert sorted(e["name"] for e in task_steps) == \
        sorted([slow[0]["name"]] + ["step"] * (len(task_steps) - 1))
    # The sampler thread is gone with the tracer.
    assert not [t for t in threading.enumerate() if t.name == "conveyor-trace-sampler"]


def test_step_label_without_a_sighting():
    from conveyor.observe.sites import Site
    from conveyor.observe.trace_writers import step_label

    assert step_label(None, None) is None
    assert step_label(None, Site("start", "/x/web.py", 40)) == "start() web.py:\u219240"
    # Seen in another function than the one it stopped in: the sighting alone.
    assert step_label(Site("slow", "/a/app.py", 10), Site("start", "/x/web.py", 40)) == \
        "slow() app.py:10"
    assert step_label(Site("slow", "/a/app.py", 10), Site("slow", "/a/app.py", 10)) == \
        "slow() app.py:10"


def test_task_lanes_carry_their_coroutine(tmp_path):
    out = tmp_path / "t.json"

    async def tiny():
        return 1

    async def main():
        await asyncio.gather(*(asyncio.create_task(tiny()) for _ in range(5)))

    with conveyor.trace(out):
        conveyor.run(main())
    data = json.loads(out.read_text())
    coros = [e["args"]["coro"] for e in data["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name" and e["tid"] >= TASK_TID_BASE]
    assert coros.count("test_task_lanes_carry_their_coroutine.<locals>.tiny") == 5

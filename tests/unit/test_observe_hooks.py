"""The instrument interface: what instruments are told, in what order, and how a broken
instrument is contained."""

from __future__ import annotations

import asyncio
import logging

import pytest

import conveyor
from conveyor.observe import hooks

from support import run


class Recorder(conveyor.Instrument):
    def __init__(self):
        self.calls = []

    def before_iteration(self):
        self.calls.append(("before_iteration",))

    def before_poll(self, timeout):
        self.calls.append(("before_poll", timeout))

    def after_poll(self, timeout, events):
        self.calls.append(("after_poll", timeout, len(events)))

    def before_callback(self, handle, task):
        self.calls.append(("before_callback", handle, task))

    def after_callback(self, handle, task, took):
        assert took >= 0
        self.calls.append(("after_callback", handle, task))

    def after_iteration(self):
        self.calls.append(("after_iteration",))

    def task_created(self, task):
        self.calls.append(("task_created", task))

    def task_done(self, task):
        self.calls.append(("task_done", task))


def test_no_instrument_means_no_hooks_object(loop):
    assert loop._hooks is None
    assert hooks.instruments(loop) == ()


def test_iteration_hooks_come_in_phase_order(loop):
    recorder = Recorder()
    conveyor.add_instrument(recorder, loop)
    ran = []
    loop.call_soon(ran.append, 1)
    loop.call_soon(loop.stop)
    loop.run_forever()
    names = [call[0] for call in recorder.calls]
    assert names == ["before_iteration", "before_poll", "after_poll",
                     "before_callback", "after_callback",
                     "before_callback", "after_callback", "after_iteration"]
    assert recorder.calls[1] == ("before_poll", 0)
    assert recorder.calls[3][1]._callback == ran.append
    assert recorder.calls[3][2] is None
    assert ran == [1]


def test_task_steps_carry_their_task_and_lifecycle_is_reported_once(loop):
    recorder = Recorder()
    conveyor.add_instrument(recorder, loop)

    async def child():
        await asyncio.sleep(0)
        return 1

    async def main():
        task = asyncio.create_task(child(), name="child")
        assert await task == 1
        return task

    task = run(loop, main())
    created = [call[1] for call in recorder.calls if call[0] == "task_created"]
    done = [call[1] for call in recorder.calls if call[0] == "task_done"]
    assert task in created
    assert done.count(task) == 1
    steps = [call for call in recorder.calls if call[0] == "before_callback" and call[2] is task]
    # First step runs to the sleep(0); the second finishes the coroutine.
    assert len(steps) == 2
    # task_done comes right after the step that finished the task.
    index = recorder.calls.index(("task_done", task))
    assert recorder.calls[index - 1][0] == "after_callback"
    assert recorder.calls[index - 1][2] is task


@pytest.mark.parametrize("outcome", ["return", "raise", "cancel"])
def test_task_done_for_every_outcome(loop, outcome):
    recorder = Recorder()
    conveyor.add_instrument(recorder, loop)

    async def body():
        if outcome == "raise":
            raise ValueError("boom")
        await asyncio.sleep(3600)

    async def main():
        task = asyncio.create_task(body())
        await asyncio.sleep(0)
        if outcome == "cancel":
            task.cancel()
        if outcome == "return":
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return task

    task = run(loop, main())
    assert [call for call in recorder.calls if call == ("task_done", task)] == \
        [("task_done", task)]


def test_partial_instrument_only_gets_what_it_defines(loop):
    polls = []

    class PollOnly:
        def after_poll(self, timeout, events):
            polls.append(timeout)

    conveyor.add_instrument(PollOnly(), loop)
    fan_out = loop._hooks
    assert fan_out._before_callback == [] and fan_out._after_callback == []
    assert fan_out.per_callback is False  # the loop keeps its fast path for callbacks
    ran = []
    loop.call_soon(ran.append, 1)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert polls == [0]
    assert ran == [1]


def test_after_iteration_on_the_fast_path_too(loop):
    seen = []

    class Iterations:
        def after_iteration(self):
            seen.append(len(loop._ready))

    conveyor.add_instrument(Iterations(), loop)
    assert loop._hooks.per_callback is False
    loop.call_soon(loop.call_soon, lambda: None)
    loop.call_soon(loop.stop)
    loop.run_forever()
    # After the first iteration, the callback it scheduled is waiting.
    assert seen == [1]


def test_instrument_that_raises_is_removed_and_logged(loop, caplog):
    good = Recorder()

    class Broken(conveyor.Instrument):
        def after_callback(self, handle, task, took):
            raise RuntimeError("instrument bug")

    broken = Broken()
    conveyor.add_instrument(broken, loop)
    conveyor.add_instrument(good, loop)
    ran = []
    loop.call_soon(ran.append, 1)
    loop.call_soon(ran.append, 2)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.ERROR, logger="conveyor.observe"):
        loop.run_forever()
    assert ran == [1, 2]
    assert hooks.instruments(loop) == (good,)
    assert [r for r in caplog.records if "instrument bug" in (r.exc_text or "")
            or "Broken" in r.getMessage()]
    # The good instrument saw all three callbacks.
    assert len([c for c in good.calls if c[0] == "after_callback"]) == 3


def test_removing_last_instrument_restores_fast_path(loop):
    recorder = Recorder()
    conveyor.add_instrument(recorder, loop)
    conveyor.add_instrument(recorder, loop)  # adding twice is a no-op
    assert hooks.instruments(loop) == (recorder,)
    assert conveyor.remove_instrument(recorder, loop) is True
    assert loop._hooks is None
    assert conveyor.remove_instrument(recorder, loop) is False


def test_instrument_removed_mid_iteration_is_safe(loop):
    recorder = Recorder()

    def remove():
        conveyor.remove_instrument(recorder, loop)

    conveyor.add_instrument(recorder, loop)
    loop.call_soon(remove)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert loop._hooks is None
    assert ("after_iteration",) not in recorder.calls


def test_bad_arguments(loop):
    with pytest.raises(TypeError, match="instrument"):
        conveyor.add_instrument(object(), loop)
    with pytest.raises(TypeError, match="loop"):
        conveyor.add_instrument(Recorder(), object())


def test_default_loop_is_the_running_one(loop):
    recorder = Recorder()

    async def main():
        conveyor.add_instrument(recorder)
        assert hooks.instruments() == (recorder,)
        assert conveyor.remove_instrument(recorder)

    run(loop, main())
    with pytest.raises(RuntimeError):
        conveyor.add_instrument(recorder)


def test_task_of_recognises_steps_and_wakeups_only(loop):
    seen = []

    class Steps(conveyor.Instrument):
        def before_callback(self, handle, task):
            seen.append((handle._callback, task))

    async def main():
        fut = loop.create_future()
        loop.call_soon(fut.set_result, None)
        await fut
        me = asyncio.current_task()
        loop.call_soon(me.get_name)  # a bound method of a task that is not a step
        await asyncio.sleep(0)
        return me

    conveyor.add_instrument(Steps(), loop)
    task = run(loop, main())
    named = [(getattr(cb, "__name__", None), t) for cb, t in seen]
    assert ("get_name", None) in named
    assert ("set_result", None) in named
    assert any(t is task for _, t in named)


@pytest.mark.skipif(not hasattr(asyncio, "eager_task_factory"),
                    reason="eager tasks arrived in Python 3.12")
def test_eager_task_that_finishes_at_once_is_reported_done(loop):
    recorder = Recorder()
    conveyor.add_instrument(recorder, loop)
    loop.set_task_factory(asyncio.eager_task_factory)

    async def immediate():
        return 5

    async def main():
        task = loop.create_task(immediate())
        assert task.done()
        return task

    task = loop.run_until_complete(main())
    events = [call[0] for call in recorder.calls if len(call) > 1 and call[1] is task]
    assert events == ["task_created", "task_done"]

"""The loop core on its own: ordering, timers, wake-ups, fd callbacks, errors, close, debug,
task factories and the entry points (Runner, conveyor.run, install).

Every test gets a fresh conveyor loop whose exception handler fails the test unless the test
says it expects a call (and, like every test, the leak check of tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest

import conveyor
from conveyor.timers import _COMPACT_MIN

from support import open_fds, run


class _HandlerCalls(list):
    """Contexts the loop's exception handler received; a test that expects some says so."""

    expected = False


@pytest.fixture
def handler_calls():
    return _HandlerCalls()


@pytest.fixture
def loop(handler_calls):
    loop = conveyor.new_event_loop()
    loop.set_exception_handler(lambda _loop, context: handler_calls.append(context))
    yield loop
    if not loop.is_closed():
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    assert handler_calls.expected or not handler_calls, \
        f"unexpected exception handler calls: {handler_calls}"


# ----------------------------------------------------------------------------- ordering

def test_call_soon_runs_before_call_later_zero(loop):
    order = []
    loop.call_soon(order.append, "One")
    loop.call_later(0, order.append, "Two")
    loop.call_soon(order.append, "Three")
    loop.call_later(0.001, loop.stop)
    loop.run_forever()
    assert order == ["One", "Three", "Two"]


def test_callbacks_scheduled_while_running_wait_for_next_iteration(loop):
    order = []

    def first():
        order.append("first")
        loop.call_soon(order.append, "scheduled by first")

    loop.call_soon(first)
    loop.call_soon(order.append, "second")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order == ["first", "second"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order == ["first", "second", "scheduled by first"]


def test_timers_due_together_run_in_deadline_then_scheduling_order(loop):
    order = []
    now = loop.time()
    loop.call_at(now + 0.02, order.append, "b1")
    loop.call_at(now + 0.01, order.append, "a")
    loop.call_at(now + 0.02, order.append, "b2")
    loop.call_at(now + 0.03, loop.stop)
    loop.run_forever()
    assert order == ["a", "b1", "b2"]


# ------------------------------------------------------------------------------ timers

def test_call_later_fires_no_earlier_than_its_delay(loop):
    fired = []
    start = loop.time()
    loop.call_later(0.05, lambda: (fired.append(loop.time()), loop.stop()))
    loop.run_forever()
    assert fired[0] - start >= 0.05 - loop._clock_resolution
    assert fired[0] - start < 1.0


def test_sub_millisecond_sleeps_do_not_spin(loop):
    iterations = 0
    run_once = loop._run_once

    def counting_run_once():
        nonlocal iterations
        iterations += 1
        run_once()

    loop._run_once = counting_run_once

    async def sleeps():
        for delay in (1e-2, 1e-4, 1e-6, 1e-8, 1e-10):
            await asyncio.sleep(delay)

    loop.run_until_complete(sleeps())
    assert iterations <= 20


def test_cancelled_timers_never_run(loop):
    fired = []
    handles = [loop.call_later(0.001 * i, fired.append, i) for i in range(10)]
    for handle in handles[::2]:
        handle.cancel()
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert fired == [1, 3, 5, 7, 9]
    assert all(h.cancelled() for h in handles[::2])


def test_heap_is_compacted_when_cancelled_timers_dominate(loop):
    count = _COMPACT_MIN * 4
    fired = []
    handles = [loop.call_later(10 + i * 0.001, fired.append, i) for i in range(count)]
    keep = set(range(0, count, 10))
    for i, handle in enumerate(handles):
        if i not in keep:
            handle.cancel()
    # Compaction bounds the heap: without it every cancelled entry would stay until due.
    assert len(loop._timers.heap) < count // 2
    assert len(loop._timers) == len(keep)
    # The survivors are intact and still fire in deadline order.
    loop._timers.heap.sort()
    order = [entry[2]._args[0] for entry in loop._timers.heap if not entry[2]._cancelled]
    assert order == sorted(keep)
    for i in keep:
        handles[i].cancel()
    assert len(loop._timers) == 0


def test_cancelling_a_timer_from_another_timer_due_at_once(loop):
    fired = []
    later = None

    def first():
        fired.append("first")
        later.cancel()

    now = loop.time()
    loop.call_at(now + 0.01, first)
    later = loop.call_at(now + 0.01, fired.append, "second")
    loop.call_at(now + 0.02, loop.stop)
    loop.run_forever()
    assert fired == ["first"]


def test_call_later_and_call_at_reject_none(loop):
    with pytest.raises(TypeError, match="delay"):
        loop.call_later(None, lambda: None)
    with pytest.raises(TypeError, match="when"):
        loop.call_at(None, lambda: None)


# ------------------------------------------------------------------ thread-safe wake-up

def test_callbacks_from_threads_join_in_bounded_batches(loop):
    """A backlog from other threads drains in order, at most FROM_THREADS_PER_ITERATION a
    turn, with the loop's own callbacks (and so timers and I/O) served between batches; the
    producer, yielding past the backlog limit, never blocks on a loop that is busy."""
    from conveyor.core import FROM_THREADS_BACKLOG, FROM_THREADS_PER_ITERATION
    count = FROM_THREADS_BACKLOG + 3 * FROM_THREADS_PER_ITERATION
    order: list = []
    produced = threading.Event()
    done = loop.create_future()

    def from_thread(i):
        order.append(i)
        if i == count - 1:
            done.set_result(None)

    def producer():
        for i in range(count):
            loop.call_soon_threadsafe(from_thread, i)
        produced.set()

    def block_until_produced():
        # The loop is busy while the whole backlog is queued behind its back.
        threading.Thread(target=producer).start()
        assert produced.wait(10)
        loop.call_soon(tick)

    def tick():
        order.append("tick")
        if not done.done():
            loop.call_soon(tick)

    loop.call_soon(block_until_produced)
    run(loop, done)
    items = [x for x in order if x != "tick"]
    assert items == list(range(count))
    longest = run_length = 0
    for x in order:
        run_length = 0 if x == "tick" else run_length + 1
        longest = max(longest, run_length)
    assert longest <= FROM_THREADS_PER_ITERATION


def test_call_soon_threadsafe_from_many_threads_wakes_a_sleeping_loop(loop):
    threads_count, per_thread = 8, 200
    received = []
    done = loop.create_future()
    start = threading.Barrier(threads_count)

    def on_loop(item):
        received.append(item)
        if len(received) == threads_count * per_thread and not done.done():
            done.set_result(None)

    def worker(n):
        start.wait()
        for i in range(per_thread):
            loop.call_soon_threadsafe(on_loop, (n, i))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    # The loop has no timers: only the waker can end its poll.
    loop.call_soon(lambda: [t.start() for t in threads])
    run(loop, done)
    for thread in threads:
        thread.join(10)
    assert sorted(received) == [(n, i) for n in range(threads_count) for i in range(per_thread)]
    for n in range(threads_count):  # each thread's calls kept their order
        assert [i for m, i in received if m == n] == list(range(per_thread))


def test_run_in_executor_result_wakes_the_loop(loop):
    assert run(loop, loop.run_in_executor(None, sum, [1, 2, 3])) == 6


# -------------------------------------------------------------- readers and writers

def test_reader_on_a_pipe_sees_data_and_eof(loop):
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    chunks = []
    finished = loop.create_future()

    def on_readable():
        data = os.read(rfd, 4096)
        chunks.append(data)
        if not data:
            assert loop.remove_reader(rfd)
            finished.set_result(None)

    try:
        loop.add_reader(rfd, on_readable)
        loop.call_soon(os.write, wfd, b"hello")
        loop.call_later(0.01, os.close, wfd)
        run(loop, finished)
    finally:
        os.close(rfd)
    assert b"".join(chunks) == b"hello" and chunks[-1] == b""
    assert not loop.remove_reader(rfd)


def test_writer_on_a_socketpair_and_replacing_a_reader(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    got = loop.create_future()
    try:
        def on_writable():
            a.send(b"ping")
            assert loop.remove_writer(a)

        loop.add_writer(a, on_writable)
        loop.add_reader(b, lambda: pytest.fail("the replaced reader ran"))
        loop.add_reader(b, lambda: got.done() or got.set_result(b.recv(100)))
        assert run(loop, got) == b"ping"
        assert loop.remove_reader(b.fileno())
        assert not loop.remove_writer(a)
    finally:
        a.close()
        b.close()


def test_reader_and_writer_on_the_same_fd_both_run(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    both = {"read": loop.create_future(), "write": loop.create_future()}
    try:
        b.send(b"x")
        loop.add_reader(a, lambda: both["read"].done() or both["read"].set_result(a.recv(1)))
        loop.add_writer(a, lambda: both["write"].done() or both["write"].set_result(True))
        run(loop, asyncio.gather(*both.values()))
        loop.remove_writer(a)
        assert loop.remove_reader(a)
    finally:
        a.close()
        b.close()


def test_cancelling_sock_recv_is_prompt_and_unregisters_the_fd(loop):
    r, w = socket.socketpair()
    r.setblocking(False)
    try:
        async def main():
            receiving = loop.create_task(loop.sock_recv(r, 1))
            await asyncio.sleep(0)  # now waiting for readability
            loop.call_soon(receiving.cancel)
            with pytest.raises(asyncio.CancelledError):
                await receiving
            return receiving

        receiving = run(loop, main())
        assert receiving.cancelled()
        assert r.fileno() not in loop._readers
        # The socket is usable again at once, by anyone.
        w.send(b"z")
        assert run(loop, loop.sock_recv(r, 1)) == b"z"
    finally:
        r.close()
        w.close()


def test_add_reader_refuses_bad_file_objects(loop):
    with pytest.raises(ValueError, match="Invalid file"):
        loop.add_reader(object(), lambda: None)
    with pytest.raises(ValueError, match="Invalid file descriptor"):
        loop.add_reader(-1, lambda: None)


# ------------------------------------------------------------------ exception handling

def test_a_raising_callback_goes_to_the_handler_and_the_loop_goes_on(loop, handler_calls):
    handler_calls.expected = True
    after = []

    def boom():
        raise ZeroDivisionError("boom")

    loop.call_soon(boom)
    loop.call_soon(after.append, "still running")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert after == ["still running"]
    [context] = handler_calls
    assert isinstance(context["exception"], ZeroDivisionError)
    assert "Exception in callback" in context["message"]
    assert isinstance(context["handle"], asyncio.Handle)


def test_a_raising_handler_falls_back_to_the_default_one(loop, caplog):
    def bad_handler(_loop, _context):
        raise RuntimeError("handler broke")

    loop.set_exception_handler(bad_handler)
    loop.call_soon(lambda: 1 / 0)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.run_forever()
    assert "Unhandled error in exception handler" in caplog.text
    assert "handler broke" in caplog.text


def test_default_handler_logs_message_and_traceback(loop, caplog):
    loop.set_exception_handler(None)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "something odd", "exception": KeyError("k")})
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "something odd" in record.getMessage()
    assert record.exc_info[0] is KeyError


def test_set_exception_handler_rejects_non_callables(loop):
    with pytest.raises(TypeError, match="callable"):
        loop.set_exception_handler(42)


def test_keyboard_interrupt_in_a_callback_leaves_run_forever(loop):
    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()
    # ... and the loop can run again afterwards.
    assert run(loop, asyncio.sleep(0, "again")) == "again"


# --------------------------------------------------------------------------- close

def test_closing_a_running_loop_is_an_error(loop):
    async def close_me():
        with pytest.raises(RuntimeError, match="running"):
            loop.close()

    run(loop, close_me())
    assert not loop.is_closed()


def test_close_twice_is_fine_and_releases_fds():
    before = open_fds()
    loop = conveyor.new_event_loop()
    assert open_fds() > before  # the poller's and the waker's fds
    loop.close()
    loop.close()
    assert loop.is_closed()
    assert open_fds() == before


def test_a_closed_loop_refuses_work():
    loop = conveyor.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(lambda: None)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_later(1, lambda: None)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon_threadsafe(lambda: None)
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_forever()


def test_stop_before_run_forever_runs_one_quick_iteration(loop):
    ran = []
    loop.call_later(30, ran.append, "far timer")
    loop.call_soon(ran.append, "ready")
    loop.stop()
    started = time.monotonic()
    loop.run_forever()  # polls with timeout 0, runs what is ready, returns
    assert time.monotonic() - started < 5
    assert ran == ["ready"]


def test_run_forever_refuses_to_nest(loop):
    async def nested():
        with pytest.raises(RuntimeError, match="already running"):
            loop.run_forever()

    run(loop, nested())


# --------------------------------------------------------------------------- debug

def test_debug_mode_warns_about_slow_callbacks(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow_callback():
        time.sleep(0.05)

    loop.call_soon(slow_callback)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_forever()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("slow_callback" in m and "took" in m for m in messages), messages


def test_debug_mode_refuses_call_soon_from_another_thread(loop):
    loop.set_debug(True)
    errors = []

    def from_thread():
        try:
            loop.call_soon(lambda: None)
        except RuntimeError as exc:
            errors.append(exc)
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=from_thread).start())
    loop.run_forever()
    assert len(errors) == 1 and "thread" in str(errors[0])


def test_debug_mode_refuses_coroutines_as_callbacks(loop):
    loop.set_debug(True)

    async def coro():
        pass

    with pytest.raises(TypeError, match="coroutines cannot be used with call_soon"):
        loop.call_soon(coro)


def test_pythonasynciodebug_turns_debug_on(monkeypatch):
    monkeypatch.setenv("PYTHONASYNCIODEBUG", "1")
    loop = conveyor.new_event_loop()
    try:
        assert loop.get_debug()
    finally:
        loop.close()
    monkeypatch.delenv("PYTHONASYNCIODEBUG")
    loop = conveyor.new_event_loop()
    try:
        assert loop.get_debug() is bool(sys.flags.dev_mode)
    finally:
        loop.close()


# -------------------------------------------------------------------- task factories

def test_create_task_passes_name_context_and_extra_kwargs_to_the_factory(loop):
    calls = []

    def factory(loop_, coro, **kwargs):
        calls.append(kwargs)
        return asyncio.Task(coro, loop=loop_, context=kwargs.get("context"))

    var = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "from ctx")

    async def read_var():
        return var.get()

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    task = loop.create_task(read_var(), name="named", context=ctx, custom="extra")
    assert run(loop, task) == "from ctx"
    assert task.get_name() == "named"
    # calls[1:] are the bounded run() helper's own wait_for task. The name reaches the
    # factory from 3.14 on, as with asyncio; before, it is set on the task afterwards.
    expected = {"context": ctx, "custom": "extra"}
    if sys.version_info >= (3, 14):
        expected["name"] = "named"
    assert calls[0] == expected


def test_set_task_factory_rejects_non_callables(loop):
    with pytest.raises(TypeError, match="task factory"):
        loop.set_task_factory(1)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_task_factory is new in 3.12")
def test_eager_task_factory_runs_the_task_at_once(loop):
    steps = []

    async def eager():
        steps.append("started")
        await asyncio.sleep(0)
        steps.append("resumed")
        return "done"

    async def main():
        loop.set_task_factory(asyncio.eager_task_factory)
        task = loop.create_task(eager(), name="eager")
        assert steps == ["started"]  # ran up to its first await inside create_task
        assert task.get_name() == "eager"
        return await task

    assert run(loop, main()) == "done"
    assert steps == ["started", "resumed"]


# --------------------------------------------------------------------- entry points

def test_asyncio_runner_with_conveyor_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    with asyncio.Runner(loop_factory=conveyor.new_event_loop) as runner:
        assert runner.run(main()) is conveyor.EventLoop
        loop = runner.get_loop()
        assert isinstance(loop, conveyor.EventLoop)
    assert loop.is_closed()


def test_conveyor_run_returns_the_result_and_closes_the_loop():
    loops = []

    async def main():
        loops.append(asyncio.get_running_loop())
        return 42

    assert conveyor.run(main()) == 42
    assert isinstance(loops[0], conveyor.EventLoop) and loops[0].is_closed()


def test_conveyor_run_refuses_a_running_loop(loop):
    async def nested():
        coro = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError, match="running event loop"):
                conveyor.run(coro)
        finally:
            coro.close()

    run(loop, nested())


_CTRL_C_CHILD = textwrap.dedent("""
    import asyncio, signal, sys
    import conveyor

    # As started from a terminal: a test runner launched in the background by a
    # non-interactive shell inherits SIGINT ignored, and Python then keeps it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    async def main():
        print("ready", flush=True)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            print("main task cancelled", flush=True)
            raise

    try:
        conveyor.run(main())
    except KeyboardInterrupt:
        print("KeyboardInterrupt raised", flush=True)
        sys.exit(3)
""")


def test_conveyor_run_ctrl_c_cancels_the_main_task():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(conveyor.__file__)))
    child = subprocess.Popen([sys.executable, "-c", _CTRL_C_CHILD], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 3, err
    assert out.splitlines() == ["main task cancelled", "KeyboardInterrupt raised"], err


def test_install_makes_asyncio_run_use_conveyor():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old_policy = asyncio.get_event_loop_policy()
    try:
        conveyor.install()

        async def main():
            return type(asyncio.get_running_loop())

        assert asyncio.run(main()) is conveyor.EventLoop
        loop = asyncio.new_event_loop()
        try:
            assert isinstance(loop, conveyor.EventLoop)
        finally:
            loop.close()
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(old_policy)


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="asyncio runs the handler in the failing code's context from 3.12")
def test_custom_handler_runs_in_the_failing_callbacks_context(loop, handler_calls):
    handler_calls.expected = True
    name = contextvars.ContextVar("name", default="outside")
    seen = []

    def handler(_loop, context):
        seen.append(name.get())
        handler_calls.append(context)

    def failing_callback():
        name.set("inside")
        raise ValueError("boom")

    loop.set_exception_handler(handler)
    loop.call_soon(failing_callback)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["inside"]

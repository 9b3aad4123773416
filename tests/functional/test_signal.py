"""Signal handlers on conveyor: delivery as loop callbacks, errors, wake-up fd hygiene.

SIGALRM is left alone: pytest-timeout uses it to bound every test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time

import pytest

import conveyor

from support import open_fds, run


@pytest.fixture
def loop():
    wakeup_before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_before)
    handlers_before = {sig: signal.getsignal(sig)
                       for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)}
    loop = conveyor.new_event_loop()
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield loop
    loop.close()
    assert errors == []
    assert signal.set_wakeup_fd(wakeup_before) == wakeup_before  # restored on close
    for sig, handler in handlers_before.items():
        assert signal.getsignal(sig) == handler


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1])
def test_handler_runs_as_a_loop_callback_with_its_args(loop, sig):
    async def main():
        got = loop.create_future()

        def handler(*args):
            # Running on the loop, not inside the interrupted frame.
            assert asyncio.get_running_loop() is loop
            got.set_result(args)

        loop.add_signal_handler(sig, handler, "a", 2)
        os.kill(os.getpid(), sig)
        args = await got
        assert loop.remove_signal_handler(sig)
        assert not loop.remove_signal_handler(sig)
        return args

    assert run(loop, main()) == ("a", 2)


def test_sigint_default_comes_back_after_removal(loop):
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    assert signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, signal.SIG_DFL)
    assert loop.remove_signal_handler(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_signal_wakes_a_long_poll(loop):
    """Nothing is scheduled for 60 s; a signal from another thread must end the wait at once."""
    caught = []

    def handler():
        caught.append(time.monotonic())
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, handler)
    sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGUSR1))
    loop.call_soon(sender.start)  # sent once the loop runs (and soon sleeps in the kernel)
    guard = loop.call_later(60, loop.stop)
    started = time.monotonic()
    loop.run_forever()
    guard.cancel()
    sender.join(10)
    assert len(caught) == 1
    assert caught[0] - started < 5
    loop.remove_signal_handler(signal.SIGUSR1)


def test_many_signals_each_delivered(loop):
    count = 0

    async def main():
        nonlocal count
        done = loop.create_future()

        def handler():
            nonlocal count
            count += 1
            if count == 20:
                done.set_result(None)
            else:
                os.kill(os.getpid(), signal.SIGUSR2)

        loop.add_signal_handler(signal.SIGUSR2, handler)
        os.kill(os.getpid(), signal.SIGUSR2)
        await done
        loop.remove_signal_handler(signal.SIGUSR2)

    run(loop, main())
    assert count == 20


def test_replacing_a_handler(loop):
    async def main():
        got = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, got.set_result, "first")
        loop.add_signal_handler(signal.SIGUSR1, got.set_result, "second")
        os.kill(os.getpid(), signal.SIGUSR1)
        return await got

    assert run(loop, main()) == "second"
    loop.remove_signal_handler(signal.SIGUSR1)


def test_a_raising_handler_goes_to_the_exception_handler_and_the_loop_lives():
    loop = conveyor.new_event_loop()
    seen = []
    reported = asyncio.Event()
    loop.set_exception_handler(lambda _loop, context: (seen.append(context), reported.set()))

    async def main():
        def handler():
            raise ZeroDivisionError("in a signal handler")

        loop.add_signal_handler(signal.SIGUSR1, handler)
        os.kill(os.getpid(), signal.SIGUSR1)
        await reported.wait()
        return "alive"

    try:
        assert run(loop, main()) == "alive"
        assert isinstance(seen[0]["exception"], ZeroDivisionError)
    finally:
        loop.close()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # removed on close


def test_errors_match_asyncio(loop):
    async def coroutine_function():
        pass

    with pytest.raises(TypeError, match="sig must be an int"):
        loop.add_signal_handler("boom", lambda: None)
    with pytest.raises(TypeError, match="sig must be an int"):
        loop.remove_signal_handler("boom")
    for bad in (0, -1, signal.NSIG + 1):
        with pytest.raises(ValueError, match=f"invalid signal number {bad}"):
            loop.add_signal_handler(bad, lambda: None)
        with pytest.raises(ValueError, match="invalid signal number"):
            loop.remove_signal_handler(bad)
    with pytest.raises(RuntimeError, match=f"sig {signal.SIGKILL:d} cannot be caught"):
        loop.add_signal_handler(signal.SIGKILL, lambda: None)
    assert not loop.remove_signal_handler(signal.SIGKILL)
    with pytest.raises(TypeError, match="coroutines cannot be used with add_signal_handler"):
        loop.add_signal_handler(signal.SIGUSR1, coroutine_function)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_not_the_main_thread_is_a_runtime_error(loop):
    raised = []

    def body():
        other = conveyor.new_event_loop()
        fds = open_fds()
        try:
            other.add_signal_handler(signal.SIGUSR1, lambda: None)
        except RuntimeError as exc:
            raised.append(exc)
            assert open_fds() == fds  # nothing kept for a handler that was refused
        finally:
            other.close()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(10)
    assert len(raised) == 1 and "main thread" in str(raised[0])
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_closed_loop_refuses(loop):
    other = conveyor.new_event_loop()
    other.close()
    with pytest.raises(RuntimeError, match="closed"):
        other.add_signal_handler(signal.SIGUSR1, lambda: None)


def test_a_previous_wakeup_fd_is_restored(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    with a, b:
        previous = signal.set_wakeup_fd(a.fileno())
        try:
            other = conveyor.new_event_loop()
            other.add_signal_handler(signal.SIGUSR1, lambda: None)
            assert signal.set_wakeup_fd(-1) not in (a.fileno(), -1)  # ours is installed...
            other.close()  # ...was swapped out above; close must not clobber the current one
            assert signal.set_wakeup_fd(a.fileno()) == -1
            other = conveyor.new_event_loop()
            other.add_signal_handler(signal.SIGUSR1, lambda: None)
            other.remove_signal_handler(signal.SIGUSR1)  # the last one: previous comes back
            assert signal.set_wakeup_fd(-1) == a.fileno()
            signal.set_wakeup_fd(a.fileno())
            other.close()
            assert signal.set_wakeup_fd(previous) == a.fileno()
        finally:
            signal.set_wakeup_fd(previous)


def test_runner_sigint_still_cancels_the_main_task():
    """asyncio.Runner installs its own SIGINT handler with signal.signal; it must work."""
    started = []

    async def main():
        started.append(True)
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(30)

    with pytest.raises(KeyboardInterrupt):
        conveyor.run(main())
    assert started == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_loop_signal_handler_under_runner():
    """A loop-level SIGINT handler inside conveyor.run replaces Runner's for its lifetime."""
    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        loop.add_signal_handler(signal.SIGINT, got.set_result, "handled")
        os.kill(os.getpid(), signal.SIGINT)
        result = await got
        loop.remove_signal_handler(signal.SIGINT)
        return result

    assert conveyor.run(main()) == "handled"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

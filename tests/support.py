"""What the test files share: a bounded run, waiting for a condition, and the leak check.

tests/conftest.py imports this module, and pytest puts tests/ on sys.path for that conftest,
so every test file under tests/ can say `from support import run, wait_until`.

- `run(loop, coro, timeout=...)` runs a coroutine to completion and fails the test, with the
  timeout in the message, if it takes longer: a regression must fail, never hang the suite.
- `wait_until(predicate, what, wakeup=event)` (in a coroutine) re-checks a condition each
  time a callback of the code under test sets `event`, and fails naming `what` once its time
  is up. Prefer awaiting a future the callback resolves; without any callback to hook
  (another process, a thread that tells nobody), `wait_until` without `wakeup` and
  `wait_until_blocking` (in a thread) poll.
- `Accepted(factory)` is a server's protocol factory that lets the test await the n-th
  connection's protocol.
- `Leftovers` is what the autouse leak check in tests/conftest.py compares before and after
  each test: open fds, live threads, and child processes.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
from typing import Any, Awaitable, Callable, Collection, TypeVar

T = TypeVar("T")

#: How long `run` lets a coroutine take unless told otherwise: generous under load on the
#: 2-core CI machine, well below pytest-timeout's 120 s so the failure names the coroutine.
DEFAULT_TIMEOUT = 20.0

#: How long `wait_until` waits for its condition unless told otherwise.
DEFAULT_WAIT = 10.0

#: How often `wait_until` checks a condition that nothing announces.
POLL_INTERVAL = 0.005

#: How long the leak check waits for threads and children that are on their way out
#: (executor workers told to stop at loop.close(), a reaper thread about to reap). Only a
#: test that leaves something behind pays it.
LEAK_GRACE = 5.0

#: What a test may declare it leaves behind: `@pytest.mark.leaves("threads", reason=...)`.
LEAK_KINDS = ("fds", "threads", "children")


def _name(awaitable: Any) -> str:
    return getattr(awaitable, "__qualname__", None) or repr(awaitable)


async def bounded(awaitable: Awaitable[T], timeout: float = DEFAULT_TIMEOUT, *,
                  failure: str | None = None) -> T:
    """Await `awaitable` in the current task; AssertionError if it takes over `timeout` s.

    A TimeoutError raised by the awaitable itself passes through unchanged: only the
    expiry of this bound turns into the failure (`failure`, or one naming the awaitable).
    """
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            return await awaitable
    except TimeoutError as exc:
        if not scope.expired():
            raise
        raise AssertionError(failure or f"{_name(awaitable)} did not finish within "
                             f"{timeout} s (the test's run() timeout)") from exc


def run(loop: asyncio.AbstractEventLoop, awaitable: Awaitable[T],
        timeout: float = DEFAULT_TIMEOUT) -> T:
    """Run `awaitable` to completion on `loop`; fail the test if it takes over `timeout` s."""
    return loop.run_until_complete(bounded(awaitable, timeout))


async def _until(predicate: Callable[[], Any], wakeup: asyncio.Event | None) -> Any:
    while not (value := predicate()):
        if wakeup is None:
            await asyncio.sleep(POLL_INTERVAL)
        else:
            wakeup.clear()
            await wakeup.wait()
    return value


async def wait_until(predicate: Callable[[], Any], what: str, *,
                     timeout: float = DEFAULT_WAIT, wakeup: asyncio.Event | None = None) -> Any:
    """Let the loop run until predicate() is true; return its value.

    With `wakeup`, an event the code under test sets from the callback that changes the
    condition, predicate() is checked again each time it is set; without, every
    POLL_INTERVAL. AssertionError naming `what` if it is still false after `timeout` s.
    """
    return await bounded(_until(predicate, wakeup), timeout,
                         failure=f"still waiting for {what} after {timeout} s")


def wait_until_blocking(predicate: Callable[[], Any], what: str, *,
                        timeout: float = DEFAULT_WAIT) -> Any:
    """`wait_until` for a thread without a running loop: sleeps between the checks."""
    end = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > end:
            raise AssertionError(f"still waiting for {what} after {timeout} s")
        time.sleep(POLL_INTERVAL)
    return value


class Accepted(list):
    """A server's protocol factory that keeps every protocol it makes, in order.

    `await accepted.nth(0)` waits for the first connection's protocol, woken by the factory
    call itself, instead of polling the list.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        super().__init__()
        self._make = make
        self._added = asyncio.Event()

    def __call__(self) -> Any:
        protocol = self._make()
        self.append(protocol)
        self._added.set()
        return protocol

    async def nth(self, index: int, timeout: float = DEFAULT_WAIT) -> Any:
        await wait_until(lambda: len(self) > index, f"connection #{index + 1}",
                         timeout=timeout, wakeup=self._added)
        return self[index]


# ---------------------------------------------------------------------------- leak check

def checked_loop(new_loop: Callable[[], asyncio.AbstractEventLoop]):
    """A loop fixture's body (use with ``yield from``): the loop from `new_loop`, with
    exception-handler calls kept in ``loop.errors``; afterwards the default executor is
    joined, the loop closed, and the test fails if the handler was called."""
    loop = new_loop()
    loop.errors = []
    loop.set_exception_handler(lambda _loop, context: loop.errors.append(context))
    yield loop
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    gc.collect()
    assert loop.errors == [], "unexpected exception handler calls"


def open_fds() -> set[str]:
    """This process's open fds (as /proc names them), less the one used to list them."""
    return {fd for fd in os.listdir("/proc/self/fd") if os.path.lexists(f"/proc/self/fd/{fd}")}


def child_processes() -> dict[tuple[int, str], tuple[str, str]]:
    """This process's children, alive or exited but not reaped, from /proc.

    Keyed by (pid, start time), so a reused pid is a different child. Reading /proc reaps
    nothing: a child stays for the code that spawned it to reap. (/proc/PID/task/*/children
    would be quicker but needs CONFIG_PROC_CHILDREN, which not every kernel has.)
    """
    me = os.getpid()
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        head, _, rest = stat.rpartition(")")
        fields = rest.split()
        if int(fields[1]) == me:
            command = head.partition("(")[2]
            children[(int(entry), fields[19])] = (command, fields[0])
    return children


def _where(thread: threading.Thread) -> str:
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return ""
    code = frame.f_code
    return f", at {os.path.basename(code.co_filename)}:{frame.f_lineno} in {code.co_name}"


class Leftovers:
    """What a test could leave behind, taken before it runs; `since()` names what is new.

    A leak is an fd open, a thread alive or a child process not yet reaped after the test
    that was not there before it. A thread is given until `LEAK_GRACE` to end and a child
    to be reaped (the loop's executor threads end after loop.close(), a reaper thread reaps
    a moment after the exit); nothing is killed, joined by force or reaped here.
    """

    def __init__(self) -> None:
        self.fds = open_fds()
        self.threads = set(threading.enumerate())
        self.children = set(child_processes())

    def _new_threads(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in self.threads and t.is_alive()]

    def _new_children(self) -> dict[tuple[int, str], tuple[str, str]]:
        return {key: value for key, value in child_processes().items()
                if key not in self.children}

    def since(self, allowed: Collection[str] = ()) -> list[str]:
        """One line per leak of a kind not in `allowed`, after the grace period."""
        end = time.monotonic() + LEAK_GRACE
        problems = []
        if "threads" not in allowed:
            for thread in self._new_threads():
                if not isinstance(thread, threading._DummyThread):  # not started by threading
                    thread.join(max(0.0, end - time.monotonic()))
            problems += [f"thread {t.name!r} still running{_where(t)}"
                         for t in self._new_threads()]
        if "children" not in allowed:
            while self._new_children() and time.monotonic() < end:
                time.sleep(POLL_INTERVAL)
            problems += [
                f"child process {pid} ({command}) "
                + ("exited but was never reaped" if state == "Z" else "still running")
                for (pid, _), (command, state) in self._new_children().items()]
        if "fds" not in allowed and open_fds() - self.fds:
            gc.collect()  # an fd held only by garbage is closed by collecting it
            problems += [f"fd {fd} left open ({_fd_target(fd)})"
                         for fd in sorted(open_fds() - self.fds, key=int)]
        return problems


def _fd_target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "closed meanwhile"

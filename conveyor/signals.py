"""Unix signal handlers that run as ordinary loop callbacks.

A signal can arrive at any instant, including while the loop sleeps in the kernel. Python's
C-level handler writes the signal number as one byte to the fd given to
`signal.set_wakeup_fd`; that fd is the write end of a socketpair whose read end the loop
watches like any other fd. So a signal wakes a long poll at once, and the handler the user
registered runs later, on the loop, in order with other callbacks: never inside the
interrupted frame.

The Python-level handler we install is a no-op: all the work happens when the byte is read.
(SIGINT's default Python handler raises KeyboardInterrupt anywhere; replacing it is what the
user asks for by adding a SIGINT handler, and `remove_signal_handler` puts it back.)

The wake-up fd is process-global. The one that was set before the first handler was added is
restored when the last handler is removed or the loop closes, so `asyncio.Runner`'s own
SIGINT handling, and any other library's wake-up fd, keep working after us.

Errors follow asyncio: TypeError for a non-int signal or a coroutine callback, ValueError for
a number that is not a signal, RuntimeError for a signal that cannot be caught or when not
called from the main thread (where `set_wakeup_fd` refuses to work).
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import signal
import socket
import sys
import warnings
import weakref
from typing import Any, Callable

from .contract import LoopInternals
from .handles import Handle

logger = logging.getLogger("asyncio")


def _noop_handler(signum: int, frame: Any) -> None:
    """The Python-level handler: the wake-up fd already carries the signal to the loop."""


def _check_signal(sig: Any) -> None:
    if not isinstance(sig, int):
        raise TypeError(f"sig must be an int, not {sig!r}")
    if sig not in signal.valid_signals():
        raise ValueError(f"invalid signal number {sig}")


class SignalTable:
    """One loop's signal handlers and the socketpair that brings signals to it."""

    def __init__(self, loop: LoopInternals) -> None:
        self._loop = loop
        self.handlers: dict[int, Handle] = {}
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._previous_fd: int | None = None  # set while our wake-up fd is installed
        loop._add_reader(self._rsock.fileno(), self._read_signals)
        loop._on_close(self.close)

    def install_wakeup_fd(self) -> None:
        if self._previous_fd is not None:
            return
        try:
            previous = signal.set_wakeup_fd(self._wsock.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc)) from None
        self._previous_fd = previous

    def restore_wakeup_fd(self) -> None:
        previous, self._previous_fd = self._previous_fd, None
        if previous is None:
            return
        try:
            current = signal.set_wakeup_fd(previous)
        except (ValueError, OSError) as exc:
            logger.info("set_wakeup_fd(%d) failed: %s", previous, exc)
            return
        if current != self._wsock.fileno():
            # Somebody replaced ours after we installed it: theirs stays.
            try:
                signal.set_wakeup_fd(current)
            except (ValueError, OSError):
                pass

    def _read_signals(self) -> None:
        try:
            data = self._rsock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        handlers = self.handlers
        schedule = self._loop._schedule_handle
        for signum in data:
            handle = handlers.get(signum)
            if handle is None:
                continue
            if handle._cancelled:
                remove_signal_handler(self._loop, signum)
            else:
                schedule(handle)

    def close(self) -> None:
        """The loop closes: give every signal its default behaviour back, drop the fds."""
        if self._rsock is None:
            return
        if self.handlers:
            if sys.is_finalizing():
                warnings.warn(f"Closing the loop {self._loop!r} on interpreter shutdown "
                              f"stage, skipping signal handlers removal",
                              ResourceWarning, source=self._loop)
                self.handlers.clear()
            else:
                for signum in list(self.handlers):
                    remove_signal_handler(self._loop, signum)
        self.restore_wakeup_fd()
        _tables.pop(self._loop, None)
        self._loop._remove_reader(self._rsock.fileno())
        self._rsock.close()
        self._wsock.close()
        self._rsock = self._wsock = None


_tables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def add_signal_handler(loop: LoopInternals, sig: int, callback: Callable[..., Any],
                       *args: Any) -> None:
    """Run `callback(*args)` on the loop each time signal `sig` arrives.

    Raise ValueError if the signal number is invalid or uncatchable, RuntimeError if there is
    a problem setting up the handler (not the main thread, SIGKILL, SIGSTOP).
    """
    # inspect's check, not asyncio.iscoroutinefunction: 3.14 deprecates that one (removal in
    # 3.16) and it gives the same answer, AsyncMock and functools.partial included.
    if asyncio.iscoroutine(callback) or inspect.iscoroutinefunction(callback):
        raise TypeError("coroutines cannot be used with add_signal_handler()")
    _check_signal(sig)
    loop._check_closed()
    table = _tables.get(loop)
    if table is None:
        table = _tables[loop] = SignalTable(loop)
    try:
        table.install_wakeup_fd()
    except RuntimeError:
        if not table.handlers:
            table.close()  # made for this call: don't keep its socketpair until loop close
        raise
    handle = Handle(callback, args, loop, None)
    previous_handle = table.handlers.get(sig)
    table.handlers[sig] = handle
    try:
        # Our Python-level handler is a no-op; siginterrupt(False) makes the interrupted
        # system calls restart, so only the wake-up fd reports the signal.
        signal.signal(sig, _noop_handler)
        signal.siginterrupt(sig, False)
    except OSError as exc:
        if previous_handle is None:
            del table.handlers[sig]
        else:
            table.handlers[sig] = previous_handle
        if not table.handlers:
            table.restore_wakeup_fd()
        if exc.errno == errno.EINVAL:
            raise RuntimeError(f"sig {sig:d} cannot be caught") from None
        raise
    if previous_handle is not None:
        previous_handle.cancel()


def remove_signal_handler(loop: LoopInternals, sig: int) -> bool:
    """Remove the handler for `sig`; True if there was one.

    The signal gets its default behaviour back (for SIGINT: KeyboardInterrupt).
    """
    _check_signal(sig)
    table = _tables.get(loop)
    if table is None:
        return False
    handle = table.handlers.pop(sig, None)
    if handle is None:
        return False
    handle.cancel()
    default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
    try:
        signal.signal(sig, default)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise RuntimeError(f"sig {sig:d} cannot be caught") from None
        raise
    if not table.handlers:
        table.restore_wakeup_fd()
    return True

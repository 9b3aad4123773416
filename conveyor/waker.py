"""Waking a loop that sleeps in the kernel, from any thread.

`call_soon_threadsafe` appends to the ready queue (a deque: appends are atomic) and then has to
interrupt the poll. An eventfd on Linux (one fd, 8-byte counter writes that never fill up), a
non-blocking pipe elsewhere.

Writes are coalesced: while one wake-up is pending, further callers skip the syscall. The flag
is cleared *after* draining. Cleared before, a wake() landing between the clear and the read
would set the flag, write, and have its write consumed by that read: the flag would stay set
with nothing left to drain, and every later wake() would be skipped for good. Cleared after, a
wake() that sees the flag still set has already appended its callback, which the loop runs
next iteration anyway; one that comes later writes again. At worst one spurious iteration.
"""

from __future__ import annotations

import os


class Waker:
    def __init__(self) -> None:
        self._pending = False
        if hasattr(os, "eventfd"):
            self._rfd = self._wfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._eventfd = True
        else:
            self._rfd, self._wfd = os.pipe()
            for fd in (self._rfd, self._wfd):
                os.set_blocking(fd, False)
            self._eventfd = False

    def fileno(self) -> int:
        return self._rfd

    def wake(self) -> None:
        if self._pending:
            return
        self._pending = True
        fd = self._wfd
        if fd < 0:
            return  # closed: the loop is gone, nobody to wake
        try:
            if self._eventfd:
                os.eventfd_write(fd, 1)
            else:
                os.write(fd, b"\0")
        except OSError:
            pass  # full pipe or closed race: the loop is awake or gone either way

    def drain(self) -> None:
        try:
            if self._eventfd:
                os.eventfd_read(self._rfd)
            else:
                while os.read(self._rfd, 4096):
                    pass
        except (BlockingIOError, InterruptedError):
            pass
        self._pending = False  # after the read: see the module docstring

    def close(self) -> None:
        rfd, wfd = self._rfd, self._wfd
        self._rfd = self._wfd = -1
        self._pending = True  # any late wake() returns before touching an fd
        if rfd >= 0:
            os.close(rfd)
        if wfd >= 0 and wfd != rfd:
            os.close(wfd)

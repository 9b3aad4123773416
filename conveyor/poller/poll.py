"""poll(2) backend: portable POSIX, and the fallback CI forces on Linux to keep it tested.

poll(2) reports the same bit values the loop uses. Two differences from epoll: the timeout
is in milliseconds (rounded up here so a timer due in 0.4 ms is not polled with 0 and spun
on), and an fd that was closed while registered comes back as POLLNVAL instead of vanishing.
POLLNVAL is reported as ERROR so the owner's callback runs and sees EBADF, rather than the
loop spinning on an event nobody handles.
"""

from __future__ import annotations

import math
import select

from . import ERROR

_NVAL = getattr(select, "POLLNVAL", 0x020)


class PollPoller:
    name = "poll"

    def __init__(self) -> None:
        self._poll = select.poll()
        self._fds: set[int] = set()

    def register(self, fd: int, events: int) -> None:
        if fd in self._fds:
            raise FileExistsError(17, f"fd {fd} is already registered")
        _check_open(fd)
        self._poll.register(fd, events)
        self._fds.add(fd)

    def modify(self, fd: int, events: int) -> None:
        if fd not in self._fds:
            raise FileNotFoundError(2, f"fd {fd} is not registered")
        self._poll.modify(fd, events)

    def unregister(self, fd: int) -> None:
        if fd in self._fds:
            self._fds.discard(fd)
            self._poll.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        ms = None if timeout is None else math.ceil(timeout * 1000)
        events = self._poll.poll(ms)
        for i, (fd, ev) in enumerate(events):
            if ev & _NVAL:
                events[i] = (fd, (ev & ~_NVAL) | ERROR)
        return events

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        self._fds.clear()


def _check_open(fd: int) -> None:
    """Raise EBADF for a closed fd now, as epoll would, instead of a POLLNVAL later."""
    import os
    os.fstat(fd)

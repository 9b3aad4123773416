"""The poller layer: one narrow interface over the kernel's readiness APIs.

Every backend offers the same five operations (register, modify, unregister, poll, close)
and reports events in Linux poll(2) bit values, whichever kernel API is underneath, so the
loop tests two masks and never translates per event on the fast backends (epoll and poll(2)
already speak these values).

The token is the fd itself: Python's epoll binding gives back only the fd, and a second
mapping from token to fd would cost a lookup per event for nothing.

`default()` picks the best backend for the platform. `CONVEYOR_POLLER=epoll|kqueue|poll|select`
forces one, so the portable fallbacks stay tested on Linux (mio does the same in its CI).
"""

from __future__ import annotations

import os
import select as _select
from typing import Protocol

READ = 0x001
WRITE = 0x004
ERROR = 0x008
HANGUP = 0x010

#: Events that make a reader runnable (an error or hang-up must wake the reader so it sees it).
READABLE = READ | ERROR | HANGUP
#: Events that make a writer runnable.
WRITABLE = WRITE | ERROR | HANGUP


class Poller(Protocol):
    """What the loop needs from a kernel readiness API."""

    name: str

    def register(self, fd: int, events: int) -> None: ...
    def modify(self, fd: int, events: int) -> None: ...
    def unregister(self, fd: int) -> None: ...
    def poll(self, timeout: float | None) -> list[tuple[int, int]]: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...


def available() -> list[str]:
    """Names of the backends this platform offers, best first."""
    names = []
    if hasattr(_select, "epoll"):
        names.append("epoll")
    if hasattr(_select, "kqueue"):
        names.append("kqueue")
    if hasattr(_select, "poll"):
        names.append("poll")
    names.append("select")
    return names


def create(name: str) -> Poller:
    """A new poller of the named backend."""
    if name == "epoll":
        from .epoll import EpollPoller
        return EpollPoller()
    if name == "kqueue":
        from .kqueue import KqueuePoller
        return KqueuePoller()
    if name == "poll":
        from .poll import PollPoller
        return PollPoller()
    if name == "select":
        from .select import SelectPoller
        return SelectPoller()
    raise ValueError(f"unknown poller {name!r}; choose one of {available()}")


def default() -> Poller:
    """The backend named by CONVEYOR_POLLER, else the best one available."""
    name = os.environ.get("CONVEYOR_POLLER") or available()[0]
    if name not in available():
        raise ValueError(
            f"CONVEYOR_POLLER={name!r} is not available here; choose one of {available()}")
    return create(name)


"""select(2) backend: the last resort, available everywhere.

select(2) cannot take fds at or above FD_SETSIZE (1024 on Linux); the kernel binding raises
ValueError for them, which is the right error to surface. The three lists are rebuilt only
when registrations change, not on every poll.
"""

from __future__ import annotations

import os
import select as _select

from . import ERROR, READ, WRITE


class SelectPoller:
    name = "select"

    def __init__(self) -> None:
        self._interest: dict[int, int] = {}
        self._lists: tuple[list[int], list[int], list[int]] | None = None

    def register(self, fd: int, events: int) -> None:
        if fd in self._interest:
            raise FileExistsError(17, f"fd {fd} is already registered")
        os.fstat(fd)
        self._interest[fd] = events
        self._lists = None

    def modify(self, fd: int, events: int) -> None:
        if fd not in self._interest:
            raise FileNotFoundError(2, f"fd {fd} is not registered")
        self._interest[fd] = events
        self._lists = None

    def unregister(self, fd: int) -> None:
        if self._interest.pop(fd, None) is not None:
            self._lists = None

    def _build(self) -> tuple[list[int], list[int], list[int]]:
        readers = [fd for fd, ev in self._interest.items() if ev & READ]
        writers = [fd for fd, ev in self._interest.items() if ev & WRITE]
        self._lists = (readers, writers, list(self._interest))
        return self._lists

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        readers, writers, all_fds = self._lists or self._build()
        if not all_fds:
            # select() with three empty lists is just a sleep; keep the contract anyway.
            _select.select([], [], [], timeout)
            return []
        try:
            r, w, x = _select.select(readers, writers, all_fds, timeout)
        except OSError:
            # A registered fd was closed: report it as an error so its owner runs and learns.
            return self._find_bad()
        ready: dict[int, int] = {}
        for fd in r:
            ready[fd] = READ
        for fd in w:
            ready[fd] = ready.get(fd, 0) | WRITE
        for fd in x:
            ready[fd] = ready.get(fd, 0) | (READ if self._interest[fd] & READ else 0)
        return list(ready.items())

    def _find_bad(self) -> list[tuple[int, int]]:
        bad = []
        for fd in self._interest:
            try:
                os.fstat(fd)
            except OSError:
                bad.append((fd, ERROR))
        return bad

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        self._interest.clear()
        self._lists = None

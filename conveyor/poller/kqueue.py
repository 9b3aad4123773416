"""kqueue(2) backend (BSD, macOS).

kqueue keeps one filter per direction, so an fd's interest is two kevents, and a change of
interest is expressed as adds and deletes rather than one modify. Results are folded back to
poll(2) bit values (EV_EOF becomes HANGUP, EV_ERROR becomes ERROR) so the loop sees the same
events on every platform.
"""

from __future__ import annotations

import select

from . import ERROR, HANGUP, READ, WRITE


class KqueuePoller:
    name = "kqueue"

    def __init__(self) -> None:
        self._kq = select.kqueue()
        self._interest: dict[int, int] = {}

    def _apply(self, fd: int, old: int, new: int) -> None:
        changes = []
        for bit, flt in ((READ, select.KQ_FILTER_READ), (WRITE, select.KQ_FILTER_WRITE)):
            if new & bit and not old & bit:
                changes.append(select.kevent(fd, flt, select.KQ_EV_ADD))
            elif old & bit and not new & bit:
                changes.append(select.kevent(fd, flt, select.KQ_EV_DELETE))
        if changes:
            self._kq.control(changes, 0, 0)

    def register(self, fd: int, events: int) -> None:
        if fd in self._interest:
            raise FileExistsError(17, f"fd {fd} is already registered")
        self._apply(fd, 0, events)
        self._interest[fd] = events

    def modify(self, fd: int, events: int) -> None:
        old = self._interest.get(fd)
        if old is None:
            raise FileNotFoundError(2, f"fd {fd} is not registered")
        self._apply(fd, old, events)
        self._interest[fd] = events

    def unregister(self, fd: int) -> None:
        old = self._interest.pop(fd, None)
        if old is not None:
            try:
                self._apply(fd, old, 0)
            except OSError:
                pass  # closed fds leave kqueue by themselves

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        max_events = max(len(self._interest) * 2, 1)
        ready: dict[int, int] = {}
        for kev in self._kq.control(None, max_events, timeout):
            ev = READ if kev.filter == select.KQ_FILTER_READ else WRITE
            if kev.flags & select.KQ_EV_EOF:
                ev |= HANGUP
            if kev.flags & select.KQ_EV_ERROR:
                ev |= ERROR
            ready[kev.ident] = ready.get(kev.ident, 0) | ev
        return list(ready.items())

    def fileno(self) -> int:
        return self._kq.fileno()

    def close(self) -> None:
        self._kq.close()

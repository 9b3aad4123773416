"""epoll(7) backend (Linux).

epoll's events are already poll(2) bit values and `epoll.poll` takes seconds (None blocks),
rounds the timeout up to whole milliseconds and retries EINTR itself (PEP 475), so `poll` is
the kernel binding's own bound method: no Python frame between the loop and the syscall.

A note on closed fds: epoll tracks the open file description, not the fd number. If an fd is
closed without being unregistered, the kernel drops it from the set only when every duplicate
is closed, and `unregister` then fails with EBADF or ENOENT. Those are harmless here (the fd
is gone either way), so `unregister` ignores them; anything else is a real error.
"""

from __future__ import annotations

import errno
import select


class EpollPoller:
    name = "epoll"

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self.poll = self._epoll.poll
        self.register = self._epoll.register
        self.modify = self._epoll.modify

    def unregister(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except OSError as exc:
            if exc.errno not in (errno.EBADF, errno.ENOENT):
                raise

    def fileno(self) -> int:
        return self._epoll.fileno()

    def close(self) -> None:
        self._epoll.close()

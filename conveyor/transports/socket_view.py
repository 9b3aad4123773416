"""TransportSocket: the socket-like view of a socket the loop owns.

`Server.sockets` hands these out rather than the listening sockets themselves, as the
standard loop does: a program may inspect the socket (its address, options, fd) and tune it
(`setsockopt`), but not do what would break the loop behind its back - accept on it, read or
write it, close it, or make it blocking. Those operations simply do not exist here
(AttributeError), and `setblocking(True)` / a non-zero `settimeout()` raise ValueError, as
asyncio's own wrapper does from Python 3.11 on (its behaviour is the same on 3.11 to 3.13).

`dup()` returns a real `socket.socket` on a duplicate fd: the caller owns that one.
"""

from __future__ import annotations

import socket
from typing import Any


class TransportSocket:
    """A read-mostly view of a socket owned by a transport or a server."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @property
    def family(self) -> int:
        return self._sock.family

    @property
    def type(self) -> int:
        return self._sock.type

    @property
    def proto(self) -> int:
        return self._sock.proto

    def __repr__(self) -> str:
        fd = self.fileno()
        text = (f"<conveyor.TransportSocket fd={fd}, family={self.family!s}, "
                f"type={self.type!s}, proto={self.proto}")
        if fd != -1:
            for label, getter in (("laddr", self.getsockname), ("raddr", self.getpeername)):
                try:
                    address = getter()
                except OSError:
                    continue
                if address:
                    text = f"{text}, {label}={address}"
        return text + ">"

    def __getstate__(self) -> Any:
        # A socket cannot travel to another process by pickling; neither can its view.
        raise TypeError(f"Cannot serialize {type(self).__name__} object")

    # What is safe: inspecting, tuning options, duplicating, shutting a direction down.

    def fileno(self) -> int:
        return self._sock.fileno()

    def dup(self) -> socket.socket:
        return self._sock.dup()

    def get_inheritable(self) -> bool:
        return self._sock.get_inheritable()

    def shutdown(self, how: int) -> None:
        # There is no transport-level half-close for listening sockets or for reading, so
        # programs reach for this; the loop copes with its effects (EOF, EPIPE).
        self._sock.shutdown(how)

    def getsockopt(self, *args: Any, **kwargs: Any) -> Any:
        return self._sock.getsockopt(*args, **kwargs)

    def setsockopt(self, *args: Any, **kwargs: Any) -> None:
        self._sock.setsockopt(*args, **kwargs)

    def getpeername(self) -> Any:
        return self._sock.getpeername()

    def getsockname(self) -> Any:
        return self._sock.getsockname()

    # The loop needs the socket non-blocking: only requests that keep it so are accepted.

    def settimeout(self, value: float | None) -> None:
        if value == 0:
            return
        raise ValueError("settimeout(): only 0 timeout is allowed on transport sockets")

    def gettimeout(self) -> float:
        return 0

    def setblocking(self, flag: bool) -> None:
        if not flag:
            return
        raise ValueError("setblocking(): transport sockets cannot be blocking")

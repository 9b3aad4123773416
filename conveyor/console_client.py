"""The client side of the live console (conveyor/observe/console.py): find a process's
socket, send line-delimited JSON requests, read the replies.

Used by ``python -m conveyor top`` and usable from scripts::

    with ConsoleClient.for_target("12345") as client:
        print(client.request("snapshot")["tasks"])
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from .observe.console import candidate_paths

__all__ = ["ConsoleClient", "ConsoleError", "resolve"]


class ConsoleError(Exception):
    """The console refused a request, or could not be reached."""


def resolve(target: str) -> str:
    """A PID (digits) or a socket path -> the socket path to connect to."""
    if target.isdigit():
        pid = int(target)
        for path in candidate_paths(pid):
            if os.path.exists(path):
                return path
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise ConsoleError(f"no process {pid}") from None
        except PermissionError:
            pass
        raise ConsoleError(
            f"process {pid} has no conveyor console (looked at "
            f"{', '.join(candidate_paths(pid))}); start it with conveyor.console(), "
            f"'python -m conveyor run --console', or CONVEYOR_CONSOLE=1")
    if not os.path.exists(target):
        raise ConsoleError(f"no such socket: {target}")
    return target


class ConsoleClient:
    """One connection to a console. Not thread-safe; one request at a time."""

    def __init__(self, path: str, *, timeout: float = 5.0) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise ConsoleError(f"cannot connect to {path}: {exc}") from exc
        self._reader = self._sock.makefile("rb")

    @classmethod
    def for_target(cls, target: str, *, timeout: float = 5.0) -> "ConsoleClient":
        return cls(resolve(target), timeout=timeout)

    def request(self, op: str, **fields: Any) -> dict:
        """Send one request and return its reply; ConsoleError if it says ok: false."""
        message = json.dumps({"op": op, **fields}).encode() + b"\n"
        try:
            self._sock.sendall(message)
            line = self._reader.readline()
        except OSError as exc:
            raise ConsoleError(f"console connection failed: {exc}") from exc
        if not line:
            raise ConsoleError("the console closed the connection (did the program exit?)")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise ConsoleError(reply.get("error", "request failed"))
        return reply

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> "ConsoleClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

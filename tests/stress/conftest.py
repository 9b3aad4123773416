"""Fixtures of the stress suite: a server process per test, driven over a line protocol.

Each case is parametrized over the loop the server runs: conveyor (on whatever backend
`CONVEYOR_POLLER` selects) and stock asyncio, the reference. The clients run in the pytest
process as plain blocking sockets in threads, so they depend on neither loop.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "stress_server.py")
LOOPS = ["conveyor", "asyncio"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


class ServerProc:
    """One stress_server.py process: send a command, wait (bounded) for its reply."""

    def __init__(self, loop_name: str, nofile: int | None = None) -> None:
        self.loop_name = loop_name
        self._stderr = tempfile.TemporaryFile()
        args = [sys.executable, SERVER, loop_name]
        if nofile is not None:
            args += ["--nofile", str(nofile)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr)
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pid = self._reply("start", 30)["pid"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._replies.put(json.loads(line))
        self._replies.put(None)

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-3000:].decode(errors="replace")

    def _reply(self, op: str, timeout: float) -> dict[str, Any]:
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"[{self.loop_name}] server did not answer {op!r} within "
                                 f"{timeout} s (loop stalled?)\n{self.stderr_tail()}") from None
        if reply is None:
            raise AssertionError(f"[{self.loop_name}] server exited during {op!r} "
                                 f"(rc={self.proc.poll()})\n{self.stderr_tail()}")
        if not reply.pop("ok"):
            raise AssertionError(f"[{self.loop_name}] {op!r} failed in the server: "
                                 f"{reply['error']}\n{self.stderr_tail()}")
        return reply

    def call(self, op: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """Run `op` in the server; `within` (the server-side bound of a wait) extends the
        reply timeout."""
        assert self.proc.stdin is not None
        timeout += params.get("within", 0)
        self.proc.stdin.write((json.dumps({"op": op, **params}) + "\n").encode())
        self.proc.stdin.flush()
        return self._reply(op, timeout)

    def fds(self) -> int:
        """The server's open fds, counted from outside (works while it is out of fds)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu_seconds(self) -> float:
        """User + system CPU of the whole server process, from /proc (no help from its loop)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def idle_cpu_fraction(self, window: float = 1.0) -> float:
        """CPU used over `window` seconds in which the test sends the server nothing.

        The sleep here is the measurement window itself, not synchronisation."""
        c0, t0 = self.cpu_seconds(), time.monotonic()
        time.sleep(window)
        c1, t1 = self.cpu_seconds(), time.monotonic()
        return (c1 - c0) / (t1 - t0)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("exit", timeout=10)
                self.proc.wait(10)
            except (AssertionError, BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()


@pytest.fixture
def start_server() -> Iterator[Any]:
    """`start_server(loop_name, nofile=None)` -> a running ServerProc, stopped afterwards."""
    procs: list[ServerProc] = []

    def start(loop_name: str, nofile: int | None = None) -> ServerProc:
        proc = ServerProc(loop_name, nofile)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.close()


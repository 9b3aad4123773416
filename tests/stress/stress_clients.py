"""Client behaviours of the stress suite, as plain blocking sockets.

The clients deliberately use no event loop: they must keep working (and keep measuring) when
the server's loop stalls or spins, and they must not share a loop implementation with the
server under test. Every socket has a timeout, so a server that stops answering fails the
case with a message instead of hanging it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest

from stress_body import body_chunks

PEER_TIMEOUT = 10.0


def loop_params(asyncio_xfail: str | None = None) -> list[Any]:
    """The two loops as pytest params. `asyncio_xfail` marks stock asyncio as a known failure,
    with the reason, where asyncio itself breaks the case (conveyor must not). Not strict:
    some of asyncio's failures depend on timing."""
    params: list[Any] = ["conveyor"]
    if asyncio_xfail:
        params.append(pytest.param("asyncio", marks=pytest.mark.xfail(
            reason=asyncio_xfail, strict=False)))
    else:
        params.append("asyncio")
    return params


ASYNCIO_CLOSE_IN_RESUME = (
    "stock asyncio (3.11-3.13): close() called from inside resume_writing() once the buffer "
    "has drained runs _call_connection_lost twice; the second call reaches the exception "
    "handler as AttributeError: 'NoneType' object has no attribute 'close'")


def xfail_on_asyncio(request: Any, loop_name: str, reason: str) -> None:
    """Mark this case a known asyncio failure where only some parametrizations hit it."""
    if loop_name == "asyncio":
        request.applymarker(pytest.mark.xfail(reason=reason, strict=False))


def connect(port: int, rcvbuf: int | None = None, timeout: float = PEER_TIMEOUT) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if rcvbuf is not None:
        # Small before connect(), so the window stays small and the server must buffer.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = sock.recv(n - len(buf))
        if not data:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


# ---------------------------------------------------------------------------- slow reader


def slow_read(port: int, step: int, pace: float, stall: float) -> tuple[int, str]:
    """Read `step` bytes every `pace` seconds until EOF; (bytes received, SHA-256).

    The sleep is the intended pacing of a slow consumer, not synchronisation."""
    sock = connect(port, timeout=stall)
    h = hashlib.sha256()
    total = 0
    buf = bytearray(step)
    view = memoryview(buf)
    try:
        while True:
            got = 0
            eof = False
            while got < step:
                try:
                    n = sock.recv_into(view[got:])
                except socket.timeout:
                    raise AssertionError(f"transfer stalled: no byte for {stall} s after "
                                         f"{total + got} bytes") from None
                if n == 0:
                    eof = True
                    break
                got += n
            h.update(view[:got])
            total += got
            if eof:
                return total, h.hexdigest()
            time.sleep(pace)
    finally:
        view.release()
        sock.close()


# ---------------------------------------------------------------------------- echo


def echo_once(port: int, payload: bytes) -> None:
    """Connect, send `payload`, read the same bytes back, close (the client closes first)."""
    sock = connect(port)
    try:
        sock.sendall(payload)
        back = recv_exactly(sock, len(payload))
        assert back == payload, "echo came back altered"
    finally:
        sock.close()


def run_many(fn: Callable[[int], Any], n: int, threads: int) -> list[BaseException]:
    """Run fn(0..n-1) on `threads` threads; the exceptions raised (the first 20)."""
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            fn(i)
        except BaseException as exc:  # collected and reported by the test
            with lock:
                if len(errors) < 20:
                    errors.append(exc)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    return errors


class EchoTraffic:
    """`conns` connections doing 1 KiB ping-pong in background threads until stop()."""

    def __init__(self, port: int, conns: int = 4) -> None:
        self.port = port
        self.stopping = threading.Event()
        self.round_trips = 0
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(conns)]
        for t in self.threads:
            t.start()

    def _run(self, i: int) -> None:
        try:
            sock = connect(self.port)
            with sock:
                n = 0
                while not self.stopping.is_set():
                    payload = struct.pack(">QQ", i, n) * 64
                    sock.sendall(payload)
                    assert recv_exactly(sock, len(payload)) == payload, "echo altered"
                    n += 1
                    self.round_trips += 1
        except BaseException as exc:
            self.errors.append(exc)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(PEER_TIMEOUT + 5)
        assert not any(t.is_alive() for t in self.threads), "echo client hung"


# ---------------------------------------------------------------------------- faulty peers


def peer_reset(port: int, size: int, expected_sha: str, rcvbuf: int | None) -> None:
    """Read a little of the server's write, then reset the connection (SO_LINGER 0)."""
    sock = connect(port, rcvbuf=rcvbuf)
    try:
        assert sock.recv(4096), "server sent nothing"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def peer_unread(port: int, size: int, expected_sha: str, rcvbuf: int | None) -> None:
    """Send a little, read a little, close with the server's data unread (the kernel resets)."""
    sock = connect(port, rcvbuf=rcvbuf)
    try:
        sock.sendall(os.urandom(4096))
        assert sock.recv(4096), "server sent nothing"
    finally:
        sock.close()


def peer_halfclose(port: int, size: int, expected_sha: str, rcvbuf: int | None) -> None:
    """Shut down writing at once, then read everything: the server's whole buffered write and
    then EOF must arrive."""
    sock = connect(port, rcvbuf=rcvbuf)
    try:
        sock.shutdown(socket.SHUT_WR)
        h = hashlib.sha256()
        got = 0
        while data := sock.recv(65536):
            h.update(data)
            got += len(data)
        assert got == size, f"half-closed peer got {got} of {size} bytes"
        assert h.hexdigest() == expected_sha, "half-closed peer got altered bytes"
    finally:
        sock.close()


PEERS = [peer_reset, peer_unread, peer_halfclose]


def flood_sha(size: int) -> str:
    h = hashlib.sha256()
    for chunk in body_chunks(size):
        h.update(chunk)
    return h.hexdigest()

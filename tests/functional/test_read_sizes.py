"""How much a stream socket transport asks the kernel for per read (transports/socket.py).

A read asks for READ_SIZE; once one fills it, more is likely waiting and reads ask for
BULK_READ (a 100 KiB message in one call, still under glibc's mmap threshold) until one
returns under BULK_EXIT. With the bytes already queued in a Unix socket before the
transport starts, each data_received sees exactly what one read returned, so the sizes
are the rule itself; the bytes must arrive whole and in order, through a plain socket
(os.read on its fd) and through a socket subclass (its own recv).
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

import conveyor
from conveyor.transports.socket import BULK_EXIT, BULK_READ, READ_SIZE

from support import checked_loop, run, wait_until

pytestmark = pytest.mark.timeout(60)


class CountingSocket(socket.socket):
    """A subclass: the transport must read through its recv, which counts the calls."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recv_sizes: list[int] = []

    def recv(self, n: int, *args) -> bytes:
        self.recv_sizes.append(n)
        return super().recv(n, *args)


class Chunks(asyncio.Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.arrived.set()

    def received(self) -> int:
        return sum(map(len, self.chunks))


@pytest.fixture
def loop():
    yield from checked_loop(conveyor.new_event_loop)


def _pair(subclass: bool) -> tuple[socket.socket, socket.socket]:
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if subclass:
        fd = reader.detach()
        reader = CountingSocket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd)
    # Room for everything a test queues at once (the kernel caps and doubles the figure).
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    reader.setblocking(False)
    writer.setblocking(False)
    return reader, writer


@pytest.mark.parametrize("subclass", [False, True], ids=["plain", "subclass"])
def test_a_read_that_fills_switches_to_bulk_reads_until_one_comes_up_short(loop, subclass):
    reader, writer = _pair(subclass)
    # One read of READ_SIZE (full: bulk on), one of BULK_READ (full), one short (bulk off).
    first = os.urandom(READ_SIZE + BULK_READ + 1000)
    writer.sendall(first)  # non-blocking: it all fits, or this raises
    protocol = Chunks()

    async def main() -> None:
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, reader)
        await wait_until(lambda: protocol.received() == len(first), "the first bytes",
                         wakeup=protocol.arrived)
        transport.pause_reading()
        # Bulk mode is off again: a read of READ_SIZE (full: on again), one of BULK_READ.
        writer.sendall(second)
        transport.resume_reading()
        await wait_until(lambda: protocol.received() == len(first) + len(second),
                         "the second bytes", wakeup=protocol.arrived)
        transport.close()

    second = os.urandom(READ_SIZE + 4000)
    assert 1000 < BULK_EXIT and READ_SIZE < BULK_READ < 128 * 1024
    run(loop, main())
    writer.close()
    assert [len(c) for c in protocol.chunks] == [READ_SIZE, BULK_READ, 1000, READ_SIZE, 4000]
    assert b"".join(protocol.chunks) == first + second
    if subclass:
        assert reader.recv_sizes[:5] == [READ_SIZE, BULK_READ, BULK_READ, READ_SIZE, BULK_READ]

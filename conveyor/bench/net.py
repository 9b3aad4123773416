"""The net suite: TCP echo servers on the loop under test, loaded from another process.

Three ways to write an echo server, each at 1 KiB, 10 KiB and 100 KiB messages:

- ``proto_*``: an ``asyncio.Protocol`` that writes back what ``data_received`` gets;
- ``streams_*``: an ``asyncio.start_server`` handler that reads, writes and drains;
- ``sock_*``: a task per connection awaiting ``loop.sock_recv`` and ``loop.sock_sendall``,
  the listener served by ``loop.sock_accept`` (no transports, no protocols: the sock_* path
  itself); ``sock_into_1k`` reads with ``loop.sock_recv_into`` into one buffer per
  connection.

The server runs in the measuring child under the loop being compared. The load comes from
:mod:`conveyor.bench.loadgen` in another process (the C client when it can be built), the
same for every loop: ``connections`` connections, each sending one message and waiting for
all of it to come back before sending the next (ping-pong), counted for ``duration`` seconds
after a warm-up. One operation is one echoed message. Every row also reports the server's
CPU per message, and the C echo server under the same load is the row's ceiling.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from .loadgen import load_server
from .registry import Measured, Workload

__all__ = ["WORKLOADS", "proto_echo", "streams_echo", "sock_echo"]

_READ_SIZE = 65536


class _EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _streams_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(_READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def proto_echo(size: int = 1024, connections: int = 50, duration: float = 3.0,
                     warmup: float = 0.5) -> Measured:
    """Echo over asyncio.Protocol: messages/s, load from another process."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_EchoProtocol, "127.0.0.1", 0, backlog=1024)
    try:
        return await load_server(server.sockets[0].getsockname()[1], size=size,
                                 connections=connections, duration=duration, warmup=warmup)
    finally:
        server.close()


async def streams_echo(size: int = 1024, connections: int = 50, duration: float = 3.0,
                       warmup: float = 0.5) -> Measured:
    """Echo over streams (read, write, drain): messages/s, load from another process."""
    server = await asyncio.start_server(_streams_handler, "127.0.0.1", 0, backlog=1024)
    try:
        return await load_server(server.sockets[0].getsockname()[1], size=size,
                                 connections=connections, duration=duration, warmup=warmup)
    finally:
        server.close()


# ------------------------------------------------------------------- the sock_* server

async def _echo_recv(loop: Any, conn: socket.socket) -> None:
    recv = loop.sock_recv
    sendall = loop.sock_sendall
    try:
        while True:
            data = await recv(conn, _READ_SIZE)
            if not data:
                break
            await sendall(conn, data)
    except ConnectionError:
        pass
    finally:
        conn.close()


async def _echo_recv_into(loop: Any, conn: socket.socket) -> None:
    buf = bytearray(_READ_SIZE)
    view = memoryview(buf)
    recv_into = loop.sock_recv_into
    sendall = loop.sock_sendall
    try:
        while True:
            n = await recv_into(conn, buf)
            if not n:
                break
            await sendall(conn, view[:n])
    except ConnectionError:
        pass
    finally:
        conn.close()


async def _accept_forever(loop: Any, listener: socket.socket, handler: Any,
                          tasks: set) -> None:
    while True:
        conn, _ = await loop.sock_accept(listener)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = loop.create_task(handler(loop, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def sock_echo(size: int = 1024, connections: int = 50, duration: float = 3.0,
                    warmup: float = 0.5, recv_into: bool = False) -> Measured:
    """Echo over sock_recv (or sock_recv_into) and sock_sendall: messages/s."""
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.setblocking(False)
    tasks: set = set()
    handler = _echo_recv_into if recv_into else _echo_recv
    acceptor = loop.create_task(_accept_forever(loop, listener, handler, tasks))
    try:
        return await load_server(listener.getsockname()[1], size=size,
                                 connections=connections, duration=duration, warmup=warmup)
    finally:
        acceptor.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(acceptor, *tasks, return_exceptions=True)
        listener.close()


_QUICK = {"duration": 0.3, "warmup": 0.1, "connections": 10}
_SIZES = (("1k", 1024), ("10k", 10 * 1024), ("100k", 100 * 1024))
_KINDS = (("proto", proto_echo, "asyncio.Protocol"), ("streams", streams_echo, "streams"),
          ("sock", sock_echo, "sock_recv + sock_sendall"))

WORKLOADS = [
    Workload(f"{kind}_{label}", func, {"size": size}, _QUICK, unit="messages/s",
             doc=f"{size // 1024} KiB echo, 50 connections, over {how}",
             served=True, ceiling=True)
    for kind, func, how in _KINDS
    for label, size in _SIZES
] + [
    Workload("sock_into_1k", sock_echo, {"size": 1024, "recv_into": True}, _QUICK,
             unit="messages/s", doc="1 KiB echo, 50 connections, sock_recv_into + sock_sendall",
             served=True, ceiling=True),
]

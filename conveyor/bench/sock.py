"""The sock suite (`python -m conveyor bench sock`): an echo server written with the loop's sock_* coroutines.

A task per connection awaits ``loop.sock_recv`` and ``loop.sock_sendall`` (or
``loop.sock_recv_into`` with one buffer per connection), and the listener is served by
``loop.sock_accept``: no transports and no protocols, so this measures the sock_* path itself
(try the syscall, wait for readiness only when it would block, wake the task).

The load comes from the net suite's client (``python -m conveyor.bench.net client``) in a
separate process: the same ping-pong client (uvloop when installed) for every loop, at 1 KiB,
10 KiB and 100 KiB messages with 50 connections. One operation is one echoed message.

On a small shared machine the client and other processes take CPU too, so messages per
second can be limited by them rather than by the server. The ``cpu_*`` workloads therefore
also report messages per second of the server process's own CPU time (user + system,
getrusage), counted over the same window: that is the server's cost per message, whatever
else limits the rate.
"""

from __future__ import annotations

import asyncio
import resource
import socket
from typing import Any

from .net import _run_client
from .registry import Workload

__all__ = ["WORKLOADS", "sock_echo"]

_READ_SIZE = 65536


async def _echo_recv(loop: Any, conn: socket.socket, echoed: list) -> None:
    recv = loop.sock_recv
    sendall = loop.sock_sendall
    try:
        while True:
            data = await recv(conn, _READ_SIZE)
            if not data:
                break
            await sendall(conn, data)
            echoed[0] += len(data)
    except ConnectionError:
        pass
    finally:
        conn.close()


async def _echo_recv_into(loop: Any, conn: socket.socket, echoed: list) -> None:
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
            echoed[0] += n
    except ConnectionError:
        pass
    finally:
        conn.close()


async def _accept_forever(loop: Any, listener: socket.socket, handler: Any,
                          tasks: set, echoed: list) -> None:
    while True:
        conn, _ = await loop.sock_accept(listener)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = loop.create_task(handler(loop, conn, echoed))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sock_echo(size: int = 1024, connections: int = 50, duration: float = 3.0,
                    warmup: float = 0.5, recv_into: bool = False,
                    per_cpu_second: bool = False) -> tuple[int, float]:
    """Echo over sock_recv/sock_sendall: messages/s, client in another process.

    With `per_cpu_second`, the result is messages per second of this process's CPU time,
    both counted from before the client starts until it has finished.
    """
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.setblocking(False)
    tasks: set = set()
    echoed = [0]
    handler = _echo_recv_into if recv_into else _echo_recv
    acceptor = loop.create_task(_accept_forever(loop, listener, handler, tasks, echoed))
    try:
        cpu_before = _cpu_seconds()
        result = await loop.run_in_executor(None, _run_client, listener.getsockname()[1],
                                            size, connections, duration, warmup)
        cpu = _cpu_seconds() - cpu_before
    finally:
        acceptor.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(acceptor, *tasks, return_exceptions=True)
        listener.close()
    if per_cpu_second:
        return echoed[0] // size, cpu
    return result["messages"], result["seconds"]


_QUICK = {"duration": 0.3, "warmup": 0.1, "connections": 10}

WORKLOADS = [
    Workload(f"echo_{label}", sock_echo, {"size": size}, _QUICK, unit="messages/s",
             doc=f"{size // 1024} KiB echo, 50 connections, sock_recv + sock_sendall")
    for label, size in (("1k", 1024), ("10k", 10 * 1024), ("100k", 100 * 1024))
] + [
    Workload("echo_into_1k", sock_echo, {"size": 1024, "recv_into": True}, _QUICK,
             unit="messages/s",
             doc="1 KiB echo, 50 connections, sock_recv_into + sock_sendall"),
] + [
    Workload(f"cpu_{label}", sock_echo, {"size": size, "per_cpu_second": True}, _QUICK,
             unit="msgs/CPU-s",
             doc=f"{size // 1024} KiB echo, 50 connections: messages per server CPU second")
    for label, size in (("1k", 1024), ("10k", 10 * 1024), ("100k", 100 * 1024))
]

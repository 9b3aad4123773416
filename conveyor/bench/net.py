"""The net suite: TCP echo servers on the loop under test, loaded from another process.

Six workloads: an echo server written as an ``asyncio.Protocol`` (``proto_*``) and as an
``asyncio.start_server`` handler that reads, writes and drains (``streams_*``), each at 1 KiB,
10 KiB and 100 KiB messages. The server runs in the measuring child under the loop being
compared; the load comes from a separate process (``python -m conveyor.bench.net client``)
that always uses uvloop when it is installed (stock asyncio otherwise), so every server
variant faces the same client, and the client does not take the server's core time.

The client opens ``connections`` connections, each sending one message and waiting for the
whole echo before sending the next (ping-pong), warms up, then counts round trips for
``duration`` seconds. One operation is one echoed message; the client reports the count and
the seconds it measured, and that is the workload's result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from .registry import Workload

__all__ = ["WORKLOADS", "proto_echo", "streams_echo"]

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


def _run_client(port: int, size: int, connections: int, duration: float,
                warmup: float) -> dict:
    """Start the load generator and wait for its JSON line (runs on an executor thread)."""
    root = str(Path(__file__).resolve().parents[2])
    cmd = [sys.executable, "-m", "conveyor.bench.net", "client", "--port", str(port),
           "--size", str(size), "--connections", str(connections),
           "--duration", str(duration), "--warmup", str(warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root,
                          timeout=duration + warmup + 60, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"echo client failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


async def _serve_and_load(start, size: int, connections: int, duration: float,
                          warmup: float) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    server = await start()
    port = server.sockets[0].getsockname()[1]
    try:
        result = await loop.run_in_executor(None, _run_client, port, size, connections,
                                            duration, warmup)
    finally:
        server.close()
    return result["messages"], result["seconds"]


async def proto_echo(size: int = 1024, connections: int = 50, duration: float = 3.0,
                     warmup: float = 0.5) -> tuple[int, float]:
    """Echo over asyncio.Protocol: messages/s with a uvloop client in another process."""
    loop = asyncio.get_running_loop()
    return await _serve_and_load(
        lambda: loop.create_server(_EchoProtocol, "127.0.0.1", 0, backlog=1024),
        size, connections, duration, warmup)


async def streams_echo(size: int = 1024, connections: int = 50, duration: float = 3.0,
                       warmup: float = 0.5) -> tuple[int, float]:
    """Echo over streams (read, write, drain): messages/s with a client in another process."""
    return await _serve_and_load(
        lambda: asyncio.start_server(_streams_handler, "127.0.0.1", 0, backlog=1024),
        size, connections, duration, warmup)


_QUICK = {"duration": 0.3, "warmup": 0.1, "connections": 10}

WORKLOADS = [
    Workload(f"{kind}_{label}", func, {"size": size}, _QUICK, unit="messages/s",
             doc=f"{size // 1024} KiB echo, 50 connections, over "
                 f"{'asyncio.Protocol' if kind == 'proto' else 'streams'}")
    for kind, func in (("proto", proto_echo), ("streams", streams_echo))
    for label, size in (("1k", 1024), ("10k", 10 * 1024), ("100k", 100 * 1024))
]


# ----------------------------------------------------------------- the load generator


class _PingPong(asyncio.Protocol):
    """Send a message, wait for all of it to come back, repeat; count while counting."""

    def __init__(self, message: bytes, counter: list) -> None:
        self.message = message
        self.size = len(message)
        self.counter = counter
        self.pending = 0
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        self.pending = self.size
        self.transport.write(self.message)

    def data_received(self, data: bytes) -> None:
        self.pending -= len(data)
        if self.pending <= 0:
            self.counter[0] += 1
            if not self.counter[1]:
                self._send()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _client(port: int, size: int, connections: int, duration: float,
                  warmup: float) -> dict:
    loop = asyncio.get_running_loop()
    counter = [0, False]  # [messages echoed, stop sending]
    message = b"x" * size
    pairs = [await loop.create_connection(lambda: _PingPong(message, counter), "127.0.0.1",
                                          port) for _ in range(connections)]
    await asyncio.sleep(warmup)
    start_count, start = counter[0], time.perf_counter()
    await asyncio.sleep(duration)
    messages, seconds = counter[0] - start_count, time.perf_counter() - start
    counter[1] = True
    for transport, protocol in pairs:
        transport.close()
    await asyncio.gather(*(protocol.closed for _, protocol in pairs))
    return {"messages": messages, "seconds": seconds}


def _client_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor.bench.net client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args(argv)
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(_client(args.port, args.size, args.connections, args.duration,
                                    args.warmup))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["client"]:
        sys.exit("usage: python -m conveyor.bench.net client --port PORT [...]")
    sys.exit(_client_main(sys.argv[2:]))

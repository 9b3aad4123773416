"""The Python load generator: what the echo workloads use when the C one cannot be built.

``python -m conveyor.bench.pyloadgen`` takes the same options as ``loadgen.c`` and speaks the
same protocol on stdout (a ``start`` line when the measured window opens, then one JSON line
when it closes), so :mod:`conveyor.bench.loadgen` runs either without knowing which. It runs
on uvloop when uvloop is installed (stock asyncio otherwise). At small messages it can be
slower than the server it loads, which is why the C client is preferred; its ``client_cpu``
shows when that happened.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from typing import Any

__all__ = ["main"]


class _PingPong(asyncio.Protocol):
    """Send a message, wait until all of it has come back, send the next."""

    def __init__(self, message: bytes, counter: list[int]) -> None:
        self.message = message
        self.size = len(message)
        self.counter = counter
        self.received = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.message)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self.size:
            raise RuntimeError("the server sent back more bytes than were sent to it")
        if self.received == self.size:
            self.received = 0
            self.counter[0] += 1
            self.transport.write(self.message)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.counter[1]:
            print("pyloadgen: the server closed a connection", file=sys.stderr, flush=True)
            self.counter[2] = 1


async def _load(host: str, port: int, size: int, connections: int, duration: float,
                warmup: float, tls: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the record layer is measured, not PKI
    counter = [0, 0, 0]  # [messages echoed, finished, a connection was lost]
    message = b"x" * size
    transports = []
    for _ in range(connections):
        transport, _protocol = await asyncio.wait_for(loop.create_connection(
            lambda: _PingPong(message, counter), host, port, ssl=context,
            server_hostname="localhost" if tls else None), 30)
        transports.append(transport)
    await asyncio.sleep(warmup)
    first, started, cpu_started = counter[0], time.perf_counter(), time.process_time()
    print("start", flush=True)
    await asyncio.sleep(duration)
    messages = counter[0] - first
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - cpu_started
    counter[1] = 1
    for transport in transports:
        transport.abort()
    if counter[2]:
        raise SystemExit(1)
    return {"messages": messages, "bytes": messages * size, "seconds": seconds,
            "client_cpu": client_cpu, "connections": connections, "size": size,
            "tls": tls, "client": "python"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor.bench.pyloadgen",
                                     description="Ping-pong load over N connections.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--tls", action="store_true")
    ns = parser.parse_args(argv)
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(_load(ns.host, ns.port, ns.size, ns.connections, ns.duration,
                                  ns.warmup, ns.tls))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The tls suite: a TLS echo server on the loop under test, ``asyncio.Protocol`` over ``ssl=``.

The server is ``loop.create_server(..., ssl=context)`` with a protocol that writes back what
it receives, so the figure is the cost of the TLS layer plus the TCP transport: decrypting
into the application, encrypting its reply, and the raw reads and writes around them.

The load comes from a client in a separate process (``python -m conveyor.bench.tls client``),
the same for every loop: uvloop when installed, else asyncio, with ``connections`` TLS
connections each sending one ``size``-byte message and waiting for all of it to come back
before sending the next. One operation is one echoed message. Handshakes happen before the
warm-up ends, so they are not measured.

The server certificate is a throwaway self-signed one made with the ``openssl`` command
line tool; the client does not verify it (this measures the record layer, not PKI).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from typing import Any

from .registry import Workload

__all__ = ["WORKLOADS", "tls_echo"]


def _make_certificate(directory: str) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        raise RuntimeError("the tls benchmark needs the openssl command line tool")
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout", key, "-out", cert],
        check=True, capture_output=True)
    return cert, key


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.write = transport.write

    def data_received(self, data: bytes) -> None:
        self.write(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.write = None


def _run_client(port: int, size: int, connections: int, duration: float,
                warmup: float) -> dict[str, Any]:
    """Run the load generator in its own interpreter and return what it reports.

    The client prints a line when its measured window opens and its result when it closes;
    this process's CPU time is sampled at both, so ``server_cpu`` is what the server spent
    during exactly that window.
    """
    cmd = [sys.executable, "-m", "conveyor.bench.tls", "client", str(port), str(size),
           str(connections), str(duration), str(warmup)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as child:
        try:
            started = child.stdout.readline()
            cpu_start = time.process_time()
            finished = child.stdout.readline()
            cpu_end = time.process_time()
            _out, err = child.communicate(timeout=duration + warmup + 60)
        except BaseException:
            child.kill()
            raise
    if child.returncode or started.strip() != "start" or not finished.strip():
        raise RuntimeError(f"tls client failed ({child.returncode}): {err.strip()}")
    result = json.loads(finished)
    result["server_cpu"] = cpu_end - cpu_start
    return result


async def tls_echo(size: int = 1024, connections: int = 50, duration: float = 3.0,
                   warmup: float = 0.5, layer: str = "loop",
                   per_cpu_second: bool = False) -> tuple[int, float]:
    """TLS echo with asyncio.Protocol: messages/s, client in another process.

    ``layer="loop"`` uses the loop's own ``ssl=`` support; ``layer="conveyor"`` puts
    conveyor's TLSProtocol on the loop's plain TCP transports, which compares the TLS
    layers alone when every loop runs it.

    ``per_cpu_second`` divides by the CPU time the server process used while the client
    measured instead of by wall time: on a machine shared with other work, wall-clock
    throughput swings with whoever else runs, while the server's cost per message does not.
    """
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="conveyor-tls-bench-") as directory:
        cert, key = _make_certificate(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    if layer == "loop":
        server = await loop.create_server(_Echo, "127.0.0.1", 0, ssl=context, backlog=1024)
    elif layer == "conveyor":
        from ..transports.tls import TLSProtocol

        def layered() -> TLSProtocol:
            waiter = loop.create_future()
            waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
            return TLSProtocol(loop, _Echo(), context, waiter, server_side=True)

        server = await loop.create_server(layered, "127.0.0.1", 0, backlog=1024)
    else:
        raise ValueError(f"layer must be 'loop' or 'conveyor', got {layer!r}")
    try:
        port = server.sockets[0].getsockname()[1]
        result = await loop.run_in_executor(None, _run_client, port, size, connections,
                                            duration, warmup)
    finally:
        server.close()
        await server.wait_closed()
    if per_cpu_second:
        return result["messages"], result["server_cpu"]
    return result["messages"], result["seconds"]


# ---------------------------------------------------------------------------- the client

class _PingPong(asyncio.Protocol):
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
        if self.received >= self.size:
            self.received -= self.size
            self.counter[0] += 1
            self.transport.write(self.message)


async def _client(port: int, size: int, connections: int, duration: float,
                  warmup: float) -> None:
    loop = asyncio.get_running_loop()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    counter = [0]
    message = b"x" * size
    transports = []
    for _ in range(connections):
        transport, _protocol = await loop.create_connection(
            lambda: _PingPong(message, counter), "127.0.0.1", port, ssl=context,
            server_hostname="localhost")
        transports.append(transport)
    await asyncio.sleep(warmup)
    start_count, start = counter[0], time.perf_counter()
    print("start", flush=True)
    await asyncio.sleep(duration)
    messages, seconds = counter[0] - start_count, time.perf_counter() - start
    print(json.dumps({"messages": messages, "seconds": seconds}), flush=True)
    for transport in transports:
        transport.abort()
    await asyncio.sleep(0)


def _client_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor.bench.tls client")
    parser.add_argument("port", type=int)
    parser.add_argument("size", type=int)
    parser.add_argument("connections", type=int)
    parser.add_argument("duration", type=float)
    parser.add_argument("warmup", type=float)
    args = parser.parse_args(argv)
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_client(args.port, args.size, args.connections, args.duration,
                           args.warmup))
    return 0


_QUICK = {"duration": 0.3, "warmup": 0.2, "connections": 5}

WORKLOADS = [
    Workload(f"echo_{label}", tls_echo, {"size": size}, _QUICK, unit="messages/s",
             doc=f"TLS {label} echo, 50 connections, asyncio.Protocol over ssl=")
    for label, size in (("1k", 1024), ("100k", 100 * 1024))
] + [
    Workload(f"echo_{label}_cpu", tls_echo, {"size": size, "per_cpu_second": True}, _QUICK,
             unit="msg/cpu-s",
             doc=f"TLS {label} echo, 50 connections: messages per CPU-second of the server")
    for label, size in (("1k", 1024), ("100k", 100 * 1024))
] + [
    Workload("echo_1k_layered", tls_echo, {"size": 1024, "layer": "conveyor"}, _QUICK,
             unit="messages/s",
             doc="TLS 1 KiB echo, conveyor's TLSProtocol over each loop's TCP transports"),
]


if __name__ == "__main__":
    if sys.argv[1:2] != ["client"]:
        sys.exit("usage: python -m conveyor.bench.tls client PORT SIZE CONNECTIONS "
                 "DURATION WARMUP")
    sys.exit(_client_main(sys.argv[2:]))

"""The tls suite: a TLS echo server on the loop under test, ``asyncio.Protocol`` over ``ssl=``.

The server is ``loop.create_server(..., ssl=context)`` with a protocol that writes back what
it receives, so the figure is the cost of the TLS layer plus the TCP transport: decrypting
into the application, encrypting its reply, and the raw reads and writes around them.

The load comes from :mod:`conveyor.bench.loadgen` in another process, the same for every
loop: the C client built with OpenSSL when its headers are present (the Python client
otherwise, with a warning), with ``connections`` TLS connections each sending one
``size``-byte message and waiting for all of it to come back before sending the next. One
operation is one echoed message; the server's CPU per message shows beside the rate.
Handshakes happen before the warm-up ends, so they are not measured.

The server certificate is a throwaway self-signed one made with the ``openssl`` command
line tool; the client does not verify it (this measures the record layer, not PKI).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import tempfile
from typing import Any

from .loadgen import load_server
from .registry import Measured, Workload

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


async def tls_echo(size: int = 1024, connections: int = 50, duration: float = 3.0,
                   warmup: float = 0.5, layer: str = "loop") -> Measured:
    """TLS echo with asyncio.Protocol: messages/s, load from another process.

    ``layer="loop"`` uses the loop's own ``ssl=`` support; ``layer="conveyor"`` puts
    conveyor's TLSProtocol on the loop's plain TCP transports, which compares the TLS
    layers alone when every loop runs it.
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
        return await load_server(server.sockets[0].getsockname()[1], size=size,
                                 connections=connections, duration=duration, warmup=warmup,
                                 tls=True)
    finally:
        server.close()
        await server.wait_closed()


_QUICK = {"duration": 0.3, "warmup": 0.2, "connections": 5}

WORKLOADS = [
    Workload(f"echo_{label}", tls_echo, {"size": size}, _QUICK, unit="messages/s",
             doc=f"TLS {label} echo, 50 connections, asyncio.Protocol over ssl=", served=True)
    for label, size in (("1k", 1024), ("100k", 100 * 1024))
] + [
    Workload("echo_1k_layered", tls_echo, {"size": 1024, "layer": "conveyor"}, _QUICK,
             unit="messages/s", served=True,
             doc="TLS 1 KiB echo, conveyor's TLSProtocol over each loop's TCP transports"),
]

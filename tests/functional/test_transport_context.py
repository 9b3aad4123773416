"""A protocol's callbacks run in the connection's own context (uvloop's rule).

Each connection's callbacks see the contextvars that were current when the connection was
made, and one callback's `var.set()` is seen by the next (they share one context), whoever
triggers them: here `close()`, `resume_reading()` and `write()` are called from a task whose
context holds a different value, and the protocol must never see it.

Run on conveyor and on uvloop (the loop whose behaviour this is); stock asyncio breaks the rule
in places (its connection_lost runs in the closer's context), which asyncio's own tests call a
bug, so it is not a reference here.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket
import ssl
import subprocess
import tempfile

import pytest

import conveyor

from support import Accepted, run

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

LOOPS = ["conveyor"]
try:
    import uvloop
    LOOPS.append("uvloop")
    # uvloop's first loop opens a pipe that stays open for the life of the process: let it
    # happen now, so that the leak check does not blame the first uvloop test for it.
    uvloop.new_event_loop().close()
except ImportError:  # pragma: no cover - the bench extra installs it
    uvloop = None


@pytest.fixture(params=LOOPS)
def loop(request):
    loop = conveyor.new_event_loop() if request.param == "conveyor" else uvloop.new_event_loop()
    yield loop
    loop.close()


class Recorder(asyncio.Protocol):
    """Records the var in every callback; connection_made sets a per-connection marker."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.lost = asyncio.get_running_loop().create_future()
        self.got_data = asyncio.get_running_loop().create_future()

    def _note(self, name: str) -> None:
        self.seen.append((name, var.get()))

    def connection_made(self, transport) -> None:
        self._note("connection_made")
        self.transport = transport
        var.set("conn")  # must be visible to every later callback of this connection

    def data_received(self, data) -> None:
        self._note("data_received")
        if not self.got_data.done():
            self.got_data.set_result(None)

    def datagram_received(self, data, addr) -> None:
        self.data_received(data)

    def error_received(self, exc) -> None:  # pragma: no cover - not expected
        self._note("error_received")

    def eof_received(self):
        self._note("eof_received")

    def pause_writing(self) -> None:
        self._note("pause_writing")

    def resume_writing(self) -> None:
        self._note("resume_writing")

    def connection_lost(self, exc) -> None:
        self._note("connection_lost")
        if not self.lost.done():
            self.lost.set_result(None)


def _assert_connection_context(seen: list[tuple[str, str]], made_value: str) -> None:
    names = [name for name, _ in seen]
    assert names[0] == "connection_made" and names[-1] == "connection_lost", names
    assert seen[0][1] == made_value
    wrong = [(name, value) for name, value in seen[1:]
             if name != "pause_writing" and value != "conn"]
    assert not wrong, f"callbacks outside the connection's context: {wrong}"


async def _in_other_context(fn) -> None:
    """Call fn() from a task whose context holds another value (as a user's handler would)."""
    async def other():
        var.set("other")
        fn()
    await asyncio.get_running_loop().create_task(other(), context=contextvars.Context())


def test_tcp_client_callbacks_run_in_connection_context(loop):
    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        var.set("client")
        transport, proto = await loop.create_connection(
            Recorder, *listener.getsockname())
        peer, _ = listener.accept()
        listener.close()
        with peer:
            await _in_other_context(transport.pause_reading)
            await _in_other_context(transport.resume_reading)
            peer.sendall(b"hello")
            await proto.got_data
            # Fill the socket so the transport pauses, then drain it from the peer.
            await _in_other_context(lambda: transport.write(b"x" * (4 << 20)))
            peer.setblocking(False)
            while transport.get_write_buffer_size():
                await loop.sock_recv(peer, 1 << 20)
            await _in_other_context(transport.close)
            await proto.lost
        return proto.seen

    seen = run(loop, main())
    names = [name for name, _ in seen]
    assert "resume_writing" in names and "data_received" in names
    _assert_connection_context(seen, "client")


def test_server_callbacks_run_in_create_server_context(loop):
    async def main():
        protos = Accepted(Recorder)
        var.set("server")
        server = await loop.create_server(protos, "127.0.0.1", 0)
        var.set("later")  # the server's context was taken at create_server
        with socket.create_connection(server.sockets[0].getsockname()) as client:
            client.sendall(b"ping")
            await (await protos.nth(0)).got_data
            await _in_other_context(protos[0].transport.close)
            await protos[0].lost
        server.close()
        await server.wait_closed()
        return protos[0].seen

    _assert_connection_context(run(loop, main()), "server")


def test_eof_from_peer_runs_in_connection_context(loop):
    async def main():
        a, b = socket.socketpair()
        var.set("pair")
        transport, proto = await loop.connect_accepted_socket(Recorder, a)
        b.shutdown(socket.SHUT_WR)
        await proto.lost
        b.close()
        return proto.seen

    seen = run(loop, main())
    assert [n for n, _ in seen] == ["connection_made", "eof_received", "connection_lost"]
    _assert_connection_context(seen, "pair")


def test_udp_callbacks_run_in_endpoint_context(loop):
    async def main():
        var.set("udp")
        transport, proto = await loop.create_datagram_endpoint(
            Recorder, local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"dgram", transport.get_extra_info("sockname"))
            await proto.got_data
        await _in_other_context(transport.close)
        await proto.lost
        return proto.seen

    _assert_connection_context(run(loop, main()), "udp")


def test_pipe_callbacks_run_in_connection_context(loop):
    async def main():
        rfd, wfd = os.pipe()
        var.set("pipe")
        reader, rproto = await loop.connect_read_pipe(Recorder, os.fdopen(rfd, "rb", 0))
        writer, wproto = await loop.connect_write_pipe(Recorder, os.fdopen(wfd, "wb", 0))
        await _in_other_context(lambda: writer.write(b"through the pipe"))
        await rproto.got_data
        await _in_other_context(writer.close)
        await wproto.lost
        await rproto.lost
        return rproto.seen, wproto.seen

    rseen, wseen = run(loop, main())
    _assert_connection_context(rseen, "pipe")
    _assert_connection_context(wseen, "pipe")


@pytest.fixture(scope="module")
def tls_contexts():
    with tempfile.TemporaryDirectory() as tmp:
        key, cert = os.path.join(tmp, "k.pem"), os.path.join(tmp, "c.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=localhost"],
                       check=True, capture_output=True, timeout=30)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(cert, key)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(cert)
        yield server, client


def test_tls_callbacks_run_in_connection_context(loop, tls_contexts):
    server_ctx, client_ctx = tls_contexts

    async def main():
        protos = Accepted(Recorder)
        var.set("tls-server")
        server = await loop.create_server(protos, "127.0.0.1", 0, ssl=server_ctx)
        var.set("tls-client")
        transport, proto = await loop.create_connection(
            Recorder, *server.sockets[0].getsockname(), ssl=client_ctx,
            server_hostname="localhost")
        await _in_other_context(lambda: transport.write(b"over tls"))
        await (await protos.nth(0)).got_data
        await _in_other_context(transport.close)
        await proto.lost
        await protos[0].lost
        server.close()
        await server.wait_closed()
        return proto.seen, protos[0].seen

    client_seen, server_seen = run(loop, main())
    _assert_connection_context(client_seen, "tls-client")
    _assert_connection_context(server_seen, "tls-server")

"""The shared transport lifecycle (conveyor/transports/base.py), case by case.

Each test is a defect found in the first landing, or a rule of the state machine the module
docstring states; tests/model/ drives the same machine through random interleavings. Every
case runs on conveyor and on stock asyncio, except where asyncio itself breaks the rule
(said next to the case).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket

import pytest

import conveyor

from support import run

LOOPS = {"conveyor": conveyor.new_event_loop, "asyncio": asyncio.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def any_loop(request):
    """A fresh loop of either kind; fails the test on handler calls."""
    loop = LOOPS[request.param]()
    loop.kind = request.param
    loop.errors = []
    loop.set_exception_handler(lambda _loop, context: loop.errors.append(context))
    yield loop
    loop.close()
    gc.collect()
    assert loop.errors == [], "unexpected exception handler calls"


class Streamer(asyncio.Protocol):
    """The classic streaming server: write until paused, continue from resume_writing()."""

    def __init__(self, total: int, chunk: int = 64 * 1024, close_when_done: bool = True):
        self.total, self.chunk, self.close_when_done = total, chunk, close_when_done
        self.sent = 0
        self.paused = False
        self.events: list[str] = []
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.pump()

    def pump(self):
        while not self.paused and self.sent < self.total:
            size = min(self.chunk, self.total - self.sent)
            self.transport.write(bytes([self.sent // self.chunk % 251]) * size)
            self.sent += size
        if self.sent >= self.total and self.close_when_done:
            self.transport.close()

    def pause_writing(self):
        self.events.append("pause")
        self.paused = True

    def resume_writing(self):
        self.events.append("resume")
        self.paused = False
        self.pump()

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


def _expected(total: int, chunk: int) -> bytes:
    return b"".join(bytes([i // chunk % 251]) * min(chunk, total - i)
                    for i in range(0, total, chunk))


async def _read_all(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    parts = []
    while True:
        data = await loop.sock_recv(sock, 1 << 20)
        if not data:
            return b"".join(parts)
        parts.append(data)


def test_write_from_resume_writing_delivers_every_byte(any_loop):
    """The first landing lost everything after the first pause/resume cycle."""
    total = 8 << 20

    async def main():
        a, b = socket.socketpair()
        _, proto = await any_loop.connect_accepted_socket(lambda: Streamer(total), a)
        with b:
            received = await _read_all(b)
        await proto.lost
        return received, proto.events

    received, events = run(any_loop, main())
    assert received == _expected(total, 64 * 1024)
    assert events.count("pause") == events.count("resume") >= 1
    assert events[-1] == "lost" and events.count("lost") == 1


def test_half_closing_peer_still_gets_the_buffered_rest(any_loop):
    """A peer that shuts down its side, then reads: it gets everything and the fd goes."""
    total = 6 << 20

    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        protos = []

        def factory():
            protos.append(Streamer(total))
            return protos[-1]

        server = await any_loop.create_server(factory, sock=listener)
        client = socket.create_connection(listener.getsockname())
        with client:
            client.shutdown(socket.SHUT_WR)
            received = await _read_all(client)
        await protos[0].lost
        server.close()
        await server.wait_closed()
        return received

    assert run(any_loop, main()) == _expected(total, 64 * 1024)


def test_close_then_abort_after_drain_loses_the_connection_once(any_loop):
    if any_loop.kind == "asyncio":
        pytest.xfail("stock asyncio's abort() after connection_lost raises AttributeError "
                     "(its transport has dropped the loop)")

    async def main():
        a, b = socket.socketpair()
        proto = Streamer(0, close_when_done=False)
        transport, _ = await any_loop.connect_accepted_socket(lambda: proto, a)
        transport.write(b"x" * (4 << 20))  # more than the socket takes: buffered
        assert transport.get_write_buffer_size() > 0
        transport.close()
        with b:
            received = await _read_all(b)
        await proto.lost
        transport.abort()  # after the drain: must not run connection_lost again
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return len(received), proto.events

    size, events = run(any_loop, main())
    assert size == 4 << 20
    assert events.count("lost") == 1 and events[-1] == "lost"


def test_close_from_resume_writing_loses_the_connection_once(any_loop):
    """close() inside resume_writing() when the buffer just drained (asyncio: twice)."""
    if any_loop.kind == "asyncio":
        pytest.xfail("stock asyncio schedules connection_lost twice here (its second call "
                     "raises AttributeError on the cleared protocol)")

    class CloseOnResume(Streamer):
        def resume_writing(self):
            self.events.append("resume")
            self.transport.close()

    async def main():
        a, b = socket.socketpair()
        proto = CloseOnResume(0, close_when_done=False)
        transport, _ = await any_loop.connect_accepted_socket(lambda: proto, a)
        transport.write(b"y" * (2 << 20))
        with b:
            received = await _read_all(b)
        await proto.lost
        await asyncio.sleep(0)
        return len(received), proto.events

    size, events = run(any_loop, main())
    assert size == 2 << 20
    assert events == ["pause", "resume", "lost"]


def test_eof_is_delivered_once_even_if_reading_resumes(any_loop):
    """eof_received() returning True keeps the transport; resume_reading() must not
    register the fd again and report the same EOF twice."""
    class KeepOpen(asyncio.Protocol):
        def __init__(self):
            self.eofs = 0
            self.eof = asyncio.get_running_loop().create_future()

        def connection_made(self, transport):
            self.transport = transport

        def eof_received(self):
            self.eofs += 1
            self.transport.pause_reading()
            self.transport.resume_reading()
            if not self.eof.done():
                self.eof.set_result(None)
            return True

    async def main():
        a, b = socket.socketpair()
        transport, proto = await any_loop.connect_accepted_socket(KeepOpen, a)
        b.shutdown(socket.SHUT_WR)
        await proto.eof
        for _ in range(5):
            await asyncio.sleep(0)
        transport.write(b"still writable")
        b.setblocking(False)
        got = await any_loop.sock_recv(b, 100)
        transport.close()
        b.close()
        await asyncio.sleep(0)
        return proto.eofs, got

    if any_loop.kind == "asyncio":
        pytest.xfail("stock asyncio re-registers the fd on resume_reading() after EOF and "
                     "calls eof_received() again")
    assert run(any_loop, main()) == (1, b"still writable")


def test_transports_can_be_monkeypatched(loop):
    """uvicorn's and aiohttp's tests replace transport.write with a spy (issue 10)."""
    async def main():
        a, b = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        calls = []
        transport.write = calls.append
        transport.write(b"spied")
        assert calls == [b"spied"]
        del transport.write
        transport.write(b"real")
        b.setblocking(False)
        assert await loop.sock_recv(b, 10) == b"real"
        transport.close()
        b.close()

        rfd, wfd = os.pipe()
        wt, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(wfd, "wb", 0))
        wt.write = calls.append
        wt.write(b"pipe")
        assert calls[-1] == b"pipe"
        wt.close()
        os.close(rfd)

        dt, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                    local_addr=("127.0.0.1", 0))
        dt.sendto = calls.append
        dt.sendto(b"dgram")
        assert calls[-1] == b"dgram"
        dt.close()
        await asyncio.sleep(0)

    run(loop, main())


def test_write_pipe_has_no_read_side(loop):
    """asyncio's write pipe raises NotImplementedError for the reading methods; code probes."""
    async def main():
        rfd, wfd = os.pipe()
        transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(wfd, "wb", 0))
        for method in (transport.pause_reading, transport.resume_reading):
            with pytest.raises(NotImplementedError):
                method()
        transport.close()
        os.close(rfd)
        await asyncio.sleep(0)

    run(loop, main())


def test_a_socket_subclass_send_override_is_used(any_loop):
    """websockets' own tests hand the loop a socket whose send() is instrumented; the
    transport must write through it, as the standard loop does."""
    class CountingSocket(socket.socket):
        sends = 0

        def send(self, data, *args):
            CountingSocket.sends += 1
            return super().send(data, *args)

    async def main():
        a, b = socket.socketpair()
        counting = CountingSocket(a.family, a.type, fileno=a.detach())
        transport, _ = await any_loop.connect_accepted_socket(asyncio.Protocol, counting)
        transport.write(b"through the override")
        b.setblocking(False)
        got = await any_loop.sock_recv(b, 100)
        transport.close()
        b.close()
        await asyncio.sleep(0)
        return got

    assert run(any_loop, main()) == b"through the override"
    assert CountingSocket.sends >= 1


def test_buffered_protocol_without_the_subclass_gets_its_data(loop):
    """uvloop's rule, which conveyor's TLS layer follows too: a protocol with get_buffer and
    buffer_updated that is not an asyncio.Protocol is served as a buffered one."""
    class DuckBuffered(asyncio.BaseProtocol):
        def __init__(self):
            self.buf = bytearray(64)
            self.got = bytearray()
            self.arrived = asyncio.get_running_loop().create_future()

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.got += self.buf[:nbytes]
            if len(self.got) >= 5 and not self.arrived.done():
                self.arrived.set_result(None)

    async def main():
        a, b = socket.socketpair()
        transport, proto = await loop.connect_accepted_socket(DuckBuffered, a)
        b.sendall(b"hello")
        await proto.arrived
        transport.close()
        b.close()
        await asyncio.sleep(0)
        return bytes(proto.got)

    assert run(loop, main()) == b"hello"


def test_a_socket_closed_behind_the_transport_takes_no_write_into_its_fds_new_owner(any_loop):
    """The program closes the socket it handed over; the fd number goes to a new socket.
    A later write must fail (EBADF, which ends the connection) rather than send into the
    newcomer: conveyor writes through the socket's current fileno(), as send() does."""
    class Recorder(asyncio.Protocol):
        def __init__(self):
            self.lost = any_loop.create_future()

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        mine, peer = socket.socketpair()
        transport, proto = await any_loop.connect_accepted_socket(Recorder, mine)
        number = mine.fileno()
        mine.close()  # behind the transport's back
        newcomer, newcomer_peer = socket.socketpair()
        with peer, newcomer, newcomer_peer:
            if number not in (newcomer.fileno(), newcomer_peer.fileno()):
                pytest.skip("the kernel did not reuse the fd number")
            transport.write(b"not for the newcomer")
            lost = await asyncio.wait_for(proto.lost, 5)
            for sock in (newcomer, newcomer_peer):
                sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    sock.recv(100)
        return lost

    lost = run(any_loop, main())
    assert isinstance(lost, OSError) and lost.errno == errno.EBADF

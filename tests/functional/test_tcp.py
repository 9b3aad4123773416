"""TCP stream transports and create_connection on conveyor, over real loopback sockets.

Every test runs on a fresh conveyor loop whose exception handler must stay silent unless the
test expects a call, and checks that no file descriptor leaked.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import resource
import socket
import tempfile

import pytest

from conveyor.transports.socket import SocketTransport

from support import Accepted, run


class Recorder(asyncio.Protocol):
    """Records everything the transport tells it; `lost` completes on connection_lost."""

    def __init__(self, keep_open_on_eof=False):
        loop = asyncio.get_running_loop()
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.eof = loop.create_future()
        self.data = bytearray()
        self.events = []
        self.keep_open_on_eof = keep_open_on_eof
        self.data_waiters = []

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        assert isinstance(data, bytes)
        self.data += data
        for size, fut in list(self.data_waiters):
            if len(self.data) >= size and not fut.done():
                fut.set_result(None)

    def wait_for_bytes(self, size):
        fut = asyncio.get_running_loop().create_future()
        if len(self.data) >= size:
            fut.set_result(None)
        else:
            self.data_waiters.append((size, fut))
        return fut

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)
        return self.keep_open_on_eof

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


async def serve(factory, host="127.0.0.1", **kwargs):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host, 0, **kwargs)
    return server, server.sockets[0].getsockname()[1]


class Echo(asyncio.Protocol):
    """Echoes; `lost` completes on connection_lost."""

    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc):
        self.lost.set_result(exc)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


# ---------------------------------------------------------------- basics


def test_echo_and_extra_info(loop):
    async def main():
        server, port = await serve(Echo)
        transport, proto = await loop.create_connection(Recorder, "127.0.0.1", port)
        assert isinstance(transport, asyncio.Transport)
        assert isinstance(transport, SocketTransport)
        assert transport.get_protocol() is proto
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert transport.get_extra_info("sockname") == sock.getsockname()
        assert transport.get_extra_info("peername") == ("127.0.0.1", port)
        assert transport.get_extra_info("nonexistent", "dflt") == "dflt"
        transport.write(b"hello ")
        transport.writelines([b"wor", bytearray(b"ld"), memoryview(b"!")])
        await proto.wait_for_bytes(12)
        assert bytes(proto.data) == b"hello world!"
        assert transport.can_write_eof()
        transport.close()
        assert transport.is_closing()
        assert await proto.lost is None
        assert proto.events == ["made", "lost"]
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_streams_work_unchanged(loop):
    async def handle(reader, writer):
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(100):
            writer.write(b"line %d\n" % i)
            await writer.drain()
            assert await reader.readline() == b"LINE %d\n" % i
        writer.write_eof()
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_buffered_protocol_reads_into_its_buffer(loop):
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(1000)
            self.received = bytearray()
            self.sizes = []
            self.lost = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, sizehint):
            self.sizes.append(sizehint)
            return self.buf

        def buffer_updated(self, nbytes):
            self.received += self.buf[:nbytes]

        def eof_received(self):
            return False

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    payload = os.urandom(300_000)

    async def main():
        protocols = Accepted(Buffered)
        server, port = await serve(protocols)
        client = socket.create_connection(("127.0.0.1", port))
        client.setblocking(False)
        await loop.sock_sendall(client, payload)
        client.close()
        proto = await protocols.nth(0)
        assert await proto.lost is None
        assert bytes(proto.received) == payload
        assert len(proto.sizes) >= 300
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_buffered_protocol_empty_buffer_is_a_fatal_error(loop):
    class Empty(asyncio.BufferedProtocol):
        def __init__(self):
            self.lost = loop.create_future()

        def get_buffer(self, sizehint):
            return bytearray()

        def buffer_updated(self, nbytes):
            raise AssertionError("not reached")

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        server, port = await serve(Echo)
        transport, proto = await loop.create_connection(Empty, "127.0.0.1", port)
        transport.write(b"x")
        exc = await proto.lost
        assert isinstance(exc, RuntimeError)
        assert "empty buffer" in str(exc)
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert [c["message"] for c in loop.errors] == [
        "Fatal error: protocol.get_buffer() call failed."]
    loop.errors.clear()


def test_set_protocol_switches_read_path(loop):
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(64)
            self.received = bytearray()
            self.got = loop.create_future()

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.received += self.buf[:nbytes]
            if self.received.endswith(b"2") and not self.got.done():
                self.got.set_result(None)

    async def main():
        server, port = await serve(Echo)
        transport, proto = await loop.create_connection(Recorder, "127.0.0.1", port)
        transport.write(b"1")
        await proto.wait_for_bytes(1)
        buffered = Buffered()
        transport.set_protocol(buffered)
        transport.write(b"2")
        await buffered.got
        assert bytes(proto.data) == b"1"
        transport.set_protocol(proto)
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_exception_in_data_received_is_reported_and_closes(loop):
    class Broken(Recorder):
        def data_received(self, data):
            raise ZeroDivisionError

    async def main():
        server, port = await serve(Echo)
        transport, proto = await loop.create_connection(Broken, "127.0.0.1", port)
        transport.write(b"x")
        assert isinstance(await proto.lost, ZeroDivisionError)
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert [c["message"] for c in loop.errors] == [
        "Fatal error: protocol.data_received() call failed."]
    loop.errors.clear()


def test_bad_arguments(loop):
    async def main():
        server, port = await serve(Echo)
        transport, proto = await loop.create_connection(Recorder, "127.0.0.1", port)
        with pytest.raises(TypeError, match="data argument must be a bytes-like object"):
            transport.write("text")
        with pytest.raises(ValueError, match="high .* must be >= low"):
            transport.set_write_buffer_limits(high=10, low=20)
        with pytest.raises(ValueError, match="must be >= 0"):
            transport.set_write_buffer_limits(high=10, low=-1)
        transport.set_write_buffer_limits(high=1000)
        assert transport.get_write_buffer_limits() == (250, 1000)
        transport.set_write_buffer_limits(low=100)
        assert transport.get_write_buffer_limits() == (100, 400)
        transport.write_eof()
        with pytest.raises(RuntimeError, match="write_eof"):
            transport.write(b"x")
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()

        with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
            await loop.create_connection(Recorder, "127.0.0.1", port, server_hostname="x")
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await loop.create_connection(Recorder, "127.0.0.1", port,
                                         ssl_handshake_timeout=1)
        with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful"):
            await loop.create_connection(Recorder, "127.0.0.1", port,
                                         ssl_shutdown_timeout=1)
        with pytest.raises(ValueError, match="host and port was not specified"):
            await loop.create_connection(Recorder)
        with socket.socket() as sock:
            with pytest.raises(ValueError, match="host/port and sock can not be specified"):
                await loop.create_connection(Recorder, "127.0.0.1", port, sock=sock)
        with socket.socket(type=socket.SOCK_DGRAM) as sock:
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.create_connection(Recorder, sock=sock)
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.connect_accepted_socket(Recorder, sock)

    run(loop, main())


# ---------------------------------------------------------------- flow control


def test_large_write_to_slow_reader_pauses_and_loses_nothing(loop):
    """The writer respects pause_writing; the buffer stays bounded; every byte arrives."""
    chunk = 64 * 1024
    total_chunks = 256  # 16 MiB
    high = 256 * 1024

    class Producer(asyncio.Protocol):
        def __init__(self):
            self.can_write = asyncio.Event()
            self.can_write.set()
            self.pauses = 0
            self.paused = loop.create_future()
            self.max_buffered = 0
            self.digest = hashlib.sha256()

        def connection_made(self, transport):
            self.transport = transport
            transport.set_write_buffer_limits(high=high)
            self.task = loop.create_task(self.produce())

        async def produce(self):
            for i in range(total_chunks):
                await self.can_write.wait()
                data = i.to_bytes(4, "big") * (chunk // 4)
                self.digest.update(data)
                self.transport.write(data)
                self.max_buffered = max(self.max_buffered,
                                        self.transport.get_write_buffer_size())
            self.transport.close()

        def pause_writing(self):
            self.pauses += 1
            self.can_write.clear()
            if not self.paused.done():
                self.paused.set_result(None)

        def resume_writing(self):
            self.can_write.set()

    class SlowReader(Recorder):
        """Reads one chunk, then pauses until the writer has been paused again."""

        def __init__(self):
            super().__init__()
            self.digest = hashlib.sha256()
            self.size = 0

        def connection_made(self, transport):
            super().connection_made(transport)
            transport.pause_reading()
            assert not transport.is_reading()

        def data_received(self, data):
            self.digest.update(data)
            self.size += len(data)

    async def main():
        producers = Accepted(Producer)
        server, port = await serve(producers)
        transport, reader = await loop.create_connection(SlowReader, "127.0.0.1", port)
        producer = await producers.nth(0)
        await producer.paused
        assert producer.transport.get_write_buffer_size() > high
        transport.resume_reading()
        assert transport.is_reading()
        assert await reader.lost is None
        await producer.task
        assert reader.size == chunk * total_chunks
        assert reader.digest.digest() == producer.digest.digest()
        assert producer.max_buffered <= high + chunk
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_pause_writing_failure_is_reported(loop):
    class BadPause(Recorder):
        def pause_writing(self):
            raise ValueError("boom")

    async def main():
        server, port = await serve(Echo)
        transport, proto = await loop.create_connection(BadPause, "127.0.0.1", port)
        transport.pause_reading()
        transport.set_write_buffer_limits(high=0)
        transport.write(b"x" * 10_000_000)
        assert transport.get_write_buffer_size() > 0
        transport.abort()
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert [c["message"] for c in loop.errors] == ["protocol.pause_writing() failed"]
    loop.errors.clear()


def test_close_flushes_everything_and_abort_discards(loop):
    payload = os.urandom(8 * 1024 * 1024)

    async def main():
        accepted = []

        def factory():
            accepted.append(Recorder(keep_open_on_eof=True))
            return accepted[-1]

        server, port = await serve(factory)
        transport, proto = await loop.create_connection(Recorder, "127.0.0.1", port)
        transport.write(payload)
        assert transport.get_write_buffer_size() > 0  # the peer cannot take 8 MiB at once
        transport.close()
        transport.close()  # a second close is a no-op
        assert await proto.lost is None
        await accepted[0].eof
        assert bytes(accepted[0].data) == payload
        accepted[0].transport.close()
        await accepted[0].lost

        transport, proto = await loop.create_connection(Recorder, "127.0.0.1", port)
        transport.write(payload)
        transport.abort()
        assert transport.get_write_buffer_size() == 0
        assert await proto.lost is None
        await accepted[1].eof  # what the kernel had taken arrives, then EOF; no more
        assert len(accepted[1].data) < len(payload)
        accepted[1].transport.close()
        await accepted[1].lost
        assert proto.events == ["made", "pause", "lost"]
        server.close()
        await server.wait_closed()

    run(loop, main())


# ---------------------------------------------------------------- half-close and errors


def test_half_close_client_to_server(loop):
    class Answer(Recorder):
        def eof_received(self):
            super().eof_received()
            self.transport.write(b"got " + bytes(self.data))
            self.transport.close()
            return True

    async def main():
        server, port = await serve(Answer)
        transport, proto = await loop.create_connection(Recorder, "127.0.0.1", port)
        transport.write(b"question")
        transport.write_eof()
        transport.write_eof()  # idempotent
        await proto.eof
        assert bytes(proto.data) == b"got question"
        assert await proto.lost is None
        assert proto.events == ["made", "eof", "lost"]
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_half_close_server_to_client(loop):
    class Announce(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.write(b"banner")
            transport.write_eof()

        def eof_received(self):
            super().eof_received()
            return False

    async def main():
        server, port = await serve(lambda: Announce(keep_open_on_eof=False))
        transport, proto = await loop.create_connection(
            lambda: Recorder(keep_open_on_eof=True), "127.0.0.1", port)
        await proto.eof
        assert bytes(proto.data) == b"banner"
        assert not transport.is_closing()  # eof_received returned True: still writable
        transport.write(b"reply after eof")
        transport.close()
        assert await proto.lost is None
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_peer_reset_mid_write(loop):
    async def main():
        accepted = Accepted(Recorder)
        server, port = await serve(accepted)
        client = socket.create_connection(("127.0.0.1", port))
        proto = await accepted.nth(0)
        await proto.made
        proto.transport.write(b"x" * (16 * 1024 * 1024))
        assert proto.transport.get_write_buffer_size() > 0
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()  # RST: the peer vanished with our data unread
        exc = await proto.lost
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert proto.events.count("lost") == 1
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_write_after_connection_lost_is_ignored_then_warned(loop, caplog):
    async def main():
        server, port = await serve(Echo)
        transport, proto = await loop.create_connection(Recorder, "127.0.0.1", port)
        transport.abort()
        await proto.lost
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(4):
                transport.write(b"ignored")
            assert "socket.send() raised exception." not in caplog.text
            transport.write(b"ignored")
            transport.write(b"ignored")
        assert caplog.text.count("socket.send() raised exception.") == 2
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_connect_refused(loop):
    async def main():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # bound, not listening: connections are refused
            with pytest.raises(ConnectionRefusedError):
                await loop.create_connection(Recorder, "127.0.0.1", port)

    run(loop, main())


# ---------------------------------------------------------------- many, v6, address choice


@pytest.mark.skipif(os.environ.get("CONVEYOR_POLLER") == "select",
                    reason="select() cannot watch fds >= FD_SETSIZE (1024), which 2000 sockets "
                           "need; the other backends have no such limit")
def test_thousand_concurrent_connections(loop):
    count = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * count + 100
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))

    async def handle(reader, writer):
        data = await reader.readexactly(16)
        writer.write(data[::-1])
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def client(port, i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        message = b"%016d" % i
        writer.write(message)
        answer = await reader.readexactly(16)
        writer.close()
        await writer.wait_closed()
        return answer == message[::-1]

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=count)
        port = server.sockets[0].getsockname()[1]
        results = await asyncio.gather(*(client(port, i) for i in range(count)))
        assert all(results)
        server.close()
        await server.wait_closed()

    try:
        run(loop, main())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_ipv6_loopback(loop):
    async def main():
        server, port = await serve(Echo, host="::1")
        assert server.sockets[0].family == socket.AF_INET6
        transport, proto = await loop.create_connection(Recorder, "::1", port)
        assert transport.get_extra_info("peername")[:2] == ("::1", port)
        transport.write(b"six")
        await proto.wait_for_bytes(3)
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())


def _fake_getaddrinfo(loop, infos):
    async def getaddrinfo(host, port, *, family=0, type=0, proto=0, flags=0):
        return infos
    loop.getaddrinfo = getaddrinfo


def _refused_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    return probe, probe.getsockname()[1]


@pytest.mark.parametrize("delay", [None, 0.05])
def test_tries_addresses_in_turn(loop, delay):
    async def main():
        server, port = await serve(Echo)
        probe, dead = _refused_port()
        with probe:
            tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
            _fake_getaddrinfo(loop, [(*tcp, ("127.0.0.1", dead)), (*tcp, ("127.0.0.1", port))])
            transport, proto = await loop.create_connection(
                Recorder, "example.invalid", 1, happy_eyeballs_delay=delay)
        assert transport.get_extra_info("peername") == ("127.0.0.1", port)
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())


@pytest.mark.parametrize("delay", [None, 0.05])
def test_all_addresses_fail(loop, delay):
    async def main():
        probe1, dead1 = _refused_port()
        probe2, dead2 = _refused_port()
        with probe1, probe2:
            tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
            _fake_getaddrinfo(loop, [(*tcp, ("127.0.0.1", dead1)), (*tcp, ("127.0.0.1", dead2))])
            with pytest.raises(OSError, match="Multiple exceptions") as info:
                await loop.create_connection(Recorder, "example.invalid", 1,
                                             happy_eyeballs_delay=delay)
            assert not isinstance(info.value, ExceptionGroup)
            with pytest.raises(ExceptionGroup) as group:
                await loop.create_connection(Recorder, "example.invalid", 1,
                                             happy_eyeballs_delay=delay, all_errors=True)
            assert len(group.value.exceptions) == 2
            assert all(isinstance(e, ConnectionRefusedError) for e in group.value.exceptions)

    run(loop, main())


def test_happy_eyeballs_starts_next_attempt_after_delay(loop):
    """A first address that never answers must not hold up the second beyond the delay."""
    async def main():
        server, port = await serve(Echo)
        # A listener whose backlog is full never completes a handshake: SYNs are dropped.
        stuck = socket.socket()
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(0)
        stuck_port = stuck.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", stuck_port))
                fillers.append(filler)
            tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
            _fake_getaddrinfo(loop, [(*tcp, ("127.0.0.1", stuck_port)),
                                     (*tcp, ("127.0.0.1", port))])
            started = loop.time()
            transport, proto = await loop.create_connection(
                Recorder, "example.invalid", 1, happy_eyeballs_delay=0.1)
            assert loop.time() - started < 5
            assert transport.get_extra_info("peername") in (("127.0.0.1", port),
                                                              ("127.0.0.1", stuck_port))
            transport.close()
            await proto.lost
        finally:
            for filler in fillers:
                filler.close()
            stuck.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_local_addr(loop):
    async def main():
        server, port = await serve(Echo)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            local_port = probe.getsockname()[1]
        transport, proto = await loop.create_connection(
            Recorder, "127.0.0.1", port, local_addr=("127.0.0.1", local_port))
        assert transport.get_extra_info("sockname") == ("127.0.0.1", local_port)
        transport.close()
        await proto.lost
        # A local address in use is reported naming the address.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            addr = taken.getsockname()
            with pytest.raises(OSError, match="error while attempting to bind on address"):
                await loop.create_connection(Recorder, "127.0.0.1", port, local_addr=addr)
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_sock_and_connect_accepted_socket(loop):
    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        client_sock = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        listener.close()
        server_transport, server_proto = await loop.connect_accepted_socket(Echo, accepted)
        transport, proto = await loop.create_connection(Recorder, sock=client_sock)
        transport.write(b"ping")
        await proto.wait_for_bytes(4)
        assert bytes(proto.data) == b"ping"
        transport.close()
        await proto.lost
        await server_proto.lost

    run(loop, main())


def test_cancelled_create_connection_leaks_nothing(loop):
    async def main():
        server, port = await serve(Echo)
        task = loop.create_task(loop.create_connection(Recorder, "127.0.0.1", port))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(5):
            await asyncio.sleep(0)
        server.close()
        server.abort_clients()
        await server.wait_closed()

    run(loop, main())


# ---------------------------------------------------------------- sendfile


@pytest.mark.parametrize("kind", ["native", "fallback"])
def test_sendfile(loop, kind):
    data = os.urandom(3 * 1024 * 1024 + 17)

    async def main():
        accepted = []

        def factory():
            accepted.append(Recorder(keep_open_on_eof=False))
            return accepted[-1]

        server, port = await serve(factory)
        transport, proto = await loop.create_connection(Recorder, "127.0.0.1", port)
        with tempfile.TemporaryFile() as disk:
            disk.write(data)
            disk.seek(0)
            file = disk if kind == "native" else io.BytesIO(data)
            transport.write(b"head")
            sent = await loop.sendfile(transport, file, offset=10, count=2_000_000)
            assert sent == 2_000_000
            assert file.tell() == 2_000_010
            sent = await loop.sendfile(transport, file, offset=2_000_010)
            assert sent == len(data) - 2_000_010
            assert file.tell() == len(data)
            with pytest.raises(ValueError, match="offset must be a non-negative integer"):
                await loop.sendfile(transport, file, offset=-1)
            with pytest.raises(TypeError, match="count must be a positive integer"):
                await loop.sendfile(transport, file, count="1")
        assert transport.is_reading()
        transport.close()
        await proto.lost
        await accepted[0].lost
        assert bytes(accepted[0].data) == b"head" + data[10:]
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_sendfile_refuses_text_files_and_closing_transports(loop):
    async def main():
        server, port = await serve(Echo)
        transport, proto = await loop.create_connection(Recorder, "127.0.0.1", port)
        with tempfile.TemporaryFile("w+") as text:
            with pytest.raises(ValueError, match="binary mode"):
                await loop.sendfile(transport, text)
        transport.close()
        with pytest.raises(RuntimeError, match="Transport is closing"):
            await loop.sendfile(transport, io.BytesIO(b"x"))
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_interleave_orders_families_alternately():
    from conveyor.net.tcp import _interleave

    six = [(socket.AF_INET6, 1, 6, "", (f"::{i}", 1)) for i in range(1, 4)]
    four = [(socket.AF_INET, 1, 6, "", (f"10.0.0.{i}", 1)) for i in range(1, 3)]
    infos = six + four
    assert _interleave(infos, 1) == [six[0], four[0], six[1], four[1], six[2]]
    assert _interleave(infos, 2) == [six[0], six[1], four[0], six[2], four[1]]
    assert _interleave(four, 1) == four


def test_write_memoryview_of_wide_items_counts_bytes(loop):
    import array

    async def main():
        server, port = await serve(Echo)
        transport, proto = await loop.create_connection(Recorder, "127.0.0.1", port)
        items = array.array("i", range(300_000))  # 1.2 MB: partly buffered
        transport.write(memoryview(items))
        transport.write(memoryview(b"0123456789")[::2])  # not contiguous
        expected = items.tobytes() + b"02468"
        await proto.wait_for_bytes(len(expected))
        assert bytes(proto.data) == expected
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())

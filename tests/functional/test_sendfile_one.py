"""sendfile's one implementation (conveyor/net/sendfile.py), checked against stock asyncio.

conveyor had two sendfile implementations (one for `loop.sock_sendfile`, one for
`loop.sendfile` over a transport) that disagreed on the fallback's block size, on whether a
file must be regular, and on which os.sendfile errors fall back. The merged one takes each
answer from the standard loop: every test here runs on stock asyncio and on conveyor with
the same expectations, so "asyncio does it this way" is checked, not remembered.
"""

from __future__ import annotations

import asyncio
import gc
import io
import os
import socket

import pytest

import conveyor

from support import checked_loop

DATA = bytes(range(256)) * 40  # 10 KiB, every byte value, so misplaced offsets show
TIMEOUT = 10


@pytest.fixture(params=["asyncio", "conveyor"])
def loop(request):
    """Stock asyncio's loop and conveyor's; afterwards, no handler calls and no leaked fds."""
    gc.collect()
    fds_before = set(os.listdir("/proc/self/fd"))
    yield from checked_loop(
        asyncio.new_event_loop if request.param == "asyncio" else conveyor.new_event_loop)
    assert set(os.listdir("/proc/self/fd")) == fds_before, "file descriptors leaked"


@pytest.fixture
def pair():
    """A connected pair of non-blocking stream sockets: (sender, receiver)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def disk_file(tmp_path):
    path = tmp_path / "data"
    path.write_bytes(DATA)
    with open(path, "rb") as file:
        yield file


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


async def receive(loop, sock, size):
    """Exactly `size` bytes from `sock` (fewer only if the peer closes first)."""
    data = bytearray()
    while len(data) < size:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


class Sink(asyncio.Protocol):
    """The server side of a transport test: keeps what arrives."""

    def __init__(self):
        self.data = bytearray()
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self.data += data

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(None)


async def with_transport(loop, scenario):
    """Run `scenario(transport)` on a client connection; return (its result, bytes the
    server received once the client closed)."""
    sinks = []

    def factory():
        sinks.append(Sink())
        return sinks[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    transport, _ = await loop.create_connection(asyncio.Protocol,
                                                *server.sockets[0].getsockname()[:2])
    try:
        result = await scenario(transport)
    finally:
        transport.close()
        while not sinks:
            await asyncio.sleep(0)
        await sinks[0].lost
        server.close()
        await server.wait_closed()
    return result, bytes(sinks[0].data)


async def caught(coro):
    """('ok', result) or (exception type, message) of awaiting `coro`."""
    try:
        return "ok", await coro
    except Exception as exc:  # noqa: BLE001 - the outcome is what is checked
        return type(exc), str(exc)


def outcome(loop, coro):
    return run(loop, caught(coro))


# ---------------------------------------------------------------- arguments

BAD_ARGUMENTS = [
    ({"offset": -1}, ValueError, "offset must be a non-negative integer (got -1)"),
    ({"offset": 1.5}, TypeError, "offset must be a non-negative integer (got 1.5)"),
    ({"count": 0}, ValueError, "count must be a positive integer (got 0)"),
    ({"count": "1"}, TypeError, "count must be a positive integer (got '1')"),
]


@pytest.mark.parametrize("kwargs, exc, message", BAD_ARGUMENTS)
def test_sock_sendfile_checks_offset_and_count(loop, pair, disk_file, kwargs, exc, message):
    assert outcome(loop, loop.sock_sendfile(pair[0], disk_file, **kwargs)) == (exc, message)


@pytest.mark.parametrize("kwargs, exc, message", BAD_ARGUMENTS)
def test_sendfile_checks_offset_and_count(loop, disk_file, kwargs, exc, message):
    async def scenario(transport):
        return await caught(loop.sendfile(transport, disk_file, **kwargs)), transport.is_reading()

    result, received = run(loop, with_transport(loop, scenario))
    assert result == ((exc, message), True)
    assert received == b""


def test_text_mode_file_is_refused(loop, pair, tmp_path):
    path = tmp_path / "text"
    path.write_text("text")
    expected = (ValueError, "file should be opened in binary mode")
    with open(path) as text:
        assert outcome(loop, loop.sock_sendfile(pair[0], text)) == expected

        async def scenario(transport):
            return await caught(loop.sendfile(transport, text))

        result, _ = run(loop, with_transport(loop, scenario))
    assert result == expected


def test_datagram_socket_is_refused(loop, disk_file):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    with a, b:
        assert outcome(loop, loop.sock_sendfile(a, disk_file)) == (
            ValueError, "only SOCK_STREAM type sockets are supported")


# ------------------------------------------------------- what the file can be

def test_file_without_descriptor_and_no_fallback(loop, pair):
    """A file the kernel cannot send from: SendfileNotAvailableError, position untouched."""
    file = io.BytesIO(DATA)
    kind, _ = outcome(loop, loop.sock_sendfile(pair[0], file, fallback=False))
    assert kind is asyncio.SendfileNotAvailableError
    assert file.tell() == 0

    async def scenario(transport):
        return await caught(loop.sendfile(transport, file, fallback=False))

    (kind, _), received = run(loop, with_transport(loop, scenario))
    assert kind is asyncio.SendfileNotAvailableError
    assert received == b"" and file.tell() == 0


def _pipe_with(data):
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    os.close(write_fd)
    return os.fdopen(read_fd, "rb")


def test_pipe_or_socket_as_file_without_count_sends_nothing(loop, pair):
    """Without a count, sendfile sends the size fstat reports: 0 for a pipe or a socket
    (as for an empty file), so nothing is sent and nothing falls back."""
    with _pipe_with(b"pipedata") as pipe:
        assert run(loop, loop.sock_sendfile(pair[0], pipe)) == 0
    c, d = socket.socketpair()
    c.sendall(b"sockdata")
    c.close()
    with d, d.makefile("rb") as from_socket:
        assert run(loop, loop.sock_sendfile(pair[0], from_socket)) == 0
    pair[0].shutdown(socket.SHUT_WR)
    assert run(loop, receive(loop, pair[1], 1)) == b""


def test_pipe_as_file_with_count(loop, pair):
    """With a count, os.sendfile is tried and refuses a pipe: not available without the
    fallback; with it, the bytes go out and then setting the (unseekable) pipe's position
    fails, as asyncio's does."""
    with _pipe_with(b"pipedata") as pipe:
        kind, message = outcome(loop, loop.sock_sendfile(pair[0], pipe, 0, 5, fallback=False))
    assert (kind, message) == (asyncio.SendfileNotAvailableError, "os.sendfile call failed")
    with _pipe_with(b"pipedata") as pipe:
        kind, _ = outcome(loop, loop.sock_sendfile(pair[0], pipe, 0, 5))
    assert kind is io.UnsupportedOperation
    assert run(loop, receive(loop, pair[1], 5)) == b"piped"


# --------------------------------------------------------- counts and positions

@pytest.mark.parametrize("kind", ["native", "fallback"])
def test_count_beyond_the_end_sends_to_the_end(loop, pair, disk_file, kind):
    file = disk_file if kind == "native" else io.BytesIO(DATA)
    assert run(loop, loop.sock_sendfile(pair[0], file, 3, len(DATA) * 2)) == len(DATA) - 3
    assert file.tell() == len(DATA)
    assert run(loop, receive(loop, pair[1], len(DATA) - 3)) == DATA[3:]
    assert run(loop, loop.sock_sendfile(pair[0], file, len(DATA) + 5)) == 0
    # Nothing sent: the native way leaves the position; the fallback seeked to the offset.
    assert file.tell() == len(DATA) + (5 if kind == "fallback" else 0)


@pytest.mark.parametrize("kind", ["native", "fallback"])
def test_position_ends_after_the_last_byte_sent(loop, pair, disk_file, kind):
    file = disk_file if kind == "native" else io.BytesIO(DATA)
    assert run(loop, loop.sock_sendfile(pair[0], file, 100, 1000)) == 1000
    assert file.tell() == 1100
    assert run(loop, receive(loop, pair[1], 1000)) == DATA[100:1100]


def test_fallback_with_offset_zero_reads_from_the_current_position(loop, pair):
    """asyncio's fallback seeks to `offset` only when it is not 0, then sets the position
    to offset + sent: so offset 0 sends from where the file stands."""
    file = io.BytesIO(DATA)
    file.seek(50)
    assert run(loop, loop.sock_sendfile(pair[0], file, 0, 10)) == 10
    assert file.tell() == 10
    assert run(loop, receive(loop, pair[1], 10)) == DATA[50:60]


@pytest.mark.parametrize("kind", ["native", "fallback"])
def test_transport_sendfile_position_and_bytes(loop, disk_file, kind):
    file = disk_file if kind == "native" else io.BytesIO(DATA)

    async def scenario(transport):
        transport.write(b"head")
        sent = await loop.sendfile(transport, file, 10, len(DATA) * 2)
        return sent, file.tell(), transport.is_reading()

    result, received = run(loop, with_transport(loop, scenario))
    assert result == (len(DATA) - 10, len(DATA), True)
    assert received == b"head" + DATA[10:]


@pytest.mark.parametrize("kind", ["native", "fallback"])
def test_transport_sendfile_leaves_paused_reading_paused(loop, disk_file, kind):
    file = disk_file if kind == "native" else io.BytesIO(DATA)

    async def scenario(transport):
        transport.pause_reading()
        await loop.sendfile(transport, file)
        return transport.is_reading()

    result, received = run(loop, with_transport(loop, scenario))
    assert result is False
    assert received == DATA


# ------------------------------------------------------------------- errors

def test_peer_gone_before_the_first_byte(loop, disk_file):
    """Any os.sendfile error before the first byte means "not available"; the fallback
    then meets the real error."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.close()
    with a:
        kind, _ = outcome(loop, loop.sock_sendfile(a, disk_file, fallback=False))
        assert kind is asyncio.SendfileNotAvailableError
        assert disk_file.tell() == 0
        kind, _ = outcome(loop, loop.sock_sendfile(a, disk_file))
        assert kind is BrokenPipeError


# ------------------------------------------------- siblings through the loop

def test_fallback_sends_through_the_loops_sock_sendall(loop, pair):
    """A sock_sendall replaced on the loop is what the fallback calls (asyncio's
    sock_sendfile fallback calls self.sock_sendall)."""
    sizes = []
    original = loop.sock_sendall

    async def spy(sock, data):
        sizes.append(len(data))
        return await original(sock, data)

    loop.sock_sendall = spy
    assert run(loop, loop.sock_sendfile(pair[0], io.BytesIO(DATA))) == len(DATA)
    assert sum(sizes) == len(DATA)
    assert run(loop, receive(loop, pair[1], len(DATA))) == DATA


def test_transport_sendfile_goes_through_the_loops_sock_sendfile(loop, disk_file):
    """A socket transport lends its socket to loop.sock_sendfile (without fallback; the
    transport's own fallback writes through the transport), as asyncio's does."""
    calls = []
    original = loop.sock_sendfile

    async def spy(sock, file, offset=0, count=None, *, fallback=True):
        calls.append((offset, count, fallback))
        return await original(sock, file, offset, count, fallback=fallback)

    loop.sock_sendfile = spy

    async def scenario(transport):
        return await loop.sendfile(transport, disk_file, 7, 100)

    result, received = run(loop, with_transport(loop, scenario))
    assert (result, received) == (100, DATA[7:107])
    assert calls == [(7, 100, False)]


def test_one_fallback_block_size():
    """Both fallbacks (to a socket, to a transport) read the file in the same blocks."""
    from conveyor.net.sendfile import FALLBACK_BLOCK

    size = FALLBACK_BLOCK * 2 + 10
    data = os.urandom(size)

    class Reads(io.BytesIO):
        def __init__(self, *args):
            super().__init__(*args)
            self.sizes = []

        def readinto(self, buffer):
            self.sizes.append(len(buffer))
            return super().readinto(buffer)

    loop = conveyor.new_event_loop()
    try:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with a, b:
            file = Reads(data)

            async def sock_case():
                receiving = asyncio.ensure_future(receive(loop, b, size))
                await loop.sock_sendfile(a, file)
                return await receiving

            assert run(loop, sock_case()) == data
            sock_sizes = file.sizes
        file = Reads(data)

        async def scenario(transport):
            return await loop.sendfile(transport, file)

        assert run(loop, with_transport(loop, scenario)) == (size, data)
        # Two full blocks, the last 10 bytes, and the read that finds the end.
        assert sock_sizes == file.sizes == [FALLBACK_BLOCK] * 4
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()

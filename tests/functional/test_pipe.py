"""Pipe transports over real pipes, FIFOs, socketpairs and ptys: data, EOF, flow control."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import tempfile
import threading
import tty

import pytest

import conveyor

from support import run, wait_until


@pytest.fixture
def loop():
    loop = conveyor.new_event_loop()
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield loop
    loop.close()
    assert errors == []


class Recorder(asyncio.Protocol):
    """Records every call, in order; `received` is set at each data_received, `lost`
    resolves at connection_lost."""

    def __init__(self, loop):
        self.events = []
        self.data = bytearray()
        self.received = asyncio.Event()
        self.lost = loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data
        self.received.set()

    def eof_received(self):
        self.events.append("eof")

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        assert not self.lost.done(), "connection_lost called twice"
        self.lost.set_result(exc)


# --------------------------------------------------------------------------- reading

def test_read_pipe_data_then_eof(loop):
    rfd, wfd = os.pipe()

    async def main():
        transport, proto = await loop.connect_read_pipe(lambda: Recorder(loop),
                                                        os.fdopen(rfd, "rb", 0))
        assert isinstance(transport, asyncio.ReadTransport)
        assert transport.get_extra_info("pipe").fileno() == rfd
        assert transport.is_reading()
        os.write(wfd, b"one")
        os.write(wfd, b"two")
        os.close(wfd)
        exc = await proto.lost
        return proto, exc

    proto, exc = run(loop, main())
    assert exc is None
    assert bytes(proto.data) == b"onetwo"
    assert proto.events == ["made", "data", "eof", "lost"]


def test_read_pipe_pause_and_resume(loop):
    rfd, wfd = os.pipe()

    async def main():
        transport, proto = await loop.connect_read_pipe(lambda: Recorder(loop),
                                                        os.fdopen(rfd, "rb", 0))
        transport.pause_reading()
        transport.pause_reading()  # idempotent
        assert not transport.is_reading()
        os.write(wfd, b"held")
        for _ in range(5):
            await asyncio.sleep(0)
        assert proto.data == b""
        transport.resume_reading()
        assert transport.is_reading()
        await wait_until(lambda: proto.data, "the held data", wakeup=proto.received)
        assert proto.data == b"held"
        transport.close()
        assert not transport.is_reading()
        return await proto.lost

    try:
        assert run(loop, main()) is None
    finally:
        os.close(wfd)


def test_read_pipe_refuses_a_regular_file(loop):
    with tempfile.TemporaryFile() as f:
        with pytest.raises(ValueError,
                           match="Pipe transport is only for pipes, sockets and character"):
            run(loop, loop.connect_read_pipe(asyncio.Protocol, f))
        with pytest.raises(ValueError, match="Pipe transport is only for pipes"):
            run(loop, loop.connect_write_pipe(asyncio.Protocol, f))
        assert not f.closed  # refusing it does not take it over


def test_read_from_a_fifo(loop, tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(path, os.O_WRONLY)

    async def main():
        _, proto = await loop.connect_read_pipe(lambda: Recorder(loop),
                                                os.fdopen(rfd, "rb", 0))
        os.write(wfd, b"through the fifo")
        os.close(wfd)
        await proto.lost
        return bytes(proto.data)

    assert run(loop, main()) == b"through the fifo"


def test_the_fd_belongs_to_the_transport(loop):
    rfd, wfd = os.pipe()

    async def main():
        transport, proto = await loop.connect_read_pipe(lambda: Recorder(loop),
                                                        os.fdopen(rfd, "rb", 0))
        with pytest.raises(RuntimeError, match="used by transport"):
            loop.add_reader(rfd, lambda: None)
        transport.close()
        await proto.lost

    try:
        run(loop, main())
    finally:
        os.close(wfd)


def test_an_exception_in_data_received_reaches_the_handler_and_the_loop_lives():
    loop = conveyor.new_event_loop()
    seen = []
    reported = asyncio.Event()
    loop.set_exception_handler(lambda _loop, context: (seen.append(context), reported.set()))
    rfd, wfd = os.pipe()

    class Exploding(Recorder):
        def data_received(self, data):
            raise ZeroDivisionError("boom")

    async def main():
        transport, proto = await loop.connect_read_pipe(lambda: Exploding(loop),
                                                        os.fdopen(rfd, "rb", 0))
        os.write(wfd, b"x")
        await reported.wait()
        transport.close()
        await proto.lost
        return "alive"

    try:
        assert run(loop, main()) == "alive"
        assert isinstance(seen[0]["exception"], ZeroDivisionError)
    finally:
        os.close(wfd)
        loop.close()


# --------------------------------------------------------------------------- writing

def test_write_pipe_flow_control_and_nothing_lost(loop):
    """4 MiB through a 64 KiB pipe: the protocol is paused and resumed, every byte arrives."""
    rfd, wfd = os.pipe()
    payload = os.urandom(4 * 1024 * 1024)

    async def main():
        reader_t, reader = await loop.connect_read_pipe(lambda: Recorder(loop),
                                                        os.fdopen(rfd, "rb", 0))
        writer_t, writer = await loop.connect_write_pipe(lambda: Recorder(loop),
                                                         os.fdopen(wfd, "wb", 0))
        assert isinstance(writer_t, asyncio.WriteTransport)
        assert writer_t.can_write_eof()
        assert writer_t.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        for start in range(0, len(payload), 100_000):
            writer_t.write(payload[start:start + 100_000])
        assert "pause" in writer.events
        assert writer_t.get_write_buffer_size() > 0
        writer_t.close()  # flushes first
        assert writer_t.is_closing()
        assert await writer.lost is None
        assert await reader.lost is None
        return writer.events, bytes(reader.data)

    events, received = run(loop, main())
    assert received == payload
    assert events[0] == "made" and events[-1] == "lost"
    assert events.count("pause") == events.count("resume") >= 1


def test_write_pipe_notices_the_reader_closing_without_writing(loop):
    rfd, wfd = os.pipe()

    async def main():
        _, proto = await loop.connect_write_pipe(lambda: Recorder(loop),
                                                 os.fdopen(wfd, "wb", 0))
        await asyncio.sleep(0)
        os.close(rfd)
        return await proto.lost

    assert run(loop, main()) is None


def test_write_pipe_reader_gone_with_data_buffered_is_broken_pipe(loop):
    rfd, wfd = os.pipe()

    async def main():
        transport, proto = await loop.connect_write_pipe(lambda: Recorder(loop),
                                                         os.fdopen(wfd, "wb", 0))
        transport.set_write_buffer_limits(high=10 * 1024 * 1024)
        transport.write(b"x" * (1024 * 1024))  # far more than the pipe holds
        assert transport.get_write_buffer_size() > 0
        os.close(rfd)
        exc = await proto.lost
        transport.write(b"dropped")  # after the loss: silently dropped, as asyncio does
        return exc

    exc = run(loop, main())
    assert isinstance(exc, BrokenPipeError)


def test_abort_discards_what_is_buffered(loop):
    rfd, wfd = os.pipe()

    async def main():
        transport, proto = await loop.connect_write_pipe(lambda: Recorder(loop),
                                                         os.fdopen(wfd, "wb", 0))
        transport.write(b"y" * (1024 * 1024))
        transport.abort()
        transport.abort()
        transport.close()
        return await proto.lost

    try:
        assert run(loop, main()) is None
    finally:
        os.close(rfd)


def test_write_argument_errors(loop):
    rfd, wfd = os.pipe()

    async def main():
        transport, proto = await loop.connect_write_pipe(lambda: Recorder(loop),
                                                         os.fdopen(wfd, "wb", 0))
        with pytest.raises(TypeError, match="bytes-like"):
            transport.write("text")
        with pytest.raises(ValueError, match="high .* must be >= low"):
            transport.set_write_buffer_limits(high=1, low=2)
        transport.write(b"")  # nothing to do
        transport.write_eof()
        assert transport.is_closing()
        return await proto.lost

    try:
        assert run(loop, main()) is None
    finally:
        os.close(rfd)


def test_bytearray_is_copied_when_buffered(loop):
    rfd, wfd = os.pipe()
    chunk = bytearray(b"a" * (200 * 1024))

    async def main():
        rt, reader = await loop.connect_read_pipe(lambda: Recorder(loop),
                                                  os.fdopen(rfd, "rb", 0))
        wt, writer = await loop.connect_write_pipe(lambda: Recorder(loop),
                                                   os.fdopen(wfd, "wb", 0))
        wt.write(chunk)
        chunk[:] = b"b" * len(chunk)  # the caller reuses its buffer at once
        wt.close()
        await reader.lost
        return bytes(reader.data)

    assert run(loop, main()) == b"a" * (200 * 1024)


def test_socketpair_as_pipes(loop):
    a, b = socket.socketpair()

    async def main():
        rt, reader = await loop.connect_read_pipe(lambda: Recorder(loop), a)
        wt, writer = await loop.connect_write_pipe(lambda: Recorder(loop), b)
        wt.write(b"over a socket")
        wt.close()
        await writer.lost
        await reader.lost
        return bytes(reader.data)

    assert run(loop, main()) == b"over a socket"
    assert a.fileno() == -1 and b.fileno() == -1  # each closed once, by its transport


# ------------------------------------------------------------------------------- pty

def test_pty_round_trip_and_eio_at_the_end(loop):
    """Write through the pty master, read back from the slave, then EIO ends the reader."""
    master, slave = os.openpty()
    tty.setraw(slave)

    async def main():
        rt, reader = await loop.connect_read_pipe(lambda: Recorder(loop),
                                                  os.fdopen(slave, "rb", 0))
        wt, writer = await loop.connect_write_pipe(lambda: Recorder(loop),
                                                   os.fdopen(master, "wb", 0))
        wt.write(b"typed on the terminal")
        await wait_until(lambda: len(reader.data) >= len(b"typed on the terminal"),
                         "the typed bytes", wakeup=reader.received)
        rt.close()
        wt.close()
        await reader.lost
        await writer.lost
        return bytes(reader.data)

    assert run(loop, main()) == b"typed on the terminal"


def test_pty_reader_ends_when_the_other_side_closes(loop):
    master, slave = os.openpty()
    tty.setraw(slave)

    async def main():
        rt, reader = await loop.connect_read_pipe(lambda: Recorder(loop),
                                                  os.fdopen(master, "rb", 0))
        os.write(slave, b"output of a program")
        os.close(slave)
        exc = await reader.lost
        return exc, bytes(reader.data)

    exc, data = run(loop, main())
    assert data == b"output of a program"
    # Linux reports the closed pty as EIO: the transport ends, the handler is not called.
    assert exc is None or (isinstance(exc, OSError) and exc.errno == errno.EIO)


# -------------------------------------------------------------------------- threads

def test_pipes_on_a_loop_in_another_thread():
    result = []

    def body():
        loop = conveyor.new_event_loop()
        rfd, wfd = os.pipe()

        async def main():
            _, reader = await loop.connect_read_pipe(lambda: Recorder(loop),
                                                     os.fdopen(rfd, "rb", 0))
            wt, _ = await loop.connect_write_pipe(lambda: Recorder(loop),
                                                  os.fdopen(wfd, "wb", 0))
            wt.write(b"from a thread")
            wt.close()
            await reader.lost
            return bytes(reader.data)

        try:
            result.append(run(loop, main()))
        finally:
            loop.close()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(30)
    assert result == [b"from a thread"]

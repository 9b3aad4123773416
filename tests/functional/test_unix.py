"""Unix stream sockets on conveyor: create_unix_server / create_unix_connection, real sockets."""

from __future__ import annotations

import asyncio
import errno
import os
import pathlib
import socket
import sys
import tempfile
import uuid

import pytest

from support import run


@pytest.fixture
def path():
    with tempfile.TemporaryDirectory() as directory:
        yield os.path.join(directory, "sock")


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Client(asyncio.Protocol):
    def __init__(self):
        loop = asyncio.get_running_loop()
        self.data = bytearray()
        self.lost = loop.create_future()
        self.eof = loop.create_future()
        self.waiter = None
        self.expected = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        if self.waiter is not None and len(self.data) >= self.expected:
            self.waiter.set_result(None)
            self.waiter = None

    async def read(self, size):
        if len(self.data) < size:
            self.expected = size
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return bytes(self.data[:size])

    def eof_received(self):
        self.eof.set_result(None)
        return True

    def connection_lost(self, exc):
        self.lost.set_result(exc)


async def roundtrip(loop, address, message=b"over unix"):
    transport, proto = await loop.create_unix_connection(Client, address)
    assert transport.get_extra_info("socket").family == socket.AF_UNIX
    transport.write(message)
    assert await proto.read(len(message)) == message
    transport.close()
    await proto.lost


def test_path_server_file_after_close_follows_the_running_python(loop, path):
    async def main():
        server = await loop.create_unix_server(Echo, path)
        assert os.path.exists(path)
        assert server.sockets[0].getsockname() == path
        await roundtrip(loop, path)
        # A pathlib path is accepted too.
        await roundtrip(loop, pathlib.Path(path))
        server.close()
        await server.wait_closed()
        # asyncio removes the file from 3.13 on; 3.11 and 3.12 leave it, and so does conveyor.
        assert os.path.exists(path) is (sys.version_info < (3, 13))

    run(loop, main())


def test_cleanup_socket_false_keeps_the_file(loop, path):
    async def main():
        server = await loop.create_unix_server(Echo, path, cleanup_socket=False)
        server.close()
        await server.wait_closed()
        assert os.path.exists(path)

    run(loop, main())


def test_file_replaced_by_someone_else_is_left_alone(loop, path):
    async def main():
        server = await loop.create_unix_server(Echo, path)
        os.unlink(path)
        with socket.socket(socket.AF_UNIX) as other:
            other.bind(path)  # a different socket file now lives at the path
            server.close()
            await server.wait_closed()
            assert os.path.exists(path)

    run(loop, main())


def test_stale_socket_file_is_replaced_other_files_are_not(loop, path):
    async def main():
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(path)  # bound, never listening, then gone: a stale file
        server = await loop.create_unix_server(Echo, path)
        await roundtrip(loop, path)
        server.close()
        await server.wait_closed()
        if os.path.exists(path):  # left by the server before 3.13, as asyncio leaves it
            os.unlink(path)

        with open(path, "w"):
            pass
        with pytest.raises(OSError) as info:
            await loop.create_unix_server(Echo, path)
        assert info.value.errno == errno.EADDRINUSE
        assert "is already in use" in str(info.value)
        os.unlink(path)

    run(loop, main())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract names are Linux's")
@pytest.mark.parametrize("kind", ["str", "bytes"])
def test_abstract_names(loop, kind):
    name = "\0conveyor-test-" + uuid.uuid4().hex
    address = name if kind == "str" else name.encode()

    async def main():
        server = await loop.create_unix_server(Echo, address)
        bound = server.sockets[0].getsockname()
        assert bound in (name, name.encode())
        await roundtrip(loop, address)
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_server_and_connection_over_given_sockets(loop, path):
    async def main():
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        server = await loop.create_unix_server(Echo, sock=listener)
        client_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client_sock.connect(path)
        transport, proto = await loop.create_unix_connection(Client, sock=client_sock)
        transport.write(b"abc")
        assert await proto.read(3) == b"abc"
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()
        # From 3.13 asyncio removes the file of a given socket too; before, it leaves it.
        assert os.path.exists(path) is (sys.version_info < (3, 13))
        if os.path.exists(path):
            os.unlink(path)

    run(loop, main())


def test_half_close(loop, path):
    class Answer(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.data = b""

        def data_received(self, data):
            self.data += data

        def eof_received(self):
            self.transport.write(self.data[::-1])
            self.transport.write_eof()
            # Nothing more will be read, so the peer's close would go unnoticed: close now
            # (close() still delivers what was written).
            self.transport.close()
            return True

    async def main():
        server = await loop.create_unix_server(Answer, path)
        transport, proto = await loop.create_unix_connection(Client, path)
        transport.write(b"stressed")
        transport.write_eof()
        await proto.eof
        assert bytes(proto.data) == b"desserts"
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_streams_over_unix(loop, path):
    async def handle(reader, writer):
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_unix_server(handle, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"hello\n")
        assert await reader.readline() == b"HELLO\n"
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_errors(loop, path):
    async def main():
        with pytest.raises(FileNotFoundError):
            await loop.create_unix_connection(Client, path)
        with pytest.raises(ValueError, match="no path and sock were specified"):
            await loop.create_unix_connection(Client)
        with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
            await loop.create_unix_connection(Client, path, server_hostname="x")
        with pytest.raises(ValueError, match="path was not specified, and no sock specified"):
            await loop.create_unix_server(Echo)
        with pytest.raises(TypeError, match="ssl argument must be an SSLContext or None"):
            await loop.create_unix_server(Echo, path, ssl=True)
        with socket.socket() as tcp:
            with pytest.raises(ValueError, match="A UNIX Domain Stream Socket was expected"):
                await loop.create_unix_server(Echo, sock=tcp)
            with pytest.raises(ValueError, match="A UNIX Domain Stream Socket was expected"):
                await loop.create_unix_connection(Client, sock=tcp)
        with socket.socket(socket.AF_UNIX) as unix:
            with pytest.raises(ValueError, match="path and sock can not be specified"):
                await loop.create_unix_server(Echo, path, sock=unix)
            with pytest.raises(ValueError, match="path and sock can not be specified"):
                await loop.create_unix_connection(Client, path, sock=unix)

    run(loop, main())

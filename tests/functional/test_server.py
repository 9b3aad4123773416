"""The Server object and create_server on conveyor, over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conveyor.net.server import Server

from support import Accepted, run

ROOT = Path(__file__).resolve().parents[2]


class Tracked(asyncio.Protocol):
    """Echoes, and tells the test when it is connected and when it is gone."""

    instances: list = []

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.made = loop.create_future()
        self.lost = loop.create_future()
        Tracked.instances.append(self)

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(None)

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


@pytest.fixture(autouse=True)
def _fresh_instances():
    Tracked.instances = []
    yield
    Tracked.instances = []


async def connected_client(port, family=socket.AF_INET, host="127.0.0.1"):
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, (host, port))
    return sock


def test_server_api(loop):
    async def main():
        server = await loop.create_server(Tracked, "127.0.0.1", 0, start_serving=False)
        assert isinstance(server, asyncio.AbstractServer)
        assert isinstance(server, Server)
        assert server.get_loop() is loop
        assert not server.is_serving()
        (sock,) = server.sockets
        assert sock.getsockname()[0] == "127.0.0.1"
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        port = sock.getsockname()[1]
        await server.start_serving()
        assert server.is_serving()
        await server.start_serving()  # idempotent
        client = await connected_client(port)
        await loop.sock_sendall(client, b"ping")
        assert await loop.sock_recv(client, 4) == b"ping"
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        closing = loop.create_task(server.wait_closed())
        client.close()
        await Tracked.instances[0].lost
        await closing
        server.close()  # a second close is a no-op
        await server.wait_closed()
        with pytest.raises(RuntimeError, match="is closed"):
            await server.serve_forever()

    run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="wait_closed waits for connections "
                    "only from Python 3.12 on (3.11 returns at once once closed, as asyncio)")
def test_wait_closed_waits_for_connections(loop):
    async def main():
        tracked = Accepted(Tracked)
        server = await loop.create_server(tracked, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = await connected_client(port)
        await (await tracked.nth(0)).made
        server.close()
        waiting = loop.create_task(server.wait_closed())
        await asyncio.sleep(0.05)  # a negative check: it must still be waiting
        assert not waiting.done()
        client.close()
        await waiting

    run(loop, main())


def test_async_with_and_serve_forever_cancellation(loop):
    async def main():
        server = await loop.create_server(Tracked, "127.0.0.1", 0, start_serving=False)
        async with server:
            task = loop.create_task(server.serve_forever())
            await asyncio.sleep(0)
            assert server.is_serving()
            second = loop.create_task(server.serve_forever())
            with pytest.raises(RuntimeError, match="already being awaited"):
                await second
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not server.is_serving()
            assert server.sockets == ()

    run(loop, main())


def test_close_clients_and_abort_clients(loop):
    async def main():
        tracked = Accepted(Tracked)
        server = await loop.create_server(tracked, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = [await connected_client(port) for _ in range(4)]
        await tracked.nth(3)
        await asyncio.gather(*(p.made for p in tracked))
        server.close()
        server.close_clients()
        assert all(p.transport.is_closing() for p in tracked)
        await asyncio.gather(*(p.lost for p in tracked))
        await server.wait_closed()
        for client in clients:
            assert await loop.sock_recv(client, 10) == b""
            client.close()

        tracked = Accepted(Tracked)
        server = await loop.create_server(tracked, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = await connected_client(port)
        proto = await tracked.nth(0)
        await proto.made
        server.abort_clients()
        await proto.lost
        server.close()
        await server.wait_closed()
        client.close()

    run(loop, main())


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
def test_several_hosts(loop):
    async def main():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = await loop.create_server(Tracked, ["127.0.0.1", "::1", "127.0.0.1"], port)
        families = sorted(sock.family for sock in server.sockets)
        assert families == [socket.AF_INET, socket.AF_INET6]
        six = next(s for s in server.sockets if s.family == socket.AF_INET6)
        assert six.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            client = await connected_client(port, family, host)
            await loop.sock_sendall(client, b"hi")
            assert await loop.sock_recv(client, 2) == b"hi"
            client.close()
        server.close()
        await asyncio.gather(*(p.lost for p in Tracked.instances))
        await server.wait_closed()

    run(loop, main())


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_reuse_port_and_address_in_use(loop):
    async def main():
        first = await loop.create_server(Tracked, "127.0.0.1", 0, reuse_port=True)
        port = first.sockets[0].getsockname()[1]
        second = await loop.create_server(Tracked, "127.0.0.1", port, reuse_port=True)
        assert second.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        with pytest.raises(OSError, match="error while attempting to bind on address") as info:
            await loop.create_server(Tracked, "127.0.0.1", port)
        assert info.value.errno == __import__("errno").EADDRINUSE
        for server in (first, second):
            server.close()
            await server.wait_closed()

    run(loop, main())


def test_server_on_given_socket_and_bad_arguments(loop):
    async def main():
        sock = socket.create_server(("127.0.0.1", 0))
        server = await loop.create_server(Tracked, sock=sock, backlog=5)
        assert [view.fileno() for view in server.sockets] == [sock.fileno()]
        port = sock.getsockname()[1]
        client = await connected_client(port)
        await loop.sock_sendall(client, b"x")
        assert await loop.sock_recv(client, 1) == b"x"
        client.close()
        await Tracked.instances[0].lost
        server.close()
        await server.wait_closed()
        assert sock.fileno() == -1

        with pytest.raises(TypeError, match="ssl argument must be an SSLContext or None"):
            await loop.create_server(Tracked, "127.0.0.1", 0, ssl=True)
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await loop.create_server(Tracked, "127.0.0.1", 0, ssl_handshake_timeout=1)
        with pytest.raises(ValueError, match="Neither host/port nor sock were specified"):
            await loop.create_server(Tracked)
        with socket.socket() as other:
            with pytest.raises(ValueError, match="host/port and sock can not be specified"):
                await loop.create_server(Tracked, "127.0.0.1", 0, sock=other)
        with socket.socket(type=socket.SOCK_DGRAM) as udp:
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.create_server(Tracked, sock=udp)

    run(loop, main())


def test_protocol_factory_failure_is_reported_and_server_survives(loop):
    calls = []

    def factory():
        calls.append(None)
        if len(calls) == 1:
            raise ZeroDivisionError("first connection")
        return Tracked()

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        first = await connected_client(port)
        assert await loop.sock_recv(first, 1) == b""  # closed by the server
        first.close()
        second = await connected_client(port)
        await loop.sock_sendall(second, b"ok")
        assert await loop.sock_recv(second, 2) == b"ok"
        second.close()
        await Tracked.instances[0].lost
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert [c["message"] for c in loop.errors] == [
        "Error on transport creation for incoming connection"]
    loop.errors.clear()


_EMFILE_CHILD = textwrap.dedent("""
    import asyncio, json, os, resource, socket, sys, time
    import conveyor, conveyor.net.server

    conveyor.net.server.ACCEPT_RETRY_DELAY = 0.3
    CLIENTS = int(sys.argv[1])

    async def main():
        loop = asyncio.get_running_loop()
        reports = []
        loop.set_exception_handler(lambda _l, ctx: reports.append(
            (ctx["message"], ctx["exception"].errno, time.monotonic(), time.process_time())))
        accepted = []
        all_in = loop.create_future()

        class Closer(asyncio.Protocol):
            def connection_made(self, transport):
                accepted.append(time.monotonic())
                transport.close()  # frees the fd for the next accept
                if len(accepted) == CLIENTS:
                    all_in.set_result(None)

        # Listening before the server serves, so clients queue in the backlog; the server's
        # own sockets refuse listen() (they are views), so it is given a listening socket.
        listener = socket.create_server(("127.0.0.1", 0), backlog=CLIENTS)
        server = await loop.create_server(Closer, sock=listener, backlog=CLIENTS,
                                          start_serving=False)
        print(server.sockets[0].getsockname()[1], flush=True)
        sys.stdin.readline()  # every client is in the backlog now (blocking here is fine)
        # Room for about two more descriptors: a later accept fails with EMFILE.
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 1,
                                                    resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        await server.start_serving()
        await asyncio.wait_for(all_in, 30)
        end = (time.monotonic(), time.process_time())
        server.close()
        await server.wait_closed()
        print(json.dumps({"reports": reports, "accepted": accepted, "end": end}), flush=True)

    conveyor.run(main())
""")


def test_accept_backs_off_on_emfile_and_logs_once():
    """Out of fds: accept rests instead of spinning, reports once, and serves everyone later."""
    clients = 6
    child = subprocess.Popen([sys.executable, "-c", _EMFILE_CHILD, str(clients)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    socks = []
    try:
        port = int(child.stdout.readline())
        for _ in range(clients):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=20))
        out, _ = child.communicate("go\n", timeout=60)
    finally:
        for sock in socks:
            sock.close()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0
    result = json.loads(out.strip().splitlines()[-1])
    reports = result["reports"]
    assert len(reports) == 1, reports
    message, errno_, wall_start, cpu_start = reports[0]
    assert message == "socket.accept() out of system resource"
    assert errno_ == __import__("errno").EMFILE
    assert len(result["accepted"]) == clients
    wall_end, cpu_end = result["end"]
    # Several 0.3 s rests passed between the first EMFILE and the last accept; a spinning
    # accept loop would have burnt CPU for all of that time.
    assert wall_end - wall_start >= 0.3
    assert (cpu_end - cpu_start) < 0.5 * (wall_end - wall_start)

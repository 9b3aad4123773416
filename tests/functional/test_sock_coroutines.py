"""The sock_* coroutines over real sockets: results, errors, cancellation, no leaks."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import ssl
import tempfile

import pytest

import conveyor

from support import run


@pytest.fixture
def loop():
    loop = conveyor.new_event_loop()
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield loop
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    assert errors == []


@pytest.fixture
def tcp_pair():
    """A connected pair of non-blocking TCP sockets over loopback (a listener on port 0)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    client.setblocking(False)
    server.setblocking(False)
    with client, server:
        yield client, server


@pytest.fixture
def udp_pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        a.setblocking(False)
        b.setblocking(False)
        yield a, b


def assert_unregistered(loop, sock):
    fd = sock.fileno()
    assert fd not in loop._readers and fd not in loop._writers


async def next_iteration():
    """A finished wait keeps its reader parked for one iteration; let that pass."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


# ------------------------------------------------------------------------ happy paths

def test_recv_waits_then_returns_data(loop, tcp_pair):
    client, server = tcp_pair

    async def main():
        reader = asyncio.ensure_future(loop.sock_recv(server, 100))
        await asyncio.sleep(0)
        assert not reader.done()
        await loop.sock_sendall(client, b"hello")
        return await reader

    assert run(loop, main()) == b"hello"
    run(loop, next_iteration())
    assert_unregistered(loop, server)


def test_recv_returns_at_once_when_data_is_there(loop, tcp_pair):
    client, server = tcp_pair
    client.send(b"ready")
    # Data already queued: the syscall succeeds without registering a reader.
    coro = loop.sock_recv(server, 100)
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    assert stop.value.value == b"ready"


class _CountingSocket(socket.socket):
    """Counts receives that found nothing (a plain socket.socket is read with os.read, so
    a subclass is what lets a test see each attempt)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.would_block = 0

    def recv(self, n, *flags):
        try:
            return super().recv(n, *flags)
        except BlockingIOError:
            self.would_block += 1
            raise


def test_request_response_receives_wait_first_and_lose_nothing(loop, tcp_pair):
    """After a receive that came back short (the socket drained), the next one waits first
    instead of failing a recv per message; a receive that fills its buffer goes back to
    trying first; no byte is lost or reordered either way."""
    client, raw = tcp_pair
    server = _CountingSocket(raw.family, raw.type, fileno=raw.detach())
    server.setblocking(False)

    async def echo():
        while data := await loop.sock_recv(server, 1000):
            await loop.sock_sendall(server, data)

    async def main():
        echoing = asyncio.ensure_future(echo())
        got = []
        for i in range(20):  # ping-pong: each answer is read before the next request
            await loop.sock_sendall(client, b"%03d" % i)
            got.append(await loop.sock_recv(client, 1000))
        ping_pong_misses = server.would_block
        echoing.cancel()
        # A burst larger than one receive: full receives try first and drain it.
        burst = bytes(range(256)) * 40
        await loop.sock_sendall(client, burst)
        streamed = bytearray()
        while len(streamed) < len(burst):
            streamed += await loop.sock_recv(server, 1000)
        return got, ping_pong_misses, bytes(streamed) == burst

    with server:
        got, misses, burst_intact = run(loop, main())
    assert got == [b"%03d" % i for i in range(20)]
    assert misses <= 1  # the socket's first receive, which had no history to go by
    assert burst_intact


def _cancel_after_readiness(loop, waiter, make_ready):
    """Cancel `waiter` (a task blocked in a sock_* receive) after the loop has run its
    readiness callback but before the task has run again: `make_ready()` makes the socket
    readable at once; a callback scheduled from the next iteration's first callback runs
    after that iteration's readiness callbacks and before the task's wake-up."""

    async def main():
        task = loop.create_task(waiter)
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the task is now waiting for readiness
        make_ready()
        loop.call_soon(loop.call_soon, task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())


def test_cancelled_after_readiness_accept_loses_no_connection(loop):
    """The connection is accepted by the task, not by the readiness callback, so a cancelled
    sock_accept leaves it for the next one. (asyncio accepts in the callback and drops it.)"""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        clients = []
        _cancel_after_readiness(
            loop, loop.sock_accept(listener),
            lambda: clients.append(socket.create_connection(listener.getsockname())))

        async def accept_next():
            conn, _ = await loop.sock_accept(listener)
            with conn:
                return conn.getpeername()

        with clients[0]:
            assert run(loop, accept_next()) == clients[0].getsockname()


def test_cancelled_after_readiness_recvfrom_loses_no_datagram(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        _cancel_after_readiness(loop, loop.sock_recvfrom(receiver, 100),
                                lambda: sender.sendto(b"one", receiver.getsockname()))
        data, _ = run(loop, loop.sock_recvfrom(receiver, 100))
        assert data == b"one"
        buf = bytearray(10)
        _cancel_after_readiness(loop, loop.sock_recvfrom_into(receiver, buf),
                                lambda: sender.sendto(b"two", receiver.getsockname()))
        nbytes, _ = run(loop, loop.sock_recvfrom_into(receiver, buf))
        assert buf[:nbytes] == b"two"


def test_cancelled_after_readiness_recv_loses_no_byte(loop, tcp_pair):
    client, server = tcp_pair
    _cancel_after_readiness(loop, loop.sock_recv(server, 100), lambda: client.send(b"kept"))
    assert run(loop, loop.sock_recv(server, 100)) == b"kept"


def test_recv_large_n_is_capped_per_call(loop, tcp_pair):
    client, server = tcp_pair
    client.sendall(b"x" * 200_000)

    async def main():
        return await loop.sock_recv(server, 1_000_000)

    assert 0 < len(run(loop, main())) <= 65536


def test_recv_into(loop, tcp_pair):
    client, server = tcp_pair
    buf = bytearray(10)

    async def main():
        reader = asyncio.ensure_future(loop.sock_recv_into(server, memoryview(buf)[2:]))
        await asyncio.sleep(0)
        await loop.sock_sendall(client, b"abc")
        return await reader

    assert run(loop, main()) == 3
    assert buf[:5] == b"\0\0abc"


def test_recv_eof_returns_empty(loop, tcp_pair):
    client, server = tcp_pair

    async def main():
        reader = asyncio.ensure_future(loop.sock_recv(server, 10))
        await asyncio.sleep(0)
        client.shutdown(socket.SHUT_WR)
        return await reader

    assert run(loop, main()) == b""


def test_recv_error_propagates(loop, tcp_pair):
    client, server = tcp_pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")

    async def main():
        reader = asyncio.ensure_future(loop.sock_recv(server, 10))
        await asyncio.sleep(0)
        client.close()  # linger 0: the peer gets a reset
        return await reader

    with pytest.raises(ConnectionResetError):
        run(loop, main())
    run(loop, next_iteration())
    assert_unregistered(loop, server)


def test_sendall_large_buffer_to_slow_reader(loop, tcp_pair):
    client, server = tcp_pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    payload = os.urandom(4 * 1024 * 1024)

    async def slow_reader():
        received = bytearray()
        while len(received) < len(payload):
            chunk = await loop.sock_recv(server, 8192)
            assert chunk
            received += chunk
            if len(received) % 7 == 0:
                await asyncio.sleep(0)
        return bytes(received)

    async def main():
        reader = asyncio.ensure_future(slow_reader())
        await loop.sock_sendall(client, payload)
        return await reader

    assert run(loop, main(), timeout=60) == payload
    assert_unregistered(loop, client)


def test_sendall_accepts_any_buffer(loop, tcp_pair):
    client, server = tcp_pair

    async def main():
        await loop.sock_sendall(client, bytearray(b"ab"))
        await loop.sock_sendall(client, memoryview(b"cd"))
        import array
        await loop.sock_sendall(client, array.array("H", [0x6665]))
        await loop.sock_sendall(client, b"")
        client.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := await loop.sock_recv(server, 100):
            data += chunk
        return data

    assert run(loop, main()) == b"abcdef"


def test_sendall_error_propagates(loop, tcp_pair):
    client, server = tcp_pair
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    server.close()

    async def main():
        for _ in range(1000):
            await loop.sock_sendall(client, b"x" * 65536)

    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        run(loop, main())
    assert_unregistered(loop, client)


def test_connect_accept_numeric_does_not_use_executor(loop):
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        client.setblocking(False)

        async def main():
            accepting = asyncio.ensure_future(loop.sock_accept(listener))
            await loop.sock_connect(client, listener.getsockname())
            conn, address = await accepting
            with conn:
                assert conn.gettimeout() == 0
                assert address == client.getsockname()
                await loop.sock_sendall(conn, b"hi")
                assert await loop.sock_recv(client, 10) == b"hi"

        run(loop, main())
        run(loop, next_iteration())
        assert loop._default_executor is None
        assert_unregistered(loop, listener)


def test_connect_resolves_host_name(loop):
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client.setblocking(False)
        run(loop, loop.sock_connect(client, ("localhost", listener.getsockname()[1])))
        assert client.getpeername() == listener.getsockname()


def test_connect_ipv6(loop):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    with listener, socket.socket(socket.AF_INET6) as client:
        client.setblocking(False)
        run(loop, loop.sock_connect(client, listener.getsockname()[:2]))
        assert client.getpeername()[:2] == listener.getsockname()[:2]


def test_connect_unix(loop, tmp_path):
    path = str(tmp_path / "sock")
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
        listener.bind(path)
        listener.listen()
        client.setblocking(False)
        run(loop, loop.sock_connect(client, path))
        assert client.getpeername() == path


def test_connect_refused(loop):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()  # bound but not listening: connect is refused
        with socket.socket() as client:
            client.setblocking(False)
            with pytest.raises(ConnectionRefusedError):
                run(loop, loop.sock_connect(client, address))
            assert_unregistered(loop, client)


def test_connect_unresolvable_name(loop):
    with socket.socket() as client:
        client.setblocking(False)
        with pytest.raises(socket.gaierror):
            run(loop, loop.sock_connect(client, ("no-such-host.invalid", 80)))


def test_udp_sendto_recvfrom(loop, udp_pair):
    a, b = udp_pair

    async def main():
        receiving = asyncio.ensure_future(loop.sock_recvfrom(b, 4096))
        await asyncio.sleep(0)
        assert await loop.sock_sendto(a, b"datagram", b.getsockname()) == 8
        return await receiving

    assert run(loop, main()) == (b"datagram", a.getsockname())


def test_udp_recvfrom_into(loop, udp_pair):
    a, b = udp_pair
    buf = bytearray(16)

    async def main():
        receiving = asyncio.ensure_future(loop.sock_recvfrom_into(b, buf, 4))
        await asyncio.sleep(0)
        await loop.sock_sendto(a, b"0123456789", b.getsockname())
        return await receiving

    nbytes, address = run(loop, main())
    assert (nbytes, address, bytes(buf[:5])) == (4, a.getsockname(), b"0123\0")


def test_udp_recvfrom_into_whole_buffer(loop, udp_pair):
    a, b = udp_pair
    buf = bytearray(4)
    a.sendto(b"abcdef", b.getsockname())
    nbytes, _ = run(loop, loop.sock_recvfrom_into(b, buf))
    assert (nbytes, bytes(buf)) == (4, b"abcd")


# ------------------------------------------------------------------------- refusals

BLOCKING_CALLS = [
    ("sock_recv", (10,)),
    ("sock_recv_into", (bytearray(10),)),
    ("sock_recvfrom", (10,)),
    ("sock_recvfrom_into", (bytearray(10),)),
    ("sock_sendall", (b"x",)),
    ("sock_sendto", (b"x", ("127.0.0.1", 9))),
    ("sock_connect", (("127.0.0.1", 9),)),
    ("sock_accept", ()),
]


@pytest.mark.parametrize("name, args", BLOCKING_CALLS)
def test_blocking_socket_refused(loop, name, args):
    with socket.socket() as sock:
        with pytest.raises(ValueError, match="the socket must be non-blocking"):
            run(loop, getattr(loop, name)(sock, *args))


@pytest.mark.parametrize("name, args", BLOCKING_CALLS)
def test_ssl_socket_refused(loop, name, args):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with context.wrap_socket(socket.socket(), server_hostname="x",
                             do_handshake_on_connect=False) as sock:
        sock.setblocking(False)
        with pytest.raises(TypeError, match="SSLSocket"):
            run(loop, getattr(loop, name)(sock, *args))


def test_fd_owned_by_transport_refused(loop, tcp_pair):
    client, server = tcp_pair

    class FakeTransport:
        def is_closing(self):
            return False

    owner = FakeTransport()
    loop._transports[server.fileno()] = owner
    with pytest.raises(RuntimeError, match="is used by transport"):
        run(loop, loop.sock_recv(server, 10))


# ------------------------------------------------- parked readers and fd-number reuse

def test_repeated_recv_keeps_one_registration(loop, tcp_pair):
    """recv, answer, recv again: the reader is swapped, never removed and re-added."""
    client, server = tcp_pair
    calls = []
    poller = loop._poller

    class CountingPoller:
        def __getattr__(self, name):
            attr = getattr(poller, name)
            if name in ("register", "unregister", "modify"):
                def counted(*args):
                    calls.append(name)
                    return attr(*args)
                return counted
            return attr

    async def main():
        async def echo():
            for _ in range(20):
                data = await loop.sock_recv(server, 100)
                await loop.sock_sendall(server, data)

        echoing = asyncio.ensure_future(echo())
        for i in range(20):
            await loop.sock_sendall(client, b"%d" % i)
            assert await loop.sock_recv(client, 100) == b"%d" % i
        await echoing

    loop._poller = CountingPoller()
    try:
        run(loop, main())
        run(loop, next_iteration())
    finally:
        loop._poller = poller
    assert_unregistered(loop, server)
    assert calls.count("register") <= 4, calls  # two sockets, not one per message


@pytest.mark.parametrize("register", ["add_reader", "sock_recv"])
def test_closed_socket_fd_reused_at_once_is_polled(loop, register):
    """The socket closes while its reader is parked and a new socket gets the same fd
    number in the same step: the newcomer must still be polled."""

    async def main():
        with socket.create_server(("127.0.0.1", 0)) as listener:
            first = socket.create_connection(listener.getsockname())
            peer, _ = listener.accept()
            first.setblocking(False)
            with peer:
                # Awaited in this very task, so the rest of this step runs while parked.
                loop.call_soon(peer.send, b"x")
                assert await loop.sock_recv(first, 10) == b"x"
                old_fd = first.fileno()
                first.close()  # the reader is still parked on old_fd
                second = socket.create_connection(listener.getsockname())
                peer2, _ = listener.accept()
                with second, peer2:
                    second.setblocking(False)
                    assert second.fileno() == old_fd  # the lowest free number: reused
                    if register == "add_reader":
                        readable = loop.create_future()
                        loop.add_reader(second, readable.set_result, None)
                        peer2.send(b"y")
                        await readable
                        loop.remove_reader(second)
                    else:
                        loop.call_soon(peer2.send, b"y")
                        assert await loop.sock_recv(second, 10) == b"y"
                    await next_iteration()

    run(loop, main())


def test_closed_socket_while_parked_is_forgotten(loop):
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        with b:
            loop.call_soon(b.send, b"z")
            assert await loop.sock_recv(a, 10) == b"z"
            fd = a.fileno()
            assert fd in loop._readers  # parked
            a.close()
            await next_iteration()
            assert fd not in loop._readers and fd not in loop._writers

    run(loop, main())


# ---------------------------------------------------------------------- cancellation

def test_cancelled_recv_leaves_socket_usable(loop, tcp_pair):
    client, server = tcp_pair

    async def main():
        first = asyncio.ensure_future(loop.sock_recv(server, 10))
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await next_iteration()
        assert_unregistered(loop, server)
        await loop.sock_sendall(client, b"after")
        return await loop.sock_recv(server, 10)

    assert run(loop, main()) == b"after"


def test_timed_out_recv_into_leaves_socket_usable(loop, tcp_pair):
    client, server = tcp_pair
    buf = bytearray(10)

    async def main():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await loop.sock_recv_into(server, buf)
        await next_iteration()
        assert_unregistered(loop, server)
        client.send(b"x")
        return await loop.sock_recv_into(server, buf)

    assert run(loop, main()) == 1


def test_cancelled_sendall_leaves_socket_usable(loop, tcp_pair):
    client, server = tcp_pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    async def main():
        sending = asyncio.ensure_future(loop.sock_sendall(client, b"\1" * 4_000_000))
        await asyncio.sleep(0)
        assert not sending.done()
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        assert_unregistered(loop, client)

        async def drain_until_marker():
            data = b""
            while not data.endswith(b"END"):
                chunk = await loop.sock_recv(server, 65536)
                assert chunk
                data = data[-3:] + chunk
            return True

        draining = asyncio.ensure_future(drain_until_marker())
        await loop.sock_sendall(client, b"END")
        return await draining

    assert run(loop, main())


def test_cancelled_accept_leaves_listener_usable(loop):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)

        async def main():
            first = asyncio.ensure_future(loop.sock_accept(listener))
            await asyncio.sleep(0)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            await next_iteration()
            assert_unregistered(loop, listener)
            with socket.create_connection(listener.getsockname()):
                conn, _ = await loop.sock_accept(listener)
                conn.close()

        run(loop, main())


def test_cancelled_connect_then_retry(loop):
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client.setblocking(False)

        async def main():
            connecting = asyncio.ensure_future(
                loop.sock_connect(client, listener.getsockname()))
            connecting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await connecting
            await loop.sock_connect(client, listener.getsockname())

        run(loop, main())
        assert client.getpeername() == listener.getsockname()


def test_two_waiters_later_one_wins(loop, tcp_pair):
    """A second waiter replaces the first reader, as on the standard loop; the first never
    completes, and removing it later must not unregister the second."""
    client, server = tcp_pair

    async def main():
        first = asyncio.ensure_future(loop.sock_recv(server, 10))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(loop.sock_recv(server, 10))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        client.send(b"z")
        result = await second
        assert first.cancelled()
        return result

    assert run(loop, main()) == b"z"


# --------------------------------------------------------------------------- sendfile

@pytest.fixture
def data_file():
    payload = os.urandom(300_000)
    with tempfile.TemporaryFile() as f:
        f.write(payload)
        f.flush()
        f.seek(0)
        yield f, payload


async def read_all(loop, sock, size):
    data = bytearray()
    while len(data) < size:
        chunk = await loop.sock_recv(sock, 65536)
        assert chunk
        data += chunk
    return bytes(data)


@pytest.mark.parametrize("offset, count", [(0, None), (1000, None), (10, 50_000)])
def test_sendfile_native(loop, tcp_pair, data_file, offset, count):
    client, server = tcp_pair
    f, payload = data_file
    expected = payload[offset:None if count is None else offset + count]

    async def main():
        reading = asyncio.ensure_future(read_all(loop, server, len(expected)))
        sent = await loop.sock_sendfile(client, f, offset, count, fallback=False)
        return sent, await reading

    sent, received = run(loop, main())
    assert sent == len(expected) and received == expected
    assert f.tell() == offset + len(expected)


def test_sendfile_fallback_for_non_regular_file(loop, tcp_pair):
    client, server = tcp_pair
    payload = os.urandom(600_000)
    f = io.BytesIO(payload)

    async def main():
        reading = asyncio.ensure_future(read_all(loop, server, len(payload) - 5))
        sent = await loop.sock_sendfile(client, f, 5)
        return sent, await reading

    sent, received = run(loop, main())
    assert sent == len(payload) - 5 and received == payload[5:]
    assert f.tell() == len(payload)


def test_sendfile_no_fallback_raises(loop, tcp_pair):
    client, _ = tcp_pair
    with pytest.raises(asyncio.SendfileNotAvailableError):
        run(loop, loop.sock_sendfile(client, io.BytesIO(b"abc"), fallback=False))


def test_sendfile_past_end_sends_nothing(loop, tcp_pair, data_file):
    client, _ = tcp_pair
    f, payload = data_file
    assert run(loop, loop.sock_sendfile(client, f, len(payload) + 10)) == 0


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"offset": -1}, ValueError, "offset must be a non-negative integer"),
    ({"offset": 1.5}, TypeError, "offset must be a non-negative integer"),
    ({"count": 0}, ValueError, "count must be a positive integer"),
    ({"count": "1"}, TypeError, "count must be a positive integer"),
])
def test_sendfile_bad_arguments(loop, tcp_pair, data_file, kwargs, exc, message):
    client, _ = tcp_pair
    f, _ = data_file
    with pytest.raises(exc, match=message):
        run(loop, loop.sock_sendfile(client, f, **kwargs))


def test_sendfile_text_file_refused(loop, tcp_pair, tmp_path):
    client, _ = tcp_pair
    path = tmp_path / "t.txt"
    path.write_text("text")
    with open(path) as f:
        with pytest.raises(ValueError, match="binary mode"):
            run(loop, loop.sock_sendfile(client, f))


def test_sendfile_datagram_socket_refused(loop, udp_pair, data_file):
    a, _ = udp_pair
    f, _ = data_file
    with pytest.raises(ValueError, match="SOCK_STREAM"):
        run(loop, loop.sock_sendfile(a, f))

"""create_datagram_endpoint and DatagramTransport over real sockets: UDP (IPv4, IPv6) and
Unix datagrams, send buffering and flow control, error_received, closing, argument checks."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import warnings

import pytest

import conveyor

from support import run


@pytest.fixture
def errors():
    return []


@pytest.fixture
def loop(errors):
    loop = conveyor.new_event_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield loop
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    assert errors == []


class Recorder(asyncio.DatagramProtocol):
    """Records every callback; `wait_for(n)` waits for n datagrams, `lost` for the end."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.transport = None
        self.datagrams = []
        self.errors = []
        self.events = []
        self.lost = loop.create_future()
        self._waiters = []

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport

    def datagram_received(self, data, addr):
        self.datagrams.append((data, addr))
        self._wake()

    def error_received(self, exc):
        self.errors.append(exc)
        self._wake()

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)

    def _wake(self):
        for n, fut in list(self._waiters):
            if len(self.datagrams) + len(self.errors) >= n and not fut.done():
                fut.set_result(None)

    async def wait_for(self, n):
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        self._wake()
        await fut


async def close_all(*transports):
    for transport in transports:
        transport.close()
    for transport in transports:
        protocol = transport.get_protocol()
        if protocol is not None and isinstance(protocol, Recorder):
            await protocol.lost


def unused_udp_address(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[:2]


# --------------------------------------------------------------------------- UDP

async def echo_roundtrip(loop, host, family=0):
    server_tr, server = await loop.create_datagram_endpoint(
        Recorder, local_addr=(host, 0), family=family)
    address = server_tr.get_extra_info("sockname")[:2]
    client_tr, client = await loop.create_datagram_endpoint(Recorder, remote_addr=address)
    assert client_tr.get_extra_info("peername")[:2] == address
    assert client_tr.get_extra_info("socket").fileno() >= 0
    assert server_tr.get_extra_info("peername") is None
    client_tr.sendto(b"ping")
    client_tr.sendto(bytearray(b"ping2"), None)
    await server.wait_for(2)
    (data, source), (data2, _) = server.datagrams
    assert (data, data2) == (b"ping", b"ping2")
    assert source[:2] == client_tr.get_extra_info("sockname")[:2]
    server_tr.sendto(memoryview(b"pong"), source)
    await client.wait_for(1)
    assert client.datagrams[0][0] == b"pong"
    await close_all(client_tr, server_tr)
    assert client.events == ["made", "lost"] and server.events == ["made", "lost"]
    assert client.lost.result() is None
    assert client_tr.get_extra_info("socket").fileno() == -1  # closed exactly once, by us


def test_udp_ipv4_roundtrip(loop):
    run(loop, echo_roundtrip(loop, "127.0.0.1"))


def test_udp_ipv6_roundtrip(loop):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    except OSError as exc:
        pytest.skip(f"no IPv6 sockets: {exc}")
    run(loop, echo_roundtrip(loop, "::1", socket.AF_INET6))


def test_udp_host_name_is_resolved(loop):
    async def main():
        tr, proto = await loop.create_datagram_endpoint(
            Recorder, local_addr=("localhost", 0), family=socket.AF_INET)
        assert tr.get_extra_info("sockname")[0] == "127.0.0.1"
        await close_all(tr)

    run(loop, main())


def test_udp_unbound_endpoint_with_family(loop):
    async def main():
        server_tr, server = await loop.create_datagram_endpoint(
            Recorder, local_addr=("127.0.0.1", 0))
        tr, _ = await loop.create_datagram_endpoint(Recorder, family=socket.AF_INET)
        tr.sendto(b"hello", server_tr.get_extra_info("sockname"))
        await server.wait_for(1)
        assert server.datagrams[0][0] == b"hello"
        await close_all(tr, server_tr)

    run(loop, main())


def test_error_received_on_port_unreachable(loop):
    async def main():
        tr, proto = await loop.create_datagram_endpoint(
            Recorder, remote_addr=unused_udp_address())
        tr.sendto(b"anyone?")
        await proto.wait_for(1)
        assert isinstance(proto.errors[0], ConnectionRefusedError)
        assert not tr.is_closing()  # one failed datagram does not end the endpoint
        await close_all(tr)
        assert proto.events == ["made", "lost"]

    run(loop, main())


def test_connected_endpoint_checks_address(loop):
    async def main():
        remote = unused_udp_address()
        tr, _ = await loop.create_datagram_endpoint(Recorder, remote_addr=remote)
        tr.sendto(b"x", remote)  # the peer itself is fine
        with pytest.raises(ValueError, match="Invalid address: must be None or"):
            tr.sendto(b"x", ("127.0.0.1", remote[1] + 1 if remote[1] < 65535 else 1))
        with pytest.raises(TypeError, match="data argument must be a bytes-like object, "
                                            "not 'str'"):
            tr.sendto("text")
        await close_all(tr)

    run(loop, main())


def test_reuse_port(loop):
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT")

    async def main():
        first, _ = await loop.create_datagram_endpoint(
            Recorder, local_addr=("127.0.0.1", 0), reuse_port=True)
        port = first.get_extra_info("sockname")[1]
        second, _ = await loop.create_datagram_endpoint(
            Recorder, local_addr=("127.0.0.1", port), reuse_port=True)
        assert second.get_extra_info("socket").getsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEPORT)
        await close_all(first, second)

    run(loop, main())


def test_allow_broadcast_leaves_socket_unconnected(loop):
    async def main():
        server_tr, server = await loop.create_datagram_endpoint(
            Recorder, local_addr=("127.0.0.1", 0))
        address = server_tr.get_extra_info("sockname")
        tr, _ = await loop.create_datagram_endpoint(
            Recorder, remote_addr=address, allow_broadcast=True)
        sock = tr.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        assert tr.get_extra_info("peername") is None
        tr.sendto(b"to the remote address")
        await server.wait_for(1)
        await close_all(tr, server_tr)

    run(loop, main())


def test_sock_argument(loop):
    async def main():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        tr, proto = await loop.create_datagram_endpoint(Recorder, sock=sock)
        assert tr.get_extra_info("socket").fileno() == sock.fileno()  # a view, as asyncio
        assert sock.gettimeout() == 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"via sock", sock.getsockname())
            await proto.wait_for(1)
        await close_all(tr)
        assert sock.fileno() == -1

    run(loop, main())


def test_empty_datagram(loop):
    async def main():
        server_tr, server = await loop.create_datagram_endpoint(
            Recorder, local_addr=("127.0.0.1", 0))
        tr, _ = await loop.create_datagram_endpoint(
            Recorder, remote_addr=server_tr.get_extra_info("sockname"))
        tr.sendto(b"")
        tr.sendto(b"marker")
        await server.wait_for(1)
        await asyncio.sleep(0)
        received = [data for data, _ in server.datagrams]
        # asyncio drops empty datagrams before 3.13 and sends them from 3.13 on.
        assert received == ([b"", b"marker"] if sys.version_info >= (3, 13) else [b"marker"])
        await close_all(tr, server_tr)

    run(loop, main())


def test_sendto_after_close_is_dropped(loop):
    async def main():
        tr, proto = await loop.create_datagram_endpoint(
            Recorder, local_addr=("127.0.0.1", 0))
        await close_all(tr)
        tr.sendto(b"late", ("127.0.0.1", 9))  # neither raises nor touches a closed fd
        tr.close()
        tr.abort()
        assert proto.events == ["made", "lost"]

    run(loop, main())


def test_protocol_exception_goes_to_handler_and_loop_survives(loop, errors):
    class Exploding(Recorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if data == b"boom":
                raise RuntimeError("protocol bug")

    async def main():
        tr, proto = await loop.create_datagram_endpoint(
            Exploding, local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"boom", tr.get_extra_info("sockname"))
            peer.sendto(b"fine", tr.get_extra_info("sockname"))
            await proto.wait_for(2)
        await close_all(tr)

    run(loop, main())
    assert [type(c.get("exception")) for c in errors] == [RuntimeError]
    errors.clear()


# ------------------------------------------------------------------- Unix datagrams

def test_unix_datagram_roundtrip_and_large_datagram(loop, tmp_path):
    server_path = str(tmp_path / "server.sock")
    client_path = str(tmp_path / "client.sock")

    async def main():
        server_tr, server = await loop.create_datagram_endpoint(
            Recorder, local_addr=server_path, family=socket.AF_UNIX)
        client_tr, client = await loop.create_datagram_endpoint(
            Recorder, local_addr=client_path, remote_addr=server_path, family=socket.AF_UNIX)
        big = os.urandom(150_000)  # larger than any UDP datagram
        client_tr.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 400_000)
        client_tr.sendto(b"small")
        client_tr.sendto(big)
        await server.wait_for(2)
        assert server.datagrams == [(b"small", client_path), (big, client_path)]
        server_tr.sendto(b"reply", client_path)
        await client.wait_for(1)
        assert client.datagrams == [(b"reply", server_path)]
        await close_all(client_tr, server_tr)

    run(loop, main())


def test_unix_stale_socket_file_is_replaced(loop, tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(path)
    stale.close()  # the file stays behind

    async def main():
        tr, _ = await loop.create_datagram_endpoint(
            Recorder, local_addr=path, family=socket.AF_UNIX)
        assert tr.get_extra_info("sockname") == path
        await close_all(tr)

    run(loop, main())


@pytest.fixture
def unix_dgram_pair():
    """A connected Unix datagram pair whose receiver we control: it blocks when full."""
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    receiver.setblocking(False)
    with receiver:
        yield sender, receiver


def fill_until_blocked(tr):
    """sendto until the kernel refuses and the transport starts buffering; count sent."""
    sent = 0
    while tr.get_write_buffer_size() == 0:
        tr.sendto(b"%08d" % sent + b"." * 992)
        sent += 1
        assert sent < 100_000, "the socket never blocked"
    return sent


async def drain(loop, receiver, count):
    got = []
    while len(got) < count:
        got.append(await loop.sock_recv(receiver, 2048))
    return got


def test_sendto_buffers_when_socket_is_full_and_flow_control(loop, unix_dgram_pair):
    sender, receiver = unix_dgram_pair

    async def main():
        tr, proto = await loop.create_datagram_endpoint(Recorder, sock=sender)
        tr.set_write_buffer_limits(high=4000)
        assert tr.get_write_buffer_limits() == (1000, 4000)
        sent = fill_until_blocked(tr)
        for _ in range(9):
            tr.sendto(b"%08d" % sent + b"." * 992)
            sent += 1
        assert tr.get_write_buffer_size() == 9 * 1000 + 1000
        assert proto.events == ["made", "pause"]
        got = await drain(loop, receiver, sent)
        assert [int(d[:8]) for d in got] == list(range(sent))  # in order, none lost
        await asyncio.sleep(0)
        assert tr.get_write_buffer_size() == 0
        assert proto.events == ["made", "pause", "resume"]
        await close_all(tr)

    run(loop, main())


def test_close_flushes_buffered_datagrams(loop, unix_dgram_pair):
    sender, receiver = unix_dgram_pair

    async def main():
        tr, proto = await loop.create_datagram_endpoint(Recorder, sock=sender)
        sent = fill_until_blocked(tr)
        tr.sendto(b"%08d" % sent + b"last")
        tr.close()
        assert tr.is_closing()
        await asyncio.sleep(0.01)  # a negative check: nothing may end the transport yet
        assert not proto.lost.done()  # still waiting for the buffer to drain
        got = await drain(loop, receiver, sent + 1)
        assert got[-1].endswith(b"last")
        assert await proto.lost is None
        assert proto.events == ["made", "lost"]

    run(loop, main())


def test_abort_discards_buffered_datagrams(loop, unix_dgram_pair):
    sender, receiver = unix_dgram_pair

    async def main():
        tr, proto = await loop.create_datagram_endpoint(Recorder, sock=sender)
        fill_until_blocked(tr)
        tr.abort()
        assert tr.get_write_buffer_size() == 0
        assert await proto.lost is None
        tr.abort()
        tr.close()
        await asyncio.sleep(0)
        assert proto.events == ["made", "lost"]

    run(loop, main())


def test_pause_writing_error_goes_to_handler(loop, errors, unix_dgram_pair):
    sender, receiver = unix_dgram_pair

    class BadPause(Recorder):
        def pause_writing(self):
            raise RuntimeError("pause failed")

    async def main():
        tr, proto = await loop.create_datagram_endpoint(BadPause, sock=sender)
        tr.set_write_buffer_limits(high=0)
        fill_until_blocked(tr)
        tr.abort()
        await proto.lost

    run(loop, main())
    assert [c["message"] for c in errors] == ["protocol.pause_writing() failed"]
    errors.clear()


# -------------------------------------------------------------------- argument checks

def check_raises(loop, exc, match, **kwargs):
    with pytest.raises(exc, match=match):
        run(loop, loop.create_datagram_endpoint(asyncio.DatagramProtocol, **kwargs))


def test_no_address_needs_family(loop):
    check_raises(loop, ValueError, "unexpected address family")


def test_address_must_be_a_pair(loop):
    check_raises(loop, TypeError, "2-tuple is expected", local_addr=("127.0.0.1", 0, 0))
    check_raises(loop, TypeError, "2-tuple is expected", remote_addr="127.0.0.1:9")


def test_unix_address_must_be_a_string(loop):
    check_raises(loop, TypeError, "string is expected", local_addr=("a", 1),
                 family=socket.AF_UNIX)


def test_mismatched_families(loop):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    check_raises(loop, ValueError, "can not get address information",
                 local_addr=("127.0.0.1", 0), remote_addr=("::1", 9))


def test_stream_sock_refused(loop):
    with socket.socket() as sock:
        if sys.version_info >= (3, 13):
            check_raises(loop, ValueError, "A datagram socket was expected", sock=sock)
        else:
            check_raises(loop, ValueError, "A UDP Socket was expected", sock=sock)


def test_sock_with_modifiers_refused(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        check_raises(loop, ValueError, r"when sock is specified. \(local_addr=\('127.0.0.1', "
                     r"0\), reuse_port=True\)", sock=sock, local_addr=("127.0.0.1", 0),
                     reuse_port=True)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 removed reuse_address")
def test_reuse_address_refused_on_311(loop):
    check_raises(loop, ValueError, "reuse_address=True. is no longer supported",
                 local_addr=("127.0.0.1", 0), reuse_address=True)

    async def main():
        with pytest.warns(DeprecationWarning, match="reuse_address"):
            tr, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0), reuse_address=False)
        tr.close()
        await asyncio.sleep(0)

    run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="3.11 still takes reuse_address")
def test_reuse_address_is_no_parameter_from_312(loop):
    check_raises(loop, TypeError, "reuse_address", local_addr=("127.0.0.1", 0),
                 reuse_address=True)


def test_bind_error_propagates(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        check_raises(loop, OSError, "in use", local_addr=taken.getsockname())


def test_write_buffer_limits_checked(loop):
    async def main():
        tr, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        with pytest.raises(ValueError, match=r"high \(1\) must be >= low \(2\) must be >= 0"):
            tr.set_write_buffer_limits(high=1, low=2)
        tr.set_write_buffer_limits(low=100)
        assert tr.get_write_buffer_limits() == (100, 400)
        tr.close()
        await asyncio.sleep(0)

    run(loop, main())


def test_transport_is_a_transport(loop):
    async def main():
        tr, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        assert isinstance(tr, asyncio.DatagramTransport)
        assert isinstance(tr, asyncio.Transport)
        assert "DatagramTransport" in repr(tr)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(tr.get_extra_info("socket").fileno(), lambda: None)
        tr.close()
        await asyncio.sleep(0)

    run(loop, main())

"""The networking layer's layout: factories in conveyor/net/, transports in
conveyor/transports/, and factories that call their siblings through the loop.

The table below is where a newcomer looks up which file holds a loop method; the test keeps
it true. The layer rule (transports never reach up into net/) and the "siblings through the
loop" rule (a method replaced on a loop is seen by every caller, as with asyncio) are
checked here too, the latter on stock asyncio and on conveyor alike.
"""

from __future__ import annotations

import ast
import asyncio
import socket
from pathlib import Path

import pytest

import conveyor

ROOT = Path(__file__).resolve().parents[2]

#: Loop method -> the module of conveyor/net/ that holds it.
WHERE = {
    "create_connection": "tcp", "connect_accepted_socket": "tcp",
    "create_server": "server",
    "create_unix_connection": "unix", "create_unix_server": "unix",
    "create_datagram_endpoint": "udp",
    "connect_read_pipe": "pipes", "connect_write_pipe": "pipes",
    "subprocess_exec": "subprocess", "subprocess_shell": "subprocess",
    "start_tls": "tls",
    "sendfile": "sendfile", "sock_sendfile": "sendfile",
    "getaddrinfo": "dns", "getnameinfo": "dns",
    "sock_recv": "sockets", "sock_recv_into": "sockets", "sock_recvfrom": "sockets",
    "sock_recvfrom_into": "sockets", "sock_sendall": "sockets", "sock_sendto": "sockets",
    "sock_connect": "sockets", "sock_accept": "sockets",
}


def test_each_loop_method_comes_from_its_net_module():
    found = {name: getattr(conveyor.EventLoop, name).__module__ for name in WHERE}
    assert found == {name: f"conveyor.net.{module}" for name, module in WHERE.items()}


def _transport_modules():
    return sorted((ROOT / "conveyor" / "transports").glob("*.py"))


@pytest.mark.parametrize("path", _transport_modules(), ids=lambda path: path.name)
def test_transports_hold_transports_only(path):
    """No factory (a module-level coroutine function) and no import from conveyor/net/:
    dependencies point down, and what creates a transport lives in net/."""
    tree = ast.parse(path.read_text())
    coroutines = [node.name for node in tree.body if isinstance(node, ast.AsyncFunctionDef)]
    assert coroutines == []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("net"), ast.unparse(node)
            assert not (node.module or "").startswith("conveyor.net"), ast.unparse(node)


# ------------------------------------------------------------ one resolver, via the loop

NAME = "conveyor-test.invalid"  # resolvable only by the getaddrinfo installed below


@pytest.mark.parametrize("kind", ["asyncio", "conveyor"])
def test_every_factory_resolves_through_the_loops_getaddrinfo(kind):
    """A getaddrinfo replaced on the loop answers for create_server, create_connection,
    sock_connect and create_datagram_endpoint (asyncio's factories all call
    loop.getaddrinfo for a name that is not numeric)."""
    loop = asyncio.new_event_loop() if kind == "asyncio" else conveyor.new_event_loop()
    asked = []

    async def getaddrinfo(host, port, *, family=0, type=0, proto=0, flags=0):
        assert host == NAME
        asked.append(type)
        proto = socket.IPPROTO_UDP if type == socket.SOCK_DGRAM else socket.IPPROTO_TCP
        return [(socket.AF_INET, type, proto, "", ("127.0.0.1", int(port or 0)))]

    loop.getaddrinfo = getaddrinfo

    async def main():
        server = await loop.create_server(asyncio.Protocol, NAME, 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, NAME, port)
        transport.close()
        with socket.socket() as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, (NAME, port))
        server.close()
        await server.wait_closed()
        local, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                       local_addr=(NAME, 0))
        remote, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=(NAME, local.get_extra_info("sockname")[1]))
        peer = remote.get_extra_info("peername")
        local.close()
        remote.close()
        await asyncio.sleep(0)
        return peer

    try:
        peer = loop.run_until_complete(asyncio.wait_for(main(), 10))
    finally:
        loop.close()
    assert peer[0] == "127.0.0.1"
    assert asked == [socket.SOCK_STREAM] * 3 + [socket.SOCK_DGRAM] * 2

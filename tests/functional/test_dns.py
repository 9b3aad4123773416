"""getaddrinfo / getnameinfo on conveyor: results match the C resolver, errors are its own."""

from __future__ import annotations

import logging
import socket

import pytest

import conveyor
from conveyor.net.dns import numeric_address

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


def test_getaddrinfo_matches_socket_module(loop):
    infos = run(loop, loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM))
    assert infos == socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)


def test_getaddrinfo_keyword_filters(loop):
    infos = run(loop, loop.getaddrinfo("127.0.0.1", "53", family=socket.AF_INET,
                                       type=socket.SOCK_DGRAM, proto=0,
                                       flags=socket.AI_NUMERICHOST))
    assert infos == [(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "",
                      ("127.0.0.1", 53))]


def test_getaddrinfo_error_is_gaierror(loop):
    with pytest.raises(socket.gaierror):
        run(loop, loop.getaddrinfo("not an address", 1, flags=socket.AI_NUMERICHOST))


def test_getaddrinfo_rejects_positional_family(loop):
    with pytest.raises(TypeError):
        run(loop, loop.getaddrinfo("localhost", 80, socket.AF_INET))


def test_getnameinfo(loop):
    flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
    assert run(loop, loop.getnameinfo(("127.0.0.1", 8080), flags)) == ("127.0.0.1", "8080")


def test_getnameinfo_bad_sockaddr(loop):
    with pytest.raises(TypeError):
        run(loop, loop.getnameinfo("127.0.0.1"))


def test_debug_mode_logs_resolution(loop, caplog):
    loop.set_debug(True)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        run(loop, loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM))
    assert any("Getting address info 127.0.0.1:80" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("host, port, family, expected", [
    ("127.0.0.1", 80, 0, (socket.AF_INET, ("127.0.0.1", 80))),
    ("::1", "443", 0, (socket.AF_INET6, ("::1", 443, 0, 0))),
    (b"10.0.0.1", None, socket.AF_INET, (socket.AF_INET, ("10.0.0.1", 0))),
    ("::1", 80, socket.AF_INET, None),
    ("localhost", 80, 0, None),
    ("fe80::1%lo", 80, 0, None),
    ("127.0.0.1", "http", 0, None),
])
def test_numeric_address(host, port, family, expected):
    entry = numeric_address(host, port, family)
    if expected is None:
        assert entry is None
    else:
        assert (entry[0], entry[4]) == expected
        assert entry[1:4] == (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")

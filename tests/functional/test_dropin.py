"""Drop-in behaviours libraries rely on (issue 10), each checked on stock asyncio and on
conveyor in the same test wherever the standard loop defines the behaviour.

Each test names what a library does that used to differ: anyio removing the reader of a
socket it has already closed, anyio checking that a connection error is referenced by
nothing but its future, debug-mode source tracebacks, and so on.
"""

from __future__ import annotations

import asyncio
import gc
import os
import selectors
import socket
import struct
import sys

import pytest

import conveyor

from support import Accepted, run


def _loops():
    """One stock asyncio loop and one conveyor loop, each closed by the caller.

    The asyncio loop uses the selector that matches conveyor's poller (CONVEYOR_POLLER),
    so behaviours that depend on the kernel interface (EBADF from epoll) are compared like
    for like."""
    ours = conveyor.new_event_loop()
    selector_class = {"epoll": "EpollSelector", "poll": "PollSelector",
                      "select": "SelectSelector", "kqueue": "KqueueSelector"}.get(
        ours._poller.name, "DefaultSelector")
    stock = asyncio.SelectorEventLoop(getattr(selectors, selector_class)())
    return [("asyncio", stock), ("conveyor", ours)]


def _outcome(call):
    """What a call did: ('ok', result) or (exception type name, message)."""
    try:
        return ("ok", call())
    except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
        return (type(exc).__name__, str(exc))


# ---------------------------------------------------- readers of closed file objects

def _closed_registered_outcomes(loop) -> list:
    """anyio's close path: register a socket object, close the socket, remove it."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    outcomes = []
    try:
        loop.add_reader(a, lambda: None)
        a.close()
        outcomes.append(_outcome(lambda: loop.remove_reader(a)))
        # Found and removed once; after that it is unknown, and its fd is -1.
        outcomes.append(_outcome(lambda: loop.remove_reader(a)))
        outcomes.append(_outcome(lambda: loop.remove_writer(a)))

        loop.add_writer(c, lambda: None)
        c.close()
        # Replacing the callback of a closed but registered object is accepted.
        outcomes.append(_outcome(lambda: loop.add_writer(c, lambda: None)))
        outcomes.append(_outcome(lambda: loop.remove_writer(c)))
        outcomes.append(_outcome(lambda: loop.remove_reader(c)))
        # A closed object that was never registered is refused.
        outcomes.append(_outcome(lambda: loop.add_reader(a, lambda: None)))
    finally:
        for s in (a, b, c, d):
            s.close()
    return outcomes


def test_closed_socket_registration_is_found_by_its_object():
    results = {}
    for name, loop in _loops():
        try:
            results[name] = _closed_registered_outcomes(loop)
        finally:
            loop.close()
    assert results["asyncio"][0] == ("ok", True)  # what anyio relies on
    assert results["conveyor"] == results["asyncio"]


def test_closed_socket_with_reader_and_writer_matches_asyncio():
    """Both directions registered, then closed: the standard loop's selector fails the
    modify with EBADF and forgets the whole registration; conveyor does the same."""
    def scenario(loop):
        a, b = socket.socketpair()
        out = []
        try:
            loop.add_reader(a, lambda: None)
            loop.add_writer(a, lambda: None)
            a.close()
            out.append(_outcome(lambda: loop.remove_reader(a)))
            out.append(_outcome(lambda: loop.remove_writer(a)))
            out.append(_outcome(lambda: loop.remove_reader(a)))
        finally:
            a.close()
            b.close()
        return out

    results = {}
    for name, loop in _loops():
        if name == "conveyor" and loop._poller.name == "select":
            loop.close()
            pytest.skip("asyncio's SelectSelector fails its own re-registration here "
                        "(ValueError from selectors' modify), a selectors quirk not a contract")
        try:
            results[name] = scenario(loop)
        finally:
            loop.close()
    assert results["conveyor"] == results["asyncio"]


def test_fd_of_closed_object_is_reusable(loop):
    """After the closed object's registration is removed, a new socket that got the same fd
    number is polled for real."""
    a, b = socket.socketpair()
    loop.add_reader(a, lambda: None)
    fd = a.fileno()
    a.close()
    assert loop.remove_reader(a) is True
    assert fd not in loop._readers
    c, d = socket.socketpair()
    try:
        got = loop.create_future()
        loop.add_reader(c, lambda: got.done() or got.set_result(c.recv(1)))
        d.send(b"x")
        assert run(loop, got) == b"x"
        assert loop.remove_reader(c) is True
    finally:
        b.close()
        c.close()
        d.close()


# ---------------------------------------------------- no reference cycles from errors

def _refused_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def _referrers_of_failure(loop, make) -> tuple[str, list[str]]:
    """Run `make(loop)` in a task that must fail; what refers to its exception besides the
    task (anyio asserts there is nothing else: no list, no frame, no future in a cycle)."""
    async def main():
        task = asyncio.ensure_future(make(loop))
        await asyncio.wait([task], timeout=10)
        return task

    task = loop.run_until_complete(main())
    assert task.done()
    exc = task.exception()
    assert exc is not None
    return type(exc).__name__, [type(r).__name__ for r in gc.get_referrers(exc)
                                if r is not task]


async def _sock_connect_refused(loop, port):
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
    finally:
        sock.close()


async def _tcp_recv_reset(loop):
    """A sock_recv that fails with ConnectionResetError after waiting for readiness."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.socket()
    client.setblocking(False)
    try:
        await loop.sock_connect(client, listener.getsockname())
        server, _ = listener.accept()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Reset once the receive below has found nothing and is waiting for readiness.
        loop.call_soon(server.close)
        await loop.sock_recv(client, 10)
    finally:
        client.close()
        listener.close()


_FAILURES = {
    "create_connection refused": lambda loop, port: loop.create_connection(
        asyncio.Protocol, "127.0.0.1", port),
    "create_connection by name": lambda loop, port: loop.create_connection(
        asyncio.Protocol, "localhost", port),
    "create_connection local_addr unavailable": lambda loop, port: loop.create_connection(
        asyncio.Protocol, "127.0.0.1", port, local_addr=("192.0.2.1", 0)),
    "open_connection refused": lambda loop, port: asyncio.open_connection("127.0.0.1", port),
    "sock_connect refused": _sock_connect_refused,
    "sock_recv reset": lambda loop, port: _tcp_recv_reset(loop),
}
_HAPPY_EYEBALLS = {
    "happy eyeballs one address": lambda loop, port: loop.create_connection(
        asyncio.Protocol, "127.0.0.1", port, happy_eyeballs_delay=0.05),
    "happy eyeballs by name": lambda loop, port: loop.create_connection(
        asyncio.Protocol, "localhost", port, happy_eyeballs_delay=0.05),
}


@pytest.mark.parametrize("case", sorted(_FAILURES))
def test_connection_errors_are_referenced_only_by_their_task(case):
    port = _refused_port()
    results = {}
    for name, loop in _loops():
        try:
            results[name] = _referrers_of_failure(loop, lambda l: _FAILURES[case](l, port))
        finally:
            loop.close()
    assert results["conveyor"][1] == [], results
    # Same error; asyncio itself may still leave a cycle on older Pythons (3.11's sock_recv
    # does), so only conveyor's referrers are held to "none".
    assert results["conveyor"][0] == results["asyncio"][0]


@pytest.mark.parametrize("case", sorted(_HAPPY_EYEBALLS))
def test_happy_eyeballs_errors_are_referenced_only_by_their_task(case):
    """asyncio before 3.12.8/3.13.1 leaves cycles here (CPython gh-124958); conveyor never."""
    port = _refused_port()
    loop = conveyor.new_event_loop()
    try:
        name, referrers = _referrers_of_failure(loop, lambda l: _HAPPY_EYEBALLS[case](l, port))
    finally:
        loop.close()
    assert name == "ConnectionRefusedError"
    assert referrers == []


# ---------------------------------------------------- debug mode: where a handle was made

def _made_at(loop) -> dict:
    """The last source-traceback entry of each kind of handle, made on this line's callers."""
    def noop():
        pass

    made = {}
    made["call_soon"] = loop.call_soon(noop)
    made["call_later"] = loop.call_later(60, noop)
    made["call_at"] = loop.call_at(loop.time() + 60, noop)
    made["call_soon_threadsafe"] = loop.call_soon_threadsafe(noop)

    async def inside_a_task():
        return loop.call_later(60, noop)

    made["call_later from a task"] = loop.run_until_complete(
        asyncio.wait_for(inside_a_task(), 5))
    out = {}
    for kind, handle in made.items():
        handle.cancel()
        last = handle._source_traceback[-1]
        out[kind] = (os.path.basename(last.filename), last.name, last.line)
    return out


def test_debug_source_traceback_ends_at_the_caller():
    results = {}
    for name, loop in _loops():
        loop.set_debug(True)
        try:
            results[name] = _made_at(loop)
        finally:
            loop.close()
    for kind, (filename, function, _) in results["conveyor"].items():
        assert filename == "test_dropin.py", (kind, results["conveyor"][kind])
    assert results["conveyor"] == results["asyncio"]


# ---------------------------------------------------- Unix socket files after close

def _socket_file_left(loop, tmp_path, how: str, **kwargs) -> bool:
    """Whether the server's socket file still exists after the server has closed."""
    tmp_path.mkdir(exist_ok=True)
    path = str(tmp_path / f"{how}.sock")

    async def main():
        if how == "path":
            server = await loop.create_unix_server(asyncio.Protocol, path, **kwargs)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            server = await loop.create_unix_server(asyncio.Protocol, sock=sock, **kwargs)
        assert os.path.exists(path)
        server.close()
        await server.wait_closed()
        return os.path.exists(path)

    left = run(loop, main())
    if left:
        os.unlink(path)
    return left


_CLEANUP_CASES = [("path", {}), ("sock", {})]
if sys.version_info >= (3, 13):
    _CLEANUP_CASES += [("path", {"cleanup_socket": False}), ("sock", {"cleanup_socket": False})]


@pytest.mark.parametrize("how,kwargs", _CLEANUP_CASES)
def test_unix_socket_file_cleanup_follows_the_running_python(tmp_path, how, kwargs):
    results = {}
    for name, loop in _loops():
        try:
            results[name] = _socket_file_left(loop, tmp_path / name, how, **kwargs)
        finally:
            loop.close()
    assert results["conveyor"] == results["asyncio"]
    expected_left = sys.version_info < (3, 13) or kwargs.get("cleanup_socket") is False
    assert results["conveyor"] is expected_left


def test_unix_socket_file_of_someone_else_is_kept(loop, tmp_path):
    """Cleanup removes the file the server bound, not a new one bound at the same path."""
    path = str(tmp_path / "s.sock")

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, path, cleanup_socket=True)
        os.unlink(path)
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.bind(path)
        try:
            server.close()
            await server.wait_closed()
            return os.path.exists(path)
        finally:
            other.close()

    assert run(loop, main()) is True


# ---------------------------------------------------- Server.sockets are safe views

_REFUSED = ("accept", "recv", "recv_into", "send", "sendall", "close", "detach", "listen",
            "bind", "connect", "makefile", "sendfile")


def _server_socket_outcomes(loop) -> dict:
    import pickle

    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        try:
            (view,) = server.sockets
            out = {
                "not a socket.socket": not isinstance(view, socket.socket),
                "getsockname": view.getsockname()[0],
                "family": view.family,
                "type": view.type,
                "proto": view.proto,
                "fileno": view.fileno() >= 0,
                "getsockopt": bool(view.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)),
                "setsockopt": _outcome(lambda: view.setsockopt(
                    socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)),
                "settimeout(0)": _outcome(lambda: view.settimeout(0)),
                "settimeout(1)": _outcome(lambda: view.settimeout(1)),
                "settimeout(None)": _outcome(lambda: view.settimeout(None)),
                "gettimeout": view.gettimeout(),
                "setblocking(False)": _outcome(lambda: view.setblocking(False)),
                "setblocking(True)": _outcome(lambda: view.setblocking(True)),
                "get_inheritable": view.get_inheritable(),
                "pickle": _outcome(lambda: pickle.dumps(view))[0],
                "repr": "TransportSocket fd=" in repr(view),
                "views are new each time": server.sockets[0] is not server.sockets[0],
            }
            for name in _REFUSED:
                out[name] = hasattr(view, name)
            duplicate = view.dup()
            out["dup"] = type(duplicate).__name__
            duplicate.close()
            # Nothing above broke the server: it still accepts.
            reader, writer = await asyncio.open_connection(*view.getsockname()[:2])
            writer.close()
            await writer.wait_closed()
            out["still serving"] = server.is_serving()
            return out
        finally:
            server.close()
            await server.wait_closed()

    return run(loop, main())


@pytest.mark.timeout(20)  # a raw socket made blocking here would hang the loop
def test_server_sockets_are_views_that_refuse_what_would_break_the_loop():
    results = {}
    for name, loop in _loops():
        try:
            results[name] = _server_socket_outcomes(loop)
        finally:
            loop.close()
    ours = results["conveyor"]
    assert ours["settimeout(1)"][0] == "ValueError"
    assert ours["setblocking(True)"][0] == "ValueError"
    assert not any(ours[name] for name in _REFUSED)
    assert ours == results["asyncio"]


# ---------------------------------------------------- create_task's keywords

def test_create_task_hands_every_keyword_to_the_factory(monkeypatch):
    """3.14's rule: the factory gets every keyword, name included, and the loop does not
    rename the task afterwards. Before 3.14 conveyor keeps those versions' rule (name set
    after the factory ran), so a `(loop, coro, context=None)` factory keeps working."""
    import contextvars

    import conveyor.core as loop_module

    calls = []

    def factory(loop_, coro, **kwargs):
        calls.append(dict(kwargs))
        kwargs.pop("custom", None)
        return asyncio.Task(coro, loop=loop_, **kwargs)

    async def noop():
        return None

    ctx = contextvars.copy_context()
    for gets_name in (True, False):
        monkeypatch.setattr(loop_module, "_FACTORY_GETS_NAME", gets_name)
        calls.clear()
        loop = conveyor.new_event_loop()
        try:
            loop.set_task_factory(factory)
            extra = {"eager_start": False} if sys.version_info >= (3, 12) else {}
            task = loop.create_task(noop(), name="n", context=ctx, custom=1, **extra)
            run(loop, task)
            expected = {"context": ctx, "custom": 1, **extra}
            if gets_name:
                expected["name"] = "n"
            assert calls[0] == expected
            assert task.get_name() == "n"
            # Nothing but what was given: no name=None, no context=None.
            calls.clear()
            task = loop.create_task(noop())
            run(loop, task)
            assert calls[0] == {}
        finally:
            loop.close()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="Task's eager_start is new in 3.12")
def test_create_task_eager_start_without_a_factory(loop):
    steps = []

    async def job():
        steps.append("started")
        await asyncio.sleep(0)
        return "done"

    async def main():
        eager = loop.create_task(job(), eager_start=True)
        assert steps == ["started"]  # ran to its first await inside create_task
        lazy = loop.create_task(job(), eager_start=False)
        assert steps == ["started"]
        return await eager, await lazy

    assert run(loop, main()) == ("done", "done")


# ---------------------------------------------------- blocking calls, as blockbuster sees them

def test_blockbuster_with_conveyors_allowances(tmp_path):
    """With conveyor.testing.blockbuster.allow_conveyor, blockbuster accepts conveyor's
    deliberate blocking calls (sendfile, Unix socket files) as it accepts asyncio's; without
    it, it flags each of them (so the allowances are what makes the difference)."""
    blockbuster = pytest.importorskip("blockbuster")
    from conveyor.testing.blockbuster import allow_conveyor

    payload = tmp_path / "payload"
    payload.write_bytes(b"x" * 100_000)

    async def unix_server(loop):
        path = str(tmp_path / "s.sock")
        server = await loop.create_unix_server(asyncio.Protocol, path, cleanup_socket=True)
        server.close()
        await server.wait_closed()

    async def transport_sendfile(loop):
        lost = loop.create_future()

        class Sink(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.done() or lost.set_result(None)

        server = await loop.create_server(Sink, "127.0.0.1", 0)
        transport, _ = await loop.create_connection(
            asyncio.Protocol, *server.sockets[0].getsockname()[:2])
        try:
            with open(payload, "rb") as file:
                await loop.sendfile(transport, file)
        finally:
            transport.close()
            await lost  # the server side sees EOF and closes itself
            server.close()
            await server.wait_closed()

    async def sock_sendfile(loop):
        a, b = socket.socketpair()
        a.setblocking(False)
        try:
            with open(payload, "rb") as file:
                await loop.sock_sendfile(a, file, 0, 1000)
        finally:
            a.close()
            b.close()

    def run_under(scenario, allowing: bool):
        loop = conveyor.new_event_loop()
        try:
            with blockbuster.blockbuster_ctx("conveyor") as bb:
                if allowing:
                    allow_conveyor(bb)
                return _outcome(lambda: loop.run_until_complete(
                    asyncio.wait_for(scenario(loop), 10)))[0]
        finally:
            loop.close()

    for scenario in (unix_server, transport_sendfile, sock_sendfile):
        assert run_under(scenario, False) == "BlockingError", scenario.__name__
        assert run_under(scenario, True) == "ok", scenario.__name__


# ---------------------------------------------------- error texts for bad arguments

def _bad_calls(loop, tmp_path) -> dict:
    """Bad-argument calls of create_connection / create_server / their Unix twins /
    connect_accepted_socket / sendfile / sock_*, each a coroutine factory."""
    import ssl

    P = asyncio.Protocol
    context = ssl.create_default_context()
    tcp = socket.socket()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unix_dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    loop._test_sockets = [tcp, udp, unix_dgram]
    (tmp_path / "file").write_bytes(b"data")
    missing = str(tmp_path / "missing")
    regular = str(tmp_path / "file")

    class Served(asyncio.Protocol):
        def __init__(self):
            self.lost = loop.create_future()

        def connection_made(self, transport):
            self.transport = transport

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def sendfile(what):
        served = Accepted(Served)
        server = await loop.create_server(served, "127.0.0.1", 0)
        transport, _ = await loop.create_connection(P, *server.sockets[0].getsockname()[:2])
        peer = await served.nth(0)
        try:
            if what == "text":
                with open(regular) as file:
                    await loop.sendfile(transport, file)
            with open(regular, "rb") as file:
                if what == "offset":
                    await loop.sendfile(transport, file, -1)
                elif what == "count":
                    await loop.sendfile(transport, file, 0, 0)
                elif what == "count type":
                    await loop.sendfile(transport, file, 0, "1")
                elif what == "closing":
                    transport.close()
                    await loop.sendfile(transport, file)
                elif what == "sock udp":
                    udp.setblocking(False)
                    await loop.sock_sendfile(udp, file)
        finally:
            transport.close()
            peer.transport.close()
            await peer.lost
            server.close()
            await server.wait_closed()

    return {
        "cc server_hostname without ssl": lambda: loop.create_connection(
            P, "127.0.0.1", 1, server_hostname="x"),
        "cc ssl without host": lambda: loop.create_connection(P, sock=tcp, ssl=context),
        "cc handshake timeout without ssl": lambda: loop.create_connection(
            P, "127.0.0.1", 1, ssl_handshake_timeout=1),
        "cc shutdown timeout without ssl": lambda: loop.create_connection(
            P, "127.0.0.1", 1, ssl_shutdown_timeout=1),
        "cc host and sock": lambda: loop.create_connection(P, "127.0.0.1", 1, sock=tcp),
        "cc nothing": lambda: loop.create_connection(P),
        "cc datagram sock": lambda: loop.create_connection(P, sock=udp),
        "cc bad port": lambda: loop.create_connection(P, "127.0.0.1", "notaport"),
        "cs ssl=True": lambda: loop.create_server(P, "127.0.0.1", 0, ssl=True),
        "cs handshake timeout without ssl": lambda: loop.create_server(
            P, "127.0.0.1", 0, ssl_handshake_timeout=1),
        "cs host and sock": lambda: loop.create_server(P, "127.0.0.1", 0, sock=tcp),
        "cs nothing": lambda: loop.create_server(P),
        "cs datagram sock": lambda: loop.create_server(P, sock=udp),
        "cas datagram sock": lambda: loop.connect_accepted_socket(P, udp),
        "cas handshake timeout without ssl": lambda: loop.connect_accepted_socket(
            P, tcp, ssl_handshake_timeout=1),
        "cuc ssl without server_hostname": lambda: loop.create_unix_connection(
            P, missing, ssl=context),
        "cuc server_hostname without ssl": lambda: loop.create_unix_connection(
            P, missing, server_hostname="x"),
        "cuc path and sock": lambda: loop.create_unix_connection(P, missing, sock=tcp),
        "cuc nothing": lambda: loop.create_unix_connection(P),
        "cuc tcp sock": lambda: loop.create_unix_connection(P, sock=tcp),
        "cuc missing path": lambda: loop.create_unix_connection(P, missing),
        "cus ssl=True": lambda: loop.create_unix_server(P, missing, ssl=True),
        "cus path and sock": lambda: loop.create_unix_server(P, missing, sock=tcp),
        "cus nothing": lambda: loop.create_unix_server(P),
        "cus tcp sock": lambda: loop.create_unix_server(P, sock=tcp),
        "cus datagram sock": lambda: loop.create_unix_server(P, sock=unix_dgram),
        "cus path is a regular file": lambda: loop.create_unix_server(P, regular),
        "cus no such directory": lambda: loop.create_unix_server(
            P, str(tmp_path / "nodir" / "s")),
        "sendfile text file": lambda: sendfile("text"),
        "sendfile negative offset": lambda: sendfile("offset"),
        "sendfile count 0": lambda: sendfile("count"),
        "sendfile count not int": lambda: sendfile("count type"),
        "sendfile closing transport": lambda: sendfile("closing"),
        "sock_sendfile datagram socket": lambda: sendfile("sock udp"),
    }


def _normalised(text: str) -> str:
    """Messages name objects (fds, addresses, class reprs): compare the words around them."""
    import re
    return re.sub(r"<[^>]*>|0x[0-9a-f]+|fd=\d+", "…", text)


def test_bad_arguments_get_asyncios_exception_type_and_message(tmp_path):
    results = {}
    for name, loop in _loops():
        base = tmp_path / name
        base.mkdir()
        try:
            calls = _bad_calls(loop, base)

            async def attempt(make):
                try:
                    await make()
                except Exception as exc:  # noqa: BLE001 - compared below
                    return type(exc).__name__, _normalised(str(exc).replace(str(base), "…"))
                return "no error", ""

            results[name] = {case: run(loop, attempt(make))
                             for case, make in calls.items()}
        finally:
            for sock in getattr(loop, "_test_sockets", ()):
                sock.close()
            loop.close()
    for case, expected in results["asyncio"].items():
        assert expected[0] != "no error", case
        assert results["conveyor"][case] == expected, case

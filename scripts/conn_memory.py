"""Where a server's memory per idle connection goes: ``python scripts/conn_memory.py``.

    python scripts/conn_memory.py                      # asyncio and conveyor, 2,000 conns
    python scripts/conn_memory.py -n 5000 --loops conveyor,uvloop --top 30
    python scripts/conn_memory.py --protocol echo      # no httptools: the loop's share only

A server runs in this process under each loop in turn (each in a fresh child process, so
one loop's leftovers never count against the next): `bench.http.HttpProtocol` (httptools,
as in ``python -m conveyor bench http.idle_10k``), or with ``--protocol echo`` a
`__slots__` protocol that answers each read with one fixed write. A client process opens N
connections with plain blocking sockets, sends one request on each, reads every answer and
then holds the connections open and idle. The server side is measured between "a few
connections are up" (so one-time costs such as the loop's shared read buffer are not
counted) and "all N are answered and idle":

- tracemalloc's growth, grouped by allocation site (file:line), in bytes and blocks per
  connection, largest first: what the Python-level objects of one connection cost and who
  allocates them (C-level allocations of uvloop and of the kernel are not seen);
- RSS growth per connection (what the bench's conns/MiB is made from; includes malloc's
  overhead, which tracemalloc does not);
- for asyncio and conveyor, `sys.getsizeof` of each object one connection holds (the
  transport and its `__dict__`, the extra dict and its values, the socket, the reader
  handle, the context, the protocol), so a row in the site table can be named.

`measure()` is what tests/functional/test_conn_memory.py calls (loading this file by path).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import tracemalloc
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # this checkout's conveyor, not an installed one

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
#: Connections opened before the first snapshot, so their one-time costs are excluded.
WARMUP = 64

#: The client: N blocking connections, one request each, every answer read, then idle
#: until stdin closes. Its own process, so none of its objects is counted.
_CLIENT = r"""
import resource, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, n + 200), hard), hard))
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(%r)
    socks.append(s)
for s in socks:
    got = b""
    while not got.endswith(b"!"):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("server closed a connection")
        got += chunk
print("connected", flush=True)
sys.stdin.read()
""" % (REQUEST,)


class EchoOnce(asyncio.Protocol):
    """Answers every read with one fixed response: the loop's share, no parser."""

    __slots__ = ("transport",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


class _Client:
    """The client process, and a thread that tells the loop when it has said "connected"."""

    def __init__(self, loop: asyncio.AbstractEventLoop, port: int, n: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _CLIENT, str(port), str(n)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.done = loop.create_future()
        self._thread = threading.Thread(target=self._wait, args=(loop,), daemon=True)
        self._thread.start()

    def _wait(self, loop: asyncio.AbstractEventLoop) -> None:
        line = self.proc.stdout.readline()
        if line.strip() == b"connected":
            loop.call_soon_threadsafe(self.done.set_result, None)
        else:
            error = RuntimeError(f"client failed: {self.proc.stderr.read()[-2000:]!r}")
            loop.call_soon_threadsafe(self.done.set_exception, error)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)
        self._thread.join(30)
        self.proc.stdout.close()
        self.proc.stderr.close()


def _newest_transport(loop: Any) -> Any:
    transports = getattr(loop, "_transports", None)
    if not transports:
        return None
    return max(transports.items())[1]  # the newest connection


def _sizes(loop: Any, transport: Any) -> dict[str, int]:
    """sys.getsizeof of what one connection holds (shallow: each object on its own)."""
    size = sys.getsizeof
    fd = transport._sock.fileno()
    found: dict[str, int] = {"transport": size(transport)}
    if "__slots__" not in vars(type(transport)):
        # (Not for a class with slots: a "__dict__" slot's dict is made by asking for it.)
        found["transport.__dict__"] = size(transport.__dict__)
    extra = transport._extra  # not get_extra_info(): that may make it
    if extra is None:
        found["extra dict (not made yet)"] = 0
        extra = {}
    else:
        found["extra dict"] = size(extra)
    for key, value in extra.items():
        parts = value if isinstance(value, tuple) else ()
        found[f"extra[{key!r}]"] = size(value) + sum(size(part) for part in parts)
    sock = getattr(transport, "_sock", None)
    if sock is not None:
        found["socket.socket"] = size(sock)
    context = getattr(transport, "_context", None)
    if context is not None:
        found["transport._context"] = size(context)
    readers = getattr(loop, "_readers", None)
    handle = None
    if isinstance(readers, dict):
        handle = readers.get(fd)
    else:
        key = getattr(getattr(loop, "_selector", None), "_fd_to_key", {}).get(fd)
        if key is not None:
            found["selector key"] = size(key)
            handle = key.data[0]
    if handle is not None:
        found["reader handle"] = size(handle)
        found["reader handle's bound method"] = size(handle._callback)
    protocol = transport.get_protocol()
    found["protocol"] = size(protocol)
    parser = getattr(protocol, "parser", None)
    if parser is not None:
        found["protocol.parser"] = size(parser)
    return found


def measure(loop_factory: Callable[[], asyncio.AbstractEventLoop], connections: int,
            protocol_factory: Callable[[], asyncio.BaseProtocol] = EchoOnce, *,
            trace: bool = True, top: int = 25) -> dict[str, Any]:
    """Open `connections` idle connections to a server on a new loop from `loop_factory`;
    return the growth per connection of tracemalloc's total and sites (with `trace`) and
    of RSS (without it: tracemalloc's own records would swell RSS)."""
    _raise_fd_limit(connections + WARMUP + 500)
    loop = loop_factory()
    try:
        return loop.run_until_complete(
            _measure(loop, connections, protocol_factory, trace, top))
    finally:
        loop.close()


async def _measure(loop: asyncio.AbstractEventLoop, n: int,
                   protocol_factory: Callable[[], asyncio.BaseProtocol], trace: bool,
                   top: int) -> dict:
    server = await loop.create_server(protocol_factory, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    warm = _Client(loop, port, WARMUP)
    before = after = None
    try:
        await warm.done
        await asyncio.sleep(0.05)
        gc.collect()
        if trace:
            tracemalloc.start(1)
            before = tracemalloc.take_snapshot()
        rss_before = _rss()
        client = _Client(loop, port, n)
        try:
            await client.done
            await asyncio.sleep(0.1)  # every answer written and the writers gone
            gc.collect()
            rss_after = _rss()
            if trace:
                after = tracemalloc.take_snapshot()
                tracemalloc.stop()
            newest = _newest_transport(loop)
            sizes = _sizes(loop, newest) if newest is not None else {}
        finally:
            client.close()
    finally:
        tracemalloc.stop()
        warm.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.1)  # the connections' connection_lost, on every version
    result = {"connections": n, "rss_per_connection": (rss_after - rss_before) / n,
              "sizes": sizes}
    if trace:
        ignored = (tracemalloc.Filter(False, tracemalloc.__file__),
                   tracemalloc.Filter(False, __file__))
        diffs = after.filter_traces(ignored).compare_to(before.filter_traces(ignored),
                                                        "lineno")
        result["tracemalloc_per_connection"] = sum(d.size_diff for d in diffs) / n
        result["sites"] = [{"site": _site(d.traceback[0]), "bytes": d.size_diff / n,
                            "blocks": d.count_diff / n}
                           for d in diffs if abs(d.size_diff) >= n // 10][:top]
    return result


def _site(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    if name.startswith(ROOT):
        name = os.path.relpath(name, ROOT)
    return f"{name}:{frame.lineno}"


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    from conveyor.bench.loops import factory
    return factory(name)


def _protocol(name: str) -> Callable[[], asyncio.BaseProtocol]:
    if name == "http":
        from conveyor.bench.http import HttpProtocol
        return HttpProtocol
    return EchoOnce


def _print(name: str, result: dict) -> None:
    print(f"\n== {name}: {result['connections']} idle connections, "
          f"Python {sys.version.split()[0]}")
    print(f"tracemalloc {result['tracemalloc_per_connection']:8.0f} B/conn   "
          f"RSS {result['rss_per_connection']:8.0f} B/conn (untraced run)")
    print(f"{'bytes/conn':>10} {'blocks/conn':>11}  site")
    for site in result["sites"]:
        print(f"{site['bytes']:10.1f} {site['blocks']:11.2f}  {site['site']}")
    if result["sizes"]:
        print("sys.getsizeof of one connection's objects:")
        for label, value in result["sizes"].items():
            print(f"{value:10d}  {label}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/conn_memory.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--connections", type=int, default=2000)
    parser.add_argument("--loops", default="asyncio,conveyor")
    parser.add_argument("--protocol", choices=("http", "echo"), default="http")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one loop, JSON out
    parser.add_argument("--untraced", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.child:
        result = measure(_loop_factory(ns.child), ns.connections, _protocol(ns.protocol),
                         trace=not ns.untraced, top=ns.top)
        print(json.dumps(result))
        return 0
    for name in ns.loops.split(","):
        runs = []
        for untraced in ([], ["--untraced"]):
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name,
                                   "-n", str(ns.connections), "--protocol", ns.protocol,
                                   "--top", str(ns.top), *untraced],
                                  capture_output=True, text=True, cwd=ROOT, timeout=600)
            if proc.returncode != 0:
                print(f"\n== {name}: failed\n{proc.stderr[-3000:]}")
                break
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        else:
            traced, untraced_run = runs
            traced["rss_per_connection"] = untraced_run["rss_per_connection"]
            _print(name, traced)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

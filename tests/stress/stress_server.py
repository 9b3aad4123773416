"""The server side of the stress suite, run as its own process.

    python stress_server.py conveyor|asyncio [--nofile N]

Why a separate process: the suite measures what a server costs (peak RSS, open fds, CPU time
while idle), and those figures are per process. Running the server here and the clients in
the pytest process keeps client sockets, threads and buffers out of the server's numbers.

The test drives this process through a line protocol: one JSON command per line on stdin,
one JSON reply per line on stdout. A thread reads stdin and runs each command on the loop
with `asyncio.run_coroutine_threadsafe`, so a loop that stalls shows up as a reply that never
comes (the test side times out), not as a hung test. Nothing else may print to stdout.

Only public asyncio APIs are used, so the same code runs on stock asyncio and on conveyor
(`CONVEYOR_POLLER` in the environment picks conveyor's backend).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import resource
import signal
import sys
import threading
import time
import weakref
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stress_body import CHUNK, body_chunk, body_chunks  # noqa: E402

# ---------------------------------------------------------------------------- measurements


def proc_status(field: str) -> int:
    """A `kB` field of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # minus the fd listdir itself holds


try:
    _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc
    _malloc_trim = None


def settle() -> None:
    """Free what can be freed before a memory reading: cycles, then glibc's free lists."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------- bookkeeping


class Tracker:
    """Counts connection lifecycles across every server this process runs.

    `lost_twice` counts connection_lost calls on a protocol that already had one; `after_lost`
    counts any other protocol callback after connection_lost. Both must stay 0.
    """

    def __init__(self) -> None:
        self.made = 0
        self.lost = 0
        self.lost_twice = 0
        self.after_lost = 0
        self.lost_exc: Counter[str] = Counter()
        self.live: weakref.WeakSet[Any] = weakref.WeakSet()
        self.transports: list[asyncio.BaseTransport] = []
        self.keep_transports = False
        self.waiters: list[tuple[str, int, asyncio.Future]] = []
        self.extra: dict[str, Any] = {}

    def on_made(self, proto: Any, transport: asyncio.BaseTransport) -> None:
        self.made += 1
        self.live.add(proto)
        if self.keep_transports:
            self.transports.append(transport)
        self._check()

    def on_lost(self, proto: Any, exc: BaseException | None) -> None:
        if proto._lost:
            self.lost_twice += 1
            return
        proto._lost = True
        self.lost += 1
        self.lost_exc[type(exc).__name__ if exc else "None"] += 1
        self._check()

    def on_callback(self, proto: Any) -> None:
        if proto._lost:
            self.after_lost += 1

    async def wait(self, field: str, n: int) -> None:
        if getattr(self, field) >= n:
            return
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append((field, n, fut))
        await fut

    def _check(self) -> None:
        for item in list(self.waiters):
            field, n, fut = item
            if getattr(self, field) >= n:
                self.waiters.remove(item)
                if not fut.done():
                    fut.set_result(None)

    def report(self) -> dict[str, Any]:
        return {"made": self.made, "lost": self.lost, "lost_twice": self.lost_twice,
                "after_lost": self.after_lost, "lost_exc": dict(self.lost_exc),
                "live_protocols": len(self.live), **self.extra}


TRACK = Tracker()
HANDLER_CALLS: list[str] = []


class Tracked(asyncio.Protocol):
    """Lifecycle bookkeeping every test protocol shares."""

    _lost = False
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        TRACK.on_made(self, transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        TRACK.on_lost(self, exc)

    def data_received(self, data: bytes) -> None:
        TRACK.on_callback(self)

    def eof_received(self) -> bool | None:
        TRACK.on_callback(self)
        return None

    def pause_writing(self) -> None:
        TRACK.on_callback(self)

    def resume_writing(self) -> None:
        TRACK.on_callback(self)


# ---------------------------------------------------------------------------- servers


class PushProtocol(Tracked):
    """Streams `chunks` body chunks the classic way: write until pause_writing(), write the
    next chunk from resume_writing(), close() after the last one."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.next = 0
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.fill()

    def fill(self) -> None:
        transport = self.transport
        while not self.paused and self.next < self.chunks and not transport.is_closing():
            transport.write(body_chunk(self.next))
            self.next += 1
        if self.next == self.chunks and not transport.is_closing():
            transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self.paused = False
        self.fill()


class RespondingPushProtocol(PushProtocol):
    """PushProtocol that keeps its side open on EOF (eof_received returns True), as a server
    answering a request whose client half-closed after sending it: the whole body must still
    go out, then close()."""

    def eof_received(self) -> bool:
        super().eof_received()
        return True


class EchoProtocol(Tracked):
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.transport.write(data)


class FloodProtocol(Tracked):
    """Buffers `blob` at once (megabytes, far beyond the socket buffer), ignores flow control,
    and closes on EOF (the default), which must still deliver the rest to a half-closed peer."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(self.blob)


class HogProtocol(Tracked):
    """Writes distinct 1 MiB chunks ignoring pause_writing() until `total` bytes are buffered."""

    def __init__(self, total: int) -> None:
        self.total = total

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        chunk = 1024 * 1024
        for i in range(self.total // chunk):
            # A new object each time, so the transport cannot share one buffer between writes.
            self.transport.write(i.to_bytes(8, "big") * (chunk // 8))
        TRACK.extra["hog_buffered"] = self.transport.get_write_buffer_size()


class TrackedStreamProtocol(asyncio.StreamReaderProtocol):
    """What asyncio.start_server builds, with the lifecycle bookkeeping added."""

    _lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        TRACK.on_made(self, transport)
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        TRACK.on_lost(self, exc)
        super().connection_lost(exc)


async def streams_push(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       chunks: int) -> None:
    for i in range(chunks):
        writer.write(body_chunk(i))
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def streams_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
    except ConnectionError:
        writer.close()


# ---------------------------------------------------------------------------- commands


class Harness:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.server: asyncio.Server | None = None
        self.tick_gap = 0.0
        self.ticks = 0
        self.ticker: asyncio.TimerHandle | None = None
        self.last_tick = 0.0
        self.signals = 0
        self.signal_seen: asyncio.Future | None = None

    async def op_serve(self, kind: str, **params: Any) -> dict[str, Any]:
        loop = self.loop
        chunks = params.get("chunks", 0)
        if kind == "push-protocol":
            factory = lambda: PushProtocol(chunks)  # noqa: E731
        elif kind == "flood-push":
            n = params["bytes"] // CHUNK
            factory = lambda: RespondingPushProtocol(n)  # noqa: E731
        elif kind == "echo-protocol":
            factory = EchoProtocol
        elif kind == "flood-write":
            blob = b"".join(body_chunks(params["bytes"]))
            factory = lambda: FloodProtocol(blob)  # noqa: E731
        elif kind == "hog":
            TRACK.keep_transports = True
            factory = lambda: HogProtocol(params["bytes"])  # noqa: E731
        elif kind in ("push-streams", "echo-streams"):
            def factory() -> asyncio.Protocol:
                if kind == "push-streams":
                    cb = lambda r, w: streams_push(r, w, chunks)  # noqa: E731
                else:
                    cb = streams_echo
                return TrackedStreamProtocol(asyncio.StreamReader(loop=loop), cb, loop=loop)
        else:
            raise ValueError(kind)
        self.server = await loop.create_server(factory, "127.0.0.1", 0,
                                               backlog=params.get("backlog", 1024))
        return {"port": self.server.sockets[0].getsockname()[1]}

    async def op_close_server(self) -> dict[str, Any]:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        return {}

    async def op_stats(self, settle_memory: bool = False) -> dict[str, Any]:
        if settle_memory:
            settle()
        return {"fds": open_fd_count(), "rss": proc_status("VmRSS"),
                "hwm": proc_status("VmHWM"), "cpu": time.process_time(),
                "handler_calls": HANDLER_CALLS[:20], "handler_count": len(HANDLER_CALLS),
                "signals": self.signals, "ticks": self.ticks, "tick_gap": self.tick_gap,
                **TRACK.report()}

    async def op_reset_peak(self) -> dict[str, Any]:
        settle()
        ok = reset_peak()
        return {"reset": ok, "rss": proc_status("VmRSS"), "hwm": proc_status("VmHWM")}

    async def op_wait(self, field: str, n: int, within: float) -> dict[str, Any]:
        try:
            await asyncio.wait_for(TRACK.wait(field, n), within)
        except asyncio.TimeoutError:
            return {"timeout": True, **TRACK.report()}
        return {"timeout": False, **TRACK.report()}

    async def op_abort_all(self) -> dict[str, Any]:
        for t in TRACK.transports:
            t.abort()
        TRACK.transports.clear()
        await TRACK.wait("lost", TRACK.made)
        return {}

    async def op_ticker(self, period: float) -> dict[str, Any]:
        """A periodic timer (call_later chain); records the longest gap between ticks."""
        self.tick_gap = 0.0
        self.ticks = 0
        self.last_tick = self.loop.time()

        def tick() -> None:
            now = self.loop.time()
            self.tick_gap = max(self.tick_gap, now - self.last_tick)
            self.last_tick = now
            self.ticks += 1
            self.ticker = self.loop.call_later(period, tick)

        self.ticker = self.loop.call_later(period, tick)
        return {}

    async def op_ticker_stop(self) -> dict[str, Any]:
        if self.ticker is not None:
            self.ticker.cancel()
        now = self.loop.time()
        gap = max(self.tick_gap, now - self.last_tick)  # a stall up to now counts too
        return {"ticks": self.ticks, "tick_gap": gap}

    async def op_signals(self) -> dict[str, Any]:
        def on_signal() -> None:
            self.signals += 1
            if self.signal_seen is not None and not self.signal_seen.done():
                self.signal_seen.set_result(None)
        self.loop.add_signal_handler(signal.SIGUSR1, on_signal)
        return {"pid": os.getpid()}

    async def op_wait_signals(self, above: int, within: float) -> dict[str, Any]:
        """Wait until the signal handler has run more than `above` times."""
        deadline = self.loop.time() + within
        while self.signals <= above and self.loop.time() < deadline:
            self.signal_seen = self.loop.create_future()
            try:
                await asyncio.wait_for(self.signal_seen, deadline - self.loop.time())
            except asyncio.TimeoutError:
                break
        return {"timeout": self.signals <= above, "signals": self.signals}

    async def op_signals_off(self) -> dict[str, Any]:
        self.loop.remove_signal_handler(signal.SIGUSR1)
        return {"signals": self.signals}

    async def op_threads(self, threads: int, calls: int, within: float) -> dict[str, Any]:
        """`threads` threads each schedule `calls` callbacks with call_soon_threadsafe; every
        one must run exactly once."""
        counts = [bytearray(calls) for _ in range(threads)]
        total = threads * calls
        ran = [0]
        done = self.loop.create_future()

        def cb(t: int, i: int) -> None:
            counts[t][i] += 1
            ran[0] += 1
            if ran[0] == total and not done.done():
                done.set_result(None)

        def producer(t: int) -> None:
            schedule = self.loop.call_soon_threadsafe
            for i in range(calls):
                schedule(cb, t, i)

        workers = [threading.Thread(target=producer, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        try:
            await asyncio.wait_for(asyncio.shield(done), within)
            timed_out = False
        except asyncio.TimeoutError:
            timed_out = True
        for w in workers:
            w.join()
        # Let any callback scheduled past the count run too, so duplicates are seen.
        await asyncio.sleep(0)
        missing = sum(c.count(0) for c in counts)
        twice = sum(len(c) - c.count(0) - c.count(1) for c in counts)
        return {"timed_out": timed_out, "ran": ran[0], "missing": missing, "twice": twice}

    async def op_exit(self) -> dict[str, Any]:
        return {}


def main() -> None:
    which = sys.argv[1]
    nofile = None
    if "--nofile" in sys.argv:
        nofile = int(sys.argv[sys.argv.index("--nofile") + 1])
    if which == "conveyor":
        import conveyor
        loop = conveyor.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def handler(_loop: Any, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        HANDLER_CALLS.append(f"{context.get('message')!s}: {exc!r}")

    loop.set_exception_handler(handler)
    harness = Harness(loop)
    out = sys.stdout

    def reader() -> None:
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd.pop("op")
            try:
                coro = getattr(harness, "op_" + op)(**cmd)
                fut = asyncio.run_coroutine_threadsafe(coro, loop)
                reply = {"ok": True, **fut.result()}
            except Exception as exc:  # reported to the test, which fails with it
                reply = {"ok": False, "error": repr(exc)}
            out.write(json.dumps(reply) + "\n")
            out.flush()
            if op == "exit":
                break
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=reader, daemon=True).start()
    if nofile is not None:
        # After the imports and the loop's own fds: room for exactly `nofile` more.
        soft = open_fd_count() + nofile
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    out.write(json.dumps({"ok": True, "ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    loop.run_forever()
    if harness.server is not None:
        harness.server.close()
    loop.close()


if __name__ == "__main__":
    main()

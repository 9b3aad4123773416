"""User-space instructions per echoed message, counted by callgrind: ``python scripts/echo_instructions.py``.

    python scripts/echo_instructions.py                          # proto 1 KiB, each loop
    python scripts/echo_instructions.py --kind streams --size 10240 --loops conveyor,uvloop
    python scripts/echo_instructions.py --python /work/main/.venvs/3.13.0/bin/python
    python scripts/echo_instructions.py --kind http     # the bench's httptools server under wrk
    python scripts/echo_instructions.py --loops bare,bare-protocol,uvloop,conveyor  # the floors

Timings on a shared 2-core machine swing by 20% from run to run; an instruction count does
not. Each loop's echo server (the bench's three shapes: ``proto``, ``streams``, ``sock``)
runs in its own process under ``valgrind --tool=callgrind`` with instrumentation off; the
bench's C load generator (``conveyor/bench/loadgen.c``, built on first use) loads it with
50 ping-pong connections, and instrumentation is switched on for its measured window only,
so start-up, warm-up and teardown are not counted. The figure is the server's instructions
in that window divided by the messages echoed.

What it counts and what it does not:

- user space only: the interpreter, the loop, libc, the GIL. The kernel's share (the
  system calls, TCP over loopback) is not in it; for that, compare ``strace -c`` counts,
  which are the same for every loop here (one read and one write per message).
- under valgrind the server is ~50x slower than the client, so every poll returns all 50
  connections: the per-iteration cost is amortised as it is under full load, and the
  count is the per-message cost of a busy server.
- the sock_* shape waits for readiness once per message, as at full speed (a short
  receive marks its socket drained, so the next one waits first); but under valgrind each
  poll finds fewer connections ready than at full speed, so the loop's per-iteration cost is
  spread over fewer messages. ``--connections 1`` makes every message a poll of its own.

Two floors for the proto shape: ``bare`` is ``conveyor/bench/bare_echo.py`` (epoll,
``os.read``, ``os.write``, nothing else: the bench's ``bare-py`` column), and
``bare-protocol`` adds the three Python calls a protocol costs (see
``_serve_bare_protocol``); a loop's count above them is its own machinery.

``--kind http`` runs the bench's HTTP server (``conveyor.bench.http.HttpProtocol``,
httptools) under ``wrk -t1 -c50`` instead, and divides by the responses the server counted
over the window (it reports its count when sent SIGUSR1).

Use ``callgrind_annotate FILE`` on the file named in each line to see where they go.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import signal
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def serve(loop_name: str, kind: str, port: int) -> None:
    """The server side: an echo server of the given shape, "ready" on stdout when listening."""
    if loop_name in ("bare", "bare-protocol") and kind != "proto":
        raise SystemExit(f"the {loop_name} server has only the proto shape")
    if loop_name == "bare":
        # No loop at all: the least Python that echoes (conveyor/bench/bare_echo.py).
        sys.path.insert(0, os.path.dirname(HERE))
        from conveyor.bench import bare_echo
        bare_echo.serve(port)
        return
    if loop_name == "bare-protocol":
        _serve_bare_protocol(port)
        return
    if loop_name == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    elif loop_name == "conveyor":
        import conveyor
        loop = conveyor.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def streams_handler(reader, writer):
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()

    async def sock_handler(conn):
        try:
            while True:
                data = await loop.sock_recv(conn, 65536)
                if not data:
                    break
                await loop.sock_sendall(conn, data)
        except ConnectionError:
            pass
        finally:
            conn.close()

    async def main():
        if kind == "http":
            sys.path.insert(0, os.path.dirname(HERE))
            from conveyor.bench.http import HttpProtocol
            answered = [0]

            class Counting(HttpProtocol):
                __slots__ = ()

                def on_message_complete(self):
                    answered[0] += 1
                    super().on_message_complete()

            loop.add_signal_handler(signal.SIGUSR1,
                                    lambda: print(answered[0], flush=True))
            await loop.create_server(Counting, "127.0.0.1", port, backlog=1024)
        elif kind == "proto":
            await loop.create_server(Echo, "127.0.0.1", port, backlog=1024)
        elif kind == "streams":
            await asyncio.start_server(streams_handler, "127.0.0.1", port, backlog=1024)
        else:
            listener = socket.create_server(("127.0.0.1", port), backlog=1024)
            listener.setblocking(False)
            tasks = set()

            async def accept_forever():
                while True:
                    conn, _ = await loop.sock_accept(listener)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    task = loop.create_task(sock_handler(conn))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

            loop.create_task(accept_forever())
        print("ready", flush=True)
        await asyncio.Event().wait()

    loop.run_until_complete(main())


def _serve_bare_protocol(port: int) -> None:
    """The "bare-protocol" server: the bare one plus asyncio's protocol contract at its
    cheapest. Each readable fd calls a bound method of its transport, which reads and calls
    the protocol's data_received, which calls the transport's write: the three Python calls
    every loop with a Python protocol makes per message, and nothing else (no handle,
    context, ready queue, state checks or error handling). A floor, not a server to use."""
    import select

    class Transport:
        __slots__ = ("_fd", "_protocol")

        def __init__(self, fd, protocol):
            self._fd, self._protocol = fd, protocol

        def read_ready(self):
            data = os.read(self._fd, 65536)
            if data:
                self._protocol.data_received(data)

        def write(self, data):
            os.write(self._fd, data)

    class Echo:
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    listener.setblocking(False)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN)
    readers, sockets = {}, {}
    print("ready", flush=True)
    while True:
        for fd, _ in poller.poll():
            reader = readers.get(fd)
            if reader is not None:
                reader()
                continue
            while True:
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    break
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                protocol = Echo()
                transport = Transport(sock.fileno(), protocol)
                protocol.connection_made(transport)
                sockets[sock.fileno()] = sock
                readers[sock.fileno()] = transport.read_ready
                poller.register(sock.fileno(), select.EPOLLIN)


def _load_generator() -> str:
    sys.path.insert(0, os.path.dirname(HERE))
    from conveyor.bench import cbuild
    return str(cbuild.build("loadgen"))


def measure(python: str, loop_name: str, kind: str, size: int, duration: float,
            out_dir: str, connections: int = 50) -> tuple[int, int, str]:
    """(messages, instructions, callgrind file) for one loop's server."""
    port = 20000 + os.getpid() % 20000
    # The interpreter itself, not a launcher script (pyenv's shims are shell scripts, which
    # valgrind would measure instead); a venv's own path is kept, so its packages are found.
    python = subprocess.run([python, "-c", "import sys; print(sys.executable)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    tag = f"{loop_name}.{kind}.{size}.{os.path.basename(os.path.realpath(python))}"
    out = os.path.join(out_dir, f"callgrind.{tag}")
    for stale in glob.glob(out + "*"):
        os.unlink(stale)
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         python, os.path.abspath(__file__), "--serve", loop_name, kind,
         str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        # "ready", or the bare server's port: a line once it listens.
        if not server.stdout.readline().strip():
            raise RuntimeError(f"the {loop_name} server did not start")
        if kind == "http":
            messages = _measure_http(server, port, duration)
        else:
            client = subprocess.Popen(
                [_load_generator(), "--port", str(port), "--size", str(size),
                 "--connections", str(connections), "--duration", str(duration),
                 "--warmup", "3"],
                stdout=subprocess.PIPE, text=True)
            client.stdout.readline()
            subprocess.run(["callgrind_control", "-i", "on", str(server.pid)],
                           capture_output=True)
            messages = json.loads(client.stdout.readline())["messages"]
            subprocess.run(["callgrind_control", "-i", "off", str(server.pid)],
                           capture_output=True)
            subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True)
            client.wait()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
    dump = _dump(out)
    return messages, _instructions(dump), dump


def _measure_http(server: subprocess.Popen, port: int, duration: float) -> int:
    """Responses over `duration` seconds of instrumentation, with wrk loading the HTTP
    server after a warm-up; the server prints its response count at each SIGUSR1."""
    import time
    wrk = subprocess.Popen(["wrk", "-t1", "-c50", f"-d{int(duration) + 6}s",
                            f"http://127.0.0.1:{port}/"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        server.send_signal(signal.SIGUSR1)
        before = int(server.stdout.readline())
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], capture_output=True)
        time.sleep(duration)
        subprocess.run(["callgrind_control", "-i", "off", str(server.pid)], capture_output=True)
        server.send_signal(signal.SIGUSR1)
        after = int(server.stdout.readline())
        subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True)
    finally:
        wrk.kill()
        wrk.wait()
    return after - before


def _dump(out: str) -> str:
    return max(glob.glob(out + "*"), key=os.path.getsize)


def _instructions(dump: str) -> int:
    annotated = subprocess.run(["callgrind_annotate", dump], capture_output=True, text=True).stdout
    totals = next(line for line in annotated.splitlines() if "PROGRAM TOTALS" in line)
    return int(totals.split()[0].replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--serve"]:
        serve(args[1], args[2], int(args[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("proto", "streams", "sock", "http"), default="proto")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--loops", default="asyncio,uvloop,conveyor")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--out", default="/tmp", help="where the callgrind files go")
    parser.add_argument("--connections", type=int, default=50,
                        help="connections the C client keeps busy (1: a poll per message)")
    opts = parser.parse_args(args)
    for loop_name in opts.loops.split(","):
        messages, instructions, dump = measure(opts.python, loop_name, opts.kind, opts.size,
                                               opts.duration, opts.out, opts.connections)
        shape = "http, per response" if opts.kind == "http" else f"{opts.kind} {opts.size} B"
        print(f"{loop_name:9s} {shape}: {instructions / messages:9,.0f} "
              f"instructions per message ({messages} messages; {dump})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

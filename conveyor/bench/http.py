"""The http suite: an HTTP/1.1 keep-alive server (httptools) under wrk, and idle-connection RSS.

Workloads for ``python -m conveyor bench http``:

- ``keepalive_c50``: the server (an ``asyncio.Protocol`` parsing with httptools, answering
  every request with a fixed 13-byte body) runs in the measuring child under the loop being
  compared; ``wrk -t1 -c50`` in its own process drives it. One operation is one response.
- ``idle_10k``: 10,000 connections, each having made one request, then left open and idle.
  The client runs in its own process. The rate is connections per MiB of server RSS growth
  (so "higher is better" holds, and conveyor/asyncio >= 1 means conveyor needs no more
  memory per connection than asyncio).

``python -m conveyor.bench.http report`` prints what the harness's table cannot: requests/s
with p50/p99 latency for each loop, RSS per idle connection in KiB, and the same wrk run
against nginx (one worker, fixed response) to show that wrk can go faster than every loop,
so the loop, not the load generator, is what is measured. The "wrk CPU" column is wrk's own
CPU time over its run (100% = the one core its thread can use, with -t1): a figure well
below that means wrk was waiting for the server, not the other way round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import loadgen
from .registry import Measured, Workload

__all__ = ["WORKLOADS", "keepalive", "idle_connections", "HttpProtocol"]

_BODY = b"Hello, World!"
_KEEPALIVE_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(_BODY)) + _BODY
_CLOSE_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(_BODY)) + _BODY
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class HttpProtocol(asyncio.Protocol):
    """A minimal HTTP/1.1 server protocol: httptools parses, every request gets _BODY."""

    __slots__ = ("transport", "parser", "_error")

    def __init__(self) -> None:
        import httptools

        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._error = httptools.HttpParserError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except self._error:
            self.transport.write(_BAD_REQUEST)
            self.transport.close()

    def on_message_complete(self) -> None:
        if self.parser.should_keep_alive():
            self.transport.write(_KEEPALIVE_RESPONSE)
        else:
            self.transport.write(_CLOSE_RESPONSE)
            self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None


# ------------------------------------------------------------------------------ wrk

def _wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    return path


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    """requests, seconds, requests/s and p50/p99 latency (seconds) from `wrk --latency`."""
    requests = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if requests is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    result = {"requests": float(requests.group(1)),
              "seconds": _seconds(requests.group(2) + requests.group(3))}
    result["rate"] = result["requests"] / result["seconds"]
    for label in ("50", "99"):
        match = re.search(rf"^\s*{label}(?:\.000)?%\s+(\S+)", output, re.MULTILINE)
        if match:
            result[f"p{label}"] = _seconds(match.group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", output)
    result["errors"] = errors.group(0) if errors else ""
    return result


def run_wrk(port: int, connections: int, duration: float, threads: int = 1) -> dict:
    """Run wrk against 127.0.0.1:`port` (blocking: call it on an executor thread)."""
    # wrk takes whole seconds only.
    seconds = max(1, round(duration))
    cmd = [_wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
           f"http://127.0.0.1:{port}/"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            loadgen.pin(proc.pid, loadgen.client_cpus())
            out, err = proc.communicate(timeout=duration + 60)
        except BaseException:
            proc.kill()
            raise
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {err.strip()[-2000:]}")
    result = parse_wrk(out)
    # wrk's own CPU time over its run: near `threads` (cores fully busy) would mean wrk,
    # not the server, sets the pace; well below it, wrk was waiting for the server.
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["client_cpu_seconds"] = cpu
    result["client_cpu"] = cpu / result["seconds"]
    return result


# ------------------------------------------------------------------------ workloads

async def _start_server() -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(HttpProtocol, "127.0.0.1", 0, backlog=4096)


async def keepalive(connections: int = 50, duration: float = 3, warmup: float = 1,
                    threads: int = 1) -> Measured:
    """HTTP/1.1 keep-alive, httptools protocol, wrk -c 50: requests/s."""
    result = await _keepalive_result(connections, duration, warmup, threads)
    return Measured(int(result["requests"]), result["seconds"], cpu=result["server_cpu"],
                    client_cpu=result["client_cpu_seconds"])


async def _keepalive_result(connections: int, duration: float, warmup: float,
                            threads: int) -> dict:
    loop = asyncio.get_running_loop()
    server = await _start_server()
    port = server.sockets[0].getsockname()[1]
    try:
        if warmup > 0:
            await loop.run_in_executor(None, run_wrk, port, connections, warmup, threads)
        # The server's own CPU per request: unlike requests/s it still tells the loops
        # apart when wrk, not the server, is what saturates (the executor thread only
        # waits for wrk, so this process's CPU is the server's).
        before = resource.getrusage(resource.RUSAGE_SELF)
        result = await loop.run_in_executor(None, run_wrk, port, connections, duration,
                                            threads)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        result["server_cpu"] = cpu
        result["server_cpu_per_request"] = cpu / max(result["requests"], 1)
        return result
    finally:
        server.close()
        await server.wait_closed()


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        raise RuntimeError(f"RLIMIT_NOFILE is {soft}, below the {wanted} needed "
                           "(raise the hard limit)")


async def _idle_result(connections: int) -> dict:
    _raise_fd_limit(connections + 1000)
    loop = asyncio.get_running_loop()
    server = await _start_server()
    port = server.sockets[0].getsockname()[1]
    root = str(Path(__file__).resolve().parents[2])
    cmd = [sys.executable, "-m", "conveyor.bench.http", "idle-client", "--port", str(port),
           "--connections", str(connections)]
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=root, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    loadgen.pin(proc.pid, loadgen.client_cpus())
    try:
        gc.collect()
        before = _rss_bytes()
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        if line.strip() != b"connected":
            raise RuntimeError(f"idle client failed: {(await proc.stderr.read())[-2000:]!r}")
        # Every connection has been answered: the server holds its transport and protocol.
        await asyncio.sleep(0.2)
        gc.collect()
        after = _rss_bytes()
    finally:
        if proc.returncode is None:
            proc.stdin.close()
        await proc.wait()
        server.close()
        await server.wait_closed()
    return {"connections": connections, "rss_before": before, "rss_after": after,
            "bytes_per_connection": (after - before) / connections}


async def idle_connections(connections: int = 10_000) -> tuple[int, float]:
    """10k idle keep-alive connections: connections per MiB of server RSS growth."""
    result = await _idle_result(connections)
    grown_mib = max(result["rss_after"] - result["rss_before"], 1) / 2 ** 20
    return connections, grown_mib


_QUICK = {"duration": 1, "warmup": 0, "connections": 10}

WORKLOADS = [
    Workload("keepalive_c50", keepalive, {}, _QUICK, unit="requests/s",
             doc="HTTP/1.1 keep-alive, httptools protocol, wrk -t1 -c50", served=True),
    Workload("idle_10k", idle_connections, {}, {"connections": 200}, unit="conns/MiB",
             doc="10k idle connections: connections per MiB of server RSS (higher is less)",
             served=True),
]


# --------------------------------------------------------------------- the idle client

async def _idle_client(port: int, connections: int) -> None:
    """Open `connections` keep-alive connections, one request each, then wait for stdin EOF."""
    _raise_fd_limit(connections + 1000)
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    streams = []
    semaphore = asyncio.Semaphore(200)

    async def connect() -> None:
        async with semaphore:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await reader.readuntil(_BODY)
            streams.append(writer)

    await asyncio.gather(*(connect() for _ in range(connections)))
    print("connected", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for writer in streams:
        writer.close()


# ----------------------------------------------------------------- the report command

_NGINX_CONF = """
worker_processes 1;
daemon off;
master_process off;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 4096; use epoll; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        server_tokens off;
        location / {{ default_type text/plain; return 200 "Hello, World!"; }}
    }}
}}
"""


def _free_port() -> int:
    """A port for nginx, which cannot listen on port 0 and report it back."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nginx_reference(connections: int, duration: float, threads: int) -> dict:
    """wrk against nginx (one worker, fixed response): what wrk can drive on this machine."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise RuntimeError("nginx is not installed (Debian: apt-get install -y nginx-light)")
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(tmp=tmp, port=port))
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", tmp],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    import socket
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"nginx did not start: {proc.stderr.read()!r}")
                    time.sleep(0.05)
            run_wrk(port, connections, 1, threads)
            return run_wrk(port, connections, duration, threads)
        finally:
            proc.terminate()
            proc.wait(10)


def _measure_in_child(loop_name: str, what: str, args: dict) -> dict:
    """Run one measurement in a fresh process under `loop_name` (like the harness does)."""
    root = str(Path(__file__).resolve().parents[2])
    cmd = [sys.executable, "-m", "conveyor.bench.http", "measure", loop_name, what,
           json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=600,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure_main(loop_name: str, what: str, args_json: str) -> int:
    from .loops import factory

    args = json.loads(args_json)
    coro_func = {"keepalive": _keepalive_result, "idle": _idle_result}[what]
    with asyncio.Runner(loop_factory=factory(loop_name)) as runner:
        result = runner.run(coro_func(**args))
    print(json.dumps(result))
    return 0


def _report_main(argv: list[str]) -> int:
    from .loops import LOOP_NAMES, unavailable_reason

    parser = argparse.ArgumentParser(prog="python -m conveyor.bench.http report")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=int, default=5, help="seconds (whole)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections (0: skip)")
    parser.add_argument("--loops", default=",".join(LOOP_NAMES))
    parser.add_argument("--no-nginx", action="store_true")
    ns = parser.parse_args(argv)
    names = [n for n in ns.loops.split(",") if n]

    def median(values: list[float]) -> float:
        values = sorted(values)
        return values[len(values) // 2] if values else float("nan")

    rows = []
    for name in names:
        reason = unavailable_reason(name)
        if reason:
            rows.append((name, reason))
            continue
        runs = [_measure_in_child(name, "keepalive", {
            "connections": ns.connections, "duration": ns.duration, "warmup": 1,
            "threads": ns.threads}) for _ in range(ns.repeat)]
        ok = [r for r in runs if "error" not in r]
        idle = _measure_in_child(name, "idle", {"connections": ns.idle}) if ns.idle else {}
        rows.append((name, {
            "rate": median([r["rate"] for r in ok]),
            "p50": median([r.get("p50", float("nan")) for r in ok]),
            "p99": median([r.get("p99", float("nan")) for r in ok]),
            "client_cpu": median([r.get("client_cpu", float("nan")) for r in ok]),
            "server_cpu": median([r.get("server_cpu_per_request", float("nan")) for r in ok]),
            "errors": [r["error"] for r in (*runs, idle) if "error" in r],
            "kib_per_conn": idle.get("bytes_per_connection", float("nan")) / 1024,
        }))
        print(f"measured {name}", file=sys.stderr, flush=True)
    if not ns.no_nginx:
        try:
            runs = [nginx_reference(ns.connections, ns.duration, ns.threads)
                    for _ in range(ns.repeat)]
            rows.append(("nginx (reference)", {
                "rate": median([r["rate"] for r in runs]),
                "p50": median([r.get("p50", float("nan")) for r in runs]),
                "p99": median([r.get("p99", float("nan")) for r in runs]),
                "client_cpu": median([r.get("client_cpu", float("nan")) for r in runs]),
                "server_cpu": float("nan"), "errors": [], "kib_per_conn": float("nan")}))
        except RuntimeError as exc:
            rows.append(("nginx (reference)", str(exc)))

    print(f"HTTP/1.1 keep-alive, wrk -t{ns.threads} -c{ns.connections} -d{ns.duration:g}s, "
          f"median of {ns.repeat}; idle RSS with {ns.idle} connections; "
          f"Python {sys.version.split()[0]}")
    print(f"{'server':<20} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'KiB/idle conn':>14} {'wrk CPU':>8} {'server us CPU/req':>18}")
    for name, row in rows:
        if isinstance(row, str):
            print(f"{name:<20} unavailable: {row}")
            continue
        print(f"{name:<20} {row['rate']:>11,.0f} {row['p50'] * 1e3:>8.2f} "
              f"{row['p99'] * 1e3:>8.2f} {row['kib_per_conn']:>14.2f} "
              f"{row['client_cpu']:>7.0%} {row['server_cpu'] * 1e6:>18.2f}"
              + (f"  errors: {row['errors']}" if row["errors"] else ""))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["idle-client"]:
        parser = argparse.ArgumentParser(prog="python -m conveyor.bench.http idle-client")
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--connections", type=int, default=10_000)
        args = parser.parse_args(argv[1:])
        try:
            import uvloop
            factory = uvloop.new_event_loop
        except ImportError:
            factory = asyncio.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_idle_client(args.port, args.connections))
        return 0
    if argv[:1] == ["measure"] and len(argv) == 4:
        return _measure_main(argv[1], argv[2], argv[3])
    if argv[:1] == ["report"]:
        return _report_main(argv[1:])
    sys.exit("usage: python -m conveyor.bench.http report [--help] | idle-client | measure")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A tiny HTTP/1.1 server on conveyor, with asyncio streams and nothing else.

    python examples/http_server.py [--host 127.0.0.1] [--port 8080]
    curl http://127.0.0.1:8080/anything
    python examples/http_server.py --port 0 --selftest     (start, GET itself, stop)

Every request gets "Hello from conveyor" and the path it asked for. Connections are kept
alive unless the client says "Connection: close" (or speaks HTTP/1.0). It reads just enough
of the protocol for the example: the request line and headers; request bodies are skipped by
Content-Length. Not a production server.
"""

from __future__ import annotations

import argparse
import asyncio

import conveyor

MAX_HEADER_LINES = 100


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, str, dict] | None:
    """The request line and headers, or None when the client closed the connection."""
    line = await reader.readline()
    if not line:
        return None
    method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if length:
        await reader.readexactly(length)
    return method, target, version, headers


#: Connection handlers still running, so a self-test can let them finish before it stops.
CONNECTIONS: set[asyncio.Task] = set()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    task = asyncio.current_task()
    CONNECTIONS.add(task)
    task.add_done_callback(CONNECTIONS.discard)
    try:
        while (request := await read_request(reader)) is not None:
            method, target, version, headers = request
            keep_alive = (version == "HTTP/1.1"
                          and headers.get("connection", "").lower() != "close")
            body = f"Hello from conveyor: {method} {target}\n".encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\n"
                b"Content-Type: text/plain; charset=utf-8\r\n"
                + f"Content-Length: {len(body)}\r\n".encode()
                + (b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
                + b"\r\n" + (b"" if method == "HEAD" else body))
            await writer.drain()
            if not keep_alive:
                break
    except (ValueError, ConnectionError, asyncio.IncompleteReadError):
        pass  # a malformed request or a client that left: drop the connection
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def selftest(host: str, port: int) -> None:
    """Two requests on one kept-alive connection; print each status line and body."""
    reader, writer = await asyncio.open_connection(host, port)
    for path, connection in (("/hello", "keep-alive"), ("/bye", "close")):
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                     f"Connection: {connection}\r\n\r\n".encode())
        await writer.drain()
        status = (await reader.readline()).decode().rstrip()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = (await reader.readexactly(length)).decode().rstrip()
        print(f"{status} | {body}")
    writer.close()
    await writer.wait_closed()


async def main(host: str, port: int, test: bool) -> None:
    server = await asyncio.start_server(handle, host, port)
    bound = server.sockets[0].getsockname()
    print(f"listening on http://{bound[0]}:{bound[1]}/", flush=True)
    async with server:
        if test:
            await selftest(bound[0], bound[1])
            if CONNECTIONS:
                await asyncio.wait(CONNECTIONS)  # the server side says goodbye too
        else:
            await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A tiny HTTP server on conveyor.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--selftest", action="store_true",
                        help="send two requests to the server, print the answers and exit")
    ns = parser.parse_args()
    try:
        conveyor.run(main(ns.host, ns.port, ns.selftest))
    except KeyboardInterrupt:
        pass

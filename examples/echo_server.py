"""An echo server on conveyor: every line a client sends comes straight back.

    python examples/echo_server.py [--host 127.0.0.1] [--port 8888]
    python examples/echo_server.py --port 0 --selftest     (start, talk to itself, stop)

Each connection gets its own coroutine; ``await reader.readline()`` suspends only that
connection while the loop serves the others. Port 0 asks the kernel for a free port; the
line "listening on HOST:PORT" says which one it gave.
"""

from __future__ import annotations

import argparse
import asyncio

import conveyor


#: Connection handlers still running, so a self-test can let them finish before it stops.
CONNECTIONS: set[asyncio.Task] = set()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    task = asyncio.current_task()
    CONNECTIONS.add(task)
    task.add_done_callback(CONNECTIONS.discard)
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    except ConnectionError:
        pass  # the client went away mid-line: nothing to answer
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def selftest(host: str, port: int) -> None:
    """Connect as a client, send three lines, print what comes back."""
    reader, writer = await asyncio.open_connection(host, port)
    for text in ("hello", "conveyor", "bye"):
        writer.write(text.encode() + b"\n")
        await writer.drain()
        print(f"echo: {(await reader.readline()).decode().rstrip()}")
    writer.close()
    await writer.wait_closed()


async def main(host: str, port: int, test: bool) -> None:
    server = await asyncio.start_server(handle, host, port)
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    async with server:
        if test:
            await selftest(bound[0], bound[1])
            if CONNECTIONS:
                await asyncio.wait(CONNECTIONS)  # the server side says goodbye too
        else:
            await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="An echo server on conveyor.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--selftest", action="store_true",
                        help="talk to the server once, print the echoes and exit")
    ns = parser.parse_args()
    try:
        conveyor.run(main(ns.host, ns.port, ns.selftest))
    except KeyboardInterrupt:
        pass

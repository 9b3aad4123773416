"""aiohttp (server and client) and httpx, unmodified, on conveyor and on stock asyncio.

Each test runs once per loop (differential: what passes on asyncio must pass on conveyor).
The server is aiohttp's own, on 127.0.0.1 port 0 or a Unix socket; the clients are aiohttp's
ClientSession and httpx's AsyncClient. Every test also checks that the loop's exception
handler was never called (and, like every test, the leak check of tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

import conveyor

aiohttp = pytest.importorskip("aiohttp", reason="pip install 'conveyor[integration]'")
httpx = pytest.importorskip("httpx", reason="pip install 'conveyor[integration]'")
from aiohttp import web  # noqa: E402

from support import bounded  # noqa: E402

LOOPS = {"asyncio": asyncio.new_event_loop, "conveyor": conveyor.new_event_loop}
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    """Run a coroutine on the loop this test instance is for; check handler calls."""
    factory = LOOPS[request.param]
    errors = []

    def runner(coro):
        with asyncio.Runner(loop_factory=factory) as r:
            loop = r.get_loop()
            if request.param == "conveyor":
                assert isinstance(loop, conveyor.EventLoop)
            loop.set_exception_handler(lambda _loop, context: errors.append(context))
            return r.run(bounded(coro, 30))

    yield runner
    assert errors == []


BIG = os.urandom(3 * 1024 * 1024)


def make_app() -> web.Application:
    async def hello(request):
        return web.Response(text=f"hello {request.match_info.get('name', 'world')}")

    async def echo(request):
        body = await request.read()
        return web.Response(body=body, headers={"X-Length": str(len(body))})

    async def big(request):
        response = web.StreamResponse()
        await response.prepare(request)
        for start in range(0, len(BIG), 65536):
            await response.write(BIG[start:start + 65536])
        await response.write_eof()
        return response

    async def websocket(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(message.data.upper())
            elif message.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        return ws

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_get("/", hello)
    app.router.add_get("/hello/{name}", hello)
    app.router.add_post("/echo", echo)
    app.router.add_get("/big", big)
    app.router.add_get("/ws", websocket)
    return app


class served:
    """`async with served() as base_url:` an aiohttp server on 127.0.0.1, port 0."""

    def __init__(self, unix_path: str | None = None):
        self.unix_path = unix_path

    async def __aenter__(self) -> str:
        self.runner = web.AppRunner(make_app())
        await self.runner.setup()
        if self.unix_path:
            site = web.UnixSite(self.runner, self.unix_path)
            await site.start()
            return "http://localhost"
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc_info) -> None:
        await self.runner.cleanup()


def test_aiohttp_client_and_server(run):
    async def main():
        async with served() as base, aiohttp.ClientSession() as session:
            async with session.get(f"{base}/hello/conveyor") as response:
                assert response.status == 200
                assert await response.text() == "hello conveyor"
            payload = os.urandom(1_000_000)
            async with session.post(f"{base}/echo", data=payload) as response:
                assert response.headers["X-Length"] == str(len(payload))
                assert await response.read() == payload
            async with session.get(f"{base}/big") as response:
                received = bytearray()
                async for chunk in response.content.iter_chunked(10_000):
                    received += chunk
                assert received == BIG
            # keep-alive: many requests over the pooled connection(s)
            async def fetch(i):
                async with session.get(f"{base}/hello/{i}") as response:
                    return await response.text()

            texts = await asyncio.gather(*(fetch(i) for i in range(50)))
            assert texts == [f"hello {i}" for i in range(50)]

    run(main())


def test_aiohttp_websocket(run):
    async def main():
        async with served() as base, aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{base}/ws") as ws:
                await ws.send_str("shout")
                assert (await ws.receive_str()) == "SHOUT"
                await ws.send_bytes(b"abc")
                assert (await ws.receive_bytes()) == b"cba"

    run(main())


def test_aiohttp_client_resolves_localhost(run):
    async def main():
        async with served() as base, aiohttp.ClientSession() as session:
            url = base.replace("127.0.0.1", "localhost")
            async with session.get(url) as response:
                assert await response.text() == "hello world"

    run(main())


def test_aiohttp_over_unix_socket(run, tmp_path):
    path = str(tmp_path / "http.sock")

    async def main():
        async with served(unix_path=path) as base:
            connector = aiohttp.UnixConnector(path=path)
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(f"{base}/hello/unix") as response:
                    assert await response.text() == "hello unix"

    run(main())


def test_httpx_against_aiohttp(run):
    async def main():
        async with served() as base, httpx.AsyncClient(base_url=base) as client:
            response = await client.get("/hello/httpx")
            assert (response.status_code, response.text) == (200, "hello httpx")
            payload = os.urandom(500_000)
            response = await client.post("/echo", content=payload)
            assert response.content == payload
            async with client.stream("GET", "/big") as response:
                received = bytearray()
                async for chunk in response.aiter_bytes():
                    received += chunk
            assert received == BIG
            responses = await asyncio.gather(*(client.get(f"/hello/{i}") for i in range(20)))
            assert [r.text for r in responses] == [f"hello {i}" for i in range(20)]

    run(main())


def test_httpx_connection_refused(run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused

        async def main():
            async with httpx.AsyncClient() as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get(f"http://127.0.0.1:{port}/")

        run(main())

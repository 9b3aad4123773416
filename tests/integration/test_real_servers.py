"""Existing asyncio libraries, unmodified, against real servers, on conveyor and on asyncio.

Each test runs once per loop (differential: what passes on asyncio must pass on conveyor).
Redis and PostgreSQL are Debian's servers, started here on Unix sockets in a temporary
directory (no ports to probe); `scripts/test.sh` installs them. Outside CI a missing server
skips its tests with the reason; in CI (CI=true) it fails them, so CI cannot pass by skipping.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import conveyor

from support import bounded, wait_until, wait_until_blocking

LOOPS = {"asyncio": asyncio.new_event_loop, "conveyor": conveyor.new_event_loop}
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    """Run a coroutine to completion on the loop this test instance is for."""
    factory = LOOPS[request.param]

    def runner(coro):
        with asyncio.Runner(loop_factory=factory) as r:
            if request.param == "conveyor":
                assert isinstance(r.get_loop(), conveyor.EventLoop)
            return r.run(bounded(coro, 30))
    return runner


def _require(binary: str) -> str:
    found = shutil.which(binary) or next(
        (str(p) for p in Path("/usr/lib/postgresql").glob(f"*/bin/{binary}")), None)
    if found is None:
        message = f"{binary} is not installed (scripts/test.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _wait_for_path(path: Path, proc: subprocess.Popen, what: str) -> None:
    wait_until_blocking(lambda: path.exists() or proc.poll() is not None,
                        f"{what} to create {path}", timeout=30)
    if proc.returncode is not None:
        raise RuntimeError(f"{what} exited with {proc.returncode}")


@pytest.fixture(scope="module")
def redis_socket():
    binary = _require("redis-server")
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "redis.sock"
        proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(sock), "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_path(sock, proc, "redis-server")
            yield str(sock)
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="module")
def postgres_dir():
    """A throwaway cluster owned by the 'postgres' user (PostgreSQL refuses to run as root)."""
    initdb = _require("initdb")
    postgres = str(Path(initdb).with_name("postgres"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    tmp = tempfile.mkdtemp(prefix="conveyor-pg-")
    try:
        if as_postgres:
            shutil.chown(tmp, "postgres", "postgres")
        data = Path(tmp) / "data"
        subprocess.run([*as_postgres, initdb, "-D", str(data), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = subprocess.Popen(
            [*as_postgres, postgres, "-D", str(data), "-k", tmp, "-c", "listen_addresses=",
             "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_path(Path(tmp) / ".s.PGSQL.5432", proc, "postgres")
            yield tmp
        finally:
            proc.terminate()
            proc.wait(20)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_redis_commands_and_pipeline(run, redis_socket):
    redis = pytest.importorskip("redis.asyncio")

    async def main():
        client = redis.Redis(unix_socket_path=redis_socket)
        try:
            await client.set("greeting", "hello")
            assert await client.get("greeting") == b"hello"
            async with client.pipeline(transaction=True) as pipe:
                for i in range(100):
                    pipe.incr("counter")
                results = await pipe.execute()
            assert results[-1] - results[0] == 99
            big = os.urandom(1 << 20)
            await client.set("big", big)
            assert await client.get("big") == big
        finally:
            await client.aclose()

    run(main())


def test_redis_pubsub(run, redis_socket):
    redis = pytest.importorskip("redis.asyncio")

    async def main():
        client = redis.Redis(unix_socket_path=redis_socket)
        try:
            pubsub = client.pubsub()
            await pubsub.subscribe("news")
            assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
            await client.publish("news", "first")
            message = None
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            assert message["data"] == b"first"
            await pubsub.aclose()
        finally:
            await client.aclose()

    run(main())


def test_asyncpg_queries_and_concurrency(run, postgres_dir):
    asyncpg = pytest.importorskip("asyncpg")

    async def main():
        pool = await asyncpg.create_pool(host=postgres_dir, user="postgres",
                                         database="postgres", min_size=2, max_size=5)
        try:
            async with pool.acquire() as conn:
                await conn.execute("CREATE TEMP TABLE t (id int, body text)")
                await conn.executemany("INSERT INTO t VALUES ($1, $2)",
                                       [(i, "x" * i) for i in range(500)])
                assert await conn.fetchval("SELECT sum(length(body)) FROM t") == sum(range(500))
            values = await asyncio.gather(*(pool.fetchval("SELECT $1::int * 2", i)
                                            for i in range(50)))
            assert values == [i * 2 for i in range(50)]
        finally:
            await pool.close()

    run(main())


def test_websockets_server_and_client(run):
    websockets = pytest.importorskip("websockets")

    async def main():
        async def echo(ws):
            async for message in ws:
                await ws.send(message)

        async with websockets.serve(echo, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
                for size in (1, 1000, 200_000):
                    payload = "y" * size
                    await ws.send(payload)
                    assert await ws.recv() == payload

    run(main())


def test_uvicorn_serves_asgi_to_httpx(run):
    uvicorn = pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = f"{scope['method']} {scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    async def main():
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error",
                                lifespan="off", loop="none")
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve())
        # uvicorn tells nobody when it has started: poll its flag.
        await wait_until(lambda: server.started or serving.done(), "uvicorn to start")
        if serving.done():
            serving.result()
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                responses = await asyncio.gather(*(client.get(f"/item/{i}") for i in range(20)))
            assert [r.text for r in responses] == [f"GET /item/{i}" for i in range(20)]
        finally:
            server.should_exit = True
            await serving

    run(main())

"""The net suite's sock_* server and the http suite: their server code and wrk parsing."""

from __future__ import annotations

import asyncio
import shutil

import pytest

import conveyor
from conveyor.bench import http as http_bench
from conveyor.bench import net

from support import bounded

pytestmark = pytest.mark.timeout(60)

WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:40000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.50us  301.20us  12.01ms   90.00%
    Req/Sec    60.12k     2.01k   63.00k    80.00%
  Latency Distribution
     50%  750.00us
     75%    0.90ms
     90%    1.10ms
     99%    2.50ms
  180360 requests in 3.00s, 16.34MB read
Requests/sec:  60120.00
Transfer/sec:      5.45MB
"""


def test_parse_wrk():
    result = http_bench.parse_wrk(WRK_OUTPUT)
    assert result["requests"] == 180360 and result["seconds"] == 3.0
    assert result["rate"] == pytest.approx(60120)
    assert result["p50"] == pytest.approx(750e-6)
    assert result["p99"] == pytest.approx(2.5e-3)
    assert result["errors"] == ""


def test_parse_wrk_rejects_garbage():
    with pytest.raises(ValueError, match="unexpected wrk output"):
        http_bench.parse_wrk("wrk: connection refused")


def test_http_protocol_keepalive_pipelining_and_close():
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(http_bench.HttpProtocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        writer.write(request * 3)  # pipelined: three answers on one connection
        for _ in range(3):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" not in head
            assert await reader.readexactly(13) == b"Hello, World!"
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()  # the server closes after answering
        assert b"Connection: close" in answer and answer.endswith(b"Hello, World!")
        writer.close()
        await writer.wait_closed()

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 400")
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    pytest.importorskip("httptools")
    conveyor.run(bounded(main(), 20))


def test_sock_echo_runs_against_the_separate_client():
    async def main():
        measured = await net.sock_echo(size=2048, connections=4, duration=0.3, warmup=0.1)
        assert measured.ops > 0 and measured.seconds > 0 and measured.cpu > 0
        measured = await net.sock_echo(size=1024, connections=2, duration=0.2, warmup=0.05,
                                       recv_into=True)
        assert measured.ops > 0 and measured.cpu > 0

    conveyor.run(bounded(main(), 50))


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed "
                    "(apt-get install -y wrk)")
def test_keepalive_under_wrk():
    pytest.importorskip("httptools")

    async def main():
        measured = await http_bench.keepalive(connections=4, duration=1, warmup=0)
        assert measured.ops > 0 and measured.seconds > 0 and measured.cpu > 0

    conveyor.run(bounded(main(), 50))

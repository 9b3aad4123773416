"""A slow reader fed a big body: every byte arrives, and the server's memory stays bounded.

The reader takes 64 KiB every 10 ms, so the server runs into flow control again and again.
(a) An asyncio.Protocol writes until pause_writing() and writes the next chunk from
resume_writing(), the classic streaming pattern; (b) a streams handler awaits drain() after
every chunk. Both must deliver the exact body (SHA-256) and close; with flow control bounding
the write buffer, the server's peak RSS may grow by less than PEAK_RSS_GROWTH.
"""

from __future__ import annotations

import pytest

from stress_body import CHUNK, body_sha256
from stress_clients import ASYNCIO_CLOSE_IN_RESUME, loop_params, slow_read
from stress_config import CASE_TIMEOUT, PEAK_RSS_GROWTH, SIZES, STALL_SECONDS, MiB


def check_slow_reader(start_server, loop_name, kind):
    total = SIZES.body_bytes
    expected = body_sha256(total)
    server = start_server(loop_name)
    port = server.call("serve", kind=kind, chunks=total // CHUNK)["port"]
    before = server.call("reset_peak")

    received, sha = slow_read(port, step=64 * 1024, pace=0.01, stall=STALL_SECONDS)

    assert received == total, f"received {received} of {total} bytes"
    assert sha == expected, "body arrived altered (SHA-256 differs)"
    stats = server.call("wait", field="lost", n=1, within=10)
    assert not stats["timeout"], "connection_lost never ran after the body was sent"
    stats = server.call("stats")
    growth = stats["hwm"] - before["rss"]
    assert growth < PEAK_RSS_GROWTH, f"server peak RSS grew by {growth / MiB:.1f} MiB"
    assert (stats["made"], stats["lost"], stats["lost_twice"], stats["after_lost"]) == (1, 1, 0, 0)
    assert stats["handler_calls"] == []


@pytest.mark.timeout(CASE_TIMEOUT)
@pytest.mark.parametrize("loop_name", loop_params(asyncio_xfail=ASYNCIO_CLOSE_IN_RESUME))
def test_slow_reader_protocol_writes_from_resume_writing(start_server, loop_name):
    check_slow_reader(start_server, loop_name, "push-protocol")


@pytest.mark.timeout(CASE_TIMEOUT)
@pytest.mark.parametrize("loop_name", loop_params())
def test_slow_reader_streams_drain(start_server, loop_name):
    check_slow_reader(start_server, loop_name, "push-streams")

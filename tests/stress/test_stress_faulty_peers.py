"""Peers that misbehave while the server has megabytes buffered for them.

The server writes `faulty_buffered` bytes to every connection in one of two ways:
- flood-write: one big write() in connection_made, flow control ignored, so megabytes sit in
  the transport's buffer; the protocol lets the transport close on EOF (the default), which
  must flush the whole buffer first;
- flood-push: write until pause_writing(), the next chunk from resume_writing(), keep the
  connection open on EOF (eof_received returns True) and close() after the last chunk.
Against flood-write each peer shrinks its receive buffer to 32 KiB, so the server cannot hand
its data to the kernel; against flood-push peers keep the default buffer, so sends often
drain the transport's buffer completely (the moment resume_writing() writes into an empty
buffer). Each peer does one of:
- reset: reads a little, then closes with SO_LINGER 0 (RST mid-write);
- unread: sends a little, reads a little, closes with the server's data unread (the kernel
  answers with RST);
- half-close: shuts down its writing side at once, then reads everything: the whole body
  and then EOF must arrive.
Afterwards: connection_lost exactly once per connection, nothing after it, the server's fds
back to where they started, and no CPU spin once the peers are gone.
"""

from __future__ import annotations

import pytest

from stress_clients import (ASYNCIO_CLOSE_IN_RESUME, PEERS, flood_sha, loop_params,
                            peer_halfclose, run_many, xfail_on_asyncio)
from stress_config import CASE_TIMEOUT, IDLE_CPU_FRACTION, SIZES

WRITERS = ["flood-write", "flood-push"]
RCVBUF = {"flood-write": 32 * 1024, "flood-push": None}


@pytest.mark.timeout(CASE_TIMEOUT)
@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("loop_name", loop_params())
def test_faulty_peers_lose_exactly_once(request, start_server, loop_name, writer):
    if writer == "flood-push":
        xfail_on_asyncio(request, loop_name, ASYNCIO_CLOSE_IN_RESUME)
    size, n = SIZES.faulty_buffered, SIZES.faulty_peers
    sha = flood_sha(size)
    server = start_server(loop_name)
    port = server.call("serve", kind=writer, bytes=size)["port"]
    base = server.call("stats")

    def peer(i):
        PEERS[i % len(PEERS)](port, size, sha, RCVBUF[writer])

    errors = run_many(peer, n, SIZES.faulty_concurrency)
    waited = server.call("wait", field="lost", n=n, within=30)
    stats = server.call("stats")
    summary = {k: stats[k] for k in ("made", "lost", "lost_twice", "after_lost", "lost_exc",
                                     "fds", "handler_count")}
    assert errors == [], f"{len(errors)}+ peers failed, first: {errors[0]!r}; server {summary}"
    assert not waited["timeout"], f"connection_lost missing; server {summary}"
    assert stats["made"] == stats["lost"] == n, summary
    assert (stats["lost_twice"], stats["after_lost"]) == (0, 0), summary
    assert stats["fds"] == base["fds"], f"open fds {base['fds']} -> {stats['fds']}"
    assert stats["handler_calls"] == []
    cpu = server.idle_cpu_fraction()
    assert cpu < IDLE_CPU_FRACTION, f"server used {cpu:.0%} CPU while idle (spinning)"


@pytest.mark.timeout(CASE_TIMEOUT)
@pytest.mark.parametrize("loop_name", loop_params())
@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.__name__)
def test_each_faulty_peer_alone(request, start_server, loop_name, peer, writer):
    """One kind of fault at a time, a few peers: names the kind when the mixed case fails."""
    if writer == "flood-push" and peer is peer_halfclose:
        xfail_on_asyncio(request, loop_name, ASYNCIO_CLOSE_IN_RESUME)
    size, n = SIZES.faulty_buffered, 9
    sha = flood_sha(size)
    server = start_server(loop_name)
    port = server.call("serve", kind=writer, bytes=size)["port"]
    base = server.call("stats")
    errors = run_many(lambda _i: peer(port, size, sha, RCVBUF[writer]), n, 3)
    waited = server.call("wait", field="lost", n=n, within=15)
    stats = server.call("stats")
    summary = {k: stats[k] for k in ("made", "lost", "lost_twice", "after_lost", "lost_exc",
                                     "fds", "handler_count")}
    assert errors == [], f"peer failed: {errors[0]!r}; server {summary}"
    assert not waited["timeout"], f"connection_lost missing; server {summary}"
    assert (stats["lost_twice"], stats["after_lost"]) == (0, 0), summary
    assert stats["fds"] == base["fds"], f"open fds {base['fds']} -> {stats['fds']}"
    assert stats["handler_calls"] == []
    cpu = server.idle_cpu_fraction()
    assert cpu < IDLE_CPU_FRACTION, f"server used {cpu:.0%} CPU while idle (spinning)"

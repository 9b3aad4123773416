"""What production throws at a server beyond load: running out of fds, peers that connect
and do nothing, and a peer that never reads while the application keeps writing.

- EMFILE on accept: the server process runs with RLIMIT_NOFILE just above what it holds, and
  more clients connect than it can accept. While it is out of fds it must not spin (the
  listening socket stays readable, so a loop that retries at once burns a core); once fds
  come back it must accept the backlog and keep serving. Reports through the exception
  handler are expected here, but only about accept() running out of fds, and few of them.
- Idle peers: connections that never send cost no CPU and do not slow the others; when they
  go, everything they held goes with them.
- A hog: a protocol that ignores pause_writing() buffers a lot for a peer that never reads;
  abort() must drop the buffer, and the memory must come back.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

import pytest

from stress_clients import connect, echo_once, loop_params, run_many
from stress_config import (CASE_TIMEOUT, HOG_RSS_TOLERANCE, IDLE_CPU_FRACTION, SIZES, MiB)

ROOM = 20          # fds the EMFILE server may open beyond what it holds at start
OVERFLOW = 2 * ROOM


ASYNCIO_EMFILE_FLOOD = (
    "stock asyncio: on EMFILE its accept loop goes on for the rest of the backlog count, "
    "calling the exception handler once per attempt (about 200 reports in this case)")


@pytest.mark.timeout(CASE_TIMEOUT)
@pytest.mark.parametrize("loop_name", loop_params(asyncio_xfail=ASYNCIO_EMFILE_FLOOD))
def test_emfile_on_accept_no_spin_and_recovers(start_server, loop_name):
    server = start_server(loop_name, nofile=ROOM)
    port = server.call("serve", kind="echo-protocol", backlog=OVERFLOW * 2)["port"]
    base_fds = server.fds()
    payload = os.urandom(1024)

    held = [connect(port) for _ in range(OVERFLOW)]  # the kernel completes them all
    try:
        for sock in held:
            sock.sendall(payload)
        # Some get accepted before the limit bites; wait for those, then for the limit.
        assert not server.call("wait", field="made", n=ROOM // 2, within=10)["timeout"]
        exhausted_cpu = server.idle_cpu_fraction()
        made_while_exhausted = server.call("wait", field="made", n=OVERFLOW, within=0)["made"]
    finally:
        for sock in held:
            sock.close()

    # Every backlog connection is accepted once fds are back (the clients are gone by then,
    # so each one sees EOF at once), and new clients are served.
    waited = server.call("wait", field="lost", n=OVERFLOW, within=15)
    assert not waited["timeout"], (
        f"after fds came back only {waited['made']} of {OVERFLOW} connections were accepted "
        f"and {waited['lost']} closed")
    assert run_many(lambda _i: echo_once(port, payload), ROOM, 4) == []
    assert not server.call("wait", field="lost", n=OVERFLOW + ROOM, within=10)["timeout"]
    stats = server.call("stats")
    idle_cpu = server.idle_cpu_fraction()

    assert made_while_exhausted < OVERFLOW, "the fd limit never bit: the case tested nothing"
    assert exhausted_cpu < IDLE_CPU_FRACTION * 2, (
        f"server used {exhausted_cpu:.0%} CPU while out of fds (spinning on accept)")
    assert idle_cpu < IDLE_CPU_FRACTION, f"server used {idle_cpu:.0%} CPU idle after recovery"
    assert (stats["lost_twice"], stats["after_lost"]) == (0, 0)
    assert server.fds() == base_fds
    emfile = (f"OSError({errno.EMFILE}, ", f"OSError({errno.ENFILE}, ")
    others = [c for c in stats["handler_calls"] if not any(e in c for e in emfile)]
    assert others == [], f"unexpected exception handler calls: {others}"
    assert stats["handler_count"] <= 5, (
        f"{stats['handler_count']} reports of the same exhaustion: {stats['handler_calls'][:3]}")


@pytest.mark.timeout(CASE_TIMEOUT)
@pytest.mark.parametrize("kind", ["echo-protocol", "echo-streams"])
@pytest.mark.parametrize("loop_name", loop_params())
def test_idle_peers_cost_nothing(start_server, loop_name, kind):
    server = start_server(loop_name)
    port = server.call("serve", kind=kind)["port"]
    base = server.call("stats")
    n = SIZES.idle_peers
    idle = [connect(port) for _ in range(n)]
    try:
        assert not server.call("wait", field="made", n=n, within=15)["timeout"]
        cpu = server.idle_cpu_fraction()
        # The others are served while the idle ones sit there.
        assert run_many(lambda _i: echo_once(port, os.urandom(1024)), 50, 4) == []
    finally:
        for sock in idle:
            sock.close()
    waited = server.call("wait", field="lost", n=n + 50, within=15)
    stats = server.call("stats", settle_memory=True)

    assert cpu < IDLE_CPU_FRACTION, f"{n} idle peers cost {cpu:.0%} CPU"
    assert not waited["timeout"], f"connection_lost ran {waited['lost']} of {n + 50} times"
    assert (stats["lost_twice"], stats["after_lost"], stats["live_protocols"]) == (0, 0, 0)
    assert stats["fds"] == base["fds"]
    assert stats["handler_calls"] == []


@pytest.mark.timeout(CASE_TIMEOUT)
@pytest.mark.parametrize("loop_name", loop_params())
def test_abort_returns_a_huge_write_buffer(start_server, loop_name):
    server = start_server(loop_name)
    port = server.call("serve", kind="hog", bytes=SIZES.hog_bytes)["port"]
    before = server.call("stats", settle_memory=True)
    sock = connect(port, rcvbuf=32 * 1024)  # and never read
    try:
        assert not server.call("wait", field="made", n=1, within=10)["timeout"]
        full = server.call("stats")
        server.call("abort_all", timeout=10)
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    after = server.call("stats", settle_memory=True)

    buffered = full["hog_buffered"]
    assert buffered > SIZES.hog_bytes * 0.9, f"only {buffered} bytes buffered: tested nothing"
    assert full["rss"] - before["rss"] > SIZES.hog_bytes / 2, "the buffer did not show in RSS"
    kept = after["rss"] - before["rss"]
    assert kept < HOG_RSS_TOLERANCE, f"{kept / MiB:.1f} MiB still held after abort()"
    assert (after["made"], after["lost"], after["lost_twice"]) == (1, 1, 0)
    assert after["live_protocols"] == 0
    assert after["fds"] == before["fds"]
    assert after["handler_calls"] == []

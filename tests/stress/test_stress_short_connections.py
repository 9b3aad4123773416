"""Many short connections (connect, 1 KiB echo, close): nothing accumulates in the server.

After a warm-up (free lists, caches and lazily imported modules settle), the server's open
fds, live protocol objects and RSS are read; after the main run they must be back: fds
exactly, protocols to zero, RSS within RSS_RETURN_TOLERANCE.
"""

from __future__ import annotations

import os

import pytest

from stress_clients import echo_once, loop_params, run_many
from stress_config import CASE_TIMEOUT, RSS_RETURN_TOLERANCE, SIZES, MiB

CLIENT_THREADS = 4


@pytest.mark.timeout(CASE_TIMEOUT)
@pytest.mark.parametrize("kind", ["echo-protocol", "echo-streams"])
@pytest.mark.parametrize("loop_name", loop_params())
def test_short_connections_leave_nothing_behind(start_server, loop_name, kind):
    server = start_server(loop_name)
    port = server.call("serve", kind=kind)["port"]
    payload = os.urandom(1024)

    def conn(_i):
        echo_once(port, payload)

    warmup, n = SIZES.short_warmup, SIZES.short_connections
    assert run_many(conn, warmup, CLIENT_THREADS) == []
    assert not server.call("wait", field="lost", n=warmup, within=30)["timeout"]
    base = server.call("stats", settle_memory=True)
    assert base["live_protocols"] == 0

    errors = run_many(conn, n, CLIENT_THREADS)
    assert errors == [], f"{len(errors)}+ connections failed, first: {errors[0]!r}"
    waited = server.call("wait", field="lost", n=warmup + n, within=60)
    assert not waited["timeout"], (
        f"connection_lost ran {waited['lost']} times for {waited['made']} connections")
    end = server.call("stats", settle_memory=True)

    assert end["made"] == end["lost"] == warmup + n
    assert (end["lost_twice"], end["after_lost"]) == (0, 0)
    assert end["live_protocols"] == 0, f"{end['live_protocols']} protocol objects still alive"
    assert end["fds"] == base["fds"], f"open fds {base['fds']} -> {end['fds']}"
    growth = end["rss"] - base["rss"]
    assert growth < RSS_RETURN_TOLERANCE, f"RSS grew by {growth / MiB:.1f} MiB over {n} conns"
    assert end["handler_calls"] == []

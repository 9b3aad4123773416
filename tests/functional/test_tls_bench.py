"""The tls benchmark suite: its echo server, client and CPU accounting, kept honest."""

from __future__ import annotations

import shutil

import pytest

import conveyor
from conveyor.bench import tls as tls_bench

from support import bounded

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("openssl") is None,
                       reason="the tls benchmark makes its certificate with openssl"),
]

QUICK = {"connections": 3, "duration": 0.3, "warmup": 0.2}


@pytest.mark.parametrize("options", [
    {"size": 1024},
    {"size": 100 * 1024},
    {"size": 1024, "layer": "conveyor"},
], ids=["echo_1k", "echo_100k", "echo_1k_layered"])
def test_tls_echo_workload_on_conveyor(options):
    measured = conveyor.run(bounded(tls_bench.tls_echo(**QUICK, **options), 30))
    assert measured.ops > 0 and measured.seconds > 0 and measured.cpu > 0


def test_unknown_layer_is_refused():
    with pytest.raises(ValueError, match="layer must be 'loop' or 'conveyor', got 'nope'"):
        conveyor.run(tls_bench.tls_echo(**QUICK, layer="nope"))


def test_workloads_are_registered():
    names = {w.name for w in tls_bench.WORKLOADS}
    assert {"echo_1k", "echo_100k", "echo_1k_layered"} <= names
    assert all(w.served and not w.ceiling for w in tls_bench.WORKLOADS)

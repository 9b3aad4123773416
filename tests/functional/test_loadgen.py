"""The bench's load generator: the C programs build, run, and report sane figures; the
Python client stands in when they cannot be built.

No timing is asserted (the machine is shared): only that messages flow, the counts add up,
and the CPU figures are there and plausible.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import conveyor
from conveyor.bench import cbuild, loadgen, net

pytestmark = pytest.mark.timeout(90)

needs_c = pytest.mark.skipif(not sys.platform.startswith("linux") or cbuild.compiler() is None,
                             reason="the C load generator needs Linux and a C compiler")

LOAD = {"size": 1024, "connections": 4, "duration": 0.5, "warmup": 0.1}


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> loadgen.LoadPlan:
    """The C programs, built once into a cache of this module's own, unpinned."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        if cbuild.compiler() is None:
            pytest.skip("no C compiler")
        return loadgen.resolve(pin_cpus=False)


def _sane(measured) -> None:
    """Messages flowed over a window of the asked length, and both CPU figures fit in it."""
    assert measured.ops > 0
    assert LOAD["duration"] <= measured.seconds < 30
    most = measured.seconds * (os.cpu_count() or 1) + 0.1
    assert measured.cpu is not None and 0 < measured.cpu < most
    assert measured.client_cpu is not None and 0 <= measured.client_cpu < most


@needs_c
@pytest.mark.parametrize("size", [1024, 100 * 1024])
def test_c_client_against_the_c_echo_server(plan, size):
    assert plan.echo_server and not loadgen._is_python(plan.tcp), plan.notes
    measured = loadgen.ceiling(**{**LOAD, "size": size}, plan=plan)
    _sane(measured)


@needs_c
@pytest.mark.parametrize("size", [1024, 100 * 1024])
def test_c_client_against_the_pure_python_echo_server(plan, size):
    measured = loadgen.ceiling(**{**LOAD, "size": size}, plan=plan, python=sys.executable)
    _sane(measured)


@pytest.mark.parametrize("server", ["c", "python"])
def test_the_echo_servers_keep_what_a_full_socket_refuses(server, plan):
    """A peer that sends 8 MiB before reading any fills the server's send buffer: what the
    socket refuses is kept and sent later, byte for byte; a peer that resets is dropped
    and the others still served; the end of standard input ends the server."""
    from conveyor.bench import bare_echo

    if server == "c" and plan.echo_server is None:
        pytest.skip(f"the C echo server did not build: {plan.notes}")
    command = ([plan.echo_server] if server == "c"
               else [sys.executable, bare_echo.__file__])
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as server:
        port = int(server.stdout.readline())
        payload = random.Random(7).randbytes(8 << 20)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as peer:
            sender = peer.dup()
            writer = threading.Thread(target=sender.sendall, args=(payload,))
            writer.start()
            got = bytearray()
            while len(got) < len(payload):
                chunk = peer.recv(1 << 20)
                assert chunk, "the server closed early"
                got += chunk
            writer.join(30)
            sender.close()
        assert bytes(got) == payload
        with socket.create_connection(("127.0.0.1", port), timeout=30) as resetting:
            resetting.sendall(b"x")
            assert resetting.recv(1) == b"x"
            # A reset (linger 0) reaches the server as IN|HUP|ERR, not a plain EOF.
            resetting.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with socket.create_connection(("127.0.0.1", port), timeout=30) as second:
            second.sendall(b"still serving")
            assert second.recv(100) == b"still serving"
        server.stdin.close()
        assert server.wait(10) == 0


@needs_c
def test_c_client_json(plan):
    """The raw output: a start line, then JSON whose byte count is messages x size."""
    with subprocess.Popen([plan.echo_server], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as server:
        port = int(server.stdout.readline())
        result = loadgen.run(port, **{**LOAD, "size": 3000}, server_pid=server.pid, plan=plan)
        server.stdin.close()
        assert server.wait(10) == 0  # end of stdin is its signal to exit
    assert result["client"] == "c" and result["tls"] is False
    assert result["messages"] > 0 and result["bytes"] == result["messages"] * 3000
    assert result["connections"] == 4 and result["size"] == 3000
    assert result["server_cpu"] > 0 and result["client_cpu"] >= 0


@needs_c
@pytest.mark.parametrize("kind", ["proto", "streams", "sock"])
def test_c_client_against_conveyor_servers(plan, kind, monkeypatch):
    monkeypatch.setenv(loadgen.ENV, plan.to_env())
    func = {"proto": net.proto_echo, "streams": net.streams_echo, "sock": net.sock_echo}[kind]
    measured = conveyor.run(asyncio.wait_for(func(**LOAD), 30))
    _sane(measured)


@needs_c
@pytest.mark.skipif(shutil.which("openssl") is None, reason="the tls bench makes its "
                    "certificate with the openssl tool")
def test_c_tls_client_against_conveyor(plan, monkeypatch):
    if loadgen._is_python(plan.tls):
        pytest.skip(f"the TLS load generator did not build: {plan.notes}")
    from conveyor.bench import tls

    monkeypatch.setenv(loadgen.ENV, plan.to_env())
    measured = conveyor.run(asyncio.wait_for(tls.tls_echo(**LOAD), 30))
    _sane(measured)


def test_without_a_compiler_the_python_client_stands_in(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    plan = loadgen.resolve(pin_cpus=False)
    assert loadgen._is_python(plan.tcp) and loadgen._is_python(plan.tls)
    assert plan.echo_server is None
    assert any(note.startswith("warning: the C load generator cannot be built here: no C "
                               "compiler (tried CC=no-such-compiler-here") for note in plan.notes)
    assert "Python client" in plan.describe()
    monkeypatch.setenv(loadgen.ENV, plan.to_env())
    measured = conveyor.run(asyncio.wait_for(net.proto_echo(**LOAD), 30))
    _sane(measured)


@needs_c
def test_builds_are_cached_and_redone_when_the_source_changes(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = cbuild.build("echo_server")
    assert first.parent == tmp_path / "conveyor" / "bench"
    stamp = first.stat().st_mtime_ns
    assert cbuild.build("echo_server") == first and first.stat().st_mtime_ns == stamp
    original = cbuild._source
    monkeypatch.setattr(cbuild, "_source",
                        lambda program: original(program) + b"\n/* edited */\n")
    second = cbuild.build("echo_server")
    assert second != first and os.access(second, os.X_OK)


@needs_c
def test_a_compile_error_is_a_build_error(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(cbuild, "_source", lambda program: b"this is not C;\n")
    with pytest.raises(cbuild.BuildError, match="could not build echo_server.c"):
        cbuild.build("echo_server")


def test_cpu_seconds_of_another_process():
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        first = loadgen.cpu_seconds(child.pid)
        time.sleep(0.3)
        second = loadgen.cpu_seconds(child.pid)
    finally:
        child.kill()
        child.wait()
    assert 0 <= first < second < 5


def test_plan_travels_through_the_environment():
    plan = loadgen.LoadPlan(("/bin/loadgen",), ("python", "-m", "conveyor.bench.pyloadgen"),
                            "/bin/echo", (0,), (1,), ("a note",))
    assert loadgen.LoadPlan.from_env(plan.to_env()) == plan
    assert plan.describe() == ("load from the C client (loadgen.c), TLS: Python client, "
                               "client pinned to CPU 0, server to CPU 1")


def test_sources_ship_with_the_package():
    package = Path(loadgen.__file__).parent
    assert (package / "loadgen.c").is_file() and (package / "echo_server.c").is_file()
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"conveyor.bench" = ["*.c"]' in pyproject

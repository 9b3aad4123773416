"""The talk's examples and ``python -m conveyor demo``, run as a user would run them.

Each runs in its own interpreter (``sys.executable``) with a bounded timeout; the tests check
what it prints. Timing checks compare runs against each other with wide margins, never
against tight absolute numbers: the machine is shared.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import conveyor

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.timeout(90)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_example(name: str, *args: str, cwd: Path | None = None, timeout: float = 60,
                check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd or ROOT,
                          env=_env(), capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def seconds(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return float(match.group(1))


MOVE_ARGS = ("--boxes", "40", "--batch-size", "10",
             "--pack", "0.02", "--transport", "0.1", "--unpack", "0.02")


def test_move_sequential_adds_up_the_waits():
    out = run_example("move.py", *MOVE_ARGS).stdout
    steps = [line for line in out.splitlines() if line.startswith("batch")]
    assert len(steps) == 4 * 4
    # One batch after another: batch n is done before batch n+1 starts packing.
    order = [int(line.split()[1]) for line in steps]
    assert order == sorted(order)
    took = seconds(r"sequential: 4 batches in ([\d.]+) s", out)
    assert took >= 0.9 * 4 * 0.14


def test_move_concurrent_takes_about_one_batch():
    sequential = run_example("move.py", *MOVE_ARGS).stdout
    concurrent = run_example("move_async.py", *MOVE_ARGS).stdout
    steps = [line for line in concurrent.splitlines() if line.startswith("batch")]
    assert len(steps) == 4 * 4
    # Every batch starts packing before any batch finishes.
    first_done = next(i for i, line in enumerate(steps) if line.endswith("done"))
    assert sum(line.endswith(": packing") for line in steps[:first_done]) == 4
    took_seq = seconds(r"in ([\d.]+) s", sequential)
    took_con = seconds(r"concurrent: 4 batches in ([\d.]+) s", concurrent)
    assert took_con >= 0.9 * 0.14
    assert took_con * 2 < took_seq  # expected about 4x; 2x leaves room for a busy machine


def test_order():
    out = run_example("order.py").stdout.splitlines()
    assert out == ["-- loop.call_soon", "One", "Three", "Two",
                   "-- loop.call_later(0, ...)", "One", "Three", "Two",
                   "-- asyncio.create_task", "One", "Three", "Two"]


def test_blocked_loop():
    proc = run_example("blocked_loop.py", "--work", "0.6")
    lines = proc.stdout.splitlines()
    blocking = next(line for line in lines if line.startswith("blocking:"))
    yielding = next(line for line in lines if line.startswith("yielding:"))
    assert blocking.startswith("blocking: 0 heartbeat ticks")  # nothing else ran
    assert seconds(r"longest gap between ticks: ([\d.]+) s", blocking) >= 0.55
    ticks = int(re.match(r"yielding: (\d+) heartbeat ticks", yielding).group(1))
    assert ticks >= 2  # about 12 expected; the loop stayed live
    assert seconds(r"longest gap between ticks: ([\d.]+) s", yielding) < 0.55
    if getattr(conveyor, "watchdog", None) is not None:
        stalls = int(re.search(r"watchdog: (\d+) stall", proc.stdout).group(1))
        assert stalls >= 1
        assert "blocked" in proc.stderr and "crunch" in proc.stderr  # the blocking stack


def test_blocked_loop_without_watchdog():
    proc = run_example("blocked_loop.py", "--work", "0.3", "--no-watchdog")
    assert "watchdog" not in proc.stdout
    assert proc.stdout.startswith("blocking: 0 heartbeat ticks")


def test_read_file_three_ways(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("first line\nsecond line\n")
    lines = run_example("read_file.py", str(path)).stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["callback", "future", "await"]
    for line in lines:
        assert line.endswith("read 23 characters, first line: 'first line'")


def test_read_file_reports_a_missing_file(tmp_path):
    proc = run_example("read_file.py", str(tmp_path / "missing"), check=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        f"callback: [Errno 2] No such file or directory: '{tmp_path / 'missing'}'",
        f"future/await: [Errno 2] No such file or directory: '{tmp_path / 'missing'}'"]


def test_echo_server_selftest():
    out = run_example("echo_server.py", "--port", "0", "--selftest").stdout.splitlines()
    assert out[0].startswith("listening on 127.0.0.1:")
    assert out[1:] == ["echo: hello", "echo: conveyor", "echo: bye"]


def test_http_server_selftest():
    out = run_example("http_server.py", "--port", "0", "--selftest").stdout.splitlines()
    assert out[0].startswith("listening on http://127.0.0.1:")
    assert out[1:] == ["HTTP/1.1 200 OK | Hello from conveyor: GET /hello",
                       "HTTP/1.1 200 OK | Hello from conveyor: GET /bye"]


class Server:
    """An example server in a child process; stopped with Ctrl-C (SIGINT) as a user would."""

    def __init__(self, name: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(EXAMPLES / name), "--port", "0"],
                                     env=_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # "listening on ...:PORT" once it is bound
        match = re.search(r":(\d+)/?$", line.strip())
        assert match, (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.port = int(match.group(1))

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            _out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        return self.proc.returncode, err


def test_echo_server_serves_clients():
    server = Server("echo_server.py")
    try:
        clients = [socket.create_connection(("127.0.0.1", server.port), timeout=10)
                   for _ in range(3)]
        for i, client in enumerate(clients):
            client.sendall(f"client {i}\n".encode())
        for i, client in enumerate(clients):
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = client.recv(100)
                assert chunk
                reply += chunk
            assert reply == f"client {i}\n".encode()
            client.close()
    finally:
        status, err = server.stop()
    assert status == 0, err


def test_http_server_answers_urllib():
    server = Server("http_server.py")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/some/path",
                                    timeout=10) as response:
            assert response.status == 200
            assert response.read() == b"Hello from conveyor: GET /some/path\n"
    finally:
        status, err = server.stop()
    assert status == 0, err


# -- python -m conveyor demo ------------------------------------------------------------------


def run_demo(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "conveyor", "demo", *args], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc


def test_demo(tmp_path):
    """The full demo, as `python -m conveyor demo` runs it, within its 30 s budget."""
    out = run_demo(cwd=tmp_path).stdout
    one_by_one = seconds(r"one batch after another: +([\d.]+) s", out)
    at_once = seconds(r"all batches at once: +([\d.]+) s", out)
    assert one_by_one >= 0.9 * 5 * 0.3
    assert at_once * 2 < one_by_one
    assert re.search(r"[\d.]+x faster", out)
    assert out.count("One, Three, Two") == 3
    for label in ("loop.call_soon", "loop.call_later(0, ...)", "asyncio.create_task"):
        assert label in out
    if getattr(conveyor, "trace", None) is not None:
        assert (tmp_path / "conveyor-demo.html").read_text().lstrip().lower().startswith(
            "<!doctype html")
        assert str(tmp_path / "conveyor-demo.html") in out


def test_demo_quick_options(tmp_path):
    trace = tmp_path / "t.json"
    out = run_demo("--quick", "--verbose", "--trace", str(trace), cwd=tmp_path).stdout
    assert "batch 3 (boxes 21-30): done" in out
    if getattr(conveyor, "trace", None) is not None:
        assert '"traceEvents"' in trace.read_text()
    out = run_demo("--quick", "--no-trace", cwd=tmp_path).stdout
    assert "Timeline" not in out
    assert not (tmp_path / "conveyor-demo.html").exists()


def test_demo_main_is_callable_in_process(capsys, tmp_path):
    from conveyor import demo

    assert demo.main(["--quick", "--no-trace"]) == 0
    assert "One, Three, Two" in capsys.readouterr().out

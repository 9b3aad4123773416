"""The live console: a real program opens it (in code, with `run --console`, or from the
environment); a client connects over the Unix socket and gets answers even while the loop
is blocked; detaching removes every instrument; the socket is private and removed at exit."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conveyor.console_client import ConsoleClient, ConsoleError
from conveyor.observe.console import candidate_paths

ROOT = Path(__file__).resolve().parents[2]
APP = str(Path(__file__).with_name("console_app.py"))
DEADLINE = 10.0


def _line_of(marker: str) -> int:
    with open(APP) as source:
        for number, line in enumerate(source, 1):
            if marker in line:
                return number
    raise AssertionError(marker)


class App:
    """console_app.py in a subprocess, driven through its stdin."""

    def __init__(self, *args: str, mode: str = "run", env: dict | None = None) -> None:
        full_env = dict(os.environ, PYTHONPATH=str(ROOT))
        full_env.pop("CONVEYOR_CONSOLE", None)
        full_env.update(env or {})
        if mode == "run":
            argv = [sys.executable, "-m", "conveyor", "run", *args, APP]
        else:
            argv = [sys.executable, APP, *args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=full_env)
        self.expect("ready")

    def expect(self, word: str) -> None:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(DEADLINE)
        assert result and result[0].strip() == word, (word, result)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def socket_path(self) -> str:
        found = [p for p in candidate_paths(self.proc.pid) if os.path.exists(p)]
        assert found, candidate_paths(self.proc.pid)
        return found[0]

    def client(self) -> ConsoleClient:
        return ConsoleClient.for_target(str(self.proc.pid))

    def quit(self) -> int:
        self.send("quit")
        self.proc.stdin.close()
        return self.proc.wait(DEADLINE)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE)
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


@pytest.fixture
def app():
    apps: list[App] = []

    def start(*args: str, **kwargs) -> App:
        apps.append(App(*args, **kwargs))
        return apps[-1]

    yield start
    for started in apps:
        started.kill()


def until(fetch, check, what: str):
    """Call fetch() until check(result) holds (bounded by DEADLINE); return the result."""
    end = time.monotonic() + DEADLINE
    while True:
        result = fetch()
        if check(result):
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}: {result!r}")
        threading.Event().wait(0.05)  # a polling interval, not a synchronisation


def test_snapshot_while_blocked_then_detach_removes_instruments(app):
    program = app("--console")
    path = program.socket_path()
    with program.client() as client:
        status = client.request("status")  # does not attach
        assert status["attached"] == 0 and status["loops"][0]["fast_path"] is True
        snap = client.request("snapshot")
        assert snap["loop"]["running"] is True
        names = {row["name"] for row in snap["tasks"]}
        assert {"spinner", "stuck", "parent", "child-0", "child-1"} <= names
        status = until(lambda: client.request("status"),
                       lambda s: s["loops"][0]["instruments"], "instruments installed")
        assert status["attached"] == 1
        assert set(status["loops"][0]["instruments"]) == {"Heartbeat", "LoopStats",
                                                         "TaskStats", "TaskTree"}
        program.send("block 3")
        program.expect("blocking")
        blocked = until(lambda: client.request("snapshot", stall=0.1),
                        lambda s: s["stall"] is not None, "the stall")
        stall = blocked["stall"]
        assert 0.1 <= stall["blocked_for"] < 3
        assert stall["task"] == "blocker"
        innermost = stall["stack"][-1]
        assert (innermost["file"], innermost["line"]) == (APP, _line_of("PLANTED-BLOCK"))
        assert innermost["code"] == "time.sleep(seconds)  # PLANTED-BLOCK"
        kinds = {w["kind"] for w in blocked["warnings"]}
        assert "blocked" in kinds
        assert blocked["loop"]["utilization"] > 0.5
        program.expect("unblocked")
        # After the stall: the spinning task is named, with its line.
        spinning = until(lambda: client.request("snapshot"),
                         lambda s: any(w["kind"] == "self-wake" for w in s["warnings"]),
                         "the self-wake warning")
        warning = next(w for w in spinning["warnings"] if w["kind"] == "self-wake")
        assert warning["message"].startswith("spinner (spin_forever) woke itself")
        assert f"{APP}:{_line_of('SPIN-LINE')}" in warning["message"]
        # The blocking step is among the slowest callbacks though its task has finished.
        slow = next(w for w in spinning["warnings"] if w["kind"] == "slow-callback")
        assert slow["message"].startswith("blocker (blocker) held the loop 3")
        assert spinning["slowest"][0]["task"] == "blocker"
    # The last client left: every instrument is removed, from the loop's thread.
    with program.client() as watcher:
        status = until(lambda: watcher.request("status"),
                       lambda s: s["loops"][0]["fast_path"], "instruments removed")
        assert status["attached"] == 0 and status["loops"][0]["instruments"] == []
        assert (status["installs"], status["removals"]) == (1, 1)
    program.send("hooks")
    program.expect("hooks none")
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert program.quit() == 0
    assert not os.path.exists(path)


def test_answers_when_attaching_to_an_already_blocked_loop(app):
    program = app("--console")
    program.send("block 3")
    program.expect("blocking")
    with program.client() as client:
        snap = client.request("snapshot", stall=0.2)
        stall = snap["stall"]
        assert stall is not None and stall["at_least"] is True
        assert stall["task"] == "blocker"
        assert stall["stack"][-1]["line"] == _line_of("PLANTED-BLOCK")
        assert snap["loop"]["measuring"] is False
    program.expect("unblocked")
    assert program.quit() == 0


def test_task_detail_lost_waker_and_cancel(app):
    program = app("--console")
    with program.client() as client:
        snap = until(lambda: client.request("snapshot", lost=0.3),
                     lambda s: any(w["kind"] == "lost-waker" for w in s["warnings"]),
                     "the lost-waker warning")
        lost = [w for w in snap["warnings"] if w["kind"] == "lost-waker"]
        by_name = {row["name"]: row for row in snap["tasks"]}
        # Only the task awaiting an unreferenced future; not the sleeping ones.
        assert [w["task_id"] for w in lost] == [by_name["stuck"]["id"]]
        detail = client.request("task", id=by_name["stuck"]["id"])["task"]
        frames = [f for f in detail["chain"] if "file" in f]
        assert frames[-1]["line"] == _line_of("STUCK-LINE")
        assert "create_future()" in frames[-1]["code"]
        assert detail["chain"][-1]["awaiting"].startswith("<Future pending")
        with pytest.raises(ConsoleError, match="no live task"):
            client.request("task", id=10**6)
        reply = client.request("cancel", id=by_name["stuck"]["id"], msg="from the test")
        assert reply["requested"] and reply["name"] == "stuck"
        until(lambda: client.request("tasks"),
              lambda r: "stuck" not in {row["name"] for row in r["tasks"]}, "cancellation")
        with pytest.raises(ConsoleError, match="unknown op"):
            client.request("frobnicate")
    assert program.quit() == 0


def test_socket_is_private(app):
    program = app("--console")
    path = program.socket_path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    directory = os.stat(os.path.dirname(path))
    assert stat.S_IMODE(directory.st_mode) == 0o700
    assert directory.st_uid == os.geteuid()
    if os.geteuid() != 0:
        pytest.skip("checking another user's access needs root to become that user")
    # A child that becomes another user cannot connect.
    code = ("import os, socket, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    print('denied')\n"
            "else:\n    print('connected')\n")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                         timeout=DEADLINE)
    assert out.stdout.strip() == "denied", out
    assert program.quit() == 0


@pytest.mark.parametrize("how", ["code", "env"])
def test_console_from_code_and_from_environment(app, how):
    if how == "code":
        program = app("--code-console", mode="python")
    else:
        program = app(mode="python", env={"CONVEYOR_CONSOLE": "1"})
    path = program.socket_path()
    with program.client() as client:
        hello = client.request("hello")
        assert hello["pid"] == program.proc.pid and hello["protocol"] == 1
        assert len(hello["loops"]) == 1 and hello["loops"][0]["running"]
    assert program.quit() == 0
    assert not os.path.exists(path)


def test_nothing_listens_unless_asked(app):
    program = app(mode="run")
    assert not any(os.path.exists(p) for p in candidate_paths(program.proc.pid))
    assert program.quit() == 0


def test_bad_requests_get_an_error_not_a_hangup(app):
    program = app("--console")
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(DEADLINE)
        raw.connect(program.socket_path())
        reader = raw.makefile("rb")
        raw.sendall(b"not json\n[1, 2]\n{\"op\": \"hello\"}\n")
        replies = [json.loads(reader.readline()) for _ in range(3)]
        reader.close()
    assert [r["ok"] for r in replies] == [False, False, True]
    assert program.quit() == 0

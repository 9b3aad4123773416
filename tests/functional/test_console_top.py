"""`python -m conveyor top` in a real terminal (tmux: send-keys, capture-pane) against a
program with a spinning task, a stuck task and a planted blocking call; and its --json and
--once modes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from test_console import APP, DEADLINE, ROOT, App, _line_of, app, until  # noqa: F401

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


class Terminal:
    """A tmux server of our own (its own socket name) running one command in a 200x50 pane."""

    def __init__(self, command: list[str]) -> None:
        self.name = f"conveyor-top-test-{os.getpid()}"
        env = f"PYTHONPATH={ROOT}"
        self._tmux("new-session", "-d", "-s", "top", "-x", "200", "-y", "50",
                   "env", env, "TERM=xterm-256color", *command)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.name, *args], check=True, text=True,
                              capture_output=True, timeout=DEADLINE).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "top")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "top", *keys)

    def wait_for(self, *texts: str, absent: tuple[str, ...] = ()) -> str:
        return until(self.screen, lambda s: all(t in s for t in texts) and
                     not any(t in s for t in absent), f"screen with {texts}")

    def alive(self) -> bool:
        result = subprocess.run(["tmux", "-L", self.name, "has-session", "-t", "top"],
                                capture_output=True, timeout=DEADLINE)
        return result.returncode == 0

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True,
                       timeout=DEADLINE)


def top_command(pid: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "conveyor", "top", str(pid), "--interval", "0.3",
            "--lost", "0.5", *args]


def test_top_names_the_spinner_the_stuck_task_and_the_blocking_line(app):
    program = app("--console")
    term = Terminal(top_command(program.proc.pid))
    try:
        term.wait_for("conveyor top - pid", "spinner", "stuck", "child-0")
        term.wait_for("[self-wake] spinner (spin_forever) woke itself",
                      f"console_app.py:{_line_of('SPIN-LINE')}",
                      "[lost-waker] stuck has waited")
        # The planted blocking call, while it blocks.
        program.send("block 3")
        program.expect("blocking")
        screen = term.wait_for("BLOCKED for", "[blocked] loop blocked")
        assert f"console_app.py:{_line_of('PLANTED-BLOCK')} in planted_block: " \
               f"time.sleep(seconds)  # PLANTED-BLOCK" in screen
        assert "a step of blocker (blocker)" in screen
        program.expect("unblocked")
        term.wait_for("[slow-callback] blocker (blocker) held the loop 3", absent=("BLOCKED",))

        # Tree view: tasks spawned while top watches sit under their spawner.
        program.send("spawn")
        program.expect("spawned")
        term.keys("t")
        def kids_under_family(screen: str) -> bool:
            # A capture can catch curses mid-redraw, so the whole shape is the condition.
            lines = screen.splitlines()
            # Only the task table: "family" may also be among the slowest callbacks above it.
            table = next((i for i, line in enumerate(lines) if line.startswith("TASKS")), None)
            if table is None:
                return False
            at = [i for i, line in enumerate(lines) if i > table and " family " in line]
            return "view: tree" in screen and bool(at) and len(lines) > at[0] + 2 and all(
                "`- kid-" in line and " family " in line and "child_worker @" in line
                for line in lines[at[0] + 1:at[0] + 3])  # name, then the SPAWNER column
        until(term.screen, kids_under_family, "kid-0 and kid-1 under family")

        # Sort, pause.
        term.keys("s")
        term.wait_for("sort: idle desc")
        term.keys("r")
        term.wait_for("sort: idle asc")
        term.keys("p")
        term.wait_for("[PAUSED]")
        term.keys("p")
        term.wait_for("loop running", absent=("[PAUSED]",))

        # Filter down to the stuck task, open its await chain, cancel it (with a "no" first).
        term.keys("/")
        term.wait_for("filter: _")
        term.keys("stuck", "Enter")
        screen = term.wait_for("filter: stuck", "TASKS (1/")
        term.keys("Enter")
        screen = term.wait_for("await chain (outermost first):")
        assert f"stuck_forever at {APP}:{_line_of('STUCK-LINE')}" in screen
        assert "await asyncio.get_running_loop().create_future()" in screen
        assert "awaiting <Future pending" in screen
        term.keys("c")
        term.wait_for("'stuck'? (y/N)")
        term.keys("n")
        term.wait_for("not cancelled")
        term.keys("c")
        term.wait_for("'stuck'? (y/N)")
        term.keys("y")
        term.wait_for("has finished")  # the detail view notices the task is gone
        term.wait_for("TASKS (0/")
        term.keys("q")
        until(term.alive, lambda alive: not alive, "top to exit")
    finally:
        term.close()
    # top has gone: the program stops measuring.
    with program.client() as watcher:
        until(lambda: watcher.request("status"), lambda s: s["loops"][0]["fast_path"],
              "instruments removed")
    assert program.quit() == 0


def test_json_and_once_modes(app):
    program = app("--console")
    out = subprocess.run([sys.executable, "-m", "conveyor", "top", str(program.proc.pid),
                          "--json", "--sample", "0.5", "--lost", "0.3"],
                         capture_output=True, text=True, timeout=DEADLINE,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    snap = json.loads(out.stdout)
    assert snap["hello"]["pid"] == program.proc.pid
    assert snap["loop"]["measuring"] and snap["loop"]["iterations_per_s"] > 0
    kinds = {(w["kind"], w["message"].split()[0]) for w in snap["warnings"]}
    assert {("self-wake", "spinner"), ("lost-waker", "stuck")} <= kinds
    out = subprocess.run([sys.executable, "-m", "conveyor", "top", program.socket_path(),
                          "--once", "--sample", "0.3"], capture_output=True, text=True,
                         timeout=DEADLINE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    assert "TASKS (6/6)" in out.stdout and "spin_forever @ console_app.py" in out.stdout
    assert program.quit() == 0
    # A process without a console: a clear message, exit status 1.
    out = subprocess.run([sys.executable, "-m", "conveyor", "top", str(os.getpid()),
                          "--once"], capture_output=True, text=True, timeout=DEADLINE,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 1 and "has no conveyor console" in out.stderr

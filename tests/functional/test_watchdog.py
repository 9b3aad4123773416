"""The watchdog catches a loop blocked by a callback, while it is blocked, and names the
line that blocks; it stays quiet while the loop merely waits in the kernel."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import conveyor
from conveyor.observe.watchdog import Watchdog

from support import run

ROOT = Path(__file__).resolve().parents[2]


def planted_block():
    time.sleep(0.3)  # PLANTED


PLANTED_LINE = planted_block.__code__.co_firstlineno + 1


def _watchdog_threads():
    return [t for t in threading.enumerate() if t.name == "conveyor-watchdog"]


def test_catches_planted_sleep_and_names_the_line(loop, caplog):
    seen_while_blocked = []

    def check_during_block():
        # Runs on a separate thread while the loop sleeps: the report must exist already.
        time.sleep(0.28)
        seen_while_blocked.append(len(dog.stalls))

    dog = Watchdog(0.1)
    with caplog.at_level(logging.WARNING, logger="conveyor.watchdog"):
        with dog:
            dog.attach(loop)
            # The watchdog only needs the per-iteration hooks: callbacks stay on the
            # loop's fast path.
            assert loop._hooks.per_callback is False
            checker = threading.Thread(target=check_during_block)

            def start_block():
                checker.start()
                planted_block()

            loop.call_soon(start_block)
            loop.call_soon(loop.stop)
            loop.run_forever()
            # One more iteration: the loop returns to poll and the stall is closed.
            loop.run_until_complete(asyncio.sleep(0))
            checker.join()
    assert seen_while_blocked == [1]
    assert len(dog.stalls) == 1  # once per stall
    stall = dog.stalls[0]
    assert 0.1 <= stall.noticed_after < 0.3
    assert stall.duration is not None and stall.duration >= 0.3
    innermost = stall.stack[-1]
    assert (innermost.filename, innermost.lineno) == (__file__, PLANTED_LINE)
    assert innermost.line == "time.sleep(0.3)  # PLANTED"
    assert stall.task is None and stall.task_repr is None
    assert stall.loop is loop
    assert stall.callback.startswith("callback start_block (")
    messages = [r.getMessage() for r in caplog.records if r.name == "conveyor.watchdog"]
    assert f'File "{__file__}", line {PLANTED_LINE}, in planted_block' in messages[0]
    assert "still blocked" in messages[0]
    assert "resumed after being blocked for 0.3" in messages[1]
    assert _watchdog_threads() == []
    assert loop._hooks is None


def test_names_the_task_that_blocks(loop):
    async def culprit():
        await asyncio.sleep(0)
        time.sleep(0.25)

    async def main():
        with conveyor.watchdog(0.1) as dog:
            task = asyncio.create_task(culprit(), name="culprit")
            await task
            await asyncio.sleep(0)
        return dog, task

    dog, task = run(loop, main())
    assert len(dog.stalls) == 1
    assert dog.stalls[0].task is task
    assert "name='culprit'" in dog.stalls[0].task_repr
    assert "culprit" in dog.stalls[0].callback
    assert dog.stalls[0].stack[-1].name == "culprit"


def test_quiet_while_waiting_in_the_kernel(loop):
    async def main():
        with conveyor.watchdog(0.05) as dog:
            await asyncio.sleep(0.3)
            for _ in range(100):
                await asyncio.sleep(0.001)
        return dog

    dog = run(loop, main())
    assert not dog.stalls


def test_watches_loops_created_while_active():
    dog = conveyor.watchdog(0.1)
    try:
        async def main():
            planted_block()

        conveyor.run(main())
    finally:
        dog.stop()
    assert len(dog.stalls) == 1
    assert dog.stalls[0].stack[-1].lineno == PLANTED_LINE


def test_bad_arguments():
    with pytest.raises(ValueError, match="threshold"):
        conveyor.watchdog(0)
    with pytest.raises(ValueError, match="threshold"):
        conveyor.watchdog("1")
    with pytest.raises(ValueError, match="interval"):
        Watchdog(1, interval=0)


def test_cli_run_watchdog_reports_the_line(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent("""\
        import asyncio, sys, time

        async def main():
            assert type(asyncio.get_running_loop()).__module__ == "conveyor.loop"
            assert sys.argv[1:] == ["one", "two"], sys.argv
            await asyncio.sleep(0)
            time.sleep(0.3)
            return 3

        if __name__ == "__main__":
            sys.exit(asyncio.run(main()))
        """))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "conveyor", "run", "--watchdog", "0.1",
                           str(app), "one", "two"], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 3, proc.stderr
    assert f'File "{app}", line 7, in main' in proc.stderr
    assert "time.sleep(0.3)" in proc.stderr
    assert "resumed after being blocked" in proc.stderr

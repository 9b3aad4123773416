"""conveyor.childwatch on its own: exits observed once, reaped once, on both strategies."""

from __future__ import annotations

import logging
import os
import signal
import subprocess

import pytest

import conveyor
from conveyor.childwatch import UNKNOWN_RETURNCODE, ChildWatch

from support import run


@pytest.fixture(params=["pidfd", "thread"])
def loop(request, monkeypatch):
    if request.param == "pidfd" and not hasattr(os, "pidfd_open"):
        pytest.skip("pidfd_open is Linux-only")
    monkeypatch.setenv("CONVEYOR_CHILDWATCH", request.param)
    loop = conveyor.new_event_loop()
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield loop
    loop.close()
    assert errors == []


def watch(loop, popen, *, knows_popen=True):
    exited = loop.create_future()
    return ChildWatch(loop, popen.pid, exited.set_result, popen if knows_popen else None), exited


@pytest.mark.parametrize("argv, code", [(["true"], 0), (["sh", "-c", "exit 9"], 9)])
def test_exit_status(loop, argv, code):
    async def main():
        popen = subprocess.Popen(argv)
        w, exited = watch(loop, popen)
        result = await exited
        assert w.returncode == result
        popen.returncode = result  # what the transport does, so Popen does not warn
        return result

    assert run(loop, main()) == code


def test_send_signal_then_lookup_error_after_the_exit(loop):
    async def main():
        popen = subprocess.Popen(["sleep", "30"])
        w, exited = watch(loop, popen)
        w.send_signal(signal.SIGTERM)
        result = await exited
        popen.returncode = result
        with pytest.raises(ProcessLookupError):
            w.send_signal(signal.SIGTERM)
        return result

    assert run(loop, main()) == -signal.SIGTERM


def test_reaped_by_popen_first_uses_popens_returncode(loop):
    """Popen.poll() (also called by Popen.send_signal) may reap first: no 255, no warning."""
    async def main():
        popen = subprocess.Popen(["sh", "-c", "exit 4"])
        os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
        w, exited = watch(loop, popen)
        # The user's Popen reaps it behind the watch's back. (The thread strategy may have
        # reaped it already; then Popen, finding no child, says 0, its documented guess.)
        seen_by_popen = popen.wait()
        if os.environ["CONVEYOR_CHILDWATCH"] == "pidfd":
            assert seen_by_popen == 4
        return await exited

    assert run(loop, main()) == 4


def test_reaped_by_a_stranger_reports_255_with_a_warning(loop, caplog):
    if os.environ["CONVEYOR_CHILDWATCH"] == "thread":
        pytest.skip("the thread strategy reaps the moment the child exits, so a stranger's "
                    "waitpid cannot be made to come first; pidfd reaps on the loop")
    async def main():
        popen = subprocess.Popen(["true"])
        os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)
        w, exited = watch(loop, popen, knows_popen=False)
        _, status = os.waitpid(popen.pid, 0)  # somebody else's waitpid
        popen.returncode = os.waitstatus_to_exitcode(status)
        return await exited

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        assert run(loop, main()) == UNKNOWN_RETURNCODE
    assert "exit status already read" in caplog.text

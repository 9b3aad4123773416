"""Subprocesses on conveyor: asyncio.subprocess, the transport API, ordering, no zombies.

Every test runs twice: with the pidfd child watch and with the thread-per-child fallback.
The leak check (tests/conftest.py) fails a test that leaves a child running or unreaped.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import conveyor

from support import run, wait_until_blocking

PY = sys.executable


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


class Recorder(asyncio.SubprocessProtocol):
    def __init__(self, loop):
        self.events = []
        self.output = {1: bytearray(), 2: bytearray()}
        self.exited = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.events.append("made")

    def pipe_data_received(self, fd, data):
        self.output[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.events.append(f"pipe{fd}")

    def process_exited(self):
        self.events.append("exited")
        self.exited.set_result(None)

    def connection_lost(self, exc):
        self.events.append("lost")
        assert not self.lost.done(), "connection_lost called twice"
        self.lost.set_result(exc)


# --------------------------------------------------------------- asyncio.subprocess

def test_communicate(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper()); "
                      "sys.stderr.write('to stderr'); sys.exit(7)",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate(b"hello")
        return out, err, proc.returncode

    assert run(loop, main()) == (b"HELLO", b"to stderr", 7)


def test_shell(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "echo $((6 * 7)); exit 3", stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        return out, await proc.wait()

    assert run(loop, main()) == (b"42\n", 3)


def test_100_mb_through_cat_without_deadlock(loop):
    """The child writes 100 MB to stdout while still reading stdin: nothing lost."""
    block = os.urandom(1024 * 1024)
    blocks = 100
    expected = hashlib.sha256(block * blocks).hexdigest()

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=subprocess.PIPE, stdout=subprocess.PIPE)

        async def feed():
            for _ in range(blocks):
                proc.stdin.write(block)
                await proc.stdin.drain()
            proc.stdin.close()

        async def drain():
            digest = hashlib.sha256()
            total = 0
            while chunk := await proc.stdout.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
            return total, digest.hexdigest()

        _, (total, digest) = await asyncio.gather(feed(), drain())
        return total, digest, await proc.wait()

    total, digest, code = run(loop, main(), timeout=100)
    assert (total, digest, code) == (blocks * len(block), expected, 0)


def test_200_concurrent_subprocesses(loop):
    async def one(i):
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, _ = await proc.communicate(f"child {i}".encode())
        return out.decode(), proc.returncode

    async def main():
        return await asyncio.gather(*(one(i) for i in range(200)))

    results = run(loop, main(), timeout=100)
    assert results == [(f"child {i}", 0) for i in range(200)]


def test_redirections_devnull_stdout_and_fds(loop, tmp_path):
    out_path = tmp_path / "out"

    async def main():
        merged = await asyncio.create_subprocess_shell(
            "echo out; echo err >&2", stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        merged_out, _ = await merged.communicate()
        with open(out_path, "wb") as f:
            to_file = await asyncio.create_subprocess_exec(
                "echo", "into a file", stdout=f.fileno(), stderr=subprocess.DEVNULL)
            await to_file.wait()
        return merged_out

    assert run(loop, main()) == b"out\nerr\n"
    assert out_path.read_bytes() == b"into a file\n"


def test_popen_keywords_pass_fds_cwd_env_session(loop, tmp_path):
    rfd, wfd = os.pipe()

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c",
            "import os, sys; os.write(int(sys.argv[1]), b'via fd'); "
            "print(os.getcwd(), os.environ['MARK'], os.getsid(0) == os.getpid())",
            str(wfd), pass_fds=(wfd,), cwd=tmp_path, env={"MARK": "marked"},
            start_new_session=True, stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        return out

    try:
        out = run(loop, main())
        assert os.read(rfd, 100) == b"via fd"
    finally:
        os.close(rfd)
        os.close(wfd)
    assert out.decode().split() == [str(tmp_path), "marked", "True"]


@pytest.mark.parametrize("method, code", [("kill", -signal.SIGKILL),
                                          ("terminate", -signal.SIGTERM)])
def test_kill_and_terminate(loop, method, code):
    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "30")
        getattr(proc, method)()
        return await proc.wait()

    assert run(loop, main()) == code


def test_send_signal_reaches_the_child(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import signal, sys, time\n"
                      "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(5))\n"
                      "print('ready', flush=True)\n"
                      "time.sleep(30)",
            stdout=subprocess.PIPE)
        assert await proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGUSR1)
        code = await proc.wait()
        with pytest.raises(ProcessLookupError):  # finished: as asyncio's transport does
            proc.kill()
        return code

    assert run(loop, main()) == 5


# ------------------------------------------------------------- the transport itself

def test_protocol_order_and_transport_api(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Recorder(loop), PY, "-c",
            "import sys; sys.stdout.write(sys.stdin.read()); sys.stderr.write('e')")
        assert isinstance(transport, asyncio.SubprocessTransport)
        assert transport.get_pid() > 0
        assert transport.get_returncode() is None
        assert isinstance(transport.get_extra_info("subprocess"), subprocess.Popen)
        stdin = transport.get_pipe_transport(0)
        stdin.write(b"echoed")
        stdin.close()
        assert await proto.lost is None
        assert transport.get_returncode() == 0
        transport.close()
        return proto

    proto = run(loop, main())
    assert bytes(proto.output[1]) == b"echoed" and bytes(proto.output[2]) == b"e"
    events = proto.events
    assert events[0] == "made" and events[-1] == "lost"
    assert sorted(events[1:-1]) == ["exited", "pipe0", "pipe1", "pipe2"]


def test_connection_lost_waits_for_pipes_held_by_a_grandchild(loop):
    """The child exits while a background grandchild keeps stdout open: lost comes later."""
    async def main():
        transport, proto = await loop.subprocess_shell(
            lambda: Recorder(loop), "exec 3<&0; (read line <&3; echo late) & exit 0",
            stderr=subprocess.DEVNULL)
        await proto.exited
        assert "lost" not in proto.events and "pipe1" not in proto.events
        stdin = transport.get_pipe_transport(0)
        stdin.write(b"go\n")
        stdin.close()
        await proto.lost
        transport.close()
        return proto

    proto = run(loop, main())
    assert bytes(proto.output[1]) == b"late\n"
    assert proto.events.index("exited") < proto.events.index("pipe1") < \
        proto.events.index("lost")


def test_close_kills_a_running_child(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(lambda: Recorder(loop), "sleep", "30")
        transport.close()
        transport.close()
        assert transport.is_closing()
        await proto.lost
        return transport.get_returncode()

    assert run(loop, main()) == -signal.SIGKILL


def test_argument_errors(loop):
    async def main():
        for kwargs, message in [({"universal_newlines": True}, "universal_newlines must be"),
                                ({"bufsize": 1}, "bufsize must be 0"),
                                ({"text": True}, "text must be False"),
                                ({"encoding": "utf-8"}, "encoding must be None"),
                                ({"errors": "strict"}, "errors must be None")]:
            with pytest.raises(ValueError, match=message):
                await loop.subprocess_exec(asyncio.SubprocessProtocol, "true", **kwargs)
            with pytest.raises(ValueError, match=message):
                await loop.subprocess_shell(asyncio.SubprocessProtocol, "true", **kwargs)
        with pytest.raises(ValueError, match="shell must be False"):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "true", shell=True)
        with pytest.raises(ValueError, match="shell must be True"):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, "true", shell=False)
        with pytest.raises(ValueError, match="cmd must be a string"):
            await loop.subprocess_shell(asyncio.SubprocessProtocol, ["true"])

    run(loop, main())


def test_spawn_failure_raises_and_leaks_nothing(loop):
    async def main():
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec("/nonexistent/program", stdout=subprocess.PIPE)

    run(loop, main())


def test_cancelled_while_starting(loop):
    async def main():
        task = asyncio.ensure_future(loop.subprocess_exec(asyncio.SubprocessProtocol, "sleep", "30"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())


@pytest.mark.parametrize("strategy", ["pidfd", "thread"])
def test_subprocess_from_a_loop_in_another_thread(monkeypatch, strategy):
    monkeypatch.setenv("CONVEYOR_CHILDWATCH", strategy)
    results = []

    def body():
        loop = conveyor.new_event_loop()

        async def main():
            proc = await asyncio.create_subprocess_exec(
                "echo", "from a thread", stdout=subprocess.PIPE)
            out, _ = await proc.communicate()
            return out, proc.returncode

        try:
            results.append(run(loop, main()))
        finally:
            loop.close()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(60)
    assert results == [(b"from a thread\n", 0)]


def test_loop_closed_before_the_exit_is_seen_leaves_no_zombie(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(asyncio.SubprocessProtocol, "sleep", "30",
                                                      stdin=subprocess.DEVNULL,
                                                      stdout=subprocess.DEVNULL,
                                                      stderr=subprocess.DEVNULL)
        transport.close()  # SIGKILL sent; the loop closes before the exit is observed
        return transport

    transport = run(loop, main())
    loop.close()
    popen = transport.get_extra_info("subprocess")
    # The reaper runs on its own thread and tells nobody: poll for its result.
    wait_until_blocking(lambda: popen.returncode is not None, "the reaper's exit status")
    assert popen.returncode == -signal.SIGKILL
    assert not os.path.exists(f"/proc/{popen.pid}")


def test_the_spawn_benchmark_runs(loop):
    from conveyor.bench.procs import spawn, spawn_bare

    async def main():
        return await spawn(count=20, concurrency=5) + await spawn_bare(count=20, concurrency=5)

    assert run(loop, main()) == 40


def test_a_raising_protocol_does_not_break_the_transport():
    """Exceptions from the protocol go to the exception handler; the rest still happens."""
    loop = conveyor.new_event_loop()
    seen = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context["exception"]))

    class Raising(Recorder):
        def pipe_data_received(self, fd, data):
            super().pipe_data_received(fd, data)
            raise ZeroDivisionError("in pipe_data_received")

        def process_exited(self):
            super().process_exited()
            raise KeyError("in process_exited")

    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: Raising(loop), "echo", "hi", stdin=subprocess.DEVNULL)
        await proto.lost
        transport.close()
        return proto

    try:
        proto = run(loop, main())
    finally:
        loop.close()
    assert bytes(proto.output[1]) == b"hi\n"
    assert proto.events[-1] == "lost" and proto.events.count("lost") == 1
    assert sorted(type(e).__name__ for e in seen) == ["KeyError", "ZeroDivisionError"]


def test_a_closed_loop_spawns_nothing():
    loop = conveyor.new_event_loop()
    loop.close()
    coro = loop.subprocess_exec(asyncio.SubprocessProtocol, "true")
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        coro.send(None)


def test_a_failing_child_watch_kills_and_reaps_the_child(monkeypatch):
    """If the exit cannot be watched, the child must not be left running or a zombie."""
    loop = conveyor.new_event_loop()

    def refuse(*args, **kwargs):
        raise OSError("cannot watch")

    monkeypatch.setattr("conveyor.transports.subprocess.ChildWatch", refuse)

    async def main():
        with pytest.raises(OSError, match="cannot watch"):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "sleep", "30")

    try:
        run(loop, main())
    finally:
        loop.close()


# ------------------------------------------------ spawning off the loop thread

def test_spawn_runs_off_the_loop_thread(loop, monkeypatch):
    """Popen (fork/exec, and the wait for the child's exec) runs on a spawning thread."""
    spawned_on = []

    class Recording(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            spawned_on.append(threading.get_ident())
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recording)

    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", "print('hi')",
                                                    stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        return out, proc.returncode, threading.get_ident()

    out, returncode, loop_thread = run(loop, main())
    assert (out, returncode) == (b"hi\n", 0)
    assert spawned_on and loop_thread not in spawned_on


def test_the_loop_runs_while_a_slow_child_is_being_spawned(loop):
    """A child that takes 0.5 s to reach exec (its preexec_fn sleeps) does not stall the
    loop: a 50 ms timer fires long before subprocess_exec returns. (The standard loop
    spawns on its own thread and would be stalled for the whole 0.5 s.)"""
    fired = []

    async def main():
        started = time.monotonic()
        loop.call_later(0.05, lambda: fired.append(time.monotonic() - started))
        proc = await asyncio.create_subprocess_exec(
            "true", preexec_fn=lambda: time.sleep(0.5))
        spawned = time.monotonic() - started
        await proc.wait()
        return spawned

    spawned = run(loop, main())
    assert spawned >= 0.5
    assert len(fired) == 1 and fired[0] < 0.4


def test_spawn_errors_are_raised_from_subprocess_exec(loop):
    async def main():
        with pytest.raises(FileNotFoundError):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "/nonexistent/program")
        with pytest.raises(PermissionError):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "/dev/null")
        with pytest.raises(subprocess.SubprocessError):
            await loop.subprocess_exec(asyncio.SubprocessProtocol, "true",
                                       preexec_fn=lambda: 1 / 0)

    run(loop, main())


def test_cancelled_during_a_slow_spawn_leaves_no_child(loop):
    """Cancelled while the spawning thread waits for the child's exec: subprocess_exec
    waits for the spawn, kills and reaps the child, then raises CancelledError (the
    leak check sees no zombie and no fd left)."""
    forked, child_says = os.pipe()

    def slow_exec():
        os.write(child_says, b"x")  # in the child, before its exec: the spawn is underway
        time.sleep(0.2)

    async def main():
        spawning = loop.create_future()
        loop.add_reader(forked, lambda: spawning.done() or spawning.set_result(None))
        task = asyncio.ensure_future(loop.subprocess_exec(
            asyncio.SubprocessProtocol, "sleep", "30", preexec_fn=slow_exec))
        try:
            await spawning
        finally:
            loop.remove_reader(forked)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        run(loop, main())
    finally:
        os.close(forked)
        os.close(child_says)


def test_blockbuster_sees_no_blocking_call_in_subprocess_exec(loop):
    blockbuster = pytest.importorskip("blockbuster")

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "true", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        await proc.communicate()
        return proc.returncode

    with blockbuster.blockbuster_ctx("conveyor"):
        assert run(loop, main()) == 0

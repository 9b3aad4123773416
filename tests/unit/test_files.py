"""conveyor.fs: every call, its errors, the pool, and what cancellation does.

Each test runs on conveyor's loop and on stock asyncio (the module must work on any
conforming loop). The fixture fails a test whose pool threads do not exit, or that makes the
loop's exception handler fire unexpectedly; the leak check (tests/conftest.py) fails one that
leaks an fd or a thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import io
import os
import random
import threading

import pytest

import conveyor
from conveyor import fs

from support import run

pytestmark = pytest.mark.timeout(30)

LOOPS = {"conveyor": conveyor.new_event_loop, "asyncio": asyncio.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def loop(request):
    loop = LOOPS[request.param]()
    loop.handler_calls = errors = []  # type: ignore[attr-defined]
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield loop
    pool = fs.pool._pools.get(loop)
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    if pool is not None:
        pool.shutdown()  # conveyor's loop did this at close; stock asyncio's cannot
        assert pool.join(10), "file pool threads did not exit"
    assert errors == []


# -- opening and the file object ----------------------------------------------------------


def test_await_and_async_with_forms(loop, tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hello\n")

    async def main():
        f = await fs.open_file(path)
        assert await f.read() == "hello\n"
        await f.close()
        assert f.closed
        async with await fs.open_file(path) as g:
            assert await g.read() == "hello\n"
        assert g.closed
        async with fs.open_file(path, "rb") as h:
            assert await h.read() == b"hello\n"
        assert h.closed

    run(loop, main())


def test_attributes(loop, tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("x")

    async def main():
        async with fs.open_file(path, "r+", encoding="utf-8") as f:
            assert f.name == str(path)
            assert f.mode == "r+"
            assert f.encoding == "utf-8"
            assert f.errors == "strict"
            assert not f.closed
            assert f.readable() and f.writable() and f.seekable()
            assert not f.isatty()
            assert isinstance(f.fileno(), int)
            assert isinstance(f.wrapped, io.TextIOWrapper)
            assert "AsyncFile" in repr(f)
        assert f.closed

    run(loop, main())


def test_reading_calls(loop, tmp_path):
    path = tmp_path / "lines.bin"
    path.write_bytes(b"one\ntwo\nthree\nfour")

    async def main():
        async with fs.open_file(path, "rb") as f:
            assert await f.read(2) == b"on"
            assert await f.readline() == b"e\n"
            assert await f.readline(2) == b"tw"
            assert await f.tell() == 6
            assert await f.read1(3) == b"o\nt"
            assert await f.readlines() == [b"hree\n", b"four"]
            assert await f.read() == b""
            assert await f.readline() == b""
            assert await f.seek(0) == 0
            assert [line async for line in f] == [b"one\n", b"two\n", b"three\n", b"four"]
            assert await f.seek(-4, os.SEEK_END) == 14
            assert await f.read(None) == b"four"
            await f.seek(0)
            assert await f.readlines(5) == [b"one\n", b"two\n"]

    run(loop, main())


def test_text_reading(loop, tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("añb\r\nsecond\n".encode())

    async def main():
        async with fs.open_file(path, encoding="utf-8") as f:
            assert await f.readline() == "añb\n"
            cookie = await f.tell()
            assert await f.read() == "second\n"
            await f.seek(cookie)
            assert await f.readlines() == ["second\n"]
            assert f.newlines == "\r\n" or "\r\n" in f.newlines
        async with fs.open_file(path, encoding="utf-8", newline="") as f:
            assert await f.readline() == "añb\r\n"

    run(loop, main())


def test_writing_calls(loop, tmp_path):
    path = tmp_path / "w.bin"

    async def main():
        async with fs.open_file(path, "wb+") as f:
            assert await f.write(b"abc") == 3
            await f.writelines([b"de", b"f"])
            await f.writelines(bytes([c]) for c in b"gh")  # any iterable
            await f.flush()
            assert path.read_bytes() == b"abcdefgh"
            assert await f.truncate(4) == 4
            assert await f.tell() == 8  # truncate does not move the position
            await f.seek(0)
            assert await f.read() == b"abcd"
        async with fs.open_file(path, "a") as f:
            assert await f.write("XY") == 2
        assert path.read_bytes() == b"abcdXY"

    run(loop, main())


def test_calls_on_one_file_run_in_order(loop, tmp_path):
    path = tmp_path / "order.txt"
    fs.set_max_workers(loop, 4)

    async def main():
        async with fs.open_file(path, "w") as f:
            await asyncio.gather(*(f.write(f"{i}\n") for i in range(200)))
        assert path.read_text().split() == [str(i) for i in range(200)]

    run(loop, main())


def test_open_descriptor_and_opener(loop, tmp_path):
    path = tmp_path / "fd.bin"
    path.write_bytes(b"data")

    async def main():
        fd = os.open(path, os.O_RDONLY)
        async with fs.open_file(fd, "rb") as f:
            assert await f.read() == b"data"
        with pytest.raises(OSError):
            os.fstat(fd)  # closefd=True closed it

        def opener(name, flags):
            return os.open(name, flags | os.O_CLOEXEC)

        async with fs.open_file(path, "rb", opener=opener) as f:
            assert await f.read() == b"data"

    run(loop, main())


def test_wrap_file(loop, tmp_path):
    path = tmp_path / "wrap.txt"
    path.write_text("wrapped\n")

    async def main():
        with open(path) as sync_file:
            f = fs.wrap_file(sync_file)
            assert await f.readline() == "wrapped\n"
            assert f.wrapped is sync_file

    run(loop, main())


# -- whole files and paths ------------------------------------------------------------------


def test_whole_file_helpers(loop, tmp_path):
    async def main():
        assert await fs.write_bytes(tmp_path / "b", b"\x00\x01") == 2
        assert await fs.read_bytes(tmp_path / "b") == b"\x00\x01"
        assert await fs.write_text(tmp_path / "t", "é\n", encoding="latin-1") == 2
        assert (tmp_path / "t").read_bytes() == b"\xe9\n"
        assert await fs.read_text(tmp_path / "t", encoding="latin-1") == "é\n"
        assert await fs.write_bytes(str(tmp_path / "b"), bytearray(b"xyz")) == 3
        assert await fs.read_bytes(str(tmp_path / "b")) == b"xyz"
        with pytest.raises(TypeError):
            await fs.write_text(tmp_path / "t", b"bytes")

    run(loop, main())


def test_conveyor_reexports_the_helpers():
    for name in ("open_file", "read_bytes", "read_text", "write_bytes", "write_text"):
        if hasattr(conveyor, name):
            assert getattr(conveyor, name) is getattr(fs, name)


def test_path_functions(loop, tmp_path):
    async def main():
        base = tmp_path / "d"
        await fs.mkdir(base)
        await fs.mkdir(base / "x" / "y", parents=True)
        await fs.mkdir(base, exist_ok=True)
        assert await fs.isdir(base / "x" / "y")
        await fs.write_text(base / "f.txt", "1")
        assert await fs.exists(base / "f.txt")
        assert await fs.isfile(base / "f.txt")
        assert not await fs.isfile(base / "x")
        assert not await fs.exists(base / "nope")
        st = await fs.stat(base / "f.txt")
        assert st.st_size == 1
        assert sorted(await fs.listdir(base)) == ["f.txt", "x"]
        assert sorted([p async for p in fs.iterdir(base)]) == [base / "f.txt", base / "x"]
        await fs.rename(base / "f.txt", base / "g.txt")
        await fs.write_text(base / "h.txt", "2")
        await fs.replace(base / "h.txt", base / "g.txt")
        assert (base / "g.txt").read_text() == "2"
        await fs.unlink(base / "g.txt")
        await fs.rmdir(base / "x" / "y")
        await fs.rmdir(base / "x")
        assert await fs.listdir(base) == []
        os.symlink(base, tmp_path / "link")
        assert (await fs.stat(tmp_path / "link", follow_symlinks=False)).st_size != 0

    run(loop, main())


# -- errors: the same exceptions the sync calls raise ---------------------------------------


def test_missing_file(loop, tmp_path):
    missing = tmp_path / "missing"

    async def main():
        with pytest.raises(FileNotFoundError):
            await fs.open_file(missing)
        with pytest.raises(FileNotFoundError):
            async with fs.open_file(missing):
                pass
        for call in (fs.read_bytes, fs.read_text, fs.stat, fs.remove,
                     fs.listdir, fs.rmdir):
            with pytest.raises(FileNotFoundError):
                await call(missing)
        with pytest.raises(FileNotFoundError):
            await fs.rename(missing, tmp_path / "other")
        with pytest.raises(FileNotFoundError):
            await fs.mkdir(tmp_path / "a" / "b")
        with pytest.raises(FileNotFoundError):
            [p async for p in fs.iterdir(missing)]

    run(loop, main())


def test_exists_errors(loop, tmp_path):
    async def main():
        with pytest.raises(FileExistsError):
            await fs.mkdir(tmp_path)
        with pytest.raises(FileExistsError):
            await fs.open_file(tmp_path, "x")

    run(loop, main())


def test_directory_as_file(loop, tmp_path):
    async def main():
        with pytest.raises(IsADirectoryError):
            await fs.open_file(tmp_path)
        with pytest.raises(IsADirectoryError):
            await fs.read_bytes(tmp_path)
        with pytest.raises(IsADirectoryError):
            await fs.write_text(tmp_path, "x")
        await fs.write_text(tmp_path / "f", "x")
        with pytest.raises(NotADirectoryError):
            await fs.listdir(tmp_path / "f")

    run(loop, main())


# Places where even root is refused (a sync call must raise PermissionError there first;
# otherwise the case is skipped rather than asserting something the machine doesn't do).
ROOT_PROOF = [
    ("open /sys for writing", lambda: open("/sys/kernel/conveyor-test", "w"),
     lambda: fs.open_file("/sys/kernel/conveyor-test", "w")),
    ("remove from /proc", lambda: os.remove("/proc/version"),
     lambda: fs.remove("/proc/version")),
    ("mkdir in /sys", lambda: os.mkdir("/sys/conveyor-test"),
     lambda: fs.mkdir("/sys/conveyor-test")),
]


@pytest.mark.parametrize("sync_call, async_call", [case[1:] for case in ROOT_PROOF],
                         ids=[case[0] for case in ROOT_PROOF])
def test_permission_denied_even_for_root(loop, sync_call, async_call):
    try:
        sync_call()
    except PermissionError:
        pass
    except OSError as exc:
        pytest.skip(f"this machine answers {exc!r} here")
    else:
        pytest.skip("this machine allows it")

    async def main():
        with pytest.raises(PermissionError):
            await async_call()

    run(loop, main())


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses file mode bits")
def test_permission_denied_by_mode(loop, tmp_path):
    path = tmp_path / "secret"
    path.write_text("x")
    path.chmod(0)

    async def main():
        with pytest.raises(PermissionError):
            await fs.open_file(path)
        with pytest.raises(PermissionError):
            await fs.read_text(path)

    run(loop, main())


def test_closed_file_and_wrong_direction(loop, tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("abc")

    async def main():
        f = await fs.open_file(path)
        with pytest.raises(io.UnsupportedOperation):
            await f.write("x")  # opened for reading: even root cannot write through it
        await f.close()
        await f.close()  # closing twice is fine, as with sync files
        for call in (f.read(), f.readline(), f.write("x"), f.seek(0), f.tell(),
                     f.flush(), f.truncate(), f.readlines()):
            with pytest.raises(ValueError, match="closed file"):
                await call
        g = await fs.open_file(path, "w")
        with pytest.raises(io.UnsupportedOperation):
            await g.read()
        await g.close()

    run(loop, main())


def test_bad_arguments(loop, tmp_path):
    async def main():
        with pytest.raises(ValueError):
            await fs.open_file(tmp_path / "x", "rw")
        with pytest.raises(LookupError):
            await fs.open_file(tmp_path / "x", "w", encoding="no-such-codec")

    run(loop, main())


# -- the pool -------------------------------------------------------------------------------


def test_set_max_workers_bounds_the_threads(loop, tmp_path):
    release = threading.Event()
    running = []
    lock = threading.Lock()
    peak = [0]

    class Slow(io.FileIO):
        def read(self, size=-1):
            with lock:
                running.append(1)
                peak[0] = max(peak[0], len(running))
            release.wait(10)
            with lock:
                running.pop()
            return super().read(size)

    path = tmp_path / "f"
    path.write_bytes(b"x")
    fs.set_max_workers(loop, 2)
    assert fs.max_workers(loop) == 2

    async def main():
        handles = [fs.wrap_file(Slow(path)) for _ in range(8)]
        reads = asyncio.gather(*(h.read() for h in handles))
        pool = fs.pool._pools[loop]
        await asyncio.sleep(0)
        assert pool.threads <= 2
        release.set()
        assert await reads == [b"x"] * 8
        assert peak[0] <= 2
        for h in handles:
            await h.close()

    run(loop, main())


def test_max_workers_is_validated(loop):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError):
            fs.set_max_workers(loop, bad)


def test_default_executor_is_not_used(loop, tmp_path):
    """A full default executor does not hold up file I/O."""
    release = threading.Event()
    executor = concurrent.futures.ThreadPoolExecutor(1)
    loop.set_default_executor(executor)
    path = tmp_path / "f"
    path.write_bytes(b"data")

    async def main():
        blocked = loop.run_in_executor(None, release.wait, 10)
        assert await fs.read_bytes(path) == b"data"
        async with fs.open_file(path, "rb") as f:
            assert await f.read() == b"data"
        assert not blocked.done()
        release.set()
        await blocked

    run(loop, main())


def test_pool_is_per_loop():
    a, b = conveyor.new_event_loop(), conveyor.new_event_loop()
    try:
        fs.set_max_workers(a, 3)
        assert fs.max_workers(b) == fs.DEFAULT_MAX_WORKERS
        assert fs.pool.pool_for(a) is not fs.pool.pool_for(b)
    finally:
        a.close()
        b.close()
    assert fs.pool._pools.get(a) is None  # closed loops drop their pool


def test_conveyor_loop_close_stops_the_threads(tmp_path):
    loop = conveyor.new_event_loop()
    (tmp_path / "f").write_bytes(b"x")
    try:
        loop.run_until_complete(fs.read_bytes(tmp_path / "f"))
        pool = fs.pool._pools[loop]
        assert pool.threads >= 1
    finally:
        loop.close()
    assert pool.join(10)
    assert pool.threads == 0
    with pytest.raises(RuntimeError):
        fs.pool.pool_for(loop)


# -- cancellation ---------------------------------------------------------------------------


class Gate:
    """A file whose reads (or writes) stop half-way until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def file(self, path, mode="rb", fail=None):
        gate = self

        class Gated(io.FileIO):
            def read(self, size=-1):
                data = super().read(size)
                gate.entered.set()
                gate.release.wait(10)
                return data

            def write(self, data):
                gate.entered.set()
                gate.release.wait(10)
                if fail is not None:
                    raise fail
                return super().write(data)

        return Gated(path, mode)


async def wait_entered(gate: Gate) -> None:
    """Wait (without blocking the loop) until a worker is inside the gated call."""
    await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)


def test_cancelled_before_start_never_runs(loop, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(bytes(range(50)))
    fs.set_max_workers(loop, 1)
    gate = Gate()

    async def main():
        async with fs.open_file(path, "rb") as f:
            blocker = fs.wrap_file(gate.file(path))
            busy = asyncio.create_task(blocker.read(1))  # holds the only worker
            await wait_entered(gate)
            task = asyncio.create_task(f.read(10))
            await asyncio.sleep(0)  # let it queue its job behind the busy worker
            task.cancel()
            gate.release.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await f.tell() == 0
            assert await f.read(10) == bytes(range(10))
        await busy
        await blocker.close()

    run(loop, main())


@pytest.mark.parametrize("when", ["while the thread runs", "after the result arrived"])
def test_cancelled_read_restores_the_position(loop, tmp_path, when):
    path = tmp_path / "f"
    path.write_bytes(bytes(range(100)))
    gate = Gate()

    async def main():
        f = fs.wrap_file(gate.file(path))
        await f.seek(5)
        task = asyncio.create_task(f.read(10))
        await wait_entered(gate)  # the thread has read the bytes and is about to return
        if when == "while the thread runs":
            task.cancel()
            gate.release.set()
        else:
            await cancel_between_result_and_task(f, task, gate)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await f.tell() == 5
        assert await f.read(10) == bytes(range(5, 15))
        await f.close()

    run(loop, main())


async def cancel_between_result_and_task(f, task, gate):
    """Cancel ``task`` after the pool delivered its result but before the task resumed.

    The pool's wake-up for the finished job is noted; a blocking callback on the loop holds
    the loop until it has been posted, then queues ``task.cancel`` behind the pool's drain.
    """
    loop = asyncio.get_running_loop()
    pool = fs.pool._pools[loop]
    posted = threading.Event()
    original = pool._post

    def post(job):
        original(job)
        posted.set()

    pool._post = post
    done = loop.create_future()

    def hold_loop():
        gate.release.set()
        assert posted.wait(10)
        loop.call_soon(task.cancel)  # runs after the drain, before the task's wake-up
        loop.call_soon(done.set_result, None)

    loop.call_soon(hold_loop)
    await done
    del pool._post


def test_cancelled_text_readline_restores_the_position(loop, tmp_path):
    path = tmp_path / "t.txt"
    lines = [f"line {i} ä\n" for i in range(300)]
    path.write_text("".join(lines), encoding="utf-8")
    rng = random.Random(7)

    async def main():
        got = []
        async with fs.open_file(path, encoding="utf-8") as f:
            while True:
                task = asyncio.create_task(f.readline())
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    line = await task
                except asyncio.CancelledError:
                    line = await f.readline()
                if not line:
                    break
                got.append(line)
        assert got == lines

    run(loop, main())


def test_random_cancellation_never_loses_bytes(loop, tmp_path):
    path = tmp_path / "blob"
    data = os.urandom(64 * 1024)
    path.write_bytes(data)
    rng = random.Random(1)

    async def main():
        out = bytearray()
        cancelled = 0
        async with fs.open_file(path, "rb") as f:
            while len(out) < len(data):
                task = asyncio.create_task(f.read(rng.randrange(1, 3000)))
                for _ in range(rng.randrange(5)):
                    await asyncio.sleep(0)
                # Only half the reads are cancelled. Whether a read's thread runs within a few
                # loop turns depends on the machine's load; cancelling every read could cancel
                # them all, and the loop would never finish (seen once in CI).
                if rng.random() < 0.5 and task.cancel():
                    cancelled += 1
                try:
                    out += await task
                except asyncio.CancelledError:
                    pass
        assert bytes(out) == data
        assert cancelled > 0

    run(loop, main())


def test_cancelled_read_on_a_pipe_keeps_the_data(loop):
    r, w = os.pipe()
    entered = threading.Event()

    class PipeReader(io.FileIO):
        def read(self, size=-1):
            entered.set()
            return super().read(size)

    async def main():
        f = fs.wrap_file(PipeReader(r, "rb"))
        assert not f.seekable()
        task = asyncio.create_task(f.read(10))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        os.write(w, b"first\nsecond\nthird")  # the abandoned read gets these bytes
        os.close(w)
        assert await f.read(3) == b"fir"        # served from what the read kept
        assert await f.readline() == b"st\n"
        assert await f.readlines() == [b"second\n", b"third"]
        assert await f.read() == b""
        await f.close()

    run(loop, main())


def test_cancelled_open_closes_the_file(loop, tmp_path):
    """The fixture's fd check fails if an abandoned open leaves its descriptor open."""
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fs.set_max_workers(loop, 1)  # one worker: jobs finish in the order submitted

    async def open_it():
        return await fs.open_file(path)

    async def main():
        for spins in range(6):
            task = asyncio.create_task(open_it())
            for _ in range(spins):
                await asyncio.sleep(0)
            task.cancel()
            try:
                f = await task
            except asyncio.CancelledError:
                pass
            else:
                await f.close()
        # Once this returns, every abandoned open has finished and queued its close ...
        await fs.exists(path)
        # ... and once this returns, those closes have run.
        await fs.exists(path)

    run(loop, main())


def test_cancelled_close_still_closes(loop, tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    fs.set_max_workers(loop, 1)
    gate = Gate()

    async def main():
        f = await fs.open_file(tmp_path / "f", "rb")
        blocker = fs.wrap_file(gate.file(tmp_path / "f"))
        busy = asyncio.create_task(blocker.read())  # holds the only worker
        await wait_entered(gate)
        close = asyncio.create_task(f.close())
        await asyncio.sleep(0)  # its job is queued behind the busy worker
        close.cancel()
        with pytest.raises(asyncio.CancelledError):
            await close
        gate.release.set()
        await busy
        await blocker.close()
        await f.close()  # waits for the abandoned close, which ran anyway
        assert f.closed

    run(loop, main())


def test_cancelled_write_stands_and_failure_is_reported(loop, tmp_path):
    path = tmp_path / "f"
    gate = Gate()
    failure = OSError(errno.ENOSPC, "No space left on device")

    async def main():
        f = fs.wrap_file(gate.file(path, "wb", fail=failure))
        task = asyncio.create_task(f.write(b"abc"))
        await wait_entered(gate)
        task.cancel()
        gate.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await f.flush()  # waits until the abandoned write has finished
        await f.close()

    run(loop, main())
    assert [c["exception"] for c in loop.handler_calls] == [failure]
    assert "cancelled" in loop.handler_calls[0]["message"]
    loop.handler_calls.clear()


def test_cancelled_path_call_does_not_break_the_pool(loop, tmp_path):
    async def main():
        task = asyncio.create_task(fs.stat(tmp_path))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await fs.stat(tmp_path)).st_mode

    run(loop, main())


def test_bench_fs_workloads_run():
    """The fs bench suite's workloads work (tiny sizes); aiofiles only if installed."""
    from conveyor.bench import fs as bench_fs

    names = {w.name for w in bench_fs.WORKLOADS}
    assert names == {"open_file", "aiofiles", "sync"}
    for workload in bench_fs.WORKLOADS:
        if workload.name == "aiofiles":
            pytest.importorskip("aiofiles")
        with asyncio.Runner(loop_factory=conveyor.new_event_loop) as runner:
            ops, seconds = runner.run(workload.func(count=10, size=1024))
        assert ops == 10 and seconds > 0

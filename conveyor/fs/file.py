"""Async file I/O: open, read, write and walk files without blocking the event loop.

    from conveyor.files import open_file, read_bytes, write_text   # also on `conveyor`

    async with open_file("data.txt") as f:      # or: f = await open_file(...)
        async for line in f:
            ...
    data = await read_bytes("blob.bin")
    await write_text("out.txt", "hello\\n")

An :class:`AsyncFile` has the file methods that block as coroutines (``read``, ``read1``,
``readline``, ``readlines``, ``write``, ``writelines``, ``seek``, ``tell``, ``flush``,
``truncate``, ``close``, ``async for``, ``async with``) and the ones that don't as plain
attributes (``name``, ``mode``, ``closed``, ``encoding``, ``fileno()``, ...). Path functions
(``stat``, ``exists``, ``listdir``, ``iterdir``, ``mkdir``, ``remove``, ``rename``, ...) are
coroutines too. Works on any asyncio loop; conveyor's loop is not required.

Threads
-------
Regular files are always "ready" as far as epoll and kqueue are concerned, so the only
portable way to keep a slow disk (or NFS, or a page-cache miss) off the loop is to make the
blocking call in another thread. Every call here runs on a bounded pool of threads that
belongs to the running loop (see :mod:`conveyor._filepool`), not on the loop's default
executor, so file work and ``run_in_executor`` users cannot starve each other. Bound it with
``conveyor.files.set_max_workers(loop, n)`` (default :data:`DEFAULT_MAX_WORKERS`). The pool
shuts down when the loop closes (on loops without a close hook, when the loop is
garbage-collected).

Calls on one :class:`AsyncFile` run one at a time, in the order they were made, so
``f.write(a)`` followed by a concurrent ``f.write(b)`` writes ``a`` then ``b``. Different
files proceed in parallel.

Errors
------
Every call raises what the synchronous call raises: ``FileNotFoundError``,
``PermissionError``, ``IsADirectoryError``, ``ValueError`` for I/O on a closed file,
``io.UnsupportedOperation`` for writing a file opened for reading, and so on.

Cancellation
------------
A thread cannot be interrupted, so cancelling a call cannot stop work a thread has already
begun. The rule, per kind of call:

- **Not started yet.** A call still waiting for a thread when its task is cancelled never
  runs.
- **Reads** (``read``, ``read1``, ``readline``, ``readlines``, ``async for``) that are
  cancelled after their thread began are *undone*: the read finishes in its thread, then the
  file position is restored to where that read started, so the next call reads the same
  bytes again and nothing is lost. The cancelled task gets ``CancelledError`` at once; the
  file's next call waits until the restore is done. On files that cannot seek (pipes,
  terminals, sockets) the data the cancelled read got is kept instead and returned first by
  the next read (``readline`` finds line ends in kept data at ``"\\n"``).
- **Everything else** (``write``, ``flush``, ``truncate``, ``seek``, ``close``, path
  functions such as ``mkdir`` or ``rename``) cancelled after its thread began *stands*: it
  completes, like a ``send`` the kernel already took. The next call on the same file waits
  for it. If such a call fails after its caller was cancelled, the error goes to the loop's
  exception handler, since nobody is left to raise it to. ``close`` always runs, even when
  cancelled before it started, so a cancelled ``async with`` never leaks a descriptor.
- ``open_file`` cancelled after the thread opened the file closes that file again.

Lifetime: threads are daemon threads. A call still running in a thread when the program
exits is abandoned like any thread the program did not wait for; close files before the
loop ends.
"""

from __future__ import annotations

import asyncio
import io
import os
import pathlib
from typing import Any, AsyncIterator, Callable, Iterable, Union

from .pool import DEFAULT_MAX_WORKERS, FilePool, Job, max_workers, pool_for, set_max_workers

__all__ = [
    "AsyncFile", "OpeningFile", "open_file", "wrap_file",
    "read_bytes", "read_text", "write_bytes", "write_text",
    "stat", "exists", "isfile", "isdir", "listdir", "iterdir", "mkdir", "rmdir",
    "remove", "unlink", "rename", "replace",
    "set_max_workers", "max_workers", "DEFAULT_MAX_WORKERS",
]

StrPath = Union[str, "os.PathLike[str]"]
AnyPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]", int]


class AsyncFile:
    """A file object whose blocking methods are coroutines run on the loop's file pool.

    Made by :func:`open_file` or :func:`wrap_file`. The underlying synchronous file is
    ``.wrapped``; cheap queries (``name``, ``mode``, ``closed``, ``fileno()``, ...) are plain
    attributes and methods.
    """

    __slots__ = ("_file", "_pool", "_lock", "_settling", "_carry", "_tell", "_empty",
                 "__weakref__")

    def __init__(self, file: Any, pool: FilePool, seekable: bool) -> None:
        self._file = file
        self._pool = pool
        self._lock = asyncio.Lock()
        #: Resolved when a call whose caller was cancelled has finished (and been undone).
        self._settling: asyncio.Future[None] | None = None
        #: Data a cancelled read got from a file that cannot seek back; returned next.
        self._empty: bytes | str = "" if isinstance(file, io.TextIOBase) else b""
        self._carry = self._empty
        #: How a read records where it started, so a cancelled read can be undone.
        self._tell: Callable[[], int] | None = file.tell if seekable else None

    # -- plain attributes -----------------------------------------------------------------

    @property
    def wrapped(self) -> Any:
        """The synchronous file object underneath."""
        return self._file

    @property
    def name(self) -> Any:
        return self._file.name

    @property
    def mode(self) -> str:
        return self._file.mode

    @property
    def closed(self) -> bool:
        return self._file.closed

    @property
    def encoding(self) -> str:
        return self._file.encoding

    @property
    def errors(self) -> str | None:
        return self._file.errors

    @property
    def newlines(self) -> Any:
        return self._file.newlines

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return self._file.isatty()

    def readable(self) -> bool:
        return self._file.readable()

    def writable(self) -> bool:
        return self._file.writable()

    def seekable(self) -> bool:
        return self._file.seekable()

    def __repr__(self) -> str:
        return f"<conveyor.files.AsyncFile wrapping {self._file!r}>"

    # -- reading ----------------------------------------------------------------------------

    async def read(self, size: int | None = -1) -> Any:
        """Read up to ``size`` bytes or characters; all that is left if ``size`` < 0."""
        size = -1 if size is None else size
        return await self._read(self._file.read, size, _take_read)

    async def read1(self, size: int = -1) -> bytes:
        """Binary files: read up to ``size`` bytes with at most one call to the OS."""
        return await self._read(self._file.read1, size, _take_read1)

    async def readline(self, size: int | None = -1) -> Any:
        """Read one line (up to ``size`` bytes or characters); empty at end of file."""
        size = -1 if size is None else size
        return await self._read(self._file.readline, size, self._take_line)

    async def readlines(self, hint: int | None = -1) -> list[Any]:
        """Read lines until end of file, or until they add up to ``hint`` or more."""
        hint = -1 if hint is None or hint <= 0 else hint
        if not self._carry:
            return await self._read(self._file.readlines, hint, None)
        return await self._readlines_with_carry(hint)

    def __aiter__(self) -> AsyncFile:
        return self

    async def __anext__(self) -> Any:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    # -- writing and positioning ---------------------------------------------------------

    async def write(self, data: Any) -> int:
        """Write ``data``; returns how many bytes or characters were written."""
        return await self._call(self._file.write, data)

    async def writelines(self, lines: Iterable[Any]) -> None:
        """Write each item of ``lines`` (no separators are added)."""
        if not isinstance(lines, (list, tuple)):
            lines = list(lines)  # iterate on the loop's thread, not the worker's
        await self._call(self._file.writelines, lines)

    async def flush(self) -> None:
        await self._call(self._file.flush)

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the file position; returns the new absolute position."""
        async with self._lock:
            await self._settle()
            carry, self._carry = self._carry, self._empty
            if carry and whence == os.SEEK_CUR and not isinstance(carry, str):
                offset -= len(carry)  # the OS position is past data we still owe the caller
            return await self._submit(self._file.seek, (offset, whence), self._stands)

    async def tell(self) -> int:
        """The current file position (an opaque number in text mode)."""
        async with self._lock:
            await self._settle()
            position = await self._submit(self._file.tell, (), self._stands)
            if self._carry and not isinstance(self._carry, str):
                position -= len(self._carry)
            return position

    async def truncate(self, size: int | None = None) -> int:
        return await self._call(self._file.truncate, size)

    async def close(self) -> None:
        """Close the file (flushing it first). Runs even if cancelled before it starts."""
        async with self._lock:
            await self._settle()
            self._carry = self._empty
            if self._file.closed:
                return
            await self._submit(self._file.close, (), self._stands, always=True)

    async def __aenter__(self) -> AsyncFile:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- machinery ----------------------------------------------------------------------------

    async def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        """Run ``method(*args)`` in a thread, in turn with this file's other calls."""
        async with self._lock:
            await self._settle()
            return await self._submit(method, args, self._stands)

    async def _submit(self, fn: Callable[..., Any], args: tuple,
                      undo: Callable[[Job], Job | None], always: bool = False) -> Any:
        """Submit one job and await it; on cancellation hand it to :meth:`_abandon`.

        Called with the lock held. ``undo(job)`` runs on the loop's thread once the job has
        finished (or been skipped) after its caller was cancelled; it may return a follow-up
        job that the file's next call must wait for.
        """
        job = self._pool.submit(fn, args, always)
        try:
            return await job.future
        except asyncio.CancelledError:
            self._abandon(job, undo)
            raise

    async def _read(self, method: Callable[[int], Any], arg: int,
                    take: Callable[[Any, int], tuple[Any, Any, int | None]] | None) -> Any:
        """One read: serve what it can from the carry, read the rest in a thread."""
        async with self._lock:
            await self._settle()
            carry = self._carry
            head = self._empty
            if carry:
                assert take is not None
                head, self._carry, arg = take(carry, arg)
                if arg is None:  # satisfied from the carry alone
                    return head
            undo = _ReadUndo(self, head)
            _mark, data = await self._submit(_marked, (self._tell, method, arg), undo)
            return head + data if head else data

    def _take_line(self, carry: Any, size: int) -> tuple[Any, Any, int | None]:
        """readline from the carry: a whole line if it holds one, else all of it and ask
        the file for the rest of the line."""
        end = _line_end(carry, size)
        if end is not None:
            return carry[:end], carry[end:], None
        if 0 <= size <= len(carry):
            return carry[:size], carry[size:], None
        return carry, self._empty, -1 if size < 0 else size - len(carry)

    async def _readlines_with_carry(self, hint: int) -> list[Any]:
        lines: list[Any] = []
        total = 0
        try:
            while self._carry:
                line = await self.readline()
                if not line:
                    return lines
                lines.append(line)
                total += len(line)
                if 0 < hint <= total:
                    return lines
            lines.extend(await self.readlines(-1 if hint < 0 else hint - total))
        except asyncio.CancelledError:
            # Lines taken so far go back in front of whatever the file still owes.
            self._carry = self._empty.join(lines) + self._carry
            raise
        return lines

    async def _settle(self) -> None:
        """Wait until a call abandoned by a cancelled caller has finished (and been undone)."""
        while (settling := self._settling) is not None:
            await asyncio.shield(settling)

    def _abandon(self, job: Job, undo: Any) -> None:
        """The caller of ``job`` was cancelled: see the job through without it."""
        loop = job.future.get_loop()
        settling = loop.create_future()
        self._settling = settling

        def settled() -> None:
            if self._settling is settling:
                self._settling = None
            settling.set_result(None)

        def follow_done(future: asyncio.Future) -> None:
            if not future.cancelled() and future.exception() is not None:
                self._report(loop, future.exception())
            settled()

        def orphaned(job: Job) -> None:
            follow = undo(job)
            if follow is None:
                settled()
            else:
                follow.future.add_done_callback(follow_done)

        job.abandon(orphaned)

    def _stands(self, job: Job) -> None:
        """Undo for calls whose effect stands: only report a failure nobody else will see."""
        if job.ran and job.error is not None:
            self._report(job.future.get_loop(), job.error)

    def _report(self, loop: asyncio.AbstractEventLoop, exc: BaseException) -> None:
        loop.call_exception_handler({
            "message": "file operation failed after its caller was cancelled",
            "exception": exc,
            "file": self._file,
        })


class _ReadUndo:
    """Undo a read whose caller was cancelled: seek back, or keep the data for later."""

    __slots__ = ("file", "head")

    def __init__(self, file: AsyncFile, head: Any) -> None:
        self.file = file
        self.head = head  # what the read had already taken from the carry

    def __call__(self, job: Job) -> Job | None:
        file = self.file
        if not job.ran or job.error is not None:
            file._carry = file._carry + self.head if self.head else file._carry
            return None
        mark, data = job.value
        if isinstance(data, list):
            data = file._empty.join(data)
        if mark is not None:
            file._carry = file._carry + self.head
            return file._pool.submit(file._file.seek, (mark,))
        file._carry = file._carry + self.head + data
        return None


def _marked(tell: Callable[[], int] | None, method: Callable[[int], Any], arg: int
            ) -> tuple[int | None, Any]:
    """Thread side of a read: note where it starts (if the file can say), then read."""
    mark = None
    if tell is not None:
        try:
            mark = tell()
        except OSError:  # e.g. a text decoder that cannot produce a cookie here
            pass
    return mark, method(arg)


def _take_read(carry: Any, size: int) -> tuple[Any, Any, int | None]:
    if size < 0:
        return carry, carry[:0], -1
    if size <= len(carry):
        return carry[:size], carry[size:], None
    return carry, carry[:0], size - len(carry)


def _take_read1(carry: Any, size: int) -> tuple[Any, Any, int | None]:
    if size < 0:
        return carry, carry[:0], None
    return carry[:size], carry[size:], None


def _line_end(carry: Any, size: int) -> int | None:
    """Where the first line in ``carry`` ends (within ``size``), or None."""
    newline = "\n" if isinstance(carry, str) else b"\n"
    index = carry.find(newline)
    if index < 0 or (0 <= size <= index):
        return None
    return index + 1


# -- opening ------------------------------------------------------------------------------


class OpeningFile:
    """What :func:`open_file` returns: await it for an :class:`AsyncFile`, or use it
    directly as ``async with open_file(...) as f:``, which closes the file on the way out."""

    __slots__ = ("_args", "_file")

    def __init__(self, args: tuple) -> None:
        self._args = args
        self._file: AsyncFile | None = None

    def __await__(self) -> Any:
        return _open(*self._args).__await__()

    async def __aenter__(self) -> AsyncFile:
        self._file = await _open(*self._args)
        return self._file

    async def __aexit__(self, *exc_info: object) -> None:
        file, self._file = self._file, None
        if file is not None:
            await file.close()


def open_file(file: AnyPath, mode: str = "r", buffering: int = -1,
              encoding: str | None = None, errors: str | None = None,
              newline: str | None = None, closefd: bool = True,
              opener: Callable[[str, int], int] | None = None) -> OpeningFile:
    """Open a file without blocking the loop; the arguments are those of :func:`open`.

    ``f = await open_file(path)`` or ``async with open_file(path) as f:``. The file's
    blocking calls run on the running loop's file pool (see the module docstring).
    """
    return OpeningFile((file, mode, buffering, encoding, errors, newline, closefd, opener))


async def _open(*args: Any) -> AsyncFile:
    pool = pool_for(asyncio.get_running_loop())
    job = pool.submit(_open_sync, args)
    try:
        sync_file, seekable = await job.future
    except asyncio.CancelledError:
        job.abandon(lambda job: _close_orphan(pool, job))
        raise
    return AsyncFile(sync_file, pool, seekable)


def _open_sync(file: AnyPath, mode: str, buffering: int, encoding: str | None,
               errors: str | None, newline: str | None, closefd: bool,
               opener: Callable[[str, int], int] | None) -> tuple[Any, bool]:
    """Thread side of open_file: open, and ask once whether the file can seek."""
    sync_file = open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    try:
        return sync_file, sync_file.seekable()
    except BaseException:
        sync_file.close()
        raise


def _close_orphan(pool: FilePool, job: Job) -> None:
    """Close the file an open job got for a caller who was cancelled meanwhile."""
    if job.ran and job.error is None:
        pool.submit(job.value[0].close, (), True).future.add_done_callback(_swallow)


def _swallow(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # mark it retrieved: closing a file nobody holds can only be best-effort


def wrap_file(file: Any) -> AsyncFile:
    """Wrap an already open synchronous file object (for example ``sys.stdin.buffer``) so its
    blocking calls run on the running loop's file pool."""
    try:
        seekable = file.seekable()
    except (OSError, ValueError):
        seekable = False
    return AsyncFile(file, pool_for(asyncio.get_running_loop()), seekable)


# -- whole files --------------------------------------------------------------------------


async def read_bytes(path: AnyPath) -> bytes:
    """The whole content of the file at ``path``, in one trip to a thread."""
    return await _run(_read_bytes_sync, path)


async def read_text(path: AnyPath, encoding: str | None = None, errors: str | None = None,
                    newline: str | None = None) -> str:
    """The whole content of the file at ``path``, decoded, in one trip to a thread."""
    return await _run(_read_text_sync, path, encoding, errors, newline)


async def write_bytes(path: AnyPath, data: bytes) -> int:
    """Replace the content of the file at ``path`` with ``data``; returns the byte count."""
    return await _run(_write_sync, path, "wb", memoryview(data), None, None, None)


async def write_text(path: AnyPath, data: str, encoding: str | None = None,
                     errors: str | None = None, newline: str | None = None) -> int:
    """Replace the content of the file at ``path`` with ``data``; returns the character
    count."""
    if not isinstance(data, str):
        raise TypeError(f"data must be str, not {type(data).__name__}")
    return await _run(_write_sync, path, "w", data, encoding, errors, newline)


def _read_bytes_sync(path: AnyPath) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_text_sync(path: AnyPath, encoding: str | None, errors: str | None,
                    newline: str | None) -> str:
    with open(path, "r", encoding=encoding, errors=errors, newline=newline) as f:
        return f.read()


def _write_sync(path: AnyPath, mode: str, data: Any, encoding: str | None,
                errors: str | None, newline: str | None) -> int:
    with open(path, mode, encoding=encoding, errors=errors, newline=newline) as f:
        return f.write(data)


# -- paths -------------------------------------------------------------------------------
# One trip to a thread each. A call cancelled after its thread began still takes effect.


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    return await pool_for(asyncio.get_running_loop()).submit(fn, args).future


async def stat(path: AnyPath, *, follow_symlinks: bool = True) -> os.stat_result:
    """``os.stat`` in a thread."""
    return await _run(_stat_sync, path, follow_symlinks)


def _stat_sync(path: AnyPath, follow_symlinks: bool) -> os.stat_result:
    return os.stat(path, follow_symlinks=follow_symlinks)


async def exists(path: AnyPath) -> bool:
    """``os.path.exists`` in a thread."""
    return await _run(os.path.exists, path)


async def isfile(path: AnyPath) -> bool:
    """``os.path.isfile`` in a thread."""
    return await _run(os.path.isfile, path)


async def isdir(path: AnyPath) -> bool:
    """``os.path.isdir`` in a thread."""
    return await _run(os.path.isdir, path)


async def listdir(path: StrPath = ".") -> list[str]:
    """``os.listdir`` in a thread: the names in the directory, in no particular order."""
    return await _run(os.listdir, path)


def iterdir(path: StrPath = ".") -> AsyncIterator[pathlib.Path]:
    """``async for entry in iterdir(path)``: like ``pathlib.Path(path).iterdir()``.

    The directory is listed in one trip to a thread when iteration starts, so the iterator
    holds no open directory handle between steps.
    """
    return _DirIterator(pathlib.Path(path))


class _DirIterator:
    __slots__ = ("_path", "_names")

    def __init__(self, path: pathlib.Path) -> None:
        self._path = path
        self._names: Iterable[str] | None = None

    def __aiter__(self) -> _DirIterator:
        return self

    async def __anext__(self) -> pathlib.Path:
        if self._names is None:
            self._names = iter(await _run(os.listdir, self._path))
        for name in self._names:
            return self._path / name
        raise StopAsyncIteration


async def mkdir(path: StrPath, mode: int = 0o777, *, parents: bool = False,
                exist_ok: bool = False) -> None:
    """``pathlib.Path(path).mkdir(mode, parents, exist_ok)`` in a thread."""
    await _run(_mkdir_sync, path, mode, parents, exist_ok)


def _mkdir_sync(path: StrPath, mode: int, parents: bool, exist_ok: bool) -> None:
    pathlib.Path(path).mkdir(mode, parents, exist_ok)


async def rmdir(path: AnyPath) -> None:
    """``os.rmdir`` in a thread."""
    await _run(os.rmdir, path)


async def remove(path: AnyPath) -> None:
    """``os.remove`` in a thread."""
    await _run(os.remove, path)


unlink = remove


async def rename(src: AnyPath, dst: AnyPath) -> None:
    """``os.rename`` in a thread."""
    await _run(os.rename, src, dst)


async def replace(src: AnyPath, dst: AnyPath) -> None:
    """``os.replace`` in a thread."""
    await _run(os.replace, src, dst)

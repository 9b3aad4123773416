"""An open file whose blocking calls run on the loop's file pool: `AsyncFile`, and
`open_file` / `wrap_file` that make one.

The rules these follow (one call at a time per file, errors as the synchronous call raises
them, what a cancelled read or write does) are the package's: see conveyor/fs/__init__.py.
"""

from __future__ import annotations

import asyncio
import io
import os
from typing import Any, Callable, Iterable

from .paths import AnyPath
from .pool import FilePool, Job, pool_for

__all__ = ["AsyncFile", "OpeningFile", "open_file", "wrap_file"]


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
        return f"<conveyor.fs.AsyncFile wrapping {self._file!r}>"

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

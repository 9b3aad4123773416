"""Async file I/O: open, read, write and walk files without blocking the event loop.

    from conveyor.fs import open_file, read_bytes, write_text   # also on `conveyor`

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

Modules: ``file.py`` holds :class:`AsyncFile` and ``open_file`` / ``wrap_file``;
``paths.py`` the one-call functions (whole files, ``stat``, ``mkdir``, ...); ``pool.py``
the per-loop thread pool they all run on.

Threads
-------
Regular files are always "ready" as far as epoll and kqueue are concerned, so the only
portable way to keep a slow disk (or NFS, or a page-cache miss) off the loop is to make the
blocking call in another thread. Every call here runs on a bounded pool of threads that
belongs to the running loop (see :mod:`conveyor.fs.pool`), not on the loop's default
executor, so file work and ``run_in_executor`` users cannot starve each other. Bound it with
``conveyor.fs.set_max_workers(loop, n)`` (default :data:`DEFAULT_MAX_WORKERS`). The pool
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

from .file import AsyncFile, OpeningFile, open_file, wrap_file
from .paths import (exists, isdir, isfile, iterdir, listdir, mkdir, read_bytes, read_text,
                    remove, rename, replace, rmdir, stat, unlink, write_bytes, write_text)
from .pool import DEFAULT_MAX_WORKERS, max_workers, set_max_workers

__all__ = [
    "AsyncFile", "OpeningFile", "open_file", "wrap_file",
    "read_bytes", "read_text", "write_bytes", "write_text",
    "stat", "exists", "isfile", "isdir", "listdir", "iterdir", "mkdir", "rmdir",
    "remove", "unlink", "rename", "replace",
    "set_max_workers", "max_workers", "DEFAULT_MAX_WORKERS",
]

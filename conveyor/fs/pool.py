"""The bounded thread pool that runs blocking file work for one event loop.

Regular files are always "ready" to the kernel's readiness APIs, so an event loop cannot
wait for them the way it waits for sockets: the only portable way to keep a slow disk from
stalling the loop is to do the call in another thread. This module is that thread pool.

Why not ``loop.run_in_executor(None, ...)``:

- **Isolation.** The default executor is shared with DNS lookups and whatever the program
  hands it. A burst of file work must not starve those users (nor the other way round), so
  each loop gets a pool of its own with its own bound (:func:`set_max_workers`).
- **Cost.** ``run_in_executor`` creates a ``concurrent.futures.Future``, chains it to an
  asyncio future and wakes the loop once per call. Here a worker hands back a small job
  object, and completions are batched: the loop is woken once for however many jobs finish
  before it gets round to collecting them.
- **Cancellation needs the result.** When the awaiting task is cancelled, a thread that has
  already started cannot be stopped. :mod:`conveyor.fs` must still see what the call did
  (to restore a file position, or close a file that was opened for nobody), so the job keeps
  its outcome even though its future was cancelled, and calls ``on_orphan`` with it.

Lifetime: a pool is made on first use for a loop and kept in a weak mapping keyed by the
loop. If the loop has ``_on_close(callback)`` (conveyor's loop does) the pool shuts down when
the loop closes; on other loops it shuts down when the loop is garbage-collected. Worker
threads are daemon threads, started on demand up to the bound, and they exit at shutdown.
Shutdown does not wait for a call still running in a thread (a read from a FIFO may never
end); a job that had not started is dropped, unless it is a close.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import weakref
from typing import Any, Callable

__all__ = ["DEFAULT_MAX_WORKERS", "FilePool", "pool_for", "set_max_workers", "max_workers"]

#: Threads per loop unless :func:`set_max_workers` says otherwise. File calls are short and
#: mostly wait on the page cache or the disk, so a few threads more than cores keeps the
#: disk queue busy without piling up threads that only fight over the GIL.
DEFAULT_MAX_WORKERS: int = min(16, (os.cpu_count() or 1) + 4)

_STOP = None  # the sentinel a worker exits on


class Job:
    """One call to run in a worker thread, and its outcome once it has run.

    ``future`` is what the caller awaits. ``ran`` is False when the job was skipped because
    its future had been cancelled before a worker picked it up (unless ``always``). ``on_orphan(job)`` is called
    on the loop's thread when the job finishes after its future was cancelled.
    """

    __slots__ = ("fn", "args", "future", "always", "ran", "value", "error", "done", "on_orphan")

    def __init__(self, fn: Callable[..., Any], args: tuple, future: asyncio.Future,
                 always: bool = False) -> None:
        self.fn = fn
        self.always = always  # run even if the future was cancelled first (close)
        self.args = args
        self.future = future
        self.ran = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.on_orphan: Callable[[Job], None] | None = None

    def run(self) -> None:
        """Worker side: run the call unless nobody is waiting for it any more."""
        if self.future.cancelled() and not self.always:
            return  # reading one flag is safe from here: only the loop's thread sets it
        self.ran = True
        try:
            self.value = self.fn(*self.args)
        except BaseException as exc:  # handed to the awaiting task, as a sync call would raise
            self.error = exc

    def finish(self) -> None:
        """Loop side: deliver the outcome to the future, or to ``on_orphan``."""
        self.done = True
        future = self.future
        if not future.cancelled():
            if self.error is None:
                future.set_result(self.value)
            else:
                future.set_exception(self.error)
        elif self.on_orphan is not None:
            self.on_orphan(self)

    def abandon(self, on_orphan: Callable[[Job], None]) -> None:
        """The awaiting task was cancelled: call ``on_orphan(job)`` once the job has finished
        (at once if it already has), with ``ran``, ``value`` and ``error`` telling what the
        thread did. Loop thread only.

        The job may have finished in any of three ways: not yet (the future was cancelled
        and the thread is still running), already with the future cancelled (the pool
        delivered the result between the cancel and the task's resumption), or already with
        the result set on the future (the task was cancelled after the result arrived).
        """
        if not self.done:
            self.on_orphan = on_orphan
            return
        if not self.future.cancelled():
            self.future.exception()  # retrieved here: the task will never look at it
        on_orphan(self)


class FilePool:
    """Worker threads for one loop, at most ``max_workers`` of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_workers: int) -> None:
        # Weak, because the registry maps loop -> pool: a strong reference back would keep
        # every loop that ever opened a file alive.
        self._loop_ref = weakref.ref(loop)
        self._create_future = weakref.WeakMethod(loop.create_future)
        self._max = _check_workers(max_workers)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._idle = 0                       # workers waiting for a job and not yet claimed
        self._lock = threading.Lock()        # guards _idle, _threads, _finished, _drain_due
        self._threads: set[threading.Thread] = set()
        self._finished: list[Job] = []
        self._drain_due = False
        self._closed = False

    @property
    def max_workers(self) -> int:
        return self._max

    @max_workers.setter
    def max_workers(self, value: int) -> None:
        # Growing takes effect at the next submit; shrinking as busy workers finish a job.
        self._max = _check_workers(value)

    def submit(self, fn: Callable[..., Any], args: tuple = (), always: bool = False) -> Job:
        """Queue ``fn(*args)``; await ``job.future`` for its result. Loop thread only."""
        if self._closed:
            raise RuntimeError("the file pool of this event loop is shut down")
        make = self._create_future()
        if make is None:
            raise RuntimeError("the event loop of this file pool is gone")
        job = Job(fn, args, make(), always)
        self._jobs.put(job)
        with self._lock:
            if self._idle:
                self._idle -= 1  # claim a waiting worker: it will take this job
            elif len(self._threads) < self._max:
                self._start_worker()
        return job

    def shutdown(self) -> None:
        """Stop the workers; queued jobs are dropped, except ``always`` ones (closes).
        Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        keep = []
        try:
            while True:
                job = self._jobs.get_nowait()
                if job is not None and job.always:
                    keep.append(job)  # a close: it runs, or a descriptor leaks
        except queue.Empty:
            pass
        for job in keep:
            self._jobs.put(job)
        with self._lock:
            count = len(self._threads)
        for _ in range(count):
            self._jobs.put(_STOP)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the workers to exit after :meth:`shutdown`; True if they all did."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in threads)

    @property
    def threads(self) -> int:
        """How many worker threads are alive now."""
        with self._lock:
            return len(self._threads)

    # -- worker side --------------------------------------------------------------------------

    def _start_worker(self) -> None:  # called with self._lock held
        thread = threading.Thread(target=self._work, daemon=True,
                                  name=f"conveyor-files-{len(self._threads)}")
        self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        get = self._jobs.get
        me = threading.current_thread()
        while True:
            job = get()
            if job is _STOP:
                break
            job.run()
            self._post(job)
            with self._lock:
                if len(self._threads) > self._max:  # the bound was lowered: leave
                    self._threads.discard(me)
                    return
                self._idle += 1
        with self._lock:
            self._threads.discard(me)

    def _post(self, job: Job) -> None:
        """Hand a finished job to the loop; wake the loop only if no drain is pending."""
        with self._lock:
            self._finished.append(job)
            if self._drain_due:
                return
            self._drain_due = True
        loop = self._loop_ref()
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop closed while the call ran: nobody to tell
            pass

    def _drain(self) -> None:
        """Loop side: deliver every job finished since the last drain."""
        with self._lock:
            finished, self._finished = self._finished, []
            self._drain_due = False
        for job in finished:
            job.finish()


def _check_workers(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"max_workers must be a positive int, got {value!r}")
    return value


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FilePool] = (
    weakref.WeakKeyDictionary())


def pool_for(loop: asyncio.AbstractEventLoop) -> FilePool:
    """The file pool of ``loop``, made on first use."""
    pool = _pools.get(loop)
    if pool is None:
        if loop.is_closed():
            raise RuntimeError("Event loop is closed")
        pool = FilePool(loop, DEFAULT_MAX_WORKERS)
        _pools[loop] = pool
        on_close = getattr(loop, "_on_close", None)
        if callable(on_close):
            on_close(lambda: _retire(loop, pool))
        else:
            weakref.finalize(loop, pool.shutdown)
    return pool


def _retire(loop: asyncio.AbstractEventLoop, pool: FilePool) -> None:
    if _pools.get(loop) is pool:
        del _pools[loop]
    pool.shutdown()


def set_max_workers(loop: asyncio.AbstractEventLoop, n: int) -> None:
    """Bound the threads that run file work for ``loop`` to ``n`` (default
    :data:`DEFAULT_MAX_WORKERS`). Can be called before the loop runs or while it runs."""
    pool_for(loop).max_workers = n


def max_workers(loop: asyncio.AbstractEventLoop) -> int:
    """The current bound on file threads for ``loop``."""
    pool = _pools.get(loop)
    return DEFAULT_MAX_WORKERS if pool is None else pool.max_workers

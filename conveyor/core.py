"""The loop core: the ready queue, the timer heap, the fd table, and one iteration.

One iteration reads as a list of phases, like libuv's uv_run:

    1. compute the poll timeout (0 if anything is ready, else until the next timer);
    2. poll the kernel, and put the callback of every ready fd on the ready queue;
    3. move the timers that are due onto the ready queue;
    4. run what was on the ready queue when this phase began (anything those callbacks
       schedule waits for the next iteration, so a callback that reschedules itself cannot
       starve I/O).

I/O callbacks join the queue behind what is already there and timers behind them: the order
the standard loop gives, which programs rely on ("One, Three, Two").

The hot path is phase 2 and 4. Readiness goes from the poll result through two dicts (fd ->
handle) straight onto the queue, reusing the handle registered with add_reader: no object per
event. Callbacks run inline in the loop, not through `Handle._run`, which saves a Python call
per callback. Debug mode and instruments (conveyor.observe) switch phase 4 to a slower variant,
so neither costs anything when off.

This module imports nothing that moves bytes: `CoreLoop` is a complete loop for callbacks,
timers, fd readiness, executors and threads, and `conveyor.loop.EventLoop` adds the I/O
methods (sockets, servers, pipes, subprocesses, TLS, signals) bound from their own modules.
Those modules see the loop through `conveyor.contract.LoopInternals`: the operations at the
end of this class (parking a reader, queueing a prepared handle, gauges, ...) exist so that
only this file touches the ready queue, the fd tables, the poller and the timer heap.
(`handles.py`, `timers.py`, `waker.py` and `poller/` are the core's own parts.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections import deque
from contextvars import copy_context
from heapq import heappush
from itertools import repeat
from typing import Any, Callable, NamedTuple

from . import poller as poller_mod
from .handles import BareHandle, BareTimerHandle, Handle, TimerHandle
from .poller import READ, READABLE, WRITABLE
from .timers import TimerQueue
from .core_fds import FdTable
from .core_services import _DEBUG_STACK_DEPTH, LoopServices
from .waker import Waker

logger = logging.getLogger("asyncio")

#: Never ask the kernel to sleep longer than a day: timeouts beyond that are clamped, like
#: asyncio's MAXIMUM_SELECT_TIMEOUT, and a day is far below every backend's limit.
_MAX_TIMEOUT = 24 * 3600
#: At most this many callbacks from other threads join one iteration. Threads that call
#: call_soon_threadsafe faster than the loop runs the callbacks would otherwise grow each
#: iteration's batch without bound, and timers and I/O would wait behind it (8 threads x
#: 100k calls held a 10 ms timer back for 1.5-2 s). Bounded, the backlog drains over several
#: iterations, in order, with timers and I/O served between batches.
FROM_THREADS_PER_ITERATION = 1024
#: Past this backlog a thread calling call_soon_threadsafe yields the GIL once (a zero
#: sleep) after queueing its callback. Pure-Python producers otherwise hold the GIL for whole
#: switch intervals while the loop thread waits its turn behind all of them; yielding lets
#: the loop drain, and keeps the backlog (and its memory) bounded by the loop's pace.
FROM_THREADS_BACKLOG = 4 * FROM_THREADS_PER_ITERATION
#: Whether create_task hands `name` to the task factory (asyncio does from 3.14; before,
#: it sets the name on the task the factory returned).
_FACTORY_GETS_NAME = sys.version_info >= (3, 14)
#: Whether the loop keeps `call_soon` bound in its instance dict. Python 3.11's C Task
#: fetches `loop.call_soon` as an attribute for every step (a bound method made and freed
#: each time); the bound copy saves ~230 of ~8600 instructions a task switch (callgrind),
#: and costs Python callers ~200 (`loop.call_soon(...)` in Python no longer specialises).
#: From 3.12 the C Task looks the method up without binding it, so the copy only costs.
_BIND_CALL_SOON = sys.version_info < (3, 12)
#: What `on_new_loop` registered, called with every new loop in order. Only this module
#: changes it.
_new_loop_observers: list[Callable[[CoreLoop], Any]] = []


def on_new_loop(callback: Callable[[CoreLoop], Any]) -> Callable[[], None]:
    """Call ``callback(loop)`` with every conveyor loop created from now on, at the end of
    its ``__init__``; returns the function that stops it (calling that twice is harmless).

    For conveyor.observe, which instruments the loops a program creates itself
    (``python -m conveyor run --trace``, ``with conveyor.watchdog(...)``). A callback may
    stop itself while it is being called."""
    _new_loop_observers.append(callback)

    def stop() -> None:
        try:
            _new_loop_observers.remove(callback)
        except ValueError:
            pass

    return stop


class Gauges(NamedTuple):
    """What the loop holds right now (`CoreLoop._gauges`), for statistics and the console."""

    ready: int           #: callbacks on the ready queue
    from_threads: int    #: callbacks other threads queued that have not joined it yet
    timers: int          #: scheduled timers not cancelled
    cancelled_timers: int  #: cancelled timers still in the heap (dropped lazily)
    fds: int             #: fds registered with the poller


class QueueSnapshot(NamedTuple):
    """What is waiting to run (`CoreLoop._snapshot_queue`), for the step recorder of
    ``python -m conveyor explain``."""

    ready: tuple          #: the ready queue's handles, next to run first (cancelled included)
    timers: tuple         #: live timers as (deadline, handle), soonest first
    poller: str           #: the poller backend's name ("epoll", "kqueue", "poll", "select")


def _env_debug() -> bool:
    return sys.flags.dev_mode or (
        not sys.flags.ignore_environment and bool(os.environ.get("PYTHONASYNCIODEBUG")))


def _stop_when_done(fut: asyncio.Future) -> None:
    if not fut.cancelled() and isinstance(fut.exception(), (SystemExit, KeyboardInterrupt)):
        # The exception propagates out of run_forever by itself; stopping here as well would
        # make the next run_forever stop at once.
        return
    fut.get_loop().stop()


def _describe(handle: Any) -> str:
    """A handle's description for logs; a task step is named by its task, as asyncio does."""
    owner = getattr(handle._callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return repr(owner)
    return str(handle)


class CoreLoop(FdTable, LoopServices, asyncio.AbstractEventLoop):
    """A complete asyncio event loop in pure Python, less the methods that create sockets,
    servers, pipes, subprocesses and signal handlers (`conveyor.loop.EventLoop` has them)."""

    def __init__(self, poller: poller_mod.Poller | None = None) -> None:
        self._poller = poller if poller is not None else poller_mod.default()
        self._poll = self._poller.poll
        self._ready: deque = deque()
        #: call_soon_threadsafe from other threads lands here, and joins `_ready` at most
        #: FROM_THREADS_PER_ITERATION at a time (see there).
        self._from_threads: deque = deque()
        self._timers = TimerQueue()
        self._readers: dict[int, Handle] = {}
        self._writers: dict[int, Handle] = {}
        # FdTable._reader_handle, bound to the table's own get: a sock_* receive asks it on
        # every call, and a C method costs no Python frame (the table is never replaced).
        self._reader_handle = self._readers.get
        #: Counts iterations: a parked reader re-armed for a new wait tells by it that a
        #: readiness event the loop queued in the same iteration predates the wait.
        self._iteration = 0
        #: How many fds are registered with the poller (see core_fds: the masks are not
        #: stored, the tables say them).
        self._nfds = 0
        #: fd -> the file object add_reader/add_writer was given for it (not for plain ints),
        #: so a registration can still be found by its object after the object is closed.
        self._fileobjs: dict[int, Any] = {}
        #: fd -> the transport that owns it, or a weak reference to it (see
        #: core_fds.FdTable._claim_fd).
        self._transports: dict[int, Any] = {}
        #: The same records, for fds whose transport has lent its socket (`_lend_fd`).
        self._lent: dict[int, Any] = {}
        self._closed = False
        self._stopping = False
        self._thread_id: int | None = None
        self._debug = _env_debug()
        self.slow_callback_duration = 0.1
        self._exception_handler: Callable | None = None
        self._task_factory: Callable | None = None
        self._default_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_shutdown_called = False
        self._asyncgens: weakref.WeakSet = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._close_callbacks: list[Callable[[], Any]] = []
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        self._current_handle: Any = None
        #: The instrument fan-out installed by conveyor.observe, or None (the fast path).
        self._hooks: Any = None
        self._call_at_overridden = type(self).call_at is not CoreLoop.call_at
        if type(self).time is CoreLoop.time:
            # The clock, bound straight to the C function: loop.time() is called a few
            # times per iteration and once per timer. Subclasses that override time()
            # (virtual clocks in tests) keep their method.
            self.time = time.monotonic
        if _BIND_CALL_SOON and type(self).call_soon is CoreLoop.call_soon:
            # Python 3.11's C Task and Future get `loop.call_soon` as an attribute on every
            # task step and done callback: found in the instance's dict it is one dict hit,
            # not a new bound method each time (see _BIND_CALL_SOON).
            self.call_soon = self.call_soon
        self._waker = Waker()
        self._add_reader(self._waker.fileno(), self._waker.drain)
        for observer in tuple(_new_loop_observers):
            observer(self)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} running={self.is_running()} "
                f"closed={self._closed} debug={self._debug} poller={self._poller.name}>")

    # ---------------------------------------------------------------- running and stopping

    def run_forever(self) -> None:
        self._check_closed()
        self._check_not_running()
        old_hooks = sys.get_asyncgen_hooks()
        old_depth = sys.get_coroutine_origin_tracking_depth()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                               finalizer=self._asyncgen_finalizer_hook)
        if self._debug:
            sys.set_coroutine_origin_tracking_depth(_DEBUG_STACK_DEPTH)
        asyncio._set_running_loop(self)
        try:
            run_once = self._run_once
            while True:
                run_once()
                if self._stopping:
                    break
        finally:
            self._stopping = False
            self._thread_id = None
            asyncio._set_running_loop(None)
            sys.set_coroutine_origin_tracking_depth(old_depth)
            sys.set_asyncgen_hooks(*old_hooks)

    def run_until_complete(self, future):
        self._check_closed()
        self._check_not_running()
        new_task = not asyncio.isfuture(future)
        future = asyncio.ensure_future(future, loop=self)
        if new_task:
            # The caller never sees this task, so its "destroyed but pending" warning would
            # only be noise if the loop is stopped early.
            future._log_destroy_pending = False
        future.add_done_callback(_stop_when_done)
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                future.exception()  # mark it retrieved: it is re-raised right here
            raise
        finally:
            future.remove_done_callback(_stop_when_done)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def stop(self) -> None:
        self._stopping = True

    def is_running(self) -> bool:
        return self._thread_id is not None

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        if self._debug:
            logger.debug("Close %r", self)
        self._closed = True
        self._ready.clear()
        self._from_threads.clear()
        self._timers.clear()
        self._executor_shutdown_called = True
        executor, self._default_executor = self._default_executor, None
        if executor is not None:
            executor.shutdown(wait=False)
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("Error in close callback %r of %r", callback, self)
        for handle in (*self._readers.values(), *self._writers.values()):
            handle.cancel()
        self._readers.clear()
        self._writers.clear()
        self._nfds = 0
        self._fileobjs.clear()
        self._waker.close()
        self._poller.close()

    def __del__(self, _warn=warnings.warn) -> None:
        if not self._closed:
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    def _on_close(self, callback: Callable[[], Any]) -> None:
        """Run `callback()` when the loop closes (for executors, wake-up fds, pools)."""
        self._close_callbacks.append(callback)

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed")

    def _check_not_running(self) -> None:
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if asyncio._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def _check_thread(self) -> None:
        """Debug mode: refuse non-thread-safe calls from a thread other than the loop's."""
        if self._thread_id is not None and self._thread_id != threading.get_ident():
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other than the current one")

    # ------------------------------------------------------------------- one iteration

    def _run_once(self) -> None:
        ready = self._ready
        timers = self._timers
        hooks = self._hooks
        self._iteration += 1

        # Phase 1: how long may the kernel keep us?
        if ready or self._stopping or self._from_threads:
            timeout = 0
        else:
            when = timers.next_deadline()
            if when is None:
                timeout = None
            else:
                timeout = when - self.time()
                if timeout < 0:
                    timeout = 0
                elif timeout > _MAX_TIMEOUT:
                    timeout = _MAX_TIMEOUT

        # Phase 2: wait for the kernel; readiness goes straight onto the ready queue.
        if hooks is not None:
            hooks.before_poll(timeout)
        events = self._poll(timeout)
        if hooks is not None:
            hooks.after_poll(timeout, events)
        if self._from_threads:
            self._take_from_threads()
        if events:
            readers = self._readers
            writers = self._writers
            append = ready.append
            for fd, ev in events:
                if ev == READ:
                    # The common event, readable and nothing else: an int comparison
                    # instead of two masks (each a generic binary operation on 3.11).
                    handle = readers.get(fd)
                    if handle is not None:
                        append(handle)
                    continue
                if ev & READABLE:
                    handle = readers.get(fd)
                    if handle is not None:
                        append(handle)
                if ev & WRITABLE:
                    handle = writers.get(fd)
                    if handle is not None:
                        append(handle)

        # Phase 3: due timers join behind the I/O callbacks.
        if timers.heap:
            timers.pop_due(self.time() + self._clock_resolution, ready)

        # Phase 4: run what is ready now; what these schedule runs next iteration.
        ntodo = len(ready)
        if self._debug or (hooks is not None and hooks.per_callback):
            self._run_ready_observed(ntodo)
            if hooks is not None:
                hooks.after_iteration()
            return
        popleft = ready.popleft
        for _ in repeat(None, ntodo):
            handle = popleft()
            if handle._cancelled:
                continue
            try:
                # A task step has no arguments and a future's done callback one: called
                # plainly, neither builds the list and tuple (and bound method) that
                # `run(callback, *args)` costs, a fifth of the dispatch (callgrind).
                # (No local for the arguments: a traceback that keeps this frame alive
                # would keep the last callback's arguments alive with it.)
                if not handle._args:
                    handle._context.run(handle._callback)
                elif len(handle._args) == 1:
                    handle._context.run(handle._callback, handle._args[0])
                else:
                    handle._context.run(handle._callback, *handle._args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(handle, exc)
        if hooks is not None:
            # Instruments that only watch iterations (the watchdog) keep the fast path.
            hooks.after_iteration()

    def _run_ready_observed(self, ntodo: int) -> None:
        """Phase 4 with instruments and debug checks: the slow twin of the inline loop."""
        ready = self._ready
        hooks = self._hooks
        debug = self._debug
        clock = self.time
        while ntodo:
            ntodo -= 1
            handle = ready.popleft()
            if handle._cancelled:
                continue
            self._current_handle = handle
            if hooks is not None:
                hooks.before_callback(handle)
            started = clock()
            try:
                handle._context.run(handle._callback, *handle._args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(handle, exc)
            finally:
                self._current_handle = None
                took = clock() - started
                if hooks is not None:
                    hooks.after_callback(handle, took)
                if debug and took >= self.slow_callback_duration:
                    logger.warning("Executing %s took %.3f seconds", _describe(handle), took)

    def _callback_failed(self, handle: Any, exc: BaseException) -> None:
        # The handle's own description names the callback, its arguments and its source.
        described = " ".join(handle._repr_info()[1:])
        context = {"message": f"Exception in callback {described}",
                   "exception": exc, "handle": handle}
        if handle._source_traceback:
            context["source_traceback"] = handle._source_traceback
        self.call_exception_handler(context)

    # ------------------------------------------------------------------ scheduling

    def time(self) -> float:
        return time.monotonic()

    def call_soon(self, /, callback, *args, context=None) -> Handle:
        # `self` is positional-only (it always is in practice): the C Task passes
        # `context=` under a name that is not interned, which CPython then matches by string
        # comparison against each parameter it may name, and one fewer saves ~4% of a step.
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_soon")
            handle = Handle(callback, args, self, context)
            handle._source_traceback = self._stack()
        else:
            # Handle.__init__'s stores, made here: every task step and every future's done
            # callback comes through call_soon, and skipping the __init__ frame saves ~14%
            # of its cost (~28 ns of ~200, measured with timeit); a BareHandle is made by
            # one C call (handles.py).
            handle = BareHandle()
            handle._context = copy_context() if context is None else context
            handle._loop = self
            handle._callback = callback
            handle._args = args
            handle._cancelled = False
            handle._repr = None
            handle._source_traceback = None
        self._ready.append(handle)
        return handle

    def call_later(self, delay, callback, *args, context=None) -> TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        if self._closed or self._debug or self._call_at_overridden:
            timer = self.call_at(self.time() + delay, callback, *args, context=context)
            if timer._source_traceback:
                # Recorded inside call_at: record it again from here, so that it ends at
                # the line that called call_later, as asyncio's does.
                timer._source_traceback = self._stack()
            return timer
        # call_at's work, inlined: timeouts are scheduled (and mostly cancelled) per request,
        # so this path is as hot as call_soon in servers. A subclass that overrides call_at
        # (a virtual clock) still sees every deadline, through the line above.
        # TimerHandle.__init__'s stores too, made here as call_soon makes Handle's: the
        # constructor's frame was a tenth of a timer's cost (callgrind).
        timer = BareTimerHandle()
        timer._context = copy_context() if context is None else context
        timer._loop = self
        timer._callback = callback
        timer._args = args
        timer._cancelled = False
        timer._repr = None
        timer._source_traceback = None
        timer._when = when = self.time() + delay
        timer._scheduled = True
        timers = self._timers
        heappush(timers.heap, (when, next(timers._seq), timer))
        return timer

    def call_at(self, when, callback, *args, context=None) -> TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        if self._closed:
            raise RuntimeError("Event loop is closed")
        timer = TimerHandle(when, callback, args, self, context)
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
            timer._source_traceback = self._stack()
        self._timers.push(timer)
        return timer

    def _timer_handle_cancelled(self, handle: TimerHandle) -> None:
        if handle._scheduled:
            self._timers.note_cancelled()

    def call_soon_threadsafe(self, callback, *args, context=None) -> Handle:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        handle = Handle(callback, args, self, context)
        if self._debug:
            handle._source_traceback = self._stack()
        owner = self._thread_id
        if owner is None or owner == threading.get_ident():
            # From the loop's own thread (or before it runs): an ordinary call_soon, in order
            # with the callbacks around it.
            self._ready.append(handle)
        else:
            pending = self._from_threads
            pending.append(handle)
            if len(pending) > FROM_THREADS_BACKLOG:
                self._waker.wake()
                time.sleep(0)
                return handle
        self._waker.wake()
        return handle

    def _take_from_threads(self) -> None:
        """Move callbacks other threads scheduled onto the ready queue, a bounded batch."""
        pending = self._from_threads
        append = self._ready.append
        popleft = pending.popleft
        for _ in repeat(None, min(len(pending), FROM_THREADS_PER_ITERATION)):
            append(popleft())

    def _check_callback(self, callback, method: str) -> None:
        if asyncio.iscoroutine(callback) or inspect.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    @staticmethod
    def _stack() -> traceback.StackSummary:
        """Where a handle was created (debug mode), oldest frame first, as asyncio keeps it."""
        stack = traceback.StackSummary.extract(
            traceback.walk_stack(sys._getframe(2)), limit=_DEBUG_STACK_DEPTH, lookup_lines=False)
        stack.reverse()
        return stack

    # ------------------------------------------------------------ futures and tasks

    def create_future(self) -> asyncio.Future:
        return asyncio.Future(loop=self)

    def create_task(self, coro, *, name=None, context=None, **kwargs) -> asyncio.Task:
        """Wrap `coro` in a task: the factory's, or asyncio.Task given every keyword
        (`eager_start` included, on Pythons whose Task has it).

        A task factory gets the keywords as the running Python's asyncio gives them: from
        3.14, all of them, `name` included; before, `context` (when given) and any extra
        keyword, with the name set on the task afterwards, so factories written for those
        versions' `(loop, coro, context=None)` signature keep working."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        factory = self._task_factory
        if factory is None:
            # Every gather and ensure_future comes through here: the common call spelled
            # out, without merging an empty **kwargs (and the closed check inline).
            if kwargs:
                task = asyncio.Task(coro, loop=self, name=name, context=context, **kwargs)
            else:
                task = asyncio.Task(coro, loop=self, name=name, context=context)
            if task._source_traceback:
                del task._source_traceback[-1]
        else:
            if context is not None:
                kwargs["context"] = context
            if _FACTORY_GETS_NAME:
                if name is not None:
                    kwargs["name"] = name
                task = factory(self, coro, **kwargs)
            else:
                task = factory(self, coro, **kwargs)
                if name is not None:
                    task.set_name(name)
        if self._hooks is not None:
            self._hooks.task_created(task)
        return task

    def set_task_factory(self, factory) -> None:
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self):
        return self._task_factory

    # ------------------------- operations for the modules above (conveyor.contract)

    def _schedule_handle(self, handle: Handle) -> None:
        """Queue an existing handle to run, behind what is already queued, as `call_soon`
        queues a new one: for a handle that runs many times (a signal's handler)."""
        self._ready.append(handle)

    def _gauges(self) -> Gauges:
        """The queue and table sizes now. Safe to call from another thread (the console):
        each figure is read once, the set of them may straddle a callback."""
        timers = self._timers
        cancelled = timers.cancelled
        return Gauges(ready=len(self._ready), from_threads=len(self._from_threads),
                      timers=max(len(timers.heap) - cancelled, 0),
                      cancelled_timers=cancelled, fds=self._nfds)

    def _snapshot_queue(self) -> QueueSnapshot:
        """The ready queue and the live timers now, in the order they will run.

        For teaching tools that redraw the queues at every step (explain); it copies and
        sorts the heap, so it is never called on the loop's own path. Loop thread only.
        """
        timers = sorted((when, seq, handle) for when, seq, handle in self._timers.heap
                        if not handle._cancelled)
        return QueueSnapshot(ready=tuple(self._ready),
                             timers=tuple((when, handle) for when, _, handle in timers),
                             poller=self._poller.name)


#: The code of the loop's own frames that run ready callbacks. A tool reading the loop
#: thread's stack from another thread (the watchdog, the console) finds the loop there by
#: these, and the frame one of them called is the callback running. Taken from the functions
#: themselves, so renaming one cannot leave such a tool matching a stale name.
LOOP_CODES: frozenset = frozenset({CoreLoop._run_once.__code__,
                                   CoreLoop._run_ready_observed.__code__})

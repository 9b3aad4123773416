"""What the modules above the loop core may use of the loop: `LoopInternals`.

Transports, the sock_* coroutines, servers, signals, child watching, the file pool and the
observe tools all receive the loop (their functions take it first, their objects keep it).
They see it as a `LoopInternals`: the public methods they call, plus the few underscore
operations `conveyor.core.CoreLoop` offers them instead of its attributes. Nothing else:
the ready queue, the fd tables, the poller and the timer heap are the core's alone, so the
core can change how it keeps them without reading every module above it.

This Protocol is the authority on that contract (docs/internals.md describes it). An
operation a module needs and does not find here is added here and to the core, with a name
that says what it does, rather than reached for in the loop's attributes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
from contextvars import Context
from typing import Any, Callable, Protocol

from .core import Gauges, QueueSnapshot
from .handles import Handle

__all__ = ["LoopInternals"]


class LoopInternals(Protocol):
    """The loop as the modules above the core see it (a conveyor loop satisfies it)."""

    # ----------------------------------------------------------- fd readiness
    # Readiness callbacks without the public add_reader's ownership check. Registering
    # again replaces the callback. The callback runs as a ready-queue entry (I/O callbacks
    # join the queue behind what is there), in `context` when given (transports pass the
    # connection's, so the protocol always runs in it), else in a copy of the context
    # current at registration.

    def _add_reader(self, fd: int, callback: Callable[..., Any], *args: Any,
                    context: Context | None = None) -> Handle: ...

    def _remove_reader(self, fd: int) -> bool: ...

    def _add_writer(self, fd: int, callback: Callable[..., Any], *args: Any,
                    context: Context | None = None) -> Handle: ...

    def _remove_writer(self, fd: int) -> bool: ...

    # A reader kept one iteration past its wait (the sock_* coroutines: a recv loop swaps
    # handles instead of paying two epoll_ctl calls per message). See CoreLoop._park_reader.

    def _add_reader_handle(self, fd: int, handle: Handle) -> None:
        """Register a handle the caller made (its own subclass) as fd's reader."""

    def _park_reader(self, fd: int, handle: Handle) -> None:
        """The wait is over: remove fd's reader next iteration unless it was replaced, or
        re-armed for a new wait (given new `_args`) in the meantime."""

    #: The current iteration's number (see CoreLoop._run_once).
    _iteration: int

    def _reader_handle(self, fd: int) -> Handle | None:
        """The handle registered to read fd (parked or waiting), or None."""

    def _rearm_reader(self, fd: int, replaced: Handle) -> None:
        """`replaced`'s file was closed while parked: register fd for its new reader."""

    #: fd -> the transport that owns it, or a weak reference to it: use the operations
    #: below, not the dict. While a transport owns an fd and is not closing, the public
    #: add_reader/add_writer/remove_* refuse that fd with RuntimeError (asyncio's rule).
    _transports: dict[int, Any]

    def _claim_fd(self, fd: int, transport: Any, keep_alive: bool = False) -> None:
        """`transport` owns fd; held weakly, or with `keep_alive` strongly, until released."""

    def _transport_of(self, fd: int) -> Any:
        """The transport that owns fd, or None."""

    def _ensure_fd_no_transport(self, fd: Any) -> None:
        """RuntimeError if a transport that is not closing owns fd (an int or a file
        object); the one place that rule lives, for add_reader & co and the sock_* calls."""

    def _release_fd(self, fd: int, transport: Any) -> None:
        """`transport` no longer owns fd (no-op if another owner claimed it since)."""

    def _lend_fd(self, fd: int) -> None:
        """fd's transport lends its socket to a sock_* call until `_return_fd(fd)`."""

    def _return_fd(self, fd: int) -> None:
        """End `_lend_fd`: the transport owns fd again, unless released meanwhile."""

    def _fd_owners(self) -> list[Any]:
        """Every live transport that owns an fd, lent ones included."""

    # ---------------------------------------------------------- the loop itself

    def _check_closed(self) -> None:
        """Raise RuntimeError('Event loop is closed') if it is."""

    def _on_close(self, callback: Callable[[], Any]) -> None:
        """Run `callback()` when the loop closes (executors, wake-up fds, file pools)."""

    def _schedule_handle(self, handle: Handle) -> None:
        """Queue an existing handle behind what is queued (a signal's, run many times)."""

    def _gauges(self) -> Gauges:
        """Queue and table sizes now, for statistics; callable from any thread."""

    def _snapshot_queue(self) -> QueueSnapshot:
        """The ready queue's handles and the live timers (soonest first), and the poller's
        name: a copy, for the step recorder of ``explain``. Loop thread only; not cheap."""

    #: The instrument fan-out (conveyor.observe.hooks.Hooks) or None: the loop calls it at
    #: fixed points of an iteration. Set by conveyor.observe.hooks only (docs/observe.md).
    _hooks: Any

    @property
    def _thread_id(self) -> int | None:
        """The thread running the loop, None while it does not run (read-only)."""

    # ------------------------------------------------------------- public API
    # Used by the modules above as any program would; listed so that the Protocol is the
    # whole of what they may call.

    slow_callback_duration: float

    def time(self) -> float: ...

    def call_soon(self, callback: Callable[..., Any], *args: Any,
                  context: Context | None = None) -> asyncio.Handle: ...

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any,
                   context: Context | None = None) -> asyncio.TimerHandle: ...

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any,
                             context: Context | None = None) -> asyncio.Handle: ...

    def call_exception_handler(self, context: dict[str, Any]) -> None: ...

    def create_future(self) -> asyncio.Future[Any]: ...

    def create_task(self, coro: Any, *, name: str | None = None,
                    context: Context | None = None) -> asyncio.Task[Any]: ...

    def run_in_executor(self, executor: concurrent.futures.Executor | None,
                        func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]: ...

    def get_debug(self) -> bool: ...

    def is_closed(self) -> bool: ...

    def is_running(self) -> bool: ...

    # I/O methods that other I/O modules call through the loop, not by importing each
    # other's functions: a test that patches `loop.sock_connect` sees every caller, as
    # with asyncio.

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0, type: int = 0,
                          proto: int = 0, flags: int = 0) -> list[tuple[Any, ...]]: ...

    async def sock_connect(self, sock: socket.socket, address: Any) -> None: ...

    async def connect_read_pipe(self, protocol_factory: Callable[[], asyncio.BaseProtocol],
                                pipe: Any) -> tuple[asyncio.BaseTransport,
                                                    asyncio.BaseProtocol]: ...

    async def connect_write_pipe(self, protocol_factory: Callable[[], asyncio.BaseProtocol],
                                 pipe: Any) -> tuple[asyncio.BaseTransport,
                                                     asyncio.BaseProtocol]: ...

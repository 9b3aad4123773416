"""Subprocess transports: a child process, its pipes, and its exit, as one transport.

`subprocess_exec` / `subprocess_shell` (net/subprocess.py) spawn the child and hand it to
`SubprocessTransport`, which connects the child's stdin/stdout/stderr pipes with conveyor's
pipe transports and watches for the child's exit with `conveyor.childwatch` (a pidfd on
Linux; no process-global child watcher, so loops in any thread can run subprocesses).

The protocol sees asyncio's order of events:

    connection_made -> pipe_data_received* / pipe_connection_lost(fd) per pipe
                    -> process_exited -> connection_lost(None)

`connection_lost` comes only after the process has exited *and* every pipe has closed, and
`wait()` returns after that (so a caller that awaits `wait()` has all the output).
Everything the pipes or the exit report before `connection_made` has run is queued and
replayed after it, so the protocol never sees data before the transport.

The Popen object spawns; the child watch reaps and the returncode is copied into the Popen
object. `send_signal`/`terminate`/`kill` go through the watch (a pidfd signal cannot reach a
recycled pid). `close()` kills a running child with `Popen.kill()`, as asyncio does; that
may reap the child first, and the watch then takes the returncode Popen stored.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import warnings
from collections import deque
from typing import Any

from ..contract import LoopInternals
from ..childwatch import ChildWatch

logger = logging.getLogger("asyncio")

PIPE = subprocess.PIPE


class _PipeProtocol(asyncio.Protocol):
    """Forwards one of the child's pipes to the subprocess transport, tagged with its fd."""

    def __init__(self, owner: "SubprocessTransport", fd: int) -> None:
        self.owner: SubprocessTransport | None = owner
        self.fd = fd
        self.pipe: asyncio.BaseTransport | None = None
        self.disconnected = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self.fd} pipe={self.pipe!r}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.pipe = transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.disconnected = True
        owner, self.owner = self.owner, None
        owner._pipe_connection_lost(self.fd, exc)

    def data_received(self, data: bytes) -> None:
        self.owner._call(self.owner._protocol.pipe_data_received, self.fd, data)

    def eof_received(self) -> None:
        return None

    def pause_writing(self) -> None:
        self.owner._protocol.pause_writing()

    def resume_writing(self) -> None:
        self.owner._protocol.resume_writing()


class SubprocessTransport(asyncio.SubprocessTransport):
    """A running child process: its pid, its pipes, its signals and its exit."""

    _closed = True  # until Popen has succeeded: __del__ has nothing to warn about
    _pid: int | None = None

    def __init__(self, loop: LoopInternals, protocol: asyncio.SubprocessProtocol,
                 proc: subprocess.Popen, stdin: Any, stdout: Any, stderr: Any,
                 extra: dict | None = None) -> None:
        """Take charge of `proc`, a child just spawned (off the loop thread, see
        net/subprocess.py)."""
        super().__init__(extra)
        self._loop = loop
        self._protocol = protocol
        self._returncode: int | None = None
        #: wait()ers: woken after connection_lost (asyncio's order); None after that.
        self._exit_waiters: list[asyncio.Future] | None = []
        #: Woken at the exit itself, for the failed-start path, where pipes may never close.
        self._bare_exit_waiters: list[asyncio.Future] = []
        #: Calls for the protocol made before connection_made ran; None once it has.
        self._pending_calls: deque | None = deque()
        self._pipes: dict[int, _PipeProtocol | None] = {}
        self._finished = False
        for fd, spec in ((0, stdin), (1, stdout), (2, stderr)):
            if spec == PIPE:
                self._pipes[fd] = None
        self._proc = proc
        self._closed = False
        self._pid = self._proc.pid
        self._extra["subprocess"] = self._proc
        try:
            self._watch = ChildWatch(loop, self._pid, self._process_exited, self._proc)
        except BaseException:
            # Nobody would ever reap it: end it here, synchronously, and drop its pipes.
            self._closed = True
            self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    stream.close()
            raise
        if loop.get_debug():
            logger.debug("process %r created: pid %s", proc.args, self._pid)

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._closed:
            info.append("closed")
        if self._pid is not None:
            info.append(f"pid={self._pid}")
        if self._returncode is not None:
            info.append(f"returncode={self._returncode}")
        elif self._pid is not None:
            info.append("running")
        else:
            info.append("not started")
        for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
            proto = self._pipes.get(fd)
            if proto is not None and proto.pipe is not None:
                info.append(f"{name}={proto.pipe}")
        return "<{}>".format(" ".join(info))

    async def _connect_pipes(self, waiter: asyncio.Future) -> None:
        """Wrap the child's pipes in transports, then introduce the transport to its protocol."""
        try:
            proc = self._proc
            loop = self._loop
            if proc.stdin is not None:
                _, proto = await loop.connect_write_pipe(
                    lambda: _PipeProtocol(self, 0), proc.stdin)
                self._pipes[0] = proto
            if proc.stdout is not None:
                _, proto = await loop.connect_read_pipe(
                    lambda: _PipeProtocol(self, 1), proc.stdout)
                self._pipes[1] = proto
            if proc.stderr is not None:
                _, proto = await loop.connect_read_pipe(
                    lambda: _PipeProtocol(self, 2), proc.stderr)
                self._pipes[2] = proto
            loop.call_soon(self._protocol.connection_made, self)
            for callback, args in self._pending_calls:
                loop.call_soon(callback, *args)
            self._pending_calls = None
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if not waiter.cancelled():
                waiter.set_exception(exc)
        else:
            if not waiter.cancelled():
                waiter.set_result(None)

    # -- events from the pipes and the child watch

    def _call(self, callback, *args) -> None:
        if self._pending_calls is not None:
            self._pending_calls.append((callback, args))
        else:
            self._loop.call_soon(callback, *args)

    def _pipe_connection_lost(self, fd: int, exc: BaseException | None) -> None:
        self._call(self._protocol.pipe_connection_lost, fd, exc)
        self._try_finish()

    def _process_exited(self, returncode: int) -> None:
        if self._loop.get_debug():
            logger.info("%r exited with return code %r", self, returncode)
        self._returncode = returncode
        # Ours is authoritative (Popen may have guessed 0 after finding the child reaped),
        # and with it set Popen never tries to reap the child again.
        self._proc.returncode = returncode
        self._call(self._protocol.process_exited)
        for waiter in self._bare_exit_waiters:
            if not waiter.cancelled():
                waiter.set_result(returncode)
        self._bare_exit_waiters.clear()
        self._try_finish()

    def _try_finish(self) -> None:
        if self._returncode is None or self._finished:
            return
        if all(p is not None and p.disconnected for p in self._pipes.values()):
            self._finished = True
            self._call(self._call_connection_lost, None)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            for waiter in self._exit_waiters:
                if not waiter.cancelled():
                    waiter.set_result(self._returncode)
            self._exit_waiters = None
            self._loop = None
            self._protocol = None

    async def _wait(self) -> int:
        """The returncode; if the process still runs, once it exits and every pipe closed."""
        if self._returncode is not None:
            return self._returncode
        waiter = self._loop.create_future()
        self._exit_waiters.append(waiter)
        return await waiter

    async def _wait_exit(self) -> int:
        """The returncode as soon as the process has exited, pipes or not."""
        if self._returncode is not None:
            return self._returncode
        waiter = self._loop.create_future()
        self._bare_exit_waiters.append(waiter)
        return await waiter

    # -- the public transport API

    def get_pid(self) -> int | None:
        return self._pid

    def get_returncode(self) -> int | None:
        return self._returncode

    def get_pipe_transport(self, fd: int) -> asyncio.BaseTransport | None:
        proto = self._pipes.get(fd)
        return None if proto is None else proto.pipe

    def send_signal(self, signal: int) -> None:
        """Signal the child. Once the transport has finished: ProcessLookupError.

        Between the exit and connection_lost the call does nothing, as asyncio's does.
        """
        if self._protocol is None:
            raise ProcessLookupError()
        if self._returncode is None:
            try:
                self._watch.send_signal(signal)
            except ProcessLookupError:
                pass  # exited, and the exit is on its way to us

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the pipes and kill the child if it still runs (asyncio's behaviour)."""
        if self._closed:
            return
        self._closed = True
        for proto in self._pipes.values():
            if proto is not None and proto.pipe is not None:
                proto.pipe.close()
        if self._returncode is None:
            if self._loop is not None and self._loop.get_debug():
                logger.warning("Close running child process: kill %r", self)
            if self._proc.returncode is None:
                try:
                    self._proc.kill()
                except ProcessLookupError:
                    pass

    def __del__(self, _warn=warnings.warn) -> None:
        if not self._closed:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self.close()

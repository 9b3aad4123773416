"""subprocess_exec / subprocess_shell: spawn a child and hand it to its transport.

The child is started with the standard library's `subprocess.Popen` (so every Popen
keyword - cwd, env, pass_fds, start_new_session, user, umask, ... - works as documented
there), on a few spawning threads per loop rather than on the loop thread, and becomes a
`transports.subprocess.SubprocessTransport` once spawned. A start that is cancelled or
fails kills and reaps the child it may have made, so no child is left without an owner.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import weakref
from typing import Any

from ..contract import LoopInternals
from ..transports.subprocess import PIPE, SubprocessTransport


#: Threads that spawn children for one loop. fork/exec of a large parent takes
#: milliseconds (page tables are copied, the child must exec before Popen returns), and
#: the loop should not stall for it; asyncio spawns on the loop thread. A few threads, so
#: that concurrent spawns overlap without a thread per child.
SPAWN_THREADS = 4
_spawners: "weakref.WeakKeyDictionary[Any, concurrent.futures.ThreadPoolExecutor]" = (
    weakref.WeakKeyDictionary())


def _spawner(loop: LoopInternals) -> concurrent.futures.ThreadPoolExecutor:
    """The loop's spawning threads, made on first use and shut down when it closes."""
    executor = _spawners.get(loop)
    if executor is None:
        executor = concurrent.futures.ThreadPoolExecutor(
            SPAWN_THREADS, thread_name_prefix="conveyor-spawn")
        _spawners[loop] = executor

        def retire() -> None:
            if _spawners.get(loop) is executor:
                del _spawners[loop]
            executor.shutdown(wait=False)

        loop._on_close(retire)
    return executor


def _spawn(args: Any, shell: bool, stdin: Any, stdout: Any, stderr: Any, bufsize: int,
           popen_kwargs: dict) -> subprocess.Popen:
    """Runs on a spawning thread: the Popen call that asyncio makes on the loop thread."""
    return subprocess.Popen(
        args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
        universal_newlines=False, bufsize=bufsize, **popen_kwargs)


def _discard(proc: subprocess.Popen) -> None:
    """Runs on a spawning thread: end a child nobody will own, reap it, close its pipes."""
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


async def _finish(fut: asyncio.Future) -> None:
    """Wait for `fut` to finish, through any number of cancellations (the caller re-raises
    the cancellation it is handling once the work it cannot call back is undone)."""
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            continue
        except BaseException:  # noqa: BLE001 - the outcome is read from fut by the caller
            break


async def _undo_spawn(loop: LoopInternals, spawning: asyncio.Future) -> None:
    """The caller was cancelled while its child was being spawned: once the spawn is over,
    kill and reap that child, as asyncio does with a child whose start was cancelled."""
    await _finish(spawning)
    if spawning.cancelled() or spawning.exception() is not None:
        return
    discarding = asyncio.wrap_future(_spawner(loop).submit(_discard, spawning.result()),
                                     loop=loop)
    await _finish(discarding)


async def _start(loop: LoopInternals, protocol: asyncio.SubprocessProtocol, args: Any, shell: bool,
                 stdin: Any, stdout: Any, stderr: Any, bufsize: int,
                 **popen_kwargs: Any) -> SubprocessTransport:
    loop._check_closed()  # before spawning: a closed loop could never reap the child
    spawning = asyncio.wrap_future(
        _spawner(loop).submit(_spawn, args, shell, stdin, stdout, stderr, bufsize,
                              popen_kwargs), loop=loop)
    try:
        # Shielded: a spawn cannot be called back once started; a cancellation undoes it.
        proc = await asyncio.shield(spawning)
    except asyncio.CancelledError:
        await _undo_spawn(loop, spawning)
        raise
    try:
        transport = SubprocessTransport(loop, protocol, proc, stdin, stdout, stderr)
    except BaseException:
        # The watch could not be set up (the transport has killed and reaped the child)
        # or the loop closed meanwhile: nothing owns this child now.
        if proc.returncode is None:
            _discard(proc)
        raise
    waiter = loop.create_future()
    connecting = loop.create_task(transport._connect_pipes(waiter))
    try:
        await waiter
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        # Cancelled or failed: stop connecting, then close whatever pipes exist by now.
        connecting.cancel()
        try:
            await asyncio.wait([connecting])
        finally:
            transport.close()
            for fd, proto in transport._pipes.items():
                if proto is None:  # never got a transport: Popen's file object holds it
                    stream = (transport._proc.stdin, transport._proc.stdout,
                              transport._proc.stderr)[fd]
                    if stream is not None:
                        stream.close()
            await transport._wait_exit()
        raise
    return transport


def _check_args(shell: Any, expected_shell: bool, universal_newlines: bool, bufsize: int,
                text: Any, encoding: Any, errors: Any) -> None:
    """asyncio's refusals, in its order: the transport carries bytes, unbuffered."""
    if universal_newlines:
        raise ValueError("universal_newlines must be False")
    if bool(shell) is not expected_shell:
        raise ValueError(f"shell must be {expected_shell}")
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")


async def subprocess_exec(loop: LoopInternals, protocol_factory, program: Any, *args: Any,
                          stdin: Any = PIPE, stdout: Any = PIPE, stderr: Any = PIPE,
                          universal_newlines: bool = False, shell: bool = False,
                          bufsize: int = 0, encoding: Any = None, errors: Any = None,
                          text: Any = None, **kwargs: Any
                          ) -> tuple[SubprocessTransport, asyncio.SubprocessProtocol]:
    """Run `program` with `args` (no shell); the transport and the protocol it drives."""
    _check_args(shell, False, universal_newlines, bufsize, text, encoding, errors)
    protocol = protocol_factory()
    transport = await _start(loop, protocol, (program, *args), False, stdin, stdout, stderr,
                             bufsize, **kwargs)
    return transport, protocol


async def subprocess_shell(loop: LoopInternals, protocol_factory, cmd: str | bytes, *,
                           stdin: Any = PIPE, stdout: Any = PIPE, stderr: Any = PIPE,
                           universal_newlines: bool = False, shell: bool = True,
                           bufsize: int = 0, encoding: Any = None, errors: Any = None,
                           text: Any = None, **kwargs: Any
                           ) -> tuple[SubprocessTransport, asyncio.SubprocessProtocol]:
    """Run `cmd` through the shell; the transport and the protocol it drives."""
    if not isinstance(cmd, (bytes, str)):
        raise ValueError("cmd must be a string")
    _check_args(shell, True, universal_newlines, bufsize, text, encoding, errors)
    protocol = protocol_factory()
    transport = await _start(loop, protocol, cmd, True, stdin, stdout, stderr, bufsize,
                             **kwargs)
    return transport, protocol

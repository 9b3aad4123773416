"""Child-exit observation: telling a loop that one of its child processes has exited.

asyncio grew five process-global "child watcher" classes because SIGCHLD is process-global.
conveyor needs none of them: each child is watched by the loop that started it, so a
subprocess started from a loop in any thread works and nothing global is installed.

Two strategies, chosen per child:

- **pidfd** (Linux >= 5.3): `os.pidfd_open(pid)` gives an fd that becomes readable when the
  child exits. It goes through the loop's ordinary reader API, so child exit costs one poll
  event and no thread. Signals are sent with `signal.pidfd_send_signal`, which can never hit
  a recycled pid.
- **thread** (everywhere else, or when pidfd_open is refused, e.g. by a seccomp sandbox): a
  daemon thread blocks in `os.waitpid(pid, 0)` and hands the status back with
  `call_soon_threadsafe`.

Either way the child is reaped exactly once, by us, so there are no zombies. If the loop
closes while a child still runs, the watch is handed to a reaper thread that waits for it
without a callback: the process is not ours to kill, but it must not stay a zombie.

`CONVEYOR_CHILDWATCH=thread` forces the fallback, so tests can cover it on Linux.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import weakref
from typing import Any, Callable

from .contract import LoopInternals

logger = logging.getLogger("asyncio")

#: Reported when somebody else reaped our child (asyncio reports the same).
UNKNOWN_RETURNCODE = 255


#: loop -> its children watched through pidfds, so one close callback per loop finds them all.
_pidfd_watches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _close_watches(watches: dict[int, "ChildWatch"]) -> None:
    for watch in list(watches.values()):
        watch._loop_closing()


def _use_pidfd() -> bool:
    return hasattr(os, "pidfd_open") and os.environ.get("CONVEYOR_CHILDWATCH") != "thread"


#: How long a reaper that found the child already reaped waits for Popen to store what it
#: read (seen in the suite: a Popen.wait() in another thread had reaped, not yet stored).
_POPEN_STORE_GRACE = 0.05


def _reap(pid: int, popen: Any = None) -> int:
    """Block until `pid` is reaped; its returncode as subprocess reports it.

    If somebody else reaped it first - usually `Popen.poll()`, which `Popen.send_signal` and
    `Popen.kill` call - the returncode they stored on the Popen object is used.
    """
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        if popen is not None:
            # Popen stores the returncode just after its own waitpid returns; another thread
            # may be between the two. Give it that moment (only on this rare path).
            deadline = time.monotonic() + _POPEN_STORE_GRACE
            while popen.returncode is None and time.monotonic() < deadline:
                time.sleep(0.001)
            if popen.returncode is not None:
                return popen.returncode
        logger.warning("child process pid %d exit status already read: "
                       "will report returncode %d", pid, UNKNOWN_RETURNCODE)
        return UNKNOWN_RETURNCODE
    return os.waitstatus_to_exitcode(status)


class ChildWatch:
    """One child watched by one loop; `on_exit(returncode)` runs once, on the loop."""

    def __init__(self, loop: LoopInternals, pid: int, on_exit: Callable[[int], Any],
                 popen: Any = None) -> None:
        self._loop = loop
        self.pid = pid
        self._popen = popen
        self._on_exit: Callable[[int], Any] | None = on_exit
        self._pidfd = -1
        self.returncode: int | None = None
        if _use_pidfd():
            try:
                self._pidfd = os.pidfd_open(pid)
            except OSError:
                self._pidfd = -1  # refused (old kernel, sandbox): fall back to a thread
        if self._pidfd >= 0:
            try:
                loop._add_reader(self._pidfd, self._pidfd_ready)
            except BaseException:
                os.close(self._pidfd)
                self._pidfd = -1
                raise
            watches = _pidfd_watches.get(loop)
            if watches is None:
                watches = _pidfd_watches[loop] = {}
                loop._on_close(lambda: _close_watches(watches))
            watches[pid] = self
        else:
            self._lock = threading.Lock()
            self._reaped = False
            threading.Thread(target=self._wait_in_thread, daemon=True,
                             name=f"conveyor-childwatch-{pid}").start()

    # -- pidfd strategy

    def _pidfd_ready(self) -> None:
        pidfd, self._pidfd = self._pidfd, -1
        if pidfd < 0:
            return
        self._loop._remove_reader(pidfd)
        _pidfd_watches.get(self._loop, {}).pop(self.pid, None)
        try:
            returncode = _reap(self.pid, self._popen)
        finally:
            os.close(pidfd)
        self._exited(returncode)

    def _loop_closing(self) -> None:
        """The loop closes with the child alive: reap it in the background, report nothing."""
        pidfd, self._pidfd = self._pidfd, -1
        if pidfd < 0:
            return
        os.close(pidfd)
        self._on_exit = None
        _pidfd_watches.get(self._loop, {}).pop(self.pid, None)
        threading.Thread(target=self._reap_orphan, daemon=True,
                         name=f"conveyor-reaper-{self.pid}").start()

    def _reap_orphan(self) -> None:
        returncode = _reap(self.pid, self._popen)
        if self._popen is not None and self._popen.returncode is None:
            self._popen.returncode = returncode  # Popen would warn that it "is still running"

    # -- thread strategy

    def _wait_in_thread(self) -> None:
        # Wait without reaping first, then reap under the lock: send_signal holds the same
        # lock, so it can never signal a pid the kernel has already handed to someone else.
        if hasattr(os, "waitid"):
            try:
                os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                pass
        with self._lock:
            returncode = _reap(self.pid, self._popen)
            self._reaped = True
        if self._popen is not None:
            # Told at once, so Popen neither reaps again nor warns that the child "is still
            # running" should the loop close before the exit reaches it.
            self._popen.returncode = returncode
        try:
            # Two hops: the first lands wherever this thread happens to append; the second
            # queues the exit behind whatever the loop had already scheduled when it saw the
            # first, which is where a pidfd's readiness would land. Without it a task that
            # calls wait() right after kill() could see the exit before its first step.
            self._loop.call_soon_threadsafe(self._loop.call_soon, self._exited, returncode)
        except RuntimeError:
            pass  # the loop closed first: nobody is left to tell, and the child is reaped

    # -- both

    def _exited(self, returncode: int) -> None:
        self.returncode = returncode
        on_exit, self._on_exit = self._on_exit, None
        if on_exit is not None:
            on_exit(returncode)

    def send_signal(self, sig: int) -> None:
        """Signal the child; ProcessLookupError if it has already been reaped."""
        if self.returncode is not None:
            raise ProcessLookupError(self.pid)
        if self._pidfd >= 0:
            signal.pidfd_send_signal(self._pidfd, sig)
        else:
            with self._lock:
                if self._reaped:
                    raise ProcessLookupError(self.pid)
                os.kill(self.pid, sig)

"""The live console: a Unix socket through which `python -m conveyor top` watches a program.

    conveyor.console()                          # in code: start listening (idempotent)
    python -m conveyor run --console app.py     # for a program you do not edit
    CONVEYOR_CONSOLE=1 python app.py            # or from the environment

Nothing listens unless asked, and nothing is measured until a client attaches:

- The socket is ``<runtime dir>/<pid>.sock``, the runtime dir being
  ``$XDG_RUNTIME_DIR/conveyor`` or ``/tmp/conveyor-<uid>``, made with mode 0700 and refused
  if another user owns it or can enter it; the socket itself is 0600, and each connection's
  peer credentials (``SO_PEERCRED``) must be this user's (or root's). It is removed when the
  console closes, at the latest at interpreter exit.
- A daemon thread accepts connections and one thread per client answers it, so the console
  answers while the loop is blocked (the watchdog's reason for a thread, and aiomonitor's).
- A client's first measuring request attaches it. The first attached client makes the
  console install its instruments on every open conveyor loop, *from the loop's thread*
  (``call_soon_threadsafe``): `LoopStats`, `TaskStats`, the spawn tracker and a watchdog
  `Heartbeat` (no watchdog thread, no logging). The last client to leave removes them the
  same way, which puts the loop back on its fast path.

The protocol is one JSON object per line each way: a request ``{"op": ..., ...}`` gets one
response ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Operations:

``hello``     pid, program, Python, loops (does not attach)
``status``    attached clients and the instruments installed on each loop (does not attach)
``snapshot``  the loop panel, the current stall with its stack, the task table, warnings,
              the slowest callbacks; rates are over the interval since this client's last
              snapshot. Options: ``stall`` (s, default 0.1), ``step`` (0.05), ``lost`` (5.0),
              ``spin`` (0.5 of steps self-woken, over at least ``spin_steps`` = 20 steps)
``tasks``     the task table alone
``task``      ``{"id": n}``: one task with its await chain (with source lines) and children
``cancel``    ``{"id": n, "msg": ...}``: ``task.cancel(msg)`` on the loop's thread
``detach``    stop measuring for this client (as closing the connection does)

The snapshot is read from the console's thread while the loop runs; each figure is sound,
the set of them may straddle a callback.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import socket
import stat
import struct
import sys
import threading
import time
import weakref
from typing import Any, Callable

from ..contract import LoopInternals
from ..core import on_new_loop
from .hooks import add_instrument, instruments, on_loop_thread, open_loops, remove_instrument
from .stats import LoopStats
from .taskdump import TaskTree
from .taskstats import TaskStats
from .watchdog import Heartbeat
from .console_views import ConsoleViews, _loop_brief

__all__ = ["Console", "console", "runtime_dir", "socket_path", "candidate_paths",
           "ENV_VAR", "PROTOCOL_VERSION"]

logger = logging.getLogger("conveyor.console")
ENV_VAR = "CONVEYOR_CONSOLE"
PROTOCOL_VERSION = 1
MAX_REQUEST = 1 << 20
_clock = time.monotonic

DEFAULTS = {"stall": 0.1, "step": 0.05, "lost": 5.0, "spin": 0.5, "spin_steps": 20}


# ---------------------------------------------------------------- where the socket lives

def runtime_dir(*, create: bool = False) -> str:
    """The per-user directory for console sockets (made 0700 if ``create``).

    Raises PermissionError if the directory exists but is not this user's alone: a socket
    in a directory someone else controls could be swapped for theirs.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        path = os.path.join(xdg, "conveyor")
    else:
        path = f"/tmp/conveyor-{os.geteuid()}"
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if create:
            raise
        return path
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or \
            info.st_mode & 0o077:
        raise PermissionError(f"{path} must be a directory owned by uid {os.geteuid()} "
                              f"with mode 0700 (found uid {info.st_uid}, mode "
                              f"{stat.S_IMODE(info.st_mode):o})")
    return path


def socket_path(pid: int | None = None) -> str:
    """Where the console of process ``pid`` (default: this one) listens."""
    return os.path.join(runtime_dir(), f"{os.getpid() if pid is None else pid}.sock")


def candidate_paths(pid: int) -> list[str]:
    """Where a client looks for process ``pid``'s socket: the same rule as the server,
    and the /tmp fallback (the client's environment may lack XDG_RUNTIME_DIR or have it)."""
    paths = []
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        paths.append(os.path.join(xdg, "conveyor", f"{pid}.sock"))
    paths.append(f"/tmp/conveyor-{os.geteuid()}/{pid}.sock")
    return paths


# ---------------------------------------------------------------- per-loop instruments

class _Probe:
    """The instruments the console keeps on one loop while a client is attached."""

    def __init__(self, loop: LoopInternals) -> None:
        self.loop = loop
        self.stats = LoopStats(loop)
        self.tasks = TaskStats()
        self.tree: TaskTree | None = None
        self.beat = Heartbeat(None, loop)
        self.requested = _clock()
        self.done = threading.Event()  #: set once install has run on the loop's thread
        self.installed = False
        self.removed = False

    def install(self) -> None:
        """Runs on the loop's thread."""
        if self.removed or self.loop.is_closed():
            return
        self.stats.reset()
        existing = [i for i in instruments(self.loop) if isinstance(i, TaskTree)]
        if existing:
            self.tree = existing[0]
            self._own_tree = False
        else:
            self.tree = TaskTree()
            self._own_tree = True
        for instrument in (self.beat, self.stats, self.tasks) + \
                ((self.tree,) if self._own_tree else ()):
            add_instrument(instrument, self.loop)
        self.installed = True
        self.done.set()

    def remove(self) -> None:
        """Runs on the loop's thread (or with the loop stopped)."""
        self.removed = True
        if not self.installed:
            return
        self.installed = False
        owned = [self.beat, self.stats, self.tasks]
        if getattr(self, "_own_tree", False):
            owned.append(self.tree)
        for instrument in owned:
            remove_instrument(instrument, self.loop)


# ---------------------------------------------------------------- the console

class Console(ConsoleViews):
    """A listening console; see the module docstring. Make it with `console()`."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path if path is not None else socket_path()
        self.pid = os.getpid()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._attached = 0
        self._probes: dict[LoopInternals, _Probe] = {}
        self._ids: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._by_id: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._next_id = 0
        self._closed = False
        #: Stops calling `_new_loop` for new loops; set while listening.
        self._unwatch: Callable[[], None] | None = None
        #: How many times instruments were installed / removed (read by tests and status).
        self.installs = 0
        self.removals = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "Console":
        if self._sock is not None:
            return self
        if self.path == socket_path(self.pid):
            runtime_dir(create=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._unlink_stale()
            sock.bind(self.path)
            # The directory (0700) already keeps other users out; 0600 on the socket too.
            os.chmod(self.path, 0o600)
            sock.listen(8)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._unwatch = on_new_loop(self._new_loop)
        atexit.register(self.close)
        self._thread = threading.Thread(target=self._serve, name="conveyor-console",
                                        daemon=True)
        self._thread.start()
        return self

    def _unlink_stale(self) -> None:
        """Remove a socket left by a dead process that had our pid; refuse a live one."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise FileExistsError(f"{self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(self.path)
        else:
            raise FileExistsError(f"a console is already listening at {self.path}")
        finally:
            probe.close()

    def close(self) -> None:
        """Stop listening, remove the socket file and every instrument."""
        global _active
        if self._closed:
            return
        self._closed = True
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()
        try:
            atexit.unregister(self.close)
        except Exception:
            pass
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
            if os.getpid() == self.pid:  # a forked child must not remove its parent's
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
        with self._lock:
            self._attached = 0
            probes, self._probes = dict(self._probes), {}
        for loop, probe in probes.items():
            self._remove_probe(loop, probe)
        if _active is self:
            _active = None

    def __enter__(self) -> "Console":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------ attaching

    def _attach(self) -> None:
        with self._lock:
            self._attached += 1
            if self._attached > 1:
                return
            loops = _loops_now()
            for loop in loops:
                self._add_probe(loop)

    def _detach(self) -> None:
        with self._lock:
            if self._attached == 0:
                return
            self._attached -= 1
            if self._attached:
                return
            probes, self._probes = dict(self._probes), {}
        for loop, probe in probes.items():
            self._remove_probe(loop, probe)

    def _add_probe(self, loop: LoopInternals) -> None:
        """Called with the lock held."""
        if loop in self._probes or loop.is_closed():
            return
        probe = self._probes[loop] = _Probe(loop)
        self.installs += 1
        if not on_loop_thread(loop, probe.install):  # closed meanwhile
            self._probes.pop(loop, None)

    def _remove_probe(self, loop: LoopInternals, probe: _Probe) -> None:
        self.removals += 1
        if loop.is_closed():
            probe.removed = True
            return
        if not on_loop_thread(loop, probe.remove):  # closed meanwhile: remove it here
            probe.remove()

    def _new_loop(self, loop: LoopInternals) -> None:
        """A conveyor loop was created: measure it too if someone is attached."""
        with self._lock:
            if self._attached:
                self._add_probe(loop)

    # ------------------------------------------------------------ serving

    def _serve(self) -> None:
        sock = self._sock
        while sock is not None and not self._closed:
            try:
                conn, _ = sock.accept()
            except OSError:
                break
            try:
                if not _peer_allowed(conn):
                    conn.close()
                    continue
            except OSError:
                conn.close()
                continue
            threading.Thread(target=self._client, args=(conn,), name="conveyor-console-client",
                             daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        session = _Session()
        try:
            reader = conn.makefile("rb")
            while not self._closed:
                line = reader.readline(MAX_REQUEST + 1)
                if not line:
                    break
                if len(line) > MAX_REQUEST:
                    conn.sendall(_encode({"ok": False, "error": "request too long"}))
                    break
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("a request is a JSON object")
                    reply = self.handle(request, session)
                except Exception as exc:
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                conn.sendall(_encode(reply))
        except OSError:
            pass
        finally:
            if session.attached:
                session.attached = False
                self._detach()
            try:
                conn.close()
            except OSError:
                pass

    # ------------------------------------------------------------ requests

    def handle(self, request: dict, session: "_Session") -> dict:
        """Answer one request (public so tests and in-process tools can call it)."""
        op = request.get("op")
        if op == "hello":
            return {"ok": True, "protocol": PROTOCOL_VERSION, "pid": os.getpid(),
                    "argv": sys.argv, "python": sys.version.split()[0],
                    "loops": [_loop_brief(loop) for loop in _loops_now()]}
        if op == "status":
            return {"ok": True, "attached": self._attached, "installs": self.installs,
                    "removals": self.removals,
                    "loops": [dict(_loop_brief(loop), instruments=[
                        type(i).__name__ for i in instruments(loop)],
                        fast_path=loop._hooks is None) for loop in _loops_now()]}
        if op == "detach":
            if session.attached:
                session.attached = False
                self._detach()
            return {"ok": True}
        if op not in ("snapshot", "tasks", "task", "cancel"):
            return {"ok": False, "error": f"unknown op {op!r}"}
        if not session.attached:
            session.attached = True
            self._attach()
        loop = self._target(request)
        if loop is None:
            return {"ok": False, "error": "no open conveyor loop in this process"}
        probe = self._probes.get(loop)
        options = {key: float(request.get(key, value)) for key, value in DEFAULTS.items()}
        if op == "snapshot":
            return self._snapshot(loop, probe, session, options)
        if op == "tasks":
            return {"ok": True, "tasks": self._task_rows(loop, probe)}
        task = self._by_id.get(request.get("id"))
        if task is None or task.get_loop() is not loop:
            return {"ok": False, "error": f"no live task with id {request.get('id')!r}"}
        if op == "task":
            return {"ok": True, "task": self._task_detail(loop, probe, task)}
        message = request.get("msg")
        loop.call_soon_threadsafe(task.cancel, None if message is None else str(message))
        return {"ok": True, "requested": True, "id": request.get("id"),
                "name": task.get_name()}

    def _target(self, request: dict) -> Any:
        loops = _loops_now()
        index = request.get("loop")
        if isinstance(index, int) and 0 <= index < len(loops):
            return loops[index]
        running = [loop for loop in loops if loop.is_running()]
        if running:
            return running[0]
        return loops[-1] if loops else None

    def _id_of(self, task: asyncio.Task) -> int:
        with self._lock:
            found = self._ids.get(task)
            if found is None:
                self._next_id += 1
                found = self._ids[task] = self._next_id
                self._by_id[found] = task
            return found

class _Session:
    """What the console remembers about one client connection."""

    def __init__(self) -> None:
        self.attached = False
        self.previous: dict[int, tuple] = {}
        self.lost_cache: dict = {}


# ---------------------------------------------------------------- helpers

def _encode(reply: dict) -> bytes:
    return json.dumps(reply, default=str, separators=(",", ":")).encode() + b"\n"


def _peer_allowed(conn: socket.socket) -> bool:
    """Same user (or root) only, checked on the connection itself, not just the file mode."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid in (os.geteuid(), 0)


def _loops_now() -> list[LoopInternals]:
    for _ in range(10):
        try:
            return open_loops()
        except RuntimeError:  # the set changed while we iterated it
            continue
    return []



# ---------------------------------------------------------------- entry points

_active: Console | None = None
_active_lock = threading.Lock()


def console(path: str | None = None) -> Console:
    """Start this process's console (or return the one already listening).

    ``path`` overrides the socket's location (default ``<runtime dir>/<pid>.sock``).
    """
    global _active
    with _active_lock:
        if _active is not None and not _active._closed and _active.pid == os.getpid():
            return _active
        _active = Console(path).start()
        return _active


def _from_environment() -> None:
    """``CONVEYOR_CONSOLE=1`` (or a socket path): start the console with the first loop."""
    value = os.environ.get(ENV_VAR, "")
    if value in ("", "0"):
        return
    path = value if "/" in value else None
    started = []

    def first_loop(loop: LoopInternals) -> None:
        if started:
            return
        started.append(True)
        stop_watching()
        try:
            console(path)
        except OSError as exc:
            logger.warning("conveyor: %s is set but the console could not start: %s",
                           ENV_VAR, exc)

    stop_watching = on_new_loop(first_loop)

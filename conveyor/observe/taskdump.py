"""Task dump: every live task, where it is suspended, and which task spawned it, as a tree.

    conveyor.dump_tasks()                         # print now, from the loop's thread
    conveyor.dump_tasks_on_signal()               # kill -USR1 <pid> prints it (opt-in)

Tasks stay asyncio's own Task objects. What asyncio does not keep is who created a task, so
`track_spawns` installs a small instrument that remembers, for each task created from then
on, the task that was current when ``create_task`` ran (weakly: the record never keeps a
task alive). Tasks created before tracking started are shown as roots.

The await chain is read from the coroutine objects themselves: ``cr_await`` leads from a
coroutine to the coroutine (or generator, or future) it is awaiting, and each one's
``cr_frame`` says at which line it is suspended; the chain ends at the future the task waits
for.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import weakref
from typing import Any, TextIO

from ..contract import LoopInternals
from .hooks import Instrument, add_instrument, instruments, peek_exception

__all__ = ["TaskTree", "track_spawns", "await_chain", "await_frames", "task_state", "format_tasks", "dump_tasks",
           "dump_tasks_on_signal", "SignalDump"]


class TaskTree(Instrument):
    """Remembers the spawning task of every task created while installed."""

    def __init__(self) -> None:
        self._parents: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def task_created(self, task: asyncio.Task) -> None:
        try:
            parent = asyncio.current_task()
        except RuntimeError:
            parent = None
        if parent is not None and parent is not task:
            self._parents[task] = (weakref.ref(parent), parent.get_name())

    def parent_of(self, task: asyncio.Task) -> tuple[asyncio.Task | None, str | None]:
        """(the spawning task if still alive, its name), or (None, None) if unknown."""
        found = self._parents.get(task)
        if found is None:
            return None, None
        return found[0](), found[1]


def next_awaitable(awaitable):
    """What a coroutine, generator or async generator is suspended on, or None."""
    nxt = getattr(awaitable, "cr_await", None)
    if nxt is None:
        nxt = getattr(awaitable, "gi_yieldfrom", None)
    if nxt is None:
        nxt = getattr(awaitable, "ag_await", None)
    return nxt


def _tree_of(loop: LoopInternals) -> TaskTree | None:
    for instrument in instruments(loop):
        if isinstance(instrument, TaskTree):
            return instrument
    return None


def track_spawns(loop: LoopInternals | None = None) -> TaskTree:
    """Start remembering who creates each task on ``loop`` (default: the running loop)."""
    if loop is None:
        loop = asyncio.get_running_loop()
    tree = _tree_of(loop)
    if tree is None:
        tree = TaskTree()
        add_instrument(tree, loop)
    return tree


def _frame_of(awaitable: Any) -> Any:
    for name in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, name, None)
        if frame is not None:
            return frame
    return None


def await_frames(task: asyncio.Task) -> list[dict[str, Any]]:
    """Where ``task`` is suspended, outermost coroutine first, as records.

    Each record is ``{"name", "file", "line"}`` for a suspended coroutine or generator,
    ``{"name", "finished": True}`` for one that has finished or not started, and the last
    may be ``{"awaiting": repr}`` for the future the task waits for. `await_chain` prints
    these; the live console sends them as they are.
    """
    records: list[dict[str, Any]] = []
    awaitable: Any = task.get_coro()
    seen = 0
    while awaitable is not None and seen < 100:
        seen += 1
        if asyncio.isfuture(awaitable):
            records.append({"awaiting": _safe_repr(awaitable)})
            break
        frame = _frame_of(awaitable)
        name = getattr(awaitable, "__qualname__", type(awaitable).__name__)
        if frame is not None:
            records.append({"name": name, "file": frame.f_code.co_filename,
                            "line": frame.f_lineno})
        elif any(hasattr(awaitable, attr) for attr in ("cr_code", "gi_code", "ag_code")):
            records.append({"name": name, "finished": True})
        else:
            break  # a future's iterator: the task's waiter, below, says what it waits for
        awaitable = next_awaitable(awaitable)
    waiter = getattr(task, "_fut_waiter", None)
    if waiter is not None and not (records and "awaiting" in records[-1]):
        records.append({"awaiting": _safe_repr(waiter)})
    return records


def await_chain(task: asyncio.Task) -> list[str]:
    """The lines describing where ``task`` is suspended, outermost coroutine first."""
    return [describe_frame(record) for record in await_frames(task)]


def describe_frame(record: dict[str, Any]) -> str:
    """One `await_frames` record as a line (the task dump and ``top``'s task view)."""
    if "awaiting" in record:
        return f"awaiting {record['awaiting']}"
    if record.get("finished"):
        return f"{record['name']} (finished or not started)"
    return f"{record['name']} at {record['file']}:{record['line']}"


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception:  # read from another thread (the console), a repr may race the loop
        return object.__repr__(obj)


def task_state(task: asyncio.Task) -> str:
    """running / pending / done / cancelled / raised X, without retrieving an exception."""
    return _state(task)


def _state(task: asyncio.Task) -> str:
    if not task.done():
        try:
            running = asyncio.current_task(task.get_loop()) is task
        except RuntimeError:
            running = False
        return "running" if running else "pending"
    if task.cancelled():
        return "cancelled"
    exc = peek_exception(task)
    return "done" if exc is None else f"raised {type(exc).__name__}"


def format_tasks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """The task tree of ``loop`` (default: the running loop) as text."""
    if loop is None:
        loop = asyncio.get_running_loop()
    tasks = list(asyncio.all_tasks(loop))
    tree = _tree_of(loop) if hasattr(loop, "_hooks") else None
    children: dict[Any, list[asyncio.Task]] = {}
    roots: list[tuple[asyncio.Task, str | None]] = []
    alive = set(tasks)
    for task in tasks:
        parent, parent_name = tree.parent_of(task) if tree is not None else (None, None)
        if parent is not None and parent in alive:
            children.setdefault(parent, []).append(task)
        else:
            roots.append((task, parent_name))

    def key(task: asyncio.Task) -> str:
        return task.get_name()

    out = [f"{len(tasks)} task(s) on {loop!r}"
           + ("" if tree is not None else " (spawners unknown: call track_spawns() first)")]

    def emit(task: asyncio.Task, prefix: str, last: bool, note: str | None, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        head = f"{prefix}{branch}{task.get_name()} {name}() [{_state(task)}]"
        if note:
            head += f" spawned by {note} (finished)"
        out.append(head)
        inner = prefix + ("" if top else ("    " if last else "│   "))
        kids = sorted(children.get(task, ()), key=key)
        bar = "│ " if kids else "  "
        for line in await_chain(task):
            out.append(f"{inner}{bar} {line}")
        for index, child in enumerate(kids):
            emit(child, inner, index == len(kids) - 1, None, False)

    for task, parent_name in sorted(roots, key=lambda item: key(item[0])):
        emit(task, "", True, parent_name, True)
    return "\n".join(out)


def dump_tasks(loop: asyncio.AbstractEventLoop | None = None,
               file: TextIO | None = None) -> str:
    """Print every live task of ``loop`` as a tree with its await chain; returns the text."""
    text = format_tasks(loop)
    print(text, file=sys.stderr if file is None else file, flush=True)
    return text


class SignalDump:
    """A signal handler that prints the task tree; `close` restores the previous handler."""

    def __init__(self, loop: asyncio.AbstractEventLoop, signum: int,
                 file: TextIO | None) -> None:
        self.loop = loop
        self.signum = signum
        self.file = file
        self._previous = signal.signal(signum, self._handle)
        self._closed = False

    def _handle(self, signum: int, frame: Any) -> None:
        # Python runs this in the main thread between bytecodes, even while a callback
        # blocks the loop, so the dump shows the state at the moment the signal came.
        try:
            dump_tasks(self.loop, self.file)
        except Exception as exc:  # a diagnostic must not break the program
            print(f"conveyor: task dump failed: {exc!r}", file=sys.stderr)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            previous = signal.SIG_DFL if self._previous is None else self._previous
            signal.signal(self.signum, previous)


def dump_tasks_on_signal(signum: int = signal.SIGUSR1,
                         loop: asyncio.AbstractEventLoop | None = None,
                         file: TextIO | None = None) -> SignalDump:
    """Opt in: print the task tree of ``loop`` whenever the process receives ``signum``.

    Call from the main thread (Python's rule for signal handlers). Also starts
    `track_spawns` on the loop so the tree shows who spawned what.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    if not isinstance(signum, int):
        raise TypeError(f"signum must be an int, got {signum!r}")
    if hasattr(loop, "_hooks"):
        track_spawns(loop)
    return SignalDump(loop, signum, file)

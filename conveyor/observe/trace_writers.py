"""Recorded trace events (trace_events.py) as Chrome trace JSON or the offline HTML page.

The output is the Trace Event Format (``traceEvents`` with ``ph`` X / i / M), which Perfetto
and chrome://tracing open. The HTML page (timeline.html) embeds the same JSON and draws it
with its own small script, so it works offline and can be mailed around.

Names, source locations and JSON are made here, once, at write time; the file is streamed
one event at a time, so writing a full ring buffer needs little memory beyond the buffer.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from pathlib import Path
from typing import Any, Iterator, TextIO

from .sites import Site
from .trace_events import (DEFAULT_SLOW, Callback, Iteration, Poll, Step, TaskCreated,
                           TaskDone, TaskNamed, Timer, named)

__all__ = ["LOOP_TID", "POLL_TID", "TASK_TID_BASE", "to_chrome", "render_html",
           "write_file", "step_label"]

#: Lanes (Chrome "threads") of one loop's process.
POLL_TID = 1
LOOP_TID = 2
TASK_TID_BASE = 1000

_TEMPLATE = Path(__file__).with_name("timeline.html")
_DATA_MARK = "/*__CONVEYOR_TRACE_DATA__*/null"


def write_file(path: str | os.PathLike, events: list[tuple], *, origin: float, slow: float,
          dropped: bool, loops: int) -> None:
    """Write ``.html`` (or ``.htm``) as the offline timeline page, anything else as trace
    JSON, streaming the file event by event."""
    path = os.fspath(path)
    meta, body = _chrome_parts(events, origin=origin, slow=slow)
    other = _other_data(slow, dropped, loops)
    with open(path, "w", encoding="utf-8") as file:
        if path.lower().endswith((".html", ".htm")):
            head, tail = _TEMPLATE.read_text(encoding="utf-8").split(_DATA_MARK, 1)
            file.write(head)
            _write_json(file, meta, body, other, escape=True)
            file.write(tail)
        else:
            _write_json(file, meta, body, other, escape=False)


def to_chrome(events: list[tuple], *, origin: float, slow: float = DEFAULT_SLOW,
              dropped: bool = False, loops: int = 1) -> dict:
    """Recorded tuples as one Trace Event Format object (``{"traceEvents": [...]}``)."""
    meta, body = _chrome_parts(events, origin=origin, slow=slow)
    return {"traceEvents": meta + list(body), "displayTimeUnit": "ms",
            "otherData": _other_data(slow, dropped, loops)}


def render_html(data: dict) -> str:
    """The timeline page with ``data`` (a `to_chrome` object) embedded; no network needed."""
    head, tail = _TEMPLATE.read_text(encoding="utf-8").split(_DATA_MARK, 1)
    return head + _escape_for_script(json.dumps(data, separators=(",", ":"))) + tail


# ------------------------------------------------------------- trace event format

def _us(t: float, origin: float) -> float:
    return round((t - origin) * 1e6, 3)


def _fd_mask(mask: int) -> str:
    parts = [name for bit, name in ((0x001, "readable"), (0x004, "writable"),
                                    (0x008, "error"), (0x010, "hangup")) if mask & bit]
    return "+".join(parts) or hex(mask)


def _site_label(key: Any) -> tuple[str, str]:
    """(name, "file:line") for a key made by `trace_recorder.site_key`."""
    if hasattr(key, "co_filename"):
        return key.co_qualname if hasattr(key, "co_qualname") else key.co_name, \
            f"{key.co_filename}:{key.co_firstlineno}"
    return str(key), ""


def _chrome_parts(events: list[tuple], *, origin: float,
                  slow: float) -> tuple[list[dict], Iterator[dict]]:
    """(the metadata events, an iterator making the other events one dict at a time).

    Two passes over the recorded tuples: the first learns every task's final name (asyncio
    names a task after the loop created it, and set_name may rename it later) and which
    lanes exist, so the metadata can come first; the second turns each tuple into its
    trace events lazily, so writing a full ring buffer never holds all the dicts at once.
    """
    tasks: dict[tuple[int, int], str] = {}
    coros: dict[tuple[int, int], str] = {}
    loops: set[int] = set()

    def renamed(loop: int, task: int, name: str) -> None:
        coro = coros.get((loop, task))
        tasks[(loop, task)] = f"{name} ({coro})" if coro else name

    for event in named(events):
        loops.add(event.loop)
        match event:
            case TaskCreated():
                coros[(event.loop, event.task)] = event.coro
                renamed(event.loop, event.task, event.name)
            case TaskDone() | TaskNamed():
                renamed(event.loop, event.task, event.name)
            case Step() if (event.loop, event.task) not in tasks:
                # Its creation fell off the ring buffer.
                tasks[(event.loop, event.task)] = f"task #{event.task}"

    meta: list[dict] = []
    for pid in sorted(loops):
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                     "args": {"name": f"conveyor loop {pid}"}})
        for tid, name in ((POLL_TID, "kernel wait (poll)"), (LOOP_TID, "loop")):
            meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                         "args": {"name": name}})
            meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                         "args": {"sort_index": tid}})
    # Task lanes sort by their tid, the order they were met; no thread_sort_index needed
    # (it would add 85 bytes a task).
    for (pid, serial), name in sorted(tasks.items()):
        tid = TASK_TID_BASE + serial
        # "coro" (ignored by Perfetto) lets the HTML page group lanes by coroutine function.
        meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                     "args": {"name": f"task {name}", "coro": coros.get((pid, serial), "")}})
    return meta, _chrome_events(events, tasks, origin, slow)


def _chrome_events(events: list[tuple], tasks: dict[tuple[int, int], str], origin: float,
                   slow: float) -> Iterator[dict]:
    labels: dict[Any, tuple[str, str]] = {}
    for event in named(events):
        pid = event.loop
        match event:
            case Iteration():
                yield {"name": "iteration", "cat": "loop", "ph": "X", "pid": pid,
                       "tid": LOOP_TID, "ts": _us(event.start, origin),
                       "dur": _us(event.end, event.start),
                       "args": {"ready_fds": event.ready_fds}}
            case Poll():
                ready = event.ready or ()
                yield {"name": "poll", "cat": "poll", "ph": "X", "pid": pid, "tid": POLL_TID,
                       "ts": _us(event.start, origin), "dur": _us(event.end, event.start),
                       "args": {"timeout": event.timeout, "ready_fds": len(ready)}}
                for fd, mask in ready:
                    yield {"name": f"fd {fd} {_fd_mask(mask)}", "cat": "io", "ph": "i",
                           "s": "t", "pid": pid, "tid": POLL_TID, "ts": _us(event.end, origin),
                           "args": {"fd": fd, "mask": mask}}
            case Callback() | Timer():
                found = labels.get(event.site)
                if found is None:
                    found = labels[event.site] = _site_label(event.site)
                name, source = found
                args: dict[str, Any] = {"source": source}
                is_timer = isinstance(event, Timer)
                if is_timer:
                    args["late_ms"] = round(event.late * 1e3, 3)
                if event.took >= slow:
                    args["slow"] = True
                yield {"name": name, "cat": "timer" if is_timer else "callback", "ph": "X",
                       "pid": pid, "tid": LOOP_TID, "ts": _us(event.start, origin),
                       "dur": _us(event.start + event.took, event.start), "args": args}
            case Step():
                # Steps are most of a trace: their args say only what the name and the
                # lane do not (the task lane names the task; the loop lane's copy is named
                # after it).
                task = tasks[(pid, event.task)]
                extra: dict[str, Any] = {}
                label = None
                if event.blocked_at is not None:
                    extra["blocked_at"] = event.blocked_at.where()
                if event.suspended_at is not None:
                    extra["suspended_at"] = event.suspended_at.where()
                if event.took >= slow:
                    extra["slow"] = True
                    label = step_label(event.blocked_at, event.suspended_at)
                ts, dur = _us(event.start, origin), _us(event.start + event.took, event.start)
                yield {"name": label or f"step {task}", "cat": "task_step", "ph": "X",
                       "pid": pid, "tid": LOOP_TID, "ts": ts, "dur": dur,
                       "args": {"task": task, "task_id": event.task, **extra} if label
                       else {"task_id": event.task}}
                yield {"name": label or "step", "cat": "task_step", "ph": "X", "pid": pid,
                       "tid": TASK_TID_BASE + event.task, "ts": ts, "dur": dur, "args": extra}
            case TaskCreated():
                args = {}  # the lane names the task and its coroutine
                if event.parent is not None:
                    args["spawned_by"] = tasks.get((pid, event.parent),
                                                   f"task #{event.parent}")
                    args["parent_id"] = event.parent
                yield {"name": "already running" if event.existing else "created",
                       "cat": "task", "ph": "i", "s": "t", "pid": pid,
                       "tid": TASK_TID_BASE + event.task, "ts": _us(event.at, origin),
                       "args": args}
            case TaskDone():
                yield {"name": event.outcome.split(" ", 1)[0], "cat": "task", "ph": "i",
                       "s": "t", "pid": pid, "tid": TASK_TID_BASE + event.task,
                       "ts": _us(event.at, origin), "args": {"outcome": event.outcome}}


def step_label(blocked_at: Site | None, suspended_at: Site | None) -> str | None:
    """A slow step's name: ``slow() app.py:10`` where it was seen blocking, with ``→12``
    when its coroutine then stopped further down the same function (``slow() app.py:10→12``);
    ``start() web.py:→40`` (only where it stopped) if no sample fell inside the step."""
    if blocked_at is None:
        if suspended_at is None:
            return None
        return (f"{suspended_at.name}() {os.path.basename(suspended_at.filename)}"
                f":\u2192{suspended_at.lineno}")
    label = f"{blocked_at.name}() {os.path.basename(blocked_at.filename)}:{blocked_at.lineno}"
    if (suspended_at is not None and suspended_at.name == blocked_at.name
            and suspended_at.filename == blocked_at.filename
            and suspended_at.lineno != blocked_at.lineno):
        label += f"\u2192{suspended_at.lineno}"
    return label


def _other_data(slow: float, dropped: bool, loops: int) -> dict:
    return {"producer": "conveyor", "slow_threshold_ms": slow * 1e3,
            "ring_buffer_overflowed": dropped, "loops": loops}


def _escape_for_script(text: str) -> str:
    # Inside an HTML <script>, "</script" or "<!--" would confuse the parser; "<" occurs
    # only inside JSON strings, where "\u003c" means the same.
    return text.replace("<", "\\u003c")


def _write_json(file: TextIO, meta: list[dict], body: Iterator[dict], other: dict,
                escape: bool) -> None:
    """Stream the trace object to ``file``, one event at a time."""
    dumps = functools.partial(json.dumps, separators=(",", ":"))
    fix = _escape_for_script if escape else str
    file.write('{"traceEvents":[')
    first = True
    for event in itertools.chain(meta, body):
        if not first:
            file.write(",")
        first = False
        file.write(fix(dumps(event)))
    file.write('],"displayTimeUnit":"ms","otherData":' + fix(dumps(other)) + "}")

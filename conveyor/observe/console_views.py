"""What the live console's answers hold: the loop panel, the current stall, the task table,
the warnings and one task's detail (conveyor/observe/console.py serves them).

Everything here runs on a console thread while the loop runs, reading state the loop's
thread owns: each read goes through `_safe` or retries, and each figure is sound while the
set of them may straddle a callback. `Console` mixes `ConsoleViews` in and supplies
`_id_of` (its stable task ids) and the measuring probes.
"""

from __future__ import annotations

import asyncio
import linecache
import os
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

from ..contract import LoopInternals
from ..core import LOOP_CODES
from .sites import coroutine_name
from .taskdump import await_frames, task_state
from .taskstats import lost_wakers, where_suspended
from .watchdog import capture_stall

if TYPE_CHECKING:
    from .console import _Probe, _Session

_clock = time.monotonic


class ConsoleViews:
    """The snapshot-building half of `Console` (which supplies `_id_of`)."""

    def _snapshot(self, loop: LoopInternals, probe: _Probe | None, session: "_Session",
                  options: dict) -> dict:
        now = _clock()
        section: dict[str, Any] = _loop_brief(loop)
        section["measuring"] = bool(probe and probe.installed)
        slowest: list[dict] = []
        if probe is not None and probe.installed:
            snap = probe.stats.snapshot()
            previous = session.previous.get(id(loop))
            session.previous[id(loop)] = (now, snap.iterations, snap.callbacks,
                                          snap.poll_time, snap.task_steps)
            if previous is None:
                previous = (probe.stats.started, 0, 0, 0.0, 0)
            span = max(now - previous[0], 1e-9)
            iterations = snap.iterations - previous[1]
            polled = snap.poll_time - previous[3]
            section.update(
                interval=span,
                utilization=min(max(1.0 - polled / span, 0.0), 1.0),
                iterations_per_s=iterations / span,
                callbacks_per_s=(snap.callbacks - previous[2]) / span,
                steps_per_s=(snap.task_steps - previous[4]) / span,
                poll_wait=polled / iterations if iterations else None,
                timer_lag=_trim(snap.timer_lag), queue_delay=_trim(snap.queue_delay),
                since_attach=snap.elapsed, iterations=snap.iterations,
                callbacks=snap.callbacks, tasks_created=snap.tasks_created,
                tasks_done=snap.tasks_done)
            slowest = [{"took": s.took, "callback": s.callback, "where": s.source,
                        "task": s.task} for s in snap.slowest]
        stall = self._stall(loop, probe, options["stall"])
        rows = self._task_rows(loop, probe)
        warnings = self._warnings(loop, probe, rows, stall, session, options)
        flagged = {w["task_id"] for w in warnings if w["kind"] == "long-step"}
        live = {row["name"]: row["id"] for row in rows}
        for slow in slowest:
            if slow["took"] < options["step"] or (slow["task"] in live and
                                                  live[slow["task"]] in flagged):
                continue
            what = f"{slow['task']} ({slow['callback']})" if slow["task"] else \
                f"callback {slow['callback']}"
            where = f" at {slow['where']}" if slow["where"] else ""
            warnings.append({"kind": "slow-callback", "task_id": live.get(slow["task"]),
                             "message": f"{what} held the loop {slow['took'] * 1e3:.0f} ms"
                                        f"{where}"})
        return {"ok": True, "pid": os.getpid(), "time": now, "loop": section,
                "stall": stall, "tasks": rows, "warnings": warnings, "slowest": slowest}

    def _stall(self, loop: LoopInternals, probe: _Probe | None, threshold: float) -> dict | None:
        if not loop.is_running():
            return None
        if probe is not None and probe.installed:
            found = capture_stall(probe.beat, threshold)
            if found is None:
                return None
            task = found.task
            return {"blocked_for": found.noticed_after, "at_least": False,
                    "callback": found.callback,
                    "task": None if task is None else task.get_name(),
                    "task_id": None if task is None else self._id_of(task),
                    "stack": _frames(found.stack)}
        # Not measuring yet: the install callback is queued behind whatever runs. If it
        # is still waiting after the threshold and the loop thread is not in its poll, the
        # loop is blocked, for at least that long.
        if probe is None:
            return None
        if probe.done.wait(max(threshold - (_clock() - probe.requested), 0.0)):
            return self._stall(loop, probe, threshold)
        frame = sys._current_frames().get(loop._thread_id)
        if frame is None or frame.f_code in LOOP_CODES:
            return None  # in the loop's own code (its poll), not in a callback
        stack = traceback.extract_stack(frame)
        task = _safe(lambda: asyncio.current_task(loop))
        return {"blocked_for": _clock() - probe.requested, "at_least": True,
                "callback": "unknown (measuring starts when the loop comes back)",
                "task": None if task is None else task.get_name(),
                "task_id": None if task is None else self._id_of(task),
                "stack": _frames(stack)}

    def _task_rows(self, loop: LoopInternals, probe: _Probe | None) -> list[dict]:
        now = _clock()
        stats = probe.tasks if probe is not None and probe.installed else None
        tree = probe.tree if probe is not None and probe.installed else None
        rows = []
        for task in _all_tasks(loop):
            record = stats.records.get(task) if stats is not None else None
            parent, parent_name = tree.parent_of(task) if tree is not None else (None, None)
            coro = task.get_coro()
            waiter = getattr(task, "_fut_waiter", None)
            row = {"id": self._id_of(task), "name": task.get_name(),
                   "coro": coroutine_name(coro),
                   "where": _safe(lambda: where_suspended(task)) or "",
                   "state": _safe(lambda: task_state(task)) or "?",
                   "waiting": None if waiter is None else type(waiter).__name__,
                   "parent": None if parent is None else self._id_of(parent),
                   "spawner": parent_name}
            if record is not None:
                last = record.last_step_end
                row.update(steps=record.steps, busy=record.busy, max_step=record.max_step,
                           max_step_at=record.max_step_at, self_wakes=record.self_wakes,
                           self_wake_at=record.self_wake_at, slow_steps=record.slow_steps, sched=record.sched_delay,
                           idle=now - (last if last is not None else record.first_seen),
                           idle_at_least=False)
            elif stats is not None:
                # Not stepped since the console attached: idle at least since then.
                row.update(steps=0, busy=0.0, max_step=0.0, max_step_at="", self_wakes=0,
                           slow_steps=0, sched=None, idle=now - probe.stats.started,
                           idle_at_least=True)
            rows.append(row)
        return rows

    def _warnings(self, loop: LoopInternals, probe: _Probe | None, rows: list[dict],
                  stall: dict | None, session: "_Session", options: dict) -> list[dict]:
        warnings = []
        if stall is not None:
            top = stall["stack"][-1] if stall["stack"] else None
            where = f" at {top['file']}:{top['line']}" if top else ""
            warnings.append({"kind": "blocked", "task_id": stall["task_id"],
                             "message": f"loop blocked for {stall['blocked_for']:.2f} s"
                                        f"{' or more' if stall['at_least'] else ''} in "
                                        f"{stall['callback']}{where}"})
        for row in rows:
            steps = row.get("steps") or 0
            if row.get("max_step", 0.0) >= options["step"]:
                at = f", then stopped at {row['max_step_at']}" if row.get("max_step_at") \
                    else ""
                warnings.append({"kind": "long-step", "task_id": row["id"],
                                 "message": f"{row['name']} ({row['coro']}) held the loop "
                                            f"{row['max_step'] * 1e3:.0f} ms in one step"
                                            f"{at}"})
            if steps >= options["spin_steps"] and \
                    row.get("self_wakes", 0) >= options["spin"] * steps:
                warnings.append({"kind": "self-wake", "task_id": row["id"],
                                 "message": f"{row['name']} ({row['coro']}) woke itself on "
                                            f"{row['self_wakes'] / steps:.0%} of {steps} "
                                            f"steps (busy loop, sleep(0)?) at "
                                            f"{row.get('self_wake_at') or row['where']}"})
        if probe is not None and probe.installed:
            lost = lost_wakers(_all_tasks(loop), probe.tasks, after=options["lost"],
                               cache=session.lost_cache, since=probe.stats.started)
            idle = {row["id"]: row.get("idle") or 0.0 for row in rows}
            for task in lost:
                task_id = self._id_of(task)
                warnings.append({"kind": "lost-waker", "task_id": task_id,
                                 "message": f"{task.get_name()} has waited "
                                            f"{idle.get(task_id, 0.0):.1f} s on a future nothing "
                                            f"else references (it can never wake) at "
                                            f"{where_suspended(task)}"})
        return warnings

    def _task_detail(self, loop: LoopInternals, probe: _Probe | None, task: asyncio.Task) -> dict:
        task_id = self._id_of(task)
        row = next((r for r in self._task_rows(loop, probe) if r["id"] == task_id), None)
        if row is None:  # finished, still referenced by someone
            coro = task.get_coro()
            row = {"id": task_id, "name": task.get_name(),
                   "coro": coroutine_name(coro),
                   "state": _safe(lambda: task_state(task)) or "?", "done": True}
        chain = []
        for record in _safe(lambda: await_frames(task)) or []:
            if "file" in record:
                record = dict(record, code=linecache.getline(record["file"],
                                                             record["line"]).strip())
            chain.append(record)
        children = [r["id"] for r in self._task_rows(loop, probe)
                    if r.get("parent") == row["id"]]
        return dict(row, chain=chain, children=children)



# ---------------------------------------------------------------- helpers

def _safe(func: Any) -> Any:
    """Run a read of loop-owned state from the console thread; None if it raced."""
    try:
        return func()
    except Exception:
        return None


def _all_tasks(loop: LoopInternals) -> list[asyncio.Task]:
    for _ in range(10):
        try:
            return [t for t in asyncio.all_tasks(loop) if not t.done()]
        except RuntimeError:
            continue
    return []


def _loop_brief(loop: LoopInternals) -> dict:
    gauges = loop._gauges()
    return {"repr": _safe(lambda: repr(loop)), "running": loop.is_running(),
            "fds": gauges.fds, "timers": gauges.timers, "ready": gauges.ready,
            "tasks": len(_all_tasks(loop))}


def _trim(histogram: dict) -> dict:
    return {key: histogram[key] for key in ("count", "mean", "p50", "p99", "max")}


def _frames(stack: Any) -> list[dict]:
    return [{"file": f.filename, "line": f.lineno, "name": f.name, "code": f.line or ""}
            for f in stack]

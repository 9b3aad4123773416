"""``python -m conveyor top PID|SOCKET``: watch a running program's loop live.

The program must have opened its console (``conveyor.console()``, ``python -m conveyor run
--console``, or ``CONVEYOR_CONSOLE=1``). ``top`` attaches (the program starts measuring),
asks for a snapshot about once a second and draws it with curses: the loop (utilisation,
iterations and callbacks per second, poll wait, timer lag, fds, timers, ready queue), the
current stall with its stack, warnings, the slowest callbacks, and the tasks as a sortable,
filterable table or tree. When ``top`` leaves, the program stops measuring.

Keys: up/down (or j/k) select, Enter a task's await chain, s / r sort and reverse, / filter,
t tree, p pause, c cancel the selected task (asks first), q quit.

Without curses: ``--json`` prints one snapshot as JSON, ``--once`` one as text, ``--watch S``
a text snapshot every S seconds. A snapshot's rates cover ``--sample`` seconds (default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from .console_client import ConsoleClient, ConsoleError
from .observe.taskdump import describe_frame

SORTS = ("busy", "idle", "steps", "sched", "self", "name", "id", "state")
NUMERIC = {"busy", "idle", "steps", "sched", "self", "id"}
KEYS = "up/down select  Enter chain  s sort  r reverse  / filter  t tree  p pause  " \
       "c cancel  q quit"


# ---------------------------------------------------------------- formatting

def short(where: str | None) -> str:
    """``/long/path/app.py:12`` -> ``app.py:12``."""
    if not where:
        return "-"
    path, _, line = where.rpartition(":")
    if not path:
        return os.path.basename(where)
    return f"{os.path.basename(path)}:{line}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.0f} us"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


class View:
    """What the user chose to see: sort, filter, tree mode, the selected task."""

    def __init__(self) -> None:
        self.sort = "busy"
        self.reverse = True
        self.filter = ""
        self.tree = False
        self.selected_id: int | None = None

    def sort_value(self, row: dict) -> Any:
        if self.sort == "self":
            steps = row.get("steps") or 0
            return (row.get("self_wakes") or 0) / steps if steps else 0.0
        value = row.get(self.sort)
        if self.sort in NUMERIC:
            return value if isinstance(value, (int, float)) else -1.0
        return str(value or "")

    def rows(self, tasks: list[dict]) -> list[tuple[int, dict]]:
        """(depth, row) in display order."""
        needle = self.filter.lower()
        shown = [row for row in tasks if not needle or any(
            needle in str(row.get(key) or "").lower() for key in ("name", "coro", "where"))]
        shown.sort(key=self.sort_value, reverse=self.reverse)
        if not self.tree:
            return [(0, row) for row in shown]
        ids = {row["id"] for row in shown}
        children: dict[Any, list[dict]] = {}
        for row in shown:
            parent = row.get("parent") if row.get("parent") in ids else None
            children.setdefault(parent, []).append(row)
        out: list[tuple[int, dict]] = []

        def walk(parent: Any, depth: int) -> None:
            for row in children.get(parent, ()):
                out.append((depth, row))
                walk(row["id"], depth + 1)
        walk(None, 0)
        return out


def render(snap: dict, view: View, hello: dict | None = None, *, width: int = 160,
           paused: bool = False) -> tuple[list[str], list[int], int | None]:
    """The screen as lines, the task ids of the table's lines, and the header line index."""
    loop = snap["loop"]
    lines: list[str] = []
    program = " ".join(os.path.basename(a) for a in (hello or {}).get("argv", [])[:3])
    state = "BLOCKED" if snap.get("stall") else ("running" if loop["running"] else "stopped")
    lines.append(f"conveyor top - pid {snap['pid']} {program} - loop {state}"
                 + (f", measuring for {loop['since_attach']:.1f} s" if loop.get("measuring")
                    else ", starting to measure") + ("   [PAUSED]" if paused else ""))
    if loop.get("measuring"):
        lag = loop["timer_lag"]
        lines.append(f"loop  util {loop['utilization']:6.1%}  iter/s "
                     f"{loop['iterations_per_s']:8.0f}  callbacks/s {loop['callbacks_per_s']:8.0f}"
                     f"  poll wait {_ms(loop['poll_wait'])}  timer lag p50 {_ms(lag['p50'])} "
                     f"p99 {_ms(lag['p99'])} max {_ms(lag['max'])}")
    lines.append(f"      fds {loop['fds']}  timers {loop['timers']}  ready {loop['ready']}  "
                 f"tasks {loop['tasks']}" + (f" (created {loop['tasks_created']}, done "
                                             f"{loop['tasks_done']} since attach)"
                                             if loop.get("measuring") else ""))
    stall = snap.get("stall")
    if stall:
        lines.append(f"BLOCKED for {stall['blocked_for']:.2f} s"
                     f"{' or more' if stall['at_least'] else ''} in {stall['callback']}")
        for frame in stall["stack"][-6:]:
            lines.append(f"    {short(frame['file'] + ':' + str(frame['line']))} in "
                         f"{frame['name']}: {frame['code']}")
    warnings = snap.get("warnings", [])
    if warnings:
        lines.append(f"WARNINGS ({len(warnings)})")
        for warning in warnings[:8]:
            lines.append(f"  ! [{warning['kind']}] {_shorten_paths(warning['message'])}")
    slowest = snap.get("slowest", [])[:3]
    if slowest:
        lines.append("SLOWEST CALLBACKS")
        for slow in slowest:
            task = f" [{slow['task']}]" if slow["task"] else ""
            lines.append(f"  {slow['took'] * 1e3:9.2f} ms  {slow['callback']}{task} "
                         f"{short(slow['where'])}")
    rows = view.rows(snap.get("tasks", []))
    lines.append(f"TASKS ({len(rows)}/{len(snap.get('tasks', []))})  sort: {view.sort} "
                 f"{'desc' if view.reverse else 'asc'}  filter: {view.filter or '-'}  "
                 f"view: {'tree' if view.tree else 'table'}")
    header = len(lines)
    lines.append(f"  {'ID':>4} {'NAME':<22} {'STATE':<9} {'STEPS':>7} {'BUSY':>9} "
                 f"{'IDLE':>8} {'SCHED':>9} {'SELF%':>5} {'SPAWNER':<12} CORO @ WHERE")
    ids: list[int] = []
    for depth, row in rows:
        steps = row.get("steps")
        self_pct = "-" if not steps else f"{(row.get('self_wakes') or 0) / steps:.0%}"
        idle = row.get("idle")
        idle_text = "-" if idle is None else f"{'>' if row.get('idle_at_least') else ''}" \
                                              f"{idle:.2f}s"
        name = ("  " * depth + ("`- " if depth else "") + row["name"])[:22]
        marker = ">" if row["id"] == view.selected_id else " "
        lines.append(f"{marker} {row['id']:>4} {name:<22} {row['state'][:9]:<9} "
                     f"{_num(steps, 'd'):>7} {_ms(row.get('busy')):>9} {idle_text:>8} "
                     f"{_ms(row.get('sched')):>9} {self_pct:>5} "
                     f"{(row.get('spawner') or '-')[:12]:<12} "
                     f"{row['coro']} @ {short(row['where'])}")
        ids.append(row["id"])
    return [line[:width] for line in lines], ids, header


def _shorten_paths(message: str) -> str:
    return " ".join(short(word) if "/" in word and ":" in word else word
                    for word in message.split(" "))


def render_task(detail: dict) -> list[str]:
    lines = [f"task {detail['id']} {detail['name']} - {detail.get('coro', '')} "
             f"[{detail.get('state', '?')}]",
             f"  steps {detail.get('steps', '-')}  busy {_ms(detail.get('busy'))}  "
             f"longest step {_ms(detail.get('max_step'))}  self-wakes "
             f"{detail.get('self_wakes', '-')}  spawned by {detail.get('spawner') or '-'}",
             "", "await chain (outermost first):"]
    for record in detail.get("chain", []):
        lines.append("  " + describe_frame(record))
        if record.get("code"):  # the source line, sent for suspended frames
            lines.append(f"      {record['code']}")
    if detail.get("children"):
        lines.append(f"children: {', '.join(str(c) for c in detail['children'])}")
    lines += ["", "Enter/Esc back   c cancel this task   q quit"]
    return lines


# ---------------------------------------------------------------- modes

def _options(ns: argparse.Namespace) -> dict:
    return {"stall": ns.stall, "step": ns.step, "lost": ns.lost}


def _sampled(client: ConsoleClient, ns: argparse.Namespace) -> dict:
    """Attach, let the program measure for --sample seconds, take the snapshot."""
    client.request("snapshot", **_options(ns))
    time.sleep(ns.sample)  # the measuring window, not a synchronisation
    return client.request("snapshot", **_options(ns))


def _plain(ns: argparse.Namespace) -> int:
    with ConsoleClient.for_target(ns.target) as client:
        hello = client.request("hello")
        if ns.json:
            snap = _sampled(client, ns)
            snap["hello"] = hello
            print(json.dumps(snap, indent=2, default=str))
            return 0
        view = View()
        view.sort, view.reverse, view.tree = ns.sort, True, ns.tree
        count = 0
        snap = _sampled(client, ns)
        while True:
            lines, _, _ = render(snap, view, hello, width=ns.width)
            print("\n".join(lines), flush=True)
            count += 1
            if ns.watch is None or (ns.count and count >= ns.count):
                return 0
            print(flush=True)
            time.sleep(ns.watch)
            snap = client.request("snapshot", **_options(ns))


def _interactive(ns: argparse.Namespace) -> int:
    import curses

    client = ConsoleClient.for_target(ns.target)
    try:
        hello = client.request("hello")
        # The terminal's own size (ncurses asks it when these are unset), not LINES and
        # COLUMNS inherited from whatever started us in another terminal.
        os.environ.pop("LINES", None)
        os.environ.pop("COLUMNS", None)
        return curses.wrapper(_ui, client, hello, ns)
    finally:
        client.close()


def _ui(stdscr: Any, client: ConsoleClient, hello: dict, ns: argparse.Namespace) -> int:
    import curses

    curses.curs_set(0)
    stdscr.timeout(100)
    view = View()
    view.tree = ns.tree
    snap = client.request("snapshot", **_options(ns))
    fetched = time.monotonic()
    paused = False
    detail: dict | None = None
    prompt: str | None = None      # "filter" or "cancel"
    typed = ""
    message = ""
    ids: list[int] = []
    pending_cancel: tuple[int, str] = (0, "")   # the task "c" asked about
    while True:
        now = time.monotonic()
        if not paused and now - fetched >= ns.interval:
            try:
                snap = client.request("snapshot", **_options(ns))
                if detail is not None:
                    detail = client.request("task", id=detail["id"])["task"]
                    if detail.get("done"):
                        message = f"task {detail['id']} has finished ({detail['state']})"
                        detail = None
            except ConsoleError as exc:
                if detail is not None and "no live task" in str(exc):
                    message, detail = f"task {detail['id']} has finished", None
                else:
                    message = f"{exc}"
                    if "closed" in str(exc) or "failed" in str(exc):
                        return _farewell(stdscr, message)
            fetched = now
        height, width = stdscr.getmaxyx()
        if detail is not None:
            lines, header = render_task(detail), None
        else:
            lines, ids, header = render(snap, view, hello, width=width - 1, paused=paused)
            if ids and view.selected_id not in ids:
                view.selected_id = ids[0]
        stdscr.erase()
        body = height - 1
        start = 0
        if header is not None and view.selected_id in ids:
            row_line = header + 1 + ids.index(view.selected_id)
            if row_line >= body:
                start = row_line - body + 1
        for y, line in enumerate(lines[start:start + body]):
            attr = curses.A_REVERSE if (header is not None and view.selected_id in ids
                                        and start + y == header + 1 +
                                        ids.index(view.selected_id)) else curses.A_NORMAL
            if header is not None and start + y == header:
                attr = curses.A_BOLD
            stdscr.addnstr(y, 0, line, width - 1, attr)
        if prompt == "filter":
            status = f"filter: {typed}_   (Enter apply, Esc cancel)"
        elif prompt == "cancel":
            status = f"cancel task {pending_cancel[0]} '{pending_cancel[1]}'? (y/N)"
        else:
            status = message or KEYS
        stdscr.addnstr(height - 1, 0, status, width - 1, curses.A_REVERSE)
        stdscr.refresh()
        key = stdscr.getch()
        if key == -1:
            continue
        if key == curses.KEY_RESIZE:
            curses.update_lines_cols()
            continue
        if prompt == "filter":
            if key in (10, 13, curses.KEY_ENTER):
                view.filter, prompt = typed, None
            elif key == 27:
                prompt = None
            elif key in (curses.KEY_BACKSPACE, 127, 8):
                typed = typed[:-1]
            elif 32 <= key < 127:
                typed += chr(key)
            continue
        if prompt == "cancel":
            prompt = None
            if key in (ord("y"), ord("Y")):
                try:
                    client.request("cancel", id=pending_cancel[0], msg="cancelled from top")
                    message = f"cancel requested for task {pending_cancel[0]} " \
                              f"'{pending_cancel[1]}'"
                except ConsoleError as exc:
                    message = str(exc)
            else:
                message = "not cancelled"
            fetched = 0.0
            continue
        message = ""
        if key in (ord("q"), ord("Q")):
            return 0
        if key == ord("c"):
            target = detail if detail is not None else next(
                (row for row in snap["tasks"] if row["id"] == view.selected_id), None)
            if target is not None:
                pending_cancel = (target["id"], target["name"])
                prompt = "cancel"
            continue
        if detail is not None:
            if key in (10, 13, 27, curses.KEY_ENTER, curses.KEY_LEFT):
                detail = None
            continue
        if key in (curses.KEY_DOWN, ord("j")) and ids:
            index = ids.index(view.selected_id) if view.selected_id in ids else -1
            view.selected_id = ids[min(index + 1, len(ids) - 1)]
        elif key in (curses.KEY_UP, ord("k")) and ids:
            index = ids.index(view.selected_id) if view.selected_id in ids else 0
            view.selected_id = ids[max(index - 1, 0)]
        elif key == ord("s"):
            view.sort = SORTS[(SORTS.index(view.sort) + 1) % len(SORTS)]
        elif key == ord("r"):
            view.reverse = not view.reverse
        elif key == ord("t"):
            view.tree = not view.tree
        elif key == ord("p"):
            paused = not paused
        elif key == ord("/"):
            prompt, typed = "filter", view.filter
        elif key in (10, 13, curses.KEY_ENTER) and view.selected_id is not None:
            try:
                detail = client.request("task", id=view.selected_id)["task"]
            except ConsoleError as exc:
                message = str(exc)


def _farewell(stdscr: Any, message: str) -> int:
    stdscr.erase()
    stdscr.addstr(0, 0, f"conveyor top: {message}")
    stdscr.refresh()
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conveyor top",
        description="Watch a running program's conveyor loop live (the program must have "
                    "opened its console).")
    parser.add_argument("target", help="the program's PID, or its console socket path")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print one snapshot as JSON")
    mode.add_argument("--once", action="store_true", help="print one snapshot as text")
    mode.add_argument("--watch", type=float, metavar="S",
                      help="print a text snapshot every S seconds (no curses)")
    parser.add_argument("--count", type=int, default=0,
                        help="with --watch: stop after this many snapshots")
    parser.add_argument("--sample", type=float, default=1.0, metavar="S",
                        help="measure this long before the first snapshot (default 1)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S",
                        help="refresh period of the curses view (default 1)")
    parser.add_argument("--sort", choices=SORTS, default="busy")
    parser.add_argument("--tree", action="store_true", help="start in the tree view")
    parser.add_argument("--width", type=int, default=200, help="text modes: line width")
    parser.add_argument("--stall", type=float, default=0.1, metavar="S",
                        help="report the loop as blocked after S seconds (default 0.1)")
    parser.add_argument("--step", type=float, default=0.05, metavar="S",
                        help="warn about task steps / callbacks of S seconds (default 0.05)")
    parser.add_argument("--lost", type=float, default=5.0, metavar="S",
                        help="check tasks idle this long for a lost waker (default 5)")
    return parser


def main(argv: list[str]) -> int:
    ns = _parser().parse_args(argv)
    try:
        if ns.json or ns.once or ns.watch is not None:
            return _plain(ns)
        if not sys.stdout.isatty():
            print("conveyor top: not a terminal; use --once, --json or --watch S",
                  file=sys.stderr)
            return 2
        return _interactive(ns)
    except ConsoleError as exc:
        print(f"conveyor top: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

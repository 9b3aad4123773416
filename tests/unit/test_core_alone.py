"""The loop core stands alone: `conveyor.core` (and the contract the modules above it see)
imports none of the modules that move bytes, and a bare `CoreLoop` runs callbacks, timers
and fd readiness. Also the named operations those modules use instead of the loop's
attributes: gauges, the new-loop hook, and where the loop's own frames are.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

import conveyor
from conveyor import core
from conveyor.contract import LoopInternals

#: Everything the core may load of conveyor: itself and its own parts.
_CORE_MODULES = {"conveyor", "conveyor.core", "conveyor.core_fds", "conveyor.core_services",
                 "conveyor.contract", "conveyor.handles",
                 "conveyor.timers", "conveyor.waker", "conveyor.poller",
                 "conveyor.poller.epoll", "conveyor.poller.kqueue", "conveyor.poller.poll",
                 "conveyor.poller.select"}

#: Imports conveyor.core and conveyor.contract without running conveyor/__init__.py, which
#: imports the whole package for the public API: a bare package object stands in for it,
#: so what gets loaded is what the core itself imports.
_ALONE = textwrap.dedent("""
    import json, os, socket, sys, types
    package = types.ModuleType("conveyor")
    package.__path__ = [sys.argv[1]]
    sys.modules["conveyor"] = package
    from conveyor.core import CoreLoop
    import conveyor.contract

    loaded = sorted(name for name in sys.modules
                    if name == "conveyor" or name.startswith("conveyor."))
    ran = []
    loop = CoreLoop()
    try:
        rsock, wsock = socket.socketpair()

        def readable():
            ran.append(("reader", rsock.recv(10).decode()))
            loop._remove_reader(rsock.fileno())
            loop.stop()

        loop.call_later(0.01, lambda: (ran.append(("timer",)), wsock.send(b"x")))
        loop.call_soon(ran.append, ("soon",))
        loop.add_reader(rsock.fileno(), readable)
        loop.run_forever()
        rsock.close()
        wsock.close()

        async def answer():
            return 42

        ran.append(("task", loop.run_until_complete(answer())))
    finally:
        loop.close()
    print(json.dumps({"loaded": loaded, "ran": ran}))
""")


#: The loop's private state, and the core modules allowed to touch it (handles.py: a
#: cancelled timer tells the heap; virtual_clock.py is a CoreLoop subclass for tests).
_PRIVATE_STATE = re.compile(
    r"(\w+)\._(ready|poller|readers|writers|interest|timers|from_threads)\b")
_OWNERS = {"core.py", "core_fds.py", "core_services.py", "handles.py",
           os.path.join("testing", "virtual_clock.py")}


def test_only_the_core_touches_the_loops_private_state():
    """DESIGN.md's rule, checked: modules above the core use the operations LoopInternals
    names (conveyor/contract.py), never the ready queue, fd tables, poller or timer heap."""
    root = os.path.dirname(conveyor.__file__)
    offenders = []
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root)
            if relative in _OWNERS or relative.startswith("bench" + os.sep):
                continue
            with open(path, encoding="utf-8") as source:
                for lineno, line in enumerate(source, 1):
                    code = line.split("#", 1)[0]
                    # `self._interest` in a poller is its own; `self._loop._ready` is not.
                    if any(match.group(1) != "self" for match in _PRIVATE_STATE.finditer(code)):
                        offenders.append(f"{relative}:{lineno}: {line.strip()}")
    assert not offenders, "loop internals used outside the core:\n" + "\n".join(offenders)


def test_core_imports_no_io_module():
    package_dir = os.path.dirname(conveyor.__file__)
    proc = subprocess.run([sys.executable, "-c", _ALONE, package_dir], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["loaded"]) <= _CORE_MODULES, \
        f"the core imports {set(result['loaded']) - _CORE_MODULES}"
    assert result["ran"] == [["soon"], ["timer"], ["reader", "x"], ["task", 42]]


def test_event_loop_is_the_core_with_io():
    assert issubclass(conveyor.EventLoop, core.CoreLoop)
    assert conveyor.EventLoop.__module__ == "conveyor.loop"
    assert "create_connection" not in vars(core.CoreLoop)  # AbstractEventLoop's stub only
    assert "create_connection" in vars(conveyor.EventLoop)


def test_loop_satisfies_the_contract():
    """Every name the Protocol lists exists on a conveyor loop (a static checker sees the
    signatures; this catches a name dropped or renamed on one side only)."""
    loop = conveyor.new_event_loop()
    try:
        names = set(getattr(LoopInternals, "__protocol_attrs__", ())) or \
            {name for name in (*vars(LoopInternals), *LoopInternals.__annotations__)
             if not name.startswith(("__", "_abc_", "_is_"))}
        assert {"_add_reader", "_park_reader", "_gauges", "_transports", "time"} <= names
        missing = sorted(name for name in names if not hasattr(loop, name))
        assert not missing
    finally:
        loop.close()


def test_gauges(loop):
    gauges = loop._gauges()
    assert gauges.ready == 0 and gauges.timers == 0 and gauges.cancelled_timers == 0
    waker_fds = gauges.fds
    timers = [loop.call_later(100, lambda: None) for _ in range(3)]
    timers[0].cancel()
    loop.call_soon(lambda: None)
    rsock, wsock = socket.socketpair()
    try:
        loop.add_reader(rsock, lambda: None)
        gauges = loop._gauges()
        assert (gauges.ready, gauges.timers, gauges.cancelled_timers, gauges.fds) == \
            (1, 2, 1, waker_fds + 1)
        loop.remove_reader(rsock)
    finally:
        rsock.close()
        wsock.close()
        for timer in timers:
            timer.cancel()
    loop.run_until_complete(asyncio.sleep(0))


def test_from_threads_gauge(loop):
    def from_thread():
        loop.call_soon_threadsafe(lambda: None)

    async def main():
        thread = threading.Thread(target=from_thread)
        thread.start()
        thread.join()
        return loop._gauges().from_threads

    assert loop.run_until_complete(main()) == 1


def test_on_new_loop_calls_back_until_stopped():
    seen = []
    stop = core.on_new_loop(seen.append)
    try:
        first = conveyor.new_event_loop()
    finally:
        stop()
    stop()  # harmless twice
    second = conveyor.new_event_loop()
    try:
        assert seen == [first]
    finally:
        first.close()
        second.close()


def test_on_new_loop_callback_may_stop_itself():
    """A callback that stops itself while being called does not make the next one skipped."""
    seen = []

    def once(loop):
        seen.append(("once", loop))
        stop_once()

    stop_once = core.on_new_loop(once)
    stop_after = core.on_new_loop(lambda loop: seen.append(("after", loop)))
    try:
        loop = conveyor.new_event_loop()
        loop.close()
    finally:
        stop_once()
        stop_after()
    assert seen == [("once", loop), ("after", loop)]


@pytest.mark.parametrize("observed", [False, True])
def test_loop_codes_find_the_running_callback(observed):
    """The frame that calls a ready callback is one of `LOOP_CODES` (fast and observed
    paths), so stack readers (watchdog, console) can tell the loop from a callback."""
    loop = conveyor.new_event_loop()
    found = []

    def callback():
        caller = sys._getframe(1)
        found.append(caller.f_code in core.LOOP_CODES)

    try:
        loop.set_debug(observed)
        loop.call_soon(callback)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert found == [True]

"""Ready for Python 3.14 and 3.16, checked on whatever version runs the suite.

Python 3.14 deprecates (removal in 3.16) `asyncio.iscoroutinefunction` and the whole policy
system (`get_event_loop_policy`, `set_event_loop_policy`, `AbstractEventLoopPolicy`,
`DefaultEventLoopPolicy`, the Windows policy classes), and removes the child watchers; its
`get_event_loop()` no longer makes a loop when none is set. The suite runs with warnings as
errors, so on 3.14 any such call in conveyor fails some test; these tests make the same true
on 3.11-3.13, where nothing warns yet:

- a static scan of conveyor's source for those names, allowed only in the policy shim
  (runner.py), which silences the warning on purpose;
- a run-time check: a child interpreter where those names warn as 3.14's do (and
  `-W error`), importing every conveyor module and driving the loop through its paths
  (debug mode included) and the ways in (conveyor.run, Runner, install);
- a child interpreter without any policy names, as 3.16 will be: `import conveyor` and the
  loop_factory ways still work, install() and EventLoopPolicy() say what to use instead;
- conveyor's hand-built Handles set exactly the slots asyncio's Handle/TimerHandle have on
  the running version, so a slot a future CPython adds fails here, not in a user's program;
- 3.14's call-graph introspection (`asyncio.capture_call_graph`, `python -m asyncio ps` /
  `pstree`) sees conveyor's tasks: runs where 3.14 runs, skips with the reason elsewhere.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import os
import signal
import socket
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import conveyor
from conveyor import handles

from support import bounded

SOURCE = Path(conveyor.__file__).parent

POLICY_NAMES = ("get_event_loop_policy", "set_event_loop_policy", "AbstractEventLoopPolicy",
                "DefaultEventLoopPolicy", "WindowsSelectorEventLoopPolicy",
                "WindowsProactorEventLoopPolicy")
WATCHER_NAMES = ("get_child_watcher", "set_child_watcher", "AbstractChildWatcher",
                 "SafeChildWatcher", "FastChildWatcher", "ThreadedChildWatcher",
                 "PidfdChildWatcher", "MultiLoopChildWatcher")

#: asyncio names conveyor's code must not use, and why (from CPython 3.14's "What's new":
#: Deprecated / Removed, asyncio).
FORBIDDEN = {
    "iscoroutinefunction": "deprecated in 3.14, removed in 3.16: use inspect.iscoroutinefunction",
    "get_event_loop": "3.14 raises RuntimeError where no loop is set: use get_running_loop",
    **{name: "the policy system is deprecated in 3.14 and removed in 3.16" for name in POLICY_NAMES},
    **{name: "child watchers are removed in 3.14" for name in WATCHER_NAMES},
}

#: The policy shim: the one module that touches policies, with the warning silenced, because
#: choosing the loop globally is what conveyor.install()'s caller asks for.
POLICY_SHIM = "runner.py"

#: Uses found in modules this suite's owner may not edit, reported to their owner. An entry
#: here lets the scan pass; remove it with the use.
PENDING: set[tuple[str, str]] = set()


def _asyncio_uses(path: Path) -> list[tuple[str, int]]:
    """(name, line) for every `asyncio.<name>` and `from asyncio import <name>` in a file."""
    tree = ast.parse(path.read_text(), str(path))
    aliases = {"asyncio"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "asyncio"}
    uses = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases):
            uses.append((node.attr, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "asyncio" or node.module.startswith("asyncio.")):
            uses.extend((a.name, node.lineno) for a in node.names)
    return uses


def test_scan_finds_what_it_looks_for(tmp_path):
    """The scanner itself: every spelling of a use is found."""
    sample = tmp_path / "sample.py"
    sample.write_text(textwrap.dedent("""\
        import asyncio
        import asyncio as aio
        from asyncio import iscoroutinefunction
        asyncio.iscoroutinefunction(print)
        aio.set_event_loop_policy(None)
    """))
    found = {name for name, _ in _asyncio_uses(sample)}
    assert {"iscoroutinefunction", "set_event_loop_policy"} <= found


def test_no_deprecated_asyncio_api_in_conveyor_source():
    offences = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE).as_posix()
        for name, line in _asyncio_uses(path):
            if name not in FORBIDDEN:
                continue
            if relative == POLICY_SHIM and name in POLICY_NAMES:
                continue
            if (relative, name) in PENDING:
                continue
            offences.append(f"conveyor/{relative}:{line}: asyncio.{name} ({FORBIDDEN[name]})")
    assert offences == []


# A child interpreter where the names 3.14 deprecates warn as they do there. Functions are
# wrapped; the policy classes are taken off the module and served by a module __getattr__
# that warns, which is how 3.14 serves them. Only calls made from conveyor's own files are
# reported (asyncio's internal calls go through its submodules, not these names), and a
# PENDING use is recorded instead of raised, so the rest of the run is still checked.
SIMULATE_314 = """
import asyncio, os, sys, warnings
CONVEYOR = {source!r}
PENDING = {pending!r}
pending_seen = set()

def _from_conveyor(depth):
    frame = sys._getframe(depth)
    return frame.f_code.co_filename.startswith(CONVEYOR), frame.f_code.co_filename

def _warn(name, depth):
    ours, filename = _from_conveyor(depth + 2)
    if not ours:
        return
    relative = os.path.relpath(filename, CONVEYOR)
    if (relative, name) in PENDING:
        pending_seen.add((relative, name))
        return
    warnings.warn(f"asyncio.{{name}} is deprecated (3.14), used by conveyor/{{relative}}",
                  DeprecationWarning, stacklevel=depth + 2)

def _wrap(name):
    real = getattr(asyncio, name)
    def deprecated(*args, **kwargs):
        _warn(name, 1)
        return real(*args, **kwargs)
    setattr(asyncio, name, deprecated)

for _name in ("iscoroutinefunction", "get_event_loop_policy", "set_event_loop_policy"):
    _wrap(_name)
_classes = {{name: getattr(asyncio, name) for name in {classes!r} if hasattr(asyncio, name)}}
for _name in _classes:
    delattr(asyncio, _name)

def __getattr__(name):
    if name in _classes:
        _warn(name, 1)
        return _classes[name]
    raise AttributeError(name)

asyncio.__getattr__ = __getattr__
warnings.simplefilter("error", DeprecationWarning)
"""

# 3.16 as announced: no policy names at all in asyncio's namespace.
SIMULATE_316 = """
import asyncio
for name in {names!r}:
    if hasattr(asyncio, name):
        delattr(asyncio, name)
"""

# Every conveyor module imported, then the loop driven through its paths, debug mode
# included (where the loop checks callbacks), and through every way in.
WORKLOAD = """
import asyncio, importlib, os, pkgutil, signal, socket, sys
import conveyor

for info in pkgutil.walk_packages(conveyor.__path__, "conveyor."):
    if info.name.rpartition(".")[2] not in ("__main__", "demo", "_talk"):
        importlib.import_module(info.name)

async def main(debug):
    loop = asyncio.get_running_loop()
    assert isinstance(loop, conveyor.EventLoop), loop
    loop.set_debug(debug)
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done
    timer = loop.call_later(10, print)
    timer.cancel()
    await asyncio.sleep(0.001)
    signalled = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, signalled.set)
    os.kill(os.getpid(), signal.SIGUSR1)
    await asyncio.wait_for(signalled.wait(), 10)
    loop.remove_signal_handler(signal.SIGUSR1)
    try:
        loop.add_signal_handler(signal.SIGUSR2, main)
    except TypeError:
        pass
    else:
        raise AssertionError("a coroutine function was accepted as a signal handler")

    async def echo(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.read(100), 10) == b"ping"
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "print('hi')",
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert out.strip() == b"hi"
    await asyncio.wait_for(asyncio.to_thread(sum, [1, 2]), 10)
    return "ran"

for debug in (False, True):
    assert conveyor.run(main(debug)) == "ran"
    with asyncio.Runner(loop_factory=conveyor.new_event_loop) as runner:
        assert runner.run(main(debug)) == "ran"
    if sys.version_info >= (3, 12):
        assert asyncio.run(main(debug), loop_factory=conveyor.new_event_loop) == "ran"
"""

INSTALL_WORKS = """
conveyor.install()
assert asyncio.run(main(False)) == "ran"
made = asyncio.new_event_loop()
assert isinstance(made, conveyor.EventLoop)
made.close()
"""

INSTALL_REFUSED = """
for attempt in (conveyor.install, conveyor.EventLoopPolicy):
    try:
        attempt()
    except RuntimeError as exc:
        assert "loop_factory" in str(exc), exc
    else:
        raise AssertionError(f"{attempt} worked without policies")
"""


def _run_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-X", "dev", "-c", code], capture_output=True,
                          text=True, timeout=120, cwd=SOURCE.parent)


def test_nothing_3_14_deprecates_is_used_at_run_time():
    prelude = SIMULATE_314.format(source=str(SOURCE) + os.sep, pending=PENDING,
                                  classes=POLICY_NAMES[2:])
    code = (prelude + WORKLOAD + INSTALL_WORKS
            + "print('pending uses seen:', sorted(pending_seen))\nprint('ok')\n")
    result = _run_child(code)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.rstrip().endswith("ok"), result.stdout


def test_conveyor_without_policies_as_on_3_16():
    code = SIMULATE_316.format(names=POLICY_NAMES) + WORKLOAD + INSTALL_REFUSED + "print('ok')\n"
    result = _run_child(code)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.rstrip().endswith("ok"), result.stdout


# ------------------------------------------------------------- policies, while they exist

@pytest.fixture
def default_policy_after():
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(None)


async def _loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_install_makes_plain_asyncio_run_use_conveyor(default_policy_after):
    conveyor.install()  # the suite's warnings-as-errors: install() must warn about nothing
    assert asyncio.run(bounded(_loop_type(), 10)) is conveyor.EventLoop
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, conveyor.EventLoop)
    finally:
        loop.close()


def test_event_loop_policy_makes_conveyor_loops(default_policy_after):
    policy = conveyor.EventLoopPolicy()
    loop = policy.new_event_loop()
    try:
        assert isinstance(loop, conveyor.EventLoop)
    finally:
        loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert isinstance(policy, asyncio.AbstractEventLoopPolicy)


def test_the_ways_that_outlive_policies():
    assert conveyor.run(bounded(_loop_type(), 10)) is conveyor.EventLoop
    with asyncio.Runner(loop_factory=conveyor.new_event_loop) as runner:
        assert runner.run(bounded(_loop_type(), 10)) is conveyor.EventLoop
    if sys.version_info >= (3, 12):
        assert asyncio.run(bounded(_loop_type(), 10),
                           loop_factory=conveyor.new_event_loop) is conveyor.EventLoop


# ---------------------------------------------------------------- handles and their slots

def _slots(cls: type) -> set[str]:
    """Every slot declared along the class's MRO."""
    names: set[str] = set()
    for klass in cls.__mro__:
        declared = klass.__dict__.get("__slots__", ())
        names.update([declared] if isinstance(declared, str) else declared)
    return names


@pytest.mark.parametrize("ours, theirs", [(handles.Handle, asyncio.Handle),
                                          (handles.TimerHandle, asyncio.TimerHandle)])
def test_handle_classes_declare_exactly_asyncios_slots(ours, theirs):
    assert _slots(ours) == _slots(theirs)
    assert "__dict__" not in dir(ours)  # no instance dict: a mistyped store raises


def _values(handle, cls: type) -> dict:
    """Every data slot's value; a slot left unset raises AttributeError here."""
    return {name: getattr(handle, name) for name in sorted(_slots(cls) - {"__weakref__"})}


#: The loop methods that record in debug mode where a handle was made, as asyncio does.
RECORDS_STACK = {"call_soon", "call_soon_threadsafe", "call_at"}


def _callback(*args) -> None:
    pass


@pytest.mark.parametrize("debug", [False, True])
def test_every_handle_the_loop_builds_sets_every_slot(loop, debug):
    loop.set_debug(debug)
    context = contextvars.copy_context()
    args = (1, 2)
    built = {
        "call_soon": (loop.call_soon(_callback, *args, context=context), asyncio.Handle),
        "call_soon_threadsafe": (loop.call_soon_threadsafe(_callback, *args, context=context),
                                 asyncio.Handle),
        "Handle()": (handles.Handle(_callback, args, loop, context), asyncio.Handle),
    }
    rsock, wsock = socket.socketpair()
    try:
        built["add_reader"] = (loop._add_reader(rsock.fileno(), _callback, *args,
                                                context=context), asyncio.Handle)
        for how, (handle, cls) in built.items():
            values = _values(handle, cls)
            reference = _values(asyncio.Handle(_callback, args, loop, context), asyncio.Handle)
            if debug:  # where the handle was made: the frames differ, so compare presence
                made_at = values.pop("_source_traceback")
                assert reference.pop("_source_traceback"), how
                if how in RECORDS_STACK:  # Handle() leaves it to the loop method (handles.py)
                    assert made_at, how
            assert values == reference, how
    finally:
        loop._remove_reader(rsock.fileno())
        rsock.close()
        wsock.close()

    when = loop.time() + 60
    timers = {
        "call_at": loop.call_at(when, _callback, *args, context=context),
        "TimerHandle()": handles.TimerHandle(when, _callback, args, loop, context),
    }
    later = loop.call_later(60, _callback, *args, context=context)
    for how, timer in timers.items():
        values = _values(timer, asyncio.TimerHandle)
        reference = _values(asyncio.TimerHandle(when, _callback, args, loop, context),
                            asyncio.TimerHandle)
        if debug:
            made_at = values.pop("_source_traceback")
            assert reference.pop("_source_traceback"), how
            if how in RECORDS_STACK:
                assert made_at, how
        # A handle the loop scheduled says so; asyncio's constructor alone does not schedule.
        reference["_scheduled"] = how == "call_at"
        assert values == reference, how
    later_values = _values(later, asyncio.TimerHandle)
    assert later_values["_scheduled"] is True
    assert set(later_values) == set(_values(timers["call_at"], asyncio.TimerHandle))
    for handle in (*timers.values(), later):
        handle.cancel()
    loop.run_until_complete(asyncio.sleep(0))  # the call_soon handles run (and do nothing)


def test_signal_handles_set_every_slot(loop):
    loop.add_signal_handler(signal.SIGUSR1, _callback, 1)
    try:
        from conveyor import signals
        handle = signals._tables[loop].handlers[signal.SIGUSR1]
        values = _values(handle, asyncio.Handle)
        assert values["_callback"] is _callback and values["_args"] == (1,)
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


# ------------------------------------------------- 3.14: call graphs and `python -m asyncio ps`

needs_314 = pytest.mark.skipif(
    sys.version_info < (3, 14),
    reason="asyncio.capture_call_graph and `python -m asyncio ps/pstree` are new in Python "
           f"3.14; this is {sys.version_info.major}.{sys.version_info.minor}")


@needs_314
def test_capture_call_graph_sees_conveyor_tasks():
    async def inner(ready: asyncio.Future, release: asyncio.Event):
        ready.set_result(asyncio.capture_call_graph())
        await release.wait()

    async def main():
        ready = asyncio.get_running_loop().create_future()
        release = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(inner(ready, release), name="conveyor-inner")
            graph = await asyncio.wait_for(ready, 10)
            release.set()
        return graph

    graph = conveyor.run(main())
    assert graph.future.get_name() == "conveyor-inner"
    assert graph.awaited_by, "the TaskGroup's task awaiting the inner task is not seen"
    frames = [entry.frame.f_code.co_name for entry in graph.call_stack]
    assert "inner" in frames


CHILD_WITH_TASKS = """
import asyncio, sys
import conveyor

async def leaf(release):
    await release.wait()

async def main():
    release = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(leaf(release), name="conveyor-leaf-1")
        group.create_task(leaf(release), name="conveyor-leaf-2")
        await asyncio.sleep(0)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        release.set()

conveyor.run(main())
"""


@needs_314
@pytest.mark.parametrize("command", ["ps", "pstree"])
def test_python_m_asyncio_ps_sees_conveyor_tasks(command):
    child = subprocess.Popen([sys.executable, "-c", CHILD_WITH_TASKS], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        result = subprocess.run([sys.executable, "-m", "asyncio", command, str(child.pid)],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0 and "ermission" in result.stderr:
            pytest.skip(f"reading another process's memory is not permitted here: "
                        f"{result.stderr.strip()[-200:]}")
        assert result.returncode == 0, result.stderr
        assert "conveyor-leaf-1" in result.stdout and "conveyor-leaf-2" in result.stdout
    finally:
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(timeout=30)
        child.stdin.close()
        child.stdout.close()
    assert child.returncode == 0

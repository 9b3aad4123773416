"""Task dump: the tree of live tasks with their await chains and spawners."""

from __future__ import annotations

import asyncio
import io
import os
import signal

import pytest

import conveyor
from conveyor.observe.taskdump import await_chain, format_tasks, track_spawns


async def leaf(ready):
    ready.set()
    await asyncio.sleep(3600)  # LEAF-WAIT


async def middle(ready):
    inner = asyncio.create_task(leaf(ready), name="leaf")
    await inner  # MIDDLE-WAIT


def _line_of(marker):
    with open(__file__) as source:
        for number, line in enumerate(source, 1):
            if marker in line and "_line_of" not in line:
                return number
    raise AssertionError(marker)


def test_tree_shows_spawners_and_await_chains(loop):
    async def main():
        track_spawns()
        ready = asyncio.Event()
        top = asyncio.create_task(middle(ready), name="middle")
        await ready.wait()
        await asyncio.sleep(0)
        text = format_tasks()
        top.cancel()
        await asyncio.gather(top, return_exceptions=True)
        return text

    text = loop.run_until_complete(main())  # bounded by pytest-timeout
    lines = text.splitlines()
    assert lines[0].startswith("3 task(s)")  # main, middle, leaf
    main_line = next(i for i, line in enumerate(lines) if "main() [running]" in line)
    middle_line = next(i for i, line in enumerate(lines) if "middle middle()" in line)
    leaf_line = next(i for i, line in enumerate(lines) if "leaf leaf()" in line)
    assert main_line < middle_line < leaf_line
    # Nesting: each generation is indented further.
    indent = [len(lines[i]) - len(lines[i].lstrip(" │├└─")) for i in
              (main_line, middle_line, leaf_line)]
    assert indent[0] < indent[1] < indent[2]
    assert f"{__file__}:{_line_of('LEAF-WAIT')}" in text
    assert f"{__file__}:{_line_of('MIDDLE-WAIT')}" in text
    # The leaf is suspended in asyncio.sleep, awaiting a future.
    assert "sleep at " in text and "awaiting <Future" in text


def test_await_chain_without_tracking(loop):
    async def main():
        ready = asyncio.Event()
        task = asyncio.create_task(middle(ready))
        await ready.wait()
        chain = await_chain(task)
        text = format_tasks()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return chain, text

    chain, text = loop.run_until_complete(main())
    assert chain[0].startswith("middle at ")
    assert chain[-1].startswith("awaiting <Task")
    assert "spawners unknown" in text


def test_dump_tasks_writes_to_file(loop):
    async def main():
        out = io.StringIO()
        text = conveyor.dump_tasks(file=out)
        return text, out.getvalue()

    text, written = loop.run_until_complete(main())
    assert written == text + "\n"
    assert "main()" in text


def test_dump_on_signal(loop):
    previous = signal.getsignal(signal.SIGUSR1)
    out = io.StringIO()

    async def main():
        dump = conveyor.dump_tasks_on_signal(signal.SIGUSR1, file=out)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.sleep(0)
        finally:
            dump.close()

    loop.run_until_complete(main())
    assert "main() [running]" in out.getvalue()
    assert signal.getsignal(signal.SIGUSR1) == previous


def test_dump_on_signal_bad_signum(loop):
    async def main():
        with pytest.raises(TypeError, match="signum"):
            conveyor.dump_tasks_on_signal("USR1")

    loop.run_until_complete(main())

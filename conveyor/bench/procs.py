"""The procs suite: child processes, the loop's part of spawning and waiting.

- ``spawn``: run ``true`` ``count`` times, ``concurrency`` at a time, through
  ``asyncio.create_subprocess_exec`` (stdin, stdout and stderr all pipes, as a program that
  talks to its children has them) and wait for each exit. One operation is one child
  spawned, connected and reaped. Most of the time is fork/exec in the kernel, which every
  loop pays alike; the rest is what the loop adds: pipe transports, exit observation,
  ordering of pipe and exit events.
- ``spawn_bare``: the same with stdin/stdout/stderr at DEVNULL, so the figure is spawn plus
  exit observation alone.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

from .registry import Workload

__all__ = ["WORKLOADS", "spawn", "spawn_bare"]


async def _spawn_many(count: int, concurrency: int, pipes: bool) -> int:
    program = shutil.which("true") or "true"
    stream = subprocess.PIPE if pipes else subprocess.DEVNULL
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            proc = await asyncio.create_subprocess_exec(
                program, stdin=stream, stdout=stream, stderr=stream)
            if pipes:
                await proc.communicate()
            else:
                await proc.wait()
            if proc.returncode != 0:
                raise RuntimeError(f"{program} exited with {proc.returncode}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count


async def spawn(count: int = 1000, concurrency: int = 10) -> int:
    """Spawn `true` with three pipes and wait for it, 10 at a time; children per second."""
    return await _spawn_many(count, concurrency, pipes=True)


async def spawn_bare(count: int = 1000, concurrency: int = 10) -> int:
    """Spawn `true` with no pipes and wait for it, 10 at a time; children per second."""
    return await _spawn_many(count, concurrency, pipes=False)


WORKLOADS: list[Workload] = [
    Workload("spawn", spawn, quick={"count": 50}, unit="spawns/s"),
    Workload("spawn_bare", spawn_bare, quick={"count": 50}, unit="spawns/s"),
]

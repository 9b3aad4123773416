"""The fs suite: reading many small files at once, conveyor.fs against aiofiles.

Three ways to read the same 1,000 files of 64 KiB (open, read everything, close):

- ``open_file``: ``conveyor.fs.open_file``, all files at once with ``asyncio.gather``;
- ``aiofiles``: ``aiofiles.open``, the same way (it uses the loop's default executor);
- ``sync``: plain ``open().read()`` one file after another, blocking the loop: the floor
  that shows what the thread hops cost.

The files are made once, in a directory under the system temp dir that later runs reuse,
and are read from the page cache: this measures the machinery between the loop and the
threads, not the disk. One operation is one file read.

    python -m conveyor bench fs                # the harness: each workload under each loop
    python -m conveyor.bench.fs [--reps 5]     # one process, the three side by side + ratios
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from typing import Awaitable, Callable

from .. import fs
from .registry import Workload

__all__ = ["WORKLOADS", "open_file", "aiofiles_open", "sync_read", "main"]

FILES = 1000
SIZE = 64 * 1024


def file_set(count: int = FILES, size: int = SIZE) -> list[str]:
    """Paths of ``count`` files of ``size`` bytes, made on first use and kept for reuse."""
    directory = os.path.join(tempfile.gettempdir(), f"conveyor-bench-fs-{count}x{size}")
    paths = [os.path.join(directory, f"{i:05d}.bin") for i in range(count)]
    if all(_has_size(p, size) for p in (paths[0], paths[-1])):
        return paths
    os.makedirs(directory, exist_ok=True)
    block = os.urandom(size)
    for path in paths:
        with open(path, "wb") as f:
            f.write(block)
    return paths


def _has_size(path: str, size: int) -> bool:
    try:
        return os.stat(path).st_size == size
    except OSError:
        return False


async def _read_all(read_one: Callable[[str], Awaitable[int]], count: int, size: int
                    ) -> tuple[int, float]:
    paths = file_set(count, size)
    start = time.perf_counter()
    total = sum(await asyncio.gather(*(read_one(p) for p in paths)))
    elapsed = time.perf_counter() - start
    if total != count * size:
        raise AssertionError(f"read {total} bytes, expected {count * size}")
    return count, elapsed


async def open_file(count: int = FILES, size: int = SIZE) -> tuple[int, float]:
    """conveyor.fs.open_file: 1,000 files of 64 KiB read concurrently."""

    async def read_one(path: str) -> int:
        async with fs.open_file(path, "rb") as f:
            return len(await f.read())

    return await _read_all(read_one, count, size)


async def aiofiles_open(count: int = FILES, size: int = SIZE) -> tuple[int, float]:
    """aiofiles.open: the same files read concurrently (default executor)."""
    try:
        import aiofiles
    except ImportError:
        raise RuntimeError("aiofiles is not installed (pip install aiofiles)") from None

    async def read_one(path: str) -> int:
        async with aiofiles.open(path, "rb") as f:
            return len(await f.read())

    return await _read_all(read_one, count, size)


async def sync_read(count: int = FILES, size: int = SIZE) -> tuple[int, float]:
    """Plain blocking open().read(), one file after another (the floor)."""
    paths = file_set(count, size)
    start = time.perf_counter()
    total = 0
    for path in paths:
        with open(path, "rb") as f:
            total += len(f.read())
    elapsed = time.perf_counter() - start
    if total != count * size:
        raise AssertionError(f"read {total} bytes, expected {count * size}")
    return count, elapsed


_QUICK = {"count": 50}

WORKLOADS = [
    Workload("open_file", open_file, quick=_QUICK, unit="files/s"),
    Workload("aiofiles", aiofiles_open, quick=_QUICK, unit="files/s"),
    Workload("sync", sync_read, quick=_QUICK, unit="files/s"),
]


def main(argv: list[str] | None = None) -> int:
    """Run the three side by side in one process and print rates and ratios.

    The three alternate within each repetition, so drift on a shared machine hits them all
    alike; each repetition gets a fresh loop.
    """
    parser = argparse.ArgumentParser(prog="python -m conveyor.bench.fs",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--loop", choices=("conveyor", "asyncio"), default="conveyor")
    parser.add_argument("--count", type=int, default=FILES)
    ns = parser.parse_args(argv)
    from . import loops

    factory = loops.factory(ns.loop)
    contenders = [(w.name, w.func) for w in WORKLOADS]
    rates: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for _ in range(ns.reps + 1):  # the first round warms caches and is not kept
        for name, func in contenders:
            with asyncio.Runner(loop_factory=factory) as runner:
                ops, seconds = runner.run(func(count=ns.count))
            rates[name].append(ops / seconds)
    median = {name: statistics.median(values[1:]) for name, values in rates.items()}
    print(f"reading {ns.count} files of {SIZE // 1024} KiB on the {ns.loop} loop, "
          f"median of {ns.reps}:")
    for name, _ in contenders:
        print(f"  {name:<10} {median[name]:>10,.0f} files/s")
    print(f"  open_file/aiofiles = {median['open_file'] / median['aiofiles']:.2f}x, "
          f"open_file/sync = {median['open_file'] / median['sync']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

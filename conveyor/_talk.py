"""The talk's running examples, as importable code.

``python -m conveyor demo`` and the scripts in ``examples/`` both use these, so there is one
copy of each example and the installed package does not need the ``examples/`` folder.

Two stories:

- **Moving house.** Boxes go in batches; each batch is packed, transported and unpacked, and
  each step is a wait (``asyncio.sleep`` standing in for I/O). Done one batch after another
  the waits add up; started together with ``asyncio.gather`` they overlap, and the whole move
  takes about as long as one batch.
- **Callback order.** Print "One", ask for "Two" with no delay, print "Three": the output is
  One, Three, Two, because "no delay" still means "after the code that is running now" --
  scheduled work joins the back of the loop's ready queue.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

__all__ = ["Move", "move_batch", "move_sequentially", "move_concurrently",
           "order_call_soon", "order_call_later", "order_task", "ORDER_EXAMPLES",
           "order_all"]

Say = Callable[[str], None]


@dataclass(frozen=True)
class Move:
    """How many boxes, how many per batch, and how long each step takes (seconds)."""

    boxes: int = 50
    batch_size: int = 10
    pack: float = 0.05
    transport: float = 0.2
    unpack: float = 0.05

    def __post_init__(self) -> None:
        if self.boxes < 1 or self.batch_size < 1:
            raise ValueError("boxes and batch_size must be at least 1")
        if min(self.pack, self.transport, self.unpack) < 0:
            raise ValueError("step durations cannot be negative")

    @property
    def batches(self) -> int:
        return -(-self.boxes // self.batch_size)  # ceiling division

    @property
    def per_batch(self) -> float:
        """Seconds one batch takes: pack + transport + unpack."""
        return self.pack + self.transport + self.unpack

    def batch_boxes(self, number: int) -> range:
        """The box numbers in batch ``number`` (counted from 1)."""
        first = (number - 1) * self.batch_size + 1
        return range(first, min(first + self.batch_size, self.boxes + 1))


async def move_batch(move: Move, number: int, say: Say) -> None:
    """Pack, transport and unpack one batch; each step is a wait the loop can overlap."""
    boxes = move.batch_boxes(number)
    label = f"batch {number} (boxes {boxes[0]}-{boxes[-1]})"
    say(f"{label}: packing")
    await asyncio.sleep(move.pack)
    say(f"{label}: transporting")
    await asyncio.sleep(move.transport)
    say(f"{label}: unpacking")
    await asyncio.sleep(move.unpack)
    say(f"{label}: done")


async def move_sequentially(move: Move = Move(), say: Say = print) -> float:
    """Move every batch, one after another; returns the seconds it took."""
    start = time.perf_counter()
    for number in range(1, move.batches + 1):
        await move_batch(move, number, say)
    return time.perf_counter() - start


async def move_concurrently(move: Move = Move(), say: Say = print) -> float:
    """Start every batch at once and wait for all of them; returns the seconds it took."""
    start = time.perf_counter()
    await asyncio.gather(*(move_batch(move, number, say)
                           for number in range(1, move.batches + 1)))
    return time.perf_counter() - start


# -- callback order ---------------------------------------------------------------------------


async def order_call_soon(say: Say = print) -> None:
    """One, Three, Two: ``call_soon`` puts "Two" at the back of the ready queue."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    say("One")
    loop.call_soon(_say_then_finish, say, "Two", done)
    say("Three")
    await done


async def order_call_later(say: Say = print) -> None:
    """One, Three, Two: a zero-delay timer still waits for the running code to finish."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    say("One")
    loop.call_later(0, _say_then_finish, say, "Two", done)
    say("Three")
    await done


async def order_task(say: Say = print) -> None:
    """One, Three, Two: a new Task's first step is scheduled, not run on the spot."""

    async def two() -> None:
        say("Two")

    say("One")
    task = asyncio.create_task(two())
    say("Three")
    await task


def _say_then_finish(say: Say, text: str, done: asyncio.Future) -> None:
    say(text)
    done.set_result(None)


#: (label, example) in the order the demo shows them.
ORDER_EXAMPLES: list[tuple[str, Callable[[Say], Awaitable[None]]]] = [
    ("loop.call_soon", order_call_soon),
    ("loop.call_later(0, ...)", order_call_later),
    ("asyncio.create_task", order_task),
]


async def order_all(say: Say = print) -> None:
    """The three ways in turn, each under its heading (examples/order.py, the explain demo)."""
    for label, example in ORDER_EXAMPLES:
        say(f"-- {label}")
        await example(say)

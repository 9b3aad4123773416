"""The timer heap, with lazy cancellation.

Entries are `(when, sequence, handle)` tuples: tuples compare in C, where TimerHandle's own
`__lt__` is a Python call per comparison, and the sequence number keeps timers due at the same
instant in the order they were scheduled.

Cancelling a timer does not search the heap. The handle is marked cancelled (by asyncio's
`TimerHandle.cancel`, which tells the loop) and skipped when it reaches the top. When cancelled
entries outnumber live ones the heap is rebuilt, so a program that schedules and cancels
timeouts in a loop cannot grow it without bound.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque

#: Rebuild only past this many cancelled entries: small heaps are cheaper to leave alone.
_COMPACT_MIN = 256


class TimerQueue:
    __slots__ = ("heap", "cancelled", "_seq")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, object]] = []
        self.cancelled = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self.heap) - self.cancelled

    def push(self, handle) -> None:
        heapq.heappush(self.heap, (handle._when, next(self._seq), handle))
        handle._scheduled = True

    def note_cancelled(self) -> None:
        """A scheduled timer was cancelled; compact when the dead outnumber the live."""
        self.cancelled += 1
        if self.cancelled > _COMPACT_MIN and self.cancelled * 2 > len(self.heap):
            live = []
            for entry in self.heap:
                if entry[2]._cancelled:
                    entry[2]._scheduled = False
                else:
                    live.append(entry)
            heapq.heapify(live)
            self.heap = live
            self.cancelled = 0

    def next_deadline(self) -> float | None:
        """When the earliest live timer is due, dropping cancelled ones off the top."""
        heap = self.heap
        while heap:
            handle = heap[0][2]
            if not handle._cancelled:
                return heap[0][0]
            heapq.heappop(heap)
            handle._scheduled = False
            self.cancelled -= 1
        return None

    def pop_due(self, end: float, ready: deque) -> None:
        """Move every live timer due at or before `end` onto the ready queue, in order."""
        heap = self.heap
        pop = heapq.heappop
        append = ready.append
        while heap and heap[0][0] <= end:
            handle = pop(heap)[2]
            handle._scheduled = False
            if handle._cancelled:
                self.cancelled -= 1
            else:
                append(handle)

    def clear(self) -> None:
        for entry in self.heap:
            entry[2]._scheduled = False
        self.heap.clear()
        self.cancelled = 0

"""A conveyor loop whose clock is virtual: timer logic tested without waiting.

CPython's asyncio tests drive their `TestLoop` (a standard loop with a fake clock) with a
generator, and hundreds of them depend on its exact contract. `VirtualClockLoop` honours the
same contract on conveyor's loop, so those tests check conveyor and not asyncio:

    def gen():
        when = yield        # the loop starts the generator; the first value is ignored
        ...                 # `when`: the absolute time of a timer scheduled this iteration
        when = yield 0.1    # the value yielded: how far to move the clock forward
        ...

- `time()` starts at 0 and moves only when the generator (or `advance_time`) says so.
- After every iteration, each `call_at` made since the previous iteration (call_later and
  sleep go through it) is sent to the generator in order, and the clock advances by what the
  generator yields back.
- `close()` sends one last 0 and expects the generator to be exhausted, so a test whose loop
  scheduled fewer timers than its generator expected fails instead of passing by accident.

The kernel is still polled for real (the waker, threads, pipes keep working), but never kept
waiting for a *virtual* deadline: when the next timer is not yet due on the virtual clock, the
real wait is capped at a few milliseconds, as only another thread or an fd can change anything
before the generator moves the clock.
"""

from __future__ import annotations

from typing import Callable, Generator

from ..loop import EventLoop

#: Longest real wait while a virtual timer is pending: nothing but threads and fds can make
#: progress until the clock moves, and they wake the poll anyway. Short, so a test that relies
#: on TestLoop's busy iteration still finishes promptly.
_REAL_WAIT_CAP = 0.005

TimeGenerator = Callable[[], Generator[float, float, None]]


class VirtualClockLoop(EventLoop):
    """An EventLoop with a virtual clock advanced by a generator (TestLoop's contract)."""

    def __init__(self, gen: TimeGenerator | None = None) -> None:
        super().__init__()
        if gen is None:
            # No generator: the clock moves only by advance_time(). (TestLoop's default
            # generator stops at the first deadline instead, failing any timer.)
            def gen():
                while True:
                    yield 0
            self._check_on_close = False
        else:
            self._check_on_close = True
        self._gen = gen()
        next(self._gen)
        self._time = 0.0
        self._clock_resolution = 1e-9
        self._new_deadlines: list[float] = []
        real_poll = self._poll

        def poll(timeout):
            if timeout is not None and timeout > _REAL_WAIT_CAP:
                timeout = _REAL_WAIT_CAP
            return real_poll(timeout)

        self._poll = poll

    def time(self) -> float:
        return self._time

    def advance_time(self, advance: float) -> None:
        """Move the virtual clock forward by `advance` seconds."""
        if advance:
            self._time += advance

    def call_at(self, when, callback, *args, context=None):
        timer = super().call_at(when, callback, *args, context=context)
        self._new_deadlines.append(when)
        return timer

    def _run_once(self) -> None:
        super()._run_once()
        deadlines, self._new_deadlines = self._new_deadlines, []
        for when in deadlines:
            self.advance_time(self._gen.send(when))

    def close(self) -> None:
        already = self.is_closed()
        super().close()
        if self._check_on_close and not already:
            self._check_on_close = False
            try:
                self._gen.send(0)
            except StopIteration:
                pass
            else:
                raise AssertionError("Time generator is not finished")

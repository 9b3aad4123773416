"""``python -m conveyor explain prog.py``: the talk's diagrams, drawn from a real run.

The talk explains async with a picture it animates by hand: the call stack, the kernel side
where waits happen, the callback queue, and the loop moving callbacks from the queue to the
stack. This package records those same things while a short program runs on conveyor, and
writes a page that replays the run step by step:

- `recorder`: an instrument (plus a tee on ``sys.stdout``) that records, at every callback,
  every return to the loop, every poll and every print, what is on the stack, in the ready
  queue, in the timer heap and in the kernel wait, and what each task awaits;
- `page`: writes the self-contained HTML replay (``page.html`` is its template);
- `cli`: the command.

Nothing here is imported unless ``explain`` runs: other programs pay nothing for it.
"""

from .recorder import STEP_LIMIT, Recording, TooManySteps

__all__ = ["STEP_LIMIT", "Recording", "TooManySteps"]

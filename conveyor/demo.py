"""``python -m conveyor demo``: the talk's examples, run on conveyor, explained in a few lines.

1. Moving boxes one batch after another, then all batches at once: the first takes the sum
   of every wait, the second about one batch, because the loop runs the other batches while
   one waits.
2. The callback-queue order: One, Three, Two, three ways.
3. If this conveyor has the tracer, a timeline of the concurrent move, to open in a browser.

It takes a few seconds (``--quick``: under one). ``--explain`` instead writes the page that
replays the ordering example step by step (``python -m conveyor explain``), and nothing else.
The examples themselves live in :mod:`conveyor._talk`, shared with the scripts in
``examples/``.
"""

from __future__ import annotations

import argparse
import os
import sys

import conveyor

from ._talk import ORDER_EXAMPLES, Move, move_concurrently, move_sequentially, order_all

__all__ = ["main"]

DEFAULT_TRACE = "conveyor-demo.html"
DEFAULT_EXPLAIN = "conveyor-explain.html"
QUICK = Move(boxes=30, batch_size=10, pack=0.02, transport=0.06, unpack=0.02)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conveyor demo",
        description="Run the talk's examples on conveyor and explain what happened.")
    parser.add_argument("--trace", metavar="PATH", default=DEFAULT_TRACE,
                        help=f"where to write the timeline of the concurrent run "
                             f"(.html or .json; default {DEFAULT_TRACE})")
    parser.add_argument("--no-trace", action="store_true", help="do not write a timeline")
    parser.add_argument("--quick", action="store_true",
                        help="shorter waits: the same story in under a second")
    parser.add_argument("--explain", nargs="?", const=DEFAULT_EXPLAIN, metavar="PAGE",
                        help="only write the page that replays the ordering example step by "
                             f"step (default {DEFAULT_EXPLAIN}), to open in a browser")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print every packing, transporting and unpacking step")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    ns = _parser().parse_args(argv)
    if ns.explain:
        return _explain_ordering(ns.explain)
    move = QUICK if ns.quick else Move()
    say = _indented if ns.verbose else _quiet
    tracer = None if ns.no_trace else getattr(conveyor, "trace", None)

    print("conveyor demo: what an event loop does while your code waits\n")
    _moving(move, say, tracer, ns.trace)
    _ordering()
    return 0


def _quiet(_text: str) -> None:
    pass


def _indented(text: str) -> None:
    print(f"     {text}")


def _moving(move: Move, say, tracer, trace_path: str) -> None:
    print(f"1. Moving {move.boxes} boxes in {move.batches} batches of {move.batch_size}. "
          f"Each batch is packed ({move.pack:.2f} s),\n"
          f"   transported ({move.transport:.2f} s) and unpacked ({move.unpack:.2f} s): "
          f"waits, as I/O is.")
    one_by_one = conveyor.run(move_sequentially(move, say))
    print(f"   one batch after another: {one_by_one:5.2f} s  = {move.batches} batches x "
          f"{move.per_batch:.2f} s: each wait is waited out in turn")
    if tracer is not None:
        # Only this run is traced: the timeline shows the batches' waits overlapping.
        with tracer(trace_path):
            at_once = conveyor.run(move_concurrently(move, say))
    else:
        at_once = conveyor.run(move_concurrently(move, say))
    print(f"   all batches at once:     {at_once:5.2f} s  = about one batch "
          f"({move.per_batch:.2f} s): while one batch waits, the loop runs the others")
    print(f"   {one_by_one / at_once:.1f}x faster with asyncio.gather, with the same waits.")
    if tracer is not None:
        print(f"   Timeline of the concurrent run: {os.path.abspath(trace_path)} "
              f"(open it in a browser)")
    print()


def _ordering() -> None:
    print('2. Callback order: print "One", schedule "Two" with no delay, print "Three".')
    width = max(len(label) for label, _ in ORDER_EXAMPLES)
    for label, example in ORDER_EXAMPLES:
        said: list[str] = []
        conveyor.run(example(said.append))
        print(f"   {label:<{width}}  {', '.join(said)}")
    print("   Scheduled work joins the back of the loop's ready queue, even with no delay:\n"
          "   it runs only after the code that is running now gives control back.")
    print("   Watch it happen step by step: python -m conveyor demo --explain\n"
          f"   (writes {DEFAULT_EXPLAIN}: the stack, the queue and the output at every step)")


def _explain_ordering(page: str) -> int:
    """The ordering example under the step recorder, written as the replay page."""
    from .explain.page import write_page  # only now: the demo itself never pays for it
    from .explain.recorder import Recording

    recording = Recording().start()
    try:
        conveyor.run(order_all(print))
    finally:
        recording.stop()
    write_page(page, {"command": "python -m conveyor demo --explain  (the ordering example)",
                      **recording.to_json()})
    print(f"\nThe explained run: {os.path.abspath(page)} - open it in a browser and step "
          f"through it\n(the right arrow key steps; watch the ready queue when 'Three' prints).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

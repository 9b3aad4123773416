"""Moving house, one batch at a time.

Every batch is packed, transported and unpacked (each step a wait standing in for I/O),
and the next batch starts only when the previous one is done, so the waits add up:
batches x (pack + transport + unpack).

    python examples/move.py [--boxes 50] [--batch-size 10] [--pack 0.05] ...

The moving logic lives in conveyor/_talk.py, shared with move_async.py and
``python -m conveyor demo``.
"""

from __future__ import annotations

import argparse

import conveyor
from conveyor._talk import Move, move_sequentially


def parse_move(argv: list[str] | None, description: str) -> Move:
    """Command-line options for both move examples."""
    defaults = Move()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--boxes", type=int, default=defaults.boxes)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--pack", type=float, default=defaults.pack, metavar="SECONDS")
    parser.add_argument("--transport", type=float, default=defaults.transport,
                        metavar="SECONDS")
    parser.add_argument("--unpack", type=float, default=defaults.unpack, metavar="SECONDS")
    ns = parser.parse_args(argv)
    return Move(ns.boxes, ns.batch_size, ns.pack, ns.transport, ns.unpack)


def main(argv: list[str] | None = None) -> None:
    move = parse_move(argv, "Move boxes one batch after another.")
    took = conveyor.run(move_sequentially(move))
    print(f"sequential: {move.batches} batches in {took:.2f} s "
          f"(expected about {move.batches} x {move.per_batch:.2f} s = "
          f"{move.batches * move.per_batch:.2f} s)")


if __name__ == "__main__":
    main()

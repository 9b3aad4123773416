"""Moving house, every batch at once.

The same batches as move.py, started together with ``asyncio.gather``. While one batch is
"transporting" (waiting), the loop runs the others, so the whole move takes about as long
as one batch: pack + transport + unpack.

    python examples/move_async.py [--boxes 50] [--batch-size 10] [--pack 0.05] ...
"""

from __future__ import annotations

import conveyor
from conveyor._talk import move_concurrently

from move import parse_move


def main(argv: list[str] | None = None) -> None:
    move = parse_move(argv, "Move every batch of boxes at once.")
    took = conveyor.run(move_concurrently(move))
    print(f"concurrent: {move.batches} batches in {took:.2f} s "
          f"(expected about one batch: {move.per_batch:.2f} s)")


if __name__ == "__main__":
    main()

"""In which order does this print?

    print("One"); schedule print("Two") with no delay; print("Three")

One, Three, Two -- whether "Two" is scheduled with loop.call_soon, with loop.call_later(0)
or as a new Task. Scheduling puts work at the back of the loop's queue; it runs after the
code that is running now gives control back to the loop.
"""

from __future__ import annotations

import conveyor
from conveyor._talk import order_all


if __name__ == "__main__":
    conveyor.run(order_all(print))

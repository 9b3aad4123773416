"""Reading a file three ways: with a callback, with a future, and with await.

All three start the same read, which runs on conveyor's file threads while the loop stays
free; they differ in how the program gets the result back:

1. **callback**: hand over a function to call when the data is there (``add_done_callback``);
2. **future**: keep an object that stands for the result, pass it around, collect it later;
3. **await**: write it as if it were a plain call; the coroutine is suspended until the data
   is there, and the loop runs other work meanwhile.

    python examples/read_file.py [PATH]      (default: this file)
"""

from __future__ import annotations

import asyncio
import sys

import conveyor
from conveyor.fs import read_text


def describe(way: str, text: str) -> str:
    first = text.splitlines()[0] if text else ""
    return f"{way}: read {len(text)} characters, first line: {first!r}"


async def with_callback(path: str) -> None:
    done = asyncio.Event()

    def on_read(future: asyncio.Future) -> None:  # called by the loop when the read is done
        try:
            print(describe("callback", future.result()))
        except OSError as exc:  # a callback must handle its own errors: nobody awaits it
            print(f"callback: {exc}")
        finally:
            done.set()

    asyncio.ensure_future(read_text(path)).add_done_callback(on_read)
    await done.wait()


async def with_future(path: str) -> None:
    future = asyncio.ensure_future(read_text(path))  # the read has started
    # ... the program may do other things here and hand `future` to whoever needs it ...
    await asyncio.wait([future])                             # later: wait until it is done
    print(describe("future", future.result()))


async def with_await(path: str) -> None:
    text = await read_text(path)
    print(describe("await", text))


async def main(path: str) -> int:
    await with_callback(path)
    try:
        await with_future(path)
        await with_await(path)
    except OSError as exc:  # with a future or await, errors arrive where the result would
        print(f"future/await: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(conveyor.run(main(sys.argv[1] if len(sys.argv) > 1 else __file__)))

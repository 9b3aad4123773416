"""A program for the live-console tests: a spinning task, a stuck task, a small task tree,
and a planted blocking call on request.

    python console_app.py [--code-console]      # commands on stdin: block S, quit

It prints ``ready`` once its tasks run (and, with --code-console, once conveyor.console()
listens), and ``blocking`` just before it blocks the loop.
"""

import asyncio
import sys
import time

import conveyor

conveyor.install()  # also when run as plain `python console_app.py`

def planted_block(seconds):
    time.sleep(seconds)  # PLANTED-BLOCK


async def spin_forever():
    while True:
        for _ in range(50):
            await asyncio.sleep(0)  # SPIN-LINE
        await asyncio.sleep(0.01)


async def stuck_forever():
    await asyncio.get_running_loop().create_future()  # STUCK-LINE


async def child_worker(n):
    while True:
        await asyncio.sleep(0.2 + n / 100)


async def parent_worker():
    children = [asyncio.create_task(child_worker(n), name=f"child-{n}") for n in range(2)]
    await asyncio.gather(*children)


async def family():
    kids = [asyncio.create_task(child_worker(n), name=f"kid-{n}") for n in range(2)]
    await asyncio.gather(*kids)


async def blocker(seconds):
    print("blocking", flush=True)
    planted_block(seconds)


async def main():
    loop = asyncio.get_running_loop()
    if "--code-console" in sys.argv:
        conveyor.console()
    tasks = [asyncio.create_task(spin_forever(), name="spinner"),
             asyncio.create_task(stuck_forever(), name="stuck"),
             asyncio.create_task(parent_worker(), name="parent")]
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await asyncio.sleep(0)
    print("ready", flush=True)
    while True:
        line = (await reader.readline()).decode().split()
        if not line or line[0] == "quit":
            break
        if line[0] == "block":
            await asyncio.create_task(blocker(float(line[1])), name="blocker")
            print("unblocked", flush=True)
        if line[0] == "spawn":
            tasks.append(asyncio.create_task(family(), name="family"))
            print("spawned", flush=True)
        if line[0] == "hooks":
            print("hooks", loop._hooks is None and "none" or
                  ",".join(type(i).__name__ for i in loop._hooks.instruments), flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())

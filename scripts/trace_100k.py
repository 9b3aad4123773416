"""How the HTML timeline copes with a big trace: ``python scripts/trace_100k.py [OUT.html]``.

Traces 100,000 short tasks (one step each), in batches of 1,000,
with one handler-like task blocking 50 ms in the middle; writes the page, then opens it in
headless Chromium and prints the file size, the events recorded, and how long the page
took to be drawn (the ``data-load-ms`` mark the page's script leaves on ``<body>``: from the
start of navigation to the end of its first drawing, parsing included) and to redraw the
whole span (``data-redraw-ms``, the mean of 5).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import conveyor  # noqa: E402  (this checkout's conveyor, not an installed one)

TASKS = 100_000
BATCH = 1_000


async def short(i: int) -> int:
    return i


async def blocking() -> None:
    await asyncio.sleep(0)
    time.sleep(0.05)


async def main() -> None:
    for start in range(0, TASKS, BATCH):
        if start == TASKS // 2:
            await asyncio.create_task(blocking())
        await asyncio.gather(*(asyncio.create_task(short(i))
                               for i in range(start, start + BATCH)))


def load_in_chromium(path: str) -> dict[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed")
    with tempfile.TemporaryDirectory() as profile:
        started = time.monotonic()
        proc = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--window-size=1400,900", f"--user-data-dir={profile}",
             "--dump-dom", "file://" + os.path.abspath(path) + "#redraws=5"],
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        wall = time.monotonic() - started
    body = re.search(r"<body([^>]*)>", proc.stdout)
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1))) if body else {}
    attrs["chromium-wall-s"] = f"{wall:.1f}"
    return attrs


def run(out: str) -> None:
    tracer = conveyor.trace(out)
    started = time.monotonic()
    with tracer:
        conveyor.run(main())
    print(f"traced and written in {time.monotonic() - started:.1f} s; "
          f"{len(tracer._events):,} events recorded (ring of {tracer.max_events:,}, "
          f"overflowed: {tracer.dropped})")
    print(f"{out}: {os.path.getsize(out) / 1e6:.1f} MB")
    attrs = load_in_chromium(out)
    print(f"Chromium: drawn {attrs.get('data-rendered') == 'true'}, "
          f"load {attrs.get('data-load-ms')} ms after navigation start; "
          f"a redraw of the whole span {attrs.get('data-redraw-ms')} ms; "
          f"whole headless run {attrs['chromium-wall-s']} s")


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "trace-100k.html")

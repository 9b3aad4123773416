"""The HTML timeline in a real browser: headless Chromium renders it, offline, and the DOM
it builds holds the lanes, the groups of task lanes, the panel of the slowest steps and
callbacks (which jumps to one), and the search filters them. A screenshot is kept under
artifacts/ for people to look at.

The events themselves are drawn on a canvas; the page leaves what the tests need on
``<body>`` (data-rendered, data-view, data-drawn, data-search) and in its labels and panel.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

import conveyor
from browser import Elements, chromium, needs_chromium

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
pytestmark = needs_chromium


def blocking_callback():
    time.sleep(0.05)


async def sleeper(delay):
    await asyncio.sleep(delay)


async def blocker():
    await asyncio.sleep(0)
    time.sleep(0.06)  # BLOCKS
    await asyncio.sleep(0)


async def tiny(n):
    await asyncio.sleep(0)
    return n


async def scripted():
    loop = asyncio.get_running_loop()
    a = asyncio.create_task(sleeper(0.02), name="alpha")
    b = asyncio.create_task(sleeper(0.04), name="beta")
    loop.call_later(0.005, blocking_callback)
    await asyncio.gather(a, b)
    await asyncio.create_task(blocker())
    await asyncio.gather(*(asyncio.create_task(tiny(n)) for n in range(20)))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    path = tmp_path_factory.mktemp("timeline") / "timeline.html"
    with conveyor.trace(path, slow=0.02):
        conveyor.run(scripted())
    return path


def render(page, hash=""):
    """(the body's attributes, every element's (tag, attributes)) of the rendered page."""
    proc = chromium("--dump-dom", page.as_uri() + hash)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parser = Elements()
    parser.feed(proc.stdout)
    body = next(attrs for tag, attrs in parser.elements if tag == "body")
    assert body.get("data-rendered") == "true", "the page script did not finish"
    return body, parser.elements


def lane_names(elements):
    return [attrs["data-lane"] for tag, attrs in elements if "data-lane" in attrs]


def groups(elements):
    return {attrs["data-group"]: attrs for tag, attrs in elements if "data-group" in attrs}


def slowest(elements):
    return [attrs for tag, attrs in elements if tag == "li" and "data-rank" in attrs]


def test_dom_holds_lanes_groups_and_slowest(page):
    body, elements = render(page)
    names = lane_names(elements)
    assert names[:2] == ["kernel wait (poll)", "loop"]
    assert "task alpha (sleeper)" in names and "task beta (sleeper)" in names
    # Task lanes grouped by coroutine function; a big group starts closed (one aggregate
    # lane, no member lanes), a small one open.
    found = groups(elements)
    assert found["tiny"]["data-count"] == "20" and found["tiny"]["data-collapsed"] == "true"
    assert not [n for n in names if n.endswith("(tiny)")]
    assert found["sleeper"]["data-count"] == "2"
    assert found["sleeper"]["data-collapsed"] == "false"
    # The panel: slowest first, the step named by its coroutine and the line that blocked.
    panel = slowest(elements)
    durations = [float(attrs["data-dur"]) for attrs in panel]
    assert durations == sorted(durations, reverse=True)
    blocks = next(n for n, line in enumerate(Path(__file__).read_text().splitlines(), 1)
                  if line.endswith("# BLOCKS"))
    top = {attrs["data-name"]: attrs["data-where"] for attrs in panel[:2]}
    assert top == {"blocking_callback":
                   f"{__file__}:{blocking_callback.__code__.co_firstlineno}",
                   f"blocker() {Path(__file__).name}:{blocks}\u2192{blocks + 1}":
                   f"{__file__}:{blocks}"}
    drawn = json.loads(body["data-drawn"])
    assert drawn["poll"] and drawn["task_step"] and drawn["slow"] >= 2


def test_search_filters_lanes_and_panel(page):
    body, elements = render(page, "#search=alpha")
    assert body["data-search"] == "alpha"
    names = lane_names(elements)
    assert "task alpha (sleeper)" in names and "task beta (sleeper)" not in names
    assert names[:2] == ["kernel wait (poll)", "loop"]   # the loop's own lanes stay
    assert set(groups(elements)) == {"sleeper"}
    # The panel keeps the entries that mention alpha: its two steps.
    assert [attrs["data-name"] for attrs in slowest(elements)] == ["step alpha (sleeper)"] * 2
    body, elements = render(page, "#search=blocking")
    assert [attrs["data-name"] for attrs in slowest(elements)] == ["blocking_callback"]


def test_slowest_entry_jumps_to_its_event(page):
    body, elements = render(page, "#slowest=2")
    start, end = (int(x) for x in body["data-view"].split(","))
    chosen = slowest(elements)[2]
    assert "focus" in chosen["class"].split()
    ts, dur = float(chosen["data-ts"]), float(chosen["data-dur"])
    # Zoomed so the event fills the middle third of the view.
    assert abs((end - start) - 3 * max(dur, 1)) <= 2 and abs(start - (ts - max(dur, 1))) <= 1
    # Its task's lane (or the loop's, for a callback) is scrolled into view and marked.
    focus = [attrs for tag, attrs in elements
             if "focus" in attrs.get("class", "").split() and "data-lane" in attrs]
    assert len(focus) == 1


def test_screenshot(page):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "timeline.png"
    if shot.exists():
        shot.unlink()
    proc = chromium(f"--screenshot={shot}", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000  # a rendered page, not a blank one

"""The HTML timeline in a real browser: headless Chromium renders it, offline, and the DOM
it builds holds the lanes and the marked slow callback. A screenshot is kept under
artifacts/ for people to look at."""

from __future__ import annotations

import asyncio
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


async def scripted():
    loop = asyncio.get_running_loop()
    a = asyncio.create_task(sleeper(0.02), name="alpha")
    b = asyncio.create_task(sleeper(0.04), name="beta")
    loop.call_later(0.005, blocking_callback)
    await asyncio.gather(a, b)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    path = tmp_path_factory.mktemp("timeline") / "timeline.html"
    with conveyor.trace(path, slow=0.02):
        conveyor.run(scripted())
    return path


def test_dom_holds_lanes_and_slow_callback(page):
    proc = chromium("--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    parser = Elements()
    parser.feed(proc.stdout)
    elements = parser.elements
    assert any(attrs.get("data-rendered") == "true" for tag, attrs in elements
               if tag == "body"), "the page script did not finish"
    lane_names = [attrs["data-lane"] for tag, attrs in elements if "data-lane" in attrs]
    assert lane_names[:2] == ["kernel wait (poll)", "loop"]
    assert "task alpha (sleeper)" in lane_names
    assert "task beta (sleeper)" in lane_names
    slow = [attrs for tag, attrs in elements
            if "slow" in attrs.get("class", "").split() and "ev" in attrs["class"].split()]
    assert [attrs["data-name"] for attrs in slow] == ["blocking_callback"]
    polls = [attrs for tag, attrs in elements if attrs.get("class") == "ev poll"]
    assert polls
    steps = [attrs for tag, attrs in elements
             if "task_step" in attrs.get("class", "").split()]
    assert len(steps) >= 4


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

"""The HTML timeline in a real browser: headless Chromium renders it, offline, and the DOM
it builds holds the lanes and the marked slow callback. A screenshot is kept under
artifacts/ for people to look at."""

from __future__ import annotations

import asyncio
import html.parser
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import conveyor

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium) - the browser check "
           "of the HTML timeline needs it")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,600"]


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


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=90,
                              stdin=subprocess.DEVNULL)


class Elements(html.parser.HTMLParser):
    """Collects every element's tag and attributes from the dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))


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

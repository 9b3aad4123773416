"""Headless Chromium for the tests that check conveyor's pages in a real browser.

One copy of how the browser is found and run (a throw-away profile, no network services,
bounded time) and of the parsers that read the DOM it dumps. Test modules skip themselves
with `needs_chromium` when it is not installed.
"""

from __future__ import annotations

import html.parser
import shutil
import subprocess
import tempfile

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium) - the browser check "
           "of conveyor's pages needs it")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(*args: str, window: str = "1400,600") -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with ``args`` (``--dump-dom URL``, ``--screenshot=PNG URL``)."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--window-size={window}",
                               f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=90,
                              stdin=subprocess.DEVNULL)


class Elements(html.parser.HTMLParser):
    """Collects every element's tag and attributes from the dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
         "source", "track", "wbr"}


class TextById(html.parser.HTMLParser):
    """The text inside every element that has an ``id``, by id (nested text included)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            return
        found = dict(attrs).get("id")
        self._open.append(found)
        if found:
            self.text.setdefault(found, "")

    def handle_endtag(self, tag):
        if tag not in _VOID and self._open:
            self._open.pop()

    def handle_data(self, data):
        for found in self._open:
            if found:
                self.text[found] += data

"""The replay page: page.html with the recording embedded, one file that needs no network."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..observe.trace_writers import _escape_for_script

__all__ = ["render_page", "write_page"]

_TEMPLATE = Path(__file__).with_name("page.html")
_DATA_MARK = "/*__CONVEYOR_EXPLAIN_DATA__*/null"


def render_page(data: dict[str, Any]) -> str:
    """The page's HTML with ``data`` (`Recording.to_json` plus ``command``) inlined."""
    head, tail = _TEMPLATE.read_text(encoding="utf-8").split(_DATA_MARK, 1)
    return head + _escape_for_script(json.dumps(data, separators=(",", ":"))) + tail


def write_page(path: str | os.PathLike, data: dict[str, Any]) -> None:
    Path(path).write_text(render_page(data), encoding="utf-8")

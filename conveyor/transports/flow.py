"""Write flow control shared by every transport that buffers writes.

A transport buffers what the kernel would not take; past the high-water mark it asks the
protocol to pause_writing(), and once drained below the low-water mark to resume_writing().
The checks stay inline in each transport's write path (they are two comparisons, and the
socket transport's write is hot); what is shared is what must not drift between transports:
asyncio's rules for the marks, and how a protocol that raises from pause/resume is reported.

A transport using these keeps `_protocol`, `_loop` and `_protocol_paused` attributes.
"""

from __future__ import annotations

from typing import Any

from ..contract import LoopInternals

#: asyncio's default high-water mark: the writer is paused once more than 64 KiB wait in the
#: buffer. The low-water mark defaults to a quarter of the high one (see water_marks).
DEFAULT_HIGH_WATER = 64 * 1024


def water_marks(high: int | None, low: int | None,
                default_high: int = DEFAULT_HIGH_WATER) -> tuple[int, int]:
    """(high, low) from set_write_buffer_limits' arguments, with asyncio's defaults and error."""
    if high is None:
        high = default_high if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


#: water_marks(None, None), computed once: every transport then shares these two int
#: objects instead of holding a fresh low mark (16384 is not a cached small int: 32 B each).
DEFAULT_MARKS = water_marks(None, None)


def pause_protocol(transport: Any) -> None:
    """Tell the protocol to stop writing; a protocol that raises is reported, not fatal.

    The flag is set before the call, so a write made from inside pause_writing() does not
    pause the protocol a second time.
    """
    transport._protocol_paused = True
    notify(transport._loop, transport, transport._protocol, "pause_writing")


def resume_protocol(transport: Any) -> None:
    """Tell the protocol it may write again (the flag first, for the same reason)."""
    transport._protocol_paused = False
    notify(transport._loop, transport, transport._protocol, "resume_writing")


def notify(loop: LoopInternals, transport: Any, protocol: Any, method: str) -> None:
    """Call protocol.pause_writing/resume_writing; what it raises goes to the handler."""
    try:
        getattr(protocol, method)()
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        loop.call_exception_handler({
            "message": f"protocol.{method}() failed",
            "exception": exc, "transport": transport, "protocol": protocol,
        })

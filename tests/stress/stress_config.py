"""Every size the stress suite uses, in one place.

Quick sizes (the default) keep `pytest tests/stress` to about a minute and a half on two
cores, so the suite runs in CI with everything else. `CONVEYOR_STRESS=full` selects the sizes
issue 9 names (512 MiB bodies, 100k connections, 1,500 faulty peers, 8 x 100k thread calls),
which is what `scripts/stress.sh` runs once per poller backend and on stock asyncio.

The tolerances are here too, with the reason for each, so a reader can judge what "nothing
leaked" means in numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MiB = 1024 * 1024
KiB = 1024


@dataclass(frozen=True)
class Sizes:
    # Slow reader: a body streamed to a reader taking 64 KiB every 10 ms.
    body_bytes: int
    # Short connections: connect, 1 KiB echo, close; a warm-up before the RSS baseline.
    short_connections: int
    short_warmup: int
    # Faulty peers (reset, close with unread data, half-close) while the server buffers this much.
    faulty_peers: int
    faulty_buffered: int
    faulty_concurrency: int
    # Storms: seconds of ~1 kHz SIGUSR1; call_soon_threadsafe calls per thread (8 threads).
    signal_seconds: float
    threadsafe_calls: int
    # Buffer a never-reading peer up to this much, then abort.
    hog_bytes: int
    # Connections that connect and never send.
    idle_peers: int


QUICK = Sizes(
    body_bytes=12 * MiB,          # well past the first pause/resume cycle (~5 MiB on loopback)
    short_connections=5_000,
    short_warmup=300,
    faulty_peers=150,
    faulty_buffered=8 * MiB,       # 2 MiB rarely trips a resume_writing() defect; 8 MiB does
    faulty_concurrency=50,
    signal_seconds=2.0,
    threadsafe_calls=10_000,
    hog_bytes=48 * MiB,
    idle_peers=200,
)

FULL = Sizes(
    body_bytes=512 * MiB,
    short_connections=100_000,
    short_warmup=2_000,
    faulty_peers=1_500,
    faulty_buffered=8 * MiB,
    faulty_concurrency=50,
    signal_seconds=15.0,
    threadsafe_calls=100_000,
    hog_bytes=256 * MiB,
    idle_peers=1_000,
)

FULL_MODE = os.environ.get("CONVEYOR_STRESS", "").lower() == "full"
SIZES = FULL if FULL_MODE else QUICK

# --- tolerances -------------------------------------------------------------------------

#: Issue 9: streaming a body to a slow reader may grow the server's peak RSS by less than this.
#: Flow control bounds the write buffer to the high-water mark (64 KiB by default), so any
#: growth near this figure means the buffer is not bounded.
PEAK_RSS_GROWTH = 24 * MiB

#: RSS after all short connections are gone, against the level after the warm-up. The exact
#: check is the count of live protocol objects (must be 0); RSS is the coarse backstop, and a
#: few MiB absorb allocator fragmentation (pymalloc arenas, glibc free lists).
RSS_RETURN_TOLERANCE = 4 * MiB

#: RSS after aborting a transport that buffered `hog_bytes`, against the level before it.
#: The harness calls malloc_trim(0) before measuring, so what remains is what is still held.
HOG_RSS_TOLERANCE = 8 * MiB

#: Server CPU over a 1 s idle window, as a fraction of one core: a loop that spins on a dead
#: or exhausted fd shows ~100 %; an idle loop shows ~0-1 %.
IDLE_CPU_FRACTION = 0.05

#: A 10 ms periodic timer may never go longer than this between two ticks.
MAX_TIMER_GAP = 0.5

#: Seconds the slow reader waits for any byte before it calls the transfer stalled.
STALL_SECONDS = 15.0

#: The whole-case bound for each test (pytest-timeout backs it up).
CASE_TIMEOUT = 1800.0 if FULL_MODE else 60.0

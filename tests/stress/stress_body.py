"""The bytes the stress servers send, generated the same way on both sides.

Chunk i is a 64 KiB block of fixed random bytes with i stamped in its first 8 bytes, so a
lost, repeated or reordered chunk changes the SHA-256 of the stream, and neither side has to
hold the whole body (512 MiB at full size) in memory.
"""

from __future__ import annotations

import hashlib
import random
from typing import Iterator

CHUNK = 64 * 1024
_BASE = random.Random(9).randbytes(CHUNK)


def body_chunk(i: int) -> bytes:
    return i.to_bytes(8, "big") + _BASE[8:]


def body_chunks(total: int) -> Iterator[bytes]:
    """The chunks of a body of `total` bytes (a whole number of chunks)."""
    assert total % CHUNK == 0, total
    for i in range(total // CHUNK):
        yield body_chunk(i)


def body_sha256(total: int) -> str:
    h = hashlib.sha256()
    for chunk in body_chunks(total):
        h.update(chunk)
    return h.hexdigest()

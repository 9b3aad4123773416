"""Let blockbuster allow conveyor's deliberate blocking calls, as it allows asyncio's.

blockbuster (https://pypi.org/project/blockbuster/) raises when a blocking function runs
on a thread with a running event loop, except where it has been told the call is fine; it
ships such exceptions for the standard loop's own files (asyncio/base_events.py's sendfile,
asyncio/unix_events.py's create_unix_server, ...). conveyor makes the same calls from its
own files, so a test suite that runs blockbuster on conveyor needs the same exceptions:

    from blockbuster import blockbuster_ctx
    from conveyor.testing.blockbuster import allow_conveyor

    with blockbuster_ctx() as bb:
        allow_conveyor(bb)
        ...

Each entry says why the call stays on the loop thread (docs/compat.md has the same list).
Spawning a subprocess is not here: conveyor spawns on a thread of its own.
"""

from __future__ import annotations

from typing import Any

#: (blockbuster function name, file, functions of that file where the call is allowed).
ALLOWED: tuple[tuple[str, str, frozenset[str]], ...] = (
    # Zero-copy file sending: os.sendfile on a non-blocking socket returns at once with
    # what fits; the file side may read from disk, as asyncio's does.
    ("os.sendfile", "conveyor/net/sendfile.py", frozenset({"_send_native"})),
    # Unix servers: replace a stale socket file, note its inode, remove it on close
    # (a few metadata calls on a local path, exactly what asyncio does there).
    ("os.stat", "conveyor/net/unix.py", frozenset({"remove_stale_socket", "_socket_file"})),
    ("os.remove", "conveyor/net/unix.py", frozenset({"remove_stale_socket"})),
    ("os.stat", "conveyor/net/server.py", frozenset({"_remove_unix_path"})),
    ("os.unlink", "conveyor/net/server.py", frozenset({"_remove_unix_path"})),
)


def allow_conveyor(bb: Any) -> Any:
    """Register conveyor's allowed blocking calls on a `blockbuster.BlockBuster`; returns it."""
    for name, filename, functions in ALLOWED:
        function = bb.functions.get(name)
        if function is not None:
            function.can_block_in(filename, set(functions))
    return bb

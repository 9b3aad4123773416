"""What the TLS modules share: asyncio's timeouts, the per-thread buffers, the session
states (as module globals, for the hot path) and the application's lifecycle. The state
table itself is the package's opening essay (transports/tls/__init__.py)."""

from __future__ import annotations

import enum
import logging
import ssl
import threading

logger = logging.getLogger("asyncio")

#: asyncio's defaults, in seconds.
SSL_HANDSHAKE_TIMEOUT = 60.0
SSL_SHUTDOWN_TIMEOUT = 30.0

#: The raw transport reads into a buffer this big; one recv then carries many TLS records.
_RAW_BUFFER_SIZE = 256 * 1024
#: Plaintext is decrypted into a reused buffer of this size before it is handed over.
_PLAIN_BUFFER_SIZE = 256 * 1024

_WANT = (ssl.SSLWantReadError, ssl.SSLSyscallError)


_local = threading.local()


def _shared_buffers() -> tuple[memoryview, memoryview]:
    """This thread's (raw, plaintext) buffers, shared by all its TLS connections.

    Both are only used between a read and the copy that follows it, with no other
    connection's code in between, so one pair per thread serves any number of connections;
    a buffer per connection would cost half a megabyte each.
    """
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = (memoryview(bytearray(_RAW_BUFFER_SIZE)),
                                    memoryview(bytearray(_PLAIN_BUFFER_SIZE)))
    return buffers


class _State(enum.Enum):
    """Where the TLS session is (see "The state table" above)."""
    HANDSHAKE = "handshake"
    WRAPPED = "wrapped"
    EOF_HELD = "eof held"
    FLUSHING = "flushing"
    SHUTDOWN = "shutdown"
    CLOSED = "closed"


# The members as module globals: the hot path tests the state once per chunk, and on 3.11
# `_State.WRAPPED` is a lookup through the enum's metaclass (~90 ns; a global is ~10).
_HANDSHAKE, _WRAPPED, _EOF_HELD, _FLUSHING, _SHUTDOWN, _CLOSED = _State
#: The states in which application data still arrives and may reach the application.
_DATA_STATES = (_WRAPPED, _EOF_HELD, _FLUSHING)


class _App(enum.Enum):
    """Which once-only callbacks the application protocol has had, in this order."""
    WAITING = "waiting"        # no connection_made yet
    CONNECTED = "connected"
    EOF = "eof"                # eof_received was called
    LOST = "lost"              # connection_lost is scheduled


def _check_timeout(name: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    if value <= 0:
        raise ValueError(f"{name} should be a positive number, got {value}")
    return value


def _default_context(server_side: bool) -> ssl.SSLContext:
    """What ``ssl=True`` means for a client; a server has to bring its certificate."""
    if server_side:
        raise ValueError("Server side SSL needs a valid SSLContext")
    return ssl.create_default_context()



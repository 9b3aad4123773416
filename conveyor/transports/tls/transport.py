"""`SSLTransport`: the transport the application holds over a `TLSProtocol`."""

from __future__ import annotations

import asyncio
import warnings
from typing import TYPE_CHECKING, Any

from ..base import is_buffered
from .common import _DATA_STATES, _HANDSHAKE

if TYPE_CHECKING:
    from .protocol import TLSProtocol


class SSLTransport(asyncio.Transport):
    """The transport the application holds: plaintext in, plaintext out.

    Named "SSL" like the standard library's module and asyncio's own TLS transport, because
    code (CPython's test suite among it) recognises a TLS transport by that word in its
    class name.
    """

    #: TLS inside TLS works: start_tls can put another TLSProtocol on this transport.
    _start_tls_compatible = True

    def __init__(self, loop: asyncio.AbstractEventLoop, tls: TLSProtocol) -> None:
        super().__init__()
        self._loop = loop
        self._tls = tls
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SSLTransport {state} {self._tls!r}>"

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._tls._get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        tls = self._tls
        tls._app_protocol = protocol
        tls._app_buffered = is_buffered(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._tls._app_protocol

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Send close_notify after what was written; the connection closes when it is out."""
        if self._closed:
            return
        self._closed = True
        self._tls._start_shutdown()

    def abort(self) -> None:
        self._closed = True
        self._tls._abort(None)

    def __del__(self, _warn=warnings.warn) -> None:
        if not self._closed:
            self._closed = True
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)

    def is_reading(self) -> bool:
        tls = self._tls
        state = tls._state
        return not tls._app_reading_paused and (state is _HANDSHAKE or state in _DATA_STATES)

    def pause_reading(self) -> None:
        self._tls._pause_reading()

    def resume_reading(self) -> None:
        self._tls._resume_reading()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data: expecting a bytes-like instance, "
                            f"got {type(data).__name__}")
        if data:
            self._tls._write(data)

    def writelines(self, list_of_data) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        raise NotImplementedError   # as asyncio's and uvloop's, without a message

    def can_write_eof(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        raw = self._tls._transport
        if raw is not None:
            raw.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        raw = self._tls._transport
        if raw is not None:
            return raw.get_write_buffer_limits()
        return (0, 0)

    def get_write_buffer_size(self) -> int:
        tls = self._tls
        pending = tls._pending_size + tls._outgoing.pending
        raw = tls._transport
        if raw is not None:
            pending += raw.get_write_buffer_size()
        return pending

"""`TLSProtocol`: the handshake, incoming records and the application's writes (closing is
in closing.py; the state table is the package's opening essay)."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any

from .. import flow
from ..base import WRITES_AFTER_LOSS_BEFORE_WARNING, is_buffered
from .closing import Closing
from .common import (_HANDSHAKE, _WRAPPED, _EOF_HELD, _FLUSHING, _SHUTDOWN, _CLOSED, _DATA_STATES, _WANT, SSL_HANDSHAKE_TIMEOUT,
                     SSL_SHUTDOWN_TIMEOUT, _App, _check_timeout, _default_context,
                     _PLAIN_BUFFER_SIZE, _shared_buffers, logger)
from .transport import SSLTransport


class TLSProtocol(Closing, asyncio.BufferedProtocol):
    """The raw transport's protocol: runs the TLS state machine for one connection.

    ``waiter`` (a Future, or None) gets None once the handshake completes, or the exception
    that ended it; on failure the raw transport is closed. ``app_transport`` is what the
    application uses. ``call_connection_made=False`` is for ``start_tls``, where the
    application protocol already has its connection.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, app_protocol: asyncio.BaseProtocol,
                 sslcontext: ssl.SSLContext | None, waiter: asyncio.Future | None,
                 server_side: bool = False, server_hostname: str | None = None,
                 ssl_handshake_timeout: float | None = None,
                 ssl_shutdown_timeout: float | None = None, *,
                 call_connection_made: bool = True) -> None:
        self._handshake_timeout = _check_timeout(
            "ssl_handshake_timeout", ssl_handshake_timeout, SSL_HANDSHAKE_TIMEOUT)
        self._shutdown_timeout = _check_timeout(
            "ssl_shutdown_timeout", ssl_shutdown_timeout, SSL_SHUTDOWN_TIMEOUT)
        if not sslcontext:
            sslcontext = _default_context(server_side)
        self._loop = loop
        self._waiter = waiter
        self._sslcontext = sslcontext
        self._server_side = server_side
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        # Wrapping here, not at connection_made, makes a bad hostname setup fail in the
        # caller (e.g. "check_hostname requires server_hostname") instead of in a callback.
        self._sslobj = sslcontext.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side,
            server_hostname=None if server_side else (server_hostname or None))
        self._state = _HANDSHAKE
        #: start_tls's application already has its connection: it is owed no
        #: connection_made, but exactly one connection_lost.
        self._app_phase = _App.WAITING if call_connection_made else _App.CONNECTED
        self._transport: asyncio.Transport | None = None
        self._extra: dict[str, Any] = {"sslcontext": sslcontext}
        self._raw_view, self._plain_view = _shared_buffers()
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._handshake_started = 0.0
        self._shutdown_timer: asyncio.TimerHandle | None = None
        #: Application writes OpenSSL could not take yet: before the handshake completes,
        #: and while a TLS 1.2 renegotiation waits for the peer (SSLObject.write raises
        #: SSLWantReadError then). Retried in order after each read; see _write_backlog.
        self._pending_writes: deque[bytes] = deque()
        self._pending_size = 0
        # The flags that are not states (see "The application's lifecycle and the flags").
        self._app_reading_paused = False
        self._app_writing_paused = False
        self._raw_writing_paused = False
        self._read_scheduled = False
        self._delivering = False
        self._closed_writes = 0
        self._app_protocol: asyncio.BaseProtocol = app_protocol
        self._app_buffered = is_buffered(app_protocol)
        self.app_transport = SSLTransport(loop, self)

    def __repr__(self) -> str:
        return f"<TLSProtocol {self._state.value} server_side={self._server_side}>"

    # ------------------------------------------------------------------ raw transport side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._handshake_started = self._loop.time()
        self._handshake_timer = self._loop.call_later(
            self._handshake_timeout, self._on_handshake_timeout)
        self._do_handshake()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._raw_view

    def buffer_updated(self, nbytes: int) -> None:
        self._incoming.write(self._raw_view[:nbytes])
        self._process_incoming()

    def data_received(self, data: bytes) -> None:
        """For raw transports that deliver bytes rather than fill our buffer."""
        self._incoming.write(data)
        self._process_incoming()

    def eof_received(self) -> bool | None:
        """The peer closed its side without (or after) close_notify."""
        state = self._state
        if state is _HANDSHAKE:
            # asyncio and uvloop fail the handshake with a bare ConnectionResetError().
            self._fail_handshake(ConnectionResetError())
        elif state is _WRAPPED or state is _EOF_HELD:
            if self._app_reading_paused or self._read_scheduled:
                # Plaintext may still wait in the BIOs: keep the raw transport open until
                # the application resumes reading and has had it, then deliver the EOF.
                self._state = _EOF_HELD
                return True
            self._deliver_raw_eof()
        else:
            self._state = _CLOSED
        # Returning None lets the raw transport close itself: TLS has no half-close.
        return None

    def _deliver_raw_eof(self) -> None:
        """What the BIOs still hold, then eof_received (unless that ended the connection)."""
        self._read_app_data()
        if self._state in _DATA_STATES:
            self._state = _CLOSED
            self._app_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self._state = _CLOSED
        self._drop_held_writes()
        self._mark_app_closed()
        # Whatever ended it, a handshake still awaited must not be awaited forever.
        self._wake_waiter(exc or ConnectionResetError("Connection lost during SSL handshake"))
        self._app_connection_lost(exc)
        # Break the cycles (app protocol <-> app transport <-> this) so a finished
        # connection, and the SSLContext it holds, is freed without waiting for the gc.
        self._transport = None
        self.app_transport = None  # type: ignore[assignment]
        self._app_protocol = None  # type: ignore[assignment]

    def _mark_app_closed(self) -> None:
        if self.app_transport is not None:
            self.app_transport._closed = True

    def pause_writing(self) -> None:
        self._raw_writing_paused = True
        if self._app_phase is not _App.WAITING:
            self._pause_app_writing()

    def resume_writing(self) -> None:
        self._raw_writing_paused = False
        if self._app_writing_paused:
            self._app_writing_paused = False
            flow.notify(self._loop, self.app_transport, self._app_protocol, "resume_writing")

    def _pause_app_writing(self) -> None:
        if self._app_writing_paused:
            return
        self._app_writing_paused = True
        flow.notify(self._loop, self.app_transport, self._app_protocol, "pause_writing")

    # ------------------------------------------------------------------ handshake

    def _do_handshake(self) -> None:
        try:
            self._sslobj.do_handshake()
        except _WANT:
            self._flush()
            return
        except Exception as exc:
            self._fail_handshake(exc)
            return
        self._handshake_done()

    def _handshake_done(self) -> None:
        self._cancel_handshake_timer()
        sslobj = self._sslobj
        try:
            peercert = sslobj.getpeercert()
        except Exception as exc:  # pragma: no cover - getpeercert fails only on bad certs
            self._fail_handshake(exc)
            return
        self._extra.update(peercert=peercert, cipher=sslobj.cipher(),
                           compression=sslobj.compression(), ssl_object=sslobj)
        self._state = _WRAPPED
        if self._loop.get_debug():
            took = self._loop.time() - self._handshake_started
            logger.debug("%r: SSL handshake took %.1f ms", self, took * 1e3)
        if self._pending_writes:
            try:
                self._write_backlog()
            except ssl.SSLError as exc:
                self._fail_handshake(exc)
                return
        self._flush()
        if self._app_phase is _App.WAITING:
            self._app_phase = _App.CONNECTED
            self._app_protocol.connection_made(self.app_transport)
            if self._raw_writing_paused:
                self._pause_app_writing()
        self._wake_waiter(None)
        if self._app_reading_paused and self._transport is not None:
            self._transport.pause_reading()
        # The first application data may have come with the peer's last handshake message.
        # It is delivered from a later callback, after the code awaiting the handshake
        # (start_tls's caller) has run and switched to the new transport: delivered now, a
        # server that answers from data_received would answer on the plain transport it
        # still holds, and the peer would read plaintext as TLS (WRONG_VERSION_NUMBER).
        self._schedule_read()

    def _fail_handshake(self, exc: BaseException) -> None:
        """End the connection: send OpenSSL's alert if it wrote one, then close."""
        self._cancel_timers()
        self._state = _CLOSED
        self._mark_app_closed()
        transport = self._transport
        if transport is not None:
            alert = self._outgoing.read()
            if alert and not transport.is_closing():
                transport.write(alert)
            transport.close()
        if self._loop.get_debug():
            if isinstance(exc, ssl.CertificateError):
                message = "SSL handshake failed on verifying the certificate"
            else:
                message = "SSL handshake failed"
            logger.debug("%r: %s", self, message, exc_info=exc)
        self._wake_waiter(exc)

    def _on_handshake_timeout(self) -> None:
        self._handshake_timer = None
        if self._state is not _HANDSHAKE:
            return
        exc = ConnectionAbortedError(
            f"SSL handshake is taking longer than {self._handshake_timeout} seconds: "
            f"aborting the connection")
        self._state = _CLOSED
        self._mark_app_closed()
        if self._transport is not None:
            self._transport.abort()
        self._wake_waiter(exc)

    def _wake_waiter(self, exc: BaseException | None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)

    # ------------------------------------------------------------------ incoming

    def _process_incoming(self) -> None:
        try:
            state = self._state
            if state is _WRAPPED or state is _EOF_HELD:
                if not self._app_reading_paused and not self._read_scheduled:
                    self._read_app_data()
            elif state is _HANDSHAKE:
                if self._transport is not None:
                    self._do_handshake()
            elif state is _SHUTDOWN:
                self._continue_shutdown()
            elif state is _FLUSHING:
                self._finish_backlog()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # The application's callback raised: report it and drop the connection, as the
            # standard loop does, rather than leave a half-read TLS stream open.
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _finish_backlog(self) -> None:
        """FLUSHING: drive the renegotiation until the held writes are out."""
        try:
            peer_closed = self._drain_until_close_notify()   # the application closed
            if not peer_closed:
                self._write_backlog()
        except ssl.SSLError as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")
            return
        self._flush()
        if peer_closed:
            self._close_raw(None)
        elif not self._pending_writes:
            self._shutdown()

    def _read_app_data(self) -> None:
        """Decrypt everything the incoming BIO holds and hand it to the application."""
        self._delivering = True
        try:
            if self._app_buffered:
                eof = self._read_into_app_buffers()
            else:
                eof = self._read_copied()
            if self._pending_writes and self._state in _DATA_STATES:
                # What was read may be the handshake message a renegotiation waited for.
                self._write_backlog()
        except ssl.SSLError as exc:
            self._delivering = False
            self._fatal_error(exc, "Fatal error on SSL protocol")
            return
        except BaseException:
            self._delivering = False
            raise
        self._delivering = False
        state = self._state
        if state is _SHUTDOWN:
            # The application called close() from inside data_received, and the close_notify
            # is owed: what it wrote before is in the outgoing BIO, ahead of the one sent now.
            self._send_close_notify()
        elif eof:
            self._app_eof()
            self._start_shutdown()
        elif state is _FLUSHING and not self._pending_writes:
            self._flush()
            self._shutdown()
        else:
            self._flush()

    def _read_copied(self) -> bool:
        """Plain protocols: one data_received per batch of records. Returns True on EOF."""
        view = self._plain_view
        sslobj = self._sslobj
        read = sslobj.read
        incoming = self._incoming
        size = _PLAIN_BUFFER_SIZE
        filled = 0
        eof = False
        while True:
            try:
                count = read(size - filled, view[filled:])
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                eof = True
                break
            if not count:
                eof = True
                break
            filled += count
            if not incoming.pending and not sslobj.pending():
                # Every record is consumed: skip the read that would only raise WantRead.
                break
            if filled == size:
                self._app_protocol.data_received(view.tobytes())
                filled = 0
                if self._app_reading_paused or self._state not in _DATA_STATES:
                    return False
        if filled:
            self._app_protocol.data_received(view[:filled].tobytes())
        return eof and self._state in _DATA_STATES

    def _read_into_app_buffers(self) -> bool:
        """BufferedProtocol: decrypt straight into the application's buffers."""
        protocol = self._app_protocol
        read = self._sslobj.read
        while not self._app_reading_paused and self._state in _DATA_STATES:
            buf = memoryview(protocol.get_buffer(-1))  # type: ignore[attr-defined]
            size = buf.nbytes
            if not size:
                raise RuntimeError("get_buffer() returned an empty buffer")
            filled = 0
            eof = False
            while filled < size:
                try:
                    count = read(size - filled, buf[filled:] if filled else buf)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    eof = True
                    break
                if not count:
                    eof = True
                    break
                filled += count
            if filled:
                protocol.buffer_updated(filled)  # type: ignore[attr-defined]
            if eof:
                return self._state in _DATA_STATES
            if filled < size:
                return False
        return False

    def _app_eof(self) -> None:
        """close_notify or EOF from the peer: the application hears eof_received once.

        Also on the side that closed first, when the peer's answering close_notify arrives:
        the standard loop does that too, and protocols written for it count on it.
        """
        if self._app_phase is not _App.CONNECTED:
            return
        self._app_phase = _App.EOF
        try:
            keep_open = self._app_protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Error calling eof_received()")
            return
        if keep_open:
            logger.warning("returning true from eof_received() has no effect when using ssl")

    # ------------------------------------------------------------------ outgoing

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        state = self._state
        if state is _WRAPPED or state is _EOF_HELD:
            if self._pending_writes:
                self._queue_write(data)     # behind what a renegotiation holds back
                return
            try:
                self._sslobj.write(data)
            except ssl.SSLWantReadError:
                # A renegotiation is under way and OpenSSL needs the peer's next message:
                # keep the bytes, in order, and retry once more has been read. OpenSSL
                # may have taken part of them; the retry with the same bytes completes it.
                self._queue_write(data)
            except ssl.SSLError as exc:
                self._fatal_error(exc, "Fatal error on SSL protocol")
                return
            if not self._delivering:
                self._flush()
        elif state is _HANDSHAKE:
            self._queue_write(data)
        else:
            if self._closed_writes >= WRITES_AFTER_LOSS_BEFORE_WARNING:
                logger.warning("SSL connection is closed")
            self._closed_writes += 1

    def _queue_write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending_writes.append(bytes(data))
        self._pending_size += len(data)
        # Bytes held back count toward the application's write limits, as buffered ones do.
        transport = self._transport
        if (transport is not None and self._app_phase is not _App.WAITING
                and not self._app_writing_paused
                and self._pending_size > transport.get_write_buffer_limits()[1]):
            self._pause_app_writing()

    def _write_backlog(self) -> None:
        """Hand held-back writes to OpenSSL, in order, until it asks to read again."""
        pending = self._pending_writes
        write = self._sslobj.write
        while pending:
            try:
                write(pending[0])
            except ssl.SSLWantReadError:
                return
            self._pending_size -= len(pending.popleft())
        self._pending_size = 0
        if self._app_writing_paused and not self._raw_writing_paused:
            self._app_writing_paused = False
            flow.notify(self._loop, self.app_transport, self._app_protocol, "resume_writing")

    def _drop_held_writes(self) -> None:
        self._pending_writes.clear()
        self._pending_size = 0

    def _flush(self) -> None:
        """Hand all ciphertext OpenSSL produced to the raw transport in one write."""
        if self._outgoing.pending:
            data = self._outgoing.read()
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.write(data)

    # ------------------------------------------------------------------ app transport calls

    def _pause_reading(self) -> None:
        self._app_reading_paused = True
        if self._transport is not None and self._state in _DATA_STATES:
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self._app_reading_paused:
            return
        self._app_reading_paused = False
        state = self._state
        if self._transport is not None and (state is _WRAPPED or state is _FLUSHING):
            self._transport.resume_reading()
        # Plaintext may already sit in the BIOs; deliver it from a fresh callback, as a
        # resumed raw transport would, not from inside the caller's resume_reading().
        self._schedule_read()

    def _schedule_read(self) -> None:
        """Read what the BIOs hold from a loop callback of its own, in the connection's
        context (never the context of whoever called resume_reading)."""
        if not self._read_scheduled:
            self._read_scheduled = True
            context = getattr(self._transport, "_context", None)
            self._loop.call_soon(self._read_after_resume, context=context)

    def _read_after_resume(self) -> None:
        self._read_scheduled = False
        state = self._state
        if state not in _DATA_STATES or self._app_reading_paused:
            return
        try:
            if state is _EOF_HELD:
                self._deliver_raw_eof()
                if self._transport is not None:
                    self._transport.close()
            else:
                self._read_app_data()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._extra:
            return self._extra[name]
        if self._transport is not None:
            return self._transport.get_extra_info(name, default)
        return default



"""TLS as a protocol layered over any byte-stream transport, through ssl.MemoryBIO.

Why a protocol and not a socket wrapper: the raw transport (TCP, Unix, or anything else with
the asyncio Transport API) keeps doing what it is good at — reading, buffering writes, flow
control — and TLS becomes a pure transformation in between. :class:`TLSProtocol` sits on the
raw transport as its protocol; ciphertext that arrives goes into an incoming ``MemoryBIO``,
OpenSSL turns it into plaintext for the application, and plaintext the application writes
comes back out of an outgoing ``MemoryBIO`` as ciphertext for the raw transport.
:class:`SSLTransport` is the face the application sees.

The shape of the work, per direction:

- reading: the raw transport fills one reused buffer (``get_buffer``/``buffer_updated``) and
  the whole chunk goes into the incoming BIO at once; then ``SSLObject.read`` is drained in
  one loop into a second reused buffer, and the application gets one ``data_received`` per
  chunk of ciphertext (or its own buffers, for a BufferedProtocol);
- writing: plaintext is encrypted at once and the ciphertext handed to the raw transport.
  While this module is itself calling into the application (inside ``data_received``), the
  ciphertext is held and sent with one raw write when the application returns, so an echo
  server that answers each message costs one raw write per chunk read, not per message.

Flow control needs almost no buffer of its own: ciphertext lives in the raw transport's write
buffer, so its pause_writing/resume_writing are forwarded to the application, and the
application's pause_reading/resume_reading pause the raw transport. The one exception is a
TLS 1.2 renegotiation: while OpenSSL cannot encrypt, application writes are held back in
order (they count toward pausing the writer) and go out once the renegotiation completes.

Closing follows TLS: ``close()`` sends close_notify and waits (at most
``ssl_shutdown_timeout``) for the peer's, then closes the raw transport, which flushes what
is still buffered; ``abort()`` drops everything at once.

The state table
---------------

The TLS session is in exactly one of six states (``_State``). One enum serves both
directions because TLS has no half-close: a close_notify or a raw EOF ends the session, so
the read side and the write side cannot move independently. The two states that look like
one side waiting for the other are states of their own: EOF_HELD (the peer is gone, the
application has not read everything yet) and FLUSHING (the application closed, OpenSSL has
not taken everything yet).

- HANDSHAKE: OpenSSL negotiates. Application writes wait in ``_pending_writes`` and are
  encrypted once the handshake is done. Under start_tls the application already has its
  connection; otherwise it gets connection_made when the handshake completes.
- WRAPPED: application data flows both ways. A write is encrypted at once; it waits in
  ``_pending_writes`` only while a TLS 1.2 renegotiation makes OpenSSL refuse it
  (SSLWantReadError), and goes out, in order, once a read brings the peer's next message.
- EOF_HELD: the peer closed TCP without a close_notify while the application was not taking
  data (reading paused, or a resumed read still queued). The raw transport stays open (its
  eof_received returned True) so that the plaintext still in the BIOs reaches the
  application when it reads again; after that it hears eof_received and the connection
  closes. Writes still go out. A close() here ends the connection at once: unread plaintext
  is dropped, and so is anything a renegotiation held back (the peer can no longer answer).
- FLUSHING: close() came while a renegotiation held writes back. close_notify has to follow
  them, so incoming records drive the renegotiation, their application data discarded, until
  the backlog is out; then SHUTDOWN. Later writes are dropped.
- SHUTDOWN: our close_notify is sent (or owed: see "Re-entrancy"); incoming records are
  discarded until the peer's close_notify, then the application hears eof_received (the
  standard loop tells the closing side too) and the raw transport is closed, which flushes
  what it still buffers.
- CLOSED: the raw transport is closed or closing; its connection_lost ends everything.

Transitions (every state also goes to CLOSED on abort(), a fatal error or the raw
transport's connection_lost)::

    HANDSHAKE  handshake done                                    -> WRAPPED
    HANDSHAKE  handshake failed or timed out, raw EOF, close()    -> CLOSED
    WRAPPED    close(), or the peer's close_notify read           -> SHUTDOWN
    WRAPPED    the same while a renegotiation holds writes back   -> FLUSHING
    WRAPPED    raw EOF while the application is not reading       -> EOF_HELD
    WRAPPED    raw EOF otherwise (the rest is delivered at once)  -> CLOSED
    EOF_HELD   the application read the rest; or close()          -> CLOSED
    FLUSHING   the held writes went out                           -> SHUTDOWN
    FLUSHING   the peer's close_notify, raw EOF, shutdown timeout -> CLOSED
    SHUTDOWN   the peer's close_notify, raw EOF, shutdown timeout -> CLOSED

What each event does, state by state:

- Ciphertext arrives (``buffer_updated``/``data_received``). HANDSHAKE: drives the handshake.
  WRAPPED, EOF_HELD: decrypted and delivered, unless the application paused reading or a
  resumed read is queued (it then waits in the incoming BIO); a renegotiation message
  releases held writes; a close_notify gives eof_received, then acts as close(). FLUSHING:
  drives the renegotiation and the held writes out. SHUTDOWN: discarded up to the peer's
  close_notify. CLOSED: ignored.
- Raw EOF (``eof_received``). HANDSHAKE: the handshake fails with ConnectionResetError.
  WRAPPED, EOF_HELD: to EOF_HELD while the application is not reading (the raw transport is
  kept open); otherwise the rest is delivered, then eof_received. Elsewhere: CLOSED. Outside
  EOF_HELD the raw transport then closes itself.
- Application write(). HANDSHAKE: held. WRAPPED, EOF_HELD: encrypted and handed to the raw
  transport (in one batch at the end of a delivery; held behind a renegotiation). FLUSHING,
  SHUTDOWN, CLOSED: dropped, and counted: from the sixth on, each logs a warning.
- Application close(). HANDSHAKE: as abort(). WRAPPED: starts the shutdown timer; SHUTDOWN or
  FLUSHING as above, and the raw transport resumes reading if the application had paused it
  (the peer's close_notify, or its renegotiation messages, must be read). EOF_HELD: our
  close_notify is sent and the raw transport closed. Elsewhere: nothing more to do.
- Application abort(), or a fatal error (OpenSSL fails while reading, writing or closing; an
  application callback this module made raises): CLOSED, held writes dropped, the raw
  transport aborted. A fatal error goes to the exception handler (an OSError only to the
  debug log) and the application hears connection_lost(exc), the handshake's waiter exc.
- Handshake timeout (HANDSHAKE only): CLOSED, raw transport aborted, the waiter gets
  ConnectionAbortedError. Shutdown timeout (FLUSHING, SHUTDOWN): aborted as above, with
  TimeoutError.
- Raw connection_lost, in any state: CLOSED; held writes dropped; a waiter still pending gets
  the error (ConnectionResetError without one); the application hears connection_lost if it
  had its connection; the references between the layers are dropped.
- Application pause_reading(): noted; in WRAPPED, EOF_HELD and FLUSHING the raw transport
  pauses too, and delivery stops after the current chunk. resume_reading(): in WRAPPED and
  FLUSHING the raw transport resumes (not in EOF_HELD: it has nothing left to read, and would
  report its EOF again); what the BIOs hold is delivered from a fresh callback, in EOF_HELD
  followed by the held EOF.
- Raw pause_writing()/resume_writing(): forwarded to the application once it has its
  connection. Held writes count too: past the raw transport's high-water mark the
  application is paused, and resumed when they are out, unless the raw transport is paused.

The application's lifecycle and the flags
-----------------------------------------

Orthogonal to the session, ``_App`` says which once-only callbacks the application has had,
in order: WAITING (no connection_made yet; start_tls starts at CONNECTED), CONNECTED, EOF
(eof_received was called), LOST (connection_lost is scheduled). Only an application that had
its connection hears eof_received or connection_lost, each at most once.

Five flags remain, each about something the session state does not decide:
``_app_reading_paused`` (the application's pause_reading), ``_app_writing_paused`` (we told
it pause_writing), ``_raw_writing_paused`` (the raw transport told us), ``_read_scheduled`` (a
``_read_after_resume`` callback is queued: until it runs, arriving plaintext waits, so data
is delivered in order from that callback) and ``_delivering`` (this module is inside the
application's data_received / get_buffer / buffer_updated). The application transport's own
``_closed`` (is_closing()) is set by close(), abort() and every teardown; it is not derived
from the state because a raw EOF delivered at once is CLOSED before the transport closes
(inside eof_received is_closing() is still False, as on the standard loop).

Re-entrancy
-----------

The application may call any method of its transport from any callback. What this module
calls synchronously, and what then happens:

- connection_made (from the handshake's last step, inside a raw read): anything goes; the
  waiter is woken after it returns, and the first application data comes from a later
  callback, so start_tls's caller has switched to the new transport before it answers.
- data_received, get_buffer, buffer_updated (``_delivering``): write() is encrypted at once,
  but its ciphertext stays in the outgoing BIO and goes out in one raw write when the call
  returns. close() moves to SHUTDOWN at once (delivery stops, later writes are dropped) but
  the close_notify is *owed*: it is sent when the call returns, after what was written
  before, so the application never hears eof_received from inside its own data_received.
  pause_reading() stops delivery after the current chunk; abort() ends it.
- eof_received (never inside a delivery): anything; writes go out at once.
- pause_writing/resume_writing (through flow.notify: what they raise is reported, not fatal).
- connection_lost: always from its own loop callback, exactly once.

After each such call the code re-reads ``_state`` instead of trusting what it saw before.

Context
-------

Every application callback comes from one of the raw transport's callbacks or from a
``call_soon`` in the raw transport's ``_context`` (when it has one), so it runs in the
connection's context, as base.py requires: ``resume_reading()`` never runs the delivery in
its caller's context. The exception is base.py's too: pause_writing() runs inside the
write() that filled the raw transport's buffer, in the caller's context.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
import threading
import warnings
from collections import deque
from typing import Any

from . import flow
from .base import WRITES_AFTER_LOSS_BEFORE_WARNING, is_buffered

__all__ = ["TLSProtocol", "SSLTransport",
           "SSL_HANDSHAKE_TIMEOUT", "SSL_SHUTDOWN_TIMEOUT"]

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


class TLSProtocol(asyncio.BufferedProtocol):
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

    # ------------------------------------------------------------------ closing

    def _start_shutdown(self) -> None:
        """close(), or the peer's close_notify read: send ours, after any held writes."""
        state = self._state
        self._mark_app_closed()
        if state is _HANDSHAKE:
            self._abort(None)
        elif state is _EOF_HELD:
            # The peer already closed its side (no close_notify will come): what the
            # application never read is dropped, and the connection ends now.
            self._drop_held_writes()
            self._flush()
            self._send_close_notify_only()
            self._close_raw(None)
        elif state is _WRAPPED or state is _FLUSHING:
            if self._shutdown_timer is None:
                self._shutdown_timer = self._loop.call_later(
                    self._shutdown_timeout, self._on_shutdown_timeout)
            if not self._pending_writes:
                self._shutdown()
                return
            # A renegotiation holds writes back: close_notify goes after them (see
            # _finish_backlog), within the same shutdown timeout.
            self._state = _FLUSHING
            if self._transport is not None and self._app_reading_paused:
                self._transport.resume_reading()

    def _shutdown(self) -> None:
        """Nothing is held back: our close_notify goes out, then we wait for the peer's."""
        self._state = _SHUTDOWN
        if self._transport is not None and self._app_reading_paused:
            # The peer's close_notify has to be read even if the application stopped reading.
            self._transport.resume_reading()
        if not self._delivering:
            self._send_close_notify()
        # else: close() came from inside data_received; _read_app_data sends it on return.

    def _send_close_notify_only(self) -> None:
        try:
            self._sslobj.unwrap()
        except ssl.SSLError:
            pass
        self._flush()

    def _send_close_notify(self) -> None:
        """Our close_notify out; then wait for (or take, if buffered) the peer's."""
        try:
            self._sslobj.unwrap()
        except ssl.SSLWantReadError:
            # Our close_notify is written; the peer's may already be in the incoming BIO.
            self._flush()
            self._continue_shutdown()
            return
        except ssl.SSLError as exc:
            self._flush()
            self._close_raw(exc)
            return
        self._shutdown_complete()

    def _continue_shutdown(self) -> None:
        """Discard application data until the peer's close_notify, then close."""
        if not self._drain_until_close_notify():
            return
        try:
            self._sslobj.unwrap()
        except ssl.SSLError:
            pass
        self._shutdown_complete()

    def _shutdown_complete(self) -> None:
        """Both close_notify alerts are exchanged: tell the application, close the socket."""
        self._flush()
        self._app_eof()
        self._close_raw(None)

    def _drain_until_close_notify(self) -> bool:
        read = self._sslobj.read
        while True:
            try:
                if not read(65536):
                    return True
            except ssl.SSLWantReadError:
                return False
            except ssl.SSLZeroReturnError:
                return True
            except ssl.SSLError:
                return True

    def _close_raw(self, exc: BaseException | None) -> None:
        self._cancel_timers()
        self._state = _CLOSED
        transport = self._transport
        if transport is None:
            return
        if exc is None or isinstance(exc, OSError):
            if exc is not None and self._loop.get_debug():
                logger.debug("%r: SSL shutdown ended with %r", self, exc)
            transport.close()
        else:
            self._fatal_error(exc, "Fatal error on transport")

    def _on_shutdown_timeout(self) -> None:
        self._shutdown_timer = None
        if self._state is _SHUTDOWN or self._state is _FLUSHING:
            self._abort(TimeoutError("SSL shutdown timed out"))

    def _abort(self, exc: BaseException | None) -> None:
        self._cancel_timers()
        self._state = _CLOSED
        self._mark_app_closed()
        self._drop_held_writes()
        if self._transport is not None:
            if exc is not None:
                # The raw transport reports None on abort(); the application hears why.
                self._app_connection_lost(exc)
            self._transport.abort()

    def _app_connection_lost(self, exc: BaseException | None) -> None:
        """The one place the application's connection_lost is scheduled: at most once."""
        phase = self._app_phase
        if phase is _App.CONNECTED or phase is _App.EOF:
            self._app_phase = _App.LOST
            # In the connection's context, like every other callback the application gets
            # (they all come from the raw transport's callbacks).
            context = getattr(self._transport, "_context", None)
            self._loop.call_soon(self._app_protocol.connection_lost, exc, context=context)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler({
                "message": message, "exception": exc,
                "transport": self._transport, "protocol": self})
        elif self._loop.get_debug():
            logger.debug("%r: %s", self, message, exc_info=True)
        self._abort(exc)
        self._wake_waiter(exc)

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_handshake_timer()
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None

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

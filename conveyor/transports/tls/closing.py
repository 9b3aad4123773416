"""`TLSProtocol`'s closing half: close_notify both ways, the shutdown timeout, abort and
fatal errors, and the one exit to the application's connection_lost (see the state table
in the package's opening essay: FLUSHING, SHUTDOWN, CLOSED)."""

from __future__ import annotations

import ssl

from .common import (_HANDSHAKE, _WRAPPED, _EOF_HELD, _FLUSHING, _SHUTDOWN, _CLOSED, _App, logger)


class Closing:
    """Mixed into `TLSProtocol` (state lives there: see its __init__)."""

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


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
  While this package is itself calling into the application (inside ``data_received``), the
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
  application callback this package made raises): CLOSED, held writes dropped, the raw
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
is delivered in order from that callback) and ``_delivering`` (this package is inside the
application's data_received / get_buffer / buffer_updated). The application transport's own
``_closed`` (is_closing()) is set by close(), abort() and every teardown; it is not derived
from the state because a raw EOF delivered at once is CLOSED before the transport closes
(inside eof_received is_closing() is still False, as on the standard loop).

Re-entrancy
-----------

The application may call any method of its transport from any callback. What this package
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

from .common import SSL_HANDSHAKE_TIMEOUT, SSL_SHUTDOWN_TIMEOUT
from .protocol import TLSProtocol
from .transport import SSLTransport

__all__ = ["TLSProtocol", "SSLTransport",
           "SSL_HANDSHAKE_TIMEOUT", "SSL_SHUTDOWN_TIMEOUT"]

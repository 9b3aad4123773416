"""The TLS state table's rarer states, driven step by step (conveyor/transports/tls/).

FLUSHING (close() while a TLS 1.2 renegotiation holds writes back) and EOF_HELD (the peer's
TCP EOF while the application is not reading) depend on timing that real sockets rarely
produce, so here the TLS layer runs on a conveyor loop over an in-memory raw transport, with
an ``ssl.SSLObject`` peer over memory BIOs. A renegotiation is simulated by making the
connection's SSLObject refuse writes with SSLWantReadError, which is what OpenSSL does while
it waits for the peer's handshake message.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl

import pytest

from conveyor.transports.tls import TLSProtocol

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl command line tool for a certificate")


@pytest.fixture(scope="module")
def contexts(tmp_path_factory):
    from conveyor.bench.tls import _make_certificate
    cert, key = _make_certificate(str(tmp_path_factory.mktemp("tls-states")))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.maximum_version = ssl.TLSVersion.TLSv1_2   # renegotiation exists up to 1.2
    for path in (cert, key):
        os.unlink(path)
    return client, server


class MemoryRaw(asyncio.Transport):
    """The raw transport: what TLS writes is kept for the peer; closing ends it next turn."""

    def __init__(self, loop, protocol):
        super().__init__()
        self.loop, self.protocol = loop, protocol
        self.sent = bytearray()
        self.closing = self.reading_paused = False
        self.aborted = False

    def write(self, data):
        self.sent += data

    def close(self):
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self):
        self.aborted = True
        self.close()

    def is_closing(self):
        return self.closing

    def pause_reading(self):
        self.reading_paused = True

    def resume_reading(self):
        self.reading_paused = False

    def get_write_buffer_limits(self):
        return (16384, 65536)

    def get_write_buffer_size(self):
        return 0


class Refusing:
    """The connection's SSLObject, refusing writes while `renegotiating` (see the docstring)."""

    def __init__(self, sslobj):
        self.sslobj = sslobj
        self.renegotiating = False

    def write(self, data):
        if self.renegotiating:
            raise ssl.SSLWantReadError("renegotiation under way")
        return self.sslobj.write(data)

    def __getattr__(self, name):
        return getattr(self.sslobj, name)


class App(asyncio.Protocol):
    def __init__(self, loop):
        self.events: list = []
        self.data = b""
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.events.append("made")

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


class Connection:
    """One client TLS connection under test and the server peer it talks to."""

    def __init__(self, loop, contexts, shutdown_timeout=None):
        client, server = contexts
        self.loop = loop
        self.app = App(loop)
        self.tls = TLSProtocol(loop, self.app, client, None,
                               ssl_shutdown_timeout=shutdown_timeout)
        self.sslobj = self.tls._sslobj = Refusing(self.tls._sslobj)
        self.transport = self.tls.app_transport
        self.raw = MemoryRaw(loop, self.tls)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.peer = server.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.peer_got = b""
        self.peer_saw_close_notify = False
        self.tls.connection_made(self.raw)
        for _ in range(4):
            self.peer_reads()
            self.deliver()
        assert self.app.events == ["made"]

    def peer_reads(self):
        self.incoming.write(bytes(self.raw.sent))
        self.raw.sent.clear()
        if self.peer_saw_close_notify:
            return
        try:
            self.peer.do_handshake()
            while data := self.peer.read(65536):
                self.peer_got += data
        except ssl.SSLWantReadError:
            return
        except ssl.SSLZeroReturnError:
            pass
        self.peer_saw_close_notify = True

    def peer_writes(self, data):
        self.peer.write(data)

    def peer_closes(self):
        try:
            self.peer.unwrap()
        except ssl.SSLWantReadError:
            pass

    def deliver(self):
        """What the peer wrote reaches the TLS layer, as one raw read would bring it."""
        data = self.outgoing.read()
        if data:
            self.tls.data_received(data)

    def spin(self, turns=3):
        for _ in range(turns):
            self.loop.run_until_complete(asyncio.sleep(0))


def test_close_while_writes_are_held_sends_them_before_close_notify(loop, contexts):
    """WRAPPED -> FLUSHING -> SHUTDOWN -> CLOSED."""
    conn = Connection(loop, contexts)
    conn.sslobj.renegotiating = True
    conn.transport.write(b"held")
    assert conn.transport.get_write_buffer_size() == 4
    conn.transport.close()
    conn.transport.write(b"dropped")          # after close(): not sent
    conn.peer_reads()
    assert conn.peer_got == b"" and not conn.peer_saw_close_notify

    conn.sslobj.renegotiating = False          # the peer's next message completes it
    conn.peer_writes(b"discarded: the application has closed")
    conn.deliver()
    conn.peer_reads()
    assert conn.peer_got == b"held" and conn.peer_saw_close_notify
    assert not conn.raw.closing                # waits for the peer's close_notify

    conn.peer_closes()
    conn.deliver()
    assert loop.run_until_complete(conn.app.lost) is None
    assert conn.app.data == b""
    assert conn.app.events == ["made", "eof", "lost"]
    assert not conn.raw.aborted


def test_writes_held_past_the_shutdown_timeout_abort(loop, contexts):
    """FLUSHING is bounded by ssl_shutdown_timeout like SHUTDOWN."""
    conn = Connection(loop, contexts, shutdown_timeout=0.05)
    conn.sslobj.renegotiating = True
    conn.transport.write(b"never sent")
    conn.transport.close()
    exc = loop.run_until_complete(asyncio.wait_for(conn.app.lost, 5))
    assert isinstance(exc, TimeoutError)
    assert conn.raw.aborted
    conn.peer_reads()
    assert conn.peer_got == b""


def _eof_held(conn):
    """Data and the peer's FIN arrive after resume_reading(), before the resumed read runs."""
    conn.transport.pause_reading()
    conn.transport.resume_reading()            # the read it schedules has not run yet
    conn.peer_writes(b"before the FIN")
    conn.deliver()
    assert conn.tls.eof_received() is True     # the raw transport stays open
    assert conn.app.data == b"" and not conn.raw.closing


def test_raw_eof_while_not_reading_waits_for_the_application(loop, contexts):
    """WRAPPED -> EOF_HELD -> CLOSED: the data first, then eof_received."""
    conn = Connection(loop, contexts)
    _eof_held(conn)
    assert loop.run_until_complete(conn.app.lost) is None
    assert conn.app.data == b"before the FIN"
    assert conn.app.events == ["made", "eof", "lost"]


def test_close_while_eof_held_ends_at_once(loop, contexts):
    """EOF_HELD + close(): no close_notify will come, so nothing waits for one; unread data
    and writes a renegotiation held back are dropped."""
    conn = Connection(loop, contexts)
    _eof_held(conn)
    conn.transport.pause_reading()             # the resumed read finds the reader paused
    conn.spin()
    conn.sslobj.renegotiating = True
    conn.transport.write(b"held")
    conn.transport.close()
    assert conn.raw.closing and conn.transport.get_write_buffer_size() == 0
    assert loop.run_until_complete(conn.app.lost) is None
    conn.peer_reads()
    assert conn.peer_got == b"" and conn.peer_saw_close_notify
    assert conn.app.data == b"" and conn.app.events == ["made", "lost"]

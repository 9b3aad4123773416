"""The pieces the transport model test drives a real transport with, kept apart from the
state machine so that each reads on its own.

- A byte stream every writer draws from (`stream_bytes`): pseudo-random and far longer than
  any socket buffer, so a lost, repeated or reordered chunk shows up as a content mismatch
  at the exact offset, not only as a wrong total.
- Peers: the far end of the connection, driven by the test itself through plain non-blocking
  sockets, pipe fds and (for TLS) an `ssl.SSLObject` over two `ssl.MemoryBIO`s. A peer never
  goes through the transport code under test, so a transport bug cannot hide behind the same
  bug on the other side. The peer reads through `loop.add_reader` on the loop under test
  (public API) at a rate the model chooses, and checks every byte as it arrives.
- `Recorder`: the protocol under test. It records every callback, flags every ordering
  violation the moment it happens, and runs the "re-entrant actions" the model queued for
  each callback (a write from inside `resume_writing`, a close from inside `data_received`).
- Loop factories: conveyor on each poller backend, and stock asyncio for the differential.
- A throwaway self-signed certificate for TLS over loopback.

Everything here uses public asyncio APIs only: the transports under test are being rewritten,
and the model must hold for whatever shape they take.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import os
import random
import socket
import ssl
import struct
import tempfile
from typing import Any, Callable

import conveyor
import conveyor.poller

# ------------------------------------------------------------------------------ byte streams

#: Period of the stream: not a power of two and longer than any write the model makes, so a
#: chunk lost or repeated anywhere changes what follows it.
STREAM_PERIOD = (8 << 20) + 4099
_streams: dict[int, bytes] = {}


def _stream(seed: int) -> bytes:
    data = _streams.get(seed)
    if data is None:
        data = _streams[seed] = random.Random(seed).randbytes(STREAM_PERIOD)
    return data


def stream_bytes(offset: int, n: int, seed: int = 1) -> bytes:
    """Bytes [offset, offset+n) of the endless stream `seed`."""
    data = _stream(seed)
    start = offset % STREAM_PERIOD
    if start + n <= STREAM_PERIOD:
        return data[start:start + n]
    parts = []
    while n:
        take = min(n, STREAM_PERIOD - start)
        parts.append(data[start:start + take])
        n -= take
        start = 0
    return b"".join(parts)


def first_mismatch(offset: int, data: bytes, seed: int = 1) -> int | None:
    """The stream offset of the first byte of `data` (read at `offset`) that is wrong."""
    expected = stream_bytes(offset, len(data), seed)
    if expected == data:
        return None
    lo, hi = 0, len(data)
    while hi - lo > 1:  # binary search on equal prefixes
        mid = (lo + hi) // 2
        if expected[lo:mid] == data[lo:mid]:
            lo = mid
        else:
            hi = mid
    return offset + lo


# ------------------------------------------------------------------------------ loops

def loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """conveyor's default loop, conveyor on each other poller backend, and stock asyncio."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "conveyor": conveyor.new_event_loop}
    backends = conveyor.poller.available()
    for name in backends[1:]:
        factories[f"conveyor-{name}"] = (
            lambda name=name: conveyor.EventLoop(conveyor.poller.create(name)))
    factories["asyncio"] = asyncio.new_event_loop
    return factories


# ------------------------------------------------------------------------------ TLS

_tls: dict[str, Any] = {}


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(client context for the transport under test, server context for the peer)."""
    if not _tls:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                               critical=False)
                .sign(key, hashes.SHA256()))
        with tempfile.TemporaryDirectory() as directory:
            cert_path = os.path.join(directory, "cert.pem")
            key_path = os.path.join(directory, "key.pem")
            with open(cert_path, "wb") as f:
                f.write(cert.public_bytes(serialization.Encoding.PEM))
            with open(key_path, "wb") as f:
                f.write(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.load_cert_chain(cert_path, key_path)
            client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client.load_verify_locations(cert_path)
        _tls["server"], _tls["client"] = server, client
    return _tls["client"], _tls["server"]


# ------------------------------------------------------------------------------ peers

#: A read rate that means "everything there is".
ALL = 1 << 40


class Peer:
    """The far end of the connection, driven by the test.

    `received` counts the bytes of stream 1 (what the transport writes) that arrived, each
    checked on arrival; `sent` counts the bytes of stream 2 handed to the kernel (or, over
    TLS, to the TLS layer) for the transport to read. `eof` is set once the peer has seen
    the end of what the transport sends (EOF or a reset).
    """

    can_read = True     # the transport under test writes to this peer
    can_send = True     # ... and reads from it
    can_shutdown = False
    can_reset = False

    def __init__(self, fd: int, report: Callable[[str], None], changed: Callable[[], None]):
        self.fd = fd
        self.report = report
        self.changed = changed
        self.loop: asyncio.AbstractEventLoop | None = None
        self.received = 0
        self.sent = 0
        self.eof = False
        self.reset_seen = False
        self.alive = True
        self.wr_closed = False
        self.rate: int | None = None
        self._reading = False
        self._mismatch = False

    # -- subclasses supply the raw operations
    def _recv(self, n: int) -> bytes:
        raise NotImplementedError

    def _send(self, data: bytes) -> int:
        raise NotImplementedError

    def _close_fd(self) -> None:
        os.close(self.fd)

    # -- reading
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def set_rate(self, rate: int | None) -> None:
        """Read up to `rate` bytes per readiness event while the loop runs (None: don't)."""
        self.rate = rate
        self._update_reader()

    def _update_reader(self) -> None:
        want = self.alive and self.rate is not None and not self.eof and self.can_read_now()
        if want and not self._reading:
            self.loop.add_reader(self.fd, self._readable)
            self._reading = True
        elif not want and self._reading:
            self.loop.remove_reader(self.fd)
            self._reading = False

    def can_read_now(self) -> bool:
        return self.can_read

    def _readable(self) -> None:
        self.read(self.rate or 0)

    def read(self, budget: int) -> None:
        """Read up to `budget` bytes now, without blocking."""
        if not self.alive or self.eof or not self.can_read:
            return
        while budget > 0:
            try:
                chunk = self._recv(min(budget, 1 << 18))
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionResetError:
                self.reset_seen = True
                self._on_eof()
                break
            if not chunk:
                self._on_eof()
                break
            budget -= len(chunk)
            self._on_raw(chunk)
        self._update_reader()
        self.changed()

    def _on_raw(self, chunk: bytes) -> None:
        self._check(chunk)

    def _on_eof(self) -> None:
        self.eof = True

    def _check(self, data: bytes) -> None:
        if not self._mismatch:
            bad = first_mismatch(self.received, data)
            if bad is not None:
                self._mismatch = True
                self.report(f"peer received a wrong byte at stream offset {bad} "
                            f"(chunk of {len(data)} read at {self.received})")
        self.received += len(data)

    # -- sending
    def send(self, n: int) -> None:
        if not self.alive or self.wr_closed or not self.can_send:
            return
        try:
            self.sent += self._send(stream_bytes(self.sent, n, seed=2))
        except (BlockingIOError, InterruptedError):
            pass
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.changed()

    # -- ending
    def shutdown_wr(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close the peer's end (with whatever it has not read still unread)."""
        if not self.alive:
            return
        self.alive = False
        self._update_reader()
        self._close_fd()
        self.changed()

    def reset(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return (f"peer(alive={self.alive} received={self.received} eof={self.eof} "
                f"reset_seen={self.reset_seen} sent={self.sent} rate={self.rate} "
                f"wr_closed={self.wr_closed})")


class SocketPeer(Peer):
    """The other end of a stream socket (Unix socketpair or TCP loopback)."""

    can_shutdown = True

    def __init__(self, sock: socket.socket, report, changed):
        sock.setblocking(False)
        self.sock = sock
        self.can_reset = sock.family in (socket.AF_INET, socket.AF_INET6)
        super().__init__(sock.fileno(), report, changed)

    def _recv(self, n: int) -> bytes:
        return self.sock.recv(n)

    def _send(self, data: bytes) -> int:
        return self.sock.send(data)

    def _close_fd(self) -> None:
        self.sock.close()

    def shutdown_wr(self) -> None:
        if self.alive and not self.wr_closed:
            self.wr_closed = True
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:  # ENOTCONN: the transport has already reset the connection
                self.reset_seen = True
            self.changed()

    def reset(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
        if self.alive:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close()


class PipeReaderPeer(Peer):
    """The read end of a pipe whose write end the transport under test owns."""

    can_send = False

    def __init__(self, fd: int, report, changed):
        os.set_blocking(fd, False)
        super().__init__(fd, report, changed)

    def _recv(self, n: int) -> bytes:
        return os.read(self.fd, n)


class PipeWriterPeer(Peer):
    """The write end of a pipe whose read end the transport under test owns."""

    can_read = False

    def __init__(self, fd: int, report, changed):
        os.set_blocking(fd, False)
        super().__init__(fd, report, changed)

    def _send(self, data: bytes) -> int:
        return os.write(self.fd, data)


class TLSPeer(SocketPeer):
    """A TLS server end driven by the test: raw socket + ssl.SSLObject over memory BIOs.

    Ciphertext the TLS layer produces waits in `pending` until the socket takes it (a
    writer on the loop under test flushes it). On the transport's close_notify it answers
    with its own, as a well-behaved TLS peer does, so the transport's shutdown can finish.
    """

    can_shutdown = False

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, report, changed):
        super().__init__(sock, report, changed)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.handshaken = False
        self.tls_closed = False
        self.pending = bytearray()
        self._writing = False

    def _on_raw(self, chunk: bytes) -> None:
        self.incoming.write(chunk)
        self._progress()

    def _on_eof(self) -> None:
        self.incoming.write_eof()
        self._progress()
        self.eof = True

    def _progress(self) -> None:
        if not self.handshaken:
            try:
                self.tls.do_handshake()
                self.handshaken = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                self.report(f"TLS peer: handshake failed: {exc!r}")
        while self.handshaken and not self.tls_closed:
            try:
                data = self.tls.read(1 << 17)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._answer_close_notify()
                break
            except ssl.SSLError as exc:
                # A TLS stream cut short (transport aborted, peer reset) is not a bug; a
                # broken record while the stream is intact is.
                if not self.incoming.eof:
                    self.report(f"TLS peer: bad record: {exc!r}")
                self.tls_closed = True
                break
            if not data:  # SSLObject.read() returns b'' once close_notify arrived
                self._answer_close_notify()
                break
            self._check(data)
        self._flush()

    def _answer_close_notify(self) -> None:
        self.tls_closed = True
        try:
            self.tls.unwrap()
        except ssl.SSLError:
            pass

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.pending += data
        while self.pending and self.alive:
            try:
                n = self.sock.send(self.pending)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.pending.clear()  # the transport is gone; nothing will read this
                break
            del self.pending[:n]
        want = bool(self.pending) and self.alive
        if want and not self._writing:
            self.loop.add_writer(self.fd, self._writable)
            self._writing = True
        elif not want and self._writing:
            self.loop.remove_writer(self.fd)
            self._writing = False

    def _writable(self) -> None:
        self._flush()
        self.changed()

    def send(self, n: int) -> None:
        if not self.alive or self.tls_closed or not self.handshaken:
            return
        self.tls.write(stream_bytes(self.sent, n, seed=2))
        self.sent += n
        self._flush()
        self.changed()

    def close(self) -> None:
        if self.alive and self._writing:
            self.loop.remove_writer(self.fd)
            self._writing = False
        super().close()

    def describe(self) -> str:
        return (super().describe()[:-1] + f" handshaken={self.handshaken} "
                f"tls_closed={self.tls_closed} pending={len(self.pending)})")


# ------------------------------------------------------------------------------ protocol

#: The callbacks a re-entrant action can be queued on.
HOOKS = ("pause_writing", "resume_writing", "data", "eof")


class RecorderMixin:
    """The protocol under test: records callbacks, flags violations, runs queued actions.

    `machine` supplies `report(msg)`, `changed()`, `apply(action, where)` and the model's
    `reading_paused` / `close_called` / `abort_called` flags.
    """

    def _init_recorder(self, machine: Any, keep_open: bool) -> None:
        self.machine = machine
        self.keep_open = keep_open
        self.transport: Any = None
        self.made = 0
        self.lost = 0
        self.lost_exc: BaseException | None = None
        self.paused = False
        self.pauses = 0
        self.eof = False
        self.received = 0
        self.actions: dict[str, collections.deque] = {h: collections.deque() for h in HOOKS}
        self.history: list[str] = []
        self._mismatch = False

    def _enter(self, name: str) -> None:
        m = self.machine
        if len(self.history) < 200:
            self.history.append(name)
        if name != "connection_made" and not self.made:
            m.report(f"{name} before connection_made")
        if self.lost:
            m.report(f"{name} after connection_lost")
        m.changed()

    def _react(self, hook: str) -> None:
        queue = self.actions[hook]
        if queue:
            self.machine.apply(queue.popleft(), where=f"in {hook}")

    def connection_made(self, transport: Any) -> None:
        self._enter("connection_made")
        if self.made:
            self.machine.report("connection_made twice")
        self.made += 1
        self.transport = transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self._enter("connection_lost")
        self.lost += 1
        self.lost_exc = exc

    def pause_writing(self) -> None:
        self._enter("pause_writing")
        if self.paused:
            self.machine.report("pause_writing twice without resume_writing")
        self.paused = True
        self.pauses += 1
        self._react("pause_writing")

    def resume_writing(self) -> None:
        self._enter("resume_writing")
        if not self.paused:
            self.machine.report("resume_writing without pause_writing")
        self.paused = False
        self._react("resume_writing")

    def _on_data(self, data: bytes) -> None:
        self._enter("data_received")
        m = self.machine
        if not data:
            m.report("data_received with no bytes")
        if m.reading_paused:
            m.report("data_received while reading is paused")
        if self.eof:
            m.report("data_received after eof_received")
        if m.close_called or m.abort_called:
            m.report("data_received after close()/abort()")
        if not self._mismatch:
            bad = first_mismatch(self.received, data, seed=2)
            if bad is not None:
                self._mismatch = True
                m.report(f"protocol received a wrong byte at stream offset {bad}")
        self.received += len(data)
        self._react("data")

    def eof_received(self) -> bool:
        self._enter("eof_received")
        if self.eof:
            self.machine.report("eof_received twice")
        self.eof = True
        self._react("eof")
        return self.keep_open

    def describe(self) -> str:
        return (f"protocol(made={self.made} lost={self.lost} exc={self.lost_exc!r} "
                f"paused={self.paused} pauses={self.pauses} eof={self.eof} "
                f"received={self.received} last={self.history[-6:]})")


class Recorder(RecorderMixin, asyncio.Protocol):
    def __init__(self, machine: Any, keep_open: bool = False) -> None:
        self._init_recorder(machine, keep_open)

    def data_received(self, data: bytes) -> None:
        self._on_data(data)


class BufferedRecorder(RecorderMixin, asyncio.BufferedProtocol):
    """The same, through get_buffer/buffer_updated with a buffer of a chosen size."""

    def __init__(self, machine: Any, keep_open: bool = False, size: int = 65536) -> None:
        self._init_recorder(machine, keep_open)
        self.buffer = bytearray(size)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._on_data(bytes(self.buffer[:nbytes]))

"""TLS over ssl.MemoryBIO (conveyor/transports/tls/) with real sockets and real certificates.

A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate are
made once per session with the `cryptography` package. Every test runs on stock asyncio's
TCP transports (the TLS layer sits on any transport) and on conveyor's own; on conveyor the
connection is made through the public `ssl=` API (the factories in conveyor/net/).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
import threading

import shutil
import subprocess

import pytest

import conveyor
from conveyor.transports.tls import TLSProtocol, SSLTransport

from support import Accepted, run, wait_until

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # the openssl command line tool makes the same certificates
    x509 = None

TIMEOUT = 20


# ---------------------------------------------------------------------------- certificates

def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(subject: str, issuer_name: x509.Name, issuer_key, key, *, ca: bool,
           sans: list | None = None, usage=None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pair(directory, stem, cert, key) -> tuple[str, str]:
    cert_path = os.path.join(directory, f"{stem}.pem")
    key_path = os.path.join(directory, f"{stem}.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def _openssl_certs(directory: str) -> dict:
    """The same CA, server and client certificates, made with the openssl command."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec_key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=conveyor test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    leaves = {"server": ("localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                      "extendedKeyUsage=serverAuth\n"),
              "client": ("conveyor client", "extendedKeyUsage=clientAuth\n")}
    for stem, (common_name, extensions) in leaves.items():
        with open(os.path.join(directory, f"{stem}.ext"), "w") as f:
            f.write(extensions + "basicConstraints=critical,CA:FALSE\n"
                    "authorityKeyIdentifier=keyid\n")
        openssl("req", *ec_key, "-keyout", f"{stem}.key", "-out", f"{stem}.csr",
                "-subj", f"/CN={common_name}")
        openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{stem}.ext",
                "-out", f"{stem}.pem")
    path = lambda name: os.path.join(directory, name)  # noqa: E731
    return {"ca": path("ca.pem"),
            "server": (path("server.pem"), path("server.key")),
            "client": (path("client.pem"), path("client.key"))}


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("tls"))
    if x509 is None:
        if shutil.which("openssl") is None:
            pytest.skip("needs the cryptography package (pip install -e '.[test]') or the "
                        "openssl command line tool to make test certificates")
        return _openssl_certs(directory)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("conveyor test CA", _name("conveyor test CA"), ca_key, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue(
        "localhost", ca_cert.subject, ca_key, server_key, ca=False,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _issue("conveyor client", ca_cert.subject, ca_key, client_key, ca=False,
                         usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    ca_path, _ = _write_pair(directory, "ca", ca_cert, ca_key)
    server = _write_pair(directory, "server", server_cert, server_key)
    client = _write_pair(directory, "client", client_cert, client_key)
    return {"ca": ca_path, "server": server, "client": client}


def server_context(certs, *, require_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*certs["server"])
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs["ca"])
    return ctx


def client_context(certs, *, with_cert: bool = False, trust: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if trust:
        ctx.load_verify_locations(certs["ca"])
    if with_cert:
        ctx.load_cert_chain(*certs["client"])
    return ctx


# ---------------------------------------------------------------------------- loops

@pytest.fixture(params=["asyncio", "conveyor", "asyncio-ssl"])
def loop(request):
    """asyncio: conveyor's TLS layer over stock asyncio's TCP; conveyor: all conveyor;
    asyncio-ssl: stock asyncio's own TLS, the reference the other two must agree with."""
    loop = conveyor.new_event_loop() if request.param == "conveyor" else asyncio.new_event_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    loop.kind = request.param
    loop.tolerated = set()
    yield loop
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    errors = [e for e in errors if e.get("message") not in loop.tolerated]
    assert errors == [], errors


def _swallow(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


async def tls_server(loop, factory, ctx, *, handshake_waiters=None, failures_expected=False,
                     **kwargs):
    """A TLS server on 127.0.0.1, port 0: TLSProtocol over the loop's TCP transports.

    On asyncio the TLS layer is installed by hand; on conveyor through ``ssl=``.
    ``handshake_waiters`` (a list) collects each connection's handshake future (asyncio only).
    ``failures_expected``: the test makes handshakes fail on purpose. conveyor's Server
    reports each failed incoming handshake to the exception handler (stock asyncio does so
    only in debug mode), so those reports are not counted as unexpected there.
    """
    if failures_expected:
        loop.tolerated.add("Error on transport creation for incoming connection")
    if loop.kind != "asyncio":
        return await loop.create_server(factory, "127.0.0.1", 0, ssl=ctx, **kwargs)

    def make():
        waiter = loop.create_future()
        waiter.add_done_callback(_swallow)
        if handshake_waiters is not None:
            handshake_waiters.append(waiter)
        return TLSProtocol(loop, factory(), ctx, waiter, server_side=True, **kwargs)

    return await loop.create_server(make, "127.0.0.1", 0)


async def tls_connect(loop, factory, port, ctx, server_hostname="localhost", **kwargs):
    """Connect with TLS; returns (app_transport, app_protocol)."""
    if loop.kind != "asyncio":
        return await loop.create_connection(factory, "127.0.0.1", port, ssl=ctx,
                                            server_hostname=server_hostname, **kwargs)
    waiter = loop.create_future()
    app = factory()
    _raw, tls = await loop.create_connection(
        lambda: TLSProtocol(loop, app, ctx, waiter, False, server_hostname, **kwargs),
        "127.0.0.1", port)
    await waiter
    return tls.app_transport, app


def start_tls(loop, *args, **kwargs):
    """loop.start_tls, except that on stock asyncio it is conveyor's, to test that."""
    if loop.kind == "asyncio":
        return conveyor.net.tls.start_tls(loop, *args, **kwargs)
    return loop.start_tls(*args, **kwargs)


def port_of(server) -> int:
    return server.sockets[0].getsockname()[1]


async def close_server(server):
    server.close()
    await server.wait_closed()


class Recorder(asyncio.Protocol):
    """Keeps everything it is told, and lets a test await the data and the connection's end."""

    def __init__(self, echo: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.echo = echo
        self.transport = None
        self.data = bytearray()
        self.events: list[str] = []
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.eof = loop.create_future()
        self.lost_exc = None
        self.paused = 0
        self.resumed = 0
        self.received = asyncio.Event()

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(None)

    def data_received(self, data):
        assert isinstance(data, bytes)
        self.data += data
        self.received.set()
        if self.echo:
            self.transport.write(data)

    async def wait_for_data(self, size: int) -> bytes:
        """What has arrived, once it is at least `size` bytes."""
        await wait_until(lambda: len(self.data) >= size, f"{size} bytes",
                         wakeup=self.received)
        return bytes(self.data)

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_exc = exc
        self.lost.set_result(exc)

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1


# ---------------------------------------------------------------------------- basics

def test_echo_and_extra_info(loop, certs):
    async def main():
        server_protocols = []

        def factory():
            p = Recorder(echo=True)
            server_protocols.append(p)
            return p

        server = await tls_server(loop, factory, server_context(certs))
        ctx = client_context(certs)
        transport, client = await tls_connect(loop, Recorder, port_of(server), ctx)
        assert isinstance(transport, asyncio.Transport)
        assert client.events == ["made"]
        transport.write(b"hello ")
        transport.writelines([b"over ", bytearray(b"tls"), memoryview(b"!")])
        assert await client.wait_for_data(15) == b"hello over tls!"
        assert transport.get_extra_info("sslcontext") is ctx
        sslobj = transport.get_extra_info("ssl_object")
        assert isinstance(sslobj, ssl.SSLObject)
        assert sslobj.version() in ("TLSv1.2", "TLSv1.3")
        assert transport.get_extra_info("peercert")["subject"] == ((("commonName", "localhost"),),)
        assert transport.get_extra_info("cipher") == sslobj.cipher()
        assert transport.get_extra_info("compression") is None
        assert transport.get_extra_info("peername")[0] == "127.0.0.1"
        assert transport.get_extra_info("socket") is not None
        assert transport.get_extra_info("nope", 42) == 42
        assert not transport.can_write_eof()
        with pytest.raises(NotImplementedError):
            transport.write_eof()
        with pytest.raises(TypeError, match="data: expecting a bytes-like instance, got str"):
            transport.write("text")
        transport.close()
        assert transport.is_closing()
        assert await client.lost is None
        server_side = server_protocols[0]
        await server_side.lost
        assert server_side.events == ["made", "eof", "lost"]
        assert client.events == ["made", "eof", "lost"]
        await close_server(server)

    run(loop, main())


def test_timeout_arguments_validated(loop, certs):
    ctx = client_context(certs)
    for name in ("ssl_handshake_timeout", "ssl_shutdown_timeout"):
        for bad in (0, -1.5):
            with pytest.raises(ValueError, match=f"{name} should be a positive number, "
                                                 f"got {bad}"):
                TLSProtocol(loop, asyncio.Protocol(), ctx, None, False, "localhost",
                            **{name: bad})
    with pytest.raises(ValueError, match="Server side SSL needs a valid SSLContext"):
        TLSProtocol(loop, asyncio.Protocol(), None, None, server_side=True)
    tls = TLSProtocol(loop, asyncio.Protocol(), ctx, None, False, "localhost")
    assert tls._handshake_timeout == 60.0 and tls._shutdown_timeout == 30.0
    tls.app_transport._closed = True


# ---------------------------------------------------------------------------- verification

def test_wrong_hostname_rejected(loop, certs):
    async def main():
        waiters = []
        server = await tls_server(loop, Recorder, server_context(certs),
                                  handshake_waiters=waiters, failures_expected=True)
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            await tls_connect(loop, Recorder, port_of(server), client_context(certs),
                              server_hostname="wrong.example")
        if waiters:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await waiters[0]
        await close_server(server)

    run(loop, main())


def test_untrusted_certificate_rejected(loop, certs):
    async def main():
        server = await tls_server(loop, Recorder, server_context(certs), failures_expected=True)
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await tls_connect(loop, Recorder, port_of(server),
                              client_context(certs, trust=False))
        await close_server(server)

    run(loop, main())


def test_client_certificate_accepted(loop, certs):
    async def main():
        seen = []

        def factory():
            p = Recorder(echo=True)
            seen.append(p)
            return p

        server = await tls_server(loop, factory, server_context(certs, require_client_cert=True))
        transport, client = await tls_connect(loop, Recorder, port_of(server),
                                              client_context(certs, with_cert=True))
        transport.write(b"ping")
        assert await client.wait_for_data(4) == b"ping"
        peercert = seen[0].transport.get_extra_info("peercert")
        assert peercert["subject"] == ((("commonName", "conveyor client"),),)
        transport.close()
        await client.lost
        await seen[0].lost
        await close_server(server)

    run(loop, main())


def test_missing_client_certificate_rejected(loop, certs):
    async def main():
        waiters = []
        server = await tls_server(loop, Recorder, server_context(certs, require_client_cert=True),
                                  handshake_waiters=waiters, failures_expected=True)
        try:
            # TLS 1.3 lets the client finish its handshake before the server checks the
            # client certificate; then the server's alert ends the connection.
            transport, client = await tls_connect(loop, Recorder, port_of(server),
                                                  client_context(certs))
        except (ssl.SSLError, ConnectionError):
            pass
        else:
            exc = await client.lost
            # conveyor passes on the server's alert, so the client learns why; stock asyncio
            # drops the alert and its client sees a plain EOF.
            if loop.kind != "asyncio-ssl":
                assert isinstance(exc, (ssl.SSLError, ConnectionError))
            assert transport.is_closing()
        if waiters:
            with pytest.raises(ssl.SSLError, match="PEER_DID_NOT_RETURN_A_CERTIFICATE|"
                                                   "certificate"):
                await waiters[0]
        await close_server(server)

    run(loop, main())


# ---------------------------------------------------------------------------- stalled peers

def test_server_drops_half_handshake_at_timeout(loop, certs):
    """A client that sends half a ClientHello and stalls is dropped; its fd is closed."""
    async def main():
        waiters = []
        server = await tls_server(loop, Recorder, server_context(certs),
                                  handshake_waiters=waiters, failures_expected=True,
                                  ssl_handshake_timeout=0.3)
        sock = socket.create_connection(("127.0.0.1", port_of(server)))
        sock.setblocking(False)
        try:
            # A real ClientHello, cut short.
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = client_context(certs).wrap_bio(incoming, outgoing,
                                                 server_hostname="localhost")
            with pytest.raises(ssl.SSLWantReadError):
                obj.do_handshake()
            hello = outgoing.read()
            await loop.sock_sendall(sock, hello[:len(hello) // 2])
            start = loop.time()
            # The server closes the connection at the timeout: we read EOF or a reset.
            try:
                data = await loop.sock_recv(sock, 1024)
            except ConnectionResetError:
                data = b""
            assert data == b""
            assert 0.2 < loop.time() - start < 5
        finally:
            sock.close()
        if waiters:
            with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer "
                                                             "than 0.3 seconds"):
                await waiters[0]
        await close_server(server)

    run(loop, main())


def test_client_handshake_timeout_against_silent_server(loop, certs):
    async def main():
        accepted = []
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        try:
            async def accept():
                conn, _ = await loop.sock_accept(listener)
                accepted.append(conn)

            acceptor = asyncio.ensure_future(accept())
            start = loop.time()
            with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer"):
                await tls_connect(loop, Recorder, listener.getsockname()[1],
                                  client_context(certs), ssl_handshake_timeout=0.3)
            assert 0.2 < loop.time() - start < 5
            await acceptor
        finally:
            listener.close()
            for conn in accepted:
                conn.close()

    run(loop, main())


def test_garbage_from_client_is_refused(loop, certs):
    async def main():
        waiters = []
        server = await tls_server(loop, Recorder, server_context(certs),
                                  handshake_waiters=waiters, failures_expected=True)
        sock = socket.create_connection(("127.0.0.1", port_of(server)))
        sock.setblocking(False)
        try:
            await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
            try:
                while await loop.sock_recv(sock, 1024):
                    pass
            except ConnectionResetError:
                pass
        finally:
            sock.close()
        if waiters:
            with pytest.raises(ssl.SSLError):
                await waiters[0]
        await close_server(server)

    run(loop, main())


# ---------------------------------------------------------------------------- close_notify

def _blocking_tls_client(port, ctx, results):
    """A plain ssl.SSLSocket peer: reports whether the server's close was a close_notify."""
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        with ctx.wrap_socket(raw, server_hostname="localhost",
                             suppress_ragged_eofs=False) as tls:
            tls.sendall(b"x" * 1000)
            received = b""
            while True:
                chunk = tls.recv(65536)   # raises SSLEOFError on an EOF without close_notify
                if not chunk:
                    break
                received += chunk
            results["received"] = received
            results["clean"] = True
            tls.unwrap()                  # our close_notify back
    except Exception as exc:  # reported to the test thread
        results["error"] = exc


def test_close_notify_sent_and_received(loop, certs):
    async def main():
        class CloseAfterReply(Recorder):
            def data_received(self, data):
                super().data_received(data)
                if len(self.data) == 1000:
                    self.transport.write(b"reply" * 10000)
                    self.transport.close()

        protocols = Accepted(CloseAfterReply)
        server = await tls_server(loop, protocols, server_context(certs))
        results: dict = {}
        thread = threading.Thread(target=_blocking_tls_client,
                                  args=(port_of(server), client_context(certs), results))
        thread.start()
        try:
            exc = await (await protocols.nth(0)).lost
        finally:
            await loop.run_in_executor(None, thread.join, TIMEOUT)
        assert "error" not in results, results
        assert results["clean"] and results["received"] == b"reply" * 10000
        assert exc is None
        await close_server(server)

    run(loop, main())


def test_peer_close_notify_gives_eof_received(loop, certs):
    async def main():
        protocols = []

        def factory():
            protocols.append(Recorder())
            return protocols[-1]

        server = await tls_server(loop, factory, server_context(certs))

        def client():
            raw = socket.create_connection(("127.0.0.1", port_of(server)), timeout=TIMEOUT)
            with client_context(certs).wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"last words")
                tls.unwrap()              # close_notify; waits for the server's answer

        await loop.run_in_executor(None, client)
        await protocols[0].lost
        assert protocols[0].events == ["made", "eof", "lost"]
        assert protocols[0].data == b"last words"
        assert protocols[0].lost_exc is None
        await close_server(server)

    run(loop, main())


def test_abort_and_connection_lost_once(loop, certs):
    async def main():
        protocols = []

        def factory():
            protocols.append(Recorder())
            return protocols[-1]

        server = await tls_server(loop, factory, server_context(certs))
        transport, client = await tls_connect(loop, Recorder, port_of(server),
                                              client_context(certs))
        transport.write(b"dropped maybe")
        transport.abort()
        transport.abort()
        transport.close()
        assert await client.lost is None
        await protocols[0].lost
        await asyncio.sleep(0.05)   # a negative check: no callback may follow connection_lost
        assert client.events == ["made", "lost"]
        assert protocols[0].events.count("lost") == 1
        if loop.kind != "asyncio-ssl":   # stock asyncio raises AttributeError here
            transport.write(b"after close is ignored")
        await close_server(server)

    run(loop, main())


# ---------------------------------------------------------------------------- flow control

class Sink(Recorder):
    """Reads slowly: pauses its transport, resumes later, and counts."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.pauses = 0
        self.done = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self.data += data
        if len(self.data) >= self.expected and not self.done.done():
            self.done.set_result(None)
        elif self.pauses < 5 and len(self.data) > (self.pauses + 1) * 1_000_000:
            self.pauses += 1
            self.transport.pause_reading()
            assert not self.transport.is_reading()
            asyncio.get_running_loop().call_later(0.05, self.transport.resume_reading)


def test_large_transfer_both_ways_with_flow_control(loop, certs):
    size = 8 * 1024 * 1024
    payload_up = os.urandom(size)
    payload_down = os.urandom(size)

    async def main():
        sinks = Accepted(lambda: Sink(size))
        server = await tls_server(loop, sinks, server_context(certs))
        transport, client = await tls_connect(loop, lambda: Sink(size), port_of(server),
                                              client_context(certs))
        await (await sinks.nth(0)).made
        server_transport = sinks[0].transport
        transport.set_write_buffer_limits(high=64 * 1024)
        for offset in range(0, size, 256 * 1024):
            transport.write(payload_up[offset:offset + 256 * 1024])
            server_transport.write(payload_down[offset:offset + 256 * 1024])
        assert transport.get_write_buffer_size() > 64 * 1024
        assert client.paused >= 1
        await asyncio.gather(sinks[0].done, client.done)
        assert client.resumed >= 1
        assert hashlib.sha256(sinks[0].data).digest() == hashlib.sha256(payload_up).digest()
        assert hashlib.sha256(client.data).digest() == hashlib.sha256(payload_down).digest()
        assert sinks[0].pauses >= 1 and client.pauses >= 1
        transport.close()
        await client.lost
        await sinks[0].lost
        await close_server(server)

    run(loop, main(), timeout=60)


def test_pause_reading_reaches_raw_transport(loop, certs):
    async def main():
        protocols = Accepted(Recorder)
        server = await tls_server(loop, protocols, server_context(certs))
        transport, client = await tls_connect(loop, Recorder, port_of(server),
                                              client_context(certs))
        transport.pause_reading()
        assert not transport.is_reading()
        await (await protocols.nth(0)).made
        protocols[0].transport.write(b"held back")
        await asyncio.sleep(0.1)   # a negative check: nothing may arrive while paused
        assert client.data == b""
        transport.resume_reading()
        assert transport.is_reading()
        assert await client.wait_for_data(9) == b"held back"
        transport.close()
        await client.lost
        await protocols[0].lost
        await close_server(server)

    run(loop, main())


# ---------------------------------------------------------------------------- BufferedProtocol

class SmallBuffers(asyncio.BufferedProtocol):
    def __init__(self, expected: int) -> None:
        self.buffer = bytearray(1000)
        self.received = bytearray()
        self.expected = expected
        self.calls = 0
        self.done = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.calls += 1
        self.received += self.buffer[:nbytes]
        if len(self.received) == self.expected:
            self.done.set_result(None)

    def eof_received(self):
        pass

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_buffered_protocol_over_tls(loop, certs):
    if loop.kind == "asyncio-ssl":
        pytest.skip("stock asyncio (3.11-3.13) corrupts data for a BufferedProtocol over TLS "
                    "whose get_buffer() returns a bytearray: sslproto reads into "
                    "buf[offset:], which for a bytearray is a copy")
    payload = os.urandom(1024 * 1024 + 7)

    async def main():
        receivers = Accepted(lambda: SmallBuffers(len(payload)))
        server = await tls_server(loop, receivers, server_context(certs))
        transport, client = await tls_connect(loop, Recorder, port_of(server),
                                              client_context(certs))
        transport.write(payload)
        await (await receivers.nth(0)).done
        assert bytes(receivers[0].received) == payload
        assert receivers[0].calls >= len(payload) // 1000
        transport.close()
        await client.lost
        assert await receivers[0].lost is None
        await close_server(server)

    run(loop, main())


# ---------------------------------------------------------------------------- streams

def test_asyncio_streams_over_tls(loop, certs):
    async def main():
        async def handle(reader, writer):
            while line := await reader.readline():
                writer.write(line.upper())
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        handlers = []

        def server_factory():
            reader = asyncio.StreamReader(limit=1 << 20)
            protocol = asyncio.StreamReaderProtocol(reader, handle)
            handlers.append(protocol)
            return protocol

        server = await tls_server(loop, server_factory, server_context(certs))
        reader = asyncio.StreamReader()
        transport, protocol = await tls_connect(
            loop, lambda: asyncio.StreamReaderProtocol(reader), port_of(server),
            client_context(certs))
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        assert writer.get_extra_info("ssl_object") is not None
        for i in range(100):
            writer.write(b"line %d\n" % i)
            await writer.drain()
            assert await reader.readline() == b"LINE %d\n" % i
        big = b"y" * 300_000 + b"\n"
        writer.write(big)
        assert await reader.readexactly(len(big)) == big.upper()
        writer.close()
        await writer.wait_closed()
        assert await reader.read() == b""
        await close_server(server)

    run(loop, main())


# ---------------------------------------------------------------------------- start_tls

def test_start_tls_both_sides(loop, certs):
    async def main():
        server_done = loop.create_future()

        async def handle(reader, writer):
            try:
                assert await reader.readline() == b"STARTTLS\n"
                writer.write(b"GO\n")
                await writer.drain()
                await writer.start_tls(server_context(certs))
                assert writer.get_extra_info("ssl_object").server_side
                line = await reader.readline()
                writer.write(b"secure: " + line)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
                server_done.set_result(None)
            except BaseException as exc:
                server_done.set_exception(exc)
                raise

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        plain_transport = writer.transport
        await writer.start_tls(client_context(certs), server_hostname="localhost")
        assert writer.transport is not plain_transport
        assert writer.get_extra_info("peercert")["subject"] == ((("commonName", "localhost"),),)
        writer.write(b"hello\n")
        assert await reader.readline() == b"secure: hello\n"
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        await server_done
        await close_server(server)

    if loop.kind == "asyncio":
        # Route stock asyncio's start_tls through conveyor's TLS layer for this test.
        loop.start_tls = lambda *a, **k: conveyor.net.tls.start_tls(loop, *a, **k)
    run(loop, main())


def test_start_tls_protocol_level(loop, certs):
    async def main():
        upgraded = loop.create_future()

        class Server(Recorder):
            def data_received(self, data):
                # Plain text until STARTTLS; then TLS takes over this protocol's transport.
                self.events.append(data)
                self.received.set()
                self.upgrade = asyncio.ensure_future(self.do_upgrade())

            async def do_upgrade(self):
                tls = await start_tls(
                    loop, self.transport, self, server_context(certs), server_side=True)
                self.transport = tls
                upgraded.set_result(tls)

        servers = Accepted(Server)
        server = await loop.create_server(servers, "127.0.0.1", 0)
        plain, client = await loop.create_connection(Recorder, "127.0.0.1", port_of(server))
        plain.write(b"STARTTLS")
        asked = await servers.nth(0)
        await wait_until(lambda: asked.events[1:], "STARTTLS to arrive", wakeup=asked.received)
        tls = await start_tls(
            loop, plain, client, client_context(certs), server_hostname="localhost")
        if loop.kind != "asyncio-ssl":
            assert isinstance(tls, SSLTransport)
        server_tls = await upgraded
        server_tls.write(b"from server")
        assert await client.wait_for_data(11) == b"from server"
        # connection_made is not repeated after the upgrade.
        assert client.events == ["made"]
        tls.close()
        await client.lost
        await servers[0].lost
        await close_server(server)

    run(loop, main())


def test_start_tls_argument_errors(loop, certs):
    async def main():
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        transport, protocol = await loop.create_connection(asyncio.Protocol, "127.0.0.1",
                                                           port_of(server))
        with pytest.raises(TypeError, match="sslcontext is expected to be an instance of "
                                            "ssl.SSLContext"):
            await start_tls(loop, transport, protocol, object())

        class NotUpgradable(asyncio.Transport):
            pass

        with pytest.raises(TypeError, match="is not supported by start_tls"):
            await start_tls(loop, NotUpgradable(), protocol,
                                                    client_context(certs))
        with pytest.raises(ValueError, match="ssl_handshake_timeout should be a positive"):
            await start_tls(loop, transport, protocol,
                                                    client_context(certs),
                                                    server_hostname="localhost",
                                                    ssl_handshake_timeout=-1)
        transport.close()
        await asyncio.sleep(0)
        await close_server(server)

    run(loop, main())


def test_start_tls_handshake_failure_closes_transport(loop, certs):
    async def main():
        writers = []
        server = await asyncio.start_server(lambda r, w: writers.append(w), "127.0.0.1", 0)
        transport, protocol = await loop.create_connection(Recorder, "127.0.0.1",
                                                           port_of(server))
        with pytest.raises(ConnectionAbortedError):
            await start_tls(
                loop, transport, protocol, client_context(certs),
                server_hostname="localhost", ssl_handshake_timeout=0.2)
        assert transport.is_closing()
        if loop.kind == "asyncio-ssl":
            # Stock asyncio never tells the protocol its connection ended; conveyor does,
            # since the protocol saw connection_made (connection_lost exactly once).
            assert protocol.events == ["made"]
        else:
            await protocol.lost
            assert protocol.events == ["made", "lost"]
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        await close_server(server)

    run(loop, main())


def test_many_connections_interleaved(loop, certs):
    """Connections share the per-thread buffers; none may see another's bytes."""
    async def main():
        server = await tls_server(loop, lambda: Recorder(echo=True), server_context(certs))
        ctx = client_context(certs)
        pairs = [await tls_connect(loop, Recorder, port_of(server), ctx) for _ in range(20)]
        payloads = [bytes([i]) * (5000 + 997 * i) for i in range(len(pairs))]
        for _round in range(3):
            for (transport, _client), payload in zip(pairs, payloads):
                transport.write(payload)
        for (_transport, client), payload in zip(pairs, payloads):
            assert await client.wait_for_data(3 * len(payload)) == payload * 3
        for transport, _client in pairs:
            transport.close()
        for _transport, client in pairs:
            await client.lost
        await close_server(server)

    run(loop, main())


def _close_notify_first_server(listener, ctx, written, results):
    """Handshake, answer ping, send close_notify once the peer has written (without reading
    it), then read everything still coming."""
    try:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = ctx.wrap_bio(incoming, outgoing, server_side=True)

            def pump(call, *args):
                while True:
                    try:
                        result = call(*args)
                    except ssl.SSLWantReadError:
                        if outgoing.pending:
                            conn.sendall(outgoing.read())
                        data = conn.recv(65536)
                        if not data:
                            raise ConnectionError("EOF before close_notify")
                        incoming.write(data)
                    else:
                        if outgoing.pending:
                            conn.sendall(outgoing.read())
                        return result

            pump(obj.do_handshake)
            assert pump(obj.read, 4) == b"ping"
            obj.write(b"pong")
            conn.sendall(outgoing.read())
            assert written.wait(TIMEOUT)
            with pytest.raises(ssl.SSLWantReadError):
                obj.unwrap()                  # close_notify out, the peer's not yet in
            conn.sendall(outgoing.read())
            received = 0
            while True:
                try:
                    received += len(pump(obj.read, 65536))
                except ssl.SSLZeroReturnError:
                    break
            results["received"] = received
            obj.unwrap()
    except Exception as exc:  # reported to the test thread
        results["error"] = exc


def test_peer_close_notify_still_receives_what_was_written(loop, certs):
    """Writes made before the peer's close_notify arrived still reach the peer."""
    size = 4 * 1024 * 1024

    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        results: dict = {}
        written = threading.Event()
        thread = threading.Thread(target=_close_notify_first_server,
                                  args=(listener, server_context(certs), written, results))
        thread.start()
        try:
            transport, client = await tls_connect(loop, Recorder, listener.getsockname()[1],
                                                  client_context(certs))
            transport.write(b"ping")
            assert await client.wait_for_data(4) == b"pong"
            transport.write(b"x" * size)
            if loop.kind != "asyncio-ssl":   # stock asyncio counts only its own backlog
                assert transport.get_write_buffer_size() > 0   # most of it is still queued
            written.set()
            await client.eof
            assert await client.lost is None
        finally:
            await loop.run_in_executor(None, thread.join, TIMEOUT)
            listener.close()
        assert "error" not in results, results
        assert results["received"] == size

    run(loop, main())


def test_unix_socket_tls(loop, certs, tmp_path):
    if loop.kind != "conveyor":
        pytest.skip("create_unix_* with ssl= goes through conveyor's net/unix.py; asyncio's own "
                    "TLS would be tested, not conveyor's")

    async def main():
        path = str(tmp_path / "tls.sock")
        protocols = []

        def factory():
            protocols.append(Recorder(echo=True))
            return protocols[-1]

        server = await loop.create_unix_server(factory, path, ssl=server_context(certs))
        transport, client = await loop.create_unix_connection(
            Recorder, path, ssl=client_context(certs), server_hostname="localhost")
        assert transport.get_extra_info("ssl_object") is not None
        assert transport.get_extra_info("peername") == path
        transport.write(b"over unix")
        assert await client.wait_for_data(9) == b"over unix"
        transport.close()
        await client.lost
        await protocols[0].lost
        await close_server(server)

    run(loop, main())


def test_eof_without_close_notify_waits_for_resume_reading(loop, certs):
    """A raw EOF while the application paused reading: its data first, then eof_received."""
    async def main():
        class PausedAtStart(Recorder):
            def connection_made(self, transport):
                super().connection_made(transport)
                transport.pause_reading()

        protocols = Accepted(PausedAtStart)
        server = await tls_server(loop, protocols, server_context(certs))
        sent = threading.Event()

        def client():
            raw = socket.create_connection(("127.0.0.1", port_of(server)), timeout=TIMEOUT)
            with client_context(certs).wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"before the EOF")
                # SSLSocket.shutdown drops TLS and shuts the TCP side: no close_notify.
                tls.shutdown(socket.SHUT_WR)
                sent.set()
                tls.settimeout(TIMEOUT)
                while tls.recv(1024):
                    pass

        client_done = loop.run_in_executor(None, client)
        await loop.run_in_executor(None, sent.wait, TIMEOUT)
        await (await protocols.nth(0)).made
        await asyncio.sleep(0.1)   # a negative check: nothing may arrive while paused
        assert protocols[0].events == ["made"] and protocols[0].data == b""
        protocols[0].transport.resume_reading()
        await protocols[0].lost
        assert protocols[0].data == b"before the EOF"
        assert protocols[0].events == ["made", "eof", "lost"]
        await client_done
        await close_server(server)

    run(loop, main())


def test_shutdown_timeout_when_peer_never_answers_close_notify(loop, certs):
    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        release = threading.Event()
        errors = []

        def silent_peer():
            try:
                conn, _ = listener.accept()
                conn.settimeout(TIMEOUT)
                with server_context(certs).wrap_socket(conn, server_side=True):
                    release.wait(TIMEOUT)   # never reads, never sends close_notify
            except Exception as exc:  # reported to the test thread
                errors.append(exc)

        thread = threading.Thread(target=silent_peer)
        thread.start()
        try:
            transport, client = await tls_connect(loop, Recorder, listener.getsockname()[1],
                                                  client_context(certs),
                                                  ssl_shutdown_timeout=0.3)
            start = loop.time()
            transport.close()
            exc = await client.lost
            assert isinstance(exc, TimeoutError) and "SSL shutdown timed out" in str(exc)
            assert 0.2 < loop.time() - start < 5
            assert client.events == ["made", "lost"]
        finally:
            release.set()
            await loop.run_in_executor(None, thread.join, TIMEOUT)
            listener.close()
        assert errors == []

    run(loop, main())


def test_application_callback_error_is_reported_and_drops_connection(loop, certs):
    async def main():
        class Faulty(Recorder):
            def data_received(self, data):
                raise RuntimeError("application bug")

        protocols = []

        def factory():
            protocols.append(Faulty())
            return protocols[-1]

        reported = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        server = await tls_server(loop, factory, server_context(certs))
        transport, client = await tls_connect(loop, Recorder, port_of(server),
                                              client_context(certs))
        transport.write(b"boom")
        exc = await protocols[0].lost
        assert isinstance(exc, RuntimeError)
        assert protocols[0].events == ["made", "lost"]
        assert [c["message"] for c in reported] == ["Fatal error on SSL protocol"]
        assert isinstance(reported[0]["exception"], RuntimeError)
        await client.lost
        transport.close()
        await close_server(server)

    run(loop, main())


def test_hundred_concurrent_handshakes(loop, certs):
    async def main():
        server = await tls_server(loop, lambda: Recorder(echo=True), server_context(certs))
        ctx = client_context(certs)
        pairs = await asyncio.gather(*(tls_connect(loop, Recorder, port_of(server), ctx)
                                       for _ in range(100)))
        for index, (transport, _client) in enumerate(pairs):
            transport.write(b"%d;" % index)
        for index, (_transport, client) in enumerate(pairs):
            expected = b"%d;" % index
            assert await client.wait_for_data(len(expected)) == expected
        for transport, _client in pairs:
            transport.close()
        await asyncio.gather(*(client.lost for _transport, client in pairs))
        await close_server(server)

    run(loop, main())

"""CPython's test_asyncio.test_ssl on conveyor: TLS through create_connection/create_server,
connect_accepted_socket and start_tls (TLS inside TLS included), against threaded
blocking-ssl peers.

`TestSSL` builds its loops with `asyncio.new_event_loop()`, which the conformance conftest
routes to conveyor, so it runs unchanged.

From test_sslproto, `BaseStartTLS` (start_tls, handshake timeouts, failed certificates,
slow and cancelled clients) runs on a conveyor loop. `SslProtoHandshakeTests` is not
included: every test in it drives `asyncio.sslproto.SSLProtocol`, the standard loop's
private TLS class, directly (mock transports, its private `_app_transport`, `_sslobj`, state
machine); the public behaviour it guards (timeout validation, close during the handshake,
extra info and writes after closing) is checked in tests/functional/test_tls.py.
"""

import unittest

from test.test_asyncio.test_ssl import TestSSL  # noqa: F401 - collected by pytest
from test.test_asyncio.test_sslproto import BaseStartTLS

import conveyor


class ConveyorStartTLSTests(BaseStartTLS, unittest.TestCase):

    def new_loop(self):
        return conveyor.new_event_loop()


EXCLUDED: dict[str, str] = {
    "ConveyorStartTLSTests.test_buf_feed_data":
        "tests `asyncio.sslproto._feed_data_to_buffered_proto`, a private helper function "
        "of the standard loop's TLS module, not a loop's behaviour",
    "TestSSL.test_flush_before_shutdown":
        "reaches into the TLS transport's private `_ssl_protocol` (asyncio.sslproto's "
        "SSLProtocol) to call pause_writing on it; conveyor's TLS protocol is a different "
        "class. Flushing before shutdown is covered by tests/functional/test_tls.py "
        "(test_close_notify_sent_and_received)",
    "TestSSL.test_remote_shutdown_receives_trailing_data":
        "fills the write backlog through `_test__append_write_backlog`, a test hook private "
        "to asyncio.sslproto's transport; conveyor's TLS layer keeps no backlog of its own "
        "(ciphertext goes straight to the socket transport's buffer)",
}

"""The UDP parts of CPython's asyncio tests on conveyor: datagram endpoints.

From test_events: the end-to-end endpoint tests of `EventLoopTestsMixin`. From
test_base_events: the argument and socket-option checks of `create_datagram_endpoint`
(`BaseEventLoopWithSelectorTests`), run on a conveyor loop.
"""

import conveyor
from test.test_asyncio import utils as test_utils
from test.test_asyncio import test_base_events  # the module: its classes are not collected here
from test.test_asyncio.test_events import UnixEventLoopTestsMixin


class ConveyorDatagramEventLoopTests(UnixEventLoopTestsMixin, test_utils.TestCase):
    """CPython's per-selector classes build standard loops; this one builds conveyor's."""

    def create_event_loop(self):
        return conveyor.new_event_loop()


class ConveyorDatagramEndpointArgumentTests(test_base_events.BaseEventLoopWithSelectorTests):
    """The same tests on a conveyor loop instead of `asyncio.SelectorEventLoop()`."""

    def setUp(self):
        test_utils.TestCase.setUp(self)
        self.loop = conveyor.new_event_loop()
        self.set_event_loop(self.loop)


# Both classes hold many more tests; this file runs the datagram ones (the others belong to
# other test_cpython_* files).
ONLY = {
    "ConveyorDatagramEventLoopTests": {
        "test_create_datagram_endpoint",
        "test_create_datagram_endpoint_ipv6",
        "test_create_datagram_endpoint_sock",
    },
    "ConveyorDatagramEndpointArgumentTests": {
        "test_create_datagram_endpoint_wrong_sock",
        "test_create_datagram_endpoint_no_addrinfo",
        "test_create_datagram_endpoint_addr_error",
        "test_create_datagram_endpoint_connect_err",
        "test_create_datagram_endpoint_allow_broadcast",
        "test_create_datagram_endpoint_socket_err",
        "test_create_datagram_endpoint_no_matching_family",
        "test_create_datagram_endpoint_setblk_err",
        "test_create_datagram_endpoint_noaddr_nofamily",
        "test_create_datagram_endpoint_cant_bind",
        "test_create_datagram_endpoint_sock",
        "test_create_datagram_endpoint_sock_unix",
        "test_create_datagram_endpoint_existing_sock_unix",
        "test_create_datagram_endpoint_sock_sockopts",
        "test_create_datagram_endpoint_sockopts",
        "test_create_datagram_endpoint_nosoreuseport",
        "test_create_datagram_endpoint_ip_addr",
    },
}

_PATCHES_STDLIB_SOCKET = (
    "patches `asyncio.base_events.socket`, the standard loop's module global, to fake "
    "socket creation; conveyor's datagram module creates real sockets, which this "
    "test's mock never sees")

EXCLUDED: dict[str, str] = {
    f"ConveyorDatagramEndpointArgumentTests.{name}": _PATCHES_STDLIB_SOCKET
    for name in (
        "test_create_datagram_endpoint_no_addrinfo",
        "test_create_datagram_endpoint_socket_err",
        "test_create_datagram_endpoint_setblk_err",
        "test_create_datagram_endpoint_cant_bind",
        "test_create_datagram_endpoint_nosoreuseport",
        "test_create_datagram_endpoint_ip_addr",
    )
}

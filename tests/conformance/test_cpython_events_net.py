"""CPython's test_events on conveyor: the TCP and Unix stream connection and server tests.

`EventLoopTestsMixin` (with the Unix additions of `UnixEventLoopTestsMixin`) runs against a
conveyor loop; ONLY keeps the tests of this area (datagram, pipe, subprocess and core tests
belong to the other test_cpython_events_* files).
"""

from test.test_asyncio import utils as test_utils
from test.test_asyncio.test_events import UnixEventLoopTestsMixin

import conveyor


class ConveyorNetEventLoopTests(UnixEventLoopTestsMixin, test_utils.TestCase):

    def create_event_loop(self):
        return conveyor.new_event_loop()


def _net_tests() -> set[str]:
    return {name for name in dir(UnixEventLoopTestsMixin) if name.startswith("test_")
            and "datagram" not in name
            and any(word in name for word in ("connection", "server", "accepted_socket"))}


ONLY = {"ConveyorNetEventLoopTests": _net_tests()}

_PATCHES_BASE_EVENTS_SOCKET = (
    "patches asyncio.base_events.socket and the standard loop's private _start_serving/"
    "_stop_serving, so it tests the standard loop's module, not conveyor")
EXCLUDED: dict[str, str] = {
    "ConveyorNetEventLoopTests.test_create_server_multiple_hosts_ipv4":
        _PATCHES_BASE_EVENTS_SOCKET,
    "ConveyorNetEventLoopTests.test_create_server_multiple_hosts_ipv6":
        _PATCHES_BASE_EVENTS_SOCKET,
    # 3.12+ only:
    "ConveyorNetEventLoopTests.test_create_server_trsock":
        "asserts Server.sockets are instances of asyncio.trsock.TransportSocket, a private "
        "class of the standard loop; conveyor gives its own view with the same behaviour "
        "(conveyor.transports.socket_view.TransportSocket), which tests/functional/test_dropin.py "
        "compares with asyncio's operation by operation",
}

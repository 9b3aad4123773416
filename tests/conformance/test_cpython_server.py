"""CPython's test_asyncio.test_server on conveyor (Server: start_serving, serve_forever, ...)."""

import sys

from test.test_asyncio.test_server import SelectorStartServerTests

import conveyor

# Loop-agnostic IsolatedAsyncioTestCase classes (conveyor's loop through the policy), in the
# CPython versions that have them: Server.wait_closed/close_clients (3.12+), and a Unix
# server's socket file removed on close, cleanup_socket= (3.13+).
if sys.version_info >= (3, 12):
    from test.test_asyncio.test_server import TestServer2  # noqa: F401 - collected
if sys.version_info >= (3, 13):
    from test.test_asyncio.test_server import UnixServerCleanupTests  # noqa: F401 - collected


class ConveyorStartServerTests(SelectorStartServerTests):
    """CPython's SelectorStartServerTests (its Unix test included) with a conveyor loop."""

    def new_loop(self):
        return conveyor.new_event_loop()


del SelectorStartServerTests  # collected once, as the conveyor class

EXCLUDED: dict[str, str] = {}
if sys.version_info[:2] == (3, 12):
    _ATTACH = ("drives the standard Server's private _attach()/_detach() in 3.12's form (no "
               "transport argument); conveyor's Server has 3.13's _attach(transport), and 3.13's "
               "version of this test, which runs, checks the same wait_closed behaviour")
    EXCLUDED.update({
        "TestServer2.test_wait_closed_basic": _ATTACH,
        "TestServer2.test_wait_closed_race": _ATTACH,
    })

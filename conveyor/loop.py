"""EventLoop: conveyor's loop, the core (`conveyor.core.CoreLoop`) with its I/O methods.

Everything that moves bytes (sockets, servers, pipes, subprocesses, TLS, signals) lives in
its own module as functions taking the loop first; they are bound here as methods (see
docs/internals.md), so the core imports none of them and this file is only the assembly.
"""

from __future__ import annotations

from . import dns, net, signals, sockets
from .core import CoreLoop
from .core import _new_loop_observers  # noqa: F401 - observe/trace.py's, until it uses on_new_loop
from .transports import datagram, pipe, subprocess, tls


class EventLoop(CoreLoop):
    """A complete asyncio event loop in pure Python."""

    # ------------------------------------------- I/O, bound from their own modules

    # Connections, servers, sendfile: conveyor/net.py and conveyor/server.py
    create_connection = net.create_connection
    create_server = net.create_server
    create_unix_connection = net.create_unix_connection
    create_unix_server = net.create_unix_server
    connect_accepted_socket = net.connect_accepted_socket
    sendfile = net.sendfile

    # Datagram endpoints: conveyor/transports/datagram.py
    create_datagram_endpoint = datagram.create_datagram_endpoint

    # Name resolution on the executor: conveyor/dns.py
    getaddrinfo = dns.getaddrinfo
    getnameinfo = dns.getnameinfo

    # Low-level socket coroutines: conveyor/sockets.py
    sock_recv = sockets.sock_recv
    sock_recv_into = sockets.sock_recv_into
    sock_recvfrom = sockets.sock_recvfrom
    sock_recvfrom_into = sockets.sock_recvfrom_into
    sock_sendall = sockets.sock_sendall
    sock_sendto = sockets.sock_sendto
    sock_connect = sockets.sock_connect
    sock_accept = sockets.sock_accept
    sock_sendfile = sockets.sock_sendfile

    # TLS upgrade: conveyor/transports/tls.py
    start_tls = tls.start_tls

    # Pipes: conveyor/transports/pipe.py
    connect_read_pipe = pipe.connect_read_pipe
    connect_write_pipe = pipe.connect_write_pipe

    # Subprocesses: conveyor/transports/subprocess.py
    subprocess_exec = subprocess.subprocess_exec
    subprocess_shell = subprocess.subprocess_shell

    # Signals: conveyor/signals.py
    add_signal_handler = signals.add_signal_handler
    remove_signal_handler = signals.remove_signal_handler

"""EventLoop: conveyor's loop, the core (`conveyor.core.CoreLoop`) with its I/O methods.

Everything that moves bytes (sockets, servers, pipes, subprocesses, TLS, signals) lives in
its own module as functions taking the loop first; they are bound here as methods (see
docs/internals.md), so the core imports none of them and this file is only the assembly.
"""

from __future__ import annotations

from . import signals
from .core import CoreLoop
from .net import dns, pipes, server, sockets, subprocess, tcp, tls, udp, unix
from .net import sendfile as sendfile_mod


class EventLoop(CoreLoop):
    """A complete asyncio event loop in pure Python."""

    # ------------------------------------------- I/O, bound from their own modules

    # Connections and servers: conveyor/net/tcp.py, server.py, unix.py
    create_connection = tcp.create_connection
    connect_accepted_socket = tcp.connect_accepted_socket
    create_server = server.create_server
    create_unix_connection = unix.create_unix_connection
    create_unix_server = unix.create_unix_server

    # A file's bytes to a transport or a socket: conveyor/net/sendfile.py
    sendfile = sendfile_mod.sendfile
    sock_sendfile = sendfile_mod.sock_sendfile

    # Datagram endpoints: conveyor/net/udp.py
    create_datagram_endpoint = udp.create_datagram_endpoint

    # Name resolution on the executor: conveyor/net/dns.py
    getaddrinfo = dns.getaddrinfo
    getnameinfo = dns.getnameinfo

    # Low-level socket coroutines: conveyor/net/sockets.py
    sock_recv = sockets.sock_recv
    sock_recv_into = sockets.sock_recv_into
    sock_recvfrom = sockets.sock_recvfrom
    sock_recvfrom_into = sockets.sock_recvfrom_into
    sock_sendall = sockets.sock_sendall
    sock_sendto = sockets.sock_sendto
    sock_connect = sockets.sock_connect
    sock_accept = sockets.sock_accept

    # TLS upgrade: conveyor/net/tls.py
    start_tls = tls.start_tls

    # Pipes: conveyor/net/pipes.py
    connect_read_pipe = pipes.connect_read_pipe
    connect_write_pipe = pipes.connect_write_pipe

    # Subprocesses: conveyor/net/subprocess.py
    subprocess_exec = subprocess.subprocess_exec
    subprocess_shell = subprocess.subprocess_shell

    # Signals: conveyor/signals.py
    add_signal_handler = signals.add_signal_handler
    remove_signal_handler = signals.remove_signal_handler

"""The least Python that can echo: the pure-Python ceiling of the protocol echo rows.

``python -m conveyor.bench.bare_echo [--port P]`` is ``echo_server.c`` written in Python:
level-triggered epoll, one ``os.read`` of up to 127 KiB per readiness event (under glibc's
mmap threshold; reading into a shared buffer instead cost more at 100 KiB), written straight
back with ``os.write``, and nothing in between: no loop, no handles, no transport, no
protocol call, no context. Under the same load its CPU per message is what the interpreter
itself costs for one poll event, one read and one write: no event loop written in Python can
do much better on this interpreter, and a loop's distance from it is what the loop's own
machinery costs (docs/bench.md, "Where the echo rows stop").

Same contract as the C server: listens on 127.0.0.1, prints the port on a line of its own,
serves until its standard input reaches end of file or it is killed. What a socket does not
take is kept and that connection stops reading until it has gone. Linux only (epoll).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys

CHUNK = 131072 - 1024  # under glibc's mmap threshold: see transports/socket.py


def serve(port: int = 0) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    listener.setblocking(False)
    poller = select.epoll()
    listen_fd = listener.fileno()
    stdin_fd = sys.stdin.fileno()
    poller.register(listen_fd, select.EPOLLIN)
    poller.register(stdin_fd, select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    unsent: dict[int, bytes] = {}
    print(listener.getsockname()[1], flush=True)
    read, write, poll = os.read, os.write, poller.poll
    while True:
        for fd, ev in poll():
            if fd in conns:
                if fd in unsent:  # reading waits until the rest has gone
                    _flush(fd, conns, unsent, poller)
                    continue
                # The hot path: one read, one write, nothing else.
                try:
                    data = read(fd, CHUNK)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    _drop(fd, conns, unsent, poller)
                    continue
                try:
                    sent = write(fd, data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    _drop(fd, conns, unsent, poller)
                    continue
                if sent < len(data):
                    unsent[fd] = data[sent:]
                    poller.modify(fd, select.EPOLLOUT)
            elif fd == listen_fd:
                _accept(listener, conns, poller)
            elif fd == stdin_fd and not read(stdin_fd, 4096):
                return


def _accept(listener: socket.socket, conns: dict, poller: select.epoll) -> None:
    while True:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns[sock.fileno()] = sock
        poller.register(sock.fileno(), select.EPOLLIN)


def _flush(fd: int, conns: dict, unsent: dict, poller: select.epoll) -> None:
    data = unsent.pop(fd)
    try:
        sent = os.write(fd, data)
    except BlockingIOError:
        sent = 0
    except OSError:
        _drop(fd, conns, unsent, poller)
        return
    if sent < len(data):
        unsent[fd] = data[sent:]
    else:
        poller.modify(fd, select.EPOLLIN)


def _drop(fd: int, conns: dict, unsent: dict, poller: select.epoll) -> None:
    poller.unregister(fd)
    unsent.pop(fd, None)
    conns.pop(fd).close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()

"""Transports: sockets, datagrams, pipes, TLS, subprocesses."""

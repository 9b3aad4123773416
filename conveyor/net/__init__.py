"""The loop's connection factories and socket coroutines: what opens a connection (a
socket, a pipe, a child process) and hands it to its transport.

`conveyor/transports/` holds the transports themselves; this package holds what creates
them. Every function here takes the loop first and `loop.py` binds it as a method (see
docs/internals.md). One job per module:

- `tcp.py`: create_connection (Happy Eyeballs) and connect_accepted_socket;
- `unix.py`: create_unix_connection and create_unix_server;
- `server.py`: create_server and the `Server` both servers return;
- `udp.py`: create_datagram_endpoint (UDP and Unix datagrams);
- `pipes.py`, `subprocess.py`: connect_read_pipe / connect_write_pipe, subprocess_exec /
  subprocess_shell;
- `tls.py`: start_tls, the upgrade of an open connection;
- `sendfile.py`: sock_sendfile and sendfile (over a transport), one implementation;
- `sockets.py`: the other sock_* coroutines;
- `dns.py`: getaddrinfo / getnameinfo on the executor, and `resolve`, the one lookup the
  factories make;
- `common.py`: what several factories share (argument checks, SO_REUSEPORT, wrapping a
  connected stream socket in its transport with or without TLS).

Functions here call their siblings through the loop (`loop.sock_connect`,
`loop.sock_sendall`, `loop.getaddrinfo`), as the standard loop does, so a test or a library
that replaces one of those methods on a loop is seen by every caller.
"""

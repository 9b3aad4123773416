"""The sock_* coroutines: await a non-blocking socket's syscall without a transport.

Every coroutine tries the syscall first and waits on readiness only when it would block,
because the data or the room is often already there (a `sendall` into an empty socket
buffer, a `recv` while the peer streams); stream receives make one exception, below. When it
must wait, it registers a reader or writer callback with the loop and gives it up when the
waiting task resumes, whether the operation finished, failed or was cancelled: so a
cancelled `sock_recv` leaves the socket registered for nothing and usable by the next call.
(A reader is kept one more loop iteration before it is removed, so a task that receives in a
loop does not pay two epoll_ctl calls per message; see `_SockReader`.)

The readiness callback of a receive (recv, recv_into, recvfrom, accept) only wakes the
task; the task makes the call (see `_readable`). So a receive cancelled at any point has
taken nothing from the socket (asyncio receives in the callback, and a task cancelled after
it loses the bytes, datagram or connection), and the data is used while it is still in the
CPU's cache.

Stream receives go by the last one. A receive that came back short drained the socket (the
kernel hands over all it has, up to the size asked), so the next one waits for readiness
first instead of failing a system call and raising (about 1 us per message; uvloop never
tries first). A receive that filled its buffer may have left more, so the next one tries
first, which is what a streaming peer needs. The note lives on the socket's parked reader
(`_SockReader._drained`), so a socket that has not waited lately tries first.

Receives on stream sockets ask for at most 64 KiB at a time (see DESIGN.md: larger requests
make glibc map and unmap memory on every call); `recv(n)` may return fewer bytes anyway.

Errors follow the standard loop: a blocking socket is refused with ValueError, an SSL socket
with TypeError, and an fd owned by a transport with RuntimeError.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from ..contract import LoopInternals
from ..handles import Handle
from .dns import resolve

try:
    import ssl
except ImportError:  # pragma: no cover - Python built without OpenSSL
    ssl = None  # type: ignore[assignment]

#: What `_check_socket` refuses with TypeError; a class nothing is an instance of without ssl.
_SSLSocket: type = ssl.SSLSocket if ssl is not None else type("_NoSSLSocket", (), {})

#: The largest stream receive asked of the kernel in one call.
_MAX_RECV = 65536

_WOULD_BLOCK = (BlockingIOError, InterruptedError)
#: A plain socket.socket is read and written with os.read / os.write on its fd: the same
#: system calls, with cheaper argument parsing (see transports/stream.py). A subclass is
#: called through its own methods, so overrides are honoured.
_read = os.read
_write = os.write
_INET_FAMILIES = (socket.AF_INET, getattr(socket, "AF_INET6", socket.AF_INET))
#: A socket's kind as the C base class stores it: `sock.type` converts it to a SocketKind
#: enum in Python (~0.5 us), this reads the int (~0.05 us) on the receive path.
_raw_type = socket.SocketType.type.__get__
_STREAM = int(socket.SOCK_STREAM)


def _check_socket(loop: LoopInternals, sock: Any) -> None:
    """asyncio's refusals: SSL sockets (their data is not the wire's) and blocking sockets.

    The standard loop checks blocking mode only in debug mode; here it is always checked,
    because a blocking socket would freeze the loop and the check costs one C call.
    """
    if isinstance(sock, _SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


class _SockReader(Handle):
    """A reader registration that may outlive its wait by one loop iteration ("parked",
    see `CoreLoop._park_reader`: a recv loop then re-arms it, no epoll_ctl per message).

    The hazard of keeping a registration: the socket may be closed meanwhile, which drops
    the kernel's registration, and its fd number may be reused by a new file that someone
    registers at once. The loop sees the number still registered and would only swap the
    handle, so the new file would never be polled. `cancel()` is what the loop calls on
    such a swap; if our socket no longer owns the fd, the loop registers the fd with the
    poller again (`_rearm_reader`) so the newcomer is polled.
    """

    __slots__ = ("_sock", "_fd", "_drained", "_armed_at")

    def cancel(self) -> None:
        if self._cancelled:
            return
        super().cancel()
        if self._sock.fileno() != self._fd:
            self._loop._rearm_reader(self._fd, self)


async def _readable(loop: LoopInternals, sock: Any,
                    parked: _SockReader | None = None) -> _SockReader:
    """Return once the poller reports `sock` readable (which may prove spurious: the
    caller's next attempt may still find nothing, and then it waits again).

    The receive itself is the caller's, made after this returns, in the waiting task's own
    step, for two reasons. A receive made in the readiness callback finishes a future the
    task may never see: cancelled in between, the task would drop the bytes (or the accepted
    connection, or the datagram) it was handed. And made in the task, the receive is followed
    at once by whatever the task does with the data (typically sending it on), while the
    buffer is still in the CPU's cache, instead of after every other readiness callback of the
    same poll has read its own (see DESIGN.md: at 100 KiB this halves the kernel's copy time).

    `parked` is the socket's reader from its last wait (`_parked_for`), if the caller has
    it: once that wait is over, the same handle is re-armed with the new future instead of a
    new one made and swapped in (see `CoreLoop._park_reader`); `_wake` then ignores a
    readiness event queued before the re-arm.

    Returns the registration, parked: when the waiting task resumes, however the wait ended,
    it is kept for one iteration (see `_SockReader`) and then removed, unless a new wait took
    it over; a stream receive notes on it whether it drained the socket (see `_parked_for`).
    A handle found cancelled was replaced by a later waiter on the same fd (or removed by its
    owner), and then the registration is no longer ours to remove.
    """
    fut = loop.create_future()
    if parked is not None and parked._args[0].done():
        # Still fd's reader (no transport or other reader has taken fd since), and its own
        # wait is over (re-arming another task's wait would leave that task hanging).
        handle = parked
        fd = handle._fd
    else:
        fd = sock.fileno()
        loop._ensure_fd_no_transport(fd)
        loop._check_closed()
        handle = _SockReader(_wake, None, loop, None)
        handle._sock = sock
        handle._fd = fd
        handle._drained = False
        loop._add_reader_handle(fd, handle)
    # The handle in its own arguments: a cycle for as long as it is registered, broken by
    # the cancel() that ends every registration.
    handle._args = armed = (fut, handle)
    handle._armed_at = loop._iteration
    try:
        await fut
    finally:
        # Parked only if it still serves this wait: not removed or replaced (cancel() clears
        # `_args`), and not re-armed by another task's wait once this one's future was done
        # (a cancelled wait's future is done before its task runs this).
        ours = handle._args is armed
        # A cancellation raised here keeps this frame in its traceback; the frame must not
        # keep the future that holds it (a reference cycle, as asyncio avoids too).
        fut = armed = None
        if ours:
            loop._park_reader(fd, handle)
    return handle


def _wake(fut: asyncio.Future, handle: _SockReader) -> None:
    """Readiness callback of `_readable`: the waiting task resumes and tries its receive.

    Not for an event the loop queued in the iteration that armed this wait: the poll saw
    the socket readable before the wait began (with data the last wait's task was about to
    read), so it says nothing about now. The poller is level-triggered, so if data is still
    there, the next poll reports it again."""
    if handle._armed_at != handle._loop._iteration and not fut.done():
        fut.set_result(None)


async def _wait_writable(loop: LoopInternals, sock: Any, callback: Any, *args: Any) -> Any:
    """Run `callback(fut, *args)` each time `sock` is writable until it completes `fut`."""
    fd = sock.fileno()
    loop._ensure_fd_no_transport(fd)
    fut = loop.create_future()
    handle = loop._add_writer(fd, callback, fut, *args)
    try:
        return await fut
    finally:
        fut = None  # no cycle through this frame (see _readable)
        if not handle._cancelled:
            loop._remove_writer(fd)


def _retry(fut: asyncio.Future, sock: Any, method: str, *args: Any) -> None:
    """Writability callback of `sock_sendto`: make the call again and finish the future
    with its result or error, unless it would still block (a spurious wake-up).

    The method is looked up on every retry, not bound once: what is called is whatever the
    socket object holds now (a wrapper or a test's mock may replace it between attempts)."""
    if fut.done():
        return
    try:
        result = getattr(sock, method)(*args)
    except _WOULD_BLOCK:
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
        fut = None  # exc's traceback keeps this frame: it must not keep the future too
    else:
        fut.set_result(result)


# ----------------------------------------------------------------------------- receive

def _parked_for(loop: LoopInternals, sock: Any) -> _SockReader | None:
    """This socket's own reader, still parked from its last wait, or None. Its `_drained`
    says whether the socket's last receive came back short (see the module docstring)."""
    parked = loop._reader_handle(sock.fileno())
    if type(parked) is _SockReader and parked._sock is sock:
        return parked
    return None


def _drained(sock: Any, got: int, asked: int) -> bool:
    """Whether a receive of `asked` bytes that got `got` left `sock` empty: a stream socket
    hands over all it has up to the size asked, so a short receive drained it; a datagram
    socket hands over one datagram, whatever else is queued."""
    return got < asked and _raw_type(sock) == _STREAM


async def sock_recv(loop: LoopInternals, sock: socket.socket, n: int) -> bytes:
    """Receive up to `n` bytes from `sock` (at most 64 KiB per call on a stream)."""
    if sock.gettimeout() != 0 or isinstance(sock, _SSLSocket):  # inlined: hot path
        _check_socket(loop, sock)
    if n > _MAX_RECV and sock.type == socket.SOCK_STREAM:
        n = _MAX_RECV
    plain = type(sock) is socket.socket
    parked = _parked_for(loop, sock)
    if parked is None or not parked._drained:
        try:
            data = _read(sock.fileno(), n) if plain else sock.recv(n)
        except _WOULD_BLOCK:
            pass
        else:
            if parked is not None:
                parked._drained = _drained(sock, len(data), n)
            return data
    while True:
        parked = await _readable(loop, sock, parked)
        try:
            data = _read(sock.fileno(), n) if plain else sock.recv(n)
        except _WOULD_BLOCK:
            continue  # a spurious wake-up
        parked._drained = _drained(sock, len(data), n)
        return data


async def sock_recv_into(loop: LoopInternals, sock: socket.socket, buf: Any) -> int:
    """Receive into the writable buffer `buf`; return the number of bytes received."""
    if sock.gettimeout() != 0 or isinstance(sock, _SSLSocket):  # inlined: hot path
        _check_socket(loop, sock)
    parked = _parked_for(loop, sock)
    if parked is None or not parked._drained:
        try:
            nbytes = sock.recv_into(buf)
        except _WOULD_BLOCK:
            pass
        else:
            if parked is not None:
                parked._drained = _drained(sock, nbytes, len(buf))
            return nbytes
    while True:
        parked = await _readable(loop, sock, parked)
        try:
            nbytes = sock.recv_into(buf)
        except _WOULD_BLOCK:
            continue  # a spurious wake-up
        parked._drained = _drained(sock, nbytes, len(buf))
        return nbytes


async def sock_recvfrom(loop: LoopInternals, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
    """Receive a datagram of up to `bufsize` bytes; return `(data, address)`."""
    _check_socket(loop, sock)
    while True:
        try:
            return sock.recvfrom(bufsize)
        except _WOULD_BLOCK:
            await _readable(loop, sock)


async def sock_recvfrom_into(loop: LoopInternals, sock: socket.socket, buf: Any,
                             nbytes: int = 0) -> tuple[int, Any]:
    """Receive a datagram into `buf` (at most `nbytes`, 0 = all of it); `(n, address)`."""
    _check_socket(loop, sock)
    if not nbytes:
        nbytes = len(buf)
    while True:
        try:
            return sock.recvfrom_into(buf, nbytes)
        except _WOULD_BLOCK:
            await _readable(loop, sock)


# -------------------------------------------------------------------------------- send

async def sock_sendall(loop: LoopInternals, sock: socket.socket, data: Any) -> None:
    """Send all of `data`; return None once the kernel has taken every byte.

    If cancelled part-way, an unknown prefix of `data` has been sent (as with asyncio); the
    socket itself stays usable.
    """
    if sock.gettimeout() != 0 or isinstance(sock, _SSLSocket):  # inlined: hot path
        _check_socket(loop, sock)
    try:
        sent = _write(sock.fileno(), data) if type(sock) is socket.socket else sock.send(data)
    except _WOULD_BLOCK:
        sent = 0
    if sent == len(data):
        return
    view = memoryview(data).cast("B")
    progress = [sent]
    try:
        await _wait_writable(loop, sock, _sendall_ready, sock, view, progress)
    finally:
        view.release()


def _sendall_ready(fut: asyncio.Future, sock: socket.socket, view: memoryview,
                   progress: list[int]) -> None:
    if fut.done():
        return
    start = progress[0]
    try:
        sent = sock.send(view[start:])
    except _WOULD_BLOCK:
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
        fut = None  # exc's traceback keeps this frame: it must not keep the future too
        return
    start += sent
    if start == len(view):
        fut.set_result(None)
    else:
        progress[0] = start


async def sock_sendto(loop: LoopInternals, sock: socket.socket, data: Any, address: Any) -> int:
    """Send one datagram to `address`; return the number of bytes sent."""
    _check_socket(loop, sock)
    try:
        return sock.sendto(data, address)
    except _WOULD_BLOCK:
        pass
    return await _wait_writable(loop, sock, _retry, sock, "sendto", data, address)


# ---------------------------------------------------------------------- connect, accept

async def sock_connect(loop: LoopInternals, sock: socket.socket, address: Any) -> None:
    """Connect `sock` to `address`, resolving a host name first only if it is not numeric."""
    _check_socket(loop, sock)
    if sock.family in _INET_FAMILIES:
        infos = await resolve(loop, address, family=sock.family, type=sock.type,
                              proto=sock.proto)
        address = infos[0][4]
    try:
        sock.connect(address)
    except _WOULD_BLOCK:
        pass
    else:
        return
    await _wait_writable(loop, sock, _connect_ready, sock, address)


def _connect_ready(fut: asyncio.Future, sock: socket.socket, address: Any) -> None:
    if fut.done():
        return
    try:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            raise OSError(err, f"Connect call failed {address}")
    except _WOULD_BLOCK:
        return  # spurious wake-up: still connecting
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
        fut = None  # exc's traceback keeps this frame: it must not keep the future too
    else:
        fut.set_result(None)


async def sock_accept(loop: LoopInternals, sock: socket.socket) -> tuple[socket.socket, Any]:
    """Accept a connection; return `(conn, address)` with `conn` already non-blocking."""
    _check_socket(loop, sock)
    while True:
        try:
            conn, address = sock.accept()
        except _WOULD_BLOCK:
            await _readable(loop, sock)
        else:
            conn.setblocking(False)
            return conn, address

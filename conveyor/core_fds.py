"""The fd tables: which callback runs when an fd is readable or writable.

Part of the loop core (`core.CoreLoop` mixes it in; `_run_once` reads `_readers` and
`_writers` directly). Two dicts fd -> Handle, and nothing else per fd: the mask registered
with the poller is always "READ if in `_readers`, WRITE if in `_writers`" (`_mask`), so it
is derived rather than stored (a third dict cost ~37 bytes per connection), and `_nfds`
counts the fds registered. Every change goes through `_update_interest`, told the mask
before and after, so the poller is told exactly the difference. The public
add_reader/remove_reader/add_writer/remove_writer add asyncio's rules on top (file objects
as well as ints, an fd owned by a transport is refused, a closed file object's registration
can still be removed by the object); `_add_reader` and friends are what the modules above
the core use (conveyor.contract), and the parked-reader operations at the
end serve the sock_* coroutines.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

from .handles import Handle
from .poller import READ, WRITE


def _fileobj_to_fd(fileobj: Any) -> int:
    """An fd from an int or an object with fileno(), with asyncio's errors."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


def _live(record: Any) -> Any:
    """The transport a record of `FdTable._claim_fd` names (None for none, or a dead one)."""
    if type(record) is weakref.ref:
        return record()
    return record


class FdTable:
    """The core's fd tables and the operations on them (state lives on the loop: see
    `CoreLoop.__init__`)."""

    def _mask(self, fd: int) -> int:
        """What fd is registered for: the tables are the one record of it."""
        return (READ if fd in self._readers else 0) | (WRITE if fd in self._writers else 0)

    def _update_interest(self, fd: int, old: int, mask: int) -> None:
        """Tell the poller that fd's mask goes from `old` to `mask` (the tables already say
        `mask`)."""
        poller = self._poller
        if mask == 0:
            self._nfds -= 1
            if self._fileobjs:
                self._fileobjs.pop(fd, None)
            poller.unregister(fd)
            return
        if old == 0:
            try:
                poller.register(fd, mask)
            except FileExistsError:
                poller.modify(fd, mask)  # a stale registration of a reused fd number
            self._nfds += 1
        else:
            try:
                poller.modify(fd, mask)
            except FileNotFoundError:
                poller.register(fd, mask)  # closed and reopened behind our back

    def _add_handle(self, table: dict, fd: int, handle: Handle) -> None:
        old = table.get(fd)
        table[fd] = handle
        if old is not None:
            old.cancel()
            return
        if table is self._readers:
            bit, other = READ, (WRITE if fd in self._writers else 0)
        else:
            bit, other = WRITE, (READ if fd in self._readers else 0)
        try:
            self._update_interest(fd, other, other | bit)
        except BaseException:
            del table[fd]
            raise

    def _remove_handle(self, table: dict, fd: int) -> bool:
        handle = table.pop(fd, None)
        if handle is None:
            return False
        handle.cancel()
        if table is self._readers:
            bit, other = READ, (WRITE if fd in self._writers else 0)
        else:
            bit, other = WRITE, (READ if fd in self._readers else 0)
        self._update_interest(fd, other | bit, other)
        return True

    def _add_reader(self, fd: int, callback, *args, context=None) -> Handle:
        self._check_closed()
        handle = Handle(callback, args, self, context)
        self._add_handle(self._readers, fd, handle)
        return handle

    def _remove_reader(self, fd: int) -> bool:
        if self._closed:
            return False
        return self._remove_handle(self._readers, fd)

    def _add_writer(self, fd: int, callback, *args, context=None) -> Handle:
        self._check_closed()
        handle = Handle(callback, args, self, context)
        self._add_handle(self._writers, fd, handle)
        return handle

    def _remove_writer(self, fd: int) -> bool:
        if self._closed:
            return False
        return self._remove_handle(self._writers, fd)

    def _ensure_fd_no_transport(self, fd: Any) -> None:
        # A closed file object (fileno() == -1) passes this check, as with asyncio: its
        # registration may still be found by the object itself (see _lookup_fd).
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"Invalid file object: {fd!r}") from None
        transport = self._transport_of(fileno)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    # ------------------------------------------- which transport owns an fd

    def _claim_fd(self, fd: int, transport: Any, keep_alive: bool = False) -> None:
        """Record that `transport` owns fd until `_release_fd`.

        The record is a weak reference, so a transport its program dropped without closing
        is still collected (with asyncio's ResourceWarning); with `keep_alive` it is the
        transport itself, which keeps it alive until released: a server's connections, which
        the server finds here (it keeps no set of its own: a set entry and a weakref cost
        ~150 bytes per idle connection, scripts/conn_memory.py)."""
        self._transports[fd] = transport if keep_alive else weakref.ref(transport)

    def _transport_of(self, fd: int) -> Any:
        """The transport that owns fd, or None (None too while it lends fd: `_lend_fd`)."""
        return _live(self._transports.get(fd))

    def _release_fd(self, fd: int, transport: Any) -> None:
        """`transport` no longer owns fd (a no-op if another owner has claimed it since)."""
        for records in (self._transports, self._lent):
            if _live(records.get(fd)) is transport:
                del records[fd]

    def _lend_fd(self, fd: int) -> None:
        """fd's transport lends its socket to a sock_* call (a transport's native sendfile,
        as asyncio does it): until `_return_fd`, nothing owns fd as far as the checks go,
        but the record is kept aside, so the transport's server still finds it."""
        record = self._transports.pop(fd, None)
        if record is not None:
            self._lent[fd] = record

    def _return_fd(self, fd: int) -> None:
        """The loan is over: the transport owns fd again, unless it was released meanwhile."""
        record = self._lent.pop(fd, None)
        if record is not None:
            self._transports.setdefault(fd, record)

    def _fd_owners(self) -> list[Any]:
        """Every live transport that owns an fd, lent ones included."""
        records = [*self._transports.values(), *self._lent.values()]
        return [owner for owner in map(_live, records) if owner is not None]

    def _lookup_fd(self, fileobj: Any) -> int:
        """The fd of `fileobj`; for a file object closed since it was registered, the fd it
        was registered under, found by identity (so removing the reader of a socket that was
        closed first still finds and drops the registration, as the standard loop does)."""
        try:
            return _fileobj_to_fd(fileobj)
        except ValueError:
            for fd, registered in self._fileobjs.items():
                if registered is fileobj:
                    return fd
            raise

    def _forget_fd(self, fd: int) -> None:
        """Drop every registration of `fd` after the poller refused it (a file object closed
        behind our back): the kernel has forgotten it too, and so does the standard loop,
        whose selector loses the whole key when such a modify fails."""
        registered = False
        for table in (self._readers, self._writers):
            handle = table.pop(fd, None)
            if handle is not None:
                registered = True
                handle.cancel()
        self._fileobjs.pop(fd, None)
        if registered:
            self._nfds -= 1
            self._poller.unregister(fd)

    def _by_object(self, operation: Callable, fileobj: Any, *args: Any,
                   remember: bool = False) -> Any:
        """Run `operation(fd, *args)` for a file object (not a plain int); with `remember`,
        record the object so its registration can be found after it is closed."""
        fd = self._lookup_fd(fileobj)
        try:
            result = operation(fd, *args)
        except OSError:
            if fd in self._fileobjs:
                self._forget_fd(fd)
            raise
        if remember:
            self._fileobjs[fd] = fileobj
        return result

    def add_reader(self, fd, callback, *args) -> None:
        self._ensure_fd_no_transport(fd)
        if isinstance(fd, int):
            self._add_reader(_fileobj_to_fd(fd), callback, *args)
        else:
            self._by_object(self._add_reader, fd, callback, *args, remember=True)

    def remove_reader(self, fd) -> bool:
        self._ensure_fd_no_transport(fd)
        if isinstance(fd, int):
            return self._remove_reader(_fileobj_to_fd(fd))
        return self._by_object(self._remove_reader, fd)

    def add_writer(self, fd, callback, *args) -> None:
        self._ensure_fd_no_transport(fd)
        if isinstance(fd, int):
            self._add_writer(_fileobj_to_fd(fd), callback, *args)
        else:
            self._by_object(self._add_writer, fd, callback, *args, remember=True)

    def remove_writer(self, fd) -> bool:
        self._ensure_fd_no_transport(fd)
        if isinstance(fd, int):
            return self._remove_writer(_fileobj_to_fd(fd))
        return self._by_object(self._remove_writer, fd)

    # ----------------------------------------------- parked readers (sock_* coroutines)

    def _add_reader_handle(self, fd: int, handle: Handle) -> None:
        """`_add_reader` with a handle the caller made: one of its own Handle subclass,
        whose `cancel()` the loop calls when another reader replaces it (see `_park_reader`)."""
        self._add_handle(self._readers, fd, handle)

    def _park_reader(self, fd: int, handle: Handle) -> None:
        """The wait `handle` (fd's reader) served is over: keep it registered one more
        iteration, then remove it unless another reader has replaced it by then.

        A task that reads in a loop (recv, answer, recv again) would otherwise remove its
        reader and add it back a moment later, two epoll_ctl calls per message; parked,
        the next wait only swaps the handle in the fd table. The hazard is the caller's to
        handle: if its file is closed while parked, the kernel drops the registration, and a
        new file given the same fd number gets only a handle swap, never a poller
        registration. The parked handle's `cancel()` then calls `_rearm_reader`.

        The caller may also re-arm the parked handle itself for its next wait, by giving it
        new `_args` (cheaper still: no handle made, nothing swapped); the removal compares
        them with the arguments the handle was parked with, and leaves a re-armed handle."""
        if not self._closed:
            self.call_soon(self._unpark_reader, fd, handle, handle._args)

    def _reader_handle(self, fd: int) -> Handle | None:
        """The handle registered to read fd, parked or waiting, or None (for a sock_*
        coroutine asking whether its own last wait is still parked). Each loop replaces
        this method with the table's own `get` (see CoreLoop.__init__)."""
        return self._readers.get(fd)

    def _unpark_reader(self, fd: int, handle: Handle, parked_args: tuple) -> None:
        if self._readers.get(fd) is handle and handle._args is parked_args:
            self._remove_reader(fd)

    def _rearm_reader(self, fd: int, replaced: Handle) -> None:
        """Register fd with the poller again for the reader that replaced `replaced`: the
        file `replaced` was waiting on was closed while parked (so the kernel forgot fd) and
        fd now names a newcomer, whose reader the fd table only swapped in."""
        if self._closed:
            return
        current = self._readers.get(fd)
        if current is None or current is replaced:
            return  # being removed, not replaced: the removal unregisters it
        mask = self._mask(fd)
        poller = self._poller
        try:
            poller.register(fd, mask)
        except FileExistsError:
            poller.modify(fd, mask)
        except OSError:
            pass  # the newcomer was closed too; its own removal will tidy up

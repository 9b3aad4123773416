"""The sock_* coroutines (filled in by the networking work)."""

from __future__ import annotations


async def sock_recv(loop, *args, **kwargs):
    raise NotImplementedError("sock_recv is not implemented yet")


async def sock_recv_into(loop, *args, **kwargs):
    raise NotImplementedError("sock_recv_into is not implemented yet")


async def sock_recvfrom(loop, *args, **kwargs):
    raise NotImplementedError("sock_recvfrom is not implemented yet")


async def sock_recvfrom_into(loop, *args, **kwargs):
    raise NotImplementedError("sock_recvfrom_into is not implemented yet")


async def sock_sendall(loop, *args, **kwargs):
    raise NotImplementedError("sock_sendall is not implemented yet")


async def sock_sendto(loop, *args, **kwargs):
    raise NotImplementedError("sock_sendto is not implemented yet")


async def sock_connect(loop, *args, **kwargs):
    raise NotImplementedError("sock_connect is not implemented yet")


async def sock_accept(loop, *args, **kwargs):
    raise NotImplementedError("sock_accept is not implemented yet")


async def sock_sendfile(loop, *args, **kwargs):
    raise NotImplementedError("sock_sendfile is not implemented yet")


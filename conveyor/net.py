"""Connections, servers, datagram endpoints, DNS and sendfile (filled in by the networking work)."""

from __future__ import annotations


async def create_connection(loop, *args, **kwargs):
    raise NotImplementedError("create_connection is not implemented yet")


async def create_server(loop, *args, **kwargs):
    raise NotImplementedError("create_server is not implemented yet")


async def create_unix_connection(loop, *args, **kwargs):
    raise NotImplementedError("create_unix_connection is not implemented yet")


async def create_unix_server(loop, *args, **kwargs):
    raise NotImplementedError("create_unix_server is not implemented yet")


async def connect_accepted_socket(loop, *args, **kwargs):
    raise NotImplementedError("connect_accepted_socket is not implemented yet")


async def sendfile(loop, *args, **kwargs):
    raise NotImplementedError("sendfile is not implemented yet")


"""One-call file system functions, each one trip to the loop's file pool: whole files
(``read_bytes``, ``write_text``, ...) and paths (``stat``, ``exists``, ``listdir``,
``iterdir``, ``mkdir``, ``remove``, ``rename``, ...).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
from typing import Any, AsyncIterator, Callable, Iterable, Union

from .pool import pool_for

__all__ = ["read_bytes", "read_text", "write_bytes", "write_text",
           "stat", "exists", "isfile", "isdir", "listdir", "iterdir", "mkdir", "rmdir",
           "remove", "unlink", "rename", "replace", "StrPath", "AnyPath"]

StrPath = Union[str, "os.PathLike[str]"]
AnyPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]", int]


# -- whole files --------------------------------------------------------------------------


async def read_bytes(path: AnyPath) -> bytes:
    """The whole content of the file at ``path``, in one trip to a thread."""
    return await _run(_read_bytes_sync, path)


async def read_text(path: AnyPath, encoding: str | None = None, errors: str | None = None,
                    newline: str | None = None) -> str:
    """The whole content of the file at ``path``, decoded, in one trip to a thread."""
    return await _run(_read_text_sync, path, encoding, errors, newline)


async def write_bytes(path: AnyPath, data: bytes) -> int:
    """Replace the content of the file at ``path`` with ``data``; returns the byte count."""
    return await _run(_write_sync, path, "wb", memoryview(data), None, None, None)


async def write_text(path: AnyPath, data: str, encoding: str | None = None,
                     errors: str | None = None, newline: str | None = None) -> int:
    """Replace the content of the file at ``path`` with ``data``; returns the character
    count."""
    if not isinstance(data, str):
        raise TypeError(f"data must be str, not {type(data).__name__}")
    return await _run(_write_sync, path, "w", data, encoding, errors, newline)


def _read_bytes_sync(path: AnyPath) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_text_sync(path: AnyPath, encoding: str | None, errors: str | None,
                    newline: str | None) -> str:
    with open(path, "r", encoding=encoding, errors=errors, newline=newline) as f:
        return f.read()


def _write_sync(path: AnyPath, mode: str, data: Any, encoding: str | None,
                errors: str | None, newline: str | None) -> int:
    with open(path, mode, encoding=encoding, errors=errors, newline=newline) as f:
        return f.write(data)


# -- paths -------------------------------------------------------------------------------
# One trip to a thread each. A call cancelled after its thread began still takes effect.


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    return await pool_for(asyncio.get_running_loop()).submit(fn, args).future


async def stat(path: AnyPath, *, follow_symlinks: bool = True) -> os.stat_result:
    """``os.stat`` in a thread."""
    return await _run(_stat_sync, path, follow_symlinks)


def _stat_sync(path: AnyPath, follow_symlinks: bool) -> os.stat_result:
    return os.stat(path, follow_symlinks=follow_symlinks)


async def exists(path: AnyPath) -> bool:
    """``os.path.exists`` in a thread."""
    return await _run(os.path.exists, path)


async def isfile(path: AnyPath) -> bool:
    """``os.path.isfile`` in a thread."""
    return await _run(os.path.isfile, path)


async def isdir(path: AnyPath) -> bool:
    """``os.path.isdir`` in a thread."""
    return await _run(os.path.isdir, path)


async def listdir(path: StrPath = ".") -> list[str]:
    """``os.listdir`` in a thread: the names in the directory, in no particular order."""
    return await _run(os.listdir, path)


def iterdir(path: StrPath = ".") -> AsyncIterator[pathlib.Path]:
    """``async for entry in iterdir(path)``: like ``pathlib.Path(path).iterdir()``.

    The directory is listed in one trip to a thread when iteration starts, so the iterator
    holds no open directory handle between steps.
    """
    return _DirIterator(pathlib.Path(path))


class _DirIterator:
    __slots__ = ("_path", "_names")

    def __init__(self, path: pathlib.Path) -> None:
        self._path = path
        self._names: Iterable[str] | None = None

    def __aiter__(self) -> _DirIterator:
        return self

    async def __anext__(self) -> pathlib.Path:
        if self._names is None:
            self._names = iter(await _run(os.listdir, self._path))
        for name in self._names:
            return self._path / name
        raise StopAsyncIteration


async def mkdir(path: StrPath, mode: int = 0o777, *, parents: bool = False,
                exist_ok: bool = False) -> None:
    """``pathlib.Path(path).mkdir(mode, parents, exist_ok)`` in a thread."""
    await _run(_mkdir_sync, path, mode, parents, exist_ok)


def _mkdir_sync(path: StrPath, mode: int, parents: bool, exist_ok: bool) -> None:
    pathlib.Path(path).mkdir(mode, parents, exist_ok)


async def rmdir(path: AnyPath) -> None:
    """``os.rmdir`` in a thread."""
    await _run(os.rmdir, path)


async def remove(path: AnyPath) -> None:
    """``os.remove`` in a thread."""
    await _run(os.remove, path)


unlink = remove


async def rename(src: AnyPath, dst: AnyPath) -> None:
    """``os.rename`` in a thread."""
    await _run(os.rename, src, dst)


async def replace(src: AnyPath, dst: AnyPath) -> None:
    """``os.replace`` in a thread."""
    await _run(os.replace, src, dst)

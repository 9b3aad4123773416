"""Build the bench's C programs (``loadgen.c``, ``echo_server.c``) on first use, and cache them.

The sources ship inside the package, so an installed ``python -m conveyor bench`` finds them.
They are compiled with the system's C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``)
into a per-user cache directory (``$XDG_CACHE_HOME/conveyor/bench``, else
``~/.cache/conveyor/bench``). A binary's file name carries a hash of its source, the
compiler's identity and the flags, so an edited source or another compiler gets a fresh
build, and an unchanged one is reused. Builds land under a temporary name and are renamed
into place, so two benches starting at once cannot run a half-written binary.

Failures raise :class:`BuildError` with a message that says what to install; the caller
falls back to the Python load generator and says so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

__all__ = ["BuildError", "build", "compiler", "cache_dir"]

#: Flags for every program; TLS adds _TLS_FLAGS before the source and _TLS_LIBS after it.
_FLAGS = ("-O2", "-Wall")
_TLS_FLAGS = ("-DLOADGEN_TLS",)
_TLS_LIBS = ("-lssl", "-lcrypto")


class BuildError(RuntimeError):
    """A C program could not be built here; the message says why and what would help."""


def compiler() -> str | None:
    """The C compiler to use: ``$CC`` if set (and found), else cc, gcc or clang on PATH."""
    wanted = os.environ.get("CC")
    if wanted:
        return shutil.which(wanted.split()[0])
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def cache_dir() -> Path:
    """Where built programs are kept, created if needed (a temporary directory as a last resort)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for candidate in (Path(base) / "conveyor" / "bench",
                      Path(tempfile.gettempdir()) / f"conveyor-bench-{os.getuid()}"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    raise BuildError("no writable cache directory for the bench's C programs "
                     "(set XDG_CACHE_HOME)")


def _compiler_identity(cc: str) -> bytes:
    try:
        proc = subprocess.run([cc, "--version"], capture_output=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"the C compiler {cc} does not run: {exc}") from None
    return cc.encode() + b"\0" + proc.stdout.split(b"\n", 1)[0]


def _source(program: str) -> bytes:
    """The C source shipped with the package (importlib.resources finds it in any install)."""
    return resources.files(__package__).joinpath(f"{program}.c").read_bytes()


def build(program: str, *, tls: bool = False) -> Path:
    """The path of ``program`` (``"loadgen"`` or ``"echo_server"``), compiled if not cached.

    ``tls=True`` builds the load generator with OpenSSL; that needs OpenSSL's headers
    (Debian: libssl-dev) and raises :class:`BuildError` without them.
    """
    if not sys.platform.startswith("linux"):
        raise BuildError(f"the C {program} uses epoll, which only Linux has")
    cc = compiler()
    if cc is None:
        tried = f"CC={os.environ['CC']}" if os.environ.get("CC") else "cc, gcc, clang"
        raise BuildError(f"no C compiler (tried {tried}; Debian: apt-get install gcc)")
    source = _source(program)
    flags = _FLAGS + (_TLS_FLAGS if tls else ())
    libs = _TLS_LIBS if tls else ()
    key = hashlib.sha256(b"\0".join([source, _compiler_identity(cc), *map(str.encode, flags),
                                     *map(str.encode, libs)])).hexdigest()[:16]
    directory = cache_dir()
    target = directory / f"{program}{'-tls' if tls else ''}-{key}"
    if os.access(target, os.X_OK):
        return target
    with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as scratch:
        src = Path(scratch) / f"{program}.c"
        src.write_bytes(source)
        out = Path(scratch) / program
        cmd = [cc, *flags, "-o", str(out), str(src), *libs]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildError(f"{' '.join(cmd)} failed: {exc}") from None
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["(no output)"])[0]
            hint = (" (OpenSSL's headers missing? Debian: apt-get install libssl-dev)"
                    if tls and "openssl/" in proc.stderr else "")
            raise BuildError(f"{Path(cc).name} could not build {program}.c"
                             f"{' with TLS' if tls else ''}{hint}: {detail}")
        os.replace(out, target)
    return target

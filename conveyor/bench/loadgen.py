"""Loading an echo server from another process, and measuring what the server spends.

The echo workloads (net, tls) start a server under the loop being measured and call
:func:`load_server`; it runs the load generator against it and returns a
:class:`~conveyor.bench.registry.Measured`: messages, seconds, and the CPU time the server
process and the client each spent over the measured window.

The load generator is ``loadgen.c``, compiled on first use (:mod:`conveyor.bench.cbuild`):
an epoll client that costs far less per message than any Python server, so the server
sets the pace. Without a C compiler (or, for TLS, without OpenSSL's headers) the Python
client in :mod:`conveyor.bench.pyloadgen` stands in, with a warning. Both print ``start``
when the measured window opens and a JSON line when it closes; the server's CPU is read at
those two lines, so warm-up and teardown are not counted.

Where processes run is a :class:`LoadPlan`, decided once by the bench (``resolve``) and
handed to each measuring child in the ``CONVEYOR_BENCH_LOAD`` environment variable: which
client programs to run, and, on a machine with two or more cores, the core the client is
pinned to and the core the server is pinned to, so neither takes the other's time. The
C echo server (``echo_server.c``) under the same load gives each echo row its ceiling
(:func:`ceiling`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from . import cbuild
from .child import conveyor_env
from .registry import Measured

__all__ = ["LoadPlan", "ENV", "resolve", "current", "client_cpus", "pin", "cpu_seconds",
           "run", "load_server", "ceiling"]

#: The environment variable that carries the bench's LoadPlan to its measuring children.
ENV = "CONVEYOR_BENCH_LOAD"

_PYTHON_CLIENT = ("-m", f"{__package__}.pyloadgen")


@dataclass(frozen=True)
class LoadPlan:
    """Which load generator runs, and on which cores the client and the server run."""

    tcp: tuple[str, ...]
    tls: tuple[str, ...]
    #: The C echo server for the ceiling rows, or None when it could not be built.
    echo_server: str | None
    #: Empty when not pinning (one core, or the plan was made for use inside one process).
    client_cpus: tuple[int, ...] = ()
    server_cpus: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for the table's header: what loaded the servers, and where."""
        kind = "C client (loadgen.c)" if not _is_python(self.tcp) else "Python client"
        if _is_python(self.tls) != _is_python(self.tcp):
            kind += ", TLS: " + ("Python client" if _is_python(self.tls) else "C client")
        if self.client_cpus:
            where = (f"client pinned to CPU {_cpus(self.client_cpus)}, "
                     f"server to CPU {_cpus(self.server_cpus)}")
        else:
            where = "not pinned"
        return f"load from the {kind}, {where}"

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, text: str) -> LoadPlan:
        fields = json.loads(text)
        return cls(**{name: tuple(value) if isinstance(value, list) else value
                      for name, value in fields.items()})


def _is_python(command: tuple[str, ...]) -> bool:
    return tuple(command[1:3]) == _PYTHON_CLIENT


def _cpus(cpus: tuple[int, ...]) -> str:
    return ",".join(map(str, cpus))


def resolve(*, client: str = "auto", pin_cpus: bool = True) -> LoadPlan:
    """Build the C programs if they can be built and decide the cores; notes say what fell back.

    ``client="python"`` skips the C load generator (the C echo server, the ceiling, is
    still built). Notes starting with "warning:" are worth printing where the user sees
    them: they change what the figures mean.
    """
    notes: list[str] = []
    python_client = (sys.executable, *_PYTHON_CLIENT)
    tcp = tls = python_client
    c_error: cbuild.BuildError | None = None
    if client != "python":
        try:
            tcp = tls = (str(cbuild.build("loadgen")),)
        except cbuild.BuildError as exc:
            c_error = exc
            notes.append(f"warning: the C load generator cannot be built here: {exc}. The "
                         "load comes from the Python client, which can be slower than the "
                         "servers it loads, so rates may be the client's, not the server's")
        else:
            try:
                tls = (str(cbuild.build("loadgen", tls=True)),)
            except cbuild.BuildError as exc:
                tls = python_client
                notes.append(f"warning: TLS rows use the Python client: {exc}")
    try:
        echo_server: str | None = str(cbuild.build("echo_server"))
    except cbuild.BuildError as exc:
        echo_server = None
        if c_error is None or str(exc) != str(c_error):
            notes.append(f"no ceiling column: {exc}")
        else:
            notes.append("no ceiling column either (it is a C program too)")
    client_cpus: tuple[int, ...] = ()
    server_cpus: tuple[int, ...] = ()
    if pin_cpus:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(cpus) >= 2:
            client_cpus, server_cpus = (cpus[0],), (cpus[1],)
        else:
            notes.append("one CPU available: the load generator and the server share it")
    return LoadPlan(tcp, tls, echo_server, client_cpus, server_cpus, tuple(notes))


@functools.cache
def current() -> LoadPlan:
    """The plan the bench handed down, or, run outside the bench, one made here (unpinned)."""
    text = os.environ.get(ENV)
    if text:
        return LoadPlan.from_env(text)
    plan = resolve(pin_cpus=False)
    for note in plan.notes:
        print(f"conveyor.bench.loadgen: {note}", file=sys.stderr, flush=True)
    return plan


def client_cpus() -> tuple[int, ...]:
    """The cores the bench gave load generators (wrk too), without building anything."""
    text = os.environ.get(ENV)
    return LoadPlan.from_env(text).client_cpus if text else ()


def pin(pid: int, cpus: tuple[int, ...]) -> None:
    """Run process ``pid`` (and the threads it starts from now on) on ``cpus`` only."""
    if cpus:
        try:
            os.sched_setaffinity(pid, cpus)
        except ProcessLookupError:
            pass  # it has already exited; its exit status tells the caller why


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (all its threads)."""
    if pid == os.getpid():
        return time.process_time()
    try:
        # Linux names another process's CPU clock ((~pid) << 3) | CPUCLOCK_SCHED, as glibc's
        # clock_getcpuclockid() does; nanosecond resolution, where /proc has clock ticks.
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(port: int, *, size: int, connections: int, duration: float, warmup: float,
        tls: bool = False, server_pid: int | None = None,
        plan: LoadPlan | None = None) -> dict[str, Any]:
    """Load 127.0.0.1:``port`` and return the client's JSON plus ``server_cpu``.

    Blocks for warm-up + duration: from a loop, call it on an executor thread. The server
    is this process unless ``server_pid`` says otherwise.
    """
    plan = plan or current()
    cmd = [*(plan.tls if tls else plan.tcp), "--port", str(port), "--size", str(size),
           "--connections", str(connections), "--duration", str(duration),
           "--warmup", str(warmup), *(["--tls"] if tls else [])]
    server = os.getpid() if server_pid is None else server_pid
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=conveyor_env()) as client:
        try:
            pin(client.pid, plan.client_cpus)
            started = client.stdout.readline()
            cpu_at_start = cpu_seconds(server)
            finished = client.stdout.readline()
            cpu_at_end = cpu_seconds(server)
            _, errors = client.communicate(timeout=60)
        except BaseException:
            client.kill()
            raise
    if client.returncode or started.strip() != "start" or not finished.strip():
        detail = errors.strip().splitlines()[-1:] or [f"exit status {client.returncode}"]
        raise RuntimeError(f"the load generator failed: {detail[0]}")
    result = json.loads(finished)
    result["server_cpu"] = cpu_at_end - cpu_at_start
    return result


async def load_server(port: int, *, size: int, connections: int, duration: float,
                      warmup: float, tls: bool = False) -> Measured:
    """Load a server of the running loop listening on ``port``; what an echo workload returns."""
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(None, functools.partial(
        run, port, size=size, connections=connections, duration=duration, warmup=warmup,
        tls=tls))
    return Measured(result["messages"], result["seconds"], cpu=result["server_cpu"],
                    client_cpu=result["client_cpu"])


def ceiling(*, size: int, connections: int, duration: float, warmup: float,
            plan: LoadPlan, python: str | None = None) -> Measured:
    """The C echo server under the same load: the best any server can do on this machine.

    With ``python``, the pure-Python echo server (``bare_echo.py``) under that interpreter
    instead: the best any Python server can do there.
    """
    if python is not None:
        command = [python, os.path.join(os.path.dirname(__file__), "bare_echo.py")]
        what = "the pure-Python echo server"
    elif plan.echo_server is None:
        raise RuntimeError("the C echo server is not available")
    else:
        command, what = [plan.echo_server], "the C echo server"
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as server:
        try:
            pin(server.pid, plan.server_cpus)
            port = server.stdout.readline().strip()
            if not port.isdigit():
                raise RuntimeError(f"{what} did not start: {server.stderr.read().strip()}")
            result = run(int(port), size=size, connections=connections, duration=duration,
                         warmup=warmup, server_pid=server.pid, plan=plan)
        finally:
            server.stdin.close()  # its signal to exit
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
    return Measured(result["messages"], result["seconds"], cpu=result["server_cpu"],
                    client_cpu=result["client_cpu"])

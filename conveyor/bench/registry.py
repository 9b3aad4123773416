"""What a benchmark workload is, and how suites are found.

A suite is any module in ``conveyor.bench`` that defines ``WORKLOADS``, a list of
:class:`Workload`. Nothing registers itself at import time: the harness imports the suite
module it was asked for and reads that list. Keeping the registry a plain list means a suite
author writes one module and touches nothing else, and a broken suite cannot break another.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Mapping

__all__ = ["Workload", "Measured", "SuiteError", "load_suite", "suite_names", "select"]


@dataclass(frozen=True)
class Measured:
    """What a workload that times itself and knows the server's CPU cost returns.

    ``cpu`` is the CPU time (user + system) the server process spent over the same window as
    ``seconds``; the table shows it per operation beside the rate. On a machine where the
    load generator or a neighbour sets the pace, the rate says little about the loop, the
    CPU per operation still does. ``client_cpu`` is the load generator's CPU over the
    window: near ``seconds`` means the client, not the server, was the limit.
    """

    ops: int
    seconds: float
    cpu: float | None = None
    client_cpu: float | None = None


@dataclass(frozen=True)
class Workload:
    """One measurable piece of work.

    ``func`` is either ``async def func(**params)``, run inside the loop under test, or a
    plain ``def func(loop, **params)`` that drives the loop itself. It returns the number of
    operations it did; the harness times the call. A workload with setup it does not want
    timed returns ``(operations, seconds)`` and times the interesting part itself, or a
    :class:`Measured` when it also knows the server's CPU time.
    """

    name: str
    func: Callable[..., Any]
    params: Mapping[str, Any] = field(default_factory=dict)
    #: Overrides merged over ``params`` under ``--quick``: small sizes for smoke tests.
    quick: Mapping[str, Any] = field(default_factory=dict)
    #: What one operation is, as shown in the table ("ops/s", "messages/s", "MiB/s").
    unit: str = "ops/s"
    #: One line for ``--list``; defaults to the first line of ``func``'s docstring.
    doc: str = ""
    #: A server loaded from another process (conveyor.bench.loadgen, wrk): the harness pins
    #: the measuring process to one core and the load generator gets another.
    served: bool = False
    #: A plain TCP echo server loaded by conveyor.bench.loadgen with ``size``,
    #: ``connections``, ``duration`` and ``warmup``: the harness also measures the C echo
    #: server under the same load, as the row's ceiling.
    ceiling: bool = False

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def arguments(self, quick: bool,
                  overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The keyword arguments for one run, the function's own defaults included.

        Spelling the defaults out makes the JSON report say exactly what was measured.
        ``overrides`` (from the command line, e.g. ``duration``) apply last, and only to
        parameters the function has.
        """
        args = {name: p.default for name, p in inspect.signature(self.func).parameters.items()
                if p.default is not p.empty and p.kind is not p.POSITIONAL_ONLY}
        args.update(self.params)
        if quick:
            args.update(self.quick)
        args.update((k, v) for k, v in (overrides or {}).items() if k in args)
        return args

    def summary(self) -> str:
        if self.doc:
            return self.doc
        text = inspect.getdoc(self.func) or ""
        return text.splitlines()[0] if text else ""


class SuiteError(LookupError):
    """A suite or workload that does not exist, or a suite module that fails to load."""


_PACKAGE = __name__.rpartition(".")[0]


def load_suite(name: str) -> list[Workload]:
    """Import ``conveyor.bench.<name>`` and return its ``WORKLOADS``."""
    if not name.isidentifier():
        raise SuiteError(f"not a suite name: {name!r}")
    try:
        module = importlib.import_module(f"{_PACKAGE}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{_PACKAGE}.{name}":
            raise SuiteError(f"no benchmark suite named {name!r}") from None
        raise SuiteError(f"suite {name!r} failed to import: {exc}") from exc
    except Exception as exc:
        raise SuiteError(f"suite {name!r} failed to import: {exc!r}") from exc
    return _workloads_of(module, name)


def _workloads_of(module: ModuleType, name: str) -> list[Workload]:
    workloads = getattr(module, "WORKLOADS", None)
    if workloads is None:
        raise SuiteError(f"{module.__name__} is not a suite (it has no WORKLOADS)")
    bad = [w for w in workloads if not isinstance(w, Workload)]
    if bad:
        raise SuiteError(f"suite {name!r}: WORKLOADS holds non-Workload items {bad!r}")
    seen: set[str] = set()
    for w in workloads:
        if w.name in seen:
            raise SuiteError(f"suite {name!r}: two workloads named {w.name!r}")
        seen.add(w.name)
    return list(workloads)


def suite_names() -> list[str]:
    """Names of the modules in this package that may be suites, without importing them.

    The harness modules are skipped by name; anything else is tried when all suites are
    asked for, and a module without ``WORKLOADS`` is passed over there.
    """
    package = importlib.import_module(_PACKAGE)
    names = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.ispkg or info.name in _HARNESS_MODULES:
            continue
        names.append(info.name)
    return sorted(names)


_HARNESS_MODULES = frozenset({"cbuild", "child", "cli", "harness", "loadgen", "loops",
                               "pyloadgen", "registry", "report"})


def select(specs: list[str]) -> tuple[list[tuple[str, Workload]], list[str]]:
    """Resolve command-line specs to ``(suite, workload)`` pairs.

    A spec is a suite name (``core``) or one workload of it (``core.timers``). No specs
    means every suite. Returns the pairs and notes about suites that were passed over
    (only when no specs were given; a named suite that fails raises :class:`SuiteError`).
    """
    notes: list[str] = []
    pairs: list[tuple[str, Workload]] = []
    if not specs:
        for name in suite_names():
            try:
                workloads = load_suite(name)
            except SuiteError as exc:
                if "has no WORKLOADS" not in str(exc):
                    notes.append(f"skipped suite {name!r}: {exc}")
                continue
            pairs.extend((name, w) for w in workloads)
        return pairs, notes
    for spec in specs:
        suite, _, wanted = spec.partition(".")
        workloads = load_suite(suite)
        if wanted:
            matches = [w for w in workloads if w.name == wanted]
            if not matches:
                known = ", ".join(w.name for w in workloads)
                raise SuiteError(f"suite {suite!r} has no workload {wanted!r} (it has: {known})")
            workloads = matches
        for w in workloads:
            if (suite, w) not in pairs:
                pairs.append((suite, w))
    return pairs, notes

"""Smoke tests for ``python -m conveyor bench``: it runs, prints its table, and fails cleanly.

Timing figures are never asserted: they depend on the machine and on whoever else is
using it. What is checked is the shape of the output and the exit status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.bench import registry, report

ROOT = Path(__file__).resolve().parents[2]
CORE_WORKLOADS = ("core.callbacks", "core.timers", "core.tasks")


def _conveyor(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "conveyor", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.mark.timeout(120)
def test_bench_core_quick_prints_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _conveyor("bench", "core", "--quick", "--repeat", "1", "--loops", "asyncio",
                     "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("workload"))
    for column in ("asyncio", "conveyor/asyncio", "conveyor/uvloop"):
        assert column in header.split()
    for name in CORE_WORKLOADS:
        row = next((line for line in lines if line.startswith(name)), None)
        assert row is not None, f"{name} missing from:\n{proc.stdout}"
        assert "error" not in row

    doc = json.loads(out.read_text())
    assert doc["loops"] == ["asyncio"]
    assert [f"{r['suite']}.{r['workload']}" for r in doc["results"]] == list(CORE_WORKLOADS)
    for result in doc["results"]:
        samples = result["loops"]["asyncio"]
        assert len(samples["rates"]) == 1 and not samples["errors"]
        assert samples["loop_type"].startswith("asyncio.")


@pytest.mark.timeout(60)
def test_unknown_suite_and_loop_are_refused() -> None:
    proc = _conveyor("bench", "no_such_suite", "--quick")
    assert proc.returncode == 2
    assert "no benchmark suite named 'no_such_suite'" in proc.stderr
    proc = _conveyor("bench", "core", "--loops", "tokio")
    assert proc.returncode == 2
    assert "unknown loop" in proc.stderr


@pytest.mark.timeout(30)
def test_missing_command_module_is_reported() -> None:
    from conveyor import __main__ as cli

    cli.COMMANDS["nothing"] = ("conveyor.no_such_module_for_test", "test only")
    try:
        assert cli.main(["nothing"]) == 2
    finally:
        del cli.COMMANDS["nothing"]


def test_select_single_workload() -> None:
    pairs, notes = registry.select(["core.timers"])
    assert [(suite, w.name) for suite, w in pairs] == [("core", "timers")]
    assert notes == []
    with pytest.raises(registry.SuiteError, match="no workload 'nope'"):
        registry.select(["core.nope"])


def test_every_suite_loads() -> None:
    pairs, notes = registry.select([])
    assert notes == [], notes
    assert {f"{suite}.{w.name}" for suite, w in pairs} >= set(CORE_WORKLOADS)


@pytest.mark.parametrize("rate, text", [(0.5, "0.5"), (999, "999"), (1234, "1.23k"),
                                        (2_500_000, "2.5M"), (3e9, "3G")])
def test_format_rate(rate: float, text: str) -> None:
    assert report.format_rate(rate) == text

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
CORE_WORKLOADS = ("core.callbacks", "core.timers", "core.tasks", "core.gather")


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


def _bench_from(cwd: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the bench from ``cwd`` with this checkout on sys.path but not on PYTHONPATH.

    Nothing in the environment then points at this conveyor: a child that imports it can
    only have been told where it is by the bench.
    """
    env = dict(os.environ if env is None else env)
    env.pop("PYTHONPATH", None)
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from conveyor.__main__ import main; "
            "sys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, "bench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.mark.timeout(120)
def test_python_option_runs_the_workloads_under_another_interpreter(tmp_path: Path) -> None:
    """A bare venv has no conveyor and no uvloop: the bench supplies the first, and asks
    the venv (not itself) whether it has the second."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True, timeout=60)
    python = str(tmp_path / "venv" / "bin" / "python")
    out = tmp_path / "bench.json"
    proc = _bench_from(tmp_path, "core.callbacks", "--quick", "--loops", "asyncio,conveyor",
                       "--python", python, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"({python})" in proc.stdout.splitlines()[0]
    doc = json.loads(out.read_text())
    assert doc["executable"] == python
    loops = doc["results"][0]["loops"]
    assert loops["asyncio"]["loop_type"].startswith("asyncio.")
    assert loops["conveyor"]["loop_type"] == "conveyor.loop.EventLoop"

    proc = _bench_from(tmp_path, "core.callbacks", "--quick", "--loops", "uvloop",
                       "--python", python)
    assert proc.returncode == 2
    assert "skipped loop uvloop: uvloop is not installed" in proc.stderr


@pytest.mark.timeout(60)
def test_python_option_refuses_what_cannot_run_conveyor(tmp_path: Path) -> None:
    proc = _bench_from(tmp_path, "core", "--quick", "--python", str(tmp_path / "nothing"))
    assert proc.returncode == 2
    assert "--python: cannot run" in proc.stderr


@pytest.mark.timeout(120)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the C load generator "
                    "uses epoll")
def test_net_rows_report_cpu_and_the_ceiling(tmp_path: Path) -> None:
    from conveyor.bench import cbuild

    if cbuild.compiler() is None:
        pytest.skip("no C compiler")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = tmp_path / "bench.json"
    proc = _bench_from(tmp_path, "net.proto_1k", "--quick", "--repeat", "2", "--loops",
                       "conveyor", "--json", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if line.startswith("workload"))
    assert header.split()[2:5] == ["conveyor", "bare-py", "ceiling"]
    assert "load from the C client (loadgen.c)" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["load"]["tcp"][0].startswith(str(tmp_path / "cache"))
    for name in ("conveyor", "bare-py", "ceiling"):
        samples = doc["results"][0]["loops"][name]
        assert len(samples["cpu_per_op"]) == 2 and all(c > 0 for c in samples["cpu_per_op"])
        assert len(samples["client_load"]) == 2
    assert doc["results"][0]["loops"]["ceiling"]["loop_type"].startswith("C epoll echo server")
    assert doc["results"][0]["loops"]["bare-py"]["loop_type"].startswith("pure-Python epoll")


@pytest.mark.timeout(120)
def test_without_a_compiler_the_bench_warns_and_uses_the_python_client(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("CC", None)
    proc = _bench_from(tmp_path, "net.proto_1k", "--quick", "--loops", "conveyor", env=env)
    assert proc.returncode == 0, proc.stderr
    warning = "warning: the C load generator cannot be built here: no C compiler"
    assert warning in proc.stderr and warning in proc.stdout
    assert "load from the Python client" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if line.startswith("workload"))
    assert "ceiling" not in header.split() and "bare-py" not in header.split()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["asyncio", "conveyor"])
def test_only_the_conveyor_child_imports_conveyor(loop: str) -> None:
    """Importing all of conveyor changes the process (glibc's malloc thresholds, hence the
    cost of asyncio's 256 KiB reads): a child measuring another loop must not do it."""
    from conveyor.bench import child

    cmd = child.command(sys.executable, "core", "callbacks", loop) + ["--quick"]
    cmd.insert(1, "-v")  # logs every module it loads: "import 'name' # <loader>"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=50,
                          env=child.conveyor_env(), stdin=subprocess.DEVNULL, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert child.RESULT_MARKER in proc.stdout
    imported = {line.split("'")[1] for line in proc.stderr.splitlines()
                if line.startswith("import '")}
    assert "conveyor.bench.core" in imported
    assert ("conveyor.loop" in imported) == (loop == "conveyor")

"""``python -m conveyor trace`` and ``run``: the program runs as ``python app.py`` would, on
conveyor's loop, and the trace file is written even when the program fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

APP = textwrap.dedent("""\
    import asyncio, sys

    async def worker(n):
        await asyncio.sleep(0.01 * n)
        return n

    async def main():
        loop = asyncio.get_running_loop()
        print("loop", type(loop).__module__, "debug", loop.get_debug())
        print("name", __name__, "argv", sys.argv[1:], "path0", sys.path[0])
        results = await asyncio.gather(asyncio.create_task(worker(1), name="w1"),
                                       asyncio.create_task(worker(2), name="w2"))
        if "--fail" in sys.argv:
            raise RuntimeError("planned failure")
        return sum(results)

    if __name__ == "__main__":
        sys.exit(asyncio.run(main()))
    """)


def conveyor_cli(*args, cwd=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "conveyor", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=cwd, stdin=subprocess.DEVNULL)


def test_trace_json_of_a_script(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP)
    out = tmp_path / "out.json"
    proc = conveyor_cli("trace", "-o", str(out), str(app), "x", "--y")
    assert proc.returncode == 3, proc.stderr
    assert "loop conveyor.loop debug False" in proc.stdout
    assert f"name __main__ argv ['x', '--y'] path0 {tmp_path}" in proc.stdout
    data = json.loads(out.read_text())
    names = {e["args"]["name"] for e in data["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"kernel wait (poll)", "loop", "task w1 (worker)", "task w2 (worker)"} <= names
    assert f"trace written to {out}" in proc.stderr


def test_trace_is_written_when_the_program_fails(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP)
    out = tmp_path / "out.html"
    proc = conveyor_cli("run", "--trace", str(out), "--debug", str(app), "--fail")
    assert proc.returncode == 1
    assert "RuntimeError: planned failure" in proc.stderr
    assert "debug True" in proc.stdout
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "task w1 (worker)" in html


def test_run_a_module(tmp_path):
    (tmp_path / "appmod.py").write_text(APP)
    env_root = tmp_path
    proc = conveyor_cli("run", "-m", "appmod", "a", cwd=env_root)
    assert proc.returncode == 3, proc.stderr
    assert "name __main__ argv ['a']" in proc.stdout


def test_usage_errors(tmp_path):
    proc = conveyor_cli("run")
    assert proc.returncode == 2
    assert "no script given" in proc.stderr
    proc = conveyor_cli("run", "--watchdog", "-1", "app.py")
    assert proc.returncode == 2
    assert "must be positive" in proc.stderr
    proc = conveyor_cli("trace", "--help")
    assert proc.returncode == 0 and "-o" in proc.stdout


def test_run_dump_tasks_on_signal(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent("""\
        import asyncio, os, signal

        async def child():
            await asyncio.sleep(3600)

        async def main():
            task = asyncio.create_task(child(), name="the-child")
            await asyncio.sleep(0)
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.sleep(0)
            task.cancel()

        asyncio.run(main())
        """))
    proc = conveyor_cli("run", "--dump-tasks-on-signal", str(app))
    assert proc.returncode == 0, proc.stderr
    assert "2 task(s)" in proc.stderr
    assert "└── the-child child() [pending]" in proc.stderr
    assert f"child at {app}:4" in proc.stderr


@pytest.mark.parametrize("argv, module, program", [
    (["app.py", "-h", "--trace", "x"], None, ["app.py", "-h", "--trace", "x"]),
    (["--debug", "-m", "pkg.mod", "-x", "--y"], "pkg.mod", ["-x", "--y"]),
    (["--watchdog", "0.5", "--slow=0.1", "app.py", "-m", "z"], None, ["app.py", "-m", "z"]),
    (["--trace", "out.json", "--", "-weird-name.py"], None, ["-weird-name.py"]),
])
def test_program_arguments_are_left_alone(argv, module, program):
    from conveyor import cli_run

    ns = cli_run.parse(cli_run._parser(), argv)
    assert ns.module == module
    assert ns.program == program


AIOHTTP_APP = textwrap.dedent("""\
    import asyncio, sys, time
    from aiohttp import ClientSession, web

    async def slow(request):
        time.sleep(0.05)  # BLOCKS
        return web.Response(text="done")

    async def main(requests):
        app = web.Application()
        app.router.add_get("/slow", slow)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with ClientSession() as session:
            async def get():
                async with session.get(f"http://127.0.0.1:{port}/slow") as response:
                    assert await response.text() == "done"
            await asyncio.gather(*(get() for _ in range(requests)))
        await runner.cleanup()

    asyncio.run(main(int(sys.argv[1])))
    """)


def test_trace_of_an_aiohttp_server(tmp_path):
    """A real server traced as a user would: each request's handler task is in one group
    of lanes (its coroutine function), and each slow step is named by the handler and the
    line that blocked, not by the task."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        message = "aiohttp is not installed (the integration extra; scripts/test.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    app = tmp_path / "app.py"
    app.write_text(AIOHTTP_APP)
    blocks = next(n for n, line in enumerate(AIOHTTP_APP.splitlines(), 1)
                  if line.endswith("# BLOCKS"))
    out = tmp_path / "out.html"
    requests = 20
    proc = conveyor_cli("trace", "-o", str(out), str(app), str(requests))
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    payload = html.split('<script type="application/json" id="trace-data">', 1)[1]
    data = json.loads(payload.split("</script>", 1)[0])
    coros = [e["args"]["coro"] for e in data["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name" and e["tid"] >= 1000]
    # The client's requests make one group; the server's connection handlers another. (Each
    # request's _handle_request task has a lane too on 3.11; from 3.12 aiohttp starts it
    # eagerly, it finishes within RequestHandler.start's step and is never scheduled.)
    assert coros.count("main.<locals>.get") == requests
    assert "RequestHandler.start" in coros
    if sys.version_info < (3, 12):
        assert coros.count("RequestHandler._handle_request") == requests
    slow = [e["name"] for e in data["traceEvents"]
            if e["ph"] == "X" and e["tid"] == 2 and e["args"].get("slow")]
    named = slow.count(f"slow() app.py:{blocks}")
    # Each handler's step is seen by the sampler (every 10 ms, in a 50 ms step); allow a
    # miss or two on a machine too loaded to run the sampler thread in time.
    assert named >= requests - 2, slow

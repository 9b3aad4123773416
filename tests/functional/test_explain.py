"""``python -m conveyor explain``: the recorded steps tell the talk's story, and the page
shows it in a real browser.

The recorder is checked in-process on the ordering example (One, Three, Two, with the
queue holding "Two" while "Three" prints); the command, the step limit and the demo in
their own interpreters; the page in headless Chromium, driven to a step by ``#step=N``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import conveyor
from conveyor._talk import order_all
from conveyor.explain import Recording

from browser import TextById, chromium, needs_chromium

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.timeout(120)


def conveyor_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "conveyor", *args], capture_output=True,
                          text=True, timeout=90, env=env, cwd=cwd, stdin=subprocess.DEVNULL)


def page_data(page: Path) -> dict:
    """The recording the page embeds."""
    match = re.search(r"const DATA = (.*?);\nconst STEPS", page.read_text(), re.S)
    assert match, "no data in the page"
    return json.loads(match.group(1))


def printed(data: dict, text: str, nth: int = 0) -> dict:
    """The ``nth`` step that printed a line starting with ``text``."""
    found = [data["steps"][index] for index, written in data["output"]
             if written.startswith(text) and written.strip()]
    assert len(found) > nth, f"no print of {text!r}: {data['output']}"
    assert found[nth]["k"] == "print"
    return found[nth]


@pytest.fixture(scope="module")
def order_steps() -> dict:
    recording = Recording().start()
    try:
        conveyor.run(order_all(print))
    finally:
        recording.stop()
    return recording.to_json()


# ------------------------------------------------------------------ the recorder

def test_output_is_one_three_two_three_times(order_steps):
    text = "".join(text for _, text in order_steps["output"])
    assert text.split("\n")[:-1] == [
        "-- loop.call_soon", "One", "Three", "Two",
        "-- loop.call_later(0, ...)", "One", "Three", "Two",
        "-- asyncio.create_task", "One", "Three", "Two"]


def test_queue_holds_two_while_three_prints(order_steps):
    steps = order_steps["steps"]
    # call_soon: "Two" is queued behind the running step when "Three" prints
    one, three, two = (printed(order_steps, word) for word in ("One", "Three", "Two"))
    assert one["queue"] == []
    assert three["queue"] == ["_say_then_finish(print, 'Two', Future #1)"]
    assert three["stack"][-1]["name"] == "order_call_soon"
    assert "say(\"Three\")" in order_steps["sources"][three["stack"][-1]["file"]][
        str(three["stack"][-1]["line"])]
    assert one["n"] < three["n"] < two["n"]
    # ... then the task stops at its await, the loop polls, and runs "Two" from the queue
    between = steps[three["n"] + 1:two["n"]]
    assert [step["k"] for step in between] == ["return", "poll", "run"]
    assert "waits for Future #1" in between[0]["what"]
    assert between[2]["stack"][-1]["name"] == "_say_then_finish"
    assert between[2]["queue"] == []
    assert two["stack"][-1]["name"] == "_say_then_finish"
    # call_later(0): "Two" waits in the timer heap, not the ready queue
    three_later = printed(order_steps, "Three", 1)
    assert three_later["queue"] == []
    assert [desc for _, desc in three_later["timers"]] == [
        "_say_then_finish(print, 'Two', Future #2)"]
    # create_task: the new task's first step is queued
    three_task = printed(order_steps, "Three", 2)
    # (task numbers count every task this process made: other tests run in it too)
    assert len(three_task["queue"]) == 1
    assert re.fullmatch(r"step of Task-\d+ \(order_task.<locals>.two\)", three_task["queue"][0])
    assert printed(order_steps, "Two", 2)["stack"][-1]["name"] == "order_task.<locals>.two"


def test_tasks_and_layers(order_steps):
    steps = order_steps["steps"]
    stop = steps[printed(order_steps, "Three")["n"] + 1]
    assert stop["tasks"][0]["coro"] == "order_all"
    assert stop["tasks"][0]["awaits"] == "Future #1"
    layers = dict(stop["layers"])
    assert set(layers) == {"coroutine", "Task", "event loop", "poller"}
    assert "`await` suspends the coroutine" in layers["coroutine"]
    assert "parks on Future #1" in layers["Task"]
    poll = steps[stop["n"] + 1]
    assert poll["k"] == "poll" and poll["kernel"]["backend"] in layers["poller"]


def test_nothing_is_recorded_or_imported_without_explain():
    code = ("import sys, conveyor, asyncio\n"
            "loop = conveyor.new_event_loop()\n"
            "print(loop._hooks, any(m.startswith('conveyor.explain') for m in sys.modules))\n"
            "loop.close()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.stdout.split() == ["None", "False"], proc.stderr


# ------------------------------------------------------------------ the command

def test_a_long_program_is_refused(tmp_path):
    app = tmp_path / "long.py"
    app.write_text(textwrap.dedent("""\
        import asyncio
        async def main():
            for _ in range(100_000):
                await asyncio.sleep(0)
            print("finished")
        asyncio.run(main())
        """))
    page = tmp_path / "page.html"
    proc = conveyor_cli("explain", "--limit", "300", "-o", str(page), str(app), cwd=tmp_path)
    assert proc.returncode == 1
    assert "more than 300 steps" in proc.stderr
    assert "python -m conveyor trace" in proc.stderr
    assert "finished" not in proc.stdout, "the program should have been stopped"
    assert not page.exists()


def test_blocked_loop_page_says_what_blocked(tmp_path):
    page = tmp_path / "blocked.html"
    proc = conveyor_cli("explain", "-o", str(page), str(EXAMPLES / "blocked_loop.py"),
                        "--work", "0.3", "--no-watchdog", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "blocking: 0 heartbeat ticks" in proc.stdout
    data = page_data(page)
    steps = data["steps"]
    blocked = [step for step in steps if "it blocked the loop" in step["what"]]
    assert blocked and blocked[0]["what"].startswith("Task-1 yields")
    assert "the loop was blocked" in dict(blocked[0]["layers"])["event loop"]
    # the heartbeat's timer came due while the loop was blocked
    assert any(due < -0.1 and "wakes Task-2" in desc for due, desc in blocked[0]["timers"])
    yielding = printed(data, "yielding")
    assert yielding["stack"][-1]["name"] == "measure"


def test_move_async_page_shows_batches_waiting_together(tmp_path):
    page = tmp_path / "move.html"
    proc = conveyor_cli("explain", "-o", str(page), str(EXAMPLES / "move_async.py"),
                        "--boxes", "30", "--pack", "0.02", "--transport", "0.05",
                        "--unpack", "0.02", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    steps = page_data(page)["steps"]
    # every batch's packing sleep sits in the heap at once, each waking its own task
    sleeping = max(steps, key=lambda step: len(step["timers"]))
    assert [desc.rsplit("wakes ", 1)[1] for _, desc in sleeping["timers"]] == [
        "Task-2", "Task-3", "Task-4"]
    # and the loop sleeps in the kernel until the first is due
    assert any(step["k"] == "poll" and step["kernel"]["timeout"] > 0.01 for step in steps)
    # the last line is printed after the loop has finished: the script's own frames only
    last = steps[-1]
    assert last["k"] == "print" and last["kernel"] is None
    assert [frame["name"] for frame in last["stack"]] == ["<module>", "main"]


def test_demo_offers_and_writes_the_ordering_page(tmp_path):
    proc = conveyor_cli("demo", "--explain", "order.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "order.html") in proc.stdout
    data = page_data(tmp_path / "order.html")
    assert printed(data, "Three")["queue"] == ["_say_then_finish(print, 'Two', Future #1)"]


# ------------------------------------------------------------------ the page, in Chromium

@pytest.fixture(scope="module")
def order_page(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("explain")
    page = where / "order.html"
    proc = conveyor_cli("explain", "-o", str(page), str(EXAMPLES / "order.py"), cwd=where)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[1:4] == ["One", "Three", "Two"]
    assert f"steps explained in {page}" in proc.stderr
    return page


def panels_at(page: Path, step: int) -> dict[str, str]:
    """The text of every panel once the page is driven to ``step`` (numbered from 1)."""
    proc = chromium("--dump-dom", f"{page.as_uri()}#step={step}", window="1200,800")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'data-rendered="true"' in proc.stdout, "the page script did not finish"
    assert f'data-step="{step}"' in proc.stdout
    parser = TextById()
    parser.feed(proc.stdout)
    return parser.text


@needs_chromium
def test_page_steps_through_one_three_two(order_page):
    data = page_data(order_page)
    three = printed(data, "Three")["n"] + 1  # the page numbers steps from 1
    two = printed(data, "Two")["n"] + 1

    at_three = panels_at(order_page, three)
    assert at_three["what"] == "printprints 'Three'"
    assert at_three["output"].split() == ["--", "loop.call_soon", "One", "Three"]
    assert "_say_then_finish(print, 'Two', Future #1)" in at_three["queue"]
    assert at_three["stack"].lstrip().startswith("order_call_soon _talk.py:")
    assert 'say("Three")' in at_three["stack"]
    assert "Task-1" in at_three["tasks"] and "running" in at_three["tasks"]

    waiting = panels_at(order_page, three + 1)
    assert "waits for Future #1" in waiting["what"]
    assert "parks on Future #1" in waiting["layers"]
    assert "_say_then_finish" in waiting["queue"]

    at_two = panels_at(order_page, two)
    assert at_two["output"].split() == ["--", "loop.call_soon", "One", "Three", "Two"]
    assert at_two["stack"].lstrip().startswith("_say_then_finish _talk.py:")
    assert "(empty)" in at_two["queue"]
    assert "epoll" in at_two["kernel"] or "poll" in at_two["kernel"]


@needs_chromium
def test_page_controls_step_back_keys_and_jump(order_page, tmp_path):
    """The buttons, the keys and the time jump, driven by a script appended to a copy."""
    data = page_data(order_page)
    two_at = printed(data, "Two")["t"]
    driver = f"""<script>
      const click = id => document.getElementById(id).click();
      click("step"); click("step"); click("step"); click("back");
      document.dispatchEvent(new KeyboardEvent("keydown", {{key: "ArrowRight"}}));
      const after_keys = document.body.dataset.step;
      document.getElementById("time").value = "{two_at}";
      click("jump");
      document.body.dataset.afterKeys = after_keys;
    </script></body>"""
    page = tmp_path / "driven.html"
    page.write_text(order_page.read_text().replace("</body>", driver))
    proc = chromium("--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'data-after-keys="4"' in proc.stdout  # 1 +3 -1 +1
    jumped = int(re.search(r'data-step="(\d+)"', proc.stdout).group(1))
    assert data["steps"][jumped - 1]["t"] >= two_at
    assert jumped <= printed(data, "Two")["n"] + 1

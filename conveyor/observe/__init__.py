"""conveyor.observe: see what the loop is doing.

The loop calls an instrument interface at fixed points (`hooks`); everything here is a user
of that interface, and none of it costs anything until it is switched on:

- `trace` (trace.py): record a timeline; Chrome/Perfetto JSON or an offline HTML page;
- `watchdog` (watchdog.py): a thread that reports, with the blocking stack, when the loop
  has not come back to poll for too long;
- `collect_stats` / `loop_stats` (stats.py): counters, utilization, lag histograms;
- `dump_tasks` (taskdump.py): the live tasks as a tree with their await chains;
- `console` (console.py): a Unix socket through which `python -m conveyor top PID` watches
  the loop live (per-task figures from taskstats.py); only when asked.

See docs/observe.md.
"""

from .hooks import Instrument, add_instrument, instruments, remove_instrument
from .stats import LoopStats, Snapshot, collect_stats, loop_stats
from .taskdump import dump_tasks, dump_tasks_on_signal, format_tasks, track_spawns
from .trace import Tracer, trace
from .watchdog import Stall, Watchdog, watchdog
from .console import Console, console, _from_environment

__all__ = ["Instrument", "add_instrument", "remove_instrument", "instruments",
           "LoopStats", "Snapshot", "collect_stats", "loop_stats",
           "dump_tasks", "dump_tasks_on_signal", "format_tasks", "track_spawns",
           "Tracer", "trace", "Stall", "Watchdog", "watchdog", "Console", "console"]

_from_environment()  # CONVEYOR_CONSOLE=1: listen from the first loop on

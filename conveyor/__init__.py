"""conveyor: an asyncio event loop in pure Python that is fast and shows what it is doing.

    import conveyor
    conveyor.run(main())                       # like asyncio.run, on conveyor's loop
    asyncio.Runner(loop_factory=conveyor.new_event_loop)
    conveyor.install()                         # make plain asyncio.run use conveyor
    async with conveyor.open_file(path) as f:  # async file I/O on a per-loop thread pool
"""

from .loop import EventLoop
from .runner import EventLoopPolicy, install, new_event_loop, run
from .fs import open_file, read_bytes, read_text, write_bytes, write_text
from .observe import (Instrument, add_instrument, collect_stats, console, dump_tasks,
                      dump_tasks_on_signal, loop_stats, remove_instrument, trace, watchdog)

__all__ = ["EventLoop", "EventLoopPolicy", "install", "new_event_loop", "run",
           "Instrument", "add_instrument", "remove_instrument", "trace", "watchdog",
           "collect_stats", "loop_stats", "dump_tasks", "dump_tasks_on_signal", "console",
           "open_file", "read_bytes", "read_text", "write_bytes", "write_text"]
__version__ = "0.1.0"

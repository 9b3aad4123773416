"""The loop's services beyond scheduling: executors, async generators, the exception
handler and debug mode.

Part of the loop core (`core.CoreLoop` mixes it in); none of it is on the hot path. Each
follows the standard loop's documented behaviour: the default executor is created on first
use and joined by shutdown_default_executor without blocking the loop; async generators are
tracked through sys.set_asyncgen_hooks (installed by run_forever) and closed by
shutdown_asyncgens; the default exception handler logs to the 'asyncio' logger; a custom one
runs in the failing task's context.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import threading
import traceback
import warnings
from typing import Any

logger = logging.getLogger("asyncio")

#: How many frames of coroutine origin debug mode records (asyncio's value).
_DEBUG_STACK_DEPTH = 10


def _handler_context(context: dict) -> Any:
    """The contextvars context a custom exception handler runs in: that of the failing task,
    future or handle, so the handler sees the variables the failing code had set (asyncio does
    this from 3.12, where tasks and handles gained get_context(); before, there is none)."""
    thing = context.get("task")
    if thing is None:
        thing = context.get("future")
    if thing is None:
        thing = context.get("handle")
    get_context = getattr(thing, "get_context", None)
    if get_context is None:
        return None
    ctx = get_context()
    return ctx if hasattr(ctx, "run") else None


class LoopServices:
    """Executors, async generators, exception handling and debug mode of `core.CoreLoop`
    (state lives on the loop: see `CoreLoop.__init__`)."""

    # ------------------------------------------------------------------- executors

    def run_in_executor(self, executor, func, *args) -> asyncio.Future:
        self._check_closed()
        if self._debug:
            self._check_callback(func, "run_in_executor")
        if executor is None:
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            executor = self._default_executor
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="conveyor")
                self._default_executor = executor
        return asyncio.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor) -> None:
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor instance")
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Join the default executor's threads without blocking the loop while they finish."""
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is None:
            return
        done = self.create_future()

        def join() -> None:
            try:
                executor.shutdown(wait=True)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                outcome = (done.set_exception, exc)
            else:
                outcome = (done.set_result, None)
            if not self.is_closed():
                self.call_soon_threadsafe(
                    lambda: done.cancelled() or outcome[0](outcome[1]))

        thread = threading.Thread(target=join, name="conveyor-executor-shutdown")
        thread.start()
        try:
            async with asyncio.timeout(timeout):
                await done
        except TimeoutError:
            warnings.warn("The executor did not finishing joining "
                          f"its threads within {timeout} seconds.",
                          RuntimeWarning, stacklevel=2)
            executor.shutdown(wait=False)
        else:
            thread.join()

    # --------------------------------------------------------- async generators

    def _asyncgen_firstiter_hook(self, agen) -> None:
        if self._asyncgens_shutdown_called:
            warnings.warn(f"asynchronous generator {agen!r} was scheduled after "
                          "loop.shutdown_asyncgens() call", ResourceWarning, source=self)
        self._asyncgens.add(agen)

    def _asyncgen_finalizer_hook(self, agen) -> None:
        self._asyncgens.discard(agen)
        if not self._closed:
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    async def shutdown_asyncgens(self) -> None:
        self._asyncgens_shutdown_called = True
        if not len(self._asyncgens):
            return
        closing = list(self._asyncgens)
        self._asyncgens.clear()
        results = await asyncio.gather(*[agen.aclose() for agen in closing],
                                       return_exceptions=True)
        for result, agen in zip(results, closing):
            if isinstance(result, Exception):
                self.call_exception_handler({
                    "message": f"an error occurred during closing of "
                               f"asynchronous generator {agen!r}",
                    "exception": result,
                    "asyncgen": agen,
                })

    # --------------------------------------------------------- exception handling

    def get_exception_handler(self):
        return self._exception_handler

    def set_exception_handler(self, handler) -> None:
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context: dict) -> None:
        """Log the context at ERROR on the 'asyncio' logger, where programs already look."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info = (type(exception), exception, exception.__traceback__) \
            if exception is not None else False
        current = self._current_handle
        if ("source_traceback" not in context and current is not None
                and current._source_traceback):
            context["handle_traceback"] = current._source_traceback
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key == "source_traceback":
                value = ("Object created at (most recent call last):\n"
                         + "".join(traceback.format_list(value)).rstrip())
            elif key == "handle_traceback":
                value = ("Handle created at (most recent call last):\n"
                         + "".join(traceback.format_list(value)).rstrip())
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context: dict) -> None:
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            run_in = _handler_context(context)
            if run_in is not None:
                run_in.run(self._exception_handler, self, context)
            else:
                self._exception_handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler({
                    "message": "Unhandled error in exception handler",
                    "exception": exc,
                    "context": context,
                })
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler while handling an "
                             "unexpected error in custom exception handler", exc_info=True)

    # ------------------------------------------------------------------- debug

    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = bool(enabled)
        if self.is_running():
            depth = _DEBUG_STACK_DEPTH if self._debug else 0
            self.call_soon_threadsafe(sys.set_coroutine_origin_tracking_depth, depth)

"""Stopping background tasks (outbox relay, definition cache) for sure.

On Python 3.11, PyMongo's async calls can swallow a cancellation: a `wait_for` inside the
driver returns its result when the inner call finishes at the moment the cancel lands, and
the task goes on. A stop that cancels once and waits could then wait for ever (seen after a
MongoDB stall: the process never exited on SIGTERM). So: cancel again until the task ends,
and give up, loudly, past a deadline."""

import asyncio
import contextlib

import structlog

log = structlog.get_logger(__name__)

RECANCEL_S = 0.2
STOP_TIMEOUT_S = 10.0


async def cancel_and_wait(task: "asyncio.Task[None]", timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Cancel `task` until it ends, for at most `timeout_s`; whether it ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            log.error("background_task_did_not_stop", task=task.get_name(), seconds=timeout_s)
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(RECANCEL_S, left))
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()  # retrieved: no "exception was never retrieved" at exit
    return True

"""Process lifecycle shared by both services: signals set the stop event; a task that ends early takes the
process down, logged, so that Kubernetes restarts it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any

__all__ = ["ServiceFailed", "Tasks", "stop_on_signals"]

log = logging.getLogger(__name__)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT (where the loop supports signal handlers)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


class ServiceFailed(SystemExit):
    """The service cannot go on (a task it needs ended, or it lost its Lease): the process exits with status 1
    and this message, and Kubernetes restarts it to rebuild from the API."""


class Tasks:
    """The long-running tasks of one service. Each is expected to run until `stop`: one that returns, raises or is
    cancelled before that is logged (with its traceback) and sets `stop`, and `check` then raises ServiceFailed.
    Nothing dies silently; restarting in place is left to the tasks that can (the reflectors retry for ever)."""

    def __init__(self, service: str, stop: asyncio.Event) -> None:
        self.service = service
        self.stop = stop
        self.failure: str | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing = False

    def start(self, name: str, coro: Coroutine[Any, Any, Any], *, once: bool = False) -> asyncio.Task[Any]:
        """Run `coro` until `stop`; with `once`, a job that may end when done (a failure is still logged)."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._ended_once if once else self._ended)
        self._tasks.append(task)
        return task

    def _ended_once(self, task: asyncio.Task[Any]) -> None:
        self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: %s failed", self.service, task.get_name(), exc_info=task.exception())

    def fail(self, reason: str) -> None:
        """Take the service down for `reason` (the first reason given is the one reported)."""
        if self.failure is None:
            self.failure = reason
            log.critical("%s: %s; stopping so that the process is restarted", self.service, reason)
        self.stop.set()

    def _ended(self, task: asyncio.Task[Any]) -> None:
        if self._closing:
            return
        name = task.get_name()
        if task.cancelled():
            if not self.stop.is_set():
                self.fail(f"task {name} was cancelled")
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s: task %s failed", self.service, name, exc_info=exc)
            self.fail(f"task {name} failed: {type(exc).__name__}: {exc}")
        elif not self.stop.is_set():
            self.fail(f"task {name} ended before the service was stopped")

    async def close(self) -> None:
        """Cancel what still runs and wait for it."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for task, result in zip(self._tasks, results, strict=True):
            if isinstance(result, Exception):
                log.error("%s: task %s failed while stopping", self.service, task.get_name(), exc_info=result)

    def check(self) -> None:
        """Raise ServiceFailed if the service was taken down rather than stopped."""
        if self.failure is not None:
            raise ServiceFailed(f"rayqueue {self.service}: {self.failure}")

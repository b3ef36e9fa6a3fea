"""Bounded polling: `wait_for` repeats a check until it holds or a deadline passes, naming what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message says what was awaited, for how long, and the last observation."""


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.2,
    ignore: tuple[type[Exception], ...] = (),
) -> T:
    """Call `predicate` until it returns something truthy and return that; raise `WaitTimeout` after `timeout` s.

    `ignore` lists exception types that mean "not yet" (e.g. a 404 before an object exists); the last
    one is quoted in the timeout message. Any other exception propagates at once.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last = f"{type(exc).__name__}: {exc}".strip()
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what} (last observed: {last!r:.500})")
        time.sleep(interval)

"""Capped exponential backoff with jitter for retrying API calls, as client-go's reflector backs off.

Modelled on client-go `wait.Backoff{Duration: 800ms, Factor: 2, Jitter: 1, Cap: 30s}` with `DelayWithReset`
(tools/cache/reflector.go, NewReflectorWithOptions; util/wait/backoff.go): each failure waits longer, up to the
cap, with up to `jitter` x the delay added at random so replicas cut off together do not retry together, and the
delay starts over once calls have gone well for `reset_after` seconds. Time and randomness are injected.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RetryBackoff"]


@dataclass(slots=True)
class RetryBackoff:
    """`next(now)` is the delay before the next attempt after a failure at `now`; `succeeded(now)` marks health."""

    base: float = 0.8
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 1.0
    reset_after: float = 120.0
    rand: Callable[[], float] = field(default=random.random)
    _step: float = field(default=0.0, init=False)
    _healthy_since: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap or self.factor < 1 or self.jitter < 0 or self.reset_after < 0:
            raise ValueError("backoff needs 0 < base <= cap, factor >= 1, jitter >= 0 and reset_after >= 0")

    def succeeded(self, now: float) -> None:
        """A call went well at `now`: the delay starts over once that has lasted `reset_after` seconds."""
        if self._healthy_since is None:
            self._healthy_since = now

    def next(self, now: float) -> float:
        """The delay after a failure at `now`: base, then x factor per failure, capped, plus jitter."""
        if self._healthy_since is not None and now - self._healthy_since >= self.reset_after:
            self._step = 0.0
        self._healthy_since = None
        self._step = self.base if self._step == 0.0 else min(self._step * self.factor, self.cap)
        return self._step * (1.0 + self.jitter * self.rand())

    @property
    def bound(self) -> float:
        """The longest delay `next` can ever answer: the cap with the whole jitter."""
        return self.cap * (1.0 + self.jitter)

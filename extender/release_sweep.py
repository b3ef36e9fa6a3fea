"""Which backoffs a release of quota ends, once per reconcile (not per event, which would scan every waiting job
for each of thousands of events while the caches fill).

When quota is released (a claim removed or shrunk) the backoff of every job the freed leaf can unblock ends
(``Queues.retry_freed``): the freed capacity may let it in, and waiting out a backoff then would only delay it;
a job refused by another branch keeps its backoff (a preemption used to end them all). A change of the
cluster's capacity ends every backoff (``Queues.retry_now``).
"""

from __future__ import annotations

from common.queueing import Queues

__all__ = ["ReleaseSweep"]


class ReleaseSweep:
    """What was released since the last sweep: some leaves' claims, or the cluster's capacity changed."""

    def __init__(self) -> None:
        self._capacity_changed = False
        self._freed: set[str] = set()

    def capacity_changed(self) -> None:
        self._capacity_changed = True

    def freed(self, leaf: str) -> None:
        self._freed.add(leaf)

    def sweep(self, queues: Queues) -> None:
        """End the backoffs the releases since the last sweep may unblock, and forget them."""
        if self._capacity_changed:
            queues.retry_now()
        elif self._freed:
            queues.retry_freed(self._freed)
        self._capacity_changed = False
        self._freed.clear()

"""When a claimant that waits only for jobs under their min-runtime is tried again: as soon as the first of them has
run it (``Protected``, docs/preemption.md), not at the end of its backoff (up to ``--backoff-max``) nor at the next
unrelated event.

After each pass the controller notes, for every guaranteed head the pass refused as ``protected``, when the first
job its reclaim spares may be taken (the pass's time plus that job's remaining min-runtime) and sleeps no longer
than that; then the backoffs that the capacity which became reclaimable may unblock end (``Queues.retry_freed``
of the spared jobs' leaves, as a release of them would) and the pass runs. A record noted in an earlier pass (the
claimant waited in backoff since) keeps the time noted then.
"""

from __future__ import annotations

from collections.abc import Iterable

from common.explain import Explain
from common.ledger import Claim
from common.queueing import Queues

__all__ = ["ProtectedRetry"]


class ProtectedRetry:
    """Per protected claimant: its record, when its first spared job may be reclaimed (wall ns), their leaves."""

    def __init__(self) -> None:
        self._due: dict[str, tuple[Explain, int, frozenset[str]]] = {}

    def note(self, queues: Queues, heads: Iterable[Claim], now_ns: int) -> None:
        """After a pass at ``now_ns``: the heads it refused because reclaim would take protected jobs."""
        due: dict[str, tuple[Explain, int, frozenset[str]]] = {}
        for claim in heads:
            explain = queues.explain(claim.uid)
            if explain is None or explain.why != "protected" or not explain.protected:
                continue
            kept = self._due.get(claim.uid)
            if kept is not None and kept[0] is explain:
                due[claim.uid] = kept
                continue
            at = now_ns + min(p.until_ns for p in explain.protected)
            due[claim.uid] = (explain, at, frozenset(p.quota for p in explain.protected))
        self._due = due

    def next_ns(self) -> int | None:
        """The earliest moment a protected job may be reclaimed for a waiting claimant (None: no such claimant)."""
        return min((at for _, at, _ in self._due.values()), default=None)

    def release(self, queues: Queues, now_ns: int) -> None:
        """Before a pass at ``now_ns``: end the backoffs that the min-runtimes run out by then may unblock."""
        freed: set[str] = set()
        for uid, (_, at, leaves) in list(self._due.items()):
            if at <= now_ns:
                freed |= leaves
                del self._due[uid]
        if freed:
            queues.retry_freed(freed)

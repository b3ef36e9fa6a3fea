"""The queues' published status, by watch (usage, waiting items, forecasts, ETAs), for the create warning."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from common import keys
from common.gotime import GoTimeError, parse_go
from common.preview import Ahead, forecast_from_status, preview, usage_from_status, warning
from common.quota_tree import QuotaNode, QuotaTree
from common.rayjob import JobInfo
from common.resources import Resources
from common.start_times import Forecast

__all__ = ["QueueStatus"]

# The tree's published usage, each leaf Queue's waiting items and forecast, and the ETAs on QueueUnits: folded into
# the create warning (common/preview.py) with no API call.
log = logging.getLogger(__name__)


class _Facts(Protocol):
    @property
    def tree(self) -> QuotaTree | None: ...

    @property
    def now_ns(self) -> int: ...


class QueueStatus:
    """The queues' published status: usage per node, waiting items per leaf, ETAs, forecasts. Event handlers keep
    it current; ``warning`` reads it within one decision (no await in between)."""

    def __init__(self) -> None:
        self.used: dict[str, Resources] = {}
        self.waiting: dict[str, tuple[tuple[str, str, int], ...]] = {}  # leaf -> (namespace, QueueUnit, priority)
        self.etas: dict[tuple[str, str], int] = {}
        self.forecasts: dict[str, Forecast] = {}
        self.queues_synced = False
        self.units_synced = False

    @property
    def ready(self) -> bool:
        return self.queues_synced and self.units_synced

    def on_tree(self, kind: str, obj: Mapping[str, Any]) -> None:
        self.used = {} if kind == "DELETED" else usage_from_status(obj.get("status"))

    def on_queue(self, kind: str, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        leaf = (meta.get("annotations") or {}).get(keys.QUOTA_FULLNAME)
        if not leaf:
            return
        if kind == "DELETED":
            self.waiting.pop(leaf, None)
            self.forecasts.pop(leaf, None)
            return
        found = forecast_from_status(leaf, obj.get("status"))
        if found is None:
            self.forecasts.pop(leaf, None)
        else:
            self.forecasts[leaf] = found
        details = (obj.get("status") or {}).get("queueItemDetails") or {}
        rows = []
        for listed in ("active", "backoff"):
            for d in details.get(listed) or []:
                if isinstance(d, Mapping) and isinstance(d.get("priority", 0), int):
                    rows.append((str(d.get("namespace", "")), str(d.get("name", "")), int(d.get("priority") or 0)))
        rows.sort(key=lambda r: -r[2])  # stable: each list keeps its queue order within a priority
        self.waiting[leaf] = tuple(rows)

    def on_queue_unit(self, kind: str, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        when = (obj.get("status") or {}).get("estimatedStartTime")
        if kind == "DELETED" or not isinstance(when, str):
            self.etas.pop(key, None)
            return
        try:
            self.etas[key] = parse_go(when)
        except GoTimeError:
            self.etas.pop(key, None)

    def warning(self, leaf: QuotaNode, job: JobInfo, snap: _Facts, name: str) -> str | None:
        """The create warning for a job about to be queued in ``leaf``, or None when it cannot be told."""
        if not self.ready or snap.tree is None or leaf.full_name not in self.waiting:
            return None  # no Queue for the leaf: no controller has made one, so nothing to tell
        waiting = [Ahead(ns, unit, prio, self.etas.get((ns, unit))) for ns, unit, prio in self.waiting.get(leaf.full_name, ())]
        found = preview(snap.tree, leaf, self.used, waiting, key=name, request=job.request, priority=job.priority,
                        preemptible=job.preemptible, now_ns=snap.now_ns, forecast=self.forecasts.get(leaf.full_name))
        return warning(found, job.request, leaf, self.used, snap.now_ns)

"""The quota invariants, sampled throughout an end-to-end test (not only checked at its end).

A ``QuotaSampler`` lists every pod and the quota tree from the real apiserver a few times a second, in a
thread, and records the worst it saw:

* per quota node: Σ requests of the bound, non-terminal pods of the namespaces below it, against the node's
  ``max`` (a pod on its way out still holds its node until it is gone, so it counts);
* the cluster: Σ requests of every bound, non-terminal pod against the allocatable of the nodes;
* gangs: a gang is *partly bound* when some members are bound while others wait unbound, fewer than its
  min-available being bound. The Bindings of one gang are separate API calls made within milliseconds, so
  a single list can catch a gang mid-bind: a gang counts as partly bound only when two samples at least
  ``settle`` seconds apart both see it so with the same members.

The pod request is computed here independently of the product (Σ containers, the largest init container,
plus overhead, a missing request defaulting to the limit): the invariant must not share the product's
arithmetic to be a check of it. Quantities are parsed with ``common.quantity`` (Kubernetes' own rules).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from kubernetes import client

from common import keys
from common.quantity import parse_quantity

Obj = dict[str, Any]


def _amounts(resources: Mapping[str, Any] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    resources = resources or {}
    for key in ("limits", "requests"):  # requests win over limits
        for name, text in (resources.get(key) or {}).items():
            out[name] = parse_quantity(name, text)
    return out


def pod_requests(pod: Obj) -> dict[str, int]:
    spec = pod.get("spec") or {}
    total: dict[str, int] = defaultdict(int)
    for c in spec.get("containers") or []:
        for name, amount in _amounts(c.get("resources")).items():
            total[name] += amount
    for c in spec.get("initContainers") or []:
        for name, amount in _amounts(c.get("resources")).items():
            total[name] = max(total[name], amount)
    for name, text in (spec.get("overhead") or {}).items():
        total[name] += parse_quantity(name, text)
    return dict(total)


def _nodes_of_tree(tree: Obj) -> list[tuple[str, dict[str, int], set[str]]]:
    """(full name, max, namespaces below it) for every node of the tree."""
    out: list[tuple[str, dict[str, int], set[str]]] = []

    def walk(node: Obj, prefix: str) -> set[str]:
        full = f"{prefix}/{node['name']}" if prefix else node["name"]
        below = set(node.get("namespaces") or [])
        for child in node.get("children") or []:
            below |= walk(child, full)
        limit = {name: parse_quantity(name, text) for name, text in (node.get("max") or {}).items()
                 if name != keys.MAX_JOBS}
        out.append((full, limit, below))
        return below

    walk(tree["spec"]["root"], "")
    return out


@dataclass
class Worst:
    """The worst the sampler saw: per quota node and resource, the largest bound/max it saw."""

    samples: int = 0
    over_max: list[str] = field(default_factory=list)  # every sample where a node was over its max
    over_capacity: list[str] = field(default_factory=list)
    partly_bound: list[str] = field(default_factory=list)
    peak: dict[str, dict[str, int]] = field(default_factory=dict)  # quota node -> resource -> largest bound sum
    errors: int = 0


class QuotaSampler:
    """Sample the invariants every `interval` seconds until the context exits; assert with `check()`."""

    def __init__(self, api_client: Any, *, interval: float = 0.25, settle: float = 2.0, limit_s: float = 900.0) -> None:
        self.core: Any = client.CoreV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.interval, self.settle, self.limit_s = interval, settle, limit_s
        self.worst = Worst()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quota-sampler", daemon=True)
        self._partial: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}

    def __enter__(self) -> QuotaSampler:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(10.0)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit_s  # bounded: a forgotten sampler stops by itself
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self.sample()
            except Exception:  # a passing API error must not end the sampling; counted
                self.worst.errors += 1
            self._stop.wait(self.interval)

    def sample(self) -> None:
        tree = json.loads(self.custom.get_namespaced_custom_object(
            keys.QUOTA_GROUP, keys.QUOTA_VERSION, keys.QUOTA_TREE_NAMESPACE, keys.QUOTA_TREE_PLURAL,
            keys.QUOTA_TREE_NAME, _preload_content=False).data)
        pods = json.loads(self.core.list_pod_for_all_namespaces(_preload_content=False).data)["items"]
        nodes = json.loads(self.core.list_node(_preload_content=False).data)["items"]
        now = time.monotonic()
        live = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        bound = [p for p in live if (p.get("spec") or {}).get("nodeName")]
        by_ns: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for pod in bound:
            for name, amount in pod_requests(pod).items():
                by_ns[pod["metadata"]["namespace"]][name] += amount
        w = self.worst
        w.samples += 1
        for full, limit, namespaces in _nodes_of_tree(tree):
            used: dict[str, int] = defaultdict(int)
            for ns in namespaces:
                for name, amount in by_ns.get(ns, {}).items():
                    used[name] += amount
            peak = w.peak.setdefault(full, {})
            for name, amount in used.items():
                peak[name] = max(peak.get(name, 0), amount)
                if name in limit and amount > limit[name]:
                    w.over_max.append(f"{full}: {name} bound {amount} > max {limit[name]}")
        capacity: dict[str, int] = defaultdict(int)
        for node in nodes:
            for name, text in ((node.get("status") or {}).get("allocatable") or {}).items():
                capacity[name] += parse_quantity(name, text)
        total: dict[str, int] = defaultdict(int)
        for pod in bound:
            for name, amount in pod_requests(pod).items():
                total[name] += amount
        for name, amount in total.items():
            if name in capacity and amount > capacity[name]:
                w.over_capacity.append(f"cluster: {name} bound {amount} > allocatable {capacity[name]}")
        self._gangs(live, now)

    def _gangs(self, live: list[Obj], now: float) -> None:
        groups: dict[tuple[str, str], list[Obj]] = defaultdict(list)
        for pod in live:
            labels = pod["metadata"].get("labels") or {}
            gang = labels.get(keys.POD_GROUP_NAME)
            if gang and not pod["metadata"].get("deletionTimestamp"):
                groups[(pod["metadata"]["namespace"], gang)].append(pod)
        seen: set[tuple[str, str]] = set()
        for key, members in groups.items():
            try:
                need = int((members[0]["metadata"].get("labels") or {}).get(keys.POD_GROUP_MIN_AVAILABLE, "0"))
            except ValueError:
                continue
            placed = [p for p in members if (p.get("spec") or {}).get("nodeName")]
            waiting = [p for p in members if not (p.get("spec") or {}).get("nodeName")]
            if not (placed and waiting and len(placed) < need):
                continue
            seen.add(key)
            ids = frozenset(p["metadata"]["uid"] for p in members)
            first = self._partial.get(key)
            if first is None or first[1] != ids:
                self._partial[key] = (now, ids)
            elif now - first[0] >= self.settle:
                self.worst.partly_bound.append(f"gang {key[0]}/{key[1]}: {len(placed)} of {need} bound, "
                                               f"{len(waiting)} waiting, for {now - first[0]:.1f}s")
        for key in set(self._partial) - seen:
            del self._partial[key]

    def check(self, *, min_samples: int = 5) -> Worst:
        """Assert every invariant held in every sample (and that enough samples were taken to mean it)."""
        w = self.worst
        assert w.samples >= min_samples, f"only {w.samples} samples of the quota invariants were taken"
        assert not w.over_max, f"bound pods exceeded a quota's max: {w.over_max[:5]}"
        assert not w.over_capacity, f"bound pods exceeded the nodes' allocatable: {w.over_capacity[:5]}"
        assert not w.partly_bound, f"a gang was partly bound: {w.partly_bound[:5]}"
        return w

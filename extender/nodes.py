"""Nodes as the extender plans with them: a frozen NodeInfo per Node, and NodeState, the bound pods' usage.

``NodeInfo.schedulable`` is deliberately simple (no toleration matching): a cordoned node
(``spec.unschedulable``), a node whose Ready condition is not True, or a node with any ``NoSchedule`` /
``NoExecute`` taint is left out of gang planning. kube-scheduler still runs its own filters on every
node, so this only makes planning conservative.

``NodeState`` accounts pods by UID (a replayed watch event never counts twice): a pod counts on its node
while it is bound and not terminal, deleting ones included until they are gone. Every pod also uses one
``pods`` slot, against the node's ``allocatable.pods`` as kube-scheduler counts it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from common.quantity import QuantityError, parse_quantity
from common.rayjob import PodInfo
from common.resources import Resources
from common.wire import FrozenMap, ShapeError

__all__ = ["PODS", "POD_SLOT", "NodeInfo", "NodeState", "Taint", "pod_usage"]

PODS = "pods"
POD_SLOT = Resources({PODS: 1})
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """A Node converted once: allocatable (with ``pods``), labels, taints, and whether we plan on it."""

    name: str
    allocatable: Resources
    labels: FrozenMap
    taints: tuple[Taint, ...]
    schedulable: bool
    unschedulable_reason: str  # "" when schedulable; else names the node and the rule

    @classmethod
    def from_node(cls, obj: Mapping[str, object]) -> NodeInfo:
        """Convert a Node dict. Raises ShapeError listing every problem with its field path."""
        return _node_from_dict(obj)

    @classmethod
    def make(
        cls,
        name: str,
        allocatable: Mapping[str, int],
        *,
        labels: Mapping[str, str] | None = None,
        unschedulable_reason: str = "",
    ) -> NodeInfo:
        """A NodeInfo from values (tests, benchmarks): allocatable in canonical units."""
        return cls(
            name=name,
            allocatable=Resources(allocatable),
            labels=FrozenMap(labels),
            taints=(),
            schedulable=not unschedulable_reason,
            unschedulable_reason=unschedulable_reason,
        )


def _node_from_dict(obj: Mapping[str, object]) -> NodeInfo:
    errors: list[str] = []

    def as_map(value: object, path: str) -> Mapping[str, object]:
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return value
        errors.append(f"{path}: expected a map, got {type(value).__name__}")
        return {}

    def as_list(value: object, path: str) -> list[object]:
        if value is None:
            return []
        if isinstance(value, list):
            return value
        errors.append(f"{path}: expected a list, got {type(value).__name__}")
        return []

    root: object = obj
    if not isinstance(root, Mapping):
        raise ShapeError([f"(root): expected a Node map, got {type(root).__name__}"])
    meta = as_map(obj.get("metadata"), "metadata")
    spec = as_map(obj.get("spec"), "spec")
    status = as_map(obj.get("status"), "status")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        errors.append("metadata.name: required")
        name = ""
    labels: dict[str, str] = {}
    for key, value in as_map(meta.get("labels"), "metadata.labels").items():
        if isinstance(value, str):
            labels[key] = value
        else:
            errors.append(f"metadata.labels[{key}]: expected a string")
    allocatable: dict[str, int] = {}
    for resource, raw in as_map(status.get("allocatable"), "status.allocatable").items():
        try:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise QuantityError(f"invalid quantity {raw!r}")
            allocatable[resource] = parse_quantity(resource, raw)
        except QuantityError as exc:
            errors.append(f"status.allocatable.{resource}: {exc}")
    taints: list[Taint] = []
    for i, raw_taint in enumerate(as_list(spec.get("taints"), "spec.taints")):
        t = as_map(raw_taint, f"spec.taints[{i}]")
        t_key, t_value, t_effect = t.get("key"), t.get("value") or "", t.get("effect")
        if isinstance(t_key, str) and isinstance(t_value, str) and isinstance(t_effect, str):
            taints.append(Taint(t_key, t_value, t_effect))
        else:
            errors.append(f"spec.taints[{i}]: expected key, value and effect strings")
    ready: str | None = None
    for i, raw_condition in enumerate(as_list(status.get("conditions"), "status.conditions")):
        condition = as_map(raw_condition, f"status.conditions[{i}]")
        if condition.get("type") == "Ready":
            ready = str(condition.get("status"))
    if errors:
        raise ShapeError(errors)
    reason = ""
    blocking = [t for t in taints if t.effect in BLOCKING_EFFECTS]
    if spec.get("unschedulable") is True:
        reason = f"node {name} is cordoned (spec.unschedulable)"
    elif ready != "True":
        reason = f"node {name} is not Ready (Ready condition {ready or 'missing'})"
    elif blocking:
        reason = f"node {name} has taint {blocking[0]}"
    return NodeInfo(
        name=name,
        allocatable=Resources(allocatable),
        labels=FrozenMap(labels),
        taints=tuple(taints),
        schedulable=not reason,
        unschedulable_reason=reason,
    )


def pod_usage(pod: PodInfo) -> Resources:
    """What a pod takes on its node: its request and one pod slot."""
    return pod.request + POD_SLOT


class NodeState:
    """Nodes by name and the Σ usage of the pods bound to each, accounted idempotently by pod UID."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeInfo] = {}
        self._pods: dict[str, tuple[str, Resources]] = {}  # uid -> (node, usage)
        self._used: dict[str, Resources] = {}
        self._on_node: dict[str, set[str]] = {}
        self._free: dict[str, Resources] = {}  # cache, per node, dropped on change
        self._capacity: dict[str, int] = {}  # Σ allocatable of schedulable nodes, kept as nodes change
        self._capacity_value: Resources | None = None
        self._generation = 0

    # --- nodes -----------------------------------------------------------------------------------

    def set_node(self, node: NodeInfo) -> None:
        """Add or replace a node (a replayed event is harmless)."""
        self._count(self._nodes.get(node.name), -1)
        self._nodes[node.name] = node
        self._count(node, +1)
        self._free.pop(node.name, None)
        self._generation += 1

    def remove_node(self, name: str) -> None:
        """Forget a node; pods still bound to it keep their usage until they are removed."""
        self._count(self._nodes.pop(name, None), -1)
        self._free.pop(name, None)
        self._generation += 1

    def _count(self, node: NodeInfo | None, sign: int) -> None:
        """Keep the capacity total in step: O(resources) per node change, not O(nodes)."""
        if node is None or not node.schedulable:
            return
        for resource, amount in node.allocatable.items():
            self._capacity[resource] = self._capacity.get(resource, 0) + sign * amount
        self._capacity_value = None

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes.get(name)

    def nodes(self) -> tuple[NodeInfo, ...]:
        """Every node, sorted by name."""
        return tuple(self._nodes[n] for n in sorted(self._nodes))

    def schedulable_names(self) -> tuple[str, ...]:
        return tuple(n for n in sorted(self._nodes) if self._nodes[n].schedulable)

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._nodes))

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def generation(self) -> int:
        """Bumped on every change that can alter free resources."""
        return self._generation

    # --- pods ------------------------------------------------------------------------------------

    def add_pod(self, pod: PodInfo) -> None:
        """Account a pod by UID: bound and not terminal counts on its node; anything else removes it."""
        if pod.node_name is None or pod.terminal:
            self.remove_pod(pod.uid)
            return
        usage = pod_usage(pod)
        if self._pods.get(pod.uid) == (pod.node_name, usage):
            return
        self.remove_pod(pod.uid)
        self._pods[pod.uid] = (pod.node_name, usage)
        self._used[pod.node_name] = self._used.get(pod.node_name, Resources()) + usage
        self._on_node.setdefault(pod.node_name, set()).add(pod.uid)
        self._free.pop(pod.node_name, None)
        self._generation += 1

    def remove_pod(self, uid: str) -> None:
        """Stop counting a pod (idempotent)."""
        entry = self._pods.pop(uid, None)
        if entry is None:
            return
        node, usage = entry
        used = self._used[node] - usage
        if used:
            self._used[node] = used
        else:
            del self._used[node]
        self._on_node[node].discard(uid)
        if not self._on_node[node]:
            del self._on_node[node]
        self._free.pop(node, None)
        self._generation += 1

    def node_of(self, uid: str) -> str | None:
        """The node a counted pod is bound to, or None."""
        entry = self._pods.get(uid)
        return entry[0] if entry else None

    def is_bound(self, uid: str) -> bool:
        return uid in self._pods

    def usage_of(self, uid: str) -> Resources | None:
        entry = self._pods.get(uid)
        return entry[1] if entry else None

    def pods_on(self, node: str) -> tuple[str, ...]:
        """UIDs of the pods counted on a node, sorted."""
        return tuple(sorted(self._on_node.get(node, ())))

    # --- arithmetic ------------------------------------------------------------------------------

    def used(self, node: str) -> Resources:
        """Σ usage (requests + one ``pods`` slot each) of the pods bound to the node."""
        return self._used.get(node, Resources())

    def free(self, node: str) -> Resources:
        """allocatable - used, never negative; an unknown node has nothing free."""
        cached = self._free.get(node)
        if cached is None:
            info = self._nodes.get(node)
            if info is None:
                return Resources()
            cached = self._free[node] = (info.allocatable - self.used(node)).clamp_low()
        return cached

    def capacity(self) -> Resources:
        """Σ allocatable of schedulable nodes (the cluster total for admission), ``pods`` included."""
        if self._capacity_value is None:
            self._capacity_value = Resources({r: a for r, a in self._capacity.items() if a})
        return self._capacity_value

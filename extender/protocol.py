"""kube-scheduler's extender/v1 wire (PascalCase JSON), typed, parsed once into frozen values, and rendered.

The shapes follow ``k8s.io/kube-scheduler/extender/v1`` (Go structs without json tags, hence PascalCase):

* ``ExtenderArgs {Pod, Nodes *NodeList, NodeNames *[]string}`` -- filter and prioritize. A scheduler
  configured with ``nodeCacheCapable: true`` sends ``NodeNames`` (``Nodes`` null); otherwise ``Nodes``.
* ``ExtenderFilterResult {Nodes, NodeNames, FailedNodes, FailedAndUnresolvableNodes, Error}``. The
  scheduler reads ``NodeNames`` when cache-capable, else ``Nodes``; a name it did not send is an error on
  its side, so the answer is always a subset of the input. ``FailedAndUnresolvableNodes`` exists since
  1.21 and takes precedence there; 1.20 ignores it, so an unresolvable node is listed in both maps.
  A node in neither map nor ``NodeNames`` is dropped without a status; extender.verbs relies on that to
  list only a few examples of a refusal preemption cannot help.
* ``HostPriorityList [{Host, Score}]`` with scores in ``0..MAX_EXTENDER_PRIORITY`` (10).
* ``ExtenderPreemptionArgs {Pod, NodeNameToVictims, NodeNameToMetaVictims}`` (victims as full pods, or as
  ``{Pods: [{UID}], NumPDBViolations}`` when cache-capable) and ``ExtenderPreemptionResult
  {NodeNameToMetaVictims}``.
* ``ExtenderBindingArgs {PodName, PodNamespace, PodUID, Node}`` and ``ExtenderBindingResult {Error}``.

Malformed input raises ProtocolError (a ValueError) listing every problem with its field path; the HTTP
adapter answers it with a 400. A policy "no" is never an error: it is a FailedNodes entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, NotRequired, TypedDict

from common.jsonkind import kind_of as _kind
from common.rayjob import PodInfo
from common.wire import ShapeError

__all__ = [
    "MAX_EXTENDER_PRIORITY",
    "BindArgs",
    "BindResult",
    "ExtenderArgs",
    "ExtenderBindingArgs",
    "ExtenderBindingResult",
    "ExtenderFilterResult",
    "ExtenderPreemptionArgs",
    "ExtenderPreemptionResult",
    "FilterArgs",
    "FilterResult",
    "HostPriority",
    "HostPriorityList",
    "HostScore",
    "MetaPod",
    "MetaVictims",
    "PreemptArgs",
    "PreemptResult",
    "ProtocolError",
    "Victims",
    "VictimsWire",
    "parse_bind_args",
    "parse_filter_args",
    "parse_preempt_args",
    "render_bind_result",
    "render_filter_result",
    "render_preempt_result",
    "render_priorities",
]

MAX_EXTENDER_PRIORITY: Final = 10  # extenderv1.MaxExtenderPriority
MIN_EXTENDER_PRIORITY: Final = 0

Obj = dict[str, object]


# --- the wire ----------------------------------------------------------------------------------


class NodeList(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: Obj
    items: list[Obj]


class ExtenderArgs(TypedDict, total=False):
    Pod: Obj
    Nodes: NodeList | None
    NodeNames: list[str] | None


class ExtenderFilterResult(TypedDict):
    Nodes: NotRequired[NodeList | None]
    NodeNames: list[str]
    FailedNodes: dict[str, str]
    FailedAndUnresolvableNodes: dict[str, str]
    Error: str


class HostPriority(TypedDict):
    Host: str
    Score: int


HostPriorityList = list[HostPriority]


class MetaPod(TypedDict):
    UID: str


class MetaVictims(TypedDict):
    Pods: list[MetaPod]
    NumPDBViolations: int


class VictimsWire(TypedDict):
    Pods: list[Obj]
    NumPDBViolations: int


class ExtenderPreemptionArgs(TypedDict, total=False):
    Pod: Obj
    NodeNameToVictims: dict[str, VictimsWire] | None
    NodeNameToMetaVictims: dict[str, MetaVictims] | None


class ExtenderPreemptionResult(TypedDict):
    NodeNameToMetaVictims: dict[str, MetaVictims]


class ExtenderBindingArgs(TypedDict):
    PodName: str
    PodNamespace: str
    PodUID: str
    Node: str


class ExtenderBindingResult(TypedDict):
    Error: str


# --- the values --------------------------------------------------------------------------------


class ProtocolError(ValueError):
    """A malformed extender request; ``errors`` lists every problem as ``path: what``."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        super().__init__("; ".join(self.errors))


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterArgs:
    """ExtenderArgs converted: the pod, the node names in input order (no duplicates), and the raw Node
    objects by name when the scheduler is not cache-capable (``None`` when it sent NodeNames)."""

    pod: PodInfo
    node_names: tuple[str, ...]
    nodes: Mapping[str, Mapping[str, object]] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterResult:
    """A filter decision: nodes that pass, failed nodes with reasons, the subset preemption cannot help.

    ``error`` is set only when the extender cannot decide (the scheduler then retries the pod)."""

    passed: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)
    unresolvable: frozenset[str] = frozenset()
    error: str = ""


@dataclass(frozen=True, slots=True)
class HostScore:
    host: str
    score: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Victims:
    """The victims the scheduler proposes on one node: UIDs always, full pods when it sent them."""

    uids: tuple[str, ...]
    pods: tuple[PodInfo, ...] | None = None
    num_pdb_violations: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PreemptArgs:
    pod: PodInfo
    victims: Mapping[str, Victims]  # node name -> victims, sorted by node name


@dataclass(frozen=True, slots=True, kw_only=True)
class PreemptResult:
    victims: Mapping[str, Victims]  # node name -> the victims we agree to, UIDs only


@dataclass(frozen=True, slots=True, kw_only=True)
class BindArgs:
    pod_name: str
    namespace: str
    pod_uid: str
    node: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pod_name}"


@dataclass(frozen=True, slots=True)
class BindResult:
    error: str = ""


# --- parsing -----------------------------------------------------------------------------------


def _body(body: object, what: str) -> Mapping[str, object]:
    if not isinstance(body, Mapping):
        raise ProtocolError([f"(root): expected {what} (a JSON object), got {_kind(body)}"])
    return body


def _pod(errors: list[str], value: object, path: str) -> PodInfo | None:
    if value is None:
        errors.append(f"{path}: required")
        return None
    if not isinstance(value, Mapping):
        errors.append(f"{path}: expected a Pod (a map), got {_kind(value)}")
        return None
    try:
        pod = PodInfo.from_pod(value)
    except ShapeError as exc:
        errors.extend(f"{path}.{e}" for e in exc.errors)
        return None
    if not pod.uid:
        errors.append(f"{path}.metadata.uid: required")
    if not pod.name:
        errors.append(f"{path}.metadata.name: required")
    return pod


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def parse_filter_args(body: object) -> FilterArgs:
    """ExtenderArgs (filter and prioritize) -> FilterArgs. Raises ProtocolError listing every problem."""
    args = _body(body, "ExtenderArgs")
    errors: list[str] = []
    pod = _pod(errors, args.get("Pod"), "Pod")
    raw_names, raw_nodes = args.get("NodeNames"), args.get("Nodes")
    names: list[str] = []
    nodes: dict[str, Mapping[str, object]] | None = None
    if raw_names is not None:
        if not isinstance(raw_names, list):
            errors.append(f"NodeNames: expected a list of names, got {_kind(raw_names)}")
        else:
            for i, name in enumerate(raw_names):
                if isinstance(name, str) and name:
                    names.append(name)
                else:
                    errors.append(f"NodeNames[{i}]: expected a node name, got {_kind(name)} {name!r}")
    elif raw_nodes is not None:
        nodes = {}
        items = raw_nodes.get("items") if isinstance(raw_nodes, Mapping) else None
        if not isinstance(raw_nodes, Mapping):
            errors.append(f"Nodes: expected a NodeList (a map), got {_kind(raw_nodes)}")
        elif items is not None and not isinstance(items, list):
            errors.append(f"Nodes.items: expected a list, got {_kind(items)}")
        for i, node in enumerate(items if isinstance(items, list) else ()):
            meta = node.get("metadata") if isinstance(node, Mapping) else None
            name = meta.get("name") if isinstance(meta, Mapping) else None
            if not isinstance(node, Mapping):
                errors.append(f"Nodes.items[{i}]: expected a Node (a map), got {_kind(node)}")
            elif not isinstance(name, str) or not name:
                errors.append(f"Nodes.items[{i}].metadata.name: expected a node name, got {_kind(name)}")
            else:
                names.append(name)
                nodes.setdefault(name, node)
    else:
        errors.append("NodeNames: required (or Nodes when the scheduler is not nodeCacheCapable)")
    if errors or pod is None:
        raise ProtocolError(errors)
    return FilterArgs(pod=pod, node_names=_unique(names), nodes=nodes)


def _count(errors: list[str], value: object, path: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        errors.append(f"{path}: expected a non-negative integer, got {_kind(value)} {value!r}")
        return 0
    return value


def _victims_map(errors: list[str], value: object, path: str) -> Mapping[str, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(f"{path}: expected a map of node name to victims, got {_kind(value)}")
        return {}
    return value


def _victims(errors: list[str], victims: object, where: str, what: str, full: bool) -> Victims | None:
    """One node's victims: UIDs only (MetaVictims) or whole pods (``full``: Victims); None when malformed."""
    if victims is None:
        return Victims(uids=())
    if not isinstance(victims, Mapping):
        errors.append(f"{where}: expected {what} (a map), got {_kind(victims)}")
        return None
    pods = victims.get("Pods")
    if pods is not None and not isinstance(pods, list):
        errors.append(f"{where}.Pods: expected a list, got {_kind(pods)}")
    uids: list[str] = []
    infos: dict[str, PodInfo] = {}
    for i, item in enumerate(pods if isinstance(pods, list) else ()):
        if full:
            info = _pod(errors, item, f"{where}.Pods[{i}]")
            if info is not None and info.uid:
                infos[info.uid] = info
            continue
        uid = item.get("UID") if isinstance(item, Mapping) else None
        if isinstance(uid, str) and uid:
            uids.append(uid)
        else:
            errors.append(f"{where}.Pods[{i}].UID: expected a pod UID, got {_kind(uid)}")
    pdb = _count(errors, victims.get("NumPDBViolations"), f"{where}.NumPDBViolations")
    if full:
        return Victims(uids=tuple(infos), pods=tuple(infos.values()), num_pdb_violations=pdb)
    return Victims(uids=_unique(uids), num_pdb_violations=pdb)


def parse_preempt_args(body: object) -> PreemptArgs:
    """ExtenderPreemptionArgs -> PreemptArgs (victims by node, sorted by node name). Raises ProtocolError.

    With both maps present (the scheduler sends one), the full pods win for a node named in both."""
    args = _body(body, "ExtenderPreemptionArgs")
    errors: list[str] = []
    pod = _pod(errors, args.get("Pod"), "Pod")
    out: dict[str, Victims] = {}
    # NodeNameToMetaVictims names victims by UID; NodeNameToVictims sends the whole pods. One reader for both,
    # the full pods read second so they win for a node named in both.
    for key, what, full in (("NodeNameToMetaVictims", "MetaVictims", False), ("NodeNameToVictims", "Victims", True)):
        for node, victims in _victims_map(errors, args.get(key), key).items():
            parsed = _victims(errors, victims, f"{key}[{node}]", what, full)
            if parsed is not None:
                out[node] = parsed
    if errors or pod is None:
        raise ProtocolError(errors)
    return PreemptArgs(pod=pod, victims={n: out[n] for n in sorted(out)})


def parse_bind_args(body: object) -> BindArgs:
    """ExtenderBindingArgs -> BindArgs. Raises ProtocolError naming every missing or mistyped field."""
    args = _body(body, "ExtenderBindingArgs")
    errors: list[str] = []
    values: dict[str, str] = {}
    for key in ("PodName", "PodNamespace", "PodUID", "Node"):
        value = args.get(key)
        if isinstance(value, str) and value:
            values[key] = value
        elif value is None or value == "":
            errors.append(f"{key}: required")
        else:
            errors.append(f"{key}: expected a string, got {_kind(value)} {value!r}")
    if errors:
        raise ProtocolError(errors)
    return BindArgs(
        pod_name=values["PodName"], namespace=values["PodNamespace"], pod_uid=values["PodUID"], node=values["Node"]
    )


# --- rendering ---------------------------------------------------------------------------------


def render_filter_result(result: FilterResult, args: FilterArgs) -> ExtenderFilterResult:
    """The ExtenderFilterResult: NodeNames always (sorted, a subset of the input); Nodes too when the
    scheduler sent Nodes; every failed node in FailedNodes and the unresolvable ones also in
    FailedAndUnresolvableNodes (1.20 reads only the former; 1.21+ lets the latter take precedence)."""
    sent = set(args.node_names)
    passed = sorted(n for n in set(result.passed) if n in sent)
    failed = {n: result.failed[n] for n in sorted(result.failed)}
    out: ExtenderFilterResult = {
        "NodeNames": passed,
        "FailedNodes": failed,
        "FailedAndUnresolvableNodes": {n: failed[n] for n in failed if n in result.unresolvable},
        "Error": result.error,
    }
    if args.nodes is not None:
        out["Nodes"] = {"apiVersion": "v1", "kind": "NodeList", "items": [dict(args.nodes[n]) for n in passed]}
    return out


def render_priorities(scores: Iterable[HostScore]) -> HostPriorityList:
    """HostPriorityList sorted by host, every score clamped into 0..10."""
    return [{"Host": s.host, "Score": _clamp_score(s.score)} for s in sorted(scores, key=lambda s: s.host)]


def _clamp_score(score: int) -> int:
    return max(MIN_EXTENDER_PRIORITY, min(MAX_EXTENDER_PRIORITY, score))


def render_preempt_result(result: PreemptResult) -> ExtenderPreemptionResult:
    """NodeNameToMetaVictims with UIDs only, nodes and UIDs sorted."""
    return {
        "NodeNameToMetaVictims": {
            node: {
                "Pods": [{"UID": uid} for uid in sorted(result.victims[node].uids)],
                "NumPDBViolations": result.victims[node].num_pdb_violations,
            }
            for node in sorted(result.victims)
        }
    }


def render_bind_result(result: BindResult) -> ExtenderBindingResult:
    return {"Error": result.error}

"""The ElasticQuotaTree model: parse and validate the API object (every error with its field path), look nodes up."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import cast

from common import keys
from common.fair_share import half_life_problem, preemption_problem, weight_problem
from common.liveness import retries_problem, timeout_problem
from common.preemption import grace_problem, min_runtime_problem
from common.quantity import QuantityError, format_quantity, parse_exact, parse_quantity
from common.resources import Resources

__all__ = ["MAX_DEPTH", "FieldError", "QuotaNode", "QuotaTree", "TreeError", "validate_tree"]

MAX_DEPTH = 16
# The node attributes rayqueue reads, each with the check that refuses a bad value when the tree is validated.
ATTRIBUTE_CHECKS: dict[str, Callable[[str], str | None]] = {
    keys.PREEMPTION_GRACE: grace_problem,
    keys.MIN_RUNTIME: min_runtime_problem,
    keys.ADMISSION_TIMEOUT: timeout_problem,
    keys.ADMISSION_RETRIES: retries_problem,
    keys.FAIR_SHARE_HALF_LIFE: half_life_problem,
    keys.FAIR_SHARE_WEIGHT: weight_problem,
    keys.FAIR_SHARE_PREEMPTION: preemption_problem,
}
ROOT_ONLY_ATTRIBUTES: frozenset[str] = frozenset({keys.FAIR_SHARE_HALF_LIFE, keys.FAIR_SHARE_PREEMPTION})  # one decay for the whole tree
"""Levels below the root a tree may have; deeper nesting is an error, not a recursion."""

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_HINT = (
    "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One violation at one field path, e.g. `spec.root.children[0].min.cpu: min 60 > max 50`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class TreeError(ValueError):
    """An ElasticQuotaTree that breaks the tree rules; `errors` holds every violation."""

    def __init__(self, errors: tuple[FieldError, ...] | list[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        n = len(self.errors)
        super().__init__(
            f"invalid ElasticQuotaTree ({n} error{'s' if n != 1 else ''}): "
            + "; ".join(map(str, self.errors))
        )


@dataclass(frozen=True, slots=True)
class QuotaNode:
    """One quota node, converted once: full name, limits in canonical units, namespaces, children."""

    name: str
    full_name: str  # "root/algorithm/video"
    parent_full_name: str | None  # None for the root
    min: Resources
    max: Resources  # a resource max does not name is unbounded; a declared 0 is kept and refuses any
    max_jobs: int | None  # the kube-queue/max-jobs cap, None when unset
    namespaces: tuple[str, ...]  # sorted; only leaves have any
    children: tuple[str, ...]  # full names, sorted
    depth: int  # the root is 0
    attributes: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs
    path: str = field(default="spec.root", compare=False)  # where it was declared; not part of equality

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def dashed_name(self) -> str:
        """`root-algorithm-video`."""
        return self.full_name.replace("/", "-")

    @property
    def queue_generate_name(self) -> str:
        """The generateName of this leaf's Queue: `root-algorithm-video-`."""
        return keys.queue_generate_name(self.full_name)

    @property
    def parent_short_name(self) -> str:
        """The Queue's `kube-queue/parent-quota-fullname`: `algorithm` for root/algorithm/video, "" for the root."""
        if self.parent_full_name is None:
            return ""
        return self.parent_full_name.rsplit("/", 1)[-1]


class QuotaTree:
    """A validated ElasticQuotaTree: nodes by full name, namespace bindings, name resolution, fingerprint."""

    __slots__ = ("_aliases", "_by_namespace", "_fingerprint", "_nodes", "_paths", "_root")

    def __init__(self, nodes: list[QuotaNode] | tuple[QuotaNode, ...]) -> None:
        """Build from already-validated nodes; use `QuotaTree.parse` for API objects."""
        self._nodes: dict[str, QuotaNode] = {n.full_name: n for n in sorted(nodes, key=lambda n: n.full_name)}
        roots = [n for n in self._nodes.values() if n.parent_full_name is None]
        if len(roots) != 1:
            raise ValueError(f"a quota tree has exactly one root, got {len(roots)}")
        self._root = roots[0]
        self._by_namespace = {ns: n for n in self._nodes.values() for ns in n.namespaces}
        self._paths: dict[str, tuple[QuotaNode, ...]] = {}
        for n in self._nodes.values():  # sorted by full name: a parent comes before its children
            parent = n.parent_full_name
            self._paths[n.full_name] = (n, *self._paths[parent]) if parent is not None else (n,)
        aliases: dict[str, set[str]] = {}
        root_prefix = self._root.full_name + "/"
        for n in self._nodes.values():
            forms = {n.name, n.dashed_name}
            if n.full_name.startswith(root_prefix):
                forms.add(n.full_name[len(root_prefix) :].replace("/", "-"))
            for form in forms:
                aliases.setdefault(form, set()).add(n.full_name)
        self._aliases = {k: next(iter(v)) for k, v in aliases.items() if len(v) == 1}
        canonical = [
            [
                n.full_name,
                sorted(n.min.items()),
                sorted(n.max.items()),
                n.max_jobs,
                list(n.namespaces),
                [list(a) for a in n.attributes],
            ]
            for n in self._nodes.values()
        ]
        self._fingerprint = hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()

    @classmethod
    def parse(cls, obj: object) -> QuotaTree:
        """The tree of an ElasticQuotaTree API object. Raises TreeError listing every violation."""
        errors, nodes = _Walker().run(obj)
        if errors:
            raise TreeError(errors)
        return cls(nodes)

    @property
    def root(self) -> QuotaNode:
        return self._root

    @property
    def fingerprint(self) -> str:
        """A hash of everything that matters for quota decisions (not declaration order, not metadata)."""
        return self._fingerprint

    def __eq__(self, other: object) -> bool:
        if isinstance(other, QuotaTree):
            return self._fingerprint == other._fingerprint
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._fingerprint)

    def __repr__(self) -> str:
        return f"QuotaTree({len(self._nodes)} nodes, {self._fingerprint[:12]})"

    def __contains__(self, full_name: object) -> bool:
        return full_name in self._nodes

    def node(self, full_name: str) -> QuotaNode:
        """The node with this full name. Raises KeyError naming it when there is none."""
        try:
            return self._nodes[full_name]
        except KeyError:
            raise KeyError(f"no quota node {full_name!r}") from None

    def get(self, full_name: str) -> QuotaNode | None:
        return self._nodes.get(full_name)

    def inherited_attribute(self, full_name: str, key: str) -> str | None:
        """The value of attribute ``key`` for a node: its own, else the nearest ancestor's; None when no node on
        the path sets it, or the node is unknown (a claim whose leaf left the tree)."""
        if full_name not in self._nodes:
            return None
        for node in self._paths[full_name]:
            for k, v in node.attributes:
                if k == key:
                    return v
        return None

    def nodes(self) -> tuple[QuotaNode, ...]:
        """Every node, sorted by full name (so a parent comes before its children)."""
        return tuple(self._nodes.values())

    def leaves(self) -> tuple[QuotaNode, ...]:
        """The leaves, sorted by full name."""
        return tuple(n for n in self._nodes.values() if n.is_leaf)

    def leaf_for_namespace(self, namespace: str) -> QuotaNode | None:
        """The leaf a namespace is bound to, if any."""
        return self._by_namespace.get(namespace)

    def namespace_bindings(self) -> dict[str, str]:
        """namespace -> leaf full name, sorted by namespace."""
        return {ns: self._by_namespace[ns].full_name for ns in sorted(self._by_namespace)}

    def path_to_root(self, full_name: str) -> tuple[QuotaNode, ...]:
        """The node and its ancestors, the node first and the root last. Raises KeyError for an unknown node."""
        try:
            return self._paths[full_name]
        except KeyError:
            raise KeyError(f"no quota node {full_name!r}") from None

    def resolve(self, name: str) -> QuotaNode | None:
        """A node by full path (`root/a/b`), short name (`b`), dashed (`root-a-b`) or dashed without root (`a-b`).

        A form that more than one node answers to resolves to nothing; the full path always works.
        """
        if name in self._nodes:
            return self._nodes[name]
        full = self._aliases.get(name)
        return self._nodes[full] if full is not None else None


def validate_tree(obj: object) -> list[FieldError]:
    """Every violation of the tree rules in an ElasticQuotaTree API object, in document order."""
    return _Walker().run(obj)[0]


# --- the walk -----------------------------------------------------------------------------------


@dataclass
class _Raw:
    """What could be read of one node; hierarchy checks use whatever parsed cleanly."""

    path: str
    name: str | None
    depth: int
    min: dict[str, int] = field(default_factory=dict)
    max: dict[str, int] = field(default_factory=dict)
    min_jobs: int | None = None
    max_jobs: int | None = None
    namespaces: list[tuple[str, str]] = field(default_factory=list)  # (namespace, its path)
    attributes: dict[str, str] = field(default_factory=dict)
    children: list[_Raw] = field(default_factory=list)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


class _Walker:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def run(self, obj: object) -> tuple[list[FieldError], list[QuotaNode]]:
        if not isinstance(obj, Mapping):
            self.error("", f"an ElasticQuotaTree must be a mapping, got {_type_name(obj)}")
            return self.errors, []
        kind = obj.get("kind")
        if kind is not None and kind != keys.QUOTA_TREE_KIND:
            self.error("kind", f"expected {keys.QUOTA_TREE_KIND}, got {kind!r}")
        spec = obj.get("spec")
        if spec is None:
            self.error("spec", "required")
            return self.errors, []
        if not isinstance(spec, Mapping):
            self.error("spec", f"must be a mapping, got {_type_name(spec)}")
            return self.errors, []
        root = spec.get("root")
        if root is None:
            self.error("spec.root", "required")
            return self.errors, []
        raw = self.node(root, "spec.root", 0)
        if raw is None:
            return self.errors, []
        self.unique_namespaces(raw)
        if self.errors:
            return self.errors, []
        return self.errors, list(_build(raw, None))

    def node(self, obj: object, path: str, depth: int) -> _Raw | None:
        if not isinstance(obj, Mapping):
            self.error(path, f"must be a mapping (a quota node), got {_type_name(obj)}")
            return None
        raw = _Raw(path=path, name=self.name(obj.get("name"), f"{path}.name"), depth=depth)
        raw.min, raw.min_jobs = self.limits(obj.get("min"), f"{path}.min")
        raw.max, raw.max_jobs = self.limits(obj.get("max"), f"{path}.max")
        for res in sorted(raw.min.keys() & raw.max.keys()):
            if raw.min[res] > raw.max[res]:
                lo, hi = format_quantity(res, raw.min[res]), format_quantity(res, raw.max[res])
                self.error(f"{path}.min.{res}", f"min {lo} > max {hi}")
        if raw.min_jobs is not None and raw.max_jobs is not None and raw.min_jobs > raw.max_jobs:
            self.error(f"{path}.min.{keys.MAX_JOBS}", f"min {raw.min_jobs} > max {raw.max_jobs}")
        raw.attributes = self.attributes(obj.get("attributes"), f"{path}.attributes", raw.name)
        for key in sorted(ROOT_ONLY_ATTRIBUTES & raw.attributes.keys() if depth > 0 else ()):
            self.error(f"{path}.attributes.{key}", f"quota node {raw.name or '(unnamed)'}: {key} is read from the "
                       "root's attributes only (one half-life for the whole tree)")
        children = obj.get("children")
        if children is not None and not isinstance(children, list):
            self.error(f"{path}.children", f"must be a list of quota nodes, got {_type_name(children)}")
            children = None
        has_children = bool(children)
        if children and depth >= MAX_DEPTH:
            self.error(f"{path}.children", f"the tree is deeper than {MAX_DEPTH} levels below the root")
            children = None
        self.children(raw, children or [])
        raw.namespaces = self.namespaces(
            obj.get("namespaces"), f"{path}.namespaces", has_children=has_children
        )
        return raw

    def name(self, value: object, path: str) -> str | None:
        if value is None or value == "":
            self.error(path, "required")
            return None
        if not isinstance(value, str):
            self.error(path, f"must be a string, got {_type_name(value)}")
            return None
        if len(value) > 63 or not _DNS1123_LABEL.match(value):
            self.error(path, f"{value!r} is not a DNS-1123 label ({_LABEL_HINT})")
            return None
        return value

    def limits(self, value: object, path: str) -> tuple[dict[str, int], int | None]:
        """A min/max map: resources in canonical units, and the kube-queue/max-jobs cap apart."""
        if value is None:
            return {}, None
        if not isinstance(value, Mapping):
            self.error(path, f"must be a mapping of resource name to quantity, got {_type_name(value)}")
            return {}, None
        out: dict[str, int] = {}
        jobs: int | None = None
        for name, raw in value.items():
            at = f"{path}.{name}"
            if not isinstance(name, str):
                self.error(at, f"resource name must be a string, got {_type_name(name)}")
                continue
            name_ok = self.resource_name(name, at)
            try:
                exact = parse_exact(raw)
            except QuantityError as exc:
                self.error(at, str(exc))
                continue
            if exact < 0:
                self.error(at, f"must not be negative, got {raw!r}")
                continue
            if name == keys.MAX_JOBS:
                if exact.denominator != 1:
                    self.error(at, f"a job cap must be a whole number of jobs, got {raw!r}")
                    continue
                jobs = int(exact)
            elif name_ok:
                out[name] = parse_quantity(name, cast(str | int | float, raw))
        return out, jobs

    def resource_name(self, name: str, path: str) -> bool:
        prefix, slash, short = name.rpartition("/")
        problems = []
        if slash and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
            problems.append(f"prefix {prefix!r} must be a DNS-1123 subdomain")
        if not short or len(short) > 63 or not _QUALIFIED_NAME.match(short):
            problems.append(
                "name part must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
                "letter or digit"
            )
        if problems:
            self.error(path, f"invalid resource name {name!r}: " + "; ".join(problems))
        return not problems

    def attributes(self, value: object, path: str, node: str | None = None) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.error(path, f"must be a mapping of string to string, got {_type_name(value)}")
            return {}
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, str):
                self.error(
                    f"{path}.{k}", f"must be a string, got {_type_name(v if isinstance(k, str) else k)}"
                )
                continue
            check = ATTRIBUTE_CHECKS.get(k)
            problem = check(v) if check is not None else None
            if problem:
                self.error(f"{path}.{k}", f"quota node {node or '(unnamed)'}: {problem}")
                continue
            out[k] = v
        return out

    def children(self, parent: _Raw, children: list[object]) -> None:
        seen: dict[str, str] = {}
        for i, child_obj in enumerate(children):
            child = self.node(child_obj, f"{parent.path}.children[{i}]", parent.depth + 1)
            if child is None:
                continue
            parent.children.append(child)
            if child.name is not None:
                if child.name in seen:
                    self.error(
                        f"{child.path}.name",
                        f"duplicate name {child.name!r} among siblings (also at {seen[child.name]})",
                    )
                else:
                    seen[child.name] = child.path
            for res in sorted(child.max.keys() & parent.max.keys()):
                if child.max[res] > parent.max[res]:
                    hi, top = format_quantity(res, child.max[res]), format_quantity(res, parent.max[res])
                    self.error(f"{child.path}.max.{res}", f"max {hi} > parent max {top}")
        for res in sorted({r for c in parent.children for r in c.min}):
            parts = [(c.name or c.path, c.min[res]) for c in parent.children if c.min.get(res)]
            total = sum(v for _, v in parts)
            if total > parent.min.get(res, 0):
                f = format_quantity
                listed = ", ".join(f"{n} {f(res, v)}" for n, v in parts)
                self.error(
                    f"{parent.path}.min.{res}",
                    f"children's min adds up to {f(res, total)} > min {f(res, parent.min.get(res, 0))} ({listed})",
                )

    def namespaces(self, value: object, path: str, *, has_children: bool) -> list[tuple[str, str]]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"must be a list of namespace names, got {_type_name(value)}")
            return []
        if value and has_children:
            self.error(path, "only leaves may have namespaces; this node has children")
        out: list[tuple[str, str]] = []
        seen: dict[str, str] = {}
        for i, ns in enumerate(value):
            at = f"{path}[{i}]"
            if not isinstance(ns, str):
                self.error(at, f"must be a string, got {_type_name(ns)}")
            elif len(ns) > 63 or not _DNS1123_LABEL.match(ns):
                self.error(at, f"{ns!r} is not a valid namespace name, a DNS-1123 label ({_LABEL_HINT})")
            elif ns in seen:
                self.error(at, f"namespace {ns!r} is listed twice (also at {seen[ns]})")
            else:
                seen[ns] = at
                out.append((ns, at))
        return out

    def unique_namespaces(self, root: _Raw) -> None:
        where: dict[str, list[str]] = {}
        for raw in _preorder(root):
            for ns, at in raw.namespaces:
                where.setdefault(ns, []).append(at)
        for ns in sorted(where):
            paths = where[ns]
            if len(paths) < 2:
                continue
            for at in paths:
                others = ", ".join(p for p in paths if p != at)
                self.error(at, f"namespace {ns!r} is bound to more than one leaf (also at {others})")


def _preorder(raw: _Raw) -> Iterator[_Raw]:
    yield raw
    for c in raw.children:
        yield from _preorder(c)


def _build(raw: _Raw, parent: str | None) -> list[QuotaNode]:
    assert raw.name is not None  # only called on a tree without errors
    full = raw.name if parent is None else f"{parent}/{raw.name}"
    children = raw.children
    node = QuotaNode(
        name=raw.name,
        full_name=full,
        parent_full_name=parent,
        min=Resources(raw.min),
        max=Resources(raw.max),
        max_jobs=raw.max_jobs if raw.max_jobs is not None else raw.min_jobs,
        namespaces=tuple(sorted(ns for ns, _ in raw.namespaces)),
        children=tuple(sorted(f"{full}/{c.name}" for c in children)),
        depth=raw.depth,
        attributes=tuple(sorted(raw.attributes.items())),
        path=raw.path,
    )
    out = [node]
    for c in children:
        out.extend(_build(c, full))
    return out

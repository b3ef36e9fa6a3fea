"""Fair share over time, pure: decayed borrowed usage per quota node, weights, and the Fair Tree order of leaves.

Definitions (docs/fairshare.md):

* **Borrowed usage** of a node, per resource: ``max(0, used - min)``, a resource its min does not name counting
  a min of 0. Only usage beyond min counts, because the min is guaranteed whatever anyone used before: a team
  that lives within its min owes nobody anything, and fair share arbitrates only the capacity beyond the mins
  that siblings compete for (KAI-Scheduler applies its time-based fair share to over-quota resources only, for
  the same reason). The root is not counted: it has no siblings.
* **Decayed usage** ``u`` per node and resource, in canonical units times seconds (cpu: millicore-seconds),
  halved every half-life ``h``: ``u(t+Δ) = u(t)·0.5^(Δ/h) + ∫ borrowed(s)·0.5^((t+Δ-s)/h) ds``; over a step of
  constant borrowed ``b`` the integral is ``b·h/ln 2·(1 - 0.5^(Δ/h))`` (``DecayedUsage.advance``). A float: it
  is a decayed integral, not a quantity; it is written to the tree's status rounded to 6 significant digits.
* **Share** of a node: its *dominant* decayed usage, the largest over resources of ``u[r] / capacity[r]`` where
  the capacity of ``r`` is the least of the parent's max, every ancestor's max and the cluster's capacity that
  name ``r`` (as Kueue's DRS takes the scarcest resource); a resource none of them bounds is measured against
  the siblings' total decayed usage of it. The share over the node's **weight** (``rayqueue.io/fair-share-
  weight``, default 1) orders it among its siblings.
* **Fair Tree order** of leaves (Slurm's Fair Tree): at every level siblings are ranked by share over weight,
  lowest first, ties by name; a leaf's rank is the list of its ancestors' places from the top, so two leaves are
  compared by the children of their lowest common ancestor on each side.

Unset ``rayqueue.io/fair-share-half-life`` on the root: no order at all (``order_for`` returns None) and every
decision is today's (priority, then enqueue time).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from common import keys
from common.gotime import GoTimeError, format_go, parse_duration, parse_go
from common.resources import Resources

if TYPE_CHECKING:  # common.quota_tree validates the attributes with the checks below: no import cycle at run time
    from common.quota_tree import QuotaTree

__all__ = [
    "WINDOW_HALF_LIVES",
    "DecayedUsage",
    "FairOrder",
    "FairReclaim",
    "Share",
    "Unfair",
    "borrowed",
    "current_share",
    "fair_preemption",
    "half_life_problem",
    "half_life_seconds",
    "order_for",
    "preemption_problem",
    "short_duration",
    "weight_of",
    "weight_problem",
]

NS: Final = 10**9
MAX_HALF_LIFE_SECONDS: Final = 365 * 24 * 3600
MAX_WEIGHT: Final = 1_000_000.0
WRITE_EVERY_NS: Final = 60 * NS  # the decayed usage reaches the tree's status at least this often
WINDOW_HALF_LIVES: Final = 3  # the window a message names: the last 3 half-lives hold 87.5 % of the decayed weight
_NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")
Usage = Mapping[str, Mapping[str, float]]  # node -> resource -> decayed borrowed usage (canonical unit-seconds)


def half_life_problem(value: str) -> str | None:
    """Why a ``rayqueue.io/fair-share-half-life`` value is refused (None: valid)."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        return f"invalid {keys.FAIR_SHARE_HALF_LIFE} {value!r}: expected a Go duration like 30m, 1h or 24h"
    if seconds <= 0:
        return f"invalid {keys.FAIR_SHARE_HALF_LIFE} {value!r}: a half-life must be positive (unset it to turn fair share off)"
    if seconds > MAX_HALF_LIFE_SECONDS:
        return f"invalid {keys.FAIR_SHARE_HALF_LIFE} {value!r}: at most {short_duration(MAX_HALF_LIFE_SECONDS)}"
    return None


def weight_problem(value: str) -> str | None:
    """Why a ``rayqueue.io/fair-share-weight`` value is refused (None: valid)."""
    text = value.strip()
    if not _NUMBER.match(text) or float(text) <= 0:
        return f"invalid {keys.FAIR_SHARE_WEIGHT} {value!r}: expected a positive number like 1, 2 or 0.5"
    if float(text) > MAX_WEIGHT:
        return f"invalid {keys.FAIR_SHARE_WEIGHT} {value!r}: at most {MAX_WEIGHT:g}"
    return None


def preemption_problem(value: str) -> str | None:
    """Why a ``rayqueue.io/fair-share-preemption`` value is refused (None: valid)."""
    if value not in ("true", "false"):
        return f"invalid {keys.FAIR_SHARE_PREEMPTION} {value!r}: expected \"true\" or \"false\""
    return None


def fair_preemption(tree: QuotaTree) -> bool:
    """Reclaim for fairness is on: the root says ``"true"`` and sets a half-life."""
    return dict(tree.root.attributes).get(keys.FAIR_SHARE_PREEMPTION) == "true" and half_life_seconds(tree) is not None


def current_share(tree: QuotaTree, node: str, used: Mapping[str, int], capacity: Resources | None = None) -> float:
    """A node's dominant share of what it borrows *now* (``used`` beyond its min) over its weight: the largest over
    resources of ``borrowed[r] / capacity[r]`` (the capacity as for the decayed share; a resource nothing bounds is
    not counted). The share reclaim for fairness compares before and after (Kueue's LessThanOrEqualToFinalShare)."""
    found = tree.get(node)
    if found is None or found.parent_full_name is None:
        return 0.0
    best = 0.0
    for r, v in used.items():
        over = v - found.min.get(r, 0)
        if over <= 0:
            continue
        limits = [n.max[r] for n in tree.path_to_root(found.parent_full_name) if r in n.max]
        if capacity is not None and r in capacity:
            limits.append(capacity[r])
        if limits and min(limits) > 0:
            best = max(best, over / min(limits))
    return best / weight_of(tree, node)


def short_duration(seconds: float) -> str:
    """``3h``, ``1h30m``, ``45s``: a Go duration without its zero parts."""
    total = max(0, round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    text = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "")
    return text or "0s"


def half_life_seconds(tree: QuotaTree) -> float | None:
    """The root's half-life in seconds; None when unset (fair share off). The tree was validated."""
    value = dict(tree.root.attributes).get(keys.FAIR_SHARE_HALF_LIFE)
    if value is None or half_life_problem(value) is not None:
        return None
    return parse_duration(value)


def weight_of(tree: QuotaTree, full_name: str) -> float:
    """A node's own weight (default 1). Not inherited: a weight only means something against its siblings'."""
    node = tree.get(full_name)
    value = dict(node.attributes).get(keys.FAIR_SHARE_WEIGHT) if node is not None else None
    if value is None or weight_problem(value) is not None:
        return 1.0
    return float(value)


def borrowed(tree: QuotaTree, usage: Callable[[str], Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Per node but the root, per resource: what its subtree uses beyond its min (only positive amounts)."""
    out: dict[str, dict[str, int]] = {}
    for node in tree.nodes():
        if node.parent_full_name is None:
            continue
        used = usage(node.full_name)
        over = {r: v - node.min.get(r, 0) for r, v in used.items() if v > node.min.get(r, 0)}
        if over:
            out[node.full_name] = over
    return out


def _sig(value: float) -> float:
    return float(f"{value:.6g}")


@dataclass(frozen=True, slots=True)
class DecayedUsage:
    """Decayed borrowed usage per node and resource at ``at_ns``, and the half-life it decays with."""

    at_ns: int
    half_life_s: float
    usage: Usage = field(default_factory=dict)

    def advance(self, now_ns: int, borrowed_now: Mapping[str, Mapping[str, int]]) -> DecayedUsage:
        """The usage at ``now_ns``, ``borrowed_now`` having held constant since ``at_ns`` (closed form). A clock
        that went back changes nothing."""
        dt = max(0, now_ns - self.at_ns) / NS
        if dt == 0:
            return self if now_ns <= self.at_ns else DecayedUsage(now_ns, self.half_life_s, self.usage)
        keep = 0.5 ** (dt / self.half_life_s)
        gain = self.half_life_s / math.log(2) * (1.0 - keep)
        out: dict[str, dict[str, float]] = {}
        for node in sorted(set(self.usage) | set(borrowed_now)):
            old, rate = self.usage.get(node, {}), borrowed_now.get(node, {})
            values = {r: old.get(r, 0.0) * keep + rate.get(r, 0) * gain for r in sorted(set(old) | set(rate))}
            values = {r: v for r, v in values.items() if v > 1e-9}
            if values:
                out[node] = values
        return DecayedUsage(now_ns, self.half_life_s, out)

    def of(self, node: str) -> Mapping[str, float]:
        return self.usage.get(node, {})

    # --- the tree's status -------------------------------------------------------------------

    def to_status(self, shares: Mapping[str, Share] | None = None,
                  previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``status.fairShare``: when, the half-life, per node the decayed usage (6 significant digits) and, from
        ``shares``, its dominant share over its weight (4 digits). A node ``previous`` (the status's last
        ``fairShare``) lists that is gone is written as null, so the merge-patch removes it."""
        usage: dict[str, Any] = {n: {r: _sig(v) for r, v in sorted(u.items())} for n, u in sorted(self.usage.items())}
        ratios: dict[str, Any] = {n: round(s.ratio, 4) for n, s in sorted((shares or {}).items()) if s.value > 0}
        for part, new in (("usage", usage), ("share", ratios)):
            old = (previous or {}).get(part)
            for node in old if isinstance(old, Mapping) else ():
                if isinstance(node, str) and node not in new:
                    new[node] = None
        return {"updated": format_go(self.at_ns), "halfLife": short_duration(self.half_life_s), "usage": usage,
                "share": ratios}

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None, half_life_s: float, now_ns: int) -> DecayedUsage:
        """What a status written by ``to_status`` holds (a new leader continues from it); nothing (starting at
        ``now_ns``) when there is none or it cannot be read. A different half-life keeps the values."""
        fair = (status or {}).get("fairShare")
        if not isinstance(fair, Mapping):
            return cls(now_ns, half_life_s)
        try:
            at = parse_go(str(fair.get("updated", "")))
        except GoTimeError:
            return cls(now_ns, half_life_s)
        if not isinstance(fair.get("updated"), str):
            return cls(now_ns, half_life_s)
        raw = fair.get("usage")
        usage: dict[str, dict[str, float]] = {}
        for node, values in raw.items() if isinstance(raw, Mapping) else ():
            if isinstance(values, Mapping):
                kept = {str(r): float(v) for r, v in values.items() if isinstance(v, int | float) and v > 0}
                if kept:
                    usage[str(node)] = kept
        return cls(at, half_life_s, usage)


@dataclass(frozen=True, slots=True)
class Share:
    """A node's dominant decayed share: the resource, ``u[r] / capacity[r]``, its weight and the ratio."""

    node: str
    resource: str  # "" when it has no decayed usage
    value: float
    weight: float

    @property
    def ratio(self) -> float:
        return self.value / self.weight


@dataclass(frozen=True, slots=True, kw_only=True)
class Unfair:
    """Why a borrowing job waits for fair share: ``node`` used ``times`` its fair share of borrowed ``resource``
    among its competing siblings over the last ``WINDOW_HALF_LIVES`` half-lives; ``first`` goes first."""

    node: str
    first: str
    resource: str
    times: float
    half_life_s: float

    def words(self) -> str:
        window = short_duration(WINDOW_HALF_LIVES * self.half_life_s)
        of = f"borrowed {self.resource}" if self.resource else "borrowed capacity"
        return (f"{self.node} used {self.times:.1f}x its fair share of {of} over the last {window} "
                f"(half-life {short_duration(self.half_life_s)}); {self.first} goes first")


@dataclass(frozen=True, slots=True, kw_only=True)
class FairReclaim:
    """A reclaim for fairness as its victim is told: the claimant's side and the victim's (the children of their
    lowest common ancestor) and each side's dominant share of what it borrows now over its weight
    (``current_share``), before and after the reclaim: the claimant's stays at most the victim's after it."""

    claimant: str
    victim: str
    before: tuple[float, float]  # (claimant's side, victim's side)
    after: tuple[float, float]

    def words(self) -> str:
        (cb, vb), (ca, va) = self.before, self.after
        return (f"shares of borrowed capacity (dominant resource, over weight) before -> after: {self.claimant} "
                f"{cb:.3f} -> {ca:.3f}, {self.victim} {vb:.3f} -> {va:.3f}")


class FairOrder:
    """The Fair Tree order of one decision's snapshot: each node's share, each leaf's rank."""

    __slots__ = ("_leaves", "_ranks", "_tree", "decayed", "shares")

    def __init__(self, tree: QuotaTree, decayed: DecayedUsage, capacity: Resources | None = None) -> None:
        self._tree = tree
        self.decayed = decayed
        self.shares: dict[str, Share] = {}
        for node in tree.nodes():
            kids = [tree.node(c) for c in node.children]
            for kid in kids:
                self.shares[kid.full_name] = self._share(kid.full_name, node.full_name, [k.full_name for k in kids],
                                                         capacity)
        self._ranks: dict[str, tuple[tuple[float, str], ...]] = {}
        for leaf in tree.leaves():
            path = [n.full_name for n in reversed(tree.path_to_root(leaf.full_name))][1:]
            self._ranks[leaf.full_name] = tuple((self.shares[n].ratio, n) for n in path)
        self._leaves = tuple(sorted(self._ranks, key=lambda n: self._ranks[n]))

    def _share(self, node: str, parent: str, siblings: list[str], capacity: Resources | None) -> Share:
        used = self.decayed.of(node)
        best, value = "", 0.0
        for r in sorted(used):
            limits = [n.max[r] for n in self._tree.path_to_root(parent) if r in n.max]
            if capacity is not None and r in capacity:
                limits.append(capacity[r])
            total = min(limits) if limits else sum(self.decayed.of(s).get(r, 0.0) for s in siblings)
            v = used[r] / total if total > 0 else 0.0
            if v > value:
                best, value = r, v
        return Share(node, best, value, weight_of(self._tree, node))

    def status(self, old: Mapping[str, Any], nodes: Mapping[str, Any]) -> tuple[Mapping[str, Any], int]:
        """``status.fairShare`` for a status whose ``nodes`` part is ``nodes``, and when to write it next: the
        decayed usage now when the used or request of a node changed (the usage ``order_for`` advanced with
        then ends) or the last write is ``WRITE_EVERY_NS`` old; else the old status's own, so nothing is
        written."""
        previous = old.get("fairShare")
        kept = previous if isinstance(previous, Mapping) else None
        now = self.decayed.at_ns
        try:
            written = parse_go(str(kept.get("updated"))) if kept is not None else None
        except GoTimeError:
            written = None
        if kept is not None and written is not None and old.get("nodes") == nodes and now - written < WRITE_EVERY_NS:
            return kept, written + WRITE_EVERY_NS
        return self.decayed.to_status(self.shares, kept), now + WRITE_EVERY_NS

    def leaves(self) -> tuple[str, ...]:
        """Every leaf, the first to get borrowed capacity first."""
        return self._leaves

    def rank(self, leaf: str) -> tuple[tuple[float, str], ...]:
        return self._ranks.get(leaf, ((math.inf, leaf),))

    def goes_first(self, a: str, b: str) -> bool:
        """Leaf ``a`` gets borrowed capacity before leaf ``b``."""
        return a != b and self.rank(a) < self.rank(b)

    def competitors(self, a: str, b: str) -> tuple[str, str]:
        """The children of the lowest common ancestor of leaves ``a`` and ``b`` on each side."""
        pa = [n.full_name for n in reversed(self._tree.path_to_root(a))]
        pb = [n.full_name for n in reversed(self._tree.path_to_root(b))]
        i = 0
        while i < min(len(pa), len(pb)) - 1 and pa[i + 1] == pb[i + 1]:
            i += 1
        return pa[min(i + 1, len(pa) - 1)], pb[min(i + 1, len(pb) - 1)]

    def unfair(self, waiting: str, first: str) -> Unfair:
        """The record of leaf ``waiting`` yielding to leaf ``first``: its side's use of its dominant resource
        against its fair share (its weight over the weights of the siblings that used any, and the two)."""
        w_node, f_node = self.competitors(waiting, first)
        share = self.shares.get(w_node, Share(w_node, "", 0.0, 1.0))
        parent = self._tree.node(w_node).parent_full_name
        siblings = self._tree.node(parent).children if parent is not None else (w_node,)
        r = share.resource
        active = [s for s in siblings if s in (w_node, f_node) or self.decayed.of(s).get(r, 0.0) > 0]
        total_used = sum(self.decayed.of(s).get(r, 0.0) for s in active)
        total_weight = sum(weight_of(self._tree, s) for s in active)
        used_fraction = self.decayed.of(w_node).get(r, 0.0) / total_used if total_used > 0 else 0.0
        fair_fraction = share.weight / total_weight if total_weight > 0 else 1.0
        return Unfair(node=w_node, first=f_node, resource=r, times=used_fraction / fair_fraction,
                      half_life_s=self.decayed.half_life_s)


def order_for(tree: QuotaTree, status: Mapping[str, Any] | None, used: Mapping[str, Resources], now_ns: int,
              capacity: Resources | None = None) -> FairOrder | None:
    """The order of a decision at ``now_ns``: the status's decayed usage advanced with the usage it recorded
    (``used``, which held since it was written: every change of usage writes the status); None when the root
    sets no half-life."""
    half_life = half_life_seconds(tree)
    if half_life is None:
        return None
    start = DecayedUsage.from_status(status, half_life, now_ns)
    if start.half_life_s != half_life:  # pragma: no cover - from_status takes the tree's
        start = DecayedUsage(start.at_ns, half_life, start.usage)
    now = start.advance(now_ns, borrowed(tree, lambda n: used.get(n, Resources())))
    return FairOrder(tree, now, capacity)

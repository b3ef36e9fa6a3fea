"""Gang placement: plan every member of a group onto nodes at once, and hold the plan as a reservation.

Planning is best-fit decreasing over request *shapes*: members of one gang share a few shapes (head,
workers), so each shape is placed as a block -- per node, how many copies still fit; the tightest nodes
first (ties by name), the largest shape (by dominant share of the free total) first. It is greedy: it
never overcommits a node and is deterministic, but like any bin packing heuristic it may miss a placement
an exhaustive search would find. Every member also takes one ``pods`` slot.

A reservation holds a gang's plan for a TTL on an injected clock. The free view a gang plans against is
the nodes' free resources minus the reservations of other gangs' members not yet bound (a bound member
is already counted by NodeState); the gang's own still-valid assignments are kept and only the rest is
re-planned, so re-planning is stable.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from common.clock import Clock
from common.quantity import format_quantity
from common.resources import Resources
from common.wire import FrozenMap
from extender.nodes import POD_SLOT, PODS, NodeState

__all__ = [
    "GangPlan",
    "Member",
    "PlanFailure",
    "Reservation",
    "Reservations",
    "free_view",
    "gang_key",
    "plan_gang",
]


def gang_key(namespace: str, name: str) -> str:
    """``namespace/name`` of a gang: the unit of reservations and of the bind barrier."""
    return f"{namespace}/{name}"


@dataclass(frozen=True, slots=True)
class Member:
    """A member still to place: its pod UID and request (the ``pods`` slot is added by the planner)."""

    uid: str
    request: Resources


@dataclass(frozen=True, slots=True, kw_only=True)
class GangPlan:
    """A placement for every member to place: pod UID -> node name."""

    gang: str
    assignments: FrozenMap

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanFailure:
    """No placement: the reason names the gang, the members, the need and the free resources."""

    gang: str
    reason: str
    unplaced: int

    def __bool__(self) -> bool:
        return False


def _shape_key(shape: Resources, totals: Mapping[str, int]) -> tuple[Fraction, str]:
    """Largest first: the dominant share of the free total, then the shape's text (a stable tie-break)."""
    shares = [Fraction(amount, totals[r]) if totals.get(r) else Fraction(amount) for r, amount in shape.items()]
    return (-max(shares, default=Fraction(0)), str(shape))


def plan_gang(
    gang: str,
    members: Sequence[Member],
    free: Mapping[str, Mapping[str, int]],
    *,
    placed: int = 0,
) -> GangPlan | PlanFailure:
    """Place every member onto the nodes of ``free`` (node -> free resources, ``pods`` slots included).

    ``placed`` is how many members are already bound (for the message). Deterministic; never overcommits.
    """
    shapes: dict[Resources, list[str]] = {}
    for m in members:
        shapes.setdefault(m.request + POD_SLOT, []).append(m.uid)
    names = sorted(free)
    wanted_resources = sorted({r for shape in shapes for r, a in shape.items() if a > 0})
    # One column of free amounts per requested resource, in node-name order: each shape's fit is then a
    # few list comprehensions instead of a Python loop over nodes and resources.
    columns = {r: [free[name].get(r, 0) for name in names] for r in wanted_resources}
    totals = {r: sum(column) for r, column in columns.items()}
    assignments: dict[str, str] = {}
    unplaced = 0
    for shape in sorted(shapes, key=lambda s: _shape_key(s, totals)):
        uids = sorted(shapes[shape])
        wanted = [(r, a) for r, a in shape.items() if a > 0]
        copies: list[int] = []
        for n, (r, a) in enumerate(wanted):
            fit = [amount // a for amount in columns[r]]
            copies = fit if n == 0 else list(map(min, copies, fit))
        # best fit: the nodes with room for the fewest copies first, ties by node name
        # (every candidate takes at least one member, so the len(uids) smallest are all that can be used)
        candidates = heapq.nsmallest(len(uids), ((c, i) for i, c in enumerate(copies) if c > 0))
        placed_here = 0
        for count, i in candidates:
            if placed_here == len(uids):
                break
            take = min(count, len(uids) - placed_here)
            for uid in uids[placed_here : placed_here + take]:
                assignments[uid] = names[i]
            placed_here += take
            for r, a in wanted:
                columns[r][i] -= a * take
        unplaced += len(uids) - placed_here
    if unplaced:
        return PlanFailure(gang=gang, reason=_failure(gang, members, free, placed, unplaced), unplaced=unplaced)
    return GangPlan(gang=gang, assignments=FrozenMap(assignments))


def _failure(
    gang: str, members: Sequence[Member], free: Mapping[str, Mapping[str, int]], placed: int, unplaced: int
) -> str:
    need: dict[str, int] = {}
    for m in members:
        for resource, amount in m.request.items():
            if amount > 0:
                need[resource] = need.get(resource, 0) + amount
    free_total: dict[str, int] = {}
    largest: dict[str, int] = {}
    for room in free.values():
        for resource, amount in room.items():
            free_total[resource] = free_total.get(resource, 0) + amount
            largest[resource] = max(largest.get(resource, 0), amount)
    shown = sorted(need)
    if free_total.get(PODS, 0) < len(members) or largest.get(PODS, 0) == 0:
        need[PODS] = len(members)
        shown.append(PODS)
    f = format_quantity
    needs = ", ".join(f"{r} {f(r, need[r])}" for r in shown)
    frees = ", ".join(f"{r} {f(r, free_total.get(r, 0))} (largest {f(r, largest.get(r, 0))})" for r in shown)
    count = len(members) + placed
    return (
        f"gang {gang}: {count} members ({placed} placed), {len(members)} to place need {needs} in total; "
        f"free on {len(free)} schedulable nodes: {frees}; {unplaced} members cannot be placed"
    )


# --- reservations ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """A gang's held plan: member UID -> node, each member's usage, and when the hold lapses."""

    gang: str
    assignments: FrozenMap
    usage: Mapping[str, Resources]  # request + one pods slot, per member UID
    expires_at: float  # on the clock's monotonic scale


class Reservations:
    """Per gang (``namespace/name``) a plan held for ``ttl`` seconds of the injected clock."""

    def __init__(self, ttl: float, clock: Clock) -> None:
        if ttl <= 0:
            raise ValueError(f"reservation ttl must be positive, got {ttl}")
        self._ttl = ttl
        self._clock = clock
        self._held: dict[str, Reservation] = {}

    @property
    def ttl(self) -> float:
        return self._ttl

    def reserve(self, gang: str, assignments: Mapping[str, str], usage: Mapping[str, Resources]) -> Reservation:
        """Hold (or replace) the gang's plan from now for the TTL. ``usage`` covers every assigned UID."""
        missing = sorted(set(assignments) - set(usage))
        if missing:
            raise ValueError(f"gang {gang}: no usage for assigned members {', '.join(missing)}")
        reservation = Reservation(
            gang=gang,
            assignments=FrozenMap(assignments),
            usage={uid: usage[uid] for uid in sorted(assignments)},
            expires_at=self._clock.monotonic() + self._ttl,
        )
        self._held[gang] = reservation
        return reservation

    def get(self, gang: str) -> Reservation | None:
        """The gang's unexpired reservation (an expired one is dropped)."""
        reservation = self._held.get(gang)
        if reservation is not None and reservation.expires_at <= self._clock.monotonic():
            del self._held[gang]
            return None
        return reservation

    def node_for(self, gang: str, uid: str) -> str | None:
        reservation = self.get(gang)
        return reservation.assignments.get(uid) if reservation else None

    def release(self, gang: str) -> None:
        """Drop a gang's reservation (bound in full, failed, or gone). Idempotent."""
        self._held.pop(gang, None)

    def release_member(self, gang: str, uid: str) -> None:
        """Drop one member from its gang's reservation (e.g. the pod is gone); the last one drops the gang."""
        reservation = self._held.get(gang)
        if reservation is None or uid not in reservation.assignments:
            return
        rest = {u: n for u, n in reservation.assignments.items() if u != uid}
        if not rest:
            del self._held[gang]
            return
        self._held[gang] = Reservation(
            gang=gang,
            assignments=FrozenMap(rest),
            usage={u: reservation.usage[u] for u in rest},
            expires_at=reservation.expires_at,
        )

    def expire(self) -> tuple[str, ...]:
        """Drop every reservation past its TTL; returns their gang keys, sorted."""
        now = self._clock.monotonic()
        gone = sorted(g for g, r in self._held.items() if r.expires_at <= now)
        for gang in gone:
            del self._held[gang]
        return tuple(gone)

    def held(self, *, exclude: str | None = None, is_bound: Callable[[str], bool] | None = None) -> dict[str, Resources]:
        """Per node, Σ usage of reserved members not yet bound, leaving out gang ``exclude``."""
        self.expire()
        out: dict[str, Resources] = {}
        for gang, reservation in self._held.items():
            if gang == exclude:
                continue
            for uid, node in reservation.assignments.items():
                if is_bound is not None and is_bound(uid):
                    continue
                out[node] = out.get(node, Resources()) + reservation.usage[uid]
        return out

    def gangs(self) -> tuple[str, ...]:
        return tuple(sorted(self._held))

    def __iter__(self) -> Iterator[Reservation]:
        return iter([self._held[g] for g in sorted(self._held)])

    def __len__(self) -> int:
        return len(self._held)


def free_view(
    state: NodeState,
    reservations: Reservations,
    *,
    exclude: str | None = None,
    names: Iterable[str] | None = None,
) -> dict[str, Resources]:
    """Free resources per schedulable node (all of them, or those of ``names``), minus the reservations of
    gangs other than ``exclude`` whose members are not yet bound. Sorted by node name."""
    held = reservations.held(exclude=exclude, is_bound=state.is_bound)
    out: dict[str, Resources] = {}
    for name in sorted(state.schedulable_names() if names is None else set(names)):
        node = state.node(name)
        if node is None or not node.schedulable:
            continue
        room = state.free(name)
        taken = held.get(name)
        out[name] = (room - taken).clamp_low() if taken else room
    return out

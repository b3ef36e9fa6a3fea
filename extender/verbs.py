"""The extender's decisions -- filter, prioritize, preempt, and what a bind waits for -- over one SchedulerView.

Pure and synchronous: the HTTP adapter parses the request (extender.protocol), fills a SchedulerView from
its cache, calls one function here without awaiting in between (so the decision is atomic), and renders
the answer. The only state these functions change is the gang reservations they hold.

* A policy "no" is a FailedNodes entry with a reason that names the rule, the object and the numbers, so
  kube-scheduler can still try preemption; ``Error`` is kept for "cannot decide" (the cache is not synced).
* Nodes on which preemption cannot help (a gang below quorum, a member steered to its reserved node) are
  also listed as unresolvable (``FailedAndUnresolvableNodes``, read by kube-scheduler 1.21+).
* Those unresolvable answers are *summarised*: a few example nodes (``FAILED_EXAMPLES``, sorted by name)
  carry one reason that also counts every node refused for it; the other input nodes are in no map.
  kube-scheduler drops a node absent from ``NodeNames`` and both maps from the feasible list without a
  status (``findNodesThatPassExtenders``, 1.20 ``pkg/scheduler/core/generic_scheduler.go`` through
  1.3x ``schedule_one.go``); since 1.31 ``NodeToStatus`` reads an absent node as
  UnschedulableAndUnresolvable, exactly what the listed ones say, and before that its nil status only
  lets preemption try the node, where ``preempt`` answers nothing for these pods. Its FitError message
  counts identical reasons (``0/5000 nodes are available: 8 gang ...``), so the count inside the reason
  is what tells the user how many nodes were refused. A gang member's answer at 5,000 nodes is then a
  few KB instead of 1.1 MB, read by kube-scheduler once per member. Refusals that preemption may help
  (quota, a gang that does not fit, per-node fit) still list every node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from common.quantity import format_quantity
from common.rayjob import PodInfo
from common.resources import Resources
from extender.gang import (
    GangPlan,
    Member,
    PlanFailure,
    Reservations,
    free_view,
    gang_key,
    plan_gang,
)
from extender.nodes import NodeState, pod_usage
from extender.protocol import (
    MAX_EXTENDER_PRIORITY,
    BindArgs,
    FilterArgs,
    FilterResult,
    HostScore,
    PreemptArgs,
    PreemptResult,
    Victims,
)

__all__ = [
    "Arrival",
    "GangStatus",
    "QuotaDecision",
    "SchedulerView",
    "bind_arrival",
    "filter_nodes",
    "gang_status",
    "preempt",
    "prioritize",
]

NOT_SYNCED = "the extender's cache is not synced yet; retry"
FAILED_EXAMPLES = 8  # nodes listed for a summarised (unresolvable) refusal


class QuotaDecision(Protocol):
    """What ``quota_check`` answers (common.ledger.Decision fits): truthy when admitted, else a reason."""

    def __bool__(self) -> bool: ...

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerView:
    """One snapshot of what the extender knows, filled by the adapter from its cache.

    * ``gang_members(namespace, gang_name)``: the cached pods carrying that gang label in that namespace.
    * ``pod(uid)``: a cached pod by UID (victims sent as UIDs only are looked up here).
    * ``quota_check(pod)``: the pod-level quota decision; it must admit a pod an admitted job covers (its
      quota is already held by the job's reservation) and check the ledger for any other pod.
    * ``protected(victim, preemptor)``: why a victim may not be evicted for the preemptor (its quota is
      within its min, ...), or None.
    """

    nodes: NodeState
    reservations: Reservations
    gang_members: Callable[[str, str], Iterable[PodInfo]]
    pod: Callable[[str], PodInfo | None]
    quota_check: Callable[[PodInfo], QuotaDecision]
    protected: Callable[[PodInfo, PodInfo], str | None]
    synced: bool = True


# --- gangs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GangStatus:
    """A gang's members as the cache knows them (not terminal, not being deleted), sorted by UID."""

    key: str
    min_available: int
    members: tuple[PodInfo, ...]
    bound: tuple[PodInfo, ...]
    unbound: tuple[PodInfo, ...]

    @property
    def quorum(self) -> bool:
        return len(self.members) >= self.min_available

    def below_quorum(self) -> str:
        return f"gang {self.key}: {len(self.members)} of {self.min_available} members exist"


def gang_status(pod: PodInfo, view: SchedulerView) -> GangStatus | None:
    """The gang of ``pod`` (None for a pod without a gang label); the pod itself always counts.

    min-available is the largest any member declares (1 when none does)."""
    if pod.gang_name is None:
        return None
    found = {p.uid: p for p in view.gang_members(pod.namespace, pod.gang_name)}
    found.setdefault(pod.uid, pod)
    members = tuple(
        found[uid]
        for uid in sorted(found)
        if not found[uid].terminal and not found[uid].deleting and found[uid].gang_name == pod.gang_name
    )
    declared = [p.min_available for p in (*members, pod) if p.min_available is not None]
    bound = tuple(p for p in members if p.node_name or view.nodes.is_bound(p.uid))
    bound_uids = {p.uid for p in bound}
    return GangStatus(
        key=gang_key(pod.namespace, pod.gang_name),
        min_available=max(declared, default=1),
        members=members,
        bound=bound,
        unbound=tuple(p for p in members if p.uid not in bound_uids),
    )


def _kept(
    status: GangStatus, view: SchedulerView, free: dict[str, Resources]
) -> dict[str, str]:
    """The gang's reserved assignments still valid (member unbound, node schedulable, all fit); their
    usage is taken out of ``free``."""
    reservation = view.reservations.get(status.key)
    if reservation is None:
        return {}
    unbound = {p.uid: p for p in status.unbound}
    by_node: dict[str, list[str]] = {}
    for uid, node in reservation.assignments.items():
        if uid in unbound:
            by_node.setdefault(node, []).append(uid)
    kept: dict[str, str] = {}
    for node, uids in sorted(by_node.items()):
        if node not in free:
            continue
        need = Resources()
        for uid in uids:
            need += pod_usage(unbound[uid])
        if need.le(free[node]):
            free[node] = free[node] - need
            kept.update(dict.fromkeys(uids, node))
    return kept


def _plan(status: GangStatus, view: SchedulerView) -> GangPlan | PlanFailure:
    """Keep the gang's valid reservations and plan the rest on the full node cache; on failure try once
    from scratch; reserve the result (or release the old hold when nothing fits)."""
    state, reservations = view.nodes, view.reservations
    base = free_view(state, reservations, exclude=status.key)
    free = dict(base)
    kept = _kept(status, view, free)
    todo = [Member(p.uid, p.request) for p in status.unbound if p.uid not in kept]
    plan = plan_gang(status.key, todo, free, placed=len(status.bound) + len(kept))
    if not plan and kept:
        kept = {}
        todo = [Member(p.uid, p.request) for p in status.unbound]
        plan = plan_gang(status.key, todo, base, placed=len(status.bound))
    if not isinstance(plan, GangPlan):
        reservations.release(status.key)
        return plan
    assignments = {**kept, **plan.assignments}
    usage = {p.uid: pod_usage(p) for p in status.unbound}
    held = reservations.reserve(status.key, assignments, usage)
    return GangPlan(gang=status.key, assignments=held.assignments)


def _reserved_node(pod: PodInfo, status: GangStatus, view: SchedulerView) -> str | None:
    """The member's reserved node while it is still good: schedulable, and the gang's unbound members
    reserved there still fit beside everything bound and every other gang's reservation."""
    reservation = view.reservations.get(status.key)
    node = reservation.assignments.get(pod.uid) if reservation else None
    if reservation is None or node is None:
        return None
    room = free_view(view.nodes, view.reservations, exclude=status.key, names=(node,)).get(node)
    if room is None:
        return None
    unbound = {p.uid for p in status.unbound}
    need = Resources()
    for uid, where in reservation.assignments.items():
        if where == node and uid in unbound:
            need += reservation.usage[uid]
    return node if need.le(room) else None


# --- filter ------------------------------------------------------------------------------------


def _fail_all(args: FilterArgs, reason: str, *, unresolvable: bool) -> FilterResult:
    if unresolvable:
        return _summarised(args.node_names, reason)
    return FilterResult(failed=dict.fromkeys(args.node_names, reason))


def _summarised(names: Iterable[str], reason: str, passed: tuple[str, ...] = ()) -> FilterResult:
    """Refuse ``names`` as unresolvable by listing the first FAILED_EXAMPLES of them (by name), each with
    ``reason`` and the count of all of them; kube-scheduler drops the unlisted ones without a status."""
    refused = sorted(names)
    if not refused:
        return FilterResult(passed=passed)
    shown = refused[:FAILED_EXAMPLES]
    if len(refused) > len(shown):
        reason = f"{reason} ({len(refused)} nodes refused for this reason, {len(shown)} listed)"
    failed = dict.fromkeys(shown, reason)
    return FilterResult(passed=passed, failed=failed, unresolvable=frozenset(failed))


def _shortfall(usage: Resources, room: Resources, reserved: Resources) -> str:
    """``Insufficient cpu (requested 4, free 2)`` for every short resource; "" when it fits."""
    parts = []
    for resource in sorted(usage):
        need, have = usage[resource], room.get(resource)
        if need > 0 and need > have:
            f = format_quantity
            held = reserved.get(resource)
            extra = f"; {f(resource, held)} reserved for gangs" if held > 0 else ""
            parts.append(f"Insufficient {resource} (requested {f(resource, need)}, free {f(resource, have)}{extra})")
    return ", ".join(parts)


def filter_nodes(args: FilterArgs, view: SchedulerView) -> FilterResult:
    """The filter verb: quota for the pod, then gang feasibility (whole group, full cache) or per-node fit."""
    if not view.synced:
        return FilterResult(error=NOT_SYNCED)
    pod = args.pod
    decision = view.quota_check(pod)
    if not decision:
        return _fail_all(args, f"pod {pod.key}: quota: {decision.reason}", unresolvable=False)
    status = gang_status(pod, view)
    if status is not None:
        return _filter_gang(args, status, view)
    state = view.nodes
    held = view.reservations.held(is_bound=state.is_bound)
    usage = pod_usage(pod)
    wanted = [(resource, need) for resource, need in usage.items() if need > 0]
    passed: list[str] = []
    failed: dict[str, str] = {}
    for name in args.node_names:
        if state.node(name) is None:
            failed[name] = f"node {name} is not in the extender's node cache"
            continue
        free = state.free(name)  # cached per node until its pods change
        reserved = held.get(name)
        if reserved is None:
            fits = all(need <= free.get(resource) for resource, need in wanted)
        else:
            fits = all(need <= free.get(resource) - reserved.get(resource) for resource, need in wanted)
        if fits:  # the common case costs a few dict lookups; only a refusal builds its message
            passed.append(name)
            continue
        room = (free - reserved).clamp_low() if reserved is not None else free
        failed[name] = _shortfall(usage, room, reserved if reserved is not None else Resources())
    return FilterResult(passed=tuple(passed), failed=failed)


def _filter_gang(args: FilterArgs, status: GangStatus, view: SchedulerView) -> FilterResult:
    if not status.quorum:
        return _fail_all(args, status.below_quorum(), unresolvable=True)
    pod = args.pod
    node = _reserved_node(pod, status, view)
    if node is None:
        plan = _plan(status, view)
        if not isinstance(plan, GangPlan):
            return _fail_all(args, plan.reason, unresolvable=False)
        planned = plan.assignments.get(pod.uid)
        if planned is None:  # the cache already has this member bound
            return _fail_all(args, f"gang {status.key}: member {pod.key} is already bound", unresolvable=True)
        node = planned
    steer = f"gang {status.key}: reserved node {node} for this gang member"
    passed = (node,) if node in args.node_names else ()
    return _summarised((n for n in args.node_names if n != node), steer, passed)


# --- prioritize --------------------------------------------------------------------------------


def prioritize(args: FilterArgs, view: SchedulerView) -> list[HostScore]:
    """A gang member's reserved node scores 10 and the rest 0; any other pod packs (fuller cpu scores higher)."""
    pod = args.pod
    status = gang_status(pod, view)
    reserved = _reserved_node(pod, status, view) if status is not None else None
    if reserved is not None:
        return [HostScore(n, MAX_EXTENDER_PRIORITY if n == reserved else 0) for n in sorted(args.node_names)]
    state = view.nodes
    held = view.reservations.held(is_bound=state.is_bound)
    want = pod.request.get("cpu")
    scores: list[HostScore] = []
    for name in sorted(args.node_names):
        node = state.node(name)
        capacity = node.allocatable.get("cpu") if node else 0
        if capacity <= 0:
            scores.append(HostScore(name, 0))
            continue
        taken = state.used(name).get("cpu") + held.get(name, Resources()).get("cpu") + want
        scores.append(HostScore(name, max(0, min(MAX_EXTENDER_PRIORITY, taken * MAX_EXTENDER_PRIORITY // capacity))))
    return scores


# --- preempt -----------------------------------------------------------------------------------


def preempt(args: PreemptArgs, view: SchedulerView) -> PreemptResult:
    """Keep, per node, only the victims we may evict, and only nodes where the preemptor then fits.

    A victim is kept out when ``protected`` names a reason, or when it belongs to a gang whose bound
    members are not all victims on that same node: kube-scheduler evicts the victims of one chosen node,
    so only a gang wholly on that node can go as a whole. A node left with no victims (when it had some),
    a node we do not know, or a victim we cannot see drops the node. A gang preemptor below quorum, or
    already holding a reserved node, needs no eviction: the answer is empty.
    """
    pod = args.pod
    status = gang_status(pod, view)
    if status is not None and (not status.quorum or _reserved_node(pod, status, view) is not None):
        return PreemptResult(victims={})
    state = view.nodes
    held = view.reservations.held(exclude=status.key if status else None, is_bound=state.is_bound)
    usage = pod_usage(pod)
    out: dict[str, Victims] = {}
    for name, offered in args.victims.items():
        node = state.node(name)
        if node is None:
            continue
        known = {p.uid: p for p in offered.pods or ()}
        victims: list[PodInfo] = []
        for uid in offered.uids:
            victim = view.pod(uid) or known.get(uid)
            if victim is None:
                break
            victims.append(victim)
        else:
            keep = _evictable(victims, pod, view)
            if offered.uids and not keep:
                continue
            room = node.allocatable - state.used(name) - held.get(name, Resources())
            for victim in keep:
                if state.node_of(victim.uid) == name:
                    room += state.usage_of(victim.uid) or Resources()
            if usage.le(room):
                uids = tuple(sorted(v.uid for v in keep))
                out[name] = Victims(uids=uids, num_pdb_violations=offered.num_pdb_violations)
    return PreemptResult(victims=out)


def _evictable(victims: list[PodInfo], preemptor: PodInfo, view: SchedulerView) -> list[PodInfo]:
    """The victims of one node we agree to: not protected, and no gang split (all its bound members here)."""
    allowed = [v for v in victims if view.protected(v, preemptor) is None]
    chosen = {v.uid for v in allowed}
    whole: dict[str, bool] = {}
    for victim in allowed:
        if victim.gang_name is None:
            continue
        key = gang_key(victim.namespace, victim.gang_name)
        if key not in whole:
            members = view.gang_members(victim.namespace, victim.gang_name)
            bound = [m.uid for m in members if not m.terminal and (m.node_name or view.nodes.is_bound(m.uid))]
            whole[key] = all(uid in chosen for uid in bound)
    return [v for v in allowed if v.gang_name is None or whole[gang_key(v.namespace, v.gang_name)]]


# --- bind --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Arrival:
    """What the bind barrier needs for one bind request."""

    pod_uid: str
    gang: str | None
    node: str
    expected_members: int


def bind_arrival(args: BindArgs, view: SchedulerView) -> Arrival | str:
    """The barrier's input for a bind request, or a reason the bind must fail now (pod not cached yet).

    A gang waits for its unbound members -- at least min-available minus those already bound -- so a
    recreated member of a running gang binds alone."""
    pod = view.pod(args.pod_uid)
    if pod is None:
        return f"pod {args.key} ({args.pod_uid}) is not in the extender's cache yet; retry"
    status = gang_status(pod, view)
    if status is None:
        return Arrival(pod_uid=pod.uid, gang=None, node=args.node, expected_members=1)
    expected = max(len(status.unbound), status.min_available - len(status.bound), 1)
    return Arrival(pod_uid=pod.uid, gang=status.key, node=args.node, expected_members=expected)

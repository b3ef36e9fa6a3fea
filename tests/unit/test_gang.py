"""Nodes, the bound-pod accounting, gang planning over the whole cache, and reservations on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.clock import FakeClock
from common.rayjob import PodInfo
from common.resources import Resources
from common.wire import FrozenMap, ShapeError
from extender.gang import GangPlan, Member, PlanFailure, Reservations, free_view, plan_gang
from extender.nodes import NodeInfo, NodeState
from tests.unit.builders import make_pod

GI = 2**30


def node_obj(
    name: str,
    cpu: str = "8",
    memory: str = "32Gi",
    pods: str = "110",
    *,
    unschedulable: bool = False,
    ready: str | None = "True",
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if unschedulable:
        spec["unschedulable"] = True
    if taints:
        spec["taints"] = taints
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}, "conditions": conditions},
    }


def cluster(**cpus: int) -> NodeState:
    """A NodeState of ready nodes: cluster(n1=8, n2=4) gives n1 8 cpu, n2 4 cpu, 64Gi and 110 pods each."""
    state = NodeState()
    for name, cpu in cpus.items():
        state.set_node(NodeInfo.make(name, {"cpu": cpu * 1000, "memory": 64 * GI, "pods": 110}))
    return state


def pod(name: str, cpu: str, node: str | None = None, *, phase: str = "Running", ns: str = "video") -> PodInfo:
    b = make_pod(name, ns, cpu=cpu).phase(phase)
    if node:
        b.node(node)
    return PodInfo.from_pod(b.obj())


def members(n: int, cpu: int, prefix: str = "w") -> list[Member]:
    return [Member(f"{prefix}{i:03d}", Resources({"cpu": cpu * 1000})) for i in range(n)]


# --- NodeInfo ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        pytest.param(node_obj("n1"), "", id="a ready untainted node is schedulable"),
        pytest.param(node_obj("n1", unschedulable=True), "node n1 is cordoned (spec.unschedulable)", id="a cordoned node is not schedulable"),
        pytest.param(node_obj("n1", ready="False"), "node n1 is not Ready (Ready condition False)", id="a not-ready node is not schedulable"),
        pytest.param(node_obj("n1", ready=None), "node n1 is not Ready (Ready condition missing)", id="a node without a Ready condition is not schedulable"),
        pytest.param(
            node_obj("n1", taints=[{"key": "gpu", "value": "a100", "effect": "NoSchedule"}]),
            "node n1 has taint gpu=a100:NoSchedule",
            id="a NoSchedule taint keeps the node out of planning",
        ),
        pytest.param(
            node_obj("n1", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
            "node n1 has taint node.kubernetes.io/unreachable:NoExecute",
            id="a NoExecute taint keeps the node out of planning",
        ),
        pytest.param(
            node_obj("n1", taints=[{"key": "spot", "effect": "PreferNoSchedule"}]), "", id="a PreferNoSchedule taint does not"
        ),
    ],
)
def test_node_schedulability(obj: dict[str, Any], reason: str) -> None:
    info = NodeInfo.from_node(obj)
    assert info.unschedulable_reason == reason
    assert info.schedulable is (reason == "")


def test_node_allocatable_is_parsed_in_canonical_units_with_pods() -> None:
    info = NodeInfo.from_node(node_obj("n1", cpu="7500m", memory="30Gi", pods="110"))
    assert info.allocatable == {"cpu": 7500, "memory": 30 * GI, "pods": 110}
    assert info.labels == {"kubernetes.io/hostname": "n1"}


def test_a_malformed_node_lists_every_problem() -> None:
    obj = node_obj("n1", cpu="lots")
    obj["metadata"].pop("name")
    obj["spec"]["taints"] = "x"
    with pytest.raises(ShapeError) as caught:
        NodeInfo.from_node(obj)
    assert [e.split(":")[0] for e in caught.value.errors] == ["metadata.name", "status.allocatable.cpu", "spec.taints"]


# --- NodeState -----------------------------------------------------------------------------------


def test_free_is_allocatable_minus_bound_pods_with_one_pod_slot_each() -> None:
    state = cluster(n1=8)
    state.add_pod(pod("a", "3", "n1"))
    state.add_pod(pod("b", "1", "n1"))
    assert state.free("n1") == {"cpu": 4000, "memory": 64 * GI, "pods": 108}
    assert state.pods_on("n1") == ("uid-video-a", "uid-video-b")


@pytest.mark.parametrize(
    ("events", "cpu_used"),
    [
        pytest.param(["a@n1", "a@n1"], 3000, id="a replayed add never counts twice"),
        pytest.param(["a", "a@n1"], 3000, id="a pod moving from unbound to bound starts counting"),
        pytest.param(["a@n1", "a@n1:Succeeded"], 0, id="a terminal pod stops counting"),
        pytest.param(["a@n1", "-a", "-a"], 0, id="a replayed removal is harmless"),
        pytest.param(["a@n1:deleting"], 3000, id="a deleting pod counts until it is gone"),
        pytest.param(["a@n1", "a@n2"], 0, id="a pod that moved counts on its new node only"),
    ],
)
def test_pod_accounting_is_idempotent_by_uid(events: list[str], cpu_used: int) -> None:
    state = cluster(n1=8, n2=8)
    for event in events:
        if event.startswith("-"):
            state.remove_pod("uid-video-" + event[1:])
            continue
        name, _, rest = event.partition("@")
        node, _, state_word = rest.partition(":")
        b = make_pod(name, "video", cpu="3")
        if node:
            b.node(node)
        if state_word == "deleting":
            b.deleting()
        elif state_word:
            b.phase(state_word)
        state.add_pod(PodInfo.from_pod(b.obj()))
    assert state.used("n1").get("cpu") == cpu_used


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from([None, "n1", "n2"]), st.booleans()),
        max_size=12,
    )
)
def test_node_state_equals_a_fresh_count_of_the_last_event_per_pod(
    events: list[tuple[str, str | None, bool]],
) -> None:
    """However events repeat or reorder, usage equals a recount of each pod's last known state."""
    state = cluster(n1=8, n2=8)
    last: dict[str, tuple[str | None, bool]] = {}
    for name, node, removed in events:
        if removed:
            state.remove_pod(f"uid-video-{name}")
            last.pop(name, None)
        else:
            state.add_pod(pod(name, "1", node))
            last[name] = (node, False)
    for node in ("n1", "n2"):
        expected = sum(1 for n, _ in last.values() if n == node)
        assert state.used(node) == Resources({"cpu": 1000 * expected, "pods": expected})


def test_capacity_sums_allocatable_of_schedulable_nodes_only() -> None:
    state = cluster(n1=8, n2=4)
    state.set_node(NodeInfo.make("n3", {"cpu": 100_000}, unschedulable_reason="node n3 is cordoned"))
    assert state.capacity() == {"cpu": 12_000, "memory": 128 * GI, "pods": 220}


# --- planning ------------------------------------------------------------------------------------


def test_plan_places_every_member_tightest_nodes_first_deterministically() -> None:
    free = {n: Resources({"cpu": c * 1000, "pods": 110}) for n, c in {"n1": 8, "n2": 4, "n3": 4}.items()}
    plan = plan_gang("video/c1", members(4, 2), free)
    assert isinstance(plan, GangPlan)
    assert dict(plan.assignments) == {"w000": "n2", "w001": "n2", "w002": "n3", "w003": "n3"}
    assert plan_gang("video/c1", members(4, 2), free) == plan


def test_plan_places_the_largest_shape_first() -> None:
    """The 5-cpu head goes first (to n1, the only node it fits); the 3-cpu workers then fill the rest
    (workers first would have put w000 on the tighter n2)."""
    free = {"n1": Resources({"cpu": 8000, "pods": 9}), "n2": Resources({"cpu": 4000, "pods": 9})}
    todo = [*members(2, 3), Member("head", Resources({"cpu": 5000}))]
    plan = plan_gang("video/c1", todo, free)
    assert isinstance(plan, GangPlan)
    assert dict(plan.assignments) == {"head": "n1", "w000": "n1", "w001": "n2"}


def test_fragmented_free_cpu_gives_no_plan_though_the_total_suffices() -> None:
    free = {f"n{i}": Resources({"cpu": 3000, "pods": 110}) for i in range(1, 5)}
    plan = plan_gang("video/c1", members(3, 4), free, placed=1)
    assert isinstance(plan, PlanFailure)
    assert plan.unplaced == 3
    assert plan.reason == (
        "gang video/c1: 4 members (1 placed), 3 to place need cpu 12 in total; "
        "free on 4 schedulable nodes: cpu 12 (largest 3); 3 members cannot be placed"
    )


def test_a_plan_failure_names_the_pod_slots_when_they_are_short() -> None:
    free = {"n1": Resources({"cpu": 8000, "pods": 1})}
    plan = plan_gang("video/c1", members(2, 1), free)
    assert isinstance(plan, PlanFailure)
    assert plan.reason.endswith("need cpu 2, pods 2 in total; free on 1 schedulable nodes: cpu 8 (largest 8), pods 1 (largest 1); 1 members cannot be placed")


def test_a_resource_no_node_has_cannot_be_placed() -> None:
    free = {"n1": Resources({"cpu": 8000, "pods": 110})}
    plan = plan_gang("video/c1", [Member("g", Resources({"nvidia.com/gpu": 1}))], free)
    assert isinstance(plan, PlanFailure)
    assert "nvidia.com/gpu 0 (largest 0)" in plan.reason


def test_nothing_to_place_is_an_empty_plan() -> None:
    assert plan_gang("video/c1", [], {}) == GangPlan(gang="video/c1", assignments=FrozenMap())


@settings(max_examples=150, deadline=None)
@given(
    free_cpu=st.lists(st.integers(0, 16), min_size=1, max_size=8),
    shapes=st.lists(st.tuples(st.integers(1, 8), st.integers(1, 6)), min_size=1, max_size=3),
    pod_slots=st.integers(1, 6),
)
def test_any_plan_places_every_member_and_never_overcommits_a_node(
    free_cpu: list[int], shapes: list[tuple[int, int]], pod_slots: int
) -> None:
    free = {f"n{i}": Resources({"cpu": c * 1000, "pods": pod_slots}) for i, c in enumerate(free_cpu)}
    todo = [m for s, (cpu, count) in enumerate(shapes) for m in members(count, cpu, prefix=f"s{s}-")]
    plan = plan_gang("video/c1", todo, free)
    if isinstance(plan, PlanFailure):
        assert 0 < plan.unplaced <= len(todo)
        return
    assert set(plan.assignments) == {m.uid for m in todo}
    requests = {m.uid: m.request for m in todo}
    for node, room in free.items():
        mine = [uid for uid, n in plan.assignments.items() if n == node]
        used = Resources({"pods": len(mine)})
        for uid in mine:
            used += requests[uid]
        assert used.le(room), f"{node} overcommitted: {used} > {room}"


# --- reservations --------------------------------------------------------------------------------


def test_a_reservation_lapses_after_its_ttl_on_the_injected_clock() -> None:
    clock = FakeClock()
    held = Reservations(ttl=30, clock=clock)
    held.reserve("video/c1", {"a": "n1"}, {"a": Resources({"cpu": 1000})})
    clock.advance(29)
    assert held.node_for("video/c1", "a") == "n1"
    clock.advance(1)
    assert held.get("video/c1") is None
    assert len(held) == 0


def test_expire_drops_only_lapsed_reservations() -> None:
    clock = FakeClock()
    held = Reservations(ttl=30, clock=clock)
    held.reserve("video/old", {"a": "n1"}, {"a": Resources({"cpu": 1000})})
    clock.advance(20)
    held.reserve("video/new", {"b": "n1"}, {"b": Resources({"cpu": 1000})})
    clock.advance(10)
    assert held.expire() == ("video/old",)
    assert held.gangs() == ("video/new",)


def test_held_leaves_out_the_excluded_gang_and_bound_members() -> None:
    held = Reservations(ttl=30, clock=FakeClock())
    cpu = Resources({"cpu": 1000, "pods": 1})
    held.reserve("video/a", {"a1": "n1", "a2": "n1"}, {"a1": cpu, "a2": cpu})
    held.reserve("video/b", {"b1": "n1", "b2": "n2"}, {"b1": cpu, "b2": cpu})
    assert held.held() == {"n1": cpu.scaled(3), "n2": cpu}
    assert held.held(exclude="video/a", is_bound=lambda uid: uid == "b2") == {"n1": cpu}


def test_releasing_members_one_by_one_drops_the_gang_with_the_last() -> None:
    held = Reservations(ttl=30, clock=FakeClock())
    cpu = Resources({"cpu": 1000})
    held.reserve("video/a", {"a1": "n1", "a2": "n2"}, {"a1": cpu, "a2": cpu})
    held.release_member("video/a", "a1")
    assert dict(held.get("video/a").assignments) == {"a2": "n2"}  # type: ignore[union-attr]
    held.release_member("video/a", "a2")
    held.release_member("video/a", "a2")
    assert held.get("video/a") is None


def test_a_reservation_needs_the_usage_of_every_member() -> None:
    with pytest.raises(ValueError, match="gang video/a: no usage for assigned members a2"):
        Reservations(ttl=30, clock=FakeClock()).reserve("video/a", {"a1": "n1", "a2": "n1"}, {"a1": Resources()})


def test_free_view_subtracts_other_gangs_reservations_and_skips_unschedulable_nodes() -> None:
    state = cluster(n1=8, n2=8)
    state.set_node(NodeInfo.make("n3", {"cpu": 8000, "pods": 110}, unschedulable_reason="node n3 is cordoned"))
    state.add_pod(pod("running", "2", "n1"))
    held = Reservations(ttl=30, clock=FakeClock())
    held.reserve("video/other", {"o1": "n2"}, {"o1": Resources({"cpu": 5000, "pods": 1})})
    held.reserve("video/mine", {"m1": "n1"}, {"m1": Resources({"cpu": 5000, "pods": 1})})
    view = free_view(state, held, exclude="video/mine")
    assert list(view) == ["n1", "n2"]
    assert view["n1"].get("cpu") == 6000
    assert view["n2"].get("cpu") == 3000

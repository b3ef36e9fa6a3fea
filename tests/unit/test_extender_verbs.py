"""filter / prioritize / preempt / bind decisions over a SchedulerView: quota, gangs on the full cache, reservations."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from common.clock import FakeClock
from common.ledger import Decision
from common.rayjob import PodInfo
from common.resources import Resources
from extender.gang import Reservations
from extender.nodes import NodeInfo, NodeState
from extender.protocol import (
    BindArgs,
    FilterArgs,
    FilterResult,
    HostScore,
    PreemptArgs,
    Victims,
    render_filter_result,
)
from extender.verbs import (
    FAILED_EXAMPLES,
    Arrival,
    SchedulerView,
    bind_arrival,
    filter_nodes,
    preempt,
    prioritize,
)
from tests.unit.builders import make_pod

GI = 2**30
ADMITTED = Decision(True, "")


@dataclass
class World:
    """Nodes, cached pods, reservations and the lead's policy callables, as the adapter would fill them."""

    cpus: dict[str, int]
    clock: FakeClock = field(default_factory=FakeClock)
    pods: dict[str, PodInfo] = field(default_factory=dict)
    refusal: str = ""
    protected_uids: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = NodeState()
        for name, cpu in self.cpus.items():
            self.state.set_node(NodeInfo.make(name, {"cpu": cpu * 1000, "memory": 64 * GI, "pods": 110}))
        self.reservations = Reservations(ttl=30, clock=self.clock)

    def add(self, *pods: PodInfo) -> World:
        for p in pods:
            self.pods[p.uid] = p
            self.state.add_pod(p)
        return self

    def view(self, *, synced: bool = True) -> SchedulerView:
        return SchedulerView(
            nodes=self.state,
            reservations=self.reservations,
            gang_members=lambda ns, name: [p for p in self.pods.values() if p.namespace == ns and p.gang_name == name],
            pod=self.pods.get,
            quota_check=lambda pod: Decision(False, self.refusal) if self.refusal else ADMITTED,
            protected=lambda victim, preemptor: self.protected_uids.get(victim.uid),
            synced=synced,
        )

    def filter(self, pod: PodInfo, *nodes: str) -> FilterResult:
        return filter_nodes(FilterArgs(pod=pod, node_names=nodes), self.view())


def pod(name: str, cpu: str, node: str | None = None, *, ns: str = "video", priority: int = 0) -> PodInfo:
    b = make_pod(name, ns, cpu=cpu).priority(priority)
    if node:
        b.node(node).phase("Running")
    return PodInfo.from_pod(b.obj())


def member(gang: str, i: int, cpu: str = "4", *, size: int = 3, node: str | None = None, ns: str = "video") -> PodInfo:
    b = make_pod(f"{gang}-{i}", ns, cpu=cpu).gang(gang, size).ray(gang)
    if node:
        b.node(node).phase("Running")
    return PodInfo.from_pod(b.obj())


def gang(name: str, size: int, cpu: str = "4", *, ns: str = "video") -> list[PodInfo]:
    return [member(name, i, cpu, size=size, ns=ns) for i in range(size)]


# --- filter: quota and per-node fit ------------------------------------------------------------------


def test_a_quota_refusal_fails_every_node_in_failed_nodes_never_error() -> None:
    world = World({"n1": 8, "n2": 8}, refusal="root/video: cpu used 12 + request 4 > max 14")
    args = FilterArgs(pod=pod("p", "4"), node_names=("n2", "n1"))
    wire = render_filter_result(filter_nodes(args, world.view()), args)
    reason = "pod video/p: quota: root/video: cpu used 12 + request 4 > max 14"
    assert wire == {
        "NodeNames": [],
        "FailedNodes": {"n1": reason, "n2": reason},
        "FailedAndUnresolvableNodes": {},
        "Error": "",
    }


def test_an_unsynced_cache_cannot_decide_and_answers_error() -> None:
    world = World({"n1": 8})
    result = filter_nodes(FilterArgs(pod=pod("p", "1"), node_names=("n1",)), world.view(synced=False))
    assert result == FilterResult(error="the extender's cache is not synced yet; retry")


@pytest.mark.parametrize(
    ("running", "reserved", "node", "reason"),
    [
        pytest.param("2", None, "n1", "", id="a pod that fits on the node passes"),
        pytest.param("6", None, "n1", "Insufficient cpu (requested 4, free 2)", id="a pod larger than the free cpu fails with the numbers"),
        pytest.param("2", "3", "n1", "Insufficient cpu (requested 4, free 3; 3 reserved for gangs)",
                     id="another gang's reservation is not free for a plain pod"),
        pytest.param(None, None, "n9", "node n9 is not in the extender's node cache", id="an unknown node fails"),
    ],
)
def test_a_plain_pod_passes_where_it_fits(running: str | None, reserved: str | None, node: str, reason: str) -> None:
    world = World({"n1": 8})
    if running:
        world.add(pod("running", running, "n1"))
    if reserved:
        world.reservations.reserve("video/g", {"g-0": "n1"}, {"g-0": Resources({"cpu": int(reserved) * 1000, "pods": 1})})
    result = world.filter(pod("p", "4"), node)
    assert result.passed == (() if reason else (node,))
    assert dict(result.failed) == ({node: reason} if reason else {})
    assert result.error == ""


# --- filter: gangs -----------------------------------------------------------------------------------


def test_a_gang_below_quorum_is_refused_on_every_node_as_unresolvable() -> None:
    world = World({"n1": 16, "n2": 16}).add(*gang("c1", 3)[:2])
    result = world.filter(world.pods["uid-video-c1-0"], "n1", "n2")
    assert dict(result.failed) == {"n1": "gang video/c1: 2 of 3 members exist", "n2": "gang video/c1: 2 of 3 members exist"}
    assert result.unresolvable == {"n1", "n2"}
    assert result.passed == ()
    assert len(world.reservations) == 0


def test_a_gang_that_fits_only_across_the_full_cache_is_planned_there_and_steered() -> None:
    """The scheduler samples two nodes; the group needs three. The plan uses the whole cache, the member
    reserved on n1 is steered there (the sample fails as unresolvable), the one reserved on n3 passes."""
    world = World({"n1": 4, "n2": 4, "n3": 4, "n4": 4}).add(*gang("c1", 3))
    first = world.filter(world.pods["uid-video-c1-0"], "n3", "n4")
    assert first.passed == ()
    assert dict(first.failed) == {
        "n3": "gang video/c1: reserved node n1 for this gang member",
        "n4": "gang video/c1: reserved node n1 for this gang member",
    }
    assert first.unresolvable == {"n3", "n4"}
    third = world.filter(world.pods["uid-video-c1-2"], "n3", "n4")
    assert third.passed == ("n3",)
    assert dict(third.failed) == {"n4": "gang video/c1: reserved node n3 for this gang member"}
    held = world.reservations.get("video/c1")
    assert held is not None
    assert dict(held.assignments) == {"uid-video-c1-0": "n1", "uid-video-c1-1": "n2", "uid-video-c1-2": "n3"}


def _wire_size(pod: PodInfo, world: World, names: tuple[str, ...]) -> tuple[dict[str, object], int]:
    args = FilterArgs(pod=pod, node_names=names)
    wire = render_filter_result(filter_nodes(args, world.view()), args)
    return dict(wire), len(json.dumps(wire, separators=(",", ":")).encode())


FIVE_THOUSAND = tuple(f"node-{i:04d}" for i in range(5000))


def test_a_steered_gang_member_answers_a_few_kb_at_5000_nodes_and_still_says_why() -> None:
    """Issue 13: listing 4,999 steered-away nodes twice made a member's answer 1.1 MB, which kube-scheduler
    reads once per member. A few examples in both maps, whose reason counts them all, say the same."""
    world = World(dict.fromkeys(FIVE_THOUSAND, 4)).add(*gang("c1", 31))
    first = world.pods["uid-video-c1-0"]
    wire, size = _wire_size(first, world, FIVE_THOUSAND)
    assert size <= 64 * 1024
    reserved = world.reservations.node_for("video/c1", first.uid)
    assert reserved is not None and wire["NodeNames"] == [reserved]
    steered = sorted(n for n in FIVE_THOUSAND if n != reserved)[:FAILED_EXAMPLES]
    reason = (
        f"gang video/c1: reserved node {reserved} for this gang member "
        f"(4999 nodes refused for this reason, {FAILED_EXAMPLES} listed)"
    )
    assert wire["FailedNodes"] == dict.fromkeys(steered, reason)
    assert wire["FailedAndUnresolvableNodes"] == wire["FailedNodes"], "1.20 reads only FailedNodes; 1.21+ both"
    assert reserved not in wire["FailedNodes"]


def test_a_gang_below_quorum_at_5000_nodes_is_summarised_with_its_count() -> None:
    world = World(dict.fromkeys(FIVE_THOUSAND, 4)).add(*gang("c1", 31)[:30])
    wire, size = _wire_size(world.pods["uid-video-c1-0"], world, FIVE_THOUSAND)
    assert size <= 64 * 1024
    reason = f"gang video/c1: 30 of 31 members exist (5000 nodes refused for this reason, {FAILED_EXAMPLES} listed)"
    assert wire["FailedNodes"] == dict.fromkeys(FIVE_THOUSAND[:FAILED_EXAMPLES], reason)
    assert wire["FailedAndUnresolvableNodes"] == wire["FailedNodes"]
    assert wire["NodeNames"] == []


def test_a_refusal_preemption_may_help_still_lists_every_node() -> None:
    """kube-scheduler 1.31+ reads a node absent from both maps as UnschedulableAndUnresolvable and would not
    try preemption there, so a quota refusal and a gang that does not fit keep every node in FailedNodes."""
    world = World(dict.fromkeys(FIVE_THOUSAND[:200], 2)).add(*gang("c1", 3))
    result = world.filter(world.pods["uid-video-c1-0"], *FIVE_THOUSAND[:200])
    assert set(result.failed) == set(FIVE_THOUSAND[:200])
    assert result.unresolvable == frozenset()


def test_fragmented_free_cpu_gives_no_plan_even_though_the_total_suffices() -> None:
    world = World({"n1": 3, "n2": 3, "n3": 3, "n4": 3}).add(*gang("c1", 3))
    result = world.filter(world.pods["uid-video-c1-0"], "n1", "n2")
    reason = (
        "gang video/c1: 3 members (0 placed), 3 to place need cpu 12 in total; "
        "free on 4 schedulable nodes: cpu 12 (largest 3); 3 members cannot be placed"
    )
    assert dict(result.failed) == {"n1": reason, "n2": reason}
    assert result.unresolvable == frozenset(), "preemption may still free room"
    assert world.reservations.get("video/c1") is None


def test_reservations_keep_two_gangs_from_double_booking() -> None:
    world = World({"n1": 8, "n2": 8}).add(*gang("a", 2), *gang("b", 2), *gang("c", 2))
    world.filter(world.pods["uid-video-a-0"], "n1", "n2")
    world.filter(world.pods["uid-video-b-0"], "n1", "n2")
    c = world.filter(world.pods["uid-video-c-0"], "n1", "n2")
    a, b = world.reservations.get("video/a"), world.reservations.get("video/b")
    assert a is not None and set(a.assignments.values()) == {"n1"}
    assert b is not None and set(b.assignments.values()) == {"n2"}
    assert c.passed == ()
    assert c.failed["n1"].startswith("gang video/c: 2 members (0 placed), 2 to place need cpu 8 in total; free on 2")
    assert c.failed["n1"].endswith("cpu 0 (largest 0); 2 members cannot be placed")


def test_replanning_keeps_the_assignments_that_still_fit() -> None:
    """A gang that grows by one member keeps its reserved members where they are and places the newcomer."""
    world = World({"n1": 8, "n2": 8}).add(*gang("c1", 2))
    world.filter(world.pods["uid-video-c1-0"], "n1", "n2")
    before = dict(world.reservations.get("video/c1").assignments)  # type: ignore[union-attr]
    world.add(member("c1", 2, size=3))
    result = world.filter(world.pods["uid-video-c1-2"], "n1", "n2")
    after = dict(world.reservations.get("video/c1").assignments)  # type: ignore[union-attr]
    assert {uid: after[uid] for uid in before} == before
    assert result.passed == (after["uid-video-c1-2"],) == ("n2",)


def test_an_expired_reservation_is_planned_again_and_bound_members_count_as_placed() -> None:
    world = World({"n1": 8, "n2": 8}).add(*gang("c1", 3))
    world.filter(world.pods["uid-video-c1-0"], "n1", "n2")
    world.add(member("c1", 0, node="n1"))
    world.clock.advance(30)
    assert world.reservations.get("video/c1") is None
    result = world.filter(world.pods["uid-video-c1-1"], "n1", "n2")
    held = world.reservations.get("video/c1")
    assert held is not None and set(held.assignments) == {"uid-video-c1-1", "uid-video-c1-2"}
    assert result.passed == (held.assignments["uid-video-c1-1"],)


def test_a_cordoned_reserved_node_is_planned_around() -> None:
    world = World({"n1": 8, "n2": 8}).add(*gang("c1", 2))
    world.filter(world.pods["uid-video-c1-0"], "n1", "n2")
    world.state.set_node(NodeInfo.make("n1", {"cpu": 8000, "pods": 110}, unschedulable_reason="node n1 is cordoned"))
    result = world.filter(world.pods["uid-video-c1-0"], "n1", "n2")
    assert result.passed == ("n2",)


# --- prioritize ----------------------------------------------------------------------------------------


def test_a_gang_member_prefers_its_reserved_node() -> None:
    world = World({"n1": 4, "n2": 4, "n3": 4}).add(*gang("c1", 2))
    world.filter(world.pods["uid-video-c1-1"], "n1", "n2", "n3")
    scores = prioritize(FilterArgs(pod=world.pods["uid-video-c1-1"], node_names=("n3", "n2", "n1")), world.view())
    assert scores == [HostScore("n1", 0), HostScore("n2", 10), HostScore("n3", 0)]


def test_a_plain_pod_packs_onto_the_fuller_node() -> None:
    world = World({"n1": 10, "n2": 10, "n3": 0}).add(pod("a", "6", "n1"), pod("b", "1", "n2"))
    scores = prioritize(FilterArgs(pod=pod("p", "2"), node_names=("n2", "n1", "n3", "n9")), world.view())
    assert scores == [HostScore("n1", 8), HostScore("n2", 3), HostScore("n3", 0), HostScore("n9", 0)]


# --- preempt -------------------------------------------------------------------------------------------


def offered(**by_node: list[str]) -> dict[str, Victims]:
    return {node: Victims(uids=tuple(f"uid-video-{v}" for v in names)) for node, names in by_node.items()}


def run_preempt(world: World, preemptor: PodInfo, victims: dict[str, Victims]) -> dict[str, tuple[str, ...]]:
    result = preempt(PreemptArgs(pod=preemptor, victims=victims), world.view())
    return {node: v.uids for node, v in result.victims.items()}


def test_preemption_keeps_unprotected_victims_where_the_preemptor_then_fits() -> None:
    world = World({"n1": 8, "n2": 8}).add(pod("a", "4", "n1"), pod("b", "4", "n1"), pod("c", "2", "n2"), pod("d", "4", "n2"))
    got = run_preempt(world, pod("p", "6", priority=10), offered(n1=["b", "a"], n2=["c"]))
    assert got == {"n1": ("uid-video-a", "uid-video-b")}, "n2 frees only 4 cpu with c gone: 6 does not fit"


def test_a_protected_victim_stays_and_a_node_left_without_victims_is_dropped() -> None:
    world = World({"n1": 8, "n2": 8}).add(pod("a", "8", "n1"), pod("b", "4", "n2"), pod("c", "4", "n2"))
    world.protected_uids["uid-video-a"] = "root/video within its min"
    world.protected_uids["uid-video-c"] = "root/video within its min"
    got = run_preempt(world, pod("p", "4"), offered(n1=["a"], n2=["b", "c"]))
    assert got == {"n2": ("uid-video-b",)}


def test_gang_members_are_kept_unless_the_whole_gang_is_a_victim_on_that_node() -> None:
    world = World({"n1": 8, "n2": 8}).add(
        member("split", 0, "3", size=2, node="n1"),
        member("split", 1, "2", size=2, node="n2"),
        member("whole", 0, "3", size=2, node="n2"),
        member("whole", 1, "3", size=2, node="n2"),
        pod("fill", "3", "n1"),
    )
    # n1: only fill may go (split-1 is on n2), freeing 2 + 3 < 6; n2: the whole gang goes, freeing 6.
    got = run_preempt(world, pod("p", "6"), offered(n1=["split-0", "fill"], n2=["whole-0", "whole-1", "split-1"]))
    assert got == {"n2": ("uid-video-whole-0", "uid-video-whole-1")}


def test_a_victim_the_cache_does_not_know_drops_its_node() -> None:
    world = World({"n1": 8}).add(pod("a", "8", "n1"))
    assert run_preempt(world, pod("p", "4"), offered(n1=["a", "ghost"])) == {}


def test_a_gang_preemptor_below_quorum_or_already_reserved_evicts_nothing() -> None:
    world = World({"n1": 8}).add(pod("a", "8", "n1"), *gang("c1", 3)[:2])
    assert run_preempt(world, world.pods["uid-video-c1-0"], offered(n1=["a"])) == {}
    world = World({"n1": 8, "n2": 8}).add(pod("a", "8", "n1"), *gang("c2", 2))
    world.filter(world.pods["uid-video-c2-0"], "n1")
    assert run_preempt(world, world.pods["uid-video-c2-0"], offered(n1=["a"])) == {}


# --- bind ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "uid", "expected"),
    [
        pytest.param("plain", "uid-video-p", Arrival(pod_uid="uid-video-p", gang=None, node="n1", expected_members=1),
                     id="a plain pod binds alone"),
        pytest.param("gang", "uid-video-c1-0", Arrival(pod_uid="uid-video-c1-0", gang="video/c1", node="n1", expected_members=3),
                     id="a new gang member waits for all its unbound members"),
        pytest.param("running", "uid-video-c1-2", Arrival(pod_uid="uid-video-c1-2", gang="video/c1", node="n1", expected_members=1),
                     id="a recreated member of a running gang binds alone"),
    ],
)
def test_bind_arrival(setup: str, uid: str, expected: Arrival) -> None:
    world = World({"n1": 16})
    if setup == "plain":
        world.add(pod("p", "1"))
    elif setup == "gang":
        world.add(*gang("c1", 3))
    else:
        world.add(member("c1", 0, node="n1"), member("c1", 1, node="n1"), member("c1", 2))
    p = world.pods[uid]
    args = BindArgs(pod_name=p.name, namespace=p.namespace, pod_uid=p.uid, node="n1")
    assert bind_arrival(args, world.view()) == expected


def test_bind_of_a_pod_the_cache_has_not_seen_is_refused_for_a_retry() -> None:
    args = BindArgs(pod_name="p", namespace="video", pod_uid="u9", node="n1")
    assert bind_arrival(args, World({"n1": 8}).view()) == "pod video/p (u9) is not in the extender's cache yet; retry"


def test_a_reserved_node_taken_by_someone_else_is_planned_again() -> None:
    """A pod another scheduler put on the reserved node leaves no room there: the member is re-planned."""
    world = World({"n1": 4, "n2": 4}).add(*gang("c1", 1))
    first = world.filter(world.pods["uid-video-c1-0"], "n1", "n2")
    assert first.passed == ("n1",)
    world.add(pod("intruder", "2", "n1"))
    again = world.filter(world.pods["uid-video-c1-0"], "n1", "n2")
    assert again.passed == ("n2",)
    assert dict(world.reservations.get("video/c1").assignments) == {"uid-video-c1-0": "n2"}  # type: ignore[union-attr]


def test_capacity_is_kept_as_nodes_come_go_and_change_schedulability() -> None:
    """The total is maintained per node change (O(resources)) and must always equal a recount."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    ops = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 8), st.booleans(), st.booleans()),
                   max_size=30)

    @settings(max_examples=200, deadline=None)
    @given(ops)
    def check(sequence: list[tuple[str, int, bool, bool]]) -> None:
        state = NodeState()
        for name, cpu, schedulable, remove in sequence:
            if remove:
                state.remove_node(name)
            else:
                state.set_node(NodeInfo.make(name, {"cpu": cpu * 1000, "pods": 10},
                                             unschedulable_reason="" if schedulable else "cordoned"))
            recount: dict[str, int] = {}
            for node in state.nodes():
                if node.schedulable:
                    for resource, amount in node.allocatable.items():
                        recount[resource] = recount.get(resource, 0) + amount
            assert state.capacity() == Resources(recount)

    check()

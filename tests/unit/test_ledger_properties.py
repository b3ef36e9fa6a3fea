"""Ledger properties over random valid trees and random admit/release/reclaim histories."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from common import keys
from common.ledger import Claim, ClaimKind, Ledger
from common.quota_tree import QuotaNode, QuotaTree
from common.resources import Resources

GPU = "nvidia.com/gpu"
RESOURCES = ("cpu", GPU)
PROPERTY = settings(max_examples=150, deadline=None)  # about a second each on a busy 2-core machine
HISTORIES = settings(max_examples=400, deadline=None)


# --- strategies ----------------------------------------------------------------------------------


@st.composite
def trees(draw: st.DrawFn) -> QuotaTree:
    """A valid tree: root -> 2..3 children -> 0..3 grandchildren each. A parent's min is shared among its
    children by random weights (so mins add up within it, and are rarely all zero); a child's max lies
    between its min and its parent's max; the root may cap jobs."""
    root_max = {"cpu": draw(st.integers(8, 40)), GPU: draw(st.integers(0, 8))}
    root_min = {r: draw(st.integers(root_max[r] // 2, root_max[r])) for r in RESOURCES}

    def grow(name: str, lo: dict[str, int], hi: dict[str, int], fanout: int, depth: int) -> dict[str, Any]:
        node: dict[str, Any] = {"name": name, "min": dict(lo), "max": dict(hi)}
        if not fanout:
            node["namespaces"] = [f"ns-{name}"]
            return node
        weights = [draw(st.integers(0, 4)) for _ in range(fanout)]
        total = sum(weights) + draw(st.integers(0, 2))  # sometimes keep part of the min unshared
        children = []
        for i, w in enumerate(weights):
            child_lo = {r: lo[r] * w // total if total else 0 for r in RESOURCES}
            child_hi = {r: draw(st.integers(child_lo[r], hi[r])) for r in RESOURCES}
            grand = draw(st.integers(0, 3)) if depth == 0 else 0
            children.append(grow(f"{name}-{i}" if depth else f"q{i}", child_lo, child_hi, grand, depth + 1))
        node["children"] = children
        return node

    root = grow("root", root_min, root_max, draw(st.integers(2, 3)), 0)
    if draw(st.booleans()):
        root["max"][keys.MAX_JOBS] = draw(st.integers(2, 8))
    return QuotaTree.parse({"kind": keys.QUOTA_TREE_KIND, "spec": {"root": root}})


@dataclass(frozen=True)
class Add:
    """Ask for a share (in percent) of the leaf's max: borrowing is common."""

    leaf: int
    cpu_pct: int
    gpu_pct: int
    kind: ClaimKind
    priority: int
    preemptible: bool


@dataclass(frozen=True)
class Remove:
    index: int


@dataclass(frozen=True)
class Reclaim:
    """Ask for a share (in percent) of the leaf's min: usually guaranteed, so reclaim has work to do."""

    leaf: int
    cpu_pct: int
    gpu_pct: int


percent = st.integers(0, 100)
leaf_index = st.integers(0, 20)
borrow = st.builds(
    Add, leaf_index, st.integers(20, 100), percent, st.just("job"), st.integers(0, 3), st.just(True)
)
ops = st.tuples(
    st.lists(borrow, min_size=5, max_size=20),  # fill the tree first, so that reclaim has work to do
    st.lists(
        st.one_of(
            st.builds(
                Add,
                leaf_index,
                percent,
                percent,
                st.sampled_from(["job", "pod"]),
                st.integers(0, 3),
                st.booleans(),
            ),
            borrow,
            st.builds(Remove, st.integers(0, 40)),
            st.builds(Reclaim, leaf_index, st.integers(1, 100), percent),
            st.builds(Reclaim, leaf_index, st.integers(1, 100), percent),
        ),
        max_size=30,
    ),
).map(lambda parts: parts[0] + parts[1])
capacities = st.one_of(
    st.none(),
    st.builds(lambda c, g: Resources({"cpu": c * 1000, GPU: g}), st.integers(2, 30), st.integers(0, 4)),
)


# --- checks --------------------------------------------------------------------------------------


def request(cpu: int, gpu: int) -> Resources:
    return Resources({"cpu": cpu * 1000, GPU: gpu})


def share(limits: Resources, cpu_pct: int, gpu_pct: int) -> Resources:
    return Resources({"cpu": limits.get("cpu") * cpu_pct // 100, GPU: limits.get(GPU) * gpu_pct // 100})


def assert_within_limits(ledger: Ledger) -> None:
    for node in ledger.tree.nodes():
        used = ledger.usage(node.full_name)
        for r, limit in node.max.items():
            assert used.get(r) <= limit, f"{node.full_name}: {r} {used.get(r)} > max {limit}"
        if node.max_jobs is not None:
            assert ledger.jobs(node.full_name) <= node.max_jobs, f"{node.full_name}: too many jobs"
    if ledger.capacity is not None:
        total = ledger.usage(ledger.tree.root.full_name)
        assert all(v <= ledger.capacity.get(r) for r, v in total.items()), f"{total} > {ledger.capacity}"


def assert_usage_is_the_sum_of_claims(ledger: Ledger) -> None:
    for node in ledger.tree.nodes():
        prefix = node.full_name + "/"
        mine = [c for c in ledger.claims() if c.quota == node.full_name or c.quota.startswith(prefix)]
        assert ledger.usage(node.full_name) == sum((c.request for c in mine), Resources())
        assert ledger.jobs(node.full_name) == sum(1 for c in mine if c.kind == "job")


def path_names(ledger: Ledger, leaf: str) -> set[str]:
    return {n.full_name for n in ledger.tree.path_to_root(leaf)}


def run(tree: QuotaTree, capacity: Resources | None, history: list[Any]) -> None:
    ledger = Ledger(tree, capacity)
    leaves: list[QuotaNode] = list(tree.leaves())
    order = 0
    for step, op in enumerate(history):
        order += 1
        if isinstance(op, Add):
            leaf = leaves[op.leaf % len(leaves)]
            c = Claim(
                f"u{step}",
                f"ns/j{step}",
                op.kind,
                leaf.full_name,
                share(leaf.max, op.cpu_pct, op.gpu_pct),
                op.priority,
                op.preemptible,
                order,
            )
            if ledger.check(c):
                ledger.add(c)
        elif isinstance(op, Remove):
            claims = ledger.claims()
            if claims:
                ledger.remove(claims[op.index % len(claims)].uid)
        else:
            # a share of what some leaf still has of its min: a guaranteed claim, mostly
            room = [(n, (n.min - ledger.usage(n.full_name)).clamp_low()) for n in leaves]
            room = [(n, r) for n, r in room if r] or room
            leaf, headroom = room[op.leaf % len(room)]
            c = Claim(
                f"u{step}",
                f"ns/g{step}",
                "job",
                leaf.full_name,
                share(headroom, op.cpu_pct, op.gpu_pct),
                0,
                True,
                order,
            )
            plan = ledger.plan_reclaim(c)
            if plan is None:
                continue
            assert ledger.is_guaranteed(c)
            for v in plan.victims:
                assert v.kind == "job" and v.preemptible and v.quota != c.quota
                assert ledger.claim(v.uid) == v
            for i in range(len(plan.victims)):
                fewer = Ledger(tree, capacity)
                for kept in ledger.claims():
                    if kept.uid not in {v.uid for j, v in enumerate(plan.victims) if j != i}:
                        fewer.add(kept)
                assert not fewer.check(c), f"victim {plan.victims[i].uid} was not needed"
            for v in plan.victims:
                ledger.remove(v.uid)
            claimant_path = path_names(ledger, c.quota)
            for v in plan.victims:
                for node in tree.path_to_root(v.quota):
                    if node.full_name in claimant_path:
                        continue
                    used = ledger.usage(node.full_name)
                    for r in v.request:
                        if r in node.min:
                            assert used.get(r) >= node.min[r], f"{node.full_name} below its min after reclaim"
            decision = ledger.check(c)
            assert decision, f"after evicting {plan.victims} the claim still does not fit: {decision.reason}"
            ledger.add(c)
        assert_within_limits(ledger)
    assert_usage_is_the_sum_of_claims(ledger)


# --- properties ----------------------------------------------------------------------------------


@HISTORIES
@given(trees(), capacities, ops)
def test_random_histories_never_exceed_a_max_and_reclaim_keeps_its_promises(
    tree: QuotaTree, capacity: Resources | None, history: list[Any]
) -> None:
    """Admitting only what check allows, releasing anything, and evicting a plan's victims for a guaranteed
    claim never leave a node above its max (nor the cluster above capacity, nor a job cap exceeded); a plan
    never takes a victim's quota off the claimant's path below its min; every victim is needed; and after
    the eviction the guaranteed claim passes check. Usage always equals the sum of the claims."""
    run(tree, capacity, history)


@PROPERTY
@given(
    trees(),
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 8), st.integers(0, 2), st.booleans()), max_size=15),
    st.randoms(use_true_random=False),
)
def test_adding_twice_is_adding_once(
    tree: QuotaTree, items: list[tuple[int, int, int, bool]], rnd: Any
) -> None:
    leaves = tree.leaves()
    claims = [
        Claim(
            f"u{i}",
            f"ns/j{i}",
            "job" if job else "pod",
            leaves[leaf % len(leaves)].full_name,
            request(cpu, gpu),
        )
        for i, (leaf, cpu, gpu, job) in enumerate(items)
    ]
    once, twice = Ledger(tree), Ledger(tree)
    for c in claims:
        once.add(c)
    doubled = claims + claims
    rnd.shuffle(doubled)
    for c in doubled:
        twice.add(c)
    assert once.claims() == twice.claims()
    for node in tree.nodes():
        assert once.usage(node.full_name) == twice.usage(node.full_name)
        assert once.jobs(node.full_name) == twice.jobs(node.full_name)
    for c in claims:
        twice.remove(c.uid)
        twice.remove(c.uid)
    assert all(twice.usage(n.full_name) == {} and twice.jobs(n.full_name) == 0 for n in tree.nodes())


@PROPERTY
@given(trees(), capacities, ops)
def test_rehoming_on_a_tree_change_recounts_the_same_usage(
    tree: QuotaTree, capacity: Resources | None, history: list[Any]
) -> None:
    """A tree change that keeps every leaf (here: a new job cap on the root) re-homes every claim to the
    same usage, and bumps the generation."""
    ledger = Ledger(tree, capacity)
    leaves = tree.leaves()
    for step, op in enumerate(history):
        if isinstance(op, Add):
            leaf = leaves[op.leaf % len(leaves)]
            ledger.add(
                Claim(
                    f"u{step}",
                    f"ns/j{step}",
                    op.kind,
                    leaf.full_name,
                    share(leaf.max, op.cpu_pct, op.gpu_pct),
                )
            )
    before = {n.full_name: (ledger.usage(n.full_name), ledger.jobs(n.full_name)) for n in tree.nodes()}
    changed = QuotaTree([replace(n, max_jobs=99) if n.depth == 0 else n for n in tree.nodes()])
    assert changed != tree
    generation = ledger.generation
    ledger.set_tree(changed)
    assert ledger.generation > generation
    assert ledger.orphans() == ()
    assert {
        n.full_name: (ledger.usage(n.full_name), ledger.jobs(n.full_name)) for n in tree.nodes()
    } == before

"""Reclaim that never ping-pongs (issue 20 item 5): ``rayqueue.io/min-runtime`` protects a job from reclaim until it
has run that long, the claimant says so as data, and a release ends only the backoffs it can change."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import keys
from common.admission import AdmissionPass
from common.clock import FakeClock
from common.explain import Explain, render
from common.ledger import Claim, Ledger
from common.preemption import min_runtime_ns, protection
from common.queueing import QueueItem, Queues
from common.quota_tree import QuotaTree, TreeError, validate_tree
from common.resources import Resources
from tests.unit.builders import PassWorld, make_quota, make_tree

NS = 10**9
T0 = 1_700_000_000 * NS


def _tree(min_runtime: str | None = "2m", at: str = "root") -> QuotaTree:
    attrs = {keys.MIN_RUNTIME: min_runtime} if min_runtime is not None else None
    a = make_quota("a", min={"cpu": "4"}, max={"cpu": "8"})
    b = make_quota("b", min={"cpu": "4"}, max={"cpu": "8"}, attributes=attrs if at == "b" else None)
    return make_tree(make_quota("root", a, b, min={"cpu": "8"}, max={"cpu": "8"}, attributes=attrs if at == "root" else None))


def _cpu(n: int) -> Resources:
    return Resources({"cpu": n * 1000})


def _item(uid: str, leaf: str, cpu: int, enqueue_ns: int = T0) -> QueueItem:
    return QueueItem(uid=uid, namespace=leaf.rsplit("/", 1)[-1], name=uid, quota=leaf, priority=0,
                     enqueue_ns=enqueue_ns, request=_cpu(cpu))


def _borrower(tree: QuotaTree, admitted_ns: int) -> Ledger:
    """root/b runs 8 cpu (4 borrowed) since ``admitted_ns``: root/a's min is lent out."""
    ledger = Ledger(tree)
    for i in range(2):
        ledger.add(Claim(f"b{i}", f"b/b{i}", "job", "root/b", _cpu(4), admitted_order=admitted_ns + i))
    return ledger


# --- the attribute ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "why"), [
    pytest.param("soon", "expected a Go duration", id="a min-runtime that is not a duration is refused"),
    pytest.param("-1m", "cannot be negative", id="a negative min-runtime is refused"),
    pytest.param("25h", "at most 24h", id="a min-runtime over a day is refused"),
])
def test_a_bad_min_runtime_is_refused_where_the_tree_is_validated(value: str, why: str) -> None:
    root = make_quota("root", make_quota("a", attributes={keys.MIN_RUNTIME: value}))
    errors = validate_tree({"kind": keys.QUOTA_TREE_KIND, "spec": {"root": root}})
    assert len(errors) == 1 and keys.MIN_RUNTIME in str(errors[0]) and why in str(errors[0])
    with pytest.raises(TreeError):
        make_tree(root)


@pytest.mark.parametrize(("at", "a", "b"), [
    pytest.param("root", 120, 120, id="a min-runtime on the root is inherited by every leaf"),
    pytest.param("b", 0, 120, id="a min-runtime on a leaf protects only its jobs"),
])
def test_the_min_runtime_of_a_node_is_its_own_or_its_nearest_ancestors(at: str, a: int, b: int) -> None:
    tree = _tree("2m", at)
    assert (min_runtime_ns(tree, "root/a"), min_runtime_ns(tree, "root/b")) == (a * NS, b * NS)


def test_the_protection_names_how_long_it_ran_of_its_min_runtime() -> None:
    found = protection(_tree(), T0 + 40 * NS, "b/b0", "root/b", T0)
    assert found is not None and found.until_ns == 80 * NS
    assert found.words() == "b/b0 (root/b) protected: ran 40s of its min-runtime 2m"
    assert protection(_tree(), T0 + 120 * NS, "b/b0", "root/b", T0) is None
    assert protection(_tree(None), T0 + NS, "b/b0", "root/b", T0) is None
    assert protection(_tree(), T0 + NS, "b/b0", "root/b", 0) is None  # admission time unknown: never protected


# --- the pass ----------------------------------------------------------------------------------------------


def _claim_for(ledger: Ledger, now_ns: int) -> tuple[AdmissionPass, Explain]:
    queues = Queues(FakeClock())
    queues.upsert(_item("a0", "root/a", 4))
    decide = AdmissionPass(PassWorld(queues), ledger, now_ns)
    decision = decide(queues.head("root/a"))  # type: ignore[arg-type]
    assert not decision and decision.explain is not None
    return decide, decision.explain


def test_a_job_under_its_min_runtime_is_no_victim_and_the_claimant_says_why_as_data() -> None:
    decide, why = _claim_for(_borrower(_tree(), T0), T0 + 40 * NS)
    assert decide.victims == []
    assert why.why == "protected" and [p.job for p in why.protected] == ["b/b1"]
    assert why.protected[0].ran_ns == 40 * NS - 1 and why.protected[0].min_runtime_ns == 120 * NS
    assert "b/b1 (root/b) protected: ran 40s of its min-runtime 2m" in render(why)
    assert why.rule == "max" and why.blocking == "root"  # the refusal it wraps


def test_once_it_has_run_its_min_runtime_the_job_is_reclaimed_as_before() -> None:
    decide, why = _claim_for(_borrower(_tree(), T0), T0 + 121 * NS)
    assert [v.uid for v, _ in decide.victims] == ["b1"] and why.why == "reclaim"


def test_without_a_min_runtime_reclaim_is_unchanged() -> None:
    decide, why = _claim_for(_borrower(_tree(None), T0), T0 + NS)
    assert [v.uid for v, _ in decide.victims] == ["b1"] and why.why == "reclaim"


# --- backoff: a release ends only the backoffs it can change --------------------------------------------------


def _backed_off() -> tuple[Queues, FakeClock]:
    """Three items in backoff, refused by root/a's max, root/b's max and the cluster's capacity."""
    clock = FakeClock()
    queues = Queues(clock)
    refusals = {
        "by-a": Explain(why="max", node="root/a"), "by-b": Explain(why="max", node="root/b"),
        "by-cluster": Explain(why="capacity"),
        "by-fair-share": Explain(why="fair-share", node="root/b", job="a/x", job_quota="root/a",
                                 cause=Explain(why="max", node="root/a")),
        "reclaim-in-a": Explain(why="reclaim", names=("b/b0 (root/b)",), cause=Explain(why="max", node="root/a")),
    }
    for uid in refusals:
        queues.upsert(_item(uid, "root/b" if uid == "by-b" else "root/a", 1))

    class _No:
        def __init__(self, e: Explain) -> None:
            self.e = e

        def __bool__(self) -> bool:
            return False

        @property
        def reason(self) -> str:
            return render(self.e)

        def why(self) -> Explain:
            return self.e

    queues.schedule(lambda it: _No(refusals[it.uid]), 0)
    assert all(queues.in_backoff(uid) for uid in refusals)
    return queues, clock


def test_a_release_in_one_branch_leaves_the_backoff_of_a_job_refused_by_another() -> None:
    queues, _ = _backed_off()
    moved = {it.uid for it in queues.retry_freed(["root/b"])}
    assert moved == {"by-b", "by-cluster", "by-fair-share"}
    assert queues.in_backoff("by-a") and queues.in_backoff("reclaim-in-a")
    assert queues.attempts("by-a") == 1


def test_a_release_under_the_refusing_node_ends_the_backoff() -> None:
    queues, _ = _backed_off()
    assert {it.uid for it in queues.retry_freed(["root/a"])} == {"by-a", "by-cluster", "by-fair-share",
                                                                  "reclaim-in-a"}
    assert queues.in_backoff("by-b")


# --- the property: no sequence of arrivals makes two nodes preempt each other back and forth -------------------

_arrival = st.tuples(st.integers(0, 30), st.sampled_from(["root/a", "root/b"]), st.integers(1, 4),
                     st.integers(5, 200))


@settings(max_examples=60, deadline=None)
@given(arrivals=st.lists(_arrival, min_size=1, max_size=14), min_runtime=st.sampled_from([30, 60, 120]))
def test_no_sequence_of_arrivals_makes_two_nodes_preempt_each_other_within_min_runtime(
    arrivals: list[tuple[int, str, int, int]], min_runtime: int,
) -> None:
    """Jobs arrive (every 0-30 s, in either leaf, 1-4 cpu, running 5-200 s); after each event a pass runs as the
    controller does, victims are requeued with their enqueue time. No job is ever suspended before it ran its
    min-runtime, so none is suspended twice within it, and a claimant a reclaim admitted is never taken back by its
    victim's node within it."""
    tree = _tree(f"{min_runtime}s")
    clock = FakeClock()
    queues = Queues(clock)
    ledger = Ledger(tree)
    source = PassWorld(queues)
    items: dict[str, QueueItem] = {}
    runtime: dict[str, int] = {}
    ends: dict[str, int] = {}
    admitted_at: dict[str, int] = {}
    by_reclaim: dict[str, str] = {}  # claimant uid -> the leaf it reclaimed from
    suspended: dict[str, list[int]] = {}
    t = T0
    events = [(T0 + sum(a[0] for a in arrivals[: i + 1]) * NS, i) for i in range(len(arrivals))]
    horizon = events[-1][0] + 600 * NS
    pending = list(events)
    while t <= horizon:
        while pending and pending[0][0] <= t:
            _, i = pending.pop(0)
            _, leaf, cpu, run = arrivals[i]
            items[f"j{i}"] = _item(f"j{i}", leaf, cpu, enqueue_ns=t)
            runtime[f"j{i}"] = run * NS
            queues.upsert(items[f"j{i}"])
        for uid in [u for u, end in ends.items() if end <= t]:
            ends.pop(uid)
            ledger.remove(uid)
            queues.retry_now()
        for _ in range(4):
            decide = AdmissionPass(source, ledger, t)
            result = queues.schedule(decide, ledger.generation)
            for claim, _ in decide.admitted:
                ledger.add(Claim(claim.uid, claim.key, "job", claim.quota, claim.request, admitted_order=t))
                admitted_at[claim.uid] = t
                ends[claim.uid] = t + runtime[claim.uid]
                by_reclaim.pop(claim.uid, None)
            for victim, claimant in decide.victims:
                assert t - admitted_at[victim.uid] >= min_runtime * NS, "a job suspended within its min-runtime"
                back = by_reclaim.get(victim.uid)
                assert back != claimant.quota or t - admitted_at[victim.uid] >= min_runtime * NS
                times = suspended.setdefault(victim.uid, [])
                assert not times or t - times[-1] >= min_runtime * NS, "suspended twice within its min-runtime"
                times.append(t)
                by_reclaim[claimant.uid] = victim.quota
                ledger.remove(victim.uid)
                ends.pop(victim.uid, None)
                queues.upsert(items[victim.uid])
            if decide.victims:
                queues.retry_freed([v.quota for v, _ in decide.victims])
            if not (result.admitted or decide.victims):
                break
        t += 5 * NS
        clock.advance(5)


def test_a_claimant_that_reclaimed_gets_the_capacity_before_its_requeued_victim_takes_it_back() -> None:
    """Regression (bench/fairshare.py, today's order): the claimant was not its leaf's head (a bigger job of higher
    priority that borrows was), so the guaranteed-first rule did not hold the capacity for it; its victim, requeued
    with its early enqueue time, went first in the next pass and took the capacity back, and the claimant reclaimed
    again, pass after pass."""
    ledger = _borrower(_tree(None), T0)
    queues = Queues(FakeClock())
    big = QueueItem(uid="a-big", namespace="a", name="a-big", quota="root/a", priority=1, enqueue_ns=T0,
                    request=_cpu(8))
    queues.upsert(big)
    queues.upsert(_item("a0", "root/a", 4, enqueue_ns=T0 + 10))
    first = AdmissionPass(PassWorld(queues), ledger, T0 + NS)
    queues.schedule(first, ledger.generation)
    assert [(v.uid, c.uid) for v, c in first.victims] == [("b1", "a0")]
    ledger.remove("b1")
    queues.upsert(_item("b1", "root/b", 4, enqueue_ns=T0))  # requeued with its original enqueue time
    queues.retry_now()
    second = AdmissionPass(PassWorld(queues), ledger, T0 + 2 * NS)
    result = queues.schedule(second, ledger.generation)
    assert [it.uid for it in result.admitted] == ["a0"] and second.victims == []
    refused = queues.explain("b1")
    assert refused is not None and refused.why == "guaranteed-first" and refused.job == "a/a0"

"""The quota ledger: usage by UID along the tree, every admission rule with its numbers, and reclaim planning."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import keys
from common.ledger import Claim, ClaimKind, Decision, Ledger
from common.quota_tree import QuotaTree
from common.resources import Excess, Resources

SEED = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "elasticquotatree.yaml"
ROOT, ALGO, VIDEO, TEXT, INTERN = (
    "root",
    "root/algorithm",
    "root/algorithm/video",
    "root/algorithm/text",
    ("root/algorithm/intern"),
)
INFRA, INFRA_DEVOPS, DEVOPS = "root/infrastructure", "root/infrastructure/devops", "root/devops"
GPU = "nvidia.com/gpu"
SEED_JOB_MEMORY = 12_000_000_000 + 209_715_200  # 3 pods of 4G + KubeRay's default submitter's 200Mi


# --- builders (kept here: tests/unit/builders.py belongs to another engineer) -------------------


def seed_tree() -> QuotaTree:
    with SEED.open() as f:
        (obj,) = [d for d in yaml.safe_load_all(f) if d and d["kind"] == keys.QUOTA_TREE_KIND]
    return QuotaTree.parse(obj)


def quota(name: str, *children: dict[str, Any], min: Any = None, max: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "min": min or {}, "max": max or {}}
    if children:
        out["children"] = list(children)
    else:
        out["namespaces"] = [name]
    return out


def tree_of(root: dict[str, Any]) -> QuotaTree:
    return QuotaTree.parse({"kind": keys.QUOTA_TREE_KIND, "spec": {"root": root}})


def small_tree() -> QuotaTree:
    """root (10 cpu, 2 gpu) -> a (min 6, max 8) -> x (min 3, max 6, no gpu), y (min 3, max 8); b (min 4)."""
    return tree_of(
        quota(
            "root",
            quota(
                "a",
                quota("x", min={"cpu": 3}, max={"cpu": 6, GPU: 0}),
                quota("y", min={"cpu": 3}, max={"cpu": 8}),
                min={"cpu": 6},
                max={"cpu": 8},
            ),
            quota("b", min={"cpu": 4}, max={"cpu": 10}),
            min={"cpu": 10},
            max={"cpu": 10, GPU: 2},
        )
    )


def jobs_tree() -> QuotaTree:
    """root (max-jobs 3) -> a (max-jobs 2, min 1 cpu), b (min 0): cpu is not limited."""
    return tree_of(
        quota(
            "root",
            quota("a", min={"cpu": 1}, max={keys.MAX_JOBS: 2}),
            quota("b"),
            min={"cpu": 1},
            max={keys.MAX_JOBS: 3},
        )
    )


def res(cpu: str | int | None = None, memory: str | int | None = None, gpu: int | None = None) -> Resources:
    spec = {k: v for k, v in {"cpu": cpu, "memory": memory, GPU: gpu}.items() if v is not None}
    return Resources.parse(spec)


def claim(
    uid: str,
    leaf: str,
    *,
    cpu: str | int | None = None,
    memory: str | int | None = None,
    gpu: int | None = None,
    kind: ClaimKind = "job",
    priority: int = 0,
    preemptible: bool = True,
    order: int = 0,
) -> Claim:
    namespace = leaf.rsplit("/", 1)[-1]
    return Claim(uid, f"{namespace}/{uid}", kind, leaf, res(cpu, memory, gpu), priority, preemptible, order)


def ledger_with(tree: QuotaTree, *claims: Claim, capacity: Resources | None = None) -> Ledger:
    ledger = Ledger(tree, capacity)
    for c in claims:
        ledger.add(c)
    return ledger


# --- the guide's worked example -------------------------------------------------------------------


def test_the_seed_video_job_fits_once_and_a_second_copy_waits_with_the_numbers() -> None:
    """The guide's video job (4-CPU head, two 4-CPU workers, KubeRay's default submitter) asks for 12500m
    cpu; video's max is 14, so the first copy runs and the second waits, saying why in numbers."""
    ledger = Ledger(seed_tree())
    first = claim("j1", VIDEO, cpu="12500m", memory=SEED_JOB_MEMORY)
    assert ledger.check(first) == Decision(True, "root/algorithm/video: fits")
    ledger.add(first)
    second = claim("j2", VIDEO, cpu="12500m", memory=SEED_JOB_MEMORY, order=1)
    decision = ledger.check(second)
    assert not decision
    assert decision.reason == (
        "root/algorithm/video: cpu used 12500m + request 12500m > max 14; "
        "memory used 11923550Ki + request 11923550Ki > max 14Gi"
    )
    assert decision.blocking == VIDEO
    assert decision.rule == "max"
    assert decision.excess == (
        Excess("cpu", 12500, 12500, 14000),
        Excess("memory", SEED_JOB_MEMORY, SEED_JOB_MEMORY, 14 * 2**30),
    )


# --- accounting ----------------------------------------------------------------------------------


def test_usage_is_charged_to_the_leaf_and_every_ancestor() -> None:
    ledger = ledger_with(seed_tree(), claim("v", VIDEO, cpu=4, gpu=1), claim("t", TEXT, cpu=2))
    assert ledger.usage(VIDEO) == {"cpu": 4000, GPU: 1}
    assert ledger.usage(TEXT) == {"cpu": 2000}
    assert ledger.usage(ALGO) == {"cpu": 6000, GPU: 1}
    assert ledger.usage(ROOT) == {"cpu": 6000, GPU: 1}
    assert ledger.usage(INFRA) == {}
    assert ledger.usage("root/no-such-node") == {}
    assert (ledger.jobs(VIDEO), ledger.jobs(ALGO), ledger.jobs(ROOT), ledger.jobs(INFRA)) == (1, 2, 2, 0)


def test_adding_the_same_uid_twice_counts_once_and_does_not_bump_the_generation() -> None:
    ledger = Ledger(seed_tree())
    c = claim("v", VIDEO, cpu=4)
    ledger.add(c)
    generation = ledger.generation
    ledger.add(c)
    assert ledger.usage(ROOT) == {"cpu": 4000}
    assert ledger.jobs(ROOT) == 1
    assert ledger.generation == generation


def test_adding_a_uid_again_with_a_new_request_replaces_it() -> None:
    ledger = ledger_with(seed_tree(), claim("v", VIDEO, cpu=4))
    generation = ledger.generation
    ledger.add(claim("v", VIDEO, cpu=6))
    assert ledger.usage(ALGO) == {"cpu": 6000}
    assert ledger.jobs(ALGO) == 1
    assert ledger.generation > generation


def test_a_uid_that_moves_leaf_is_uncharged_from_the_old_one() -> None:
    ledger = ledger_with(seed_tree(), claim("v", VIDEO, cpu=4))
    ledger.add(claim("v", DEVOPS, cpu=4))
    assert ledger.usage(VIDEO) == {} and ledger.usage(ALGO) == {}
    assert ledger.usage(DEVOPS) == {"cpu": 4000}


def test_remove_releases_and_an_unknown_uid_is_a_no_op() -> None:
    ledger = ledger_with(seed_tree(), claim("v", VIDEO, cpu=4), claim("p", VIDEO, cpu=1, kind="pod"))
    generation = ledger.generation
    ledger.remove("nope")
    assert ledger.generation == generation
    ledger.remove("v")
    assert ledger.generation > generation
    assert ledger.usage(ROOT) == {"cpu": 1000}
    assert ledger.jobs(ROOT) == 0, "pods are not jobs"
    ledger.remove("p")
    assert ledger.usage(ROOT) == {} and len(ledger) == 0


def test_claims_are_listed_sorted_by_uid() -> None:
    ledger = ledger_with(seed_tree(), claim("b", VIDEO, cpu=1), claim("a", TEXT, cpu=1))
    assert [c.uid for c in ledger.claims()] == ["a", "b"]
    assert ledger.claim("a") == claim("a", TEXT, cpu=1)
    assert ledger.claim("zz") is None
    assert "a" in ledger and "zz" not in ledger


def test_checking_an_admitted_claim_again_does_not_count_it_twice() -> None:
    job = claim("j1", VIDEO, cpu="12500m", memory=SEED_JOB_MEMORY)
    ledger = ledger_with(seed_tree(), job)
    assert ledger.check(job)


def test_capacity_changes_bump_the_generation_only_when_they_change_something() -> None:
    ledger = Ledger(seed_tree())
    g0 = ledger.generation
    ledger.set_capacity(None)
    assert ledger.generation == g0
    ledger.set_capacity(res(cpu=50))
    assert ledger.generation == g0 + 1
    ledger.set_capacity(res(cpu="50000m"))
    assert ledger.generation == g0 + 1
    ledger.set_capacity(None)
    assert ledger.generation == g0 + 2 and ledger.capacity is None


def test_a_claim_of_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="claim ns/x: kind must be 'job' or 'pod', got 'cronjob'"):
        Claim("x", "ns/x", "cronjob", VIDEO, res(cpu=1))  # type: ignore[arg-type]


def test_a_decision_is_truthy_only_when_admitted() -> None:
    assert Decision(True, "fits")
    assert not Decision(False, "no")


# --- tree changes --------------------------------------------------------------------------------


def _seed_without_intern() -> QuotaTree:
    t = seed_tree()
    return tree_of(
        quota(
            "root",
            quota(
                "algorithm",
                quota("video", min=t.node(VIDEO).min.to_api(), max=t.node(VIDEO).max.to_api()),
                min=t.node(ALGO).min.to_api(),
                max=t.node(ALGO).max.to_api(),
            ),
            min=t.root.min.to_api(),
            max=t.root.max.to_api(),
        )
    )


def test_claims_whose_leaf_disappears_stay_charged_to_the_root_as_orphans() -> None:
    """The intern leaf is deleted while an intern job runs: its pods still use capacity, so the root
    (and the cluster total) keep counting it, no other node does, and orphans() says so."""
    intern_job, video_job = claim("i", INTERN, cpu=10), claim("v", VIDEO, cpu=2)
    ledger = ledger_with(seed_tree(), intern_job, video_job, capacity=res(cpu=13))
    generation = ledger.generation
    ledger.set_tree(_seed_without_intern())
    assert ledger.generation > generation
    assert ledger.orphans() == (intern_job,)
    assert ledger.usage(ROOT) == {"cpu": 12000}
    assert ledger.usage(ALGO) == {"cpu": 2000}
    assert ledger.jobs(ROOT) == 2 and ledger.jobs(ALGO) == 1
    assert ledger.check(claim("v2", VIDEO, cpu=2)).reason == "cluster: cpu used 12 + request 2 > capacity 13"
    ledger.add(claim("i", VIDEO, cpu=10))
    assert ledger.orphans() == ()
    assert ledger.usage(VIDEO) == {"cpu": 12000} and ledger.usage(ROOT) == {"cpu": 12000}


def test_an_orphan_is_rehomed_when_its_leaf_comes_back() -> None:
    ledger = ledger_with(seed_tree(), claim("i", INTERN, cpu=10))
    ledger.set_tree(_seed_without_intern())
    ledger.set_tree(seed_tree())
    assert ledger.orphans() == ()
    assert ledger.usage(INTERN) == {"cpu": 10000} and ledger.usage(ALGO) == {"cpu": 10000}


def test_setting_an_equal_tree_changes_nothing() -> None:
    ledger = ledger_with(seed_tree(), claim("v", VIDEO, cpu=2))
    generation = ledger.generation
    ledger.set_tree(seed_tree())
    assert ledger.generation == generation
    assert ledger.usage(VIDEO) == {"cpu": 2000}


@pytest.mark.parametrize(
    ("leaf", "reason"),
    [
        pytest.param(
            "root/gaming", "root/gaming: no such quota in the tree", id="an unknown quota is refused"
        ),
        pytest.param(
            ALGO,
            "root/algorithm: not a leaf quota (its children: root/algorithm/intern, root/algorithm/text, "
            "root/algorithm/video)",
            id="a claim on an inner node is refused",
        ),
    ],
)
def test_a_claim_must_name_a_leaf(leaf: str, reason: str) -> None:
    decision = Ledger(seed_tree()).check(claim("c", leaf, cpu=1))
    assert (decision.admitted, decision.reason, decision.blocking, decision.rule) == (
        False,
        reason,
        leaf,
        "quota",
    )


# --- the max rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "candidate", "reason", "blocking"),
    [
        pytest.param([], claim("c", "root/a/x", cpu=6), None, None, id="exactly at the leaf max fits"),
        pytest.param(
            [claim("h", "root/a/x", cpu=5)],
            claim("c", "root/a/x", cpu="1001m"),
            "root/a/x: cpu used 5 + request 1001m > max 6",
            "root/a/x",
            id="one millicore over the leaf max is refused at the leaf",
        ),
        pytest.param(
            [claim("h1", "root/a/x", cpu=3), claim("h2", "root/a/y", cpu=4)],
            claim("c", "root/a/y", cpu=2),
            "root/a: cpu used 7 + request 2 > max 8",
            "root/a",
            id="the parent refuses when the leaf still has room",
        ),
        pytest.param(
            [claim("h1", "root/a/x", cpu=5), claim("h2", "root/a/y", cpu=3)],
            claim("c", "root/a/x", cpu=2),
            "root/a/x: cpu used 5 + request 2 > max 6",
            "root/a/x",
            id="when several nodes refuse the leaf-most one is reported",
        ),
        pytest.param(
            [claim("h1", "root/a/x", cpu=3), claim("h2", "root/a/y", cpu=3), claim("h3", "root/b", cpu=4)],
            claim("c", "root/b", cpu=1),
            "root: cpu used 10 + request 1 > max 10",
            "root",
            id="the root's max bounds the whole tree",
        ),
        pytest.param(
            [],
            claim("c", "root/a/x", gpu=1),
            "root/a/x: nvidia.com/gpu used 0 + request 1 > max 0",
            "root/a/x",
            id="a declared zero max refuses any of that resource",
        ),
        pytest.param(
            [], claim("c", "root/b", memory="100Gi"), None, None, id="a resource no max names is unbounded"
        ),
        pytest.param(
            [claim("h", "root/b", cpu=10)],
            claim("c", "root/a/x", gpu=1, kind="pod"),
            "root/a/x: nvidia.com/gpu used 0 + request 1 > max 0",
            "root/a/x",
            id="a pod is held to max like a job",
        ),
        pytest.param(
            [claim("h", "root/b", cpu=10)],
            claim("c", "root/b", gpu=1),
            None,
            None,
            id="a full resource the claim does not request does not block it",
        ),
    ],
)
def test_max_on_every_node_of_the_path(
    held: list[Claim], candidate: Claim, reason: str | None, blocking: str | None
) -> None:
    decision = ledger_with(small_tree(), *held).check(candidate)
    if reason is None:
        assert decision, decision.reason
    else:
        assert (decision.admitted, decision.reason, decision.blocking, decision.rule) == (
            False,
            reason,
            blocking,
            "max",
        )


# --- cluster capacity ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capacity", "candidate", "reason"),
    [
        pytest.param(res(cpu=20), claim("c", VIDEO, cpu=5), None, id="within capacity fits"),
        pytest.param(
            res(cpu=20),
            claim("c", VIDEO, cpu=6),
            "cluster: cpu used 15 + request 6 > capacity 20",
            id="the cluster total must stay within capacity",
        ),
        pytest.param(
            res(cpu=100),
            claim("c", VIDEO, gpu=1),
            "cluster: nvidia.com/gpu used 0 + request 1 > capacity 0",
            id="a resource no schedulable node offers has capacity 0",
        ),
        pytest.param(
            None, claim("c", VIDEO, cpu=14), None, id="no known capacity means only the tree limits"
        ),
    ],
)
def test_cluster_capacity(capacity: Resources | None, candidate: Claim, reason: str | None) -> None:
    ledger = ledger_with(seed_tree(), claim("i", INTERN, cpu=15), capacity=capacity)
    decision = ledger.check(candidate)
    if reason is None:
        assert decision, decision.reason
    else:
        assert (decision.admitted, decision.reason, decision.blocking, decision.rule) == (
            False,
            reason,
            None,
            "capacity",
        )


# --- job caps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "candidate", "reason", "blocking"),
    [
        pytest.param(
            [claim("j1", "root/a"), claim("j2", "root/a")],
            claim("c", "root/a"),
            "root/a: jobs 2 + 1 > max-jobs 2",
            "root/a",
            id="a leaf's job cap refuses one job too many",
        ),
        pytest.param(
            [claim("j1", "root/a"), claim("p1", "root/a", kind="pod")],
            claim("c", "root/a"),
            None,
            None,
            id="pods do not count as jobs",
        ),
        pytest.param(
            [claim("j1", "root/a"), claim("j2", "root/a")],
            claim("c", "root/a", kind="pod"),
            None,
            None,
            id="pods are not capped",
        ),
        pytest.param(
            [claim("j1", "root/a"), claim("j2", "root/a"), claim("j3", "root/b")],
            claim("c", "root/b"),
            "root: jobs 3 + 1 > max-jobs 3",
            "root",
            id="an ancestor's cap counts its whole subtree",
        ),
    ],
)
def test_max_jobs(held: list[Claim], candidate: Claim, reason: str | None, blocking: str | None) -> None:
    decision = ledger_with(jobs_tree(), *held).check(candidate)
    if reason is None:
        assert decision, decision.reason
    else:
        assert (decision.admitted, decision.reason, decision.blocking, decision.rule) == (
            False,
            reason,
            blocking,
            "max-jobs",
        )
        assert decision.excess[0].resource == keys.MAX_JOBS


def test_a_zero_job_cap_refuses_every_job() -> None:
    tree = tree_of(quota("root", max={keys.MAX_JOBS: 0}))
    assert Ledger(tree).check(claim("c", "root")).reason == "root: jobs 0 + 1 > max-jobs 0"


# --- non-preemptible claims ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "candidate", "reason"),
    [
        pytest.param(
            [claim("h", "root/a/x", cpu=1)],
            claim("c", "root/a/x", cpu=2, preemptible=False),
            None,
            id="a non-preemptible claim within its leaf's min is admitted",
        ),
        pytest.param(
            [claim("h", "root/a/x", cpu=2)],
            claim("c", "root/a/x", cpu=4, preemptible=False),
            "root/a/x: not preemptible, so it may only use guaranteed capacity: cpu used 2 + request 4 > min 3",
            id="a non-preemptible claim may not borrow above its leaf's min",
        ),
        pytest.param(
            [],
            claim("c", "root/b", gpu=1, preemptible=False),
            "root/b: not preemptible, so it may only use guaranteed capacity: nvidia.com/gpu used 0 + request 1 "
            "> min 0",
            id="a resource min does not name counts as min 0",
        ),
        pytest.param(
            [claim("h", "root/a/y", cpu=5)],
            claim("c", "root/a/x", cpu=3, preemptible=False),
            None,
            id="a sibling's borrowing above the parent's min does not count against it",
        ),
        pytest.param(
            [claim("h", "root/a/x", cpu=2)],
            claim("c", "root/a/x", cpu=4),
            None,
            id="a preemptible claim may borrow",
        ),
    ],
)
def test_non_preemptible_claims_use_only_guaranteed_capacity(
    held: list[Claim], candidate: Claim, reason: str | None
) -> None:
    decision = ledger_with(small_tree(), *held).check(candidate)
    if reason is None:
        assert decision, decision.reason
    else:
        assert (decision.admitted, decision.reason, decision.rule) == (False, reason, "preemptible")
        assert decision.blocking == candidate.quota


def test_max_is_reported_before_the_guarantee() -> None:
    ledger = ledger_with(small_tree(), claim("h", "root/a/x", cpu=5))
    decision = ledger.check(claim("c", "root/a/x", cpu=2, preemptible=False))
    assert decision.reason == "root/a/x: cpu used 5 + request 2 > max 6"


# --- guaranteed first ----------------------------------------------------------------------------


def _algorithm_busy() -> list[Claim]:
    """text at its min (32) and intern borrowing 30: algorithm holds 62 of its max 80."""
    return [claim("t", TEXT, cpu=32, order=1), claim("i1", INTERN, cpu=30, order=2)]


@pytest.mark.parametrize(
    ("held", "candidate", "waiting", "reason"),
    [
        pytest.param(
            _algorithm_busy(),
            claim("i2", INTERN, cpu=10),
            [claim("w", VIDEO, cpu=12)],
            "root/algorithm/intern: guaranteed first: this claim would borrow above min, and video/w waiting "
            "within the min of root/algorithm/video would then not fit (root/algorithm: cpu used 72 + request 12 "
            "> max 80)",
            id="a borrowing claim that would block a guaranteed claim of another leaf waits",
        ),
        pytest.param(
            _algorithm_busy(),
            claim("i2", INTERN, cpu=10),
            [],
            None,
            id="with nobody waiting a borrowing claim is admitted",
        ),
        pytest.param(
            _algorithm_busy(),
            claim("i2", INTERN, cpu=10),
            [claim("w", INTERN, cpu=12)],
            None,
            id="a waiting claim of the same leaf does not hold it back",
        ),
        pytest.param(
            _algorithm_busy(),
            claim("i2", INTERN, cpu=10),
            [claim("w", VIDEO, cpu=13)],
            None,
            id="a waiting claim that would itself borrow does not hold it back",
        ),
        pytest.param(
            _algorithm_busy(),
            claim("i2", INTERN, cpu=2),
            [claim("w", VIDEO, cpu=12)],
            None,
            id="a borrowing claim that leaves room for the guaranteed one is admitted",
        ),
        pytest.param(
            [*_algorithm_busy(), claim("i2", INTERN, cpu=10)],
            claim("d", DEVOPS, cpu=15),
            [claim("w", VIDEO, cpu=12)],
            None,
            id="a guaranteed claim that does not fit now anyway does not hold others back",
        ),
        pytest.param(
            [claim("t", TEXT, cpu=32), claim("i", INTERN, cpu=40), claim("d", INFRA_DEVOPS, cpu=18)],
            claim("c", DEVOPS, cpu=5),
            [claim("w", VIDEO, cpu=8)],
            None,
            id="a claim within its own min is never held back",
        ),
        pytest.param(
            _algorithm_busy(),
            claim("i2", INTERN, cpu=10),
            [claim("i1", VIDEO, cpu=12)],
            None,
            id="a waiting claim that is in fact already admitted is ignored",
        ),
    ],
)
def test_guaranteed_claims_go_first(
    held: list[Claim], candidate: Claim, waiting: list[Claim], reason: str | None
) -> None:
    ledger = ledger_with(seed_tree(), *held)
    decision = ledger.check(candidate, waiting_guaranteed=waiting)
    if reason is None:
        assert decision, decision.reason
    else:
        assert (decision.admitted, decision.reason, decision.rule) == (False, reason, "guaranteed-first")
        assert decision.blocking == waiting[0].quota
        assert decision.excess == (Excess("cpu", 72000, 12000, 80000),)


def test_waiting_guaranteed_claims_are_judged_together_not_one_by_one() -> None:
    """Two video claims of 6 waiting within video's min (12): intern's 8 leaves room for either alone (70 + 6 of
    80) but not for both, so it waits. Judged one by one it was admitted, and a claimant whose reclaim freed
    capacity for several waiting jobs saw borrowers take it pass after pass (bench/elastic.py at overload)."""
    ledger = ledger_with(seed_tree(), *_algorithm_busy())
    waiting = [claim("w1", VIDEO, cpu=6), claim("w2", VIDEO, cpu=6)]
    decision = ledger.check(claim("i2", INTERN, cpu=8), waiting_guaranteed=waiting)
    assert (decision.admitted, decision.rule) == (False, "guaranteed-first")
    assert "video/w2 waiting" in decision.reason and "cpu used 76 + request 6 > max 80" in decision.reason
    assert ledger.check(claim("i2", INTERN, cpu=6), waiting_guaranteed=waiting), "68 + 12 of 80 leaves room for both"


def test_the_guard_does_not_hide_a_plain_refusal() -> None:
    ledger = ledger_with(seed_tree(), *_algorithm_busy())
    decision = ledger.check(claim("i2", INTERN, cpu=11), waiting_guaranteed=[claim("w", VIDEO, cpu=12)])
    assert decision.reason == "root/algorithm/intern: cpu used 30 + request 11 > max 40"


# --- guaranteed ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "candidate", "guaranteed"),
    [
        pytest.param([], claim("c", VIDEO, cpu=12), True, id="exactly the leaf's min is guaranteed"),
        pytest.param(
            [], claim("c", VIDEO, cpu="12001m"), False, id="a millicore above the leaf's min borrows"
        ),
        pytest.param(
            [claim("v", VIDEO, cpu=6)],
            claim("c", VIDEO, cpu=6),
            True,
            id="what the leaf already holds counts",
        ),
        pytest.param(
            [claim("v", VIDEO, cpu=6)],
            claim("c", VIDEO, cpu=7),
            False,
            id="what the leaf already holds can tip it over",
        ),
        pytest.param([], claim("c", INTERN, cpu=1), False, id="a leaf with min 0 never guarantees"),
        pytest.param(
            [], claim("c", VIDEO, memory=1, cpu=1, gpu=1), True, id="every requested resource within min"
        ),
        pytest.param([], claim("c", DEVOPS, gpu=1), False, id="a resource whose min is 0 is borrowed"),
        pytest.param([], claim("c", VIDEO), True, id="an empty request is guaranteed"),
        pytest.param(
            [claim("t", TEXT, cpu=40), claim("i", INTERN, cpu=40)],
            claim("c", VIDEO, cpu=8),
            True,
            id="siblings borrowing the parent above its min do not take the leaf's guarantee",
        ),
        pytest.param(
            [claim("c", VIDEO, cpu=12)],
            claim("c", VIDEO, cpu=12),
            True,
            id="an admitted claim is not counted twice",
        ),
        pytest.param([], claim("c", "root/gaming", cpu=1), False, id="an unknown quota guarantees nothing"),
        pytest.param([], claim("c", ALGO, cpu=1), False, id="an inner node guarantees nothing"),
    ],
)
def test_is_guaranteed(held: list[Claim], candidate: Claim, guaranteed: bool) -> None:
    assert ledger_with(seed_tree(), *held).is_guaranteed(candidate) is guaranteed


# --- reclaim -------------------------------------------------------------------------------------


def test_reclaim_takes_intern_capacity_back_for_a_guaranteed_video_job() -> None:
    """The guide's story: intern (min 0) borrows the algorithm team's capacity; a video job within video's
    guarantee arrives and cannot fit. The newest borrower (text's extra 8) is tried first but is not
    enough; text's other job would take text below its min; the newest intern job is enough alone, so the
    plan is just that intern job, and once it is evicted the video job fits."""
    interns = [claim(f"i{n}", INTERN, cpu=20, order=n) for n in (1, 2)]
    texts = [claim("t1", TEXT, cpu=32, order=3), claim("t2", TEXT, cpu=8, order=4)]
    ledger = ledger_with(seed_tree(), *interns, *texts)
    video = claim("v", VIDEO, cpu=12)
    assert ledger.is_guaranteed(video)
    assert ledger.check(video).reason == "root/algorithm: cpu used 80 + request 12 > max 80"
    plan = ledger.plan_reclaim(video)
    assert plan is not None
    assert plan.claimant == video
    assert plan.victims == (interns[1],)
    assert plan.message == (
        "reclaim for video/v, guaranteed in root/algorithm/video: preempt intern/i2 (root/algorithm/intern, "
        "priority 0)"
    )
    for v in plan.victims:
        ledger.remove(v.uid)
    assert ledger.check(video)


def test_reclaim_passes_over_a_job_kuberay_cannot_suspend_now() -> None:
    """KubeRay suspends a RayJob only from Initializing or Running: the newest intern job is an
    InteractiveMode one sitting in Waiting, so suspending it would free nothing; the older one is taken."""
    waiting = dataclasses.replace(claim("i2", INTERN, cpu=20, order=2), suspendable=False)
    interns = [claim("i1", INTERN, cpu=20, order=1), waiting]
    ledger = ledger_with(seed_tree(), *interns, claim("t1", TEXT, cpu=32, order=3), claim("t2", TEXT, cpu=8, order=4))
    plan = ledger.plan_reclaim(claim("v", VIDEO, cpu=12))
    assert plan is not None and [v.uid for v in plan.victims] == ["i1"]


def test_reclaim_prefers_the_lowest_priority_then_the_newest() -> None:
    interns = [
        claim("i-old-low", INTERN, cpu=10, priority=0, order=1),
        claim("i-new-low", INTERN, cpu=10, priority=0, order=2),
        claim("i-newest-high", INTERN, cpu=10, priority=5, order=3),
    ]
    others = [
        claim("t", TEXT, cpu=32, priority=9),
        claim("d", INFRA_DEVOPS, cpu=28, priority=9, order=4),
        claim("o", DEVOPS, cpu=10, order=5),
    ]
    ledger = ledger_with(seed_tree(), *interns, *others)
    video = claim("v", VIDEO, cpu=8)
    assert ledger.check(video).reason == "root: cpu used 100 + request 8 > max 100"
    plan = ledger.plan_reclaim(video)
    assert plan is not None
    assert [v.uid for v in plan.victims] == ["i-new-low"]
    assert plan.message == (
        "reclaim for video/v, guaranteed in root/algorithm/video: preempt intern/i-new-low "
        "(root/algorithm/intern, priority 0)"
    )


def test_reclaim_breaks_ties_by_uid() -> None:
    ledger = ledger_with(
        seed_tree(), claim("t", TEXT, cpu=32), claim("b", INTERN, cpu=20), claim("a", INTERN, cpu=20)
    )
    plan = ledger.plan_reclaim(claim("v", VIDEO, cpu=9))
    assert plan is not None and [v.uid for v in plan.victims] == ["a"]


def test_reclaim_drops_a_victim_that_turned_out_unnecessary() -> None:
    """In order, the small low-priority job is tried first but does not free enough; the larger one is then
    enough on its own, so the plan keeps only it."""
    ledger = ledger_with(
        small_tree(),
        claim("small", "root/a/y", cpu=1, priority=0),
        claim("large", "root/a/y", cpu=4, priority=1),
        claim("base", "root/a/y", cpu=3, preemptible=False),
    )
    candidate = claim("c", "root/a/x", cpu=3)
    assert ledger.check(candidate).reason == "root/a: cpu used 8 + request 3 > max 8"
    plan = ledger.plan_reclaim(candidate)
    assert plan is not None and [v.uid for v in plan.victims] == ["large"]


def test_reclaim_may_take_a_shared_ancestor_below_its_min_since_the_claimant_refills_it() -> None:
    ledger = ledger_with(
        small_tree(), claim("y1", "root/a/y", cpu=5, order=1), claim("y2", "root/a/y", cpu=3, order=2)
    )
    candidate = claim("c", "root/a/x", cpu=3)
    assert ledger.check(candidate).reason == "root/a: cpu used 8 + request 3 > max 8"
    plan = ledger.plan_reclaim(candidate)
    assert plan is not None and [v.uid for v in plan.victims] == ["y2"], "root/a drops to 5, below its min 6"


def test_reclaim_never_takes_a_victims_own_quota_below_its_min() -> None:
    """infrastructure sits exactly at its min (30) though its devops leaf borrows: evicting any devops job
    would take infrastructure below its guarantee, so there is no plan."""
    ledger = ledger_with(
        seed_tree(),
        claim("d1", INFRA_DEVOPS, cpu=20, order=1),
        claim("d2", INFRA_DEVOPS, cpu=10, order=2),
        capacity=res(cpu=35),
    )
    candidate = claim("c", DEVOPS, cpu=10)
    assert ledger.check(candidate).reason == "cluster: cpu used 30 + request 10 > capacity 35"
    assert ledger.plan_reclaim(candidate) is None


def test_reclaim_frees_cluster_capacity() -> None:
    ledger = ledger_with(
        seed_tree(),
        claim("i1", INTERN, cpu=20, order=1),
        claim("i2", INTERN, cpu=20, order=2),
        claim("d", DEVOPS, cpu=5),
        capacity=res(cpu=50),
    )
    plan = ledger.plan_reclaim(claim("v", VIDEO, cpu=8))
    assert plan is not None and [v.uid for v in plan.victims] == ["i2"]


def test_reclaim_frees_a_job_slot() -> None:
    ledger = ledger_with(
        tree_of(
            quota("root", quota("a", min={"cpu": 1}), quota("b"), min={"cpu": 1}, max={keys.MAX_JOBS: 2})
        ),
        claim("b1", "root/b", cpu=1, order=1),
        claim("b2", "root/b", cpu=1, order=2),
    )
    candidate = claim("c", "root/a", cpu=1)
    assert ledger.check(candidate).reason == "root: jobs 2 + 1 > max-jobs 2"
    plan = ledger.plan_reclaim(candidate)
    assert plan is not None and [v.uid for v in plan.victims] == ["b2"]


@pytest.mark.parametrize(
    ("held", "candidate"),
    [
        pytest.param(
            [claim("i", INTERN, cpu=40), claim("t", TEXT, cpu=40)],
            claim("v", VIDEO, cpu=13),
            id="a claim above its leaf's min reclaims nothing",
        ),
        pytest.param(
            [claim("i", INTERN, cpu=40, preemptible=False), claim("t", TEXT, cpu=40, preemptible=False)],
            claim("v", VIDEO, cpu=12),
            id="non-preemptible claims are never victims",
        ),
        pytest.param(
            [claim("i", INTERN, cpu=40, kind="pod"), claim("t", TEXT, cpu=40, kind="pod")],
            claim("v", VIDEO, cpu=12),
            id="pods are never victims: victims are whole jobs",
        ),
        pytest.param(
            [claim("i", INTERN, cpu=40)],
            claim("v", "root/gaming", cpu=1),
            id="an unknown quota reclaims nothing",
        ),
    ],
)
def test_no_reclaim_plan(held: list[Claim], candidate: Claim) -> None:
    assert ledger_with(seed_tree(), *held).plan_reclaim(candidate) is None


def test_a_claim_that_already_fits_needs_no_victims() -> None:
    plan = ledger_with(seed_tree(), claim("i", INTERN, cpu=40)).plan_reclaim(claim("v", VIDEO, cpu=12))
    assert plan is not None
    assert plan.victims == ()
    assert plan.message == "video/v in root/algorithm/video fits without reclaim"


def test_reclaim_is_deterministic() -> None:
    held = [claim(f"i{n}", INTERN, cpu=5, order=n % 3) for n in range(8)] + [claim("t", TEXT, cpu=40)]
    ledger = ledger_with(seed_tree(), *held)
    candidate = claim("v", VIDEO, cpu=12)
    first, second = ledger.plan_reclaim(candidate), ledger.plan_reclaim(candidate)
    assert first is not None and first == second
    assert [v.uid for v in first.victims] == ["i2", "i5", "i1"]


def test_a_copy_is_independent_and_equal() -> None:
    ledger = Ledger(small_tree())
    ledger.add(Claim(uid="u1", key="x/a", kind="job", quota="root/a/x", request=Resources({"cpu": 2000})))
    copy = ledger.copy()
    copy.add(Claim(uid="u2", key="x/b", kind="job", quota="root/a/x", request=Resources({"cpu": 1000})))
    copy.remove("u1")
    assert ledger.usage("root/a/x") == Resources({"cpu": 2000}) and ledger.jobs("root") == 1
    assert copy.usage("root/a/x") == Resources({"cpu": 1000}) and [c.uid for c in copy.claims()] == ["u2"]
    assert ledger.copy().usage("root") == ledger.usage("root")

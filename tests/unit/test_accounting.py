"""common.accounting: for any pod, its job (by ownerReference UIDs), role and charge with the reason; the claim-hold
rule; the job lifecycle. Pure: plain values in, a record out, no cache events."""

from __future__ import annotations

import pytest

from common import keys
from common.accounting import (
    ChargeReason,
    JobState,
    Ownership,
    PodAccount,
    account_pod,
    holds_claim,
    lifecycle,
    managed,
    releasing,
    uncovered_request,
)
from common.ledger import Ledger
from common.pod_quota import eviction_refusal, quota_verdict
from common.rayjob import JobInfo, PodInfo
from common.resources import Resources
from tests.unit.builders import (
    BooksBuilder,
    Obj,
    RayJobBuilder,
    make_books,
    make_pod,
    make_quota,
    make_ray_pod,
    make_raycluster,
    make_rayjob,
    make_submitter_job,
    make_tree,
)

JOB = JobInfo.from_rayjob(make_rayjob("a", "video").head(cpu="4").workers(1, cpu="4").obj())
CLUSTER = make_raycluster("a-x1y2z", "video", job_uid=JOB.uid)
SUBMITTER = make_submitter_job("a", "video", job_uid=JOB.uid)
OTHER_CLUSTER = make_raycluster("b-q8r7s", "video")  # controlled by no job
FOREIGN_CLUSTER = make_raycluster("a-x1y2z", "text", job_uid=JOB.uid)  # same job uid, another namespace


def ray_pod(name: str, node_type: str = "worker", *, cluster: Obj = CLUSTER,
            created: str = "2025-01-10T01:00:00Z") -> PodInfo:
    """A bound Ray pod of ``cluster`` (workers in the job's one group), created at ``created``."""
    group = "small-group" if node_type == "worker" else None
    pod = make_ray_pod(name, cluster, node_type, group).node("n1").set("metadata.creationTimestamp", created)
    return PodInfo.from_pod(pod.obj())


HEAD = ray_pod("a-x1y2z-head", "head")
WORKER = ray_pod("a-x1y2z-w1")
EXTRA = ray_pod("a-x1y2z-w2", created="2025-01-10T01:05:00Z")  # beyond the one worker admitted
SUBMITTER_POD = PodInfo.from_pod(make_pod("a-sub", "video", cpu="500m").label(keys.JOB_NAME_LABEL, "a")
                                 .owned_by(SUBMITTER).node("n1").obj())
TERMINATING_HEAD = PodInfo.from_pod(make_ray_pod("a-x1y2z-head", CLUSTER, "head").node("n1").deleting().obj())
SPOOFED = PodInfo.from_pod(make_pod("sneaky", "video", cpu="4").ray("a-x1y2z", "worker", "small-group")
                           .node("n1").obj())
PLAIN = PodInfo.from_pod(make_pod("plain", "video", cpu="1").node("n1").obj())
PENDING_PLAIN = PodInfo.from_pod(make_pod("waiting", "video", cpu="1").obj())
FINISHED_PLAIN = PodInfo.from_pod(make_pod("done", "video", cpu="1").node("n1").phase("Succeeded").obj())
ELSEWHERE = PodInfo.from_pod(make_pod("free", "elsewhere", cpu="1").node("n1").obj())


def admitted(*pods: PodInfo) -> BooksBuilder:
    """The job admitted (its claim held) with these pods, its cluster and submitter known, video bound."""
    return make_books("video").add_parent(CLUSTER).add_parent(SUBMITTER).job(JOB, list(pods))


@pytest.mark.parametrize(
    ("pod", "books", "expected"),
    [
        pytest.param(HEAD, admitted(HEAD, WORKER),
                     PodAccount(pod_uid=HEAD.uid, job_uid=JOB.uid, ownership=Ownership.OWNED, role=("head", ""),
                                charge="covered", reason=ChargeReason.COVERED),
                     id="the head of an admitted job is covered by its reservation"),
        pytest.param(EXTRA, admitted(HEAD, WORKER, EXTRA),
                     PodAccount(pod_uid=EXTRA.uid, job_uid=JOB.uid, ownership=Ownership.OWNED,
                                role=("worker", "small-group"), charge="growth", reason=ChargeReason.GROWTH_BOUND,
                                growth_of=JOB.uid),
                     id="a bound worker beyond the admitted count is growth, charged as its own pod claim"),
        pytest.param(PodInfo.from_pod(make_ray_pod("a-x1y2z-w3", CLUSTER, "worker", "small-group").obj()),
                     admitted(HEAD, WORKER),
                     PodAccount(pod_uid="uid-video-a-x1y2z-w3", job_uid=JOB.uid, ownership=Ownership.OWNED,
                                role=("worker", "small-group"), charge="growth",
                                reason=ChargeReason.GROWTH_PENDING, growth_of=JOB.uid),
                     id="a pending worker beyond the admitted count is growth, checked at filter and bind"),
        pytest.param(TERMINATING_HEAD, admitted(TERMINATING_HEAD),
                     PodAccount(pod_uid=TERMINATING_HEAD.uid, job_uid=JOB.uid, ownership=Ownership.OWNED,
                                role=("head", ""), charge="covered", reason=ChargeReason.COVERED),
                     id="a terminating pod of a suspended job keeps its place while its claim drains"),
        pytest.param(SUBMITTER_POD, admitted(HEAD, SUBMITTER_POD),
                     PodAccount(pod_uid=SUBMITTER_POD.uid, job_uid=JOB.uid, ownership=Ownership.OWNED,
                                role=("submitter", ""), charge="covered", reason=ChargeReason.COVERED),
                     id="the submitter's pod, controlled by a batch Job the RayJob controls, is covered"),
        pytest.param(SPOOFED, admitted(HEAD, WORKER),
                     PodAccount(pod_uid=SPOOFED.uid, job_uid=None, ownership=Ownership.NO_CONTROLLER, role=None,
                                charge="own-claim", reason=ChargeReason.OWN_CLAIM),
                     id="a ray.io/cluster label alone never makes a pod part of a job"),
        pytest.param(WORKER, make_books("video").add_parent(CLUSTER, deleted=True).job(JOB, [HEAD, WORKER]),
                     PodAccount(pod_uid=WORKER.uid, job_uid=JOB.uid, ownership=Ownership.OWNED,
                                role=("worker", "small-group"), charge="covered", reason=ChargeReason.COVERED),
                     id="a pod of a deleted RayCluster is still its job's until it is gone"),
        pytest.param(WORKER, make_books("video").job(JOB, [HEAD, WORKER]),
                     PodAccount(pod_uid=WORKER.uid, job_uid=None, ownership=Ownership.UNKNOWN_PARENT, role=None,
                                charge="own-claim", reason=ChargeReason.OWN_CLAIM),
                     id="a pod of a RayCluster nobody knows of belongs to no job"),
        pytest.param(ray_pod("b-q8r7s-head", "head", cluster=OTHER_CLUSTER), admitted().add_parent(OTHER_CLUSTER),
                     PodAccount(pod_uid="uid-video-b-q8r7s-head", job_uid=None, ownership=Ownership.NO_JOB,
                                role=None, charge="own-claim", reason=ChargeReason.OWN_CLAIM),
                     id="a pod of a RayCluster no job controls is a pod claim of its own"),
        pytest.param(ray_pod("a-x1y2z-head", "head", cluster=FOREIGN_CLUSTER), admitted().add_parent(FOREIGN_CLUSTER),
                     PodAccount(pod_uid="uid-text-a-x1y2z-head", job_uid=None, ownership=Ownership.OTHER_NAMESPACE,
                                role=None, charge="not-charged", reason=ChargeReason.UNBOUND_NAMESPACE),
                     id="a job never owns a pod of another namespace"),
        pytest.param(PLAIN, admitted(),
                     PodAccount(pod_uid=PLAIN.uid, job_uid=None, ownership=Ownership.NO_CONTROLLER, role=None,
                                charge="own-claim", reason=ChargeReason.OWN_CLAIM),
                     id="a bound pod of no job in a bound namespace is charged as its own claim"),
        pytest.param(PENDING_PLAIN, admitted(),
                     PodAccount(pod_uid=PENDING_PLAIN.uid, job_uid=None, ownership=Ownership.NO_CONTROLLER,
                                role=None, charge="not-charged", reason=ChargeReason.PENDING),
                     id="a pending pod of no job is not charged until it binds"),
        pytest.param(FINISHED_PLAIN, admitted(),
                     PodAccount(pod_uid=FINISHED_PLAIN.uid, job_uid=None, ownership=Ownership.NO_CONTROLLER,
                                role=None, charge="not-charged", reason=ChargeReason.TERMINAL),
                     id="a finished pod holds nothing"),
        pytest.param(ELSEWHERE, admitted(),
                     PodAccount(pod_uid=ELSEWHERE.uid, job_uid=None, ownership=Ownership.NO_CONTROLLER, role=None,
                                charge="not-charged", reason=ChargeReason.UNBOUND_NAMESPACE),
                     id="a pod of a namespace no leaf binds is not charged"),
        pytest.param(HEAD, make_books("video").add_parent(CLUSTER).job(JOB, [HEAD], claimed=False),
                     PodAccount(pod_uid=HEAD.uid, job_uid=JOB.uid, ownership=Ownership.OWNED, role=("head", ""),
                                charge="own-claim", reason=ChargeReason.OWN_CLAIM),
                     id="a pod of a job that holds no claim (it bypassed the queue) is charged on its own"),
    ],
)
def test_pod_account(pod: PodInfo, books: BooksBuilder, expected: PodAccount) -> None:
    account = account_pod(pod, books)
    assert account == expected
    assert account.claimed is (account.charge == "own-claim" or account.reason is ChargeReason.GROWTH_BOUND)


def test_a_pod_being_bound_by_the_extender_counts_as_placed() -> None:
    """Assumed binds are placed: a growth pod is charged from its bind on, before the watch shows it bound."""
    pending = PodInfo.from_pod(make_ray_pod("w9", CLUSTER, "worker", "small-group").obj())
    books = admitted(HEAD, WORKER).assumed(pending.uid)
    account = account_pod(pending, books)
    assert (account.charge, account.reason, account.claimed) == ("growth", ChargeReason.GROWTH_BOUND, True)


def test_uncovered_request_sums_the_pending_uncovered_members_of_a_gang() -> None:
    """A gang binds together: placing one uncovered member adds every pending uncovered member's request, never a
    covered, bound, finished or terminating one's."""
    def member(name: str) -> PodInfo:
        return PodInfo.from_pod(make_pod(name, "video", cpu="2").gang("g").obj())

    pods = [member("g0"), member("g1"), PodInfo.from_pod(make_pod("g2", "video", cpu="2").gang("g").node("n1").obj()),
            PodInfo.from_pod(make_pod("g3", "video", cpu="2").gang("g").deleting().obj())]
    books = make_books("video")
    assert uncovered_request(pods[0], pods, books) == Resources({"cpu": 4000})
    assert uncovered_request(PLAIN, [PLAIN], books) == PLAIN.request


# --- the claim-hold rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "managed_", "claimed", "dequeued", "pods_remain", "holds"),
    [
        pytest.param(JobState.ADMITTED, True, False, True, False, True, id="a managed admitted job takes its claim"),
        pytest.param(JobState.REQUEUE, True, True, True, True, True,
                     id="a job suspended by someone keeps its claim until the controller requeues it"),
        pytest.param(JobState.ADMITTED, False, True, True, False, True,
                     id="an admitted job whose namespace lost its leaf keeps what it holds"),
        pytest.param(JobState.ADMITTED, False, False, True, True, False,
                     id="an unmanaged job never takes a claim"),
        pytest.param(JobState.FINISHED, True, True, True, True, True,
                     id="a finished job holds its claim while its pods remain"),
        pytest.param(JobState.FINISHED, True, True, True, False, False,
                     id="a finished job's claim goes with its last pod"),
        pytest.param(JobState.DELETING, False, True, False, True, True,
                     id="a deleted job's claim drains with its pods"),
        pytest.param(JobState.DELETING, True, False, True, True, True,
                     id="a managed dequeued job's pods seen after its deletion take the claim until they go"),
        pytest.param(JobState.WAITING, True, False, False, True, False,
                     id="a waiting job holds nothing even with pods left over"),
        pytest.param(JobState.RUNNING_UNQUEUED, True, False, False, True, False,
                     id="a job that bypassed the queue holds no claim: its pods are pod claims"),
    ],
)
def test_holds_claim(state: JobState, managed_: bool, claimed: bool, dequeued: bool, pods_remain: bool,
                     holds: bool) -> None:
    assert holds_claim(state, managed=managed_, claimed=claimed, dequeued=dequeued, pods_remain=pods_remain) is holds


# --- the job lifecycle -------------------------------------------------------------------------------------


STAMP = "2025-01-10 01:00:00.000000000 +0000 UTC"


@pytest.mark.parametrize(
    ("job", "present", "dequeued", "suspended", "state"),
    [
        pytest.param(make_rayjob("j", "video").enqueued(STAMP), True, False, True, JobState.WAITING,
                     id="suspended without a dequeue stamp: waiting"),
        pytest.param(make_rayjob("j", "video").enqueued(STAMP), True, True, False, JobState.ADMITTED,
                     id="dequeued and running: admitted"),
        pytest.param(make_rayjob("j", "video").enqueued(STAMP), True, True, True, JobState.REQUEUE,
                     id="dequeued but suspended by someone: to be requeued"),
        pytest.param(make_rayjob("j", "video").enqueued(STAMP), True, False, False, JobState.RUNNING_UNQUEUED,
                     id="running without a dequeue stamp: outside the queue"),
        pytest.param(make_rayjob("j", "video").status("Complete", "SUCCEEDED"), True, True, False, JobState.FINISHED,
                     id="KubeRay says it completed: finished"),
        pytest.param(make_rayjob("j", "video").status("Complete", "SUCCEEDED"), False, True, False,
                     JobState.DELETING, id="deleted, even once finished: deleting"),
        pytest.param(make_rayjob("j", "video").deleting(), True, True, False, JobState.DELETING,
                     id="a deletionTimestamp: deleting"),
    ],
)
def test_lifecycle(job: RayJobBuilder, present: bool, dequeued: bool, suspended: bool, state: JobState) -> None:
    info = JobInfo.from_rayjob(job.obj())
    assert lifecycle(info, present=present, dequeued=dequeued, suspended=suspended) is state


def test_a_job_is_managed_only_with_its_namespace_bound_and_the_enqueue_stamp() -> None:
    stamped = JobInfo.from_rayjob(make_rayjob("j", "video").enqueued(STAMP).obj())
    unstamped = JobInfo.from_rayjob(make_rayjob("j", "video").obj())
    assert managed(stamped, bound=True)
    assert not managed(stamped, bound=False)
    assert not managed(unstamped, bound=True)


def test_an_admitted_job_with_a_preemption_notice_is_releasing() -> None:
    noticed = JobInfo.from_rayjob(make_rayjob("j", "video").annotate(keys.PREEMPTION_NOTICE, "{}").obj())
    assert not releasing(JOB, JobState.ADMITTED)
    assert releasing(noticed, JobState.ADMITTED)
    assert releasing(JOB, JobState.FINISHED)


# --- the verbs' pod quota verdicts (common.pod_quota) -------------------------------------------------------

TREE = make_tree(make_quota("root", make_quota("video", min={"cpu": "4"}, max={"cpu": "8"}), min={"cpu": "4"},
                           max={"cpu": "8"}))
VIDEO = TREE.leaf_for_namespace("video")


def test_a_covered_pod_is_admitted_without_asking_the_ledger() -> None:
    account = account_pod(HEAD, admitted(HEAD, WORKER))

    def never() -> Resources:
        raise AssertionError("a covered pod's request is never summed")

    verdict = quota_verdict(HEAD, account, leaf=VIDEO, ledger=Ledger(TREE, None), request=never)
    assert (bool(verdict), verdict.rule, verdict.refusal, verdict.ledger_asked) == (True, "covered", None, False)


def test_a_pod_outside_every_quota_is_admitted() -> None:
    verdict = quota_verdict(ELSEWHERE, None, leaf=None, ledger=Ledger(TREE, None), request=lambda: ELSEWHERE.request)
    assert (bool(verdict), verdict.rule) == (True, "no-quota")


def test_a_pod_over_its_quota_is_refused_with_the_ledgers_numbers_and_growth_named() -> None:
    account = account_pod(EXTRA, admitted(HEAD, WORKER, EXTRA))
    verdict = quota_verdict(EXTRA, account, leaf=VIDEO, ledger=Ledger(TREE, None),
                            request=lambda: Resources({"cpu": 9000}))
    assert not verdict and verdict.rule == "over-quota" and verdict.growth_of == JOB.uid
    assert verdict.refusal is not None and "root/video" in verdict.refusal and "max 8" in verdict.refusal


def test_eviction_refusal_protects_covered_pods_and_quotas_within_their_min() -> None:
    ledger = Ledger(TREE, None)
    low = PodInfo.from_pod(make_pod("low", "video", cpu="1").node("n1").priority(1).obj())
    high = PodInfo.from_pod(make_pod("high", "video", cpu="1").priority(10).obj())
    whole = eviction_refusal(HEAD, high, covering_job=JOB, victim_leaf=VIDEO, preemptor_leaf=VIDEO, ledger=ledger)
    assert whole is not None and "reclaimed whole" in whole and JOB.key in whole
    assert eviction_refusal(low, high, covering_job=None, victim_leaf=VIDEO, preemptor_leaf=VIDEO, ledger=ledger) is None
    within = eviction_refusal(low, high, covering_job=None, victim_leaf=VIDEO, preemptor_leaf=None, ledger=ledger)
    assert within is not None and "within its min" in within


def test_both_converters_read_a_cluster_spec_with_the_same_reader() -> None:
    """A RayJob's rayClusterSpec and the same spec as a bare RayCluster give the same pod sets (head, each worker
    group, the autoscaler's sidecar); only the RayJob has a submitter."""
    job = make_rayjob("j", "video").head(cpu="2").workers(2, cpu="4", group="g", max_replicas=3).set(
        "spec.rayClusterSpec.enableInTreeAutoscaling", True)
    as_job, as_cluster = JobInfo.from_rayjob(job.obj()), JobInfo.from_raycluster(job.as_raycluster())
    assert as_job.head_request == as_cluster.head_request and as_job.worker_groups == as_cluster.worker_groups
    assert as_job.autoscaling and as_cluster.autoscaling
    assert as_job.request == as_cluster.request + as_job.submitter_request and not as_cluster.submitter_request

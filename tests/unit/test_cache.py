"""The controller cache: job states, job and pod claims by UID, draining, provisional marks, replays, tree."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import keys
from common.accounting import JobState
from common.clock import FakeClock
from common.gotime import format_go
from common.resources import Resources
from extender.cache import Cache
from tests.unit.builders import (
    PodBuilder,
    RayJobBuilder,
    make_pod,
    make_raycluster,
    make_rayjob,
    make_submitter_job,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
T0 = 1_736_472_984_000_000_000  # 2025-01-10 01:36:24 UTC
VIDEO = "root/algorithm/video"


def seed_tree() -> dict[str, Any]:
    docs = yaml.safe_load_all((EXAMPLES / "elasticquotatree.yaml").read_text())
    return next(d for d in docs if d and d.get("kind") == keys.QUOTA_TREE_KIND)


def stamp(seconds: float) -> str:
    return format_go(T0 + int(seconds * 1e9))


def job(name: str, ns: str = "video", *, cpu: str = "4", at: float = 1.0, rv: str = "1") -> RayJobBuilder:
    """A queued RayJob (HTTPMode: no submitter, so the request is exactly the head's)."""
    return (
        make_rayjob(name, ns)
        .submission_mode("HTTPMode")
        .head(cpu=cpu, memory="1Gi")
        .enqueued(stamp(at))
        .set("metadata.resourceVersion", rv)
    )


def cache_with_tree() -> Cache:
    cache = Cache(FakeClock())
    cache.on_tree("ADDED", seed_tree())
    return cache


def node(name: str, cpu: str = "64", memory: str = "256Gi") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


# --- job states --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "state"),
    [
        pytest.param(
            job("a").obj(), JobState.WAITING, id="a suspended job with only the enqueue stamp waits"
        ),
        pytest.param(
            job("a").suspend(False).dequeued(stamp(2)).obj(),
            JobState.ADMITTED,
            id="a job with the dequeue stamp and not suspended is admitted",
        ),
        pytest.param(
            job("a").dequeued(stamp(2)).obj(),
            JobState.REQUEUE,
            id="an admitted job someone suspended must be requeued",
        ),
        pytest.param(
            job("a").suspend(False).dequeued(stamp(2)).status("Complete", "SUCCEEDED").obj(),
            JobState.FINISHED,
            id="a completed job is finished",
        ),
        pytest.param(
            job("a").suspend(False).obj(),
            JobState.RUNNING_UNQUEUED,
            id="a running job without a dequeue stamp bypassed the queue",
        ),
        pytest.param(job("a").deleting().obj(), JobState.DELETING, id="a job being deleted is deleting"),
        pytest.param(
            make_rayjob("a", "video").head(cpu="4").obj(),
            JobState.UNMANAGED,
            id="a job without the enqueue stamp is not managed",
        ),
        pytest.param(
            job("a", "elsewhere").obj(),
            JobState.UNMANAGED,
            id="a job in a namespace bound to no leaf is not managed",
        ),
    ],
)
def test_job_state(obj: dict[str, Any], state: JobState) -> None:
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", obj)
    assert cache.state(obj["metadata"]["uid"]) is state


def test_waiting_job_is_a_queue_item_with_its_priority_enqueue_time_and_request() -> None:
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", job("a", cpu="3", at=5).priority(7).obj())
    item = cache.queues.get("uid-video-a")
    assert item is not None
    assert (item.quota, item.priority, item.enqueue_ns) == (VIDEO, 7, T0 + 5 * 10**9)
    assert item.request == Resources({"cpu": 3000, "memory": 2**30})
    assert cache.ledger is not None and "uid-video-a" not in cache.ledger


def test_quota_label_of_another_leaf_is_charged_to_the_namespace_leaf() -> None:
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", job("a").quota("algorithm-text").suspend(False).dequeued(stamp(2)).obj())
    assert cache.ledger is not None
    claim = cache.ledger.claim("uid-video-a")
    assert claim is not None and claim.quota == VIDEO


def test_admitted_job_holds_a_job_claim() -> None:
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", job("a", cpu="3").priority(4).suspend(False).dequeued(stamp(2)).obj())
    assert cache.ledger is not None
    claim = cache.ledger.claim("uid-video-a")
    assert claim is not None
    assert (claim.kind, claim.quota, claim.priority, claim.preemptible) == ("job", VIDEO, 4, True)
    assert claim.admitted_order == T0 + 2 * 10**9
    assert cache.ledger.usage(VIDEO) == Resources({"cpu": 3000, "memory": 2**30})
    assert "uid-video-a" not in cache.queues


# --- pods --------------------------------------------------------------------------------------------


def admitted(name: str = "a", *, cluster: str | None = None) -> RayJobBuilder:
    b = job(name, cpu="4").suspend(False).dequeued(stamp(2))
    if cluster:
        b.status("Running", "RUNNING", cluster)
    return b


CLUSTER = make_raycluster("a-x1y2z", "video", job_uid="uid-video-a")  # KubeRay 1.4+: <job>-<5 chars>
SUBMITTER = make_submitter_job("a", "video", job_uid="uid-video-a")


def ray_pod(
    name: str, node_type: str = "worker", *, cpu: str = "4", memory: str = "1Gi", cluster: dict[str, Any] = CLUSTER
) -> PodBuilder:
    """A Ray pod as KubeRay makes it: the cluster's labels and a controller ownerReference to the cluster."""
    meta = cluster["metadata"]
    return make_pod(name, meta["namespace"], cpu=cpu, memory=memory).ray(meta["name"], node_type).owned_by(cluster)


@pytest.mark.parametrize(
    ("parents", "pod", "covered"),
    [
        pytest.param([CLUSTER], ray_pod("h", "head").node("n1").obj(), True,
                     id="a pod controlled by the job's RayCluster is the job's"),
        pytest.param([SUBMITTER], make_pod("s", "video", cpu="1").label(keys.JOB_NAME_LABEL, "a")
                     .owned_by(SUBMITTER).node("n1").obj(), False,
                     id="a submitter pod of a job admitted without one (HTTPMode) is growth, checked as a pod"),
        pytest.param([CLUSTER], make_pod("h", "video", cpu="4").ray("a-x1y2z", "head").node("n1").obj(), False,
                     id="a pod that only carries the job's ray.io/cluster label is nobody's"),
        pytest.param([], make_pod("s", "video", cpu="1").label(keys.JOB_NAME_LABEL, "a").node("n1").obj(), False,
                     id="a pod that only carries the job's job-name label is nobody's"),
        pytest.param([make_raycluster("a-x1y2z", "video")], ray_pod("h", "head", cluster=make_raycluster(
                     "a-x1y2z", "video")).node("n1").obj(), False,
                     id="a pod of a RayCluster no RayJob controls is nobody's"),
        pytest.param([make_raycluster("a-x1y2z", "other", job_uid="uid-video-a")],
                     make_pod("h", "video", cpu="4").owned_by(make_raycluster("a-x1y2z", "other",
                     job_uid="uid-video-a")).node("n1").obj(), False,
                     id="an ownerReference to a RayCluster of another namespace counts for nothing"),
        pytest.param([CLUSTER], make_pod("p", "video", cpu="4").node("n1").obj(), False, id="a plain pod is nobody's"),
    ],
)
def test_pods_of_an_admitted_job_are_covered_by_its_claim(
    parents: list[dict[str, Any]], pod: dict[str, Any], covered: bool
) -> None:
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", admitted().obj())
    for parent in parents:
        (cache.on_raycluster if parent["kind"] == keys.RAYCLUSTER_KIND else cache.on_batch_job)("ADDED", parent)
    cache.on_pod("ADDED", pod)
    assert cache.ledger is not None
    uid = pod["metadata"]["uid"]
    assert (uid not in cache.ledger) is covered
    assert (cache.covering_job(uid) is not None) is covered
    expected = Resources({"cpu": 4000, "memory": 2**30})
    info = cache.pod(uid)
    assert info is not None
    if not covered:
        expected += info.request
    assert cache.ledger.usage(VIDEO) == expected


@pytest.mark.parametrize("order", ["pod, cluster, job", "cluster, pod, job", "job, pod, cluster", "pod, job, cluster"])
def test_ownership_resolves_whatever_order_the_watches_deliver(order: str) -> None:
    """The reflectors list kinds one after another: a pod may arrive before its RayCluster or its RayJob."""
    cache = cache_with_tree()
    steps = {
        "pod": lambda: cache.on_pod("ADDED", ray_pod("h", "head").node("n1").obj()),
        "cluster": lambda: cache.on_raycluster("ADDED", CLUSTER),
        "job": lambda: cache.on_rayjob("ADDED", admitted().obj()),
    }
    for step in order.split(", "):
        steps[step]()
    assert cache.ledger is not None and "uid-video-h" not in cache.ledger
    assert cache.covering_job("uid-video-h") is not None
    assert cache.ledger.usage(VIDEO) == Resources({"cpu": 4000, "memory": 2**30})


@pytest.mark.parametrize(
    ("pod", "claimed"),
    [
        pytest.param(
            make_pod("p", "video", cpu="2").obj(), False,
            id="a pending pod is not charged: it could never run, yet would block every ancestor quota",
        ),
        pytest.param(
            make_pod("p", "video", cpu="2").node("n1").phase("Running").obj(),
            True,
            id="a running pod in a bound namespace counts",
        ),
        pytest.param(
            make_pod("p", "video", cpu="2").phase("Succeeded").obj(),
            False,
            id="a terminal pod does not count",
        ),
        pytest.param(
            make_pod("p", "elsewhere", cpu="2").node("n1").obj(),
            False,
            id="a pod in an unbound namespace has no quota claim",
        ),
    ],
)
def test_pod_claims(pod: dict[str, Any], claimed: bool) -> None:
    cache = cache_with_tree()
    cache.on_pod("ADDED", pod)
    assert cache.ledger is not None
    claim = cache.ledger.claim(pod["metadata"]["uid"])
    assert (claim is not None) is claimed
    if claim is not None:
        assert (claim.kind, claim.quota, claim.request) == ("pod", VIDEO, Resources({"cpu": 2000}))


def test_pods_of_every_namespace_count_on_their_node() -> None:
    cache = cache_with_tree()
    cache.on_node("ADDED", node("n1"))
    cache.on_pod("ADDED", make_pod("p", "elsewhere", cpu="2").node("n1").obj())
    assert cache.nodes.used("n1") == Resources({"cpu": 2000, "pods": 1})
    assert cache.ledger is not None and cache.ledger.capacity == Resources(
        {"cpu": 64000, "memory": 256 * 2**30, "pods": 110}
    )


# --- draining ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ending",
    [
        pytest.param(
            lambda b: (
                "MODIFIED",
                b.status("Complete", "SUCCEEDED").set("metadata.resourceVersion", "2").obj(),
            ),
            id="a finished job keeps its claim until its pods are gone",
        ),
        pytest.param(
            lambda b: ("DELETED", b.obj()),
            id="a deleted job keeps its claim until its pods are gone",
        ),
        pytest.param(
            lambda b: (
                "MODIFIED",
                b.suspend(True)
                .set("metadata.annotations", {keys.ENQUEUE_TIMESTAMP: stamp(1)})
                .set("metadata.resourceVersion", "2")
                .obj(),
            ),
            id="a suspended and requeued job keeps its claim until its pods are gone",
        ),
    ],
)
def test_claim_drains_with_the_pods(ending: Any) -> None:
    cache = cache_with_tree()
    builder = admitted()
    cache.on_rayjob("ADDED", builder.obj())
    cache.on_raycluster("ADDED", CLUSTER)
    head = ray_pod("h", "head").node("n1").phase("Running").obj()
    worker = ray_pod("w").node("n1").phase("Running").obj()
    cache.on_pod("ADDED", head)
    cache.on_pod("ADDED", worker)
    event, obj = ending(copy.deepcopy(builder))
    cache.on_rayjob(event, obj)
    cache.on_raycluster("DELETED", CLUSTER)  # KubeRay's Suspending waits only for the objects to be gone
    assert cache.ledger is not None and "uid-video-a" in cache.ledger
    assert cache.releasing("uid-video-a")
    # the job reserved its head (4 CPU / 1Gi); the extra worker pod is bound too: the claim covers what is bound
    assert cache.ledger.usage(VIDEO) == Resources({"cpu": 8000, "memory": 2 * 2**30})
    cache.on_pod("MODIFIED", ray_pod("h", "head").node("n1").phase("Running").deleting().obj())  # terminating
    assert "uid-video-a" in cache.ledger and "uid-video-h" not in cache.ledger, "still the job's, charged once"
    cache.on_pod("DELETED", head)
    assert "uid-video-a" in cache.ledger
    cache.on_pod("MODIFIED", ray_pod("w").phase("Failed").obj())
    assert "uid-video-a" not in cache.ledger
    assert cache.ledger.usage(VIDEO) == Resources()


def test_deleted_job_is_forgotten_once_drained() -> None:
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", admitted().obj())
    cache.on_raycluster("ADDED", CLUSTER)
    pod = ray_pod("h", "head").obj()
    cache.on_pod("ADDED", pod)
    cache.on_rayjob("DELETED", admitted().obj())
    cache.on_raycluster("DELETED", CLUSTER)
    assert cache.job("uid-video-a") is not None
    cache.on_pod("DELETED", pod)
    assert cache.job("uid-video-a") is None


def test_release_ends_every_backoff() -> None:
    clock = FakeClock()
    cache = Cache(clock)
    cache.on_tree("ADDED", seed_tree())
    cache.on_rayjob("ADDED", job("w", cpu="4").obj())
    cache.queues.schedule(lambda item: _Refuse(), 0)
    assert cache.queues.in_backoff("uid-video-w")
    cache.on_pod("ADDED", make_pod("p", "video", cpu="1").node("n1").obj())
    cache.ensure_waiting_queued()  # what the next reconcile does first
    assert cache.queues.in_backoff("uid-video-w")  # usage grew: nothing to retry
    cache.on_pod("DELETED", make_pod("p", "video", cpu="1").node("n1").obj())
    assert cache.queues.in_backoff("uid-video-w"), "settled once at the next reconcile, not per event"
    cache.ensure_waiting_queued()
    assert not cache.queues.in_backoff("uid-video-w")


class _Refuse:
    reason = "no"

    def __bool__(self) -> bool:
        return False


# --- idempotency and provisional marks ---------------------------------------------------------------


def test_replayed_events_never_count_twice() -> None:
    cache = cache_with_tree()
    obj = admitted().obj()
    pod = make_pod("p", "video", cpu="2").node("n1").obj()
    for _ in range(2):
        cache.on_rayjob("ADDED", copy.deepcopy(obj))
        cache.on_pod("ADDED", copy.deepcopy(pod))
        generation = cache.generation
    cache.on_rayjob("MODIFIED", copy.deepcopy(obj))
    cache.on_pod("MODIFIED", copy.deepcopy(pod))
    assert cache.generation == generation
    assert cache.ledger is not None
    assert cache.ledger.usage(VIDEO) == Resources({"cpu": 6000, "memory": 2**30})


@pytest.mark.parametrize(
    "kind",
    ["rayjob", "pod", "node", "priority_class", "queue", "queue_unit", "tree"],
)
def test_deleting_an_unknown_object_is_a_no_op(kind: str) -> None:
    cache = cache_with_tree()
    generation = cache.generation
    obj = {"metadata": {"name": "ghost", "namespace": "kube-queue", "uid": "uid-ghost"}}
    getattr(cache, f"on_{kind}")("DELETED", obj)
    assert cache.generation == generation
    assert cache.tree is not None


def test_mark_dequeued_survives_a_stale_event_until_the_watch_confirms() -> None:
    cache = cache_with_tree()
    waiting = job("a").obj()
    cache.on_rayjob("ADDED", waiting)
    cache.mark_dequeued("uid-video-a", T0 + 9)
    assert cache.state("uid-video-a") is JobState.ADMITTED
    assert cache.ledger is not None and "uid-video-a" in cache.ledger
    cache.on_rayjob("MODIFIED", job("a", rv="1").label("x", "stale").obj())  # older than our patch
    assert cache.state("uid-video-a") is JobState.ADMITTED
    assert "uid-video-a" not in cache.queues
    cache.on_rayjob("MODIFIED", job("a", rv="2").suspend(False).dequeued(format_go(T0 + 9)).obj())
    assert cache.state("uid-video-a") is JobState.ADMITTED
    assert cache.dequeue_ns("uid-video-a") == T0 + 9


def test_mark_requeued_survives_a_stale_event_until_the_watch_confirms() -> None:
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", admitted().obj())
    cache.mark_requeued("uid-video-a")
    assert cache.state("uid-video-a") is JobState.WAITING
    cache.on_rayjob("MODIFIED", admitted().label("x", "stale").obj())
    assert cache.state("uid-video-a") is JobState.WAITING
    assert cache.ledger is not None and "uid-video-a" not in cache.ledger  # no pods: nothing to drain


def test_dirty_and_generation_follow_changes() -> None:
    cache = Cache(FakeClock())
    seen = [cache.dirty]
    cache.on_tree("ADDED", seed_tree())
    seen.append(cache.dirty)
    cache.clear_dirty()
    cache.on_tree("MODIFIED", seed_tree())
    seen.append(cache.dirty)
    assert seen == [False, True, False]


# --- tree, priority classes, queues ------------------------------------------------------------------


def test_invalid_tree_keeps_the_last_valid_one_and_remembers_why() -> None:
    cache = cache_with_tree()
    bad = seed_tree()
    bad["spec"]["root"]["children"][0]["min"]["cpu"] = 500
    cache.on_tree("MODIFIED", bad)
    assert cache.tree is not None and VIDEO in cache.tree
    assert cache.tree_problem is not None and "spec.root.children[0].min.cpu" in cache.tree_problem


def test_only_the_kube_system_tree_counts() -> None:
    cache = Cache(FakeClock())
    other = seed_tree()
    other["metadata"]["namespace"] = "default"
    cache.on_tree("ADDED", other)
    assert cache.tree is None and cache.ledger is None


def test_tree_change_rehomes_claims_and_queue_items() -> None:
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", admitted().obj())
    cache.on_rayjob("ADDED", job("w", "algorithm-text").obj())
    moved = seed_tree()
    algorithm = moved["spec"]["root"]["children"][0]
    algorithm["children"][0]["namespaces"] = []
    algorithm["children"][1]["namespaces"] = ["algorithm-text", "video"]
    cache.on_tree("MODIFIED", moved)
    assert cache.ledger is not None
    claim = cache.ledger.claim("uid-video-a")
    assert claim is not None and claim.quota == "root/algorithm/text"
    item = cache.queues.get("uid-algorithm-text-w")
    assert item is not None and item.quota == "root/algorithm/text"


def test_priority_class_value_sets_the_priority_and_follows_changes() -> None:
    cache = cache_with_tree()
    cache.on_priority_class("ADDED", {"metadata": {"name": "high"}, "value": 100})
    cache.on_rayjob("ADDED", job("a").head(cpu="4", priority_class="high").obj())
    item = cache.queues.get("uid-video-a")
    assert item is not None and item.priority == 100
    cache.on_priority_class("MODIFIED", {"metadata": {"name": "high"}, "value": 200})
    item = cache.queues.get("uid-video-a")
    assert item is not None and item.priority == 200


def queue_obj(
    name: str, quota: str, policy: str = "Round", created: str = "2025-01-10T01:00:00Z"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": keys.QUEUE_NAMESPACE,
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "labels": {keys.CREATED_BY_KUBEQUEUE: "true"},
            "annotations": {keys.QUOTA_FULLNAME: quota},
        },
        "spec": {"queuePolicy": policy},
    }


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param("Block", "Block", id="a Queue's Block policy applies to its leaf"),
        pytest.param("Priority", "Priority", id="a Queue's Priority policy applies to its leaf"),
        pytest.param("Sideways", "Round", id="an unknown policy falls back to Round and is reported"),
    ],
)
def test_queue_policy_comes_from_the_queue_object(policy: str, expected: str) -> None:
    cache = cache_with_tree()
    cache.on_queue("ADDED", queue_obj("root-algorithm-video-abcde", VIDEO, policy))
    assert cache.queues.policy(VIDEO) == expected
    assert ("Queue kube-queue/root-algorithm-video-abcde" in cache.problems) is (policy == "Sideways")
    cache.on_queue("DELETED", queue_obj("root-algorithm-video-abcde", VIDEO, policy))
    assert cache.queues.policy(VIDEO) == "Round"


def test_the_oldest_queue_of_a_leaf_is_kept() -> None:
    cache = cache_with_tree()
    cache.on_queue("ADDED", queue_obj("root-algorithm-video-new", VIDEO, "Block", "2025-01-10T02:00:00Z"))
    cache.on_queue("ADDED", queue_obj("root-algorithm-video-old", VIDEO, "Round", "2025-01-10T01:00:00Z"))
    kept = cache.queue_for(VIDEO)
    assert kept is not None and kept.name == "root-algorithm-video-old"
    assert cache.queues.policy(VIDEO) == "Round"


def test_a_tenant_cannot_block_sibling_quotas_with_pods_that_never_run() -> None:
    """Regression: pending pods used to be charged. A tenant in video could create pods asking for 1000 CPUs
    that no node can hold; charged to root/algorithm they pushed it over its max, and text's and intern's
    jobs could no longer be admitted. Only pods that are bound (or being bound by us) count."""
    cache = cache_with_tree()
    for i in range(5):
        cache.on_pod("ADDED", make_pod(f"hog{i}", "video", cpu="1000").obj())
    assert cache.ledger is not None
    assert cache.ledger.usage("root/algorithm") == {}


def test_a_pod_being_bound_counts_at_once_and_is_forgotten_if_the_binding_fails() -> None:
    cache = cache_with_tree()
    cache.on_pod("ADDED", make_pod("p", "video", cpu="2").obj())
    assert cache.ledger is not None
    cache.assume_bound("uid-video-p", "n1")
    assert cache.ledger.usage("root/algorithm/video") == {"cpu": 2000}
    cache.forget_assumed("uid-video-p")
    assert cache.ledger.usage("root/algorithm/video") == {}
    cache.assume_bound("uid-video-p", "n1")
    cache.on_pod("MODIFIED", make_pod("p", "video", cpu="2").node("n1").obj())
    assert cache.ledger.usage("root/algorithm/video") == {"cpu": 2000}, "the watch confirms: still counted once"


def test_gang_members_are_found_by_index_and_follow_relabels_and_deletes() -> None:
    cache = cache_with_tree()
    member = make_pod("m1", "algorithm-text", cpu="1").label(keys.POD_GROUP_NAME, "c1")
    cache.on_pod("ADDED", member.obj())
    cache.on_pod("ADDED", make_pod("m2", "algorithm-text", cpu="1").label(keys.POD_GROUP_NAME, "c1").obj())
    cache.on_pod("ADDED", make_pod("x", "algorithm-text", cpu="1").label(keys.POD_GROUP_NAME, "c2").obj())
    cache.on_pod("ADDED", make_pod("m3", "video", cpu="1").label(keys.POD_GROUP_NAME, "c1").obj())
    assert [p.name for p in cache.gang_members("algorithm-text", "c1")] == ["m1", "m2"]
    cache.on_pod("DELETED", member.obj())
    assert [p.name for p in cache.gang_members("algorithm-text", "c1")] == ["m2"]
    assert cache.gang_members("algorithm-text", "nope") == []


# --- the claim follows the pods: real requests, growth, retries ------------------------------------------


def test_the_claim_follows_the_real_request_of_the_job_s_pods() -> None:
    """Something we were not told of (a cluster's own mutating webhook, a LimitRange) made the head bigger
    than its template: once the pod exists, its request is the truth, bound or not."""
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", admitted().obj())
    cache.on_raycluster("ADDED", CLUSTER)
    assert cache.ledger is not None and cache.ledger.usage(VIDEO) == Resources({"cpu": 4000, "memory": 2**30})
    cache.on_pod("ADDED", ray_pod("h", "head", cpu="5", memory="2Gi").obj())
    assert cache.ledger.usage(VIDEO) == Resources({"cpu": 5000, "memory": 2 * 2**30})


def test_the_submitter_pod_of_a_k8s_job_mode_job_is_covered() -> None:
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", admitted().submission_mode("K8sJobMode").obj())
    cache.on_batch_job("ADDED", SUBMITTER)
    cache.on_pod("ADDED", make_pod("s", "video", cpu="500m", memory="200Mi").owned_by(SUBMITTER).node("n1").obj())
    assert cache.covering_job("uid-video-s") is not None
    assert cache.ledger is not None and "uid-video-s" not in cache.ledger


def test_a_pod_beyond_the_reservation_is_growth_and_a_covered_one_is_not() -> None:
    """The job was admitted with its head alone: a worker of its cluster is growth, a pod claim once bound."""
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", admitted().obj())
    cache.on_raycluster("ADDED", CLUSTER)
    cache.on_pod("ADDED", ray_pod("h", "head").node("n1").obj())
    cache.on_pod("ADDED", ray_pod("w").obj())
    assert cache.covering_job("uid-video-h") is not None
    assert cache.covering_job("uid-video-w") is None
    assert cache.uncovered_request("uid-video-w") == Resources({"cpu": 4000, "memory": 2**30})
    assert cache.ledger is not None and "uid-video-w" not in cache.ledger, "pending: not charged yet"
    cache.on_pod("MODIFIED", ray_pod("w").node("n1").obj())
    claim = cache.ledger.claim("uid-video-w")
    assert claim is not None and claim.kind == "pod"
    assert cache.ledger.usage(VIDEO) == Resources({"cpu": 8000, "memory": 2 * 2**30})


def test_a_retried_job_s_new_pods_are_growth_while_its_old_ones_terminate() -> None:
    """KubeRay 1.7 Retrying/Suspending waits only for the RayCluster object to be gone, then makes a new
    cluster: the old pods, still terminating on their nodes, keep the job's places; the new head is growth
    until they are gone, then it takes its place. The job is charged once, for what is really there."""
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", admitted().obj())
    cache.on_raycluster("ADDED", CLUSTER)
    old_head = ray_pod("h", "head").node("n1").phase("Running").set("metadata.creationTimestamp", "2025-01-10T01:00:00Z")
    cache.on_pod("ADDED", old_head.obj())
    cache.on_raycluster("DELETED", CLUSTER)
    cache.on_pod("MODIFIED", old_head.deleting().obj())
    retry = make_raycluster("a-b7c8d", "video", job_uid="uid-video-a")
    cache.on_raycluster("ADDED", retry)
    new_head = ray_pod("h2", "head", cluster=retry).set("metadata.creationTimestamp", "2025-01-10T01:05:00Z")
    cache.on_pod("ADDED", new_head.obj())
    assert cache.ledger is not None
    assert cache.covering_job("uid-video-h") is not None, "the terminating head keeps its place"
    assert cache.covering_job("uid-video-h2") is None, "the new head is growth meanwhile"
    assert cache.ledger.usage(VIDEO) == Resources({"cpu": 4000, "memory": 2**30}), "charged once"
    cache.on_pod("DELETED", old_head.obj())
    assert cache.covering_job("uid-video-h2") is not None
    assert cache.ledger.usage(VIDEO) == Resources({"cpu": 4000, "memory": 2**30})


def test_an_uncovered_gang_member_is_checked_with_its_gang_s_other_pending_members() -> None:
    """Gang members bind together: the quota must hold all the pending uncovered ones, not one at a time."""
    cache = cache_with_tree()
    for name in ("g1", "g2", "g3"):
        cache.on_pod("ADDED", make_pod(name, "video", cpu="2").gang("g", 3).obj())
    cache.on_pod("MODIFIED", make_pod("g3", "video", cpu="2").gang("g", 3).node("n1").obj())
    assert cache.uncovered_request("uid-video-g1") == Resources({"cpu": 4000})


def test_after_a_restart_the_terminating_pods_of_a_vanished_cluster_are_still_charged() -> None:
    """A restarted controller never saw the RayCluster its pods belonged to (deleted meanwhile): it cannot
    know their job, so it charges them as its namespace's pods: once each, to the right leaf."""
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", job("a").obj())  # requeued by reclaim: waiting again, its old pods terminating
    cache.on_pod("ADDED", ray_pod("h", "head").node("n1").phase("Running").deleting().obj())
    assert cache.ledger is not None
    claim = cache.ledger.claim("uid-video-h")
    assert claim is not None and claim.kind == "pod"
    assert cache.ledger.usage(VIDEO) == Resources({"cpu": 4000, "memory": 2**30})


@pytest.mark.parametrize(("deployment", "suspendable"), [("Running", True), ("Initializing", True), ("Waiting", False)])
def test_a_job_kuberay_cannot_suspend_now_is_no_reclaim_candidate(deployment: str, suspendable: bool) -> None:
    cache = cache_with_tree()
    cache.on_rayjob("ADDED", admitted().status(deployment).obj())
    assert cache.ledger is not None
    claim = cache.ledger.claim("uid-video-a")
    assert claim is not None and claim.suspendable is suspendable

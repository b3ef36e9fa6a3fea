"""A bare RayCluster (no controller ownerReference: a tenant's interactive cluster, a notebook's) is queued as a
job of its own: its request, its claim and covered pods, its QueueUnit `<name>-rc-qu`, its dequeue and reclaim."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from common import keys
from common.accounting import JobState
from common.clock import FakeClock
from common.kuberay_additions import KubeRayAdditions
from common.rayjob import JobInfo
from common.resources import Resources
from extender.actions import Dequeue, EnsureQueueUnit, Event, JobRef, Plan, Suspend, UpdateQueueUnitStatus
from extender.cache import Cache
from extender.controller import _job_path
from tests.unit.builders import RayJobBuilder, container, make_pod, make_raycluster, make_rayjob
from tests.unit.test_reconcile import Loop, dequeued, job, stamp

CPU = "cpu"


def notebook(name: str = "nb", ns: str = "video", *, head: str = "2", workers: int = 2, cpu: str = "2",
             at: float = 1.0) -> RayJobBuilder:
    """A tenant's cluster as the webhook admitted it: suspended, with the enqueue stamp (built as a RayJob's
    cluster spec, then taken with ``as_raycluster``)."""
    return (make_rayjob(name, ns).head(cpu=head, memory="1Gi").workers(workers, cpu=cpu, memory="1Gi", group="w")
            .enqueued(stamp(at)).set("metadata.resourceVersion", "1"))


def cluster_pod(cluster: dict[str, Any], name: str, node_type: str = "worker", *, cpu: str = "2",
                created: str = "2025-01-10T01:40:00Z") -> dict[str, Any]:
    """A pod KubeRay made for the bare cluster: controlled by the RayCluster itself."""
    meta = cluster["metadata"]
    pod = make_pod(name, meta["namespace"], cpu=cpu, memory="1Gi").ray(meta["name"], node_type,
                                                                      "w" if node_type == "worker" else None)
    return pod.owned_by(cluster).node("n1").phase("Running").set("metadata.creationTimestamp", created).obj()


class ClusterLoop(Loop):
    """test_reconcile's in-memory API, delivering bare RayClusters through ``on_raycluster``."""

    def submit(self, obj: dict[str, Any]) -> str:
        uid = str(obj["metadata"]["uid"])
        self.jobs[uid] = obj
        self.deliver(uid)
        return uid

    def deliver(self, uid: str) -> None:
        obj = copy.deepcopy(self.jobs[uid])
        (self.cache.on_raycluster if obj["kind"] == keys.RAYCLUSTER_KIND else self.cache.on_rayjob)("MODIFIED", obj)


# --- the request ---------------------------------------------------------------------------------------------


def test_a_bare_cluster_requests_head_and_workers_with_what_kuberay_adds_and_no_submitter() -> None:
    obj = (notebook(workers=3).set("spec.rayClusterSpec.enableInTreeAutoscaling", True).gang()
           .head(cpu="2", memory="1Gi", priority_class="high").as_raycluster())
    info = JobInfo.from_raycluster(obj, priority_class_value=7)
    # head 2 + autoscaler 500m; the autoscaler makes it elastic: its workers' floor (minReplicas 0) is all it reserves
    assert info.request.get(CPU) == 2000 + 500 and info.elastic
    assert info.worker_groups[0].pod_request.get(CPU) == 2000  # each worker max(2, wait-gcs-ready 200m) = 2
    assert info.submitter_request == Resources()
    assert (info.kind, info.bare_cluster, info.suspended, info.finished) == (keys.RAYCLUSTER_KIND, True, True, False)
    assert (info.gang, info.min_available, info.priority, info.priority_class_name) == (True, 1, 7, "high")
    assert info.ray_cluster_name == "nb" and info.enqueue_ns is not None


def test_operator_sidecars_are_charged_to_a_bare_cluster_too() -> None:
    sidecar = KubeRayAdditions.from_operator(head_sidecars=[container("log", cpu="100m")],
                                             worker_sidecars=[container("metrics", cpu="50m")])
    info = JobInfo.from_raycluster(notebook(workers=2).as_raycluster(), additions=sidecar)
    assert info.request.get(CPU) == 2100 + 2 * 2050


def test_a_malformed_bare_cluster_names_every_field() -> None:
    obj = notebook().set("spec.rayClusterSpec.workerGroupSpecs[0].replicas", "two").as_raycluster()
    with pytest.raises(ValueError, match=r"spec\.workerGroupSpecs\[0\]\.replicas"):
        JobInfo.from_raycluster(obj)


# --- the cache -----------------------------------------------------------------------------------------------


def cache_of(*objects: dict[str, Any]) -> ClusterLoop:
    loop = ClusterLoop(Cache(FakeClock()))
    for obj in objects:
        loop.submit(obj)
    return loop


def test_a_suspended_bare_cluster_with_the_enqueue_stamp_waits_in_its_leaf() -> None:
    loop = cache_of(notebook().as_raycluster())
    assert loop.cache.state("uid-video-nb") is JobState.WAITING
    item = loop.cache.queue_item("uid-video-nb")
    assert item is not None and (item.quota, item.request.get(CPU)) == ("root/algorithm/video", 6000)


@pytest.mark.parametrize(
    "owner",
    [pytest.param(("RayJob", "uid-video-j"), id="a RayJob's cluster"),
     pytest.param(("RayService", "uid-video-svc"), id="a RayService's cluster")],
)
def test_a_cluster_with_a_controller_is_never_a_queued_job(owner: tuple[str, str]) -> None:
    obj = notebook().as_raycluster()
    obj["metadata"]["ownerReferences"] = [{"apiVersion": "ray.io/v1", "kind": owner[0], "name": "x",
                                           "uid": owner[1], "controller": True}]
    loop = cache_of(obj)
    assert loop.cache.job("uid-video-nb") is None and loop.cache.queue_item("uid-video-nb") is None


def test_an_admitted_bare_cluster_covers_its_own_pods_up_to_its_size_and_the_rest_is_growth() -> None:
    obj = notebook(workers=1).suspend(False).dequeued(stamp(2)).as_raycluster()
    loop = cache_of(obj)
    cache = loop.cache
    assert cache.state("uid-video-nb") is JobState.ADMITTED
    cache.on_pod("ADDED", cluster_pod(obj, "h", "head"))
    cache.on_pod("ADDED", cluster_pod(obj, "w1", created="2025-01-10T01:40:01Z"))
    cache.on_pod("ADDED", cluster_pod(obj, "w2", created="2025-01-10T01:40:02Z"))  # replicas raised after admission
    assert cache.covering_job("uid-video-h") is not None and cache.covering_job("uid-video-w1") is not None
    assert cache.covering_job("uid-video-w2") is None, "the newest worker beyond the admitted one is growth"
    assert cache.ledger is not None
    claim = cache.ledger.claim("uid-video-nb")
    assert claim is not None and claim.kind == "job" and claim.request.get(CPU) == 4000
    assert cache.ledger.usage("root/algorithm/video").get(CPU) == 6000  # 4 reserved + 2 of growth


def test_replicas_raised_after_admission_are_growth_not_reservation() -> None:
    """The autoscaler (or the tenant) raises the admitted cluster's replicas 1 -> 3: its claim keeps the size the
    dequeue recorded (head + 1 worker); the two new workers are growth, charged pod by pod once bound."""
    obj = (notebook(workers=3).suspend(False).dequeued(stamp(2))
           .annotate(keys.ADMITTED_REPLICAS, '{"w":1}').as_raycluster())
    loop = cache_of(obj)
    cache = loop.cache
    assert cache.ledger is not None
    claim = cache.ledger.claim("uid-video-nb")
    assert claim is not None and claim.request.get(CPU) == 4000
    for i in range(3):
        cache.on_pod("ADDED", cluster_pod(obj, f"w{i}", created=f"2025-01-10T01:40:0{i}Z"))
    assert [cache.covering_job(f"uid-video-w{i}") is not None for i in range(3)] == [True, False, False]
    assert cache.ledger.usage("root/algorithm/video").get(CPU) == 2000 + 2000 + 2 * 2000


def test_a_bad_admitted_replicas_annotation_is_a_problem_and_the_spec_counts() -> None:
    obj = notebook(workers=2).suspend(False).dequeued(stamp(2)).annotate(keys.ADMITTED_REPLICAS, "two").as_raycluster()
    info = JobInfo.from_raycluster(obj)
    assert info.worker_pods == 2 and any(keys.ADMITTED_REPLICAS in p for p in info.problems)


def test_a_rayjob_s_cluster_pods_stay_the_rayjob_s() -> None:
    """The same pod shape under a RayJob's cluster: the RayJob covers it; the cluster is no job."""
    loop = cache_of()
    rayjob = job("j", "video", cpu="2", at=1).suspend(False).dequeued(stamp(2)).obj()
    loop.cache.on_rayjob("ADDED", rayjob)
    rc = make_raycluster("j-abcde", "video", job_uid="uid-video-j")
    loop.cache.on_raycluster("ADDED", rc)
    loop.cache.on_pod("ADDED", cluster_pod(rc, "h", "head"))
    covering = loop.cache.covering_job("uid-video-h")
    assert covering is not None and covering.kind == keys.RAYJOB_KIND and covering.name == "j"
    assert loop.cache.job(rc["metadata"]["uid"]) is None


def test_a_deleted_bare_cluster_holds_its_claim_until_its_pods_are_gone() -> None:
    obj = notebook(workers=0).suspend(False).dequeued(stamp(2)).as_raycluster()
    loop = cache_of(obj)
    head = cluster_pod(obj, "h", "head")
    loop.cache.on_pod("ADDED", head)
    loop.cache.on_raycluster("DELETED", obj)
    assert loop.cache.ledger is not None and "uid-video-nb" in loop.cache.ledger
    loop.cache.on_pod("DELETED", head)
    assert "uid-video-nb" not in loop.cache.ledger and loop.cache.job("uid-video-nb") is None


# --- the controller ------------------------------------------------------------------------------------------


def test_a_bare_cluster_gets_its_rc_queue_unit_and_is_dequeued_by_one_patch_of_itself() -> None:
    loop = cache_of(notebook().as_raycluster())
    first = loop.run()  # the Queues are created first; the QueueUnit follows once the Queue exists
    plan = Plan(first.actions + loop.run().actions)
    (ensure,) = plan.of(EnsureQueueUnit)
    meta = ensure.object["metadata"]
    assert meta["name"] == "nb-rc-qu"
    assert ensure.object["spec"]["consumerRef"] == {"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": "nb",
                                                    "namespace": "video"}
    assert meta["ownerReferences"][0]["kind"] == "RayCluster" and meta["ownerReferences"][0]["uid"] == "uid-video-nb"
    assert ensure.object["spec"]["resource"] == {"cpu": "6", "memory": "3Gi"}
    (dequeue,) = plan.of(Dequeue)
    assert dequeue.job == JobRef("video", "nb", "uid-video-nb", "1", keys.RAYCLUSTER_KIND)
    assert _job_path(dequeue.job) == "/apis/ray.io/v1/namespaces/video/rayclusters/nb"
    assert dequeue.patch() == {"metadata": {"annotations": {keys.DEQUEUE_TIMESTAMP: dequeue.dequeue_stamp,
                                                            keys.ADMITTED_REPLICAS: '{"w":2}'},
                                            "resourceVersion": "1"},
                               "spec": {"suspend": False}}
    assert {e.job.kind for e in plan.of(Event)} == {keys.RAYCLUSTER_KIND}
    status = [a for a in plan.of(UpdateQueueUnitStatus) if a.name == "nb-rc-qu"]
    assert status and status[-1].status["phase"] == "Dequeued"


def test_an_admitted_bare_cluster_runs_once_kuberay_says_ready() -> None:
    loop = cache_of(notebook().as_raycluster())
    loop.run()
    uid = "uid-video-nb"
    loop.deliver(uid)
    loop.update_job(uid, lambda o: o.setdefault("status", {}).update(state="ready"))
    loop.run()
    assert loop.units[("video", "nb-rc-qu")]["status"]["phase"] == "Running"


def test_a_borrowing_bare_cluster_is_reclaimed_as_a_whole_and_requeued_at_its_place() -> None:
    """A notebook in intern (min 0) borrows algorithm's capacity; a guaranteed text job does not fit: the cluster
    is suspended (one patch of the RayCluster, its dequeue stamp removed), its claim drains with its pods, the
    text job runs, and the cluster waits again with its original enqueue stamp."""
    big = notebook("big", "intern", head="20", workers=1, cpu="20", at=1).as_raycluster()  # 40 of intern's max 40
    loop = cache_of(big, job("video-job", "video", cpu="12", at=0).obj())
    assert sorted(dequeued(loop.run())) == ["big", "video-job"]
    uid = "uid-intern-big"
    loop.deliver(uid)
    loop.deliver("uid-video-video-job")
    pods = [cluster_pod(loop.jobs[uid], "bh", "head", cpu="20"), cluster_pod(loop.jobs[uid], "bw", cpu="20")]
    for pod in pods:
        loop.cache.on_pod("ADDED", pod)
    # 30 of text's min 32, but root/algorithm: 52 used + 30 > max 80
    loop.submit(job("train", "algorithm-text", cpu="30", at=10).obj())
    plan = loop.run()
    (suspend,) = plan.of(Suspend)
    assert (suspend.job.kind, suspend.job.name, suspend.claimant.name) == (keys.RAYCLUSTER_KIND, "big", "train")
    assert _job_path(suspend.job) == "/apis/ray.io/v1/namespaces/intern/rayclusters/big"
    assert [e.job.kind for e in plan.of(Event) if e.reason == keys.EVENT_PREEMPTED] == [keys.RAYCLUSTER_KIND]
    assert suspend.patch()["metadata"]["annotations"] == {keys.DEQUEUE_TIMESTAMP: None, keys.ADMITTED_REPLICAS: None}
    loop.deliver(uid)
    assert loop.jobs[uid]["spec"]["suspend"] is True
    assert loop.jobs[uid]["metadata"]["annotations"] == {keys.ENQUEUE_TIMESTAMP: stamp(1)}
    assert dequeued(loop.run()) == [], "its pods still hold the quota"
    assert loop.units[("intern", "big-rc-qu")]["status"]["message"] == (
        "root/algorithm/intern: intern/big waits until its previous run releases its quota (2 pods still terminating)")
    for pod in pods:
        loop.cache.on_pod("DELETED", pod)
    assert dequeued(loop.run()) == ["train"]
    assert loop.cache.state(uid) is JobState.WAITING
    item = loop.cache.queues.get(uid)
    assert item is not None and item.enqueue_ns == loop.cache.job(uid).enqueue_ns  # type: ignore[union-attr]


def test_an_autoscaled_bare_cluster_is_known_as_autoscaling_and_its_maximum_follows_max_replicas() -> None:
    """enableInTreeAutoscaling on a bare RayCluster: the Ray autoscaler may take it up to maxReplicas, so its
    maximum size is counted as for a RayJob's cluster (common/rayjob.py maximum_request)."""
    from common.accounting import maximum_request

    obj = make_rayjob("nb", "video").head(cpu="1").workers(cpu="2", replicas=1, max_replicas=3).as_raycluster()
    obj["spec"]["enableInTreeAutoscaling"] = True
    job = JobInfo.from_raycluster(obj)
    assert job.autoscaling
    assert maximum_request(job).get("cpu") > job.request.get("cpu")

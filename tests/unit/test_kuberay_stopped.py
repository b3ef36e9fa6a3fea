"""Once KubeRay stops (docs/kuberay.md "Once KubeRay stops"): a stopped job is charged what its live pods request
(common.accounting.reservation), and rayqueue deletes a RayCluster KubeRay leaves running for ever, at
ttlSecondsAfterFinished, never one KubeRay deletes itself (common.liveness.cluster_fate / leftover). Pure tables,
then the reconcile phase on the in-memory loop of test_reconcile (restart included)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from common import keys
from common.accounting import ChargeReason, account_pod, reservation
from common.clock import FakeClock
from common.gotime import format_go
from common.liveness import ClusterFate, cluster_fate, leftover, stopped_ns
from common.rayjob import JobInfo, PodInfo
from common.resources import Resources
from extender.actions import DeleteLeftover, Event, JobRef, ObjectRef, Plan, StampStopped, UpdateTreeStatus
from extender.cache import Cache
from extender.controller import Controller
from kubeio.client import ApiError
from kubeio.events import EventRecorder
from tests.unit.builders import (
    RayJobBuilder,
    apply_merge_patch,
    make_books,
    make_pod,
    make_ray_pod,
    make_raycluster,
    make_rayjob,
    make_submitter_job,
)
from tests.unit.test_reconcile import NOW, VIDEO, Loop, dequeued, job, stamp

NS = 10**9
END = "2025-01-10T02:00:00Z"
END_NS = 1736474400 * NS
LEGACY = {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteCluster"}}


def rayjob(deployment: str, job_status: str = "", *, reason: str = "", end: str | None = END,
           **spec: Any) -> RayJobBuilder:
    """Job ``a`` of video (head 4, one 4-CPU worker, KubeRay's default 500m submitter) in ``deployment``."""
    b = make_rayjob("a", "video").head(cpu="4").workers(1, cpu="4").status(deployment, job_status, cluster="a-x1y2z")
    if reason:
        b.set("status.reason", reason)
    if end is not None:
        b.set("status.endTime", end)
    for key, value in spec.items():
        b.set(f"spec.{key}", value)
    return b


def info(b: RayJobBuilder) -> JobInfo:
    return JobInfo.from_rayjob(b.obj())


def R(**amounts: str) -> Resources:
    return Resources.parse(amounts)


CLUSTER = make_raycluster("a-x1y2z", "video", job_uid="uid-video-a")
SUBMITTER = make_submitter_job("a", "video", job_uid="uid-video-a")


def ray(name: str, node_type: str = "worker", phase: str = "Running") -> PodInfo:
    group = "small-group" if node_type == "worker" else None
    return PodInfo.from_pod(make_ray_pod(name, CLUSTER, node_type, group).node("n1").phase(phase).obj())


def submitter_pod(name: str, phase: str = "Running", *, node: str | None = "n1", deleting: bool = False) -> PodInfo:
    b = make_pod(name, "video", cpu="500m", memory="200Mi").owned_by(SUBMITTER).phase(phase)
    if node:
        b.node(node)
    if deleting:
        b.deleting()
    return PodInfo.from_pod(b.obj())


WHOLE = R(cpu="8500m", memory="456Mi")  # head 4 + worker 4 (its wait-gcs-ready 256Mi) + the 500m/200Mi submitter


# --- the charge of a stopped job ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_", "pods", "charged"),
    [
        pytest.param(rayjob("Complete", "SUCCEEDED"),
                     [submitter_pod("a-sub-1", "Failed"), submitter_pod("a-sub-2", "Pending", node=None)],
                     R(cpu="500m", memory="200Mi"),
                     id="a Complete job with one retrying 500m submitter pod is charged 500m, not its reservation"),
        pytest.param(rayjob("ValidationFailed", reason="ValidationFailed", end=None),
                     [ray("a-x1y2z-head", "head"), ray("a-x1y2z-w1")], R(cpu="8"),
                     id="a ValidationFailed job with its cluster's pods running is charged those pods"),
        pytest.param(rayjob("Failed", "RUNNING", reason="DeadlineExceeded"), [ray("a-x1y2z-head", "head")],
                     R(cpu="4"), id="a Failed job whose workers are gone is charged its head alone"),
        pytest.param(rayjob("Complete", "SUCCEEDED"),
                     [submitter_pod("a-sub-1", deleting=True), submitter_pod("a-sub-2", "Pending", node=None)],
                     R(cpu="500m", memory="200Mi"),
                     id="of two live submitter pods of a stopped job its claim covers one, the other is growth"),
        pytest.param(rayjob("Complete", "SUCCEEDED"), [ray("a-x1y2z-head", "head", "Succeeded")], Resources(),
                     id="a stopped job whose pods all finished is charged nothing"),
        pytest.param(rayjob("Running", "RUNNING", end=None), [ray("a-x1y2z-head", "head")], WHOLE,
                     id="a running job keeps its whole reservation while its pods come"),
    ],
)
def test_the_charge_of_a_job(job_: RayJobBuilder, pods: list[PodInfo], charged: Resources) -> None:
    assert reservation(info(job_), pods) == charged


def test_a_stopped_job_s_pod_says_why_it_is_charged_in_its_claim() -> None:
    stopped, pod = info(rayjob("Complete", "SUCCEEDED")), submitter_pod("a-sub-2")
    books = make_books("video").add_parent(SUBMITTER).job(stopped, [pod])
    account = account_pod(pod, books)
    assert (account.charge, account.reason, account.job_uid) == ("covered", ChargeReason.LIVE_OF_STOPPED, stopped.uid)
    running = info(rayjob("Running", "RUNNING", end=None))
    books = make_books("video").add_parent(SUBMITTER).job(running, [pod])
    assert account_pod(pod, books).reason is ChargeReason.COVERED


def test_the_cache_s_claim_of_a_complete_job_follows_its_retrying_submitter_and_goes_with_it() -> None:
    """Through the cache: admitted at 8.5 CPU; Complete, its cluster's pods gone and one submitter pod retrying:
    the claim is that pod's 500m; the pod gone, the claim goes."""
    cache = Cache(FakeClock())
    loop = Loop(cache)
    obj = rayjob("Running", "RUNNING", end=None).enqueued(stamp(1)).set("metadata.resourceVersion", "1").obj()
    uid = loop.submit(obj)
    assert dequeued(loop.run(NOW)) == ["a"]
    cache.on_batch_job("ADDED", copy.deepcopy(SUBMITTER))
    pod = make_pod("a-sub-2", "video", cpu="500m", memory="200Mi").owned_by(SUBMITTER).node("n1").phase("Running")
    cache.on_pod("ADDED", pod.obj())
    ledger = cache.ledger
    assert ledger is not None and ledger.usage(VIDEO) == WHOLE
    loop.update_job(uid, lambda o: o.update(status={"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED",
                                                    "endTime": END}))
    assert ledger.usage(VIDEO) == R(cpu="500m", memory="200Mi")
    cache.on_pod("DELETED", pod.obj())
    assert ledger.usage(VIDEO) == Resources() and uid not in ledger


# --- who deletes the cluster once KubeRay stops (KubeRay v1.7.0 rayjob_controller.go) --------------------------


LEAVES = [
    pytest.param(rayjob("ValidationFailed", reason="ValidationFailed", end=None)
                 .annotate(keys.KUBERAY_STOPPED_AT, format_go(END_NS)), ClusterFate.VALIDATION_FAILED,
                 id="ValidationFailed after the cluster exists: validateRayJob stops every pass before the switch"),
    pytest.param(rayjob("ValidationFailed", "SUCCEEDED", reason="ValidationFailed"), ClusterFate.VALIDATION_FAILED,
                 id="a Complete job edited into a refused one during its ttl: ValidationFailed, endTime kept"),
    pytest.param(rayjob("Failed", "RUNNING", reason="DeadlineExceeded", deletionStrategy=LEGACY),
                 ClusterFate.LEGACY_JOB_STATUS, id="legacy policy, Failed by activeDeadlineSeconds while RUNNING"),
    pytest.param(rayjob("Failed", "PENDING", reason="PreRunningDeadlineExceeded", deletionStrategy=LEGACY),
                 ClusterFate.LEGACY_JOB_STATUS, id="legacy policy, PreRunningDeadlineExceeded"),
    pytest.param(rayjob("Failed", "RUNNING", reason="JobStatusCheckTimeoutExceeded", deletionStrategy=LEGACY),
                 ClusterFate.LEGACY_JOB_STATUS, id="legacy policy, JobStatusCheckTimeoutExceeded"),
    pytest.param(rayjob("Failed", "PENDING", reason="SubmissionFailed", deletionStrategy=LEGACY),
                 ClusterFate.LEGACY_JOB_STATUS, id="legacy policy, SubmissionFailed"),
    pytest.param(rayjob("Complete", "STOPPED", deletionStrategy=LEGACY), ClusterFate.LEGACY_JOB_STATUS,
                 id="legacy policy, the Ray job STOPPED"),
    pytest.param(rayjob("Complete", "SUCCEEDED", deletionStrategy={**LEGACY, "onSuccess": {"policy": "DeleteWorkers"}}),
                 ClusterFate.LEGACY_KEEPS, id="legacy DeleteWorkers keeps the head"),
    pytest.param(rayjob("Complete", "SUCCEEDED", shutdownAfterJobFinishes=False), ClusterFate.NO_SHUTDOWN,
                 id="shutdownAfterJobFinishes edited to false, no deletionStrategy"),
    pytest.param(rayjob("Failed", "FAILED", shutdownAfterJobFinishes=False, deletionStrategy={"deletionRules": [
        {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED"}}]}), ClusterFate.RULES_KEEP,
                 id="deletionRules none of which matches the job"),
]

ACTS = [
    pytest.param(rayjob("Complete", "SUCCEEDED"), ClusterFate.SHUTDOWN, id="shutdownAfterJobFinishes, Complete"),
    pytest.param(rayjob("Failed", "RUNNING", reason="DeadlineExceeded"), ClusterFate.SHUTDOWN,
                 id="shutdownAfterJobFinishes deletes after a deadline too, whatever jobStatus"),
    pytest.param(rayjob("Complete", "SUCCEEDED", deletionStrategy=LEGACY), ClusterFate.LEGACY_DELETES,
                 id="legacy DeleteCluster on SUCCEEDED"),
    pytest.param(rayjob("Failed", "FAILED", deletionStrategy={**LEGACY, "onFailure": {"policy": "DeleteSelf"}}),
                 ClusterFate.LEGACY_DELETES, id="legacy DeleteSelf on FAILED: the GC takes the cluster"),
    pytest.param(rayjob("Failed", "RUNNING", shutdownAfterJobFinishes=False, deletionStrategy={"deletionRules": [
        {"policy": "DeleteCluster", "condition": {"jobDeploymentStatus": "Failed", "ttlSeconds": 30}}]}),
                 ClusterFate.RULE_DELETES, id="a deletionRule on jobDeploymentStatus Failed"),
    pytest.param(rayjob("ValidationFailed", reason="ValidationFailed", clusterSelector={"ray.io/cluster": "shared"}),
                 ClusterFate.CLUSTER_SELECTOR, id="a clusterSelector job's cluster is not its own"),
]


@pytest.mark.parametrize(("job_", "fate"), LEAVES)
def test_where_kuberay_leaves_the_cluster_running_rayqueue_deletes_it_at_the_ttl_not_before(
        job_: RayJobBuilder, fate: ClusterFate) -> None:
    stopped = info(job_.set("spec.ttlSecondsAfterFinished", 30))
    assert cluster_fate(stopped) is fate and not fate.kuberay_deletes
    found = leftover(stopped, END_NS)
    assert found is not None and found.fate is fate
    assert found.delete_ns == END_NS + 30 * NS
    assert not found.due(END_NS + 30 * NS - 1) and found.due(END_NS + 30 * NS)


@pytest.mark.parametrize(("job_", "fate"), ACTS)
def test_where_kuberay_deletes_the_cluster_itself_rayqueue_never_does(job_: RayJobBuilder, fate: ClusterFate) -> None:
    stopped = info(job_)
    assert cluster_fate(stopped) is fate and fate.kuberay_deletes
    assert leftover(stopped, END_NS + 10**6 * NS) is None


@pytest.mark.parametrize("state", ["New", "Initializing", "Running", "Suspending", "Suspended", "Retrying"])
def test_a_job_kuberay_still_runs_has_no_fate_yet(state: str) -> None:
    running = info(rayjob(state, "RUNNING", end=None, deletionStrategy=LEGACY, shutdownAfterJobFinishes=False))
    assert cluster_fate(running) is None and leftover(running, END_NS) is None


def test_a_bare_raycluster_never_stops() -> None:
    bare = JobInfo.from_raycluster(make_rayjob("a", "video").head(cpu="1").as_raycluster("ready"))
    assert cluster_fate(bare) is None


def test_the_rules_ttl_counts_from_the_last_matching_rule_kuberay_still_runs() -> None:
    rules = [{"policy": "DeleteWorkers", "condition": {"jobStatus": "FAILED", "ttlSeconds": 90}},
             {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED"}}]
    stopped = info(rayjob("Failed", "FAILED", shutdownAfterJobFinishes=False,
                          deletionStrategy={"deletionRules": rules}))
    found = leftover(stopped, END_NS)
    assert found is not None and found.fate is ClusterFate.RULES_KEEP and found.delete_ns == END_NS + 90 * NS


def test_the_deletion_time_is_derived_from_the_object_so_a_restart_decides_the_same() -> None:
    """Unstamped (ValidationFailed records no endTime), the time is the pass's own; once stamped, every later
    reading of the same object, by this controller or a restarted one, gives the same time."""
    unstamped = rayjob("ValidationFailed", reason="ValidationFailed", end=None, ttlSecondsAfterFinished=30)
    assert stopped_ns(info(unstamped)) is None
    first = leftover(info(unstamped), END_NS)
    assert first is not None and first.delete_ns == END_NS + 30 * NS
    stamped = info(unstamped.annotate(keys.KUBERAY_STOPPED_AT, format_go(END_NS)))
    later = [leftover(stamped, END_NS + k * NS) for k in (1, 29, 31, 3600)]
    assert {f.delete_ns for f in later if f is not None} == {END_NS + 30 * NS}
    ended = info(rayjob("Complete", "STOPPED", deletionStrategy=LEGACY, ttlSecondsAfterFinished=30))
    assert stopped_ns(ended) == END_NS  # status.endTime: KubeRay's own, no stamp needed


# --- the reconcile phase -------------------------------------------------------------------------------------------


class StoppedLoop(Loop):
    """The loop stand-in, with the two actions of this phase: the stamp patches the job (resourceVersion
    guarded) and feeds it back; DeleteLeftover marks the cluster deleted as the apiserver would."""

    def __init__(self, cache: Cache) -> None:
        super().__init__(cache)
        self.deleted: list[DeleteLeftover] = []

    def apply(self, action: Any, *, deliver: bool) -> None:
        if isinstance(action, StampStopped):
            obj = self.jobs[action.job.uid]
            if obj["metadata"]["resourceVersion"] != action.job.resource_version:
                self.conflicts.append(action.job.name)
                return
            apply_merge_patch(obj, action.patch())
            obj["metadata"]["resourceVersion"] = self._rv()
            self.deliver(action.job.uid)
        elif isinstance(action, DeleteLeftover):
            self.deleted.append(action)
            cluster = self.clusters[action.cluster.uid]
            cluster["metadata"]["deletionTimestamp"] = "2025-01-10T02:10:00Z"
            self.cache.on_raycluster("MODIFIED", copy.deepcopy(cluster))
        else:
            super().apply(action, deliver=deliver)


def _admitted(loop: Loop, **spec: Any) -> str:
    b = job("a", "video", cpu="4", at=1)
    for key, value in spec.items():
        b.set(f"spec.{key}", value)
    uid = loop.submit(b.obj())
    assert dequeued(loop.run(NOW)) == ["a"]
    loop.deliver(uid)
    loop.pods(uid, "4")
    return uid


def _refused(o: dict[str, Any]) -> None:
    o["status"] = {"jobDeploymentStatus": "ValidationFailed", "reason": "ValidationFailed",
                   "message": "The RayJob spec is invalid: a rule rayqueue does not model"}


def test_a_refused_job_is_stamped_then_its_cluster_deleted_at_its_ttl_with_an_event_and_a_restart_keeps_the_time(
) -> None:
    loop = StoppedLoop(Cache(FakeClock()))
    uid = _admitted(loop, ttlSecondsAfterFinished=20)
    loop.update_job(uid, _refused)
    plan = loop.run(NOW + 5 * NS)
    (stamp,) = plan.of(StampStopped)
    assert stamp.stamp == format_go(NOW + 5 * NS) and stamp.reason == ClusterFate.VALIDATION_FAILED.value
    assert plan.of(DeleteLeftover) == ()
    assert loop.jobs[uid]["metadata"]["annotations"][keys.KUBERAY_STOPPED_AT] == stamp.stamp
    plan = loop.run(NOW + 24 * NS)
    assert plan.of(StampStopped) == () and plan.of(DeleteLeftover) == () and plan.wake_ns == NOW + 25 * NS
    unit = loop.unit("a")["status"]
    assert unit["phase"] == "Failed" and "rayqueue deletes its RayCluster at" in unit["message"], unit

    restarted = StoppedLoop(Cache(FakeClock()))  # a new controller: everything from the API objects
    restarted.units = loop.units
    for obj in loop.jobs.values():
        restarted.submit(copy.deepcopy(obj))
    for cluster in loop.clusters.values():
        restarted.clusters[cluster["metadata"]["uid"]] = copy.deepcopy(cluster)
        restarted.cache.on_raycluster("ADDED", copy.deepcopy(cluster))
    for pod in loop.pod_objs.values():
        restarted.cache.on_pod("ADDED", copy.deepcopy(pod))
    assert restarted.run(NOW + 24 * NS).of(DeleteLeftover) == ()
    plan = restarted.run(NOW + 25 * NS)
    (delete,) = plan.of(DeleteLeftover)
    assert (delete.cluster.name, delete.job.uid) == ("a-x7k2p", uid)
    assert delete.reason.startswith(ClusterFate.VALIDATION_FAILED.value)
    assert delete.delete_options("7")["preconditions"] == {"uid": delete.cluster.uid, "resourceVersion": "7"}
    assert restarted.run(NOW + 26 * NS).of(DeleteLeftover) == ()  # being deleted: not again


def test_a_job_whose_cluster_kuberay_deletes_is_never_touched() -> None:
    loop = StoppedLoop(Cache(FakeClock()))
    uid = _admitted(loop)
    loop.update_job(uid, lambda o: o.update(status={"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED",
                                                    "endTime": format_go(NOW)}))
    for later in (1, 60, 3600):
        plan = loop.run(NOW + later * NS)
        assert plan.of(StampStopped) == () and plan.of(DeleteLeftover) == ()
    assert not loop.deleted


def test_a_legacy_job_failed_by_its_deadline_loses_its_cluster_at_its_ttl_counted_from_its_end_time() -> None:
    loop = StoppedLoop(Cache(FakeClock()))
    uid = _admitted(loop, deletionStrategy=LEGACY, ttlSecondsAfterFinished=10)
    loop.update_job(uid, lambda o: o.update(status={"jobDeploymentStatus": "Failed", "jobStatus": "RUNNING",
                                                    "reason": "DeadlineExceeded", "endTime": format_go(NOW + NS)}))
    plan = loop.run(NOW + 10 * NS)
    assert plan.of(StampStopped) == () and plan.of(DeleteLeftover) == () and plan.wake_ns == NOW + 11 * NS
    (delete,) = loop.run(NOW + 11 * NS).of(DeleteLeftover)
    assert delete.reason.startswith(ClusterFate.LEGACY_JOB_STATUS.value)
    assert [e for e in loop.plans[-1].of(Event) if e.reason == keys.EVENT_LEFTOVER_DELETED] == []  # the loop's, once done


# --- the controller's DELETE ----------------------------------------------------------------------------------------


class ClusterApi:
    """The API as the controller's DeleteLeftover sees it: the RayJob at ``job_rv``, its RayCluster at rv "7"
    (controlled by the job, or by ``owner``), a DELETE answered 409 when ``conflict``."""

    def __init__(self, job_rv: str = "5", owner: str = "uid-video-a", conflict: bool = False) -> None:
        self.job_rv, self.owner, self.conflict = job_rv, owner, conflict
        self.deleted: list[tuple[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        if "/rayjobs/" in path:
            return {"metadata": {"uid": "uid-video-a", "resourceVersion": self.job_rv}}
        return {"metadata": {"uid": "uid-video-a-x1y2z", "resourceVersion": "7",
                             "ownerReferences": [{"controller": True, "uid": self.owner}]}}

    async def delete(self, path: str, body: Any = None) -> dict[str, Any]:
        if self.conflict:
            raise ApiError(409, "Conflict", "the object has been modified", "DELETE", path)
        self.deleted.append((path, body))
        return {}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.events.append(body)
        return body


def _execute(api: ClusterApi) -> None:
    clock = FakeClock()
    controller = Controller(Cache(clock), api, EventRecorder(api, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                            CollectorRegistry())
    action = DeleteLeftover(ObjectRef("video", "a-x1y2z", "uid-video-a-x1y2z"), JobRef("video", "a", "uid-video-a", "5"),
                            "KubeRay leaves it running: ...")
    asyncio.run(controller.execute(Plan((action,))))


def test_the_delete_is_preconditioned_and_followed_by_an_event_on_the_job_and_the_cluster() -> None:
    api = ClusterApi()
    _execute(api)
    (path, body), = api.deleted
    assert path == "/apis/ray.io/v1/namespaces/video/rayclusters/a-x1y2z"
    assert body["preconditions"] == {"uid": "uid-video-a-x1y2z", "resourceVersion": "7"}
    assert body["propagationPolicy"] == "Background"
    assert sorted((e["involvedObject"]["kind"], e["reason"]) for e in api.events) == [
        ("RayCluster", keys.EVENT_LEFTOVER_DELETED), ("RayJob", keys.EVENT_LEFTOVER_DELETED)]
    assert all(e["message"] == "deleted RayCluster video/a-x1y2z: KubeRay leaves it running: ..." for e in api.events)


@pytest.mark.parametrize(
    "api",
    [pytest.param(ClusterApi(job_rv="6"), id="the job changed since the decision: nothing is deleted"),
     pytest.param(ClusterApi(owner="uid-video-b"), id="a cluster another job controls is never deleted"),
     pytest.param(ClusterApi(conflict=True), id="a conflicting DELETE does nothing and says nothing")],
)
def test_a_delete_that_is_not_certain_does_nothing(api: ClusterApi) -> None:
    _execute(api)
    assert api.events == [] and api.deleted == []


def test_the_tree_status_says_0_for_a_resource_whose_last_claim_went() -> None:
    """The tree's status is merge-patched: leaving a resource out would keep its last value for ever."""
    loop = Loop(Cache(FakeClock()))
    uid = loop.submit(job("a", "video", cpu="4", at=1).obj())
    assert dequeued(loop.run(NOW)) == ["a"]
    loop.deliver(uid)
    assert loop.tree["status"]["nodes"][VIDEO]["used"] == {"cpu": "4", "memory": "1Gi"}
    loop.cache.on_rayjob("DELETED", loop.jobs.pop(uid))
    loop.run(NOW + NS)
    assert loop.tree["status"]["nodes"][VIDEO]["used"] == {"cpu": "0", "memory": "0"}
    assert loop.run(NOW + 2 * NS).of(UpdateTreeStatus) == ()  # and stays so without rewrites

"""The queue controller's decisions: dequeue order, backoff messages, priority, reclaim, Block, objects, idempotency.

Scenario tests drive events through the Cache the way the watch would and execute each Plan with a small
in-memory stand-in for the I/O loop (``Loop``): it patches its copy of the objects, calls the cache's
provisional marks, and feeds created/updated Queues and QueueUnits back like the API's responses.
RayJob watch events are delivered only when a test says so, to show decisions hold before they arrive.
"""

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
from common.quota_tree import QuotaTree
from common.resources import Resources
from extender.actions import (
    AnnotatePod,
    DeleteQueue,
    DeleteQueueUnit,
    Dequeue,
    EnsureQueue,
    EnsureQueueUnit,
    Event,
    Notify,
    Plan,
    PreemptPod,
    Requeue,
    SetClusterQuotaCondition,
    Suspend,
    UpdateQueueStatus,
    UpdateQueueUnitStatus,
    UpdateTreeStatus,
    WithdrawNotice,
)
from extender.cache import Cache
from extender.queue_objects import queue_object, queue_status, queue_unit_object, queue_unit_status
from extender.reconcile import SLICE, reconcile, reconcile_steps
from tests.unit.builders import RayJobBuilder, apply_merge_patch, make_pod, make_raycluster, make_rayjob

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
T0 = 1_736_472_984_000_000_000  # 2025-01-10 01:36:24 UTC
NOW = T0 + 60 * 10**9
VIDEO = "root/algorithm/video"
TEXT = "root/algorithm/text"
INTERN = "root/algorithm/intern"


def example(file: str, kind: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((EXAMPLES / file).read_text())
    return next(d for d in docs if d and d.get("kind") == kind)


def stamp(seconds: float) -> str:
    return format_go(T0 + int(seconds * 1e9))


def video_copy(name: str, at: float) -> dict[str, Any]:
    """The guide's video RayJob as the webhook admitted it: named, with a uid and the enqueue stamp."""
    obj = example("video-rayjob.yaml", keys.RAYJOB_KIND)
    meta = obj["metadata"]
    meta.pop("generateName")
    meta.update(name=name, uid=f"uid-{name}", resourceVersion="1")
    meta["annotations"] = {keys.ENQUEUE_TIMESTAMP: stamp(at)}
    return obj


def job(name: str, ns: str, *, cpu: str, at: float, priority: int | None = None) -> RayJobBuilder:
    """A queued RayJob whose request is exactly `cpu` (HTTPMode: no submitter)."""
    b = (
        make_rayjob(name, ns)
        .submission_mode("HTTPMode")
        .head(cpu=cpu, memory="1Gi")
        .enqueued(stamp(at))
        .set("metadata.resourceVersion", "1")
    )
    return b.priority(priority) if priority is not None else b


class Loop:
    """The I/O loop's stand-in: an in-memory API that executes plans and answers like the API server."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.jobs: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.units: dict[tuple[str, str], dict[str, Any]] = {}
        self.tree = example("elasticquotatree.yaml", keys.QUOTA_TREE_KIND)
        self.events: list[Event] = []
        self.pod_objs: dict[str, dict[str, Any]] = {}  # by uid, the pods made by pods()
        self.plans: list[Plan] = []
        self.conflicts: list[str] = []
        self.clusters: dict[str, dict[str, Any]] = {}  # uid -> the RayCluster as the API holds it
        self.preempted: list[PreemptPod] = []
        self._serial = 0
        cache.on_tree("ADDED", copy.deepcopy(self.tree))

    def _rv(self) -> str:
        self._serial += 1
        return str(100 + self._serial)

    def submit(self, obj: dict[str, Any]) -> str:
        uid = obj["metadata"]["uid"]
        self.jobs[uid] = obj
        self.cache.on_rayjob("ADDED", copy.deepcopy(obj))
        return str(uid)

    def deliver(self, uid: str) -> None:
        """The watch event of the job's current state arrives."""
        self.cache.on_rayjob("MODIFIED", copy.deepcopy(self.jobs[uid]))

    def update_job(self, uid: str, change: Any) -> None:
        """Someone (KubeRay, a user) changes the job; the watch delivers it."""
        change(self.jobs[uid])
        self.jobs[uid]["metadata"]["resourceVersion"] = self._rv()
        self.deliver(uid)

    def pods(self, uid: str, *sizes: str) -> list[dict[str, Any]]:
        """KubeRay creates the job's Ray cluster pods, bound and running."""
        meta = self.jobs[uid]["metadata"]
        cluster = make_raycluster(f"{meta['name']}-x7k2p", meta["namespace"], job_uid=uid)
        cluster_uid = cluster["metadata"]["uid"]
        cluster = self.clusters.setdefault(cluster_uid, cluster)
        self.cache.on_raycluster("ADDED", copy.deepcopy(cluster))
        name = cluster["metadata"]["name"]
        out = []
        known = sum(1 for p in self.pod_objs.values() if p["metadata"]["name"].startswith(f"{name}-"))
        for i, cpu in enumerate(sizes, start=known):
            pod = (
                make_pod(f"{name}-{i}", meta["namespace"], cpu=cpu)
                .ray(name, "head" if i == 0 else "worker", None if i == 0 else "small-group")
                .owned_by(cluster)
                .node("n1")
                .phase("Running")
                .set("metadata.creationTimestamp", f"2025-01-10T01:{i:02d}:00Z")
                .obj()
            )
            self.pod_objs[pod["metadata"]["uid"]] = pod
            self.cache.on_pod("ADDED", copy.deepcopy(pod))
            out.append(pod)
        return out

    def run(self, now: int = NOW, *, deliver: bool = False) -> Plan:
        plan = reconcile(self.cache, now)
        self.plans.append(plan)
        for action in plan:
            self.apply(action, deliver=deliver)
        return plan

    def apply(self, action: Any, *, deliver: bool) -> None:
        cache = self.cache
        if isinstance(action, Dequeue | Suspend | Requeue):
            obj = self.jobs[action.job.uid]
            if (
                isinstance(action, Dequeue)
                and obj["metadata"]["resourceVersion"] != action.job.resource_version
            ):
                self.conflicts.append(
                    action.job.name
                )  # 409: the next reconcile after the watch event retries
                return
            apply_merge_patch(obj, action.patch())
            obj["metadata"]["resourceVersion"] = self._rv()
            if isinstance(action, Dequeue):
                cache.mark_dequeued(action.job.uid, action.dequeue_ns)
            else:
                cache.mark_requeued(action.job.uid)
            if deliver:
                self.deliver(action.job.uid)
        elif isinstance(action, Notify | WithdrawNotice):  # guarded by resourceVersion; the response fed back
            obj = self.jobs[action.job.uid]
            if obj["metadata"]["resourceVersion"] != action.job.resource_version:
                self.conflicts.append(action.job.name)
                return
            apply_merge_patch(obj, action.patch())
            obj["metadata"]["resourceVersion"] = self._rv()
            self.deliver(action.job.uid)
        elif isinstance(action, AnnotatePod):
            pod = self.pod_objs.get(action.uid)
            if pod is not None:
                apply_merge_patch(pod, action.patch())
                cache.on_pod("MODIFIED", copy.deepcopy(pod))
        elif isinstance(action, Event):
            self.events.append(action)
        elif isinstance(action, EnsureQueue):
            obj = copy.deepcopy(action.object)
            name = obj["metadata"]["generateName"] + f"q{len(self.queues)}"
            obj["metadata"].update(name=name, uid=f"uid-{name}", creationTimestamp="2025-01-10T01:00:00Z")
            self.queues[name] = obj
            cache.on_queue("ADDED", copy.deepcopy(obj))
        elif isinstance(action, DeleteQueue):
            cache.on_queue("DELETED", self.queues.pop(action.name))
        elif isinstance(action, UpdateQueueStatus):
            self.queues[action.name]["status"] = copy.deepcopy(action.status)
            cache.on_queue("MODIFIED", copy.deepcopy(self.queues[action.name]))
        elif isinstance(action, EnsureQueueUnit):
            key = (action.namespace, action.name)
            obj = copy.deepcopy(action.object)
            if key in self.units:
                obj["status"] = self.units[key].get("status", {})
            self.units[key] = obj
            cache.on_queue_unit("MODIFIED", copy.deepcopy(obj))
        elif isinstance(action, UpdateQueueUnitStatus):
            unit = self.units[(action.namespace, action.name)]
            apply_merge_patch(unit.setdefault("status", {}), action.status)
            cache.on_queue_unit("MODIFIED", copy.deepcopy(unit))
        elif isinstance(action, DeleteQueueUnit):
            cache.on_queue_unit("DELETED", self.units.pop((action.namespace, action.name)))
        elif isinstance(action, UpdateTreeStatus):
            self.tree["status"] = copy.deepcopy(action.status)
            cache.on_tree("MODIFIED", copy.deepcopy(self.tree))
        elif isinstance(action, PreemptPod):
            pod = self.pod_objs[action.pod.uid]
            pod["metadata"]["deletionTimestamp"] = "2025-01-10T01:40:00Z"
            self.preempted.append(action)
            cache.on_pod("MODIFIED", copy.deepcopy(pod))
        elif isinstance(action, SetClusterQuotaCondition):
            cluster = self.clusters[action.cluster.uid]
            conditions = [c for c in cluster.setdefault("status", {}).get("conditions", [])
                          if c["type"] != keys.RAYQUEUE_QUOTA_CONDITION]
            conditions.append({"type": keys.RAYQUEUE_QUOTA_CONDITION, "status": action.status,
                               "reason": action.reason, "message": action.message})
            cluster["status"]["conditions"] = conditions
            cache.on_raycluster("MODIFIED", copy.deepcopy(cluster))
        else:  # pragma: no cover
            raise AssertionError(f"unknown action {action!r}")

    def unit(self, name: str, ns: str = "video") -> dict[str, Any]:
        return self.units[(ns, keys.queue_unit_name(name))]

    def queue(self, leaf: str) -> dict[str, Any]:
        kept = self.cache.queue_for(leaf)
        assert kept is not None
        return self.queues[kept.name]


def dequeued(plan: Plan) -> list[str]:
    return [a.job.name for a in plan.of(Dequeue)]


def events(loop: Loop, reason: str) -> list[tuple[str, str]]:
    return [(e.job.name, e.message) for e in loop.events if e.reason == reason]


# --- the guide's video example --------------------------------------------------------------------------


def test_seed_video_example_second_copy_waits_in_backoff_then_runs() -> None:
    """The guide's worked example: two copies of the 12.5-CPU video job in a leaf of max 14 CPU. The first is
    dequeued, the second waits in the Queue's backoff list with the ledger's reason; when the first has
    finished AND its pods are gone, the second is dequeued."""
    loop = Loop(Cache(FakeClock()))
    first = loop.submit(video_copy("rayjob-video-aaaaa", at=1))
    second = loop.submit(video_copy("rayjob-video-bbbbb", at=2))
    loop.run()  # creates the Queues (a QueueUnit needs its Queue's name)
    plan = loop.run()

    assert dequeued(loop.plans[0]) == ["rayjob-video-aaaaa"]
    assert dequeued(plan) == []
    message = (
        "root/algorithm/video: cpu used 12500m + request 12500m > max 14; "
        "memory used 11923550Ki + request 11923550Ki > max 14Gi"
    )
    assert loop.unit("rayjob-video-bbbbb")["status"] == {
        "phase": "Backoff",
        "position": 1,
        "message": message,
        "attempts": 1,
        "lastUpdateTime": "2025-01-10T01:37:24Z",
        "admitted": "-",  # waiting: no claim, no pods; its maximum is its request (no autoscaling)
        "current": "-",
        "maximum": "12500m/11923550Ki",
    }
    assert loop.unit("rayjob-video-aaaaa")["status"]["admitted"] == "12500m/11923550Ki"
    assert loop.queue(VIDEO)["status"] == {
        "queueItemDetails": {
            "active": [],
            "backoff": [
                {"name": "rayjob-video-bbbbb-ray-qu", "namespace": "video", "priority": 0, "position": 1}
            ],
        }
    }
    assert loop.unit("rayjob-video-aaaaa")["status"]["phase"] == "Dequeued"
    assert loop.cache.state(second) is JobState.WAITING

    loop.deliver(first)
    pods = loop.pods(first, "4", "4", "4")
    loop.update_job(first, lambda o: o.setdefault("status", {}).update(jobDeploymentStatus="Running"))
    assert dequeued(loop.run()) == []
    assert loop.unit("rayjob-video-aaaaa")["status"]["phase"] == "Running"
    loop.update_job(
        first, lambda o: o["status"].update(jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
    )
    assert dequeued(loop.run()) == [], "the claim is held while the first job's pods remain"
    for pod in pods:
        loop.cache.on_pod("DELETED", pod)
    assert dequeued(loop.run()) == ["rayjob-video-bbbbb"]
    assert loop.unit("rayjob-video-aaaaa")["status"]["phase"] == "Succeed"
    assert events(loop, keys.EVENT_DEQUEUED)[-1][0] == "rayjob-video-bbbbb"


def test_reconcile_twice_plans_nothing_new() -> None:
    """Idempotency: once the loop applied a plan (marks and API answers), the same cache plans nothing."""
    loop = Loop(Cache(FakeClock()))
    loop.submit(video_copy("rayjob-video-aaaaa", at=1))
    loop.submit(video_copy("rayjob-video-bbbbb", at=2))
    loop.run()
    loop.run()
    again = loop.run()
    assert again.actions == () and again.guaranteed == ()
    assert again.wake_ns == NOW + 600 * 10**9, "only the wake-up at the admitted job's admission deadline (10m)"


def test_a_stale_watch_event_after_the_dequeue_does_not_admit_twice() -> None:
    loop = Loop(Cache(FakeClock()))
    first = loop.submit(video_copy("rayjob-video-aaaaa", at=1))
    loop.run()
    stale = video_copy("rayjob-video-aaaaa", at=1)  # the state before our patch
    stale["metadata"]["labels"]["touched"] = "by-someone"
    loop.cache.on_rayjob("MODIFIED", stale)
    later = loop.submit(video_copy("rayjob-video-bbbbb", at=2))
    plan = loop.run()
    assert dequeued(plan) == []
    assert loop.cache.state(first) is JobState.ADMITTED
    assert loop.cache.state(later) is JobState.WAITING


def test_a_failed_dequeue_patch_is_retried_by_the_next_reconcile() -> None:
    cache = Cache(FakeClock())
    loop = Loop(cache)
    loop.submit(video_copy("rayjob-video-aaaaa", at=1))
    plan = reconcile(cache, NOW)  # the loop's patch fails (conflict): no mark_dequeued
    assert dequeued(plan) == ["rayjob-video-aaaaa"]
    assert dequeued(reconcile(cache, NOW)) == ["rayjob-video-aaaaa"]


# --- priority --------------------------------------------------------------------------------------------


def test_a_later_higher_priority_job_is_dequeued_first() -> None:
    loop = Loop(Cache(FakeClock()))
    loop.submit(job("early", "video", cpu="10", at=1).obj())
    loop.submit(job("urgent", "video", cpu="10", at=5, priority=100).obj())
    assert dequeued(loop.run()) == ["urgent"]


def test_raising_a_waiting_jobs_priority_moves_it_ahead() -> None:
    loop = Loop(Cache(FakeClock()))
    running = loop.submit(job("running", "video", cpu="10", at=0).obj())
    loop.run()
    loop.deliver(running)
    a = loop.submit(job("a", "video", cpu="10", at=1).obj())
    b = loop.submit(job("b", "video", cpu="10", at=2).obj())
    loop.run()
    assert [i.name for i in loop.cache.queues.backoff(VIDEO)] == ["a", "b"]

    record = f"alice changed priority 0 -> 50 at {stamp(30)}"

    def raise_priority(o: dict[str, Any]) -> None:
        o["metadata"]["annotations"].update(
            {keys.PRIORITY_OVERRIDE: "50", keys.PRIORITY_CHANGE_RECORD: record}
        )

    loop.update_job(b, raise_priority)
    loop.run()
    details = loop.queue(VIDEO)["status"]["queueItemDetails"]
    assert [(d["name"], d["priority"], d["position"]) for d in details["backoff"]] == [
        ("b-ray-qu", 50, 1),
        ("a-ray-qu", 0, 2),
    ]
    assert loop.unit("b")["spec"]["priority"] == 50
    assert events(loop, keys.EVENT_PRIORITY_CHANGED) == [("b", record)]
    loop.update_job(running, lambda o: o.setdefault("status", {}).update(jobDeploymentStatus="Complete"))
    assert dequeued(loop.run()) == ["b"]
    assert loop.cache.state(a) is JobState.WAITING
    assert events(loop, keys.EVENT_PRIORITY_CHANGED) == [("b", record)], "reported once"


# --- reclaim ---------------------------------------------------------------------------------------------


def test_reclaim_suspends_the_borrowing_intern_job_for_a_guaranteed_text_job() -> None:
    """The guide's reclaim story: an intern job (quota min 0) borrows algorithm capacity; a text job within
    its guaranteed min does not fit. The intern job is suspended (Preempted), its claim drains with its pods,
    then the text job is dequeued; the intern job waits again with its original enqueue stamp."""
    loop = Loop(Cache(FakeClock()))
    video = loop.submit(video_copy("rayjob-video-aaaaa", at=0))  # 12.5 CPU in video
    intern = loop.submit(job("big", "intern", cpu="40", at=1).obj())
    assert sorted(dequeued(loop.run())) == ["big", "rayjob-video-aaaaa"]
    loop.deliver(video)
    loop.deliver(intern)
    intern_pods = loop.pods(intern, "40")  # its head: no pod beyond its reservation (no growth)

    text = loop.submit(job("train", "algorithm-text", cpu="30", at=10).obj())
    plan = loop.run()
    assert dequeued(plan) == []
    assert [(s.job.name, s.claimant.name) for s in plan.of(Suspend)] == [("big", "train")]
    assert [e.job.name for e in plan.of(Event) if e.reason == keys.EVENT_PREEMPTED] == ["big"]
    assert [(e.job.name, e.type, e.message) for e in plan.of(Event) if e.reason == keys.EVENT_REQUEUED] == [
        ("big", "Normal", "back in root/algorithm/intern's queue at its original place; it resumes when capacity frees")]
    assert plan.of(Suspend)[0].patch() == {
        "metadata": {"annotations": {keys.DEQUEUE_TIMESTAMP: None}},
        "spec": {"suspend": True},
    }
    waiting = loop.unit("train", "algorithm-text")["status"]["message"]
    assert waiting == (
        "waiting for reclaim of intern/big (root/algorithm/intern): "
        "root/algorithm: cpu used 52500m + request 30 > max 80"
    )

    # The victim's patch is applied; its pods are still terminating: no second reclaim, no admission.
    loop.deliver(intern)
    assert loop.jobs[intern]["metadata"]["annotations"] == {keys.ENQUEUE_TIMESTAMP: stamp(1)}
    plan = loop.run()
    assert plan.of(Suspend) == () and dequeued(plan) == []
    assert loop.cache.state(intern) is JobState.WAITING

    for pod in intern_pods:
        loop.cache.on_pod("DELETED", pod)
    plan = loop.run()
    assert dequeued(plan) == ["train"], (
        "the intern job may not take the capacity back from the guaranteed job"
    )
    assert loop.cache.state(text) is not JobState.WAITING
    item = loop.cache.queues.get(intern)
    assert item is not None and item.enqueue_ns == T0 + 1 * 10**9


def test_no_reclaim_for_a_job_that_is_not_guaranteed() -> None:
    loop = Loop(Cache(FakeClock()))
    loop.submit(video_copy("rayjob-video-aaaaa", at=0))
    loop.submit(job("big", "intern", cpu="40", at=1).obj())
    loop.run()
    loop.submit(job("huge", "algorithm-text", cpu="35", at=10).obj())  # above text's min of 32
    plan = loop.run()
    assert plan.of(Suspend) == ()
    assert loop.unit("huge", "algorithm-text")["status"]["message"] == (
        "root/algorithm: cpu used 52500m + request 35 > max 80"
    )


# --- policies, requeue, objects --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "admitted"),
    [
        pytest.param("Round", ["small"], id="Round skips a head that does not fit"),
        pytest.param("Block", [], id="Block stalls the leaf behind a head that does not fit"),
    ],
)
def test_block_policy_stalls_the_leaf(policy: str, admitted: list[str]) -> None:
    loop = Loop(Cache(FakeClock()))
    loop.run()  # the Queues
    queue = loop.queue(VIDEO)
    queue["spec"]["queuePolicy"] = policy
    loop.cache.on_queue("MODIFIED", copy.deepcopy(queue))
    loop.submit(job("head", "video", cpu="20", at=1).obj())  # above max 14: never fits
    loop.submit(job("small", "video", cpu="1", at=2).obj())
    assert dequeued(loop.run()) == admitted
    if policy == "Block":
        assert loop.unit("small")["status"]["message"] == (
            "root/algorithm/video: Block policy: waiting behind video/head: "
            "root/algorithm/video: cpu used 0 + request 20 > max 14"
        )


def test_an_admitted_job_someone_suspended_is_requeued_with_its_enqueue_stamp() -> None:
    loop = Loop(Cache(FakeClock()))
    uid = loop.submit(job("a", "video", cpu="4", at=1).obj())
    loop.run()
    loop.run()
    assert [(e.job.name, e.reason) for e in loop.events] == [
        ("a", keys.EVENT_DEQUEUED),
        ("a", keys.EVENT_ENQUEUED),
    ], "the Queue was created in the first reconcile, the QueueUnit (and its Enqueued event) in the second"
    loop.deliver(uid)
    loop.update_job(uid, lambda o: o["spec"].update(suspend=True))
    plan = loop.run()
    assert [r.job.name for r in plan.of(Requeue)] == ["a"]
    assert [e.reason for e in plan.of(Event)] == [keys.EVENT_REQUEUED]
    assert plan.of(Requeue)[0].patch() == {"metadata": {"annotations": {keys.DEQUEUE_TIMESTAMP: None}}}
    assert dequeued(plan) == [], "not admitted again before the requeue is applied"
    item = loop.cache.queues.get(uid)
    assert item is not None and item.enqueue_ns == T0 + 1 * 10**9
    plan = loop.run(NOW + 10**9)
    assert plan.of(Requeue) == ()
    assert loop.conflicts == ["a"], "a dequeue before the requeue's watch event conflicts on resourceVersion"
    assert loop.cache.state(uid) is JobState.WAITING
    loop.deliver(uid)
    assert dequeued(loop.run(NOW + 2 * 10**9)) == ["a"], "with nothing else waiting, it is dequeued again"
    assert loop.cache.state(uid) is JobState.ADMITTED


def test_queue_objects_match_the_seed_shape() -> None:
    tree = QuotaTree.parse(example("elasticquotatree.yaml", keys.QUOTA_TREE_KIND))
    assert queue_object(tree.node(VIDEO), "Round") == {
        "apiVersion": "scheduling.x-k8s.io/v1alpha1",
        "kind": "Queue",
        "metadata": {
            "generateName": "root-algorithm-video-",
            "namespace": "kube-queue",
            "annotations": {
                "kube-queue/quota-fullname": "root/algorithm/video",
                "kube-queue/parent-quota-fullname": "algorithm",
            },
            "labels": {"create-by-kubequeue": "true"},
        },
        "spec": {"queuePolicy": "Round"},
    }


def test_queue_unit_object_shape() -> None:
    from common.rayjob import JobInfo

    tree = QuotaTree.parse(example("elasticquotatree.yaml", keys.QUOTA_TREE_KIND))
    info = JobInfo.from_rayjob(video_copy("rayjob-video-h4x2q", at=1))
    assert queue_unit_object(info, tree.node(VIDEO), "root-algorithm-video-k42kq") == {
        "apiVersion": "scheduling.x-k8s.io/v1alpha1",
        "kind": "QueueUnit",
        "metadata": {
            "name": "rayjob-video-h4x2q-ray-qu",
            "namespace": "video",
            "labels": {"create-by-kubequeue": "true"},
            "annotations": {"kube-queue/quota-fullname": "root/algorithm/video", keys.SYNCED_PRIORITY: "0"},
            "ownerReferences": [
                {
                    "apiVersion": "ray.io/v1",
                    "kind": "RayJob",
                    "name": "rayjob-video-h4x2q",
                    "uid": "uid-rayjob-video-h4x2q",
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {
            "consumerRef": {
                "apiVersion": "ray.io/v1",
                "kind": "RayJob",
                "name": "rayjob-video-h4x2q",
                "namespace": "video",
            },
            "queue": "root-algorithm-video-k42kq",
            "priority": 0,
            "resource": {"cpu": "12500m", "memory": "11923550Ki"},
        },
    }


@pytest.mark.parametrize(
    ("phase", "position", "expected"),
    [
        pytest.param(
            "Enqueued",
            3,
            {"phase": "Enqueued", "position": 3, "message": "m", "attempts": 2},
            id="a waiting unit shows its position",
        ),
        pytest.param(
            "Dequeued",
            None,
            {"phase": "Dequeued", "position": None, "message": "m", "attempts": 2},
            id="a dequeued unit clears its position in the merge patch",
        ),
    ],
)
def test_queue_unit_status(phase: Any, position: int | None, expected: dict[str, Any]) -> None:
    assert queue_unit_status(phase, position, "m", 2) == expected
    assert queue_unit_status(phase, position, "m", 2, T0)["lastUpdateTime"] == "2025-01-10T01:36:24Z"


def test_queue_unit_status_refuses_an_unknown_phase() -> None:
    with pytest.raises(ValueError, match=r"QueueUnit phase must be one of .* got 'Waiting'"):
        queue_unit_status("Waiting", None, "m", 0)  # type: ignore[arg-type]


def test_every_leaf_gets_one_queue_and_duplicates_and_orphans_go() -> None:
    loop = Loop(Cache(FakeClock()))
    plan = loop.run()
    assert sorted(a.leaf for a in plan.of(EnsureQueue)) == [
        "root/algorithm/intern",
        "root/algorithm/text",
        "root/algorithm/video",
        "root/devops",
        "root/infrastructure/devops",
    ]
    extra = copy.deepcopy(loop.queue(VIDEO))
    extra["metadata"].update(name="root-algorithm-video-zzz", creationTimestamp="2025-01-10T03:00:00Z")
    gone = copy.deepcopy(loop.queue(VIDEO))
    gone["metadata"]["name"] = "root-old-leaf-abc"
    gone["metadata"]["annotations"][keys.QUOTA_FULLNAME] = "root/old/leaf"
    for obj in (extra, gone):
        loop.queues[obj["metadata"]["name"]] = obj
        loop.cache.on_queue("ADDED", copy.deepcopy(obj))
    plan = loop.run()
    assert [(a.name, a.reason) for a in plan.of(DeleteQueue)] == [
        (
            "root-algorithm-video-zzz",
            "duplicate Queue for root/algorithm/video: root-algorithm-video-q2 is kept",
        ),
        ("root-old-leaf-abc", "quota root/old/leaf is not a leaf of the ElasticQuotaTree"),
    ]
    assert plan.of(EnsureQueue) == ()
    assert loop.run() == Plan()


def test_queue_status_lists_active_and_backoff_in_queue_order() -> None:
    cache = Cache(FakeClock())
    Loop(cache)
    cache.on_rayjob("ADDED", job("b", "video", cpu="1", at=2).obj())
    cache.on_rayjob("ADDED", job("a", "video", cpu="1", at=1).obj())
    assert queue_status(cache.queues, VIDEO) == {
        "queueItemDetails": {
            "active": [
                {"name": "a-ray-qu", "namespace": "video", "priority": 0, "position": 1},
                {"name": "b-ray-qu", "namespace": "video", "priority": 0, "position": 2},
            ],
            "backoff": [],
        }
    }


def test_tree_status_reports_used_and_waiting_per_node_only_when_it_changes() -> None:
    loop = Loop(Cache(FakeClock()))
    loop.submit(job("a", "video", cpu="10", at=1).obj())
    loop.submit(job("b", "video", cpu="10", at=2).obj())
    plan = loop.run()
    (update,) = plan.of(UpdateTreeStatus)
    nodes = update.status["nodes"]
    assert nodes[VIDEO] == {"used": {"cpu": "10", "memory": "1Gi"}, "request": {"cpu": "10", "memory": "1Gi"}}
    assert nodes["root"] == nodes[VIDEO]
    assert nodes[TEXT] == {"used": {}, "request": {}}
    assert loop.run().of(UpdateTreeStatus) == ()


def test_a_job_whose_namespace_is_unbound_loses_its_queue_unit() -> None:
    loop = Loop(Cache(FakeClock()))
    loop.submit(job("a", "video", cpu="20", at=1).obj())
    loop.run()
    loop.run()
    assert ("video", "a-ray-qu") in loop.units
    loop.tree["spec"]["root"]["children"][0]["children"][0]["namespaces"] = []
    loop.cache.on_tree("MODIFIED", copy.deepcopy(loop.tree))
    plan = loop.run()
    assert [(a.namespace, a.name) for a in plan.of(DeleteQueueUnit)] == [("video", "a-ray-qu")]


def test_nothing_is_planned_without_a_tree() -> None:
    cache = Cache(FakeClock())
    cache.on_rayjob("ADDED", job("a", "video", cpu="1", at=1).obj())
    assert reconcile(cache, NOW) == Plan()


def test_unmanaged_jobs_are_ignored() -> None:
    loop = Loop(Cache(FakeClock()))
    loop.submit(make_rayjob("plain", "video").head(cpu="1").obj())  # no enqueue stamp
    loop.submit(job("elsewhere", "unbound", cpu="1", at=1).obj())
    plan = loop.run()
    assert dequeued(plan) == [] and plan.of(EnsureQueueUnit) == ()


def test_dequeue_is_one_patch_guarded_by_resource_version() -> None:
    loop = Loop(Cache(FakeClock()))
    loop.submit(job("a", "video", cpu="1", at=1).obj())
    (action,) = reconcile(loop.cache, NOW).of(Dequeue)
    assert action.patch() == {
        "metadata": {"annotations": {keys.DEQUEUE_TIMESTAMP: format_go(NOW)}, "resourceVersion": "1"},
        "spec": {"suspend": False},
    }
    assert action.dequeue_stamp == "2025-01-10 01:37:24 +0000 UTC"


def test_capacity_of_the_nodes_limits_admission() -> None:
    loop = Loop(Cache(FakeClock()))
    loop.cache.on_node(
        "ADDED",
        {
            "metadata": {"name": "n1"},
            "status": {
                "allocatable": {"cpu": "8", "memory": "64Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        },
    )
    loop.submit(job("a", "video", cpu="10", at=1).obj())
    loop.run()
    loop.run()
    assert loop.unit("a")["status"]["message"] == "cluster: cpu used 0 + request 10 > capacity 8"
    assert loop.cache.ledger is not None and loop.cache.ledger.capacity == Resources(
        {"cpu": 8000, "memory": 64 * 2**30, "pods": 110}
    )


def test_a_new_job_is_reported_enqueued_before_dequeued() -> None:
    loop = Loop(Cache(FakeClock()))
    loop.run()  # the Queues exist
    loop.submit(job("a", "video", cpu="1", at=1).obj())
    plan = loop.run()
    assert [type(a).__name__ for a in plan if not isinstance(a, UpdateQueueStatus | UpdateTreeStatus)] == [
        "EnsureQueueUnit",
        "Event",
        "Dequeue",
        "Event",
        "UpdateQueueUnitStatus",
    ]
    assert [e.reason for e in plan.of(Event)] == [keys.EVENT_ENQUEUED, keys.EVENT_DEQUEUED]
    assert loop.unit("a")["status"]["message"] == "dequeued at 2025-01-10 01:37:24 +0000 UTC"


# --- slices: the verbs run between them, the decision stays one snapshot's ------------------------------


def _many(loop: Loop, n: int) -> None:
    for i in range(n):
        ns = ("video", "text", "intern")[i % 3]
        loop.submit(job(f"j{i:03d}", ns, cpu="1", at=i, priority=i % 4).obj())


def test_a_pass_in_slices_plans_exactly_what_one_uninterrupted_pass_plans() -> None:
    whole, sliced = Loop(Cache(FakeClock())), Loop(Cache(FakeClock()))
    for loop in (whole, sliced):
        loop.run()  # the Queues exist, so the pass also plans QueueUnits and their statuses
        _many(loop, 3 * SLICE + 7)
    expected = reconcile(whole.cache, NOW)
    steps = reconcile_steps(sliced.cache, NOW)
    yields = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            plan = done.value
            break
        yields += 1
    assert yields >= 8, "one slice per SLICE jobs in each sweep, one after the admission pass"
    assert plan == expected
    assert dequeued(plan), "the scenario admits something"


def test_a_pod_claim_the_verbs_add_between_slices_does_not_change_the_decision() -> None:
    """assume_bound charges a bound pod to the live ledger while the verbs run between two slices: the pass
    decides on the ledger it copied when it started, as a pass that ran before the bind would have."""
    loop = Loop(Cache(FakeClock()))
    loop.run()
    loop.submit(job("a", "video", cpu="12", at=1).obj())
    intruder = make_pod("intruder", "video", cpu="4").obj()
    loop.cache.on_pod("ADDED", intruder)
    steps = reconcile_steps(loop.cache, NOW)
    next(steps)
    loop.cache.assume_bound(intruder["metadata"]["uid"], "n1")
    ledger = loop.cache.ledger
    assert ledger is not None and intruder["metadata"]["uid"] in ledger, "the live ledger has the pod now"
    while True:
        try:
            next(steps)
        except StopIteration as done:
            plan = done.value
            break
    assert dequeued(plan) == ["a"]

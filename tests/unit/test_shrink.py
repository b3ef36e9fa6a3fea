"""Shrink instead of evict (docs/elastic.md): a guaranteed claimant takes the workers above an elastic victim's
floor as one RayCluster patch (replicas lowered, the pods named in workersToDelete); a rigid victim is still
suspended whole; a replayed shrink lowers nothing twice."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from common import keys
from common.accounting import JobState
from common.clock import FakeClock
from common.preemption import Notice, NoticeError, issue, whole_job
from common.start_times import DRAIN_SECONDS
from extender import estimates
from extender.actions import (
    AnnotatePod,
    Event,
    JobRef,
    Notify,
    ObjectRef,
    PreemptPod,
    SetClusterQuotaCondition,
    Shrink,
    Suspend,
    WithdrawNotice,
)
from extender.app import Service
from extender.cache import Cache
from extender.settings import parse_settings
from extender.shrink import shrink_patch
from extender.shrink_io import clear_shrink_notice, shrink_cluster
from kubeio.client import ApiError
from kubeio.events import EventRecorder
from tests.unit.builders import apply_merge_patch, make_pod, make_rayjob
from tests.unit.test_bare_raycluster import ClusterLoop, cluster_pod, notebook
from tests.unit.test_jsonpatch import apply as apply_ops
from tests.unit.test_preemption import with_grace
from tests.unit.test_reconcile import NOW, Loop, dequeued, job, video_copy

GROUP = "small-group"


def apply(doc: dict[str, Any], ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 as the apiserver applies a Shrink's patch: the leading resourceVersion test, then the rest."""
    test, *rest = ops
    assert test["op"] == "test" and doc["metadata"].get("resourceVersion", "") == test["value"]
    return apply_ops(doc, rest)


def _cluster(replicas: int = 6, floor: int = 2, named: list[str] | None = None) -> dict[str, Any]:
    group: dict[str, Any] = {"groupName": GROUP, "replicas": replicas, "minReplicas": floor}
    if named is not None:
        group["scaleStrategy"] = {"workersToDelete": named}
    return {"metadata": {"name": "big-x7k2p", "namespace": "intern", "uid": "uid-rc", "resourceVersion": "9"},
            "spec": {"workerGroupSpecs": [{"groupName": "other", "replicas": 1}, group]}}


def _shrink(*names: str) -> Shrink:
    return Shrink(ObjectRef("intern", "big-x7k2p", "uid-rc"), JobRef("intern", "big", "uid-big"),
                  ("intern", "big-ray-qu"), ((GROUP, names),), "shrunk by ...")


class ShrinkLoop(Loop):
    """test_reconcile's in-memory API, carrying out a Shrink as the API server would (the patch applied to the
    RayCluster, delivered by the watch); KubeRay's deletion of the named pods is the test's to do."""

    def __init__(self, cache: Cache) -> None:
        super().__init__(cache)
        self.shrinks: list[Shrink] = []

    def apply(self, action: Any, *, deliver: bool) -> None:
        if not isinstance(action, Shrink):
            super().apply(action, deliver=deliver)
            return
        self.shrinks.append(action)
        cluster = self.clusters[action.cluster.uid]
        live = {p["metadata"]["name"] for p in self.pod_objs.values()}
        patch = shrink_patch(cluster, action, live.__contains__)
        if patch:
            self.clusters[action.cluster.uid] = apply(cluster, patch)
            self.cache.on_raycluster("MODIFIED", copy.deepcopy(self.clusters[action.cluster.uid]))
        job_obj = self.jobs[action.job.uid]  # clear_shrink_notice: only the notice it carried out
        if action.notice is not None and job_obj["metadata"]["annotations"].get(keys.PREEMPTION_NOTICE) == action.notice:
            apply_merge_patch(job_obj, {"metadata": {"annotations": {keys.PREEMPTION_NOTICE: None,
                                                                     keys.CHECKPOINTED: None}}})
            self.update_job(action.job.uid, lambda _: None)


def _story(elastic: bool, cache: Cache | None = None, *, autoscaling: bool = False, head: str | None = None
           ) -> tuple[ShrinkLoop, str, list[dict[str, Any]]]:
    """video runs 12.5 cpu; intern's big (head 24 + 6 workers of 4, floor 2: its floor of 32 fits intern's max 40,
    its growth got there past the filter) borrows; text's train (32 cpu, guaranteed) arrives: root/algorithm would
    hold 92.5 of its 80, so 12.5 must go: four of big's workers. The rigid big (head 16: 40, all reserved) has no
    growth to give."""
    loop = ShrinkLoop(cache or Cache(FakeClock()))
    video = loop.submit(video_copy("rayjob-video-aaaaa", at=0))
    head = head or ("24" if elastic else "16")
    big = job("big", "intern", cpu=head, at=1).workers(6, cpu="4", group=GROUP, min_replicas=2)
    if autoscaling:
        big = big.set("spec.rayClusterSpec.enableInTreeAutoscaling", True)
    intern = loop.submit((big.label(keys.ELASTIC, "true") if elastic else big).obj())
    assert sorted(dequeued(loop.run())) == ["big", "rayjob-video-aaaaa"]
    loop.deliver(video)
    loop.deliver(intern)
    pods = loop.pods(intern, head, *["4"] * 6)
    (cluster_uid,) = loop.clusters
    loop.clusters[cluster_uid]["spec"] = _cluster()["spec"]
    loop.cache.on_raycluster("MODIFIED", copy.deepcopy(loop.clusters[cluster_uid]))
    loop.submit(job("train", "algorithm-text", cpu="32", at=10).obj())
    return loop, intern, pods


def test_a_guaranteed_claimant_shrinks_an_elastic_victim_to_its_floor_instead_of_suspending_it() -> None:
    loop, intern, pods = _story(elastic=True)
    plan = loop.run()
    assert plan.of(Suspend) == () and plan.of(PreemptPod) == () and dequeued(plan) == []
    (shrink,) = plan.of(Shrink)
    newest_first = tuple(p["metadata"]["name"] for p in reversed(pods[3:]))
    assert shrink.groups == ((GROUP, newest_first),) and shrink.job.name == "big" and shrink.pods == 4
    assert shrink.unit == ("intern", "big-ray-qu")
    assert shrink.reason.startswith(
        "shrunk by 4 workers above its floor (intern/big-x7k2p-6, intern/big-x7k2p-5, intern/big-x7k2p-4, "
        "intern/big-x7k2p-3; request {cpu: 16}) to reclaim quota for algorithm-text/train, guaranteed in "
        "root/algorithm/text (request {cpu: 32, memory: 1Gi}): ")
    group = loop.clusters[shrink.cluster.uid]["spec"]["workerGroupSpecs"][1]
    assert group["replicas"] == 2 and group["scaleStrategy"] == {"workersToDelete": list(newest_first)}
    # The named pods are releasing: the next pass (or a restarted controller) waits for them, takes nothing more.
    plan = loop.run()
    assert plan.of(Shrink) == () and plan.of(Suspend) == () and plan.of(PreemptPod) == () and dequeued(plan) == []
    assert loop.unit("train", "algorithm-text")["status"]["message"].startswith("waiting for reclaim of")
    for pod in pods[3:]:  # KubeRay deletes them
        loop.cache.on_pod("DELETED", pod)
    assert dequeued(loop.run()) == ["train"]
    assert loop.cache.state(intern) is not None and len(loop.shrinks) == 1


def test_a_rigid_victim_in_the_same_place_is_suspended_whole() -> None:
    loop, _, _ = _story(elastic=False)
    plan = loop.run()
    assert plan.of(Shrink) == () and [s.job.name for s in plan.of(Suspend)] == ["big"]


def test_the_patch_lowers_replicas_by_the_pods_it_names_and_a_replay_lowers_nothing() -> None:
    live = {"w3", "w4", "w5", "w6", "old"}.__contains__
    patch = shrink_patch(_cluster(), _shrink("w6", "w5"), live)
    assert patch == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "9"},
        {"op": "replace", "path": "/spec/workerGroupSpecs/1/replicas", "value": 4},
        {"op": "add", "path": "/spec/workerGroupSpecs/1/scaleStrategy", "value": {"workersToDelete": ["w6", "w5"]}},
    ]
    shrunk = apply(_cluster(), patch)
    assert shrink_patch(shrunk, _shrink("w6", "w5"), live) == [], "a replay after a restart changes nothing"
    # names of pods still there are kept (KubeRay leaves them out of its diff), gone ones dropped; never below min
    patch = shrink_patch(_cluster(replicas=3, named=["old", "gone"]), _shrink("w6", "w5"), live)
    assert patch[1:] == [
        {"op": "replace", "path": "/spec/workerGroupSpecs/1/replicas", "value": 2},
        {"op": "replace", "path": "/spec/workerGroupSpecs/1/scaleStrategy",
         "value": {"workersToDelete": ["old", "w6", "w5"]}},
    ]


class _Api:
    """A RayCluster whose first JSON patch loses the resourceVersion test (KubeRay wrote in between): 422."""

    def __init__(self) -> None:
        self.cluster = _cluster()
        self.patches: list[Any] = []
        self.events: list[dict[str, Any]] = []

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        return copy.deepcopy(self.cluster)

    async def patch(self, path: str, body: Any, content_type: str = "") -> dict[str, Any]:
        assert content_type == "application/json-patch+json" and path.endswith("/rayclusters/big-x7k2p")
        self.patches.append(body)
        if len(self.patches) == 1:
            self.cluster["metadata"]["resourceVersion"] = "10"
        if body[0]["value"] != self.cluster["metadata"]["resourceVersion"]:
            raise ApiError(422, "Invalid", "test operation failed", "PATCH", path)
        self.cluster = apply(self.cluster, body)
        return copy.deepcopy(self.cluster)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.events.append(body)
        return body


def test_the_shrink_is_read_again_after_a_lost_race_and_says_shrunk_on_the_job_its_unit_and_its_cluster() -> None:
    api = _Api()
    events = EventRecorder(api, "rayqueue-extender", FakeClock())  # type: ignore[arg-type]
    live = {"w6", "w5"}.__contains__
    updated = asyncio.run(shrink_cluster(api, events, _shrink("w6", "w5"), live))  # type: ignore[arg-type]
    assert updated is not None and len(api.patches) == 2
    assert updated["spec"]["workerGroupSpecs"][1]["replicas"] == 4
    assert [(e["involvedObject"]["kind"], e["reason"], e["type"]) for e in api.events] == [
        ("RayJob", "Shrunk", "Warning"), ("QueueUnit", "Shrunk", "Warning"), ("RayCluster", "Shrunk", "Warning")]
    again = asyncio.run(shrink_cluster(api, events, _shrink("w6", "w5"), live))  # type: ignore[arg-type]
    assert again is None and len(api.patches) == 2 and len(api.events) == 3, "a replay writes nothing"



def test_after_a_shrink_the_autoscalers_new_asks_are_growth_refused_while_the_claimant_waits() -> None:
    """Issue 21 item 4: the autoscaler asks again for the workers it lost (a new pod of big's group). It is growth:
    refused at filter while the claimant waits (guaranteed first, the pass's waiting heads), still while the
    claimant holds the capacity (algorithm's max), said on the RayCluster's RayQueueQuota condition; it fits once
    the claimant is gone."""
    svc = Service(parse_settings(["--no-leader-elect"]), None, FakeClock())
    # big of 12 + 6 x 4 = 36 (intern's max 40 leaves room for the ask); 12.5 + 36 + 32 > 80: one worker goes
    loop, intern, pods = _story(elastic=True, cache=svc.cache, autoscaling=True, head="12")
    plan = loop.run()
    (shrink,) = plan.of(Shrink)
    assert shrink.pods == 1 and plan.of(Suspend) == ()
    plan = loop.run()  # the named pods are releasing; the claimant waits for them
    assert [c.key for c in plan.guaranteed] == ["algorithm-text/train"]
    svc.cache.waiting_guaranteed, svc.cache.releasing_claims = plan.guaranteed, plan.releasing  # as the controller
    cluster = next(iter(loop.clusters.values()))
    ask = (make_pod("big-x7k2p-7", "intern", cpu="4").ray("big-x7k2p", "worker", GROUP).owned_by(cluster)
           .set("metadata.creationTimestamp", "2025-01-10T01:50:00Z").obj())
    svc.cache.on_pod("ADDED", ask)
    pending = svc.cache.pod(ask["metadata"]["uid"])
    growth_of = svc.cache.growth_job(pending.uid) if pending is not None else None
    assert pending is not None and growth_of is not None and growth_of.uid == intern
    refused = svc.quota_check(pending)
    assert not refused and "guaranteed first" in refused.reason and "algorithm-text/train" in refused.reason
    (condition,) = loop.run().of(SetClusterQuotaCondition)
    assert (condition.status, condition.reason) == ("True", "QuotaExceeded") and "guaranteed first" in condition.message
    loop.cache.on_pod("DELETED", pods[-1])  # KubeRay deletes the named worker
    plan = loop.run()
    assert dequeued(plan) == ["train"]
    svc.cache.waiting_guaranteed, svc.cache.releasing_claims = plan.guaranteed, plan.releasing
    held = svc.quota_check(pending)
    assert not held and "root/algorithm: cpu used" in held.reason, held.reason  # the claimant's usage now
    train = next(u for u, o in loop.jobs.items() if o["metadata"]["name"] == "train")
    loop.cache.on_rayjob("DELETED", loop.jobs[train])
    plan = loop.run()
    svc.cache.waiting_guaranteed, svc.cache.releasing_claims = plan.guaranteed, plan.releasing
    assert svc.quota_check(pending), "the claimant gone, the autoscaler's worker fits"


# --- the cooperative notice and grace for shrunk workers (docs/preemption.md, issue 21 item 3) -------------------

NS = 10**9


def _noticed() -> tuple[ShrinkLoop, str, list[dict[str, Any]], Notice]:
    """The story above with a grace of 20 s on intern: the first pass gives big a shrink notice."""
    loop, intern, pods = _story(elastic=True)
    with_grace(loop, "20s")
    plan = loop.run()
    assert plan.of(Shrink) == () and plan.of(Suspend) == () and dequeued(plan) == []
    (notify,) = plan.of(Notify)
    assert (notify.job.name, notify.claimant.name) == ("big", "train")
    return loop, intern, pods, Notice.parse(loop.jobs[intern]["metadata"]["annotations"][keys.PREEMPTION_NOTICE])


def _named(pods: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(p["metadata"]["name"] for p in reversed(pods[3:]))  # the four newest workers


def test_with_a_grace_the_shrink_is_a_notice_naming_the_workers_and_the_claimant_waits_for_it() -> None:
    loop, _, pods, notice = _noticed()
    deadline = "2025-01-10T01:37:44Z"  # NOW (01:37:24) + 20 s
    assert notice.workers == ((GROUP, _named(pods)),) and notice.shrinks and notice.deadline == deadline
    assert (notice.job, notice.claimant, notice.grace) == ("intern/big", "algorithm-text/train", "20s")
    assert notice.reason.startswith("reclaim for algorithm-text/train, guaranteed in root/algorithm/text; ")
    assert not whole_job(notice.text()), "the job keeps running: it is no releasing whole-job victim"
    (event,) = [e for e in loop.events if e.reason == keys.EVENT_PREEMPTION_NOTICE]
    assert event.message.startswith(
        "preemption notice: 4 workers above its floor (intern/big-x7k2p-6, intern/big-x7k2p-5, intern/big-x7k2p-4, "
        f"intern/big-x7k2p-3) go at {deadline} (grace 20s, from root/algorithm/intern) to reclaim for ")
    assert keys.CHECKPOINTED in event.message and loop.plans[-1].wake_ns == notice.deadline_ns
    assert loop.unit("train", "algorithm-text")["status"]["message"].startswith(
        f"waiting for a preemption notice to expire (intern/big until {deadline}, or the victim's "
        f"{keys.CHECKPOINTED} acknowledgement): waiting for reclaim of ")
    # the next pass mirrors the notice onto the named pods only; nobody is noticed, shrunk or admitted twice
    plan = loop.run(NOW + NS)
    assert sorted(a.name for a in plan.of(AnnotatePod)) == sorted(_named(pods))
    assert {a.notice for a in plan.of(AnnotatePod)} == {notice.text()}
    assert all(keys.PREEMPTION_NOTICE not in p["metadata"].get("annotations", {}) for p in pods[:3])
    assert plan.of(Notify) == () and plan.of(Shrink) == () and plan.of(PreemptPod) == () and dequeued(plan) == []
    assert [c.key for c in plan.guaranteed] == ["algorithm-text/train"]
    assert set(plan.releasing) == {p["metadata"]["uid"] for p in pods[3:]}, "the noticed pods release meanwhile"


def test_the_estimates_free_only_the_named_workers_at_a_shrink_notices_deadline_and_the_job_runs_on() -> None:
    """A shrink notice frees the four named workers at its deadline, not the whole job: the floor runs on for its
    runtime in the forecast, and the claimant is expected once the workers have drained."""
    loop, intern, pods, notice = _noticed()
    loop.run(NOW + NS)  # mirrors the notice onto the named pods
    snap = estimates.snapshot(loop.cache, NOW + NS)
    assert snap is not None
    running = {r.claim.uid: r for r in snap.running}
    assert not running[intern].releasing and running[intern].runtime.source != "declared", running[intern]
    drained = notice.deadline_ns + round(DRAIN_SECONDS * NS)
    for pod in pods[3:]:
        named = running[pod["metadata"]["uid"]]
        assert named.releasing and named.end_ns(NOW + NS) == drained, named
        assert named.runtime.detail == f"shrink notice until {notice.deadline}"
    assert all(p["metadata"]["uid"] not in running for p in pods[:3]), "the kept workers are no pod claims"
    train = next(uid for uid, j in loop.jobs.items() if j["metadata"]["name"] == "train")
    assert estimates.compute(snap).estimates[train].start_ns == drained


def test_the_shrink_is_sent_at_the_deadline_not_before_and_removes_the_notice() -> None:
    loop, intern, pods, notice = _noticed()
    for t in (NOW + NS, notice.deadline_ns - NS, notice.deadline_ns - 1):
        plan = loop.run(t)
        assert plan.of(Shrink) == () and plan.of(Notify) == () and dequeued(plan) == [], f"at {t}"
    plan = loop.run(notice.deadline_ns)
    (shrink,) = plan.of(Shrink)
    assert shrink.groups == ((GROUP, _named(pods)),) and shrink.notice == notice.text() and plan.of(Suspend) == ()
    assert shrink.reason.startswith("shrunk by 4 workers above its floor (intern/big-x7k2p-6, intern/big-x7k2p-5, "
                                    "intern/big-x7k2p-4, intern/big-x7k2p-3): its preemption notice expired at "
                                    "2025-01-10T01:37:44Z; to reclaim for algorithm-text/train")
    group = loop.clusters[shrink.cluster.uid]["spec"]["workerGroupSpecs"][1]
    assert group["replicas"] == 2 and group["scaleStrategy"] == {"workersToDelete": list(_named(pods))}
    assert keys.PREEMPTION_NOTICE not in loop.jobs[intern]["metadata"]["annotations"]
    plan = loop.run(notice.deadline_ns + NS)  # named for deletion now: still releasing, nothing more
    assert plan.of(Shrink) == () and plan.of(Notify) == () and plan.of(Suspend) == () and dequeued(plan) == []
    for pod in pods[3:]:  # KubeRay deletes them
        loop.cache.on_pod("DELETED", pod)
    assert dequeued(loop.run(notice.deadline_ns + 2 * NS)) == ["train"]
    assert loop.cache.state(intern) is JobState.ADMITTED and len(loop.shrinks) == 1


def test_an_acknowledged_shrink_notice_shrinks_at_once_and_the_acknowledgement_goes_with_it() -> None:
    loop, intern, _, _ = _noticed()
    loop.update_job(intern, lambda o: o["metadata"]["annotations"].update({keys.CHECKPOINTED: "true"}))
    (shrink,) = loop.run(NOW + 2 * NS).of(Shrink)
    assert f"acknowledged its preemption notice ({keys.CHECKPOINTED})" in shrink.reason
    annotations = loop.jobs[intern]["metadata"]["annotations"]
    assert keys.PREEMPTION_NOTICE not in annotations and keys.CHECKPOINTED not in annotations


def test_a_shrink_notice_is_withdrawn_when_its_claimant_no_longer_waits_and_the_job_keeps_its_workers() -> None:
    loop, intern, pods, _ = _noticed()
    loop.run(NOW + NS)  # the named pods get the notice
    train = next(u for u, o in loop.jobs.items() if o["metadata"]["name"] == "train")
    loop.cache.on_rayjob("DELETED", loop.jobs.pop(train))
    plan = loop.run(NOW + 2 * NS)
    (withdraw,) = plan.of(WithdrawNotice)
    assert withdraw.job.name == "big" and "algorithm-text/train no longer waits" in withdraw.reason
    assert [e.job.name for e in plan.of(Event) if e.reason == keys.EVENT_PREEMPTION_NOTICE_WITHDRAWN] == ["big"]
    assert sorted(a.name for a in plan.of(AnnotatePod)) == sorted(_named(pods))
    assert {a.notice for a in plan.of(AnnotatePod)} == {None}
    later = loop.run(NOW + 60 * NS)
    assert later.of(Shrink) == () and loop.shrinks == [] and len(loop.cache.remaining_pods(intern)) == 7


def test_a_restarted_controller_finds_the_shrink_notice_and_neither_renotices_nor_shrinks_early() -> None:
    """A new Cache built from the API alone: the notice is on the RayJob and on the named pods."""
    loop, intern, pods, notice = _noticed()
    loop.run(NOW + NS)
    fresh = ShrinkLoop(Cache(FakeClock()))
    fresh.tree, fresh.queues, fresh.units = loop.tree, loop.queues, loop.units
    fresh.jobs, fresh.clusters, fresh.pod_objs = loop.jobs, loop.clusters, loop.pod_objs
    fresh.cache.on_tree("MODIFIED", copy.deepcopy(loop.tree))
    for obj in loop.queues.values():
        fresh.cache.on_queue("ADDED", copy.deepcopy(obj))
    for obj in loop.jobs.values():
        fresh.cache.on_rayjob("ADDED", copy.deepcopy(obj))
    for obj in loop.clusters.values():
        fresh.cache.on_raycluster("ADDED", copy.deepcopy(obj))
    for obj in loop.pod_objs.values():
        fresh.cache.on_pod("ADDED", copy.deepcopy(obj))
    plan = fresh.run(notice.deadline_ns - NS)
    assert plan.of(Notify) == () and plan.of(Shrink) == () and plan.of(PreemptPod) == () and dequeued(plan) == []
    assert plan.wake_ns == notice.deadline_ns and plan.of(AnnotatePod) == ()
    (shrink,) = fresh.run(notice.deadline_ns).of(Shrink)
    assert shrink.groups == ((GROUP, _named(pods)),) and fresh.cache.state(intern) is JobState.ADMITTED


def test_a_second_shrink_during_the_grace_names_both_sets_of_workers_in_one_notice_with_the_later_deadline() -> None:
    first = issue(NOW, 20 * NS, "intern/big", "text/train", "uid-train", "reclaim", ((GROUP, ("w6", "w5")),))
    second = issue(NOW + 5 * NS, 20 * NS, "intern/big", "video/other", "uid-other", "again",
                   ((GROUP, ("w5", "w4")), ("other", ("o1",))))
    merged = first.merged(second)
    assert merged.workers == (("other", ("o1",)), (GROUP, ("w6", "w5", "w4"))), "by group name, as the JSON holds them"
    assert (merged.claimant_uid, merged.reason, merged.deadline_ns) == ("uid-train", "reclaim", second.deadline_ns)
    assert Notice.parse(merged.text()) == merged


@pytest.mark.parametrize(
    ("workers", "problem"),
    [
        pytest.param('{"g":"w6"}', "workers is not an object of group -> pod names", id="a group's pods not a list"),
        pytest.param('{"g":[]}', "workers is not an object of group -> pod names", id="a group naming no pod"),
        pytest.param('["w6"]', "workers is not an object of group -> pod names", id="workers not an object"),
    ],
)
def test_a_shrink_notice_whose_workers_cannot_be_read_is_refused_and_counts_as_the_whole_jobs(
    workers: str, problem: str
) -> None:
    text = issue(NOW, 20 * NS, "intern/big", "text/train", "uid-train", "r").text()[:-1] + f',"workers":{workers}}}'
    with pytest.raises(NoticeError, match=problem):
        Notice.parse(text)
    assert whole_job(text), "an unreadable notice has no workers to keep to: the job is suspended at once"
    assert whole_job(issue(NOW, NS, "intern/big", "text/train", "uid-train", "r").text())


class _JobApi:
    """The RayJob a noticed shrink clears: its first merge patch loses to a concurrent write (409)."""

    def __init__(self, notice: str) -> None:
        self.job = {"metadata": {"name": "big", "namespace": "intern", "uid": "uid-big", "resourceVersion": "5",
                                 "annotations": {keys.PREEMPTION_NOTICE: notice, keys.CHECKPOINTED: "yes"}}}
        self.patches: list[Any] = []

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        assert path.endswith("/rayjobs/big")
        return copy.deepcopy(self.job)

    async def patch(self, path: str, body: Any, content_type: str = "") -> dict[str, Any]:
        self.patches.append(body)
        if len(self.patches) == 1:
            self.job["metadata"]["resourceVersion"] = "6"
        if body["metadata"]["resourceVersion"] != self.job["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified", "PATCH", path)
        apply_merge_patch(self.job, body)
        return copy.deepcopy(self.job)


def test_a_noticed_shrink_removes_its_notice_and_acknowledgement_but_never_another_notice() -> None:
    text = issue(NOW, 20 * NS, "intern/big", "text/train", "uid-train", "r", ((GROUP, ("w6",)),)).text()
    api = _JobApi(text)
    action = Shrink(ObjectRef("intern", "big-x7k2p", "uid-rc"), JobRef("intern", "big", "uid-big"),
                    ("intern", "big-ray-qu"), ((GROUP, ("w6",)),), "shrunk by ...", notice=text)
    cleared = asyncio.run(clear_shrink_notice(api, action))  # type: ignore[arg-type]
    assert cleared is not None and len(api.patches) == 2, "read again after the conflict"
    assert cleared["metadata"]["annotations"] == {}
    other = _JobApi(text.replace("text/train", "video/other"))
    assert asyncio.run(clear_shrink_notice(other, action)) is None and other.patches == []  # type: ignore[arg-type]


def test_a_bare_raycluster_labelled_elastic_is_shrunk_by_reclaim_not_suspended_whole() -> None:
    """Issue 21 item 1 covers bare RayClusters: a tenant's elastic notebook in intern (head 20 + 4 workers of 5,
    floor 1: 25 reserved, 40 running) borrows; the guaranteed text job (30) makes root/algorithm 82 of its 80: one
    worker of the cluster goes, by one patch of the RayCluster itself (the job is the cluster), and it runs on."""
    class BareShrinkLoop(ClusterLoop):
        """The shrink patch applied to the bare cluster itself, as the API server would."""

        def apply(self, action: Any, *, deliver: bool) -> None:
            if not isinstance(action, Shrink):
                super().apply(action, deliver=deliver)
                return
            live = {p["metadata"]["name"] for p in pods}
            self.jobs[action.cluster.uid] = apply(self.jobs[action.cluster.uid],
                                                  shrink_patch(self.jobs[action.cluster.uid], action, live.__contains__))

    big = (make_rayjob("big", "intern").head(cpu="20", memory="1Gi")
           .workers(4, cpu="5", memory="1Gi", group="w", min_replicas=1)
           .enqueued(notebook().obj()["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP])
           .set("metadata.resourceVersion", "1").elastic().as_raycluster())
    loop = BareShrinkLoop(Cache(FakeClock()))
    pods: list[dict[str, Any]] = []
    loop.submit(big)
    loop.submit(job("video-job", "video", cpu="12", at=0).obj())
    assert sorted(dequeued(loop.run())) == ["big", "video-job"]
    uid = big["metadata"]["uid"]
    loop.deliver(uid)
    loop.deliver("uid-video-video-job")
    pods += [cluster_pod(loop.jobs[uid], "bh", "head", cpu="20")]
    pods += [cluster_pod(loop.jobs[uid], f"bw{i}", cpu="5", created=f"2025-01-10T01:4{i}:00Z") for i in range(4)]
    for pod in pods:
        loop.cache.on_pod("ADDED", pod)
    loop.submit(job("train", "algorithm-text", cpu="30", at=10).obj())
    plan = loop.run()
    assert plan.of(Suspend) == () and plan.of(PreemptPod) == ()
    (shrink,) = plan.of(Shrink)
    assert (shrink.cluster.uid, shrink.job.uid, shrink.job.kind) == (uid, uid, keys.RAYCLUSTER_KIND)
    assert shrink.groups == (("w", ("bw3",)),) and shrink.unit == ("intern", "big-rc-qu")
    group = loop.jobs[uid]["spec"]["workerGroupSpecs"][0]
    assert group["replicas"] == 3 and group["scaleStrategy"] == {"workersToDelete": ["bw3"]}
    assert loop.jobs[uid]["spec"]["suspend"] is False

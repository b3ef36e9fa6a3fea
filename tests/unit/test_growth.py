"""Growth (docs/growth.md): pods beyond a job's reservation are reclaimed pod by pod, newest first, before any
whole job (Ledger.plan_growth_reclaim, common.admission); a job's maximum size and its size columns."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from typing import Any

from prometheus_client import CollectorRegistry

from common.accounting import current_request, maximum_request
from common.admission import AdmissionPass
from common.clock import FakeClock
from common.columns import compact_size
from common.ledger import Claim, Ledger
from common.queueing import QueueItem, Queues
from common.rayjob import JobInfo, PodInfo
from common.resources import Resources
from extender.actions import JobRef, ObjectRef, Plan, PreemptPod, SetClusterQuotaCondition, Suspend
from extender.app import Service
from extender.cache import Cache
from extender.controller import Controller
from extender.reconcile import reconcile
from kubeio.client import ApiError
from kubeio.events import EventRecorder
from tests.unit.builders import PassWorld, make_pod, make_raycluster, make_rayjob
from tests.unit.test_cache import CLUSTER, node, ray_pod
from tests.unit.test_extender_service import service
from tests.unit.test_ledger import INTERN, TEXT, VIDEO, claim, ledger_with, seed_tree
from tests.unit.test_reconcile import Loop, dequeued, job, video_copy


def growth(uid: str, leaf: str, job: str, *, cpu: int, order: int, priority: int = 0) -> Claim:
    """A bound pod of `job` beyond its reservation: a pod claim, growth of that job."""
    return dataclasses.replace(claim(uid, leaf, cpu=cpu, kind="pod", order=order, priority=priority), growth_of=job)


def story(t2: int = 16) -> tuple[Ledger, list[Claim]]:
    """root/algorithm (max 80 cpu) full: intern's job i1 (20) with three growth pods of 4 (newest g3), text's
    t1 (32, its min) and t2 (16, above its min; 18 puts root/algorithm at 82, after a shrink)."""
    pods = [growth(f"g{n}", INTERN, "i1", cpu=4, order=10 + n) for n in (1, 2, 3)]
    ledger = ledger_with(
        seed_tree(),
        claim("i1", INTERN, cpu=20, order=1),
        *pods,
        claim("t1", TEXT, cpu=32, order=2),
        claim("t2", TEXT, cpu=t2, order=3),
    )
    return ledger, pods


def test_growth_is_taken_newest_first_and_only_as_much_as_needed() -> None:
    ledger, _ = story()
    video = claim("v", VIDEO, cpu=8)
    assert ledger.check(video).reason == "root/algorithm: cpu used 80 + request 8 > max 80"
    plan = ledger.plan_growth_reclaim(video)
    assert plan is not None and plan.fits
    assert [v.uid for v in plan.victims] == ["g3", "g2"]
    for v in plan.victims:
        ledger.remove(v.uid)
    assert ledger.check(video)


def test_growth_that_is_not_enough_is_all_returned_with_fits_false() -> None:
    ledger, _ = story()
    plan = ledger.plan_growth_reclaim(claim("v", VIDEO, cpu=12))  # 12 needed ... exactly the growth
    assert plan is not None and plan.fits and len(plan.victims) == 3
    ledger, _ = story(t2=18)  # 82 used: 14 must go, growth frees 12
    plan = ledger.plan_growth_reclaim(claim("v", VIDEO, cpu=12))
    assert plan is not None and not plan.fits
    assert [v.uid for v in plan.victims] == ["g3", "g2", "g1"]


def test_growth_within_its_leafs_min_is_protected_like_a_job() -> None:
    """text holds 32 (its min) + a growth pod of 4: only that pod may go, and the next one would take text
    below its min, so it is skipped."""
    ledger = ledger_with(
        seed_tree(),
        claim("i1", INTERN, cpu=36, order=1),
        claim("t1", TEXT, cpu=28, order=2),
        growth("tg1", TEXT, "t1", cpu=4, order=5),
        growth("tg2", TEXT, "t1", cpu=4, order=6),
        claim("i2", INTERN, cpu=8, order=3),
    )
    plan = ledger.plan_growth_reclaim(claim("v", VIDEO, cpu=12))
    assert plan is not None and not plan.fits
    assert [v.uid for v in plan.victims] == ["tg2"]


def test_a_claim_that_is_not_guaranteed_gets_no_growth_plan() -> None:
    ledger, _ = story()
    assert ledger.plan_growth_reclaim(claim("v", VIDEO, cpu=13)) is None  # above video's min of 12


def one_pass(ledger: Ledger, cpu: int, releasing: frozenset[str] = frozenset()) -> AdmissionPass:
    queues = Queues(FakeClock())
    queues.upsert(QueueItem(uid="v", namespace="video", name="v", quota=VIDEO, priority=0, enqueue_ns=1,
                            request=Resources({"cpu": cpu * 1000})))
    decide = AdmissionPass(PassWorld(queues, releasing), ledger, 100)
    queues.schedule(decide, ledger.generation)
    return decide


def test_the_pass_reclaims_growth_and_suspends_no_job_when_growth_suffices() -> None:
    ledger, _ = story()
    decide = one_pass(ledger, 8)
    assert [v.uid for v, _ in decide.growth_victims] == ["g3", "g2"]
    assert decide.victims == [] and decide.admitted == []
    assert all(c.uid == "v" for _, c in decide.growth_victims)


def test_the_pass_suspends_a_whole_job_only_after_all_the_growth_it_may_take() -> None:
    ledger, _ = story(t2=18)
    decide = one_pass(ledger, 12)  # 14 must go; growth frees 12
    assert [v.uid for v, _ in decide.growth_victims] == ["g3", "g2", "g1"]
    assert [v.uid for v, _ in decide.victims] == ["t2"]  # the newest job above its leaf's min


def test_a_suspended_jobs_own_growth_goes_with_it_and_gets_no_pod_deletion() -> None:
    """Only intern borrows: its growth is not enough, so its job is suspended, and its growth pods go with
    the job rather than each being deleted."""
    pods = [growth(f"g{n}", INTERN, "i1", cpu=4, order=10 + n) for n in (1, 2)]
    ledger = ledger_with(seed_tree(), claim("i1", INTERN, cpu=40, order=1), *pods,
                         claim("t1", TEXT, cpu=32, order=2))
    decide = one_pass(ledger, 12)  # 80 used: 12 must go, growth frees 8
    assert [v.uid for v, _ in decide.victims] == ["i1"]
    assert decide.growth_victims == []


def test_growth_being_deleted_is_waited_for_not_taken_again() -> None:
    """A restarted controller sees the victims' pods terminating (releasing): the claimant waits for them, and
    nothing more is evicted."""
    ledger, _ = story()
    decide = one_pass(ledger, 8, releasing=frozenset({"g3", "g2"}))
    assert decide.growth_victims == [] and decide.victims == []
    assert decide.admitted == []


# --- the job's size: maximum, current, columns -----------------------------------------------------------


def autoscaled(max_replicas: int | None) -> JobInfo:
    b = (
        make_rayjob("elastic", "video")
        .head(cpu="2", memory="4Gi")
        .workers(1, cpu="2", memory="4Gi", group="w", min_replicas=1, max_replicas=max_replicas)
        .set("spec.rayClusterSpec.enableInTreeAutoscaling", True)
    )
    return JobInfo.from_rayjob(b.obj())


def test_the_maximum_counts_each_autoscaled_group_at_max_replicas_with_kuberays_additions() -> None:
    job = autoscaled(4)
    assert job.autoscaling
    # head 2 + the autoscaler's 500m / 512Mi; 4 workers of 2 / 4Gi (wait-gcs-ready, 200m / 256Mi, runs before
    # the worker's container and is smaller); the default submitter's 500m / 200Mi
    assert maximum_request(job) == Resources({"cpu": 2500 + 4 * 2000 + 500,
                                             "memory": 4 * 2**30 + 512 * 2**20 + 4 * 4 * 2**30 + 200 * 2**20})
    assert job.request.get("cpu") == 2500 + 2000 + 500  # admitted at replicas 1


def test_an_autoscaled_group_without_max_replicas_is_unbounded() -> None:
    assert maximum_request(autoscaled(None)) is None
    assert compact_size(None) == "unbounded"


def test_without_autoscaling_the_maximum_is_the_reservation() -> None:
    job = JobInfo.from_rayjob(
        make_rayjob("fixed", "video").head(cpu="2").workers(2, cpu="1", group="w", max_replicas=9).obj()
    )
    assert not job.autoscaling
    assert maximum_request(job) == job.request


def test_replicas_above_max_replicas_are_clamped_as_kuberay_does() -> None:
    """KubeRay v1.7.0 GetWorkerGroupDesiredReplicas: replicas > maxReplicas runs maxReplicas."""
    job = JobInfo.from_rayjob(make_rayjob("j", "video").head(cpu="1")
                              .workers(7, cpu="1", group="w", max_replicas=3).obj())
    assert job.worker_groups[0].replicas == 3
    assert job.worker_groups[0].max_pods == 3


def test_current_counts_live_pods_bound_or_not_and_compact_size_reads_short() -> None:
    cluster = make_raycluster("c", "video", job_uid="uid-j")
    pods = [
        PodInfo.from_pod(make_pod(f"p{i}", "video", cpu="2", memory="4Gi").ray("c", "worker").owned_by(cluster)
                         .phase(phase).obj())
        for i, phase in enumerate(["Running", "Pending", "Succeeded"])
    ]
    assert current_request(pods) == Resources({"cpu": 4000, "memory": 8 * 2**30})
    assert compact_size(current_request(pods)) == "4/8Gi"
    assert compact_size(Resources({"cpu": 8500, "memory": 17 * 2**30})) == "8500m/17Gi"
    assert compact_size(Resources({"cpu": 12500, "memory": 12_209_715_200})) == "12500m/11923550Ki"
    assert compact_size(Resources()) == "-"


# --- the extender: a refused growth pod is recorded, and the RayCluster's condition planned from it ----------


def growth_service() -> Service:
    """Job a (video, its head 4 CPU reserved) and lone's 2 CPU: video holds 6 of its max 14; w1, w2 bound as
    growth (8 more: 14), w3 pending."""
    svc = service()
    for name in ("w1", "w2", "w3"):
        svc.cache.on_pod("ADDED", ray_pod(name).set("metadata.creationTimestamp", f"2025-01-10T01:0{name[-1]}:00Z")
                         .obj())
    for name in ("w1", "w2"):
        worker = svc.cache.pod(f"uid-video-{name}")
        assert worker is not None and svc.quota_check(worker)
        svc.cache.assume_bound(worker.uid, "n1")
    return svc


def test_a_refused_growth_pod_puts_quota_exceeded_on_its_raycluster_then_fits_once_it_is_gone() -> None:
    svc = growth_service()
    third = svc.cache.pod("uid-video-w3")
    assert third is not None and svc.cache.growth_job(third.uid) is not None
    refused = svc.quota_check(third)
    assert not refused
    assert svc.cache.growth_refusals()[CLUSTER["metadata"]["uid"]][0][1] == refused.reason
    (action,) = reconcile(svc.cache, 10**18).of(SetClusterQuotaCondition)
    assert (action.cluster.name, action.status, action.reason) == ("a-x1y2z", "True", "QuotaExceeded")
    assert action.message == (
        f"1 growth pod of RayJob video/a beyond its admitted size waits for quota: pod video/w3: quota: "
        f"{refused.reason}"
    )
    assert action.message.endswith("root/algorithm/video: cpu used 14 + request 4 > max 14")
    assert action.event is not None and action.event[:2] == ("Warning", "GrowthRefused")

    written = {**CLUSTER, "status": {"conditions": [
        {"type": "HeadPodReady", "status": "True", "reason": "HeadPodRunningAndReady"},
        {"type": "RayQueueQuota", "status": action.status, "reason": action.reason, "message": action.message}]}}
    svc.cache.on_raycluster("MODIFIED", written)
    assert reconcile(svc.cache, 10**18).of(SetClusterQuotaCondition) == ()  # only on change

    svc.cache.on_pod("DELETED", {"metadata": {"uid": "uid-video-w3"}})
    (cleared,) = reconcile(svc.cache, 10**18).of(SetClusterQuotaCondition)
    assert (cleared.status, cleared.reason, cleared.event) == ("False", "Fits", None)


def test_a_growth_pod_that_fits_again_clears_its_refusal() -> None:
    svc = growth_service()
    svc.cache.on_pod("DELETED", {"metadata": {"uid": "uid-video-w1"}})
    third = svc.cache.pod("uid-video-w3")
    assert third is not None
    assert not svc.cache.record_growth_answer(third.uid, None)  # nothing recorded: nothing changes
    assert svc.cache.record_growth_answer(third.uid, "refused")
    assert svc.quota_check(third)
    assert svc.cache.growth_refusals() == {}


def test_growth_yields_to_a_guaranteed_job_waiting_in_another_leaf() -> None:
    """The guaranteed-first rule, as for jobs: the pass's waiting guaranteed heads (Plan.guaranteed) refuse a
    growth pod that would borrow what they wait for, although it fits its own max."""
    svc = growth_service()
    svc.cache.on_node("ADDED", node("n2"))  # 128 CPU in all: the cluster's capacity is not what refuses
    svc.cache.on_pod("DELETED", {"metadata": {"uid": "uid-video-w2"}})
    third = svc.cache.pod("uid-video-w3")
    assert third is not None and svc.quota_check(third)
    algorithm_left = 80 - 10  # a 4 + lone 2 + w1 4 in video
    svc.cache.waiting_guaranteed = (
        Claim(uid="t", key="algorithm-text/t", kind="job", quota="root/algorithm/text",
                    request=Resources({"cpu": 32_000})),
        Claim(uid="i", key="intern/i", kind="job", quota="root/algorithm/intern",
                    request=Resources({"cpu": (algorithm_left - 32 - 2) * 1000})),  # intern: min 0, not guaranteed
    )
    svc.cache.on_pod("ADDED", make_pod("filler", "intern", cpu=str(algorithm_left - 32 - 2)).node("n1").obj())
    refused = svc.quota_check(third)
    assert not refused and "guaranteed first" in refused.reason and "algorithm-text/t" in refused.reason


# --- the controller's plan: growth victims are deleted (PreemptPod), newest first, before any Suspend --------


def test_reconcile_deletes_the_borrowing_jobs_growth_newest_first_and_suspends_nothing() -> None:
    loop = Loop(Cache(FakeClock()))
    video = loop.submit(video_copy("rayjob-video-aaaaa", at=0))  # 12.5 CPU in video
    intern = loop.submit(job("big", "intern", cpu="40", at=1).obj())
    assert sorted(dequeued(loop.run())) == ["big", "rayjob-video-aaaaa"]
    loop.deliver(video)
    loop.deliver(intern)
    head, older, newer = loop.pods(intern, "40", "4", "4")  # big's head, and two workers beyond its reservation
    text = loop.submit(job("train", "algorithm-text", cpu="24", at=10).obj())  # 84.5 of root/algorithm's 80
    plan = loop.run()
    assert plan.of(Suspend) == () and dequeued(plan) == []
    preempted = plan.of(PreemptPod)
    assert [p.pod.name for p in preempted] == [newer["metadata"]["name"], older["metadata"]["name"]]
    assert all(p.job.name == "big" and p.cluster is not None and p.cluster.name == "big-x7k2p" for p in preempted)
    assert preempted[0].reason.startswith(
        "preempted to reclaim quota for algorithm-text/train, guaranteed in root/algorithm/text (request "
        "{cpu: 24, memory: 1Gi}): growth pod intern/big-x7k2p-2 of RayJob intern/big, beyond its admitted size, "
        "request {cpu: 4}; root/algorithm/intern borrows above its min"
    )
    assert loop.unit("train", "algorithm-text")["status"]["message"] == (
        "waiting for reclaim of growth intern/big-x7k2p-2 (root/algorithm/intern), intern/big-x7k2p-1 "
        "(root/algorithm/intern): root/algorithm: cpu used 60500m + request 24 > max 80"
    )
    # The pods are terminating: the claimant waits for them, nothing more is deleted; once gone it runs.
    plan = loop.run()
    assert plan.of(PreemptPod) == () and plan.of(Suspend) == () and dequeued(plan) == []
    for pod in (older, newer):
        loop.cache.on_pod("DELETED", pod)
    assert dequeued(loop.run()) == ["train"]
    assert loop.cache.state(intern) is not None and loop.cache.state(text) is not None
    assert head["metadata"]["uid"] not in {p.pod.uid for p in loop.preempted}


def test_a_refusal_before_the_watch_shows_the_pod_still_reaches_its_raycluster() -> None:
    """kube-scheduler may filter a pod the extender's watch has not delivered yet: the refusal is kept, and
    counts once the pod turns out to be growth (kube-scheduler retries it only after a minute)."""
    svc = growth_service()
    early = ray_pod("w4").set("metadata.creationTimestamp", "2025-01-10T01:09:00Z").obj()
    refused = svc.quota_check(PodInfo.from_pod(early))
    assert not refused
    assert svc.cache.growth_refusals() == {}
    svc.cache.on_pod("ADDED", early)
    (listed,) = svc.cache.growth_refusals()[CLUSTER["metadata"]["uid"]]
    assert listed[0].name == "w4" and listed[1] == refused.reason


# --- the controller's writes: RayCluster conditions by read-modify-write, growth pods deleted ----------------


class ClusterApi:
    """A RayCluster and its pods as the API holds them: PUT /status checks the resourceVersion (409 when a
    concurrent KubeRay status write got in first, once), DELETE checks the uid precondition."""

    def __init__(self, race: bool) -> None:
        self.cluster: dict[str, Any] = {**CLUSTER, "metadata": {**CLUSTER["metadata"], "resourceVersion": "5"},
                                        "status": {"conditions": [
                                            {"type": "HeadPodReady", "status": "True", "reason": "HeadPodRunningAndReady"}]}}
        self.race = race
        self.puts = 0
        self.deleted: list[tuple[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        return copy.deepcopy(self.cluster)

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert path.endswith("/rayclusters/a-x1y2z/status"), path
        self.puts += 1
        if self.race:  # KubeRay wrote its status between our GET and PUT
            self.race = False
            self.cluster["metadata"]["resourceVersion"] = "6"
            self.cluster["status"]["conditions"].append(
                {"type": "RayClusterProvisioned", "status": "True", "reason": "AllPodRunningAndReadyFirstTime"})
        if body["metadata"]["resourceVersion"] != self.cluster["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified", "PUT", path)
        self.cluster = {**body, "metadata": {**body["metadata"], "resourceVersion": "7"}}
        return copy.deepcopy(self.cluster)

    async def delete(self, path: str, body: Any = None) -> dict[str, Any]:
        self.deleted.append((path, body))
        return {}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.events.append(body)
        return body

    async def patch(self, path: str, body: Any, content_type: str = "") -> dict[str, Any]:  # pragma: no cover
        raise AssertionError(f"no merge patch of a RayCluster's conditions: {path}")


def controller_for(api: ClusterApi) -> Controller:
    clock = FakeClock()
    cache = Cache(clock)
    cache.on_raycluster("ADDED", copy.deepcopy(api.cluster))
    return Controller(cache, api, EventRecorder(api, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                      CollectorRegistry())


def condition_action(status: str = "True", message: str = "1 growth pod ... max 14") -> SetClusterQuotaCondition:
    meta = CLUSTER["metadata"]
    return SetClusterQuotaCondition(ObjectRef(meta["namespace"], meta["name"], meta["uid"]),
                                    JobRef("video", "a", "uid-video-a"), status,
                                    "QuotaExceeded" if status == "True" else "Fits", message,
                                    event=("Warning", "GrowthRefused", message) if status == "True" else None)


def test_the_condition_is_written_by_read_modify_write_keeping_kuberays_conditions_through_a_conflict() -> None:
    api = ClusterApi(race=True)
    controller = controller_for(api)
    asyncio.run(controller.execute(Plan((condition_action(),))))
    assert api.puts == 2, "the 409 is retried with a fresh read"
    types = [c["type"] for c in api.cluster["status"]["conditions"]]
    assert types == ["HeadPodReady", "RayClusterProvisioned", "RayQueueQuota"], "KubeRay's conditions are kept"
    (ours,) = [c for c in api.cluster["status"]["conditions"] if c["type"] == "RayQueueQuota"]
    assert (ours["status"], ours["reason"], ours["message"]) == ("True", "QuotaExceeded", "1 growth pod ... max 14")
    assert [(e["involvedObject"]["kind"], e["reason"], e["type"]) for e in api.events] == [
        ("RayCluster", "GrowthRefused", "Warning")]
    cached = controller.cache.ray_cluster(CLUSTER["metadata"]["uid"])
    assert cached is not None and cached.condition == ("True", "QuotaExceeded", "1 growth pod ... max 14")
    # a message-only change within CONDITION_INTERVAL waits (and no event); a status change goes at once
    async def then() -> None:
        await controller.execute(Plan((condition_action(message="2 growth pods ... max 14"),)))
        await controller.execute(Plan((condition_action("False", "no growth pod ..."),)))
    asyncio.run(then())
    assert api.puts == 3 and len(api.events) == 1
    (ours,) = [c for c in api.cluster["status"]["conditions"] if c["type"] == "RayQueueQuota"]
    assert (ours["status"], ours["reason"]) == ("False", "Fits")


def test_a_growth_victim_is_deleted_with_a_uid_precondition_and_preempted_on_the_pod_and_the_raycluster() -> None:
    api = ClusterApi(race=False)
    controller = controller_for(api)
    meta = CLUSTER["metadata"]
    action = PreemptPod(ObjectRef("video", "w3", "uid-video-w3"), JobRef("video", "a", "uid-video-a"),
                        ObjectRef(meta["namespace"], meta["name"], meta["uid"]), "preempted to reclaim quota for ...")
    asyncio.run(controller.execute(Plan((action,))))
    assert api.deleted == [("/api/v1/namespaces/video/pods/w3",
                            {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": "uid-video-w3"}})]
    assert [(e["involvedObject"]["kind"], e["involvedObject"]["name"], e["reason"]) for e in api.events] == [
        ("Pod", "w3", "Preempted"), ("RayCluster", "a-x1y2z", "Preempted")]


def test_scale_down_releases_the_growth_quota_once_the_pods_are_gone_not_before() -> None:
    """A deleted growth pod still holds its node and its claim while it terminates; its DELETED event frees it."""
    svc = growth_service()
    ledger = svc.cache.ledger
    assert ledger is not None and ledger.usage("root/algorithm/video").get("cpu") == 14_000
    w2 = ray_pod("w2").set("metadata.creationTimestamp", "2025-01-10T01:02:00Z").node("n1") \
        .set("metadata.deletionTimestamp", "2025-01-10T01:05:00Z").obj()
    svc.cache.on_pod("MODIFIED", w2)
    assert ledger.usage("root/algorithm/video").get("cpu") == 14_000, "terminating: still charged"
    assert svc.cache.releasing("uid-video-w2"), "a growth pod being deleted is releasing"
    svc.cache.on_pod("DELETED", w2)
    assert ledger.usage("root/algorithm/video").get("cpu") == 10_000
    third = svc.cache.pod("uid-video-w3")
    assert third is not None and svc.quota_check(third), "the freed capacity is there for the next pod"


def test_a_bound_pod_keeps_the_cover_over_a_pending_one_created_in_the_same_second() -> None:
    """creationTimestamp has whole seconds: the admitted worker and a worker the tenant added at once tie.
    The bound one stays covered whatever the uids say; the pending one is growth and checked."""
    from common.accounting import covered_pods

    job = JobInfo.from_rayjob(make_rayjob("a", "video").head(cpu="4").workers(1, cpu="4").obj())
    cluster = make_raycluster("c", "video", job_uid="uid-j")
    same = "2025-01-10T01:00:00Z"
    bound = PodInfo.from_pod(make_pod("zzz", "video", cpu="4").ray("c", "worker", "small-group").owned_by(cluster)
                             .set("metadata.creationTimestamp", same).set("metadata.uid", "uid-z").node("n1").obj())
    pending = PodInfo.from_pod(make_pod("aaa", "video", cpu="4").ray("c", "worker", "small-group")
                               .owned_by(cluster).set("metadata.creationTimestamp", same)
                               .set("metadata.uid", "uid-a").obj())
    assert covered_pods(job, [bound, pending]) == {"uid-z"}
    assert covered_pods(job, [pending]) == {"uid-a"}
    assert covered_pods(job, [pending], placed={"uid-a"}) == {"uid-a"}

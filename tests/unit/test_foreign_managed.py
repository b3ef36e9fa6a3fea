"""A RayJob or bare RayCluster whose `spec.managedBy` names another controller (rule managed-by, issue 23): KubeRay
leaves it to that controller, so rayqueue does not queue it -- no QueueItem, no QueueUnit, no job claim -- even when
it carries the enqueue stamp (created while the webhook was down, or with a forged annotation), and its pods, if
any, are charged pod by pod like any pod."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from common import keys
from common.accounting import JobState
from common.clock import FakeClock
from common.kuberay_rules.managed_by import KUBERAY_MANAGER, MULTIKUEUE_MANAGER
from extender.actions import DeleteQueueUnit, Dequeue, EnsureQueueUnit
from extender.cache import Cache
from tests.unit.builders import RayJobBuilder, make_raycluster
from tests.unit.test_bare_raycluster import ClusterLoop, cluster_pod, notebook
from tests.unit.test_reconcile import Loop, dequeued, job, stamp

VIDEO = "root/algorithm/video"
CPU = "cpu"


def stamped(name: str = "mk", *, manager: str | None = MULTIKUEUE_MANAGER) -> RayJobBuilder:
    """A RayJob with the enqueue stamp (the webhook strips it from a managedBy job: this one got past it)."""
    b = job(name, "video", cpu="4", at=1)
    return b.set("spec.managedBy", manager) if manager is not None else b


def admitted_stamped(name: str = "mk", manager: str = MULTIKUEUE_MANAGER) -> RayJobBuilder:
    return stamped(name, manager=manager).suspend(False).dequeued(stamp(2))


@pytest.mark.parametrize(
    ("obj", "state"),
    [
        pytest.param(stamped().obj(), JobState.UNMANAGED,
                     id="a suspended job with the enqueue stamp and a foreign managedBy does not wait"),
        pytest.param(admitted_stamped().obj(), JobState.UNMANAGED,
                     id="a foreign-managed job with a forged dequeue stamp is not admitted"),
        pytest.param(stamped(manager="").obj(), JobState.UNMANAGED,
                     id="an empty managedBy is foreign too, as in KubeRay's Go"),
        pytest.param(stamped(manager=KUBERAY_MANAGER).obj(), JobState.WAITING,
                     id="managedBy naming KubeRay itself is queued like any job"),
    ],
)
def test_a_foreign_managed_job_is_never_queued(obj: dict[str, Any], state: JobState) -> None:
    cache = Cache(FakeClock())
    Loop(cache).submit(obj)
    uid = obj["metadata"]["uid"]
    assert cache.state(uid) is state
    assert (cache.queue_item(uid) is None) is (state is JobState.UNMANAGED)
    assert (uid in cache.queues) is (state is JobState.WAITING)
    assert cache.ledger is not None and uid not in cache.ledger


def test_a_foreign_managed_job_gets_no_queue_unit_and_is_never_dequeued_and_the_next_job_runs() -> None:
    """Both are 12 CPU in video (max 14): were the first queued, the second would wait behind it for ever."""
    loop = Loop(Cache(FakeClock()))
    foreign = loop.submit(job("mk", "video", cpu="12", at=1).set("spec.managedBy", MULTIKUEUE_MANAGER).obj())
    loop.submit(job("next", "video", cpu="12", at=2).obj())
    plans = [loop.run(), loop.run()]
    assert [name for plan in plans for name in dequeued(plan)] == ["next"]
    assert [e.object["metadata"]["name"] for plan in plans for e in plan.of(EnsureQueueUnit)] == ["next-ray-qu"]
    assert ("video", "mk-ray-qu") not in loop.units
    assert loop.cache.ledger is not None and foreign not in loop.cache.ledger
    assert loop.cache.foreign_manager(foreign) == MULTIKUEUE_MANAGER


def test_its_pods_are_charged_one_by_one_like_any_pod() -> None:
    """Another controller ran the job's pods through a RayCluster the job controls: they are the job's pods
    (ownership), but no reservation covers them: each bound one is a pod claim of its own."""
    loop = Loop(Cache(FakeClock()))
    uid = loop.submit(admitted_stamped(manager="example.com/mine").obj())
    head, worker = loop.pods(uid, "4", "2")
    cache = loop.cache
    assert cache.ledger is not None and uid not in cache.ledger
    for pod in (head, worker):
        account = cache.account(pod["metadata"]["uid"])
        assert account is not None and (account.job_uid, account.charge) == (uid, "own-claim")
        assert pod["metadata"]["uid"] in cache.ledger
    assert cache.ledger.usage(VIDEO).get(CPU) == 6000


def test_managed_by_added_to_an_admitted_job_releases_its_claim_at_once_and_its_pods_become_pod_claims() -> None:
    """managedBy added after admission (an apiserver without the CRD's CEL rule, the webhook bypassed): the job
    claim goes, the pods it covered are charged pod by pod from that event on (video never holds them twice or
    not at all), and its QueueUnit is deleted."""
    loop = Loop(Cache(FakeClock()))
    uid = loop.submit(stamped("a", manager=None).suspend(False).dequeued(stamp(2)).obj())
    pods = loop.pods(uid, "4", "2")
    loop.run()
    loop.run()
    cache = loop.cache
    assert cache.ledger is not None
    claim = cache.ledger.claim(uid)
    assert claim is not None and claim.kind == "job" and ("video", "a-ray-qu") in loop.units
    before = cache.ledger.usage(VIDEO)
    loop.update_job(uid, lambda o: o["spec"].__setitem__("managedBy", MULTIKUEUE_MANAGER))
    assert uid not in cache.ledger and cache.state(uid) is JobState.UNMANAGED
    assert all(cache.ledger.claim(p["metadata"]["uid"]) is not None for p in pods)
    assert cache.ledger.usage(VIDEO) == before
    plan = loop.run()
    (deleted,) = plan.of(DeleteQueueUnit)
    assert (deleted.namespace, deleted.name) == ("video", "a-ray-qu")
    assert deleted.reason.startswith(f"RayJob video/a: not queued: spec.managedBy '{MULTIKUEUE_MANAGER}' names "
                                     "another controller than KubeRay"), deleted.reason
    assert plan.of(Dequeue) == ()


def test_a_replayed_event_of_a_foreign_managed_job_changes_nothing() -> None:
    cache = Cache(FakeClock())
    obj = stamped().obj()
    cache.on_rayjob("ADDED", copy.deepcopy(obj))
    generation = cache.generation
    cache.on_rayjob("MODIFIED", copy.deepcopy(obj))
    assert cache.generation == generation


def test_managed_by_removed_queues_the_job() -> None:
    """KubeRay's own value, or none, and the stamped job is queued again (the CRD makes managedBy immutable; an
    old apiserver does not)."""
    cache = Cache(FakeClock())
    loop = Loop(cache)
    uid = loop.submit(stamped().obj())
    assert cache.state(uid) is JobState.UNMANAGED
    loop.update_job(uid, lambda o: o["spec"].pop("managedBy"))
    assert cache.state(uid) is JobState.WAITING and uid in cache.queues and cache.foreign_manager(uid) is None


def test_a_foreign_managed_bare_cluster_is_not_queued_and_its_pods_are_pod_claims() -> None:
    obj = notebook(workers=1).suspend(False).dequeued(stamp(2)).set("spec.rayClusterSpec.managedBy",
                                                                    MULTIKUEUE_MANAGER).as_raycluster()
    loop = ClusterLoop(Cache(FakeClock()))
    uid = loop.submit(obj)
    cache = loop.cache
    assert cache.state(uid) is JobState.UNMANAGED and cache.queue_item(uid) is None
    cache.on_pod("ADDED", cluster_pod(obj, "h", "head"))
    assert cache.ledger is not None and uid not in cache.ledger
    assert cache.ledger.claim("uid-video-h") is not None and cache.ledger.usage(VIDEO).get(CPU) == 2000
    plans = [loop.run(), loop.run()]
    assert all(p.of(EnsureQueueUnit) == () and p.of(Dequeue) == () for p in plans)


def test_a_raycluster_a_foreign_managed_rayjob_controls_stays_that_job_s() -> None:
    """Ownership does not change with managedBy: the cluster is the job's parent, not a bare cluster."""
    loop = Loop(Cache(FakeClock()))
    uid = loop.submit(admitted_stamped().obj())
    rc = make_raycluster("mk-abcde", "video", job_uid=uid)
    loop.cache.on_raycluster("ADDED", rc)
    loop.cache.on_pod("ADDED", cluster_pod(rc, "h", "head"))
    assert loop.cache.job(rc["metadata"]["uid"]) is None
    assert [j.kind for j in loop.cache.jobs()] == [keys.RAYJOB_KIND]
    account = loop.cache.account("uid-video-h")
    assert account is not None and (account.job_uid, account.charge) == (uid, "own-claim")

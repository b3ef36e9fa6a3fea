"""Admitted at the largest size that fits, expanded as capacity frees (docs/elastic.md): an elastic RayJob without
the autoscaler starts with its floor plus what fits after every waiting job (its replicas lowered while it is still
suspended, its asked-for replicas kept), and its RayCluster is raised toward them in a pass that admits nobody."""

from __future__ import annotations

import copy
import json
from typing import Any

from common import keys
from common.clock import FakeClock
from common.elastic import target_of
from common.rayjob import JobInfo
from extender.actions import Dequeue, Event, Expand
from extender.cache import Cache
from tests.unit.builders import make_raycluster
from tests.unit.test_reconcile import dequeued, job
from tests.unit.test_shrink import GROUP, ShrinkLoop, apply

TARGET = json.dumps({GROUP: 6}, separators=(",", ":"))


class SizeLoop(ShrinkLoop):
    """The shrink loop, carrying out an Expand on its RayCluster as the API server would."""

    def apply(self, action: Any, *, deliver: bool) -> None:
        if isinstance(action, Expand):
            cluster = apply({**self.clusters[action.cluster.uid], "metadata": {
                **self.clusters[action.cluster.uid]["metadata"], "resourceVersion": ""}},
                [{"op": "test", "path": "/metadata/resourceVersion", "value": ""}, *action.patch()])
            self.clusters[action.cluster.uid] = cluster
            self.cache.on_raycluster("MODIFIED", copy.deepcopy(cluster))
        else:
            super().apply(action, deliver=deliver)


def elastic(name: str = "big", at: float = 2) -> dict[str, Any]:
    """intern's elastic job: head 16 + 6 workers of 4, floor 2 (its reservation: 24 of intern's max 40)."""
    return (job(name, "intern", cpu="16", at=at).workers(6, cpu="4", group=GROUP, min_replicas=2)
            .label(keys.ELASTIC, "true").obj())


def _admit(loop: SizeLoop, *, waiting: bool = False) -> tuple[str, Dequeue]:
    """intern runs a 12-CPU job (and, if ``waiting``, a 30-CPU one waits, not fitting); then the elastic job."""
    loop.deliver(loop.submit(job("other", "intern", cpu="12", at=0).obj()))
    loop.run()
    if waiting:
        loop.submit(job("huge", "intern", cpu="30", at=1).obj())  # 12 + 30 > 40: it waits
    uid = loop.submit(elastic())
    plan = loop.run()
    assert "big" in dequeued(plan)
    (dequeue,) = [d for d in plan.of(Dequeue) if d.job.name == "big"]
    return uid, dequeue


def test_an_elastic_job_starts_with_its_floor_and_what_fits_its_replicas_lowered_while_suspended() -> None:
    loop = SizeLoop(Cache(FakeClock()))
    _, dequeue = _admit(loop)
    # intern: 12 + the floor 24 = 36 of 40: one more worker of 4 fits, so 3 of 6
    ops = list(dequeue.json_patch)
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": dequeue.job.resource_version}
    assert {"op": "replace", "path": "/spec/rayClusterSpec/workerGroupSpecs/0/replicas", "value": 3} in ops
    assert {"op": "add", "path": "/metadata/annotations/rayqueue.io~1elastic-target", "value": TARGET} in ops
    assert ops[-1] == {"op": "replace", "path": "/spec/suspend", "value": False}
    body, content_type = dequeue.body()
    assert content_type == "application/json-patch+json" and body == ops
    (event,) = [e for e in loop.events if isinstance(e, Event) and e.reason == keys.EVENT_DEQUEUED
                and e.job.name == "big"]
    assert ("admitted at the largest size that fits now (group small-group: 3 of 6 workers (floor 2))"
            in event.message), event.message


def test_waiting_jobs_come_first_an_elastic_job_behind_them_starts_at_its_floor() -> None:
    loop = SizeLoop(Cache(FakeClock()))
    _, dequeue = _admit(loop, waiting=True)
    assert {"op": "replace", "path": "/spec/rayClusterSpec/workerGroupSpecs/0/replicas", "value": 2} in dequeue.json_patch


def test_a_rigid_job_or_one_that_fits_whole_is_dequeued_by_the_merge_patch_as_before() -> None:
    loop = SizeLoop(Cache(FakeClock()))
    loop.submit(elastic())
    (dequeue,) = loop.run().of(Dequeue)
    assert dequeue.json_patch == () and dequeue.body()[1] == "application/merge-patch+json"


def _running_small(loop: SizeLoop) -> str:
    """big admitted at 3 of 6, its JSON patch applied, its RayCluster at 3 replicas with all pods bound."""
    uid, dequeue = _admit(loop)
    assert len(dequeue.json_patch) == 5  # the Loop applied its merge part (stamp, resume); the rest as the API would
    loop.jobs[uid]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = 3
    loop.jobs[uid]["metadata"]["annotations"][keys.ELASTIC_TARGET] = TARGET
    loop.deliver(uid)
    loop.pods(uid, "16", "4", "4", "4")
    (cluster_uid,) = [u for u, c in loop.clusters.items() if c["metadata"]["name"] == "big-x7k2p"]
    loop.clusters[cluster_uid]["spec"] = {"workerGroupSpecs": [{"groupName": GROUP, "replicas": 3, "minReplicas": 2}]}
    loop.cache.on_raycluster("MODIFIED", copy.deepcopy(loop.clusters[cluster_uid]))
    return uid


def test_an_elastic_job_admitted_smaller_is_expanded_toward_its_target_as_capacity_frees() -> None:
    loop = SizeLoop(Cache(FakeClock()))
    uid = _running_small(loop)
    info = loop.cache.job(uid)
    assert info is not None and target_of(info) == {GROUP: 6} and info.request.get("cpu") == 24000
    plan = loop.run()
    assert plan.of(Expand) == (), "intern is full: 12 + 24 + one growth worker of 4"
    other = next(u for u, o in loop.jobs.items() if o["metadata"]["name"] == "other")
    loop.cache.on_rayjob("DELETED", loop.jobs[other])
    plan = loop.run()
    (expand,) = plan.of(Expand)
    assert expand.groups == ((0, 3, 6),) and expand.job.name == "big"
    assert expand.reason.startswith("expanded toward its target as capacity freed and no job waits for it: group "
                                    "small-group: 6 of 6 workers (floor 2)")
    assert [e.reason for e in plan.of(Event) if e.job.name == "big"] == [keys.EVENT_EXPANDED]
    # the new workers are not there yet: nothing more is raised meanwhile
    assert loop.run().of(Expand) == ()


def test_no_expansion_while_a_job_waits_for_the_capacity() -> None:
    loop = SizeLoop(Cache(FakeClock()))
    _running_small(loop)
    other = next(u for u, o in loop.jobs.items() if o["metadata"]["name"] == "other")
    loop.cache.on_rayjob("DELETED", loop.jobs[other])
    loop.submit(job("late", "intern", cpu="14", at=5).obj())  # 24 + 4 + 14 > 40: it waits; big does not grow
    plan = loop.run()
    assert plan.of(Expand) == () and dequeued(plan) == []


def test_the_target_is_the_annotation_else_the_replicas_and_a_bad_one_is_ignored() -> None:
    obj = elastic()
    assert target_of(JobInfo.from_rayjob(obj)) == {GROUP: 6}
    obj["metadata"]["annotations"][keys.ELASTIC_TARGET] = json.dumps({GROUP: 5, "gone": 2})
    assert target_of(JobInfo.from_rayjob(obj)) == {GROUP: 5}
    obj["metadata"]["annotations"][keys.ELASTIC_TARGET] = "six"
    assert target_of(JobInfo.from_rayjob(obj)) == {GROUP: 6}
    assert make_raycluster("x", "intern")["kind"] == keys.RAYCLUSTER_KIND


def test_a_requeued_job_admitted_smaller_before_asks_for_its_target_again_and_keeps_it() -> None:
    """Suspended by reclaim after it was admitted at 3 of 6, the RayJob's replicas say 3; admitted again it starts
    from its target (6), not from 3, and the annotation keeps 6."""
    obj = elastic()
    obj["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = 3
    obj["metadata"]["annotations"][keys.ELASTIC_TARGET] = TARGET
    loop = SizeLoop(Cache(FakeClock()))
    loop.submit(obj)
    (dequeue,) = loop.run().of(Dequeue)
    assert {"op": "replace", "path": "/spec/rayClusterSpec/workerGroupSpecs/0/replicas", "value": 6} in dequeue.json_patch
    assert {"op": "add", "path": "/metadata/annotations/rayqueue.io~1elastic-target", "value": TARGET} in dequeue.json_patch

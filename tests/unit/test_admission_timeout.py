"""The admission timeout phase (extender/reconcile.py ``timeouts_phase``, rules in common/liveness.py), on a Cache
built from builders and driven by the in-memory loop of test_reconcile.

The story: video (max 14 CPU) has a 20 s ``rayqueue.io/admission-timeout``. Job ``a`` (10 CPU, head and one
worker) is admitted; its worker has a nodeSelector no node matches, so kube-scheduler leaves it Pending with
``PodScheduled: False``. Job ``b`` (10 CPU) waits behind it in the same leaf.
"""

from __future__ import annotations

import copy
from typing import Any

from common import keys
from common.clock import FakeClock
from common.queueing import Backoff
from extender.actions import ClearTimeouts, Event, Plan, Suspend
from extender.cache import Cache, JobState
from extender.reconcile import reconcile
from tests.unit.builders import apply_merge_patch, make_pod, make_raycluster
from tests.unit.test_reconcile import NOW, VIDEO, Loop, dequeued, job

NS = 10**9
TIMEOUT = 20
UNPLACED = "0/12 nodes are available: 12 node(s) didn't match node selector."


class TimeoutLoop(Loop):
    """The loop stand-in, with what the controller does besides: a timeout's Suspend holds the job in backoff
    (``Queues.hold``), and ``ClearTimeouts`` patches the job."""

    def apply(self, action: Any, *, deliver: bool) -> None:
        if isinstance(action, ClearTimeouts):
            obj = self.jobs[action.job.uid]
            apply_merge_patch(obj, action.patch())
            obj["metadata"]["resourceVersion"] = self._rv()
            self.deliver(action.job.uid)
            return
        super().apply(action, deliver=deliver)
        if isinstance(action, Suspend) and action.timed_out is not None:
            record = action.timed_out.timed_out
            if record is not None and not record.parked:
                self.cache.queues.hold(action.job.uid, record.attempt, action.timed_out)


def _with_timeout(loop: Loop, timeout: str = f"{TIMEOUT}s", retries: str | None = None) -> None:
    algorithm = loop.tree["spec"]["root"]["children"][0]
    video = next(c for c in algorithm["children"] if c["name"] == "video")
    video["attributes"] = {keys.ADMISSION_TIMEOUT: timeout, **({keys.ADMISSION_RETRIES: retries} if retries else {})}
    loop.cache.on_tree("MODIFIED", copy.deepcopy(loop.tree))


def _story(clock: FakeClock | None = None, retries: str | None = None) -> tuple[TimeoutLoop, str, str]:
    loop = TimeoutLoop(Cache(clock or FakeClock(), Backoff(1.0, 4.0)))
    _with_timeout(loop, retries=retries)
    a = loop.submit(job("a", "video", cpu="5", at=1).workers(1, cpu="5", memory="1Gi").obj())
    b = loop.submit(job("b", "video", cpu="10", at=2).obj())
    assert dequeued(loop.run(NOW)) == ["a"]
    loop.deliver(a)
    _pods(loop, a)
    return loop, a, b


def _pods(loop: Loop, uid: str) -> list[dict[str, Any]]:
    """KubeRay made the head (bound, Running) and the worker (Pending: its nodeSelector matches no node)."""
    meta = loop.jobs[uid]["metadata"]
    cluster = make_raycluster(f"{meta['name']}-x7k2p", meta["namespace"], job_uid=uid)
    cluster = loop.clusters.setdefault(cluster["metadata"]["uid"], cluster)
    loop.cache.on_raycluster("ADDED", copy.deepcopy(cluster))
    name = cluster["metadata"]["name"]
    head = (make_pod(f"{name}-head", meta["namespace"], cpu="5").ray(name, "head").owned_by(cluster).node("n1")
            .phase("Running").obj())
    worker = (make_pod(f"{name}-worker-q2x", meta["namespace"], cpu="5").ray(name, "worker", "small-group")
              .owned_by(cluster).phase("Pending")
              .set("status.conditions", [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": UNPLACED}]).obj())
    for pod in (head, worker):
        loop.pod_objs[pod["metadata"]["uid"]] = pod
        loop.cache.on_pod("ADDED", copy.deepcopy(pod))
    return [head, worker]


def _gone(loop: Loop, uid: str) -> None:
    """KubeRay deleted the suspended job's cluster: its pods are gone."""
    name = loop.jobs[uid]["metadata"]["name"]
    for pod_uid, pod in list(loop.pod_objs.items()):
        if pod["metadata"]["name"].startswith(f"{name}-"):
            loop.cache.on_pod("DELETED", loop.pod_objs.pop(pod_uid))


def _timeout_events(plan: Plan) -> list[Event]:
    return [e for e in plan.of(Event) if e.reason == keys.EVENT_ADMISSION_TIMEOUT]


def test_before_the_deadline_nothing_is_suspended_and_the_loop_wakes_at_it() -> None:
    loop, _, _ = _story()
    plan = loop.run(NOW + (TIMEOUT - 1) * NS)
    assert plan.of(Suspend) == ()
    assert plan.wake_ns == NOW + TIMEOUT * NS
    assert loop.unit("a")["status"]["phase"] == "Dequeued"


def test_at_the_deadline_the_job_is_suspended_and_its_queue_unit_names_the_pod_and_the_reason() -> None:
    loop, a, _ = _story()
    plan = loop.run(NOW + TIMEOUT * NS)
    (suspend,) = plan.of(Suspend)
    assert suspend.job.name == "a" and suspend.timeouts == 1
    assert suspend.patch()["spec"] == {"suspend": True}
    assert suspend.patch()["metadata"]["annotations"] == {keys.DEQUEUE_TIMESTAMP: None, keys.ADMISSION_TIMEOUTS: "1"}
    words = (f"not started within 20s of admission: 1 of 2 pods not placed; worker video/a-x7k2p-worker-q2x: "
             f"{UNPLACED.rstrip('.')}. Timeout 1 of 3: suspended and requeued with its enqueue time, after a backoff")
    assert suspend.reason == words
    (event,) = _timeout_events(plan)
    assert (event.type, event.job.name, event.message) == ("Warning", "a", words)
    unit = loop.unit("a")["status"]
    assert (unit["phase"], unit["message"]) == ("Backoff", words)
    annotations = loop.jobs[a]["metadata"]["annotations"]
    assert annotations[keys.ADMISSION_TIMEOUTS] == "1" and keys.ENQUEUE_TIMESTAMP in annotations


def test_the_job_waiting_behind_runs_while_the_timed_out_one_backs_off() -> None:
    clock = FakeClock()
    loop, a, _ = _story(clock)
    loop.run(NOW + TIMEOUT * NS)
    loop.deliver(a)
    _gone(loop, a)  # its release ends ordinary backoffs (Queues.retry_now), not the timeout's hold
    assert dequeued(loop.run(NOW + (TIMEOUT + 1) * NS)) == ["b"]
    assert loop.cache.state(a) is JobState.WAITING and loop.cache.queues.in_backoff(a)
    assert loop.cache.queues.attempts(a) == 1
    assert loop.unit("a")["status"]["message"].startswith("not started within 20s of admission: 1 of 2 pods")


def test_a_restarted_controller_derives_the_same_deadline() -> None:
    """A new Cache built from the same objects (the dequeue stamp is on the RayJob): no suspension before the
    deadline, the same wake-up, and the suspension at it, not 20 s after the restart."""
    loop, _, _ = _story()
    loop.run(NOW + 5 * NS)
    fresh = TimeoutLoop(Cache(FakeClock(), Backoff(1.0, 4.0)))
    fresh.tree = copy.deepcopy(loop.tree)
    fresh.cache.on_tree("MODIFIED", copy.deepcopy(loop.tree))
    fresh.queues, fresh.units = loop.queues, loop.units
    for obj in loop.queues.values():
        fresh.cache.on_queue("ADDED", copy.deepcopy(obj))
    for unit in loop.units.values():
        fresh.cache.on_queue_unit("ADDED", copy.deepcopy(unit))
    for uid in loop.jobs:
        fresh.submit(copy.deepcopy(loop.jobs[uid]))
    fresh.clusters = loop.clusters
    for cluster in loop.clusters.values():
        fresh.cache.on_raycluster("ADDED", copy.deepcopy(cluster))
    for pod in loop.pod_objs.values():
        fresh.cache.on_pod("ADDED", copy.deepcopy(pod))
    restarted = fresh.run(NOW + 10 * NS)
    assert restarted.of(Suspend) == () and restarted.wake_ns == NOW + TIMEOUT * NS
    assert [s.job.name for s in fresh.run(NOW + TIMEOUT * NS).of(Suspend)] == ["a"]


def test_after_the_retries_the_job_is_parked_and_never_tried_until_the_count_is_removed() -> None:
    clock = FakeClock()
    loop, a, b = _story(clock, retries="2")
    loop.cache.on_rayjob("DELETED", loop.jobs.pop(b))  # a alone in its leaf: it is readmitted after each backoff
    t = NOW
    for attempt in (1, 2):
        t += TIMEOUT * NS
        (suspend,) = loop.run(t).of(Suspend)
        assert suspend.timeouts == attempt
        loop.deliver(a)
        _gone(loop, a)
        if attempt == 2:
            break
        clock.advance(1.0)  # the first backoff: 1 s (Backoff(1, 4), attempt 1)
        t += 2 * NS
        assert dequeued(loop.run(t)) == ["a"]
        loop.deliver(a)
        _pods(loop, a)
    words = "Parked after 2 admission timeouts in a row (rayqueue.io/admission-retries 2): fix the cause, then " \
        "retry with `kubectl rayqueue retry a -n video`"
    assert suspend.reason.endswith(words) and "worker video/a-x7k2p-worker-q2x" in suspend.reason
    unit = loop.unit("a")["status"]
    assert unit["phase"] == "Parked" and unit["message"] == suspend.reason
    clock.advance(60.0)
    for later in (1, 2):
        plan = loop.run(t + later * 60 * NS)
        assert dequeued(plan) == [] and plan.of(Suspend) == ()
        assert a not in loop.cache.queues
        assert loop.unit("a")["status"]["phase"] == "Parked"
        assert loop.unit("a")["status"]["message"] == suspend.reason, "the words of the last timeout are kept"
    loop.update_job(a, lambda obj: obj["metadata"]["annotations"].pop(keys.ADMISSION_TIMEOUTS))  # the retry command
    assert dequeued(loop.run(t + 200 * NS)) == ["a"]


def test_a_started_job_loses_its_count_and_is_never_timed_out() -> None:
    loop, a, _ = _story()
    loop.update_job(a, lambda obj: obj["metadata"]["annotations"].update({keys.ADMISSION_TIMEOUTS: "1"}))
    loop.update_job(a, lambda obj: obj.setdefault("status", {}).update({"jobDeploymentStatus": "Running"}))
    plan = loop.run(NOW + 5 * TIMEOUT * NS)
    assert plan.of(Suspend) == ()
    (clear,) = plan.of(ClearTimeouts)
    assert clear.job.name == "a" and clear.patch()["metadata"]["annotations"] == {keys.ADMISSION_TIMEOUTS: None}
    assert keys.ADMISSION_TIMEOUTS not in loop.jobs[a]["metadata"]["annotations"]
    assert loop.run(NOW + 6 * TIMEOUT * NS).of(ClearTimeouts) == ()


def test_a_timeout_of_zero_turns_it_off() -> None:
    loop, _, _ = _story()
    _with_timeout(loop, "0")
    plan = reconcile(loop.cache, NOW + 3600 * NS)
    assert plan.of(Suspend) == () and plan.wake_ns is None


def test_the_default_timeout_is_ten_minutes() -> None:
    loop, _, _ = _story()
    algorithm = loop.tree["spec"]["root"]["children"][0]
    next(c for c in algorithm["children"] if c["name"] == "video").pop("attributes")
    loop.cache.on_tree("MODIFIED", copy.deepcopy(loop.tree))
    assert reconcile(loop.cache, NOW + 599 * NS).of(Suspend) == ()
    assert [s.job.name for s in reconcile(loop.cache, NOW + 600 * NS).of(Suspend)] == ["a"]
    assert VIDEO == "root/algorithm/video"

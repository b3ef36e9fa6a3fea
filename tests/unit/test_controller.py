"""The controller's loop: a refused patch is not followed by an event claiming it happened; writes in bounded
parallel chains; watch events held while a sliced pass reads the cache."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from common import keys
from common.clock import FakeClock
from common.queueing import Backoff
from extender.actions import Dequeue, EnsureQueueUnit, Event, JobRef, Plan, Suspend, UpdateQueueUnitStatus
from extender.cache import Cache
from extender.controller import Controller
from extender.reconcile import SLICE
from kubeio.client import ApiError
from kubeio.events import EventRecorder
from tests.unit.test_reconcile import Loop, job, video_copy


class RecordingClient:
    """Answers like the API: patches of RayJob `lost` get 409 (another writer won), the rest succeed."""

    def __init__(self, lost: str) -> None:
        self.lost = lost
        self.patched: list[str] = []
        self.events: list[dict[str, Any]] = []

    async def patch(self, path: str, body: Any, content_type: str = "") -> dict[str, Any]:
        if path.endswith(f"/rayjobs/{self.lost}"):
            raise ApiError(409, "Conflict", "the object has been modified", "PATCH", path)
        self.patched.append(path)
        return {}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.events.append(body)
        return body


def test_a_dequeue_that_loses_a_conflict_records_no_dequeued_event() -> None:
    client = RecordingClient(lost="b")
    clock = FakeClock()
    controller = Controller(Cache(clock), client, EventRecorder(client, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                            CollectorRegistry())
    a, b = JobRef("video", "a", "uid-a", "1"), JobRef("video", "b", "uid-b", "1")
    plan = Plan((
        Dequeue(a, 1, "2025-01-10 01:36:24 +0000 UTC"), Event(a, "Normal", keys.EVENT_DEQUEUED, "a fits"),
        Dequeue(b, 1, "2025-01-10 01:36:24 +0000 UTC"), Event(b, "Normal", keys.EVENT_DEQUEUED, "b fits"),
    ))
    asyncio.run(controller.execute(plan))
    assert client.patched == ["/apis/ray.io/v1/namespaces/video/rayjobs/a"]
    assert [(e["involvedObject"]["name"], e["reason"]) for e in client.events] == [("a", keys.EVENT_DEQUEUED)]


class SlowClient:
    """Answers every write after a few loop turns, counting how many are in flight at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.log: list[str] = []

    async def _call(self, what: str) -> dict[str, Any]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.log.append(what)
        for _ in range(3):
            await asyncio.sleep(0)
        self.in_flight -= 1
        self.log.append(f"done {what}")
        return {}

    async def patch(self, path: str, body: Any, content_type: str = "") -> dict[str, Any]:
        return await self._call(f"patch {path.removesuffix('/status').rsplit('/', 1)[-1]}")

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if "involvedObject" in body:
            return await self._call(f"event {body['involvedObject']['name']} {body['reason']}")
        await self._call(f"create {body['metadata']['name']}")
        return {**body, "metadata": {**body["metadata"], "uid": f"uid-{body['metadata']['name']}"}}


def test_writes_go_out_in_bounded_parallel_chains_that_keep_their_order() -> None:
    """Ten jobs' dequeues and events, four in flight at most: every job's event follows its patch, and the
    patches start in plan (queue) order."""
    client = SlowClient()
    clock = FakeClock()
    controller = Controller(Cache(clock), client, EventRecorder(client, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                            CollectorRegistry(), parallel=4)
    refs = [JobRef("video", f"j{i}", f"uid-j{i}", "1") for i in range(10)]
    plan = Plan(tuple(a for r in refs for a in (Dequeue(r, 1, "2025-01-10 01:36:24 +0000 UTC"),
                                                Event(r, "Normal", keys.EVENT_DEQUEUED, "fits"))))
    asyncio.run(controller.execute(plan))
    assert client.most == 4
    assert [w for w in client.log if w.startswith("patch")] == [f"patch j{i}" for i in range(10)]
    for i in range(10):
        assert client.log.index(f"done patch j{i}") < client.log.index(f"event j{i} {keys.EVENT_DEQUEUED}")


def test_watch_events_during_a_sliced_pass_wait_until_its_plan_is_made() -> None:
    """The verbs run between slices; a RayJob that arrives meanwhile is not half-seen by the pass: it is
    held, applied after the plan, and planned by the next pass."""
    cache = Cache(FakeClock())
    loop = Loop(cache)
    loop.run()
    for i in range(3 * SLICE):
        loop.submit(job(f"j{i:03d}", "video", cpu="1", at=i).obj())
    client = RecordingClient(lost="")
    clock = FakeClock()
    controller = Controller(cache, client, EventRecorder(client, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                            CollectorRegistry())
    late = job("late", "video", cpu="1", at=0).obj()  # would sort first in the queue

    async def scenario() -> tuple[Plan, bool, bool]:
        task = asyncio.ensure_future(controller.plan_sliced())
        await asyncio.sleep(0)
        holding = controller.holding
        controller.deliver(cache.on_rayjob, "ADDED", late)
        seen_mid_pass = cache.job(late["metadata"]["uid"]) is not None
        return await task, holding, seen_mid_pass

    plan, holding, seen_mid_pass = asyncio.run(scenario())
    assert holding and not seen_mid_pass
    assert "late" not in [a.job.name for a in plan.of(Dequeue)]
    assert cache.job(late["metadata"]["uid"]) is not None and not controller.holding
    assert controller.wake.is_set(), "the held event asks for another pass"


def test_a_queue_units_status_waits_for_its_create_while_other_units_go_in_parallel() -> None:
    client = SlowClient()
    clock = FakeClock()
    controller = Controller(Cache(clock), client, EventRecorder(client, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                            CollectorRegistry(), parallel=8)
    units = [EnsureQueueUnit({"metadata": {"name": f"j{i}-ray-qu", "namespace": "video"}, "spec": {}})
             for i in range(4)]
    statuses = [UpdateQueueUnitStatus("video", f"j{i}-ray-qu", {"phase": "Enqueued"}) for i in range(4)]
    asyncio.run(controller.execute(Plan((*units, *statuses))))
    assert client.most > 1, "different QueueUnits are written in parallel"
    for i in range(4):
        assert client.log.index(f"done create j{i}-ray-qu") < client.log.index(f"patch j{i}-ray-qu")


def test_a_claimant_waiting_for_a_min_runtime_is_tried_again_when_it_runs_out_not_at_its_backoffs_end() -> None:
    """The guide's reclaim with `rayqueue.io/min-runtime: 2m` on the root and backoffs of 300 s: text's guaranteed
    job arrives 10 s after the borrowing intern job started and is refused (protected). The loop sleeps only until
    the intern job has run its 2m (110 s on), and the pass then reclaims it, 190 s before text's backoff ends."""
    clock = FakeClock()
    cache = Cache(clock, Backoff(base_seconds=300.0, max_seconds=300.0))
    loop = Loop(cache)
    loop.tree["spec"]["root"]["attributes"] = {keys.MIN_RUNTIME: "2m"}
    cache.on_tree("MODIFIED", copy.deepcopy(loop.tree))
    client = RecordingClient(lost="")
    controller = Controller(cache, client, EventRecorder(client, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                            CollectorRegistry(), resync_seconds=600.0)

    def run() -> Plan:
        plan = controller.plan()
        for action in plan:
            loop.apply(action, deliver=True)
        return plan

    video = loop.submit(video_copy("rayjob-video-aaaaa", at=0))  # 12.5 CPU
    intern = loop.submit(job("big", "intern", cpu="40", at=0).obj())
    assert sorted(a.job.name for a in run().of(Dequeue)) == ["big", "rayjob-video-aaaaa"]
    loop.pods(video, "4", "4", "4")
    loop.pods(intern, "40")

    clock.advance(10.0)
    loop.submit(job("train", "algorithm-text", cpu="30", at=10).obj())
    assert run().of(Suspend) == ()
    explain = cache.queues.explain("uid-algorithm-text-train")
    assert explain is not None and explain.why == "protected"
    assert cache.queues.in_backoff("uid-algorithm-text-train")
    assert controller.wait_seconds() == pytest.approx(110.0)

    clock.advance(60.0)
    assert run().of(Suspend) == ()  # woken by something else before: still protected, the wake-up kept
    assert controller.wait_seconds() == pytest.approx(50.0)
    clock.advance(50.0)
    assert [(s.job.name, s.claimant.name) for s in run().of(Suspend)] == [("big", "train")]

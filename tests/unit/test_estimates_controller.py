"""The controller's estimates: QueueUnit status fields from a Cache snapshot, and the Queue's runtime history.

Driven through the reconcile scenario harness (``Loop`` in test_reconcile.py): the watch events go into the
Cache, plans are applied to the in-memory objects, and ``extender.estimates`` patches go through the same
``Loop.apply`` the controller's actions do.
"""

from __future__ import annotations

import copy
from typing import Any

from common import keys
from common.clock import FakeClock
from common.gotime import parse_go
from extender import estimates
from extender.actions import UpdateQueueStatus
from extender.cache import Cache
from tests.unit.builders import apply_merge_patch
from tests.unit.test_reconcile import NOW, VIDEO, Loop, job, stamp

S = 10**9


def refresh(loop: Loop, now: int = NOW) -> None:
    for patch in estimates.history_patches(loop.cache, now):
        loop.apply(patch, deliver=False)
    snap = estimates.snapshot(loop.cache, now)
    assert snap is not None
    for patch in estimates.unit_patches(loop.cache, estimates.compute(snap).estimates, now):
        loop.apply(patch, deliver=False)


def test_a_waiting_unit_gets_the_start_of_its_blocker_end_and_loses_it_once_admitted() -> None:
    loop = Loop(Cache(FakeClock()))
    first = loop.submit(job("first", "video", cpu="10", at=1).annotate(keys.EXPECTED_RUNTIME, "10m").obj())
    second = loop.submit(job("second", "video", cpu="5", at=2).obj())
    loop.run()
    loop.run(deliver=True)
    refresh(loop)
    status = loop.unit("second")["status"]
    # "first" was dequeued at NOW by this reconcile: it is expected to end at NOW + 10m.
    assert parse_go(status["estimatedStartTime"]) == NOW + 600 * S
    assert status["estimate"].startswith("after 1 running job in root/algorithm/video finishes; runtime declared 10m0s")
    assert "estimatedStartTime" not in loop.unit("first").get("status", {})

    refresh(loop)  # nothing changed: no patch
    patches = estimates.unit_patches(loop.cache, estimates.compute(estimates.snapshot(loop.cache, NOW + S)).estimates, NOW + S)  # type: ignore[arg-type]
    assert patches == []

    # "first" finishes at +10m and its pods are gone: "second" is dequeued; its estimate goes.
    end = NOW + 600 * S
    loop.update_job(first, lambda o: o.setdefault("status", {}).update(
        jobDeploymentStatus="Complete", jobStatus="SUCCEEDED", endTime="2025-01-10T01:47:24Z"))
    loop.run(end, deliver=True)
    refresh(loop, end)
    assert "estimatedStartTime" not in loop.unit("second")["status"]
    assert "estimate" not in loop.unit("second")["status"]
    assert second in {j.uid for j in loop.cache.jobs()}


def test_finished_runtimes_go_to_the_queue_once_and_feed_the_estimate() -> None:
    loop = Loop(Cache(FakeClock()))
    a = loop.submit(job("a", "video", cpu="10", at=1).obj())
    loop.run()
    loop.run(deliver=True)
    # a ran from NOW (its dequeue stamp) to NOW + 192 s.
    end = "2025-01-10T01:40:36Z"
    assert parse_go(end) == NOW + 192 * S
    loop.update_job(a, lambda o: o.setdefault("status", {}).update(
        jobDeploymentStatus="Complete", jobStatus="SUCCEEDED", endTime=end))
    refresh(loop, NOW + 200 * S)
    rows = loop.queue(VIDEO)["status"]["runtimeHistory"]
    assert rows == [{"uid": a, "seconds": 192, "end": end}]
    assert estimates.history_patches(loop.cache, NOW + 200 * S) == []  # recorded once, also after a restart

    restarted = Loop(Cache(FakeClock()))
    restarted.queues = loop.queues
    for queue in loop.queues.values():
        restarted.cache.on_queue("ADDED", queue)
    for obj in loop.jobs.values():
        restarted.submit(obj)
    assert estimates.history_patches(restarted.cache, NOW + 200 * S) == []

    # A new job of unknown runtime now waits behind one that uses the leaf's history.
    b = loop.submit(job("b", "video", cpu="10", at=300).obj())
    c = loop.submit(job("c", "video", cpu="10", at=301).obj())
    t = NOW + 400 * S
    loop.run(t)
    loop.run(t, deliver=True)
    refresh(loop, t)
    assert b and c
    status = loop.unit("c")["status"]
    assert parse_go(status["estimatedStartTime"]) == t + 192 * S
    assert "median 3m12s of the last 1 jobs of root/algorithm/video" in status["estimate"]


def test_stamps_are_what_the_harness_writes() -> None:
    assert parse_go(stamp(0)) + 60 * S == NOW


def test_the_queue_publishes_its_forecast_once_and_the_webhooks_reader_gets_it_back() -> None:
    """video (max 14 cpu) runs "first" (10 cpu, declared 10m); "second" (5 cpu) waits. The video Queue's
    forecast: 4 cpu free behind "second" now (Round: a pass tries the tail too), all 14 once "first" ends
    and "second" holds 5 (9 free), 14 once it ends too; written once, and read back by ``forecast_from_status`` as the same
    Forecast."""
    from common.preview import forecast_from_status

    loop = Loop(Cache(FakeClock()))
    loop.submit(job("first", "video", cpu="10", at=1).annotate(keys.EXPECTED_RUNTIME, "10m").obj())
    loop.submit(job("second", "video", cpu="5", at=2).annotate(keys.EXPECTED_RUNTIME, "5m").obj())
    loop.run()
    loop.run(deliver=True)
    snap = estimates.snapshot(loop.cache, NOW)
    assert snap is not None
    found = estimates.compute(snap).forecasts
    video_queue = loop.queue(VIDEO)["metadata"]["name"]
    patches = estimates.forecast_patches(loop.cache, found, NOW)
    assert video_queue in {p.name for p in patches}
    for patch in patches:
        loop.apply(patch, deliver=True)
    published = loop.queue(VIDEO)["status"]["forecast"]
    cpus = [(parse_go(o["at"]), o["free"]["cpu"]) for o in published["openings"]]
    assert cpus[:3] == [(NOW, "4"), (NOW + 600 * S, "9"), (NOW + 900 * S, "14")], published
    told = forecast_from_status(VIDEO, loop.queue(VIDEO)["status"])
    assert told is not None and told.start({"cpu": 9000}, NOW) == NOW + 600 * S
    again = estimates.compute(estimates.snapshot(loop.cache, NOW + S)).forecasts  # type: ignore[arg-type]
    assert estimates.forecast_patches(loop.cache, again, NOW + S) == []  # nothing changed: nothing written


# --- the range: what the leaves learn, and what the QueueUnits show ---------------------------------------------


class MergingLoop(Loop):
    """The harness, with Queue status patches merged as the apiserver merges them (the reconcile's own status
    patch must not drop what the estimator learned)."""

    def apply(self, action: Any, *, deliver: bool) -> None:
        if isinstance(action, UpdateQueueStatus):
            apply_merge_patch(self.queues[action.name].setdefault("status", {}), action.status)
            self.cache.on_queue("MODIFIED", copy.deepcopy(self.queues[action.name]))
        else:
            super().apply(action, deliver=deliver)


def _learn(loop: Loop, now: int) -> None:
    for patch in estimates.history_patches(loop.cache, now):
        loop.apply(patch, deliver=True)


def test_the_queue_learns_actual_over_declared_and_who_passed_once_also_after_a_restart() -> None:
    """video runs "a" (10 cpu, declared 2m); "b" (10 cpu) waits; "c" (4 cpu, submitted after b) fits beside "a"
    and is admitted while b waits: c passed b. a ends after 3m12s: 1.6x what it declared."""
    from common.estimate_learning import learned_from_status

    loop = MergingLoop(Cache(FakeClock()))
    a = loop.submit(job("a", "video", cpu="10", at=1).annotate(keys.EXPECTED_RUNTIME, "2m").obj())
    loop.run()
    loop.run(deliver=True)
    _learn(loop, NOW)  # the first look at the leaf: arrivals are observed from then on
    loop.submit(job("b", "video", cpu="10", at=2).obj())
    loop.submit(job("c", "video", cpu="4", at=3).annotate(keys.EXPECTED_RUNTIME, "1m").obj())
    loop.run(NOW + 5 * S)
    loop.run(NOW + 5 * S, deliver=True)
    _learn(loop, NOW + 10 * S)
    learned = learned_from_status(loop.queue(VIDEO)["status"])
    assert [(x.priority, x.request.get("cpu"), x.seconds) for x in learned.arrivals] == [(0, 4000, 60.0)]
    assert learned.since_ns == NOW and learned.ratios == ()

    loop.update_job(a, lambda o: o.setdefault("status", {}).update(
        jobDeploymentStatus="Complete", jobStatus="SUCCEEDED", endTime="2025-01-10T01:40:36Z"))  # NOW + 192 s
    _learn(loop, NOW + 200 * S)
    status = loop.queue(VIDEO)["status"]
    assert status["estimateHistory"]["ratiosPermille"] == [1600]
    assert estimates.history_patches(loop.cache, NOW + 205 * S) == []  # nothing new: nothing written

    restarted = MergingLoop(Cache(FakeClock()))
    restarted.queues = loop.queues
    for queue in loop.queues.values():
        restarted.cache.on_queue("ADDED", queue)
    for obj in loop.jobs.values():
        restarted.submit(obj)
    assert estimates.history_patches(restarted.cache, NOW + 210 * S) == []  # counted once


def test_a_waiting_unit_shows_its_range_once_the_leaf_has_history_and_a_lower_bound_before() -> None:
    loop = MergingLoop(Cache(FakeClock()))
    loop.submit(job("first", "video", cpu="10", at=1).annotate(keys.EXPECTED_RUNTIME, "10m").obj())
    loop.submit(job("second", "video", cpu="5", at=2).annotate(keys.EXPECTED_RUNTIME, "5m").obj())
    loop.run()
    loop.run(deliver=True)
    refresh(loop)
    status = loop.unit("second")["status"]
    assert parse_go(status["estimatedStartTime"]) == NOW + 600 * S
    assert "estimatedStartTimeLatest" not in status and status["eta"] == "not before ~10m"
    assert "a lower bound only: too little history for a range" in status["estimate"]

    # The leaves' history: jobs ran 1x to 2x what they declared, and nothing passed for an hour.
    history = {"ratiosPermille": [1000, 1250, 1500, 1750, 2000], "since": "2025-01-10T00:36:24Z", "arrivals": []}
    for queue in list(loop.queues.values()):
        loop.apply(UpdateQueueStatus(queue["metadata"]["name"], {"estimateHistory": history}), deliver=True)
    refresh(loop)
    status = loop.unit("second")["status"]
    p50, p90 = parse_go(status["estimatedStartTime"]), parse_go(status["estimatedStartTimeLatest"])
    assert NOW + 600 * S < p50 <= p90 <= NOW + 1200 * S
    assert status["eta"].startswith("~") and ", by " in status["eta"]
    assert "P50 and P90 over 8 sampled futures" in status["estimate"]

    found = estimates.compute(estimates.snapshot(loop.cache, NOW))  # type: ignore[arg-type]
    patches = estimates.forecast_patches(loop.cache, found.forecasts, NOW)
    for patch in patches:
        loop.apply(patch, deliver=True)
    published = loop.queue(VIDEO)["status"]["forecast"]
    assert published["latest"]["openings"] and published["assumes"].startswith("P50 and P90")

"""kube-queue's dynamic priority: a patch of a QueueUnit's spec.priority reorders its queue and sticks.

The controller adopts a spec.priority it did not write (it differs from rayqueue.io/synced-priority) onto
the RayJob's priority annotation, with a record that becomes the PriorityChanged event; it never reverts it.
"""

from __future__ import annotations

import copy
from typing import Any

from common import keys
from common.clock import FakeClock
from extender.actions import EnsureQueueUnit, Event, SetPriority
from extender.cache import Cache
from extender.reconcile import reconcile
from tests.unit.builders import apply_merge_patch
from tests.unit.test_reconcile import NOW, Loop, job


class PriorityLoop(Loop):
    """The reconcile harness, also carrying out SetPriority (a guarded merge patch of the RayJob)."""

    def apply(self, action: Any, *, deliver: bool) -> None:
        if isinstance(action, SetPriority):
            obj = self.jobs[action.job.uid]
            if obj["metadata"]["resourceVersion"] != action.job.resource_version:
                self.conflicts.append(action.job.name)
                return
            apply_merge_patch(obj, action.patch())
            obj["metadata"]["resourceVersion"] = self._rv()
            if deliver:
                self.deliver(action.job.uid)
            return
        super().apply(action, deliver=deliver)

    def operator_patches_priority(self, name: str, priority: int, who: str | None = None) -> None:
        unit = self.unit(name)
        unit["spec"]["priority"] = priority
        if who:
            unit["metadata"]["annotations"][keys.PRIORITY_CHANGED_BY] = f"{who} (spec.priority {priority})"
        self.cache.on_queue_unit("MODIFIED", copy.deepcopy(unit))


def positions(loop: Loop) -> list[str]:
    return [loop.cache.job(it.uid).name for it in loop.cache.queues.active("root/algorithm/video")]  # type: ignore[union-attr]


def scenario() -> PriorityLoop:
    loop = PriorityLoop(Cache(FakeClock()))
    loop.submit(job("running", "video", cpu="14", at=0).obj())
    loop.submit(job("a", "video", cpu="4", at=1).obj())
    loop.submit(job("b", "video", cpu="4", at=2).obj())
    loop.run()
    loop.run(deliver=True)
    loop.run(deliver=True)
    return loop


def test_a_queue_unit_priority_patch_moves_the_job_ahead_and_sticks() -> None:
    loop = scenario()
    assert sorted(loop.cache.queues.backoff("root/algorithm/video") + loop.cache.queues.active("root/algorithm/video"),
                  key=lambda it: it.sort_key)[0].name == "a"
    loop.operator_patches_priority("b", 50, who="admin")
    plan = loop.run(NOW, deliver=True)
    (change,) = plan.of(SetPriority)
    assert (change.job.name, change.priority) == ("b", 50)
    assert change.record.startswith("admin changed priority 0 -> 50 at ")
    assert not [a for a in plan.of(EnsureQueueUnit) if a.name == keys.queue_unit_name("b")]  # not reverted
    assert loop.jobs[change.job.uid]["metadata"]["annotations"][keys.PRIORITY_OVERRIDE] == "50"

    plan = loop.run(NOW, deliver=True)
    assert loop.cache.job(change.job.uid).priority == 50  # type: ignore[union-attr]
    waiting = sorted((*loop.cache.queues.active("root/algorithm/video"),
                      *loop.cache.queues.backoff("root/algorithm/video")), key=lambda it: it.sort_key)
    assert [it.name for it in waiting] == ["b", "a"]
    assert [e.message for e in plan.of(Event) if e.reason == keys.EVENT_PRIORITY_CHANGED] == [change.record]
    unit = loop.unit("b")
    assert unit["spec"]["priority"] == 50
    assert unit["metadata"]["annotations"][keys.SYNCED_PRIORITY] == "50"

    again = loop.run(NOW, deliver=True)
    assert again.of(SetPriority) == () and not again.of(Event)

    # A restarted controller (a new cache fed the same objects) keeps it: no revert, no second event.
    fresh = PriorityLoop(Cache(FakeClock()))
    for q in loop.queues.values():
        fresh.queues[q["metadata"]["name"]] = q
        fresh.cache.on_queue("ADDED", copy.deepcopy(q))
    for key, u in loop.units.items():
        fresh.units[key] = u
        fresh.cache.on_queue_unit("ADDED", copy.deepcopy(u))
    for obj in loop.jobs.values():
        fresh.submit(copy.deepcopy(obj))
    plan = reconcile(fresh.cache, NOW)
    assert plan.of(SetPriority) == ()
    assert [a for a in plan.of(EnsureQueueUnit) if a.name == keys.queue_unit_name("b")] == []
    assert not [e for e in plan.of(Event) if e.reason == keys.EVENT_PRIORITY_CHANGED]


def test_the_controllers_own_spec_sync_is_not_mistaken_for_a_patch() -> None:
    """A RayJob priority raise (annotation) makes the controller rewrite the QueueUnit's spec: no adoption."""
    loop = scenario()
    uid = next(u for u, o in loop.jobs.items() if o["metadata"]["name"] == "a")
    loop.update_job(uid, lambda o: o["metadata"].setdefault("annotations", {}).update({keys.PRIORITY_OVERRIDE: "7"}))
    plan = loop.run(NOW, deliver=True)
    assert plan.of(SetPriority) == ()
    assert loop.unit("a")["spec"]["priority"] == 7
    assert loop.unit("a")["metadata"]["annotations"][keys.SYNCED_PRIORITY] == "7"
    assert loop.run(NOW, deliver=True).of(SetPriority) == ()


def test_without_the_webhook_the_record_says_the_user_is_unknown() -> None:
    loop = scenario()
    loop.operator_patches_priority("b", 50)
    (change,) = loop.run(NOW, deliver=True).of(SetPriority)
    assert change.record.startswith("someone the controller cannot name changed priority 0 -> 50")


def test_a_stale_author_stamp_of_an_earlier_change_is_not_believed() -> None:
    """The webhook (failurePolicy Ignore) was down for a second patch: the stamp names the first one's author."""
    loop = scenario()
    loop.operator_patches_priority("b", 50, who="admin")
    loop.run(NOW, deliver=True)
    loop.run(NOW, deliver=True)
    unit = loop.unit("b")
    unit["spec"]["priority"] = 70  # the stamp still says "admin (spec.priority 50)"
    loop.cache.on_queue_unit("MODIFIED", copy.deepcopy(unit))
    (change,) = loop.run(NOW, deliver=True).of(SetPriority)
    assert change.record.startswith("someone the controller cannot name changed priority 50 -> 70")

"""Fair share through the controller's reconcile: the order and the reason on the QueueUnit, the decayed usage in
the tree's status (written with usage changes and at least once a minute), and a new controller continuing from it."""

from __future__ import annotations

import copy

import pytest

from common import keys
from common.clock import FakeClock
from common.fair_share import order_for
from common.preview import usage_from_status
from common.quota_tree import QuotaTree
from extender.actions import Dequeue, Event, Suspend, UpdateTreeStatus
from extender.cache import Cache
from tests.unit.test_reconcile import T0, Loop, job, stamp

INTERN = "root/algorithm/intern"
TEXT = "root/algorithm/text"
MINUTE = 60 * 10**9


def fair_loop() -> Loop:
    """The guide's tree with a 1h half-life; video runs 10 and intern borrows 35 of algorithm's max 80, and intern
    has used 10 cpu-hours of borrowed capacity lately."""
    loop = Loop(Cache(FakeClock()))
    loop.tree["spec"]["root"]["attributes"] = {keys.FAIR_SHARE_HALF_LIFE: "1h"}
    loop.tree["status"] = {"fairShare": {"updated": stamp(0), "usage": {INTERN: {"cpu": 3.6e7}}}}
    loop.cache.on_tree("MODIFIED", copy.deepcopy(loop.tree))
    loop.submit(job("v", "video", cpu="10", at=1).obj())
    loop.submit(job("i", "intern", cpu="35", at=2).obj())
    assert len(loop.run(T0 + 10**9).of(Dequeue)) == 2
    return loop


def test_a_borrowing_job_waits_for_the_node_that_goes_first_and_its_queue_unit_says_so() -> None:
    loop = fair_loop()
    loop.submit(job("i2", "intern", cpu="5", at=3).obj())
    loop.submit(job("t", "algorithm-text", cpu="40", at=4).obj())
    plan = loop.run()
    assert plan.of(Dequeue) == ()  # today's order would admit intern's 5 (it fits; text's 40 does not)
    message = loop.cache.queues.reason("uid-intern-i2")
    assert message is not None
    assert message.startswith(f"{INTERN} used 2.0x its fair share of borrowed cpu over the last 3h (half-life 1h); "
                              f"{TEXT} goes first (algorithm-text/t waits for the borrowed capacity: root/algorithm: cpu used 45")


def test_the_decayed_usage_is_written_with_usage_changes_and_at_least_once_a_minute() -> None:
    loop = fair_loop()
    first = loop.tree["status"]["fairShare"]
    assert first["updated"] == stamp(1) and first["halfLife"] == "1h"
    assert first["usage"][INTERN]["cpu"] == pytest.approx(3.6e7 * 0.5 ** (1 / 3600), rel=1e-5)
    assert loop.run(T0 + 30 * 10**9).of(UpdateTreeStatus) == ()  # nothing changed, under a minute
    plan = loop.run(T0 + 10**9 + MINUTE)
    assert plan.wake_ns is not None and plan.wake_ns <= T0 + 10**9 + 2 * MINUTE
    (update,) = plan.of(UpdateTreeStatus)
    grown = update.status["fairShare"]["usage"][INTERN]["cpu"]
    assert grown > first["usage"][INTERN]["cpu"]  # intern borrowed 35 cpu (its min is 0) for that minute
    assert update.status["fairShare"]["share"][INTERN] > 0


def test_a_new_controller_continues_from_the_status() -> None:
    loop = fair_loop()
    loop.run(T0 + 10**9 + MINUTE)
    obj = copy.deepcopy(loop.tree)
    fresh = Cache(FakeClock())
    fresh.on_tree("ADDED", obj)
    tree = QuotaTree.parse(obj)
    now = T0 + 10**9 + MINUTE
    order = order_for(tree, fresh.tree_status, usage_from_status(fresh.tree_status), now)
    assert order is not None
    assert order.decayed.of(INTERN)["cpu"] == pytest.approx(obj["status"]["fairShare"]["usage"][INTERN]["cpu"])
    assert order.goes_first(TEXT, INTERN) and order.goes_first("root/algorithm/video", INTERN)


def test_a_fairness_victim_is_told_it_was_preempted_for_a_fair_share_reclaim_with_the_shares() -> None:
    """With reclaim for fairness on, text's borrowing 40 cpu goes first (intern borrowed for hours) and does not fit
    algorithm's max 80 beside video's 10 and intern's 20 + 15 (admitted in one pass: the tie goes by uid). Its Preempted event
    says a fair-share reclaim, by whom, of which leaf, and the shares before and after (not "guaranteed in")."""
    loop = Loop(Cache(FakeClock()))
    loop.tree["spec"]["root"]["attributes"] = {keys.FAIR_SHARE_HALF_LIFE: "1h", keys.FAIR_SHARE_PREEMPTION: "true"}
    loop.tree["status"] = {"fairShare": {"updated": stamp(0), "usage": {INTERN: {"cpu": 3.6e7}}}}
    loop.cache.on_tree("MODIFIED", copy.deepcopy(loop.tree))
    running = [loop.submit(job(name, ns, cpu=cpu, at=at).obj())
               for name, ns, cpu, at in (("v", "video", "10", 1), ("i1", "intern", "20", 2), ("i2", "intern", "15", 3))]
    assert len(loop.run(T0 + 10**9).of(Dequeue)) == 3
    for uid, cpu in zip(running, ("10", "20", "15"), strict=True):
        loop.deliver(uid)
        loop.pods(uid, cpu)

    loop.submit(job("t", "algorithm-text", cpu="40", at=4).obj())
    plan = loop.run(T0 + 2 * 10**9)
    assert [(s.job.name, s.claimant.name) for s in plan.of(Suspend)] == [("i1", "t")]
    (message,) = [e.message for e in plan.of(Event) if e.reason == keys.EVENT_PREEMPTED]
    # after: text borrows 8 of algorithm's 80 (0.1), intern 15 (0.1875); before: 0 and 35 (0.4375)
    assert message == (
        f"preempted for a fair-share reclaim by algorithm-text/t of {TEXT} ({INTERN} borrows above its fair share; "
        f"priority 0; shares of borrowed capacity (dominant resource, over weight) before -> after: {TEXT} "
        f"0.000 -> 0.100, {INTERN} 0.438 -> 0.188); requeued with its original enqueue time")
    assert "guaranteed in" not in message


def test_a_reclaim_for_a_min_keeps_its_words_with_fair_share_on() -> None:
    """The same world, but text's 30 cpu is within its min 32: the reclaim is the guaranteed one, said as before."""
    loop = Loop(Cache(FakeClock()))
    loop.tree["spec"]["root"]["attributes"] = {keys.FAIR_SHARE_HALF_LIFE: "1h", keys.FAIR_SHARE_PREEMPTION: "true"}
    loop.cache.on_tree("MODIFIED", copy.deepcopy(loop.tree))
    running = [loop.submit(job(name, ns, cpu=cpu, at=at).obj())
               for name, ns, cpu, at in (("v", "video", "10", 1), ("i1", "intern", "40", 2))]
    assert len(loop.run(T0 + 10**9).of(Dequeue)) == 2
    for uid, cpu in zip(running, ("10", "40"), strict=True):
        loop.deliver(uid)
        loop.pods(uid, cpu)
    loop.submit(job("t", "algorithm-text", cpu="32", at=4).obj())
    plan = loop.run(T0 + 2 * 10**9)
    (message,) = [e.message for e in plan.of(Event) if e.reason == keys.EVENT_PREEMPTED]
    assert message.startswith(f"preempted to reclaim quota for algorithm-text/t, guaranteed in {TEXT} ({INTERN}")

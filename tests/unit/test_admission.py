"""The admission pass (common.admission) as the controller and the estimator run it."""

from __future__ import annotations

from common.admission import AdmissionPass
from common.clock import FakeClock
from common.ledger import Claim, Ledger
from common.queueing import QueueItem, Queues
from tests.unit.builders import PassWorld
from tests.unit.test_start_times import cpu, tree


def test_a_job_admitted_in_a_pass_is_no_reclaim_victim_of_the_same_pass() -> None:
    """x holds 6 of root's 10 CPU (2 above its min 4); xa (x) is admitted first, then yg, guaranteed in y
    but not its leaf's head, needs a reclaim. Taking xa back would put its Dequeue and its Suspend in one
    plan, the job bouncing: the victim is x's older job instead."""
    ledger = Ledger(tree())
    ledger.add(Claim(uid="own", key="x/own", kind="job", quota="root/a/x", request=cpu(4), admitted_order=1))
    ledger.add(Claim(uid="xb", key="x/xb", kind="job", quota="root/a/x", request=cpu(2), admitted_order=2))
    queues = Queues(FakeClock())
    for uid, quota, at, size in [("xa", "root/a/x", 1, 2), ("yh", "root/a/y", 2, 6), ("yg", "root/a/y", 3, 4)]:
        queues.upsert(QueueItem(uid=uid, namespace=quota[-1], name=uid, quota=quota, priority=0, enqueue_ns=at,
                                request=cpu(size)))
    decide = AdmissionPass(PassWorld(queues), ledger, 100)
    queues.schedule(decide, ledger.generation)
    admitted = [c.uid for c, _ in decide.admitted]
    victims = [v.uid for v, _ in decide.victims]
    assert admitted == ["xa"]
    assert victims and "xa" not in victims, victims

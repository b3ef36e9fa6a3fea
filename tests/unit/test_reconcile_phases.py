"""The reconcile's phases (extender/reconcile.py), each run alone on one snapshot (``Pass``)."""

from __future__ import annotations

from collections.abc import Callable, Generator

from common import keys
from common.clock import FakeClock
from extender.actions import Dequeue, EnsureQueue, Event, Requeue
from extender.cache import Cache
from extender.reconcile import PHASES, Pass, admission_phase, dequeues_phase, queues_phase, requeues_phase
from tests.unit.test_reconcile import NOW, VIDEO, Loop, job

Phase = Callable[[Pass], Generator[None, None, None]]


def _run(p: Pass, *phases: Phase) -> Pass:
    for phase in phases:
        for _ in phase(p):
            pass
    return p


def _snapshot(loop: Loop) -> Pass:
    p = Pass.of(loop.cache, NOW)
    assert p is not None
    return p


def test_the_phases_are_numbered_in_the_order_they_run() -> None:
    assert [int(name.split()[0]) for name, _ in PHASES] == list(range(1, len(PHASES) + 1))


def test_no_snapshot_without_a_tree() -> None:
    assert Pass.of(Cache(FakeClock()), NOW) is None


def test_the_queues_phase_alone_creates_one_queue_per_leaf_and_touches_no_job() -> None:
    loop = Loop(Cache(FakeClock()))
    loop.submit(job("a", "video", cpu="1", at=1).set("metadata.uid", "uid-a").obj())
    p = _run(_snapshot(loop), queues_phase)
    leaves = sorted(leaf.full_name for leaf in p.tree.leaves())
    assert sorted(a.leaf for a in p.queues if isinstance(a, EnsureQueue)) == leaves
    assert [j.name for j in p.jobs] == ["a"]
    assert p.plan().actions == tuple(p.queues)


def test_admission_then_dequeues_admit_what_fits_and_say_so() -> None:
    loop = Loop(Cache(FakeClock()))
    loop.submit(job("a", "video", cpu="2", at=1).set("metadata.uid", "uid-a").obj())
    loop.submit(job("b", "video", cpu="20", at=2).set("metadata.uid", "uid-b").obj())
    p = _run(_snapshot(loop), queues_phase, requeues_phase, admission_phase, dequeues_phase)
    assert [(type(a).__name__, a.job.name) for a in p.admission if isinstance(a, Dequeue | Event)] == [
        ("Dequeue", "a"), ("Event", "a")]
    assert p.dequeued == {"uid-a": 0}
    assert loop.cache.queues.reason("uid-b") == f"{VIDEO}: cpu used 2 + request 20 > max 14"


def test_the_requeues_phase_alone_requeues_a_job_suspended_while_admitted() -> None:
    loop = Loop(Cache(FakeClock()))
    uid = loop.submit(job("a", "video", cpu="1", at=1).set("metadata.uid", "uid-a").obj())
    loop.run()
    loop.update_job(uid, lambda obj: obj["spec"].update(suspend=True))
    p = _run(_snapshot(loop), queues_phase, requeues_phase)
    requeue, event = p.requeues
    assert isinstance(requeue, Requeue) and requeue.job.name == "a"
    assert event == Event(requeue.job, "Normal", keys.EVENT_REQUEUED,
                          f"suspended while admitted to {VIDEO}; requeued with its original enqueue time")

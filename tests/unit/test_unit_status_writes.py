"""A waiting job's QueueUnit status is written when what it says changed, not on every pass (issue 13, goal 4).

Phase and message are written on every change. The position (which moves for every waiter behind an
admission, an arrival ahead or a retry) is written exactly up to POSITION_EXACT, beyond that once the written
one is more than POSITION_SLACK off; the attempts count once it doubled or was reset. Whenever a status is
written, every field in it is exact. The Queue's status lists every exact position.
"""

from __future__ import annotations

from typing import Any

import pytest

from common.clock import FakeClock
from extender.actions import UpdateQueueUnitStatus
from extender.cache import Cache
from extender.unit_status import POSITION_EXACT
from extender.unit_status import status_due as _status_due
from tests.unit.test_reconcile import Loop, job

BASE = {"phase": "Backoff", "position": 40, "message": "root/algorithm/video: cpu used 0 + request 20 > max 14",
        "attempts": 4}


@pytest.mark.parametrize(
    ("change", "due"),
    [
        pytest.param({}, False, id="nothing changed"),
        pytest.param({"phase": "Enqueued"}, True, id="a phase change is written"),
        pytest.param({"message": "root/algorithm: cpu used 70 + request 20 > max 80"}, True,
                     id="a message change is written"),
        pytest.param({"position": 37}, False, id="a position beyond the exact ones, moved by less than a tenth"),
        pytest.param({"position": 44}, False, id="moved back by a tenth exactly"),
        pytest.param({"position": 35}, True, id="moved by more than a tenth"),
        pytest.param({"position": None}, True, id="a position that goes is written (dequeued)"),
        pytest.param({"attempts": 7}, False, id="attempts that have not doubled"),
        pytest.param({"attempts": 8}, True, id="attempts that doubled"),
        pytest.param({"attempts": 0}, True, id="attempts reset (a priority or quota change)"),
    ],
)
def test_what_makes_a_waiting_unit_s_status_due(change: dict[str, Any], due: bool) -> None:
    assert _status_due({**BASE, **change}, BASE) is due


@pytest.mark.parametrize(("old", "new"), [(2, 3), (POSITION_EXACT, POSITION_EXACT + 1), (POSITION_EXACT + 1,
                                                                                           POSITION_EXACT)])
def test_positions_near_the_head_are_always_exact(old: int, new: int) -> None:
    assert _status_due({**BASE, "position": new}, {**BASE, "position": old})


def test_an_arrival_ahead_rewrites_the_positions_near_the_head_only() -> None:
    """14 jobs wait in video (each asks more than its max); one of higher priority arrives and is refused
    too: every waiter moves one place back, but only those near the head are rewritten."""
    loop = Loop(Cache(FakeClock()))
    loop.run()  # the Queues exist
    for i in range(14):
        loop.submit(job(f"w{i:02d}", "video", cpu="20", at=1 + i).obj())
    loop.run()
    loop.run()
    positions = {f"w{i:02d}": loop.unit(f"w{i:02d}")["status"]["position"] for i in range(14)}
    assert positions == {f"w{i:02d}": i + 1 for i in range(14)}
    loop.submit(job("urgent", "video", cpu="20", at=30, priority=100).obj())
    loop.run()
    loop.run()  # the urgent job's QueueUnit and status, then the others'
    written = {a.name for p in loop.plans[-2:] for a in p.of(UpdateQueueUnitStatus)}
    near = {f"w{i:02d}-ray-qu" for i in range(POSITION_EXACT)}
    assert near <= written, "positions up to POSITION_EXACT are exact"
    assert not written & {f"w{i:02d}-ray-qu" for i in range(POSITION_EXACT, 14)}, "beyond: moved 1 of 11+"
    assert loop.unit("w13")["status"]["position"] == 14, "written as it was"
    assert loop.unit("w09")["status"]["position"] == 11
    kept = loop.queue("root/algorithm/video")["status"]["queueItemDetails"]
    listed = {d["name"]: d["position"] for listed in ("active", "backoff") for d in kept[listed]}
    assert listed["w13-ray-qu"] == 15, "the Queue's status has every exact position"

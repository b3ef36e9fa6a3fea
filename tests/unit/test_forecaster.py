"""The start-time replay in its own process: the same result as in the extender's, a dead worker replaced, the
worker gone with the extender (even killed), and the controller replaying through it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from common import keys
from common.clock import FakeClock
from common.estimate_learning import Arrival, Learned
from common.estimate_range import RangedEstimate, RangedForecast
from common.resources import Resources
from extender import estimates
from extender.cache import Cache
from extender.controller import Controller
from extender.estimates import EstimateInputs
from extender.forecaster import Forecaster, pack, run_packed, unpack_replay
from kubeio.events import EventRecorder
from tests.unit.test_controller import RecordingClient
from tests.unit.test_reconcile import NOW, Loop, job
from tests.unit.test_start_times import X, Y, declared, running, waiting, world

ROOT = Path(__file__).resolve().parents[2]


def snapshot() -> EstimateInputs:
    a = running("a", X, 6, started_min_ago=2, runtime=declared(10))
    b = running("b", Y, 4, started_min_ago=1, runtime=declared(3))
    queued = (waiting("c", X, 4, runtime=declared(5)), waiting("d", Y, 3, priority=2, runtime=declared(1)),
              waiting("e", X, 9))
    return EstimateInputs(world(a, b), (a, b), queued, {X: "Round", Y: "Block"}, NOW)


def test_a_packed_snapshot_replays_to_what_the_extender_computes() -> None:
    snap = snapshot()
    found, expected = unpack_replay(run_packed(pack(snap))), estimates.compute(snap)
    assert found.estimates == expected.estimates
    assert found.forecasts == expected.forecasts
    assert found.estimates["c"].start_ns is not None


def learned_snapshot() -> EstimateInputs:
    """``snapshot`` with an hour of history in both leaves: runtimes run over their declarations, and jobs of
    higher priority arrive that pass the waiting ones (so every range is sampled, not a lower bound)."""
    hour = 3600 * 10**9
    ratios = (0.8, 1.0, 1.2, 1.5, 2.0)
    learned = {leaf: Learned(ratios, tuple(Arrival(NOW - (i + 1) * 600 * 10**9, 5, Resources({"cpu": 2000}), 240.0)
                                           for i in range(4)), NOW - hour) for leaf in (X, Y)}
    return replace(snapshot(), learned=learned, runtimes={X: (120.0, 300.0, 600.0, 900.0, 1200.0)})


def test_the_worker_computes_the_p50_and_the_p90_from_the_learned_history_the_snapshot_carries() -> None:
    """The packed snapshot carries what the leaves learned and the snapshot's instant: the worker's ranges are
    the extender's, and they are ranges (a P90 after the P50 for a job whose future is uncertain)."""
    snap = learned_snapshot()
    found, expected = unpack_replay(run_packed(pack(snap))), estimates.compute(snap)
    assert found.estimates == expected.estimates
    assert found.forecasts == expected.forecasts
    e = found.estimates["e"]  # waits for running jobs whose runtimes the futures draw
    assert isinstance(e, RangedEstimate) and e.start_ns is not None and e.latest_ns is not None
    assert NOW < e.start_ns < e.latest_ns
    assert "P50 and P90 over" in e.assumes
    assert all(isinstance(f, RangedForecast) and f.latest is not None for f in found.forecasts.values())


def test_the_worker_replays_the_same_and_a_dead_worker_is_replaced() -> None:
    snap = snapshot()
    expected = estimates.compute(snap)

    async def scenario() -> tuple[int, int]:
        forecaster = Forecaster()
        try:
            pid = await forecaster.warm()
            assert pid != os.getpid()
            assert (await forecaster.compute(snap)).estimates == expected.estimates
            os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.2)
            assert (await forecaster.compute(snap)).estimates == expected.estimates
            again = forecaster.pids()
            assert again and again != [pid]
            return pid, again[0]
        finally:
            forecaster.close()

    _, second = asyncio.run(scenario())
    assert _gone(second, 10.0)


def test_the_worker_dies_with_the_extender_even_when_the_extender_is_killed() -> None:
    script = textwrap.dedent("""
        import asyncio, time
        from extender.forecaster import Forecaster
        async def main():
            f = Forecaster()
            print(await f.warm(), flush=True)
            time.sleep(60)
        asyncio.run(main())
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, env=env) as parent:
        try:
            assert parent.stdout is not None
            worker = int(parent.stdout.readline())
            assert not _gone(worker, 0.0)
            parent.kill()  # SIGKILL: no clean-up of its own runs
            parent.wait(10)
            assert _gone(worker, 10.0)
        finally:
            if parent.poll() is None:
                parent.kill()


def test_the_controller_replays_through_its_offload_and_writes_what_comes_back() -> None:
    loop = Loop(Cache(FakeClock()))
    loop.submit(job("first", "video", cpu="10", at=1).annotate(keys.EXPECTED_RUNTIME, "10m").obj())
    loop.submit(job("second", "video", cpu="5", at=2).obj())
    loop.run()
    loop.run(deliver=True)
    client, clock = RecordingClient(lost=""), FakeClock()
    controller = Controller(loop.cache, client, EventRecorder(client, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                            CollectorRegistry())
    seen: list[EstimateInputs] = []

    async def offload(snap: EstimateInputs) -> estimates.Replay:
        seen.append(snap)
        return estimates.compute(snap)

    controller.offload = offload
    asyncio.run(controller.refresh_estimates(force=True))
    assert [w.item.name for w in seen[0].waiting] == ["second"]
    assert any(p.endswith("/queueunits/second-ray-qu/status") for p in client.patched), client.patched


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:  # a zombie (not yet reaped) counts as gone
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def test_the_snapshot_is_taken_in_slices_with_the_watch_events_held_until_it_is_taken(monkeypatch: Any) -> None:
    loop = Loop(Cache(FakeClock()))
    loop.submit(job("first", "video", cpu="10", at=1).annotate(keys.EXPECTED_RUNTIME, "10m").obj())
    for i in range(5):
        loop.submit(job(f"w{i}", "video", cpu="5", at=2 + i).obj())
    loop.run()
    loop.run(deliver=True)
    client, clock = RecordingClient(lost=""), FakeClock()
    controller = Controller(loop.cache, client, EventRecorder(client, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                            CollectorRegistry())
    monkeypatch.setattr(estimates, "SNAPSHOT_SLICE", 2)  # 5 waiting jobs: 2 turns of the loop in between
    applied: list[str] = []

    async def scenario() -> estimates.EstimateInputs | None:
        task = asyncio.ensure_future(controller._snapshot_sliced())
        await asyncio.sleep(0)
        assert controller.holding
        controller.deliver(lambda kind, obj: applied.append(kind), "MODIFIED", {})
        assert applied == []  # held: the snapshot is of one instant
        found = await task
        assert applied == ["MODIFIED"] and not controller.holding
        return found

    found = asyncio.run(scenario())
    expected = estimates.snapshot(loop.cache, found.now_ns if found else 0)
    assert found is not None and expected is not None
    assert [w.item.name for w in found.waiting] == [w.item.name for w in expected.waiting] == [f"w{i}" for i in range(5)]
    assert found.running == expected.running and found.ledger.claims() == expected.ledger.claims()


def test_the_worker_runs_at_a_lower_cpu_priority_than_the_extender() -> None:
    forecaster = Forecaster()
    loop = asyncio.new_event_loop()
    try:  # asked of the worker itself (os.nice(0) there answers its niceness)
        niceness = loop.run_until_complete(loop.run_in_executor(forecaster._executor(), os.nice, 0))
    finally:
        loop.close()
        forecaster.close()
    assert niceness == os.nice(0) + 10

"""Nothing dies silently: a task that ends early takes the service down, logged (kubeio.lifecycle.Tasks); a leader
whose renewals fail steps down within its renew deadline, even while an attempt hangs (kubeio.leader)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from common.clock import SystemClock
from kubeio.leader import LeaderElector
from kubeio.lifecycle import ServiceFailed, Tasks

WAIT = 10.0


async def forever(stop: asyncio.Event) -> None:
    await stop.wait()


async def crash() -> None:
    raise RuntimeError("boom")


async def finish() -> None:
    return None


@pytest.mark.asyncio
@pytest.mark.parametrize(("task", "reason"), [
    pytest.param(crash, "task worker failed: RuntimeError: boom", id="a task that raises takes the service down"),
    pytest.param(finish, "task worker ended before the service was stopped",
                 id="a task that returns early takes the service down"),
])
async def test_a_task_that_ends_early(task: Any, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    tasks = Tasks("extender", stop)
    tasks.start("other", forever(stop))
    tasks.start("worker", task())
    await asyncio.wait_for(stop.wait(), WAIT)
    await tasks.close()
    with pytest.raises(ServiceFailed) as failed:
        tasks.check()
    assert str(failed.value) == f"rayqueue extender: {reason}"
    assert any(r.levelno == logging.CRITICAL and reason in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_a_one_shot_job_may_end() -> None:
    stop = asyncio.Event()
    tasks = Tasks("extender", stop)
    job = tasks.start("wake", finish(), once=True)
    await asyncio.wait_for(job, WAIT)
    await asyncio.sleep(0)
    assert not stop.is_set() and tasks.failure is None
    stop.set()
    await tasks.close()
    tasks.check()


@pytest.mark.asyncio
async def test_a_stopped_service_is_not_a_failure() -> None:
    stop = asyncio.Event()
    tasks = Tasks("webhook", stop)
    tasks.start("a", forever(stop))
    tasks.start("b", forever(stop))
    stop.set()
    await tasks.close()
    tasks.check()
    assert tasks.failure is None


class HangingLeases:
    """A client whose first Lease GET answers (404, then the create succeeds) and whose later calls hang: a renewal
    that never returns, as against an apiserver that accepts connections and never answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            from kubeio.client import ApiError
            raise ApiError(404, "NotFound", "leases not found")
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def create(self, path: str, body: Any) -> dict[str, Any]:
        return dict(body)

    async def replace(self, path: str, body: Any) -> dict[str, Any]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


@pytest.mark.asyncio
async def test_a_leader_whose_renewal_hangs_steps_down_within_its_renew_deadline() -> None:
    """client-go renew(): each attempt is bounded by what is left of renewDeadline; is_leader turns false at the
    deadline, before lease_duration lets a standby in."""
    lost: list[str] = []
    clock = SystemClock()
    elector = LeaderElector(HangingLeases(), "ns", "lease", "me", clock,  # type: ignore[arg-type]
                            lease_duration=1.5, renew_deadline=0.6, retry_period=0.1, on_lost=lost.append)
    stop = asyncio.Event()
    task = asyncio.create_task(elector.run(stop))
    await asyncio.wait_for(elector.became_leader.wait(), WAIT)
    began = clock.monotonic()
    assert elector.is_leader
    await asyncio.wait_for(task, WAIT)
    assert not elector.is_leader
    assert clock.monotonic() - began < elector.lease_duration + elector.renew_deadline, "bounded by the deadline"
    (reason,) = lost
    assert "not renewed within 1s" in reason and "TimeoutError" in reason


@pytest.mark.asyncio
async def test_is_leader_turns_false_at_the_deadline_even_while_an_attempt_hangs() -> None:
    clock = SystemClock()
    elector = LeaderElector(HangingLeases(), "ns", "lease", "me", clock,  # type: ignore[arg-type]
                            lease_duration=30, renew_deadline=0.5, retry_period=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(elector.run(stop))
    try:
        await asyncio.wait_for(elector.became_leader.wait(), WAIT)
        await asyncio.sleep(0.7)  # past the renew deadline: no renewal got through
        assert not elector.is_leader
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

"""The extender is ready only while every watch is live and it leads; /readyz says which watch is not, and why;
a standby with a watch down does not campaign for the Lease."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from common.clock import FakeClock
from extender.app import Service
from extender.settings import parse_settings
from kubeio.client import ApiError
from kubeio.leader import LeaderElector
from kubeio.reflector import Reflector
from tests.unit.fake_apiserver import client_for


def service(clock: FakeClock) -> Service:
    svc = Service(parse_settings(["--no-leader-elect"]), None, clock)
    kube = client_for(1)  # never called: the reflectors are not run
    svc.reflectors = [Reflector(kube, f"/api/v1/{name}", lambda kind, obj: None, name=name, clock=clock)
                      for name in ("nodes", "pods")]
    return svc


@pytest.mark.asyncio
async def test_readyz_follows_the_watches_and_names_the_one_that_failed() -> None:
    clock = FakeClock()
    svc = service(clock)
    async with TestClient(TestServer(svc.app())) as http:
        resp = await http.get("/readyz")
        assert resp.status == 503
        assert await resp.text() == "not ready: cache not synced: nodes (not listed yet), pods (not listed yet)\n"
        for r in svc.reflectors:
            r.synced.set()
        assert (await http.get("/readyz")).status == 200
        pods = svc.reflectors[1]
        pods._failed(ConnectionResetError("Connection reset by peer"))
        clock.advance(3)
        resp = await http.get("/readyz")
        assert resp.status == 503 and not svc.ready
        assert await resp.text() == ("not ready: cache not synced: pods (ConnectionResetError: Connection reset by "
                                     "peer for 3s)\n")


class FreeLease:
    """A Lease API whose Lease nobody holds: every GET answers 404 and a create succeeds; the calls are counted."""

    def __init__(self) -> None:
        self.calls = 0

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        self.calls += 1
        raise ApiError(404, "NotFound", "leases.coordination.k8s.io \"rayqueue-extender\" not found")

    async def create(self, path: str, body: Any) -> dict[str, Any]:
        self.calls += 1
        return dict(body)


@pytest.mark.asyncio
async def test_a_standby_whose_watch_failed_does_not_take_a_free_lease_until_it_has_listed_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The issue-24 standby took the Lease with a cache cut by the apiserver restart and admitted nothing for ten
    minutes. Now the elector asks the Service first: while a watch is down it does not campaign at all (no Lease
    call), says why in the log, and takes the free Lease as soon as that watch has listed again."""
    caplog.set_level(logging.INFO, logger="kubeio.leader")
    clock = FakeClock()
    svc = service(clock)
    for r in svc.reflectors:
        r.synced.set()
    svc.reflectors[1]._failed(ConnectionResetError("Connection reset by peer"))
    leases = FreeLease()
    elector = LeaderElector(leases, "rayqueue", "rayqueue-extender", "standby", clock,  # type: ignore[arg-type]
                            lease_duration=15, renew_deadline=10, retry_period=5, hold_back=svc.not_synced)
    stop = asyncio.Event()
    task = asyncio.create_task(elector.run(stop))
    try:
        await asyncio.sleep(0.6)  # several looks at the hold-back
        assert leases.calls == 0 and not elector.is_leader, "no campaign while the pods watch is down"
        assert elector.held_back == "cache not synced: pods (ConnectionResetError: Connection reset by peer for 0s)"
        assert [r.getMessage() for r in caplog.records if "not campaigning" in r.getMessage()] == [
            "lease rayqueue/rayqueue-extender: not campaigning (identity standby): cache not synced: pods "
            "(ConnectionResetError: Connection reset by peer for 0s)"], "said once, with the watch and why"
        svc.reflectors[1].synced.set()  # re-listed
        await asyncio.wait_for(elector.became_leader.wait(), 2.0)  # at once, not a 5 s retry period later
        assert elector.is_leader and elector.held_back is None and leases.calls == 2
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

"""The extender is ready only while every watch is live and it leads; /readyz says which watch is not, and why."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from common.clock import FakeClock
from extender.app import Service
from extender.settings import parse_settings
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

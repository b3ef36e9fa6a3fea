"""The controller's executor: a refused patch is not followed by an event claiming it happened."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from common import keys
from common.clock import FakeClock
from extender.cache import Cache
from extender.controller import Controller
from extender.reconcile import Dequeue, Event, JobRef, Plan
from kubeio.client import ApiError
from kubeio.events import EventRecorder


class RecordingClient:
    """Answers like the API: patches of RayJob `lost` get 409 (another writer won), the rest succeed."""

    def __init__(self, lost: str) -> None:
        self.lost = lost
        self.patched: list[str] = []
        self.events: list[dict[str, Any]] = []

    async def patch(self, path: str, body: Any, content_type: str = "") -> dict[str, Any]:
        if path.endswith(f"/rayjobs/{self.lost}"):
            raise ApiError(409, "Conflict", "the object has been modified", "PATCH", path)
        self.patched.append(path)
        return {}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.events.append(body)
        return body


def test_a_dequeue_that_loses_a_conflict_records_no_dequeued_event() -> None:
    client = RecordingClient(lost="b")
    clock = FakeClock()
    controller = Controller(Cache(clock), client, EventRecorder(client, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                            CollectorRegistry())
    a, b = JobRef("video", "a", "uid-a", "1"), JobRef("video", "b", "uid-b", "1")
    plan = Plan((
        Dequeue(a, 1, "2025-01-10 01:36:24 +0000 UTC"), Event(a, "Normal", keys.EVENT_DEQUEUED, "a fits"),
        Dequeue(b, 1, "2025-01-10 01:36:24 +0000 UTC"), Event(b, "Normal", keys.EVENT_DEQUEUED, "b fits"),
    ))
    asyncio.run(controller.execute(plan))
    assert client.patched == ["/apis/ray.io/v1/namespaces/video/rayjobs/a"]
    assert [(e["involvedObject"]["name"], e["reason"]) for e in client.events] == [("a", keys.EVENT_DEQUEUED)]

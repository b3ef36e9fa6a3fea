"""Kubernetes Events (core/v1) from the services: the user's window into why something happened."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from common.clock import Clock
from kubeio.client import ApiError, KubeClient

__all__ = ["EventRecorder", "event_body"]

log = logging.getLogger(__name__)

MAX_MESSAGE = 1024  # the apiserver refuses longer event messages


def event_body(obj_ref: Mapping[str, str], type_: str, reason: str, message: str, component: str,
               now_rfc3339: str) -> dict[str, Any]:
    """An Event about `obj_ref` ({apiVersion, kind, name, namespace, uid})."""
    name = obj_ref["name"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": obj_ref["namespace"]},
        "involvedObject": dict(obj_ref),
        "type": type_,
        "reason": reason,
        "message": message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "...",
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now_rfc3339,
        "lastTimestamp": now_rfc3339,
        "count": 1,
    }


class EventRecorder:
    """Posts events; a failure is logged, never raised (an event is a courtesy, not a decision)."""

    def __init__(self, client: KubeClient, component: str, clock: Clock) -> None:
        self.client, self.component, self.clock = client, component, clock

    async def emit(self, obj_ref: Mapping[str, str], type_: str, reason: str, message: str) -> None:
        now = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = event_body(obj_ref, type_, reason, message, self.component, now)
        try:
            await self.client.create(f"/api/v1/namespaces/{obj_ref['namespace']}/events", body)
        except (ApiError, OSError, TimeoutError) as exc:
            log.warning("could not record event %s on %s/%s: %s", reason, obj_ref.get("namespace"),
                        obj_ref.get("name"), exc)

"""Carrying a ``Shrink`` or an ``Expand`` out (docs/elastic.md): a shrink reads the RayCluster, sends one JSON
patch tested against what was read (``extender.shrink.shrink_patch``), retried on a conflict, then the ``Shrunk``
events; nothing twice; a shrink a notice announced then removes that notice from its job (``clear_shrink_notice``).
An expansion is one JSON patch tested against the replicas decided on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from common import keys
from common.jobkind import annotations_patch
from extender.actions import Expand, Shrink
from extender.shrink import shrink_patch
from kubeio.client import JSON_PATCH, MERGE_PATCH, ApiError, KubeClient
from kubeio.events import EventRecorder
from kubeio.scopes import JOB_SCOPES, RAYCLUSTERS

__all__ = ["SHRINK_ATTEMPTS", "clear_shrink_notice", "expand_cluster", "shrink_cluster"]

log = logging.getLogger("rayqueue.extender.shrink")

SHRINK_ATTEMPTS = 3  # read-modify-write attempts on a conflict (KubeRay writes the cluster's status, not its spec)


async def shrink_cluster(client: KubeClient, events: EventRecorder, action: Shrink,
                         present: Callable[[str], bool]) -> dict[str, Any] | None:
    """Patch the RayCluster as ``action`` says and emit the events; the updated RayCluster, or None when there
    was nothing (left) to do: the cluster is gone or replaced, or every pod is named already (a replay)."""

    def patch(current: dict[str, Any]) -> tuple[Any, str] | None:
        meta = current.get("metadata") or {}
        if meta.get("uid") != action.cluster.uid or meta.get("deletionTimestamp"):
            return None
        ops = shrink_patch(current, action, present)
        return (ops, JSON_PATCH) if ops else None

    updated = await _read_then_patch(client, RAYCLUSTERS.path(action.cluster.namespace, action.cluster.name), patch)
    if updated is not None:
        await _events(events, action)
    return updated


async def clear_shrink_notice(client: KubeClient, action: Shrink) -> dict[str, Any] | None:
    """Remove the shrink notice ``action`` carried out (and its acknowledgement) from the job, if the job still
    holds that notice (read, then a merge patch guarded by the resourceVersion read; retried on a conflict, which
    a bare RayCluster's own shrink patch causes). The updated job, or None when there was nothing to remove."""
    if action.notice is None:
        return None

    def patch(current: dict[str, Any]) -> tuple[Any, str] | None:
        meta = current.get("metadata") or {}
        if meta.get("uid") != action.job.uid or (meta.get("annotations") or {}).get(keys.PREEMPTION_NOTICE) != action.notice:
            return None
        return annotations_patch({keys.PREEMPTION_NOTICE: None, keys.CHECKPOINTED: None},
                                 str(meta.get("resourceVersion") or "")), MERGE_PATCH

    return await _read_then_patch(client, JOB_SCOPES[action.job.kind].path(action.job.namespace, action.job.name), patch)


async def _read_then_patch(client: KubeClient, path: str,
                           patch: Callable[[dict[str, Any]], tuple[Any, str] | None]) -> dict[str, Any] | None:
    """Read the object, build the guarded patch from what was read (None: nothing to do), send it; read again on a
    conflict (409, or 422 when a JSON patch's test fails), up to SHRINK_ATTEMPTS. The updated object, or None when
    the object is gone or there is nothing to do."""
    for attempt in range(SHRINK_ATTEMPTS):
        try:
            current = await client.get(path)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        made = patch(current)
        if made is None:
            return None
        body, content_type = made
        try:
            return await client.patch(path, body, content_type)
        except ApiError as exc:
            stale = exc.conflict or (exc.status == 422 and content_type == JSON_PATCH)
            if stale and attempt + 1 < SHRINK_ATTEMPTS:
                continue
            if exc.not_found:
                return None
            raise
    return None  # pragma: no cover - the loop returns or raises


async def _events(events: EventRecorder, action: Shrink) -> None:
    log.info("shrank RayCluster %s of %s: %s", action.cluster.key, action.job.key, action.reason)
    job = {"apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": action.job.kind, "name": action.job.name,
           "namespace": action.job.namespace, "uid": action.job.uid}
    unit = {"apiVersion": f"{keys.QUEUE_GROUP}/{keys.QUEUE_VERSION}", "kind": keys.QUEUE_UNIT_KIND,
            "namespace": action.unit[0], "name": action.unit[1]}
    cluster = {"apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": keys.RAYCLUSTER_KIND,
               "name": action.cluster.name, "namespace": action.cluster.namespace, "uid": action.cluster.uid}
    refs = [job, unit] if action.job.uid == action.cluster.uid else [job, unit, cluster]
    for ref in refs:
        await events.emit(ref, "Warning", keys.EVENT_SHRUNK, action.reason)


async def expand_cluster(client: KubeClient, action: Expand) -> dict[str, Any] | None:
    """Raise the RayCluster's replicas as ``action`` says (its tests guard against a change since the decision:
    then nothing, the next pass decides again); the updated RayCluster, or None."""
    path = RAYCLUSTERS.path(action.cluster.namespace, action.cluster.name)
    try:
        updated = await client.patch(path, action.patch(), JSON_PATCH)
    except ApiError as exc:
        if exc.not_found or exc.conflict or exc.status == 422:
            log.info("expansion of RayCluster %s skipped, it changed: %s", action.cluster.key, exc.message)
            return None
        raise
    log.info("expanded RayCluster %s of %s: %s", action.cluster.key, action.job.key, action.reason)
    return updated

"""What the extender's Reflectors keep of each object (kubeio.reflector.tombstone) is enough for the Cache.

A re-list replays DELETED for an object that vanished while no watch was open with what the store kept of it;
the extender's stores keep only the identity (extender.app.Service.build_reflectors), so every Cache handler
must delete from a tombstone exactly what it deletes from the whole last object.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import keys
from common.clock import FakeClock
from extender.cache import Cache
from kubeio.reflector import Reflector, share_strings, tombstone, whole
from tests.unit.builders import make_pod, make_raycluster, make_rayjob

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
JOB_UID = "uid-video-a"


def _tree() -> dict[str, Any]:
    docs = yaml.safe_load_all((EXAMPLES / "elasticquotatree.yaml").read_text())
    tree: dict[str, Any] = next(d for d in docs if d and d.get("kind") == keys.QUOTA_TREE_KIND)
    tree["metadata"]["uid"] = "uid-tree"
    return tree


def _objects() -> dict[str, dict[str, Any]]:
    """One object of every kind the extender watches, as a watch delivers them (each with its uid)."""
    job = (make_rayjob("a", "video").submission_mode("HTTPMode").head(cpu="2", memory="1Gi", priority_class="high")
           .enqueued("2025-01-10T01:36:24Z").suspend(False).dequeued("2025-01-10T01:36:25Z")
           .set("metadata.resourceVersion", "3").obj())
    cluster = make_raycluster("a-x1y2z", "video", job_uid=JOB_UID)
    pod = make_pod("a-x1y2z-head", "video", cpu="2").node("n1").phase("Running").obj()
    pod["metadata"]["ownerReferences"] = [{"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": "a-x1y2z",
                                           "uid": cluster["metadata"]["uid"], "controller": True}]
    pod["metadata"]["labels"] = {"ray.io/cluster": "a-x1y2z", "ray.io/node-type": "head"}
    node = {"metadata": {"name": "n1", "uid": "uid-n1"},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}
    queue = {"metadata": {"name": "root-algorithm-video-abcde", "namespace": keys.QUEUE_NAMESPACE, "uid": "uid-q",
                          "labels": {keys.CREATED_BY_KUBEQUEUE: "true"},
                          "annotations": {keys.QUOTA_FULLNAME: "root/algorithm/video"}},
             "spec": {"queuePolicy": "Block"}}
    unit = {"metadata": {"name": "a-ray-qu", "namespace": "video", "uid": "uid-qu",
                         "annotations": {keys.QUOTA_FULLNAME: "root/algorithm/video"},
                         "ownerReferences": [{"kind": keys.RAYJOB_KIND, "uid": JOB_UID, "controller": True}]},
            "spec": {"queue": "root-algorithm-video-abcde", "priority": 100}, "status": {"phase": "Dequeued"}}
    pc = {"metadata": {"name": "high", "uid": "uid-pc"}, "value": 100}
    return {"tree": _tree(), "priority_class": pc, "node": node, "queue": queue, "rayjob": job,
            "raycluster": cluster, "pod": pod, "queue_unit": unit}


def _state(cache: Cache) -> tuple[Any, ...]:
    """Everything the Cache shows its readers (verbs, reconcile) about the objects above."""
    ledger = cache.ledger
    return (
        cache.tree, tuple((j.uid, j.priority, cache.state(j.uid)) for j in cache.jobs()), cache.pods(),
        tuple(sorted(n.name for n in cache.nodes.nodes())), cache.queue_objects(), cache.queue_units(),
        cache.queues.policy("root/algorithm/video"), cache.covering_job("uid-video-a-x1y2z-head"),
        ledger.usage("root/algorithm/video") if ledger is not None else None,
        ledger.capacity if ledger is not None else None,
    )


def _filled(skip: str | None = None) -> Cache:
    cache = Cache(FakeClock())
    for kind, obj in _objects().items():
        if kind != skip:
            getattr(cache, f"on_{kind}")("ADDED", copy.deepcopy(obj))
    return cache


# A deleted RayCluster is kept while its pods remain: its deletion shows in the pod that arrives after it
# (then owned by no job, so charged as a pod of its own).
_SHOWN_BY = {"raycluster": "pod"}


@pytest.mark.parametrize("kind", list(_objects()))
def test_a_tombstone_deletes_from_the_cache_what_the_whole_object_deletes(kind: str) -> None:
    obj, later = _objects()[kind], _SHOWN_BY.get(kind)
    kept, from_whole, from_tombstone = _filled(later), _filled(later), _filled(later)
    getattr(from_whole, f"on_{kind}")("DELETED", copy.deepcopy(obj))
    getattr(from_tombstone, f"on_{kind}")("DELETED", tombstone(copy.deepcopy(obj)))
    if later is not None:
        for cache in (kept, from_whole, from_tombstone):
            getattr(cache, f"on_{later}")("ADDED", copy.deepcopy(_objects()[later]))
    assert _state(from_whole) != _state(kept), f"deleting the {kind} must change what the cache shows"
    assert _state(from_tombstone) == _state(from_whole)


def test_a_tombstone_is_the_identity_only() -> None:
    pod = _objects()["pod"]
    assert tombstone(pod) == {"metadata": {"namespace": "video", "name": "a-x1y2z-head",
                                           "uid": pod["metadata"]["uid"]}}
    assert tombstone({"metadata": {"name": "n1"}}) == {"metadata": {"name": "n1"}}
    assert tombstone({}) == {"metadata": {}}


class _Lister:
    """KubeClient.get for a list: pages of items at a resourceVersion, as the apiserver answers a LIST."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    async def get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": "9"}, "items": copy.deepcopy(self.items)}


@pytest.mark.parametrize("keep", [whole, tombstone], ids=["whole", "tombstone"])
def test_a_relist_replays_a_vanished_object_as_deleted_with_what_the_store_kept(keep: Any) -> None:
    lister, seen = _Lister(), []
    reflector = Reflector(lister, "/api/v1/pods", lambda kind, obj: seen.append((kind, obj)), keep=keep)  # type: ignore[arg-type]
    a, b = make_pod("a", "video").obj(), make_pod("b", "video").obj()
    lister.items = [a, b]
    asyncio.run(reflector._relist())
    assert [(k, o["metadata"]["name"]) for k, o in seen] == [("ADDED", "a"), ("ADDED", "b")]
    assert all("spec" in o for _, o in seen), "the handler always gets the whole object"
    assert reflector.store[a["metadata"]["uid"]] == keep(copy.deepcopy(a))
    seen.clear()
    lister.items = [b]
    asyncio.run(reflector._relist())
    assert [(k, o["metadata"]["name"]) for k, o in seen] == [("DELETED", "a"), ("MODIFIED", "b")]
    assert seen[0][1] == keep(copy.deepcopy(a))
    assert set(reflector.store) == {b["metadata"]["uid"]}


def test_a_watch_event_goes_to_the_store_as_kept_and_to_the_handler_whole() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    reflector = Reflector(_Lister(), "/api/v1/pods", lambda kind, obj: seen.append((kind, obj)),  # type: ignore[arg-type]
                          keep=tombstone)
    pod = make_pod("a", "video").obj()
    uid = pod["metadata"]["uid"]
    assert reflector.apply("ADDED", pod)
    assert reflector.store[uid] == tombstone(pod) and seen == [("ADDED", pod)]
    assert not reflector.apply("ERROR", {"metadata": {}}), "only ADDED, MODIFIED and DELETED are events"
    assert reflector.apply("DELETED", pod)
    assert uid not in reflector.store and seen[-1] == ("DELETED", pod)


def test_strings_that_repeat_across_objects_are_shared_and_nothing_else_changes() -> None:
    """Two pods decoded apart (as two watch events are) hold one string for each repeated value afterwards."""
    wire = json.dumps({**_objects()["pod"], "spec": {"nodeName": "n1", "schedulerName": "rayqueue-scheduler"}})
    first, second = json.loads(wire), json.loads(wire)
    assert first["metadata"]["namespace"] is not second["metadata"]["namespace"], "a decoder copies each value"
    expected = json.loads(wire)
    share_strings(first)
    share_strings(second)
    assert first == second == expected
    for a, b in [(first["metadata"]["namespace"], second["metadata"]["namespace"]),
                 (first["spec"]["nodeName"], second["spec"]["nodeName"]),
                 (first["spec"]["schedulerName"], second["spec"]["schedulerName"]),
                 (first["status"]["phase"], second["status"]["phase"]),
                 (first["metadata"]["labels"]["ray.io/cluster"], second["metadata"]["labels"]["ray.io/cluster"]),
                 (first["metadata"]["ownerReferences"][0]["kind"], second["metadata"]["ownerReferences"][0]["kind"])]:
        assert a is b
    assert first["metadata"]["uid"] is not second["metadata"]["uid"], "unique values are left alone"


def test_every_cache_handler_is_covered_above() -> None:
    """A new kind the Cache watches must show here that a tombstone is enough for it (or the extender must
    keep its objects whole: extender.app.Service.build_reflectors)."""
    handlers = {name.removeprefix("on_") for name in dir(Cache) if name.startswith("on_")}
    # on_batch_job is on_raycluster's code (Cache._on_parent) for submitter Jobs
    assert handlers - {"batch_job"} == set(_objects()), "add the new kind to _objects()"

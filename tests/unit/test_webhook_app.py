"""The webhook adapter: AdmissionReview request in, response out, with the SubjectAccessReview step."""

from __future__ import annotations

import asyncio
import base64
import pathlib
from typing import Any

import orjson
import yaml

from common import keys
from common.gotime import parse_go
from webhook.app import Admission
from webhook.policy import PolicyConfig
from webhook.view import ClusterView

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "manifests" / "examples"
NOW = parse_go("2025-01-10 01:36:24 +0000 UTC")


def _doc(file: str, kind: str) -> dict[str, Any]:
    return next(d for d in yaml.safe_load_all((EXAMPLES / file).read_text()) if d and d["kind"] == kind)


def view() -> ClusterView:
    v = ClusterView(lambda: NOW)
    v.on_tree("ADDED", _doc("elasticquotatree.yaml", "ElasticQuotaTree"))
    v.tree_synced = v.classes_synced = True
    return v


def request(obj: dict[str, Any] | None, op: str = "CREATE") -> dict[str, Any]:
    return {"uid": "u", "kind": {"group": "ray.io", "version": "v1", "kind": "RayJob"},
            "resource": {"group": "ray.io", "version": "v1", "resource": "rayjobs"}, "operation": op,
            "namespace": "video", "userInfo": {"username": "alice"}, "object": obj}


def run(admission: Admission, req: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(admission(req))


def test_a_mutation_is_rendered_as_a_base64_json_patch() -> None:
    job = _doc("video-rayjob.yaml", "RayJob")
    job["spec"]["suspend"] = False  # a user who asks to start at once is queued all the same
    response = run(Admission(view(), PolicyConfig(), None, mutating=True), request(job))
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    ops = orjson.loads(base64.b64decode(response["patch"]))
    assert {"op": "replace", "path": "/spec/suspend", "value": True} in ops
    assert {"op": "add", "path": "/metadata/annotations",
            "value": {keys.ENQUEUE_TIMESTAMP: "2025-01-10 01:36:24 +0000 UTC"}} in ops


def test_a_create_without_an_object_is_a_bad_request_answered_in_band() -> None:
    response = run(Admission(view(), PolicyConfig(), None, mutating=True), request(None))
    assert response == {"allowed": False, "status": {
        "status": "Failure", "code": 400, "reason": "BadRequest",
        "message": "rayqueue: request.object is missing for CREATE"}}


def test_a_priority_raise_is_denied_when_permission_cannot_be_checked() -> None:
    job = _doc("video-rayjob.yaml", "RayJob")
    job["metadata"]["annotations"] = {keys.PRIORITY_OVERRIDE: "50"}
    response = run(Admission(view(), PolicyConfig(), None, mutating=False), request(job))
    assert response["allowed"] is False
    assert response["status"]["message"].endswith("which alice does not have (no API client to check permissions)")


def test_a_cluster_selector_job_is_denied_when_its_cluster_cannot_be_read() -> None:
    """The validating path reads the selected RayCluster; without an API client it cannot, and fails closed."""
    job = _doc("video-rayjob.yaml", "RayJob")
    del job["spec"]["suspend"]
    job["spec"]["clusterSelector"] = {keys.RAY_CLUSTER: "shared"}
    response = run(Admission(view(), PolicyConfig(), None, mutating=False), request(job))
    assert response["allowed"] is False
    assert "rule cluster-selector-target: could not check the selected RayCluster video/shared (no API client)" \
        in response["status"]["message"]


def test_the_view_is_not_ready_until_both_watches_synced() -> None:
    v = ClusterView(lambda: NOW)
    assert not v.ready
    v.tree_synced = True
    assert not v.ready
    v.classes_synced = True
    assert v.ready


def test_an_invalid_tree_event_keeps_the_last_valid_tree() -> None:
    v = view()
    good = v.tree
    broken = _doc("elasticquotatree.yaml", "ElasticQuotaTree")
    broken["spec"]["root"]["min"]["cpu"] = "x"
    v.on_tree("MODIFIED", broken)
    assert v.tree is good and v.tree_problem is not None and "spec.root.min.cpu" in v.tree_problem
    v.on_tree("DELETED", broken)
    assert v.tree is None

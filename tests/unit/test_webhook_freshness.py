"""While its ElasticQuotaTree watch is not live the webhook fails closed on the creates it cannot judge
(webhook.freshness, docs/security.md), and judges everything again once the watch has listed."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest
import yaml

from common import keys
from common.gotime import parse_go
from common.quota_tree import QuotaTree
from tests.unit.builders import make_pod, make_raycluster, make_rayjob
from webhook.app import Admission
from webhook.freshness import stale_tree_refusal
from webhook.policy import PolicyConfig
from webhook.review import Request
from webhook.view import ClusterView

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "manifests" / "examples"
NOW = parse_go("2025-01-10 01:36:24 +0000 UTC")
WHY = "ServerDisconnectedError: Server disconnected"
RESOURCES = {"RayJob": ("ray.io", "rayjobs"), "RayCluster": ("ray.io", "rayclusters"), "Pod": ("", "pods"),
             "Binding": ("", "pods")}


def tree_doc() -> dict[str, Any]:
    docs = yaml.safe_load_all((EXAMPLES / "elasticquotatree.yaml").read_text())
    return next(d for d in docs if d and d["kind"] == keys.QUOTA_TREE_KIND)


def review(obj: dict[str, Any], kind: str, op: str = "CREATE", sub: str = "") -> dict[str, Any]:
    group, resource = RESOURCES[kind]
    meta = obj.get("metadata") or {}
    body = {"uid": "u", "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource}, "operation": op,
            "namespace": meta.get("namespace", "free"), "name": meta.get("name", ""),
            "userInfo": {"username": "alice"}, "object": obj}
    if sub:
        body["subResource"] = sub
    if op == "UPDATE":
        body["oldObject"] = obj
    return body


def ray_pod(namespace: str) -> dict[str, Any]:
    pod = make_pod("c-head", namespace, cpu="1").obj()
    pod["metadata"]["labels"] = {keys.RAY_CLUSTER: "c"}
    return pod


CASES = [
    pytest.param(review(make_rayjob("j", "free").obj(), "RayJob"), "RayJob free/j",
                 id="a RayJob create in a namespace the last tree does not bind is refused"),
    pytest.param(review(make_rayjob("j", "video").obj(), "RayJob"), "RayJob video/j",
                 id="a RayJob create in a bound namespace is refused"),
    pytest.param(review(make_raycluster("c", "free"), "RayCluster"), "RayCluster free/c",
                 id="a RayCluster create is refused"),
    pytest.param(review(ray_pod("free"), "Pod"), "Pod free/c-head", id="a Ray pod create is refused anywhere"),
    pytest.param(review(make_pod("p", "video", cpu="1").obj(), "Pod"), "quota root/algorithm/video",
                 id="any pod create in a namespace the last tree binds is refused"),
    pytest.param(review(make_pod("p", "free", cpu="1").obj(), "Pod"), None,
                 id="another pod in an unbound namespace passes: the cluster is never locked out"),
    pytest.param(review(make_rayjob("j", "video").obj(), "RayJob", op="UPDATE"), None,
                 id="an update of a queued RayJob is judged on the last tree"),
    pytest.param(review(make_pod("p", "video").obj(), "Binding", sub="binding"), None,
                 id="a pods/binding is judged on the last tree"),
]


@pytest.mark.parametrize(("body", "named"), CASES)
def test_with_a_stale_tree(body: dict[str, Any], named: str | None) -> None:
    verdict = stale_tree_refusal(Request.parse(body), QuotaTree.parse(tree_doc()), WHY)
    if named is None:
        assert verdict is None
        return
    assert verdict is not None and not verdict.allowed
    assert verdict.message.startswith("rayqueue: cannot judge ")
    assert named in verdict.message and WHY in verdict.message and "fails closed" in verdict.message


def admission(stale: list[str | None]) -> Admission:
    v = ClusterView(lambda: NOW)
    v.on_tree("ADDED", tree_doc())
    v.tree_synced = v.classes_synced = True
    return Admission(v, PolicyConfig(), None, mutating=True, tree_stale=lambda: stale[0])


def test_the_reported_bypass_is_refused_while_the_watch_is_down_and_queued_once_it_lists() -> None:
    """Issue 24: a leaf for namespace `free` is added while the tree watch is down. Before the fix the webhook
    kept the old tree and let `free`'s RayJobs through unqueued. Now it refuses them while the watch is down, and
    once the watch has listed the new tree the same create is queued (suspended)."""
    stale: list[str | None] = [WHY]
    hook = admission(stale)
    job = make_rayjob("j", "free").obj()
    refused = asyncio.run(hook(review(job, "RayJob")))
    assert refused["allowed"] is False and "rayqueue" in refused["status"]["message"]
    tree = tree_doc()
    tree["spec"]["root"]["children"].append({"name": "free", "namespaces": ["free"],
                                             "min": {"cpu": "0"}, "max": {"cpu": "4", "memory": "8Gi"}})
    hook.view.on_tree("MODIFIED", tree)  # the re-list after recovery
    stale[0] = None
    queued = asyncio.run(hook(review(job, "RayJob")))
    assert queued["allowed"] is True and queued.get("patch"), "mutated: suspended and stamped"

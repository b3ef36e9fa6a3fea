"""The webhook's create warning: position, free quota and estimate, from the statuses it watches."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from common import keys
from common.quota_tree import QuotaTree
from common.rayjob import JobInfo
from webhook.policy import ClusterFacts
from webhook.queue_status import QueueStatus

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
NOW = 1_736_472_984 * 10**9
VIDEO = "root/algorithm/video"


def tree_obj(video_cpu: str, video_memory: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((EXAMPLES / "elasticquotatree.yaml").read_text())
    tree = copy.deepcopy(next(d for d in docs if d and d.get("kind") == keys.QUOTA_TREE_KIND))
    used = {"cpu": video_cpu, "memory": video_memory}
    tree["status"] = {"nodes": {n: {"used": used} for n in ("root", "root/algorithm", VIDEO)}}
    return tree


def seed_job() -> JobInfo:
    docs = yaml.safe_load_all((EXAMPLES / "video-rayjob.yaml").read_text())
    obj = copy.deepcopy(next(d for d in docs if d and d.get("kind") == keys.RAYJOB_KIND))
    obj["metadata"]["name"] = "new"
    return JobInfo.from_rayjob(obj)


def board(video_cpu: str, waiting: list[tuple[str, int, str | None]], video_memory: str = "12Gi",
          forecast: dict[str, Any] | None = None) -> tuple[QueueStatus, ClusterFacts]:
    b = QueueStatus()
    tree = tree_obj(video_cpu, video_memory)
    b.on_tree("ADDED", tree)
    items = [{"name": f"{n}-ray-qu", "namespace": "video", "priority": p, "position": i + 1}
             for i, (n, p, _) in enumerate(waiting)]
    status: dict[str, Any] = {"queueItemDetails": {"active": items, "backoff": []}}
    if forecast is not None:
        status["forecast"] = forecast
    b.on_queue("ADDED", {"metadata": {"annotations": {keys.QUOTA_FULLNAME: VIDEO}}, "status": status})
    for n, _, eta in waiting:
        status = {"estimatedStartTime": eta} if eta else {}
        b.on_queue_unit("ADDED", {"metadata": {"namespace": "video", "name": f"{n}-ray-qu"}, "status": status})
    b.queues_synced = b.units_synced = True
    return b, ClusterFacts(tree=QuotaTree.parse(tree), now_ns=NOW)


def test_the_warning_says_position_free_quota_and_the_estimate_of_the_job_ahead() -> None:
    b, snap = board("12500m", [("a", 0, "2025-01-10T01:40:24Z"), ("b", 0, "2025-01-10T01:46:24Z")])
    leaf = snap.tree.node(VIDEO)  # type: ignore[union-attr]
    text = b.warning(leaf, seed_job(), snap, "video/new")
    assert text is not None
    assert text.startswith("queued in root/algorithm/video at position 3; needs cpu 12500m, leaf has 1500m free of max 14 "
                           "(root/algorithm/video: cpu used 12500m + request 12500m > max 14; memory ")
    assert text.endswith("; estimated start not before ~10m (after video/b-ray-qu, the job just ahead of it, "
                         "expected to start not before ~10m)")


FORECAST = {"openings": [{"at": "2025-01-10T01:36:24Z", "free": {"cpu": "1500m", "memory": "500Mi"}},
                         {"at": "2025-01-10T01:50:24Z", "free": {"cpu": "14", "memory": "28Gi"}}],
            "note": "never, as things stand: it does not fit even when every running job ends",
            "bands": [{"abovePriority": 0, "openings": [{"at": "2025-01-10T01:40:24Z",
                                                         "free": {"cpu": "14", "memory": "28Gi"}}]}]}


def test_with_the_queues_forecast_the_warning_tells_the_replayed_start() -> None:
    """The controller's forecast for video: at the tail, 1500m free now, all of it at 01:50:24 (NOW is
    01:36:24): the guide's video job (12500m) starts then, in ~14m, and says so with the time and what the replay
    assumed. Of priority 5 it passes both waiting jobs (priority 0): the band above 0 has room at 01:40:24."""
    b, snap = board("12500m", [("a", 0, "2025-01-10T01:40:24Z"), ("b", 0, "2025-01-10T01:46:24Z")],
                    forecast=FORECAST)
    text = b.warning(snap.tree.node(VIDEO), seed_job(), snap, "video/new")  # type: ignore[union-attr]
    assert text is not None and "at position 3" in text
    assert text.endswith("; estimated start not before ~14m, at 2025-01-10T01:50:24Z (replayed behind the 2 jobs "
                         "waiting in root/algorithm/video it does not pass, as running jobs end at their expected times)")
    urgent = dataclasses.replace(seed_job(), priority=5)
    text = b.warning(snap.tree.node(VIDEO), urgent, snap, "video/new")  # type: ignore[union-attr]
    assert text is not None and "at position 1" in text
    assert text.endswith("; estimated start not before ~4m, at 2025-01-10T01:40:24Z (replayed as running jobs end at "
                         "their expected times)")


def test_a_job_no_opening_fits_is_told_why() -> None:
    b, snap = board("12500m", [], forecast=FORECAST)
    big = dataclasses.replace(seed_job(), request=seed_job().request + {"cpu": 2000})
    text = b.warning(snap.tree.node(VIDEO), big, snap, "video/new")  # type: ignore[union-attr]
    assert text is not None
    assert text.endswith("; estimated start never, as things stand: it does not fit even when every running job ends")
    b.on_queue("MODIFIED", {"metadata": {"annotations": {keys.QUOTA_FULLNAME: VIDEO}},
                            "status": {"queueItemDetails": {}, "forecast": {"openings": [{"at": "not a time"}]}}})
    assert VIDEO not in b.forecasts  # a malformed forecast is no forecast


def test_a_job_that_fits_with_no_one_ahead_starts_at_the_next_pass() -> None:
    b, snap = board("0", [], video_memory="0")
    text = b.warning(snap.tree.node(VIDEO), seed_job(), snap, "video/new")  # type: ignore[union-attr]
    assert text == ("queued in root/algorithm/video at position 1; needs cpu 12500m, leaf has 14 free of max 14; "
                    "it fits now: estimated start at the next admission pass")


def test_higher_priority_jumps_the_line_and_no_eta_is_said() -> None:
    b, snap = board("12500m", [("a", 10, None), ("b", 0, "2025-01-10T01:46:24Z")])
    job = dataclasses.replace(seed_job(), priority=5)
    text = b.warning(snap.tree.node(VIDEO), job, snap, "video/new")  # type: ignore[union-attr]
    assert text is not None and "at position 2" in text
    assert text.endswith("no estimate: video/a-ray-qu, the job just ahead of it, has none")


def test_no_warning_until_the_queues_are_synced_nor_for_a_leaf_without_a_queue() -> None:
    b, snap = board("0", [])
    b.units_synced = False
    assert b.warning(snap.tree.node(VIDEO), seed_job(), snap, "video/new") is None  # type: ignore[union-attr]
    b.units_synced = True
    b.on_queue("DELETED", {"metadata": {"annotations": {keys.QUOTA_FULLNAME: VIDEO}}})
    assert b.warning(snap.tree.node(VIDEO), seed_job(), snap, "video/new") is None  # type: ignore[union-attr]


# --- kube-queue's dynamic priority: who changed a QueueUnit's priority -------------------------------------


def _unit(priority: int, synced: str) -> dict[str, Any]:
    return {"metadata": {"name": "j-ray-qu", "namespace": "video", "annotations": {keys.SYNCED_PRIORITY: synced}},
            "spec": {"priority": priority}}


def test_a_queue_unit_priority_patch_is_stamped_with_its_author_and_the_controllers_sync_is_not() -> None:
    from tests.unit.test_webhook_policy import review
    from webhook.policy import PolicyConfig, admit

    snap = ClusterFacts(tree=None, now_ns=NOW)
    admin = {"username": "operator-bob", "groups": ["ops"]}
    verdict = admit(review(_unit(50, "0"), op="UPDATE", old=_unit(0, "0"), resource="queueunits", kind="QueueUnit",
                           user=admin), snap, PolicyConfig(), mutating=True)
    assert verdict.allowed and list(verdict.patch) == [
        {"op": "add", "path": "/metadata/annotations/rayqueue.io~1priority-changed-by", "value": "operator-bob (spec.priority 50)"}]
    synced = admit(review(_unit(50, "50"), op="UPDATE", old=_unit(0, "0"), resource="queueunits", kind="QueueUnit",
                          user=admin), snap, PolicyConfig(), mutating=True)
    assert synced.allowed and not synced.patch


def test_the_controller_relaying_a_queue_unit_change_keeps_the_authors_record() -> None:
    from tests.unit.builders import make_rayjob
    from tests.unit.test_webhook_policy import CONTROLLER, review
    from webhook.policy import PolicyConfig, admit

    tree = QuotaTree.parse(tree_obj("0", "0"))
    snap = ClusterFacts(tree=tree, now_ns=NOW)
    cfg = PolicyConfig(controller_users=frozenset({CONTROLLER["username"]}))
    old = make_rayjob("j", "video").head(cpu="1").obj()
    record = "operator-bob changed priority 0 -> 50 at now (QueueUnit video/j-ray-qu spec.priority)"
    new = (make_rayjob("j", "video").head(cpu="1").annotate(keys.PRIORITY_OVERRIDE, "50")
           .annotate(keys.PRIORITY_CHANGE_RECORD, record).obj())
    kept = admit(review(new, op="UPDATE", old=old, user=CONTROLLER), snap, cfg, mutating=True)
    assert kept.allowed and not kept.patch
    by_alice = admit(review(new, op="UPDATE", old=old), snap, cfg, mutating=True)
    assert by_alice.allowed and by_alice.patch and "alice changed priority 0 -> 50" in str(by_alice.patch)

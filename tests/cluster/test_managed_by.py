"""Jobs rayqueue must not hold quota for, end to end (issue 23): real apiserver, kube-scheduler (rayqueue-scheduler
calling the extender), the webhook, the extender/queue controller and the KubeRay 1.7 stand-in, invariants sampled.

* A RayJob whose `spec.managedBy` names another controller: KubeRay skips it (ManagedByExternalController), so
  rayqueue does not queue it -- not at create (the webhook, rule managed-by) and not later, even when it carries
  an enqueue stamp because it was created while the webhook was unregistered (the extender, ``JobRecord.managed``).
  It holds no quota, gets no QueueUnit, and the next job of its leaf runs; `kubectl rayqueue why` says why.
* A bare RayCluster of 60 characters, which KubeRay would never give a pod (ValidateRayClusterMetadata), is
  refused at create in KubeRay's words; `kubectl rayqueue why --raycluster` names that case.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from common import keys
from common.gotime import format_go
from devcluster.cluster import TENANT, LocalCluster
from devcluster.waiting import wait_for
from tests.cluster.invariants import QuotaSampler
from tests.cluster.journey import bare_cluster, create, dequeued, get, rayjob, sized_job

VIDEO = "root/algorithm/video"
MULTIKUEUE = "kueue.x-k8s.io/multikueue"


def _why(cluster: LocalCluster, name: str, *extra: str) -> str:
    done = subprocess.run([sys.executable, "-m", "rayqueue_cli", "why", name, "-n", "video", *extra,
                           f"--kubeconfig={cluster.admin_kubeconfig}"], capture_output=True, text=True, check=True)
    return done.stdout


def _units(cluster: LocalCluster) -> set[str]:
    return {u["metadata"]["name"] for u in get(cluster, "queueunit", "-n", "video")["items"]}


def _clusters_of(cluster: LocalCluster, uid: str) -> list[str]:
    return [c["metadata"]["name"] for c in get(cluster, "raycluster", "-n", "video")["items"]
            if any(r.get("uid") == uid for r in c["metadata"].get("ownerReferences") or [])]


def _foreign(stamped: bool) -> dict[str, Any]:
    job = sized_job("video", workers=2, run_seconds=3)  # 3 x 4 CPU + the 500m submitter: 12.5 of video's 14
    job["spec"]["managedBy"] = MULTIKUEUE
    if stamped:  # as the webhook would have queued it, had it been there (an earlier enqueue time than the next)
        job["spec"]["suspend"] = True
        job["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP] = format_go(time.time_ns() - 60 * 10**9)
    return job


def test_a_managed_by_rayjob_holds_no_quota_and_the_next_job_in_its_leaf_runs(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    hook, _, _ = rayqueue
    for i in range(4):
        nodes(f"managed-{i}")
    out = cluster.kubectl("create", "-f", "-", "-o", "json", as_user=TENANT, input=yaml.safe_dump(_foreign(False)))
    plain = json.loads(out.stdout)
    assert "rule managed-by" in out.stderr and "rayqueue does not queue it" in out.stderr, out.stderr
    assert keys.ENQUEUE_TIMESTAMP not in plain["metadata"].get("annotations", {})

    # the webhook unregistered (an install, an outage with failurePolicy Ignore): a stamped one gets through
    for doc in hook.configurations:
        cluster.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"])
    try:
        forged = create(cluster, _foreign(True))
    finally:
        cluster.apply(list(hook.configurations))

    def webhook_back() -> bool:
        probe = cluster.kubectl("create", "-f", "-", "--dry-run=server", "-o", "json", as_user=TENANT,
                                input=yaml.safe_dump(sized_job("video", workers=0)), check=False)
        return probe.returncode == 0 and json.loads(probe.stdout)["spec"].get("suspend") is True

    wait_for(webhook_back, 30.0, "the webhook registered again")
    stamped = rayjob(cluster, "video", forged)
    assert keys.ENQUEUE_TIMESTAMP in stamped["metadata"]["annotations"] and stamped["spec"]["suspend"] is True

    waiting = create(cluster, sized_job("video", workers=2, run_seconds=3))  # 12.5 more: 25 > 14 beside either
    wait_for(lambda: dequeued(cluster, "video", waiting), 60.0, f"{waiting}, behind no claim, admitted")
    wait_for(lambda: (rayjob(cluster, "video", waiting).get("status") or {}).get("jobDeploymentStatus")
             in ("Running", "Complete"), 60.0, f"{waiting} running")

    for name in (plain["metadata"]["name"], forged):
        job = rayjob(cluster, "video", name)
        assert not dequeued(cluster, "video", name), f"{name} admitted although another controller manages it"
        assert keys.queue_unit_name(name) not in _units(cluster), f"{name} got a QueueUnit"
        assert _clusters_of(cluster, job["metadata"]["uid"]) == [], "KubeRay skips a managedBy job"
        said = _why(cluster, name)
        assert said.splitlines()[0] == f"RayJob video/{name}: not queued", said
        assert "  case: managed by another controller: not queued" in said
        assert f"  why: not queued: spec.managedBy '{MULTIKUEUE}' names another controller than KubeRay" in said
    assert keys.queue_unit_name(waiting) in _units(cluster)


def test_a_bare_raycluster_of_60_characters_is_refused_at_create_in_kuberays_words(
    cluster: LocalCluster, rayqueue: Any, cleanup: None, invariants: QuotaSampler
) -> None:
    """ValidateRayClusterMetadata: KubeRay would never give it a pod; admitted, it would hold video's quota with
    none until someone deleted it. Refused, nothing is left: no RayCluster, no QueueUnit."""
    name = "c" * 60
    obj = bare_cluster(sized_job("video", workers=1), name=name)
    with pytest.raises(subprocess.CalledProcessError) as refused:
        cluster.kubectl("create", "-f", "-", as_user=TENANT, input=yaml.safe_dump(obj))
    message = refused.value.stderr
    assert f"rayqueue: RayCluster video/{name}: rule kuberay-validation: KubeRay would refuse this cluster after " \
           "admission" in message, message
    assert "RayCluster name should be no more than 53 characters" in message, message
    assert cluster.kubectl("get", "raycluster", name, "-n", "video", check=False).returncode != 0
    assert keys.cluster_queue_unit_name(name) not in _units(cluster)
    said = _why(cluster, name, "--raycluster")
    assert said.startswith(f"no RayCluster video/{name}: a create the webhook refused leaves nothing behind"), said
    obj["metadata"]["name"] = name[:53]
    cluster.kubectl("create", "-f", "-", "--dry-run=server", as_user=TENANT, input=yaml.safe_dump(obj))

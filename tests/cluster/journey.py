"""What the end-to-end tests share: the guide's jobs reshaped, and reading the cluster through kubectl."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from common import keys
from devcluster.cluster import TENANT, LocalCluster
from devcluster.waiting import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
TREE_NAMESPACES = ("video", "algorithm-text", "intern", "infra-devops", "devops")
LEAD = "lead"


def docs(file: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / file).read_text()) if d]


def seed_job(file: str = "video-rayjob.yaml", *, run_seconds: int = 3, namespace: str | None = None) -> dict[str, Any]:
    job = copy.deepcopy(next(d for d in docs(file) if d["kind"] == "RayJob"))
    job["metadata"].setdefault("annotations", {})[keys.TEST_RUN_SECONDS] = str(run_seconds)
    job["spec"]["ttlSecondsAfterFinished"] = 1
    if namespace:
        job["metadata"]["namespace"] = namespace
    return job


def get(cluster: LocalCluster, *args: str) -> Any:
    out = cluster.kubectl("get", *args, "-o", "json")
    return json.loads(out.stdout)


def queues(cluster: LocalCluster) -> dict[str, dict[str, Any]]:
    items = get(cluster, "queue", "-n", "kube-queue")["items"]
    return {q["metadata"]["annotations"][keys.QUOTA_FULLNAME]: q for q in items}


def create(cluster: LocalCluster, job: dict[str, Any], user: str = TENANT) -> str:
    out = cluster.kubectl("create", "-f", "-", "-o", "json", as_user=user, input=yaml.safe_dump(job))
    return str(json.loads(out.stdout)["metadata"]["name"])


def rayjob(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, "rayjob", name, "-n", ns))


def dequeued(cluster: LocalCluster, ns: str, name: str) -> bool:
    job = rayjob(cluster, ns, name)
    return keys.DEQUEUE_TIMESTAMP in job["metadata"].get("annotations", {}) and job["spec"]["suspend"] is False


def pods_of(cluster: LocalCluster, ns: str, job: str, seen: set[str] | None = None) -> list[dict[str, Any]]:
    """The RayJob's pods as KubeRay owns them: controlled by a RayCluster or a batch/v1 Job that the RayJob
    controls (any cluster name, KubeRay 1.1-1.3's or 1.4+'s). KubeRay 1.7 reports Suspended once those
    objects are gone, while their pods still terminate: pass the same `seen` set to every call to keep
    finding pods of parents seen before."""
    uid = rayjob(cluster, ns, job)["metadata"]["uid"]
    parents = seen if seen is not None else set()
    parents.update(
        o["metadata"]["uid"]
        for o in get(cluster, "raycluster,job", "-n", ns)["items"]
        if any(r.get("controller") and r["uid"] == uid for r in o["metadata"].get("ownerReferences") or [])
    )
    return [
        p for p in get(cluster, "pod", "-n", ns)["items"]
        if any(r.get("controller") and r["uid"] in parents for r in p["metadata"].get("ownerReferences") or [])
    ]


def sized_job(namespace: str, *, workers: int, cpu: str = "4", memory: str = "1Gi", run_seconds: int = 3,
              file: str = "video-rayjob.yaml") -> dict[str, Any]:
    """The guide's RayJob reshaped: `workers` workers, every Ray pod asking for `cpu` and `memory`."""
    job = seed_job(file, run_seconds=run_seconds, namespace=namespace)
    cluster_spec = job["spec"]["rayClusterSpec"]
    templates = [cluster_spec["headGroupSpec"]["template"], cluster_spec["workerGroupSpecs"][0]["template"]]
    for template in templates:
        resources = {"cpu": cpu, "memory": memory}
        template["spec"]["containers"][0]["resources"] = {"requests": resources, "limits": resources}
    cluster_spec["workerGroupSpecs"][0]["replicas"] = workers
    return job


def ray_pods(cluster: LocalCluster, ns: str, job: str) -> list[dict[str, Any]]:
    return [p for p in pods_of(cluster, ns, job) if keys.RAY_CLUSTER in p["metadata"].get("labels", {})]


def events(cluster: LocalCluster, ns: str, reason: str) -> list[dict[str, Any]]:
    items = get(cluster, "events", "-n", ns, "--field-selector", f"reason={reason}")["items"]
    return list(items)




def bare_cluster(job: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """A tenant's own RayCluster (an interactive cluster, a notebook's): the RayJob's `rayClusterSpec` as a
    RayCluster of its own, with the job's labels and annotations, no ownerReference and no `suspend`."""
    meta = job["metadata"]
    cluster_meta = {k: copy.deepcopy(meta[k]) for k in ("labels", "annotations", "namespace") if k in meta}
    cluster_meta["name"] = name or meta["name"]
    return {"apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": keys.RAYCLUSTER_KIND,
            "metadata": cluster_meta, "spec": copy.deepcopy(job["spec"]["rayClusterSpec"])}


def raycluster(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, "raycluster", name, "-n", ns))


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of type `kind`, or None."""
    found = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind]
    return found[0] if found else None


def cluster_pods(cluster: LocalCluster, ns: str, name: str) -> list[dict[str, Any]]:
    """The pods the RayCluster `name` controls (by ownerReference uid, as KubeRay's pods are owned)."""
    uid = raycluster(cluster, ns, name)["metadata"]["uid"]
    return [p for p in get(cluster, "pod", "-n", ns)["items"]
            if any(r.get("controller") and r["uid"] == uid for r in p["metadata"].get("ownerReferences") or [])]


def delete_and_wait(cluster: LocalCluster, delete: str, gone: str, what: str) -> None:
    """Delete every object of the kinds ``delete`` (kubectl's comma list) in the tree's namespaces, then wait until
    none of the kinds ``gone`` is left there."""
    for ns in TREE_NAMESPACES:
        cluster.kubectl("delete", delete, "--all", "-n", ns, "--wait=false", check=False)

    def empty() -> bool:
        out = cluster.kubectl("get", gone, "-A", "-o", "json", check=False)
        items = json.loads(out.stdout)["items"] if out.returncode == 0 else [{}]
        return not [i for i in items if i["metadata"]["namespace"] in TREE_NAMESPACES]

    wait_for(empty, 60.0, what)

"""rayqueue end to end on the real control plane: webhook + extender/queue controller + kube-scheduler
(rayqueue-scheduler, calling the extender) + the KubeRay stand-in, driven with kubectl."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import keys
from devcluster.cluster import TENANT, LocalCluster
from devcluster.procs import ManagedProcess
from devcluster.services import (
    SCHEDULER_NAME,
    Extender,
    Webhook,
    start_extender,
    start_rayqueue_scheduler,
    start_webhook,
    stop_webhook,
)
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


@pytest.fixture(scope="module")
def rayqueue(cluster: LocalCluster, standin: ManagedProcess) -> Iterator[tuple[Webhook, Extender, ManagedProcess]]:
    """The whole product on the local cluster, with the seed's tree."""
    cluster.apply([d for d in docs("elasticquotatree.yaml") if d["kind"] == "Namespace"])
    for ns in TREE_NAMESPACES:
        cluster.grant(TENANT, ns)
    hook = start_webhook(cluster, name="rayqueue-webhook-e2e", extra_args=(f"--scheduler-name={SCHEDULER_NAME}",))
    extender = scheduler = None
    try:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(
            next(d for d in docs("elasticquotatree.yaml") if d["kind"] == "ElasticQuotaTree")))
        extender = start_extender(cluster)
        scheduler = start_rayqueue_scheduler(cluster, extender)
        wait_for(lambda: len(queues(cluster)) == 5, 30.0, "one Queue per leaf of the seed tree")
        yield hook, extender, scheduler
    finally:
        if scheduler is not None:
            cluster.stop_scheduler(SCHEDULER_NAME)
        if extender is not None:
            cluster.stop_process(extender.process.name)
        stop_webhook(cluster, hook)
        cluster.kubectl("delete", "elasticquotatree", "-n", "kube-system", "--all", "--ignore-not-found", check=False)
        cluster.kubectl("delete", "queue", "-n", "kube-queue", "--all", "--ignore-not-found", check=False)
        for ns in TREE_NAMESPACES:
            cluster.delete_namespace(ns)


@pytest.fixture
def nodes(cluster: LocalCluster) -> Iterator[Callable[..., str]]:
    """Make fake nodes for one test; they are deleted after it."""
    made: list[str] = []

    def make(name: str, cpu: str = "8", memory: str = "32Gi") -> str:
        cluster.create_node(name, cpu=cpu, memory=memory)
        made.append(name)
        return name

    yield make
    for name in made:
        cluster.delete_node(name)


@pytest.fixture
def cleanup(cluster: LocalCluster) -> Iterator[None]:
    """Delete every RayJob and pod of the tree's namespaces after a test, and wait until they are gone."""
    yield
    for ns in TREE_NAMESPACES:
        cluster.kubectl("delete", "rayjob,pod", "--all", "-n", ns, "--wait=false", check=False)

    def empty() -> bool:
        out = cluster.kubectl("get", "rayjob,pod", "-A", "-o", "json", check=False)
        items = json.loads(out.stdout)["items"] if out.returncode == 0 else [{}]
        return not [i for i in items if i["metadata"]["namespace"] in TREE_NAMESPACES]

    wait_for(empty, 60.0, "the test's RayJobs and pods to be gone")


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


def pods_of(cluster: LocalCluster, ns: str, job: str) -> list[dict[str, Any]]:
    items = get(cluster, "pod", "-n", ns)["items"]
    return [p for p in items if p["metadata"]["name"].startswith(f"{job}-")]


def test_the_seed_video_example(cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None) -> None:
    """Seed facts 3 and 4: two copies of the 12-CPU job in video (max 14 CPU): the first runs, the second waits
    with only its enqueue stamp, in the Queue's backoff list, saying why; when the first completes, the second
    starts by itself."""
    for i in range(3):
        nodes(f"video-{i}")
    first = create(cluster, seed_job(run_seconds=6))
    wait_for(lambda: dequeued(cluster, "video", first), 30.0, f"{first} to be dequeued")
    second = create(cluster, seed_job(run_seconds=2))

    def bound_running() -> bool:
        pods = [p for p in pods_of(cluster, "video", first) if "raycluster" in p["metadata"]["name"]]
        return len(pods) == 3 and all(p["spec"].get("nodeName") and p["status"].get("phase") == "Running" for p in pods)

    wait_for(bound_running, 60.0, "the first job's head and 2 workers bound by rayqueue-scheduler and Running")
    for pod in pods_of(cluster, "video", first):
        assert pod["spec"]["schedulerName"] == SCHEDULER_NAME
        assert pod["metadata"]["labels"][keys.QUOTA_NAME] == "algorithm-video"

    waiting = rayjob(cluster, "video", second)
    assert waiting["spec"]["suspend"] is True
    assert set(waiting["metadata"]["annotations"]) >= {keys.ENQUEUE_TIMESTAMP}
    assert keys.DEQUEUE_TIMESTAMP not in waiting["metadata"]["annotations"]

    def in_backoff() -> bool:
        status = queues(cluster)["root/algorithm/video"].get("status") or {}
        return [i["name"] for i in (status.get("queueItemDetails") or {}).get("backoff") or []] == [f"{second}-ray-qu"]

    wait_for(in_backoff, 30.0, f"{second}-ray-qu in the video Queue's backoff list")
    item = queues(cluster)["root/algorithm/video"]["status"]["queueItemDetails"]["backoff"][0]
    assert (item["namespace"], item["position"]) == ("video", 1)
    unit = get(cluster, "queueunit", f"{second}-ray-qu", "-n", "video")
    assert unit["status"]["message"].startswith("root/algorithm/video: cpu used 12500m + request 12500m > max 14")
    assert unit["spec"]["queue"] == queues(cluster)["root/algorithm/video"]["metadata"]["name"]
    printed = cluster.kubectl("get", "queueunit", "-n", "video").stdout
    assert f"{second}-ray-qu" in printed and "cpu used 12500m + request 12500m > max 14" in printed

    wait_for(lambda: dequeued(cluster, "video", second), 90.0, f"{second} to start by itself after {first} completes")
    assert rayjob(cluster, "video", first)["status"]["jobDeploymentStatus"] == "Complete"

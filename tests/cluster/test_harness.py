"""The test harness itself: a real control plane, the real kube-scheduler, fake nodes and the KubeRay stand-in."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from common import keys
from devcluster.cluster import MANIFESTS, STANDIN_USER, TENANT, LocalCluster, load_manifests
from devcluster.kuberay_standin import MODEL_13, MODEL_17, MODELS, KubeRayStandIn
from devcluster.kuberay_standin.caches import Store
from devcluster.kuberay_standin.informers import Informer
from devcluster.kuberay_standin.model import desired_workers
from devcluster.kuberay_standin.names import WORKER_REPLICA_INDEX_LABEL
from devcluster.procs import ManagedProcess
from devcluster.waiting import WaitTimeout, wait_for

pytestmark = pytest.mark.cluster

NODES = ("harness-node-1", "harness-node-2", "harness-node-3")
KUBERAY_MODELS = [pytest.param(m, id=f"kuberay-{m}") for m in MODELS]
RUN_SECONDS = "2"


@pytest.fixture(scope="module")
def nodes(cluster: LocalCluster) -> Iterator[tuple[str, ...]]:
    """Three Ready fake nodes of 8 CPU / 16Gi for this module (the video job asks for 12.5 CPU in all)."""
    for name in NODES:
        cluster.create_node(name, cpu="8", memory="16Gi", labels={"rayqueue.test/pool": "harness"})
    yield NODES
    for name in NODES:
        cluster.delete_node(name)


@pytest.fixture
def ray(cluster: LocalCluster, nodes: tuple[str, ...], default_scheduler: ManagedProcess,
        standin: ManagedProcess) -> LocalCluster:
    """A cluster where RayJobs run: fake nodes, the default kube-scheduler and the KubeRay stand-in."""
    return cluster


@pytest.fixture
def ray_any(cluster: LocalCluster, nodes: tuple[str, ...], default_scheduler: ManagedProcess) -> LocalCluster:
    """As `ray`, for tests that get their stand-in (of `kuberay_model`) through `model_namespace`."""
    return cluster


def cluster_name_pattern(job: str, model: str) -> str:
    """utils.GenerateRayClusterName: `<job>-<5>` since KubeRay 1.4, `<job>-raycluster-<5>` before."""
    return rf"{job}-raycluster-[a-z0-9]{{5}}" if model == MODEL_13 else rf"{job}-[a-z0-9]{{5}}"


def custom(cluster: LocalCluster) -> Any:
    return client.CustomObjectsApi(cluster.api_client)


def core(cluster: LocalCluster) -> Any:
    return client.CoreV1Api(cluster.api_client)


def as_json(response: Any) -> Any:
    """The body of a `_preload_content=False` call: the objects stay plain dicts, as on the wire."""
    return json.loads(response.data)


def get_rayjob(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom(cluster).get_namespaced_custom_object(
        keys.RAY_GROUP, keys.RAY_VERSION, namespace, keys.RAYJOB_PLURAL, name)
    return obj


def rayclusters_of(cluster: LocalCluster, namespace: str, job: str) -> list[dict[str, Any]]:
    items = custom(cluster).list_namespaced_custom_object(
        keys.RAY_GROUP, keys.RAY_VERSION, namespace, keys.RAYCLUSTER_PLURAL,
        label_selector=f"{keys.RAY_ORIGINATED_FROM_CR_NAME}={job}")["items"]
    return list(items)


def pods(cluster: LocalCluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    found = as_json(core(cluster).list_namespaced_pod(namespace, label_selector=selector, _preload_content=False))
    return list(found["items"])


def deployment_status(cluster: LocalCluster, namespace: str, name: str) -> str:
    return str((get_rayjob(cluster, namespace, name).get("status") or {}).get("jobDeploymentStatus", ""))


def create_video_rayjob(cluster: LocalCluster, namespace: str, *, run_seconds: str = RUN_SECONDS) -> str:
    """The guide's video RayJob (and its ConfigMap), moved into `namespace`, created with kubectl; its name."""
    objects = load_manifests(MANIFESTS / "examples" / "video-rayjob.yaml", namespace=namespace)
    for obj in objects:
        if obj["kind"] == keys.RAYJOB_KIND:
            obj["metadata"].setdefault("annotations", {})[keys.TEST_RUN_SECONDS] = run_seconds
    out = cluster.create(objects, namespace=namespace).stdout.split()
    (ref,) = [line for line in out if line.startswith("rayjob.ray.io/")]
    return ref.split("/", 1)[1]


def small_rayjob(name: str, *, suspend: bool, run_seconds: str = RUN_SECONDS) -> dict[str, Any]:
    """A RayJob with a 500m head and one group of 2 workers of 500m."""
    container = {"name": "ray", "image": "rayproject/ray:2.36.1",
                 "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}
    return {
        "apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": keys.RAYJOB_KIND,
        "metadata": {"name": name, "annotations": {keys.TEST_RUN_SECONDS: run_seconds}},
        "spec": {
            "entrypoint": "python -c 'print(1)'", "suspend": suspend, "shutdownAfterJobFinishes": True,
            "rayClusterSpec": {
                "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [container]}}},
                "workerGroupSpecs": [{"groupName": "workers", "replicas": 2, "minReplicas": 0, "maxReplicas": 4,
                                      "rayStartParams": {}, "template": {"spec": {"containers": [container]}}}],
            },
        },
    }


def unsuspend(cluster: LocalCluster, namespace: str, name: str, *, as_user: str | None = None) -> None:
    cluster.kubectl("patch", "rayjob", name, "-n", namespace, "--type", "merge", "-p",
                    json.dumps({"spec": {"suspend": False}}), as_user=as_user)


def running_pods_of(cluster: LocalCluster, namespace: str, ray_cluster: str, count: int) -> list[dict[str, Any]]:
    found = [p for p in pods(cluster, namespace, f"{keys.RAY_CLUSTER}={ray_cluster}")
             if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
    return found if len(found) == count else []


@pytest.mark.parametrize("kuberay_model", KUBERAY_MODELS, indirect=True)
def test_video_rayjob_runs_like_kuberay_on_the_real_scheduler(ray_any: LocalCluster, model_namespace: str,
                                                              kuberay_model: str) -> None:
    """The guide's video RayJob, created suspended with kubectl, waits as Suspended; unsuspended, it gets a
    RayCluster named as that KubeRay names it, a head and 2 workers labelled as KubeRay labels them (the
    workers with KubeRay's wait-gcs-ready init container), bound by the real kube-scheduler to the fake
    nodes and marked Running; then the submitter Job's pod runs, the job completes, and the cluster is
    deleted ttlSecondsAfterFinished (10 s) later."""
    ray, namespace = ray_any, model_namespace
    job = create_video_rayjob(ray, namespace)
    wait_for(lambda: deployment_status(ray, namespace, job) == "Suspended", 30, f"RayJob {job} Suspended")
    assert rayclusters_of(ray, namespace, job) == []

    unsuspend(ray, namespace, job)
    (rc,) = wait_for(lambda: rayclusters_of(ray, namespace, job), 30, f"the RayCluster of {job}")
    rc_name = rc["metadata"]["name"]
    assert re.fullmatch(cluster_name_pattern(job, kuberay_model), rc_name), rc_name
    assert [(o["kind"], o["name"], o["controller"]) for o in rc["metadata"]["ownerReferences"]] == [
        (keys.RAYJOB_KIND, job, True)]
    assert rc["metadata"]["labels"]["job-type"] == "video"  # the RayJob's labels are copied

    ray_pods = wait_for(lambda: running_pods_of(ray, namespace, rc_name, 3), 60,
                        f"3 Running pods of RayCluster {rc_name}")
    by_type = sorted(ray_pods, key=lambda p: (p["metadata"]["labels"][keys.RAY_NODE_TYPE], p["metadata"]["name"]))
    head, workers = by_type[0], by_type[1:]
    assert head["metadata"]["generateName"] == f"{rc_name}-head-"
    assert {w["metadata"]["generateName"] for w in workers} == {f"{rc_name}-small-group-worker-"}
    expected_labels = [
        {keys.RAY_CLUSTER: rc_name, keys.RAY_NODE_TYPE: node_type, keys.RAY_GROUP_LABEL: group,
         keys.RAY_IS_RAY_NODE: "yes", keys.RAY_IDENTIFIER: f"{rc_name}-{node_type}",
         keys.KUBERNETES_CREATED_BY: keys.KUBERAY_OPERATOR, keys.KUBERNETES_APP_NAME: keys.KUBERAY_APP_NAME}
        for node_type, group in (("head", "headgroup"), ("worker", "small-group"), ("worker", "small-group"))
    ]
    if kuberay_model == MODEL_17:  # RayMultiHostIndexing (on by default in 1.7) numbers each group's workers
        expected_labels[1][WORKER_REPLICA_INDEX_LABEL], expected_labels[2][WORKER_REPLICA_INDEX_LABEL] = "0", "1"
        by_type[1:] = workers = sorted(workers, key=lambda p: p["metadata"]["labels"][WORKER_REPLICA_INDEX_LABEL])
    assert [p["metadata"]["labels"] for p in by_type] == expected_labels
    for worker in workers:
        (init,) = worker["spec"]["initContainers"]
        assert (init["name"], init["resources"]) == (
            "wait-gcs-ready", {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}})
    assert "initContainers" not in head["spec"]
    for pod in ray_pods:
        assert pod["spec"]["schedulerName"] == keys.DEFAULT_SCHEDULER
        assert pod["spec"]["nodeName"] in NODES
        assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "4", "memory": "4G"}
        assert [(o["kind"], o["name"], o["controller"]) for o in pod["metadata"]["ownerReferences"]] == [
            (keys.RAYCLUSTER_KIND, rc_name, True)]
        assert {"type": "Ready", "status": "True"}.items() <= next(
            c for c in pod["status"]["conditions"] if c["type"] == "Ready").items()

    def scheduled_by_kube_scheduler() -> set[str]:
        events = as_json(core(ray).list_namespaced_event(
            namespace, field_selector="reason=Scheduled", _preload_content=False))["items"]
        # kube-scheduler 1.20 writes events.k8s.io/v1 events: the component is `reportingController`
        bound = {e["involvedObject"]["name"] for e in events if e.get("reportingComponent") == keys.DEFAULT_SCHEDULER}
        return bound if {p["metadata"]["name"] for p in ray_pods} <= bound else set()

    wait_for(scheduled_by_kube_scheduler, 30, "Scheduled events from default-scheduler for the Ray pods")

    submitter = wait_for(lambda: [p for p in pods(ray, namespace, f"{keys.JOB_NAME_LABEL}={job}")
                                  if p["spec"].get("nodeName")], 60, f"the submitter pod of {job} bound")
    assert submitter[0]["spec"]["containers"][0]["resources"]["requests"] == keys.DEFAULT_SUBMITTER_REQUESTS
    assert submitter[0]["spec"]["nodeName"] in NODES

    wait_for(lambda: deployment_status(ray, namespace, job) == "Complete", 60, f"RayJob {job} Complete")
    status = get_rayjob(ray, namespace, job)["status"]
    assert (status["jobStatus"], status["rayClusterName"]) == ("SUCCEEDED", rc_name)
    assert status["startTime"] <= status["endTime"]

    table = ray.kubectl("get", "rayjob", job, "-n", namespace).stdout.splitlines()
    assert re.split(r"\s{2,}", table[0].strip()) == [
        "NAME", "JOB STATUS", "DEPLOYMENT STATUS", "RAY CLUSTER NAME", "START TIME", "END TIME", "AGE"]
    assert re.split(r"\s{2,}", table[1].strip())[:4] == [job, "SUCCEEDED", "Complete", rc_name]

    wait_for(lambda: not rayclusters_of(ray, namespace, job), 40, f"RayCluster {rc_name} deleted after the ttl")
    wait_for(lambda: not pods(ray, namespace, f"{keys.RAY_CLUSTER}={rc_name}"), 30, f"the pods of {rc_name} gone")


@pytest.mark.parametrize("kuberay_model", KUBERAY_MODELS, indirect=True)
def test_suspending_a_running_rayjob_deletes_its_cluster(ray_any: LocalCluster, model_namespace: str) -> None:
    """suspend=true on a running RayJob deletes its RayCluster, the Ray pods and the submitter, and the job
    reports Suspended; unsuspended again, it gets a new cluster."""
    ray, namespace = ray_any, model_namespace
    ray.create(small_rayjob("long", suspend=False, run_seconds="600"), namespace=namespace)
    (rc,) = wait_for(lambda: rayclusters_of(ray, namespace, "long"), 30, "the RayCluster of long")
    wait_for(lambda: running_pods_of(ray, namespace, rc["metadata"]["name"], 3), 60, "3 Running Ray pods")
    wait_for(lambda: pods(ray, namespace, f"{keys.JOB_NAME_LABEL}=long"), 60, "the submitter pod of long")

    ray.kubectl("patch", "rayjob", "long", "-n", namespace, "--type", "merge", "-p",
                json.dumps({"spec": {"suspend": True}}))
    wait_for(lambda: deployment_status(ray, namespace, "long") == "Suspended", 30, "RayJob long Suspended")
    wait_for(lambda: not rayclusters_of(ray, namespace, "long"), 30, "the RayCluster of long deleted")
    wait_for(lambda: not pods(ray, namespace, f"{keys.RAY_CLUSTER}={rc['metadata']['name']}"), 30,
             "the Ray pods deleted")
    wait_for(lambda: not pods(ray, namespace, f"{keys.JOB_NAME_LABEL}=long"), 30, "the submitter pod deleted")

    unsuspend(ray, namespace, "long")
    (again,) = wait_for(lambda: rayclusters_of(ray, namespace, "long"), 30, "a new RayCluster of long")
    assert again["metadata"]["name"] != rc["metadata"]["name"]


def test_tenant_may_manage_rayjobs_only_in_her_namespace(ray: LocalCluster, namespace: str) -> None:
    """alice (group tenants) has `edit` in her namespace only: she creates and unsuspends RayJobs and reads
    QueueUnits there, may not write QueueUnits, and is Forbidden in any other namespace."""
    ray.create(small_rayjob("mine", suspend=True), namespace=namespace, as_user=TENANT)
    unsuspend(ray, namespace, "mine", as_user=TENANT)
    wait_for(lambda: rayclusters_of(ray, namespace, "mine"), 30, "the RayCluster of alice's job")

    def can(verb: str, resource: str, ns: str) -> str:
        return ray.kubectl("auth", "can-i", verb, resource, "-n", ns, as_user=TENANT, check=False).stdout.strip()

    assert [can("get", "queueunits", namespace), can("patch", "queueunits", namespace)] == ["yes", "no"]

    other = ray.create_namespace(f"{namespace}-other")
    try:
        denied = ray.kubectl("create", "-n", other, "-f", "-", as_user=TENANT, check=False,
                             input=json.dumps(small_rayjob("theirs", suspend=True)))
        assert denied.returncode != 0
        assert 'User "alice" cannot create resource "rayjobs"' in denied.stderr
        assert "forbidden" in denied.stderr.lower()
    finally:
        ray.delete_namespace(other)


def test_queue_and_queueunit_crds_print_their_columns(cluster: LocalCluster, namespace: str) -> None:
    """`kubectl get queue,queueunit` works with the CRDs installed and shows the kube-queue columns."""
    api = custom(cluster)
    queue = api.create_namespaced_custom_object(keys.QUEUE_GROUP, keys.QUEUE_VERSION, namespace, keys.QUEUE_PLURAL, {
        "apiVersion": f"{keys.QUEUE_GROUP}/{keys.QUEUE_VERSION}", "kind": keys.QUEUE_KIND,
        "metadata": {"generateName": keys.queue_generate_name("root/algorithm/video"),
                     "labels": {keys.CREATED_BY_KUBEQUEUE: "true"},
                     "annotations": {keys.QUOTA_FULLNAME: "root/algorithm/video",
                                     keys.PARENT_QUOTA_FULLNAME: "algorithm"}},
        "spec": {"queuePolicy": "Round"}})
    qname = queue["metadata"]["name"]
    api.patch_namespaced_custom_object_status(keys.QUEUE_GROUP, keys.QUEUE_VERSION, namespace, keys.QUEUE_PLURAL, qname, {
        "status": {"queueItemDetails": {
            "active": [{"name": "b-ray-qu", "namespace": "video", "priority": 0, "position": 1}],
            "backoff": [{"name": "a-ray-qu", "namespace": "video", "priority": 0, "position": 1}]}}})
    unit = keys.queue_unit_name("rayjob-video-x")
    api.create_namespaced_custom_object(keys.QUEUE_GROUP, keys.QUEUE_VERSION, namespace, keys.QUEUE_UNIT_PLURAL, {
        "apiVersion": f"{keys.QUEUE_GROUP}/{keys.QUEUE_VERSION}", "kind": keys.QUEUE_UNIT_KIND,
        "metadata": {"name": unit},
        "spec": {"consumerRef": {"apiVersion": "ray.io/v1", "kind": "RayJob", "name": "rayjob-video-x",
                                 "namespace": namespace},
                 "queue": qname, "priority": 5, "resource": {"cpu": "12500m", "memory": 12_000_000_000}}})
    api.patch_namespaced_custom_object_status(keys.QUEUE_GROUP, keys.QUEUE_VERSION, namespace, keys.QUEUE_UNIT_PLURAL, unit, {
        "status": {"phase": "Backoff", "position": 2, "attempts": 1,
                   "message": "root/algorithm/video: cpu used 12500m + request 12500m > max 14"}})

    out = cluster.kubectl("get", "queue,queueunit", "-n", namespace).stdout
    tables = [[re.split(r"\s{2,}", line.strip()) for line in block.splitlines()] for block in out.strip().split("\n\n")]
    assert tables[0] == [["NAME", "POLICY", "QUOTA", "ACTIVE-HEAD", "BACKOFF-HEAD", "AGE"],
                         [f"queue.scheduling.x-k8s.io/{qname}", "Round", "root/algorithm/video", "b-ray-qu",
                          "a-ray-qu", tables[0][1][-1]]]
    assert tables[1][0] == ["NAME", "PHASE", "QUEUE", "PRIORITY", "POSITION", "ETA", "ADMITTED", "CURRENT", "MAX",
                            "MESSAGE", "AGE"]
    # no estimatedStartTime nor sizes here: those cells are blank (split away with the spaces around them)
    assert tables[1][1][:-1] == [f"queueunit.scheduling.x-k8s.io/{unit}", "Backoff", qname, "5", "2",
                                 "root/algorithm/video: cpu used 12500m + request 12500m > max 14"]


def test_elasticquotatree_crd_accepts_the_seed_tree(cluster: LocalCluster) -> None:
    """The guide's ElasticQuotaTree (a protected *.k8s.io group, hence the api-approved annotation) is stored
    unchanged, three levels deep, in kube-system."""
    objects = load_manifests(MANIFESTS / "examples" / "elasticquotatree.yaml")
    (tree,) = [o for o in objects if o["kind"] == keys.QUOTA_TREE_KIND]
    cluster.apply(tree)
    try:
        stored = custom(cluster).get_namespaced_custom_object(
            keys.QUOTA_GROUP, keys.QUOTA_VERSION, keys.QUOTA_TREE_NAMESPACE, keys.QUOTA_TREE_PLURAL,
            keys.QUOTA_TREE_NAME)
        assert stored["spec"] == tree["spec"]
    finally:
        cluster.kubectl("delete", "elasticquotatree", keys.QUOTA_TREE_NAME, "-n", keys.QUOTA_TREE_NAMESPACE)


def test_namespaces_carry_their_name_label_as_on_kube_1_21(cluster: LocalCluster, namespace: str) -> None:
    """Built-in and harness-made namespaces carry kubernetes.io/metadata.name, for webhook selectors."""
    for name in ("kube-system", "default", namespace):
        labels = as_json(core(cluster).read_namespace(name, _preload_content=False))["metadata"]["labels"]
        assert labels.get(keys.NAMESPACE_NAME_LABEL) == name


def test_every_listener_is_on_loopback(ray: LocalCluster) -> None:
    """etcd, kube-apiserver and kube-scheduler listen on 127.0.0.1 only; the controller-manager and the
    stand-in do not listen at all."""
    listeners = ray.listeners()
    assert {li.process for li in listeners} == {"etcd", "kube-apiserver", "kube-scheduler"}
    assert {(li.process, li.address) for li in listeners if li.address != "127.0.0.1"} == set()


def test_wait_for_names_what_it_waited_for() -> None:
    """A wait that runs out says what it waited for and what it last saw."""
    with pytest.raises(WaitTimeout, match=r"timed out after 0\.1s waiting for the answer \(last observed: 0\)"):
        wait_for(lambda: 0, 0.1, "the answer", interval=0.02)


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        pytest.param({"replicas": 2}, 2, id="replicas are the worker count"),
        pytest.param({"replicas": 1, "minReplicas": 3, "maxReplicas": 5}, 3, id="replicas below min count as min"),
        pytest.param({"replicas": 9, "minReplicas": 0, "maxReplicas": 4}, 4, id="replicas above max count as max"),
        pytest.param({"minReplicas": 2}, 2, id="missing replicas count as min"),
        pytest.param({"replicas": 3, "numOfHosts": 2}, 6, id="each replica has numOfHosts pods"),
        pytest.param({"replicas": 3, "suspend": True}, 0, id="a suspended group has no pods"),
    ],
)
def test_standin_worker_count_follows_kuberay(group: dict[str, Any], expected: int) -> None:
    assert desired_workers(group, MODEL_17) == expected == desired_workers(group, MODEL_13)


def test_min_above_max_counts_as_min_in_1_7_and_as_max_in_1_3() -> None:
    """GetWorkerGroupDesiredReplicas: 1.7 clamps to min first (validation refuses min > max anyway since 1.6);
    1.3 took max when min > max."""
    group = {"replicas": 3, "minReplicas": 5, "maxReplicas": 2}
    assert (desired_workers(group, MODEL_17), desired_workers(group, MODEL_13)) == (5, 2)


def test_kubectl_reports_failures_with_stderr(cluster: LocalCluster) -> None:
    """A failing kubectl raises CalledProcessError carrying kubectl's own message."""
    with pytest.raises(subprocess.CalledProcessError) as failed:
        cluster.kubectl("get", "rayjob", "does-not-exist", "-n", "default")
    assert 'rayjobs.ray.io "does-not-exist" not found' in failed.value.stderr


def test_standin_in_a_thread_syncs_and_stops_within_its_bound(cluster: LocalCluster, namespace: str) -> None:
    """Imported and started in threads, the stand-in lists everything, and stop() cuts its open watches:
    every thread ends well within the bound."""
    api = cluster.client_for(STANDIN_USER)
    try:
        standin = KubeRayStandIn(api, namespace=namespace, watch_seconds=300).start()
        assert standin.wait_synced(30)
        # Its watches run for 300 s: stop() must cut them; it raises if any thread outlives the bound.
        standin.stop(timeout=10)
        assert not any(t.is_alive() for t in [*standin._informers, *([standin._loop] if standin._loop else [])])
    finally:
        api.close()


class ExpiringOnce(Informer):
    """An informer whose first list pretends to be at resourceVersion 1, long compacted away."""

    lists = 0

    def _list(self) -> str:
        self.lists += 1
        version = super()._list()
        return "1" if self.lists == 1 else version


def pod_template(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}


def test_informer_lists_again_when_its_watch_has_expired(cluster: LocalCluster, namespace: str) -> None:
    """A watch from a resourceVersion etcd has compacted away ends in 410 Gone: the informer lists again
    and goes on watching from the new list. (PodTemplates bypass the watch cache in the harness, so the
    expiry is etcd's own.)"""
    core(cluster).create_namespaced_pod_template(namespace, pod_template("before"))
    assert cluster.compact_etcd() > 1
    stop, changed, store = threading.Event(), threading.Event(), Store()
    informer = ExpiringOnce("podtemplates", core(cluster).list_namespaced_pod_template, (namespace,), store, changed,
                            stop)
    informer.start()
    try:
        wait_for(lambda: informer.lists >= 2, 30, "a second list after 410 Gone")
        core(cluster).create_namespaced_pod_template(namespace, pod_template("after"))
        wait_for(lambda: {o["metadata"]["name"] for o in store.items()} == {"before", "after"}, 30,
                 "the new PodTemplate in the informer's cache")
    finally:
        stop.set()
        informer.interrupt()
        informer.join(10)
    assert not informer.is_alive()

"""Test builders for RayJob and Pod dicts shaped like the API's: `make_rayjob("j", "video").head(cpu="4").obj()`."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Self

from common import keys
from common.accounting import Parent, covered_pods
from common.queueing import Queues
from common.quota_tree import QuotaTree
from common.rayjob import JobInfo, PodInfo

__all__ = [
    "BooksBuilder",
    "PodBuilder",
    "RayJobBuilder",
    "apply_merge_patch",
    "container",
    "make_books",
    "make_pod",
    "make_quota",
    "make_ray_pod",
    "make_rayjob",
    "make_tree",
]

Obj = dict[str, Any]


def container(
    name: str = "main",
    *,
    cpu: str | None = None,
    memory: str | None = None,
    gpu: str | None = None,
    requests: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
    restart_policy: str | None = None,
) -> Obj:
    """A container; cpu/memory/gpu are requests (gpu is nvidia.com/gpu), limits only when given."""
    req: dict[str, str] = dict(requests or {})
    for resource, value in (("cpu", cpu), ("memory", memory), ("nvidia.com/gpu", gpu)):
        if value is not None:
            req[resource] = value
    resources: Obj = {}
    if req:
        resources["requests"] = req
    if limits:
        resources["limits"] = dict(limits)
    out: Obj = {"name": name, "image": "rayproject/ray:2.36.1"}
    if resources:
        out["resources"] = resources
    if restart_policy is not None:
        out["restartPolicy"] = restart_policy
    return out


def _pod_spec(
    containers: list[Obj], init: list[Obj] | None = None, overhead: dict[str, str] | None = None
) -> Obj:
    spec: Obj = {"containers": containers}
    if init:
        spec["initContainers"] = init
    if overhead:
        spec["overhead"] = dict(overhead)
    return spec


def _set_path(obj: Obj, path: str, value: Any) -> None:
    """Set `a.b[0].c` (or `a.b.0.c`) in a nested dict/list, creating missing maps on the way."""
    parts: list[str | int] = []
    for segment in path.replace("[", ".").replace("]", "").split("."):
        parts.append(int(segment) if segment.isdigit() else segment)
    node: Any = obj
    for part in parts[:-1]:
        node = node[part] if isinstance(part, int) else node.setdefault(part, {})
    node[parts[-1]] = value


class RayJobBuilder:
    """A RayJob like the guide's: suspended, shutdownAfterJobFinishes, K8sJobMode unless told otherwise."""

    def __init__(self, name: str, namespace: str) -> None:
        self._obj: Obj = {
            "apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}",
            "kind": keys.RAYJOB_KIND,
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
            "spec": {
                "entrypoint": "python /home/ray/samples/sample_code.py",
                "shutdownAfterJobFinishes": True,
                "suspend": True,
                "rayClusterSpec": {
                    "rayVersion": "2.36.1",
                    "headGroupSpec": {
                        "rayStartParams": {},
                        "template": {"spec": _pod_spec([container("ray-head")])},
                    },
                    "workerGroupSpecs": [],
                },
            },
        }

    # --- metadata -------------------------------------------------------------------------------

    @property
    def _meta(self) -> Obj:
        meta: Obj = self._obj["metadata"]
        return meta

    @property
    def _spec(self) -> Obj:
        spec: Obj = self._obj["spec"]
        return spec

    def uid(self, uid: str) -> Self:
        self._meta["uid"] = uid
        return self

    def generate_name(self, prefix: str) -> Self:
        """A generateName object as the webhook sees it on CREATE: no name, no uid."""
        self._meta.pop("name", None)
        self._meta.pop("uid", None)
        self._meta["generateName"] = prefix
        return self

    def label(self, key: str, value: str) -> Self:
        self._meta.setdefault("labels", {})[key] = value
        return self

    def annotate(self, key: str, value: str) -> Self:
        self._meta.setdefault("annotations", {})[key] = value
        return self

    def gang(self) -> Self:
        """The guide's gang opt-in label."""
        return self.label(keys.GANG_SCHEDULER_LABEL, keys.GANG_SCHEDULER_VALUE)

    def quota(self, name: str) -> Self:
        return self.label(keys.QUOTA_NAME, name)

    def priority(self, value: int | str) -> Self:
        """The priority override annotation."""
        return self.annotate(keys.PRIORITY_OVERRIDE, str(value))

    def enqueued(self, text: str) -> Self:
        return self.annotate(keys.ENQUEUE_TIMESTAMP, text)

    def dequeued(self, text: str) -> Self:
        return self.annotate(keys.DEQUEUE_TIMESTAMP, text)

    def deleting(self, when: str = "2025-01-10T01:40:00Z") -> Self:
        self._meta["deletionTimestamp"] = when
        return self

    def elastic(self, value: str = "true") -> Self:
        """The elastic label (docs/elastic.md): its reservation holds each worker group's floor."""
        return self.label(keys.ELASTIC, value)

    def autoscaling(self, value: bool = True) -> Self:
        """spec.rayClusterSpec.enableInTreeAutoscaling: the Ray autoscaler runs in it (elastic too)."""
        self._spec["rayClusterSpec"]["enableInTreeAutoscaling"] = value
        return self

    # --- spec -----------------------------------------------------------------------------------

    def suspend(self, value: bool = True) -> Self:
        self._spec["suspend"] = value
        return self

    def shutdown_after_job_finishes(self, value: bool) -> Self:
        self._spec["shutdownAfterJobFinishes"] = value
        return self

    def submission_mode(self, mode: str) -> Self:
        self._spec["submissionMode"] = mode
        return self

    def submitter(self, *containers: Obj) -> Self:
        """A custom `spec.submitterPodTemplate` with these containers (and `restartPolicy: Never`, which a batch/v1
        Job needs: KubeRay copies the template into its submitter Job as it is)."""
        self._spec["submitterPodTemplate"] = {"spec": {**_pod_spec(list(containers)), "restartPolicy": "Never"}}
        return self

    def cluster_selector(self, **labels: str) -> Self:
        self._spec["clusterSelector"] = dict(labels)
        return self

    def head(
        self,
        cpu: str | None = None,
        memory: str | None = None,
        gpu: str | None = None,
        *,
        limits: dict[str, str] | None = None,
        containers: list[Obj] | None = None,
        init: list[Obj] | None = None,
        overhead: dict[str, str] | None = None,
        priority_class: str | None = None,
    ) -> Self:
        """The head pod: one ray-head container with these requests, or the given containers."""
        main = containers or [container("ray-head", cpu=cpu, memory=memory, gpu=gpu, limits=limits)]
        spec = _pod_spec(main, init, overhead)
        if priority_class is not None:
            spec["priorityClassName"] = priority_class
        self._spec["rayClusterSpec"]["headGroupSpec"]["template"] = {"spec": spec}
        return self

    def workers(
        self,
        replicas: int | None = None,
        cpu: str | None = None,
        memory: str | None = None,
        gpu: str | None = None,
        *,
        group: str = "small-group",
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        num_of_hosts: int | None = None,
        suspend: bool | None = None,
        limits: dict[str, str] | None = None,
        containers: list[Obj] | None = None,
        init: list[Obj] | None = None,
        overhead: dict[str, str] | None = None,
    ) -> Self:
        """Append a worker group; fields left None are left out, as a user would."""
        main = containers or [container("ray-worker", cpu=cpu, memory=memory, gpu=gpu, limits=limits)]
        spec: Obj = {
            "groupName": group,
            "rayStartParams": {},
            "template": {"spec": _pod_spec(main, init, overhead)},
        }
        for field, value in (
            ("replicas", replicas),
            ("minReplicas", min_replicas),
            ("maxReplicas", max_replicas),
            ("numOfHosts", num_of_hosts),
            ("suspend", suspend),
        ):
            if value is not None:
                spec[field] = value
        self._spec["rayClusterSpec"]["workerGroupSpecs"].append(spec)
        return self

    def status(self, deployment: str, job: str = "", cluster: str | None = None) -> Self:
        status: Obj = {"jobDeploymentStatus": deployment}
        if job:
            status["jobStatus"] = job
        if cluster:
            status["rayClusterName"] = cluster
        self._obj["status"] = status
        return self

    def set(self, path: str, value: Any) -> Self:
        """Set any field by a path as errors print it (for malformed shapes): `set("spec.x[0].y", 1)`."""
        _set_path(self._obj, path, value)
        return self

    def obj(self) -> Obj:
        return copy.deepcopy(self._obj)

    def as_raycluster(self, state: str | None = None) -> Obj:
        """The job's cluster as a *bare* RayCluster of its own (a tenant's interactive cluster): the same
        metadata (no ownerReference), `rayClusterSpec` as its spec with the job's `suspend`; `state` its
        status.state (KubeRay's `ready`, `suspended`)."""
        job = copy.deepcopy(self._obj)
        spec = dict(job["spec"].get("rayClusterSpec") or {})
        if "suspend" in job["spec"]:
            spec["suspend"] = job["spec"]["suspend"]
        out: Obj = {"apiVersion": job["apiVersion"], "kind": keys.RAYCLUSTER_KIND, "metadata": job["metadata"],
                    "spec": spec}
        if state is not None:
            out["status"] = {"state": state}
        return out


class PodBuilder:
    """A Pod; `.ray(...)` makes it a KubeRay pod, `.gang(...)` gives it the pod-group labels."""

    def __init__(self, name: str, namespace: str) -> None:
        self._obj: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
            "spec": {"containers": []},
            "status": {"phase": "Pending"},
        }

    @property
    def _meta(self) -> Obj:
        meta: Obj = self._obj["metadata"]
        return meta

    @property
    def _spec(self) -> Obj:
        spec: Obj = self._obj["spec"]
        return spec

    def uid(self, uid: str) -> Self:
        self._meta["uid"] = uid
        return self

    def label(self, key: str, value: str) -> Self:
        self._meta.setdefault("labels", {})[key] = value
        return self

    def annotate(self, key: str, value: str) -> Self:
        self._meta.setdefault("annotations", {})[key] = value
        return self

    def quota(self, name: str) -> Self:
        return self.label(keys.QUOTA_NAME, name)

    def gang(self, group: str, min_available: int | str | None = None, *, x_label: bool = True) -> Self:
        self.label(keys.POD_GROUP_NAME, group)
        if x_label:
            self.label(keys.POD_GROUP_X, group)
        if min_available is not None:
            self.label(keys.POD_GROUP_MIN_AVAILABLE, str(min_available))
        return self

    def ray(self, cluster: str, node_type: str = "worker", group: str | None = None) -> Self:
        self.label(keys.RAY_CLUSTER, cluster).label(keys.RAY_NODE_TYPE, node_type)
        if group is not None:
            self.label(keys.RAY_GROUP_LABEL, group)
        return self

    def owned_by(self, parent: Obj) -> Self:
        """A controller ownerReference to `parent` (a RayCluster or a batch/v1 Job dict), as KubeRay and the
        Job controller set it."""
        meta = parent["metadata"]
        ref = {"apiVersion": parent["apiVersion"], "kind": parent["kind"], "name": meta["name"], "uid": meta["uid"],
               "controller": True, "blockOwnerDeletion": True}
        self._meta.setdefault("ownerReferences", []).append(ref)
        return self

    def owner(self, kind: str, name: str, uid: str, *, controller: bool = True) -> Self:
        ref = {"apiVersion": "ray.io/v1", "kind": kind, "name": name, "uid": uid, "controller": controller}
        self._meta.setdefault("ownerReferences", []).append(ref)
        return self

    def container(
        self,
        cpu: str | None = None,
        memory: str | None = None,
        gpu: str | None = None,
        *,
        limits: dict[str, str] | None = None,
        name: str | None = None,
    ) -> Self:
        n = name or f"c{len(self._spec['containers'])}"
        self._spec["containers"].append(container(n, cpu=cpu, memory=memory, gpu=gpu, limits=limits))
        return self

    def init_container(
        self,
        cpu: str | None = None,
        memory: str | None = None,
        *,
        limits: dict[str, str] | None = None,
        sidecar: bool = False,
    ) -> Self:
        init = self._spec.setdefault("initContainers", [])
        restart = "Always" if sidecar else None
        init.append(
            container(f"init{len(init)}", cpu=cpu, memory=memory, limits=limits, restart_policy=restart)
        )
        return self

    def overhead(self, **amounts: str) -> Self:
        self._spec["overhead"] = dict(amounts)
        return self

    def node(self, name: str) -> Self:
        self._spec["nodeName"] = name
        return self

    def scheduler(self, name: str) -> Self:
        self._spec["schedulerName"] = name
        return self

    def priority(self, value: int) -> Self:
        self._spec["priority"] = value
        return self

    def phase(self, phase: str) -> Self:
        self._obj["status"]["phase"] = phase
        return self

    def deleting(self, when: str = "2025-01-10T01:40:00Z") -> Self:
        self._meta["deletionTimestamp"] = when
        return self

    def elastic(self, value: str = "true") -> Self:
        """The elastic label (docs/elastic.md): its reservation holds each worker group's floor."""
        return self.label(keys.ELASTIC, value)

    def autoscaling(self, value: bool = True) -> Self:
        """spec.rayClusterSpec.enableInTreeAutoscaling: the Ray autoscaler runs in it (elastic too)."""
        self._spec["rayClusterSpec"]["enableInTreeAutoscaling"] = value
        return self

    def set(self, path: str, value: Any) -> Self:
        """Set any field by a path as errors print it: `set("spec.containers[0].resources", None)`."""
        _set_path(self._obj, path, value)
        return self

    def obj(self) -> Obj:
        return copy.deepcopy(self._obj)


def _controlled(api_version: str, kind: str, name: str, namespace: str, job_uid: str | None) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"}
    if job_uid is not None:
        meta["ownerReferences"] = [{"apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": keys.RAYJOB_KIND,
                                    "name": job_uid.rsplit("-", 1)[-1], "uid": job_uid, "controller": True,
                                    "blockOwnerDeletion": True}]
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": {}}


def make_raycluster(name: str, namespace: str, *, job_uid: str | None = None) -> Obj:
    """A RayCluster, controlled by the RayJob `job_uid` when given (KubeRay's ownerReference)."""
    return _controlled(f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", keys.RAYCLUSTER_KIND, name, namespace, job_uid)


def make_submitter_job(name: str, namespace: str, *, job_uid: str | None = None) -> Obj:
    """A K8sJobMode submitter: a batch/v1 Job controlled by the RayJob `job_uid`."""
    return _controlled(f"{keys.BATCH_GROUP}/{keys.BATCH_VERSION}", keys.BATCH_JOB_KIND, name, namespace, job_uid)


def make_rayjob(name: str, namespace: str) -> RayJobBuilder:
    return RayJobBuilder(name, namespace)


def make_pod(
    name: str, namespace: str, *, cpu: str | None = None, memory: str | None = None, gpu: str | None = None
) -> PodBuilder:
    """A pod; with cpu/memory/gpu it gets one container requesting them."""
    pod = PodBuilder(name, namespace)
    if cpu is not None or memory is not None or gpu is not None:
        pod.container(cpu=cpu, memory=memory, gpu=gpu)
    return pod


def make_ray_pod(name: str, cluster: Obj, node_type: str = "worker", group: str | None = None, *,
                 cpu: str = "4") -> PodBuilder:
    """A Ray pod as KubeRay makes it for ``cluster`` (a ``make_raycluster`` dict): the cluster's labels, its worker
    group's, and a controller ownerReference to the cluster."""
    meta = cluster["metadata"]
    return make_pod(name, meta["namespace"], cpu=cpu).ray(meta["name"], node_type, group).owned_by(cluster)


def make_quota(name: str, *children: Obj, min: Any = None, max: Any = None,
               attributes: dict[str, str] | None = None) -> Obj:
    """One node of an ElasticQuotaTree spec; a leaf (no children) binds the namespace of its own name."""
    out: Obj = {"name": name, "min": min or {}, "max": max or {}}
    if attributes is not None:
        out["attributes"] = dict(attributes)
    if children:
        out["children"] = list(children)
    else:
        out["namespaces"] = [name]
    return out


def make_tree(root: Obj) -> QuotaTree:
    """A parsed QuotaTree from a root built with ``make_quota``."""
    return QuotaTree.parse({"kind": keys.QUOTA_TREE_KIND, "spec": {"root": root}})


def apply_merge_patch(target: Obj, patch: Obj) -> None:
    """Apply a JSON merge patch (RFC 7386) in place, as kube-apiserver does with application/merge-patch+json:
    ``None`` removes a key, a map merges into a map (replacing a non-map), anything else replaces.
    The in-memory API doubles of the unit tests and the benchmarks share this one model."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            child = target.get(key)
            if not isinstance(child, dict):
                child = target[key] = {}
            apply_merge_patch(child, value)
        else:
            target[key] = copy.deepcopy(value)


class BooksBuilder:
    """What ``common.accounting.account_pod`` reads, as plain data (``common.accounting.Books``):
    `make_books("video").add_parent(cluster).job(job, pods, claimed=True)`. Coverage is derived by
    ``covered_pods`` from the pods given to ``job``, as the cache derives it."""

    def __init__(self, *bound: str) -> None:
        self._bound = set(bound)
        self._parents: dict[str, Parent] = {}
        self._jobs: dict[str, JobInfo] = {}
        self._claimed: set[str] = set()
        self._covered: dict[str, frozenset[str]] = {}
        self._assumed: set[str] = set()

    def add_parent(self, obj: Obj, *, deleted: bool = False, own_job: bool = False) -> Self:
        """A RayCluster or submitter Job dict (``make_raycluster``, ``make_submitter_job``) as a parent: the job
        its controller ownerReference names, or itself for a bare RayCluster (``own_job``)."""
        meta = obj["metadata"]
        job_uid = meta["uid"] if own_job else None
        for ref in meta.get("ownerReferences", []):
            if ref.get("controller") and ref.get("kind") == keys.RAYJOB_KIND:
                job_uid = ref["uid"]
        self._parents[meta["uid"]] = Parent(kind=obj["kind"], namespace=meta["namespace"], job_uid=job_uid,
                                            present=not deleted)
        return self

    def job(self, job: JobInfo, pods: Sequence[PodInfo] = (), *, claimed: bool = True) -> Self:
        """A known job; ``claimed`` it holds its claim, covering its ``pods`` up to its admitted counts."""
        self._jobs[job.uid] = job
        if claimed:
            self._claimed.add(job.uid)
        self._covered[job.uid] = covered_pods(job, pods, self._assumed)
        return self

    def assumed(self, *pod_uids: str) -> Self:
        """Pods the extender is binding (placed, not yet seen bound)."""
        self._assumed.update(pod_uids)
        return self

    # --- common.accounting.Books ------------------------------------------------------------------

    def parent(self, uid: str) -> Parent | None:
        return self._parents.get(uid)

    def job_namespace(self, job_uid: str) -> str | None:
        job = self._jobs.get(job_uid)
        return job.namespace if job is not None else None

    def claim_held(self, job_uid: str) -> bool:
        return job_uid in self._claimed

    def covered(self, job_uid: str) -> AbstractSet[str]:
        return self._covered.get(job_uid, frozenset())

    def stopped(self, job_uid: str) -> bool:
        job = self._jobs.get(job_uid)
        return job is not None and job.finished

    def bound(self, namespace: str) -> bool:
        return namespace in self._bound

    def placed(self, pod: PodInfo) -> bool:
        return bool(pod.node_name) or pod.uid in self._assumed


def make_books(*bound: str) -> BooksBuilder:
    """Books for ``account_pod`` with these namespaces bound to a quota leaf."""
    return BooksBuilder(*bound)


class PassWorld:
    """The admission pass's ``PassSource`` over a ``Queues``, as the cache answers it for jobs with no pods:
    none terminating, every one preemptible, and only the uids of ``releasing`` still releasing a claim."""

    def __init__(self, queues: Queues, releasing: AbstractSet[str] = frozenset()) -> None:
        self.queues = queues
        self._releasing = releasing

    def releasing(self, uid: str) -> bool:
        return uid in self._releasing

    def terminating_pods(self, uid: str) -> int:
        return 0

    def preemptible(self, uid: str) -> bool:
        return True

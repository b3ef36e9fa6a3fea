"""KubeRay's Ray pods built from a RayCluster (common/pod.go): head, workers, sidecars, batch-scheduler metadata."""

from __future__ import annotations

import copy

from devcluster.kuberay_standin.model import (
    autoscaling_enabled,
    autoscaling_v2,
    merge_labels,
    pod_name_prefix,
    ray_pod_labels,
)
from devcluster.kuberay_standin.names import (
    AUTOSCALER_CONTAINER,
    AUTOSCALER_RESOURCES,
    GANG_SCHEDULING_LABEL,
    HEAD_GROUP,
    HOST_INDEX_LABEL,
    INIT_CONTAINER,
    INIT_CONTAINER_RESOURCES,
    MODEL_17,
    RAY_CLUSTER_LABEL,
    RAYCLUSTER_KIND,
    SCHEDULER_PLUGINS_POD_GROUP,
    TEST_TERMINATE_SECONDS,
    WORKER_REPLICA_INDEX_LABEL,
    WORKER_REPLICA_NAME_LABEL,
    Obj,
)
from devcluster.kuberay_standin.operator_config import OperatorConfig
from devcluster.kuberay_standin.wire import annotations_of, labels_of, meta_of, owner_ref


def head_pod_body(cluster: Obj, spec: Obj, config: OperatorConfig, model: str = MODEL_17) -> Obj:
    """buildHeadPod: DefaultHeadPodTemplate + headSidecarContainers + batch scheduler metadata. 1.7: the group's
    `labels` over the template's (mergeLabels); autoscaler v2 forces restartPolicy Never."""
    meta = meta_of(cluster)
    head_group = spec.get("headGroupSpec") or {}
    template = copy.deepcopy(head_group.get("template") or {})
    pod_spec = template.setdefault("spec", {})
    if autoscaling_enabled(spec):
        options = spec.get("autoscalerOptions") or {}
        pod_spec["serviceAccountName"] = autoscaler_service_account(cluster)
        ray = (pod_spec.get("containers") or [{}])[0]
        autoscaler: Obj = {
            "name": AUTOSCALER_CONTAINER, "image": options.get("image") or ray.get("image", ""),
            "imagePullPolicy": options.get("imagePullPolicy") or "IfNotPresent",
            "command": ["/bin/bash", "-c", "--"],
            "args": ["ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) "
                     "--cluster-namespace $(RAY_CLUSTER_NAMESPACE)"],
            "env": [{"name": "RAY_CLUSTER_NAME", "valueFrom": {"fieldRef": {
                        "fieldPath": f"metadata.labels['{RAY_CLUSTER_LABEL}']"}}},
                    {"name": "RAY_CLUSTER_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    *(options.get("env") or [])],
            # mergeAutoscalerOverrides: a set `resources` replaces the defaults whole, so `resources: {}` means
            # no requests and no limits at all.
            "resources": copy.deepcopy(options["resources"]) if options.get("resources") is not None else {
                "requests": dict(AUTOSCALER_RESOURCES), "limits": dict(AUTOSCALER_RESOURCES)},
        }
        pod_spec.setdefault("containers", []).append(autoscaler)
        if model == MODEL_17 and autoscaling_v2(spec):  # DefaultHeadPodTemplate@v1.7.0
            pod_spec["restartPolicy"] = "Never"
    pod_spec.setdefault("containers", []).extend(copy.deepcopy(list(config.head_sidecars)))
    labels = merge_labels(labels_of(template), head_group.get("labels")) if model == MODEL_17 else labels_of(template)
    pod = _pod_body(cluster, template, pod_name_prefix(meta["name"], "head"),
                    ray_pod_labels(meta["name"], "head", HEAD_GROUP, labels))
    add_batch_scheduler_metadata(cluster, pod, config)
    return pod


def worker_pod_body(cluster: Obj, spec: Obj, group: Obj, index: int, config: OperatorConfig,
                    model: str, replica_name: str = "", host_index: int = 0) -> Obj:
    """buildWorkerPod: DefaultWorkerPodTemplate (wait-gcs-ready) + workerSidecarContainers + batch scheduler.
    1.7: the group's `labels` over the template's (mergeLabels), the replica index label (RayMultiHostIndexing,
    on by default) and, in a multi-host group (numOfHosts > 1), the replica's name and the host's index; autoscaler
    v2 forces restartPolicy Never."""
    meta = meta_of(cluster)
    name = str(group.get("groupName", ""))
    template = copy.deepcopy(group.get("template") or {})
    pod_spec = template.setdefault("spec", {})
    ray = (pod_spec.get("containers") or [{}])[0]
    if config.init_container_injection:
        pod_spec.setdefault("initContainers", []).append({
            "name": INIT_CONTAINER, "image": ray.get("image", ""),
            **({"imagePullPolicy": ray["imagePullPolicy"]} if ray.get("imagePullPolicy") else {}),
            "command": ["/bin/bash", "-c", "--"],
            "args": [f"until ray health-check --address {meta['name']}-head-svc.{meta['namespace']}.svc.cluster"
                     ".local:6379 > /dev/null 2>&1; do sleep 5; done"],
            "env": copy.deepcopy(ray.get("env") or []),
            "volumeMounts": copy.deepcopy(ray.get("volumeMounts") or []),
            "resources": {"requests": dict(INIT_CONTAINER_RESOURCES), "limits": dict(INIT_CONTAINER_RESOURCES)},
        })
    pod_spec.setdefault("containers", []).extend(copy.deepcopy(list(config.worker_sidecars)))
    if model == MODEL_17 and autoscaling_enabled(spec) and autoscaling_v2(spec):
        pod_spec["restartPolicy"] = "Never"
    merged = merge_labels(labels_of(template), group.get("labels")) if model == MODEL_17 else labels_of(template)
    labels = ray_pod_labels(meta["name"], "worker", name, merged)
    if model == MODEL_17:
        labels[WORKER_REPLICA_INDEX_LABEL] = str(index)
        if int(group.get("numOfHosts", 1)) > 1:
            labels[WORKER_REPLICA_NAME_LABEL] = replica_name
            labels[HOST_INDEX_LABEL] = str(host_index)
    pod = _pod_body(cluster, template, pod_name_prefix(f"{meta['name']}-{name}", "worker"), labels)
    add_batch_scheduler_metadata(cluster, pod, config)
    return pod


def _pod_body(cluster: Obj, template: Obj, generate_name: str, labels: dict[str, str]) -> Obj:
    meta = meta_of(cluster)
    annotations = dict((template.get("metadata") or {}).get("annotations") or {})
    own = annotations_of(cluster)
    if TEST_TERMINATE_SECONDS in own:  # TEST ONLY: how long the stand-in's kubelet takes to stop it
        annotations.setdefault(TEST_TERMINATE_SECONDS, own[TEST_TERMINATE_SECONDS])
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": generate_name, "namespace": meta["namespace"], "labels": labels,
                     "annotations": annotations, "ownerReferences": [owner_ref(cluster)]},
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def add_batch_scheduler_metadata(parent: Obj, child: Obj, config: OperatorConfig) -> None:
    """AddMetadataToChildResource(parent, child) of the configured batch scheduler: schedulerName on a pod or
    pod template (utils.AddSchedulerNameToObject; nothing on a RayCluster), and scheduler-plugins' pod-group
    label naming the parent when the parent carries `ray.io/gang-scheduling-enabled`."""
    scheduler = config.scheduler_name
    if scheduler is None:
        return
    if config.batch_scheduler == "scheduler-plugins" and GANG_SCHEDULING_LABEL in labels_of(parent):
        meta = child.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), SCHEDULER_PLUGINS_POD_GROUP: meta_of(parent)["name"]}
    if child.get("kind") != RAYCLUSTER_KIND:
        child.setdefault("spec", {})["schedulerName"] = scheduler


def autoscaler_service_account(cluster: Obj) -> str:
    """utils.GetHeadGroupServiceAccountName, clipped as utils.CheckName does."""
    head = (((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    name = str(head.get("serviceAccountName") or meta_of(cluster)["name"])
    return name[len(name) - 50:] if len(name) > 50 else name

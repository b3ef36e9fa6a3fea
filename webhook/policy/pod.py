"""Pod and binding admission in bound namespaces: quota and gang labels, placement only by the rayqueue scheduler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common import keys
from common.kuberay_config import batch_scheduler_for_pod_scheduler
from webhook.jsonpatch import diff
from webhook.policy.guards import labelled_leaf, preemption_notice_denial, quota_label_value
from webhook.policy.inputs import PREFIX, ClusterFacts, PolicyConfig, bound_leaf
from webhook.policy.objects import Draft, labels_of, owner_references
from webhook.review import Request, Verdict, allow, deny

__all__ = ["mutate_pod", "validate_binding", "validate_pod"]


def mutate_pod(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict:
    """CREATE in a bound namespace: quota label, pod-group labels for gang Ray pods, scheduler name."""
    leaf = bound_leaf(facts, req.namespace)
    if leaf is None or req.operation != "CREATE":
        return allow()
    draft = Draft(req.obj)
    new = draft.root
    pod_labels = draft.metadata_map(new, "labels")
    pod_labels.setdefault(keys.QUOTA_NAME, quota_label_value(leaf))
    cluster = pod_labels.get(keys.RAY_CLUSTER)
    if pod_labels.get(keys.RAY_NODE_TYPE) == keys.RAY_NODE_TYPE_REDIS_CLEANUP:
        # Outside the gang: KubeRay builds its Redis-cleanup pod from the head template (buildRedisCleanupJob), so it
        # inherits the min-available stamped there, but it runs alone once the cluster is being deleted: as a
        # member it would wait at the bind barrier for a quorum that never comes (and stall the deletion ~300 s).
        for key in (keys.POD_GROUP_NAME, keys.POD_GROUP_X, keys.POD_GROUP_MIN_AVAILABLE):
            pod_labels.pop(key, None)
    elif cluster and keys.POD_GROUP_MIN_AVAILABLE in pod_labels:  # stamped into the gang's templates at enqueue
        pod_labels[keys.POD_GROUP_NAME] = cluster
        pod_labels[keys.POD_GROUP_X] = cluster
    spec = draft.child(new, "spec")
    if cfg.scheduler_name and spec.get("schedulerName") in (None, "", keys.DEFAULT_SCHEDULER):
        spec["schedulerName"] = cfg.scheduler_name
    return allow(patch=diff(dict(req.obj), new))


def validate_pod(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict:
    """In a bound namespace: the quota label; for a tenant, the preemption notice, no pre-set node, only the
    rayqueue scheduler (with KubeRay's batch-scheduler mode named when it wrote another), fixed gang labels."""
    leaf = labelled_leaf(req, facts)
    if isinstance(leaf, Verdict):
        return leaf
    if cfg.privileged(req.user):
        return allow()
    verdict = preemption_notice_denial(req, "Pod")
    if verdict is not None:
        return verdict
    if req.operation == "CREATE":
        return _placement_denial(req, cfg) or allow()
    old_labels, new_labels = labels_of(req.old), labels_of(req.obj)
    for key in (keys.QUOTA_NAME, keys.POD_GROUP_NAME, keys.POD_GROUP_X, keys.POD_GROUP_MIN_AVAILABLE):
        if old_labels.get(key) != new_labels.get(key):
            return deny(f"{PREFIX}: Pod {req.display_name}: rule fixed-pod-labels: label {key} may not "
                        f"change ({old_labels.get(key)!r} -> {new_labels.get(key)!r}) once the pod exists")
    return allow()


def _placement_denial(req: Request, cfg: PolicyConfig) -> Verdict | None:
    """Rules no-node-name, kuberay-batch-scheduler and scheduler-name for a tenant's pod CREATE."""
    spec = req.obj.get("spec") or {}
    if spec.get("nodeName") and not cfg.may_bind(req.user):
        return deny(f"{PREFIX}: Pod {req.display_name}: rule no-node-name: spec.nodeName "
                    f"{spec['nodeName']!r} is set by {req.user}; in namespace {req.namespace!r} pods are "
                    f"placed by the scheduler {cfg.expected_scheduler!r}, which enforces the quota")
    scheduler = spec.get("schedulerName") or keys.DEFAULT_SCHEDULER
    batch = batch_scheduler_for_pod_scheduler(scheduler) if scheduler != cfg.expected_scheduler else None
    if batch is not None and _from_kuberay(req.obj):
        flags = (f"--batch-scheduler={batch} (or batchScheduler: {batch} in its Configuration file"
                 + (", or the deprecated --enable-batch-scheduler / enableBatchScheduler: true" if batch == "volcano"
                    else "") + ")")
        return deny(f"{PREFIX}: Pod {req.display_name}: rule kuberay-batch-scheduler: schedulerName "
                    f"{scheduler!r} was written by the KubeRay operator, whose batch-scheduler mode is on: it "
                    "overwrites schedulerName on every Ray and submitter pod, so in namespace "
                    f"{req.namespace!r} (placed by {cfg.expected_scheduler!r}) no pod of any RayJob can start. "
                    f"Remove {flags} from the KubeRay operator and restart it; rayqueue queues and "
                    "gang-schedules RayJobs itself")
    if scheduler != cfg.expected_scheduler:
        return deny(f"{PREFIX}: Pod {req.display_name}: rule scheduler-name: schedulerName {scheduler!r} "
                    f"is not allowed in namespace {req.namespace!r}; its pods are placed by "
                    f"{cfg.expected_scheduler!r}")
    return None


def _from_kuberay(pod: Mapping[str, Any]) -> bool:
    """A pod the KubeRay operator made: its `app.kubernetes.io/created-by: kuberay-operator` label and a
    controller owner that is a RayCluster (head, workers) or a batch Job of a RayJob (the submitter, whose
    template KubeRay labels `ray.io/originated-from-crd: RayJob`; rayjob_controller.go getSubmitterTemplate)."""
    pod_labels = labels_of(pod)
    if pod_labels.get(keys.KUBERNETES_CREATED_BY) != keys.KUBERAY_OPERATOR:
        return False
    for ref in owner_references(pod):
        if not isinstance(ref, Mapping):
            continue
        api = str(ref.get("apiVersion", ""))
        if ref.get("kind") == keys.RAYCLUSTER_KIND and api.startswith(keys.RAY_GROUP + "/"):
            return True
        if (ref.get("kind") == "Job" and api.startswith("batch/")
                and pod_labels.get(keys.RAY_ORIGINATED_FROM_CRD) == keys.RAYJOB_KIND):
            return True
    return False


def validate_binding(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict:
    """pods/binding in a bound namespace only by the scheduler and the extender."""
    if req.operation != "CREATE" or bound_leaf(facts, req.namespace) is None or cfg.may_bind(req.user):
        return allow()
    target = ((req.obj.get("target") or {}).get("name")) or "?"
    return deny(f"{PREFIX}: Pod {req.namespace}/{req.name}: rule binding-identity: {req.user} may not bind pods "
                f"in namespace {req.namespace!r} (to node {target!r}); only the scheduler "
                f"{cfg.expected_scheduler!r} binds here, after the quota and gang checks")

"""The webhook policy: every mutation and every tenant guard (docs/security.md lists them), as pure functions."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml

from common import keys
from common.gotime import format_go, parse_go
from common.quota_tree import QuotaTree
from tests.unit.test_jsonpatch import apply
from webhook.policy import ClusterFacts, NamespaceListing, PolicyConfig, admit
from webhook.review import Request, Verdict

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "manifests" / "examples"
NOW = parse_go("2025-01-10 01:36:24.298639916 +0000 UTC")
ALICE = {"username": "alice", "groups": ["tenants", "system:authenticated"]}
CONTROLLER = {"username": "system:serviceaccount:rayqueue:rayqueue-extender", "groups": []}
SCHEDULER = {"username": "system:kube-scheduler", "groups": []}


def _doc(file: str, kind: str) -> dict[str, Any]:
    return next(d for d in yaml.safe_load_all((EXAMPLES / file).read_text()) if d and d["kind"] == kind)


TREE_OBJ = _doc("elasticquotatree.yaml", "ElasticQuotaTree")
SNAP = ClusterFacts(tree=QuotaTree.parse(TREE_OBJ), now_ns=NOW, priority_classes={"urgent": 1000})
CFG = PolicyConfig()
CFG_SCHED = PolicyConfig(scheduler_name="rayqueue-scheduler")


def video_job() -> dict[str, Any]:
    return copy.deepcopy(_doc("video-rayjob.yaml", "RayJob"))


def gang_job() -> dict[str, Any]:
    return copy.deepcopy(_doc("gang-rayjob.yaml", "RayJob"))


def review(
    obj: dict[str, Any] | None,
    *,
    op: str = "CREATE",
    old: dict[str, Any] | None = None,
    resource: str = "rayjobs",
    kind: str = "RayJob",
    sub: str = "",
    ns: str | None = None,
    user: dict[str, Any] = ALICE,
    name: str = "",
) -> Request:
    meta = (obj or old or {}).get("metadata", {})
    return Request.parse(
        {
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "subResource": sub,
            "operation": op,
            "namespace": ns if ns is not None else meta.get("namespace", ""),
            "name": name or meta.get("name", ""),
            "userInfo": user,
            "object": obj,
            "oldObject": old,
        }
    )


def mutate(req: Request, cfg: PolicyConfig = CFG, snap: ClusterFacts = SNAP) -> tuple[Verdict, dict[str, Any]]:
    verdict = admit(req, snap, cfg, mutating=True)
    assert verdict.allowed, verdict.message
    return verdict, apply(dict(req.obj), list(verdict.patch))


def validate(req: Request, cfg: PolicyConfig = CFG, snap: ClusterFacts = SNAP) -> Verdict:
    return admit(req, snap, cfg, mutating=False)


def queued(job: dict[str, Any] | None = None, **annotations: str) -> dict[str, Any]:
    """A job as the webhook leaves it: suspended, stamped, labelled (then the given annotations)."""
    job = job or video_job()
    job["metadata"]["name"] = "rayjob-video-h4x2q"
    _, out = mutate(review(job))
    out["metadata"]["annotations"].update(annotations)
    return out


# --- RayJob CREATE mutation -------------------------------------------------------------------------
def test_the_seed_video_job_is_queued_transparently() -> None:
    verdict, job = mutate(review(video_job()))
    assert job["spec"]["suspend"] is True
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert job["metadata"]["annotations"] == {
        keys.ENQUEUE_TIMESTAMP: "2025-01-10 01:36:24.298639916 +0000 UTC"
    }
    assert job["metadata"]["labels"] == {"job-type": "video", keys.QUOTA_NAME: "algorithm-video"}
    assert verdict.warnings == ()


def test_a_job_without_shutdown_after_finish_gets_it_with_a_warning() -> None:
    job = video_job()
    del job["spec"]["shutdownAfterJobFinishes"]
    verdict, out = mutate(review(job))
    assert out["spec"]["shutdownAfterJobFinishes"] is True
    assert len(verdict.warnings) == 1
    assert "shutdownAfterJobFinishes=true on RayJob video/rayjob-video-<generated>" in verdict.warnings[0]


@pytest.mark.parametrize(
    "cfg", [pytest.param(CFG, id="plain"), pytest.param(CFG_SCHED, id="with a scheduler name")]
)
def test_mutation_is_idempotent_under_reinvocation(cfg: PolicyConfig) -> None:
    _, once = mutate(review(gang_job()), cfg)
    again, twice = mutate(review(once), cfg)
    assert again.patch == ()
    assert twice == once


@pytest.mark.parametrize(
    ("stamp", "kept"),
    [
        pytest.param(
            "2020-01-01 00:00:00 +0000 UTC",
            False,
            id="an old client stamp is replaced so nobody jumps the queue",
        ),
        pytest.param(format_go(NOW - 3 * 10**9), True, id="a stamp seconds old (a reinvocation) is kept"),
        pytest.param("yesterday", False, id="an unparsable stamp is replaced"),
    ],
)
def test_a_client_enqueue_stamp_is_trusted_only_when_fresh(stamp: str, kept: bool) -> None:
    job = video_job()
    job["metadata"]["annotations"] = {keys.ENQUEUE_TIMESTAMP: stamp, keys.DEQUEUE_TIMESTAMP: stamp}
    _, out = mutate(review(job))
    assert out["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP] == (stamp if kept else format_go(NOW))
    assert keys.DEQUEUE_TIMESTAMP not in out["metadata"]["annotations"], "a pre-set dequeue stamp is dropped"


def test_a_gang_job_gets_min_available_and_quota_in_head_and_worker_templates_only() -> None:
    job = gang_job()
    job["spec"]["submitterPodTemplate"] = {"spec": {"containers": [{"name": "s", "image": "x"}]}}
    _, out = mutate(review(job), CFG_SCHED)
    cluster = out["spec"]["rayClusterSpec"]
    for template in (cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]):
        assert template["metadata"]["labels"] == {
            keys.POD_GROUP_MIN_AVAILABLE: "31",
            keys.QUOTA_NAME: "algorithm-text",
        }
        assert template["spec"]["schedulerName"] == "rayqueue-scheduler"
    submitter = out["spec"]["submitterPodTemplate"]
    assert "metadata" not in submitter, "the submitter is outside the gang"
    assert submitter["spec"]["schedulerName"] == "rayqueue-scheduler"


def test_a_job_in_a_namespace_bound_to_no_quota_is_untouched() -> None:
    job = video_job()
    job["metadata"]["namespace"] = "elsewhere"
    verdict = admit(review(job), SNAP, CFG_SCHED, mutating=True)
    assert verdict.allowed and verdict.patch == ()
    assert validate(review(job)).allowed


def test_without_a_tree_every_job_is_untouched() -> None:
    verdict = admit(review(video_job()), ClusterFacts(tree=None, now_ns=NOW), CFG, mutating=True)
    assert verdict.allowed and verdict.patch == ()


# --- RayJob validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "label",
    [
        pytest.param("video", id="short name"),
        pytest.param("root/algorithm/video", id="full path"),
        pytest.param("root-algorithm-video", id="dashed path"),
        pytest.param("algorithm-video", id="dashed path without root as the guide writes it"),
    ],
)
def test_a_quota_label_naming_the_bound_leaf_in_any_form_is_allowed(label: str) -> None:
    job = video_job()
    job["metadata"]["labels"][keys.QUOTA_NAME] = label
    _, out = mutate(review(job))
    assert out["metadata"]["labels"][keys.QUOTA_NAME] == label
    assert validate(review(out)).allowed


def test_a_quota_label_naming_another_teams_quota_is_denied_naming_the_bound_leaf() -> None:
    job = video_job()
    job["metadata"]["labels"][keys.QUOTA_NAME] = "algorithm-text"
    verdict = validate(review(job))
    assert not verdict.allowed and verdict.code == 403
    assert verdict.message == (
        "rayqueue: RayJob video/rayjob-video-<generated>: label quota.scheduling.alibabacloud.com/name="
        "'algorithm-text' names another quota; namespace 'video' is bound to root/algorithm/video (use "
        "'algorithm-video', 'root/algorithm/video' or 'root-algorithm-video', or leave the label out)"
    )


def test_a_quota_label_in_an_unbound_namespace_is_denied() -> None:
    job = video_job()
    job["metadata"]["namespace"] = "elsewhere"
    job["metadata"]["labels"][keys.QUOTA_NAME] = "video"
    verdict = validate(review(job))
    assert not verdict.allowed
    assert "namespace 'elsewhere' is bound to no quota, so it may not charge one" in verdict.message


def test_a_tenant_cannot_resume_a_queued_job() -> None:
    old = queued()
    new = copy.deepcopy(old)
    new["spec"]["suspend"] = False
    verdict = validate(review(new, op="UPDATE", old=old))
    assert not verdict.allowed
    assert verdict.message.startswith(
        "rayqueue: RayJob video/rayjob-video-h4x2q is queued in queue root-algorithm-video (quota "
        "root/algorithm/video): rule resume: only the queue controller may set spec.suspend true -> false"
    )
    assert validate(review(new, op="UPDATE", old=old, user=CONTROLLER)).allowed


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param(keys.DEQUEUE_TIMESTAMP, "2025-01-10 01:36:25 +0000 UTC", id="adding a dequeue stamp"),
        pytest.param(
            keys.ENQUEUE_TIMESTAMP, "2020-01-01 00:00:00 +0000 UTC", id="back-dating the enqueue stamp"
        ),
        pytest.param(keys.PRIORITY_CHANGE_RECORD, "admin changed priority", id="forging the priority record"),
    ],
)
def test_a_tenant_cannot_touch_controller_annotations(key: str, value: str) -> None:
    old = queued()
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][key] = value
    verdict = validate(review(new, op="UPDATE", old=old))
    assert not verdict.allowed
    assert (
        f"rule controller-annotations: only the queue controller may change annotation {key}"
        in verdict.message
    )
    assert validate(review(new, op="UPDATE", old=old, user=CONTROLLER)).allowed


def test_a_tenant_cannot_remove_the_enqueue_stamp() -> None:
    old = queued()
    new = copy.deepcopy(old)
    del new["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP]
    assert "rule controller-annotations" in validate(review(new, op="UPDATE", old=old)).message


def test_a_tenant_cannot_move_a_queued_job_to_another_quota() -> None:
    old = queued()
    new = copy.deepcopy(old)
    new["metadata"]["labels"][keys.QUOTA_NAME] = "video"
    verdict = validate(review(new, op="UPDATE", old=old))
    assert not verdict.allowed
    assert (
        "rule quota-label: the quota label is fixed once the job is queued ('algorithm-video' -> 'video')"
        in verdict.message
    )


def test_a_tenant_cannot_grow_an_admitted_job() -> None:
    old = queued(**{keys.DEQUEUE_TIMESTAMP: "2025-01-10 01:36:24.641181026 +0000 UTC"})
    old["spec"]["suspend"] = False
    new = copy.deepcopy(old)
    new["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = 3
    verdict = validate(review(new, op="UPDATE", old=old))
    assert not verdict.allowed
    assert "rule admitted-request" in verdict.message
    assert "{cpu: 12500m, memory: 11923550Ki}" in verdict.message
    assert "{cpu: 16500m, memory: 15829800Ki}" in verdict.message


def test_a_tenant_may_suspend_and_edit_their_own_queued_job() -> None:
    old = queued()
    new = copy.deepcopy(old)
    new["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = 1
    assert validate(review(new, op="UPDATE", old=old)).allowed


@pytest.mark.parametrize(
    ("old_priority", "new_priority", "needs_permission"),
    [
        pytest.param(None, "10", True, id="raising by the override annotation needs permission"),
        pytest.param("10", "5", False, id="lowering needs nothing"),
        pytest.param("10", "10", False, id="an unchanged priority needs nothing"),
    ],
)
def test_raising_priority_requires_permission_to_patch_queueunits(
    old_priority: str | None, new_priority: str, needs_permission: bool
) -> None:
    old = queued()
    if old_priority is not None:
        old["metadata"]["annotations"][keys.PRIORITY_OVERRIDE] = old_priority
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][keys.PRIORITY_OVERRIDE] = new_priority
    _, new = mutate(review(new, op="UPDATE", old=old))
    verdict = validate(review(new, op="UPDATE", old=old))
    assert verdict.allowed
    if needs_permission:
        assert verdict.requires is not None
        assert (verdict.requires.verb, verdict.requires.resource, verdict.requires.namespace) == (
            "patch",
            "queueunits",
            "video",
        )
        assert verdict.requires.denied_message.endswith(
            "rule priority-raise: raising priority 0 -> 10 needs permission to patch "
            "queueunits.scheduling.x-k8s.io in namespace 'video', which alice does not have"
        )
    else:
        assert verdict.requires is None


def test_every_priority_change_is_recorded_with_the_user() -> None:
    old = queued()
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][keys.PRIORITY_OVERRIDE] = "7"
    new["metadata"]["annotations"][keys.PRIORITY_CHANGE_RECORD] = "mallory forged this"
    verdict, out = mutate(review(new, op="UPDATE", old=old))
    record = f"alice changed priority 0 -> 7 at {format_go(NOW)}"
    assert out["metadata"]["annotations"][keys.PRIORITY_CHANGE_RECORD] == record
    assert verdict.audit == (f"RayJob video/rayjob-video-h4x2q: {record}",)


def test_creating_a_job_with_a_high_priority_class_needs_permission() -> None:
    job = video_job()
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["priorityClassName"] = "urgent"
    verdict = validate(review(job))
    assert verdict.allowed and verdict.requires is not None
    assert "raising priority 0 -> 1000" in verdict.requires.denied_message


def test_a_job_template_with_another_scheduler_is_denied() -> None:
    job = video_job()
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["schedulerName"] = "my-scheduler"
    verdict = validate(review(job), CFG_SCHED)
    assert not verdict.allowed
    assert (
        "rule scheduler-name: pods of namespace 'video' are placed by 'rayqueue-scheduler', not 'my-scheduler'"
        in verdict.message
    )


# --- Pods ---------------------------------------------------------------------------------------------
def pod(ns: str = "algorithm-text", labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "c-worker-", "namespace": ns, "labels": dict(labels or {})},
        "spec": {"containers": [{"name": "w", "image": "ray"}], **spec},
    }


def pod_review(obj: dict[str, Any], **kw: Any) -> Request:
    return review(obj, resource="pods", kind="Pod", **kw)


def test_a_gang_pod_gets_its_pod_group_from_the_ray_cluster_label() -> None:
    labels = {keys.RAY_CLUSTER: "rayjob-sample-hhbdr-raycluster-ljj69", keys.POD_GROUP_MIN_AVAILABLE: "31"}
    _, out = mutate(pod_review(pod(labels=labels)), CFG_SCHED)
    assert out["metadata"]["labels"] == {
        **labels,
        keys.QUOTA_NAME: "algorithm-text",
        keys.POD_GROUP_NAME: "rayjob-sample-hhbdr-raycluster-ljj69",
        keys.POD_GROUP_X: "rayjob-sample-hhbdr-raycluster-ljj69",
    }
    assert out["spec"]["schedulerName"] == "rayqueue-scheduler"
    assert validate(pod_review(out), CFG_SCHED).allowed


def test_kuberays_redis_cleanup_pod_is_left_outside_the_gang() -> None:
    """buildRedisCleanupJob (KubeRay v1.7.0) builds the cleanup pod from the head template, gang labels included,
    and runs it alone while the cluster is deleted: as a member it would wait for a quorum that never comes."""
    labels = {keys.RAY_CLUSTER: "c", keys.POD_GROUP_MIN_AVAILABLE: "3", keys.POD_GROUP_NAME: "c", keys.POD_GROUP_X: "c",
              keys.RAY_NODE_TYPE: keys.RAY_NODE_TYPE_REDIS_CLEANUP}
    _, out = mutate(pod_review(pod(labels=labels)), CFG_SCHED)
    assert out["metadata"]["labels"] == {keys.RAY_CLUSTER: "c", keys.RAY_NODE_TYPE: "redis-cleanup",
                                         keys.QUOTA_NAME: "algorithm-text"}
    assert out["spec"]["schedulerName"] == "rayqueue-scheduler"
    head = {**labels, keys.RAY_NODE_TYPE: "head"}
    assert mutate(pod_review(pod(labels=head)), CFG_SCHED)[1]["metadata"]["labels"][keys.POD_GROUP_NAME] == "c"


def test_a_pod_outside_a_gang_gets_only_the_quota_label() -> None:
    _, out = mutate(pod_review(pod(labels={keys.RAY_CLUSTER: "c"})))
    assert out["metadata"]["labels"] == {keys.RAY_CLUSTER: "c", keys.QUOTA_NAME: "algorithm-text"}


@pytest.mark.parametrize(
    ("obj", "user", "rule"),
    [
        pytest.param(pod(nodeName="n1"), ALICE, "rule no-node-name", id="a tenant may not pre-set nodeName"),
        pytest.param(
            pod(schedulerName="my-scheduler"),
            ALICE,
            "rule scheduler-name",
            id="a tenant may not pick another scheduler",
        ),
        pytest.param(
            pod(labels={keys.QUOTA_NAME: "video"}),
            ALICE,
            "names another quota",
            id="a tenant may not charge another team",
        ),
    ],
)
def test_pod_bypasses_are_denied(obj: dict[str, Any], user: dict[str, Any], rule: str) -> None:
    verdict = validate(pod_review(obj, user=user))
    assert not verdict.allowed and rule in verdict.message


def test_a_pod_in_an_unbound_namespace_may_do_as_it_likes() -> None:
    assert validate(pod_review(pod(ns="elsewhere", nodeName="n1", schedulerName="x"))).allowed


def test_the_scheduler_may_create_a_pod_with_a_node_name() -> None:
    assert validate(pod_review(pod(nodeName="n1"), user=SCHEDULER)).allowed


def test_pod_group_labels_are_fixed_after_creation() -> None:
    old = pod(labels={keys.POD_GROUP_NAME: "a"})
    new = pod(labels={keys.POD_GROUP_NAME: "b"})
    verdict = validate(pod_review(new, op="UPDATE", old=old))
    assert not verdict.allowed and "rule fixed-pod-labels" in verdict.message


@pytest.mark.parametrize("endpoint", [("pods", "binding"), ("bindings", "")], ids=["pods/binding", "bindings"])
@pytest.mark.parametrize(
    ("user", "allowed"),
    [
        pytest.param(ALICE, False, id="a tenant may not bind a pod"),
        pytest.param(SCHEDULER, True, id="the scheduler binds"),
        pytest.param(CONTROLLER, True, id="the extender binds gangs"),
    ],
)
def test_pods_binding(user: dict[str, Any], allowed: bool, endpoint: tuple[str, str]) -> None:
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p", "namespace": "video"},
        "target": {"kind": "Node", "name": "n1"},
    }
    verdict = validate(review(binding, resource=endpoint[0], sub=endpoint[1], kind="Binding", user=user, name="p"))
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.message == (
            "rayqueue: Pod video/p: rule binding-identity: alice may not bind pods in namespace 'video' (to node "
            "'n1'); only the scheduler 'default-scheduler' binds here, after the quota and gang checks"
        )


# --- ElasticQuotaTree ---------------------------------------------------------------------------------
def tree_review(obj: dict[str, Any], **kw: Any) -> Request:
    return review(
        obj, resource=keys.QUOTA_TREE_PLURAL, kind=keys.QUOTA_TREE_KIND, user={"username": "admin"}, **kw
    )


def test_the_seed_tree_is_accepted() -> None:
    """Its namespaces carry the quota-namespace label (rule N1: tests/unit/test_webhook_namespaces.py)."""
    labelled = {ns: {keys.QUOTA_NAMESPACE_LABEL: keys.QUOTA_NAMESPACE_VALUE} for ns in QuotaTree.parse(TREE_OBJ)
                .namespace_bindings()}
    facts = ClusterFacts(tree=SNAP.tree, now_ns=NOW, namespaces=NamespaceListing(labels=labelled))
    assert validate(tree_review(TREE_OBJ), snap=facts).allowed


def test_a_second_tree_is_denied() -> None:
    obj = copy.deepcopy(TREE_OBJ)
    obj["metadata"]["name"] = "other"
    verdict = validate(tree_review(obj))
    assert not verdict.allowed and "rule single-tree" in verdict.message


def test_an_invalid_tree_is_denied_with_every_error_and_its_path() -> None:
    obj = copy.deepcopy(TREE_OBJ)
    video = obj["spec"]["root"]["children"][0]["children"][0]
    video["min"]["cpu"] = 20  # > its max 14
    video["max"]["memory"] = "x"
    obj["spec"]["root"]["children"][1]["children"][0]["namespaces"] = ["video"]  # bound twice
    verdict = validate(tree_review(obj))
    assert not verdict.allowed and verdict.code == 422
    assert "spec.root.children[0].children[0].min.cpu" in verdict.message
    assert "spec.root.children[0].children[0].max.memory" in verdict.message
    assert "video" in verdict.message and "spec.root.children[1].children[0].namespaces" in verdict.message


def test_shrinking_a_quota_below_its_usage_warns_naming_the_jobs() -> None:
    old = copy.deepcopy(TREE_OBJ)
    old["status"] = {"nodes": {"root/algorithm/video": {"used": {"cpu": "12500m"}}}}
    new = copy.deepcopy(TREE_OBJ)
    new["spec"]["root"]["children"][0]["children"][0]["max"]["cpu"] = 10
    new["spec"]["root"]["children"][0]["children"][0]["min"]["cpu"] = 8
    snap = ClusterFacts(
        tree=SNAP.tree, now_ns=NOW, admitted_by_namespace={"video": ["video/rayjob-video-g2lvn"]}
    )
    verdict = validate(tree_review(new, op="UPDATE", old=old), snap=snap)
    assert verdict.allowed
    assert verdict.warnings == (
        "rayqueue: root/algorithm/video: cpu used 12500m > new max 10: running jobs there become reclaimable: "
        "video/rayjob-video-g2lvn",
    )


@pytest.mark.parametrize(
    ("namespace", "label", "allowed"),
    [
        pytest.param("devops", "devops", True, id="root/devops's own short name, which another leaf shares"),
        pytest.param("infra-devops", "devops", True, id="root/infrastructure/devops's own short name"),
        pytest.param("infra-devops", "infrastructure-devops", True, id="the dashed path without root"),
        pytest.param("devops", "infrastructure-devops", False, id="the other devops leaf is another team's quota"),
    ],
)
def test_a_short_name_shared_by_two_leaves_names_the_namespace_own_leaf(
    namespace: str, label: str, allowed: bool
) -> None:
    """Regression: both leaves of the guide's tree named `devops` made the short name ambiguous, so the label the
    mutation stamps on pods in namespace devops was refused by validation: no pod could be created there."""
    obj = pod(ns=namespace, labels={keys.QUOTA_NAME: label})
    assert validate(pod_review(obj)).allowed is allowed
    _, stamped = mutate(pod_review(pod(ns=namespace)))
    assert validate(pod_review(stamped)).allowed, "what the mutation stamps always validates"


def test_an_autoscaled_job_that_could_grow_past_its_quota_is_warned_not_refused() -> None:
    """Rule growth-bound (docs/growth.md): video's max is 14 CPU; at maxReplicas 4 the guide's job could take
    4 + 0.5 (the autoscaler) + 4 x 4 + 0.5 (the submitter) = 21 CPU. It is queued, with a warning naming the
    node and the numbers; without maxReplicas the warning says it is unbounded; within the max, none."""
    job = video_job()
    job["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] = True
    group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    group.update(minReplicas=1, maxReplicas=4)
    verdict, out = mutate(review(job))
    assert out["spec"]["suspend"] is True
    (warning,) = verdict.warnings
    assert "could grow to {cpu: 21," in warning, warning
    assert "more than root/algorithm/video may ever hold: cpu 21 > max 14;" in warning, warning
    del group["maxReplicas"]
    (warning,) = mutate(review(job))[0].warnings
    assert "without maxReplicas: it may grow without bound" in warning, warning
    group.update(maxReplicas=2)
    assert mutate(review(job))[0].warnings == ()  # 4.5 + 8 + 0.5 = 13 CPU, memory within 14Gi


# --- routing -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("resource", "sub", "op", "mutating", "governed"),
    [
        pytest.param("pods", "", "CREATE", False, True, id="a pod create is validated"),
        pytest.param("pods", "", "UPDATE", False, True, id="a pod update is validated"),
        pytest.param("pods", "binding", "CREATE", False, True, id="pods/binding is validated"),
        pytest.param("bindings", "", "CREATE", False, True, id="bindings are validated as pods/binding is"),
        pytest.param("pods", "binding", "CREATE", True, False, id="a binding has no mutation"),
        pytest.param("pods", "status", "UPDATE", False, False, id="a pod's status subresource is not governed"),
        pytest.param("pods", "", "DELETE", False, False, id="a delete is never governed"),
        pytest.param("pods", "", "CONNECT", False, False, id="a connect is never governed"),
        pytest.param("configmaps", "", "CREATE", False, False, id="a resource the table does not name is allowed"),
    ],
)
def test_the_routing_table_sends_only_governed_requests_to_a_rule(
    resource: str, sub: str, op: str, mutating: bool, governed: bool
) -> None:
    """The same tenant request (a pod placed on a node by hand, with a changed quota label) is refused where a
    rule governs it and allowed untouched, with no patch, everywhere else."""
    before = pod(labels={keys.QUOTA_NAME: "algorithm-text"})
    after = pod(labels={keys.QUOTA_NAME: "root/algorithm/text", "extra": "x"}, nodeName="node-1")
    after["target"] = {"name": "node-1"}
    verdict = admit(review(after, op=op, old=before, resource=resource, sub=sub, kind="Pod", name="p"), SNAP, CFG,
                    mutating=mutating)
    assert verdict.allowed is not governed, verdict.message
    if not governed:
        assert not verdict.patch and not verdict.warnings

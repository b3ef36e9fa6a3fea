"""The webhook refuses, at create, what KubeRay would refuse after admission; its mutation never makes such a job."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import keys
from common.kuberay_rules import rayjob_problems
from tests.unit.builders import container, make_pod, make_rayjob
from tests.unit.test_jsonpatch import apply
from tests.unit.test_webhook_policy import (
    ALICE,
    CFG,
    CFG_SCHED,
    CONTROLLER,
    SNAP,
    mutate,
    queued,
    review,
    validate,
)
from tests.unit.test_webhook_policy import video_job as video_job
from webhook.policy import ClusterFacts, ClusterLookup, PolicyConfig, admit, as_mutated
from webhook.review import Verdict

SELECTOR = {keys.RAY_CLUSTER: "shared"}
KUBERAY = {"username": "system:serviceaccount:ray-system:kuberay-operator", "groups": []}


def selector_job(**extra: Any) -> dict[str, Any]:
    """A tenant's job on the existing RayCluster `shared` (no suspend: KubeRay cannot suspend it)."""
    job = video_job()
    del job["spec"]["suspend"]
    job["spec"]["clusterSelector"] = dict(SELECTOR)
    job["spec"].update(extra)
    return job


def raycluster(*, suspend: bool | None = None, owner: str | None = None,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "shared", "namespace": "video", "annotations": dict(annotations or {})}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "ray.io/v1", "kind": "RayJob", "name": owner, "uid": "u",
                                    "controller": True}]
    spec: dict[str, Any] = {}
    if suspend is not None:
        spec["suspend"] = suspend
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": meta, "spec": spec}


def with_cluster(lookup: ClusterLookup | None) -> ClusterFacts:
    return replace(SNAP, selected_clusters={"video/shared": lookup} if lookup is not None else {})


def created(job: dict[str, Any], cfg: PolicyConfig = CFG, snap: ClusterFacts = SNAP,
            user: dict[str, Any] = ALICE) -> tuple[dict[str, Any], Verdict]:
    """Mutate, then validate the mutated object, as the apiserver does (the name is generated in between)."""
    _, out = mutate(review(job), cfg, snap)
    if not out["metadata"].get("name"):
        out["metadata"]["name"] = "rayjob-video-h4x2q"
    return out, validate(review(out, user=user), cfg, snap)


# --- CREATE: KubeRay's own rules ----------------------------------------------------------------------------
def test_a_name_over_47_characters_is_refused_at_create_in_kuberays_words() -> None:
    job = video_job()
    job["metadata"]["name"] = "a" * 48
    _, verdict = created(job)
    assert not verdict.allowed
    assert verdict.message == (
        f"rayqueue: RayJob video/{'a' * 48}: rule kuberay-validation: KubeRay would refuse this job after admission "
        "(JobDeploymentStatus ValidationFailed, and a refused job would hold its quota), 1 problem: metadata.name: "
        "The RayJob metadata is invalid: RayJob name should be no more than 47 characters "
        "[KubeRay ValidateRayJobMetadata, v1.4+]")


def test_every_kuberay_problem_is_listed_at_once() -> None:
    job = make_rayjob("Big_Job", "video").workers(2, cpu="1", min_replicas=3, max_replicas=1).set(
        "spec.activeDeadlineSeconds", 0).obj()
    _, verdict = created(job)
    assert "3 problems: metadata.name: The RayJob metadata is invalid: RayJob name should be a valid DNS1035 label" \
        in verdict.message
    assert ("spec.rayClusterSpec.workerGroupSpecs[0].minReplicas: The RayJob spec is invalid: worker group small-group "
            "has minReplicas 3 greater than maxReplicas 1 [KubeRay ValidateRayClusterSpec, v1.6+]") in verdict.message
    assert "spec.activeDeadlineSeconds: The RayJob spec is invalid: activeDeadlineSeconds must be a positive integer" \
        in verdict.message


def test_a_negative_min_replicas_gets_kuberays_words_even_from_the_mutating_webhook() -> None:
    """rayqueue's own reading of the job refuses a negative count too (it cannot size it); the tenant is told
    KubeRay's reason first, whichever webhook answers."""
    job = make_rayjob("j", "video").workers(1, cpu="1", min_replicas=-1, max_replicas=2).obj()
    verdict = admit(review(job), SNAP, CFG, mutating=True)
    assert not verdict.allowed and verdict.code == 403
    assert verdict.message.startswith("rayqueue: RayJob video/j: rule kuberay-validation: ")
    assert "worker group small-group has negative minReplicas -1" in verdict.message
    assert verdict.message.endswith("(and: spec.rayClusterSpec.workerGroupSpecs[0].minReplicas: must be at least 0, got -1)")


def test_an_admin_is_refused_too_because_the_quota_would_be_held_all_the_same() -> None:
    job = make_rayjob("j", "video").workers(2, cpu="1", min_replicas=3, max_replicas=1).obj()
    _, verdict = created(job, user={"username": "root", "groups": ["system:masters"]})
    assert not verdict.allowed and "rule kuberay-validation" in verdict.message


def test_a_job_without_shutdown_after_finish_is_judged_as_our_mutation_leaves_it() -> None:
    """The tenant's object alone would break "suspend needs shutdownAfterJobFinishes"; ours sets it: allowed."""
    job = video_job()
    job["spec"]["shutdownAfterJobFinishes"] = False
    assert rayjob_problems(job), "as sent, KubeRay would refuse it"
    out, verdict = created(job)
    assert verdict.allowed, verdict.message
    assert out["spec"]["shutdownAfterJobFinishes"] is True and rayjob_problems(out) == []


def test_a_job_with_deletion_rules_cannot_be_queued_and_is_told_what_to_use() -> None:
    job = video_job()
    job["spec"]["shutdownAfterJobFinishes"] = False
    job["spec"]["deletionStrategy"] = {"deletionRules": [{"policy": "DeleteCluster",
                                                          "condition": {"jobStatus": "SUCCEEDED"}}]}
    _, verdict = created(job)
    assert not verdict.allowed
    assert verdict.message.startswith("rayqueue: RayJob video/rayjob-video-h4x2q: rule queued-deletion-rules: a RayJob "
                                      "with spec.deletionStrategy.deletionRules cannot be queued")
    assert ("Leave deletionStrategy out and use shutdownAfterJobFinishes: true with ttlSecondsAfterFinished"
            in verdict.message)
    assert "DeleteCluster or DeleteSelf" not in verdict.message, "the legacy policy leaves clusters after a deadline"
    assert "spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules are mutually exclusive" in verdict.message


@pytest.mark.parametrize(("success", "failure", "allowed"), [
    pytest.param("DeleteWorkers", "DeleteCluster", False, id="DeleteWorkers keeps the head: refused"),
    pytest.param("DeleteSelf", "DeleteNone", False, id="DeleteNone keeps the cluster: refused"),
    pytest.param("DeleteSelf", "DeleteCluster", True, id="DeleteSelf and DeleteCluster free the quota: allowed"),
])
def test_a_legacy_deletion_policy_must_free_the_cluster(success: str, failure: str, allowed: bool) -> None:
    job = video_job()
    job["spec"]["deletionStrategy"] = {"onSuccess": {"policy": success}, "onFailure": {"policy": failure}}
    _, verdict = created(job)
    assert verdict.allowed is allowed, verdict.message
    if not allowed:
        assert "rule queued-cleanup" in verdict.message and "leave deletionStrategy out" in verdict.message
        assert "not after a deadline, a submission failure or STOPPED" in verdict.message


# --- clusterSelector jobs -----------------------------------------------------------------------------------
def test_a_cluster_selector_job_is_not_queued_and_only_labelled() -> None:
    job = selector_job()
    job["metadata"]["annotations"] = {keys.ENQUEUE_TIMESTAMP: "2025-01-10 01:36:20 +0000 UTC"}
    out, verdict = created(job, CFG_SCHED, with_cluster(ClusterLookup(obj=raycluster())))
    assert verdict.allowed, verdict.message
    assert "suspend" not in out["spec"] and out["spec"]["shutdownAfterJobFinishes"] is True
    assert keys.ENQUEUE_TIMESTAMP not in (out["metadata"].get("annotations") or {}), \
        "a client stamp would make the controller treat it as queued"
    assert out["metadata"]["labels"][keys.QUOTA_NAME] == "algorithm-video"
    assert rayjob_problems(out) == []


def test_a_cluster_selector_job_asking_to_be_suspended_is_refused_by_the_documented_rule() -> None:
    _, verdict = created(selector_job(suspend=True), snap=with_cluster(ClusterLookup(obj=raycluster())))
    assert not verdict.allowed
    assert "rule cluster-selector: a RayJob with spec.clusterSelector runs on an existing RayCluster and is not " \
           "queued" in verdict.message
    assert "The RayJob spec is invalid: the ClusterSelector mode doesn't support the suspend operation" in verdict.message


@pytest.mark.parametrize(("lookup", "expected"), [
    pytest.param(ClusterLookup(obj=raycluster()), None, id="a running RayCluster of her own: allowed"),
    pytest.param(ClusterLookup(obj=raycluster(suspend=False, annotations={keys.ENQUEUE_TIMESTAMP: "t",
                                                                    keys.DEQUEUE_TIMESTAMP: "t"})),
                 None, id="an admitted RayCluster: allowed"),
    pytest.param(ClusterLookup(), "the selected RayCluster video/shared does not exist",
                 id="a RayCluster that does not exist: refused"),
    pytest.param(ClusterLookup(obj=raycluster(suspend=True)), "the selected RayCluster video/shared is suspended",
                 id="a suspended RayCluster: refused"),
    pytest.param(ClusterLookup(obj=raycluster(annotations={keys.ENQUEUE_TIMESTAMP: "t"})),
                 "the selected RayCluster video/shared is waiting in a queue", id="a RayCluster waiting in a queue: refused"),
    pytest.param(ClusterLookup(obj=raycluster(owner="other-job")),
                 "the selected RayCluster video/shared belongs to RayJob 'other-job'",
                 id="another RayJob's cluster: refused"),
    pytest.param(ClusterLookup(error="the API answered 403 Forbidden: no"),
                 "could not check the selected RayCluster video/shared (the API answered 403 Forbidden: no)",
                 id="a failed read: refused, failing closed"),
    pytest.param(None, "could not check the selected RayCluster video/shared (it was not read)",
                 id="no read at all: refused"),
])
def test_a_cluster_selector_job_may_only_run_on_an_existing_unqueued_cluster(lookup: ClusterLookup | None,
                                                                               expected: str | None) -> None:
    _, verdict = created(selector_job(), snap=with_cluster(lookup))
    if expected is None:
        assert verdict.allowed, verdict.message
    else:
        assert not verdict.allowed
        assert "rule cluster-selector-target: " + expected in verdict.message


def test_the_selector_cannot_be_added_or_removed_later() -> None:
    old = queued()
    new = copy.deepcopy(old)
    new["spec"]["clusterSelector"] = dict(SELECTOR)
    new["spec"]["suspend"] = False
    verdict = validate(review(new, op="UPDATE", old=old))
    assert not verdict.allowed and "rule fixed-cluster-selector" in verdict.message


# --- UPDATE ---------------------------------------------------------------------------------------------------
def test_a_tenant_edit_kuberay_would_refuse_is_refused() -> None:
    old = queued(make_rayjob("j", "video").workers(2, cpu="1", min_replicas=1, max_replicas=4).obj())
    new = copy.deepcopy(old)
    new["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplicas"] = 5
    verdict = validate(review(new, op="UPDATE", old=old))
    assert not verdict.allowed
    assert "rule kuberay-validation: this change would make KubeRay refuse the job" in verdict.message
    assert "worker group small-group has minReplicas 5 greater than maxReplicas 4" in verdict.message


def test_turning_off_shutdown_after_finish_on_a_managed_job_is_refused() -> None:
    old = queued()
    old["metadata"]["annotations"][keys.DEQUEUE_TIMESTAMP] = "2025-01-10 01:40:00 +0000 UTC"
    old["spec"]["suspend"] = False
    old["spec"].pop("ttlSecondsAfterFinished", None)  # (with a TTL, KubeRay's own rule would refuse it first)
    new = copy.deepcopy(old)
    new["spec"]["shutdownAfterJobFinishes"] = False  # valid for KubeRay once running, but the cluster would stay
    verdict = validate(review(new, op="UPDATE", old=old))
    assert not verdict.allowed and "rule shutdown-after-finish" in verdict.message


def test_the_controller_can_still_resume_and_kuberay_can_still_add_its_finalizer() -> None:
    old = queued()
    resumed = copy.deepcopy(old)
    resumed["spec"]["suspend"] = False
    resumed["metadata"]["annotations"][keys.DEQUEUE_TIMESTAMP] = "2025-01-10 01:40:00 +0000 UTC"
    assert validate(review(resumed, op="UPDATE", old=old, user=CONTROLLER)).allowed
    finalized = copy.deepcopy(resumed)
    finalized["metadata"]["finalizers"] = ["ray.io/rayjob-finalizer"]
    assert validate(review(finalized, op="UPDATE", old=resumed, user=KUBERAY)).allowed


def test_a_job_that_predates_the_webhook_is_not_stuck_on_problems_it_already_had() -> None:
    """A job with a 48-character name created before rayqueue ran: its finalizer can still be removed."""
    old = make_rayjob("a" * 48, "video").suspend(False).obj()
    old["metadata"]["finalizers"] = ["ray.io/rayjob-finalizer"]
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    assert validate(review(new, op="UPDATE", old=old, user=KUBERAY)).allowed


# --- KubeRay's batch-scheduler mode, seen on its pods -------------------------------------------------------
def kuberay_pod(scheduler: str, owner_kind: str = "RayCluster") -> dict[str, Any]:
    pod = make_pod("p", "video", cpu="1").label(keys.KUBERNETES_CREATED_BY, keys.KUBERAY_OPERATOR).scheduler(scheduler)
    if owner_kind == "RayCluster":
        pod = pod.ray("j-raycluster-abcde").owner("RayCluster", "j-raycluster-abcde", "uid-rc")
        return pod.obj()
    obj = pod.label(keys.RAY_ORIGINATED_FROM_CRD, "RayJob").obj()
    obj["metadata"]["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "uid-job",
                                           "controller": True}]
    return obj


@pytest.mark.parametrize(("scheduler", "owner", "flag"), [
    pytest.param("volcano", "RayCluster", "--batch-scheduler=volcano (or batchScheduler: volcano in its Configuration "
                 "file, or the deprecated --enable-batch-scheduler / enableBatchScheduler: true)",
                 id="a volcano head pod names both volcano flags"),
    pytest.param("yunikorn", "RayCluster", "--batch-scheduler=yunikorn (or batchScheduler: yunikorn in its "
                 "Configuration file)", id="a yunikorn worker pod"),
    pytest.param("scheduler-plugins-scheduler", "Job", "--batch-scheduler=scheduler-plugins (or batchScheduler: "
                 "scheduler-plugins in its Configuration file)", id="a scheduler-plugins submitter pod"),
    pytest.param("kai-scheduler", "RayCluster", "--batch-scheduler=kai-scheduler", id="a kai-scheduler pod"),
])
def test_a_kuberay_pod_from_batch_scheduler_mode_is_refused_naming_the_flag(scheduler: str, owner: str,
                                                                             flag: str) -> None:
    pod = kuberay_pod(scheduler, owner)
    verdict = admit(review(pod, resource="pods", kind="Pod"), SNAP, CFG_SCHED, mutating=False)
    assert not verdict.allowed
    assert (f"rule kuberay-batch-scheduler: schedulerName {scheduler!r} was written by the KubeRay operator, whose "
            "batch-scheduler mode is on") in verdict.message
    assert f"Remove {flag}" in verdict.message


def test_a_tenant_pod_asking_for_volcano_gets_the_ordinary_denial() -> None:
    pod = make_pod("p", "video", cpu="1").scheduler("volcano").obj()
    verdict = admit(review(pod, resource="pods", kind="Pod"), SNAP, CFG_SCHED, mutating=False)
    assert not verdict.allowed
    assert "rule scheduler-name: schedulerName 'volcano' is not allowed" in verdict.message


# --- the property: our mutation never produces a combination KubeRay refuses -----------------------------
_names = st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,40}[a-z0-9]", fullmatch=True),
                   st.text(alphabet="abcXYZ_-.09", min_size=1, max_size=70))
_policies = st.sampled_from(["DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone"])
_small = st.one_of(st.none(), st.integers(-2, 5))


@st.composite
def rayjobs(draw: st.DrawFn) -> dict[str, Any]:
    b = make_rayjob(draw(_names), "video").head(cpu="1")
    for i in range(draw(st.integers(0, 2))):
        b.workers(draw(_small), cpu="1", group=f"g{i}", min_replicas=draw(_small), max_replicas=draw(_small),
                  suspend=draw(st.one_of(st.none(), st.booleans())))
    for key in ("suspend", "shutdownAfterJobFinishes"):
        choice = draw(st.one_of(st.none(), st.booleans()))
        if choice is None:
            b.set(f"spec.{key}", None)
        else:
            b.set(f"spec.{key}", choice)
    for key in ("ttlSecondsAfterFinished", "backoffLimit", "activeDeadlineSeconds"):
        value = draw(_small)
        if value is not None:
            b.set(f"spec.{key}", value)
    mode = draw(st.sampled_from([None, "K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]))
    if mode:
        b.submission_mode(mode)
    if draw(st.booleans()):
        b.submitter(container("submit", cpu="500m"))
    if draw(st.booleans()):
        b.set("spec.rayClusterSpec.enableInTreeAutoscaling", True)
    strategy = draw(st.sampled_from(["none", "legacy", "rules"]))
    if strategy == "legacy":
        b.set("spec.deletionStrategy", {"onSuccess": {"policy": draw(_policies)},
                                        "onFailure": {"policy": draw(_policies)}})
    elif strategy == "rules":
        b.set("spec.deletionStrategy", {"deletionRules": [{"policy": draw(_policies),
                                                           "condition": {"jobStatus": "SUCCEEDED"}}]})
    if draw(st.integers(0, 3)) == 0:
        b.cluster_selector(**{keys.RAY_CLUSTER: draw(st.sampled_from(["shared", ""]))})
    obj = b.obj()
    obj["spec"] = {k: v for k, v in obj["spec"].items() if v is not None}
    return obj


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rayjobs())
def test_the_mutated_job_passes_kuberays_rules_or_the_request_is_denied(job: dict[str, Any]) -> None:
    snap = with_cluster(ClusterLookup(obj=raycluster()))
    mutated_verdict = admit(review(job), snap, CFG, mutating=True)
    if not mutated_verdict.allowed:  # a shape rayqueue cannot read: refused outright, in KubeRay's words if it has any
        assert mutated_verdict.message.startswith(f"rayqueue: RayJob video/{job['metadata']['name']}: ")
        if rayjob_problems(as_mutated(job)):
            assert "rule kuberay-validation" in mutated_verdict.message
        return
    out = apply(copy.deepcopy(job), list(mutated_verdict.patch))
    assert as_mutated(out) == out, "validation judges exactly what the mutation produced"
    verdict = validate(review(out), CFG, snap)
    if verdict.allowed:
        assert rayjob_problems(out) == [], "an allowed job must be one KubeRay accepts"
        if not out["spec"].get("clusterSelector"):
            assert out["spec"]["suspend"] is True and out["spec"]["shutdownAfterJobFinishes"] is True
    else:
        assert verdict.message.startswith(f"rayqueue: RayJob video/{job['metadata']['name']}: rule ")


# --- liveness: refusals KubeRay makes after admission, caught at the webhook (issue 23) ---------------------
@pytest.mark.parametrize("runtime_env", [
    pytest.param("- pip\n- numpy\n", id="a YAML list"),
    pytest.param("just a string\n", id="a YAML scalar"),
])
def test_a_running_job_edited_to_a_runtime_env_that_is_not_a_map_is_refused(runtime_env: str) -> None:
    """KubeRay runs validateRayJob on every reconcile (UnmarshalRuntimeEnvYAML decodes into a map): an edit of a
    running job to a list would end it ValidationFailed with its cluster, and its claim, left behind."""
    old = queued()
    old["metadata"]["annotations"][keys.DEQUEUE_TIMESTAMP] = "2025-01-10 01:40:00 +0000 UTC"
    old["spec"]["suspend"] = False
    new = copy.deepcopy(old)
    new["spec"]["runtimeEnvYAML"] = runtime_env
    verdict = validate(review(new, op="UPDATE", old=old))
    assert not verdict.allowed
    assert "rule kuberay-validation: this change would make KubeRay refuse the job" in verdict.message
    assert "spec.runtimeEnvYAML" in verdict.message and "failed to unmarshal RuntimeEnvYAML" in verdict.message
    good = copy.deepcopy(old)
    good["spec"]["runtimeEnvYAML"] = "pip:\n- numpy\n"
    assert validate(review(good, op="UPDATE", old=old)).allowed


def test_a_job_another_controller_manages_is_not_queued() -> None:
    job = video_job()
    job["spec"]["managedBy"] = "kueue.x-k8s.io/multikueue"
    job["spec"].pop("suspend")
    job["metadata"]["annotations"] = {keys.ENQUEUE_TIMESTAMP: "2025-01-10 01:36:20 +0000 UTC"}
    verdict, out = mutate(review(job))
    assert verdict.allowed
    assert "suspend" not in out["spec"], "the other controller runs it: rayqueue would never lift a suspend"
    assert keys.ENQUEUE_TIMESTAMP not in (out["metadata"].get("annotations") or {}), \
        "without the enqueue stamp the controller makes no QueueUnit and holds no claim"
    assert any("rayqueue does not queue it" in w and "multikueue" in w for w in verdict.warnings)
    assert validate(review(out)).allowed


@pytest.mark.parametrize(("before", "after"), [
    pytest.param(None, "kueue.x-k8s.io/multikueue", id="added"),
    pytest.param("ray.io/kuberay-operator", "someone/else", id="changed from KubeRay's own value"),
])
def test_managed_by_may_not_be_added_or_changed_on_a_queued_job(before: str | None, after: str) -> None:
    old = queued()
    if before is not None:
        old["spec"]["managedBy"] = before
    new = copy.deepcopy(old)
    new["spec"]["managedBy"] = after
    for user in (ALICE, CONTROLLER):
        verdict = validate(review(new, op="UPDATE", old=old, user=user))
        assert not verdict.allowed
        assert verdict.message.startswith("rayqueue: RayJob video/") and "rule managed-by" in verdict.message
        assert f"{before!r} -> {after!r}" in verdict.message

"""The webhook's RayCluster rules: a bare RayCluster in a bound namespace is queued like a RayJob, with the same
tenant guards; a RayCluster naming a RayJob as its controller must be that job's own."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from common import keys
from tests.unit.builders import make_rayjob
from tests.unit.test_webhook_policy import (
    ALICE,
    CFG,
    CFG_SCHED,
    CONTROLLER,
    NOW,
    SNAP,
    mutate,
    review,
    validate,
)
from webhook.policy import ClusterFacts, ClusterLookup, owner_target

CLUSTER = {"resource": "rayclusters", "kind": "RayCluster"}


def notebook(*, gang: bool = False, workers: int = 2) -> dict[str, Any]:
    """A tenant's interactive RayCluster as created: no ownerReference, no suspend."""
    b = make_rayjob("nb", "video").head(cpu="2", memory="4Gi").workers(workers, cpu="2", memory="4Gi", group="w")
    if gang:
        b.gang()
    obj = b.as_raycluster()
    obj["spec"].pop("suspend", None)
    return obj


def queued_cluster(**annotations: str) -> dict[str, Any]:
    """A bare cluster as the mutation leaves it (then the given annotations)."""
    _, out = mutate(review(notebook(), **CLUSTER))
    out["metadata"]["annotations"].update(annotations)
    return out


def admitted_cluster() -> dict[str, Any]:
    obj = queued_cluster(**{keys.DEQUEUE_TIMESTAMP: "2025-01-10 01:36:30 +0000 UTC",
                            keys.ADMITTED_REPLICAS: '{"w":2}'})
    obj["spec"]["suspend"] = False
    return obj


def owned_by_job(uid: str = "uid-video-j") -> dict[str, Any]:
    obj = notebook()
    obj["metadata"]["name"] = "j-abcde"
    obj["metadata"]["ownerReferences"] = [{"apiVersion": "ray.io/v1", "kind": "RayJob", "name": "j", "uid": uid,
                                           "controller": True, "blockOwnerDeletion": True}]
    return obj


# --- mutation --------------------------------------------------------------------------------------------------


def test_a_bare_cluster_is_suspended_stamped_and_labelled_at_create() -> None:
    obj = notebook()
    obj["metadata"]["annotations"] = {keys.DEQUEUE_TIMESTAMP: "forged", keys.ADMITTED_REPLICAS: '{"w":9}'}
    verdict, out = mutate(review(obj, **CLUSTER))
    assert out["spec"]["suspend"] is True
    assert out["metadata"]["annotations"] == {keys.ENQUEUE_TIMESTAMP: "2025-01-10 01:36:24.298639916 +0000 UTC"}
    assert out["metadata"]["labels"][keys.QUOTA_NAME] == "algorithm-video"
    assert any("queued in root/algorithm/video" in w and "nb-rc-qu" in w for w in verdict.warnings)
    _, again = mutate(review(out, **CLUSTER))
    assert again == out, "reinvocation changes nothing"


def test_a_gang_cluster_gets_min_available_in_every_template_and_the_scheduler_name() -> None:
    _, out = mutate(review(notebook(gang=True, workers=3), **CLUSTER), CFG_SCHED)
    templates = [out["spec"]["headGroupSpec"]["template"], out["spec"]["workerGroupSpecs"][0]["template"]]
    assert [t["metadata"]["labels"][keys.POD_GROUP_MIN_AVAILABLE] for t in templates] == ["4", "4"]
    assert [t["spec"]["schedulerName"] for t in templates] == ["rayqueue-scheduler"] * 2


@pytest.mark.parametrize(
    "obj",
    [pytest.param(owned_by_job(), id="a RayJob's cluster (KubeRay's)"),
     pytest.param({**notebook(), "metadata": {**notebook()["metadata"], "ownerReferences": [
         {"apiVersion": "ray.io/v1", "kind": "RayService", "name": "svc", "uid": "u", "controller": True}]}},
         id="a RayService's cluster")],
)
def test_a_cluster_with_a_controller_is_not_queued(obj: dict[str, Any]) -> None:
    verdict, out = mutate(review(obj, **CLUSTER))
    assert verdict.patch == () and out == obj


def test_a_cluster_in_an_unbound_namespace_is_untouched() -> None:
    obj = notebook()
    obj["metadata"]["namespace"] = "elsewhere"
    verdict, _ = mutate(review(obj, **CLUSTER))
    assert verdict.patch == ()


# --- rule raycluster-owner -------------------------------------------------------------------------------------


def with_owner(lookup: ClusterLookup) -> ClusterFacts:
    return ClusterFacts(tree=SNAP.tree, now_ns=NOW, priority_classes=SNAP.priority_classes,
                    owner_jobs={"video/j": lookup})


def test_the_adapter_reads_the_rayjob_a_new_cluster_names_as_its_controller() -> None:
    assert owner_target(review(owned_by_job(), **CLUSTER), SNAP) == "video/j"
    assert owner_target(review(notebook(), **CLUSTER), SNAP) is None


@pytest.mark.parametrize(
    ("lookup", "allowed", "says"),
    [
        pytest.param(ClusterLookup(obj={"metadata": {"name": "j", "uid": "uid-video-j"}}), True, "",
                     id="the RayJob exists with that uid: its own cluster"),
        pytest.param(ClusterLookup(), False, "names RayJob video/j, which does not exist",
                     id="a missing RayJob is refused"),
        pytest.param(ClusterLookup(obj={"metadata": {"name": "j", "uid": "uid-other"}}), False,
                     "with uid 'uid-video-j', but that RayJob's uid is 'uid-other'",
                     id="a RayJob of that name with another uid is refused"),
        pytest.param(ClusterLookup(error="the API answered 503"), False, "could not check RayJob video/j",
                     id="an unreadable RayJob is refused"),
    ],
)
def test_a_cluster_claiming_a_rayjob_controller_must_be_that_job_s(lookup: ClusterLookup, allowed: bool,
                                                                    says: str) -> None:
    verdict = validate(review(owned_by_job(), **CLUSTER), snap=with_owner(lookup))
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.message.startswith("rayqueue: RayCluster video/j-abcde: rule raycluster-owner: ")
        assert says in verdict.message


# --- the tenant guards -----------------------------------------------------------------------------------------


def test_a_tenant_cannot_resume_a_queued_cluster_but_the_controller_can() -> None:
    old = queued_cluster()
    new = copy.deepcopy(old)
    new["spec"]["suspend"] = False
    verdict = validate(review(new, op="UPDATE", old=old, **CLUSTER))
    assert not verdict.allowed
    assert verdict.message.startswith(
        "rayqueue: RayCluster video/nb is queued in queue root-algorithm-video (quota root/algorithm/video): rule "
        "resume: only the queue controller may set spec.suspend true -> false")
    assert "kubectl get queueunit nb-rc-qu -n video" in verdict.message
    assert validate(review(new, op="UPDATE", old=old, user=CONTROLLER, **CLUSTER)).allowed


@pytest.mark.parametrize(
    ("key", "value"),
    [pytest.param(keys.DEQUEUE_TIMESTAMP, "2025-01-10 01:36:25 +0000 UTC", id="adding a dequeue stamp"),
     pytest.param(keys.ENQUEUE_TIMESTAMP, "2020-01-01 00:00:00 +0000 UTC", id="back-dating the enqueue stamp"),
     pytest.param(keys.ADMITTED_REPLICAS, '{"w":50}', id="forging the admitted size"),
     pytest.param(keys.PREEMPTION_NOTICE, '{"deadline":"2030-01-01T00:00:00Z"}', id="forging a preemption notice")],
)
def test_a_tenant_cannot_touch_the_controller_s_annotations_of_a_cluster(key: str, value: str) -> None:
    old = queued_cluster()
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][key] = value
    verdict = validate(review(new, op="UPDATE", old=old, **CLUSTER))
    assert not verdict.allowed
    assert f"rule controller-annotations: only the queue controller may change annotation {key}" in verdict.message


def test_a_tenant_cannot_move_a_queued_cluster_to_another_quota() -> None:
    old = queued_cluster()
    new = copy.deepcopy(old)
    new["metadata"]["labels"][keys.QUOTA_NAME] = "algorithm-text"
    verdict = validate(review(new, op="UPDATE", old=old, **CLUSTER))
    assert not verdict.allowed and "algorithm-text" in verdict.message and "names another quota" in verdict.message


def test_a_queued_cluster_cannot_be_handed_to_a_rayjob() -> None:
    old = queued_cluster()
    new = copy.deepcopy(old)
    new["metadata"]["ownerReferences"] = owned_by_job()["metadata"]["ownerReferences"]
    verdict = validate(review(new, op="UPDATE", old=old, **CLUSTER))
    assert not verdict.allowed
    assert "rule fixed-cluster-owner: its controller ownerReference may not change (None None -> RayJob " \
           "'uid-video-j')" in verdict.message


def test_an_admitted_cluster_may_scale_but_not_grow_its_pods() -> None:
    old = admitted_cluster()
    scaled = copy.deepcopy(old)
    scaled["spec"]["workerGroupSpecs"][0]["replicas"] = 5
    assert validate(review(scaled, op="UPDATE", old=old, **CLUSTER)).allowed, "more workers are growth"
    bigger = copy.deepcopy(old)
    bigger["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "8"
    verdict = validate(review(bigger, op="UPDATE", old=old, **CLUSTER))
    assert not verdict.allowed
    assert ("rule admitted-cluster-pods: the cluster was admitted in queue root-algorithm-video (quota "
            "root/algorithm/video); the per-pod request of worker group 'w' may not change from "
            "{cpu: 2, memory: 4Gi} to {cpu: 8, memory: 4Gi} while it runs") in verdict.message


def test_a_tenant_may_suspend_their_admitted_cluster() -> None:
    old = admitted_cluster()
    new = copy.deepcopy(old)
    new["spec"]["suspend"] = True
    assert validate(review(new, op="UPDATE", old=old, **CLUSTER)).allowed


def test_raising_a_cluster_s_priority_needs_permission_and_is_recorded() -> None:
    old = queued_cluster()
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][keys.PRIORITY_OVERRIDE] = "10"
    _, new = mutate(review(new, op="UPDATE", old=old, **CLUSTER))
    assert new["metadata"]["annotations"][keys.PRIORITY_CHANGE_RECORD].startswith("alice changed priority 0 -> 10")
    checked = validate(review(new, op="UPDATE", old=old, **CLUSTER))
    assert checked.allowed and checked.requires is not None
    assert checked.requires.denied_message == (
        "rayqueue: RayCluster video/nb: rule priority-raise: raising priority 0 -> 10 needs permission to patch "
        "queueunits.scheduling.x-k8s.io in namespace 'video', which alice does not have")


def test_a_rayjob_s_cluster_is_left_to_kuberay_and_the_autoscaler() -> None:
    """A RayJob's cluster is not queued on its own: KubeRay and the autoscaler edit it freely (its pods are the
    job's, beyond its reservation growth)."""
    old = owned_by_job()
    new = copy.deepcopy(old)
    new["spec"]["workerGroupSpecs"][0]["replicas"] = 4
    new["spec"]["suspend"] = False
    assert validate(review(new, op="UPDATE", old=old, user=ALICE, **CLUSTER), CFG).allowed


# --- liveness: KubeRay's refusals of a bare cluster, and clusters of other controllers (issue 23) -------------
def test_a_bare_cluster_kuberay_would_refuse_is_refused_at_create_in_its_words() -> None:
    """ValidateRayClusterMetadata: a name over 53 characters gets no pods from KubeRay, ever; admitted, it would
    hold its claim with zero pods until someone deletes it."""
    obj = notebook()
    obj["metadata"]["name"] = "n" * 60
    _, out = mutate(review(obj, **CLUSTER))
    verdict = validate(review(out, **CLUSTER))
    assert not verdict.allowed
    assert verdict.message.startswith(f"rayqueue: RayCluster video/{'n' * 60}: rule kuberay-validation: KubeRay "
                                      "would refuse this cluster after admission (it would never get a pod")
    assert "53" in verdict.message
    assert validate(review(mutate(review(notebook(), **CLUSTER))[1], **CLUSTER)).allowed


def test_a_bare_cluster_another_controller_manages_is_not_queued() -> None:
    obj = notebook()
    obj["spec"]["managedBy"] = "kueue.x-k8s.io/multikueue"
    verdict, out = mutate(review(obj, **CLUSTER))
    assert verdict.allowed and "suspend" not in out["spec"]
    assert keys.ENQUEUE_TIMESTAMP not in (out["metadata"].get("annotations") or {})
    assert any("rayqueue does not queue it" in w for w in verdict.warnings)


def test_managed_by_may_not_be_added_to_a_queued_cluster() -> None:
    old = queued_cluster()
    new = copy.deepcopy(old)
    new["spec"]["managedBy"] = "kueue.x-k8s.io/multikueue"
    for user in (ALICE, CONTROLLER):
        verdict = validate(review(new, op="UPDATE", old=old, user=user, **CLUSTER))
        assert not verdict.allowed and "rule managed-by" in verdict.message

"""The webhook against the real kube-apiserver: registered by URL with the shipped configurations, called
over TLS by the apiserver; kubectl as the tenant alice (edit in her namespaces only) and as admins."""

from __future__ import annotations

import copy
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import keys
from common.gotime import parse_go
from devcluster.cluster import TENANT, LocalCluster
from devcluster.services import Webhook, install_seed_tree, remove_seed_tree, start_webhook, stop_webhook
from devcluster.waiting import wait_for
from tests.cluster.journey import LEAD, docs  # LEAD: edit in video plus the right to patch QueueUnits


def seed_job(file: str = "video-rayjob.yaml") -> dict[str, Any]:
    return copy.deepcopy(next(d for d in docs(file) if d["kind"] == "RayJob"))


def tree_obj() -> dict[str, Any]:
    return next(d for d in docs("elasticquotatree.yaml") if d["kind"] == "ElasticQuotaTree")


@pytest.fixture(scope="module")
def webhook(cluster: LocalCluster) -> Iterator[Webhook]:
    hook = start_webhook(cluster)
    try:
        install_seed_tree(cluster, tree=False)
        for ns in ("video", "algorithm-text"):
            cluster.grant(TENANT, ns)
        cluster.add_user(LEAD, ["leads"])
        cluster.grant(LEAD, "video")
        cluster.apply({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "queueunit-priority", "namespace": "video"},
            "rules": [{"apiGroups": [keys.QUEUE_GROUP], "resources": [keys.QUEUE_UNIT_PLURAL], "verbs": ["patch"]}],
        })
        cluster.apply({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "lead-queueunit-priority", "namespace": "video"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "queueunit-priority"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": LEAD}],
        })
        created = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(tree_obj()), check=False)
        assert created.returncode == 0, created.stderr

        def bound() -> bool:  # the webhook has seen the tree: a dry-run create in video comes back queued
            out = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", "-n", "video",
                                  input=yaml.safe_dump(seed_job()), check=False)
            return out.returncode == 0 and json.loads(out.stdout)["spec"].get("suspend") is True \
                and keys.ENQUEUE_TIMESTAMP in json.loads(out.stdout)["metadata"].get("annotations", {})

        wait_for(bound, 30.0, "the webhook to load the ElasticQuotaTree")
        yield hook
    finally:
        stop_webhook(cluster, hook)
        remove_seed_tree(cluster)


def kubectl_json(cluster: LocalCluster, *args: str, user: str | None = None, input: str | None = None) -> dict[str, Any]:
    out = cluster.kubectl(*args, "-o", "json", as_user=user, input=input, check=False)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def create_queued(cluster: LocalCluster, job: dict[str, Any] | None = None, user: str = TENANT) -> dict[str, Any]:
    return kubectl_json(cluster, "create", "-f", "-", "-n", "video", user=user, input=yaml.safe_dump(job or seed_job()))


def denied(cluster: LocalCluster, *args: str, user: str = TENANT, input: str | None = None) -> str:
    out = cluster.kubectl(*args, as_user=user, input=input, check=False)
    assert out.returncode != 0, f"expected a denial, kubectl said: {out.stdout}"
    return out.stderr


def test_kubectl_create_of_the_seed_video_job_comes_back_queued(cluster: LocalCluster, webhook: Webhook) -> None:
    out = cluster.kubectl("create", "-f", "-", "-n", "video", "-o", "json", as_user=TENANT,
                          input=yaml.safe_dump(seed_job()), check=False)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", "no error and no warning for the guide's job (it already sets shutdownAfterJobFinishes)"
    job = json.loads(out.stdout)
    assert job["metadata"]["name"].startswith("rayjob-video-")
    assert job["spec"]["suspend"] is True
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    stamp = job["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,9})? \+0000 UTC", stamp), stamp
    parse_go(stamp)
    assert keys.DEQUEUE_TIMESTAMP not in job["metadata"]["annotations"]
    assert job["metadata"]["labels"] == {"job-type": "video", keys.QUOTA_NAME: "algorithm-video"}


def test_a_job_created_without_shutdown_after_finish_gets_it_with_a_kubectl_warning(
    cluster: LocalCluster, webhook: Webhook
) -> None:
    job = seed_job()
    del job["spec"]["shutdownAfterJobFinishes"]
    out = cluster.kubectl("create", "-f", "-", "-n", "video", "-o", "json", as_user=TENANT,
                          input=yaml.safe_dump(job), check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["spec"]["shutdownAfterJobFinishes"] is True
    assert "Warning: rayqueue: set spec.shutdownAfterJobFinishes=true" in out.stderr


def test_the_gang_job_gets_min_available_31_in_its_templates(cluster: LocalCluster, webhook: Webhook) -> None:
    job = kubectl_json(cluster, "create", "-f", "-", "-n", "algorithm-text", user=TENANT,
                       input=yaml.safe_dump(seed_job("gang-rayjob.yaml")))
    for template in (job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"],
                     job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]):
        assert template["metadata"]["labels"][keys.POD_GROUP_MIN_AVAILABLE] == "31"
        assert template["metadata"]["labels"][keys.QUOTA_NAME] == "algorithm-text"


def test_a_job_in_a_namespace_bound_to_no_quota_is_untouched(cluster: LocalCluster, webhook: Webhook,
                                                             namespace: str) -> None:
    job = seed_job()
    job["metadata"]["namespace"] = namespace
    job["spec"]["suspend"] = False
    created = kubectl_json(cluster, "create", "-f", "-", "-n", namespace, user=TENANT, input=yaml.safe_dump(job))
    assert created["spec"]["suspend"] is False
    assert keys.ENQUEUE_TIMESTAMP not in (created["metadata"].get("annotations") or {})


def test_alice_cannot_resume_her_queued_job(cluster: LocalCluster, webhook: Webhook) -> None:
    name = create_queued(cluster)["metadata"]["name"]
    message = denied(cluster, "patch", "rayjob", name, "-n", "video", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    assert f"rayqueue: RayJob video/{name} is queued in queue root-algorithm-video (quota root/algorithm/video): " \
           "rule resume: only the queue controller may set spec.suspend true -> false" in message
    assert "admission webhook \"rayjobs.validate.rayqueue.io\" denied the request" in message


@pytest.mark.parametrize(
    "key", [keys.ENQUEUE_TIMESTAMP, keys.DEQUEUE_TIMESTAMP], ids=["back-dating the enqueue stamp", "adding a dequeue stamp"])
def test_alice_cannot_write_the_queue_annotations(cluster: LocalCluster, webhook: Webhook, key: str) -> None:
    name = create_queued(cluster)["metadata"]["name"]
    message = denied(cluster, "annotate", "rayjob", name, "-n", "video", "--overwrite",
                     f"{key}=2020-01-01 00:00:00 +0000 UTC")
    assert f"rule controller-annotations: only the queue controller may change annotation {key}" in message


def test_alice_cannot_charge_another_teams_quota(cluster: LocalCluster, webhook: Webhook) -> None:
    job = seed_job()
    job["metadata"]["labels"][keys.QUOTA_NAME] = "algorithm-text"
    message = denied(cluster, "create", "-f", "-", "-n", "video", input=yaml.safe_dump(job))
    assert "label quota.scheduling.alibabacloud.com/name='algorithm-text' names another quota; namespace " \
           "'video' is bound to root/algorithm/video" in message


def test_raising_priority_needs_permission_and_is_recorded(cluster: LocalCluster, webhook: Webhook) -> None:
    name = create_queued(cluster)["metadata"]["name"]
    message = denied(cluster, "annotate", "rayjob", name, "-n", "video", f"{keys.PRIORITY_OVERRIDE}=100")
    assert "rule priority-raise: raising priority 0 -> 100 needs permission to patch " \
           "queueunits.scheduling.x-k8s.io in namespace 'video', which alice does not have" in message
    raised = kubectl_json(cluster, "annotate", "rayjob", name, "-n", "video", f"{keys.PRIORITY_OVERRIDE}=100", user=LEAD)
    record = raised["metadata"]["annotations"][keys.PRIORITY_CHANGE_RECORD]
    assert record.startswith("lead changed priority 0 -> 100 at ")
    lowered = kubectl_json(cluster, "annotate", "rayjob", name, "-n", "video", "--overwrite",
                           f"{keys.PRIORITY_OVERRIDE}=5", user=TENANT)
    assert lowered["metadata"]["annotations"][keys.PRIORITY_CHANGE_RECORD].startswith("alice changed priority 100 -> 5")


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "p-", "namespace": "video"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def test_a_pod_in_a_bound_namespace_gets_the_quota_label(cluster: LocalCluster, webhook: Webhook) -> None:
    created = kubectl_json(cluster, "create", "-f", "-", user=TENANT, input=yaml.safe_dump(pod()))
    assert created["metadata"]["labels"] == {keys.QUOTA_NAME: "algorithm-video"}


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        pytest.param({"nodeName": "n1"}, "rule no-node-name: spec.nodeName 'n1' is set by alice", id="pre-set nodeName"),
        pytest.param({"schedulerName": "my-scheduler"}, "rule scheduler-name: schedulerName 'my-scheduler'", id="another scheduler"),
    ],
)
def test_alice_cannot_place_her_own_pods(cluster: LocalCluster, webhook: Webhook, spec: dict[str, Any], rule: str) -> None:
    assert rule in denied(cluster, "create", "-f", "-", input=yaml.safe_dump(pod(**spec)))


def test_binding_is_refused_even_when_rbac_would_allow_it(cluster: LocalCluster, webhook: Webhook) -> None:
    """Defence in depth: give alice RBAC rights to bind in video; the webhook still refuses both endpoints."""
    cluster.apply({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "binder", "namespace": "video"},
        "rules": [{"apiGroups": [""], "resources": ["pods/binding", "bindings"], "verbs": ["create"]}],
    })
    cluster.apply({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-binder", "namespace": "video"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "binder"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}],
    })
    name = kubectl_json(cluster, "create", "-f", "-", user=TENANT, input=yaml.safe_dump(pod()))["metadata"]["name"]
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": "video"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}

    def can_bind() -> bool:  # RBAC caches settle quickly; wait until the denial is the webhook's
        out = cluster.kubectl("create", "-f", "-", as_user=TENANT, input=yaml.safe_dump(binding), check=False)
        return "rule binding-identity" in out.stderr

    wait_for(can_bind, 20.0, "alice's bind attempt to reach the webhook")
    raw = cluster.kubectl("create", "--raw", f"/api/v1/namespaces/video/pods/{name}/binding", "-f", "-",
                          as_user=TENANT, input=json.dumps(binding), check=False)
    assert raw.returncode != 0
    assert "rule binding-identity: alice may not bind pods in namespace 'video' (to node 'n1')" in raw.stderr


def test_an_invalid_tree_is_refused_with_all_its_errors(cluster: LocalCluster, webhook: Webhook) -> None:
    tree = tree_obj()
    video = tree["spec"]["root"]["children"][0]["children"][0]
    video["min"]["cpu"] = 20
    tree["spec"]["root"]["children"][1]["children"][0]["namespaces"] = ["video"]
    message = denied(cluster, "apply", "-f", "-", user="admin", input=yaml.safe_dump(tree))
    assert message.startswith('The ElasticQuotaTree "elasticquotatree" is invalid: \n'), message
    assert message.splitlines()[1:] == [
        "* spec.root.children[0].children[0].min.cpu: min 20 > max 14",
        "* spec.root.children[0].min.cpu: children's min adds up to 52 > min 50 (video 20, text 32)",
        "* spec.root.children[0].children[0].namespaces[0]: namespace 'video' is bound to more than one leaf "
        "(also at spec.root.children[1].children[0].namespaces[0])",
        "* spec.root.children[1].children[0].namespaces[0]: namespace 'video' is bound to more than one leaf "
        "(also at spec.root.children[0].children[0].namespaces[0])",
    ], "every error is listed with its field path"


def test_certs_inject_live_sets_the_ca_bundle_on_every_webhook(cluster: LocalCluster, webhook: Webhook,
                                                                tmp_path: Path) -> None:
    """`rayqueue-certs inject-live` patches the live configurations; the webhook keeps answering through them."""
    import base64
    import subprocess
    import sys

    bundle = tmp_path / "ca-bundle.crt"
    bundle.write_bytes(webhook.ca_pem + webhook.ca_pem)  # an overlap bundle, as during a CA roll
    done = subprocess.run(
        [sys.executable, "-m", "certs", "inject-live", f"--ca={bundle}", f"--kubeconfig={cluster.admin_kubeconfig}",
         "--mutating=rayqueue", "--validating=rayqueue"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        obj = kubectl_json(cluster, "get", kind, "rayqueue")
        assert [base64.b64decode(h["clientConfig"]["caBundle"]) for h in obj["webhooks"]] == \
            [bundle.read_bytes()] * len(obj["webhooks"])
    assert create_queued(cluster)["spec"]["suspend"] is True, "the apiserver still trusts the webhook"


# --- what KubeRay would refuse after admission is refused at create (common/kuberay_rules.py) ---------------
def test_a_rayjob_name_of_48_characters_is_refused_at_create_in_kuberays_words(cluster: LocalCluster,
                                                                                webhook: Webhook) -> None:
    """KubeRay (ValidateRayJobMetadata) would set such a job ValidationFailed after we admitted it, holding its
    quota for ever; alice hears KubeRay's sentence from kubectl instead, and nothing is created."""
    job = seed_job()
    name = "a" * 48
    del job["metadata"]["generateName"]
    job["metadata"]["name"] = name
    message = denied(cluster, "create", "-f", "-", "-n", "video", input=yaml.safe_dump(job))
    assert "admission webhook \"rayjobs.validate.rayqueue.io\" denied the request: " \
           f"rayqueue: RayJob video/{name}: rule kuberay-validation: KubeRay would refuse this job after admission" \
           in message
    assert "metadata.name: The RayJob metadata is invalid: RayJob name should be no more than 47 characters " \
           "[KubeRay ValidateRayJobMetadata, v1.4+]" in message
    assert cluster.kubectl("get", "rayjob", name, "-n", "video", check=False).returncode != 0
    job["metadata"]["name"] = name[:47]
    assert create_queued(cluster, job)["metadata"]["name"] == name[:47], "47 characters are fine"


def test_min_replicas_above_max_replicas_is_refused_at_create(cluster: LocalCluster, webhook: Webhook) -> None:
    job = seed_job()
    group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    group["minReplicas"], group["maxReplicas"] = 3, 2
    message = denied(cluster, "create", "-f", "-", "-n", "video", input=yaml.safe_dump(job))
    assert (f"spec.rayClusterSpec.workerGroupSpecs[0].minReplicas: The RayJob spec is invalid: worker group "
            f"{group['groupName']} has minReplicas {group['minReplicas']} greater than maxReplicas "
            f"{group['maxReplicas']} [KubeRay ValidateRayClusterSpec, v1.6+]") in message


def test_a_cluster_selector_job_runs_unqueued_on_an_existing_cluster_and_may_not_be_suspended(
    cluster: LocalCluster, webhook: Webhook
) -> None:
    """The documented rule: a clusterSelector job is not queued (KubeRay cannot suspend it); it may select only an
    existing RayCluster that is not waiting in a queue; asking to suspend it is refused with KubeRay's reason."""
    target = f"shared-{secrets.token_hex(3)}"
    job = seed_job()
    job["spec"]["clusterSelector"] = {keys.RAY_CLUSTER: target}
    job["spec"].pop("rayClusterSpec")
    job["spec"].pop("ttlSecondsAfterFinished", None)
    suspended = denied(cluster, "create", "-f", "-", "-n", "video", input=yaml.safe_dump(job))
    assert "rule cluster-selector: a RayJob with spec.clusterSelector runs on an existing RayCluster and is not " \
           "queued" in suspended
    assert "The RayJob spec is invalid: the ClusterSelector mode doesn't support the suspend operation" in suspended
    del job["spec"]["suspend"]
    missing = denied(cluster, "create", "-f", "-", "-n", "video", input=yaml.safe_dump(job))
    assert f"rule cluster-selector-target: the selected RayCluster video/{target} does not exist" in missing
    raycluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": target, "namespace": "video"},
                  "spec": {"suspend": True, "headGroupSpec": seed_job()["spec"]["rayClusterSpec"]["headGroupSpec"]}}
    kubectl_json(cluster, "create", "-f", "-", user=TENANT, input=yaml.safe_dump(raycluster))  # queued (rule R1)
    waiting = denied(cluster, "create", "-f", "-", "-n", "video", input=yaml.safe_dump(job))
    assert f"rule cluster-selector-target: the selected RayCluster video/{target} is waiting in a queue" in waiting
    resume = '{"spec":{"suspend":false}}'
    refused = cluster.kubectl("patch", "raycluster", target, "-n", "video", "--type=merge", "-p", resume,
                              as_user=TENANT, check=False)
    assert refused.returncode != 0 and "rule resume" in refused.stderr, "alice cannot start her queued cluster"
    dequeue = json.dumps({"metadata": {"annotations": {keys.DEQUEUE_TIMESTAMP: "2025-01-10 01:36:25 +0000 UTC"}},
                          "spec": {"suspend": False}})
    kubectl_json(cluster, "patch", "raycluster", target, "-n", "video", "--type=merge", "-p", dequeue,
                 user="admin")  # no controller runs here: the admin dequeues it as the controller would
    created = create_queued(cluster, job)
    assert "suspend" not in created["spec"], "not queued: KubeRay runs it on the existing cluster at once"
    assert keys.ENQUEUE_TIMESTAMP not in (created["metadata"].get("annotations") or {})
    assert created["metadata"]["labels"][keys.QUOTA_NAME] == "algorithm-video", "its submitter pod is charged here"


def test_a_pod_kuberays_batch_scheduler_mode_made_is_refused_naming_the_flag(cluster: LocalCluster,
                                                                              webhook: Webhook) -> None:
    """A head pod as KubeRay with --batch-scheduler=yunikorn makes it (schedulerName overwritten); the denial, which
    the operator's admin finds in the RayCluster's events, names the flag instead of a bare schedulerName refusal."""
    head = pod(schedulerName="yunikorn")
    head["metadata"]["labels"] = {keys.KUBERNETES_CREATED_BY: keys.KUBERAY_OPERATOR, keys.RAY_CLUSTER: "c",
                                  keys.RAY_NODE_TYPE: "head"}
    head["metadata"]["ownerReferences"] = [{"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": "c",
                                            "uid": "00000000-0000-0000-0000-000000000001", "controller": True}]
    message = denied(cluster, "create", "-f", "-", input=yaml.safe_dump(head))  # alice stands in for the operator
    assert "rule kuberay-batch-scheduler: schedulerName 'yunikorn' was written by the KubeRay operator, whose " \
           "batch-scheduler mode is on" in message
    assert "Remove --batch-scheduler=yunikorn (or batchScheduler: yunikorn in its Configuration file)" in message


# --- the pod webhooks see only quota namespaces (docs/security.md, rules N1-N4) ------------------------------------
def pod_requests(webhook: Webhook) -> float:
    """The webhook's own count of Pod admission requests answered (rayqueue_webhook_requests, both paths)."""
    import ssl
    import urllib.request

    context = ssl.create_default_context(cadata=webhook.ca_pem.decode())
    with urllib.request.urlopen(f"{webhook.url}/metrics", context=context, timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("rayqueue_webhook_requests_total{") and 'kind="Pod"' in line)


@pytest.fixture
def unlabelled(cluster: LocalCluster) -> Iterator[str]:
    """A namespace without the quota-namespace label (alice has edit there): rayqueue never sees its pods."""
    name = cluster.create_namespace(f"unmanaged-{secrets.token_hex(2)}", tenants=[TENANT], quota=False)
    yield name
    cluster.delete_namespace(name)


def test_a_pod_of_an_unlabelled_namespace_never_reaches_the_webhook_while_one_of_a_bound_namespace_does(
        cluster: LocalCluster, webhook: Webhook, unlabelled: str) -> None:
    before = pod_requests(webhook)
    plain = pod(nodeName="n1")  # a pre-set node: the webhook would refuse it (P1) in a bound namespace
    plain["metadata"]["namespace"] = unlabelled
    created = kubectl_json(cluster, "create", "-f", "-", user=TENANT, input=yaml.safe_dump(plain))
    assert created["spec"]["nodeName"] == "n1" and keys.QUOTA_NAME not in (created["metadata"].get("labels") or {})
    assert pod_requests(webhook) == before, "no Pod request of the unlabelled namespace reached the webhook"
    kubectl_json(cluster, "create", "-f", "-", user=TENANT, input=yaml.safe_dump(pod()))
    assert pod_requests(webhook) == before + 2, "a pod of a bound namespace is mutated and validated"


def test_a_tenant_who_may_patch_her_namespace_cannot_remove_its_label_while_it_is_bound(
        cluster: LocalCluster, webhook: Webhook) -> None:
    """A RoleBinding applies to the Namespace object of its own namespace: alice, given patch on namespaces in
    video, could edit video's labels; rule N2 keeps the one the pod webhooks select on."""
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "namespace-editor", "namespace": "video"},
                   "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "patch"]}]})
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "alice-namespace-editor", "namespace": "video"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "namespace-editor"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}]})
    remove = ("label", "namespace", "video", f"{keys.QUOTA_NAMESPACE_LABEL}-")

    def refused_by_the_webhook() -> bool:  # RBAC caches settle quickly; wait until the denial is the webhook's
        out = cluster.kubectl(*remove, as_user=TENANT, check=False)
        assert out.returncode != 0, "the label was removed"
        return "rule quota-namespace-kept" in out.stderr

    wait_for(refused_by_the_webhook, 20.0, "alice's label removal to reach the webhook")
    message = denied(cluster, *remove)
    assert "Namespace video: rule quota-namespace-kept: the ElasticQuotaTree kube-system/elasticquotatree binds it " \
           "to quota root/algorithm/video" in message and "alice may not remove it" in message, message
    assert "rule quota-namespace-kept" in denied(cluster, "label", "namespace", "video",
                                                 f"{keys.QUOTA_NAMESPACE_LABEL}=false", "--overwrite", user="admin")
    assert kubectl_json(cluster, "get", "namespace", "video")["metadata"]["labels"][keys.QUOTA_NAMESPACE_LABEL] == "true"


def test_a_tree_binding_an_unlabelled_namespace_is_refused_and_a_bound_namespace_created_again_is_labelled(
        cluster: LocalCluster, webhook: Webhook, unlabelled: str) -> None:
    tree = tree_obj()
    tree["spec"]["root"]["children"][0]["children"][0]["namespaces"].append(unlabelled)
    message = denied(cluster, "apply", "-f", "-", user="admin", input=yaml.safe_dump(tree))
    assert "ElasticQuotaTree kube-system/elasticquotatree: rule quota-namespace-label" in message, message
    assert f"namespace {unlabelled} (leaf root/algorithm/video) does not carry rayqueue.io/quota-namespace=true: " \
           f"label it first (kubectl label namespace {unlabelled} rayqueue.io/quota-namespace=true)" in message
    try:
        cluster.kubectl("label", "namespace", unlabelled, f"{keys.QUOTA_NAMESPACE_LABEL}=true")
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(tree))  # labelled first: the binding is stored
        cluster.delete_namespace(unlabelled)
        wait_for(lambda: cluster.kubectl("get", "namespace", unlabelled, check=False).returncode != 0, 120.0,
                 f"namespace {unlabelled} to be deleted")
        again = kubectl_json(cluster, "create", "namespace", unlabelled, user="admin")  # rule N3
        assert again["metadata"]["labels"][keys.QUOTA_NAMESPACE_LABEL] == "true"
    finally:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(tree_obj()))

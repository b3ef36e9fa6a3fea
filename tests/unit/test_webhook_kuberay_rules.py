"""KubeRay v1.7's RayJob validation as common/kuberay_rules.py models it: every rule, in KubeRay's words."""

from __future__ import annotations

from typing import Any

import pytest

from common.kuberay_rules import FeatureGates, generated_name_sample, rayjob_problems
from tests.unit.builders import RayJobBuilder, container, make_rayjob

SPEC = "The RayJob spec is invalid: "
DNS1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
           "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
           "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
W = "spec.rayClusterSpec.workerGroupSpecs[0]"
HEAD = "spec.rayClusterSpec.headGroupSpec"


def job(name: str = "j") -> RayJobBuilder:
    """A job KubeRay accepts (suspended with shutdownAfterJobFinishes, one worker group 1..2)."""
    return make_rayjob(name, "video").head(cpu="1").workers(1, cpu="1", min_replicas=1, max_replicas=2)


def env(**values: str) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def rule(policy: str, *, job_status: str | None = "SUCCEEDED", deployment: str | None = None,
         ttl: int | None = None) -> dict[str, Any]:
    condition: dict[str, Any] = {}
    if job_status is not None:
        condition["jobStatus"] = job_status
    if deployment is not None:
        condition["jobDeploymentStatus"] = deployment
    if ttl is not None:
        condition["ttlSeconds"] = ttl
    return {"policy": policy, "condition": condition}


def legacy(success: str | None, failure: str | None) -> dict[str, Any]:
    return {"onSuccess": {"policy": success} if success else {}, "onFailure": {"policy": failure} if failure else {}}


def case(builder: RayJobBuilder, expected: list[tuple[str, str]], *, id: str,
         gates: FeatureGates | None = None) -> Any:
    return pytest.param(builder, expected, gates, id=id)


CASES = [
    # --- ValidateRayJobMetadata ---
    case(job("a" * 48), [("metadata.name", "The RayJob metadata is invalid: RayJob name should be no more "
                                  "than 47 characters")], id="a name of 48 characters is refused"),
    case(job("Video_Job"), [("metadata.name", "The RayJob metadata is invalid: RayJob name should be a valid "
                                     f"DNS1035 label: [{DNS1035}]")], id="a name that is not DNS-1035 is refused"),
    case(job("a" * 64), [
        ("metadata.name", "The RayJob metadata is invalid: RayJob name should be no more than 47 characters"),
        ("metadata.name", "The RayJob metadata is invalid: RayJob name should be a valid DNS1035 label: "
                          "[must be no more than 63 characters]"),
    ], id="a name over 63 characters breaks both metadata rules"),
    case(job("a" * 47), [], id="a name of exactly 47 characters is accepted"),
    case(job().generate_name("x" * 43), [("metadata.generateName", "The RayJob metadata is invalid: RayJob "
                                                  "name should be no more than 47 characters")],
                 id="a generateName prefix that leaves no room for the 5 random characters is refused"),
    # --- ValidateRayJobSpec ---
    case(job().shutdown_after_job_finishes(False), [
        ("spec.suspend", SPEC + "a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended"),
    ], id="suspend without shutdownAfterJobFinishes is refused"),
    case(job().set("spec.ttlSecondsAfterFinished", -1), [
        ("spec.ttlSecondsAfterFinished", SPEC + "TTLSecondsAfterFinished must be a non-negative integer")],
        id="a negative TTL is refused"),
    case(job().suspend(False).shutdown_after_job_finishes(False).set("spec.ttlSecondsAfterFinished", 60), [
        ("spec.ttlSecondsAfterFinished", SPEC + "a RayJob with shutdownAfterJobFinishes set to false cannot have "
                                                "TTLSecondsAfterFinished")], id="a TTL without shutdown is refused"),
    case(job().cluster_selector(**{"ray.io/cluster": "shared"}), [
        ("spec.suspend", SPEC + "the ClusterSelector mode doesn't support the suspend operation")],
        id="suspend with a clusterSelector is refused"),
    case(job().suspend(False).cluster_selector(**{"ray.io/cluster": "shared"}), [],
                 id="an unsuspended clusterSelector job is accepted"),
    case(job().set("spec.rayClusterSpec", None), [
        ("spec.rayClusterSpec", SPEC + "one of RayClusterSpec or ClusterSelector must be set")],
        id="a job with neither rayClusterSpec nor clusterSelector is refused"),
    case(job().suspend(False).cluster_selector(team="video"), [
        ("spec.clusterSelector[ray.io/cluster]", "cluster name in ClusterSelector should not be empty")],
        id="a clusterSelector without the ray.io/cluster name is refused"),
    case(job().suspend(False).cluster_selector(**{"ray.io/cluster": "c"}).submission_mode("SidecarMode"), [
        ("spec.submissionMode", "ClusterSelector is not supported in SidecarMode")],
        id="a clusterSelector in SidecarMode is refused"),
    case(job().suspend(False).cluster_selector(**{"ray.io/cluster": "c"}).set("spec.backoffLimit", 2), [
        ("spec.backoffLimit", SPEC + "BackoffLimit is incompatible with ClusterSelector mode")],
        id="retries with a clusterSelector are refused"),
    case(job().submission_mode("InteractiveMode").set("spec.backoffLimit", 1), [
        ("spec.backoffLimit", SPEC + "BackoffLimit is incompatible with InteractiveMode")],
        id="retries in InteractiveMode are refused"),
    case(job().submission_mode("SidecarMode").submitter(container("s")), [
        ("spec.submitterPodTemplate", "Currently, SidecarMode doesn't support SubmitterPodTemplate")],
        id="SidecarMode with a submitter template is refused"),
    case(job().submission_mode("SidecarMode").set("spec.submitterConfig", {"backoffLimit": 1}), [
        ("spec.submitterConfig", "Currently, SidecarMode doesn't support SubmitterConfig")],
        id="SidecarMode with a submitterConfig is refused"),
    case(job().submission_mode("SidecarMode").set(f"{HEAD}.template.spec.restartPolicy", "Always"), [
        (f"{HEAD}.template.spec.restartPolicy", "restartPolicy for head Pod should be Never or unset when using "
                                                "SidecarMode")], id="SidecarMode with a restarting head is refused"),
    case(job().set("spec.rayClusterSpec.authOptions", {"mode": "token", "enableK8sTokenAuth": True}).set(
        "spec.rayClusterSpec.rayVersion", "2.56.0"), [
        ("spec.rayClusterSpec.authOptions.enableK8sTokenAuth", SPEC + "K8s token auth mode is currently not "
                                                                      "supported for RayJob")],
        id="K8s token auth is refused for a RayJob"),
    case(job().set("spec.activeDeadlineSeconds", 0), [
        ("spec.activeDeadlineSeconds", SPEC + "activeDeadlineSeconds must be a positive integer")],
        id="a zero activeDeadlineSeconds is refused"),
    case(job().set("spec.preRunningDeadlineSeconds", -5), [
        ("spec.preRunningDeadlineSeconds", SPEC + "preRunningDeadlineSeconds must be a positive integer")],
        id="a negative preRunningDeadlineSeconds is refused"),
    case(job().set("spec.backoffLimit", -1), [
        ("spec.backoffLimit", SPEC + "backoffLimit must be a positive integer")], id="a negative backoffLimit is refused"),
    # --- validateDeletionConfiguration ---
    case(job().set("spec.deletionStrategy", {"deletionRules": [rule("DeleteCluster")]}), [
        ("spec.deletionStrategy.deletionRules", SPEC + "spec.shutdownAfterJobFinishes and "
                                                       "spec.deletionStrategy.deletionRules are mutually exclusive")],
        id="deletionRules with shutdownAfterJobFinishes are refused"),
    case(job().suspend(False).shutdown_after_job_finishes(False).set(
        "spec.deletionStrategy", {"deletionRules": [rule("DeleteCluster")], **legacy("DeleteCluster", "DeleteCluster")}), [
        ("spec.deletionStrategy", SPEC + "Cannot use both legacy onSuccess/onFailure fields and deletionRules "
                                         "simultaneously")], id="deletionRules with legacy policies are refused"),
    case(job().set("spec.deletionStrategy", {}), [
        ("spec.deletionStrategy", SPEC + "DeletionStrategy requires either BOTH onSuccess and onFailure, OR the "
                                         "deletionRules field (cannot be empty)")], id="an empty deletionStrategy is refused"),
    case(job().set("spec.deletionStrategy", {"onSuccess": {"policy": "DeleteCluster"}}), [
        ("spec.deletionStrategy", "both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set when "
                                  "using the legacy deletion policy fields of DeletionStrategy")],
        id="a legacy policy for success only is refused"),
    case(job().set("spec.deletionStrategy", legacy(None, "DeleteCluster")), [
        ("spec.deletionStrategy.onSuccess.policy", "the DeletionPolicyType field of DeletionStrategy.OnSuccess cannot "
                                                   "be unset when DeletionStrategy is enabled")],
        id="a legacy onSuccess without its policy is refused"),
    case(job().set("spec.deletionStrategy", legacy("DeleteNone", "DeleteCluster")), [
        ("spec.deletionStrategy", SPEC + "shutdownAfterJobFinshes is set to 'true' while deletion policy is "
                                         "'DeleteNone'")], id="legacy DeleteNone with shutdownAfterJobFinishes is refused"),
    case(job().set("spec.rayClusterSpec.enableInTreeAutoscaling", True).set(
        "spec.deletionStrategy", legacy("DeleteWorkers", "DeleteCluster")), [
        ("spec.deletionStrategy", "DeletionStrategy=DeleteWorkers currently does not support RayCluster with "
                                  "autoscaling enabled")], id="legacy DeleteWorkers with the autoscaler is refused"),
    case(job().suspend(False).cluster_selector(**{"ray.io/cluster": "c"}).set(
        "spec.deletionStrategy", legacy("DeleteSelf", "DeleteCluster")), [
        ("spec.deletionStrategy.onFailure.policy", "the ClusterSelector mode doesn't support "
                                                   "DeletionStrategy=DeleteCluster on failure")],
        id="legacy DeleteCluster with a clusterSelector is refused"),
    case(job().set("spec.deletionStrategy", legacy("DeleteSelf", "DeleteCluster")), [],
                 id="legacy DeleteSelf and DeleteCluster with shutdownAfterJobFinishes are accepted"),
    case(job().set("spec.deletionStrategy", legacy("DeleteCluster", "DeleteCluster")), [
        ("spec.deletionStrategy", "RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy")],
        gates=FeatureGates(ray_job_deletion_policy=False),
        id="a deletionStrategy with the RayJobDeletionPolicy gate off (KubeRay 1.5) is refused"),
    # --- validateDeletionRules ---
    case(job().suspend(False).shutdown_after_job_finishes(False).set("spec.deletionStrategy", {"deletionRules": [
        rule("DeleteCluster", job_status=None),
        rule("DeleteCluster", deployment="Failed"),
        rule("DeleteSelf", ttl=-1),
        rule("DeleteCluster", ttl=100),
        rule("DeleteCluster", ttl=5),
        rule("DeleteSelf", ttl=10),
    ]}), [
        ("spec.deletionStrategy.deletionRules[0].condition",
         "deletionRules[0]: exactly one of JobStatus and JobDeploymentStatus must be set"),
        ("spec.deletionStrategy.deletionRules[1].condition",
         "deletionRules[1]: cannot set both JobStatus and JobDeploymentStatus at the same time"),
        ("spec.deletionStrategy.deletionRules[2].condition.ttlSeconds", "deletionRules[2]: TTLSeconds must be non-negative"),
        ("spec.deletionStrategy.deletionRules[4]",
         "deletionRules[4]: duplicate rule for DeletionPolicyType 'DeleteCluster' and JobStatus 'SUCCEEDED'"),
        ("spec.deletionStrategy.deletionRules",
         "for JobStatus 'SUCCEEDED': DeleteSelf TTL (10) must be >= DeleteCluster TTL (100)"),
    ], id="every deletion rule problem is reported, as KubeRay joins them"),
    case(job().suspend(False).shutdown_after_job_finishes(False).cluster_selector(**{"ray.io/cluster": "c"}).set(
        "spec.deletionStrategy", {"deletionRules": [rule("DeleteWorkers")]}), [
        ("spec.deletionStrategy.deletionRules[0].policy",
         "deletionRules[0]: DeletionPolicyType 'DeleteWorkers' not supported when ClusterSelector is set")],
        id="a DeleteWorkers rule with a clusterSelector is refused"),
    case(job().suspend(False).shutdown_after_job_finishes(False).set(
        "spec.rayClusterSpec.enableInTreeAutoscaling", True).set(
        "spec.deletionStrategy", {"deletionRules": [rule("DeleteWorkers")]}), [
        ("spec.deletionStrategy.deletionRules[0].policy",
         "deletionRules[0]: DeletionPolicyType 'DeleteWorkers' not supported with autoscaling enabled")],
        id="a DeleteWorkers rule with the autoscaler is refused"),
    case(job().suspend(False).shutdown_after_job_finishes(False).set("spec.deletionStrategy", {"deletionRules": [
        rule("DeleteWorkers", ttl=0), rule("DeleteCluster", ttl=30), rule("DeleteSelf", ttl=60),
        rule("DeleteCluster", job_status=None, deployment="Failed")]}), [],
        id="well-ordered deletion rules without shutdown are accepted"),
    # --- ValidateRayClusterSpec ---
    case(job().set(f"{HEAD}.template.spec.containers", []), [
        (f"{HEAD}.template.spec.containers", SPEC + "headGroupSpec should have at least one container")],
        id="a head without containers is refused"),
    case(job().set(f"{W}.template.spec.containers", []), [
        (f"{W}.template.spec.containers", SPEC + "workerGroupSpec should have at least one container")],
        id="a worker group without containers is refused"),
    case(make_rayjob("j", "video").workers(2, cpu="1", min_replicas=3, max_replicas=1), [
        (f"{W}.minReplicas", SPEC + "worker group small-group has minReplicas 3 greater than maxReplicas 1")],
        id="minReplicas above maxReplicas is refused"),
    case(make_rayjob("j", "video").workers(1, cpu="1", min_replicas=-1), [
        (f"{W}.minReplicas", SPEC + "worker group small-group has negative minReplicas -1")],
        id="a negative minReplicas is refused"),
    case(make_rayjob("j", "video").workers(0, cpu="1", max_replicas=-2), [
        (f"{W}.maxReplicas", SPEC + "worker group small-group has negative maxReplicas -2"),
        (f"{W}.minReplicas", SPEC + "worker group small-group has minReplicas 0 greater than maxReplicas -2"),
    ], id="a negative maxReplicas is refused, and is below the default minReplicas too"),
    case(make_rayjob("j", "video").workers(2, cpu="1"), [],
                 id="min and max left out take the CRD defaults and are accepted"),
    case(job().set(f"{HEAD}.rayStartParams", {"num-cpus": "2"}).set(f"{HEAD}.resources", {"CPU": "2"}), [
        (f"{HEAD}.resources", SPEC + "resource fields should not be set in both rayStartParams and Resources for "
                                     "Head group; please use only one")],
        id="resources in both rayStartParams and the group are refused"),
    case(job().set(f"{W}.rayStartParams", {"labels": "a=b"}), [
        (f"{W}.rayStartParams[labels]", SPEC + "rayStartParams['labels'] is not supported for small-group group; "
                                               "please use the top-level Labels field instead")],
        id="labels in rayStartParams are refused"),
    case(job().set(f"{W}.labels", {"bad key": "ok", "zone": "-x"}), [
        (f"{W}.labels", SPEC + "invalid label key for small-group group: 'bad key', error: name part must consist of "
                               "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                               "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
                               "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'); invalid label value for key 'zone' in "
                               "small-group group: '-x', error: a valid label must be an empty string or consist of "
                               "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                               "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                               "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")],
        id="invalid group labels are refused in one sentence"),
    case(job().annotate("ray.io/ft-enabled", "true").set("spec.rayClusterSpec.gcsFaultToleranceOptions", {}), [
        ("metadata.annotations[ray.io/ft-enabled]", SPEC + "ray.io/ft-enabled annotation and GcsFaultToleranceOptions "
         "are both set. Please use only GcsFaultToleranceOptions to configure GCS fault tolerance")],
        id="the ft-enabled annotation with GcsFaultToleranceOptions is refused"),
    case(job().set(f"{HEAD}.template.spec.containers[0].env", env(RAY_REDIS_ADDRESS="redis:6379")), [
        (f"{HEAD}.template.spec.containers[0].env", SPEC + "RAY_REDIS_ADDRESS is set which implicitly enables GCS "
         "fault tolerance, but GcsFaultToleranceOptions is not set. Please set GcsFaultToleranceOptions to enable GCS "
         "fault tolerance")], id="RAY_REDIS_ADDRESS without fault tolerance is refused"),
    case(job().set("spec.rayClusterSpec.gcsFaultToleranceOptions", {}).set(
        f"{HEAD}.rayStartParams", {"redis-password": "x"}).set(
        f"{HEAD}.template.spec.containers[0].env", env(REDIS_PASSWORD="x", RAY_REDIS_ADDRESS="r")).annotate(
        "ray.io/external-storage-namespace", "ns"), [
        (f"{HEAD}.rayStartParams[redis-password]", SPEC + "cannot set `redis-password` in rayStartParams when "
         "GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisPassword instead"),
        (f"{HEAD}.template.spec.containers[0].env", SPEC + "cannot set `REDIS_PASSWORD` env var in head Pod when "
         "GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisPassword instead"),
        (f"{HEAD}.template.spec.containers[0].env", SPEC + "cannot set `RAY_REDIS_ADDRESS` env var in head Pod when "
         "GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisAddress instead"),
        ("metadata.annotations[ray.io/external-storage-namespace]", SPEC + "cannot set "
         "`ray.io/external-storage-namespace` annotation when GcsFaultToleranceOptions is enabled - use "
         "GcsFaultToleranceOptions.ExternalStorageNamespace instead"),
    ], id="redis settings beside GcsFaultToleranceOptions are refused, every one"),
    case(job().set(f"{HEAD}.rayStartParams", {"redis-username": "u"}), [
        (HEAD, SPEC + "cannot set redis username in rayStartParams or environment variables - use "
                      "GcsFaultToleranceOptions.RedisUsername instead")], id="a redis username is refused"),
    case(job().set(f"{W}.suspend", True), [
        (f"{W}.suspend", SPEC + "worker group small-group can be suspended only when the RayJobDeletionPolicy feature "
                                "gate is enabled")], gates=FeatureGates(ray_job_deletion_policy=False),
         id="a suspended worker group without the deletion gate is refused"),
    case(job().set("spec.rayClusterSpec.enableInTreeAutoscaling", True).set(f"{W}.suspend", True), [
        (f"{W}.suspend", SPEC + "worker group small-group cannot be suspended with Autoscaler enabled")],
        id="a suspended worker group with the autoscaler is refused"),
    case(job().set(f"{HEAD}.template.spec.containers[0].env", env(RAY_enable_autoscaler_v2="true")), [
        (f"{HEAD}.template.spec.containers[0].env", SPEC + "environment variable RAY_enable_autoscaler_v2 cannot be "
         "set to 'true' when enableInTreeAutoscaling is false. Please set enableInTreeAutoscaling: true to use "
         "autoscaler v2")], id="the autoscaler v2 env without in-tree autoscaling is refused"),
    case(job().set("spec.rayClusterSpec.enableInTreeAutoscaling", True).set(
        "spec.rayClusterSpec.autoscalerOptions", {"version": "v2"}).set(
        f"{HEAD}.template.spec.containers[0].env", env(RAY_enable_autoscaler_v2="1")), [
        ("spec.rayClusterSpec.autoscalerOptions.version", SPEC + "both .spec.autoscalerOptions.version and head Pod "
         "env var RAY_enable_autoscaler_v2 are set, please only use the former")],
        id="autoscaler version in both places is refused"),
    case(job().set("spec.rayClusterSpec.enableInTreeAutoscaling", True).set(
        "spec.rayClusterSpec.autoscalerOptions", {"version": "v2"}).set(
        f"{HEAD}.template.spec.restartPolicy", "Always").set(f"{W}.template.spec.restartPolicy", "OnFailure"), [
        (f"{HEAD}.template.spec.restartPolicy", SPEC + "restartPolicy for head Pod should be Never or unset when "
                                                       "using autoscaler V2"),
        (f"{W}.template.spec.restartPolicy", SPEC + "restartPolicy for worker group small-group should be Never or "
                                                    "unset when using autoscaler V2"),
    ], id="restarting pods with autoscaler v2 are refused"),
    case(job().set("spec.rayClusterSpec.autoscalerOptions", {"idleTimeoutSeconds": -1}), [
        ("spec.rayClusterSpec.autoscalerOptions.idleTimeoutSeconds", SPEC + "autoscalerOptions.idleTimeoutSeconds must "
         "be non-negative, got -1")], id="a negative autoscaler idle timeout is refused"),
    case(job().set("spec.rayClusterSpec.autoscalerOptions", {"env": env(KUBERAY_GEN_AUTOSCALER_START_CMD="x")}), [
        ("spec.rayClusterSpec.autoscalerOptions.env", SPEC + "autoscalerOptions.env must not contain "
         "KUBERAY_GEN_AUTOSCALER_START_CMD: it is managed by KubeRay and injected automatically into the autoscaler "
         "container")], id="KubeRay's own autoscaler env var is refused"),
    case(job().set(f"{W}.idleTimeoutSeconds", 30), [
        (f"{W}.idleTimeoutSeconds", SPEC + "worker group small-group: idleTimeoutSeconds is set, but autoscaler v2 is "
         "not enabled. Please set .spec.autoscalerOptions.version to 'v2' (or set RAY_enable_autoscaler_v2 environment "
         "variable to 'true' in the head pod if using KubeRay < 1.4.0)")],
        id="a worker idle timeout without autoscaler v2 is refused"),
    case(job().set(f"{W}.idleTimeoutSeconds", -3), [
        (f"{W}.idleTimeoutSeconds", SPEC + "worker group small-group: idleTimeoutSeconds must be non-negative, got -3")],
        id="a negative worker idle timeout is refused"),
    case(job().set(f"{W}.priority", 5).set("spec.rayClusterSpec.rayVersion", "2.50.0"), [
        (f"{W}.priority", SPEC + "worker group small-group: priority is set, but minimum Ray version is 2.56.0, got "
                                 "2.50.0")], id="a worker priority on an old Ray is refused"),
    case(job().set(f"{W}.priority", 5).set("spec.rayClusterSpec.rayVersion", "2.56.1"), [
        (f"{W}.priority", SPEC + "worker group small-group: priority is set to 5, but autoscaler v2 is not enabled. "
                                 "Priority is only supported with autoscaler v2 enabled")],
        id="a worker priority without autoscaler v2 is refused"),
    case(job().set("spec.rayClusterSpec.authOptions", {"mode": "token"}).set(
        "spec.rayClusterSpec.rayVersion", "latest"), [
        ("spec.rayClusterSpec.rayVersion", SPEC + "authOptions.mode is 'token' but RayVersion format is invalid: "
                                                  'latest, could not parse "latest" as version')],
        id="token auth with an unparsable Ray version is refused"),
    case(job().set("spec.rayClusterSpec.authOptions", {"mode": "token"}).set(
        "spec.rayClusterSpec.rayVersion", "2.36.1"), [
        ("spec.rayClusterSpec.rayVersion", SPEC + "authOptions.mode is 'token' but minimum Ray version is 2.52.0, got "
                                                  "2.36.1")], id="token auth on an old Ray is refused"),
    case(job().set("spec.rayClusterSpec.historyServerOptions", {}).set(
        "spec.rayClusterSpec.networkPolicy", {}).set("spec.rayClusterSpec.tlsOptions", {}), [
        ("spec.rayClusterSpec.historyServerOptions", SPEC + "RayClusterHistoryServer feature gate is not enabled"),
        ("spec.rayClusterSpec.networkPolicy", SPEC + "spec.networkPolicy requires the RayClusterNetworkPolicy feature "
                                                     "gate to be enabled"),
        ("spec.rayClusterSpec.tlsOptions", SPEC + "spec.tlsOptions requires the RayClusterMTLS feature gate to be "
                                                  "enabled"),
    ], id="alpha features behind gates that are off by default are refused"),
]


@pytest.mark.parametrize(("builder", "expected", "gates"), CASES)
def test_kuberay_rules(builder: RayJobBuilder, expected: list[tuple[str, str]], gates: FeatureGates | None) -> None:
    problems = rayjob_problems(builder.obj(), gates)
    assert [(p.path, p.message) for p in problems] == expected


def test_every_problem_says_which_function_and_kuberay_version() -> None:
    bad = job("a" * 48).workers(1, cpu="1", group="g2", min_replicas=3, max_replicas=1).obj()
    problems = rayjob_problems(bad)
    assert [(p.function, p.since) for p in problems] == [("ValidateRayJobMetadata", "v1.4"),
                                                          ("ValidateRayClusterSpec", "v1.6")]


def test_the_generated_name_is_judged_as_the_apiserver_will_make_it() -> None:
    assert generated_name_sample({"generateName": "rayjob-video-"}) == "rayjob-video-xxxxx"
    assert generated_name_sample({"name": "n", "generateName": "g-"}) == "n"
    assert len(generated_name_sample({"generateName": "y" * 70})) == 63

"""KubeRay v1.7's refusals of a bare RayCluster (rayClusterReconcile) as common/kuberay_rules models them, and the
GCS fault-tolerance backend rules (validateGcsFaultToleranceBackend) for both kinds."""

from __future__ import annotations

from typing import Any

import pytest

from common.kuberay_rules import FeatureGates, raycluster_problems, rayjob_problems
from tests.unit.builders import RayJobBuilder, make_rayjob

DNS1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
           "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
           "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
W = "spec.workerGroupSpecs[0]"
FT = "spec.gcsFaultToleranceOptions"
EMBEDDED = FeatureGates(gcs_fault_tolerance_embedded_storage=True)


def cluster(name: str = "notebook") -> RayJobBuilder:
    """A bare RayCluster KubeRay accepts: the builders' job cluster, as a tenant's own (`as_raycluster`)."""
    return make_rayjob(name, "video").head(cpu="1").workers(1, cpu="1", min_replicas=1, max_replicas=2)


def rc(builder: RayJobBuilder, **spec: Any) -> dict[str, Any]:
    obj = builder.as_raycluster()
    obj["spec"].update(spec)
    return obj


def case(obj: dict[str, Any], expected: list[tuple[str, str]], *, id: str, gates: FeatureGates | None = None) -> Any:
    return pytest.param(obj, expected, gates, id=id)


CASES = [
    case(rc(cluster()), [], id="the builders' bare RayCluster is accepted"),
    case(rc(cluster("r" * 53)), [], id="a name of exactly 53 characters is accepted"),
    # --- ValidateRayClusterMetadata ---
    case(rc(cluster("r" * 54)), [("metadata.name", "RayCluster name should be no more than 53 characters")],
         id="a name of 54 characters is refused"),
    case(rc(cluster("r" * 60)), [("metadata.name", "RayCluster name should be no more than 53 characters")],
         id="a 60-character name is refused"),
    case(rc(cluster("Notebook")), [("metadata.name", f"RayCluster name should be a valid DNS1035 label: [{DNS1035}]")],
         id="a name that is not DNS-1035 is refused"),
    case(rc(cluster().generate_name("n" * 49)), [
        ("metadata.generateName", "RayCluster name should be no more than 53 characters")],
        id="a generateName prefix longer than 48 characters is refused"),
    # --- ValidateRayClusterSpec, the same rules as a RayJob's rayClusterSpec, KubeRay's bare sentences ---
    case(rc(cluster().set("spec.rayClusterSpec.headGroupSpec.template.spec.containers", [])), [
        ("spec.headGroupSpec.template.spec.containers", "headGroupSpec should have at least one container")],
        id="a head without containers is refused"),
    case(rc(cluster().workers(1, cpu="1", group="big", min_replicas=3, max_replicas=1)), [
        ("spec.workerGroupSpecs[1].minReplicas", "worker group big has minReplicas 3 greater than maxReplicas 1")],
        id="minReplicas above maxReplicas is refused"),
    case(rc(cluster(), enableInTreeAutoscaling=True, autoscalerOptions={"version": "v2"},
            headGroupSpec={"rayStartParams": {}, "template": {"spec": {"containers": [{"name": "h"}],
                                                                       "restartPolicy": "Always"}}}), [
        ("spec.headGroupSpec.template.spec.restartPolicy",
         "restartPolicy for head Pod should be Never or unset when using autoscaler V2")],
        id="autoscaler v2 with a head restartPolicy Always is refused"),
    case(rc(cluster(), tlsOptions={}), [
        ("spec.tlsOptions", "spec.tlsOptions requires the RayClusterMTLS feature gate to be enabled")],
        id="tlsOptions with its gate off is refused"),
    case(rc(cluster(), authOptions={"mode": "token", "enableK8sTokenAuth": True}, rayVersion="2.56.0"), [],
         id="K8s token auth is accepted on a bare RayCluster (refused only for a RayJob)"),
    # --- ValidateRayClusterUpgradeOptions ---
    case(rc(cluster(), upgradeStrategy={"type": "Recreate"}), [], id="a bare RayCluster may set upgradeStrategy"),
    case(rc(cluster(), upgradeStrategy={"type": "Rolling"}), [
        ("spec.upgradeStrategy.type", "The RayCluster spec is invalid: Spec.UpgradeStrategy.Type value Rolling is "
                                      "invalid, valid options are Recreate or None")],
        id="an unknown upgradeStrategy type is refused"),
    case(rc(cluster().label("ray.io/originated-from-crd", "RayService"), upgradeStrategy={"type": "None"}), [
        ("spec.upgradeStrategy.type", "upgradeStrategy cannot be set when RayCluster is created by RayService")],
        id="an upgradeStrategy on a cluster labelled as a RayService's is refused"),
    # --- validateGcsFaultToleranceBackend ---
    case(rc(cluster(), gcsFaultToleranceOptions={"redisAddress": "redis:6379"}), [],
         id="the redis backend with an address is accepted"),
    case(rc(cluster(), gcsFaultToleranceOptions={"storage": {"size": "1Gi"}}), [
        (f"{FT}.storage", "cannot set GcsFaultToleranceOptions.Storage when backend is 'redis' - it only applies to "
                          "the 'rocksdb' backend")], id="storage with the default redis backend is refused"),
    case(rc(cluster(), gcsFaultToleranceOptions={"backend": "rocksdb"}), [
        (f"{FT}.backend", "the embedded RocksDB GCS fault tolerance backend (GcsFaultToleranceOptions.Backend: "
                          "'rocksdb') requires the GCSFaultToleranceEmbeddedStorage feature gate to be enabled")],
        id="the rocksdb backend with its gate off is refused"),
    case(rc(cluster(), gcsFaultToleranceOptions={"backend": "rocksdb", "storage": {"size": "1Gi"}}), [],
         gates=EMBEDDED, id="the rocksdb backend with its gate on and a managed volume is accepted"),
    case(rc(cluster(), gcsFaultToleranceOptions={
        "backend": "rocksdb", "redisAddress": "r:6379", "redisUsername": {"value": "u"},
        "redisPassword": {"value": "p"}, "externalStorageNamespace": "ns",
        "storage": {"claimName": "mine", "accessModes": ["ReadWriteMany"]}}), [
        (f"{FT}.redisAddress", "cannot set GcsFaultToleranceOptions.RedisAddress when backend is 'rocksdb'"),
        (f"{FT}.redisUsername", "cannot set GcsFaultToleranceOptions.RedisUsername when backend is 'rocksdb'"),
        (f"{FT}.redisPassword", "cannot set GcsFaultToleranceOptions.RedisPassword when backend is 'rocksdb'"),
        (f"{FT}.externalStorageNamespace",
         "cannot set GcsFaultToleranceOptions.ExternalStorageNamespace when backend is 'rocksdb'"),
        (f"{FT}.storage.claimName", "GcsFaultToleranceOptions.Storage.ClaimName is mutually exclusive with size, "
                                    "storageClassName, and accessModes"),
    ], gates=EMBEDDED, id="the rocksdb backend refuses every redis field and a claim with managed-volume fields"),
    case(rc(cluster(), gcsFaultToleranceOptions={"backend": "rocksdb"}, headGroupSpec={
        "rayStartParams": {}, "template": {"spec": {
            "containers": [{"name": "h", "env": [{"name": "RAY_gcs_storage_path", "value": "/x"}],
                            "volumeMounts": [{"name": "mine", "mountPath": "/data/gcs"}]}],
            "volumes": [{"name": "gcs-storage", "emptyDir": {}}]}}}), [
        ("spec.headGroupSpec.template.spec.containers[0].env", "cannot set `RAY_gcs_storage` or "
         "`RAY_gcs_storage_path` env var in head Pod when the embedded GCS FT backend is used - these are managed by "
         "KubeRay"),
        ("spec.headGroupSpec.template.spec.containers[0].volumeMounts", 'cannot set a volume mount named "gcs-storage" '
         "or mounted at /data/gcs in the head container when the embedded GCS FT backend is used - it is managed by "
         "KubeRay"),
        ("spec.headGroupSpec.template.spec.volumes", 'cannot set a volume named "gcs-storage" in the head Pod when the '
         "embedded GCS FT backend is used - it is managed by KubeRay"),
    ], gates=EMBEDDED, id="the rocksdb backend refuses KubeRay's own env vars, mount and volume in the head"),
    # --- spec.managedBy ---
    case(rc(cluster("r" * 60), managedBy="kueue.x-k8s.io/multikueue"), [],
         id="a cluster managed by another controller is skipped by KubeRay, so nothing is refused"),
]


@pytest.mark.parametrize(("obj", "expected", "gates"), CASES)
def test_kuberay_raycluster_rules(obj: dict[str, Any], expected: list[tuple[str, str]],
                                  gates: FeatureGates | None) -> None:
    assert [(p.path, p.message) for p in raycluster_problems(obj, gates)] == expected


def test_every_problem_names_kuberays_function_and_version() -> None:
    obj = rc(cluster("r" * 54), upgradeStrategy={"type": "Rolling"}, gcsFaultToleranceOptions={"storage": {}})
    assert [(p.function, p.since) for p in raycluster_problems(obj)] == [
        ("ValidateRayClusterMetadata", "v1.4"), ("validateGcsFaultToleranceBackend", "v1.7"),
        ("ValidateRayClusterUpgradeOptions", "v1.6")]


def test_a_rayjobs_cluster_gets_the_same_backend_rule_wrapped_as_the_rayjob_spec() -> None:
    """One ValidateRayClusterSpec for both kinds: the RayJob's sentence is KubeRay's wrapped in its prefix."""
    job = cluster().set("spec.rayClusterSpec.gcsFaultToleranceOptions", {"storage": {"size": "1Gi"}}).obj()
    assert [(p.path, p.message) for p in rayjob_problems(job)] == [
        ("spec.rayClusterSpec.gcsFaultToleranceOptions.storage", "The RayJob spec is invalid: cannot set "
         "GcsFaultToleranceOptions.Storage when backend is 'redis' - it only applies to the 'rocksdb' backend")]

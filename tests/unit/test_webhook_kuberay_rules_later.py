"""What stops a RayJob after KubeRay v1.7 accepted it, and runtimeEnvYAML, as common/kuberay_rules models it.

Each case is a KubeRay refusal that validateRayJob's first pass does not show today but that leaves an admitted
job holding its claim: runtimeEnvYAML that is not a YAML map (ValidateRayJobSpec on every reconcile, so an edit
of a running job ends ValidationFailed), rayClusterSpec fields copied into the job's RayCluster
(constructRayClusterForRayJob), and a submitter template the batch/v1 Job cannot be made from.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from common.kuberay_rules import managed_by_foreign_controller, rayjob_problems
from tests.unit.builders import RayJobBuilder, container, make_rayjob

RC = "spec.rayClusterSpec"
HEAD_OF = "failed to unmarshal RuntimeEnvYAML: "
TYPE_ERR = "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type " \
           "types.RuntimeEnvType"


def job() -> RayJobBuilder:
    """A job KubeRay accepts (suspended with shutdownAfterJobFinishes, one worker group 1..2)."""
    return make_rayjob("j", "video").head(cpu="1").workers(1, cpu="1", min_replicas=1, max_replicas=2)


def decode_yaml(text: str) -> object:
    """The adapter's decoder: the first document, as go-yaml's Unmarshal reads it; ValueError (one line) when not
    YAML."""
    try:
        return next(iter(yaml.safe_load_all(text)), None)
    except yaml.YAMLError as exc:
        raise ValueError(" ".join(str(exc).split())) from exc  # one line: it ends up in a webhook denial


def pairs(builder: RayJobBuilder) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in rayjob_problems(builder.obj(), decode_yaml=decode_yaml)]


# --- dashboardclient.UnmarshalRuntimeEnvYAML (called by ValidateRayJobSpec) -------------------------------
@pytest.mark.parametrize(("text", "kind"), [
    pytest.param("pip:\n  - requests\nenv_vars:\n  A: b\n", None, id="a YAML map is accepted"),
    pytest.param("", None, id="an empty runtimeEnvYAML is accepted"),
    pytest.param("null\n", None, id="YAML null decodes to an empty map and is accepted"),
    pytest.param("{}", None, id="an empty flow map is accepted"),
    pytest.param("1: a\n", None, id="a map with a number key is accepted (YAML to JSON makes it a string)"),
    pytest.param("- pip: [requests]\n", "array", id="a YAML list is refused"),
    pytest.param("requests\n", "string", id="a plain scalar is refused"),
    pytest.param("3\n", "number", id="a number is refused"),
    pytest.param("yes\n", "bool", id="a YAML 1.1 boolean is refused"),
    pytest.param("2025-01-10\n", "string", id="a date is refused as the string go-yaml keeps it as"),
    pytest.param("- a\n---\nb: 1\n", "array", id="only the first document counts, as in go-yaml"),
])
def test_runtime_env_yaml_must_decode_to_a_map(text: str, kind: str | None) -> None:
    expected = [] if kind is None else [("spec.runtimeEnvYAML", HEAD_OF + f"{text}: " + TYPE_ERR.format(kind))]
    assert pairs(job().set("spec.runtimeEnvYAML", text)) == expected


def test_runtime_env_yaml_that_is_not_yaml_is_refused_with_the_parsers_words() -> None:
    problems = rayjob_problems(job().set("spec.runtimeEnvYAML", "a: [1\n").obj(), decode_yaml=decode_yaml)
    assert [(p.function, p.path) for p in problems] == [("ValidateRayJobSpec", "spec.runtimeEnvYAML")]
    assert problems[0].message.startswith(f"{HEAD_OF}a: [1\n: error converting YAML to JSON: yaml: ")
    assert "expected ',' or ']'" in problems[0].message, "the parser's own reason follows"


def test_runtime_env_yaml_is_judged_in_kuberays_order_and_only_with_a_decoder() -> None:
    """ValidateRayJobSpec checks runtimeEnvYAML after the cluster spec and before activeDeadlineSeconds."""
    bad = job().set("spec.runtimeEnvYAML", "- a").set("spec.activeDeadlineSeconds", 0).set(
        f"{RC}.workerGroupSpecs[0].minReplicas", 3)
    assert [p for p, _ in pairs(bad)] == [f"{RC}.workerGroupSpecs[0].minReplicas", "spec.runtimeEnvYAML",
                                          "spec.activeDeadlineSeconds"]
    without = [p.path for p in rayjob_problems(bad.obj())]
    assert "spec.runtimeEnvYAML" not in without, "common has no YAML parser of its own: no decoder, no verdict"


# --- fields constructRayClusterForRayJob copies into the job's RayCluster ----------------------------------
COPIED = [
    pytest.param(job().set(f"{RC}.upgradeStrategy", {"type": "Recreate"}), [
        (f"{RC}.upgradeStrategy.type", "upgradeStrategy cannot be set when RayCluster is created by RayJob")],
        id="an upgradeStrategy type is refused because the job's RayCluster is created by a RayJob"),
    pytest.param(job().set(f"{RC}.upgradeStrategy", {"type": "Rolling"}), [
        (f"{RC}.upgradeStrategy.type", "The RayCluster spec is invalid: Spec.UpgradeStrategy.Type value Rolling is "
                                       "invalid, valid options are Recreate or None"),
        (f"{RC}.upgradeStrategy.type", "upgradeStrategy cannot be set when RayCluster is created by RayJob")],
        id="an unknown upgradeStrategy type is refused for both reasons"),
    pytest.param(job().set(f"{RC}.upgradeStrategy", {}), [],
                 id="an upgradeStrategy without a type is accepted, as ValidateRayClusterUpgradeOptions reads it"),
    pytest.param(job().set(f"{RC}.suspend", False), [], id="rayClusterSpec.suspend false is accepted"),
    pytest.param(job().set(f"{RC}.managedBy", "ray.io/kuberay-operator"), [],
                 id="rayClusterSpec.managedBy naming KubeRay itself is accepted"),
]


@pytest.mark.parametrize(("builder", "expected"), COPIED)
def test_fields_copied_into_the_jobs_cluster(builder: RayJobBuilder, expected: list[tuple[str, str]]) -> None:
    assert pairs(builder) == expected


@pytest.mark.parametrize(("field", "value", "function", "words"), [
    pytest.param("suspend", True, "reconcilePods", "due to suspension", id="rayClusterSpec.suspend true is refused"),
    pytest.param("managedBy", "kueue.x-k8s.io/multikueue", "ManagedByExternalController",
                 "Skipping RayCluster managed by a custom controller", id="a foreign rayClusterSpec.managedBy is refused"),
])
def test_a_copied_field_that_stops_the_cluster_is_refused_naming_kuberays_words(
        field: str, value: Any, function: str, words: str) -> None:
    problems = rayjob_problems(job().set(f"{RC}.{field}", value).obj())
    assert [(p.function, p.path) for p in problems] == [(function, f"{RC}.{field}")]
    assert words in problems[0].message and "the job never starts" in problems[0].message


def test_a_clusterselector_job_is_not_judged_on_a_cluster_spec_it_does_not_create() -> None:
    selector = job().suspend(False).cluster_selector(**{"ray.io/cluster": "shared"}).set(f"{RC}.suspend", True)
    assert pairs(selector) == []


# --- the K8sJobMode submitter Job (createK8sJobIfNeed, getSubmitterTemplate, createNewK8sJob) ---------------
REQUIRED = 'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'


def _submitter(**spec: Any) -> RayJobBuilder:
    return job().set("spec.submitterPodTemplate", {"spec": spec})


@pytest.mark.parametrize(("builder", "expected"), [
    pytest.param(_submitter(containers=[container("s")]), [("createNewK8sJob", REQUIRED)],
                 id="a submitter template without restartPolicy is refused (the API server defaults it to Always)"),
    pytest.param(_submitter(containers=[container("s")], restartPolicy="Always"), [("createNewK8sJob", REQUIRED)],
                 id="a submitter template with restartPolicy Always is refused"),
    pytest.param(_submitter(containers=[container("s")], restartPolicy="Sometimes"), [
        ("createNewK8sJob", 'spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: '
                            '"OnFailure", "Never"')], id="a submitter template with an unknown restartPolicy is refused"),
    pytest.param(_submitter(containers=[container("s")], restartPolicy="OnFailure"), [],
                 id="a submitter template with restartPolicy OnFailure is accepted"),
    pytest.param(job().submitter(container("s")), [], id="the builders' submitter template is accepted"),
    pytest.param(_submitter(containers=[], restartPolicy="Never"), [
        ("getSubmitterTemplate", "runtime error: index out of range [0] with length 0")],
        id="a submitter template with an empty containers list is refused"),
    pytest.param(job().set("spec.submitterPodTemplate", {"metadata": {"labels": {"a": "b"}}}), [
        ("getSubmitterTemplate", "runtime error: index out of range [0] with length 0"),
        ("createNewK8sJob", REQUIRED)], id="a submitter template without a spec breaks both rules"),
    pytest.param(_submitter(containers=[]).submission_mode("HTTPMode"), [],
                 id="HTTPMode runs no submitter Job, so its template is not judged"),
])
def test_the_submitter_job_can_be_built(builder: RayJobBuilder, expected: list[tuple[str, str]]) -> None:
    problems = rayjob_problems(builder.obj())
    assert [(p.function, p.path) for p in problems] == [
        (fn, "spec.submitterPodTemplate.spec." + ("containers" if fn == "getSubmitterTemplate" else "restartPolicy"))
        for fn, _ in expected]
    for problem, (_, words) in zip(problems, expected, strict=True):
        assert words in problem.message


# --- spec.managedBy: KubeRay skips the whole object ---------------------------------------------------------
@pytest.mark.parametrize(("value", "foreign"), [
    pytest.param(None, None, id="no managedBy is KubeRay's"),
    pytest.param("ray.io/kuberay-operator", None, id="KubeRay's own value is KubeRay's"),
    pytest.param("kueue.x-k8s.io/multikueue", "kueue.x-k8s.io/multikueue", id="MultiKueue's value is foreign"),
    pytest.param("", "", id="an empty string is foreign, as ManagedByExternalController reads a set pointer"),
    pytest.param(7, None, id="a value that is not a string reads as unset (the CRD schema refuses it)"),
])
def test_managed_by_a_foreign_controller(value: Any, foreign: str | None) -> None:
    obj = job().set("spec.managedBy", value).obj() if value is not None else job().obj()
    assert managed_by_foreign_controller(obj) == foreign


def test_kuberay_refuses_nothing_about_a_job_it_leaves_to_another_controller() -> None:
    bad = job().set("spec.managedBy", "kueue.x-k8s.io/multikueue").set("spec.activeDeadlineSeconds", 0)
    assert rayjob_problems(bad.obj()) == []
    assert rayjob_problems(bad.set("spec.managedBy", "ray.io/kuberay-operator").obj()) != []

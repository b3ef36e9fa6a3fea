"""RayJob and Pod dicts become frozen JobInfo / PodInfo values with Kubernetes' and KubeRay's arithmetic."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import keys
from common.kuberay_additions import KubeRayAdditions
from common.pod_requests import pod_request
from common.quantity import parse_quantity
from common.rayjob import JobInfo, OwnerRef, PodInfo, desired_replicas
from common.resources import Resources
from common.wire import ShapeError
from tests.unit.builders import container, make_pod, make_rayjob

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
SUBMITTER = Resources({"cpu": 500, "memory": 200 * 2**20})


def res(**amounts: str) -> Resources:
    """Resources from quantities: res(cpu="4", memory="4G"); gpu means nvidia.com/gpu."""
    return Resources.parse({("nvidia.com/gpu" if k == "gpu" else k): v for k, v in amounts.items()})


def seed_rayjob(filename: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((EXAMPLES / filename).read_text())
    (job,) = [d for d in docs if d and d.get("kind") == keys.RAYJOB_KIND]
    return dict(job)


# --- the guide ---------------------------------------------------------------------------------------


def test_the_seed_video_rayjob_asks_for_head_workers_and_default_submitter() -> None:
    """The guide says 12 CPU; the K8sJobMode submitter KubeRay adds makes it 12500m / 12G + 200Mi."""
    job = JobInfo.from_rayjob(seed_rayjob("video-rayjob.yaml"))
    assert job.request == Resources({"cpu": 12_500, "memory": 3 * 4 * 10**9 + 200 * 2**20})
    assert job.head_request == res(cpu="4", memory="4G")
    assert [(g.name, g.replicas, g.pods) for g in job.worker_groups] == [("small-group", 2, 2)]
    assert job.submitter_request == SUBMITTER
    assert (job.name, job.generate_name, job.namespace, job.uid) == ("", "rayjob-video-", "video", "")
    assert job.suspended and job.shutdown_after_job_finishes
    assert not job.gang and job.min_available == 3
    assert job.submission_mode == "K8sJobMode"
    assert job.problems == ()


def test_the_seed_gang_rayjob_is_a_gang_of_31() -> None:
    job = JobInfo.from_rayjob(seed_rayjob("gang-rayjob.yaml"))
    assert job.gang
    assert job.min_available == 31
    # 31 CPU of Ray pods + the 500m submitter; memory: the submitter's 200Mi and, on each of the 30
    # workers, KubeRay's wait-gcs-ready init container (256Mi): the templates request no memory themselves.
    assert job.request == Resources({"cpu": 31_500, "memory": 200 * 2**20 + 30 * 256 * 2**20})
    assert job.quota_label == "algorithm-text"


# --- the pod request rule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        pytest.param(
            make_pod("p", "ns").container(cpu="1", memory="1Gi").container(cpu="500m", memory="1Gi"),
            res(cpu="1500m", memory="2Gi"),
            id="containers add up",
        ),
        pytest.param(
            make_pod("p", "ns", cpu="1", memory="1Gi").init_container(cpu="2", memory="512Mi"),
            res(cpu="2", memory="1Gi"),
            id="an init container larger than the containers sets that resource",
        ),
        pytest.param(
            make_pod("p", "ns", cpu="1")
            .container(cpu="1")
            .init_container(cpu="1500m")
            .init_container(cpu="3"),
            res(cpu="3"),
            id="the largest init container counts, not their sum",
        ),
        pytest.param(
            make_pod("p", "ns", cpu="2").init_container(cpu="1"),
            res(cpu="2"),
            id="an init container smaller than the containers changes nothing",
        ),
        pytest.param(
            make_pod("p", "ns", cpu="1", memory="1Gi").overhead(cpu="250m", memory="120Mi"),
            res(cpu="1250m", memory="1Gi") + res(memory="120Mi"),
            id="pod overhead is added",
        ),
        pytest.param(
            make_pod("p", "ns", cpu="1").init_container(cpu="4").overhead(cpu="100m"),
            res(cpu="4100m"),
            id="overhead is added after the init container maximum",
        ),
        pytest.param(
            make_pod("p", "ns").container(limits={"cpu": "2", "memory": "3Gi"}),
            res(cpu="2", memory="3Gi"),
            id="a limits-only container requests its limits",
        ),
        pytest.param(
            make_pod("p", "ns").container(cpu="1", limits={"cpu": "2", "memory": "3Gi"}),
            res(cpu="1", memory="3Gi"),
            id="a request wins over the limit and a missing one defaults to it",
        ),
        pytest.param(
            make_pod("p", "ns").container(cpu="0", limits={"cpu": "2"}),
            Resources(),
            id="an explicit zero request is not defaulted to the limit",
        ),
        pytest.param(
            make_pod("p", "ns", cpu="1").init_container(cpu="500m", sidecar=True),
            res(cpu="1500m"),
            id="a sidecar init container runs beside the containers",
        ),
        pytest.param(
            make_pod("p", "ns", cpu="1").init_container(cpu="500m", sidecar=True).init_container(cpu="2"),
            res(cpu="2500m"),
            id="an init container after a sidecar runs beside it",
        ),
        pytest.param(
            make_pod("p", "ns", gpu="2"),
            res(gpu="2"),
            id="extended resources count",
        ),
        pytest.param(make_pod("p", "ns"), Resources(), id="a pod without containers requests nothing"),
    ],
)
def test_pod_request_follows_kubernetes(pod: Any, expected: Resources) -> None:
    obj = pod.obj()
    assert PodInfo.from_pod(obj).request == expected
    assert pod_request(obj["spec"]) == expected


# --- worker groups ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "replicas", "pods"),
    [
        pytest.param({"replicas": 2}, 2, 2, id="replicas without bounds are taken as given"),
        pytest.param({"replicas": 1000}, 1000, 1000, id="maxReplicas defaults to MaxInt32"),
        pytest.param(
            {"replicas": 1, "min_replicas": 3, "max_replicas": 5}, 3, 3, id="replicas below min clamp up"
        ),
        pytest.param(
            {"replicas": 9, "min_replicas": 3, "max_replicas": 5}, 5, 5, id="replicas above max clamp down"
        ),
        pytest.param({"min_replicas": 3, "max_replicas": 5}, 3, 3, id="missing replicas means minReplicas"),
        pytest.param({}, 0, 0, id="missing replicas and minReplicas mean no workers"),
        pytest.param({"replicas": 4, "suspend": True}, 0, 0, id="a suspended group counts zero"),
        pytest.param({"replicas": 4, "suspend": False}, 4, 4, id="suspend false counts as usual"),
        pytest.param({"replicas": 2, "num_of_hosts": 4}, 2, 8, id="numOfHosts multiplies the pods"),
        pytest.param({"replicas": 2, "num_of_hosts": 0}, 2, 0, id="zero hosts means no pods"),
    ],
)
def test_worker_group_desired_replicas_follow_kuberay(
    group: dict[str, Any], replicas: int, pods: int
) -> None:
    job = JobInfo.from_rayjob(
        make_rayjob("j", "ns").head(cpu="1").workers(cpu="2", memory="1Gi", **group).obj()
    )
    (info,) = job.worker_groups
    assert (info.replicas, info.pods) == (replicas, pods)
    assert info.request == res(cpu="2", memory="1Gi").scaled(pods)
    assert job.request == res(cpu="1") + info.request + SUBMITTER
    assert job.min_available == 1 + pods
    assert job.problems == ()


def test_min_above_max_takes_max_and_records_a_problem() -> None:
    obj = make_rayjob("j", "ns").workers(4, cpu="1", min_replicas=5, max_replicas=3).obj()
    job = JobInfo.from_rayjob(obj)
    assert job.worker_groups[0].replicas == 3
    assert job.problems == (
        "spec.rayClusterSpec.workerGroupSpecs[0]: minReplicas 5 > maxReplicas 3; "
        "counted as maxReplicas 3 as KubeRay does",
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param((None, 0, 2**31 - 1, False), 0, id="nothing set is zero"),
        pytest.param((7, 0, 2**31 - 1, True), 0, id="suspended wins over everything"),
        pytest.param((None, 6, 4, False), 4, id="min above max takes max even without replicas"),
    ],
)
def test_desired_replicas(args: tuple[int | None, int, int, bool], expected: int) -> None:
    assert desired_replicas(*args) == expected


def test_several_groups_add_up_and_the_gang_counts_every_desired_worker() -> None:
    obj = (
        make_rayjob("j", "ns")
        .head(cpu="2", memory="2Gi")
        .workers(2, cpu="1", gpu="1", group="gpu", num_of_hosts=2)
        .workers(3, cpu="4", group="cpu")
        .workers(5, cpu="8", group="parked", suspend=True)
        .gang()
        .obj()
    )
    job = JobInfo.from_rayjob(obj)
    assert [(g.name, g.pods) for g in job.worker_groups] == [("gpu", 4), ("cpu", 3), ("parked", 0)]
    assert job.min_available == 1 + 4 + 3
    assert job.worker_pods == 7
    init = res(memory="256Mi")  # KubeRay's wait-gcs-ready on each worker: its 200m CPU is below every worker's
    assert job.request == (
        res(cpu="2", memory="2Gi") + res(cpu="4", gpu="4") + res(cpu="12") + init.scaled(7) + SUBMITTER
    )


# --- the submitter --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "head", "submitter"),
    [
        pytest.param(None, res(cpu="1"), SUBMITTER, id="no mode means K8sJobMode with the default submitter"),
        pytest.param("K8sJobMode", res(cpu="1"), SUBMITTER, id="K8sJobMode adds the default submitter pod"),
        pytest.param("HTTPMode", res(cpu="1"), Resources(), id="HTTPMode has no submitter"),
        pytest.param("InteractiveMode", res(cpu="1"), Resources(), id="InteractiveMode has no submitter"),
        pytest.param(
            "SidecarMode",
            res(cpu="1") + SUBMITTER,
            Resources(),
            id="SidecarMode puts the submitter in the head pod",
        ),
    ],
)
def test_submission_modes(mode: str | None, head: Resources, submitter: Resources) -> None:
    builder = make_rayjob("j", "ns").head(cpu="1").workers(1, cpu="1")
    if mode is not None:
        builder.submission_mode(mode)
    job = JobInfo.from_rayjob(builder.obj())
    assert job.submission_mode == (mode or "K8sJobMode")
    assert (job.head_request, job.submitter_request) == (head, submitter)
    assert job.request == head + res(cpu="1", memory="256Mi") + submitter  # the worker's wait-gcs-ready memory
    assert job.min_available == 2


def test_sidecar_submitter_joins_the_head_containers_before_the_init_maximum() -> None:
    obj = (
        make_rayjob("j", "ns")
        .head(cpu="1", init=[container("init", cpu="1200m")])
        .submission_mode("SidecarMode")
    )
    assert JobInfo.from_rayjob(obj.obj()).head_request == res(cpu="1500m", memory="200Mi")


def test_a_custom_submitter_pod_template_replaces_the_default() -> None:
    obj = make_rayjob("j", "ns").head(cpu="1").submitter(container("submit", cpu="2", memory="1Gi")).obj()
    job = JobInfo.from_rayjob(obj)
    assert job.submitter_request == res(cpu="2", memory="1Gi")
    assert job.request == res(cpu="3", memory="1Gi")


def test_a_submitter_template_is_ignored_outside_k8s_job_mode() -> None:
    obj = make_rayjob("j", "ns").head(cpu="1").submitter(container("s", cpu="2")).submission_mode("HTTPMode")
    assert JobInfo.from_rayjob(obj.obj()).request == res(cpu="1")


def test_a_job_on_an_existing_cluster_only_brings_its_submitter() -> None:
    obj = (
        make_rayjob("j", "ns")
        .head(cpu="4")
        .workers(2, cpu="4")
        .cluster_selector(**{keys.RAY_CLUSTER: "shared"})
    )
    job = JobInfo.from_rayjob(obj.obj())
    assert job.request == SUBMITTER
    assert (job.head_request, job.worker_groups, job.min_available) == (Resources(), (), 0)
    assert dict(job.cluster_selector) == {keys.RAY_CLUSTER: "shared"}


# --- gang, quota, priority ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "gang"),
    [
        pytest.param(
            {keys.GANG_SCHEDULER_LABEL: keys.GANG_SCHEDULER_VALUE}, True, id="the guide's label opts in"
        ),
        pytest.param({keys.GANG_ENABLED_LABEL: "true"}, True, id="upstream KubeRay's label opts in"),
        pytest.param({keys.GANG_ENABLED_LABEL: "false"}, False, id="upstream label false stays out"),
        pytest.param(
            {keys.GANG_SCHEDULER_LABEL: "volcano"}, False, id="another scheduler name is not our gang"
        ),
        pytest.param({}, False, id="no label, no gang"),
    ],
)
def test_gang_opt_in(labels: dict[str, str], gang: bool) -> None:
    builder = make_rayjob("j", "ns").workers(2, cpu="1")
    for k, v in labels.items():
        builder.label(k, v)
    job = JobInfo.from_rayjob(builder.obj())
    assert job.gang is gang
    assert job.min_available == 3


@pytest.mark.parametrize(
    ("annotation", "class_value", "priority", "problem"),
    [
        pytest.param(None, None, 0, None, id="no priority at all is zero"),
        pytest.param(None, 1000, 1000, None, id="the priority class value applies"),
        pytest.param("50", 1000, 50, None, id="the override annotation beats the class"),
        pytest.param("-5", None, -5, None, id="a negative override is allowed"),
        pytest.param(" 7 ", None, 7, None, id="surrounding space is tolerated"),
        pytest.param(
            "high", 1000, 1000, "invalid priority 'high'", id="a bad override is recorded and ignored"
        ),
        pytest.param(
            "1.5", None, 0, "invalid priority '1.5'", id="a fractional override is recorded and ignored"
        ),
        pytest.param(
            str(2**31),
            10,
            10,
            f"invalid priority '{2**31}'",
            id="an override beyond int32 is recorded and ignored",
        ),
    ],
)
def test_priority(
    annotation: str | None, class_value: int | None, priority: int, problem: str | None
) -> None:
    builder = make_rayjob("j", "ns").head(cpu="1", priority_class="high-priority")
    if annotation is not None:
        builder.priority(annotation)
    job = JobInfo.from_rayjob(builder.obj(), priority_class_value=class_value)
    assert job.priority == priority
    assert job.priority_class_name == "high-priority"
    if problem is None:
        assert job.problems == ()
    else:
        (only,) = job.problems
        assert only.startswith(f"metadata.annotations[{keys.PRIORITY_OVERRIDE}]: {problem}")
        assert only.endswith("; ignored")


@pytest.mark.parametrize(
    ("value", "preemptible", "problems"),
    [
        pytest.param(None, True, 0, id="jobs are preemptible by default"),
        pytest.param("false", False, 0, id="false opts out"),
        pytest.param("False", False, 0, id="the value is case-insensitive"),
        pytest.param("true", True, 0, id="true is the default said aloud"),
        pytest.param("nope", True, 1, id="anything else is recorded and stays preemptible"),
    ],
)
def test_preemptible_label(value: str | None, preemptible: bool, problems: int) -> None:
    builder = make_rayjob("j", "ns")
    if value is not None:
        builder.label(keys.QUOTA_PREEMPTIBLE, value)
    job = JobInfo.from_rayjob(builder.obj())
    assert job.preemptible is preemptible
    assert len(job.problems) == problems


# --- timestamps and state --------------------------------------------------------------------------


def test_timestamps_are_read_to_the_nanosecond() -> None:
    obj = make_rayjob("j", "ns").enqueued("2025-01-10 01:36:24.641181026 +0000 UTC m=+132100.596012828").obj()
    job = JobInfo.from_rayjob(obj)
    assert job.enqueue_ns == 1736472984_641181026
    assert job.dequeue_ns is None


def test_a_bad_timestamp_is_recorded_not_raised() -> None:
    obj = make_rayjob("j", "ns").enqueued("2025-01-10 01:36:24 +0000 UTC").dequeued("soon").obj()
    job = JobInfo.from_rayjob(obj)
    assert job.enqueue_ns == 1736472984_000000000
    assert job.dequeue_ns is None
    (problem,) = job.problems
    assert problem.startswith(f"metadata.annotations[{keys.DEQUEUE_TIMESTAMP}]: invalid timestamp 'soon'")


@pytest.mark.parametrize(
    ("deployment", "finished"),
    [
        pytest.param("Complete", True, id="a complete job is finished"),
        pytest.param("Failed", True, id="a failed job is finished"),
        pytest.param("Running", False, id="a running job is not finished"),
        pytest.param("Suspended", False, id="a suspended job is not finished"),
    ],
)
def test_finished_follows_the_deployment_status(deployment: str, finished: bool) -> None:
    job = JobInfo.from_rayjob(make_rayjob("j", "ns").status(deployment, "RUNNING", "j-raycluster-abc").obj())
    assert job.finished is finished
    assert (job.job_deployment_status, job.job_status, job.ray_cluster_name) == (
        deployment,
        "RUNNING",
        "j-raycluster-abc",
    )


def test_identity_quota_and_state_fields() -> None:
    obj = (
        make_rayjob("j", "video")
        .uid("u-1")
        .quota("video")
        .suspend(False)
        .shutdown_after_job_finishes(False)
        .deleting()
        .set("metadata.resourceVersion", "42")
        .obj()
    )
    job = JobInfo.from_rayjob(obj)
    assert (job.uid, job.namespace, job.name, job.key, job.resource_version) == (
        "u-1",
        "video",
        "j",
        "video/j",
        "42",
    )
    assert job.quota_label == "video"
    assert (job.suspended, job.shutdown_after_job_finishes, job.deleting, job.finished) == (
        False,
        False,
        True,
        False,
    )
    assert (job.job_deployment_status, job.job_status, job.ray_cluster_name) == ("", "", None)


def test_job_info_is_frozen_and_hashable() -> None:
    job = JobInfo.from_rayjob(make_rayjob("j", "ns").label("a", "b").obj())
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        job.labels["a"] = "c"  # type: ignore[index]
    assert hash(job) == hash(JobInfo.from_rayjob(make_rayjob("j", "ns").label("a", "b").obj()))
    assert job.labels == {"a": "b"}


def test_the_input_dict_is_not_modified() -> None:
    obj = make_rayjob("j", "ns").head(cpu="1").workers(2, cpu="1").obj()
    before = make_rayjob("j", "ns").head(cpu="1").workers(2, cpu="1").obj()
    JobInfo.from_rayjob(obj)
    assert obj == before


# --- malformed shapes ------------------------------------------------------------------------------

W0 = "spec.rayClusterSpec.workerGroupSpecs[0]"
HEAD = "spec.rayClusterSpec.headGroupSpec.template.spec"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        pytest.param(
            f"{W0}.template.spec.containers[0].resources.requests.cpu",
            "x",
            f"{W0}.template.spec.containers[0].resources.requests.cpu: invalid quantity 'x'",
            id="a bad quantity names its field path",
        ),
        pytest.param(
            f"{W0}.template.spec.containers[0]",
            "ray-worker",
            f"{W0}.template.spec.containers[0]: expected a map (a container), got a string",
            id="a container that is not a map is refused",
        ),
        pytest.param(
            f"{HEAD}.containers[0].resources.limits.memory",
            "-1Gi",
            f"{HEAD}.containers[0].resources.limits.memory: invalid quantity '-1Gi': must not be negative",
            id="a negative quantity is refused",
        ),
        pytest.param(
            f"{HEAD}.containers[0].resources.requests",
            ["cpu"],
            f"{HEAD}.containers[0].resources.requests: expected a map, got a list",
            id="requests that are not a map are refused",
        ),
        pytest.param(
            f"{W0}.replicas",
            "2",
            f"{W0}.replicas: expected an integer, got a string '2'",
            id="string replicas",
        ),
        pytest.param(
            f"{W0}.numOfHosts", -1, f"{W0}.numOfHosts: must be at least 0, got -1", id="negative hosts"
        ),
        pytest.param(
            "spec.rayClusterSpec.workerGroupSpecs",
            {},
            "expected a list, got a map",
            id="worker groups not a list",
        ),
        pytest.param(
            "spec.suspend", "yes", "spec.suspend: expected a boolean, got a string 'yes'", id="suspend"
        ),
        pytest.param(
            "spec.submissionMode",
            "Batch",
            "spec.submissionMode: unknown mode 'Batch': expected one of K8sJobMode, HTTPMode",
            id="an unknown submission mode is refused",
        ),
        pytest.param(
            "metadata.labels", ["a"], "metadata.labels: expected a map, got a list", id="labels not a map"
        ),
        pytest.param(
            "metadata.annotations",
            {"a": 1},
            "metadata.annotations[a]: expected a string, got a number",
            id="annotation",
        ),
        pytest.param(
            "spec.submitterPodTemplate",
            "pod",
            "spec.submitterPodTemplate: expected a map, got a string",
            id="submitter",
        ),
    ],
)
def test_malformed_rayjobs_raise_shape_errors_with_field_paths(path: str, value: Any, message: str) -> None:
    obj = make_rayjob("j", "ns").head(cpu="1").workers(2, cpu="1").set(path, value).obj()
    with pytest.raises(ShapeError) as info:
        JobInfo.from_rayjob(obj)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_every_shape_error_is_reported_at_once() -> None:
    obj = (
        make_rayjob("j", "ns")
        .head(cpu="1")
        .workers(2, cpu="1")
        .workers(1, cpu="1", group="b")
        .set(f"{HEAD}.containers[0].resources.requests.cpu", "lots")
        .set(f"{W0}.replicas", 2.5)
        .set("spec.rayClusterSpec.workerGroupSpecs[1].template.spec.overhead", {"memory": "1Q"})
        .obj()
    )
    with pytest.raises(ShapeError) as info:
        JobInfo.from_rayjob(obj)
    assert [e.split(":")[0] for e in info.value.errors] == [
        f"{HEAD}.containers[0].resources.requests.cpu",
        f"{W0}.replicas",
        "spec.rayClusterSpec.workerGroupSpecs[1].template.spec.overhead.memory",
    ]


def test_a_rayjob_that_is_not_a_map_is_a_shape_error() -> None:
    with pytest.raises(ShapeError, match="expected a RayJob map, got a list"):
        JobInfo.from_rayjob([])  # type: ignore[arg-type]


# --- pods ------------------------------------------------------------------------------------------


def test_a_gang_ray_worker_pod() -> None:
    obj = (
        make_pod("rc-small-group-worker-abc", "algorithm-text", cpu="1")
        .quota("algorithm-text")
        .gang("rc", 31)
        .ray("rc", "worker", "small-group")
        .owner("RayCluster", "rc", "rc-uid")
        .scheduler("rayqueue")
        .priority(100)
        .obj()
    )
    pod = PodInfo.from_pod(obj)
    assert pod.request == Resources({"cpu": parse_quantity("cpu", "1")})
    assert (pod.quota_label, pod.gang_name, pod.min_available) == ("algorithm-text", "rc", 31)
    assert (pod.ray_cluster, pod.node_type, pod.ray_group) == ("rc", "worker", "small-group")
    assert pod.owner == OwnerRef(kind="RayCluster", name="rc", uid="rc-uid")
    assert (pod.scheduler_name, pod.priority, pod.node_name) == ("rayqueue", 100, None)
    assert (pod.phase, pod.terminal, pod.deleting) == ("Pending", False, False)
    assert pod.key == "algorithm-text/rc-small-group-worker-abc"
    assert pod.problems == ()


def test_a_plain_pod_has_defaults() -> None:
    obj = make_pod("p", "ns").obj()
    del obj["status"]
    pod = PodInfo.from_pod(obj)
    assert (pod.gang_name, pod.min_available, pod.ray_cluster, pod.owner, pod.quota_label) == (None,) * 5
    assert (pod.scheduler_name, pod.phase, pod.priority) == (keys.DEFAULT_SCHEDULER, "Pending", 0)


def test_the_pod_group_name_falls_back_to_the_x_k8s_label() -> None:
    obj = make_pod("p", "ns").label(keys.POD_GROUP_X, "rc").obj()
    assert PodInfo.from_pod(obj).gang_name == "rc"


def test_a_bad_min_available_label_is_recorded_not_raised() -> None:
    pod = PodInfo.from_pod(make_pod("p", "ns").gang("rc", "many").obj())
    assert pod.min_available is None
    (problem,) = pod.problems
    assert problem.startswith(
        f"metadata.labels[{keys.POD_GROUP_MIN_AVAILABLE}]: invalid min-available 'many'"
    )


@pytest.mark.parametrize(
    ("phase", "terminal"),
    [
        pytest.param("Succeeded", True, id="a succeeded pod is terminal"),
        pytest.param("Failed", True, id="a failed pod is terminal"),
        pytest.param("Running", False, id="a running pod is not terminal"),
        pytest.param("Pending", False, id="a pending pod is not terminal"),
    ],
)
def test_pod_terminal_phases(phase: str, terminal: bool) -> None:
    pod = PodInfo.from_pod(make_pod("p", "ns").phase(phase).node("n1").deleting().obj())
    assert (pod.phase, pod.terminal, pod.node_name, pod.deleting) == (phase, terminal, "n1", True)


def test_only_the_controller_owner_reference_is_the_owner() -> None:
    obj = make_pod("p", "ns").owner("ConfigMap", "cm", "u1", controller=False).obj()
    assert PodInfo.from_pod(obj).owner is None
    obj = make_pod("p", "ns").owner("ConfigMap", "cm", "u1", controller=False).owner("Job", "j", "u2").obj()
    assert PodInfo.from_pod(obj).owner == OwnerRef(kind="Job", name="j", uid="u2")


def test_a_malformed_pod_names_its_field_path() -> None:
    obj = make_pod("p", "ns", cpu="x").obj()
    obj["spec"]["priority"] = "high"
    with pytest.raises(ShapeError) as info:
        PodInfo.from_pod(obj)
    assert info.value.errors[0].startswith("spec.containers[0].resources.requests.cpu: invalid quantity 'x'")
    assert info.value.errors[1] == "spec.priority: expected an integer, got a string 'high'"


@pytest.mark.parametrize(
    ("obj", "name"),
    [
        pytest.param({"spec": {"rayClusterSpec": {"headGroupSpec": {"template": {"spec": {"priorityClassName": "urgent"}}}}}},
                     "urgent", id="the head template's priority class"),
        pytest.param({"spec": {"rayClusterSpec": {"headGroupSpec": {"template": {"spec": {}}}}}}, None, id="none set"),
        pytest.param({"spec": {"rayClusterSpec": []}}, None, id="a malformed spec is no class, not an error"),
        pytest.param({"spec": {"rayClusterSpec": {"headGroupSpec": {"template": {"spec": {"priorityClassName": ""}}}}}},
                     None, id="an empty name is no class"),
    ],
)
def test_priority_class_name(obj: dict[str, object], name: str | None) -> None:
    from common.rayjob import priority_class_name

    assert priority_class_name(obj) == name


# --- what KubeRay adds to the pods it builds -------------------------------------------------------


def test_kuberay_s_init_container_raises_a_small_worker_to_its_own_request() -> None:
    """A worker asking less than wait-gcs-ready (200m / 256Mi) is charged the init container's request:
    Kubernetes schedules the pod by max(containers, init containers), and KubeRay always injects it."""
    job = JobInfo.from_rayjob(make_rayjob("j", "ns").head(cpu="1").workers(3, cpu="100m", memory="64Mi").obj())
    assert job.worker_groups[0].pod_request == res(cpu="200m", memory="256Mi")
    assert job.request == res(cpu="1") + res(cpu="600m", memory="768Mi") + SUBMITTER


def test_without_init_container_injection_the_worker_is_its_template() -> None:
    off = KubeRayAdditions(worker_init_container=False)
    job = JobInfo.from_rayjob(make_rayjob("j", "ns").workers(1, cpu="100m").obj(), additions=off)
    assert job.worker_groups[0].pod_request == res(cpu="100m")


def test_kuberay_s_init_container_runs_after_the_template_s_own() -> None:
    """A template init container bigger than wait-gcs-ready wins; the two run one after the other."""
    job = JobInfo.from_rayjob(
        make_rayjob("j", "ns").workers(1, cpu="100m", init=[container("fetch", cpu="2", memory="1Gi")]).obj()
    )
    assert job.worker_groups[0].pod_request == res(cpu="2", memory="1Gi")


@pytest.mark.parametrize(
    ("options", "sidecar"),
    [
        pytest.param(None, res(cpu="500m", memory="512Mi"), id="KubeRay's default autoscaler sidecar"),
        pytest.param(
            {"resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "1Gi"}}},
            res(cpu="1", memory="1Gi"),
            id="autoscalerOptions.resources replace it whole, a missing request defaults to the limit",
        ),
    ],
)
def test_the_in_tree_autoscaler_sidecar_is_charged_to_the_head(options: dict[str, Any] | None, sidecar: Resources) -> None:
    builder = make_rayjob("j", "ns").head(cpu="2", memory="2Gi").set("spec.rayClusterSpec.enableInTreeAutoscaling", True)
    if options is not None:
        builder.set("spec.rayClusterSpec.autoscalerOptions", options)
    job = JobInfo.from_rayjob(builder.obj())
    assert job.head_request == res(cpu="2", memory="2Gi") + sidecar


def test_no_autoscaler_sidecar_unless_in_tree_autoscaling_is_on() -> None:
    builder = make_rayjob("j", "ns").head(cpu="2").set("spec.rayClusterSpec.autoscalerOptions", {"resources": {}})
    assert JobInfo.from_rayjob(builder.obj()).head_request == res(cpu="2")


def test_operator_sidecars_are_added_to_every_head_and_worker_pod() -> None:
    additions = KubeRayAdditions.from_operator(
        head_sidecars=[container("fluentbit", cpu="100m", memory="128Mi")],
        worker_sidecars=[container("fluentbit", cpu="100m", memory="128Mi"), container("proxy", cpu="50m")],
    )
    job = JobInfo.from_rayjob(make_rayjob("j", "ns").head(cpu="1").workers(2, cpu="1", memory="1Gi").obj(),
                              additions=additions)
    assert job.head_request == res(cpu="1100m", memory="128Mi")
    assert job.worker_groups[0].pod_request == res(cpu="1150m", memory="1152Mi")


def test_a_malformed_operator_sidecar_names_its_field() -> None:
    with pytest.raises(ShapeError, match=r"workerSidecarContainers\[0\]"):
        KubeRayAdditions.from_operator(worker_sidecars=[{"resources": {"requests": {"cpu": "lots"}}}])

"""A pod is charged exactly as kube-scheduler charges it (component-helpers ``PodRequests``), pod-level
``spec.resources`` included, and a RayJob's pods include what KubeRay v1.7's alpha feature gates add to them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.kuberay_additions import KubeRayAdditions
from common.kuberay_rules import FeatureGates
from common.pod_requests import (
    PodResources,
    aggregate_container_requests,
    container_request,
    default_pod_level_requests,
    effective_request,
    pod_request,
)
from common.rayjob import JobInfo, PodInfo
from common.resources import Resources
from common.wire import ShapeError, WireReader
from extender.settings import parse_settings
from tests.unit.builders import Obj, container, make_pod, make_rayjob
from tests.unit.test_extender_service import service
from tests.unit.test_webhook_policy import queued, review, validate

Amounts = dict[str, str]


def res(**amounts: str) -> Resources:
    """Resources from quantities; a ``hp_2Mi`` keyword means ``hugepages-2Mi``."""
    return Resources.parse({k.replace("hp_", "hugepages-"): v for k, v in amounts.items()})


def box(requests: Amounts | None = None, limits: Amounts | None = None, *, sidecar: bool = False) -> Obj:
    """A container with exactly these requests and limits (hugepages and storage included)."""
    return container("c", requests=requests, limits=limits, restart_policy="Always" if sidecar else None)


def spec(
    containers: list[Obj] | None = None,
    init: list[Obj] | None = None,
    *,
    requests: Amounts | None = None,
    limits: Amounts | None = None,
    overhead: Amounts | None = None,
) -> Obj:
    """A pod spec; ``requests`` / ``limits`` are the pod-level ``spec.resources``."""
    out: Obj = {"containers": containers or []}
    if init:
        out["initContainers"] = init
    if requests is not None or limits is not None:
        out["resources"] = {k: v for k, v in (("requests", requests), ("limits", limits)) if v is not None}
    if overhead:
        out["overhead"] = overhead
    return out


CPU2M_MEM3MI = box({"memory": "3Mi", "cpu": "2m"})
INIT_5MI_4M = box({"memory": "5Mi", "cpu": "4m"})


# --- component-helpers resource/helpers_test.go TestPodLevelResourceRequests ---------------------------------
# Every case of upstream's table except the two with SkipPodLevelResources: true (an option kube-scheduler's
# NodeResourcesFit never sets while PodLevelResources is on). Upstream's names, as sentences.
@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        pytest.param(spec(), Resources(), id="nil: a pod with nothing requests nothing"),
        pytest.param(spec(requests={"memory": "2Mi"}), res(memory="2Mi"),
                     id="pod level memory resource: the pod-level request is the request"),
        pytest.param(spec([box({"cpu": "2m"})], requests={"memory": "2Mi"}), res(memory="2Mi", cpu="2m"),
                     id="pod level memory and container level cpu: each resource from where it is set"),
        pytest.param(spec([box({"storage": "3Mi"})], requests={"storage": "2Mi"}), res(storage="3Mi"),
                     id="an unsupported resource set at both levels keeps the containers' value"),
        pytest.param(spec([box({"memory": "3Mi"})], requests={"storage": "2Mi"}), res(memory="3Mi"),
                     id="an unsupported resource set only at pod level is ignored"),
        pytest.param(spec([CPU2M_MEM3MI]), res(memory="3Mi", cpu="2m"),
                     id="only container level resources set: the containers' sum"),
        pytest.param(spec([CPU2M_MEM3MI], requests={"memory": "6Mi", "cpu": "8m"}), res(memory="6Mi", cpu="8m"),
                     id="both container-level and pod-level resources set: the pod level wins"),
        pytest.param(spec([CPU2M_MEM3MI], [INIT_5MI_4M]), res(memory="5Mi", cpu="4m"),
                     id="container-level resources and an init container: the larger"),
        pytest.param(spec([CPU2M_MEM3MI], [box({"memory": "5Mi", "cpu": "4m"}, sidecar=True)]),
                     res(memory="8Mi", cpu="6m"), id="container-level resources and a sidecar: their sum"),
        pytest.param(spec([CPU2M_MEM3MI], [box({"memory": "5Mi", "cpu": "4m"}, sidecar=True),
                                           box({"memory": "6Mi", "cpu": "8m"})]),
                     res(memory="11Mi", cpu="12m"), id="an init container after a sidecar runs beside it"),
        pytest.param(spec([CPU2M_MEM3MI], [box({"memory": "5Mi", "cpu": "4m"}, sidecar=True),
                                           box({"memory": "6Mi", "cpu": "8m"})],
                          requests={"memory": "15Mi", "cpu": "18m"}),
                     res(memory="15Mi", cpu="18m"), id="pod-level resources win over init and sidecar containers"),
        pytest.param(spec(requests={"memory": "10Mi", "hugepages-2Mi": "2Mi"}, limits={"hugepages-2Mi": "2Mi"}),
                     res(memory="10Mi", hp_2Mi="2Mi"), id="pod-level hugepages of a single page size"),
        pytest.param(spec(requests={"cpu": "1", "hugepages-2Mi": "2Mi", "hugepages-1Gi": "1Gi"},
                          limits={"hugepages-2Mi": "2Mi", "hugepages-1Gi": "1Gi"}),
                     res(cpu="1", hp_2Mi="2Mi", hp_1Gi="1Gi"), id="pod-level hugepages of several page sizes"),
        pytest.param(spec([box({"hugepages-2Mi": "6Mi"}, {"hugepages-2Mi": "6Mi"})],
                          requests={"cpu": "1", "hugepages-2Mi": "10Mi"}, limits={"hugepages-2Mi": "10Mi"}),
                     res(cpu="1", hp_2Mi="10Mi"), id="pod-level hugepages win over the containers' of that size"),
        pytest.param(spec([box({"cpu": "1", "hugepages-1Gi": "2Gi"}, {"hugepages-1Gi": "2Gi"})],
                          requests={"cpu": "1", "hugepages-2Mi": "10Mi", "hugepages-1Gi": "2Gi"},
                          limits={"hugepages-2Mi": "10Mi", "hugepages-1Gi": "2Gi"}),
                     res(cpu="1", hp_2Mi="10Mi", hp_1Gi="2Gi"), id="pod-level hugepages of several sizes with containers'"),
        pytest.param(spec([box({"memory": "4Mi", "hugepages-1Gi": "1Gi"}, {"hugepages-1Gi": "1Gi"})],
                          requests={"cpu": "1", "hugepages-2Mi": "10Mi"}, limits={"hugepages-2Mi": "10Mi"}),
                     res(cpu="1", memory="4Mi", hp_2Mi="10Mi", hp_1Gi="1Gi"),
                     id="a page size only the containers name comes from the containers"),
        # not in upstream's table: PodRequests adds the overhead after applyPodLevelResources
        pytest.param(spec([CPU2M_MEM3MI], requests={"cpu": "8m"}, overhead={"cpu": "1m", "memory": "1Mi"}),
                     res(cpu="9m", memory="4Mi"), id="the overhead is added after the pod-level value"),
    ],
)
def test_pod_level_resource_requests_follow_component_helpers(pod: Obj, expected: Resources) -> None:
    assert pod_request(pod) == expected
    assert PodInfo.from_pod({"metadata": {"name": "p", "namespace": "ns"}, "spec": pod}).request == expected


# --- kubernetes pkg/apis/core/v1/defaults_test.go TestPodResourcesDefaults ------------------------------------
# Upstream's pod-level cases (named as there; the copy of defaults_test.go in reach predates them, so they were
# read through a port that cites defaults_test.go:378, and checked against defaults.go defaultPodRequests).
# ``pod_level`` is spec.resources.requests after the apiserver's defaulting; ``charged`` is PodRequests of it.
@pytest.mark.parametrize(
    ("pod", "pod_level", "charged"),
    [
        pytest.param(spec([box()], limits={"cpu": "2m", "memory": "1Mi"}), res(cpu="2m", memory="1Mi"),
                     res(cpu="2m", memory="1Mi"),
                     id="pod limits only and containers without resources: the requests are the pod limits"),
        pytest.param(spec([box(limits={"cpu": "2m", "memory": "1Mi"})], limits={}), Resources(),
                     res(cpu="2m", memory="1Mi"),
                     id="empty pod limits default nothing at pod level; the containers' requests default to limits"),
        pytest.param(spec([box(limits={"cpu": "2m", "memory": "1Mi"}), box(limits={"cpu": "1m", "memory": "5Mi"})],
                          requests={}, limits={"cpu": "5m", "memory": "7Mi"}),
                     res(cpu="3m", memory="6Mi"), res(cpu="3m", memory="6Mi"),
                     id="pod limits with container limits: the requests are the containers' aggregate, not the limits"),
        pytest.param(spec([box(limits={"cpu": "2m", "hugepages-1Gi": "1Gi"}),
                           box(limits={"cpu": "1m", "hugepages-2Mi": "2Mi"})],
                          limits={"cpu": "5m", "hugepages-2Mi": "10Mi"}),
                     res(cpu="3m", hp_2Mi="10Mi"), res(cpu="3m", hp_2Mi="10Mi", hp_1Gi="1Gi"),
                     id="hugepages of another size than the pod's come from the containers"),
        pytest.param(spec([box(limits={"cpu": "2m", "hugepages-2Mi": "4Mi"}),
                           box(limits={"cpu": "1m", "hugepages-2Mi": "2Mi"})], limits={"cpu": "5m"}),
                     res(cpu="3m"), res(cpu="3m", hp_2Mi="6Mi"),
                     id="a pod cpu limit with container hugepages: cpu aggregated, hugepages the containers' sum"),
        pytest.param(spec([box(limits={"cpu": "2m", "hugepages-2Mi": "4Mi"}),
                           box(limits={"cpu": "1m", "hugepages-2Mi": "2Mi"})], requests={"cpu": "5m"}),
                     res(cpu="5m"), res(cpu="5m", hp_2Mi="6Mi"),
                     id="a pod cpu request is kept and hugepages come from the containers"),
        pytest.param(spec([box(limits={"cpu": "2m", "hugepages-2Mi": "4Mi"})],
                          requests={"cpu": "5m", "hugepages-2Mi": "10Mi"}, limits={"cpu": "5m", "hugepages-2Mi": "10Mi"}),
                     res(cpu="5m", hp_2Mi="10Mi"), res(cpu="5m", hp_2Mi="10Mi"),
                     id="pod hugepages requests and limits set: nothing changes"),
        pytest.param(spec([box({"cpu": "2m", "hugepages-2Mi": "4Mi"})], limits={"cpu": "5m"}),
                     res(cpu="2m"), res(cpu="2m", hp_2Mi="4Mi"),
                     id="container hugepages requests are never copied to the pod level (not overcommittable)"),
        pytest.param(spec([box({"storage": "1Mi", "ephemeral-storage": "5Mi"})], limits={"storage": "1Mi"}),
                     Resources(), res(storage="1Mi", **{"ephemeral-storage": "5Mi"}),
                     id="unsupported resources get no pod-level request"),
        pytest.param(spec([box({"storage": "1Mi"})], limits={"cpu": "2m", "memory": "1Mi", "storage": "1Mi"}),
                     res(cpu="2m", memory="1Mi"), res(cpu="2m", memory="1Mi", storage="1Mi"),
                     id="only the supported pod limits become pod-level requests"),
        # not upstream's: an explicit zero is a container request, so it, not the pod limit, is the default
        pytest.param(spec([box({"cpu": "0"})], limits={"cpu": "4"}), Resources(), Resources(),
                     id="a container's explicit zero request wins over the pod limit"),
    ],
)
def test_pod_level_requests_are_defaulted_as_the_apiserver_does(pod: Obj, pod_level: Resources, charged: Resources) -> None:
    parts = _parts(pod)
    aggregate = aggregate_container_requests(parts.containers, parts.init_containers)
    defaulted = default_pod_level_requests(aggregate, parts.pod_requests, parts.pod_limits)
    assert Resources({k: v for k, v in defaulted.items() if v}) == pod_level
    assert pod_request(pod) == charged


def _parts(pod: Obj) -> PodResources:
    """The PodResources of a pod spec, read with the module's own container reader (zeros kept)."""
    r = WireReader()
    pod_level = pod.get("resources", {})
    return PodResources(
        containers=[container_request(r, c, "c") for c in pod["containers"]],
        init_containers=[(container_request(r, c, "i"), c.get("restartPolicy") == "Always")
                         for c in pod.get("initContainers", [])],
        pod_requests=r.quantities(pod_level.get("requests"), "spec", "resources.requests"),
        pod_limits=r.quantities(pod_level.get("limits"), "spec", "resources.limits"),
    )


_AMOUNT = st.integers(0, 4)
_MAP = st.dictionaries(st.sampled_from(["cpu", "memory", "hugepages-2Mi", "storage"]), _AMOUNT, max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.lists(_MAP, max_size=3), st.lists(st.tuples(_MAP, st.booleans()), max_size=2), _MAP, _MAP, _MAP)
def test_a_live_pod_defaulted_by_the_apiserver_is_charged_the_same_again(
    containers: list[dict[str, int]], inits: list[tuple[dict[str, int], bool]],
    requests: dict[str, int], limits: dict[str, int], overhead: dict[str, int],
) -> None:
    """A 1.34 apiserver defaults a pod's pod-level requests before rayqueue sees it; rayqueue applies the same
    rule again (it cannot tell a defaulted pod from a template). Doing so must never change the charge."""
    pod = PodResources(containers=containers, init_containers=inits, pod_requests=requests, pod_limits=limits,
                       overhead=overhead)
    aggregate = aggregate_container_requests(containers, inits)
    defaulted = default_pod_level_requests(aggregate, requests, limits)
    again = PodResources(containers=containers, init_containers=inits, pod_requests=defaulted, pod_limits=limits,
                         overhead=overhead)
    assert effective_request(again) == effective_request(pod)
    assert default_pod_level_requests(aggregate, defaulted, limits) == defaulted


def test_a_pod_without_pod_level_resources_is_charged_as_before() -> None:
    """No spec.resources, or an empty one, or only an unsupported resource: the containers' aggregate."""
    base = spec([CPU2M_MEM3MI], [INIT_5MI_4M], overhead={"cpu": "1m"})
    for pod_level in (None, {}, {"requests": {}, "limits": {}}, {"requests": {"nvidia.com/gpu": "1"}}):
        pod = copy.deepcopy(base)
        if pod_level is not None:
            pod["resources"] = pod_level
        assert pod_request(pod) == res(cpu="5m", memory="5Mi"), pod_level


def test_a_malformed_pod_level_quantity_is_a_shape_error_with_its_path() -> None:
    with pytest.raises(ShapeError) as err:
        pod_request(spec([CPU2M_MEM3MI], requests={"cpu": "lots"}))
    assert err.value.errors[0].startswith("spec.resources.requests.cpu: ")


# --- the bypass of issue 23: 100m containers, spec.resources.requests.cpu: 64 ---------------------------------
BIG = {"requests": {"cpu": "64"}}


def test_a_rayjob_worker_with_pod_level_requests_is_reserved_at_its_pod_level_cpu() -> None:
    """Before: the worker was charged its containers (100m, the wait-gcs-ready init container's 200m the larger)
    and two of them 400m, while kube-scheduler places each at 64 CPU."""
    obj = (make_rayjob("j", "video").head(cpu="1").workers(2, cpu="100m", memory="1Gi")
           .set("spec.rayClusterSpec.workerGroupSpecs[0].template.spec.resources", BIG).obj())
    job = JobInfo.from_rayjob(obj)
    (group,) = job.worker_groups
    assert group.pod_request == res(cpu="64", memory="1Gi")  # memory: the containers' 1Gi > wait-gcs-ready 256Mi
    assert job.request == res(cpu="1") + res(cpu="64", memory="1Gi").scaled(2) + res(cpu="500m", memory="200Mi")


@pytest.mark.parametrize(
    ("where", "part"),
    [
        pytest.param("spec.rayClusterSpec.headGroupSpec.template.spec.resources", "head_request",
                     id="the head's template is charged its pod-level requests"),
        pytest.param("spec.submitterPodTemplate.spec.resources", "submitter_request",
                     id="a custom submitter template is charged its pod-level requests"),
    ],
)
def test_every_template_of_a_job_is_charged_its_pod_level_requests(where: str, part: str) -> None:
    b = make_rayjob("j", "video").head(cpu="100m").workers(1, cpu="1").submitter(container("s", cpu="100m"))
    job = JobInfo.from_rayjob(b.set(where, BIG).obj())
    assert getattr(job, part)["cpu"] == 64_000


def test_a_bare_raycluster_worker_is_charged_its_pod_level_requests() -> None:
    b = (make_rayjob("c", "video").head(cpu="1").workers(1, cpu="100m")
         .set("spec.rayClusterSpec.workerGroupSpecs[0].template.spec.resources", BIG))
    cluster = JobInfo.from_raycluster(b.as_raycluster())
    assert cluster.worker_groups[0].pod_request["cpu"] == 64_000


@pytest.mark.asyncio
async def test_a_live_pod_with_pod_level_requests_over_the_leafs_max_is_refused_at_bind() -> None:
    """video holds 6 of its max 14 CPU; a pod of 100m containers asking 64 CPU at pod level is refused by the
    quota verdict at bind with the numbers (before: charged 100m, it bound)."""
    svc = service()
    pod = make_pod("big", "video", cpu="100m").set("spec.resources", BIG).obj()
    svc.cache.on_pod("ADDED", pod)
    cached = svc.cache.pod("uid-video-big")
    assert cached is not None and cached.request == res(cpu="64")
    verdict = svc.quota_check(cached)
    assert not verdict and verdict.rule == "over-quota"
    answer = await svc.scheduling.bind({"PodName": "big", "PodNamespace": "video", "PodUID": "uid-video-big",
                                        "Node": "n1"})
    assert answer["Error"].startswith("rayqueue: pod video/big: root/algorithm/video: cpu used 6 + request 64 > max 14"), answer
    small = make_pod("small", "video", cpu="100m").obj()
    svc.cache.on_pod("ADDED", small)
    small_pod = svc.cache.pod("uid-video-small")
    assert small_pod is not None and svc.quota_check(small_pod), "the same pod without spec.resources fits"


def test_a_tenant_cannot_grow_an_admitted_job_through_pod_level_resources() -> None:
    """The webhook's admitted-request guard reads requests through the same function, so adding pod-level
    requests to a running job's worker template is refused like raising its replicas."""
    old = queued(**{"kube-queue/job-dequeue-timestamp": "2025-01-10 01:36:24.641181026 +0000 UTC"})
    old["spec"]["suspend"] = False
    new: dict[str, Any] = copy.deepcopy(old)
    new["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["resources"] = BIG
    verdict = validate(review(new, op="UPDATE", old=old))
    assert not verdict.allowed
    assert "rule admitted-request" in verdict.message and "cpu" in verdict.message


# --- KubeRay v1.7's alpha gates: RayClusterHistoryServer, RayClusterMTLS ---------------------------------------
ON = KubeRayAdditions().with_gates(FeatureGates(ray_cluster_history_server=True, ray_cluster_mtls=True))
COLLECTOR = res(cpu="50m", memory="64Mi")
TLS_WAIT = res(cpu="50m", memory="64Mi")
WAIT_GCS = res(cpu="200m", memory="256Mi")


def gated_job(**cluster_fields: Any) -> Obj:
    b = make_rayjob("j", "video").head(cpu="1", memory="1Gi").workers(2, cpu="1", memory="1Gi")
    for name, value in cluster_fields.items():
        b.set(f"spec.rayClusterSpec.{name}", value)
    return b.obj()


HISTORY = {"historyServerOptions": {"collectorOptions": {"image": "kuberay/collector:v1.7.0"}}}
MTLS = {"tlsOptions": {"enabled": True}}


@pytest.mark.parametrize(
    ("fields", "additions", "head", "worker"),
    [
        pytest.param(HISTORY, ON, res(cpu="1", memory="1Gi") + COLLECTOR, res(cpu="1", memory="1Gi") + COLLECTOR,
                     id="history server on: the collector sidecar is charged on the head and every worker"),
        pytest.param(HISTORY, KubeRayAdditions(), res(cpu="1", memory="1Gi"), res(cpu="1", memory="1Gi"),
                     id="history server gate off: collectorOptions add nothing"),
        pytest.param({"historyServerOptions": {"collectorOptions": {}}}, ON, res(cpu="1", memory="1Gi") + COLLECTOR,
                     res(cpu="1", memory="1Gi") + COLLECTOR, id="empty collectorOptions are set: the default collector"),
        pytest.param({"historyServerOptions": {}}, ON, res(cpu="1", memory="1Gi"), res(cpu="1", memory="1Gi"),
                     id="historyServerOptions without collectorOptions add nothing"),
        pytest.param({"historyServerOptions": {"collectorOptions": {"resources": {
                         "requests": {"cpu": "300m"}, "limits": {"cpu": "1", "memory": "2Gi"}}}}}, ON,
                     res(cpu="1300m", memory="3Gi"), res(cpu="1300m", memory="3Gi"),
                     id="collectorOptions resources replace the default whole, requests defaulting to limits"),
        pytest.param(MTLS, ON, res(cpu="1", memory="1Gi"), res(cpu="1", memory="1Gi"),
                     id="mTLS on: its 50m init container runs alone, below the containers"),
        pytest.param(MTLS, KubeRayAdditions(), res(cpu="1", memory="1Gi"), res(cpu="1", memory="1Gi"),
                     id="mTLS gate off: tlsOptions add nothing"),
    ],
)
def test_alpha_gate_containers_are_charged_when_the_operator_runs_with_them(
    fields: Obj, additions: KubeRayAdditions, head: Resources, worker: Resources,
) -> None:
    job = JobInfo.from_rayjob(gated_job(**fields), additions=additions)
    assert job.head_request == head
    assert job.worker_groups[0].pod_request == worker


def test_the_mtls_init_container_counts_where_it_is_the_largest() -> None:
    """Tiny containers: the head's request is the wait-for-tls-ip-san init container's 50m / 64Mi; a worker's the
    larger of it and wait-gcs-ready (they run one after the other, never together)."""
    obj = make_rayjob("j", "video").head(cpu="10m").workers(1, cpu="10m").set("spec.rayClusterSpec.tlsOptions",
                                                                          MTLS["tlsOptions"]).obj()
    on = JobInfo.from_rayjob(obj, additions=ON)
    off = JobInfo.from_rayjob(obj, additions=KubeRayAdditions())
    assert (on.head_request, off.head_request) == (TLS_WAIT, res(cpu="10m"))
    assert on.worker_groups[0].pod_request == WAIT_GCS == off.worker_groups[0].pod_request
    no_gcs_wait = KubeRayAdditions(worker_init_container=False).with_gates(FeatureGates(ray_cluster_mtls=True))
    assert JobInfo.from_rayjob(obj, additions=no_gcs_wait).worker_groups[0].pod_request == TLS_WAIT


def test_the_mtls_init_container_is_prepended_before_a_template_sidecar() -> None:
    """configureTLS prepends it: it runs before the template's sidecar starts, so alone; appended it would have
    run beside the sidecar (1 CPU + 50m). A template that names its own wait-for-tls-ip-san keeps it instead."""
    sidecar = container("proxy", cpu="1", restart_policy="Always")
    obj = (make_rayjob("j", "video").head(cpu="10m", init=[sidecar]).workers(1, cpu="1")
           .set("spec.rayClusterSpec.tlsOptions", {"enabled": True}).obj())
    assert JobInfo.from_rayjob(obj, additions=ON).head_request == res(cpu="1010m", memory="64Mi")
    own = container("wait-for-tls-ip-san", cpu="2")
    obj["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["initContainers"] = [own]
    assert JobInfo.from_rayjob(obj, additions=ON).head_request == res(cpu="2")


def test_a_bare_raycluster_gets_the_same_gated_containers() -> None:
    b = make_rayjob("c", "video").head(cpu="1").workers(1, cpu="1")
    for name, value in {**HISTORY, **MTLS}.items():
        b.set(f"spec.rayClusterSpec.{name}", value)
    cluster = JobInfo.from_raycluster(b.as_raycluster(), additions=ON)
    assert cluster.head_request == res(cpu="1") + COLLECTOR
    assert cluster.worker_groups[0].pod_request == res(cpu="1") + COLLECTOR + res(memory="192Mi")


def test_the_extender_reads_the_operators_feature_gates() -> None:
    gated = parse_settings(["--no-leader-elect", "--kuberay-feature-gates",
                            "RayClusterHistoryServer=true,RayClusterMTLS=true"]).kuberay_additions
    assert (gated.history_server, gated.mtls) == (True, True)
    plain = parse_settings(["--no-leader-elect"]).kuberay_additions
    assert (plain.history_server, plain.mtls) == (False, False)
    from common.cli_settings import SettingsError

    with pytest.raises(SettingsError) as err:
        parse_settings(["--no-leader-elect", "--kuberay-feature-gates", "KubernetesWAS=true,Bad"])
    assert "KubernetesWAS=true" in str(err.value) and "'Bad': expected GATE=true or GATE=false" in str(err.value)

"""Elastic jobs (docs/elastic.md): the reservation, the gang and the webhook's stamps hold each worker group's
floor; the workers above it are growth."""

from __future__ import annotations

import pytest

from common import keys
from common.accounting import covered_pods, maximum_request, reservation
from common.rayjob import JobInfo, PodInfo
from tests.unit.builders import RayJobBuilder, make_ray_pod, make_raycluster, make_rayjob
from tests.unit.test_webhook_policy import CFG_SCHED, gang_job, mutate, review

CPU = "cpu"


def trainer(*, elastic: bool = True, replicas: int = 6, floor: int | None = 2, hosts: int | None = None,
            autoscaling: bool = False, max_replicas: int | None = None) -> RayJobBuilder:
    """1 head (1 cpu) + a group of 2-cpu workers, the default submitter (500m)."""
    job = (make_rayjob("train", "video").uid("uid-train").head(cpu="1", memory="1Gi")
           .workers(replicas, cpu="2", memory="1Gi", group="w", min_replicas=floor, max_replicas=max_replicas,
                    num_of_hosts=hosts))
    if elastic:
        job = job.label(keys.ELASTIC, "true")
    if autoscaling:
        job = job.set("spec.rayClusterSpec.enableInTreeAutoscaling", True)
    return job


@pytest.mark.parametrize(
    ("builder", "elastic", "cpu", "gang"),
    [
        pytest.param(trainer(), True, 1000 + 500 + 2 * 2000, 3, id="a labelled job reserves head, submitter and its floor"),
        pytest.param(trainer(elastic=False), False, 1000 + 500 + 6 * 2000, 7, id="a rigid job reserves every replica"),
        pytest.param(trainer(hosts=2), True, 1000 + 500 + 4 * 2000, 5, id="the floor counts numOfHosts"),
        pytest.param(trainer(floor=None), True, 1000 + 500, 1, id="no minReplicas is a floor of no worker"),
        pytest.param(trainer(elastic=False, autoscaling=True, max_replicas=8), True, 1000 + 500 + 500 + 2 * 2000, 3,
                     id="the autoscaler makes a job elastic, its sidecar charged to the head"),
        pytest.param(trainer(elastic=False).label(keys.ELASTIC, "yes"), False, 1000 + 500 + 6 * 2000, 7,
                     id="only the value true makes a job elastic"),
    ],
)
def test_an_elastic_job_reserves_its_floor_and_its_gang_needs_only_that(
    builder: RayJobBuilder, elastic: bool, cpu: int, gang: int
) -> None:
    job = JobInfo.from_rayjob(builder.obj())
    assert (job.elastic, job.request.get(CPU), job.min_available) == (elastic, cpu, gang)
    assert reservation(job, ()) == job.request


def test_the_ceiling_is_replicas_without_the_autoscaler_and_max_replicas_with_it() -> None:
    rigid_ceiling = maximum_request(JobInfo.from_rayjob(trainer().obj()))
    assert rigid_ceiling is not None and rigid_ceiling.get(CPU) == 1000 + 500 + 6 * 2000
    auto = maximum_request(JobInfo.from_rayjob(trainer(elastic=False, autoscaling=True, max_replicas=8).obj()))
    assert auto is not None and auto.get(CPU) == 1000 + 500 + 500 + 8 * 2000


def _workers(job: JobInfo, count: int) -> list[PodInfo]:
    cluster = make_raycluster("train-rc", "video", job_uid=job.uid)
    return [PodInfo.from_pod(make_ray_pod(f"w{i}", cluster, group="w", cpu="2").uid(f"uid-w{i}").node("n1")
                             .set("metadata.creationTimestamp", f"2025-01-10T01:40:0{i}Z").obj())
            for i in range(count)]


def test_an_elastic_jobs_oldest_workers_up_to_its_floor_are_covered_and_the_newer_ones_are_growth() -> None:
    job = JobInfo.from_rayjob(trainer().obj())
    pods = _workers(job, 6)
    assert covered_pods(job, pods) == {"uid-w0", "uid-w1"}
    assert reservation(job, pods).get(CPU) == 1000 + 500 + 2 * 2000
    rigid = JobInfo.from_rayjob(trainer(elastic=False).obj())
    assert len(covered_pods(rigid, pods)) == 6


def test_the_webhook_stamps_the_floor_as_an_elastic_gangs_min_available() -> None:
    job = gang_job()
    job["metadata"].setdefault("labels", {})[keys.ELASTIC] = "true"
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplicas"] = 4
    _, out = mutate(review(job), CFG_SCHED)
    cluster = out["spec"]["rayClusterSpec"]
    for template in (cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]):
        assert template["metadata"]["labels"][keys.POD_GROUP_MIN_AVAILABLE] == "5"

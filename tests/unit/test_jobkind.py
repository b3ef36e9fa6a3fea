"""The job-kind seam (common/jobkind.py): what differs between a RayJob and a bare RayCluster, in one table."""

from __future__ import annotations

import pytest

from common import keys
from common.jobkind import RAYCLUSTER, RAYJOB, JobKind, kind_of, release_patch, resume_patch
from tests.unit.builders import make_rayjob


def _job() -> dict[str, object]:
    return make_rayjob("j", "video").uid("uid-j").submission_mode("HTTPMode").head(cpu="1").workers(2, cpu="1").obj()


@pytest.mark.parametrize(
    ("kind", "plural", "unit", "size"),
    [
        pytest.param(RAYJOB, "rayjobs", "j-ray-qu", None, id="a RayJob's QueueUnit is <job>-ray-qu, no size recorded"),
        pytest.param(RAYCLUSTER, "rayclusters", "j-rc-qu", '{"small-group":2}',
                     id="a bare RayCluster's is <name>-rc-qu and its admitted replicas are recorded"),
    ],
)
def test_each_kind_names_its_objects_and_what_its_dequeue_records(kind: JobKind, plural: str, unit: str,
                                                                  size: str | None) -> None:
    obj = _job() if kind is RAYJOB else make_rayjob("j", "video").uid("uid-j").head(cpu="1").workers(
        2, cpu="1").as_raycluster()
    info = kind.convert(obj)
    assert (info.kind, kind.plural, kind.queue_unit_name(info.name), kind.admitted_size(info)) == (
        kind.kind, plural, unit, size)
    assert kind_of(info.kind) is kind


@pytest.mark.parametrize(
    ("kind", "running", "started"),
    [
        pytest.param(RAYJOB, "Running", True, id="a RayJob runs once its jobDeploymentStatus is Running"),
        pytest.param(RAYJOB, "Initializing", False, id="an initializing RayJob has not started"),
        pytest.param(RAYCLUSTER, "ready", True, id="a bare RayCluster runs once KubeRay calls it ready"),
        pytest.param(RAYCLUSTER, "", False, id="a bare RayCluster with no state has not started"),
    ],
)
def test_started_is_each_kinds_own_test(kind: JobKind, running: str, started: bool) -> None:
    builder = make_rayjob("j", "video").uid("uid-j").head(cpu="1")
    obj = builder.status(running).obj() if kind is RAYJOB else builder.as_raycluster(running or None)
    assert kind.started(kind.convert(obj)) is started


def test_the_patches_remove_what_the_kinds_dequeue_wrote() -> None:
    assert resume_patch("stamp", None, "7") == {
        "metadata": {"annotations": {keys.DEQUEUE_TIMESTAMP: "stamp"}, "resourceVersion": "7"},
        "spec": {"suspend": False}}
    assert release_patch(RAYCLUSTER, suspend=True, clear_notice=False) == {
        "metadata": {"annotations": {keys.DEQUEUE_TIMESTAMP: None, keys.ADMITTED_REPLICAS: None}},
        "spec": {"suspend": True}}
    assert release_patch(RAYJOB, suspend=False, clear_notice=True) == {
        "metadata": {"annotations": {keys.DEQUEUE_TIMESTAMP: None, keys.PREEMPTION_NOTICE: None,
                                     keys.CHECKPOINTED: None}}}


def test_a_kind_not_queued_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="not a queued kind: 'Pod'"):
        kind_of("Pod")


@pytest.mark.parametrize(
    ("kind", "controls_parents"),
    [
        pytest.param(RAYJOB, True, id="a RayJob controls its RayClusters and submitter Jobs"),
        pytest.param(RAYCLUSTER, False, id="a bare RayCluster is its own parent and controls none"),
    ],
)
def test_each_kind_reads_its_own_priority_class_and_says_whether_it_controls_parents(
        kind: JobKind, controls_parents: bool) -> None:
    built = make_rayjob("j", "video").uid("uid-j").head(cpu="1", priority_class="high")
    obj = built.obj() if kind is RAYJOB else built.as_raycluster()
    assert kind.priority_class(obj) == "high"
    assert kind.priority_class({"spec": {}}) is None
    assert kind.controls_parents is controls_parents

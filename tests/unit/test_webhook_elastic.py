"""The webhook's guards of elastic jobs (docs/elastic.md, docs/security.md): tenants with edit rights in their
namespace can neither write the controller's ``rayqueue.io/elastic-target`` nor flip an admitted job between
elastic and rigid where that changes its reservation or its gang (rules elastic-target, controller-annotations,
admitted-elastic)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from common import keys
from tests.unit.builders import RayJobBuilder, make_rayjob
from tests.unit.test_webhook_policy import CONTROLLER, mutate, review, validate

ADMITTED_AT = "2025-01-10 01:36:30 +0000 UTC"
TARGET = '{"w":4}'
CLUSTER = {"resource": "rayclusters", "kind": "RayCluster"}
Change = Callable[[dict[str, Any]], None]


def _job(floor: int = 1) -> RayJobBuilder:
    """A video job of a 2-CPU head and 4 workers of 2 CPU (floor ``floor``): 10 CPU whole, 2 + 2 x floor elastic."""
    return make_rayjob("j", "video").head(cpu="2", memory="1Gi").workers(
        4, cpu="2", memory="1Gi", group="w", min_replicas=floor, max_replicas=4)


def _queued(builder: RayJobBuilder, *, bare: bool = False) -> dict[str, Any]:
    """As the mutation leaves it: suspended, stamped, labelled."""
    obj = builder.as_raycluster() if bare else builder.obj()
    _, out = mutate(review(obj, **CLUSTER) if bare else review(obj))
    return out


def _admitted(builder: RayJobBuilder, *, bare: bool = False) -> dict[str, Any]:
    obj = _queued(builder, bare=bare)
    obj["metadata"]["annotations"][keys.DEQUEUE_TIMESTAMP] = ADMITTED_AT
    if bare:
        obj["metadata"]["annotations"][keys.ADMITTED_REPLICAS] = '{"w":4}'
    obj["spec"]["suspend"] = False
    return obj


def _update(old: dict[str, Any], change: Change, *, bare: bool = False, user: dict[str, Any] | None = None) -> Any:
    new = copy.deepcopy(old)
    change(new)
    extra: dict[str, Any] = {"user": user} if user is not None else {}
    return validate(review(new, op="UPDATE", old=old, **CLUSTER, **extra) if bare
                    else review(new, op="UPDATE", old=old, **extra))


def _label(value: str | None) -> Change:
    def change(obj: dict[str, Any]) -> None:
        labels = obj["metadata"].setdefault("labels", {})
        if value is None:
            labels.pop(keys.ELASTIC, None)
        else:
            labels[keys.ELASTIC] = value
    return change


def _autoscaling(value: bool, *, bare: bool = False) -> Change:
    def change(obj: dict[str, Any]) -> None:
        (obj["spec"] if bare else obj["spec"]["rayClusterSpec"])["enableInTreeAutoscaling"] = value
    return change


def _target(value: str | None) -> Change:
    def change(obj: dict[str, Any]) -> None:
        annotations = obj["metadata"]["annotations"]
        if value is None:
            annotations.pop(keys.ELASTIC_TARGET, None)
        else:
            annotations[keys.ELASTIC_TARGET] = value
    return change


# --- rayqueue.io/elastic-target ----------------------------------------------------------------------------


def test_a_tenants_elastic_target_is_dropped_at_create_and_refused_where_the_mutation_was_skipped() -> None:
    job = _job().elastic().annotate(keys.ELASTIC_TARGET, '{"w":400}').obj()
    _, mutated = mutate(review(job))
    assert keys.ELASTIC_TARGET not in mutated["metadata"]["annotations"]
    verdict = validate(review(job))
    assert not verdict.allowed and verdict.message.endswith(
        f"RayJob video/j: rule elastic-target: only the queue controller may set annotation {keys.ELASTIC_TARGET} "
        """('{"w":400}'): it records the replicas an elastic job asked for when it is admitted smaller; ask for """
        "workers with each group's replicas"), verdict.message


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(None, TARGET, id="setting the target on a queued job is refused"),
        pytest.param(TARGET, '{"w":400}', id="raising the target of a job admitted smaller is refused"),
        pytest.param(TARGET, None, id="removing the target of a job admitted smaller is refused"),
    ],
)
def test_only_the_controller_writes_the_elastic_target_of_a_queued_job(before: str | None, after: str | None) -> None:
    old = _queued(_job().elastic())
    _target(before)(old)
    verdict = _update(old, _target(after))
    assert not verdict.allowed
    assert (f"rule controller-annotations: only the queue controller may change annotation {keys.ELASTIC_TARGET} "
            f"({before!r} -> {after!r})") in verdict.message, verdict.message
    assert _update(old, _target(after), user=CONTROLLER).allowed


# --- flipping an admitted job between elastic and rigid ------------------------------------------------------

RIGID = "{cpu: 10500m, memory: 5320Mi}"  # head 2 + 4 workers x 2 + the default submitter's 500m / 200Mi
ELASTIC = "{cpu: 4500m, memory: 2248Mi}"  # head + the floor of 1 worker + the submitter


@pytest.mark.parametrize(
    ("builder", "change", "words"),
    [
        pytest.param(_job(), _label("true"),
                     f"the job was admitted in queue root-algorithm-video (quota root/algorithm/video) as rigid; label "
                     f"{keys.ELASTIC} None -> 'true' would make it elastic while it runs: its reservation {RIGID} -> "
                     f"{ELASTIC}, its gang min-available 5 -> 2 (suspend it to requeue as elastic)",
                     id="labelling an admitted rigid job elastic is refused: its reservation would drop to its floor"),
        pytest.param(_job().elastic(), _label(None),
                     f"as elastic; label {keys.ELASTIC} 'true' -> None would make it rigid while it runs: its "
                     f"reservation {ELASTIC} -> {RIGID}, its gang min-available 2 -> 5",
                     id="unlabelling an admitted elastic job is refused: its growth would be covered unchecked"),
        pytest.param(_job().elastic(), _label("false"),
                     f"label {keys.ELASTIC} 'true' -> 'false' would make it rigid",
                     id="any other value of the label is rigid and refused the same"),
        pytest.param(_job(), _autoscaling(True),
                     "as rigid; spec.rayClusterSpec.enableInTreeAutoscaling None -> True would make it elastic",
                     id="turning the autoscaler on in an admitted rigid job is refused"),
    ],
)
def test_an_admitted_job_cannot_flip_between_elastic_and_rigid_where_it_changes_its_reservation_or_gang(
    builder: RayJobBuilder, change: Change, words: str
) -> None:
    old = _admitted(builder)
    verdict = _update(old, change)
    assert not verdict.allowed and "RayJob video/j: rule admitted-elastic: " in verdict.message, verdict.message
    assert words in verdict.message, verdict.message
    assert _update(old, change, user=CONTROLLER).allowed


@pytest.mark.parametrize(
    ("old", "change"),
    [
        pytest.param(_queued(_job()), _label("true"), id="a waiting job may be made elastic: it is admitted as it is"),
        pytest.param(_admitted(_job(floor=4)), _label("true"),
                     id="a flip that changes neither reservation nor gang is harmless: every floor at its replicas"),
        pytest.param(_admitted(_job().elastic()), _label("true"), id="keeping the label is no flip"),
    ],
)
def test_a_flip_that_cannot_jump_the_queue_is_allowed(old: dict[str, Any], change: Change) -> None:
    verdict = _update(old, change)
    assert verdict.allowed, verdict.message


def test_an_admitted_bare_cluster_cannot_be_made_elastic_either() -> None:
    old = _admitted(_job(), bare=True)
    verdict = _update(old, _label("true"), bare=True)
    assert not verdict.allowed
    assert ("RayCluster video/j: rule admitted-elastic: the cluster was admitted in queue root-algorithm-video "
            "(quota root/algorithm/video) as rigid; label") in verdict.message, verdict.message
    verdict = _update(old, _autoscaling(True, bare=True), bare=True)
    assert not verdict.allowed and "spec.enableInTreeAutoscaling None -> True" in verdict.message, verdict.message

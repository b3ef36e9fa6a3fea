"""The lean admission path: copy-on-write mutations leave the request intact, and the shell's defaults."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from common import keys
from common.kuberay_additions import default_submitter_request
from common.pod_requests import pod_request
from common.rayjob import JobInfo
from common.wire import ShapeError
from tests.unit.test_jsonpatch import _json, apply
from tests.unit.test_webhook_policy import (
    CFG,
    CFG_SCHED,
    SNAP,
    gang_job,
    pod,
    pod_review,
    queued,
    review,
    video_job,
)
from webhook.jsonpatch import diff
from webhook.policy import PolicyConfig, admit
from webhook.review import Request
from webhook.server import build_app, start
from webhook.settings import parse_settings

# --- mutations write into a draft, never into the request -------------------------------------------


def _gang_with_submitter() -> dict[str, Any]:
    job = gang_job()
    job["spec"]["submitterPodTemplate"] = {"spec": {"containers": [{"name": "s", "image": "ray"}]}}
    return job


def _priority_change() -> Request:
    old = queued()
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][keys.PRIORITY_OVERRIDE] = "7"
    return review(new, op="UPDATE", old=old)


def _bare_pod() -> dict[str, Any]:
    out = pod(labels={keys.RAY_CLUSTER: "c1", keys.POD_GROUP_MIN_AVAILABLE: "3"})
    del out["spec"]
    return out


MUTATIONS = [
    pytest.param(lambda: review(video_job()), CFG, id="a RayJob CREATE is mutated without touching the request"),
    pytest.param(lambda: review(gang_job()), CFG_SCHED,
                 id="a gang RayJob CREATE stamps every template without touching the request"),
    pytest.param(lambda: review(_gang_with_submitter()), CFG_SCHED,
                 id="a RayJob with a submitter template is stamped without touching the request"),
    pytest.param(_priority_change, CFG, id="a priority change is recorded without touching the request"),
    pytest.param(lambda: pod_review(pod(labels={keys.RAY_CLUSTER: "c1", keys.POD_GROUP_MIN_AVAILABLE: "3"})),
                 CFG_SCHED, id="a gang Pod CREATE is labelled without touching the request"),
    pytest.param(lambda: pod_review(_bare_pod()), CFG_SCHED,
                 id="a Pod without a spec gets one without touching the request"),
]


@pytest.mark.parametrize(("make", "cfg"), MUTATIONS)
def test_a_mutation_leaves_the_request_unchanged_and_its_patch_is_minimal(
    make: Callable[[], Request], cfg: PolicyConfig
) -> None:
    req = make()
    before = copy.deepcopy(dict(req.obj)), copy.deepcopy(dict(req.old))
    verdict = admit(req, SNAP, cfg, mutating=True)
    assert verdict.allowed, verdict.message
    assert verdict.patch, "each case changes something"
    assert (dict(req.obj), dict(req.old)) == before
    mutated = apply(dict(req.obj), list(verdict.patch))
    assert diff(before[0], mutated) == list(verdict.patch), "the patch holds exactly the changes"
    assert admit(req, SNAP, cfg, mutating=True) == verdict, "a second admission of the same request agrees"


@pytest.mark.parametrize("op", ["CREATE", "UPDATE"])
def test_validating_templates_without_a_spec_leaves_the_request_unchanged(op: str) -> None:
    job = queued(gang_job())
    job["spec"]["submitterPodTemplate"] = {"metadata": {"labels": {"role": "submitter"}}}
    req = review(job, op=op, old=copy.deepcopy(job) if op == "UPDATE" else None)
    before = copy.deepcopy(job)
    verdict = admit(req, SNAP, CFG_SCHED, mutating=False)
    # KubeRay cannot build a submitter from a template without containers: refused at create, tolerated on an
    # update that does not add it (common/kuberay_rules getSubmitterTemplate rule).
    assert verdict.allowed == (op == "UPDATE"), verdict.message
    assert dict(req.obj) == before, "no spec is added to the submitter template"


def test_a_foreign_scheduler_in_a_worker_template_is_still_refused_without_a_copy() -> None:
    job = gang_job()
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["schedulerName"] = "volcano"
    verdict = admit(review(job), SNAP, CFG_SCHED, mutating=False)
    assert not verdict.allowed
    assert "rule scheduler-name" in verdict.message and "'volcano'" in verdict.message


# --- the diff skips what the draft shares ------------------------------------------------------------


@given(st.data(), st.dictionaries(st.sampled_from(["a", "b/c", "d", "e"]), _json))
def test_a_shared_subtree_diffs_like_an_equal_copy(data: st.DataObject, old: dict[str, Any]) -> None:
    """A draft shares the subtrees it does not write: diffing it must give what a deep copy gives."""
    new: dict[str, Any] = {}
    for key, value in old.items():
        choice = data.draw(st.sampled_from(["share", "replace", "drop"]))
        if choice == "share":
            new[key] = value
        elif choice == "replace":
            new[key] = data.draw(_json)
    new.update(data.draw(st.dictionaries(st.sampled_from(["x", "y"]), _json)))
    assert diff(old, new) == diff(old, copy.deepcopy(new))
    assert apply(old, diff(old, new)) == new


# --- RayJob parsing: remembered constants and quantities -----------------------------------------------


def test_the_default_submitter_request_is_computed_once_and_shared() -> None:
    assert default_submitter_request() is default_submitter_request()
    assert dict(default_submitter_request()) == {"cpu": 500, "memory": 200 * 2**20}


@pytest.mark.parametrize(
    ("cpu", "expected"),
    [
        pytest.param(1, 1000, id="an integer quantity is parsed"),
        pytest.param(1.5, 1500, id="a float quantity is not confused with a remembered integer"),
        pytest.param("1", 1000, id="a string quantity is not confused with a remembered number"),
    ],
)
def test_remembered_quantities_keep_their_types_apart(cpu: object, expected: int) -> None:
    for _ in range(2):
        assert pod_request({"containers": [{"resources": {"requests": {"cpu": cpu}}}]})["cpu"] == expected


def test_a_bad_quantity_is_reported_on_every_parse_not_only_the_first() -> None:
    job = video_job()
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "lots"}}
    for _ in range(2):
        with pytest.raises(ShapeError, match=r"workerGroupSpecs\[0\]\.template\.spec\.containers\[0\]"
                                             r"\.resources\.requests\.cpu: invalid quantity 'lots'"):
            JobInfo.from_rayjob(job)


# --- the shell: no access log unless asked -------------------------------------------------------------


async def _post_one(access_log: bool | None) -> None:
    app = build_app({"/validate": lambda r: {"allowed": True}}, readiness=lambda: True,
                    metrics_registry=CollectorRegistry())
    server = await (start(app, "127.0.0.1", 0, None) if access_log is None
                    else start(app, "127.0.0.1", 0, None, access_log=access_log))
    try:
        body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u-1"}}
        async with ClientSession() as session, session.post(
            f"http://127.0.0.1:{server.port}/validate", data=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert (await resp.json())["response"] == {"uid": "u-1", "allowed": True}
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("access_log", "lines"),
    [
        pytest.param(None, 0, id="by default an admission request writes no access log line"),
        pytest.param(False, 0, id="access_log=False writes no access log line"),
        pytest.param(True, 1, id="access_log=True writes aiohttp's line per request"),
    ],
)
@pytest.mark.asyncio
async def test_the_access_log_is_opt_in(
    access_log: bool | None, lines: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        await _post_one(access_log)
    logged = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert len(logged) == lines
    assert all("POST /validate" in r.getMessage() for r in logged)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        pytest.param([], False, id="the settings have no access log by default"),
        pytest.param(["--access-log"], True, id="--access-log turns the access log on"),
    ],
)
def test_the_access_log_flag(tmp_path: Path, flags: list[str], expected: bool) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("cert")
    key.write_text("key")
    settings = parse_settings(["--tls-cert", str(cert), "--tls-key", str(key), *flags])
    assert settings.access_log is expected

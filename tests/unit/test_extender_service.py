"""The extender's own quota decisions for kube-scheduler: which pods may bind, which victims may be evicted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from common.clock import FakeClock
from extender.app import Service
from extender.settings import parse_settings
from kubeio.client import ApiError
from tests.unit.builders import make_pod
from tests.unit.test_cache import CLUSTER, admitted, node, ray_pod, seed_tree


def service() -> Service:
    svc = Service(parse_settings(["--no-leader-elect"]), None, FakeClock())
    svc.cache.on_tree("ADDED", seed_tree())
    svc.cache.on_node("ADDED", node("n1"))
    svc.cache.on_rayjob("ADDED", admitted("a").obj())
    svc.cache.on_raycluster("ADDED", CLUSTER)
    for name, ns, cpu, priority in [("lone", "video", "2", 0), ("borrower", "intern", "2", 0),
                                    ("outsider", "elsewhere", "2", 0)]:
        svc.cache.on_pod("ADDED", make_pod(name, ns, cpu=cpu).node("n1").priority(priority).obj())
    svc.cache.on_pod("ADDED", ray_pod("h", "head").node("n1").obj())
    return svc


def pod(name: str, ns: str = "video", cpu: str = "1", priority: int = 0):  # type: ignore[no-untyped-def]
    from common.rayjob import PodInfo

    return PodInfo.from_pod(make_pod(name, ns, cpu=cpu).priority(priority).obj())


@pytest.mark.parametrize(
    ("victim", "preemptor", "why"),
    [
        pytest.param("uid-video-h", pod("x", "algorithm-text", priority=100),
                     "pod video/h belongs to admitted RayJob video/a: RayJobs are reclaimed whole",
                     id="a pod of an admitted RayJob is never a single victim"),
        pytest.param("uid-video-lone", pod("x", "algorithm-text", priority=100),
                     "pod video/lone's quota root/algorithm/video is within its min",
                     id="a pod of a quota within its min is protected from other quotas"),
        pytest.param("uid-video-lone", pod("x", "video", priority=100), None,
                     id="a higher-priority pod of the same quota may preempt within it"),
        pytest.param("uid-intern-borrower", pod("x", "algorithm-text", priority=100), None,
                     id="a pod of a borrowing quota may be evicted"),
        pytest.param("uid-elsewhere-outsider", pod("x", "video"), None, id="a pod outside any quota is not ours to guard"),
    ],
)
def test_protected_victims(victim: str, preemptor: object, why: str | None) -> None:
    svc = service()
    victim_pod = svc.cache.pod(victim)
    assert victim_pod is not None
    reason = svc.protected(victim_pod, preemptor)  # type: ignore[arg-type]
    if why is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(why), reason


def test_quota_check_admits_covered_pods_and_refuses_an_uncovered_pod_over_max() -> None:
    svc = service()
    head = svc.cache.pod("uid-video-h")
    assert head is not None and svc.quota_check(head)
    refused = svc.quota_check(pod("big", "video", cpu="20"))
    assert not refused
    assert refused.reason.startswith("root/algorithm/video: cpu used 6 + request 20 > max 14"), refused.reason
    assert svc.quota_check(pod("free", "elsewhere", cpu="500"))


def test_a_pod_of_an_admitted_job_beyond_its_reservation_must_fit_the_quota() -> None:
    """Job a reserved its head (4 CPU); more pods of its cluster are growth, checked like any pod: video
    already holds a's 4 + lone's 2, so 2 more workers (8) pass max 14 and a third would not."""
    svc = service()
    for name in ("w1", "w2"):
        svc.cache.on_pod("ADDED", ray_pod(name).obj())
        worker = svc.cache.pod(f"uid-video-{name}")
        assert worker is not None and svc.quota_check(worker), name
        svc.cache.assume_bound(worker.uid, "n1")
    svc.cache.on_pod("ADDED", ray_pod("w3").obj())
    third = svc.cache.pod("uid-video-w3")
    assert third is not None
    refused = svc.quota_check(third)
    assert not refused
    assert refused.reason.startswith("root/algorithm/video: cpu used 14 + request 4 > max 14"), refused.reason


# --- the Binding call behind /bind: transient failures are tried again --------------------------------------


class BindingApi:
    """The apiserver's pods/binding subresource for the bind path: ``failures`` answers first (an ApiError or an
    OSError each), then it binds; a pod already bound answers 409 as kube-apiserver does ("pod ... is already
    assigned to node"), and GET of the pod shows its nodeName. ``landed`` makes a failed call bind anyway (the
    answer lost after the write, as a timeout can)."""

    def __init__(self, failures: list[Exception], *, landed: bool = False) -> None:
        self.failures, self.landed = failures, landed
        self.node: dict[str, str] = {}
        self.calls = 0

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        name = path.split("/")[-2]
        if name in self.node:
            raise ApiError(409, "Conflict", f'pod {name} is already assigned to node "{self.node[name]}"', "POST", path)
        if self.failures:
            if self.landed:
                self.node[name] = body["target"]["name"]
            raise self.failures.pop(0)
        self.node[name] = body["target"]["name"]
        return {"kind": "Status", "status": "Success"}

    async def get(self, path: str) -> dict[str, Any]:
        name = path.rsplit("/", 1)[-1]
        return {"metadata": {"name": name, "uid": f"uid-video-{name}"}, "spec": {"nodeName": self.node.get(name)}}


def _binder(api: BindingApi) -> Service:
    svc = service()
    svc.cache.on_pod("ADDED", make_pod("member", "video", cpu="1").obj())
    svc.scheduling.client = api  # type: ignore[assignment]
    svc.scheduling.bind_pauses = (0.0, 0.0, 0.0)
    return svc


UNAVAILABLE = ApiError(500, "InternalError", 'failed calling webhook "pods.validate.rayqueue.io": connection refused')


@pytest.mark.parametrize(
    ("failures", "landed", "error", "calls"),
    [
        pytest.param([UNAVAILABLE, ConnectionRefusedError("refused")], False, "", 3,
                     id="a webhook the apiserver could not call and a refused connection are tried again, then it binds"),
        pytest.param([TimeoutError("read timed out")], True, "", 2,
                     id="a call that landed but lost its answer is bound: the retry's 409 shows the pod on this node"),
        pytest.param([UNAVAILABLE] * 4, False, "binding video/member to n1 failed: : 500 InternalError: failed calling", 4,
                     id="it gives up after 3 retries and says why"),
        pytest.param([ApiError(403, "Forbidden", "pods/binding is forbidden")], False,
                     "binding video/member to n1 failed: : 403 Forbidden", 1,
                     id="a refusal is not tried again"),
    ],
)
def test_a_binding_is_tried_again_after_a_transient_failure_only(
    failures: list[Exception], landed: bool, error: str, calls: int
) -> None:
    api = BindingApi(list(failures), landed=landed)
    svc = _binder(api)
    answer = asyncio.run(svc.scheduling._bind_one("uid-video-member", "n1"))
    assert answer.startswith(error) and (answer == "") == (error == ""), answer
    assert api.calls == calls
    assert api.node.get("member") == ("n1" if not error else None)

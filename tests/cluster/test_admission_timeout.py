"""The admission timeout end to end (docs/liveness.md): real apiserver, kube-scheduler (rayqueue-scheduler calling
the extender), the webhook, the extender/queue controller and the KubeRay 1.7 stand-in, invariants sampled.

The story: intern (max 40 CPU) has `rayqueue.io/admission-timeout: 20s`. Job `stuck` (12.5 CPU) has workers
with a nodeSelector no node matches: it is admitted, but its workers are never placed. Job `behind` (28.5 CPU)
does not fit beside it and waits in the same leaf. The extender is killed (-9) and restarted during the first
wait; the restarted one suspends `stuck` at the deadline derived from its dequeue stamp. `stuck` is requeued
with its enqueue time and a backoff (the fixture's --backoff-base=1 --backoff-max=4), `behind` runs, and after
three timeouts in a row `stuck` is parked until `kubectl rayqueue retry`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from common import keys
from common.gotime import parse_go
from devcluster.cluster import LocalCluster
from devcluster.services import Extender, start_extender
from devcluster.waiting import wait_for
from tests.cluster.invariants import QuotaSampler
from tests.cluster.journey import create, dequeued, events, get, rayjob, sized_job
from tests.cluster.test_preemption import JobWatch

TIMEOUT = 20.0
SLACK = 5.0  # seconds after the deadline within which the suspension must be seen: the loop wakes at it
SELECTOR = {"accept/no-such-node": "true"}
UNPLACED = re.compile(r"0/6 nodes are available: 6 node\(s\) didn't match (Pod's node affinity|node selector)")


def _intern(tree: dict[str, Any]) -> dict[str, Any]:
    algorithm = next(c for c in tree["spec"]["root"]["children"] if c["name"] == "algorithm")
    return dict(next(c for c in algorithm["children"] if c["name"] == "intern"))


@pytest.fixture
def intern_timeout(cluster: LocalCluster, rayqueue: Any) -> Iterator[None]:
    """`rayqueue.io/admission-timeout: 20s` on root/algorithm/intern (through the webhook's tree validation);
    the guide's tree is restored after the test."""

    def replace(attributes: dict[str, str] | None) -> None:
        tree = get(cluster, "elasticquotatree", keys.QUOTA_TREE_NAME, "-n", keys.QUOTA_TREE_NAMESPACE)
        algorithm = next(c for c in tree["spec"]["root"]["children"] if c["name"] == "algorithm")
        node = next(c for c in algorithm["children"] if c["name"] == "intern")
        if attributes is None:
            node.pop("attributes", None)
        else:
            node["attributes"] = attributes
        cluster.kubectl("replace", "-f", "-", input=json.dumps(tree))

    replace({keys.ADMISSION_TIMEOUT: "20s"})
    tree = get(cluster, "elasticquotatree", keys.QUOTA_TREE_NAME, "-n", keys.QUOTA_TREE_NAMESPACE)
    assert _intern(tree)["attributes"][keys.ADMISSION_TIMEOUT] == "20s"
    time.sleep(1.0)  # the extender's tree watch
    yield
    replace(None)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stuck_job() -> dict[str, Any]:
    job = sized_job("intern", workers=2, run_seconds=3)  # 3 x 4 CPU + the 500m submitter
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["nodeSelector"] = dict(SELECTOR)
    return job


def _dequeue_time(cluster: LocalCluster, name: str) -> dt.datetime:
    stamp = rayjob(cluster, "intern", name)["metadata"]["annotations"][keys.DEQUEUE_TIMESTAMP]
    return dt.datetime.fromtimestamp(parse_go(stamp) / 1e9, dt.UTC)


def _suspended(obj: dict[str, Any]) -> bool:
    return obj["spec"].get("suspend") is True


def _count(cluster: LocalCluster, name: str) -> str | None:
    value = rayjob(cluster, "intern", name)["metadata"].get("annotations", {}).get(keys.ADMISSION_TIMEOUTS)
    return str(value) if value is not None else None


def _unit(cluster: LocalCluster, name: str) -> dict[str, Any]:
    return dict(get(cluster, "queueunit", keys.queue_unit_name(name), "-n", "intern").get("status") or {})


def test_a_job_whose_workers_match_no_node_times_out_is_requeued_and_parked_and_the_deadline_survives_a_restart(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], intern_timeout: None, cleanup: None,
    invariants: QuotaSampler,
) -> None:
    _, extender, _ = rayqueue
    for i in range(6):
        nodes(f"timeout-{i}")
    stuck = create(cluster, _stuck_job())
    wait_for(lambda: dequeued(cluster, "intern", stuck), 30.0, "the stuck job to be admitted")
    deadline = _dequeue_time(cluster, stuck) + dt.timedelta(seconds=TIMEOUT)
    enqueued = rayjob(cluster, "intern", stuck)["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP]
    seen = JobWatch(cluster, "intern", stuck)
    try:
        behind = create(cluster, sized_job("intern", workers=6, run_seconds=3))  # 28.5 CPU: 41 > 40 beside it
        time.sleep(3.0)
        assert not dequeued(cluster, "intern", behind), "the job behind fits beside the stuck one"

        # kill -9 mid-wait: the restarted extender derives the deadline from the dequeue stamp
        os.kill(extender.process.pid, signal.SIGKILL)
        wait_for(lambda: not extender.process.alive(), 10.0, "the extender to die")
        cluster.stop_process(extender.process.name)
        restarted: Extender = start_extender(cluster, port=extender.port)
        ready_at = _now()
        assert ready_at + dt.timedelta(seconds=SLACK) < deadline, f"restarted too late to tell ({ready_at}, {deadline})"
        assert restarted.process.alive()

        wait_for(lambda: seen.first(_suspended) is not None, (deadline - _now()).total_seconds() + 30.0,
                 "the stuck job to be suspended at its admission deadline")
        suspended_at = seen.first(_suspended)
        assert suspended_at is not None and suspended_at >= deadline, f"suspended {suspended_at}, deadline {deadline}"
        assert (suspended_at - deadline).total_seconds() <= SLACK, (
            f"suspended {suspended_at} for the deadline {deadline} (restart ready at {ready_at})")
        annotations = rayjob(cluster, "intern", stuck)["metadata"]["annotations"]
        assert annotations[keys.ADMISSION_TIMEOUTS] == "1"
        assert annotations[keys.ENQUEUE_TIMESTAMP] == enqueued and keys.DEQUEUE_TIMESTAMP not in annotations

        message = _unit(cluster, stuck)["message"]
        assert message.startswith("not started within 20s of admission: "), message
        # kube-scheduler's own words on the pod (1.20: "node affinity"; later releases: "node selector")
        assert f"worker intern/{stuck}-" in message and UNPLACED.search(message), message
        assert "of 4 pods not placed" in message
        assert "Timeout 1 of 3: suspended and requeued" in message
        (warned, *_) = [e for e in events(cluster, "intern", keys.EVENT_ADMISSION_TIMEOUT)
                        if e["involvedObject"]["name"] == stuck]
        assert warned["type"] == "Warning" and warned["message"] == message

        wait_for(lambda: dequeued(cluster, "intern", behind), 60.0, "the job waiting behind to be admitted")
        wait_for(lambda: rayjob(cluster, "intern", behind).get("status", {}).get("jobDeploymentStatus")
                 in ("Running", "Complete"), 60.0, "the job behind to run")

        # two more timeouts in a row: parked
        wait_for(lambda: _count(cluster, stuck) == "3", 3 * (TIMEOUT + 30.0), "the third admission timeout")
        unit = _unit(cluster, stuck)
        assert unit["phase"] == "Parked", unit
        assert unit["message"].endswith(
            f"Parked after 3 admission timeouts in a row ({keys.ADMISSION_RETRIES} 3): fix the cause, then retry "
            f"with `kubectl rayqueue retry {stuck} -n intern`"), unit["message"]
        assert UNPLACED.search(unit["message"]), unit["message"]
        time.sleep(8.0)  # twice the fixture's longest backoff: a parked job is not tried
        assert not dequeued(cluster, "intern", stuck) and _unit(cluster, stuck)["phase"] == "Parked"

        # the documented retry: one command
        out = subprocess.run([sys.executable, "-m", "rayqueue_cli", "retry", stuck, "-n", "intern",
                              f"--kubeconfig={cluster.admin_kubeconfig}"], capture_output=True, text=True, check=True)
        assert "removed rayqueue.io/admission-timeouts (3)" in out.stdout, out.stdout
        wait_for(lambda: dequeued(cluster, "intern", stuck), 30.0, "the retried job to be admitted again")
    finally:
        seen.stop()

"""Cooperative preemption end to end (docs/preemption.md): real apiserver, kube-scheduler (rayqueue-scheduler
calling the extender), the webhook, the extender/queue controller and the KubeRay 1.7 stand-in.

The story of every test is the guide's reclaim (test_queueing): on 6 nodes of 8 CPU (48), an intern job (intern's
min is 0: it borrows) of 36.5 CPU runs; a text job of 12.5 CPU, within text's guaranteed min, arrives and does not
fit the cluster. Here intern has a `rayqueue.io/preemption-grace`, so the intern job is warned first.

Times. The controller's decisions are observed through a watch on the victim's RayJob (``JobWatch``): each
event is stamped with the wall clock when the test receives it, so "suspended at the deadline, not before"
compares the watch's first `spec.suspend: true` with the deadline in the notice (both UTC wall clock of this
machine), and "within a second of the acknowledgement" compares two events seen by the same watch, which takes
the test's own write latency (a kubectl process) out of the measure.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from common import keys
from devcluster.cluster import LocalCluster
from devcluster.services import Extender, start_extender
from devcluster.waiting import wait_for
from tests.cluster.invariants import QuotaSampler
from tests.cluster.journey import EXAMPLES, create, dequeued, events, get, pods_of, rayjob, sized_job

NODES = 6
SLACK = 5.0  # seconds after a deadline within which the suspension must be seen: the loop wakes at it
# The acknowledgement must be acted on within a second; the two watch events it is measured between are seen by
# this test's own process on a 2-core machine shared with other clusters under test, whose scheduling adds
# noise of its own: NOISE is that allowance, and nothing else is added.
ACK_LIMIT = 1.0
NOISE = 0.25


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _deadline(notice: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(notice["deadline"]).replace("Z", "+00:00"))


class JobWatch:
    """Every watch event of one RayJob, stamped with the wall clock at receipt, in a thread (bounded)."""

    def __init__(self, cluster: LocalCluster, namespace: str, name: str) -> None:
        self.events: list[tuple[dt.datetime, dict[str, Any]]] = []
        self._watch = watch.Watch()
        api = client.CustomObjectsApi(cluster.api_client)
        self._stream = self._watch.stream(
            api.list_namespaced_custom_object, keys.RAY_GROUP, keys.RAY_VERSION, namespace, keys.RAYJOB_PLURAL,
            field_selector=f"metadata.name={name}", timeout_seconds=300)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._stream:
                self.events.append((_now(), event["object"]))
        except Exception:  # the stream closed under stop()
            return

    def first(self, test: Callable[[dict[str, Any]], bool]) -> dt.datetime | None:
        return next((when for when, obj in list(self.events) if test(obj)), None)

    def stop(self) -> None:
        self._watch.stop()


@pytest.fixture
def intern_grace(cluster: LocalCluster, rayqueue: Any) -> Iterator[Callable[[str], None]]:
    """Set `rayqueue.io/preemption-grace` on root/algorithm/intern (through the webhook's tree validation);
    the guide's tree is restored after the test."""

    def intern_node(tree: dict[str, Any]) -> dict[str, Any]:
        algorithm = next(c for c in tree["spec"]["root"]["children"] if c["name"] == "algorithm")
        return dict(next(c for c in algorithm["children"] if c["name"] == "intern"))

    def replace(change: Callable[[dict[str, Any]], None]) -> None:
        tree = get(cluster, "elasticquotatree", keys.QUOTA_TREE_NAME, "-n", keys.QUOTA_TREE_NAMESPACE)
        algorithm = next(c for c in tree["spec"]["root"]["children"] if c["name"] == "algorithm")
        change(next(c for c in algorithm["children"] if c["name"] == "intern"))
        cluster.kubectl("replace", "-f", "-", input=json.dumps(tree))

    def set_grace(value: str) -> None:
        replace(lambda node: node.setdefault("attributes", {}).update({keys.PREEMPTION_GRACE: value}))
        tree = get(cluster, "elasticquotatree", keys.QUOTA_TREE_NAME, "-n", keys.QUOTA_TREE_NAMESPACE)
        assert intern_node(tree)["attributes"][keys.PREEMPTION_GRACE] == value
        time.sleep(1.0)  # the extender's tree watch (it publishes no tree version to wait on)

    yield set_grace
    replace(lambda node: node.pop("attributes", None))


def _running_victim(cluster: LocalCluster, nodes: Callable[..., str], job: dict[str, Any] | None = None) -> str:
    for i in range(NODES):
        nodes(f"preempt-{i}")
    victim = create(cluster, job or sized_job("intern", workers=8, run_seconds=600))  # 36.5 CPU
    wait_for(lambda: dequeued(cluster, "intern", victim), 30.0, "the intern job to borrow and run")
    wait_for(lambda: len([p for p in pods_of(cluster, "intern", victim) if p["spec"].get("nodeName")]) == 10, 90.0,
             "the intern job's 9 Ray pods and its submitter bound")
    return victim


def _notice(cluster: LocalCluster, victim: str, timeout: float = 30.0) -> dict[str, Any]:
    def given() -> bool:
        return keys.PREEMPTION_NOTICE in rayjob(cluster, "intern", victim)["metadata"].get("annotations", {})

    wait_for(given, timeout, "the intern job's preemption notice")
    return dict(json.loads(rayjob(cluster, "intern", victim)["metadata"]["annotations"][keys.PREEMPTION_NOTICE]))


def _pods_noticed(cluster: LocalCluster, victim: str) -> None:
    text = rayjob(cluster, "intern", victim)["metadata"]["annotations"][keys.PREEMPTION_NOTICE]

    def all_pods() -> bool:
        pods = pods_of(cluster, "intern", victim)
        return len(pods) == 10 and all(p["metadata"].get("annotations", {}).get(keys.PREEMPTION_NOTICE) == text
                                       for p in pods)

    wait_for(all_pods, 15.0, "the notice on every pod of the intern job (9 Ray pods and the submitter)")


def _suspended(obj: dict[str, Any]) -> bool:
    return obj["spec"].get("suspend") is True


def _stamp(cluster: LocalCluster, ns: str, name: str) -> str | None:
    value = rayjob(cluster, ns, name)["metadata"].get("annotations", {}).get(keys.DEQUEUE_TIMESTAMP)
    return str(value) if value is not None else None


def test_a_victim_gets_the_notice_on_its_rayjob_and_pods_and_is_suspended_at_the_deadline_not_before(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], intern_grace: Callable[[str], None],
    cleanup: None, invariants: QuotaSampler,
) -> None:
    """Grace 20 s. The victim is warned (RayJob, every pod, a PreemptionNotice event), keeps running until the
    deadline and is suspended then; meanwhile the claimant says whose notice it waits for, and a third job that
    would fit the freed capacity (but not beside the claimant) stays out: the claimant is admitted first."""
    intern_grace("20s")
    victim = _running_victim(cluster, nodes)
    enqueued = rayjob(cluster, "intern", victim)["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP]
    seen = JobWatch(cluster, "intern", victim)
    try:
        text = create(cluster, sized_job("algorithm-text", workers=2, run_seconds=3))  # 12.5 CPU
        notice = _notice(cluster, victim)
        deadline = _deadline(notice)
        assert (notice["job"], notice["claimant"], notice["grace"]) == (
            f"intern/{victim}", f"algorithm-text/{text}", "20s")
        assert 15.0 < (deadline - _now()).total_seconds() <= 21.0, "issued just now, with the 20 s grace"
        _pods_noticed(cluster, victim)
        (warned,) = [e for e in events(cluster, "intern", keys.EVENT_PREEMPTION_NOTICE)
                     if e["involvedObject"]["name"] == victim]
        assert warned["type"] == "Warning" and f"suspended at {notice['deadline']} (grace 20s" in warned["message"]

        # 36.5 CPU: fits the 48 the victim frees, not beside the claimant (49 > 48).
        third = create(cluster, sized_job("intern", workers=8, run_seconds=3))
        unit = get(cluster, "queueunit", f"{text}-ray-qu", "-n", "algorithm-text")
        assert unit["status"]["message"].startswith(
            f"waiting for a preemption notice to expire (intern/{victim} until {notice['deadline']}")

        wait_for(lambda: seen.first(_suspended) is not None, (deadline - _now()).total_seconds() + 30.0,
                 "the victim to be suspended at its deadline")
        suspended_at = seen.first(_suspended)
        assert suspended_at is not None
        assert suspended_at >= deadline, f"suspended at {suspended_at}, before the deadline {deadline}"
        assert (suspended_at - deadline).total_seconds() <= SLACK, f"suspended {suspended_at} for deadline {deadline}"
        (preempted,) = [e for e in events(cluster, "intern", keys.EVENT_PREEMPTED)
                        if e["involvedObject"]["name"] == victim]
        assert preempted["message"].startswith(f"its preemption notice expired at {notice['deadline']}")
        after = rayjob(cluster, "intern", victim)["metadata"]["annotations"]
        assert keys.PREEMPTION_NOTICE not in after and after[keys.ENQUEUE_TIMESTAMP] == enqueued

        wait_for(lambda: dequeued(cluster, "algorithm-text", text), 60.0, "the claimant admitted once the pods are gone")
        claimant_stamp, third_stamp = _stamp(cluster, "algorithm-text", text), _stamp(cluster, "intern", third)
        assert claimant_stamp is not None
        assert third_stamp is None or third_stamp > claimant_stamp, "the third job took the claimant's capacity"
    finally:
        seen.stop()


def test_an_acknowledging_victim_is_suspended_within_a_second(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], intern_grace: Callable[[str], None],
    cleanup: None, invariants: QuotaSampler,
) -> None:
    """The example RayJob of docs/preemption.md (its service account with the documented Role) acknowledges its
    notice by setting rayqueue.io/checkpointed on its RayJob; the controller suspends it within a second, long
    before its 60 s deadline. The same account may not touch the notice itself."""
    intern_grace("60s")
    cluster.kubectl("apply", "-n", "intern", "-f", str(EXAMPLES / "preemption" / "rbac.yaml"))
    cluster.kubectl("create", "configmap", "checkpointing-entrypoint", "-n", "intern",
                    f"--from-file={EXAMPLES / 'preemption' / 'entrypoint.py'}", check=False)
    job = yaml.safe_load((EXAMPLES / "preemption" / "rayjob.yaml").read_text())
    job["metadata"]["annotations"] = {keys.TEST_RUN_SECONDS: "600"}
    spec = job["spec"]["rayClusterSpec"]
    spec["workerGroupSpecs"][0]["replicas"] = 8  # 36.5 CPU with the submitter
    for template in (spec["headGroupSpec"]["template"], spec["workerGroupSpecs"][0]["template"]):
        small = {"cpu": "4", "memory": "1Gi"}  # the example's 4G pods would not fit intern's 20Gi max nine times
        template["spec"]["containers"][0]["resources"] = {"requests": small, "limits": small}
    for volume in spec["headGroupSpec"]["template"]["spec"]["volumes"]:
        if "persistentVolumeClaim" in volume:  # no storage here: kube-scheduler keeps a pod of a missing claim out
            volume.pop("persistentVolumeClaim")
            volume["emptyDir"] = {}
    victim = _running_victim(cluster, nodes, job)
    account = "system:serviceaccount:intern:ray-job"
    seen = JobWatch(cluster, "intern", victim)
    try:
        create(cluster, sized_job("algorithm-text", workers=2, run_seconds=3))
        notice = _notice(cluster, victim)
        forged = cluster.kubectl("annotate", "rayjob", victim, "-n", "intern", f"{keys.PREEMPTION_NOTICE}-",
                                 f"--as={account}", check=False)
        assert forged.returncode != 0 and "rule preemption-notice" in forged.stderr, forged.stderr
        ack = json.dumps({"metadata": {"annotations": {keys.CHECKPOINTED: "step-41"}}})
        cluster.kubectl("patch", "rayjob", victim, "-n", "intern", "--type=merge", "-p", ack, f"--as={account}")

        wait_for(lambda: seen.first(_suspended) is not None, 20.0, "the acknowledging victim to be suspended")
        acked_at = seen.first(lambda o: keys.CHECKPOINTED in o["metadata"].get("annotations", {}))
        suspended_at = seen.first(_suspended)
        assert acked_at is not None and suspended_at is not None
        reaction = (suspended_at - acked_at).total_seconds()
        assert 0 <= reaction <= ACK_LIMIT + NOISE, f"suspended {reaction:.3f} s after the acknowledgement"
        assert suspended_at < _deadline(notice)
        (preempted,) = [e for e in events(cluster, "intern", keys.EVENT_PREEMPTED)
                        if e["involvedObject"]["name"] == victim]
        assert preempted["message"].startswith(f"acknowledged its preemption notice ({keys.CHECKPOINTED})")
        annotations = rayjob(cluster, "intern", victim)["metadata"]["annotations"]
        assert keys.CHECKPOINTED not in annotations and keys.PREEMPTION_NOTICE not in annotations
        print(f"acknowledgement -> suspension seen: {reaction:.3f} s")
    finally:
        seen.stop()


def test_a_victim_that_finishes_during_its_grace_is_released_not_requeued(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], intern_grace: Callable[[str], None],
    cleanup: None, invariants: QuotaSampler,
) -> None:
    """The victim's Ray job ends during its 20 s grace (the stand-in's submitter pod is told its run is over):
    the RayJob completes, is never suspended nor requeued, and the claimant gets the capacity as soon as the
    victim's pods are gone, before the deadline."""
    intern_grace("20s")
    victim = _running_victim(cluster, nodes)
    seen = JobWatch(cluster, "intern", victim)
    try:
        text = create(cluster, sized_job("algorithm-text", workers=2, run_seconds=3))
        notice = _notice(cluster, victim)
        (submitter,) = [p for p in pods_of(cluster, "intern", victim) if keys.JOB_NAME_LABEL in p["metadata"]["labels"]]
        cluster.kubectl("annotate", "pod", submitter["metadata"]["name"], "-n", "intern",
                        f"{keys.TEST_RUN_SECONDS}=0", "--overwrite")
        wait_for(lambda: dequeued(cluster, "algorithm-text", text), 60.0, "the claimant admitted")
        assert _now() < _deadline(notice), "the claimant waited for the deadline of a job that had finished"
        job = rayjob(cluster, "intern", victim)
        assert job["status"]["jobDeploymentStatus"] == "Complete"
        assert seen.first(_suspended) is None, "a finished victim was suspended"
        for reason in (keys.EVENT_PREEMPTED, keys.EVENT_REQUEUED):
            assert not [e for e in events(cluster, "intern", reason) if e["involvedObject"]["name"] == victim], reason
        unit = get(cluster, "queueunit", f"{victim}-ray-qu", "-n", "intern")
        assert unit["status"]["phase"] == "Succeed"
    finally:
        seen.stop()


def test_a_controller_killed_during_the_grace_keeps_the_deadline(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], intern_grace: Callable[[str], None],
    cleanup: None, invariants: QuotaSampler,
) -> None:
    """kill -9 the extender (controller and scheduler extender) a few seconds into a 20 s grace and start it
    again: from the API alone it keeps the same notice (no second one, no new deadline), does not suspend before
    the deadline, suspends at it, and the claimant is admitted."""
    _, extender, _ = rayqueue
    intern_grace("20s")
    victim = _running_victim(cluster, nodes)
    seen = JobWatch(cluster, "intern", victim)
    try:
        text = create(cluster, sized_job("algorithm-text", workers=2, run_seconds=3))
        notice = _notice(cluster, victim)
        given = rayjob(cluster, "intern", victim)["metadata"]["annotations"][keys.PREEMPTION_NOTICE]
        deadline = _deadline(notice)
        os.kill(extender.process.pid, signal.SIGKILL)
        wait_for(lambda: not extender.process.alive(), 10.0, "the extender to die")
        cluster.stop_process(extender.process.name)
        restarted: Extender = start_extender(cluster, port=extender.port)  # same name and port: the module stops it
        ready_at = _now()
        assert ready_at < deadline, f"the restart took past the deadline ({ready_at} >= {deadline}): nothing shown"
        assert restarted.process.alive()

        wait_for(lambda: seen.first(_suspended) is not None, (deadline - _now()).total_seconds() + 30.0,
                 "the victim to be suspended at the deadline kept across the restart")
        suspended_at = seen.first(_suspended)
        assert suspended_at is not None and deadline <= suspended_at, f"suspended {suspended_at}, deadline {deadline}"
        assert (suspended_at - deadline).total_seconds() <= SLACK
        noticed = {obj["metadata"].get("annotations", {}).get(keys.PREEMPTION_NOTICE) for _, obj in seen.events}
        assert noticed <= {given, None}, f"the notice changed across the restart: {noticed}"
        assert len([e for e in events(cluster, "intern", keys.EVENT_PREEMPTION_NOTICE)
                    if e["involvedObject"]["name"] == victim]) == 1
        wait_for(lambda: dequeued(cluster, "algorithm-text", text), 60.0, "the claimant admitted after the restart")
    finally:
        seen.stop()

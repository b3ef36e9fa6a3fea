"""Elastic Ray jobs (issue 21, docs/elastic.md) on the real control plane: the real kube-scheduler calling the
extender, the KubeRay 1.7 stand-in reconciling worker replicas and ``scaleStrategy.workersToDelete``. A guaranteed
claimant shrinks an elastic victim to its floor instead of suspending it; a rigid one is still suspended whole; a
kill -9 of the extender mid-shrink takes nothing twice; where the victim's leaf grants a grace the named workers
get the cooperative notice first and go at its deadline; an autoscaling job's growth after a shrink is refused while
the claimant needs the capacity and allowed after. The quota invariants are sampled throughout.

The cluster: 5 nodes of 8.5 CPU (42.5): two 4-CPU pods and a 500m submitter each. The victim, in intern (min 0:
it borrows), is 1 head + 6 workers of 4 CPU and the submitter (28.5 CPU), floor 2 workers (12.5). The claimant,
in text (within its min 32: guaranteed), is the same shape (28.5): 57 > 42.5, so 14.5 must go, four of the
victim's workers (16); three (12) would not do. Ten 4-CPU pods and two submitters then fill the five nodes
exactly, whatever the placement."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from common import keys
from devcluster.cluster import LocalCluster
from devcluster.procs import ManagedProcess
from devcluster.services import Extender, start_extender
from devcluster.waiting import wait_for
from tests.cluster import test_preemption
from tests.cluster.invariants import QuotaSampler
from tests.cluster.journey import create, dequeued, events, get, ray_pods, rayjob, sized_job
from tests.cluster.test_growth import (
    CPU,
    INTERN,
    bound,
    cluster_name,
    live,
    quota_condition,
    scale,
    scheduled_message,
    used_cpu,
    workers,
)

FLOOR = 2
intern_grace = test_preemption.intern_grace  # the fixture: a grace on root/algorithm/intern, restored after


def _victim(cluster: LocalCluster, nodes: Callable[..., str], *, elastic: bool) -> tuple[str, str, set[str]]:
    """The intern job running with all 7 Ray pods bound: its name, its RayCluster's, its workers' names."""
    for i in range(5):
        nodes(f"elastic-{i}", cpu="8500m")
    job = sized_job("intern", workers=6, run_seconds=600)
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplicas"] = FLOOR
    if elastic:
        job["metadata"].setdefault("labels", {})[keys.ELASTIC] = "true"
    victim = create(cluster, job)
    wait_for(lambda: len(bound(ray_pods(cluster, "intern", victim))) == 7, 90.0, f"{victim}'s 7 Ray pods bound")
    names = {p["metadata"]["name"] for p in workers(ray_pods(cluster, "intern", victim))}
    return victim, cluster_name(cluster, "intern", victim), names


def _group(cluster: LocalCluster, name: str) -> dict[str, Any]:
    return dict(get(cluster, "raycluster", name, "-n", "intern")["spec"]["workerGroupSpecs"][0])


def _named(cluster: LocalCluster, name: str) -> list[str]:
    return list((_group(cluster, name).get("scaleStrategy") or {}).get("workersToDelete") or [])


def _shrunk_events(cluster: LocalCluster, victim: str) -> list[dict[str, Any]]:
    return [e for e in events(cluster, "intern", keys.EVENT_SHRUNK)
            if e["involvedObject"]["name"] in (victim, keys.queue_unit_name(victim))]


def _never_suspended(cluster: LocalCluster, victim: str, seconds: float, check: Callable[[], bool]) -> None:
    """Sample the victim for ``seconds`` (or until ``check``): it is never suspended nor requeued."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = rayjob(cluster, "intern", victim)
        assert job["spec"]["suspend"] is False and keys.DEQUEUE_TIMESTAMP in job["metadata"]["annotations"], job
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not seen within {seconds}s")


def test_a_claimant_shrinks_an_elastic_victim_to_its_floor_and_kuberay_does_not_recreate_the_named_workers(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    victim, name, before = _victim(cluster, nodes, elastic=True)
    text = create(cluster, sized_job("algorithm-text", workers=6, run_seconds=3))
    _never_suspended(cluster, victim, 60.0, lambda: len(_named(cluster, name)) == 6 - FLOOR)
    named = set(_named(cluster, name))
    assert named < before and _group(cluster, name)["replicas"] == FLOOR, (named, _group(cluster, name))
    _never_suspended(cluster, victim, 60.0,
                     lambda: {p["metadata"]["name"] for p in live(workers(ray_pods(cluster, "intern", victim)))}
                     == before - named)
    wait_for(lambda: dequeued(cluster, "algorithm-text", text), 90.0, f"{text} admitted after the shrink")
    time.sleep(3.0)  # KubeRay's passes after the deletions: it creates no worker in their place
    now = {p["metadata"]["name"] for p in workers(ray_pods(cluster, "intern", victim))}
    assert now == before - named, f"KubeRay recreated or deleted workers: {sorted(now ^ (before - named))}"
    job = rayjob(cluster, "intern", victim)
    assert job["spec"]["suspend"] is False
    assert not [e for e in events(cluster, "intern", keys.EVENT_PREEMPTED) if e["involvedObject"]["name"] == victim]
    shrunk = _shrunk_events(cluster, victim)
    assert {e["involvedObject"]["kind"] for e in shrunk} == {keys.RAYJOB_KIND, keys.QUEUE_UNIT_KIND}, shrunk
    message = shrunk[0]["message"]
    assert message.startswith("shrunk by 4 workers above its floor (") and f"for algorithm-text/{text}" in message
    assert all(f"intern/{n}" in message for n in named), message
    wait_for(lambda: (rayjob(cluster, "algorithm-text", text).get("status") or {}).get("jobDeploymentStatus")
             == "Complete", 120.0, f"{text} ran")
    assert invariants.worst.peak[INTERN].get("cpu", 0) <= 40 * CPU


def test_a_rigid_victim_in_the_same_place_is_suspended_whole(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    victim, _, _ = _victim(cluster, nodes, elastic=False)
    text = create(cluster, sized_job("algorithm-text", workers=6, run_seconds=3))
    wait_for(lambda: rayjob(cluster, "intern", victim)["spec"]["suspend"] is True, 60.0, f"{victim} suspended")
    assert not _shrunk_events(cluster, victim), "a rigid job has no workers above a floor: nothing to shrink"
    assert [e for e in events(cluster, "intern", keys.EVENT_PREEMPTED) if e["involvedObject"]["name"] == victim]
    wait_for(lambda: dequeued(cluster, "algorithm-text", text), 90.0, f"{text} admitted")


def test_a_kill_9_of_the_extender_mid_shrink_deletes_nothing_twice_and_leaves_no_claim_behind(
    cluster: LocalCluster, rayqueue: Any, standin: ManagedProcess, nodes: Callable[..., str], cleanup: None,
    invariants: QuotaSampler,
) -> None:
    """KubeRay (the stand-in) is paused once the victim runs, so the shrink stops half-way: the RayCluster is
    patched, the named pods still run. The extender is killed with SIGKILL there and started again: from the API
    alone it sees the named pods as releasing, patches nothing more, deletes nothing, suspends nothing, and the
    claimant waits. KubeRay resumes, deletes exactly the named pods, the claimant runs, and intern holds exactly
    the victim's floor again (no claim of a removed pod left behind)."""
    _, extender, _ = rayqueue
    victim, name, before = _victim(cluster, nodes, elastic=True)
    wait_for(lambda: used_cpu(cluster, INTERN) == 28500, 30.0, "intern charged the victim's 28.5 CPU")
    os.kill(standin.pid, signal.SIGSTOP)
    try:
        text = create(cluster, sized_job("algorithm-text", workers=6, run_seconds=3))
        wait_for(lambda: len(_named(cluster, name)) == 6 - FLOOR, 60.0, "the RayCluster shrunk to its floor")
        named = _named(cluster, name)
        os.kill(extender.process.pid, signal.SIGKILL)
        wait_for(lambda: not extender.process.alive(), 10.0, "the extender to die")
        cluster.stop_process(extender.process.name)
        restarted: Extender = start_extender(cluster, port=extender.port)  # same name and port
        assert restarted.process.alive()
        time.sleep(8.0)  # several passes of the restarted controller, KubeRay still paused
        assert _named(cluster, name) == named and _group(cluster, name)["replicas"] == FLOOR, _group(cluster, name)
        pods = workers(ray_pods(cluster, "intern", victim))
        assert {p["metadata"]["name"] for p in live(pods)} == before, "nothing deleted while KubeRay is paused"
        assert rayjob(cluster, "intern", victim)["spec"]["suspend"] is False
        assert not dequeued(cluster, "algorithm-text", text), "the claimant waits for the named pods to go"
    finally:
        os.kill(standin.pid, signal.SIGCONT)
    wait_for(lambda: dequeued(cluster, "algorithm-text", text), 90.0, f"{text} admitted once the named pods went")
    left = {p["metadata"]["name"] for p in live(workers(ray_pods(cluster, "intern", victim)))}
    assert left == before - set(named), sorted(left)
    assert len([e for e in _shrunk_events(cluster, victim) if e["involvedObject"]["kind"] == keys.RAYJOB_KIND]) == 1
    wait_for(lambda: used_cpu(cluster, INTERN) == 12500, 60.0, "intern back to the victim's floor of 12.5 CPU")
    assert rayjob(cluster, "intern", victim)["spec"]["suspend"] is False
    assert invariants.worst.peak[INTERN].get("cpu", 0) <= 40 * CPU


def test_an_elastic_job_admitted_at_3_of_6_workers_is_expanded_to_6_when_the_claimant_ends(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """A text job of 1 + 5 workers (24.5 CPU) runs for a while; the elastic intern job (no autoscaler, 1 + 6
    workers, floor 2: 12.5 reserved) arrives: 42.5 - 24.5 - 12.5 = 5.5 leaves room for one more worker, so it
    starts at 3 of 6 (its RayJob's replicas lowered while suspended, the target kept, said in the Dequeued event
    and on its QueueUnit). Once the text job ends its RayCluster is raised to 6."""
    for i in range(5):
        nodes(f"expand-{i}", cpu="8500m")
    text = create(cluster, sized_job("algorithm-text", workers=5, run_seconds=15))
    wait_for(lambda: len(bound(ray_pods(cluster, "algorithm-text", text))) == 6, 60.0, f"{text}'s Ray pods bound")
    job = sized_job("intern", workers=6, run_seconds=600)
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplicas"] = FLOOR
    job["metadata"].setdefault("labels", {})[keys.ELASTIC] = "true"
    small = create(cluster, job)
    wait_for(lambda: dequeued(cluster, "intern", small), 30.0, f"{small} admitted")
    admitted = rayjob(cluster, "intern", small)
    assert admitted["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] == 3, admitted["spec"]
    assert admitted["metadata"]["annotations"][keys.ELASTIC_TARGET] == '{"small-group":6}'
    said = [e for e in events(cluster, "intern", keys.EVENT_DEQUEUED) if e["involvedObject"]["name"] == small]
    assert said and "group small-group: 3 of 6 workers (floor 2)" in said[0]["message"], said
    wait_for(lambda: len(bound(ray_pods(cluster, "intern", small))) == 4, 60.0, f"{small} at 3 workers")
    unit = keys.queue_unit_name(small)
    wait_for(lambda: (get(cluster, "queueunit", unit, "-n", "intern").get("status") or {}).get("workers")
             == "group small-group: 3 of 6 workers (floor 2)", 30.0, f"{unit}'s status.workers")
    name = cluster_name(cluster, "intern", small)
    assert _group(cluster, name)["replicas"] == 3
    wait_for(lambda: (rayjob(cluster, "algorithm-text", text).get("status") or {}).get("jobDeploymentStatus")
             == "Complete", 120.0, f"{text} ran")
    wait_for(lambda: _group(cluster, name)["replicas"] == 6, 60.0, f"{name} raised to 6 once the text job ended")
    wait_for(lambda: len(bound(workers(ray_pods(cluster, "intern", small)))) == 6, 60.0, "6 workers bound")
    expanded = [e for e in events(cluster, "intern", keys.EVENT_EXPANDED) if e["involvedObject"]["name"] == small]
    # raised as the text job's pods go (one step or several: each once the last step's workers are bound)
    assert any("group small-group: 6 of 6 workers (floor 2)" in e["message"] for e in expanded), expanded
    wait_for(lambda: (get(cluster, "queueunit", unit, "-n", "intern").get("status") or {}).get("workers")
             == "group small-group: 6 of 6 workers (floor 2)", 30.0, f"{unit}'s status.workers at 6")
    assert rayjob(cluster, "intern", small)["spec"]["suspend"] is False
    assert invariants.worst.peak[INTERN].get("cpu", 0) <= 40 * CPU


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_with_a_grace_the_named_workers_get_the_notice_the_claimant_waits_and_the_shrink_comes_at_the_deadline(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], intern_grace: Callable[[str], None],
    cleanup: None, invariants: QuotaSampler,
) -> None:
    """intern grants 20 s. The claimant's reclaim gives the elastic victim a shrink notice naming its four newest
    workers (on the RayJob and on those four pods only, a PreemptionNotice event); until the deadline the RayCluster
    is untouched, the workers run, the claimant waits saying whose notice it waits out, and a third intern job that
    would fit the free capacity (not beside the claimant) stays out. At the deadline the RayCluster is shrunk to its
    floor naming exactly those pods, the notice is removed, the claimant runs first; the victim is never suspended."""
    intern_grace("20s")
    victim, name, before = _victim(cluster, nodes, elastic=True)
    text = create(cluster, sized_job("algorithm-text", workers=6, run_seconds=3))

    def noticed() -> bool:
        return keys.PREEMPTION_NOTICE in rayjob(cluster, "intern", victim)["metadata"].get("annotations", {})

    wait_for(noticed, 30.0, f"{victim}'s shrink notice")
    raw = rayjob(cluster, "intern", victim)["metadata"]["annotations"][keys.PREEMPTION_NOTICE]
    notice = json.loads(raw)
    deadline = _utc(notice["deadline"])
    named = set(notice["workers"]["small-group"])
    assert len(named) == 6 - FLOOR and named < before, notice
    assert (notice["job"], notice["claimant"], notice["grace"]) == (f"intern/{victim}", f"algorithm-text/{text}", "20s")
    assert 15.0 < (deadline - dt.datetime.now(dt.UTC)).total_seconds() <= 21.0, "issued now, with its 20 s grace"

    def pods_noticed() -> bool:
        pods = {p["metadata"]["name"]: p for p in ray_pods(cluster, "intern", victim)}
        return all((pods[n]["metadata"].get("annotations") or {}).get(keys.PREEMPTION_NOTICE) == raw for n in named)

    wait_for(pods_noticed, 15.0, "the notice on the four named workers")
    others = [p for p in ray_pods(cluster, "intern", victim) if p["metadata"]["name"] not in named]
    assert others and all(keys.PREEMPTION_NOTICE not in (p["metadata"].get("annotations") or {}) for p in others)
    (warned,) = [e for e in events(cluster, "intern", keys.EVENT_PREEMPTION_NOTICE)
                 if e["involvedObject"]["name"] == victim]
    assert warned["message"].startswith("preemption notice: 4 workers above its floor (") and (
        f"go at {notice['deadline']} (grace 20s" in warned["message"]), warned["message"]
    unit = get(cluster, "queueunit", keys.queue_unit_name(text), "-n", "algorithm-text")
    assert unit["status"]["message"].startswith(
        f"waiting for a preemption notice to expire (intern/{victim} until {notice['deadline']}"), unit["status"]
    third = create(cluster, sized_job("intern", workers=1, run_seconds=3))  # 8.5: fits the 14 free, not beside 28.5

    while dt.datetime.now(dt.UTC) < deadline - dt.timedelta(seconds=1):  # nothing before the deadline
        group = _group(cluster, name)
        assert group["replicas"] == 6 and not _named(cluster, name), group
        assert {p["metadata"]["name"] for p in live(workers(ray_pods(cluster, "intern", victim)))} == before
        assert rayjob(cluster, "intern", victim)["spec"]["suspend"] is False
        assert not dequeued(cluster, "algorithm-text", text) and not dequeued(cluster, "intern", third)
        time.sleep(0.5)
    _never_suspended(cluster, victim, 30.0, lambda: set(_named(cluster, name)) == named)
    shrunk_at = dt.datetime.now(dt.UTC)
    assert shrunk_at >= deadline and _group(cluster, name)["replicas"] == FLOOR, (shrunk_at, deadline)
    assert keys.PREEMPTION_NOTICE not in rayjob(cluster, "intern", victim)["metadata"].get("annotations", {})
    wait_for(lambda: dequeued(cluster, "algorithm-text", text), 90.0, f"{text} admitted after the shrink")
    assert not dequeued(cluster, "intern", third) or (
        rayjob(cluster, "intern", third)["metadata"]["annotations"][keys.DEQUEUE_TIMESTAMP]
        > rayjob(cluster, "algorithm-text", text)["metadata"]["annotations"][keys.DEQUEUE_TIMESTAMP]
    ), "the third job took the claimant's capacity"
    left = {p["metadata"]["name"] for p in live(workers(ray_pods(cluster, "intern", victim)))}
    assert left == before - named, sorted(left)
    shrunk = _shrunk_events(cluster, victim)
    assert shrunk and f"its preemption notice expired at {notice['deadline']}" in shrunk[0]["message"], shrunk
    assert not [e for e in events(cluster, "intern", keys.EVENT_PREEMPTED) if e["involvedObject"]["name"] == victim]
    assert invariants.worst.peak[INTERN].get("cpu", 0) <= 40 * CPU


def test_an_autoscaling_jobs_growth_after_a_shrink_is_refused_while_the_claimant_needs_it_and_allowed_after(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """Issue 21 item 4, where the quota binds and the nodes have room (7 nodes of 16 CPU: kube-scheduler's own fit
    never refuses first). video runs 12.5; the intern job runs the Ray autoscaler (enableInTreeAutoscaling, floor
    2 of 8: head 4.5 + 8 workers + submitter = 37, 13 reserved); the text claimant (32, within text's min) makes
    root/algorithm 81.5 of its 80, so one worker is shrunk. The autoscaler then asks for it again (the test raises
    replicas to 8 as Ray's KubeRayNodeProvider does): growth, Pending with the quota's reason while the claimant
    waits for or holds the capacity, and the RayCluster's RayQueueQuota condition says so (rule, pod, numbers).
    Once the claimant's job ends the worker binds and the condition turns to Fits."""
    for i in range(7):
        nodes(f"asks-{i}", cpu="16")
    video = create(cluster, sized_job("video", workers=2, run_seconds=600))  # 12.5
    wait_for(lambda: dequeued(cluster, "video", video), 30.0, f"{video} admitted")
    job = sized_job("intern", workers=8, run_seconds=600)
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(minReplicas=FLOOR, maxReplicas=8)
    job["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] = True  # elastic by its autoscaler, no label
    victim = create(cluster, job)
    wait_for(lambda: len(bound(ray_pods(cluster, "intern", victim))) == 9, 90.0, f"{victim}'s 9 Ray pods bound")
    name = cluster_name(cluster, "intern", victim)
    text = create(cluster, sized_job("algorithm-text", workers=6, cpu="4500m", run_seconds=15))  # 4.5 x 7 + 0.5
    _never_suspended(cluster, victim, 60.0, lambda: len(_named(cluster, name)) == 1)
    assert _group(cluster, name)["replicas"] == 7, _group(cluster, name)
    scale(cluster, "intern", name, 8, delete=[])  # the autoscaler's next ask: the worker again

    def refused() -> list[dict[str, Any]]:
        pending = [p for p in live(workers(ray_pods(cluster, "intern", victim))) if not p["spec"].get("nodeName")]
        return [p for p in pending if "quota:" in scheduled_message(p)]

    wait_for(lambda: len(refused()) == 1, 90.0, "the autoscaler's new worker refused by the quota")

    def said() -> bool:
        condition = quota_condition(cluster, "intern", name)
        return condition is not None and condition["status"] == "True"

    wait_for(said, 60.0, f"RayCluster {name}'s RayQueueQuota naming the refused worker")
    condition = quota_condition(cluster, "intern", name)
    assert condition is not None and condition["reason"] == keys.REASON_QUOTA_EXCEEDED, condition
    message = condition["message"]
    assert message.startswith(f"1 growth pod of RayJob intern/{victim} beyond its admitted size waits for quota: "
                              "pod intern/"), message
    # the rule and its numbers: the claimant's guaranteed capacity while it waits, root/algorithm's max once it runs
    assert ("guaranteed first" in message and f"algorithm-text/{text}" in message) or (
        "root/algorithm: cpu used " in message and " > max 80" in message), message
    wait_for(lambda: dequeued(cluster, "algorithm-text", text), 90.0, f"{text} admitted despite the ask")
    assert len(refused()) == 1, "the claimant holds it now: still refused"
    wait_for(lambda: (rayjob(cluster, "algorithm-text", text).get("status") or {}).get("jobDeploymentStatus")
             == "Complete", 120.0, f"{text} ran")
    wait_for(lambda: len(bound(workers(ray_pods(cluster, "intern", victim)))) == 8, 90.0,
             "the autoscaler's worker bound once the claimant ended")

    def fits() -> bool:
        condition = quota_condition(cluster, "intern", name)
        return condition is not None and (condition["status"], condition["reason"]) == ("False", keys.REASON_FITS)

    wait_for(fits, 60.0, f"RayCluster {name}'s RayQueueQuota back to Fits")
    assert rayjob(cluster, "intern", victim)["spec"]["suspend"] is False
    assert invariants.worst.peak["root/algorithm"].get("cpu", 0) <= 80 * CPU, invariants.worst.peak

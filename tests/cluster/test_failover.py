"""Failover, proven end to end (issue 24 item 3): two extender replicas and two webhook replicas, each pair behind one
ready-routed address (tests/cluster/readyproxy.py plays the Services), a flood of 100 RayJobs with gangs, a webhook
replica and the leading extender killed with SIGKILL mid-flood, and kube-apiserver restarted once (etcd kept).

The standby takes the Lease and admits within the lease duration plus a pass; nothing is admitted twice, no quota
passes its max and no gang is partly bound, sampled throughout; every job completes. The extenders run with the
shipped leader-election defaults (15 s lease, 10 s renew deadline, 2 s retry), so the measured gap is the one a user
gets. After the takeover the killed replica is restarted, as Kubernetes restarts a container that exits, and from
then on so is any replica that exits: across the apiserver restart a leader whose renewals or watches stay down past
its renew deadline steps down and exits by design, and a synced replica then leads (the standby does not campaign
while its own watches are cut). The gaps are printed and written to failover.json in the test's tmp dir
(docs/performance.md, "Failover").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from kubernetes import client

from common import keys
from devcluster.cluster import ADMIN, TENANT, LocalCluster
from devcluster.procs import ManagedProcess
from devcluster.services import (
    SCHEDULER_NAME,
    Extender,
    Webhook,
    install_seed_tree,
    remove_seed_tree,
    start_extender,
    start_rayqueue_scheduler,
    start_webhook,
    stop_webhook,
    url_configurations,
)
from devcluster.waiting import wait_for
from tests.cluster.invariants import QuotaSampler
from tests.cluster.journey import TREE_NAMESPACES, queues, sized_job
from tests.cluster.readyproxy import Backend, ReadyProxy

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 15.0, 10.0, 2.0  # the shipped defaults (extender/settings.py)
EXTENDER_ARGS = ("--gang-timeout=10", "--reservation-ttl=30", "--backoff-base=1", "--backoff-max=4", "--resync=5",
                 f"--lease-duration={LEASE_DURATION:g}", f"--renew-deadline={RENEW_DEADLINE:g}",
                 f"--retry-period={RETRY_PERIOD:g}")
# The standby is synced before the kill; what it still needs once it holds the Lease is its first pass (and on a
# loaded 2-core machine, a CPU): the bound on kill -> first admission is the lease, a retry period and this.
FIRST_PASS_ALLOWANCE = 10.0
JOBS, BATCH = 100, 10
WORKERS = 2  # a gang of 3 (head + 2 workers) per job, and the submitter pod
RUN_SECONDS = 2
SAMPLE_INTERVAL = 0.5
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


@dataclass
class Replicas:
    hooks: tuple[Webhook, Webhook]
    extenders: tuple[Extender, Extender]
    hook_proxy: ReadyProxy
    extender_proxy: ReadyProxy


@pytest.fixture(scope="module")
def replicas(cluster: LocalCluster, standin: ManagedProcess) -> Iterator[Replicas]:
    install_seed_tree(cluster, (TENANT,), tree=False)
    args = (f"--scheduler-name={SCHEDULER_NAME}",)
    hook_a = start_webhook(cluster, name="rayqueue-webhook-a", extra_args=args, register=False)
    started: list[Webhook | Extender] = [hook_a]
    try:
        hook_b = start_webhook(cluster, name="rayqueue-webhook-b", extra_args=args, register=False,
                               replica_of=hook_a)
        started.append(hook_b)
        tls = ssl.create_default_context(cadata=hook_a.ca_pem.decode())
        with ReadyProxy([Backend(h.process.name, h.port, tls) for h in (hook_a, hook_b)]) as hook_proxy:
            cluster.apply(url_configurations(hook_proxy.url("https"), hook_a.ca_pem))
            install_seed_tree(cluster, tree=True)  # through the webhooks' tree validation
            ext_a = start_extender(cluster, name="rayqueue-extender-a", extra_args=EXTENDER_ARGS)
            started.append(ext_a)
            ext_b = start_extender(cluster, name="rayqueue-extender-b", extra_args=EXTENDER_ARGS, standby=True)
            started.append(ext_b)
            with ReadyProxy([Backend(e.process.name, e.port) for e in (ext_a, ext_b)]) as extender_proxy:
                # kube-scheduler's extender urlPrefix is the proxy: the Service of readiness = leader
                start_rayqueue_scheduler(cluster, Extender(ext_a.process, extender_proxy.port))
                try:
                    wait_for(lambda: len(queues(cluster)) == 5, 30.0, "one Queue per leaf of the guide's tree")
                    yield Replicas((hook_a, hook_b), (ext_a, ext_b), hook_proxy, extender_proxy)
                finally:
                    cluster.stop_scheduler(SCHEDULER_NAME)
    finally:
        for done in reversed(started):
            if isinstance(done, Webhook):
                stop_webhook(cluster, done)  # the configurations first (failurePolicy Fail), then the process
            else:
                cluster.stop_process(done.process.name)
        remove_seed_tree(cluster)


# --- what is sampled --------------------------------------------------------------------------------------------


@dataclass
class JobSeen:
    key: str
    stamps: list[str] = field(default_factory=list)  # every distinct dequeue stamp, in the order seen
    requeued: bool = False  # seen suspended again after an admission: a later stamp is then a new admission
    admitted_at: float | None = None  # time.monotonic() of the first sample that saw it admitted
    status: str = ""
    job_status: str = ""


class AdmissionSampler:
    """Lists the tree's RayJobs and pods every `interval` seconds in a thread: a job admitted twice (a second dequeue
    stamp with no requeue between) is recorded, and so is when each pod was first seen bound."""

    def __init__(self, api_client: Any, namespaces: tuple[str, ...], *, interval: float = SAMPLE_INTERVAL) -> None:
        self.core: Any = client.CoreV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.namespaces, self.interval = frozenset(namespaces), interval
        self.jobs: dict[str, JobSeen] = {}
        self.bound_at: dict[str, tuple[float, float, str]] = {}  # pod uid -> (sample asked, answered, ns/name)
        self.twice: list[str] = []
        self.samples = self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="admission-sampler", daemon=True)

    def __enter__(self) -> AdmissionSampler:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(10.0)

    def _run(self) -> None:
        deadline = time.monotonic() + 900.0  # bounded: a forgotten sampler stops by itself
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self.sample()
            except Exception:  # the apiserver restart: counted, and the next sample goes on
                self.errors += 1
            self._stop.wait(self.interval)

    def sample(self) -> None:
        asked = time.monotonic()
        jobs = json.loads(self.custom.list_cluster_custom_object(
            keys.RAY_GROUP, keys.RAY_VERSION, keys.RAYJOB_PLURAL, _preload_content=False).data)["items"]
        pods = json.loads(self.core.list_pod_for_all_namespaces(_preload_content=False).data)["items"]
        answered = time.monotonic()
        with self._lock:
            self.samples += 1
            for job in jobs:
                self._job(job, answered)
            for pod in pods:
                meta = pod["metadata"]
                if meta["namespace"] in self.namespaces and (pod.get("spec") or {}).get("nodeName") and \
                        meta["uid"] not in self.bound_at:
                    self.bound_at[meta["uid"]] = (asked, answered, f"{meta['namespace']}/{meta['name']}")

    def _job(self, job: dict[str, Any], now: float) -> None:
        meta = job["metadata"]
        if meta["namespace"] not in self.namespaces:
            return
        seen = self.jobs.setdefault(meta["uid"], JobSeen(f"{meta['namespace']}/{meta['name']}"))
        stamp = (meta.get("annotations") or {}).get(keys.DEQUEUE_TIMESTAMP)
        suspended = (job.get("spec") or {}).get("suspend") is True
        status = job.get("status") or {}
        seen.status, seen.job_status = status.get("jobDeploymentStatus", ""), status.get("jobStatus", "")
        if suspended and seen.stamps and stamp is None:
            seen.requeued = True
        if stamp is None or suspended or (seen.stamps and seen.stamps[-1] == stamp):
            return
        if seen.stamps and not seen.requeued:
            self.twice.append(f"RayJob {seen.key}: dequeue stamp {seen.stamps[-1]} then {stamp} with no requeue")
        seen.stamps.append(stamp)
        seen.requeued = False
        if seen.admitted_at is None:
            seen.admitted_at = now

    def admitted(self) -> int:
        with self._lock:
            return sum(1 for j in self.jobs.values() if j.stamps)

    def complete(self) -> list[JobSeen]:
        with self._lock:
            return [j for j in self.jobs.values() if j.status == "Complete"]

    def first_bind_asked_after(self, since: float) -> tuple[float, float, str] | None:
        """The first pod first seen bound by a sample asked at or after `since` (asked, answered, pod)."""
        with self._lock:
            later = [b for b in self.bound_at.values() if b[0] >= since]
        return min(later, default=None)


class Supervisor:
    """Plays the kubelet for the extender replicas once started: a replica whose process exited is started again with
    the same command line (same name and port), as a Deployment's container is restarted."""

    def __init__(self, cluster: LocalCluster, names: tuple[str, ...]) -> None:
        self.cluster, self.names = cluster, names
        self.restarts: list[tuple[float, str, str]] = []  # (monotonic time, name, the last line it logged)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(10.0)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for name in self.names:
                proc = self.cluster.processes.get(name)
                if proc is not None and not proc.alive():
                    last = (proc.tail(1) or "").strip()
                    self.cluster.start_process(name, proc.argv)
                    self.restarts.append((time.monotonic(), name, last))


# --- helpers ----------------------------------------------------------------------------------------------------


def _log_times(proc: ManagedProcess, needle: str, lines: int = 20000) -> list[float]:
    """The wall-clock times (time.time()) of the process's log lines that contain `needle`."""
    out = []
    for line in proc.tail(lines).splitlines():
        found = _LOG_TIME.match(line)
        if found and needle in line:
            out.append(dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


def _readyz(url: str, context: ssl.SSLContext | None = None) -> int:
    try:
        with urllib.request.urlopen(f"{url}/readyz", context=context, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _job(i: int) -> dict[str, Any]:
    namespace = TREE_NAMESPACES[i % len(TREE_NAMESPACES)]
    job = sized_job(namespace, workers=WORKERS, cpu="1", memory="512Mi", run_seconds=RUN_SECONDS)
    labels = job["metadata"].setdefault("labels", {})
    labels[keys.GANG_SCHEDULER_LABEL] = keys.GANG_SCHEDULER_VALUE  # a gang: head + workers, min-available 3
    job["metadata"]["generateName"] = "flood-"
    return job


def _create_batch(cluster: LocalCluster, first: int) -> list[str]:
    done = cluster.create([_job(i) for i in range(first, first + BATCH)], as_user=TENANT)
    return done.stdout.split()


def _kill(proc: ManagedProcess) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    wait_for(lambda: not proc.alive(), 10.0, f"{proc.name} to die")


def _dequeued_events(cluster: LocalCluster) -> Counter[str]:
    """Dequeued Events per RayJob uid, counted with each Event's own count."""
    per_job: Counter[str] = Counter()
    for ns in TREE_NAMESPACES:
        done = cluster.kubectl("get", "events", "-n", ns, "--field-selector", f"reason={keys.EVENT_DEQUEUED}",
                               "-o", "json")
        for event in json.loads(done.stdout)["items"]:
            if event["involvedObject"].get("kind") == keys.RAYJOB_KIND:
                per_job[event["involvedObject"]["uid"]] += int(event.get("count") or 1)
    return per_job


# --- the run ----------------------------------------------------------------------------------------------------


def test_failover_of_both_services_and_an_apiserver_restart_during_a_flood_of_gangs(
    cluster: LocalCluster, replicas: Replicas, nodes: Callable[..., str], cleanup: None, tmp_path: Path,
) -> None:
    (hook_a, hook_b), (ext_a, ext_b) = replicas.hooks, replicas.extenders
    assert replicas.extender_proxy.ready() == {ext_a.process.name}, "the first replica leads, the second stands by"
    assert replicas.hook_proxy.ready() == {hook_a.process.name, hook_b.process.name}
    for i in range(8):
        nodes(f"failover-{i}", cpu="16", memory="64Gi")
    hook_tls = ssl.create_default_context(cadata=hook_a.ca_pem.decode())
    figures: dict[str, Any] = {"jobs": JOBS, "gang_size": 1 + WORKERS, "lease_duration": LEASE_DURATION,
                               "renew_deadline": RENEW_DEADLINE, "retry_period": RETRY_PERIOD,
                               "sample_interval": SAMPLE_INTERVAL, "load_average_at_start": os.getloadavg()}
    created: list[str] = []
    # Each sampler has a client of its own: restart_apiserver closes the harness's.
    quota_client, admission_client = cluster.client_for(ADMIN), cluster.client_for(ADMIN)
    with contextlib.closing(quota_client), contextlib.closing(admission_client), \
            QuotaSampler(quota_client, interval=SAMPLE_INTERVAL) as quota, \
            AdmissionSampler(admission_client, TREE_NAMESPACES) as admissions:
        for first in range(0, 3 * BATCH, BATCH):
            created += _create_batch(cluster, first)

        # A webhook replica dies: every later create goes through the other one.
        _kill(hook_a.process)
        for first in range(3 * BATCH, 5 * BATCH, BATCH):
            created += _create_batch(cluster, first)
        assert hook_a.process.name not in replicas.hook_proxy.ready()

        # The leader dies mid-flood, with jobs admitted, running, and waiting.
        wait_for(lambda: admissions.admitted() >= 10, 60.0, "10 jobs admitted")
        figures["load_average_at_kill"] = os.getloadavg()
        killed_mono, killed_wall = time.monotonic(), time.time()
        _kill(ext_a.process)
        for first in range(5 * BATCH, JOBS, BATCH):
            created += _create_batch(cluster, first)
        assert len(created) == JOBS and hook_b.process.alive()

        bound = LEASE_DURATION + RETRY_PERIOD + FIRST_PASS_ALLOWANCE
        wait_for(lambda: bool(_log_times(ext_b.process, "dequeued ")), bound + 10.0,
                 "the standby to lead and admit a job")
        led = [t for t in _log_times(ext_b.process, "became the leader") if t >= killed_wall]
        admitted = [t for t in _log_times(ext_b.process, "dequeued ") if t >= killed_wall]
        assert led and admitted, ext_b.process.tail(40)
        routed = replicas.extender_proxy.first_ready_since(ext_b.process.name, killed_mono)
        assert routed is not None, "the proxy routes to the new leader"
        wait_for(lambda: admissions.first_bind_asked_after(routed) is not None, 60.0,
                 "a pod bound through the new leader")
        first_bind = admissions.first_bind_asked_after(routed)
        assert first_bind is not None
        figures.update({
            "kill_to_leader_s": round(led[0] - killed_wall, 2),
            "kill_to_first_admission_s": round(admitted[0] - killed_wall, 2),
            "kill_to_routed_s": round(routed - killed_mono, 2),
            "kill_to_first_bind_s": round(first_bind[1] - killed_mono, 2),
            "first_bind_resolution_s": round(first_bind[1] - first_bind[0] + SAMPLE_INTERVAL, 2),
            "first_bind_pod": first_bind[2],
        })
        assert figures["kill_to_first_admission_s"] <= bound, f"the standby admitted within {bound:.0f}s: {figures}"

        # The killed replica comes back (as Kubernetes restarts it) and stands by; then kube-apiserver restarts.
        with Supervisor(cluster, (ext_a.process.name, ext_b.process.name)) as supervisor:
            wait_for(lambda: ext_a.process.name in cluster.processes and cluster.processes[ext_a.process.name]
                     .alive() and "not the leader" in _standby_text(ext_a.url), 60.0,
                     "the restarted replica to stand by, synced")
            hook_pid = hook_b.process.pid
            figures["load_average_at_restart"] = os.getloadavg()
            restarted_mono = time.monotonic()
            figures["apiserver_restart_s"] = round(cluster.restart_apiserver(), 1)
            wait_for(lambda: _readyz(hook_b.url, hook_tls) == 200, 90.0, "the webhook to be ready again")
            wait_for(lambda: len(replicas.extender_proxy.ready()) == 1, 90.0, "one extender to lead again")
            assert hook_b.process.pid == hook_pid and hook_b.process.alive(), "the same webhook process resumed"
            for scope in ("elasticquotatrees", "priorityclasses", "queues", "queueunits"):
                wait_for(lambda s=scope: f"{s}: re-listed" in hook_b.process.tail(5000), 60.0,
                         f"the webhook's {scope} watch to resume from a fresh list")
            # Every extender process that lived through the restart resumed its watches from a fresh list.
            for name in (ext_a.process.name, ext_b.process.name):
                proc = cluster.processes[name]
                if not any(r[1] == name and r[0] >= restarted_mono for r in supervisor.restarts):
                    for scope in ("pods", "rayjobs", "queueunits"):
                        wait_for(lambda p=proc, s=scope: f"{s}: re-listed" in p.tail(5000), 60.0,
                                 f"{name}'s {scope} watch to resume from a fresh list")
            figures["leader_after_restart"] = sorted(replicas.extender_proxy.ready())
            figures["restarts_after_the_apiserver_restart"] = [
                {"replica": r[1], "after_s": round(r[0] - restarted_mono, 1), "last_line": r[2]}
                for r in supervisor.restarts if r[0] >= restarted_mono]

            # Lose nothing: every job completes.
            wait_for(lambda: len(admissions.complete()) >= JOBS, 300.0, f"all {JOBS} RayJobs to complete",
                     interval=1.0)
        figures["load_average_at_end"] = os.getloadavg()

    failed = [j.key for j in admissions.jobs.values() if j.job_status != "SUCCEEDED"]
    assert not failed, f"jobs that did not succeed: {failed[:5]}"
    assert not admissions.twice, f"admitted twice: {admissions.twice[:5]}"
    assert all(len(j.stamps) == 1 for j in admissions.jobs.values()), "each job admitted exactly once"
    events = _dequeued_events(cluster)
    assert max(events.values(), default=0) <= 1, f"a job got two Dequeued events: {events.most_common(3)}"
    worst = quota.check()
    figures.update({"quota_samples": worst.samples, "admission_samples": admissions.samples,
                    "sample_errors": worst.errors + admissions.errors,
                    "peak_cpu_milli": {node: peak.get("cpu", 0) for node, peak in worst.peak.items()}})
    print(json.dumps(figures, indent=2))
    (tmp_path / "failover.json").write_text(json.dumps(figures, indent=2))


def _standby_text(url: str) -> str:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())
    except OSError:
        return ""


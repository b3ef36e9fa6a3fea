"""Both services survive a kube-apiserver restart (etcd kept) and lose nothing (issue 24, item 0).

The reported failure: after one apiserver restart neither service's watches resumed and nothing said so; a RayJob
was queued by the webhook but never admitted, and a leaf added afterwards for a new namespace was not seen by the
webhook, so that namespace's RayJobs bypassed the quota. Here the extender (leader-elected, with a renew deadline
longer than the restart) and the webhook run across a restart; both must resume from a fresh list, in the same
processes.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
import yaml

from common import keys
from devcluster.cluster import TENANT, LocalCluster
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
)
from devcluster.waiting import wait_for
from tests.cluster.journey import create, dequeued, get, queues, rayjob, seed_job

# The defaults of start_extender, and a Lease that outlives the restart: the leader must keep leading across it
# (with the default 10s renew deadline it would step down and exit for Kubernetes to restart it, by design).
EXTENDER_ARGS = ("--gang-timeout=10", "--reservation-ttl=30", "--backoff-base=1", "--backoff-max=4", "--resync=5",
                 "--lease-duration=90", "--renew-deadline=60", "--retry-period=2")


@pytest.fixture(scope="module")
def services(cluster: LocalCluster, standin: ManagedProcess) -> Iterator[tuple[Webhook, Extender]]:
    install_seed_tree(cluster, (TENANT,), tree=False)
    hook = start_webhook(cluster, name="rayqueue-webhook-restart", extra_args=(f"--scheduler-name={SCHEDULER_NAME}",))
    extender = None
    try:
        install_seed_tree(cluster, tree=True)
        extender = start_extender(cluster, name="rayqueue-extender-restart", extra_args=EXTENDER_ARGS)
        start_rayqueue_scheduler(cluster, extender)
        wait_for(lambda: len(queues(cluster)) == 5, 30.0, "one Queue per leaf of the guide's tree")
        yield hook, extender
    finally:
        cluster.stop_scheduler(SCHEDULER_NAME)
        if extender is not None:
            cluster.stop_process(extender.process.name)
        stop_webhook(cluster, hook)
        remove_seed_tree(cluster)


def readyz(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{url}/readyz", context=context, timeout=2) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def with_free_leaf(cluster: LocalCluster, namespace: str) -> None:
    """Add a leaf `free` bound to `namespace` under root (through the webhook's tree validation)."""
    tree = get(cluster, "elasticquotatree", "elasticquotatree", "-n", "kube-system")
    tree["spec"]["root"]["children"].append({"name": "free", "namespaces": [namespace],
                                             "min": {"cpu": "0", "memory": "0"},
                                             "max": {"cpu": "4", "memory": "8Gi"}})
    for key in ("resourceVersion", "managedFields", "uid", "creationTimestamp", "generation"):
        tree["metadata"].pop(key, None)
    tree.pop("status", None)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(tree))


def test_both_services_resume_their_watches_after_an_apiserver_restart(
    cluster: LocalCluster, services: tuple[Webhook, Extender], nodes: Callable[..., str], namespace: str,
    cleanup: None,
) -> None:
    hook, extender = services
    context = ssl.create_default_context(cadata=hook.ca_pem.decode())
    for i in range(2):
        nodes(f"restart-{i}")
    before = create(cluster, seed_job(run_seconds=2))
    wait_for(lambda: dequeued(cluster, "video", before), 60.0, f"{before} admitted before the restart")
    pids = (hook.process.pid, extender.process.pid)

    took = cluster.restart_apiserver()
    print(f"kube-apiserver was back after {took:.1f}s")

    wait_for(lambda: readyz(extender.url)[0] == 200, 90.0, "the extender to be ready again (leader, watches live)")
    wait_for(lambda: readyz(hook.url, context)[0] == 200, 90.0, "the webhook to be ready again (watches live)")
    assert hook.process.alive() and extender.process.alive(), "neither process died"
    assert (hook.process.pid, extender.process.pid) == pids, "the same processes resumed"
    # Each watch logged its failure and, from a fresh list, its recovery (the create warning's queue watches in
    # the webhook are not part of its readiness: wait for them too).
    for proc, scopes in ((extender.process, ("pods", "rayjobs", "queueunits", "elasticquotatrees")),
                         (hook.process, ("elasticquotatrees", "priorityclasses", "queues", "queueunits"))):
        for scope in scopes:
            wait_for(lambda p=proc, s=scope: f"{s}: list/watch of" in p.tail(3000) and f"{s}: re-listed" in
                     p.tail(3000), 30.0, f"{proc.name} to log its {scope} watch failing, then re-listed")

    # A RayJob created after the restart is queued by the webhook AND admitted by the extender.
    after = create(cluster, seed_job(run_seconds=2))
    queued = rayjob(cluster, "video", after)
    assert keys.ENQUEUE_TIMESTAMP in queued["metadata"]["annotations"], "queued by the webhook"
    wait_for(lambda: dequeued(cluster, "video", after), 60.0, f"{after}, created after the restart, to be admitted")

    # A leaf added after the restart for a new namespace is enforced by the webhook within a few seconds.
    with_free_leaf(cluster, namespace)
    job = seed_job(run_seconds=2, namespace=namespace)
    job["metadata"].pop("labels", None)
    added = time.monotonic()

    def queued_in_free() -> bool:
        try:
            name = create(cluster, job)
        except subprocess.CalledProcessError as exc:
            assert "rayqueue" in exc.stderr, exc.stderr  # only a refusal that names rayqueue (fail closed)
            return False
        made = rayjob(cluster, namespace, name)
        assert made["spec"]["suspend"] is True, "a RayJob in the new leaf's namespace must be queued, not run"
        assert made["metadata"]["labels"][keys.QUOTA_NAME] == "free"
        return True

    wait_for(queued_in_free, 10.0, f"a RayJob in {namespace}, bound to the new leaf, to be queued")
    print(f"the new leaf was enforced {time.monotonic() - added:.1f}s after it was added")
    print(json.dumps({"restart_seconds": round(took, 1)}))
    cluster.kubectl("delete", "rayjob", "--all", "-n", namespace, "--wait=false", check=False)

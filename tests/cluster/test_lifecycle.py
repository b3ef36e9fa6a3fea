"""Upgrade, the tenant's plugin, uninstall: the install's whole life on a control plane of its own (the uninstall
deletes the CRDs, which the session's cluster shares with every other module).

The three tests run in order on one story. The previous release's install (tests/cluster/data/previous-release:
the kustomization of commit 64b12ef, applied client-side as its README said, with webhook configurations and a
certificate made by `rayqueue-certs`) runs a queue: one video job admitted, two waiting. The upgrade applies the
current kustomization server-side in place and restarts the processes as a rollout would; every waiting job keeps
its position, its enqueue stamp and its QueueUnit, and the queue proceeds. The demo's tenant then runs every
`kubectl rayqueue` subcommand with her own kubeconfig. Last, the documented uninstall: the webhook configurations
deleted, the extender stopped, `kubectl rayqueue release-queued --yes`, `kubectl delete --ignore-not-found -k
manifests/`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from certs.manifests import inject_ca_bundle, tls_secret
from common import keys
from devcluster.cluster import REPO_ROOT, TENANT, LocalCluster, ensure_binaries, free_ports
from devcluster.install import (
    CONFIG_KINDS,
    WORKLOADS,
    apply_server_side,
    by_url,
    ca_bundles,
    rendered,
    secret_data,
    start_selfcert_webhook,
    wait_ready,
)
from devcluster.procs import ManagedProcess
from devcluster.services import (
    SCHEDULER_NAME,
    install_seed_tree,
    seed_tree_documents,
    start_extender,
    start_rayqueue_scheduler,
    start_webhook,
)
from devcluster.waiting import wait_for
from tests.cluster.journey import create, queues, rayjob, seed_job

PREVIOUS = Path(__file__).resolve().parent / "data" / "previous-release"
Obj = dict[str, Any]


@dataclass
class Story:
    """The module's one cluster and what the tests before have left in it."""

    cluster: LocalCluster
    port: int = 0
    jobs: dict[str, str] = field(default_factory=dict)  # role (running, next, last) -> RayJob name in video
    installed: list[Obj] = field(default_factory=list)  # what the current install applied


def previous_docs() -> list[Obj]:
    return [d for d in yaml.safe_load_all((PREVIOUS / "install.yaml").read_text()) if d]


@pytest.fixture(scope="module")
def story() -> Iterator[Story]:
    with LocalCluster(ensure_binaries()) as local:
        standin = local.start_standin()
        wait_for(lambda: "caches synced" in standin.tail(200), 60.0, "the KubeRay stand-in to sync")
        local.start_scheduler()  # default-scheduler: the released jobs' pods go to it
        for i in range(4):
            local.create_node(f"lifecycle-{i}", cpu="8", memory="32Gi")
        yield Story(local)


def _kubectl_json(cluster: LocalCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def waiting_units(cluster: LocalCluster) -> dict[str, tuple[str, str, Any]]:
    """Each video QueueUnit in the Queue's lists: name -> (uid, list, position)."""
    queue = queues(cluster)["root/algorithm/video"]
    details = (queue.get("status") or {}).get("queueItemDetails") or {}
    uids = {u["metadata"]["name"]: u["metadata"]["uid"]
            for u in _kubectl_json(cluster, "get", "queueunit", "-n", "video")["items"]}
    return {d["name"]: (uids.get(d["name"], ""), listed, d.get("position"))
            for listed in ("active", "backoff") for d in details.get(listed) or []}


def stamps(cluster: LocalCluster, name: str) -> tuple[bool, str | None, str | None]:
    job = rayjob(cluster, "video", name)
    annotations = job["metadata"].get("annotations") or {}
    return (job["spec"].get("suspend"), annotations.get(keys.ENQUEUE_TIMESTAMP),
            annotations.get(keys.DEQUEUE_TIMESTAMP))


def _previous_webhook(cluster: LocalCluster) -> tuple[ManagedProcess, list[Obj]]:
    """The previous release's way: a CA and serving certificate made beforehand (rayqueue-certs), its Secret applied,
    webhooks.yaml with the CA injected applied by hand; here the configurations call 127.0.0.1 by URL."""
    hook = start_webhook(cluster, name="webhook-previous", extra_args=(f"--scheduler-name={SCHEDULER_NAME}",),
                         register=False)
    certs = cluster.workdir / "webhook-previous"
    secret = tls_secret(name="rayqueue-webhook-tls", namespace="rayqueue", cert_pem=(certs / "tls.crt").read_bytes(),
                        key_pem=(certs / "tls.key").read_bytes(), ca_pem=hook.ca_pem)
    configurations = [inject_ca_bundle(by_url(d, hook.url), hook.ca_pem, "webhooks.yaml")[0]
                      for d in yaml.safe_load_all((PREVIOUS / "webhooks.yaml").read_text()) if d]
    cluster.apply([secret, *configurations])
    return hook.process, configurations


def test_an_upgrade_in_place_keeps_every_queued_job_its_position_stamp_and_queue_unit(story: Story) -> None:
    cluster = story.cluster
    previous = [d for d in previous_docs() if d["kind"] not in WORKLOADS]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(previous))  # client-side, as the release said
    cluster.wait_crds_established(d["metadata"]["name"] for d in previous if d["kind"] == "CustomResourceDefinition")
    old_webhook, _ = _previous_webhook(cluster)
    install_seed_tree(cluster, (TENANT,), tree=True)
    cluster.label_namespaces([d["metadata"]["name"] for d in seed_tree_documents()[0]])
    extender = start_extender(cluster, name="extender-previous")
    start_rayqueue_scheduler(cluster, extender)
    wait_for(lambda: len(queues(cluster)) == 5, 30.0, "one Queue per leaf")

    # video's max is 14 CPU, the seed's video job asks 12.5: one runs, two wait, in order.
    story.jobs["running"] = create(cluster, seed_job(run_seconds=25))
    wait_for(lambda: stamps(cluster, story.jobs["running"])[2] is not None, 60.0, "the first job admitted")
    story.jobs["next"] = create(cluster, seed_job(run_seconds=120))
    story.jobs["last"] = create(cluster, seed_job(run_seconds=5))
    waiting = {keys.queue_unit_name(story.jobs[r]) for r in ("next", "last")}
    wait_for(lambda: waiting <= set(waiting_units(cluster)), 30.0, "both waiting jobs in the video Queue's lists")
    before_units = waiting_units(cluster)
    before = {role: stamps(cluster, name) for role, name in story.jobs.items()}
    assert [p for _, _, p in (before_units[u] for u in sorted(waiting, key=lambda u: u != keys.queue_unit_name(
        story.jobs["next"])))] == [1, 2], before_units

    # The upgrade: the processes stop (a rollout's old pods), the current install applied in place, new processes.
    cluster.stop_scheduler(SCHEDULER_NAME)
    cluster.stop_process(extender.process.name)
    cluster.stop_process(old_webhook.name)
    (story.port,) = free_ports(1)
    current = [by_url(d, f"https://127.0.0.1:{story.port}") if d["kind"] in CONFIG_KINDS else d
               for d in rendered(cluster) if d["kind"] not in WORKLOADS]
    apply_server_side(cluster, current)  # the install's own command: no --force-conflicts over the client-side one
    story.installed = current
    done = cluster.kubectl("get", "crd", "queueunits.scheduling.x-k8s.io", "-o",
                           "jsonpath={.spec.versions[0].schema.openAPIV3Schema.properties.status.properties.phase.enum}")
    assert "Parked" in done.stdout, "the current QueueUnit CRD (phase Parked) replaced the previous one"
    hook = start_selfcert_webhook(cluster, story.port, name="rayqueue-webhook",
                                  extra_args=(f"--scheduler-name={SCHEDULER_NAME}",))
    wait_ready(cluster, hook)
    data = secret_data(cluster)
    assert data is not None and set(ca_bundles(cluster)) == {data["ca-bundle.crt"]}, \
        "the webhook repaired the rayqueue-certs Secret (no CA key) and now owns both caBundles"
    extender = start_extender(cluster)
    start_rayqueue_scheduler(cluster, extender)

    assert {role: stamps(cluster, name) for role, name in story.jobs.items()} == before
    assert waiting_units(cluster) == before_units, "same QueueUnits (uids), same lists and positions"
    # The queue proceeds in order: the first finishes, the next is admitted, the last still waits behind it.
    wait_for(lambda: stamps(cluster, story.jobs["next"])[2] is not None, 90.0, "the next job admitted")
    assert stamps(cluster, story.jobs["next"])[1] == before["next"][1], "admitted with its enqueue stamp"
    suspended, enqueued, dequeued = stamps(cluster, story.jobs["last"])
    assert (suspended, enqueued, dequeued) == (True, before["last"][1], None)
    assert waiting_units(cluster)[keys.queue_unit_name(story.jobs["last"])][2] == 1
    assert queued_by_webhook(cluster), "a new RayJob is queued by the upgraded webhook"


def queued_by_webhook(cluster: LocalCluster) -> bool:
    done = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", as_user=TENANT,
                           input=yaml.safe_dump(seed_job()))
    obj = json.loads(done.stdout)
    return obj["spec"]["suspend"] is True and keys.ENQUEUE_TIMESTAMP in obj["metadata"]["annotations"]


def plugin(cluster: LocalCluster, *args: str, user: str = TENANT) -> subprocess.CompletedProcess[str]:
    """`kubectl rayqueue ARGS` as `user`: what kubectl execs (kubectl-rayqueue), with that user's kubeconfig."""
    return subprocess.run([sys.executable, "-m", "rayqueue_cli", *args, f"--kubeconfig={cluster.kubeconfig(user)}"],
                          capture_output=True, text=True, timeout=60, check=False, cwd=REPO_ROOT)


def answer(cluster: LocalCluster, *args: str, user: str = TENANT) -> Obj:
    done = plugin(cluster, *args, "-o", "json", user=user)
    assert done.returncode == 0, f"kubectl rayqueue {' '.join(args)} as {user}: {done.stderr}"
    return dict(json.loads(done.stdout))


def test_the_demo_tenant_runs_every_plugin_subcommand_and_what_is_forbidden_stays_forbidden(
        story: Story, tmp_path: Path) -> None:
    """alice has only what the product documents for a tenant: `edit` in her namespaces (install_seed_tree binds
    it, as the demo does) and the install's visibility roles. Every subcommand of rayqueue_cli/__main__.py
    answers her, none with a 403."""
    from rayqueue_cli.__main__ import COMMANDS

    cluster = story.cluster
    waiting = story.jobs["last"]
    tested = {"top", "why", "queue", "whatif", "retry", "release-queued"}
    assert set(COMMANDS) == tested, "a new subcommand needs its line here"

    top = answer(cluster, "top")
    video = next(n for n in top["nodes"] if n["node"] == "root/algorithm/video")
    assert video["namespaces"] == ["video"] and video["resources"]["cpu"]["max"] == 14000
    assert video["resources"]["cpu"]["used"] == 12500, "the admitted job's 12.5 CPU"

    why = answer(cluster, "why", waiting, "-n", "video")
    assert (why["rayjob"], why["position"], why["blocking"]) == (f"video/{waiting}", 1, "root/algorithm/video"), why

    queue = answer(cluster, "queue", "video")
    assert [(i["queueUnit"], i["position"], i["visible"]) for i in queue["items"]] == [
        (keys.queue_unit_name(waiting), 1, True)], queue

    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(seed_job()))
    whatif = answer(cluster, "whatif", "-f", str(manifest), "-n", "video")
    assert whatif["kind"] == "WhatIf" and whatif["namespace"] == "video"
    assert whatif["request"]["cpu"] == "12500m", whatif

    retry = answer(cluster, "retry", waiting, "-n", "video")
    assert retry == {"kind": "Retry", "namespace": "video", "name": waiting, "removed": None}

    dry = answer(cluster, "release-queued", "-n", "video")
    actions = {(j["kind"], j["name"]): j["action"] for j in dry["jobs"]}
    assert set(actions) <= {(keys.RAYJOB_KIND, n) for n in story.jobs.values()}, "RayJobs only: no job's RayCluster"
    assert actions[(keys.RAYJOB_KIND, story.jobs["next"])] == "leave" and dry["dryRun"] is True
    assert [n for (_, n), a in actions.items() if a == "release"] == [waiting]

    # Forbidden stays forbidden: the webhook refuses her resuming a queued job (only the controller or an admin
    # may), every namespace is not hers to list, and the tree is not hers to edit.
    held = stamps(cluster, waiting)
    partly = plugin(cluster, "release-queued", "-n", "video", "--yes", "-o", "json", user=TENANT)
    assert partly.returncode == 2, f"a failed release exits 2 (an uninstall script stops): {partly.stderr}"
    refused = json.loads(partly.stdout)
    assert refused["failed"] == 1 and stamps(cluster, waiting) == held and held[0] is True
    outcome = next(j["outcome"] for j in refused["jobs"] if j["name"] == waiting)
    assert outcome.startswith('403: admission webhook "rayjobs.validate.rayqueue.io"') and \
        "only the queue controller may change" in outcome, outcome
    everywhere = plugin(cluster, "release-queued")
    assert everywhere.returncode == 1 and "403" in everywhere.stderr and "release-queued needs" in everywhere.stderr
    tree = seed_tree_documents()[1]
    tree["metadata"]["labels"] = {"edited-by": TENANT}
    done = cluster.kubectl("apply", "-f", "-", as_user=TENANT, input=yaml.safe_dump(tree), check=False)
    assert done.returncode != 0 and "forbidden" in done.stderr.lower(), done.stderr


def test_the_documented_uninstall_leaves_no_job_suspended_and_removes_what_the_install_made(story: Story) -> None:
    """docs/install.md, step by step: (1) delete the webhook configurations (nothing new is queued, no pod is
    stamped for the rayqueue scheduler), (2) stop the extender (nothing admits or reclaims meanwhile), (3)
    `kubectl rayqueue release-queued --yes`, (4) `kubectl delete --ignore-not-found -k manifests/` (here: the
    applied install)."""
    cluster = story.cluster
    waiting, running = story.jobs["last"], story.jobs["next"]
    for kind in CONFIG_KINDS:
        cluster.kubectl("delete", kind.lower(), "rayqueue")
    cluster.stop_process("rayqueue-extender")

    done = answer(cluster, "release-queued", "--yes", user="admin")
    assert (done["released"], done["deleted"], done["failed"]) == (1, 0, 0), done
    assert {j["name"]: j["action"] for j in done["jobs"]}[running] == "leave"
    for name in (waiting, running):
        suspended, _, _ = stamps(cluster, name)
        assert suspended is False, name
    assert stamps(cluster, waiting)[1:] == (None, None), "no rayqueue stamp on the released job"
    assert cluster.kubectl("get", "queueunit", "-n", "video", keys.queue_unit_name(waiting),
                           "--ignore-not-found", "-o", "name").stdout == ""

    def runs_unqueued() -> bool:
        pods = _kubectl_json(cluster, "get", "pod", "-n", "video")["items"]
        cluster_name = (rayjob(cluster, "video", waiting).get("status") or {}).get("rayClusterName")
        mine = [p for p in pods if (p["metadata"].get("labels") or {}).get(keys.RAY_CLUSTER) == cluster_name]
        return bool(cluster_name) and len(mine) == 3 and all(
            p["spec"].get("nodeName") and p["spec"].get("schedulerName") == keys.DEFAULT_SCHEDULER for p in mine)

    wait_for(runs_unqueued, 60.0, "the released job's pods bound by the default scheduler")

    cluster.stop_scheduler(SCHEDULER_NAME)
    cluster.stop_process("rayqueue-webhook")
    # --ignore-not-found: step 1 deleted the webhook configurations already (kubectl exits 1 on a NotFound)
    deleted = cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                              input=yaml.safe_dump_all(story.installed), check=False)
    assert deleted.returncode == 0, deleted.stderr
    cluster_scoped = [(d["kind"], d["metadata"]["name"]) for d in story.installed if "namespace" not in d["metadata"]]

    def everything_gone() -> bool:
        left = [n for k, n in cluster_scoped if cluster.kubectl(
            "get", k.lower(), n, "--ignore-not-found", "-o", "name", check=False).stdout.strip()]
        return not left

    wait_for(everything_gone, 90.0, "every object of the install gone (the namespaces rayqueue and kube-queue too)")
    # What stays: the user's RayJobs (KubeRay's objects) and the tree's namespaces. The CRDs took every
    # ElasticQuotaTree, Queue and QueueUnit with them; the namespace rayqueue took the webhook's Secret.
    names = {j["metadata"]["name"]: j for j in _kubectl_json(cluster, "get", "rayjob", "-n", "video")["items"]}
    assert {waiting, running} <= set(names)
    assert not [n for n, j in names.items() if j["spec"].get("suspend") and keys.ENQUEUE_TIMESTAMP in (
        j["metadata"].get("annotations") or {})], "no job is left suspended with a rayqueue stamp"
    crds = cluster.kubectl("get", "crd", "-o", "name").stdout.split()
    assert not [c for c in crds if c.endswith((".scheduling.x-k8s.io", ".scheduling.sigs.k8s.io"))], crds
    assert secret_data(cluster) is None

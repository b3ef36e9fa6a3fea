"""The one-command install with the webhook's self-managed certificate, on the real apiserver: the rendered
kustomization applied server-side (its workloads run as local processes), no certificate made beforehand. Fail
closed before the webhook serves, never locked out; two replicas racing on an empty Secret end with one CA; a
RayJob is queued; a re-apply keeps the caBundle; a CA roll shortened by test flags keeps admissions working."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cryptography import x509

from certs.authority import is_signed_by
from common import keys
from devcluster.cluster import LocalCluster, free_ports
from devcluster.install import (
    apply_server_side,
    ca_bundles,
    install,
    secret_data,
    start_selfcert_webhook,
    uninstall_configurations,
    wait_ready,
)
from devcluster.services import install_seed_tree, remove_seed_tree
from devcluster.waiting import wait_for
from tests.cluster.journey import seed_job


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The install applied, its configurations pointing at 127.0.0.1:<port>, where each test starts a webhook."""
    uninstall_configurations(cluster)
    (port,) = free_ports(1)
    docs = install(cluster, f"https://127.0.0.1:{port}")
    try:
        yield port, docs
    finally:
        uninstall_configurations(cluster)


@pytest.fixture
def empty_secret(cluster: LocalCluster, installed: tuple[int, list[dict[str, Any]]]) -> int:
    cluster.kubectl("delete", "secret", "rayqueue-webhook-tls", "-n", "rayqueue", "--ignore-not-found")
    return installed[0]


def _stop(cluster: LocalCluster, *names: str) -> None:
    for name in names:
        cluster.stop_process(name)


def dry_run_job(cluster: LocalCluster, namespace: str) -> tuple[int, str, dict[str, Any] | None]:
    """A server-side dry-run create of the guide's RayJob: (return code, stderr, the object the webhooks made)."""
    done = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", "-n", namespace,
                           input=yaml.safe_dump(seed_job(namespace=namespace)), check=False)
    return done.returncode, done.stderr, json.loads(done.stdout) if done.returncode == 0 else None


def queued(obj: dict[str, Any] | None) -> bool:
    return obj is not None and obj["spec"].get("suspend") is True and \
        keys.ENQUEUE_TIMESTAMP in (obj["metadata"].get("annotations") or {})


def probe_pod(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def test_before_any_webhook_serves_ray_creates_are_refused_naming_rayqueue_but_its_own_namespace_is_free(
    cluster: LocalCluster, empty_secret: int
) -> None:
    """Fail closed, never locked out: with the configurations registered and no replica up, a RayJob in a tenant
    namespace (`default`) is refused by a rayqueue webhook, and so is a namespace create (rule N3 must see it:
    docs/security.md); pods in rayqueue (the webhook's own) and kube-system are created."""
    code, err, _ = dry_run_job(cluster, "default")
    assert code != 0 and "rayjobs.mutate.rayqueue.io" in err, err
    made = cluster.kubectl("create", "namespace", "never-made", "--dry-run=server", check=False)
    assert made.returncode != 0 and "namespaces.mutate.rayqueue.io" in made.stderr, made.stderr
    for ns in ("rayqueue", "kube-system"):
        done = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(probe_pod(ns)),
                               check=False)
        assert done.returncode == 0, done.stderr
    assert all(b == b"" for b in ca_bundles(cluster)), "the install ships no caBundle"


def test_two_replicas_racing_on_an_empty_secret_end_with_one_ca_and_a_rayjob_is_queued(
    cluster: LocalCluster, empty_secret: int, installed: tuple[int, list[dict[str, Any]]]
) -> None:
    port = empty_secret
    (other,) = free_ports(1)
    a = start_selfcert_webhook(cluster, port, name="selfcert-a")
    b = start_selfcert_webhook(cluster, other, name="selfcert-b")
    try:
        wait_ready(cluster, a)
        wait_ready(cluster, b)
        data = secret_data(cluster)
        assert data is not None
        bundle = x509.load_pem_x509_certificates(data["ca-bundle.crt"])
        ca = x509.load_pem_x509_certificate(data["ca.crt"])
        assert [c.serial_number for c in bundle] == [ca.serial_number], "one CA"
        for hook in (a, b):
            assert is_signed_by(x509.load_pem_x509_certificate(hook.peer_certificate()), ca), hook.process.name
        assert set(ca_bundles(cluster)) == {data["ca-bundle.crt"]}, "every webhook trusts that CA"
        logs = a.process.tail(200) + b.process.tail(200)
        assert logs.count("Secret rayqueue/rayqueue-webhook-tls: create") == 1, logs

        install_seed_tree(cluster, tree=True)  # the tree itself passes the (now serving) validating webhook
        try:
            wait_for(lambda: queued(dry_run_job(cluster, "video")[2]), 30.0, "a RayJob in video to come back queued")
            # A re-apply of the same install (as an upgrade would) keeps the caBundle the webhook owns.
            apply_server_side(cluster, installed[1])
            assert set(ca_bundles(cluster)) == {data["ca-bundle.crt"]}
            assert queued(dry_run_job(cluster, "video")[2])
        finally:
            remove_seed_tree(cluster)
    finally:
        _stop(cluster, a.process.name, b.process.name)


def test_a_shortened_ca_roll_keeps_admissions_working_throughout(cluster: LocalCluster, empty_secret: int) -> None:
    """CA 40 s, rolled 25 s before its end with 5 s per step, checked every second: through the whole roll (new CA,
    serving pair from it, old CA dropped) every create is answered by the webhook."""
    flags = ("--cert-ca-validity=40", "--cert-ca-renew-before=25", "--cert-validity=40", "--cert-renew-before=8",
             "--cert-overlap=5", "--cert-check-interval=1")
    hook = start_selfcert_webhook(cluster, empty_secret, name="selfcert-roll", extra_args=flags)
    try:
        wait_ready(cluster, hook)
        first = secret_data(cluster)
        assert first is not None
        cas, failures, answered = {first["ca.crt"]}, [], 0
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            code, err, _ = dry_run_job(cluster, "default")
            if code != 0:
                failures.append(err.strip())
            else:
                answered += 1
            data = secret_data(cluster)
            if data is not None:
                cas.add(data["ca.crt"])
            time.sleep(0.5)
        assert failures == [], failures
        assert len(cas) >= 2, "the CA rolled at least once"
        assert answered >= 20
        log = hook.process.tail(400)
        for step in ("start-ca-roll", "roll-serving", "finish-ca-roll"):
            assert step in log, step
    finally:
        _stop(cluster, hook.process.name)

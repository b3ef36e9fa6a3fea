"""rayqueue's own services on a LocalCluster: the webhook (real TLS on 127.0.0.1, registered by URL with the
shipped webhook configurations) — for the tests and the demo."""

from __future__ import annotations

import copy
import datetime as dt
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from certs.authority import create_ca, create_serving
from certs.manifests import inject_ca_bundle
from devcluster.cluster import REPO_ROOT, LocalCluster, free_ports
from devcluster.procs import ManagedProcess
from devcluster.waiting import wait_for

WEBHOOK_CONFIGS = REPO_ROOT / "manifests" / "webhook" / "webhooks.yaml"
NAMESPACE = "rayqueue"


def run_as_service_account(cluster: LocalCluster, account: str, rbac: Path) -> Path:
    """Apply the shipped RBAC `rbac` and return a kubeconfig that authenticates as ServiceAccount
    rayqueue/`account` does in a pod (user ``system:serviceaccount:rayqueue:<account>``, groups
    ``system:serviceaccounts`` and ``system:serviceaccounts:rayqueue``; a client certificate stands in for the
    token, which this control plane has no controller to mint). So every e2e test runs the services with
    exactly the permissions the install grants them, never as admin: a missing rule fails a test."""
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
    cluster.apply(rbac)
    name = f"sa-{account}"
    if name not in cluster.kubeconfigs:
        cluster.add_user(name, ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"],
                         common_name=f"system:serviceaccount:{NAMESPACE}:{account}")
    return cluster.kubeconfig(name)


@dataclass(frozen=True)
class Webhook:
    process: ManagedProcess
    port: int
    ca_pem: bytes
    configurations: tuple[dict[str, Any], ...]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def url_configurations(base_url: str, ca_pem: bytes) -> list[dict[str, Any]]:
    """The shipped webhook configurations with each Service reference replaced by `base_url` + its path."""
    out = []
    for doc in yaml.safe_load_all(WEBHOOK_CONFIGS.read_text()):
        if not doc:
            continue
        doc = copy.deepcopy(doc)
        for hook in doc.get("webhooks") or []:
            service = hook["clientConfig"].pop("service")
            hook["clientConfig"]["url"] = base_url + service.get("path", "/")
        doc, _ = inject_ca_bundle(doc, ca_pem, str(WEBHOOK_CONFIGS))
        out.append(doc)
    return out


def start_webhook(cluster: LocalCluster, *, name: str = "rayqueue-webhook", extra_args: tuple[str, ...] = (),
                  register: bool = True, replica_of: Webhook | None = None) -> Webhook:
    """Issue certificates for 127.0.0.1, start `python -m webhook` against the cluster, wait until ready,
    and (by default) register the shipped configurations pointing at it. `replica_of`: serve that webhook's
    certificate instead (a second replica behind one address, as behind one Service)."""
    certs = cluster.workdir / (replica_of.process.name if replica_of is not None else name)
    if replica_of is None:
        certs.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        ca = create_ca(now=now)
        serving = create_serving(ca, service="rayqueue-webhook", namespace="rayqueue", now=now, ips=["127.0.0.1"])
        (certs / "tls.crt").write_bytes(serving.cert_pem())
        (certs / "tls.key").touch(mode=0o600)
        (certs / "tls.key").write_bytes(serving.key_pem())
        (certs / "ca.crt").write_bytes(ca.cert_pem())
    ca_pem = (certs / "ca.crt").read_bytes()
    (port,) = free_ports(1)
    kubeconfig = run_as_service_account(cluster, "rayqueue-webhook", REPO_ROOT / "manifests" / "webhook" / "rbac.yaml")
    proc = cluster.start_process(name, [
        sys.executable, "-m", "webhook", f"--kubeconfig={kubeconfig}",
        f"--listen=127.0.0.1:{port}", f"--tls-cert={certs / 'tls.crt'}", f"--tls-key={certs / 'tls.key'}",
        *extra_args,
    ])
    context = ssl.create_default_context(cadata=ca_pem.decode())

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"the webhook exited:\n{proc.tail(40)}")
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=context, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    wait_for(ready, 60.0, "the rayqueue webhook to be ready")
    configs = url_configurations(f"https://127.0.0.1:{port}", ca_pem)
    hook = Webhook(proc, port, ca_pem, tuple(configs))
    if register:
        cluster.apply(list(configs))
    return hook


def stop_webhook(cluster: LocalCluster, hook: Webhook) -> None:
    """Unregister first (failurePolicy is Fail), then stop the process."""
    for doc in hook.configurations:
        cluster.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found", check=False)
    cluster.stop_process(hook.process.name)


SCHEDULER_CONFIG = REPO_ROOT / "manifests" / "scheduler" / "config-v1beta1.yaml"
SCHEDULER_NAME = "rayqueue-scheduler"


@dataclass(frozen=True)
class Extender:
    process: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_extender(cluster: LocalCluster, *, name: str = "rayqueue-extender", port: int | None = None,
                   extra_args: tuple[str, ...] = ("--gang-timeout=10", "--reservation-ttl=30", "--backoff-base=1",
                                                  "--backoff-max=4", "--resync=5"),
                   standby: bool = False) -> Extender:
    """Start `python -m extender` (leader-elected, Lease in namespace rayqueue) and wait until it is ready; with
    `standby`, until its cache is synced and it answers that it is not the leader (another replica is)."""
    cluster.apply(REPO_ROOT / "manifests" / "rbac" / "queue-visibility.yaml")
    kubeconfig = run_as_service_account(cluster, "rayqueue-extender", REPO_ROOT / "manifests" / "extender" / "rbac.yaml")
    if port is None:
        (port,) = free_ports(1)
    proc = cluster.start_process(name, [
        sys.executable, "-m", "extender", f"--kubeconfig={kubeconfig}", f"--listen=127.0.0.1:{port}",
        "--namespace=rayqueue", f"--identity={name}", *extra_args,
    ])

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"the extender exited:\n{proc.tail(40)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                return bool(resp.status == 200) and not standby
        except urllib.error.HTTPError as exc:
            return standby and b"not the leader" in exc.read()
        except OSError:
            return False

    wait_for(ready, 60.0, "the rayqueue extender to be " + ("a synced standby" if standby else
                                                         "ready (leader, cache synced)"))
    return Extender(proc, port)


def start_rayqueue_scheduler(cluster: LocalCluster, extender: Extender) -> ManagedProcess:
    """kube-scheduler as `rayqueue-scheduler` with the shipped v1beta1 configuration, pointed at `extender`."""
    cfg = yaml.safe_load(SCHEDULER_CONFIG.read_text())
    cfg["extenders"][0]["urlPrefix"] = extender.url
    cfg["leaderElection"] = {"leaderElect": False}
    return cluster.start_scheduler(cfg, name=SCHEDULER_NAME)


EXAMPLES = REPO_ROOT / "manifests" / "examples"


def seed_tree_documents() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The seed tree's Namespace documents and its ElasticQuotaTree (manifests/examples/elasticquotatree.yaml)."""
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "elasticquotatree.yaml").read_text()) if d]
    return [d for d in docs if d["kind"] == "Namespace"], next(d for d in docs if d["kind"] == "ElasticQuotaTree")


def install_seed_tree(cluster: LocalCluster, tenants: tuple[str, ...] = (), *, tree: bool = True) -> list[str]:
    """Create the guide tree's namespaces (waiting out a previous test's deletion of them), grant `tenants`
    edit there, and (by default) apply the tree. Returns the namespaces."""
    namespaces, tree_obj = seed_tree_documents()
    names = [d["metadata"]["name"] for d in namespaces]
    _wait_namespaces_gone(cluster, names)
    cluster.apply(namespaces)
    for ns in names:
        for tenant in tenants:
            cluster.grant(tenant, ns)
    if tree:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(tree_obj))
    return names


def remove_seed_tree(cluster: LocalCluster) -> None:
    """Delete the tree, its Queues and its namespaces, and wait until the namespaces are gone."""
    cluster.kubectl("delete", "elasticquotatree", "-n", "kube-system", "--all", "--ignore-not-found", check=False)
    cluster.kubectl("delete", "queue", "-n", "kube-queue", "--all", "--ignore-not-found", check=False)
    namespaces, _ = seed_tree_documents()
    names = [d["metadata"]["name"] for d in namespaces]
    for ns in names:
        cluster.delete_namespace(ns)
    _wait_namespaces_gone(cluster, names)


def _wait_namespaces_gone(cluster: LocalCluster, names: list[str]) -> None:
    def gone() -> bool:
        out = cluster.kubectl("get", "namespace", "-o", "name", check=False).stdout.split()
        return not {f"namespace/{n}" for n in names} & set(out)

    terminating = cluster.kubectl("get", "namespace", *names, "--ignore-not-found", "-o",
                                  "jsonpath={.items[*].status.phase}", check=False).stdout
    if "Terminating" in terminating or not terminating.strip():
        wait_for(gone, 120.0, f"namespaces {', '.join(names)} to be deleted")

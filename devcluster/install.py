"""The one-command install on a LocalCluster: `kubectl kustomize manifests/` applied server-side but for the
workloads (their processes run locally instead), with the webhook configurations pointed at a local webhook by
URL; and the webhook started with its self-managed certificate (no pre-made certificate anywhere)."""

from __future__ import annotations

import base64
import copy
import ssl
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from typing import Any

import yaml

from devcluster.cluster import REPO_ROOT, LocalCluster
from devcluster.procs import ManagedProcess
from devcluster.services import run_as_service_account
from devcluster.waiting import wait_for

MANIFESTS = REPO_ROOT / "manifests"
WORKLOADS = frozenset({"Deployment", "PodDisruptionBudget"})  # the pods cannot run here; processes do instead
CONFIG_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
SECRET = ("rayqueue", "rayqueue-webhook-tls")


def rendered(cluster: LocalCluster) -> list[dict[str, Any]]:
    """`kubectl kustomize manifests/` with the cluster's kubectl (kustomize v2.0.3)."""
    done = subprocess.run([str(cluster.bin_dir / "kubectl"), "kustomize", str(MANIFESTS)], capture_output=True,
                          text=True, timeout=60, check=True)
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_url(doc: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A webhook configuration whose Service references are `base_url` + path, as the local e2e setup does."""
    doc = copy.deepcopy(doc)
    for hook in doc.get("webhooks") or []:
        service = hook["clientConfig"].pop("service")
        hook["clientConfig"]["url"] = base_url + service.get("path", "/")
    return doc


def install(cluster: LocalCluster, webhook_url: str) -> list[dict[str, Any]]:
    """`kubectl apply --server-side` of the install but its workloads; returns what was applied."""
    docs = [by_url(d, webhook_url) if d["kind"] in CONFIG_KINDS else d
            for d in rendered(cluster) if d["kind"] not in WORKLOADS]
    apply_server_side(cluster, docs, force=True)  # adopt what earlier tests of the session created
    return docs


def summary(docs: list[dict[str, Any]]) -> str:
    """`3 CustomResourceDefinition, 2 Namespace, ...`: what an apply made, by kind (in order of first appearance)."""
    kinds: dict[str, int] = {}
    for d in docs:
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    return ", ".join(f"{n} {k}" for k, n in kinds.items())


def apply_server_side(cluster: LocalCluster, docs: list[dict[str, Any]], *, force: bool = False) -> None:
    done = cluster.kubectl("apply", "--server-side", *(["--force-conflicts"] if force else []), "-f", "-",
                           input=yaml.safe_dump_all(docs, sort_keys=False), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl apply --server-side failed:\n{done.stderr}")


def uninstall_configurations(cluster: LocalCluster) -> None:
    """Remove the webhook configurations and the Secret (failurePolicy Fail: nothing may stay registered)."""
    for kind in CONFIG_KINDS:
        cluster.kubectl("delete", kind.lower(), "rayqueue", "--ignore-not-found", check=False)
    cluster.kubectl("delete", "secret", SECRET[1], "-n", SECRET[0], "--ignore-not-found", check=False)


def secret_data(cluster: LocalCluster) -> dict[str, bytes] | None:
    done = cluster.kubectl("get", "secret", SECRET[1], "-n", SECRET[0], "-o", "json", check=False)
    if done.returncode != 0:
        return None
    return {k: base64.b64decode(v) for k, v in (yaml.safe_load(done.stdout).get("data") or {}).items()}


def ca_bundles(cluster: LocalCluster) -> list[bytes]:
    """Every webhook's caBundle, across both configurations (b"" where unset)."""
    out = []
    for kind in CONFIG_KINDS:
        doc = yaml.safe_load(cluster.kubectl("get", kind.lower(), "rayqueue", "-o", "json").stdout)
        out += [base64.b64decode(h["clientConfig"].get("caBundle", "")) for h in doc["webhooks"]]
    return out


@dataclass(frozen=True)
class SelfCertWebhook:
    process: ManagedProcess
    port: int

    def ready(self, ca_pem: bytes) -> bool:
        """/readyz answers 200 over TLS verified by `ca_pem` (a bundle)."""
        context = ssl.create_default_context(cadata=ca_pem.decode())
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/readyz", context=context, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def peer_certificate(self) -> bytes:
        """The serving certificate (PEM) this process presents now."""
        return ssl.get_server_certificate(("127.0.0.1", self.port)).encode()


def start_selfcert_webhook(cluster: LocalCluster, port: int, *, name: str = "rayqueue-webhook-selfcert",
                           extra_args: tuple[str, ...] = ()) -> SelfCertWebhook:
    """`python -m webhook` with no certificate files: it makes its own in the Secret (an IP SAN for 127.0.0.1, as it
    is called by URL here), as its ServiceAccount under the shipped RBAC (the Secret and configurations by
    `resourceNames`). Does not wait: see `wait_ready`."""
    kubeconfig = run_as_service_account(cluster, "rayqueue-webhook", MANIFESTS / "webhook" / "rbac.yaml")
    proc = cluster.start_process(name, [
        sys.executable, "-m", "webhook", f"--kubeconfig={kubeconfig}", f"--listen=127.0.0.1:{port}",
        "--cert-management=self", "--cert-ip=127.0.0.1", *extra_args,
    ])
    return SelfCertWebhook(proc, port)


def wait_ready(cluster: LocalCluster, hook: SelfCertWebhook, timeout: float = 60.0) -> None:
    """Until the process answers /readyz, verified by the CA bundle its Secret holds."""

    def ready() -> bool:
        if not hook.process.alive():
            raise RuntimeError(f"the webhook exited:\n{hook.process.tail(40)}")
        data = secret_data(cluster)
        return data is not None and "ca-bundle.crt" in data and hook.ready(data["ca-bundle.crt"])

    wait_for(ready, timeout, f"the self-certifying webhook {hook.process.name} to be ready")

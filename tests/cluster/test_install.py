"""The install against the real local control plane (Kubernetes 1.20.2, the newest that builds here):
`kubectl kustomize` of every install with the cluster's own kubectl (kustomize v2.0.3), each rendered object
checked by the apiserver with a server-side dry run (the webhook configurations included); the
air-gapped alternative with `rayqueue-certs`; and the shipped config-v1beta1.yaml loaded by the real kube-scheduler 1.20, which must read
every field we ship and call the extender's verbs."""

from __future__ import annotations

import base64
import copy
import json
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from devcluster.cluster import REPO_ROOT, LocalCluster
from devcluster.waiting import wait_for

MANIFESTS = REPO_ROOT / "manifests"
INSTALLS = {
    "manifests": MANIFESTS,
    "second-scheduler-1.24": MANIFESTS / "overlays" / "second-scheduler-1.24",
    "extend-default-scheduler": MANIFESTS / "overlays" / "extend-default-scheduler",
}
SCHEDULER_CONFIG = MANIFESTS / "scheduler" / "config-v1beta1.yaml"
Obj = dict[str, Any]


def render(cluster: LocalCluster, directory: Path) -> list[Obj]:
    """`kubectl kustomize DIR` with the test cluster's kubectl 1.20 (kustomize v2.0.3): no error, no warning."""
    done = subprocess.run([str(cluster.bin_dir / "kubectl"), "kustomize", str(directory)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _for_kube_1_20(doc: Obj) -> Obj:
    """policy/v1 PodDisruptionBudget is served from 1.21 (policy/v1beta1 is removed in 1.25, so we ship v1);
    its spec fields minAvailable/selector are the same in v1beta1, which is what the 1.20 apiserver checks."""
    if doc["kind"] == "PodDisruptionBudget" and doc["apiVersion"] == "policy/v1":
        return {**doc, "apiVersion": "policy/v1beta1"}
    return doc


def dry_run(cluster: LocalCluster, docs: list[Obj]) -> set[tuple[str, str]]:
    """`kubectl apply --dry-run=server` of `docs`: every object is validated and admitted by the apiserver
    but nothing is stored. Returns the (kind, name) pairs kubectl reports."""
    done = cluster.kubectl("apply", "--dry-run=server", "-o", "name", "-f", "-",
                           input=yaml.safe_dump_all([_for_kube_1_20(d) for d in docs], sort_keys=False), check=False)
    assert done.returncode == 0, done.stderr
    reported = set()
    for line in done.stdout.split():
        resource, _, name = line.partition("/")
        reported.add((resource.split(".", 1)[0], name))
    return reported


def _ensure_namespaces(cluster: LocalCluster, docs: list[Obj]) -> None:
    """Create the install's namespaces for real (the session cluster may already have them): a dry run of a
    namespaced object is refused when its namespace does not exist yet."""
    cluster.apply([d for d in docs if d["kind"] == "Namespace"])


@pytest.mark.parametrize("install", sorted(INSTALLS))
def test_install_renders_and_every_object_passes_a_server_dry_run(cluster: LocalCluster, install: str) -> None:
    docs = render(cluster, INSTALLS[install])
    kinds = [d["kind"] for d in docs]
    named = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {n for k, n in named if k == "CustomResourceDefinition"} == {
        "elasticquotatrees.scheduling.sigs.k8s.io", "queues.scheduling.x-k8s.io", "queueunits.scheduling.x-k8s.io"}
    assert {n for k, n in named if k == "Namespace"} == {"rayqueue", "kube-queue"}
    deployments = {n for k, n in named if k == "Deployment"}
    second_scheduler = install != "extend-default-scheduler"
    assert deployments == {"rayqueue-webhook", "rayqueue-extender"} | ({"rayqueue-scheduler"} if second_scheduler else set())
    # One command: the webhook configurations are in, their caBundle left to the webhook (or cert-manager).
    assert {n for k, n in named if k in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")} == {"rayqueue"}
    assert kinds.count("MutatingWebhookConfiguration") == kinds.count("ValidatingWebhookConfiguration") == 1
    # A working order for one `kubectl apply`: namespaces, then CRDs, before anything that lives in them.
    first_namespaced = min(i for i, d in enumerate(docs) if "namespace" in d["metadata"])
    assert max(i for i, k in enumerate(kinds) if k in ("Namespace", "CustomResourceDefinition")) < first_namespaced

    _ensure_namespaces(cluster, docs)
    reported = dry_run(cluster, docs)
    assert reported == {(d["kind"].lower(), d["metadata"]["name"]) for d in docs}

    config_maps = {d["metadata"]["name"].rsplit("-", 1)[0]: d for d in docs if d["kind"] == "ConfigMap"}
    scheduler_name = config_maps["rayqueue-webhook-settings"]["data"]["schedulerName"]
    assert scheduler_name == ("rayqueue-scheduler" if second_scheduler else "default-scheduler")
    if second_scheduler:
        data = config_maps["rayqueue-scheduler-config"]["data"]
        chosen = yaml.safe_load(data[data["configFile"]])
        assert chosen["apiVersion"] == ("kubescheduler.config.k8s.io/v1beta3" if install == "second-scheduler-1.24"
                                        else "kubescheduler.config.k8s.io/v1")
        assert [p["schedulerName"] for p in chosen["profiles"]] == [scheduler_name]


def test_air_gapped_install_with_rayqueue_certs_applies(cluster: LocalCluster, tmp_path: Path) -> None:
    """The README's air-gapped alternative (a CA of your own, certManagement=files), exactly: rayqueue-certs init, the Secret, inject the CA into a copy of
    webhooks.yaml; then the apiserver accepts the Secret and both configurations (dry run: registering them
    for real would send this cluster's pods to a webhook that is not running)."""
    docs = render(cluster, MANIFESTS)
    _ensure_namespaces(cluster, docs)
    webhooks = tmp_path / "webhooks.yaml"
    shutil.copy(MANIFESTS / "webhook" / "webhooks.yaml", webhooks)
    certs = tmp_path / "certs.d"

    def rayqueue_certs(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "certs", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    rayqueue_certs("init", "--service", "rayqueue-webhook", "--namespace", "rayqueue", "--out", str(certs))
    secret = yaml.safe_load(rayqueue_certs("secret", "--dir", str(certs), "--name", "rayqueue-webhook-tls",
                                           "--namespace", "rayqueue"))
    rayqueue_certs("inject", "--ca", str(certs / "ca-bundle.crt"), str(webhooks))
    configurations = [d for d in yaml.safe_load_all(webhooks.read_text()) if d]

    webhook_deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "rayqueue-webhook")
    volumes = webhook_deployment["spec"]["template"]["spec"]["volumes"]
    assert {v["secret"]["secretName"] for v in volumes if "secret" in v} == {secret["metadata"]["name"]}
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "rayqueue-webhook")
    ca_bundle = (certs / "ca-bundle.crt").read_bytes()
    hooks = [h for c in configurations for h in c["webhooks"]]
    # RayJobs, RayClusters, Pods, QueueUnits, Namespaces mutated; RayJobs, RayClusters, Pods, Namespaces, the tree validated
    assert len(hooks) == 10
    for hook in hooks:
        ref = hook["clientConfig"]["service"]
        assert (ref["name"], ref["namespace"], ref["port"]) == (
            service["metadata"]["name"], service["metadata"]["namespace"], service["spec"]["ports"][0]["port"])
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == ca_bundle

    reported = dry_run(cluster, [secret, *configurations])
    assert reported == {("secret", "rayqueue-webhook-tls"), ("mutatingwebhookconfiguration", "rayqueue"),
                        ("validatingwebhookconfiguration", "rayqueue")}


# --------------------------------------------------------------------------- kube-scheduler 1.20 reads our config


class StubExtender:
    """An HTTP extender on 127.0.0.1 that records every call, for testing kube-scheduler's reading of our
    configuration (not our extender). It answers as the real one does with nodeCacheCapable: NodeNames (all
    the nodes it was sent), FailedNodes and FailedAndUnresolvableNodes empty; prioritize scores every node;
    bind creates the Binding through the API as the real extender must (the scheduler does not bind when an
    extender has bindVerb), and refuses pods outside `namespace` with Error, as an unknown pod would be."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.calls: list[tuple[str, Obj]] = []
        self._lock = threading.Lock()
        core = k8s.CoreV1Api(cluster.api_client)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub._lock:
                    stub.calls.append((self.path, body))
                verb = self.path.rsplit("/", 1)[-1]
                if verb == "filter":
                    reply: Any = {"NodeNames": body.get("NodeNames") or [], "FailedNodes": {},
                                  "FailedAndUnresolvableNodes": {}, "Error": ""}
                elif verb == "prioritize":
                    reply = [{"Host": n, "Score": 1} for n in body.get("NodeNames") or []]
                elif verb == "bind":
                    if body["PodNamespace"] != namespace:
                        reply = {"Error": f"pod {body['PodNamespace']}/{body['PodName']} is not this test's"}
                    else:
                        core.create_namespaced_binding(body["PodNamespace"], {
                            "apiVersion": "v1", "kind": "Binding",
                            "metadata": {"name": body["PodName"], "namespace": body["PodNamespace"], "uid": body["PodUID"]},
                            "target": {"apiVersion": "v1", "kind": "Node", "name": body["Node"]},
                        }, _preload_content=False)
                        reply = {"Error": ""}
                else:
                    reply = {"Error": f"unexpected verb {verb}"}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="stub-extender", daemon=True)
        self._thread.start()

    def paths(self) -> list[str]:
        with self._lock:
            return [p for p, _ in self.calls]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()


@pytest.fixture
def stub_extender(cluster: LocalCluster, namespace: str) -> Iterator[StubExtender]:
    stub = StubExtender(cluster, namespace)
    yield stub
    stub.stop()


def _leaves(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in _leaves(value, f"{prefix}.{key}").items()}
    if isinstance(obj, list):
        return {k: v for i, value in enumerate(obj) for k, v in _leaves(value, f"{prefix}[{i}]").items()}
    return {prefix: obj}


def _effective_config(log: str) -> Obj:
    """The configuration kube-scheduler logs at --v=2 after decoding and defaulting ("Using component config")."""
    _, _, rest = log.partition("Using component config:\n")
    assert rest, "kube-scheduler logged no component config"
    lines = []
    for line in rest.splitlines():
        if line[:1] in "IWEF" and line[1:5].isdigit():
            break
        lines.append(line)
    return dict(yaml.safe_load("\n".join(lines)))


def test_shipped_v1beta1_config_runs_in_kube_scheduler_and_calls_the_extender(
    cluster: LocalCluster, namespace: str, stub_extender: StubExtender
) -> None:
    """manifests/scheduler/config-v1beta1.yaml, with only the extender's address pointed at a stub on
    127.0.0.1, starts the real kube-scheduler 1.20, which takes its Lease as configured and schedules a
    pod through filter, prioritize and bind."""
    shipped = yaml.safe_load(SCHEDULER_CONFIG.read_text())
    config = copy.deepcopy(shipped)
    url = urlsplit(shipped["extenders"][0]["urlPrefix"])
    config["extenders"][0]["urlPrefix"] = urlunsplit(url._replace(netloc=f"127.0.0.1:{stub_extender.port}"))
    changed = {k for k, v in _leaves(config).items() if _leaves(shipped).get(k) != v}
    assert changed == {".extenders[0].urlPrefix"}

    # The shipped leaderElection is on, in namespace rayqueue, Lease rayqueue-scheduler: the harness's
    # kube-scheduler user gets the shipped Role for it (the Deployment's ServiceAccount has it in production).
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rayqueue"}}])
    role = next(d for d in yaml.safe_load_all((MANIFESTS / "scheduler" / "deployment.yaml").read_text())
                if d and d["kind"] == "Role" and d["metadata"]["name"] == "rayqueue-scheduler-lease")
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "test-install-kube-scheduler-lease", "namespace": "rayqueue"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:kube-scheduler"}]}
    cluster.apply([role, binding])
    nodes = [f"install-{secrets.token_hex(3)}-{i}" for i in range(2)]  # one feasible node skips prioritize
    name = "shipped-v1beta1"
    try:
        for node in nodes:
            cluster.create_node(node, cpu="4", memory="8Gi")
        proc = cluster.start_scheduler(config, name=name)
        written = yaml.safe_load((cluster.workdir / "schedulers" / f"{name}.yaml").read_text())
        harness = {".clientConnection.kubeconfig", ".healthzBindAddress", ".metricsBindAddress"}
        assert {k for k, v in _leaves(written).items() if _leaves(config).get(k) != v} == harness

        effective = _effective_config(proc.tail(400))
        assert effective["percentageOfNodesToScore"] == 100
        assert [p["schedulerName"] for p in effective["profiles"]] == ["rayqueue-scheduler"]
        (ext,) = effective["extenders"]
        for key, value in config["extenders"][0].items():  # false booleans are omitted when encoded
            assert ext.get(key, False if value is False else None) == value, key
        for key in ("leaderElect", "resourceNamespace", "resourceName"):
            assert effective["leaderElection"][key] == shipped["leaderElection"][key]

        coordination = k8s.CoordinationV1Api(cluster.api_client)

        def leader() -> bool:
            lease = coordination.read_namespaced_lease("rayqueue-scheduler", "rayqueue")
            return bool(lease.spec.holder_identity)

        wait_for(leader, 60.0, "kube-scheduler to take the Lease rayqueue/rayqueue-scheduler", ignore=(ApiException,))

        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": namespace},
               "spec": {"schedulerName": "rayqueue-scheduler", "nodeSelector": {"kubernetes.io/os": "linux"},
                        "containers": [{"name": "c", "image": "busybox",
                                        "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}}}]}}
        cluster.create(pod)
        core = k8s.CoreV1Api(cluster.api_client)
        wait_for(lambda: bool(core.read_namespaced_pod("probe", namespace).spec.node_name), 60.0,
                 "the probe pod to be bound through the extender")
        bound_to = core.read_namespaced_pod("probe", namespace).spec.node_name

        ours = [(p, b) for p, b in stub_extender.calls
                if (b.get("Pod") or {}).get("metadata", {}).get("name") == "probe" or b.get("PodName") == "probe"]
        prefix = url.path.rstrip("/")
        assert [p for p, _ in ours] == [f"{prefix}/filter", f"{prefix}/prioritize", f"{prefix}/bind"]
        filter_args = ours[0][1]
        assert filter_args["Nodes"] is None, "nodeCacheCapable: the scheduler sends node names only"
        assert set(nodes) <= set(filter_args["NodeNames"])
        assert ours[2][1]["Node"] == bound_to and bound_to in filter_args["NodeNames"]
    finally:
        cluster.stop_scheduler(name)
        cluster.kubectl("delete", "lease", "rayqueue-scheduler", "-n", "rayqueue", "--ignore-not-found", check=False)
        cluster.kubectl("delete", "rolebinding", binding["metadata"]["name"], "-n", "rayqueue", "--ignore-not-found",
                        check=False)
        cluster.kubectl("delete", "pod", "probe", "-n", namespace, "--ignore-not-found", "--wait=false", check=False)
        for node in nodes:
            cluster.delete_node(node)


def test_kube_scheduler_refuses_an_unknown_field_in_the_shipped_config(cluster: LocalCluster, tmp_path: Path) -> None:
    """kube-scheduler decodes strictly: the shipped file starting it is a check of every field name, not a
    check that unknown names are ignored. A one-letter typo stops it at once, naming the field."""
    config = yaml.safe_load(SCHEDULER_CONFIG.read_text())
    config["extenders"][0]["filterVerbs"] = config["extenders"][0].pop("filterVerb")
    config["clientConnection"] = {"kubeconfig": str(cluster.kubeconfigs["kube-scheduler"])}
    config["healthzBindAddress"] = config["metricsBindAddress"] = "127.0.0.1:0"
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([str(cluster.bin_dir / "kube-scheduler"), f"--config={path}", "--secure-port=0",
                           "--bind-address=127.0.0.1"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "filterVerbs" in done.stderr

"""LocalCluster: a real etcd + kube-apiserver + kube-controller-manager (+ kube-scheduler) on 127.0.0.1 for tests."""

from __future__ import annotations

import atexit
import base64
import copy
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from common import keys
from devcluster import procs
from devcluster.pki import CertificateAuthority, signing_key_pair
from devcluster.procs import ManagedProcess
from devcluster.waiting import WaitTimeout, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = REPO_ROOT / "manifests"
KUBE_VERSION = "1.20.2"
ETCD = "/usr/bin/etcd"

ADMIN = "admin"  # the admin identity's name in this harness (user `rayqueue-admin`, group system:masters)
TENANT = "alice"  # the default tenant: group `tenants`, `edit` only in the namespaces granted to her
TENANT_GROUP = "tenants"
STANDIN_USER = "kuberay-standin"

_SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
_SERVICE_CIDR = "10.96.0.0/16"
_BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# The not-ready taint that TaintNodesByCondition puts on every new Node; no kubelet will ever clear it.
_NOT_READY_TAINT = "node.kubernetes.io/not-ready"

Manifest = str | Path | Mapping[str, Any] | Sequence[Mapping[str, Any]]


def _api(cls: Any, api_client: Any) -> Any:
    """A Kubernetes API group object, typed Any: the harness speaks plain dicts to the API."""
    return cls(api_client)


def _new_client(config_file: str) -> Any:
    """A `kubernetes.client.ApiClient` from a kubeconfig file."""
    new: Any = kube_config.new_client_from_config
    return new(config_file=config_file)


def default_bin_dir() -> Path:
    """Where devcluster/build-kube.sh caches the binaries (honours RAYQUEUE_CACHE and XDG_CACHE_HOME)."""
    cache = os.environ.get("RAYQUEUE_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rayqueue"
    )
    return Path(cache) / f"kube-v{KUBE_VERSION}" / "bin"


def ensure_binaries() -> Path:
    """Build (once) or reuse the cached kube binaries by running devcluster/build-kube.sh; return their dir."""
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "devcluster" / "build-kube.sh")],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"devcluster/build-kube.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held open together so they differ, then released)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def load_manifests(source: Manifest, namespace: str | None = None) -> list[dict[str, Any]]:
    """YAML text, a file, one object or a list of objects -> list of object dicts (empty docs dropped).

    With `namespace`, every object that names a namespace is moved into it (Namespace objects are kept).
    """
    if isinstance(source, Path):
        docs: list[Any] = list(yaml.safe_load_all(source.read_text()))
    elif isinstance(source, str):
        docs = list(yaml.safe_load_all(source))
    elif isinstance(source, Mapping):
        docs = [source]
    else:
        docs = list(source)
    objects = [copy.deepcopy(dict(d)) for d in docs if d]
    if namespace is not None:
        for obj in objects:
            meta = obj.setdefault("metadata", {})
            if obj.get("kind") != "Namespace" and "namespace" in meta:
                meta["namespace"] = namespace
    return objects


def _sources(manifest: Manifest | Sequence[Path]) -> list[Manifest]:
    """A list of files is several sources; anything else is one."""
    if isinstance(manifest, list | tuple) and manifest and all(isinstance(m, Path) for m in manifest):
        return [m for m in manifest if isinstance(m, Path)]
    return [manifest]  # type: ignore[list-item]


def _kubeconfig(server: str, ca_pem: bytes, user: str, cert_pem: bytes, key_pem: bytes) -> str:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "devcluster", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
            "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
            "contexts": [{"name": user, "context": {"cluster": "devcluster", "user": user}}],
            "current-context": user,
        },
        sort_keys=False,
    )


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket of a cluster process, as `ss -ltnp` reports it."""

    address: str
    port: int
    pid: int
    process: str


class LocalCluster:
    """A real Kubernetes control plane on loopback ports in a temporary directory.

    `with LocalCluster() as c:` starts etcd, kube-apiserver (RBAC + Node authorization, client-cert
    auth, service-account tokens) and kube-controller-manager (without the nodelifecycle controller:
    our fake nodes have no kubelet), installs the CRDs in manifests/crds (and the test-only ones) and
    the tenant RBAC, and writes kubeconfigs for `admin`, the tenant `alice` and the KubeRay stand-in.
    Schedulers and other helpers are started on demand; every process is stopped by PID on exit.
    """

    def __init__(
        self,
        bin_dir: Path | None = None,
        workdir: Path | None = None,
        *,
        etcd: str = ETCD,
        install_crds: bool = True,
        detached: bool = False,
        start_timeout: float = 120.0,
        keep_workdir: bool = False,
    ) -> None:
        self.bin_dir = bin_dir or default_bin_dir()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="rayqueue-devcluster-"))
        self.etcd_binary = etcd
        self.install_crds = install_crds
        self.detached = detached
        self.start_timeout = start_timeout
        self.keep_workdir = keep_workdir  # a temporary workdir is deleted on stop unless this is set
        self.processes: dict[str, ManagedProcess] = {}
        self.started_pids: set[int] = set()  # every PID ever started, for "nothing left running" checks
        self.kubeconfigs: dict[str, Path] = {}
        self.startup_seconds: float | None = None
        self.server = ""
        self.etcd_url = ""
        self._ca: CertificateAuthority | None = None
        self._api_client: Any = None
        self._lock = threading.Lock()
        self._atexit_registered = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            print(self.log_tails(), file=sys.stderr)
        self.stop()

    @property
    def log_dir(self) -> Path:
        """Every process's log lives here (`<name>.log`)."""
        return self.workdir / "logs"

    def start(self) -> LocalCluster:
        """Start the control plane and wait until it serves; on any failure stop what started and re-raise."""
        began = time.monotonic()
        for binary in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
            if not (self.bin_dir / binary).is_file():
                raise FileNotFoundError(f"{self.bin_dir / binary} is missing: run devcluster/build-kube.sh")
        if not self.detached and not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._write_pki()
            etcd_port, peer_port, api_port = free_ports(3)
            self.server = f"https://127.0.0.1:{api_port}"
            self._write_kubeconfigs()
            self._start_etcd(etcd_port, peer_port)
            self._start_apiserver(etcd_port, api_port)
            self._start_controller_manager()
            self.label_namespaces(_BUILTIN_NAMESPACES)
            if self.install_crds:
                self.install_dev_manifests()
            self._wait_service_account("default")
        except BaseException:
            print(self.log_tails(), file=sys.stderr)
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        self.save_state()
        return self

    def close_client(self) -> None:
        """Close the admin ApiClient (a new one is made on next use)."""
        if self._api_client is not None:
            self._api_client.close()
            self._api_client = None

    def stop(self) -> None:
        """Stop every process, newest first but the apiserver before etcd, each waited for; idempotent."""
        self.close_client()
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        order = [n for n in reversed(self.processes) if n not in ("kube-apiserver", "etcd")]
        order += [n for n in ("kube-apiserver", "etcd") if n in self.processes]
        errors: list[str] = []
        for name in order:
            try:
                procs.stop(self.processes[name])
            except RuntimeError as exc:
                errors.append(str(exc))
        self.processes.clear()
        if self._own_workdir and not self.detached and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise RuntimeError("; ".join(errors))

    def save_state(self) -> Path:
        """Write state.json (processes, server, kubeconfigs) so `python -m devcluster down` can stop them."""
        path = self.workdir / "state.json"
        path.write_text(
            json.dumps(
                {
                    "server": self.server,
                    "processes": [p.to_state() for p in self.processes.values()],
                    "kubeconfigs": {k: str(v) for k, v in self.kubeconfigs.items()},
                },
                indent=2,
            )
        )
        return path

    # ------------------------------------------------------------------ processes
    def start_process(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        """Start a helper process (logged to logs/<name>.log, stopped with the cluster); names are unique."""
        with self._lock:
            if name in self.processes and self.processes[name].alive():
                raise RuntimeError(f"a process named {name!r} is already running (pid {self.processes[name].pid})")
            proc = procs.start(
                name, argv, self.log_dir / f"{name}.log", env=env, cwd=cwd or REPO_ROOT, detached=self.detached
            )
            self.processes[name] = proc
            self.started_pids.add(proc.pid)
        if self.detached:
            self.save_state()
        return proc

    def stop_process(self, name: str) -> None:
        """Stop the named helper process (SIGTERM, wait, SIGKILL) and forget it."""
        proc = self.processes.pop(name, None)
        if proc is not None:
            procs.stop(proc)
        if self.detached:
            self.save_state()

    def _require_alive(self, name: str) -> None:
        proc = self.processes[name]
        if not proc.alive():
            raise RuntimeError(f"{name} (pid {proc.pid}) exited during start-up; log tail:\n{proc.tail(60)}")

    def pids(self) -> list[int]:
        """PIDs of the processes currently managed."""
        return sorted(p.pid for p in self.processes.values())

    def log_tails(self, lines: int = 30) -> str:
        """The last lines of every process's log, for failure reports."""
        parts = [f"----- {p.name} (pid {p.pid}) {p.log} -----\n{p.tail(lines)}" for p in self.processes.values()]
        return "\n".join(parts) if parts else f"(no processes; logs in {self.log_dir})"

    def listeners(self) -> list[Listener]:
        """Every listening TCP socket that belongs to one of the cluster's processes (from `ss -ltnpH`)."""
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
        mine = {p.pid for p in self.processes.values()}
        found: list[Listener] = []
        for line in out.splitlines():
            fields = line.split()
            if len(fields) < 5:
                continue
            local = fields[3]
            address, _, port = local.rpartition(":")
            for proc_name, pid in re.findall(r'\("([^"]+)",pid=(\d+)', line):
                if int(pid) in mine:
                    found.append(Listener(address.strip("[]"), int(port), int(pid), proc_name))
        return sorted(found, key=lambda li: (li.pid, li.port))

    # ------------------------------------------------------------------ PKI and kubeconfigs
    @property
    def pki_dir(self) -> Path:
        """Certificates and keys."""
        return self.workdir / "pki"

    def _write_pki(self) -> None:
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._ca = CertificateAuthority()
        (self.pki_dir / "ca.crt").write_bytes(self._ca.cert_pem)
        self._ca.serving(
            "kube-apiserver",
            ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local"],
            ["127.0.0.1", "10.96.0.1"],
        ).write(self.pki_dir, "apiserver")
        private, public = signing_key_pair()
        (self.pki_dir / "sa.key").touch(mode=0o600)
        (self.pki_dir / "sa.key").write_bytes(private)
        (self.pki_dir / "sa.pub").write_bytes(public)

    def _write_kubeconfigs(self) -> None:
        self.add_user(ADMIN, ["system:masters"], common_name="rayqueue-admin")
        self.add_user("kube-controller-manager", [], common_name="system:kube-controller-manager")
        self.add_user("kube-scheduler", [], common_name="system:kube-scheduler")
        self.add_user(TENANT, [TENANT_GROUP])
        self.add_user(STANDIN_USER, [])

    def add_user(self, name: str, groups: Sequence[str] = (), *, common_name: str | None = None) -> Path:
        """Issue a client certificate (CN = `common_name` or `name`, O = groups) and write its kubeconfig."""
        assert self._ca is not None, "add_user needs a started cluster"
        pair = self._ca.client(common_name or name, groups)
        path = self.workdir / "kubeconfigs" / f"{name}.kubeconfig"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(_kubeconfig(self.server, self._ca.cert_pem, common_name or name, pair.cert_pem, pair.key_pem))
        self.kubeconfigs[name] = path
        return path

    @property
    def admin_kubeconfig(self) -> Path:
        """The admin's kubeconfig (group system:masters)."""
        return self.kubeconfigs[ADMIN]

    def kubeconfig(self, user: str | None = None) -> Path:
        """The kubeconfig of `user` (admin when None)."""
        return self.kubeconfigs[user or ADMIN]

    @property
    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` for the admin (created once, closed with the cluster)."""
        if self._api_client is None:

            self._api_client = _new_client(config_file=str(self.admin_kubeconfig))
        return self._api_client

    def client_for(self, user: str) -> Any:
        """A new `kubernetes.client.ApiClient` for `user`; the caller closes it."""

        return _new_client(config_file=str(self.kubeconfig(user)))

    # ------------------------------------------------------------------ etcd, apiserver, controller-manager
    def _start_etcd(self, client_port: int, peer_port: int) -> None:
        peer = f"http://127.0.0.1:{peer_port}"
        client = f"http://127.0.0.1:{client_port}"
        self.start_process(
            "etcd",
            [
                self.etcd_binary, "--name", "devcluster", "--data-dir", str(self.workdir / "etcd"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"devcluster={peer}", "--initial-cluster-state", "new",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
            ],
        )

        def healthy() -> bool:
            self._require_alive("etcd")
            with urllib.request.urlopen(f"{client}/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")

        wait_for(healthy, self.start_timeout, "etcd /health", ignore=(OSError,))
        self.etcd_url = client

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision, as the apiserver does every 5 minutes: watches
        from an older resourceVersion then end in 410 Gone. Returns the compacted revision."""

        def post(path: str, body: Mapping[str, Any]) -> Any:
            request = urllib.request.Request(f"{self.etcd_url}{path}", data=json.dumps(body).encode(), method="POST")
            with urllib.request.urlopen(request, timeout=10) as resp:
                return json.loads(resp.read())

        revision = int(post("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
        post("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def restart_apiserver(self, down: float = 0.0) -> float:
        """Stop kube-apiserver (SIGTERM, waited for) and start it again on the same port with the same flags,
        etcd kept: every client's connections and watches are cut, and for a few seconds after it serves RBAC
        may answer 403, as a freshly started apiserver does. `down` seconds pass between stop and start.
        Returns the seconds from stop until /readyz answers again."""
        began = time.monotonic()
        self.close_client()
        proc = self.processes["kube-apiserver"]
        argv = list(proc.argv)
        procs.stop(proc)
        del self.processes["kube-apiserver"]
        if down:
            time.sleep(down)
        self.start_process("kube-apiserver", argv)
        self._wait_apiserver_ready()
        return time.monotonic() - began

    def _start_apiserver(self, etcd_port: int, port: int) -> None:
        pki = self.pki_dir
        self.start_process(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={port}", "--insecure-port=0",
                f"--cert-dir={self.workdir / 'apiserver'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={_SA_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={_SERVICE_CIDR}",
                "--endpoint-reconciler-type=none",  # a loopback endpoint for `kubernetes` is invalid anyway
                # PodTemplates (unused by rayqueue) are served from etcd, not the watch cache, so that a test
                # can expire a watch for real: compact etcd (compact_etcd), watch from an old version, get 410.
                "--watch-cache-sizes=podtemplates#0",
                "--allow-privileged=true", "--profiling=false", "--event-ttl=1h", "--v=1",
            ],
        )
        self._wait_apiserver_ready()

    def _wait_apiserver_ready(self) -> None:
        ca = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))

        def ready() -> bool:
            self._require_alive("kube-apiserver")
            with urllib.request.urlopen(f"{self.server}/readyz", timeout=3, context=ca) as resp:
                return bool(resp.status == 200)

        wait_for(ready, self.start_timeout, "kube-apiserver /readyz", interval=0.3,
                 ignore=(OSError, urllib.error.URLError))

    def _start_controller_manager(self) -> None:
        pki = self.pki_dir
        self.start_process(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfigs['kube-controller-manager']}",
                "--port=0", "--secure-port=0",  # no listener at all (1.20 defaults are 0.0.0.0:10252/10257)
                # nodelifecycle would taint our kubelet-less nodes unreachable and evict their pods
                "--controllers=*,-nodelifecycle,-cloud-node-lifecycle",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--leader-elect=false", "--v=1",
            ],
        )

    def _wait_service_account(self, namespace: str, timeout: float | None = None) -> None:
        """Pods can be created once the namespace's `default` ServiceAccount has its token (1.20 admission)."""

        core = _api(k8s.CoreV1Api, self.api_client)

        def has_token() -> bool:
            self._require_alive("kube-controller-manager")
            sa = core.read_namespaced_service_account("default", namespace)
            return bool(sa.secrets)

        wait_for(has_token, timeout or self.start_timeout, f"ServiceAccount {namespace}/default and its token",
                 interval=0.2, ignore=(ApiException,))

    # ------------------------------------------------------------------ manifests
    def install_dev_manifests(self) -> None:
        """Install manifests/crds (with test-only), the tenant aggregation roles and the stand-in's RBAC; wait."""
        crd_files = sorted((MANIFESTS / "crds").rglob("*.yaml"))
        self.apply(crd_files)
        self.apply(MANIFESTS / "rbac" / "tenant-aggregation.yaml")
        self.apply(REPO_ROOT / "devcluster" / "standin-rbac.yaml")
        names = [
            obj["metadata"]["name"]
            for f in crd_files
            for obj in load_manifests(f)
            if obj.get("kind") == "CustomResourceDefinition"
        ]
        self.wait_crds_established(names)
        # ClusterRole aggregation is done by the controller-manager: wait until `edit` carries our rules.
        self.wait_role_aggregated("edit", keys.RAYJOB_PLURAL)
        self.wait_role_aggregated("view", keys.QUEUE_UNIT_PLURAL)

    def wait_crds_established(self, names: Iterable[str], timeout: float = 60.0) -> None:
        """Wait until each named CRD reports Established=True."""

        ext = _api(k8s.ApiextensionsV1Api, self.api_client)
        for name in names:
            def established(name: str = name) -> bool:
                crd = ext.read_custom_resource_definition(name)
                return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

            wait_for(established, timeout, f"CRD {name} Established")

    def wait_role_aggregated(self, role: str, resource: str, timeout: float = 60.0) -> None:
        """Wait until ClusterRole `role` lists `resource` (aggregation is asynchronous)."""

        rbac = _api(k8s.RbacAuthorizationV1Api, self.api_client)

        def aggregated() -> bool:
            rules = rbac.read_cluster_role(role).rules or []
            return any(resource in (r.resources or []) for r in rules)

        wait_for(aggregated, timeout, f"ClusterRole {role} to aggregate {resource}")

    # ------------------------------------------------------------------ kubectl
    def kubectl(
        self,
        *args: str,
        as_user: str | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl with the admin's (or `as_user`'s own) kubeconfig; raise with stderr if `check` fails."""
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig(as_user)}", *args]
        done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
        return done

    def _kubectl_objects(
        self, verb: str, manifest: Manifest | Sequence[Path], namespace: str | None, as_user: str | None
    ) -> subprocess.CompletedProcess[str]:
        objects = [obj for src in _sources(manifest) for obj in load_manifests(src, namespace)]
        if not objects:
            raise ValueError("no objects to send to kubectl")
        text = yaml.safe_dump_all(objects, sort_keys=False)
        args = [verb, "-f", "-", "-o", "name"]
        if namespace is not None:
            args += ["-n", namespace]
        done = self.kubectl(*args, as_user=as_user, input=text)
        created_ns = [o["metadata"]["name"] for o in objects if o.get("kind") == "Namespace"]
        if created_ns:
            self.label_namespaces(created_ns)
        return done

    def apply(
        self, manifest: Manifest | Sequence[Path], namespace: str | None = None, *, as_user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl apply` YAML text / files / dicts (moved into `namespace` if given); stdout lists `kind/name`."""
        return self._kubectl_objects("apply", manifest, namespace, as_user)

    def create(
        self, manifest: Manifest | Sequence[Path], namespace: str | None = None, *, as_user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl create` (needed for generateName objects); stdout lists the created `kind/name`s."""
        return self._kubectl_objects("create", manifest, namespace, as_user)

    # ------------------------------------------------------------------ namespaces, tenants, nodes
    def label_namespaces(self, names: Iterable[str]) -> None:
        """Add `kubernetes.io/metadata.name=<name>`, which kube >= 1.21 sets itself and 1.20 does not."""

        core = _api(k8s.CoreV1Api, self.api_client)
        for name in names:
            core.patch_namespace(name, {"metadata": {"labels": {keys.NAMESPACE_NAME_LABEL: name}}})

    def create_namespace(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        tenants: Sequence[str] = (),
        wait_ready: bool = True,
        quota: bool = True,
    ) -> str:
        """Create a namespace labelled as on kube >= 1.21, grant `edit` in it to `tenants`, and (by default)
        wait for its default ServiceAccount token so pods can be created at once.

        With `quota` (the default) it also carries `rayqueue.io/quota-namespace=true`, which a tree may bind only
        once it is there (docs/security.md, rule N1) and which the pod webhooks select on: a test that binds the
        namespace in a tree of its own needs nothing more. `quota=False` makes a namespace rayqueue never sees."""

        core = _api(k8s.CoreV1Api, self.api_client)
        quota_label = {keys.QUOTA_NAMESPACE_LABEL: keys.QUOTA_NAMESPACE_VALUE} if quota else {}
        all_labels = {**quota_label, **(labels or {}), keys.NAMESPACE_NAME_LABEL: name}
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": all_labels}})
        for user in tenants:
            self.grant(user, name)
        if wait_ready:
            self._wait_service_account(name, timeout=60.0)
        return name

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace (background; the namespace controller removes its content)."""

        try:
            _api(k8s.CoreV1Api, self.api_client).delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def grant(self, user: str, namespace: str, cluster_role: str = "edit") -> None:
        """Bind `user` to a built-in ClusterRole in one namespace only (a RoleBinding)."""

        _api(k8s.RbacAuthorizationV1Api, self.api_client).create_namespaced_role_binding(
            namespace,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": f"{user}-{cluster_role}", "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            },
        )

    def create_node(
        self,
        name: str,
        cpu: str = "8",
        memory: str = "32Gi",
        pods: int = 110,
        labels: Mapping[str, str] | None = None,
        *,
        extra_resources: Mapping[str, str] | None = None,
    ) -> None:
        """Create a Ready, schedulable fake Node: capacity/allocatable and a Ready condition are written
        through the status subresource, and the not-ready taint added at creation is removed."""

        core = _api(k8s.CoreV1Api, self.api_client)
        node_labels = {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            **(labels or {}),
        }
        core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": node_labels}})
        resources = {"cpu": cpu, "memory": memory, "pods": str(pods), **(extra_resources or {})}
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        condition = {
            "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake node (devcluster)",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }
        core.patch_node_status(
            name,
            {"status": {"capacity": resources, "allocatable": resources, "conditions": [condition],
                        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                      {"type": "Hostname", "address": name}]}},
        )

        def untainted() -> bool:
            node = core.read_node(name)
            taints = node.spec.taints or []
            if not any(t.key == _NOT_READY_TAINT for t in taints):
                return True
            keep = [{"key": t.key, "value": t.value, "effect": t.effect} for t in taints if t.key != _NOT_READY_TAINT]
            core.patch_node(
                name,
                {"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": keep or None}},
                _content_type="application/merge-patch+json",
            )
            return False


        wait_for(untainted, 30.0, f"node {name} without the {_NOT_READY_TAINT} taint", ignore=(ApiException,))

    def delete_node(self, name: str) -> None:
        """Delete a fake Node (404 is fine)."""

        try:
            _api(k8s.CoreV1Api, self.api_client).delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # ------------------------------------------------------------------ schedulers and the stand-in
    def start_scheduler(
        self, config: str | Mapping[str, Any] | None = None, name: str = keys.DEFAULT_SCHEDULER
    ) -> ManagedProcess:
        """Start a real kube-scheduler (config v1beta1: YAML text or dict; default profile when None),
        process name `name`; healthz/metrics forced onto 127.0.0.1:<free port>; waits for /healthz."""
        cfg: dict[str, Any] = (
            dict(yaml.safe_load(config)) if isinstance(config, str) else copy.deepcopy(dict(config or {}))
        )
        cfg.setdefault("apiVersion", "kubescheduler.config.k8s.io/v1beta1")
        cfg.setdefault("kind", "KubeSchedulerConfiguration")
        cfg.setdefault("clientConnection", {})["kubeconfig"] = str(self.kubeconfigs["kube-scheduler"])
        cfg.setdefault("leaderElection", {}).setdefault("leaderElect", False)
        (port,) = free_ports(1)
        # kube-scheduler 1.20 with --config ignores --port=0: without these it listens on 0.0.0.0:10251.
        cfg["healthzBindAddress"] = cfg["metricsBindAddress"] = f"127.0.0.1:{port}"
        cfg.setdefault("profiles", [{"schedulerName": keys.DEFAULT_SCHEDULER}])
        path = self.workdir / "schedulers" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        proc = self.start_process(
            f"scheduler-{name}",
            [str(self.bin_dir / "kube-scheduler"), f"--config={path}", "--secure-port=0",
             "--bind-address=127.0.0.1", "--v=2"],
        )

        def healthy() -> bool:
            self._require_alive(proc.name)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                return bool(resp.status == 200)

        wait_for(healthy, 60.0, f"kube-scheduler {name} /healthz", interval=0.3, ignore=(OSError,))
        return proc

    def stop_scheduler(self, name: str = keys.DEFAULT_SCHEDULER) -> None:
        """Stop the scheduler started under `name`."""
        self.stop_process(f"scheduler-{name}")

    def start_standin(
        self,
        name: str = "kuberay-standin",
        *,
        model: str = "1.7",
        operator_config: Mapping[str, Any] | Path | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> ManagedProcess:
        """Run devcluster.kuberay_standin in a subprocess as user kuberay-standin (stopped with the cluster).

        `model` is the KubeRay it models ("1.7" or "1.3"); `operator_config` a KubeRay operator Configuration
        (config.ray.io/v1alpha1; a dict is written to <workdir>/standin/<name>.yaml) passed as --config; `env`
        adds to its environment (e.g. ENABLE_INIT_CONTAINER_INJECTION=false, read as KubeRay reads it)."""
        python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "devcluster.kuberay_standin", "--kubeconfig", str(self.kubeconfig(STANDIN_USER)),
                "--model", model, *extra_args]
        if isinstance(operator_config, Mapping):
            path = self.workdir / "standin" / f"{name}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(dict(operator_config), sort_keys=False))
            operator_config = path
        if operator_config is not None:
            argv += ["--config", str(operator_config)]
        return self.start_process(name, argv, env={**os.environ, **(env or {}), "PYTHONPATH": python_path})


def stop_from_state(workdir: Path) -> list[str]:
    """Stop the processes recorded in `<workdir>/state.json` (apiserver before etcd), checking each PID still
    runs the recorded binary; return what was stopped."""
    state = json.loads((workdir / "state.json").read_text())
    records = [ManagedProcess.from_state(r) for r in state["processes"]]
    records.sort(key=lambda p: {"etcd": 2, "kube-apiserver": 1}.get(p.name, 0))
    stopped: list[str] = []
    for proc in records:
        if procs.pid_runs(proc.pid, proc.argv[0]):
            procs.stop(proc)
            stopped.append(f"{proc.name} (pid {proc.pid})")
    state["processes"] = []
    (workdir / "state.json").write_text(json.dumps(state, indent=2))
    return stopped


__all__ = [
    "ADMIN", "STANDIN_USER", "TENANT", "TENANT_GROUP", "Listener", "LocalCluster", "WaitTimeout",
    "default_bin_dir", "ensure_binaries", "free_ports", "load_manifests", "stop_from_state", "wait_for",
]

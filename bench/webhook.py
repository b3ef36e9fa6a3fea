"""The webhook benchmark: the real admission app against a bare aiohttp TLS server, on 127.0.0.1.

Run it with `make bench` (or `python -m bench.webhook --help`). Three processes: the real webhook
(server A), a bare aiohttp handler with the same TLS and serving code that answers a fixed
AdmissionReview (server B, the baseline), and an aiohttp client. For each request body and
concurrency it alternates A and B runs (A, B, A, B, ...) and reports the medians, the ratio A/B and
the targets. It also times the pure path (decode, Request.parse, admit, render, encode) in-process,
so the reader sees how much of a request is the policy. Results: a table on stdout and
bench/results/webhook.json. Bounded in requests and seconds; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime as dt
import logging
import multiprocessing
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from bench.loadgen import LoadGenerator, LoadResult, LoadSpec, finish_report
from certs.authority import create_ca, create_serving
from common import keys
from common.clock import SystemClock
from common.gotime import from_datetime
from webhook.app import Admission
from webhook.policy import PolicyConfig, admit
from webhook.review import Request, render
from webhook.server import ADMISSION_API_VERSION, build_app, serve
from webhook.tls import CertReloader, server_context
from webhook.view import ClusterView

__all__ = ["CASES", "Case", "build_cases", "in_process_cost", "main"]

ROOT: Final = Path(__file__).resolve().parents[1]
EXAMPLES: Final = ROOT / "manifests" / "examples"
RESULTS: Final = ROOT / "bench" / "results" / "webhook.json"
# What manifests/webhook/deployment.yaml passes; it makes the RayJob mutation stamp every template.
SCHEDULER_NAME: Final = "rayqueue-scheduler"
# The format webhook/__main__.py configures; both servers log at INFO like a deployed webhook does.
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
STAMP: Final = "2025-01-10 01:36:24.641181026 +0000 UTC"
CREATED: Final = "2025-01-10T01:36:24Z"
BARE_ANSWER: Final = orjson.dumps(
    {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": {"uid": "x", "allowed": True}}
)
# The targets this benchmark reports against (issue 4): A's throughput at least this fraction of B's at
# concurrency 16, and A's p99 latency under this many milliseconds.
TARGET_RATIO: Final = 0.8
TARGET_RATIO_CONCURRENCY: Final = 16
TARGET_P99_MS: Final = 10.0
BUSY: Final = 0.85  # a process using this share of one core or more during a run is what bounds it
DISTURBED: Final = 0.25  # other work using this many cores or more during a run is named in the report

ALICE: Final = {"username": "alice", "uid": "0b7c9a64-5d1e-4f7a-9a55-3f1c2d6e8a10",
                "groups": ["tenants", "system:authenticated"]}
KUBERAY: Final = {"username": "system:serviceaccount:ray-system:kuberay-operator",
                  "uid": "6f0e2d1c-8b3a-4c5d-9e7f-1a2b3c4d5e6f",
                  "groups": ["system:serviceaccounts", "system:serviceaccounts:ray-system", "system:authenticated"]}


# --- the request bodies -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Case:
    """One request body and the admission path it is POSTed to."""

    name: str
    title: str
    path: str  # /mutate or /validate
    body: bytes
    expect_patch: bool  # the real webhook's answer carries a JSON patch

    @property
    def mutating(self) -> bool:
        return self.path == "/mutate"


def _doc(file: str, kind: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((EXAMPLES / file).read_text())
    found: dict[str, Any] = next(d for d in docs if d and d["kind"] == kind)
    return found


def _fields_v1(value: Any) -> dict[str, Any]:
    """A FieldsV1 set like kube-apiserver's: maps by field, lists of named maps by key, other lists whole."""
    if isinstance(value, dict):
        return {f"f:{k}": _fields_v1(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        return {f'k:{{"name":"{v["name"]}"}}': {".": {}, **_fields_v1(v)} for v in value}
    return {}


def _with_managed_fields(obj: dict[str, Any], manager: str, api_version: str) -> dict[str, Any]:
    """`obj` as the apiserver hands it to admission: with the managedFields of the request's manager."""
    out = copy.deepcopy(obj)
    tracked = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    tracked["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items()
                           if k in ("labels", "annotations", "ownerReferences")}
    out.setdefault("metadata", {})["managedFields"] = [{
        "manager": manager, "operation": "Update", "apiVersion": api_version, "time": CREATED,
        "fieldsType": "FieldsV1", "fieldsV1": _fields_v1(tracked),
    }]
    return out


def _review(uid: str, gvk: tuple[str, str, str], resource: str, operation: str, namespace: str,
            user: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None) -> bytes:
    group, version, kind = gvk
    name = str((obj.get("metadata") or {}).get("name") or "")
    options = "CreateOptions" if operation == "CREATE" else "UpdateOptions"
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": name, "namespace": namespace, "operation": operation, "userInfo": user,
        "object": obj, "oldObject": old, "dryRun": False,
        "options": {"kind": options, "apiVersion": "meta.k8s.io/v1"},
    }
    return orjson.dumps({"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "request": request})


def _queued_video_job() -> dict[str, Any]:
    """The seed video job as stored after the mutating webhook queued it (what an UPDATE starts from)."""
    job = _doc("video-rayjob.yaml", "RayJob")
    meta = job["metadata"]
    meta.update(name="rayjob-video-x7k2p", uid="3d5a8f0e-2b7c-4e91-8f6d-0c1b2a3d4e5f", resourceVersion="48213",
                generation=1, creationTimestamp=CREATED)
    meta["labels"][keys.QUOTA_NAME] = "algorithm-video"
    meta["annotations"] = {keys.ENQUEUE_TIMESTAMP: STAMP}
    cluster = job["spec"]["rayClusterSpec"]
    for template in [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]:
        template["spec"]["schedulerName"] = SCHEDULER_NAME
    return _with_managed_fields(job, "kubectl-create", "ray.io/v1")


def _gang_worker_pod() -> dict[str, Any]:
    """A worker pod as KubeRay creates it for the guide's gang job (1 head + 30 workers) in algorithm-text.

    The template labels (min-available, quota) and the scheduler name are what the RayJob mutation
    stamped; the service-account token volume is what the built-in ServiceAccount admission added.
    """
    template = _doc("gang-rayjob.yaml", "RayJob")["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]
    cluster = "rayjob-sample-hhbdr-raycluster-ljj69"
    container = copy.deepcopy(template["spec"]["containers"][0])
    container.update(
        command=["/bin/bash", "-lc", "--"],
        args=[f"ulimit -n 65536; ray start --address={cluster}-head-svc.algorithm-text.svc.cluster.local:6379 "
              "--metrics-export-port=8080 --block --dashboard-agent-listen-port=52365 --num-cpus=1"],
        env=[
            {"name": "FQ_RAY_IP", "value": f"{cluster}-head-svc.algorithm-text.svc.cluster.local"},
            {"name": "RAY_IP", "value": f"{cluster}-head-svc"},
            {"name": "RAY_CLUSTER_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                    "fieldPath": f"metadata.labels['{keys.RAY_CLUSTER}']"}}},
            {"name": "RAY_CLOUD_INSTANCE_ID", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "RAY_NODE_TYPE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                      "fieldPath": f"metadata.labels['{keys.RAY_GROUP_LABEL}']"}}},
            {"name": "KUBERAY_GEN_RAY_START_CMD", "value": "ray start --address=... --block --num-cpus=1"},
            {"name": "RAY_PORT", "value": "6379"},
            {"name": "RAY_ADDRESS", "value": f"{cluster}-head-svc.algorithm-text.svc.cluster.local:6379"},
            {"name": "RAY_USAGE_STATS_KUBERAY_IN_USE", "value": "1"},
            {"name": "REDIS_PASSWORD"},
        ],
        ports=[{"containerPort": 8080, "name": "metrics", "protocol": "TCP"}],
        volumeMounts=[{"mountPath": "/dev/shm", "name": "shared-mem"},
                      {"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "default-token-9x2lq",
                       "readOnly": True}],
        terminationMessagePath="/dev/termination-log", terminationMessagePolicy="File", imagePullPolicy="IfNotPresent",
    )
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{cluster}-small-group-worker-",
            "namespace": "algorithm-text",
            "labels": {
                keys.RAY_CLUSTER: cluster, keys.RAY_GROUP_LABEL: "small-group", keys.RAY_NODE_TYPE: "worker",
                keys.RAY_IDENTIFIER: f"{cluster}-worker", keys.RAY_IS_RAY_NODE: "yes",
                keys.RAY_ORIGINATED_FROM_CRD: "RayJob", keys.RAY_ORIGINATED_FROM_CR_NAME: "rayjob-sample-hhbdr",
                "app.kubernetes.io/created-by": "kuberay-operator", "app.kubernetes.io/name": "kuberay",
                keys.POD_GROUP_MIN_AVAILABLE: "31", keys.QUOTA_NAME: "algorithm-text",
            },
            "annotations": {"ray.io/ft-enabled": "false"},
            "ownerReferences": [{"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": cluster,
                                 "uid": "9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4", "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "containers": [container],
            "volumes": [{"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                        {"name": "default-token-9x2lq", "secret": {"secretName": "default-token-9x2lq",
                                                                  "defaultMode": 420}}],
            "schedulerName": SCHEDULER_NAME, "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "serviceAccountName": "default", "serviceAccount": "default",
            "securityContext": {}, "enableServiceLinks": True, "priority": 0, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ],
        },
        "status": {"phase": "Pending", "qosClass": "Guaranteed"},
    }
    return _with_managed_fields(pod, "kuberay-operator", "v1")


def build_cases() -> tuple[Case, ...]:
    """The three bodies: the mutating RayJob CREATE, the mutating gang Pod CREATE, the validating RayJob UPDATE."""
    ray = ("ray.io", "v1", "RayJob")
    video = _with_managed_fields(_doc("video-rayjob.yaml", "RayJob"), "kubectl-create", "ray.io/v1")
    old = _queued_video_job()
    new = copy.deepcopy(old)  # alice shrinks her queued job: 2 workers -> 1
    new["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = 1
    return (
        Case("rayjob-create", "RayJob CREATE, seed video job in video (mutate)", "/mutate",
             _review("7f1c2e4a-1111-4b2a-9c3d-000000000001", ray, "rayjobs", "CREATE", "video", ALICE, video),
             expect_patch=True),
        Case("pod-create", "Pod CREATE, gang worker in algorithm-text (mutate)", "/mutate",
             _review("7f1c2e4a-2222-4b2a-9c3d-000000000002", ("", "v1", "Pod"), "pods", "CREATE", "algorithm-text",
                     KUBERAY, _gang_worker_pod()),
             expect_patch=True),
        Case("rayjob-update", "RayJob UPDATE, queued video job shrunk by its owner (validate)", "/validate",
             _review("7f1c2e4a-3333-4b2a-9c3d-000000000003", ray, "rayjobs", "UPDATE", "video", ALICE, new, old),
             expect_patch=False),
    )


CASES: Final = build_cases()


# --- the two servers -------------------------------------------------------------------------------------
def policy_config() -> PolicyConfig:
    return PolicyConfig(scheduler_name=SCHEDULER_NAME)


def seeded_view(now_ns: Callable[[], int]) -> ClusterView:
    """A ClusterView holding the guide's tree, synced, as a running webhook has it."""
    view = ClusterView(now_ns)
    view.on_tree("ADDED", _doc("elasticquotatree.yaml", "ElasticQuotaTree"))
    view.tree_synced = view.classes_synced = True
    if view.tree is None:
        raise RuntimeError(f"the guide's tree did not load: {view.tree_problem}")
    return view


def webhook_app() -> web.Application:
    """Server A: the real webhook app, both admission paths, over the guide's tree, with no API client."""
    clock = SystemClock()
    view = seeded_view(lambda: from_datetime(clock.now()))
    cfg = policy_config()
    return build_app(
        {"/mutate": Admission(view, cfg, None, mutating=True), "/validate": Admission(view, cfg, None, mutating=False)},
        readiness=lambda: view.ready, metrics_registry=CollectorRegistry(), clock=clock,
    )


def bare_app() -> web.Application:
    """Server B: reads the body, parses nothing, answers a fixed AdmissionReview."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=BARE_ANSWER, content_type="application/json")

    app = web.Application()
    app.router.add_post("/mutate", answer)
    app.router.add_post("/validate", answer)
    return app


def serve_process(kind: str, cert_file: str, key_file: str, log_file: str, conn: Connection) -> None:
    """A server process (spawned): serve `kind` ("webhook" or "bare") on 127.0.0.1 until SIGTERM; send the port."""
    logging.basicConfig(level=logging.INFO, filename=log_file, format=LOG_FORMAT)

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        context = server_context(Path(cert_file), Path(key_file))
        if kind == "webhook":
            CertReloader(context, Path(cert_file), Path(key_file), clock=SystemClock()).install()
        app = webhook_app() if kind == "webhook" else bare_app()
        await serve(app, "127.0.0.1", 0, context, stop_event=stop, shutdown_timeout=2.0,
                    on_started=lambda server: conn.send(server.port))

    asyncio.run(run())


@dataclass
class _Server:
    kind: str
    process: multiprocessing.process.BaseProcess
    port: int
    log_file: Path


@contextlib.contextmanager
def _running(kind: str, workdir: Path) -> Iterator[_Server]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    log_file = workdir / f"{kind}.log"
    process = ctx.Process(target=serve_process, name=f"bench-{kind}", daemon=True,
                          args=(kind, str(workdir / "tls.crt"), str(workdir / "tls.key"), str(log_file), child))
    process.start()
    child.close()
    try:
        port: int | None = None
        with contextlib.suppress(EOFError):  # the process died before sending its port
            port = int(parent.recv()) if parent.poll(60) else None
        if port is None:
            process.join(1)
            tail = log_file.read_text()[-2000:] if log_file.exists() else ""
            raise RuntimeError(f"the {kind} server did not start (exit code {process.exitcode}):\n{tail}")
        yield _Server(kind, process, port, log_file)
    finally:
        process.terminate()  # SIGTERM: a graceful stop
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)
        parent.close()


def _write_certs(workdir: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = create_ca(now=now)
    serving = create_serving(ca, service="rayqueue-webhook", namespace="rayqueue", now=now, ips=["127.0.0.1"])
    (workdir / "ca.crt").write_bytes(ca.cert_pem())
    (workdir / "tls.crt").write_bytes(serving.cert_pem())
    key = workdir / "tls.key"
    key.touch(0o600)
    key.write_bytes(serving.key_pem())


# --- in-process cost of the pure path -----------------------------------------------------------------
STAGES: Final = ("decode", "parse", "admit", "render", "encode")


def in_process_cost(case: Case, iterations: int) -> dict[str, float]:
    """Mean microseconds per request of each stage the server runs around the handler, no HTTP, no TLS:
    decode (orjson.loads of the body), parse (Request.parse), admit (snapshot + policy), render (the
    response dict, base64 patch included), encode (orjson.dumps of the AdmissionReview)."""
    view = seeded_view(lambda: from_datetime(dt.datetime.now(dt.UTC)))
    cfg = policy_config()
    totals = dict.fromkeys(STAGES, 0)
    clock = time.perf_counter_ns
    warmup = max(10, iterations // 10)
    for i in range(warmup + iterations):
        t0 = clock()
        review = orjson.loads(case.body)
        t1 = clock()
        req = Request.parse(review["request"])
        t2 = clock()
        verdict = admit(req, view.snapshot(), cfg, mutating=case.mutating)
        t3 = clock()
        response = render(verdict)
        t4 = clock()
        orjson.dumps({"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview",
                      "response": {**response, "uid": req.uid}})
        t5 = clock()
        if i >= warmup:
            for stage, spent in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                totals[stage] += spent
    out = {stage: totals[stage] / iterations / 1000 for stage in STAGES}
    out["total"] = sum(out.values())
    return out


# --- running and reporting -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Run:
    case: str
    concurrency: int
    server: str  # "A" (webhook) or "B" (bare)
    round: int
    requests: int
    errors: int
    capped: bool
    elapsed_s: float
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_us_per_request: float | None
    server_cpu_share: float | None  # server CPU seconds / wall seconds: 1.0 is one core busy all the time
    client_cpu_share: float
    other_cpu_share: float | None  # CPU the rest of the machine used (or the hypervisor stole), in cores
    tls: str


def _to_run(case: Case, concurrency: int, server: str, rnd: int, r: LoadResult) -> Run:
    return Run(
        case=case.name, concurrency=concurrency, server=server, round=rnd, requests=r.requests, errors=r.errors,
        capped=r.capped, elapsed_s=round(r.elapsed_s, 3), throughput=round(r.throughput, 1),
        p50_ms=round(r.p50_ms, 3), p90_ms=round(r.p90_ms, 3), p99_ms=round(r.p99_ms, 3), max_ms=round(r.max_ms, 3),
        server_cpu_us_per_request=round(r.server_cpu_s / r.requests * 1e6, 1)
        if r.server_cpu_s is not None and r.requests else None,
        server_cpu_share=round(r.server_cpu_s / r.elapsed_s, 3) if r.server_cpu_s is not None and r.elapsed_s else None,
        client_cpu_share=round(r.client_cpu_s / r.elapsed_s, 3) if r.elapsed_s else 0.0,
        other_cpu_share=_other_share(r),
        tls=r.tls,
    )


def _other_share(r: LoadResult) -> float | None:
    if r.machine_cpu_s is None or r.server_cpu_s is None or not r.elapsed_s:
        return None
    return round(max(0.0, r.machine_cpu_s - r.server_cpu_s - r.client_cpu_s) / r.elapsed_s, 3)


def _check_answer(case: Case, server: str, r: LoadResult) -> None:
    """Refuse to report a run whose answers are not the ones the case means to measure."""
    try:
        review = orjson.loads(r.first_body)
        response = review["response"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise RuntimeError(f"{case.name} on {server}: HTTP {r.first_status}, not an AdmissionReview: "
                           f"{r.first_body[:300]!r}") from None
    if r.first_status != 200 or response.get("allowed") is not True:
        raise RuntimeError(f"{case.name} on {server}: expected an allowed answer, got HTTP {r.first_status} "
                           f"{r.first_body[:500]!r}")
    if server == "A":
        if response.get("uid") != orjson.loads(case.body)["request"]["uid"]:
            raise RuntimeError(f"{case.name}: the webhook answered uid {response.get('uid')!r}")
        if case.expect_patch != ("patch" in response):
            raise RuntimeError(f"{case.name}: expected {'a' if case.expect_patch else 'no'} patch, got {response}")
    if r.errors:
        raise RuntimeError(f"{case.name} on {server}: {r.errors} failed requests, e.g. {r.error_sample}")


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def _limit(server: float | None, client: float | None, other: float | None, concurrency: int) -> str:
    """What most likely bounds a run: the processes busy (nearly) all the time, else the round trips;
    and whether other work on the machine took a noticeable share of it."""
    busy = [name for name, share in (("server", server), ("client", client)) if share is not None and share >= BUSY]
    limit = " and ".join(busy) + " CPU" if busy else "round trips" if concurrency == 1 else "neither saturated"
    if other is not None and other >= DISTURBED:
        limit += f", other work {other:.2f} CPU"
    return limit


def summarize(runs: Sequence[Run], cases: Sequence[Case], concurrencies: Sequence[int]) -> list[dict[str, Any]]:
    """Per case and concurrency: the medians of A's and B's runs, the ratios, and each target met or not."""
    out: list[dict[str, Any]] = []
    for case in cases:
        for c in concurrencies:
            row: dict[str, Any] = {"case": case.name, "title": case.title, "concurrency": c}
            for server in ("A", "B"):
                mine = [r for r in runs if r.case == case.name and r.concurrency == c and r.server == server]
                med: dict[str, Any] = {field: _median([getattr(r, field) for r in mine]) for field in (
                    "throughput", "p50_ms", "p90_ms", "p99_ms", "max_ms", "server_cpu_us_per_request",
                    "server_cpu_share", "client_cpu_share", "other_cpu_share")}
                med["runs"] = len(mine)
                med["capped"] = any(r.capped for r in mine)
                med["limit"] = _limit(med["server_cpu_share"], med["client_cpu_share"], med["other_cpu_share"], c)
                row[server] = med
            a, b = row["A"], row["B"]
            row["throughput_ratio"] = round(a["throughput"] / b["throughput"], 3) if a["throughput"] and b["throughput"] else None
            a_cpu, b_cpu = a["server_cpu_us_per_request"], b["server_cpu_us_per_request"]
            row["server_cpu_ratio"] = round(b_cpu / a_cpu, 3) if a_cpu and b_cpu else None
            row["p99_target_met"] = a["p99_ms"] is not None and a["p99_ms"] < TARGET_P99_MS
            if c == TARGET_RATIO_CONCURRENCY:
                row["ratio_target_met"] = row["throughput_ratio"] is not None and row["throughput_ratio"] >= TARGET_RATIO
            out.append(row)
    return out


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(), "cpu_model": _cpu_model(), "platform": platform.platform(),
        "python": platform.python_version(), "aiohttp": aiohttp.__version__, "loadavg_at_start": os.getloadavg(),
    }


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_report(report: dict[str, Any], out: Callable[[str], None] = print) -> None:
    m = report["machine"]
    out("")
    out(f"webhook benchmark, {report['date']}: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        f"aiohttp {m['aiohttp']}, load average {m['loadavg_at_start'][0]:.2f} -> {m['loadavg_at_end'][0]:.2f}")
    s = report["settings"]
    out(f"{s['requests']} measured requests per run after {s['warmup']} warm-up, at most {s['max_seconds']} s; "
        f"{s['rounds']} rounds A,B alternating; medians shown; TLS {report['tls']}")
    out("")
    out("in-process cost of the pure path, microseconds per request (no HTTP, no TLS):")
    out(f"  {'case':<15}{'bytes':>7}" + "".join(f"{st:>9}" for st in (*STAGES, "total")))
    for name, cost in report["in_process_us"].items():
        out(f"  {name:<15}{cost['body_bytes']:>7}" + "".join(f"{cost[st]:>9.1f}" for st in (*STAGES, "total")))
    out("")
    header = (f"  {'case':<15}{'c':>3} {'A req/s':>8} {'B req/s':>8} {'A/B':>6} {'A p50':>7} {'A p99':>7} "
              f"{'B p50':>7} {'B p99':>7} {'A cpu/req':>10} {'B cpu/req':>10} {'cpu B/A':>8}  limit (A; B)")
    out("over HTTPS on 127.0.0.1 (latency in ms, server CPU in microseconds per request; limit: what was busy,"
        " in cores):")
    out(header)
    for row in report["summary"]:
        a, b = row["A"], row["B"]
        out(f"  {row['case']:<15}{row['concurrency']:>3} {_fmt(a['throughput']):>8} {_fmt(b['throughput']):>8} "
            f"{_fmt(row['throughput_ratio'], '.2f'):>6} {_fmt(a['p50_ms'], '.2f'):>7} {_fmt(a['p99_ms'], '.2f'):>7} "
            f"{_fmt(b['p50_ms'], '.2f'):>7} {_fmt(b['p99_ms'], '.2f'):>7} "
            f"{_fmt(a['server_cpu_us_per_request'], '.0f'):>10} {_fmt(b['server_cpu_us_per_request'], '.0f'):>10} "
            f"{_fmt(row['server_cpu_ratio'], '.2f'):>8}  {a['limit']}; {b['limit']}")
    out("")
    out("targets:")
    for line in report["verdicts"]:
        out(f"  {line}")
    out("")
    out(f"written: {report['written_to']}  ({report['duration_s']:.0f} s)")


def verdicts(summary: Sequence[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for row in summary:
        if "ratio_target_met" in row:
            lines.append(f"{row['case']} at concurrency {row['concurrency']}: throughput A/B "
                         f"{_fmt(row['throughput_ratio'], '.2f')} (target >= {TARGET_RATIO}): "
                         f"{'met' if row['ratio_target_met'] else 'NOT met'}")
    for row in summary:
        lines.append(f"{row['case']} at concurrency {row['concurrency']}: A p99 {_fmt(row['A']['p99_ms'], '.2f')} ms "
                     f"(target < {TARGET_P99_MS:g} ms): {'met' if row['p99_target_met'] else 'NOT met'}")
    return lines


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.webhook", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=5000, help="measured requests per run (default %(default)s)")
    p.add_argument("--warmup", type=int, default=300, help="warm-up requests per run (default %(default)s)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="cap on a run's measured phase (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="A,B pairs per case and concurrency (default %(default)s)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16], help="(default: 1 16)")
    p.add_argument("--iterations", type=int, default=2000, help="in-process iterations per case (default %(default)s)")
    p.add_argument("--case", choices=[c.name for c in CASES], action="append", help="only these cases (repeatable)")
    p.add_argument("--out", type=Path, default=RESULTS, help="the JSON report (default bench/results/webhook.json)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 200 requests, 1 round, 200 iterations")
    args = p.parse_args(list(argv))
    if args.quick:
        args.requests, args.warmup, args.rounds, args.iterations = 200, 20, 1, 200
    problems = [f"--{name} must be at least 1" for name in ("requests", "rounds", "iterations")
                if getattr(args, name) < 1]
    problems += ["--concurrency values must be at least 1"] if min(args.concurrency) < 1 else []
    problems += ["--max-seconds must be positive"] if args.max_seconds <= 0 else []
    if problems:
        p.error("; ".join(problems))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    cases = [c for c in CASES if not args.case or c.name in args.case]
    report: dict[str, Any] = {
        "benchmark": "webhook", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
        "settings": {"requests": args.requests, "warmup": args.warmup, "max_seconds": args.max_seconds,
                     "rounds": args.rounds, "concurrency": args.concurrency, "iterations": args.iterations,
                     "scheduler_name": SCHEDULER_NAME, "server_log_level": "INFO"},
        "targets": {"throughput_ratio_min": TARGET_RATIO, "at_concurrency": TARGET_RATIO_CONCURRENCY,
                    "p99_ms_max": TARGET_P99_MS},
        "cases": {c.name: {"title": c.title, "path": c.path, "body_bytes": len(c.body)} for c in cases},
    }
    print(f"in-process cost, {args.iterations} iterations per case ...", flush=True)
    report["in_process_us"] = {
        c.name: {"body_bytes": len(c.body), **{k: round(v, 2) for k, v in in_process_cost(c, args.iterations).items()}}
        for c in cases
    }
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="rayqueue-bench-") as tmp:
        workdir = Path(tmp)
        _write_certs(workdir)
        with _running("webhook", workdir) as a, _running("bare", workdir) as b, LoadGenerator() as load:
            servers = {"A": a, "B": b}
            for case in cases:
                for c in args.concurrency:
                    for rnd in range(1, args.rounds + 1):
                        for name, server in servers.items():
                            result = load.run(LoadSpec(
                                url=f"https://127.0.0.1:{server.port}{case.path}", body=case.body, concurrency=c,
                                requests=args.requests, warmup=args.warmup, max_seconds=args.max_seconds,
                                ca_file=str(workdir / "ca.crt"), server_pid=server.process.pid))
                            _check_answer(case, name, result)
                            run = _to_run(case, c, name, rnd, result)
                            runs.append(run)
                            print(f"  {case.name:<15} c={c:<3} round {rnd} {name}: {run.throughput:8.1f} req/s  "
                                  f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
                                  f"CPU server {_fmt(run.server_cpu_share, '.2f')} client {run.client_cpu_share:.2f} "
                                  f"other {_fmt(run.other_cpu_share, '.2f')}"
                                  f"{'  (capped at --max-seconds)' if run.capped else ''}", flush=True)
    report["tls"] = runs[0].tls if runs else "?"
    report["summary"] = summarize(runs, cases, args.concurrency)
    report["verdicts"] = verdicts(report["summary"])
    report["runs"] = [asdict(r) for r in runs]
    finish_report(report, args.out, started)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m devcluster.demo [up|down]`: `make demo` starts rayqueue on a detached local cluster in ./.demo and tells the guide's story with kubectl."""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from common import keys
from devcluster import install, procs
from devcluster.cluster import (
    REPO_ROOT,
    TENANT,
    LocalCluster,
    default_bin_dir,
    ensure_binaries,
    free_ports,
    stop_from_state,
)
from devcluster.procs import ManagedProcess
from devcluster.services import SCHEDULER_NAME, start_extender, start_rayqueue_scheduler
from devcluster.waiting import WaitTimeout, wait_for

DEMO_DIR = REPO_ROOT / ".demo"
EXAMPLES = REPO_ROOT / "manifests" / "examples"
TREE_NAMESPACES = ("video", "algorithm-text", "intern", "infra-devops", "devops")

# The cluster: 5 fake nodes of 8 CPU / 32Gi (40 CPU), and a sixth added before the gang (48 CPU).
NODES, NODE_CPU, NODE_MEMORY = 5, "8", "32Gi"
EXTRA_NODE = "node-6"
# How long each fake Ray job runs (the KubeRay stand-in reads rayqueue.test/run-seconds).
VIDEO_RUN_SECONDS = 20
GANG_RUN_SECONDS = 5
INTERN_RUN_SECONDS = 120
TEXT_RUN_SECONDS = 30
GANG_SIZE = 31  # 1 head + 30 workers of 1 CPU: min-available 31

# Bounded waits (seconds) for the story's steps.
ADMIT_TIMEOUT = 60.0
PODS_TIMEOUT = 120.0  # a gang's first tries are refused until all its pods exist, then retried
FINISH_TIMEOUT = 90.0

QUEUE_PATH = f"/apis/{keys.QUEUE_GROUP}/{keys.QUEUE_VERSION}/namespaces/{keys.QUEUE_NAMESPACE}/{keys.QUEUE_PLURAL}"

Obj = dict[str, Any]


class StoryFailed(Exception):
    """A step of the story did not happen within its bounded wait (or a command failed)."""


def step(message: str) -> None:
    """A progress line for a long step."""
    print(f"==> {message}", flush=True)


def heading(title: str) -> None:
    print(f"\n--- {title}", flush=True)


def note(text: str) -> None:
    for line in text.splitlines():
        print(f"# {line}", flush=True)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------- kubectl, shown
class Story:
    """Runs kubectl as a user would (printing `$ kubectl ...` and its output) and polls the API to verify."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def kubectl(self, *args: str, as_user: str | None = None, shown: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """Print the command (prompt `alice$` for the tenant, `$` for the admin), run it, print its output."""
        prompt = f"{as_user}$" if as_user else "$"
        print(f"\n{prompt} {shown or shlex.join(['kubectl', *args])}", flush=True)
        done = self.cluster.kubectl(*args, as_user=as_user, check=False)
        sys.stdout.write(done.stdout)
        if done.stderr:
            sys.stdout.write(done.stderr)
        sys.stdout.flush()
        if check and done.returncode != 0:
            raise StoryFailed(f"`kubectl {shlex.join(args)}` failed with exit code {done.returncode}")
        return done

    def plugin(self, *args: str, as_user: str = TENANT) -> subprocess.CompletedProcess[str]:
        """`kubectl rayqueue ARGS` as `as_user`: the plugin kubectl would exec (kubectl-rayqueue), run directly."""
        print(f"\n{as_user}$ {shlex.join(['kubectl', 'rayqueue', *args])}", flush=True)
        done = subprocess.run([sys.executable, "-m", "rayqueue_cli", *args,
                               f"--kubeconfig={self.cluster.kubeconfig(as_user)}"],
                              capture_output=True, text=True, timeout=60, check=False, cwd=REPO_ROOT)
        sys.stdout.write(done.stdout + done.stderr)
        sys.stdout.flush()
        if done.returncode != 0:
            raise StoryFailed(f"`kubectl rayqueue {shlex.join(args)}` as {as_user} failed: {done.stderr.strip()}")
        return done

    def create(self, path: Path, as_user: str = TENANT) -> str:
        """`kubectl create -f path` as `as_user`; the created RayJob's name."""
        done = self.kubectl("create", "-f", _rel(path), as_user=as_user)
        for line in done.stdout.splitlines():
            ref = line.split()[0] if line.split() else ""
            if ref.startswith("rayjob.ray.io/"):
                return ref.split("/", 1)[1]
        raise StoryFailed(f"`kubectl create -f {_rel(path)}` printed no rayjob: {done.stdout!r}")

    # ------------------------------------------------------------------ the API, for verification
    def get(self, path: str, **query: str) -> Obj:
        """GET an API path as the admin (JSON)."""
        api: Any = self.cluster.api_client
        url = api.configuration.host + path + (f"?{urllib.parse.urlencode(sorted(query.items()))}" if query else "")
        resp = api.call_api("GET", url, header_params={"Accept": "application/json"}, _request_timeout=15)
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {resp.status}: {data[:300]!r}")
        return dict(json.loads(data))

    def rayjob(self, namespace: str, name: str) -> Obj:
        return self.get(f"/apis/{keys.RAY_GROUP}/{keys.RAY_VERSION}/namespaces/{namespace}/{keys.RAYJOB_PLURAL}/{name}")

    def pods(self, namespace: str, selector: str = "") -> list[Obj]:
        query = {"labelSelector": selector} if selector else {}
        return list(self.get(f"/api/v1/namespaces/{namespace}/pods", **query)["items"])

    def queues(self) -> dict[str, Obj]:
        """Queues by the quota they serve (kube-queue/quota-fullname)."""
        items = self.get(QUEUE_PATH)["items"]
        return {q["metadata"].get("annotations", {}).get(keys.QUOTA_FULLNAME, ""): q for q in items}

    def queue_unit(self, namespace: str, job: str) -> Obj:
        return self.get(f"/apis/{keys.QUEUE_GROUP}/{keys.QUEUE_VERSION}/namespaces/{namespace}/"
                        f"{keys.QUEUE_UNIT_PLURAL}/{job}{keys.QUEUE_UNIT_SUFFIX}")

    def events(self, namespace: str, reason: str) -> list[Obj]:
        return list(self.get(f"/api/v1/namespaces/{namespace}/events", fieldSelector=f"reason={reason}")["items"])

    def expect(self, expected: str, timeout: float, observe: Callable[[], tuple[bool, str]],
               diagnostics: Iterable[Sequence[str]] = ()) -> None:
        """Poll `observe` (done?, what is seen) until done; else print expected/seen and the diagnostics and fail."""
        seen = ["nothing observed yet"]

        def done() -> bool:
            try:
                ok, what = observe()
            except (OSError, KeyError, ValueError, RuntimeError) as exc:  # not there yet, or a transient error
                ok, what = False, f"{type(exc).__name__}: {exc}"
            seen[0] = what
            return ok

        try:
            wait_for(done, timeout, expected, interval=0.5)
        except WaitTimeout:
            print(f"\n!! expected within {timeout:g}s: {expected}", flush=True)
            print(f"!! seen: {seen[0]}", flush=True)
            for args in diagnostics:
                self.kubectl(*args, check=False)
            raise StoryFailed(f"expected {expected}; seen {seen[0]}") from None


# ---------------------------------------------------------------------- manifests for the story
def seed_docs(file: str) -> list[Obj]:
    return [dict(d) for d in yaml.safe_load_all((EXAMPLES / file).read_text()) if d]


def write_manifests(out: Path) -> dict[str, Path]:
    """The guide's video and gang RayJobs split from their ConfigMaps (a second `create` of the same file
    would fail on the ConfigMap), each with the stand-in's run-seconds annotation; the gang also for intern."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def dump(name: str, docs: Sequence[Obj], header: str) -> None:
        path = out / f"{name}.yaml"
        path.write_text(f"# {header}\n" + yaml.safe_dump_all(list(docs), sort_keys=False))
        files[name] = path

    def with_run_seconds(job: Obj, seconds: int) -> Obj:
        job = copy.deepcopy(job)
        job["metadata"].setdefault("annotations", {})[keys.TEST_RUN_SECONDS] = str(seconds)
        return job

    video = seed_docs("video-rayjob.yaml")
    video_job = next(d for d in video if d["kind"] == "RayJob")
    dump("video-configmap", [d for d in video if d["kind"] == "ConfigMap"], "from manifests/examples/video-rayjob.yaml")
    dump("video-rayjob", [with_run_seconds(video_job, VIDEO_RUN_SECONDS)],
         f"manifests/examples/video-rayjob.yaml's RayJob + {keys.TEST_RUN_SECONDS} for the KubeRay stand-in")

    gang = seed_docs("gang-rayjob.yaml")
    gang_job = next(d for d in gang if d["kind"] == "RayJob")
    gang_cm = [d for d in gang if d["kind"] == "ConfigMap"]
    dump("gang-configmap", gang_cm, "from manifests/examples/gang-rayjob.yaml")
    dump("gang-rayjob", [with_run_seconds(gang_job, GANG_RUN_SECONDS)],
         f"manifests/examples/gang-rayjob.yaml's RayJob + {keys.TEST_RUN_SECONDS} for the KubeRay stand-in")
    dump("text-rayjob", [with_run_seconds(gang_job, TEXT_RUN_SECONDS)],
         f"the same gang RayJob, running {TEXT_RUN_SECONDS}s")

    intern_job = with_run_seconds(gang_job, INTERN_RUN_SECONDS)
    intern_job["metadata"]["namespace"] = "intern"
    intern_job["metadata"]["labels"][keys.QUOTA_NAME] = "algorithm-intern"
    intern_cm = copy.deepcopy(gang_cm)
    for cm in intern_cm:
        cm["metadata"]["namespace"] = "intern"
    dump("intern-configmap", intern_cm, "the gang's ConfigMap, in namespace intern")
    dump("intern-rayjob", [intern_job], "the gang RayJob in namespace intern (quota leaf root/algorithm/intern, min 0)")
    return files


# ---------------------------------------------------------------------- observations
def _deployment(job: Obj) -> str:
    return str((job.get("status") or {}).get("jobDeploymentStatus") or "New")


def _annotations(job: Obj) -> dict[str, str]:
    return dict(job["metadata"].get("annotations") or {})


def _admitted(job: Obj) -> bool:
    return job["spec"].get("suspend") is False and keys.DEQUEUE_TIMESTAMP in _annotations(job)


def _describe_job(job: Obj) -> str:
    stamps = sorted(k for k in _annotations(job) if k.startswith("kube-queue/"))
    return (f"{job['metadata']['name']}: suspend={job['spec'].get('suspend')}, "
            f"deployment={_deployment(job)}, queue annotations={stamps}")


def _bound(pods: Sequence[Obj]) -> list[Obj]:
    return [p for p in pods if p["spec"].get("nodeName")]


def _running(pods: Sequence[Obj]) -> list[Obj]:
    return [p for p in _bound(pods) if (p.get("status") or {}).get("phase") == "Running"]


def _cluster_pods(story: Story, namespace: str, job: Obj) -> list[Obj]:
    """The pods of the job's current RayCluster (head + workers), none when it has no cluster."""
    cluster = (job.get("status") or {}).get("rayClusterName")
    return story.pods(namespace, f"{keys.RAY_CLUSTER}={cluster}") if cluster else []


def _scheduled_at(pod: Obj) -> str:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "True":
            return str(cond.get("lastTransitionTime") or "")
    return ""


# ---------------------------------------------------------------------- start-up
def stop_previous(workdir: Path) -> None:
    """Stop what a previous `make demo` left running in `workdir` (by PID), then remove the directory."""
    if (workdir / "state.json").is_file():
        step(f"stopping the demo already running from {_rel(workdir)}")
        try:
            stopped = stop_from_state(workdir)
        except (OSError, ValueError, KeyError) as exc:
            raise SystemExit(f"cannot read {workdir / 'state.json'} to stop the previous demo: {exc}; "
                             "stop its processes by hand and remove the directory") from exc
        for line in stopped:
            print(f"    stopped {line}", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)


def _wait_standin(proc: ManagedProcess) -> None:
    def synced() -> bool:
        if not proc.alive():
            raise RuntimeError(f"the KubeRay stand-in exited:\n{proc.tail(40)}")
        return "caches synced" in proc.tail(200)

    wait_for(synced, 60.0, "the KubeRay stand-in's informers to sync")


def start_everything(workdir: Path) -> LocalCluster:
    """The control plane, rayqueue (webhook, extender, rayqueue-scheduler), the stand-in and the nodes, detached."""
    bin_dir = default_bin_dir()
    if not all((bin_dir / b).is_file() for b in ("kube-apiserver", "kube-controller-manager", "kube-scheduler",
                                                   "kubectl")):
        step("building the kube binaries (once, cached; about 10 minutes)")
        bin_dir = ensure_binaries()
    workdir.mkdir(parents=True)
    cluster = LocalCluster(bin_dir, workdir, detached=True)
    began = time.monotonic()
    step("starting the control plane (etcd, kube-apiserver, kube-controller-manager) on 127.0.0.1 ...")
    cluster.start()
    print(f"    up in {cluster.startup_seconds:.1f}s: {cluster.server}", flush=True)
    try:
        (port,) = free_ports(1)
        step("the install: `kubectl apply --server-side -k manifests/` but its Deployments, whose entry points run "
             "here as processes (the webhook configurations call 127.0.0.1 by URL) ...")
        applied = install.install(cluster, f"https://127.0.0.1:{port}")
        print(f"    applied {len(applied)} objects: {install.summary(applied)}", flush=True)
        step(f"starting the rayqueue webhook (--scheduler-name={SCHEDULER_NAME}): it makes its own certificate ...")
        hook = install.start_selfcert_webhook(cluster, port, name="rayqueue-webhook",
                                              extra_args=(f"--scheduler-name={SCHEDULER_NAME}",))
        install.wait_ready(cluster, hook)
        print(f"    https://127.0.0.1:{port}, its CA in Secret rayqueue/rayqueue-webhook-tls and in both caBundles",
              flush=True)
        step("starting the rayqueue extender and queue controller ...")
        extender = start_extender(cluster)
        print(f"    {extender.url}", flush=True)
        step(f"starting kube-scheduler as {SCHEDULER_NAME}, calling the extender ...")
        start_rayqueue_scheduler(cluster, extender)
        step("starting the KubeRay stand-in (TEST ONLY: creates RayClusters and pods, plays the kubelet) ...")
        _wait_standin(cluster.start_standin())
        step(f"creating {NODES} fake nodes of {NODE_CPU} CPU / {NODE_MEMORY} ...")
        for i in range(1, NODES + 1):
            cluster.create_node(f"node-{i}", cpu=NODE_CPU, memory=NODE_MEMORY)
        cluster.save_state()
    except BaseException:
        print(cluster.log_tails(), file=sys.stderr)
        print(f"\nstart-up failed: stopping what started (logs kept in {_rel(cluster.log_dir)})", file=sys.stderr)
        cluster.close_client()
        stop_from_state(workdir)
        raise
    print(f"    everything up in {time.monotonic() - began:.1f}s", flush=True)
    return cluster


# ---------------------------------------------------------------------- the story
def apply_tree(story: Story) -> None:
    heading("The guide's ElasticQuotaTree and its namespaces (as the cluster admin)")
    note(f"the namespaces come first, labelled {keys.QUOTA_NAMESPACE_LABEL}={keys.QUOTA_NAMESPACE_VALUE}: the tree may bind "
         "only labelled namespaces (docs/security.md, rule N1), and the pod webhooks see only those")
    story.kubectl("apply", "-f", _rel(EXAMPLES / "elasticquotatree.yaml"))
    # kube 1.20 does not label namespaces with kubernetes.io/metadata.name (1.21+ does): add it as 1.21 would.
    story.cluster.label_namespaces(TREE_NAMESPACES)
    note(f"alice may create RayJobs in the tree's namespaces ({', '.join(TREE_NAMESPACES)}):")
    for ns in TREE_NAMESPACES:
        story.kubectl("create", "rolebinding", f"{TENANT}-edit", "--clusterrole=edit", f"--user={TENANT}", "-n", ns)


def story_queues(story: Story) -> dict[str, str]:
    heading("a. One Queue per leaf of the tree, made by the queue controller")

    def five() -> tuple[bool, str]:
        found = sorted(story.queues())
        return len(found) == 5, f"queues for {found}"

    story.expect("one Queue per leaf (5)", ADMIT_TIMEOUT, five,
                 [("get", "queue", "-n", keys.QUEUE_NAMESPACE), ("get", "elasticquotatree", "-A")])
    story.kubectl("get", "queue", "-n", keys.QUEUE_NAMESPACE)
    return {full: q["metadata"]["name"] for full, q in story.queues().items()}


def story_video(story: Story, files: dict[str, Path], queue_names: dict[str, str]) -> tuple[str, str]:
    heading("b. Two copies of the guide's video RayJob (12.5 CPU each) in video (max 14 CPU): one runs, one waits")
    note(f"{_rel(files['video-rayjob'])} is manifests/examples/video-rayjob.yaml's RayJob with one annotation "
         f"added,\n{keys.TEST_RUN_SECONDS}: \"{VIDEO_RUN_SECONDS}\" (how long the stand-in's fake Ray job runs); "
         "its ConfigMap is applied once.")
    story.kubectl("apply", "-f", _rel(files["video-configmap"]), as_user=TENANT)
    first = story.create(files["video-rayjob"])
    story.expect(f"{first} admitted (suspend: false, dequeue stamp)", ADMIT_TIMEOUT,
                 lambda: (_admitted(j := story.rayjob("video", first)), _describe_job(j)),
                 [("describe", "rayjob", "-n", "video", first), ("get", "queueunit", "-n", "video")])
    second = story.create(files["video-rayjob"])

    def first_running() -> tuple[bool, str]:
        job = story.rayjob("video", first)
        pods = _cluster_pods(story, "video", job)
        ok = _deployment(job) in ("Initializing", "Running") and len(_running(pods)) == 3
        return ok, f"{_describe_job(job)}; {len(_running(pods))} of 3 Ray pods bound and Running"

    story.expect(f"{first}'s head and 2 workers bound by {SCHEDULER_NAME} and Running", PODS_TIMEOUT, first_running,
                 [("get", "pod", "-n", "video", "-o", "wide"), ("get", "event", "-n", "video")])

    video_queue = queue_names.get("root/algorithm/video", "")

    def second_waits() -> tuple[bool, str]:
        job = story.rayjob("video", second)
        unit = story.queue_unit("video", second)
        status = story.queues()["root/algorithm/video"].get("status") or {}
        backoff = [i.get("name") for i in (status.get("queueItemDetails") or {}).get("backoff") or []]
        ok = (job["spec"].get("suspend") is True and _deployment(job) == "Suspended"
              and keys.DEQUEUE_TIMESTAMP not in _annotations(job) and bool((unit.get("status") or {}).get("message"))
              and f"{second}{keys.QUEUE_UNIT_SUFFIX}" in backoff)
        return ok, f"{_describe_job(job)}; QueueUnit status {unit.get('status')}; backoff list {backoff}"

    story.expect(f"{second} suspended, only enqueued, in the video Queue's backoff list with a reason", ADMIT_TIMEOUT,
                 second_waits, [("describe", "rayjob", "-n", "video", second), ("get", "queueunit", "-n", "video"),
                                ("get", "queue", "-n", keys.QUEUE_NAMESPACE, video_queue, "-o", "yaml")])
    story.kubectl("get", "rayjob", "-n", "video", as_user=TENANT)
    note("the queue's stamps: the running job has both, the waiting one only its enqueue time")
    story.kubectl("get", "rayjob", "-n", "video", "-o",
                  "custom-columns=NAME:.metadata.name,SUSPEND:.spec.suspend,"
                  "ENQUEUED:.metadata.annotations.kube-queue/job-enqueue-timestamp,"
                  "DEQUEUED:.metadata.annotations.kube-queue/job-dequeue-timestamp", as_user=TENANT)
    story.kubectl("get", "queueunit", "-n", "video", as_user=TENANT)
    note("the video Queue's backoff list:")
    story.kubectl("get", "queue", "-n", keys.QUEUE_NAMESPACE, video_queue, "-o",
                  "jsonpath={.status.queueItemDetails.backoff}{\"\\n\"}")
    return first, second


def story_plugin(story: Story, waiting: str) -> None:
    heading("The tenant's own view: kubectl rayqueue, with alice's kubeconfig (edit in her namespaces, and the "
            "install's visibility roles)")
    for args in (("top",), ("why", waiting, "-n", "video"), ("queue", "video")):
        story.plugin(*args)


def story_gang(story: Story, files: dict[str, Path]) -> str:
    heading(f"c. The guide's gang RayJob in algorithm-text: {GANG_SIZE} pods of 1 CPU, all bound at once or none")
    note(f"the gang asks {GANG_SIZE} CPU + 0.5 for its submitter = 31.5 CPU; the running video job holds 12.5 of the\n"
         f"{NODES} x {NODE_CPU} = 40 CPU, so 12.5 + 31.5 = 44 > 40 would leave the gang waiting for capacity.\n"
         f"The demo adds a sixth node ({EXTRA_NODE}, {NODE_CPU} CPU / {NODE_MEMORY}): 48 CPU.")
    step(f"adding {EXTRA_NODE} ...")
    story.cluster.create_node(EXTRA_NODE, cpu=NODE_CPU, memory=NODE_MEMORY)
    story.kubectl("get", "node")
    story.kubectl("apply", "-f", _rel(files["gang-configmap"]), as_user=TENANT)
    gang = story.create(files["gang-rayjob"])

    def all_bound() -> tuple[bool, str]:
        job = story.rayjob("algorithm-text", gang)
        pods = _cluster_pods(story, "algorithm-text", job)
        return len(_bound(pods)) == GANG_SIZE, f"{_describe_job(job)}; {len(_bound(pods))} of {len(pods)} pods bound"

    story.expect(f"all {GANG_SIZE} pods of {gang} bound", PODS_TIMEOUT, all_bound,
                 [("describe", "rayjob", "-n", "algorithm-text", gang), ("get", "queueunit", "-n", "algorithm-text"),
                  ("get", "pod", "-n", "algorithm-text", "-o", "wide"),
                  ("get", "event", "-n", "algorithm-text", "--sort-by=.lastTimestamp")])
    job = story.rayjob("algorithm-text", gang)
    pods = _cluster_pods(story, "algorithm-text", job)
    story.kubectl("get", "pod", "-n", "algorithm-text", "-L", keys.POD_GROUP_MIN_AVAILABLE, as_user=TENANT)
    note("(a pod without min-available is the job's submitter, created once the Ray cluster runs: outside the gang)")
    cluster_label = f"{keys.RAY_CLUSTER}={job['status']['rayClusterName']}"
    per_node: dict[str, int] = {}
    for pod in _bound(pods):
        per_node[pod["spec"]["nodeName"]] = per_node.get(pod["spec"]["nodeName"], 0) + 1
    jsonpath = '{range .items[*]}{.spec.nodeName}{"\\n"}{end}'
    print(f"\n{TENANT}$ kubectl get pod -n algorithm-text -l {cluster_label} -o jsonpath='{jsonpath}' | sort | uniq -c",
          flush=True)
    for node, count in sorted(per_node.items()):
        print(f"{count:7d} {node}")
    labels = {p["metadata"].get("labels", {}).get(keys.POD_GROUP_MIN_AVAILABLE) for p in pods}
    times = sorted(t for t in (_scheduled_at(p) for p in pods) if t)
    span = f"{times[0]} .. {times[-1]}" if times else "unknown"
    note(f"{len(_bound(pods))} of {len(pods)} gang pods bound (min-available {', '.join(sorted(map(str, labels)))}), "
         f"PodScheduled at {span}")
    if len(_bound(pods)) != GANG_SIZE or labels != {str(GANG_SIZE)}:
        raise StoryFailed(f"expected {GANG_SIZE} bound pods labelled min-available {GANG_SIZE}; "
                          f"seen {len(_bound(pods))} bound, labels {labels}")
    return gang


def story_reclaim(story: Story, files: dict[str, Path], gang: str) -> None:
    heading("d. Reclaim: an intern job borrows; a guaranteed algorithm-text job takes the capacity back")
    note("intern's quota has min 0: everything it uses is borrowed. The cluster now has 48 CPU; the intern job\n"
         "(the same 31.5-CPU gang) fits next to the video job, but then a second 31.5-CPU job in algorithm-text\n"
         "(min 32 CPU, nothing used once the gang above is done: guaranteed) would need 31.5 + 31.5 > 48 CPU.")

    def gang_gone() -> tuple[bool, str]:
        job = story.rayjob("algorithm-text", gang)
        left = story.pods("algorithm-text", f"{keys.RAY_CLUSTER}")
        return _deployment(job) == "Complete" and not left, f"{_describe_job(job)}; {len(left)} Ray pods left"

    step(f"waiting for the gang job to complete (its fake Ray job runs {GANG_RUN_SECONDS}s) and its pods to go ...")
    story.expect(f"{gang} Complete and its pods gone", FINISH_TIMEOUT, gang_gone,
                 [("describe", "rayjob", "-n", "algorithm-text", gang), ("get", "pod", "-n", "algorithm-text")])
    story.kubectl("get", "rayjob", "-n", "algorithm-text", as_user=TENANT)

    story.kubectl("apply", "-f", _rel(files["intern-configmap"]), as_user=TENANT)
    intern = story.create(files["intern-rayjob"])

    def intern_runs() -> tuple[bool, str]:
        job = story.rayjob("intern", intern)
        pods = _cluster_pods(story, "intern", job)
        ok = _admitted(job) and len(_running(pods)) == GANG_SIZE
        return ok, f"{_describe_job(job)}; {len(_running(pods))} of {GANG_SIZE} pods Running"

    story.expect(f"{intern} admitted and its {GANG_SIZE} pods Running", PODS_TIMEOUT, intern_runs,
                 [("describe", "rayjob", "-n", "intern", intern), ("get", "queueunit", "-n", "intern"),
                  ("get", "pod", "-n", "intern", "-o", "wide")])
    enqueued = _annotations(story.rayjob("intern", intern)).get(keys.ENQUEUE_TIMESTAMP, "")
    story.kubectl("get", "rayjob", "-A")

    story.kubectl("apply", "-f", _rel(files["gang-configmap"]), as_user=TENANT)
    text = story.create(files["text-rayjob"])

    def preempted() -> tuple[bool, str]:
        job = story.rayjob("intern", intern)
        events = [e for e in story.events("intern", keys.EVENT_PREEMPTED)
                  if e.get("involvedObject", {}).get("name") == intern]
        ok = job["spec"].get("suspend") is True and bool(events)
        return ok, f"{_describe_job(job)}; {len(events)} Preempted events"

    story.expect(f"{intern} suspended with a Preempted event", ADMIT_TIMEOUT, preempted,
                 [("describe", "rayjob", "-n", "intern", intern), ("describe", "rayjob", "-n", "algorithm-text", text),
                  ("get", "queueunit", "-A")])

    def text_runs() -> tuple[bool, str]:
        job = story.rayjob("algorithm-text", text)
        pods = _cluster_pods(story, "algorithm-text", job)
        return _admitted(job) and len(_bound(pods)) == GANG_SIZE, f"{_describe_job(job)}; {len(_bound(pods))} bound"

    story.expect(f"{text} admitted and its {GANG_SIZE} pods bound once the intern job's pods are gone", PODS_TIMEOUT,
                 text_runs, [("describe", "rayjob", "-n", "algorithm-text", text), ("get", "queueunit", "-A"),
                             ("get", "pod", "-n", "intern")])

    def requeued() -> tuple[bool, str]:
        job = story.rayjob("intern", intern)
        unit = story.queue_unit("intern", intern)
        phase = (unit.get("status") or {}).get("phase")
        ok = (job["spec"].get("suspend") is True and _deployment(job) == "Suspended"
              and keys.DEQUEUE_TIMESTAMP not in _annotations(job) and phase in ("Enqueued", "Backoff"))
        return ok, f"{_describe_job(job)}; QueueUnit phase {phase}"

    story.expect(f"{intern} requeued (Suspended, QueueUnit waiting)", ADMIT_TIMEOUT, requeued,
                 [("describe", "rayjob", "-n", "intern", intern), ("get", "queueunit", "-n", "intern")])
    story.kubectl("get", "events", "-n", "intern", f"--field-selector=reason={keys.EVENT_PREEMPTED}")
    story.kubectl("get", "rayjob", "-A")
    story.kubectl("get", "queueunit", "-n", "intern")
    kept = _annotations(story.rayjob("intern", intern)).get(keys.ENQUEUE_TIMESTAMP, "")
    note(f"{intern} keeps its original enqueue time ({kept}; was {enqueued}) and runs again when "
         f"{text} is done (about {TEXT_RUN_SECONDS}s).")
    if kept != enqueued:
        raise StoryFailed(f"expected {intern} to keep its enqueue time {enqueued}; seen {kept}")


def explore(cluster: LocalCluster) -> None:
    print(f"""
--- Everything keeps running. To explore (the kubectl built for the demo is in {cluster.bin_dir}):

export PATH={cluster.bin_dir}:$PATH
export KUBECONFIG={cluster.admin_kubeconfig}
kubectl get rayjob -A
kubectl get queue -n {keys.QUEUE_NAMESPACE}
kubectl get queueunit -A
kubectl describe rayjob -n intern
kubectl get pod -A -o wide
# as the tenant: KUBECONFIG={cluster.kubeconfig(TENANT)} kubectl get rayjob -n video
#   and kubectl rayqueue top (the plugin: kubectl-rayqueue in {Path(sys.executable).parent})
# logs: {cluster.log_dir}

Stop it all with: make demo-down""", flush=True)


def up(workdir: Path = DEMO_DIR) -> int:
    began = time.monotonic()
    stop_previous(workdir)
    cluster = start_everything(workdir)
    story = Story(cluster)
    files = write_manifests(workdir / "manifests")
    failed: StoryFailed | None = None
    try:
        note("commands after `alice$` run with the tenant alice's kubeconfig, after `$` as the cluster admin")
        apply_tree(story)
        queue_names = story_queues(story)
        _, waiting = story_video(story, files, queue_names)
        story_plugin(story, waiting)
        gang = story_gang(story, files)
        story_reclaim(story, files, gang)
    except StoryFailed as exc:
        failed = exc
    finally:
        cluster.save_state()
        cluster.close_client()
    explore(cluster)
    elapsed = time.monotonic() - began
    if failed is not None:
        print(f"\n!! the demo stopped after {elapsed:.0f}s: {failed}", flush=True)
        return 1
    print(f"\n(the demo took {elapsed:.0f}s at {dt.datetime.now().strftime('%H:%M:%S')})", flush=True)
    return 0


def down(workdir: Path = DEMO_DIR) -> int:
    """Stop every process recorded in `workdir`/state.json by PID, then remove the directory; idempotent."""
    state = workdir / "state.json"
    if not state.is_file():
        print(f"nothing to stop: no {_rel(state)}", flush=True)
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    records = [ManagedProcess.from_state(r) for r in json.loads(state.read_text()).get("processes", [])]
    for line in stop_from_state(workdir):
        print(f"stopped {line}", flush=True)
    left = [f"{p.name} (pid {p.pid})" for p in records if procs.pid_runs(p.pid, p.argv[0])]
    if left:
        print(f"still running: {', '.join(left)}; {_rel(workdir)} kept", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"removed {_rel(workdir)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.demo", description=__doc__)
    parser.add_argument("command", nargs="?", default="up", choices=["up", "down"])
    args = parser.parse_args(argv)
    return up() if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())

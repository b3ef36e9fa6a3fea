"""`kubectl rayqueue` (installed as `kubectl-rayqueue`): the thin adapter, reads through the official client.

kubectl runs a plugin with the arguments after its name (flags included: `kubectl rayqueue top
--kubeconfig=x`), so the plugin parses --kubeconfig, --context, -n and -o itself; KUBECONFIG is honoured
through the environment as kubectl does.

What each subcommand reads (the RBAC it needs; a tenant with `edit` or `view` in their namespaces has all
of it once manifests/rbac/quota-visibility.yaml and queue-visibility.yaml are installed):

  top            get elasticquotatrees/elasticquotatree in kube-system
  why JOB        get rayjobs (or rayclusters, --raycluster), get queueunits, list events in JOB's namespace;
                 the tree (optional: the blocking node's numbers). Says which liveness case a stuck job is in
                 (admission timeout, parked, refused by KubeRay, managed by another controller, draining, refused
                 at create) and what to do (docs/liveness.md)
  queue LEAF     list queues in kube-queue; list queueunits in each namespace of the listed jobs
                 (optional: jobs of namespaces you cannot read show as hidden); the tree (optional:
                 short leaf names)
  whatif -f F    the tree; list queues in kube-queue; get priorityclasses (optional)
  retry JOB      get and patch rayjobs (or rayclusters, --raycluster) in JOB's namespace: removes the job's
                 rayqueue.io/admission-timeouts, so a job parked after its admission timeouts is tried again
  release-queued list, patch (or delete, --delete) rayjobs and rayclusters in every namespace, delete their
                 queueunits: before an uninstall, resumes every job rayqueue holds suspended (rayqueue_cli/release.py)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final

import kubernetes
import yaml

from common import keys
from common.clock import SystemClock
from common.gotime import from_datetime
from common.jobkind import RAYCLUSTER, RAYJOB
from common.quota_tree import QuotaTree, TreeError
from common.rayjob import priority_class_name
from common.wire import ShapeError
from rayqueue_cli import release, views

_kube: Any = kubernetes  # the official client, untyped for mypy's purposes
k8s: Any = _kube.client
kconfig: Any = _kube.config
ApiException: Any = _kube.client.rest.ApiException

NEEDS = {
    "top": f"get {keys.QUOTA_TREE_PLURAL}.{keys.QUOTA_GROUP} in {keys.QUOTA_TREE_NAMESPACE}",
    "why": f"get rayjobs.{keys.RAY_GROUP} (rayclusters with --raycluster), get {keys.QUEUE_UNIT_PLURAL}.{keys.QUEUE_GROUP} and list events in the "
           "job's namespace",
    "queue": f"list {keys.QUEUE_PLURAL}.{keys.QUEUE_GROUP} in {keys.QUEUE_NAMESPACE}",
    "whatif": f"get {keys.QUOTA_TREE_PLURAL}.{keys.QUOTA_GROUP} in {keys.QUOTA_TREE_NAMESPACE} and list "
              f"{keys.QUEUE_PLURAL}.{keys.QUEUE_GROUP} in {keys.QUEUE_NAMESPACE}",
    "retry": f"get and patch rayjobs.{keys.RAY_GROUP} (rayclusters with --raycluster) in the job's namespace",
    "release-queued": release.NEEDS,
}


class Failure(Exception):
    """A message for the user; exit 1."""


class Api:
    """The few reads the plugin makes."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        try:
            self.client = kconfig.new_client_from_config(config_file=kubeconfig, context=context)
            _, active = kconfig.list_kube_config_contexts(config_file=kubeconfig)
        except (kconfig.ConfigException, OSError) as exc:
            raise Failure(f"cannot load the kubeconfig: {exc}") from exc
        if context:
            contexts, _ = kconfig.list_kube_config_contexts(config_file=kubeconfig)
            active = next((c for c in contexts if c["name"] == context), active)
        self.default_namespace = ((active or {}).get("context") or {}).get("namespace") or "default"
        self.custom = k8s.CustomObjectsApi(self.client)
        self.core = k8s.CoreV1Api(self.client)

    def tree(self) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(
            keys.QUOTA_GROUP, keys.QUOTA_VERSION, keys.QUOTA_TREE_NAMESPACE, keys.QUOTA_TREE_PLURAL,
            keys.QUOTA_TREE_NAME))

    def queues(self) -> list[dict[str, Any]]:
        return list(self.custom.list_namespaced_custom_object(
            keys.QUEUE_GROUP, keys.QUEUE_VERSION, keys.QUEUE_NAMESPACE, keys.QUEUE_PLURAL)["items"])

    def job(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(keys.RAY_GROUP, keys.RAY_VERSION, namespace, plural, name))

    def patch_job(self, plural: str, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.custom.patch_namespaced_custom_object(
            keys.RAY_GROUP, keys.RAY_VERSION, namespace, plural, name, body))

    def queue_unit(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.custom.get_namespaced_custom_object(
                keys.QUEUE_GROUP, keys.QUEUE_VERSION, namespace, keys.QUEUE_UNIT_PLURAL, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def queue_units(self, namespace: str) -> list[dict[str, Any]]:
        return list(self.custom.list_namespaced_custom_object(
            keys.QUEUE_GROUP, keys.QUEUE_VERSION, namespace, keys.QUEUE_UNIT_PLURAL)["items"])

    def events(self, namespace: str, name: str, kind: str = keys.RAYJOB_KIND) -> list[dict[str, Any]]:
        found = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name},involvedObject.kind={kind}")
        return [self.client.sanitize_for_serialization(e) for e in found.items]

    def priority_class(self, name: str) -> int | None:
        found = k8s.SchedulingV1Api(self.client).read_priority_class(name)
        return int(found.value)


def _optional(read: Callable[[], Any], notes: list[str], what: str) -> Any:
    try:
        return read()
    except ApiException as exc:
        if exc.status in (401, 403, 404):
            notes.append(f"{what}: not readable ({exc.status} {exc.reason})")
            return None
        raise


def now_ns() -> int:
    return from_datetime(SystemClock().now())


def cmd_top(api: Api, args: argparse.Namespace) -> dict[str, Any]:
    return views.top_report(api.tree())


def cmd_why(api: Api, args: argparse.Namespace) -> dict[str, Any]:
    """Where the job is and, stuck in a liveness case, which case and what to do; a job that does not exist is the
    case of a create the webhook refused."""
    ns = args.namespace or api.default_namespace
    kind = RAYCLUSTER if args.raycluster else RAYJOB
    try:
        job = api.job(kind.plural, ns, args.job)
    except ApiException as exc:
        if exc.status == 404:
            return views.missing_report(ns, args.job, kind.kind)
        raise
    notes: list[str] = []
    unit = api.queue_unit(ns, kind.queue_unit_name(args.job))
    tree = _optional(api.tree, notes, "the quota tree")
    events = _optional(lambda: api.events(ns, args.job, kind.kind), notes, "events") or []
    report = views.why_report(job, unit, tree, events, now_ns(), kind.kind)
    return {**report, "notes": notes} if notes else report


def _leaf_name(api: Api, name: str, queues: Sequence[dict[str, Any]], notes: list[str]) -> str:
    leaves: dict[str, dict[str, Any]] = {
        str(q["metadata"].get("annotations", {}).get(keys.QUOTA_FULLNAME)): q for q in queues}
    if name in leaves:
        return name
    tree = _optional(api.tree, notes, "the quota tree")
    if tree is not None:
        node = QuotaTree.parse(tree).resolve(name)
        if node is not None:
            return node.full_name
    matches = [leaf for leaf in leaves if leaf and leaf.rsplit("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    raise Failure(f"no leaf quota {name!r}; leaves with a Queue: {', '.join(sorted(str(k) for k in leaves))}")


def cmd_queue(api: Api, args: argparse.Namespace) -> dict[str, Any]:
    queues = api.queues()
    notes: list[str] = []
    leaf = _leaf_name(api, args.leaf, queues, notes)
    queue = next(q for q in queues if q["metadata"].get("annotations", {}).get(keys.QUOTA_FULLNAME) == leaf)
    details = (queue.get("status") or {}).get("queueItemDetails") or {}
    units: dict[tuple[str, str], dict[str, Any]] = {}
    namespaces = {str(d.get("namespace")) for lst in details.values() for d in lst or [] if d.get("namespace")}
    for ns in sorted(namespaces):
        listed = _optional(partial(api.queue_units, ns), notes, f"QueueUnits of namespace {ns}")
        for u in listed or []:
            units[(ns, u["metadata"]["name"])] = u
    report = views.queue_report(leaf, queue, units, now_ns())
    return {**report, "notes": notes} if notes else report


def cmd_whatif(api: Api, args: argparse.Namespace) -> dict[str, Any]:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    jobs = [d for d in docs if d.get("kind") == keys.RAYJOB_KIND]
    if len(jobs) != 1:
        raise Failure(f"{args.file}: expected one {keys.RAYJOB_KIND}, found {len(jobs)}")
    job = jobs[0]
    ns = args.namespace or (job.get("metadata") or {}).get("namespace") or api.default_namespace
    notes: list[str] = []
    value = None
    pc = priority_class_name(job)
    if pc:
        value = _optional(lambda: api.priority_class(pc), notes, f"PriorityClass {pc}")
    tree = api.tree()
    leaf = QuotaTree.parse(tree).leaf_for_namespace(ns)
    queue = None
    if leaf is not None:
        queue = next((q for q in api.queues()
                      if q["metadata"].get("annotations", {}).get(keys.QUOTA_FULLNAME) == leaf.full_name), None)
    report = views.whatif_report(job, tree, queue, ns, value, now_ns=time.time_ns())
    report["notes"] = [*report.get("notes", []), *notes,
                       "for the webhook's own answer with an estimate: kubectl create --dry-run=server -f FILE"]
    return report


def cmd_retry(api: Api, args: argparse.Namespace) -> dict[str, Any]:
    """Remove the job's count of admission timeouts (docs/liveness.md): a parked job is tried again, at its
    original place in its queue. Guarded by the resourceVersion read, so a timeout written meanwhile is not lost."""
    ns = args.namespace or api.default_namespace
    plural = keys.RAYCLUSTER_PLURAL if args.raycluster else keys.RAYJOB_PLURAL
    job = api.job(plural, ns, args.job)
    meta = job.get("metadata") or {}
    count = (meta.get("annotations") or {}).get(keys.ADMISSION_TIMEOUTS)
    if count is None:
        return views.retry_report(ns, args.job, None)
    body = {"metadata": {"annotations": {keys.ADMISSION_TIMEOUTS: None},
                         "resourceVersion": meta.get("resourceVersion")}}
    api.patch_job(plural, ns, args.job, body)
    return views.retry_report(ns, args.job, str(count))


COMMANDS: dict[str, Callable[[Api, argparse.Namespace], dict[str, Any]]] = {
    "top": cmd_top, "why": cmd_why, "queue": cmd_queue, "whatif": cmd_whatif, "retry": cmd_retry,
    "release-queued": release.command,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubectl rayqueue", description=(__doc__ or "").splitlines()[0],
                                epilog="permissions each subcommand needs: "
                                       + "; ".join(f"{k}: {v}" for k, v in NEEDS.items()))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", help="path to the kubeconfig (default: $KUBECONFIG, ~/.kube/config)")
    common.add_argument("--context", help="the kubeconfig context to use")
    common.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    common.add_argument("-o", "--output", choices=("text", "json"), default="text")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("top", parents=[common], help="the quota tree: used / min / max per resource")
    why = sub.add_parser("why", parents=[common], help="a RayJob's place, what blocks it, the liveness case it is "
                                                       "stuck in and what to do, its estimate, events")
    why.add_argument("job", help="the RayJob's name (a bare RayCluster's with --raycluster)")
    why.add_argument("--raycluster", action="store_true", help="the job is a bare RayCluster")
    queue = sub.add_parser("queue", parents=[common], help="a leaf's waiting jobs in order, with estimates")
    queue.add_argument("leaf", help="the leaf quota (root/algorithm/video, or a unique short name)")
    whatif = sub.add_parser("whatif", parents=[common], help="what would happen to this RayJob if created now")
    whatif.add_argument("-f", "--filename", dest="file", required=True, help="the RayJob manifest (- for stdin)")
    retry = sub.add_parser("retry", parents=[common], help="try a job parked after its admission timeouts again")
    retry.add_argument("job", help="the RayJob's name (a bare RayCluster's with --raycluster)")
    retry.add_argument("--raycluster", action="store_true", help="the job is a bare RayCluster")
    release.add_parser(sub, common)
    return p


PARTIAL_FAILURE: Final = 2  # the command ran, but some of its writes failed (release-queued's FAILED lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        api = Api(args.kubeconfig, args.context)
        report = COMMANDS[args.command](api, args)
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ApiException as exc:
        reason = exc.reason
        with contextlib.suppress(ValueError):
            reason = json.loads(exc.body or "{}").get("message") or reason
        hint = f" ({args.command} needs: {NEEDS[args.command]})" if exc.status == 403 else ""
        print(f"error: {exc.status}: {reason}{hint}", file=sys.stderr)
        return 1
    except (ShapeError, TreeError, OSError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(release.TEXT.get(report["kind"], views.render)(report))
        for note in report.get("notes", []):
            if args.command != "whatif":
                print(f"note: {note}", file=sys.stderr)
    return PARTIAL_FAILURE if report.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())

"""`kubectl rayqueue release-queued`: before an uninstall, hand every job rayqueue still holds back to KubeRay.

A job rayqueue queued and has not admitted is suspended (`spec.suspend: true`) with an enqueue stamp; with rayqueue
gone nothing would ever resume it. For each such RayJob and bare RayCluster this command either *releases* it (one
JSON patch guarded by the resourceVersion it read: `suspend: false`, rayqueue's state annotations removed, and the
rayqueue scheduler's name removed from the pod templates where the webhook stamped it, so KubeRay runs the job
unqueued with the default scheduler) or, with `--delete`, deletes it (preconditioned on the same resourceVersion).
Its QueueUnit goes with it. Admitted jobs are left running. A dry run unless `--yes`: it prints what it would do.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from common import keys
from common.jobkind import RAYCLUSTER, RAYJOB, JobKind

KIND: Final = "ReleaseQueued"
NEEDS: Final = (f"list, patch (delete with --delete) rayjobs and rayclusters.{keys.RAY_GROUP} and delete "
                f"{keys.QUEUE_UNIT_PLURAL}.{keys.QUEUE_GROUP} in every namespace (or -n's); run it as a cluster admin "
                "(in the webhook's --admin-group) or after deleting the webhook configurations")
# Everything rayqueue writes on a queued job; a released job keeps none of it (the user's own rayqueue.io/expected-
# runtime and the quota label stay: they mean nothing without rayqueue and change nothing in KubeRay).
STATE_ANNOTATIONS: Final = tuple(dict.fromkeys((
    *keys.CLUSTER_CONTROLLER_OWNED_ANNOTATIONS, keys.ADMISSION_TIMEOUTS, keys.CHECKPOINTED,
)))
JSON_PATCH: Final = "application/json-patch+json"
CONFLICT_RETRIES: Final = 3

Obj = dict[str, Any]
Step = Literal["release", "delete", "leave"]


KINDS: Final = (RAYJOB, RAYCLUSTER)  # the queued kinds (common.jobkind): templates, plural, QueueUnit name


@dataclass(frozen=True, slots=True)
class Action:
    """What to do with one job rayqueue queued, and why; `patch` is the release's JSON patch."""

    kind: JobKind
    namespace: str
    name: str
    step: Step
    reason: str
    enqueued: str
    resource_version: str
    patch: tuple[Obj, ...] = ()

    @property
    def queue_unit(self) -> str:
        return self.kind.queue_unit_name(self.name)


def _pointer(*path: str | int) -> str:
    """An RFC 6901 JSON pointer (`~` and `/` escaped)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _get(node: Any, path: Sequence[str | int]) -> Any:
    for key in path:
        if isinstance(node, Mapping):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return None
    return node


def template_paths(obj: Mapping[str, Any], kind: JobKind) -> list[tuple[str | int, ...]]:
    """The pod templates of a Ray object: head, each worker group, the submitter (RayJob only)."""
    paths: list[tuple[str | int, ...]] = []
    cluster = _get(obj, kind.cluster_at)
    if isinstance(cluster, Mapping):
        if isinstance(_get(cluster, ("headGroupSpec", "template")), Mapping):
            paths.append((*kind.cluster_at, "headGroupSpec", "template"))
        for i, group in enumerate(cluster.get("workerGroupSpecs") or []):
            if isinstance(_get(group, ("template",)), Mapping):
                paths.append((*kind.cluster_at, "workerGroupSpecs", i, "template"))
    if kind.submitter_at is not None and isinstance(_get(obj, kind.submitter_at), Mapping):
        paths.append(kind.submitter_at)
    return paths


def release_patch(obj: Mapping[str, Any], kind: JobKind, scheduler_name: str | None) -> tuple[Obj, ...]:
    """The release as one JSON patch: the resourceVersion tested first (a job changed since it was read is not
    patched), `suspend: false`, each of rayqueue's annotations removed, and `scheduler_name` removed from each
    pod template that carries it (the webhook stamps it; the default scheduler takes the pods after uninstall)."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    ops: list[Obj] = [{"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")},
                      {"op": "replace", "path": "/spec/suspend", "value": False}]
    ops += [{"op": "remove", "path": _pointer("metadata", "annotations", k)} for k in STATE_ANNOTATIONS
            if k in annotations]
    if scheduler_name:
        ops += [{"op": "remove", "path": _pointer(*path, "spec", "schedulerName")}
                for path in template_paths(obj, kind) if _get(obj, (*path, "spec", "schedulerName")) == scheduler_name]
    return tuple(ops)


def _owned_by_a_rayjob(meta: Mapping[str, Any]) -> bool:
    """A RayJob's own RayCluster (KubeRay copies the job's annotations onto it) is the job's, not queued itself."""
    refs = meta.get("ownerReferences") or []
    return any(ref.get("kind") == keys.RAYJOB_KIND and ref.get("controller") for ref in refs)


def plan(obj: Mapping[str, Any], kind: JobKind, *, delete: bool, scheduler_name: str | None) -> Action | None:
    """What to do with one object: None when rayqueue never queued it (no enqueue stamp, or a RayJob's RayCluster);
    `leave` when it is admitted and running (not suspended); else `release`, or `delete` with `--delete`."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    enqueued = annotations.get(keys.ENQUEUE_TIMESTAMP)
    if enqueued is None or (kind is RAYCLUSTER and _owned_by_a_rayjob(meta)):
        return None

    def action(step: Step, reason: str, patch: tuple[Obj, ...] = ()) -> Action:
        return Action(kind, str(meta.get("namespace", "")), str(meta.get("name", "")), step, reason, str(enqueued),
                      str(meta.get("resourceVersion", "")), patch)

    if (obj.get("spec") or {}).get("suspend") is not True:
        admitted = annotations.get(keys.DEQUEUE_TIMESTAMP)
        finished = (obj.get("status") or {}).get("jobDeploymentStatus") in ("Complete", "Failed")
        if finished:
            return action("leave", "finished: nothing to release")
        return action("leave", f"admitted at {admitted}, not suspended: it runs on" if admitted
                      else "not suspended: it runs on")
    waiting = "waiting in its queue" if keys.DEQUEUE_TIMESTAMP not in annotations else "suspended by a reclaim"
    if delete:
        return action("delete", f"{waiting}: deleted (--delete)")
    return action("release", f"{waiting}: resumed unqueued", release_patch(obj, kind, scheduler_name))


def plan_all(objects: Iterable[tuple[JobKind, Mapping[str, Any]]], *, delete: bool,
             scheduler_name: str | None) -> list[Action]:
    """Every queued object's action, sorted by kind, namespace, name."""
    found = [a for kind, obj in objects if (a := plan(obj, kind, delete=delete, scheduler_name=scheduler_name))]
    return sorted(found, key=lambda a: (a.kind.kind, a.namespace, a.name))


def row(action: Action, outcome: str) -> Obj:
    return {"kind": action.kind.kind, "namespace": action.namespace, "name": action.name, "action": action.step,
            "reason": action.reason, "enqueued": action.enqueued, "outcome": outcome}


def report(rows: Sequence[Obj], *, dry_run: bool, delete: bool, scope: str) -> Obj:
    """The command's answer: each job with what was done, and the counts."""
    counts = {step: sum(1 for r in rows if r["action"] == step and r["outcome"] in ("done", "dry run"))
              for step in ("release", "delete", "leave")}
    failed = sum(1 for r in rows if r["outcome"] not in ("done", "dry run"))
    return {"kind": KIND, "dryRun": dry_run, "mode": "delete" if delete else "release", "scope": scope,
            "jobs": list(rows), "released": counts["release"], "deleted": counts["delete"], "left": counts["leave"],
            "failed": failed}


def render(rep: Mapping[str, Any]) -> str:
    lines = [f"{r['kind']} {r['namespace']}/{r['name']}: {r['action']}: {r['reason']} (enqueued {r['enqueued']})"
             + ("" if r["outcome"] in ("done", "dry run") else f": FAILED: {r['outcome']}") for r in rep["jobs"]]
    if not rep["jobs"]:
        lines.append(f"no job queued by rayqueue in {rep['scope']}")
    verb = "would be" if rep["dryRun"] else "were"
    lines.append(f"{rep['released']} {verb} released, {rep['deleted']} {verb} deleted, {rep['left']} left as they are "
                 f"(admitted or finished), {rep['failed']} failed")
    if rep["dryRun"] and (rep["released"] or rep["deleted"]):
        lines.append("a dry run: nothing was changed; run again with --yes to do it")
    return "\n".join(lines)


TEXT: Final = {KIND: render}


# ---------------------------------------------------------------------- the adapter
def _status(exc: Exception) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _reason(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    try:
        message = json.loads(body or "{}").get("message") if isinstance(body, str | bytes) else None
    except ValueError:
        message = None
    return f"{_status(exc)}: {message or getattr(exc, 'reason', exc)}"


class Cluster:
    """The reads and writes of the command, through the official client's CustomObjectsApi."""

    def __init__(self, custom: Any) -> None:
        self.custom = custom

    def list(self, kind: JobKind, namespace: str | None) -> list[Obj]:
        if namespace:
            found = self.custom.list_namespaced_custom_object(keys.RAY_GROUP, keys.RAY_VERSION, namespace, kind.plural)
        else:
            found = self.custom.list_cluster_custom_object(keys.RAY_GROUP, keys.RAY_VERSION, kind.plural)
        return list(found["items"])

    def get(self, kind: JobKind, namespace: str, name: str) -> Obj:
        return dict(self.custom.get_namespaced_custom_object(keys.RAY_GROUP, keys.RAY_VERSION, namespace, kind.plural,
                                                             name))

    def patch(self, action: Action) -> None:
        self.custom.patch_namespaced_custom_object(keys.RAY_GROUP, keys.RAY_VERSION, action.namespace,
                                                   action.kind.plural, action.name, list(action.patch),
                                                   _content_type=JSON_PATCH)

    def delete(self, action: Action) -> None:
        self.custom.delete_namespaced_custom_object(
            keys.RAY_GROUP, keys.RAY_VERSION, action.namespace, action.kind.plural, action.name,
            body={"preconditions": {"resourceVersion": action.resource_version}, "propagationPolicy": "Background"})

    def delete_queue_unit(self, action: Action) -> None:
        try:
            self.custom.delete_namespaced_custom_object(keys.QUEUE_GROUP, keys.QUEUE_VERSION, action.namespace,
                                                        keys.QUEUE_UNIT_PLURAL, action.queue_unit)
        except Exception as exc:  # the client's ApiException; gone already is fine
            if _status(exc) != 404:
                raise


def _carry_out(cluster: Cluster, action: Action, *, delete: bool, scheduler_name: str | None) -> str:
    """Do one action; on a conflict (the job changed since it was read) read it again and plan again."""
    for _ in range(CONFLICT_RETRIES):
        if action.step == "leave":
            return "done"
        try:
            (cluster.delete if action.step == "delete" else cluster.patch)(action)
            cluster.delete_queue_unit(action)
            return "done"
        except Exception as exc:  # the client's ApiException
            status = _status(exc)
            if status is None:
                raise
            # 409: the resourceVersion precondition; 422: the JSON patch's test op failed (changed meanwhile)
            if status not in (409, 422):
                return _reason(exc)
            try:
                fresh = cluster.get(action.kind, action.namespace, action.name)
            except Exception as again:
                return "gone meanwhile" if _status(again) == 404 else _reason(again)
            replanned = plan(fresh, action.kind, delete=delete, scheduler_name=scheduler_name)
            if replanned is None:
                return "no longer queued"
            action = replanned
    return f"changed {CONFLICT_RETRIES} times while being {action.step}d"


def run(custom: Any, *, namespace: str | None, delete: bool, yes: bool, scheduler_name: str | None) -> Obj:
    """List every queued job (in `namespace`, or all), plan, and (with `yes`) carry out; the report."""
    cluster = Cluster(custom)
    objects = [(kind, obj) for kind in KINDS for obj in cluster.list(kind, namespace)]
    actions = plan_all(objects, delete=delete, scheduler_name=scheduler_name)
    rows = []
    for action in actions:
        outcome = "dry run" if not yes else _carry_out(cluster, action, delete=delete, scheduler_name=scheduler_name)
        rows.append(row(action, "done" if action.step == "leave" else outcome))
    return report(rows, dry_run=not yes, delete=delete, scope=f"namespace {namespace}" if namespace else "the cluster")


def command(api: Any, args: argparse.Namespace) -> Obj:
    """The subcommand, with the plugin's Api (its CustomObjectsApi)."""
    return run(api.custom, namespace=args.namespace, delete=args.delete, yes=args.yes,
               scheduler_name=args.scheduler_name or None)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("release-queued", parents=[common],
                       help="before an uninstall: resume (or delete) every job rayqueue holds suspended")
    p.add_argument("--yes", action="store_true", help="do it (without: a dry run that prints what it would do)")
    p.add_argument("--delete", action="store_true", help="delete the waiting jobs instead of resuming them")
    p.add_argument("--scheduler-name", default="rayqueue-scheduler",
                   help="the scheduler name the webhook stamped, removed from the pod templates (default "
                        "rayqueue-scheduler; '' keeps every schedulerName)")
    p.description = (__doc__ or "").strip() + "\n\nWithout -n: every namespace."

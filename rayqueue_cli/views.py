"""The plugin's pure part: API objects (plain dicts) in, reports (plain dicts, for -o json) and text out.

Every number comes from what the controller publishes (the ElasticQuotaTree's status, the Queues'
statuses, the QueueUnits' statuses) or from the same pure functions the services use (``QuotaTree``,
``Ledger.check``, ``JobInfo.from_rayjob``), never from a copy of their rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from common import keys
from common.eta import eta_text
from common.explain import Explain, Stuck, advice, whatif
from common.explain import render as render_explain
from common.gotime import GoTimeError, format_rfc3339, parse_go
from common.kuberay_rules import managed_by_foreign_controller
from common.liveness import timeouts_so_far
from common.preview import Ahead, forecast_from_status, preview, usage_from_status
from common.quantity import format_quantity
from common.quota_tree import QuotaNode, QuotaTree
from common.rayjob import VALIDATION_FAILED, JobInfo
from common.resources import Resources

__all__ = ["missing_report", "queue_report", "render", "stuck_case", "top_report", "whatif_report", "why_report"]

BAR: Final = 20
Obj = Mapping[str, Any]


def _used(tree_obj: Obj) -> dict[str, Resources]:
    return usage_from_status(tree_obj.get("status"))


def _fmt(resource: str, value: int | None) -> str:
    return "-" if value is None else format_quantity(resource, value)


def _bar(used: int, limit: int | None, guaranteed: int) -> str:
    """``[#####|....    ]``: used filled, ``|`` at min, the bar's width is max (or used, when unbounded)."""
    scale = limit if limit else max(used, guaranteed, 1)
    filled = min(BAR, round(BAR * used / scale)) if scale else 0
    cells = ["#"] * filled + ["."] * (BAR - filled)
    mark = min(BAR - 1, round(BAR * guaranteed / scale)) if scale and guaranteed else None
    if mark is not None:
        cells[mark] = "|"
    return "[" + "".join(cells) + "]"


def top_report(tree_obj: Obj) -> dict[str, Any]:
    """Per quota node, in tree order: used / min / max per resource (what `kubectl rayqueue top` shows)."""
    tree = QuotaTree.parse(tree_obj)
    used = _used(tree_obj)
    rows = []
    fair = _fair_status(tree_obj)

    def walk(node: QuotaNode) -> None:
        u = used.get(node.full_name, Resources())
        decayed = fair["usage"].get(node.full_name, {}) if fair else {}
        resources = {}
        for r in sorted(set(node.min) | set(node.max) | set(u)):
            resources[r] = {"used": u.get(r), "min": node.min.get(r), "max": node.max.get(r) if r in node.max else None}
            if fair:  # decayed borrowed usage in unit-hours (cpu: core-hours)
                resources[r]["decayedHours"] = round(decayed.get(r, 0.0) / 3600 / (1000 if r == "cpu" else 1), 2)
        row = {"node": node.full_name, "depth": node.depth, "leaf": node.is_leaf,
               "namespaces": list(node.namespaces), "resources": resources}
        if fair:
            row["fairShare"] = fair["share"].get(node.full_name, 0.0)
        rows.append(row)
        for child in node.children:
            walk(tree.node(child))

    walk(tree.root)
    report: dict[str, Any] = {"kind": "QuotaTop", "nodes": rows}
    if fair:
        report["fairShare"] = {"halfLife": fair["halfLife"], "updated": fair["updated"]}
    return report


def _fair_status(tree_obj: Obj) -> dict[str, Any] | None:
    """The status's fair-share part (docs/fairshare.md) when the controller writes one."""
    fair = (tree_obj.get("status") or {}).get("fairShare")
    if not isinstance(fair, Mapping):
        return None
    usage, share = fair.get("usage"), fair.get("share")
    return {"halfLife": str(fair.get("halfLife", "")), "updated": str(fair.get("updated", "")),
            "usage": {str(n): dict(v) for n, v in usage.items() if isinstance(v, Mapping)}
            if isinstance(usage, Mapping) else {},
            "share": {str(n): float(v) for n, v in share.items() if isinstance(v, int | float)}
            if isinstance(share, Mapping) else {}}


def _top_text(report: Obj) -> str:
    fair = report.get("fairShare")
    extra = f" {'DECAYED·h':>10} {'SHARE/W':>8}" if fair else ""
    lines = [f"{'NODE':<36} {'RESOURCE':<16} {'USED':>10} {'MIN':>10} {'MAX':>10}{extra}  USAGE (| = min)"]
    if fair:
        lines.insert(0, f"fair share: half-life {fair['halfLife']}, decayed borrowed usage as of {fair['updated']}")
    for row in report["nodes"]:
        name = "  " * row["depth"] + row["node"].rsplit("/", 1)[-1]
        first = True
        for r, v in row["resources"].items():
            label = name if first else ""
            more = (f" {v['decayedHours']:>10g} {row['fairShare'] if first else '':>8}" if fair else "")
            lines.append(f"{label:<36} {r:<16} {_fmt(r, v['used']):>10} {_fmt(r, v['min']):>10} "
                         f"{_fmt(r, v['max']):>10}{more}  {_bar(v['used'], v['max'], v['min'])}")
            first = False
        if first:
            lines.append(name)
    return "\n".join(lines)


def _time(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_go(value)
    except GoTimeError:
        return None


def _unit_estimate(unit: Obj | None, now_ns: int) -> dict[str, Any]:
    """The QueueUnit's range: P50 and P90 times, the range as ``common.eta.eta_text`` tells it, and what it assumes."""
    status = (unit or {}).get("status") or {}
    start, latest = _time(status.get("estimatedStartTime")), _time(status.get("estimatedStartTimeLatest"))
    return {"estimatedStartTime": status.get("estimatedStartTime") if start is not None else None,
            "estimatedStartTimeLatest": status.get("estimatedStartTimeLatest") if latest is not None else None,
            "in": eta_text(start, latest, now_ns), "estimate": status.get("estimate")}


def queue_report(leaf: str, queue_obj: Obj, units: Mapping[tuple[str, str], Obj], now_ns: int) -> dict[str, Any]:
    """The leaf's waiting QueueUnits in order, each with its estimate when the caller may read it."""
    details = (queue_obj.get("status") or {}).get("queueItemDetails") or {}
    rows = []
    for listed in ("active", "backoff"):
        for d in details.get(listed) or []:
            unit = units.get((d.get("namespace", ""), d.get("name", "")))
            rows.append({"list": listed, "position": d.get("position"), "namespace": d.get("namespace"),
                         "queueUnit": d.get("name"), "priority": d.get("priority"), "visible": unit is not None,
                         **_unit_estimate(unit, now_ns)})
    return {"kind": "QueueListing", "leaf": leaf, "queue": queue_obj.get("metadata", {}).get("name"),
            "policy": (queue_obj.get("spec") or {}).get("queuePolicy"), "items": rows}


def _queue_text(report: Obj) -> str:
    lines = [f"queue {report['queue']} for {report['leaf']} (policy {report['policy']})",
             f"{'LIST':<8} {'POS':>4} {'NAMESPACE':<16} {'QUEUEUNIT':<36} {'PRIO':>5} {'ETA':<20} ESTIMATE"]
    for row in report["items"]:
        eta = row["in"] if row["visible"] else "(hidden)"
        note = row["estimate"] or ("" if row["visible"] else "not readable with your permissions")
        lines.append(f"{row['list']:<8} {row['position']!s:>4} {row['namespace']!s:<16} {row['queueUnit']!s:<36} "
                     f"{row['priority']!s:>5} {eta:<20} {note}")
    if not report["items"]:
        lines.append("(empty)")
    return "\n".join(lines)


def _node_numbers(tree_obj: Obj, node: str | None) -> dict[str, Any] | None:
    if not node:
        return None
    rows: list[dict[str, Any]] = top_report(tree_obj)["nodes"]
    return next((row for row in rows if row["node"] == node), None)


def stuck_case(job_obj: Obj, unit: Obj | None) -> Stuck | None:
    """The liveness case a job is stuck in, read from the job and its QueueUnit's status (None: none of them):
    another controller manages it (no QueueUnit is kept); its QueueUnit is Parked; KubeRay refused it
    (jobDeploymentStatus ValidationFailed); it finished while its pods still hold quota (the ``current`` size of a
    Succeed or Failed unit); it timed out at admission and was requeued (its ``rayqueue.io/admission-timeouts``)."""
    status = (unit or {}).get("status") or {}
    phase = status.get("phase")
    annotations = (job_obj.get("metadata") or {}).get("annotations") or {}
    if managed_by_foreign_controller(job_obj) is not None:
        return "managed-by"
    if phase == "Parked":
        return "parked"
    if ((job_obj.get("status") or {}).get("jobDeploymentStatus")) == VALIDATION_FAILED:
        return "kuberay-refused"
    if phase in ("Succeed", "Failed") and status.get("current") not in (None, "", "-"):
        return "draining"
    if phase in ("Backoff", "Enqueued", "Dequeued") and timeouts_so_far(annotations):
        return "admission-timeout"
    return None


def _not_queued(job_obj: Obj, tree_obj: Obj | None) -> str:
    """The record of a job another controller manages, in its words (its pods' leaf named when the tree is read)."""
    namespace = str((job_obj.get("metadata") or {}).get("namespace") or "")
    leaf = QuotaTree.parse(tree_obj).leaf_for_namespace(namespace) if tree_obj is not None else None
    return render_explain(Explain(why="managed-by", text=managed_by_foreign_controller(job_obj) or "",
                                  node=leaf.full_name if leaf is not None else None))


def why_report(job_obj: Obj, unit: Obj | None, tree_obj: Obj | None, events: Sequence[Obj],
               now_ns: int, kind: str = keys.RAYJOB_KIND) -> dict[str, Any]:
    """Where a RayJob (or bare RayCluster, ``kind``) is, what blocks it (the node and its numbers), the liveness case
    it is stuck in with what to do (``common.explain.advice``), its estimate and its recent events."""
    meta = job_obj.get("metadata") or {}
    status = (unit or {}).get("status") or {}
    case = stuck_case(job_obj, unit)
    message = str(status.get("message") or "") or (_not_queued(job_obj, tree_obj) if case == "managed-by" else "")
    if not message and case == "kuberay-refused":
        message = str((job_obj.get("status") or {}).get("message") or "")
    blocking = None
    if tree_obj is not None:
        tree = QuotaTree.parse(tree_obj)
        names = sorted((n.full_name for n in tree.nodes()), key=len, reverse=True)
        blocking = next((n for n in names if message.startswith(n + ":") or f" {n}:" in message), None)
    recent = sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))[-10:]
    key = f"{meta.get('namespace')}/{meta.get('name')}"
    return {
        "kind": "JobPlace",
        "jobKind": kind,
        "rayjob": key,
        "phase": status.get("phase"),
        "position": status.get("position"),
        "message": message or None,
        **_advice(case, key, kind),
        "blocking": blocking,
        "blockingNode": _node_numbers(tree_obj, blocking) if tree_obj is not None else None,
        **_unit_estimate(unit, now_ns),
        "events": [{"type": e.get("type"), "reason": e.get("reason"), "message": e.get("message"),
                    "time": e.get("lastTimestamp") or e.get("eventTime")} for e in recent],
    }


def _advice(case: Stuck | None, job: str, kind: str) -> dict[str, str | None]:
    found = advice(case, job, kind) if case is not None else None
    return {"case": case, "caseWords": found.what if found else None, "todo": found.todo if found else None}


def missing_report(namespace: str, name: str, kind: str = keys.RAYJOB_KIND) -> dict[str, Any]:
    """``why`` for a job that does not exist: the case of a create the webhook refused (nothing was made)."""
    key = f"{namespace}/{name}"
    return {"kind": "JobPlace", "jobKind": kind, "rayjob": key, "phase": None, "position": None, "message": None,
            **_advice("refused-at-create", key, kind), "blocking": None, "blockingNode": None,
            "estimatedStartTime": None, "estimatedStartTimeLatest": None, "in": None, "estimate": None, "events": []}


def _why_text(report: Obj) -> str:
    kind = report.get("jobKind") or keys.RAYJOB_KIND
    if report.get("case") == "refused-at-create":
        return f"{report['caseWords']}\n  do: {report['todo']}"
    place = report["phase"] or ("not queued" if report.get("case") == "managed-by" else "no QueueUnit yet")
    lines = [f"{kind} {report['rayjob']}: {place}" + (f", position {report['position']}" if report["position"] else "")]
    if report.get("case"):
        lines.append(f"  case: {report['caseWords']}")
    if report["message"]:
        lines.append(f"  why: {report['message']}")
    if report.get("todo"):
        lines.append(f"  do: {report['todo']}")
    node = report["blockingNode"]
    if node:
        for r, v in node["resources"].items():
            lines.append(f"  {node['node']} {r}: used {_fmt(r, v['used'])}, min {_fmt(r, v['min'])}, "
                         f"max {_fmt(r, v['max'])}")
    if report["phase"] in ("Enqueued", "Backoff"):
        when = report["estimatedStartTime"]
        latest = report.get("estimatedStartTimeLatest")
        lines.append(f"  estimated start: {report['in']}" + (
            f" (P50 at {when}, P90 by {latest})" if when and latest else f" (at {when})" if when else ""))
        if report["estimate"]:
            lines.append(f"  assuming: {report['estimate']}")
    if report["events"]:
        lines.append("  recent events:")
        lines += [f"    {e['time']}  {e['type']:<7} {e['reason']}: {e['message']}" for e in report["events"]]
    return "\n".join(lines)


def whatif_report(job_obj: Obj, tree_obj: Obj, queue_obj: Obj | None, namespace: str,
                  priority_class_value: int | None = None, *, now_ns: int) -> dict[str, Any]:
    """Would this RayJob, created now in ``namespace``, be admitted? Its request as the webhook computes
    it (``JobInfo.from_rayjob``), the leaf its namespace is bound to, ``Ledger.check`` against the tree's
    published usage, and its place in the leaf's queue (after every waiting job of equal or higher
    priority: it would be enqueued last)."""
    obj = {**job_obj, "metadata": {**(job_obj.get("metadata") or {}), "namespace": namespace}}
    job = JobInfo.from_rayjob(obj, priority_class_value=priority_class_value)
    tree = QuotaTree.parse(tree_obj)
    leaf = tree.leaf_for_namespace(namespace)
    report: dict[str, Any] = {"kind": "WhatIf", "namespace": namespace, "request": job.request.to_api(),
                              "priority": job.priority, "leaf": leaf.full_name if leaf else None}
    if leaf is None:
        report.update(queued=False, admitted=True,
                      message=f"namespace {namespace} is not bound to a leaf of the {keys.QUOTA_TREE_KIND}: "
                              "not queued, it would start at once")
        return report
    used = usage_from_status(tree_obj.get("status"))
    details = ((queue_obj or {}).get("status") or {}).get("queueItemDetails") or {}
    waiting = sorted((Ahead(str(d.get("namespace", "")), str(d.get("name", "")), int(d.get("priority") or 0))
                      for lst in ("active", "backoff") for d in details.get(lst) or []), key=lambda a: -a.priority)
    found = preview(tree, leaf, used, waiting, key=f"{namespace}/{job.name or '(new)'}", request=job.request,
                    priority=job.priority, preemptible=job.preemptible, now_ns=now_ns,
                    forecast=forecast_from_status(leaf.full_name, (queue_obj or {}).get("status")))
    decision, ahead = found.decision, found.ahead
    report.update(queued=True, admitted=found.fits_now, position=found.position,
                  waitingAhead=len(ahead), rule=decision.rule or None, blocking=decision.blocking,
                  guaranteed=found.guaranteed,
                  message=whatif(decision.why(), len(ahead), job.priority),
                  estimatedStartTime=format_rfc3339(found.start_ns) if found.start_ns is not None else None,
                  estimatedStartTimeLatest=format_rfc3339(found.latest_ns) if found.latest_ns is not None else None,
                  eta=eta_text(found.start_ns, found.latest_ns, now_ns) if found.start_ns is not None else None,
                  estimate=found.start_note + (f"; {found.assumes}" if found.assumes and not found.fits_now else ""),
                  notes=["usage is the tree's published status (the controller's last pass); job counts "
                         "(kube-queue/max-jobs) are not in it and are not checked now; the start is the "
                         "leaf Queue's status.forecast, replayed by the controller"])
    return report


def _whatif_text(report: Obj) -> str:
    request = ", ".join(f"{k} {v}" for k, v in report["request"].items())
    if not report.get("queued"):
        return f"{report['message']}\n  request: {request}"
    verdict = "would start now" if report["admitted"] else f"would wait at position {report['position']}"
    lines = [f"in {report['leaf']} (priority {report['priority']}, request {request}): {verdict}",
             f"  {report['message']}"]
    if report.get("guaranteed"):
        lines.append("  within the leaf's min: guaranteed (borrowers elsewhere would be reclaimed for it)")
    if not report["admitted"]:
        when, latest = report.get("estimatedStartTime"), report.get("estimatedStartTimeLatest")
        at = f"P50 at {when}, P90 by {latest}" if latest else f"at {when}"
        lines.append(f"  estimated start: {report.get('eta')}, {at} ({report.get('estimate')})" if when else
                     f"  estimated start: {report.get('estimate')}")
    lines += [f"  note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines)


def retry_report(namespace: str, name: str, count: str | None) -> dict[str, Any]:
    """``kubectl rayqueue retry``: the count of admission timeouts removed (None: the job had none)."""
    return {"kind": "Retry", "namespace": namespace, "name": name, "removed": count}


def _retry_text(report: Obj) -> str:
    key = f"{report['namespace']}/{report['name']}"
    if report["removed"] is None:
        return f"{key}: no {keys.ADMISSION_TIMEOUTS} to remove: it is not parked by admission timeouts"
    return (f"{key}: removed {keys.ADMISSION_TIMEOUTS} ({report['removed']}): it is tried again at its original "
            "place in its queue")


_TEXT = {"QuotaTop": _top_text, "QueueListing": _queue_text, "JobPlace": _why_text, "WhatIf": _whatif_text,
         "Retry": _retry_text}


def render(report: Obj) -> str:
    return _TEXT[str(report["kind"])](report)

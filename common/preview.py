"""What would happen to a RayJob submitted now, from what the controller publishes: the preview shared by
the webhook's create warning and `kubectl rayqueue whatif`.

Inputs are the ElasticQuotaTree's ``status.nodes[*].used`` (the controller's last pass), the leaf Queue's
waiting items (priorities, in order) and its ``status.forecast``, and the ETAs on waiting QueueUnits. The
quota answer now is ``Ledger.check`` on a ledger rebuilt from that usage (one claim per leaf holding its
usage, the rest at the root; job counts are not published, so kube-queue/max-jobs is not checked now). The
job would be enqueued last among equal priorities, so its position is one more than the waiting jobs of
equal or higher priority.

Its start: now if it fits and no one is ahead; otherwise the leaf's Forecast, which the controller's
estimator replays with the admission rules (``common.start_times.replay``): the first opening at the tail of
the leaf's queue that its request fits. Without a forecast (none published yet), the estimate of the job
just ahead of it is told as a lower bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from common.estimate_range import RangedForecast
from common.eta import eta_text
from common.explain import render
from common.gotime import GoTimeError, format_rfc3339, parse_go
from common.ledger import Claim, Decision, Ledger
from common.quantity import format_quantity
from common.quota_tree import QuotaNode, QuotaTree
from common.resources import Resources
from common.start_times import Band, Forecast, Opening

__all__ = ["Ahead", "Preview", "forecast_from_status", "forecast_status", "ledger_from_usage", "preview",
           "usage_from_status"]


@dataclass(frozen=True, slots=True)
class Ahead:
    """A waiting job in the leaf's queue: its QueueUnit, priority and ETA (None: none published or not known)."""

    namespace: str
    name: str
    priority: int
    eta_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Preview:
    leaf: str
    position: int
    ahead: tuple[Ahead, ...]
    decision: Decision
    guaranteed: bool
    start_ns: int | None  # None: cannot be told (the P50 when the forecast has a range)
    start_note: str  # how the start was told, or why not
    latest_ns: int | None = None  # the P90 bound (None: start_ns is a lower bound only)
    assumes: str = ""  # what the range assumes, or why there is none (the forecast's)

    @property
    def fits_now(self) -> bool:
        return bool(self.decision) and not self.ahead


def usage_from_status(status: Mapping[str, object] | None) -> dict[str, Resources]:
    """``status.nodes[name].used`` per node, parsed (malformed entries are skipped)."""
    nodes = (status or {}).get("nodes")
    out: dict[str, Resources] = {}
    for name, entry in nodes.items() if isinstance(nodes, Mapping) else ():
        used = entry.get("used") if isinstance(entry, Mapping) else None
        try:
            out[str(name)] = Resources.parse(used if isinstance(used, Mapping) else {})
        except ValueError:
            continue
    return out


def _opening_rows(openings: Sequence[Opening]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for o in openings:  # whole seconds, rounded up: an opening is never told earlier than replayed
        row: dict[str, object] = {"at": format_rfc3339(-(-o.at_ns // 10**9) * 10**9), "free": o.free.to_api()}
        if o.slots is not None:
            row["slots"] = o.slots
        if o.guaranteed:
            row["guaranteed"] = o.guaranteed.to_api()
        rows.append(row)
    return rows


def forecast_status(forecast: Forecast) -> dict[str, object]:
    """The Queue's ``status.forecast``: ``{openings: [{at, free, slots?, guaranteed?}], note, bands:
    [{abovePriority, openings}], latest: {openings, bands}, assumes}``, times in RFC 3339. ``openings`` and
    ``bands`` are the P50 (common/estimate_range.py), ``latest`` the P90 (absent: a lower bound only), and
    ``assumes`` what they assume."""
    out: dict[str, object] = {"openings": _opening_rows(forecast.openings), "note": forecast.note}
    if forecast.bands:
        out["bands"] = [{"abovePriority": b.above, "openings": _opening_rows(b.openings)} for b in forecast.bands]
    if isinstance(forecast, RangedForecast):
        out["latest"] = None
        if forecast.latest is not None:
            latest = forecast_status(forecast.latest)
            out["latest"] = {"openings": latest["openings"], "bands": latest.get("bands", [])}
        out["assumes"] = forecast.assumes or None
    return out


def _openings(rows: object) -> tuple[Opening, ...] | None:
    if not isinstance(rows, list):
        return None
    out = []
    for row in rows:
        if not isinstance(row, Mapping) or not isinstance(row.get("at"), str):
            return None
        slots = row.get("slots")
        try:
            free = Resources.parse(row.get("free") if isinstance(row.get("free"), Mapping) else {})
            within = Resources.parse(row.get("guaranteed") if isinstance(row.get("guaranteed"), Mapping) else {})
            at = parse_go(str(row["at"]))
        except (ValueError, GoTimeError):
            return None
        out.append(Opening(at, free, slots if isinstance(slots, int) and not isinstance(slots, bool) else None, within))
    return tuple(out)


def _forecast(leaf: str, found: Mapping[str, object]) -> Forecast | None:
    tail = _openings(found.get("openings"))
    if tail is None:
        return None
    bands = []
    rows = found.get("bands")
    for row in rows if isinstance(rows, list) else []:
        above = row.get("abovePriority") if isinstance(row, Mapping) else None
        openings = _openings(row.get("openings")) if isinstance(row, Mapping) else None
        if not isinstance(above, int) or isinstance(above, bool) or openings is None:
            return None
        bands.append(Band(above, openings))
    return Forecast(leaf, tail, str(found.get("note") or ""), tuple(bands))


def forecast_from_status(leaf: str, status: Mapping[str, object] | None) -> RangedForecast | None:
    """The Forecast a Queue's status publishes (P50, with its P90 ``latest`` when published), or None when it
    has none or it is malformed."""
    found = (status or {}).get("forecast")
    if not isinstance(found, Mapping):
        return None
    p50 = _forecast(leaf, found)
    if p50 is None:
        return None
    latest_row = found.get("latest")
    latest = _forecast(leaf, {**latest_row, "note": p50.note}) if isinstance(latest_row, Mapping) else None
    assumes = found.get("assumes")
    return RangedForecast(leaf, p50.openings, p50.note, p50.bands, latest, assumes if isinstance(assumes, str) else "")


def ledger_from_usage(tree: QuotaTree, used: Mapping[str, Resources]) -> Ledger:
    """A ledger whose usage per node is the published one: a claim per leaf, the remainder at the root."""
    ledger = Ledger(tree)
    accounted = Resources()
    for leaf in tree.leaves():
        u = used.get(leaf.full_name)
        if u:
            ledger.add(Claim(uid=f"used:{leaf.full_name}", key=f"(used in {leaf.full_name})", kind="pod",
                             quota=leaf.full_name, request=u))
            accounted = accounted + u
    rest = (used.get(tree.root.full_name, Resources()) - accounted).clamp_low()
    if rest:
        ledger.add(Claim(uid="used:other", key="(used outside the leaves)", kind="pod", quota="", request=rest))
    return ledger


def preview(
    tree: QuotaTree,
    leaf: QuotaNode,
    used: Mapping[str, Resources],
    waiting: Sequence[Ahead],
    *,
    key: str,
    request: Resources,
    priority: int,
    preemptible: bool,
    now_ns: int,
    forecast: Forecast | None = None,
) -> Preview:
    ledger = ledger_from_usage(tree, used)
    claim = Claim(uid="preview", key=key, kind="job", quota=leaf.full_name, request=request, priority=priority,
                  preemptible=preemptible)
    decision = ledger.check(claim)
    ahead = tuple(w for w in waiting if w.priority >= priority)
    start: int | None
    latest: int | None = None
    assumes = forecast.assumes if isinstance(forecast, RangedForecast) else ""
    if decision and not ahead:
        start, note, latest = now_ns, "it fits now", now_ns
    elif forecast is not None:
        start = forecast.start(request, now_ns, priority=priority, preemptible=preemptible)
        bound = forecast.latest if isinstance(forecast, RangedForecast) else None
        if start is not None and bound is not None:
            found = bound.start(request, now_ns, priority=priority, preemptible=preemptible)
            latest = None if found is None else max(start, found)
        if start is None:
            note = forecast.note
        else:
            band = next((b for b in forecast.bands if b.applies(priority)), None)
            before = [w for w in waiting if band is None or w.priority > (band.above or 0)]
            queued = f"behind the {len(before)} job{'s' if len(before) != 1 else ''} waiting in {leaf.full_name}"
            note = "replayed " + (queued + " it does not pass, " if before else "") + \
                "as running jobs end at their expected times"
    elif ahead and ahead[-1].eta_ns is not None:
        last = ahead[-1]
        start = max(now_ns, last.eta_ns or now_ns)
        note = f"after {last.namespace}/{last.name}, the job just ahead of it, expected to start {eta_text(start, None, now_ns)}"
    elif ahead:
        start, note = None, f"no estimate: {ahead[-1].namespace}/{ahead[-1].name}, the job just ahead of it, has none"
    else:
        start, note = None, "no estimate: no job ahead, and the running jobs' ends are the controller's to replay"
    return Preview(leaf.full_name, len(ahead) + 1, ahead, decision, ledger.is_guaranteed(claim), start, note,
                   latest, assumes)


def warning(p: Preview, request: Resources, leaf: QuotaNode, used: Mapping[str, Resources], now_ns: int) -> str:
    """``queued in root/algorithm/video at position 3; needs cpu 12500m, leaf has 1500m free of max 14;
    estimated start ~4m, by 11m, P50 at ..., P90 by ... (replayed ...; what the range assumes)`` (the resource
    shown is the scarcest the job asks for; the range as ``common.eta.eta_text`` tells it everywhere)."""
    leaf_used = used.get(leaf.full_name, Resources())
    limited = [r for r in sorted(request) if r in leaf.max]
    text = f"queued in {p.leaf} at position {p.position}"
    if limited:
        def short(r: str) -> float:
            return (leaf.max[r] - leaf_used.get(r)) / max(1, request.get(r))

        r = min(limited, key=short)
        free = max(0, leaf.max[r] - leaf_used.get(r))
        text += (f"; needs {r} {format_quantity(r, request.get(r))}, leaf has {format_quantity(r, free)} free of "
                 f"max {format_quantity(r, leaf.max[r])}")
    if p.fits_now:
        return text + "; it fits now: estimated start at the next admission pass"
    if not p.decision:
        text += f" ({render(p.decision.why())})"
    if p.start_ns is None:
        return text + f"; estimated start {p.start_note}"
    if p.start_note.startswith("replayed"):
        when = (f"at {format_rfc3339(p.start_ns)}" if p.latest_ns is None else
                f"P50 at {format_rfc3339(p.start_ns)}, P90 by {format_rfc3339(p.latest_ns)}")
        assumes = f"; {p.assumes}" if p.assumes else ""
        return text + f"; estimated start {eta_text(p.start_ns, p.latest_ns, now_ns)}, {when} ({p.start_note}{assumes})"
    return text + f"; estimated start {eta_text(p.start_ns, None, now_ns)} ({p.start_note})"

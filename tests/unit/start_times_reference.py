"""When will a waiting RayJob start? Replays the controller's admission pass over the expected ends of
running jobs, in simulated time, and says what the answer assumes.

The world at ``now``: the ledger (what admitted jobs hold), the waiting items with each leaf's policy,
and for every running job its expected end. The simulation runs ``common.admission.AdmissionPass`` through
``Queues.schedule`` exactly as a reconcile does (queue order across the whole tree, borrowing, max-jobs,
capacity, guaranteed-first and reclaim), admits what fits at ``now``, then jumps to the next expected
release, frees that claim and passes again, until every waiting job has a start or nothing more can be
said. A job admitted in the simulation holds its request for its own expected runtime.

A job's expected runtime, in order: the ``rayqueue.io/expected-runtime`` annotation (a Go duration),
``spec.activeDeadlineSeconds`` (KubeRay v1.7 ``checkActiveDeadlineAndUpdateStatusIfNeeded`` fails the job
once it ran that long, so it is an upper bound), the median of the leaf's last ``HISTORY_SIZE`` runtimes,
or unknown. A job that waits for a claim of unknown end gets no time, and its message says which jobs
it waits for: the estimator never invents a number.

Assumptions, stated in every message: declared runtimes hold, nothing else arrives or changes, and a
finished job's claim is free at once. A reclaim victim is requeued at once and its claim drains for
``DRAIN_SECONDS`` (its pods terminating), as the controller sees it; it restarts from scratch. A victim
of a leaf with a preemption grace (common/preemption.py) holds its claim for that grace first, and one
already under notice (the snapshot's releasing job) until its deadline.

Cost: one pass per group of releases (those within 1 % of the elapsed simulated time, at least 1 s,
are taken together at the last of them: the error this adds is within 1 % of the wait), each trying at
most ``window`` candidates: only the first ``window`` waiting
jobs in global queue order are in the simulated queues, and the next one joins whenever one leaves. A
Round-policy job further back that would slip past a refused head is therefore seen late (its estimate
is later than it may be, never earlier); jobs past ``max_releases`` simulated releases are "beyond the
horizon". Both bounds are named in the messages they affect.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from common import keys
from common.admission import AdmissionPass, copy_ledger
from common.clock import FakeClock
from common.gotime import format_duration, parse_duration
from common.ledger import Claim, Decision, Ledger
from common.preemption import grace_ns
from common.queueing import QueueItem, QueuePolicy, Queues
from common.resources import EMPTY, Resources

__all__ = [
    "HISTORY_SIZE",
    "MAX_OPENINGS",
    "Band",
    "Estimate",
    "Forecast",
    "Opening",
    "Replay",
    "Running",
    "Runtime",
    "Waiting",
    "estimate",
    "format_duration",
    "in_about",
    "parse_duration",
    "replay",
    "runtime_of",
]

HISTORY_SIZE: Final = 20
NS: Final = 10**9
DRAIN_SECONDS: Final = 5.0  # a reclaim victim's pods terminating (the kubelet's grace, roughly)
MAX_OPENINGS: Final = 8  # openings kept per leaf and band in a Forecast
MAX_BANDS: Final = 3  # priority bands above the tail, per leaf (the highest waiting priorities)
RuntimeSource = Literal["declared", "deadline", "history", "unknown"]

# --- runtimes --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Runtime:
    """How long a job holds its quota once admitted, and where that number comes from."""

    seconds: float | None
    source: RuntimeSource
    detail: str  # for messages: "declared 10m0s", "median 3m12s of the last 20 jobs of root/a/v"


def runtime_of(
    annotations: Mapping[str, str],
    active_deadline_seconds: int | None,
    history: Sequence[float],
    leaf: str,
) -> Runtime:
    """The expected runtime of a job (see the module docstring for the order)."""
    declared = annotations.get(keys.EXPECTED_RUNTIME)
    if declared is not None:
        try:
            seconds = parse_duration(declared)
        except ValueError:
            seconds = -1.0
        if seconds > 0:
            return Runtime(seconds, "declared", f"declared {format_duration(seconds)}")
    if active_deadline_seconds:
        return Runtime(
            float(active_deadline_seconds),
            "deadline",
            f"activeDeadlineSeconds {format_duration(active_deadline_seconds)}",
        )
    recent = [h for h in history[-HISTORY_SIZE:] if h >= 0]
    if recent:
        mid = statistics.median(recent)
        return Runtime(
            mid, "history", f"median {format_duration(mid)} of the last {len(recent)} jobs of {leaf}"
        )
    return Runtime(None, "unknown", "no expected runtime")


def remember(history: Sequence[float], seconds: float) -> list[float]:
    """The leaf's history with one more finished runtime, the oldest dropped beyond ``HISTORY_SIZE``."""
    return [*history, max(0.0, seconds)][-HISTORY_SIZE:]


# --- the world -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Running:
    """An admitted job: its claim, when it was admitted, its runtime, and its enqueue time (a reclaim
    victim requeues at its original place)."""

    claim: Claim
    started_ns: int
    runtime: Runtime
    enqueue_ns: int = 0
    # A reclaim victim already chosen (under a preemption notice): it holds its claim for its runtime, then its
    # claim drains like a simulated victim's; no simulated reclaim picks it again.
    releasing: bool = False

    def end_ns(self, now_ns: int) -> int | None:
        if self.runtime.seconds is None:
            return None
        return max(now_ns, self.started_ns + round(self.runtime.seconds * NS))


@dataclass(frozen=True, slots=True)
class Waiting:
    item: QueueItem
    runtime: Runtime
    preemptible: bool = True


@dataclass(frozen=True, slots=True)
class Estimate:
    """A waiting job's expected start (None: unknown) and what the estimate assumes."""

    uid: str
    key: str
    quota: str
    start_ns: int | None
    message: str
    reason: str = ""  # why it does not start now (the pass's refusal), "" if it would
    waits_for: tuple[str, ...] = ()  # running jobs (keys) whose end it waits for


@dataclass(slots=True)
class _Sim:
    """The simulated world's PassSource."""

    queues: Queues
    preemptible_of: dict[str, bool] = field(default_factory=dict)
    draining: set[str] = field(default_factory=set)  # reclaim victims whose claim drains

    def releasing(self, uid: str) -> bool:
        return uid in self.draining  # a finished job's release in the simulation is immediate

    def terminating_pods(self, uid: str) -> int:
        return 1 if uid in self.draining else 0

    def preemptible(self, uid: str) -> bool:
        return self.preemptible_of.get(uid, True)


@dataclass(frozen=True, slots=True)
class Opening:
    """In the replay, from ``at_ns`` on, a job at the tail of the leaf's queue could take ``free`` (the max
    rules along its path and the cluster capacity; a resource absent is unbounded) and ``slots`` more jobs
    under max-jobs (None: uncapped)."""

    at_ns: int
    free: Resources
    slots: int | None = None
    # What it could take by reclaim: within the leaf's min and the room reclaim can make (absent: nothing).
    guaranteed: Resources = EMPTY

    def fits(self, request: Mapping[str, int]) -> bool:
        return Resources().fits(request, self.free) and (self.slots is None or self.slots >= 1)

    def fits_min(self, request: Mapping[str, int]) -> bool:
        """Guaranteed: reclaim takes borrowed capacity back for it (the same rule as ``is_guaranteed``)."""
        limit = {r: self.guaranteed.get(r, 0) for r in set(self.guaranteed) | set(request)}
        return Resources().fits(request, limit) and (self.slots is None or self.slots >= 1)


@dataclass(frozen=True, slots=True)
class Band:
    """The openings for a job of priority above ``above`` (None: the tail, below every waiting job): it
    passes, in every pass, the waiting jobs of lower priority, so what they were admitted to is its too."""

    above: int | None
    openings: tuple[Opening, ...]

    def applies(self, priority: int) -> bool:
        return self.above is None or priority > self.above


@dataclass(frozen=True, slots=True)
class Forecast:
    """When a job submitted now, of any size, would start in a leaf: the replay's openings for the tail of
    the leaf's queue, what is left after every pass once the jobs ahead have been tried (in a Block leaf,
    once every job waiting there has started). Only openings that free more than every earlier one are
    kept (the first one a request fits is the same), at most ``MAX_OPENINGS``.

    A new job joins the tail (the latest enqueue time, lowest in the pass), so the forecast is for the last
    place: one of higher priority passes jobs ahead and may start sooner (never later). Reclaim by the new
    job itself and the guaranteed-first guard against it are not in the openings; ``note`` says why they
    end."""

    leaf: str
    openings: tuple[Opening, ...]  # the tail's: behind every waiting job
    note: str
    bands: tuple[Band, ...] = ()  # for higher priorities, highest first

    def start(self, request: Mapping[str, int], now_ns: int, *, priority: int | None = None,
              preemptible: bool = True) -> int | None:
        """The first opening the request fits, or, within the leaf's min, that opening plus the drain of
        what reclaim takes back for it (a job that is not preemptible may only use guaranteed capacity).
        With a priority, the openings of the highest band it is above."""
        openings = self.openings
        if priority is not None:
            openings = next((b.openings for b in self.bands if b.applies(priority)), openings)
        for opening in openings:
            if preemptible and opening.fits(request):
                return max(now_ns, opening.at_ns)
            if opening.fits_min(request):
                drain = 0 if opening.fits(request) else round(DRAIN_SECONDS * NS)
                return max(now_ns, opening.at_ns + drain)
        return None


@dataclass(frozen=True, slots=True)
class Replay:
    estimates: dict[str, Estimate]
    forecasts: dict[str, Forecast]


def _covers(more: Resources, less: Resources) -> bool:
    """``more`` fits every request ``less`` fits, read as limits (a resource absent is unbounded)."""
    return set(more) <= set(less) and all(more[r] >= v for r, v in less.items() if r in more)


def _dominated(new: Opening, earlier: Sequence[Opening]) -> bool:
    for o in earlier:
        more_slots = o.slots is None or (new.slots is not None and o.slots >= new.slots)
        more_min = set(new.guaranteed) <= set(o.guaranteed) and all(
            o.guaranteed[r] >= v for r, v in new.guaranteed.items())
        if more_slots and more_min and _covers(o.free, new.free):
            return True
    return False


def in_about(start_ns: int | None, now_ns: int) -> str:
    """``~4m0s`` from now (``now`` if due), or ``unknown``: for people, not for statuses (it ages)."""
    if start_ns is None:
        return "unknown"
    if start_ns <= now_ns:
        return "now"
    return "~" + format_duration((start_ns - now_ns) / NS)


def estimate(
    ledger: Ledger,
    running: Iterable[Running],
    waiting: Iterable[Waiting],
    now_ns: int,
    *,
    policies: Mapping[str, QueuePolicy] | None = None,
    window: int = 128,
    max_releases: int = 1000,
    resolution: float = 0.01,
) -> dict[str, Estimate]:
    """An Estimate for every waiting job, by uid. ``ledger`` is not changed. ``window`` waiting jobs are
    in the simulated queues at a time, at most ``max_releases`` releases are replayed, and releases less
    than ``resolution`` x the time from now (at least 1 s) apart are replayed together."""
    return replay(ledger, running, waiting, now_ns, policies=policies, window=window, max_releases=max_releases,
                  resolution=resolution, forecast=False).estimates


def replay(
    ledger: Ledger,
    running: Iterable[Running],
    waiting: Iterable[Waiting],
    now_ns: int,
    *,
    policies: Mapping[str, QueuePolicy] | None = None,
    window: int = 128,
    max_releases: int = 1000,
    resolution: float = 0.01,
    forecast: bool = True,
) -> Replay:
    """``estimate``, and with ``forecast`` a Forecast for every leaf: once the waiting jobs are placed the
    replay goes on through the releases (up to ``max_releases`` in all), recording what each leaf could
    take at the tail of its queue."""
    sim_ledger = copy_ledger(ledger)
    queues = Queues(FakeClock())
    for leaf, policy in sorted((policies or {}).items()):
        queues.set_policy(leaf, policy)
    source = _Sim(queues)

    pending = sorted(waiting, key=lambda w: w.item.sort_key)
    info = {w.item.uid: w for w in pending}
    for w in pending:
        source.preemptible_of[w.item.uid] = w.preemptible
    outside = iter(pending)  # waiting jobs not yet in the simulated queues, in order
    outside_left: dict[str, int] = {}
    for w in pending:
        outside_left[w.item.quota] = outside_left.get(w.item.quota, 0) + 1
    leaves = [leaf.full_name for leaf in sim_ledger.tree.leaves()] if forecast else []
    # Bands: a job above each of the highest waiting priorities passes the jobs below it.
    levels = sorted({w.item.priority for w in pending}, reverse=True)[:MAX_BANDS]
    bands: list[int | None] = [*levels, None]  # highest first; None is the tail
    openings: dict[tuple[str, int | None], list[Opening]] = {(leaf, b): [] for leaf in leaves for b in bands}
    admitted_at_t: list[Claim] = []  # admitted in the passes at t
    heads_at_t: set[str] = set()  # the guaranteed heads of the first pass at t (guaranteed-first holds for them)

    def refill() -> None:
        while len(queues) < window:
            nxt = next(outside, None)
            if nxt is None:
                return
            outside_left[nxt.item.quota] -= 1
            queues.upsert(nxt.item)

    def record(t: int, decide: AdmissionPass) -> None:
        """After the passes at ``t``: what is left for a job behind every waiting one. In a Block leaf only
        once its queue is empty (its refused head stops everything behind it); in a Round leaf at once (a
        pass tries the tail too), but only once the window has taken in all of the leaf's waiting jobs."""
        view = decide.view
        for leaf in leaves:
            if outside_left.get(leaf):
                continue
            within = view.within_min(leaf)
            if within and not Resources().fits(within, view.headroom(leaf)[0]):
                room = decide.reclaim_view.reclaim_room(leaf, within)  # what reclaim can free, as far as needed
                within = Resources({r: min(v, room[r]) if r in room else v for r, v in within.items()})
            waiting_here = (*queues.active(leaf), *queues.backoff(leaf))
            for band in bands:
                kept = openings[leaf, band]
                if len(kept) >= MAX_OPENINGS:
                    continue
                if queues.policy(leaf) == "Block" and any(band is None or w.priority > band for w in waiting_here):
                    continue  # a job ahead of it in its own leaf still waits, and blocks it
                # What it passes: the lower jobs admitted at t, but for another leaf's guaranteed head, which
                # guaranteed-first keeps capacity for (a borrowing job may not take what it needs).
                passed = [c for c in admitted_at_t
                          if band is not None and c.priority <= band and (c.uid not in heads_at_t or c.quota == leaf)]
                passed += [c for c in decide.reclaiming if band is not None and c.priority <= band]
                free, slots = view.headroom(leaf, without=passed)
                opening = Opening(t, free, slots, within)
                if not _dominated(opening, kept):
                    kept.append(opening)

    def forecasts_done() -> bool:
        return all(len(kept) >= MAX_OPENINGS for kept in openings.values())

    holders: dict[str, Running] = {}  # uid -> running (real or simulated) with its runtime
    ends: list[tuple[int, str]] = []  # (end_ns, uid), lazily cleaned: valid while end_of[uid] matches
    end_of: dict[str, int] = {}
    unknown: dict[str, Running] = {}  # running with no expected end
    for r in running:
        if r.claim.uid not in sim_ledger:
            continue
        holders[r.claim.uid] = r
        source.preemptible_of[r.claim.uid] = r.claim.preemptible
        if r.releasing:
            source.draining.add(r.claim.uid)
        end = r.end_ns(now_ns)
        if end is None:
            unknown[r.claim.uid] = r
        else:
            end_of[r.claim.uid] = end
            heapq.heappush(ends, (end, r.claim.uid))

    first: dict[str, Decision] = {}  # the first decision on each job (at now, for those in the window)
    started: dict[str, int] = {}
    released: list[tuple[int, Running]] = []  # (time, what ended), in time order
    t = now_ns
    releases = 0
    refill()
    while True:
        for attempt in range(len(info) + 1):  # passes at time t until nothing changes (each admits or reclaims)
            queues.retry_now()
            decide = AdmissionPass(source, sim_ledger, t)
            if attempt == 0:
                heads_at_t = {h.uid for h in decide.heads}
            recorded: dict[str, Decision] = {}

            def try_admit(item: QueueItem, decide: AdmissionPass = decide,
                          recorded: dict[str, Decision] = recorded) -> Decision:
                decision = decide(item)
                recorded[item.uid] = decision
                return decision

            queues.schedule(try_admit, sim_ledger.generation)
            for uid, decision in recorded.items():
                first.setdefault(uid, decision)
            # A victim admitted earlier in the same pass (the pass's reclaim view holds its admissions)
            # ends up where the controller leaves it: its Suspend lands first and the Dequeue, guarded by
            # the older resourceVersion, conflicts, so it stays waiting and nothing drains.
            admitted_now = {c.uid for c, _ in decide.admitted}
            bounced = {v.uid for v, _ in decide.victims if v.uid in admitted_now}
            for uid in sorted(bounced):
                queues.upsert(info[uid].item)
            for victim, _claimant in decide.victims:
                if victim.uid in bounced:
                    continue
                held = holders.pop(victim.uid, None)
                unknown.pop(victim.uid, None)
                source.draining.add(victim.uid)
                # with a preemption grace, the victim runs on until its notice expires, then drains
                end_of[victim.uid] = t + grace_ns(sim_ledger.tree, victim.quota) + round(DRAIN_SECONDS * NS)
                heapq.heappush(ends, (end_of[victim.uid], victim.uid))
                namespace, _, name = victim.key.partition("/")
                item = QueueItem(uid=victim.uid, namespace=namespace, name=name, quota=victim.quota,
                                 priority=victim.priority, enqueue_ns=held.enqueue_ns if held else 0,
                                 request=victim.request)
                runtime = held.runtime if held else Runtime(None, "unknown", "no expected runtime")
                info.setdefault(victim.uid, Waiting(item, runtime, victim.preemptible))
                queues.upsert(item)
            for claim, _ in decide.admitted:
                if claim.uid in bounced:
                    continue
                admitted_at_t.append(claim)
                sim_ledger.add(claim)
                admitted = info[claim.uid]
                started.setdefault(claim.uid, t)
                sim = Running(claim, t, admitted.runtime, admitted.item.enqueue_ns)
                holders[claim.uid] = sim
                end = sim.end_ns(t)
                if end is None:
                    unknown[claim.uid] = sim
                else:
                    end_of[claim.uid] = end
                    heapq.heappush(ends, (end, claim.uid))
            refill()
            if len(decide.admitted) + len(decide.victims) == 2 * len(bounced):
                break  # nothing changed
        record(t, decide)  # the last pass: what it admitted, what reclaim claimants reserved, what is leaving
        admitted_at_t.clear()
        if (len(queues) == 0 and forecasts_done()) or releases >= max_releases:
            break
        # The next release(s).
        while ends and end_of.get(ends[0][1]) != ends[0][0]:
            heapq.heappop(ends)
        if not ends:
            break
        # Releases within `resolution` of the elapsed time are taken together, at the last of them
        # (so a start is never estimated earlier for it): the passes grow with log(horizon), not releases.
        first_end = ends[0][0]
        bucket_end = first_end + max(NS, round((first_end - now_ns) * resolution))
        t = first_end
        while ends and ends[0][0] <= bucket_end:
            end, uid = heapq.heappop(ends)
            if end_of.get(uid) != end:
                continue
            t = end
            del end_of[uid]
            sim_ledger.remove(uid)
            releases += 1
            if uid in source.draining:
                source.draining.discard(uid)
            else:
                released.append((end, holders.pop(uid)))

    horizon = releases >= max_releases and len(queues) > 0
    out: dict[str, Estimate] = {}
    for w in pending:
        uid = w.item.uid
        out[uid] = _describe(w, started.get(uid), first.get(uid), released, unknown, horizon, max_releases,
                             window, now_ns)
    exhausted = not any(end_of.get(uid) == end for end, uid in ends)
    forecasts = {leaf: Forecast(leaf, tuple(openings[leaf, None]),
                                _forecast_note(sim_ledger, leaf, openings[leaf, None], unknown, exhausted, max_releases),
                                tuple(Band(b, tuple(openings[leaf, b])) for b in levels))
                 for leaf in leaves}
    return Replay(out, forecasts)


def _forecast_note(ledger: Ledger, leaf: str, kept: Sequence[Opening], unknown: Mapping[str, Running],
                   exhausted: bool, max_releases: int) -> str:
    """What ends the leaf's openings: for a request none of them fits."""
    path = [n.full_name for n in ledger.tree.path_to_root(leaf)]
    blockers = sorted({r.claim.key for r in unknown.values() if any(_under(r.claim.quota, p) for p in path)}
                      or {r.claim.key for r in unknown.values()})
    listed = ", ".join(blockers[:5]) + (f" and {len(blockers) - 5} more" if len(blockers) > 5 else "")
    if not kept:
        if blockers:
            return f"unknown: the jobs waiting in {leaf} wait for running jobs with no expected runtime ({listed})"
        return f"unknown: the jobs waiting in {leaf} have no estimate"
    if len(kept) >= MAX_OPENINGS:
        return f"unknown: beyond the forecast's {MAX_OPENINGS} openings"
    if blockers:
        return f"unknown: only running jobs with no expected runtime ({listed}) could free more"
    if not exhausted:
        return f"unknown: beyond the estimate's horizon ({max_releases} releases)"
    return "never, as things stand: it does not fit even when every running job ends"


def _under(quota: str, node: str | None) -> bool:
    return node is None or quota == node or quota.startswith(node + "/")


def _runtimes(waited: Sequence[Running]) -> str:
    details: dict[str, int] = {}
    for r in waited:
        details[r.runtime.detail] = details.get(r.runtime.detail, 0) + 1
    parts = [f"{detail}" if n == 1 else f"{detail} (x{n})" for detail, n in sorted(details.items())]
    return "runtime " + ", ".join(parts) if parts else ""


def _describe(
    w: Waiting,
    start: int | None,
    refusal: Decision | None,
    released: Sequence[tuple[int, Running]],
    unknown: Mapping[str, Running],
    horizon: bool,
    max_releases: int,
    window: int,
    now_ns: int,
) -> Estimate:
    item = w.item
    reason = refusal.reason if refusal is not None and not refusal else ""
    node = refusal.blocking if refusal is not None and not refusal else None
    if start == now_ns:
        return Estimate(item.uid, item.key, item.quota, start, "fits now: starts at the next admission pass")
    before = [r for when, r in released if start is not None and when <= start]
    if start is not None and not before:
        message = f"once reclaimed quota drains ({reason})"
        return Estimate(item.uid, item.key, item.quota, start, message, reason)
    if start is not None:
        near = [r for r in before if _under(r.claim.quota, node)] or before
        where = f" in {node}" if node else ""
        n = len(near)
        others = len(before) - n
        message = f"after {n} running job{'s' if n != 1 else ''}{where} finish{'es' if n == 1 else ''}"
        if others:
            message += f" (and {others} elsewhere)"
        runtimes = _runtimes(near)
        if runtimes:
            message += f"; {runtimes}"
        message += "; if nothing else changes"
        return Estimate(item.uid, item.key, item.quota, start, message, reason,
                        tuple(sorted({r.claim.key for r in near})))
    blockers = sorted({r.claim.key for r in unknown.values() if _under(r.claim.quota, node)})
    if blockers:
        listed = ", ".join(blockers[:5]) + (f" and {len(blockers) - 5} more" if len(blockers) > 5 else "")
        message = (
            f"unknown: waits for running jobs with no expected runtime ({listed}); set "
            f"{keys.EXPECTED_RUNTIME} or spec.activeDeadlineSeconds, or wait for the leaf's runtime history"
        )
        return Estimate(item.uid, item.key, item.quota, None, message, reason, tuple(blockers))
    if horizon:
        message = f"unknown: beyond the estimate's horizon ({max_releases} releases, {window} jobs at a time)"
        return Estimate(item.uid, item.key, item.quota, None, message, reason)
    return Estimate(item.uid, item.key, item.quota, None,
                    f"never, as things stand: {reason or 'it does not fit even when every running job ends'}",
                    reason)

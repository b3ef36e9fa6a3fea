"""Why a job is admitted or waits, as data: one ``Explain`` record per admission decision, and its words.

The record is built where the decision is made (``Ledger.check`` for the quota rules, ``AdmissionPass`` for
a previous run still draining and for reclaim, ``Queues`` for a Block-policy leaf's waiters, the reconcile for
preemption notices a claimant waits out and for admission timeouts, ``TimedOut``) and carries the rule, the quota node, the numbers and the job it
names; a wrapping record (reclaim, waiting behind, notice) keeps the refusal it wraps as ``cause``. Every
surface renders it with ``render``: the QueueUnit message, the events, the create warning and the CLI
(``kubectl rayqueue why`` shows the QueueUnit message, ``whatif`` renders the preview's record), so the
words are composed here and nowhere else. ``advice`` names the liveness case a stuck job is in (admission timeout,
parked, refused by KubeRay, managed by another controller, draining, refused at create) and what its user should
do: ``kubectl rayqueue why`` shows it beside the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from common import keys
from common.fair_share import FairReclaim, Unfair
from common.liveness import TimedOut, retry_command
from common.preemption import Protected
from common.quantity import format_quantity
from common.resources import Excess, Resources

__all__ = ["MAX_NAMED", "Advice", "Explain", "Rule", "Stuck", "Why", "advice", "listed", "render", "whatif"]

MAX_NAMED: Final = 5  # jobs named in a message before "and N more"

Rule = Literal["", "quota", "max", "max-jobs", "capacity", "preemptible", "guaranteed-first",
               "fair-share"]
Why = Literal[
    "fits",  # admitted: the claim fits every rule in ``node``
    "no-such-quota",  # the claim's quota is not in the tree
    "not-a-leaf",  # the claim's quota has children (``names``)
    "max",  # ``node``'s max is exceeded (``excess``)
    "max-jobs",  # ``node``'s kube-queue/max-jobs is reached (``excess``: one row, the job counts)
    "capacity",  # the cluster's capacity is exceeded (``excess``)
    "preemptible",  # a non-preemptible claim would leave its leaf's min (``excess``)
    "guaranteed-first",  # it would borrow and block ``job``, guaranteed in ``job_quota``: ``cause`` is why
    "fair-share",  # it would borrow, and ``job``, the next job of ``job_quota`` that goes first by fair share
    # (``fair``), would then not fit: ``cause`` is why
    "draining",  # requeued: its previous run still has ``count`` pods terminating
    "reclaim",  # guaranteed: waits for the reclaim of ``names`` (jobs releasing or chosen as victims)
    "growth-reclaim",  # guaranteed: waits for the reclaim of growth pods ``names``
    "protected",  # guaranteed: reclaim would take ``protected`` jobs that have not run their min-runtime yet
    "behind",  # a Block-policy leaf stopped at ``job``, refused for ``cause``
    "notice",  # waits for the preemption notices ``notices`` (victim, deadline) to run out
    "waiting",  # no refusal recorded yet: it waits in ``node`` (``backoff``)
    "timed-out",  # admitted, not started within its admission timeout: suspended and requeued, or parked (``timed_out``)
    "said",  # a decision that came with words only (``text``)
    "managed-by",  # not queued: its spec.managedBy (``text``) names another controller; its pods go one by one to ``node``
    # The other side of a decision, in the events of the jobs it moves:
    "dequeued",  # admitted: ``request`` fits in ``node``
    "preempted",  # a victim in ``node`` (``priority``) suspended for ``job``, guaranteed in ``job_quota``
    "reclaim-notice",  # the same victim given a preemption notice first (the notice's reason)
    "fair-preempted",  # a victim in ``node`` (``priority``) suspended for a fair-share reclaim by ``job`` of
    # ``job_quota`` (``fair_reclaim``: the shares before and after)
    "fair-reclaim-notice",  # the same victim given a preemption notice first (the notice's reason)
    "growth-preempted",  # growth pod ``names[0]`` of job ``names[1]`` (``victim_request``) deleted for ``job``
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Explain:
    """One admission decision's reason as data (see the module docstring)."""

    why: Why
    node: str | None = None  # the quota node the words name first (None: the cluster)
    excess: tuple[Excess, ...] = ()
    job: str = ""  # the job the answer names besides the claim ("namespace/name")
    job_quota: str = ""  # guaranteed-first: the leaf that job is guaranteed in
    names: tuple[str, ...] = ()  # not-a-leaf: the children; reclaim: "key (quota)" of each job it waits for
    count: int = 0  # draining: the pods still terminating
    backoff: bool = False  # waiting: in backoff
    notices: tuple[tuple[str, str], ...] = ()  # notice: (victim key, deadline), earliest first
    cause: Explain | None = None  # the refusal a reclaim, block or notice record wraps
    text: str = ""  # said: the words given
    request: Resources | None = None  # dequeued: the job's request; growth-preempted: the claimant's
    victim_request: Resources | None = None  # growth-preempted: the pod's request
    priority: int = 0  # preempted, reclaim-notice: the victim's priority
    timed_out: TimedOut | None = None  # timed-out: the liveness record (common.liveness)
    fair: Unfair | None = None  # fair-share: the numbers (common.fair_share)
    fair_reclaim: FairReclaim | None = None  # fair-preempted, fair-reclaim-notice: the shares (common.fair_share)
    protected: tuple[Protected, ...] = ()  # protected: the jobs reclaim spares (common.preemption)

    @property
    def admitted(self) -> bool:
        return self.why == "fits"

    @property
    def rule(self) -> Rule:
        """The ledger rule that refused (a wrapping record: the rule of what it wraps); "" when admitted."""
        if self.cause is not None and self.why not in _OWN_RULE:
            return self.cause.rule
        return _RULES.get(self.why, "")

    @property
    def blocking(self) -> str | None:
        """The quota node that refused (None: cluster capacity, or admitted)."""
        if self.why in _OWN_RULE:
            return self.job_quota
        if self.cause is not None:
            return self.cause.blocking
        return self.node if self.why in _RULES else None

    def __str__(self) -> str:
        return render(self)


_RULES: Final[Mapping[Why, Rule]] = {
    "no-such-quota": "quota", "not-a-leaf": "quota", "draining": "quota", "max": "max", "max-jobs": "max-jobs",
    "capacity": "capacity", "preemptible": "preemptible", "guaranteed-first": "guaranteed-first",
    "fair-share": "fair-share",
}
_OWN_RULE: Final = ("guaranteed-first", "fair-share")  # records that wrap a cause but are a rule of their own


def _describe(excess: Iterable[Excess], limit_word: str) -> str:
    """`cpu used 2 + request 4 > min 5; ...` (Excess.__str__ with another word for the limit)."""
    parts = []
    for e in excess:
        f, r = format_quantity, e.resource
        parts.append(f"{r} used {f(r, e.used)} + request {f(r, e.requested)} > {limit_word} {f(r, e.limit)}")
    return "; ".join(parts)


def listed(names: Sequence[str]) -> str:
    """The first MAX_NAMED names, then "and N more"."""
    shown = list(names[:MAX_NAMED])
    if len(names) > MAX_NAMED:
        shown.append(f"and {len(names) - MAX_NAMED} more")
    return ", ".join(shown)


def _cause(e: Explain) -> str:
    return render(e.cause) if e.cause is not None else ""


def _max_jobs(e: Explain) -> str:
    row = e.excess[0]
    return f"{e.node}: jobs {row.used} + 1 > max-jobs {row.limit}"


def _draining(e: Explain) -> str:
    pods = f"{e.count} pod{'s' if e.count != 1 else ''}"
    return f"{e.node}: {e.job} waits until its previous run releases its quota ({pods} still terminating)"


def _notice(e: Explain) -> str:
    given = ", ".join(f"{victim} until {deadline}" for victim, deadline in e.notices)
    return (f"waiting for a preemption notice to expire ({given}, or the victim's {keys.CHECKPOINTED}"
            f" acknowledgement): {_cause(e)}")


def _fair_share(e: Explain) -> str:
    if e.fair is None:  # the head of its own leaf
        return f"{e.node}: {e.job} goes first (next in this quota; it waits for the borrowed capacity: {_cause(e)})"
    said = e.fair.words()
    return f"{said} ({e.job} waits for the borrowed capacity: {_cause(e)})"


def _preempted(e: Explain) -> str:
    return (f"preempted to reclaim quota for {e.job}, guaranteed in {e.job_quota} ({e.node} borrows above its min; "
            f"priority {e.priority}); requeued with its original enqueue time")


def _fair_reclaim(e: Explain) -> str:
    shares = f"; {e.fair_reclaim.words()}" if e.fair_reclaim is not None else ""
    return (f"a fair-share reclaim by {e.job} of {e.job_quota} ({e.node} borrows above its fair share; priority "
            f"{e.priority}{shares})")


def _fair_preempted(e: Explain) -> str:
    return f"preempted for {_fair_reclaim(e)}; requeued with its original enqueue time"


def _growth_preempted(e: Explain) -> str:
    pod, job = e.names
    return (f"preempted to reclaim quota for {e.job}, guaranteed in {e.job_quota} (request {e.request}): growth pod "
            f"{pod} of RayJob {job}, beyond its admitted size, request {e.victim_request}; {e.node} borrows above "
            "its min; growth is reclaimed before whole jobs, newest first. KubeRay recreates it while the "
            "RayCluster's replicas ask for it; it then waits for the quota")


def _managed_by(e: Explain) -> str:
    pods = f"in {e.node} " if e.node else ""
    return (f"not queued: spec.managedBy {e.text!r} names another controller than KubeRay, which leaves the job to it "
            f"(ManagedByExternalController); so rayqueue does not queue it either (no QueueUnit, no claim), and any "
            f"pods it gets {pods}are charged one by one like any pod (rule managed-by)")


_WORDS: Final[Mapping[Why, Callable[[Explain], str]]] = {
    "fits": lambda e: f"{e.node}: fits",
    "no-such-quota": lambda e: f"{e.node}: no such quota in the tree",
    "not-a-leaf": lambda e: f"{e.node}: not a leaf quota (its children: {', '.join(e.names)})",
    "max": lambda e: f"{e.node}: " + "; ".join(map(str, e.excess)),
    "max-jobs": _max_jobs,
    "capacity": lambda e: "cluster: " + _describe(e.excess, "capacity"),
    "preemptible": lambda e: (f"{e.node}: not preemptible, so it may only use guaranteed capacity: "
                              + _describe(e.excess, "min")),
    "guaranteed-first": lambda e: (f"{e.node}: guaranteed first: this claim would borrow above min, and {e.job} "
                                   f"waiting within the min of {e.job_quota} would then not fit ({_cause(e)})"),
    "fair-share": _fair_share,
    "draining": _draining,
    "reclaim": lambda e: f"waiting for reclaim of {listed(e.names)}: {_cause(e)}",
    "growth-reclaim": lambda e: f"waiting for reclaim of growth {listed(e.names)}: {_cause(e)}",
    "protected": lambda e: (f"waiting: reclaim would take {listed([p.words() for p in e.protected])}; it may once "
                            f"that has run out: {_cause(e)}"),
    "behind": lambda e: f"{e.node}: Block policy: waiting behind {e.job}: {_cause(e)}",
    "notice": _notice,
    "waiting": lambda e: f"waiting in {e.node}{' in backoff' if e.backoff else ''}",
    "said": lambda e: e.text,
    "timed-out": lambda e: e.timed_out.message() if e.timed_out is not None else f"{e.node}: admission timed out",
    "dequeued": lambda e: f"dequeued from {e.node}: request {e.request} fits",
    "preempted": _preempted,
    "reclaim-notice": lambda e: (f"reclaim for {e.job}, guaranteed in {e.job_quota}; {e.node} borrows above its min "
                                 f"(priority {e.priority})"),
    "fair-preempted": _fair_preempted,
    "fair-reclaim-notice": lambda e: f"make way for {_fair_reclaim(e)}",
    "growth-preempted": _growth_preempted,
    "managed-by": _managed_by,
}


def render(e: Explain) -> str:
    """The words of a record: the same on every surface."""
    return _WORDS[e.why](e)


def whatif(e: Explain, ahead: int, priority: int) -> str:
    """``kubectl rayqueue whatif``'s verdict on a job created now: the quota answer, and the jobs ahead of it."""
    if not e.admitted:
        return render(e)
    if not ahead:
        return f"fits now: {render(e)}"
    return (f"fits the quota now ({render(e)}), but {ahead} waiting job(s) of priority >= {priority} are ahead "
            "of it")


# --- a job stuck in a liveness case: which case, and what to do (``kubectl rayqueue why``) ---------------------

Stuck = Literal["admission-timeout", "parked", "kuberay-refused", "managed-by", "draining", "refused-at-create"]


@dataclass(frozen=True, slots=True)
class Advice:
    """Which liveness case a job is stuck in (``what``) and what its user should do (``todo``); the reason with its
    numbers is the record the QueueUnit message (or ``managed-by``) renders, shown beside it."""

    case: Stuck
    what: str
    todo: str


def _retry(job: str, kind: str) -> str:
    return retry_command(job) + (" --raycluster" if kind == keys.RAYCLUSTER_KIND else "")


_ADVICE: Final[Mapping[Stuck, Callable[[str, str], tuple[str, str]]]] = {
    "admission-timeout": lambda job, kind: (
        "admission timeout: admitted, it did not start within its admission timeout and was suspended and "
        "requeued with its enqueue time",
        "fix what the message names (a nodeSelector, affinity or toleration no node satisfies, an image that never "
        f"pulls, a size that never fits); it is tried again after its backoff, and parked after "
        f"{keys.ADMISSION_RETRIES} timeouts in a row (docs/liveness.md)"),
    "parked": lambda job, kind: (
        "parked: it timed out at admission too many times in a row and is no longer tried",
        f"fix the cause the message names, then retry it: `{_retry(job, kind)}` (docs/liveness.md)"),
    "kuberay-refused": lambda job, kind: (
        "KubeRay refused the job (ValidationFailed): it will never run, and holds no quota once its pods are gone",
        "fix the spec as KubeRay's message says, then delete the job and create it again (`kubectl create "
        "--dry-run=server -f FILE` shows what the webhook refuses before anything is created)"),
    "managed-by": lambda job, kind: (
        "managed by another controller: not queued",
        "nothing, if that controller is meant to run it; to queue it here, create it again without spec.managedBy "
        "(adding or changing managedBy on a queued job is refused)"),
    "draining": lambda job, kind: (
        "finished, but its pods are still running: its quota is released as they go",
        "nothing, if they are terminating; pods that run on keep their quota until the job's RayCluster is deleted "
        "(after ttlSecondsAfterFinished, docs/kuberay.md): delete it to free the quota now"),
    "refused-at-create": lambda job, kind: (
        f"no {kind} {job}: a create the webhook refused leaves nothing behind (no object, no QueueUnit, no claim)",
        "the denial kubectl printed names the rule, the field and KubeRay's words: fix the manifest and create it "
        "again (`kubectl create --dry-run=server -f FILE` shows the webhook's answer without creating anything)"),
}


def advice(case: Stuck, job: str, kind: str = keys.RAYJOB_KIND) -> Advice:
    """The case of ``job`` (``namespace/name``, of ``kind``) in words, and what to do."""
    what, todo = _ADVICE[case](job, kind)
    return Advice(case, what, todo)

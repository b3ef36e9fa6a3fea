"""Per-leaf queues of waiting RayJobs: ordering, Round/Block policies, exponential backoff and positions.

Order (everywhere: inside a leaf and across leaves in an admission pass): priority descending, enqueue
time ascending, then namespace, name and uid, so the order is total and deterministic. With fair share
(``common.fair_share``, the root's ``rayqueue.io/fair-share-half-life``) the pass is given the leaves' Fair
Tree order (``leaf_order``): the leaves go one after the other in that order, each in its own order
(priority still orders the jobs of one leaf); without it the leaves' lists are merged as above.

Policies, per leaf: ``Round`` (= ``Priority``) skips a head that does not fit and puts it in backoff
with an exponential delay; ``Block`` is head-of-line blocking: the first refused item stops its leaf
and the leaf is not retried until the usage generation the caller passes in changes (or the blocking
head itself changes: it is removed, another item moves ahead of it, or its request changes).

Complexity, honestly: each leaf keeps two Python lists sorted by key; an insert or removal finds its
place by bisection (O(log n) comparisons) and then shifts the list (O(n) memmove, fast in practice).
A pass merges the leaves' sorted lists (O(n log L)) and calls ``try_admit`` once per candidate. With
10,000 items over 100 leaves, ordering them all and a full pass take a few tens of milliseconds.

No method reads the time directly: backoff runs on the injected clock's monotonic time, and every read
first moves items whose backoff has expired back to their active list.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypedDict, get_args

from common import keys
from common.clock import Clock
from common.explain import Explain, render
from common.resources import Resources

if TYPE_CHECKING:
    from common.ledger import Claim, Ledger

__all__ = [
    "BackedOff",
    "Backoff",
    "Blocked",
    "DecisionLike",
    "PassResult",
    "QueueItem",
    "QueueItemDetail",
    "QueueItemDetails",
    "QueuePolicy",
    "Queues",
]

QueuePolicy = Literal["Round", "Priority", "Block"]
QUEUE_POLICIES: Final[tuple[str, ...]] = get_args(QueuePolicy)
DEFAULT_POLICY: Final[QueuePolicy] = "Round"

SortKey = tuple[int, int, str, str, str]
_Entry = tuple[SortKey, str]  # (key, uid); the uid ends the key too, so entries never tie


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueItem:
    """A waiting RayJob: its identity, its leaf quota (full name), priority, enqueue time and request."""

    uid: str
    namespace: str
    name: str
    quota: str
    priority: int
    enqueue_ns: int
    request: Resources = field(default_factory=Resources)

    @property
    def sort_key(self) -> SortKey:
        return (-self.priority, self.enqueue_ns, self.namespace, self.name, self.uid)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def queue_unit_name(self) -> str:
        return keys.queue_unit_name(self.name)


class DecisionLike(Protocol):
    """What ``try_admit`` returns: truthy when admitted, with a reason (why not, when refused); a decision that
    carries its record (``common.ledger.Decision``) also has ``why() -> Explain``, which the queues keep."""

    def __bool__(self) -> bool: ...

    @property
    def reason(self) -> str: ...


def _record(decision: DecisionLike) -> Explain:
    """The refusal's record: the decision's own, or its words as given."""
    why = getattr(decision, "why", None)
    found = why() if callable(why) else None
    return found if isinstance(found, Explain) else Explain(why="said", text=str(decision.reason))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: the n-th refusal in a row waits base * 2^(n-1) seconds, at most max."""

    base_seconds: float = 5.0
    max_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not self.base_seconds > 0:
            raise ValueError(f"backoff base_seconds must be > 0, got {self.base_seconds}")
        if not self.max_seconds >= self.base_seconds:
            raise ValueError(
                f"backoff max_seconds {self.max_seconds} must be >= base_seconds {self.base_seconds}"
            )

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th refusal (attempts >= 1)."""
        if attempts < 1:
            raise ValueError(f"backoff attempts start at 1, got {attempts}")
        return min(self.base_seconds * 2.0 ** min(attempts - 1, 64), self.max_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackedOff:
    """An item refused in a pass under Round/Priority, now waiting ``delay_seconds`` (until ``retry_at``)."""

    item: QueueItem
    reason: str
    attempts: int
    delay_seconds: float
    retry_at: float  # on the clock's monotonic time


@dataclass(frozen=True, slots=True, kw_only=True)
class Blocked:
    """A Block-policy leaf stopped at ``item`` since ``usage_generation``; ``new`` if it stopped this pass."""

    leaf: str
    item: QueueItem
    reason: str
    usage_generation: int
    new: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PassResult:
    """What one admission pass did: sorted by global queue order (``blocked`` by leaf)."""

    admitted: tuple[QueueItem, ...] = ()
    backed_off: tuple[BackedOff, ...] = ()
    blocked: tuple[Blocked, ...] = ()
    expired: tuple[QueueItem, ...] = ()  # items whose backoff ended and went back to active


class QueueItemDetail(TypedDict):
    """One row of a Queue's ``status.queueItemDetails.{active,backoff}``."""

    name: str
    namespace: str
    priority: int
    position: int


class QueueItemDetails(TypedDict):
    active: list[QueueItemDetail]
    backoff: list[QueueItemDetail]


@dataclass(slots=True)
class _State:
    """Per item: refusals in a row, when its backoff ends (None: active) and the last refusal's record."""

    attempts: int = 0
    until: float | None = None
    explain: Explain | None = None
    firm: bool = False  # a hold (``Queues.hold``): its backoff outlasts ``retry_now``


@dataclass(frozen=True, slots=True)
class _Block:
    uid: str
    item: QueueItem
    explain: Explain
    generation: int

    @property
    def reason(self) -> str:
        return render(self.explain)


@dataclass(slots=True)
class _Leaf:
    policy: QueuePolicy = DEFAULT_POLICY
    active: list[_Entry] = field(default_factory=list)
    backoff: list[_Entry] = field(default_factory=list)
    blocked: _Block | None = None


def _entry(item: QueueItem) -> _Entry:
    return (item.sort_key, item.uid)


def _discard(entries: list[_Entry], entry: _Entry) -> bool:
    i = bisect_left(entries, entry)
    if i < len(entries) and entries[i] == entry:
        del entries[i]
        return True
    return False


def _leaves_in(leaves: Iterable[str], order: Sequence[str] | None) -> list[str]:
    """The leaves by name, or in ``order`` (those it does not list after, by name)."""
    names = sorted(leaves)
    if order is None:
        return names
    place = {leaf: i for i, leaf in enumerate(order)}
    return sorted(names, key=lambda n: (place.get(n, len(place)), n))


_OTHERS_TURN: Final = ("guaranteed-first", "fair-share")


def _unblocks(explain: Explain | None, freed: Sequence[str]) -> bool:
    """Whether capacity freed in leaves ``freed`` can change the refusal ``explain`` (see ``retry_freed``)."""
    if explain is None or explain.rule in ("", *_OTHERS_TURN):
        return True
    node = explain.blocking
    if node is None:
        return True
    return any(q == node or q.startswith(node + "/") for q in freed)


def _reclaimed(explain: Explain | None) -> bool:
    return explain is not None and explain.why in ("reclaim", "growth-reclaim")


def _details(items: Iterable[QueueItem]) -> list[QueueItemDetail]:
    return [
        {"name": it.queue_unit_name, "namespace": it.namespace, "priority": it.priority, "position": i}
        for i, it in enumerate(items, start=1)
    ]


class Queues:
    """One ordered queue per leaf quota, with backoff and the admission pass. Not thread-safe: one owner."""

    def __init__(self, clock: Clock, backoff: Backoff | None = None) -> None:
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._items: dict[str, QueueItem] = {}
        self._states: dict[str, _State] = {}
        self._leaves: dict[str, _Leaf] = {}
        self._wakeups: list[tuple[float, str]] = []  # (until, uid), lazily cleaned

    # --- configuration -----------------------------------------------------------------------

    def set_policy(self, leaf: str, policy: QueuePolicy) -> None:
        """Set a leaf's policy (``Round`` is the default). Leaving Block lifts the leaf's block."""
        if policy not in QUEUE_POLICIES:
            raise ValueError(
                f"queue policy for {leaf!r} must be one of {', '.join(QUEUE_POLICIES)}, got {policy!r}"
            )
        state = self._leaf(leaf)
        state.policy = policy
        if policy != "Block":
            state.blocked = None

    def policy(self, leaf: str) -> QueuePolicy:
        known = self._leaves.get(leaf)
        return known.policy if known else DEFAULT_POLICY

    # --- membership --------------------------------------------------------------------------

    def upsert(self, item: QueueItem) -> None:
        """Insert or update. A priority (or quota) change reorders at once and clears the item's backoff."""
        old = self._items.get(item.uid)
        if old == item:
            return
        state = self._states.setdefault(item.uid, _State())
        in_backoff = False
        if old is not None:
            old_leaf = self._leaf(old.quota)
            in_backoff = _discard(old_leaf.backoff, _entry(old))
            if not in_backoff:
                _discard(old_leaf.active, _entry(old))
            if old.priority != item.priority or old.quota != item.quota:
                state.attempts, state.until, state.explain = 0, None, None
                in_backoff = False
        self._items[item.uid] = item
        leaf = self._leaf(item.quota)
        insort(leaf.backoff if in_backoff else leaf.active, _entry(item))
        if old is not None and old.quota != item.quota:
            self._check_block(old.quota)
        self._check_block(item.quota)

    def remove(self, uid: str) -> QueueItem | None:
        """Remove an item (admitted elsewhere, deleted, finished); returns it, or None if unknown."""
        item = self._items.pop(uid, None)
        self._states.pop(uid, None)
        if item is None:
            return None
        leaf = self._leaf(item.quota)
        if not _discard(leaf.active, _entry(item)):
            _discard(leaf.backoff, _entry(item))
        self._check_block(item.quota)
        return item

    def get(self, uid: str) -> QueueItem | None:
        return self._items.get(uid)

    def __contains__(self, uid: object) -> bool:
        return uid in self._items

    def __len__(self) -> int:
        return len(self._items)

    def leaves(self) -> tuple[str, ...]:
        """Every leaf that has a policy or ever held an item, sorted."""
        return tuple(sorted(self._leaves))

    # --- reads (each first returns expired backoff items to active) ---------------------------

    def active(self, leaf: str) -> tuple[QueueItem, ...]:
        self.expire()
        known = self._leaves.get(leaf)
        return tuple(self._items[uid] for _, uid in known.active) if known else ()

    def backoff(self, leaf: str) -> tuple[QueueItem, ...]:
        """Items of the leaf waiting out a backoff delay, in queue order."""
        self.expire()
        known = self._leaves.get(leaf)
        return tuple(self._items[uid] for _, uid in known.backoff) if known else ()

    def positions(self, leaf: str) -> QueueItemDetails:
        """The Queue's ``status.queueItemDetails``: QueueUnit names, 1-based positions within each list."""
        return {"active": _details(self.active(leaf)), "backoff": _details(self.backoff(leaf))}

    def position(self, uid: str) -> int | None:
        """1-based position of the item within its list (active or backoff; see ``in_backoff``)."""
        self.expire()
        item = self._items.get(uid)
        if item is None:
            return None
        leaf = self._leaves[item.quota]
        entries = leaf.backoff if self._states[uid].until is not None else leaf.active
        return bisect_left(entries, _entry(item)) + 1

    def in_backoff(self, uid: str) -> bool:
        self.expire()
        state = self._states.get(uid)
        return state is not None and state.until is not None

    def attempts(self, uid: str) -> int:
        """Refusals in a row (cleared by a priority or quota change; the item leaves on admission)."""
        state = self._states.get(uid)
        return state.attempts if state else 0

    def explain(self, uid: str) -> Explain | None:
        """Why the item waits: its last refusal, or the block of its leaf when it waits behind the head."""
        item = self._items.get(uid)
        if item is None:
            return None
        own = self._states[uid].explain
        block = self._leaves[item.quota].blocked
        if block is not None and block.uid != uid and self._states[uid].until is None:
            return Explain(why="behind", node=item.quota, job=block.item.key, cause=block.explain)
        return own

    def reason(self, uid: str) -> str | None:
        """The words of ``explain``."""
        found = self.explain(uid)
        return render(found) if found is not None else None

    def blocked(self, leaf: str) -> str | None:
        """The reason a Block-policy leaf is stopped, or None."""
        known = self._leaves.get(leaf)
        return known.blocked.reason if known and known.blocked else None

    def next_retry(self) -> float | None:
        """The monotonic time the earliest backoff ends (for the controller's next wake-up), or None."""
        self._clean_wakeups()
        return self._wakeups[0][0] if self._wakeups else None

    # --- time ----------------------------------------------------------------------------------

    def expire(self) -> tuple[QueueItem, ...]:
        """Move items whose backoff has ended back to active; returns them in queue order."""
        now = self._clock.monotonic()
        moved: list[QueueItem] = []
        while self._wakeups and self._wakeups[0][0] <= now:
            until, uid = heapq.heappop(self._wakeups)
            state = self._states.get(uid)
            if state is not None and state.until == until:
                moved.append(self._reactivate(uid))
        moved.sort(key=lambda it: it.sort_key)
        return tuple(moved)

    def retry_now(self, leaf: str | None = None) -> tuple[QueueItem, ...]:
        """End the backoff of every item (of one leaf) at once, e.g. after quota was freed; attempts kept."""
        uids = [uid for uid, state in self._states.items() if state.until is not None and not state.firm]
        moved = [self._reactivate(uid) for uid in uids if leaf is None or self._items[uid].quota == leaf]
        moved.sort(key=lambda it: it.sort_key)
        return tuple(moved)

    def retry_freed(self, quotas: Iterable[str]) -> tuple[QueueItem, ...]:
        """End the backoff of the items the release of capacity in leaves ``quotas`` can unblock (a preemption
        or a finished job; attempts kept): those refused by a node on a freed leaf's path to the root (its max,
        max-jobs or min; a reclaim or a notice by the refusal it wraps), by the cluster's capacity, by another
        job's turn (guaranteed-first, fair share: that job may now go) or with no record. One refused by a node
        of another branch stays in its backoff: nothing it waits for changed (``retry_now`` ends them all)."""
        freed = sorted(set(quotas))
        moved: list[QueueItem] = []
        for uid, state in list(self._states.items()):
            if state.until is None or state.firm or not _unblocks(state.explain, freed):
                continue
            moved.append(self._reactivate(uid))
        moved.sort(key=lambda it: it.sort_key)
        return tuple(moved)

    def hold(self, uid: str, attempts: int, explain: Explain) -> float | None:
        """Back a queued item off as its ``attempts``-th refusal in a row with ``explain`` as its record, a backoff
        ``retry_now`` does not end (an admission timeout: the job's own release frees the quota). Returns the
        delay; None for an item not queued."""
        item = self._items.get(uid)
        if item is None or attempts < 1:
            return None
        leaf, state = self._leaves[item.quota], self._states[uid]
        if not _discard(leaf.active, _entry(item)):
            _discard(leaf.backoff, _entry(item))
        delay = self._backoff.delay(attempts)
        state.attempts, state.explain, state.until, state.firm = attempts, explain, self._clock.monotonic() + delay, True
        insort(leaf.backoff, _entry(item))
        heapq.heappush(self._wakeups, (state.until, uid))
        self._check_block(item.quota)
        return delay

    # --- the admission pass ------------------------------------------------------------------

    def head(self, leaf: str) -> QueueItem | None:
        """The first waiting item of a leaf, active or in backoff (the one that goes first when it can)."""
        known = self._leaves.get(leaf)
        if known is None:
            return None
        firsts = [entries[0] for entries in (known.active, known.backoff) if entries]
        return self._items[min(firsts)[1]] if firsts else None

    def guaranteed_heads(self, real: Ledger, claim: Callable[[QueueItem], Claim]) -> list[Claim]:
        """The first waiting job of every leaf (active or in backoff) when it is guaranteed on ``real``, and every
        waiting job whose last refusal was a reclaim when it is still guaranteed: the capacity its victims freed
        is owed to it, and a borrower tried before it (a victim requeued with its early enqueue time) taking it
        would make it reclaim again and again (reclaim that never ping-pongs, docs/preemption.md). ``claim``
        makes a waiting item's claim as the admission pass judges it (common.admission)."""
        heads = []
        for leaf in self.leaves():
            items = (*self.active(leaf), *self.backoff(leaf))
            if not items:
                continue
            head = min(items, key=lambda it: it.sort_key)
            owed = [it for it in items if it is not head and _reclaimed(self.explain(it.uid))]
            for item in (head, *sorted(owed, key=lambda it: it.sort_key)):
                if item.uid in real:
                    continue
                found = claim(item)
                if real.is_guaranteed(found):
                    heads.append(found)
        return heads

    def schedule(self, try_admit: Callable[[QueueItem], DecisionLike], usage_generation: int,
                 leaf_order: Sequence[str] | None = None) -> PassResult:
        """Walk the active items of all leaves in global order (or leaf by leaf in ``leaf_order``, fair share;
        leaves it does not list go last, by name) and try each (see the module docstring).

        ``try_admit`` must not modify these queues; it should count what it admits so that later
        candidates in the same pass see the new usage. An admitted item leaves its queue.
        """
        steps = self.schedule_steps(try_admit, usage_generation, leaf_order=leaf_order)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                result: PassResult = done.value
                return result

    def schedule_steps(
        self, try_admit: Callable[[QueueItem], DecisionLike], usage_generation: int, every: int = 10,
        leaf_order: Sequence[str] | None = None,
    ) -> Generator[None, None, PassResult]:
        """``schedule`` as a generator that yields after every ``every`` candidates tried, for a caller
        that lets others run in between; nothing else may change these queues until it returns."""
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        expired = self.expire()
        now = self._clock.monotonic()
        blocked: list[Blocked] = []
        lists: list[list[_Entry]] = []
        for name in _leaves_in(self._leaves, leaf_order):
            leaf = self._leaves[name]
            block = leaf.blocked
            if block is not None and block.generation == usage_generation:
                blocked.append(
                    Blocked(
                        leaf=name,
                        item=block.item,
                        reason=block.reason,
                        usage_generation=block.generation,
                        new=False,
                    )
                )
                continue
            leaf.blocked = None
            lists.append(leaf.active)
        candidates = list(heapq.merge(*lists)) if leaf_order is None else [e for entries in lists for e in entries]

        admitted: list[QueueItem] = []
        backed_off: list[BackedOff] = []
        stopped: set[str] = set()
        tried = 0
        for key, uid in candidates:
            item = self._items.get(uid)
            if item is None or item.sort_key != key or item.quota in stopped:
                continue
            tried += 1
            if tried % every == 0:
                yield
            decision = try_admit(item)
            if decision:
                self.remove(uid)
                admitted.append(item)
                continue
            explain = _record(decision)
            reason = render(explain)
            state = self._states[uid]
            state.attempts += 1
            state.explain = explain
            leaf = self._leaves[item.quota]
            if leaf.policy == "Block":
                leaf.blocked = _Block(uid, item, explain, usage_generation)
                stopped.add(item.quota)
                blocked.append(
                    Blocked(
                        leaf=item.quota, item=item, reason=reason, usage_generation=usage_generation, new=True
                    )
                )
                continue
            delay = self._backoff.delay(state.attempts)
            state.until = now + delay
            _discard(leaf.active, (key, uid))
            insort(leaf.backoff, (key, uid))
            heapq.heappush(self._wakeups, (state.until, uid))
            backed_off.append(
                BackedOff(
                    item=item,
                    reason=reason,
                    attempts=state.attempts,
                    delay_seconds=delay,
                    retry_at=state.until,
                )
            )
        blocked.sort(key=lambda b: b.leaf)
        return PassResult(
            admitted=tuple(admitted), backed_off=tuple(backed_off), blocked=tuple(blocked), expired=expired
        )

    # --- internals -----------------------------------------------------------------------------

    def _leaf(self, name: str) -> _Leaf:
        leaf = self._leaves.get(name)
        if leaf is None:
            leaf = self._leaves[name] = _Leaf()
        return leaf

    def _reactivate(self, uid: str) -> QueueItem:
        item = self._items[uid]
        leaf = self._leaves[item.quota]
        _discard(leaf.backoff, _entry(item))
        insort(leaf.active, _entry(item))
        self._states[uid].until = None
        self._states[uid].firm = False
        self._check_block(item.quota)
        return item

    def _check_block(self, name: str) -> None:
        """Lift a leaf's block when its head is no longer the item (as it was) that blocked it."""
        leaf = self._leaves.get(name)
        if leaf is None or leaf.blocked is None:
            return
        block = leaf.blocked
        head = leaf.active[0][1] if leaf.active else None
        if head != block.uid or self._items.get(block.uid) != block.item:
            leaf.blocked = None

    def _clean_wakeups(self) -> None:
        while self._wakeups:
            until, uid = self._wakeups[0]
            state = self._states.get(uid)
            if state is not None and state.until == until:
                return
            heapq.heappop(self._wakeups)

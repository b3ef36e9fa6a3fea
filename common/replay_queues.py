"""The start-time replay's queues and pass: ``Queues.schedule`` after ``retry_now``, as the replay runs it, but
trying only the jobs whose answer can have changed since they were last refused.

The replay (``common.start_times``) ends every backoff before each pass, so every waiting job is a candidate
in every pass: with 128 jobs in the window and hundreds of passes, almost all of the time went into refusing
the same jobs again for the same reason. A job of a Round leaf refused by a max, max-jobs, capacity or
preemptible rule, while it is not guaranteed on the pass's reclaim view (so its refusal had no side effect:
nothing held, nothing reclaimed), is *frozen* on the node that refused it (the cluster for capacity). Its
next answer is the same refusal until usage drops on that node (the node's subtree loses a claim: a release,
a job admitted in a pass and bounced) or in its own leaf on the reclaim view (a victim chosen there, during a
pass too): within one time usage only grows, and guaranteed-first, heads and reclaim plans do not enter a
refusal by the max rules. A job refused as draining (its previous run's claim is still held) is frozen on its
leaf, whose release it waits for. Such an event wakes the frozen jobs of every node on the path of the leaf
that lost usage; a job woken during a pass is tried in that pass if its place comes after the job being
tried, as the full pass would. After a release, a job of another leaf that still exceeds its node on the ledger
without it stays frozen. A refusal is frozen only on usage that lasts: while the pass holds capacity for a
claimant's reclaim, only when it would stand on the ledger the pass started from (the hold is gone in the next
pass, with no drop to wake anyone). A woken job's turn starts with a recheck: still over its node on the pass's
own usage (what it admitted so far counted; the ledger it started from while it holds some) and still not guaranteed (its leaf lost no usage since it was frozen, or the
reclaim view says so), it is frozen again without a decision; else it is decided in full. Everything else
(Block leaves, guaranteed jobs, guaranteed-first, a reclaim awaited) is tried in every pass, as before.

What is not kept as ``Queues`` keeps it, because the replay never reads it: a frozen job's refusal count and
record are those of its last real try (its record is a max-rule refusal both ways, never a reclaim, which is
all ``AdmissionPass`` reads of it), and every job is active (the replay ended every backoff before reading).

The pass itself is ``AdmissionPass``, the controller's own code: these queues only answer its questions
faster (``guaranteed_heads`` kept per leaf and recomputed only for the leaves whose queue, records or usage
changed). ``tests/unit/test_replay_equivalence.py`` checks on random worlds that a replay through these gives
exactly what one through ``Queues`` gives.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable
from typing import Final

from common.admission import AdmissionPass
from common.clock import FakeClock
from common.explain import Explain
from common.ledger import Claim, Decision, Ledger
from common.queueing import QUEUE_POLICIES, QueueItem, QueuePolicy, Queues, SortKey
from common.quota_tree import QuotaNode, QuotaTree
from common.resources import Resources

__all__ = ["ReplayLedger", "ReplayQueues", "ViewCache"]

_Entry = tuple[SortKey, str]
_FREEZABLE: Final = frozenset({"max", "max-jobs", "capacity", "preemptible"})
_RECLAIMED: Final = ("reclaim", "growth-reclaim")
_CLUSTER: Final = ""  # the watch key of a capacity refusal (any release may lift it)


class ReplayQueues(Queues):
    """The replay's queues: one sorted list per leaf, every job active, frozen jobs skipped (module docstring)."""

    def __init__(self, tree: QuotaTree) -> None:
        super().__init__(FakeClock())
        self._tree = tree
        self._all: dict[str, QueueItem] = {}
        self._lists: dict[str, list[_Entry]] = {}
        self._policies: dict[str, QueuePolicy] = {}
        self._own: dict[str, Explain | None] = {}  # uid -> its last refusal's record
        self._tries: dict[str, int] = {}
        self._blocks: dict[str, tuple[str, QueueItem, Explain, int]] = {}  # Block leaf -> (uid, item, why, generation)
        self._live: set[str] = set()  # Round-leaf jobs tried in the next pass
        self._frozen: dict[str, tuple[str, str]] = {}  # uid -> (the node it is frozen on, the rule)
        self._watch: dict[str, set[str]] = {}  # node -> uids frozen on it
        self._paths: dict[str, tuple[str, ...]] = {}
        self._heads: dict[str, list[Claim]] = {}  # leaf -> its guaranteed heads (guaranteed_heads)
        self._flat: list[Claim] | None = None
        self._dirty: set[str] = set()  # leaves whose heads must be recomputed
        # Woken, frozen by a max rule: (node, rule) it was frozen on, and its leaf's drops when it was (it was not
        # guaranteed then, and stays so while they do not change).
        self._recheck: dict[str, tuple[str, str, int]] = {}
        self._stamps: dict[str, int] = {}  # uid -> its leaf's drops when it was frozen
        self._drops: dict[str, int] = {}  # leaf -> how many times usage dropped there (a wake)

    # --- what Queues offers, as the replay and AdmissionPass read it -----------------------------

    def set_policy(self, leaf: str, policy: QueuePolicy) -> None:
        if policy not in QUEUE_POLICIES:
            raise ValueError(f"queue policy for {leaf!r} must be one of {', '.join(QUEUE_POLICIES)}, got {policy!r}")
        self._policies[leaf] = policy
        self._lists.setdefault(leaf, [])
        for uid in [e[1] for e in self._lists[leaf]]:
            self._thaw(uid)
            if policy != "Block":
                self._live.add(uid)
            else:
                self._live.discard(uid)
        if policy != "Block":
            self._unblock(leaf)

    def policy(self, leaf: str) -> QueuePolicy:
        return self._policies.get(leaf, "Round")

    def upsert(self, item: QueueItem) -> None:
        old = self._all.get(item.uid)
        if old == item:
            return
        if old is not None:
            self._discard(old)
            if old.priority != item.priority or old.quota != item.quota:
                self._tries[item.uid], self._own[item.uid] = 0, None
        else:
            self._tries[item.uid], self._own[item.uid] = 0, None
        self._all[item.uid] = item
        insort(self._lists.setdefault(item.quota, []), (item.sort_key, item.uid))
        if self.policy(item.quota) != "Block":
            self._live.add(item.uid)
        self._dirty.add(item.quota)
        if old is not None and old.quota != item.quota:
            self._check_block(old.quota)
        self._check_block(item.quota)

    def remove(self, uid: str) -> QueueItem | None:
        item = self._all.pop(uid, None)
        if item is None:
            return None
        self._discard(item)
        del self._tries[uid], self._own[uid]
        self._check_block(item.quota)
        return item

    def get(self, uid: str) -> QueueItem | None:
        return self._all.get(uid)

    def __contains__(self, uid: object) -> bool:
        return uid in self._all

    def __len__(self) -> int:
        return len(self._all)

    def leaves(self) -> tuple[str, ...]:
        return tuple(sorted(set(self._lists) | set(self._policies)))

    def active(self, leaf: str) -> tuple[QueueItem, ...]:
        return tuple(self._all[uid] for _, uid in self._lists.get(leaf, ()))

    def backoff(self, leaf: str) -> tuple[QueueItem, ...]:
        return ()

    def head(self, leaf: str) -> QueueItem | None:
        entries = self._lists.get(leaf)
        return self._all[entries[0][1]] if entries else None

    def attempts(self, uid: str) -> int:
        return self._tries.get(uid, 0)

    def explain(self, uid: str) -> Explain | None:
        item = self._all.get(uid)
        if item is None:
            return None
        block = self._blocks.get(item.quota)
        if block is not None and block[0] != uid:
            return Explain(why="behind", node=item.quota, job=block[1].key, cause=block[2])
        return self._own[uid]

    def retry_now(self, leaf: str | None = None) -> tuple[QueueItem, ...]:
        return ()  # every job is active in the replay: nothing to end

    # --- the pass ----------------------------------------------------------------------------------

    def run_pass(self, decide: AdmissionPass, generation: int) -> dict[str, Decision]:
        """``Queues.schedule(decide, generation)`` after ``retry_now``: the decisions made, by uid, in order."""
        heap = [(self._all[uid].sort_key, uid) for uid in self._live]
        for leaf, policy in self._policies.items():
            if policy != "Block":
                continue
            block = self._blocks.get(leaf)
            if block is not None and block[3] == generation:
                continue
            self._unblock(leaf)
            heap += self._lists.get(leaf, ())
        heapq.heapify(heap)
        recorded: dict[str, Decision] = {}
        stopped: set[str] = set()
        seen = len(decide.victims), len(decide.growth_victims)
        while heap:
            entry = heapq.heappop(heap)
            uid = entry[1]
            item = self._all.get(uid)
            if item is None or item.quota in stopped or uid in self._frozen:
                continue
            again = self._recheck.pop(uid, None)
            if (again is not None and self._lasting_over(decide, again[0], item, again[1])
                    and (again[2] == self._drops.get(item.quota, 0)
                         or not decide.reclaim_view.is_guaranteed(decide.claim(item)))):
                # Still over its node on the pass's own usage, and not guaranteed: the same refusal, nothing held.
                self._freeze(uid, again[0], again[1])
                continue
            decision = decide(item)
            recorded[uid] = decision
            if (len(decide.victims), len(decide.growth_victims)) != seen:
                taken = [v for v, _ in (*decide.victims[seen[0]:], *decide.growth_victims[seen[1]:])]
                seen = len(decide.victims), len(decide.growth_victims)
                for woken in self.wake(v.quota for v in taken):
                    if woken != uid and (self._all[woken].sort_key, woken) > entry:
                        heapq.heappush(heap, (self._all[woken].sort_key, woken))
            if decision:
                self.remove(uid)
                continue
            self._refused(item, decision, decide, generation, stopped)
        return recorded

    def _refused(self, item: QueueItem, decision: Decision, decide: AdmissionPass, generation: int,
                 stopped: set[str]) -> None:
        uid = item.uid
        explain = decision.why()
        self._tries[uid] += 1
        was = self._own[uid]
        if (was is not None and was.why in _RECLAIMED) != (explain.why in _RECLAIMED):
            self._dirty.add(item.quota)
        self._own[uid] = explain
        if self.policy(item.quota) == "Block":
            self._blocks[item.quota] = (uid, item, explain, generation)
            self._dirty.add(item.quota)
            stopped.add(item.quota)
            return
        if explain.why == "draining":
            self._freeze(uid, item.quota, explain.why)
        elif explain.why in _FREEZABLE and not decide.reclaim_view.is_guaranteed(decide.claim(item)):
            node = explain.node if explain.why != "capacity" else _CLUSTER
            if not decide.reclaiming or self._still_over(decide.real, node or _CLUSTER, item, explain.why):
                self._freeze(uid, node, explain.why)

    def _lasting_over(self, decide: AdmissionPass, node: str, item: QueueItem, why: str) -> bool:
        """``item`` is over ``node`` on usage that lasts beyond this pass: the pass's own view while it holds
        nothing for a reclaim, else the ledger the pass started from (a claimant's hold is gone in the next pass:
        a Block leaf's refused head is not tried again, and nothing drops for the jobs it kept out)."""
        return self._still_over(decide.real if decide.reclaiming else decide.view, node, item, why)

    # --- freezing ----------------------------------------------------------------------------------

    def wake(self, quotas: Iterable[str], released: Ledger | None = None) -> list[str]:
        """Usage dropped in these leaves (or, for a claim charged at the root, there): thaw the jobs frozen on
        any node of their paths or on the cluster's capacity; returns them. After a release (``released``:
        the ledger without it), a job of another leaf that still exceeds the node it is frozen on stays
        frozen: usage there only grows until the next release, and its leaf's guarantee did not move."""
        woken: list[str] = []
        for quota in quotas:
            self._drops[quota] = self._drops.get(quota, 0) + 1
            for node in (*self._path(quota), _CLUSTER):
                kept: set[str] = set()
                for uid in self._watch.pop(node, ()):
                    item = self._all[uid]
                    if (released is not None and item.quota != quota
                            and self._still_over(released, node, item, self._frozen[uid][1])):
                        kept.add(uid)
                        continue
                    found = self._frozen.pop(uid)
                    if found[1] in ("max", "max-jobs", "capacity"):
                        self._recheck[uid] = (*found, self._stamps[uid])
                    self._live.add(uid)
                    woken.append(uid)
                if kept:
                    self._watch[node] = kept
        return woken

    def _still_over(self, ledger: Ledger, node: str, item: QueueItem, why: str) -> bool:
        """``item`` is still refused by the rule it is frozen for on ``node`` (max or max-jobs, or capacity)."""
        request = item.request
        if node == _CLUSTER:
            capacity = ledger.capacity
            if capacity is None:
                return False
            limit = {r: capacity.get(r, 0) for r in set(capacity) | set(request)}
            return bool(ledger.usage(self._tree.root.full_name).exceeding(request, limit))
        quota = self._tree.get(node)
        if quota is None:
            return False
        if why == "max":
            return bool(ledger.usage(node).exceeding(request, quota.max))
        if why == "max-jobs":
            return quota.max_jobs is not None and ledger.jobs(node) + 1 > quota.max_jobs
        return False

    def touch(self, quota: str) -> None:
        """The replay's ledger changed in ``quota`` (a leaf's heads depend on its usage)."""
        self._dirty.add(quota)

    def guaranteed_heads(self, real: Ledger, claim: Callable[[QueueItem], Claim]) -> list[Claim]:
        """``Queues.guaranteed_heads``, kept per leaf and recomputed for the leaves whose queue, records or usage
        changed (the kept claims keep the admission time they were made at, which no rule reads)."""
        for leaf in self._dirty:
            self._flat = None
            heads = self._leaf_heads(leaf, real, claim)
            if heads:
                self._heads[leaf] = heads
            else:
                self._heads.pop(leaf, None)
        self._dirty.clear()
        if self._flat is None:
            self._flat = [c for leaf in sorted(self._heads) for c in self._heads[leaf]]
        return list(self._flat)

    def _leaf_heads(self, leaf: str, real: Ledger, claim: Callable[[QueueItem], Claim]) -> list[Claim]:
        entries = self._lists.get(leaf)
        if not entries:
            return []
        block = self._blocks.get(leaf)
        head = entries[0][1]
        owed = [uid for _, uid in entries[1:] if (block is None or block[0] == uid)
                and (own := self._own[uid]) is not None and own.why in _RECLAIMED]
        out = []
        for uid in (head, *owed):
            if uid in real:
                continue
            found = claim(self._all[uid])
            if real.is_guaranteed(found):
                out.append(found)
        return out

    def _freeze(self, uid: str, node: str | None, why: str) -> None:
        node = node or _CLUSTER
        self._live.discard(uid)
        self._frozen[uid] = node, why
        self._stamps[uid] = self._drops.get(self._all[uid].quota, 0)
        self._watch.setdefault(node, set()).add(uid)

    def _thaw(self, uid: str) -> None:
        self._recheck.pop(uid, None)
        found = self._frozen.pop(uid, None)
        if found is not None:
            self._watch[found[0]].discard(uid)

    def _path(self, quota: str) -> tuple[str, ...]:
        found = self._paths.get(quota)
        if found is None:
            node = self._tree.get(quota)
            home = quota if node is not None and node.is_leaf else self._tree.root.full_name
            found = self._paths[quota] = tuple(n.full_name for n in self._tree.path_to_root(home))
        return found

    def _discard(self, item: QueueItem) -> None:
        entries = self._lists[item.quota]
        i = bisect_left(entries, (item.sort_key, item.uid))
        if i < len(entries) and entries[i][1] == item.uid:
            del entries[i]
        self._thaw(item.uid)
        self._live.discard(item.uid)
        self._dirty.add(item.quota)

    def _unblock(self, leaf: str) -> None:
        if self._blocks.pop(leaf, None) is not None:
            self._dirty.add(leaf)

    def _check_block(self, leaf: str) -> None:
        block = self._blocks.get(leaf)
        if block is None:
            return
        entries = self._lists.get(leaf)
        if not entries or entries[0][1] != block[0] or self._all.get(block[0]) != block[1]:
            self._unblock(leaf)


class ReplayLedger(Ledger):
    """The replay's ledger: a copy of the given one whose sorted claims are kept until it changes (every pass
    lists them, most passes change nothing)."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger.tree, ledger.capacity)
        for claim in ledger.claims():
            self.add(claim)
        self._listed: tuple[Claim, ...] = ()
        self._listed_at = -1

    def claims(self) -> tuple[Claim, ...]:
        if self._listed_at != self.generation:
            self._listed, self._listed_at = super().claims(), self.generation
        return self._listed


class ViewCache:
    """``Ledger.headroom`` and ``Ledger.within_min`` of the leaves on the replay's ledgers, for the forecast: what
    each node of a path leaves free is computed once per ledger and shared by the leaves under it, and equal
    answers are the same object (interned), which lets the forecast see an opening equal to one it kept at once.
    A ledger is read as it is when first asked (the forecast asks after each time's passes, of ledgers it no
    longer changes); ``within_min`` is kept while the leaf's usage is the same object (usage values are immutable
    and replaced on every change)."""

    def __init__(self, tree: QuotaTree) -> None:
        self._tree = tree
        self._paths: dict[str, tuple[QuotaNode, ...]] = {}
        self._nodes: dict[int, tuple[Ledger, dict[str, tuple[dict[str, int], int | None]]]] = {}
        self._interned: dict[tuple[object, ...], Resources] = {}
        self._mins: dict[str, tuple[object, Resources]] = {}

    def forget(self) -> None:
        """Forget the ledgers read so far (they are about to change or go)."""
        self._nodes.clear()

    def intern(self, amounts: dict[str, int]) -> Resources:
        key = tuple(amounts.items())
        found = self._interned.get(key)
        if found is None:
            found = self._interned[key] = Resources(amounts)
        return found

    def headroom(self, view: Ledger, leaf: str) -> tuple[Resources, int | None]:
        """``view.headroom(leaf)``."""
        kept = self._nodes.get(id(view))
        if kept is None or kept[0] is not view:
            kept = self._nodes[id(view)] = (view, {})
        nodes = kept[1]
        path = self._paths.get(leaf)
        if path is None:
            node = self._tree.get(leaf)
            home = leaf if node is not None and node.is_leaf else self._tree.root.full_name
            path = self._paths[leaf] = self._tree.path_to_root(home)
        free: dict[str, int] = {}
        slots: int | None = None
        for node in path:
            found = nodes.get(node.full_name)
            if found is None:
                used = view.usage(node.full_name)
                left = None if node.max_jobs is None else node.max_jobs - view.jobs(node.full_name)
                found = nodes[node.full_name] = {r: limit - used.get(r) for r, limit in node.max.items()}, left
            for r, v in found[0].items():
                free[r] = min(free.get(r, v), v)
            if found[1] is not None:
                slots = found[1] if slots is None else min(slots, found[1])
        capacity = view.capacity
        if capacity is not None:
            total = view.usage(self._tree.root.full_name)
            for r, limit in capacity.items():
                free[r] = min(free.get(r, limit - total.get(r)), limit - total.get(r))
        return self.intern({r: max(0, v) for r, v in free.items()}), None if slots is None else max(0, slots)

    def within_min(self, view: Ledger, leaf: str) -> Resources:
        """``view.within_min(leaf)``."""
        used = view.usage(leaf)
        kept = self._mins.get(leaf)
        if kept is not None and kept[0] is used:
            return kept[1]
        found = self.intern(dict(view.within_min(leaf).items()))
        self._mins[leaf] = (used, found)
        return found

"""The all-or-nothing bind barrier: gang members wait until the whole group has a node, then all bind.

Pure state transitions on an injected clock, no asyncio. The async adapter drives it like this:

* ``arrive(...)`` for each bind request: ``Wait(ticket)`` -> await a future for that ticket;
  ``ReleaseAll(bindings)`` -> bind every pod listed, then resolve each binding's ticket with its result;
  ``Fail(tickets, reason)`` -> answer ``Error`` to each ticket.
* ``expire()`` on a timer and before each arrival: every returned ``Fail`` settles its tickets.
* A member arriving twice (the scheduler retried) gets its *same* ticket back with the node replaced; it
  never counts twice. Two requests may therefore await one ticket: settle all of them.

``outcome(ticket)`` answers the current state of a ticket (``Wait`` while waiting, the settling
``ReleaseAll`` / ``Fail`` for a while after) so a late waiter can still learn its fate.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from common.clock import Clock

__all__ = ["BindBarrier", "Binding", "Fail", "Outcome", "ReleaseAll", "Wait"]


@dataclass(frozen=True, slots=True)
class Binding:
    """One pod to bind to one node, answered on ``ticket``."""

    ticket: int
    pod_uid: str
    node: str


@dataclass(frozen=True, slots=True)
class Wait:
    """The member waits: ``arrived`` of ``expected`` members of ``gang`` have a node."""

    ticket: int
    gang: str
    arrived: int
    expected: int


@dataclass(frozen=True, slots=True)
class ReleaseAll:
    """Bind every one of ``bindings`` now (the whole gang, or a single non-gang pod)."""

    gang: str | None
    bindings: tuple[Binding, ...]

    @property
    def tickets(self) -> tuple[int, ...]:
        return tuple(b.ticket for b in self.bindings)


@dataclass(frozen=True, slots=True)
class Fail:
    """Bind none of them: every ticket gets ``reason`` as its Error."""

    gang: str
    reason: str
    tickets: tuple[int, ...]
    pod_uids: tuple[str, ...]


Outcome = Wait | ReleaseAll | Fail


@dataclass(slots=True)
class _Group:
    gang: str
    started: float
    expected: int
    waiting: dict[str, Binding] = field(default_factory=dict)  # pod uid -> binding


def _seconds(value: float) -> str:
    return f"{value:g}s"


class BindBarrier:
    """Gangs gather here until complete (``ReleaseAll``) or until ``timeout`` seconds pass (``Fail``)."""

    def __init__(self, timeout: float, clock: Clock) -> None:
        if timeout <= 0:
            raise ValueError(f"gang bind timeout must be positive, got {timeout}")
        self._timeout = timeout
        self._clock = clock
        self._tickets = itertools.count(1)
        self._groups: dict[str, _Group] = {}
        self._ticket_gang: dict[int, str] = {}  # waiting ticket -> gang
        self._settled: dict[int, tuple[Outcome, float]] = {}  # ticket -> (outcome, when)

    @property
    def timeout(self) -> float:
        return self._timeout

    def arrive(self, pod_uid: str, gang: str | None, node: str, expected_members: int) -> Outcome:
        """A bind request: release at once (non-gang, or the last member), or wait with a ticket.

        ``expected_members`` is the gang's size as known now; the latest arrival's count is used."""
        now = self._clock.monotonic()
        if gang is None:
            released = ReleaseAll(None, (Binding(next(self._tickets), pod_uid, node),))
            self._settle(released, now)
            return released
        group = self._groups.get(gang)
        if group is None:
            group = self._groups[gang] = _Group(gang=gang, started=now, expected=expected_members)
        group.expected = expected_members
        previous = group.waiting.get(pod_uid)
        ticket = previous.ticket if previous is not None else next(self._tickets)
        group.waiting[pod_uid] = Binding(ticket, pod_uid, node)
        self._ticket_gang[ticket] = gang
        if len(group.waiting) >= group.expected:
            bindings = tuple(group.waiting[uid] for uid in sorted(group.waiting))
            self._close(group)
            done = ReleaseAll(gang, bindings)
            self._settle(done, now)
            return done
        return Wait(ticket, gang, len(group.waiting), group.expected)

    def expire(self, now: float | None = None) -> tuple[Fail, ...]:
        """Fail every gang waiting longer than the timeout (sorted by gang); forget old settled tickets."""
        at = self._clock.monotonic() if now is None else now
        out = []
        for gang in sorted(self._groups):
            group = self._groups[gang]
            if at - group.started >= self._timeout:
                reason = (
                    f"gang {gang}: {len(group.waiting)} of {group.expected} members reached bind within "
                    f"{_seconds(self._timeout)}; none bound"
                )
                out.append(self._fail(group, reason, at))
        for ticket in [t for t, (_, when) in self._settled.items() if at - when > self._timeout]:
            del self._settled[ticket]
        return tuple(out)

    def abort(self, gang: str, reason: str) -> Fail | None:
        """Fail a waiting gang now (e.g. a member was deleted); None when nothing waits for it."""
        group = self._groups.get(gang)
        if group is None:
            return None
        return self._fail(group, f"gang {gang}: {reason}; none bound", self._clock.monotonic())

    def outcome(self, ticket: int) -> Outcome | None:
        """``Wait`` while the ticket waits; its ``ReleaseAll``/``Fail`` once settled (for a while); else None."""
        gang = self._ticket_gang.get(ticket)
        if gang is not None:
            group = self._groups[gang]
            for binding in group.waiting.values():
                if binding.ticket == ticket:
                    return Wait(ticket, gang, len(group.waiting), group.expected)
        settled = self._settled.get(ticket)
        return settled[0] if settled else None

    def forget(self, ticket: int) -> None:
        """Drop a settled ticket's record once every waiter has it."""
        self._settled.pop(ticket, None)

    def waiting(self, gang: str) -> tuple[Binding, ...]:
        """The members of ``gang`` waiting now, sorted by pod UID."""
        group = self._groups.get(gang)
        return tuple(group.waiting[u] for u in sorted(group.waiting)) if group else ()

    def next_deadline(self) -> float | None:
        """When the earliest waiting gang times out (monotonic seconds), for the adapter's timer."""
        return min((g.started + self._timeout for g in self._groups.values()), default=None)

    def __len__(self) -> int:
        """How many gangs are waiting."""
        return len(self._groups)

    def _fail(self, group: _Group, reason: str, now: float) -> Fail:
        uids = tuple(sorted(group.waiting))
        failed = Fail(group.gang, reason, tuple(group.waiting[u].ticket for u in uids), uids)
        self._close(group)
        self._settle(failed, now)
        return failed

    def _close(self, group: _Group) -> None:
        del self._groups[group.gang]
        for binding in group.waiting.values():
            self._ticket_gang.pop(binding.ticket, None)

    def _settle(self, outcome: ReleaseAll | Fail, now: float) -> None:
        for ticket in outcome.tickets:
            self._settled[ticket] = (outcome, now)

"""The bind barrier: a gang binds all at once or not at all; time comes from a FakeClock."""

from __future__ import annotations

import pytest

from common.clock import FakeClock
from extender.barrier import BindBarrier, Binding, Fail, ReleaseAll, Wait

GANG = "video/c1"


def barrier(timeout: float = 25) -> tuple[BindBarrier, FakeClock]:
    clock = FakeClock()
    return BindBarrier(timeout=timeout, clock=clock), clock


def test_a_plain_pod_is_released_at_once() -> None:
    b, _ = barrier()
    out = b.arrive("p", None, "n1", 1)
    assert isinstance(out, ReleaseAll)
    assert out.bindings == (Binding(out.bindings[0].ticket, "p", "n1"),)
    assert b.outcome(out.bindings[0].ticket) == out
    assert len(b) == 0


def test_gang_members_wait_until_all_arrive_then_all_are_released_together() -> None:
    b, _ = barrier()
    first = b.arrive("m1", GANG, "n1", 3)
    second = b.arrive("m2", GANG, "n2", 3)
    assert isinstance(first, Wait) and isinstance(second, Wait)
    assert (second.arrived, second.expected) == (2, 3)
    assert b.outcome(first.ticket) == Wait(first.ticket, GANG, 2, 3)
    last = b.arrive("m3", GANG, "n1", 3)
    assert isinstance(last, ReleaseAll)
    assert [(x.pod_uid, x.node) for x in last.bindings] == [("m1", "n1"), ("m2", "n2"), ("m3", "n1")]
    assert set(last.tickets) >= {first.ticket, second.ticket}
    assert b.outcome(first.ticket) == last, "a waiter learns the release through its ticket"
    assert len(b) == 0


def test_a_gang_not_complete_within_the_timeout_fails_every_waiting_member() -> None:
    b, clock = barrier(timeout=25)
    tickets = []
    for i in range(20):
        out = b.arrive(f"m{i:02d}", GANG, "n1", 31)
        assert isinstance(out, Wait)
        tickets.append(out.ticket)
    clock.advance(24.9)
    assert b.expire() == ()
    clock.advance(0.1)
    (failed,) = b.expire()
    assert failed.reason == "gang video/c1: 20 of 31 members reached bind within 25s; none bound"
    assert sorted(failed.tickets) == sorted(tickets)
    assert b.outcome(tickets[0]) == failed
    assert b.waiting(GANG) == ()


def test_a_member_arriving_after_the_timeout_starts_a_new_round() -> None:
    b, clock = barrier(timeout=25)
    b.arrive("m1", GANG, "n1", 2)
    clock.advance(30)
    assert [f.pod_uids for f in b.expire()] == [("m1",)]
    late = b.arrive("m2", GANG, "n1", 2)
    assert isinstance(late, Wait) and late.arrived == 1


@pytest.mark.parametrize(
    ("retries", "node"),
    [
        pytest.param(["n1", "n1"], "n1", id="a retried bind with the same node never counts twice"),
        pytest.param(["n1", "n4"], "n4", id="a retried bind replaces the member's node"),
    ],
)
def test_retries_are_idempotent(retries: list[str], node: str) -> None:
    b, _ = barrier()
    outs = [b.arrive("m1", GANG, n, 2) for n in retries]
    assert all(isinstance(o, Wait) and o.arrived == 1 for o in outs)
    assert outs[0] == outs[1], "the retry gets the same ticket"
    done = b.arrive("m2", GANG, "n2", 2)
    assert isinstance(done, ReleaseAll)
    assert [(x.pod_uid, x.node) for x in done.bindings] == [("m1", node), ("m2", "n2")]


def test_the_latest_expected_count_is_used_when_the_gang_shrinks() -> None:
    b, _ = barrier()
    b.arrive("m1", GANG, "n1", 3)
    out = b.arrive("m2", GANG, "n1", 2)
    assert isinstance(out, ReleaseAll) and len(out.bindings) == 2


def test_abort_fails_a_waiting_gang_now() -> None:
    b, _ = barrier()
    wait = b.arrive("m1", GANG, "n1", 2)
    assert isinstance(wait, Wait)
    failed = b.abort(GANG, "member video/c1-1 was deleted")
    assert failed == Fail(GANG, "gang video/c1: member video/c1-1 was deleted; none bound", (wait.ticket,), ("m1",))
    assert b.abort(GANG, "again") is None


def test_gangs_are_independent_and_the_next_deadline_is_the_earliest() -> None:
    b, clock = barrier(timeout=25)
    b.arrive("a1", "video/a", "n1", 2)
    clock.advance(10)
    b.arrive("b1", "video/b", "n1", 2)
    assert b.next_deadline() == clock.monotonic() + 15
    clock.advance(15)
    assert [f.gang for f in b.expire()] == ["video/a"]
    assert b.waiting("video/b") != ()


def test_settled_outcomes_are_forgotten_after_a_while_or_on_request() -> None:
    b, clock = barrier(timeout=25)
    out = b.arrive("p", None, "n1", 1)
    assert isinstance(out, ReleaseAll)
    ticket = out.bindings[0].ticket
    other = b.arrive("q", None, "n1", 1)
    assert isinstance(other, ReleaseAll)
    b.forget(other.bindings[0].ticket)
    assert b.outcome(other.bindings[0].ticket) is None
    clock.advance(26)
    b.expire()
    assert b.outcome(ticket) is None


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="gang bind timeout must be positive, got 0"):
        BindBarrier(timeout=0, clock=FakeClock())

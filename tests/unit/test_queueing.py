"""Per-leaf queues: order, Round skip vs Block stall, exponential backoff, queue jumping and positions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.clock import FakeClock
from common.queueing import Backoff, QueueItem, QueuePolicy, Queues
from common.resources import Resources

LEAF = "root/algorithm/video"
OTHER = "root/algorithm/text"


def item(
    name: str,
    *,
    leaf: str = LEAF,
    priority: int = 0,
    enqueue: int = 0,
    namespace: str = "video",
    cpu: int = 1000,
) -> QueueItem:
    return QueueItem(
        uid=f"uid-{name}",
        namespace=namespace,
        name=name,
        quota=leaf,
        priority=priority,
        enqueue_ns=enqueue,
        request=Resources({"cpu": cpu}),
    )


@dataclass(frozen=True)
class Decision:
    admitted: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.admitted


class Recorder:
    """A try_admit that admits what fits a cpu budget and records the order it was asked in."""

    def __init__(self, budget: int = 0) -> None:
        self.budget = budget
        self.asked: list[str] = []

    def __call__(self, it: QueueItem) -> Decision:
        self.asked.append(it.name)
        cpu = it.request.get("cpu")
        if cpu <= self.budget:
            self.budget -= cpu
            return Decision(True)
        return Decision(False, f"{it.quota}: cpu used 0 + request {cpu}m > max {self.budget}m")


def names(items: tuple[QueueItem, ...]) -> list[str]:
    return [it.name for it in items]


def queues(policy: QueuePolicy = "Round", base: float = 1.0, cap: float = 8.0) -> tuple[Queues, FakeClock]:
    clock = FakeClock()
    q = Queues(clock, Backoff(base_seconds=base, max_seconds=cap))
    q.set_policy(LEAF, policy)
    return q, clock


# --- order -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "order"),
    [
        pytest.param(
            [item("low", priority=1), item("high", priority=5)],
            ["high", "low"],
            id="higher priority goes first",
        ),
        pytest.param(
            [item("late", enqueue=20), item("early", enqueue=10)],
            ["early", "late"],
            id="same priority: earlier enqueue goes first",
        ),
        pytest.param(
            [item("old-low", enqueue=1, priority=0), item("new-high", enqueue=99, priority=1)],
            ["new-high", "old-low"],
            id="priority beats enqueue time",
        ),
        pytest.param(
            [item("b", namespace="z"), item("a", namespace="z"), item("c", namespace="a")],
            ["c", "a", "b"],
            id="full ties break by namespace then name",
        ),
        pytest.param(
            [item("neg", priority=-1), item("zero"), item("pos", priority=1)],
            ["pos", "zero", "neg"],
            id="negative priorities come after zero",
        ),
    ],
)
def test_active_order(items: list[QueueItem], order: list[str]) -> None:
    q, _ = queues()
    for it in items:
        q.upsert(it)
    assert names(q.active(LEAF)) == order


def test_a_pass_walks_every_leaf_in_one_global_order() -> None:
    q, _ = queues()
    q.upsert(item("v-late", enqueue=30))
    q.upsert(item("t-mid", enqueue=20, leaf=OTHER))
    q.upsert(item("v-early", enqueue=10))
    q.upsert(item("t-urgent", enqueue=40, leaf=OTHER, priority=9))
    admit = Recorder(budget=100_000)
    result = q.schedule(admit, usage_generation=1)
    assert admit.asked == ["t-urgent", "v-early", "t-mid", "v-late"]
    assert names(result.admitted) == admit.asked
    assert len(q) == 0


# --- Round vs Block -----------------------------------------------------------------------------------


def seed_round_vs_block(policy: QueuePolicy) -> tuple[Queues, FakeClock]:
    q, clock = queues(policy)
    q.upsert(item("big", enqueue=1, cpu=12_000))
    q.upsert(item("small", enqueue=2, cpu=1_000))
    q.upsert(item("elsewhere", enqueue=3, cpu=1_000, leaf=OTHER))
    return q, clock


def test_round_skips_a_head_that_does_not_fit() -> None:
    q, _ = seed_round_vs_block("Round")
    admit = Recorder(budget=2_000)
    result = q.schedule(admit, usage_generation=1)
    assert admit.asked == ["big", "small", "elsewhere"]
    assert names(result.admitted) == ["small", "elsewhere"]
    [backed] = result.backed_off
    assert (backed.item.name, backed.attempts, backed.delay_seconds) == ("big", 1, 1.0)
    assert backed.reason == f"{LEAF}: cpu used 0 + request 12000m > max 2000m"
    assert result.blocked == ()
    assert names(q.backoff(LEAF)) == ["big"]
    assert q.reason("uid-big") == backed.reason


def test_block_stalls_the_leaf_behind_a_head_that_does_not_fit() -> None:
    q, _ = seed_round_vs_block("Block")
    admit = Recorder(budget=2_000)
    result = q.schedule(admit, usage_generation=1)
    assert admit.asked == ["big", "elsewhere"]
    assert names(result.admitted) == ["elsewhere"]
    assert result.backed_off == ()
    [blocked] = result.blocked
    assert (blocked.leaf, blocked.item.name, blocked.usage_generation, blocked.new) == (LEAF, "big", 1, True)
    assert names(q.active(LEAF)) == ["big", "small"]
    assert q.blocked(LEAF) == blocked.reason
    assert q.reason("uid-small") == (
        f"{LEAF}: Block policy: waiting behind video/big: {LEAF}: cpu used 0 + request 12000m > max 2000m"
    )


def test_priority_policy_behaves_as_round() -> None:
    q, _ = seed_round_vs_block("Priority")
    result = q.schedule(Recorder(budget=2_000), usage_generation=1)
    assert names(result.admitted) == ["small", "elsewhere"]


def test_a_blocked_leaf_is_not_retried_until_usage_changes() -> None:
    q, _ = seed_round_vs_block("Block")
    first = q.schedule(Recorder(budget=1_000), usage_generation=7)
    assert names(first.admitted) == ["elsewhere"]
    again = Recorder(budget=100_000)
    result = q.schedule(again, usage_generation=7)
    assert again.asked == []
    [still] = result.blocked
    assert (still.leaf, still.new, still.usage_generation) == (LEAF, False, 7)
    moved = Recorder(budget=100_000)
    result = q.schedule(moved, usage_generation=8)
    assert moved.asked == ["big", "small"]
    assert names(result.admitted) == ["big", "small"]
    assert result.blocked == ()


@pytest.mark.parametrize(
    ("change", "lifted"),
    [
        pytest.param(lambda q: q.remove("uid-big"), True, id="removing the blocking head lifts the block"),
        pytest.param(
            lambda q: q.upsert(item("small", enqueue=2, cpu=1_000, priority=5)),
            True,
            id="an item jumping ahead of the blocking head lifts the block",
        ),
        pytest.param(
            lambda q: q.upsert(item("big", enqueue=1, cpu=1_000)),
            True,
            id="a change to the blocking head's request lifts the block",
        ),
        pytest.param(lambda q: q.set_policy(LEAF, "Round"), True, id="leaving Block lifts the block"),
        pytest.param(
            lambda q: q.upsert(item("later", enqueue=9)),
            False,
            id="an item queued behind keeps the leaf blocked",
        ),
        pytest.param(
            lambda q: q.remove("uid-small"), False, id="removing an item behind keeps the leaf blocked"
        ),
    ],
)
def test_what_lifts_a_block(change: Callable[[Queues], object], lifted: bool) -> None:
    q, _ = seed_round_vs_block("Block")
    q.schedule(Recorder(budget=0), usage_generation=1)
    change(q)
    assert (q.blocked(LEAF) is None) is lifted
    admit = Recorder(budget=100_000)
    q.schedule(admit, usage_generation=1)
    assert any(n != "elsewhere" for n in admit.asked) is lifted


# --- backoff --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [
        pytest.param(1, 5.0, id="the first refusal waits the base"),
        pytest.param(2, 10.0, id="the second waits twice the base"),
        pytest.param(4, 40.0, id="each refusal doubles the wait"),
        pytest.param(7, 300.0, id="the wait is capped"),
        pytest.param(10_000, 300.0, id="a huge attempt count stays at the cap"),
    ],
)
def test_backoff_delay(attempts: int, delay: float) -> None:
    assert Backoff(base_seconds=5, max_seconds=300).delay(attempts) == delay


@pytest.mark.parametrize(
    ("base", "cap", "message"),
    [
        pytest.param(0.0, 10.0, "base_seconds must be > 0", id="a zero base is refused"),
        pytest.param(
            5.0, 1.0, "max_seconds 1.0 must be >= base_seconds 5.0", id="a cap below the base is refused"
        ),
    ],
)
def test_backoff_settings_are_validated(base: float, cap: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(base_seconds=base, max_seconds=cap)


def test_repeated_refusals_double_the_delay_up_to_the_cap() -> None:
    q, clock = queues(base=1.0, cap=4.0)
    q.upsert(item("big", cpu=12_000))
    delays = []
    for generation in range(5):
        result = q.schedule(Recorder(budget=0), usage_generation=generation)
        [backed] = result.backed_off
        delays.append(backed.delay_seconds)
        assert backed.retry_at == clock.monotonic() + backed.delay_seconds
        assert q.next_retry() == backed.retry_at
        clock.advance(backed.delay_seconds)
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert q.attempts("uid-big") == 5


def test_an_item_in_backoff_is_skipped_until_its_delay_ends() -> None:
    q, clock = queues(base=2.0)
    q.upsert(item("big", cpu=12_000))
    q.schedule(Recorder(budget=0), usage_generation=1)
    clock.advance(1.999)
    early = Recorder(budget=100_000)
    result = q.schedule(early, usage_generation=2)
    assert early.asked == []
    assert (result.admitted, result.expired) == ((), ())
    assert q.in_backoff("uid-big")
    clock.advance(0.001)
    assert names(q.active(LEAF)) == ["big"]
    assert q.backoff(LEAF) == ()
    assert not q.in_backoff("uid-big")
    assert q.next_retry() is None


def test_expired_items_are_reported_and_tried_in_the_same_pass() -> None:
    q, clock = queues(base=1.0)
    q.upsert(item("a", cpu=5_000, enqueue=1))
    q.upsert(item("b", cpu=5_000, enqueue=2))
    q.schedule(Recorder(budget=0), usage_generation=1)
    clock.advance(1.0)
    result = q.schedule(Recorder(budget=5_000), usage_generation=2)
    assert names(result.expired) == ["a", "b"]
    assert names(result.admitted) == ["a"]
    assert [(b.item.name, b.attempts, b.delay_seconds) for b in result.backed_off] == [("b", 2, 2.0)]


def test_retry_now_ends_backoff_but_keeps_the_attempt_count() -> None:
    q, _ = queues(base=1.0)
    q.upsert(item("a", cpu=5_000))
    q.upsert(item("t", cpu=5_000, leaf=OTHER))
    q.schedule(Recorder(budget=0), usage_generation=1)
    assert names(q.retry_now(LEAF)) == ["a"]
    assert names(q.active(LEAF)) == ["a"]
    assert names(q.backoff(OTHER)) == ["t"]
    assert q.attempts("uid-a") == 1
    [backed] = q.schedule(Recorder(budget=0), usage_generation=2).backed_off
    assert (backed.item.name, backed.delay_seconds) == ("a", 2.0)


# --- queue jumping ----------------------------------------------------------------------------------------


def test_raising_priority_moves_an_item_ahead_and_clears_its_backoff() -> None:
    q, _ = queues()
    q.upsert(item("first", enqueue=1, cpu=1_000))
    q.upsert(item("urgent", enqueue=2, cpu=12_000))
    q.schedule(Recorder(budget=0), usage_generation=1)  # both refused: both in backoff
    assert q.backoff(LEAF) != ()
    q.upsert(item("urgent", enqueue=2, cpu=12_000, priority=100))
    assert names(q.active(LEAF)) == ["urgent"]
    assert names(q.backoff(LEAF)) == ["first"]
    assert (q.position("uid-urgent"), q.attempts("uid-urgent"), q.reason("uid-urgent")) == (1, 0, None)
    admit = Recorder(budget=100_000)
    q.schedule(admit, usage_generation=1)
    assert admit.asked == ["urgent"]


def test_raising_priority_of_an_active_item_reorders_at_once() -> None:
    q, _ = queues()
    for n in range(5):
        q.upsert(item(f"j{n}", enqueue=n))
    q.upsert(item("j4", enqueue=4, priority=1))
    assert names(q.active(LEAF)) == ["j4", "j0", "j1", "j2", "j3"]
    assert q.position("uid-j4") == 1
    assert q.position("uid-j0") == 2


def test_a_request_change_keeps_the_backoff() -> None:
    q, _ = queues()
    q.upsert(item("a", cpu=12_000))
    q.schedule(Recorder(budget=0), usage_generation=1)
    q.upsert(item("a", cpu=6_000))
    assert q.in_backoff("uid-a")
    assert q.get("uid-a") == item("a", cpu=6_000)
    assert q.attempts("uid-a") == 1


def test_moving_to_another_quota_moves_the_item_and_clears_backoff() -> None:
    q, _ = queues()
    q.upsert(item("a", cpu=12_000))
    q.schedule(Recorder(budget=0), usage_generation=1)
    q.upsert(item("a", cpu=12_000, leaf=OTHER))
    assert (q.active(LEAF), q.backoff(LEAF)) == ((), ())
    assert names(q.active(OTHER)) == ["a"]
    assert q.attempts("uid-a") == 0


# --- positions, membership --------------------------------------------------------------------------------


def test_positions_match_the_seed_queue_status_shape() -> None:
    """The guide's second video job: refused for quota, listed in the queue's backoff."""
    q, _ = queues()
    q.upsert(item("rayjob-video-h4x2q", cpu=12_000))
    q.schedule(Recorder(budget=1_500), usage_generation=1)
    assert q.positions(LEAF) == {
        "active": [],
        "backoff": [
            {"name": "rayjob-video-h4x2q-ray-qu", "namespace": "video", "position": 1, "priority": 0}
        ],
    }


def test_positions_count_from_one_within_each_list() -> None:
    q, _ = queues()
    q.upsert(item("refused", enqueue=0, cpu=9_000))
    q.schedule(Recorder(budget=0), usage_generation=1)
    q.upsert(item("b", enqueue=2, priority=3, namespace="ns-b"))
    q.upsert(item("a", enqueue=1))
    assert q.positions(LEAF) == {
        "active": [
            {"name": "b-ray-qu", "namespace": "ns-b", "priority": 3, "position": 1},
            {"name": "a-ray-qu", "namespace": "video", "priority": 0, "position": 2},
        ],
        "backoff": [{"name": "refused-ray-qu", "namespace": "video", "priority": 0, "position": 1}],
    }
    assert [q.position(u) for u in ("uid-b", "uid-a", "uid-refused", "uid-none")] == [1, 2, 1, None]


def test_an_unknown_leaf_has_empty_lists_and_the_default_policy() -> None:
    q, _ = queues()
    assert q.positions("root/nowhere") == {"active": [], "backoff": []}
    assert q.policy("root/nowhere") == "Round"


def test_remove_returns_the_item_once() -> None:
    q, _ = queues()
    q.upsert(item("a"))
    assert "uid-a" in q
    assert q.remove("uid-a") == item("a")
    assert q.remove("uid-a") is None
    assert ("uid-a" in q, q.get("uid-a"), q.reason("uid-a"), q.attempts("uid-a")) == (False, None, None, 0)


def test_an_unknown_policy_is_refused() -> None:
    q, _ = queues()
    with pytest.raises(ValueError, match="must be one of Round, Priority, Block, got 'Fifo'"):
        q.set_policy(LEAF, "Fifo")  # type: ignore[arg-type]


def test_upserting_the_same_item_changes_nothing() -> None:
    q, _ = queues()
    q.upsert(item("a"))
    q.schedule(Recorder(budget=0), usage_generation=1)
    q.upsert(item("a"))
    assert q.in_backoff("uid-a")
    assert q.leaves() == (LEAF,)


# --- properties ----------------------------------------------------------------------------------------------

_LEAVES = ("root/a", "root/b", "root/c")
_ops = st.one_of(
    st.tuples(
        st.just("upsert"),
        st.integers(0, 9),
        st.sampled_from(_LEAVES),
        st.integers(-2, 3),
        st.integers(0, 5),
        st.integers(1, 4),
    ),
    st.tuples(st.just("remove"), st.integers(0, 9)),
    st.tuples(st.just("advance"), st.floats(0, 5)),
    st.tuples(st.just("schedule"), st.integers(0, 6), st.integers(0, 2)),
    st.tuples(st.just("policy"), st.sampled_from(_LEAVES), st.sampled_from(["Round", "Priority", "Block"])),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_ops, max_size=40))
def test_queues_stay_sorted_with_positions_one_to_n(ops: list[tuple[object, ...]]) -> None:
    clock = FakeClock()
    q = Queues(clock, Backoff(base_seconds=1, max_seconds=4))
    model: dict[str, QueueItem] = {}
    for op in ops:
        match op:
            case ("upsert", int(n), str(leaf), int(prio), int(enq), int(cpu)):
                it = QueueItem(
                    uid=f"u{n}",
                    namespace="ns",
                    name=f"j{n}",
                    quota=leaf,
                    priority=prio,
                    enqueue_ns=enq,
                    request=Resources({"cpu": cpu * 1000}),
                )
                q.upsert(it)
                model[it.uid] = it
            case ("remove", int(n)):
                assert (q.remove(f"u{n}") is None) == (f"u{n}" not in model)
                model.pop(f"u{n}", None)
            case ("advance", float(seconds)):
                clock.advance(seconds)
            case ("schedule", int(budget), int(generation)):
                result = q.schedule(Recorder(budget=budget * 1000), usage_generation=generation)
                for admitted in result.admitted:
                    del model[admitted.uid]
            case ("policy", str(leaf), policy):
                q.set_policy(leaf, policy)  # type: ignore[arg-type]
        seen: list[str] = []
        for leaf in _LEAVES:
            details = q.positions(leaf)
            for listed in (q.active(leaf), q.backoff(leaf)):
                keys = [it.sort_key for it in listed]
                assert keys == sorted(keys)
                assert all(it.quota == leaf for it in listed)
                seen += [it.uid for it in listed]
            for rows in (details["active"], details["backoff"]):
                assert [r["position"] for r in rows] == list(range(1, len(rows) + 1))
            for it in q.active(leaf) + q.backoff(leaf):
                assert q.position(it.uid) is not None
        assert sorted(seen) == sorted(model)
        assert all(q.get(uid) == it for uid, it in model.items())

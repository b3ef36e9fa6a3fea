"""Fair share's arithmetic (decay, weights, dominant resource, Fair Tree order), its attributes, its status, and
its admission rule (a borrowing job yields to the node that goes first, with the reason and its numbers)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import keys
from common.admission import AdmissionPass
from common.clock import FakeClock
from common.fair_share import DecayedUsage, FairOrder, borrowed, half_life_seconds, order_for, weight_of
from common.gotime import format_go
from common.ledger import Claim, Ledger
from common.queueing import QueueItem, Queues
from common.quota_tree import QuotaTree, TreeError, validate_tree
from common.resources import Resources
from tests.unit.builders import PassWorld, make_quota, make_tree

NS = 10**9
H = 3600.0
PROPERTY = settings(max_examples=200, deadline=None)
HALF = {keys.FAIR_SHARE_HALF_LIFE: "1h"}


def weighted(name: str, weight: float | None, *children: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """``make_quota`` with a fair-share weight (None: unset)."""
    attrs = {keys.FAIR_SHARE_WEIGHT: f"{weight:g}"} if weight is not None else None
    return make_quota(name, *children, attributes=attrs, **kw)


def teams(**weights: float) -> QuotaTree:
    """root (half-life 1h, cpu 100) > teams (min 30) > one leaf per weight, min 10 each."""
    kids = [weighted(t, w, min={"cpu": "10"}, max={"cpu": "100"}) for t, w in weights.items()]
    return make_tree(make_quota("root", make_quota("teams", *kids, min={"cpu": "30"}, max={"cpu": "100"}),
                                min={"cpu": "30"}, max={"cpu": "100"}, attributes=HALF))


# --- decay ---------------------------------------------------------------------------------------------


def test_usage_halves_every_half_life_when_nothing_is_borrowed() -> None:
    start = DecayedUsage(0, H, {"root/a": {"cpu": 1000.0}})
    assert start.advance(int(H * NS), {}).of("root/a")["cpu"] == pytest.approx(500.0)
    assert start.advance(int(3 * H * NS), {}).of("root/a")["cpu"] == pytest.approx(125.0)


def test_constant_borrowing_tends_to_rate_times_half_life_over_ln2() -> None:
    """The closed form: b·h/ln 2·(1 - 0.5^(Δ/h)); after one half-life half the limit, for ever the limit."""
    start = DecayedUsage(0, H)
    one = start.advance(int(H * NS), {"root/a": {"cpu": 2000}})
    assert one.of("root/a")["cpu"] == pytest.approx(2000 * H / math.log(2) * 0.5)
    forever = start.advance(int(200 * H * NS), {"root/a": {"cpu": 2000}})
    assert forever.of("root/a")["cpu"] == pytest.approx(2000 * H / math.log(2))


@PROPERTY
@given(u=st.floats(0, 1e9), b=st.integers(0, 10**6), d1=st.integers(0, 10**5), d2=st.integers(0, 10**5),
       h=st.floats(1, 1e6))
def test_two_steps_of_the_same_usage_are_one_step(u: float, b: int, d1: int, d2: int, h: float) -> None:
    start = DecayedUsage(0, h, {"root/a": {"cpu": u}} if u else {})
    two = start.advance(d1 * NS, {"root/a": {"cpu": b}}).advance((d1 + d2) * NS, {"root/a": {"cpu": b}})
    one = start.advance((d1 + d2) * NS, {"root/a": {"cpu": b}})
    assert two.of("root/a").get("cpu", 0.0) == pytest.approx(one.of("root/a").get("cpu", 0.0), rel=1e-9, abs=1e-6)


def test_a_clock_that_went_back_changes_nothing() -> None:
    start = DecayedUsage(10 * NS, H, {"root/a": {"cpu": 5.0}})
    assert start.advance(5 * NS, {"root/a": {"cpu": 1000}}) == start


@pytest.mark.parametrize(("used", "expected"), [
    pytest.param({"cpu": 8000}, {}, id="usage within min is not borrowed"),
    pytest.param({"cpu": 14000}, {"cpu": 4000}, id="only usage beyond min counts"),
    pytest.param({"cpu": 10000, "memory": 5}, {"memory": 5}, id="a resource min does not name is all borrowed"),
])
def test_borrowed_is_usage_beyond_min(used: dict[str, int], expected: dict[str, int]) -> None:
    tree = teams(a=1)
    out = borrowed(tree, lambda n: used if n == "root/teams/a" else {})
    assert out.get("root/teams/a", {}) == expected
    assert "root" not in borrowed(tree, lambda n: {"cpu": 10**9})  # the root has no siblings


# --- weights, dominant resource, the Fair Tree ---------------------------------------------------------


def test_a_share_is_the_dominant_resource_over_capacity_divided_by_the_weight() -> None:
    tree = make_tree(make_quota("root", weighted("a", 2, max={"cpu": "10"}), make_quota("b"),
                                max={"cpu": "100", "memory": "1000"}, attributes=HALF))
    usage = DecayedUsage(0, H, {"root/a": {"cpu": 10_000.0, "memory": 500.0}})
    share = FairOrder(tree, usage).shares["root/a"]
    # cpu: 10 cpu-s of 100 cpu = 0.1; memory: 500 of 1000 = 0.5: memory is dominant
    assert (share.resource, share.value, share.weight, share.ratio) == ("memory", 0.5, 2.0, 0.25)


def test_the_cluster_capacity_bounds_a_resource_the_maxes_leave_open() -> None:
    tree = make_tree(make_quota("root", make_quota("a"), make_quota("b"), attributes=HALF))
    usage = DecayedUsage(0, H, {"root/a": {"cpu": 50_000.0}})
    assert FairOrder(tree, usage, Resources({"cpu": 100_000})).shares["root/a"].value == 0.5
    assert FairOrder(tree, usage).shares["root/a"].value == 1.0  # unbounded: against the siblings' total


@pytest.mark.parametrize(("usage", "weights", "order"), [
    pytest.param({}, {}, ("root/a/x", "root/a/y", "root/b/z"), id="nobody used anything: by name"),
    pytest.param({"root/a": 5.0, "root/a/x": 5.0}, {}, ("root/b/z", "root/a/y", "root/a/x"),
                 id="siblings compete first, then their children inside"),
    pytest.param({"root/a": 4.0, "root/b": 3.0, "root/b/z": 3.0}, {"a": 2}, ("root/a/x", "root/a/y", "root/b/z"),
                 id="a weight of 2 halves a node's share"),
    pytest.param({"root/a": 1.0, "root/a/y": 1.0, "root/b": 2.0, "root/b/z": 2.0}, {},
                 ("root/a/x", "root/a/y", "root/b/z"), id="a grandchild's use does not jump its parent's place"),
])
def test_fair_tree_order(usage: dict[str, float], weights: dict[str, float], order: tuple[str, ...]) -> None:
    tree = make_tree(make_quota("root", weighted("a", weights.get("a"), make_quota("x"), make_quota("y")),
                                make_quota("b", make_quota("z")), max={"cpu": "100"}, attributes=HALF))
    decayed = DecayedUsage(0, H, {n: {"cpu": v * 1000} for n, v in usage.items()})
    assert FairOrder(tree, decayed).leaves() == order


@PROPERTY
@given(st.lists(st.floats(0, 1e6), min_size=4, max_size=4), st.lists(st.integers(1, 5), min_size=2, max_size=2))
def test_two_leaves_are_ranked_by_their_sides_below_their_common_ancestor(used: list[float], w: list[int]) -> None:
    tree = make_tree(make_quota("root", weighted("a", w[0], make_quota("x"), make_quota("y")),
                                weighted("b", w[1], make_quota("z")), max={"cpu": "100"}, attributes=HALF))
    names = ("root/a", "root/a/x", "root/b", "root/b/z")
    order = FairOrder(tree, DecayedUsage(0, H, {n: {"cpu": v} for n, v in zip(names, used, strict=True) if v}))
    ra, rb = order.shares["root/a"].ratio, order.shares["root/b"].ratio
    for leaf in ("root/a/x", "root/a/y"):
        assert order.competitors(leaf, "root/b/z") == ("root/a", "root/b")
        if ra != rb:
            assert order.goes_first(leaf, "root/b/z") == (ra < rb)
    rx, ry = order.shares["root/a/x"].ratio, order.shares["root/a/y"].ratio
    assert order.goes_first("root/a/x", "root/a/y") == ((rx, "root/a/x") < (ry, "root/a/y"))


def test_weights_default_to_one_and_are_not_inherited() -> None:
    tree = make_tree(make_quota("root", weighted("a", 3, make_quota("x"))))
    assert (weight_of(tree, "root/a"), weight_of(tree, "root/a/x")) == (3.0, 1.0)


# --- attributes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("root", "child", "problem"), [
    pytest.param({keys.FAIR_SHARE_HALF_LIFE: "one hour"}, {}, "expected a Go duration", id="a half-life in words"),
    pytest.param({keys.FAIR_SHARE_HALF_LIFE: "0s"}, {}, "a half-life must be positive", id="a zero half-life"),
    pytest.param({keys.FAIR_SHARE_HALF_LIFE: "9000h"}, {}, "at most 8760h", id="a half-life over a year"),
    pytest.param({}, {keys.FAIR_SHARE_HALF_LIFE: "1h"}, "read from the root's attributes only",
                 id="a half-life below the root"),
    pytest.param({}, {keys.FAIR_SHARE_WEIGHT: "0"}, "expected a positive number", id="a weight of zero"),
    pytest.param({}, {keys.FAIR_SHARE_WEIGHT: "-1"}, "expected a positive number", id="a negative weight"),
    pytest.param({}, {keys.FAIR_SHARE_WEIGHT: "2e9"}, "expected a positive number", id="a weight in exponent form"),
])
def test_bad_fair_share_attributes_are_refused_with_the_node_and_value(
        root: dict[str, str], child: dict[str, str], problem: str) -> None:
    obj = {"kind": keys.QUOTA_TREE_KIND, "spec": {"root": make_quota("root", make_quota("a", attributes=child),
                                                                    attributes=root)}}
    (error,) = validate_tree(obj)
    assert problem in error.message
    with pytest.raises(TreeError):
        QuotaTree.parse(obj)


def test_an_unset_half_life_is_todays_order() -> None:
    tree = make_tree(make_quota("root", make_quota("a"), make_quota("b")))
    assert half_life_seconds(tree) is None
    assert order_for(tree, {"fairShare": {"updated": format_go(0), "usage": {"root/a": {"cpu": 1.0}}}}, {}, NS) is None


# --- the status -------------------------------------------------------------------------------------------


def test_the_status_round_trips_and_a_gone_node_is_written_as_null() -> None:
    tree = teams(a=1, b=2)
    decayed = DecayedUsage(5 * NS, H, {"root/teams/a": {"cpu": 123456.789}})
    order = FairOrder(tree, decayed)
    written = decayed.to_status(order.shares, {"usage": {"root/teams/gone": {"cpu": 1.0}}})
    assert written["usage"] == {"root/teams/a": {"cpu": 123457.0}, "root/teams/gone": None}
    assert written["halfLife"] == "1h"
    back = DecayedUsage.from_status({"fairShare": written}, H, 99 * NS)
    assert (back.at_ns, back.usage) == (5 * NS, {"root/teams/a": {"cpu": 123457.0}})


@pytest.mark.parametrize("status", [
    pytest.param(None, id="no status"),
    pytest.param({"fairShare": {"updated": "yesterday", "usage": {"root/teams/a": {"cpu": 5}}}}, id="a bad time"),
    pytest.param({"fairShare": "x"}, id="not a mapping"),
])
def test_an_unreadable_status_starts_from_nothing_now(status: Any) -> None:
    assert DecayedUsage.from_status(status, H, 7 * NS) == DecayedUsage(7 * NS, H)


def test_order_for_continues_from_the_status_with_the_usage_it_recorded() -> None:
    tree = teams(a=1, b=1)
    status = {"fairShare": {"updated": format_go(0), "usage": {"root/teams/a": {"cpu": 1000.0}}}}
    order = order_for(tree, status, {"root/teams/a": Resources({"cpu": 12_000})}, int(H * NS))
    assert order is not None
    want = 1000 * 0.5 + 2000 * H / math.log(2) * 0.5
    assert order.decayed.of("root/teams/a")["cpu"] == pytest.approx(want)
    assert order.leaves()[0] == "root/teams/b"


# --- admission --------------------------------------------------------------------------------------------


def item(uid: str, team: str, cpu: int, at: int = 0, priority: int = 0) -> QueueItem:
    return QueueItem(uid=uid, namespace=team, name=uid, quota=f"root/teams/{team}", priority=priority,
                     enqueue_ns=at, request=Resources({"cpu": cpu * 1000}))


def world(running: dict[str, int], waiting: list[QueueItem], usage: dict[str, float]) -> tuple[Ledger, Queues,
                                                                                                 FairOrder]:
    tree = teams(a=1, b=1)
    ledger = Ledger(tree, Resources({"cpu": 100_000}))
    for team, cpu in running.items():
        ledger.add(Claim(f"run-{team}", f"{team}/run", "job", f"root/teams/{team}", Resources({"cpu": cpu * 1000})))
    queues = Queues(FakeClock())
    for it in waiting:
        queues.upsert(it)
    decayed = DecayedUsage(0, H, {f"root/teams/{t}": {"cpu": v} for t, v in usage.items()})
    return ledger, queues, FairOrder(tree, decayed, ledger.capacity)


def admitted(ledger: Ledger, queues: Queues, order: FairOrder | None) -> tuple[list[str], AdmissionPass]:
    decide = AdmissionPass(PassWorld(queues), ledger, 0, fair=order)
    result = queues.schedule(decide, ledger.generation, leaf_order=order.leaves() if order else None)
    return [it.uid for it in result.admitted], decide


def test_a_borrowing_job_yields_to_the_head_of_the_node_that_goes_first_and_says_why() -> None:
    """b has used more than a; a's next job (40 cpu) waits for borrowed capacity that b's small job would take."""
    waiting = [item("b-small", "b", 5, at=1), item("a-big", "a", 40, at=2)]
    ledger, queues, order = world({"a": 10, "b": 55}, waiting, {"a": 1e6, "b": 4e6})
    assert admitted(ledger, queues, None)[0] == ["b-small"]  # today's order: b's earlier job takes it
    ledger, queues, order = world({"a": 10, "b": 55}, waiting, {"a": 1e6, "b": 4e6})
    got, _ = admitted(ledger, queues, order)
    assert got == []
    words = queues.reason("b-small")
    assert words is not None
    assert words == ("root/teams/b used 1.6x its fair share of borrowed cpu over the last 3h (half-life 1h); "
                            "root/teams/a goes first (a/a-big waits for the borrowed capacity: root/teams: cpu used 65 + "
                            "request 40 > max 100)")
    found = queues.explain("b-small")
    assert found is not None and found.rule == "fair-share" and found.blocking == "root/teams/a"


def test_a_guaranteed_job_never_yields_to_fair_share() -> None:
    waiting = [item("b-min", "b", 5, at=1), item("a-big", "a", 40, at=2)]
    ledger, queues, order = world({"a": 10, "b": 5}, waiting, {"a": 1e6, "b": 4e6})
    ledger.add(Claim("run-a2", "a/run2", "job", "root/teams/a", Resources({"cpu": 50_000})))
    assert admitted(ledger, queues, order)[0] == ["b-min"]


def test_a_head_that_cannot_fit_even_when_the_others_give_back_blocks_no_one() -> None:
    waiting = [item("b-small", "b", 5, at=1), item("a-huge", "a", 101, at=2)]
    ledger, queues, order = world({"b": 50}, waiting, {"a": 1e6, "b": 4e6})
    assert admitted(ledger, queues, order)[0] == ["b-small"]


def test_later_jobs_of_the_same_leaf_yield_to_its_next_job() -> None:
    """Priority orders the jobs of a leaf; under fair share the next one is owed the borrowed capacity."""
    waiting = [item("a-big", "a", 40, at=1, priority=5), item("a-small", "a", 5, at=2)]
    ledger, queues, order = world({"a": 10, "b": 65}, waiting, {"b": 4e6})
    assert admitted(ledger, queues, order)[0] == []
    assert queues.reason("a-small") == ("root/teams/a: a/a-big goes first (next in this quota; it waits for the "
                                        "borrowed capacity: root/teams: cpu used 75 + request 40 > max 100)")
    ledger, queues, _ = world({"a": 10, "b": 65}, waiting, {"b": 4e6})
    assert admitted(ledger, queues, None)[0] == ["a-small"]  # today: Round skips the head


def test_the_lowest_share_goes_first_when_both_fit_one_at_a_time() -> None:
    waiting = [item("b1", "b", 30, at=1), item("a1", "a", 30, at=2)]
    ledger, queues, _ = world({"a": 10, "b": 35}, waiting, {"a": 1e6, "b": 4e6})
    assert admitted(ledger, queues, None)[0] == ["b1"]  # today's order: the earlier job
    ledger, queues, order = world({"a": 10, "b": 35}, waiting, {"a": 1e6, "b": 4e6})
    got, decide = admitted(ledger, queues, order)
    assert got == ["a1"]
    assert order.leaves() == ("root/teams/a", "root/teams/b")
    assert decide.admitted[0][0].uid == "a1"


# --- kubectl rayqueue top ---------------------------------------------------------------------------------


def test_top_shows_the_decayed_usage_and_share_beside_used_min_max() -> None:
    from rayqueue_cli import views
    from tests.unit.test_cli_views import seed_tree

    tree = seed_tree()
    tree["status"]["fairShare"] = {"updated": format_go(0), "halfLife": "1h",
                                   "usage": {"root/algorithm/video": {"cpu": 9.0e6}},
                                   "share": {"root/algorithm/video": 0.25}}
    report = views.top_report(tree)
    video = next(r for r in report["nodes"] if r["node"] == "root/algorithm/video")
    assert video["resources"]["cpu"] == {"used": 12500, "min": 12000, "max": 14000, "decayedHours": 2.5}
    assert video["fairShare"] == 0.25 and report["fairShare"]["halfLife"] == "1h"
    text = views.render(report)
    assert text.splitlines()[0].startswith("fair share: half-life 1h")
    line = next(x for x in text.splitlines() if x.strip().startswith("video"))
    assert " 2.5 " in line and " 0.25 " in line
    plain = views.top_report(seed_tree())  # no fair share: today's report, unchanged
    assert "fairShare" not in plain and "decayedHours" not in plain["nodes"][0]["resources"]["cpu"]

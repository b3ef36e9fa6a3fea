"""The start-time range (common/estimate_range.py), what it learns (common/estimate_learning.py) and how it is
told (common/eta.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.estimate_learning import (
    ARRIVAL_SIZE,
    MIN_ARRIVAL_SECONDS,
    RATIO_SIZE,
    Arrival,
    Learned,
    learned_from_status,
    learned_status,
    passed,
)
from common.estimate_range import published_bound, quantile, quantile_forecast, sample_ranges
from common.eta import eta_text, span
from common.ledger import Ledger
from common.start_times import NS, Forecast, Opening, replay
from tests.unit.test_start_times import MIN, NOW, X, Y, cpu, declared, running, tree, waiting

HOUR = 3600 * NS
SEEN = Learned(ratios=(1.0,) * 5, since_ns=NOW - HOUR)  # enough history, declarations held, nothing passed


def _world(runs: list[tuple[str, int, int]]) -> tuple[Ledger, list]:  # type: ignore[type-arg]
    ledger = Ledger(tree())
    held = []
    for i, (quota, n, minutes) in enumerate(runs):
        r = running(f"r{i}", quota, n, started_min_ago=1, runtime=declared(minutes))
        if ledger.check(r.claim):
            ledger.add(r.claim)
            held.append(r)
    return ledger, held


_RUNS = st.lists(st.tuples(st.sampled_from([X, Y]), st.integers(1, 6), st.integers(1, 30)), max_size=4)
_WAITS = st.lists(st.tuples(st.sampled_from([X, Y]), st.integers(1, 8), st.integers(1, 30), st.integers(0, 2)),
                  min_size=1, max_size=5)
_RATIOS = st.lists(st.floats(0.3, 3.0), min_size=5, max_size=12)
_ARRIVALS = st.lists(st.tuples(st.sampled_from([X, Y]), st.integers(1, 6), st.integers(0, 3), st.integers(1, 30)),
                     min_size=0, max_size=6)


@settings(max_examples=60, deadline=None)
@given(runs=_RUNS, waits=_WAITS, ratios=_RATIOS, arrivals=_ARRIVALS, seed=st.integers(0, 3))
def test_the_p90_is_never_before_the_p50_and_neither_before_now(
    runs: list[tuple[str, int, int]], waits: list[tuple[str, int, int, int]], ratios: list[float],
    arrivals: list[tuple[str, int, int, int]], seed: int,
) -> None:
    ledger, held = _world(runs)
    queued = [waiting(f"w{i}", quota, n, runtime=declared(minutes), priority=prio, enqueued_min_ago=5 - i * 0.1)
              for i, (quota, n, minutes, prio) in enumerate(waits)]
    rows = tuple(Arrival(NOW - (i + 1) * MIN, prio, cpu(n), minutes * 60.0)
                 for i, (_, n, prio, minutes) in enumerate(arrivals))
    learned = {leaf: Learned(tuple(ratios), tuple(a for a, (q, *_) in zip(rows, arrivals, strict=True) if q == leaf),
                             NOW - HOUR) for leaf in (X, Y)}
    out = sample_ranges(ledger, held, queued, NOW, learned=learned, runtimes={}, seed=seed, samples=8, forecast=False)
    for w in queued:
        r = out.ranges[w.item.uid]
        if r.p50_ns is not None:
            assert r.p50_ns >= NOW
            assert r.p90_ns is None or r.p90_ns >= r.p50_ns, r
        else:
            assert r.p90_ns is None


@settings(max_examples=60, deadline=None)
@given(runs=_RUNS, waits=_WAITS)
def test_with_exact_declarations_and_nothing_arriving_both_are_the_replayed_start(
    runs: list[tuple[str, int, int]], waits: list[tuple[str, int, int, int]],
) -> None:
    ledger, held = _world(runs)
    queued = [waiting(f"w{i}", quota, n, runtime=declared(minutes), priority=prio, enqueued_min_ago=5 - i * 0.1)
              for i, (quota, n, minutes, prio) in enumerate(waits)]
    base = replay(ledger, held, queued, NOW)
    out = sample_ranges(ledger, held, queued, NOW, learned={X: SEEN, Y: SEEN}, runtimes={})
    for w in queued:
        r = out.ranges[w.item.uid]
        assert r.p50_ns == r.p90_ns == base.estimates[w.item.uid].start_ns
    assert {leaf: (f.openings, f.bands) for leaf, f in out.forecasts.items()} == \
        {leaf: (f.openings, f.bands) for leaf, f in base.forecasts.items()}


def test_with_too_little_history_the_start_is_a_lower_bound_only_and_says_what_is_missing() -> None:
    ledger, held = _world([(X, 6, 10)])
    queued = [waiting("w", X, 6, runtime=declared(5))]
    young = {X: Learned(ratios=(1.0, 1.1), since_ns=NOW - 60 * NS), Y: Learned(since_ns=NOW - 60 * NS)}
    out = sample_ranges(ledger, held, queued, NOW, learned=young, runtimes={})
    r = out.ranges["w"]
    assert r.lower_bound_only and r.p50_ns == NOW + 9 * MIN
    assert r.note.startswith("a lower bound only: too little history for a range (2 of the 5 actual/declared "
                             "runtimes of finished jobs it needs; arrivals observed for less than 30m0s in root/a/x, "
                             "root/a/y)")
    assert out.latest == {}
    estimate = out.estimates["w"]
    assert estimate.start_ns == NOW + 9 * MIN and estimate.latest_ns is None
    assert estimate.message.endswith("; if nothing else changes; " + r.note)


def test_runtimes_that_overrun_their_declarations_widen_the_range() -> None:
    """The running job declared 10m (1m done); history says jobs take 1x to 2x what they declare: the waiting
    job's P50 is within that, its P90 near the 2x end, and the message says what the range assumes."""
    ledger, held = _world([(X, 6, 10)])
    queued = [waiting("w", X, 6, runtime=declared(5))]
    slow = Learned(ratios=(1.0, 1.25, 1.5, 1.75, 2.0), since_ns=NOW - HOUR)
    out = sample_ranges(ledger, held, queued, NOW, learned={X: slow, Y: SEEN}, runtimes={})
    r = out.ranges["w"]
    assert r.p50_ns is not None and r.p90_ns is not None
    assert NOW + 9 * MIN <= r.p50_ns <= r.p90_ns <= NOW + 19 * MIN
    assert r.p90_ns >= NOW + int(16.5 * MIN)
    assert "P50 and P90 over 8 sampled futures" in out.estimates["w"].message
    assert "if nothing else changes" not in out.estimates["w"].message


def test_jobs_that_passed_before_arrive_again_and_delay_a_waiting_job() -> None:
    """Nothing runs late, but higher-priority 6-cpu jobs of 20m arrived in y at 30 an hour: in the futures they
    pass the waiting job of x, so its P90 is later than the deterministic start, never earlier."""
    ledger, held = _world([(X, 6, 10)])
    queued = [waiting("w", X, 6, runtime=declared(5))]
    rows = tuple(Arrival(NOW - i * 2 * MIN, 5, cpu(6), 1200.0) for i in range(30, 0, -1))
    busy = Learned(ratios=(1.0,) * 5, arrivals=rows, since_ns=NOW - HOUR)
    out = sample_ranges(ledger, held, queued, NOW, learned={X: SEEN, Y: busy}, runtimes={})
    r = out.ranges["w"]
    assert r.p50_ns is not None and r.p90_ns is not None
    assert r.p90_ns > NOW + 9 * MIN and r.p50_ns >= NOW + 9 * MIN


def test_a_range_is_the_same_for_the_same_world_and_seed() -> None:
    ledger, held = _world([(X, 6, 10)])
    queued = [waiting("w", X, 6, runtime=declared(5))]
    slow = {X: Learned(ratios=(0.5, 1.0, 1.5, 2.0, 2.5), since_ns=NOW - HOUR), Y: SEEN}
    one = sample_ranges(ledger, held, queued, NOW, learned=slow, runtimes={}, forecast=False)
    two = sample_ranges(ledger, held, [*queued, waiting("z", Y, 1, runtime=declared(1))], NOW, learned=slow,
                        runtimes={}, forecast=False)
    assert one.ranges["w"] == two.ranges["w"]  # one more job changes nobody's draws


def test_quantiles_count_an_unknown_start_as_later_than_any() -> None:
    assert quantile([3, None, 1, 2], 0.5) == 2
    assert quantile([3, None, 1, 2], 0.9) is None
    assert quantile([], 0.5) is None
    assert published_bound(5 * NS + 1) == 6 * NS and published_bound(5 * NS) == 5 * NS


def test_a_quantile_forecast_gives_each_sampled_request_its_quantile_start() -> None:
    base = Forecast(X, (Opening(NOW + MIN, cpu(4)),), "never")
    futures = [Forecast(X, (Opening(NOW + k * MIN, cpu(4)), Opening(NOW + 10 * k * MIN, cpu(8))), "never")
               for k in range(1, 11)]
    p90 = quantile_forecast(base, futures, 0.9, NOW)
    assert p90.start(cpu(4), NOW) == NOW + 9 * MIN
    assert p90.start(cpu(8), NOW) == NOW + 90 * MIN
    assert p90.start(cpu(3), NOW) == NOW + 9 * MIN  # covered by the smallest opening that fits it
    assert quantile_forecast(base, [base, base], 0.9, NOW) is base


# --- learning -----------------------------------------------------------------------------------------------


def test_learned_history_round_trips_through_the_queue_status_and_stays_bounded() -> None:
    learned = Learned(since_ns=NOW - HOUR)
    for i in range(RATIO_SIZE + 5):
        learned = learned.with_ratio(660.0 + i, 600.0)
    for i in range(ARRIVAL_SIZE + 5):
        learned = learned.with_arrival(Arrival(NOW - (100 - i) * MIN, 10, cpu(2), 600.0 if i % 2 else None, i % 3 == 0))
    assert len(learned.ratios) == RATIO_SIZE and learned.ratios[0] == 1.108  # the oldest were dropped
    assert len(learned.arrivals) == ARRIVAL_SIZE
    status = learned_status(learned)
    assert status["ratiosPermille"][0] == 1108
    assert status["arrivals"][0]["request"] == {"cpu": "2"}
    assert learned_from_status({"estimateHistory": status}) == learned


def test_malformed_history_is_skipped_not_invented() -> None:
    status = {"estimateHistory": {"ratiosPermille": [1000, "x", -3, True], "since": "yesterday",
                                  "arrivals": [{"at": "2025-01-10T01:36:24Z", "priority": 1, "request": {"cpu": "2"}},
                                               {"at": "nope", "priority": 1}, {"priority": 2}, "row"]}}
    found = learned_from_status(status)
    assert found.ratios == (1.0,) and found.since_ns is None and len(found.arrivals) == 1
    assert learned_from_status({"estimateHistory": "x"}) == Learned() == learned_from_status(None)


def test_the_rate_of_arrivals_is_known_only_after_half_an_hour_of_observing() -> None:
    rows = tuple(Arrival(NOW - i * MIN, 0, cpu(1)) for i in (20, 10))
    assert Learned(arrivals=rows, since_ns=NOW - 20 * MIN).rate(NOW) is None
    assert Learned(arrivals=rows, since_ns=NOW - HOUR).rate(NOW) == pytest.approx(2 / 3600)
    assert Learned(since_ns=NOW - HOUR).rate(NOW) == 0.0
    assert MIN_ARRIVAL_SECONDS == 1800


def test_a_job_passed_when_one_submitted_before_it_still_waits() -> None:
    assert passed(NOW, [NOW - MIN, NOW + MIN])
    assert not passed(NOW, [NOW + MIN])
    assert not passed(NOW, [])


# --- telling it ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p50", "p90", "text"),
    [
        pytest.param(4 * 60, 11 * 60, "~4m, by 11m", id="the P50 then the P90 bound"),
        pytest.param(4 * 60, None, "not before ~4m", id="without a bound the P50 is a lower bound"),
        pytest.param(0, 90, "now, by 2m", id="due now, bounded later"),
        pytest.param(-5, -1, "now", id="both past"),
        pytest.param(45, 61, "~45s, by 2m", id="a bound is rounded up"),
        pytest.param(5400, 2 * 86400 + 3 * 3600, "~1h30m, by 2d3h", id="hours and days"),
    ],
)
def test_the_range_is_told_one_way(p50: int, p90: int | None, text: str) -> None:
    assert eta_text(NOW + p50 * NS, None if p90 is None else NOW + p90 * NS, NOW) == text


def test_an_unknown_start_is_told_unknown() -> None:
    assert eta_text(None, None, NOW) == "unknown"
    assert span(59.6) == "1m" and span(3599) == "1h" and span(60.2, up=True) == "2m"

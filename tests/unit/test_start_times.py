"""The start-time estimator: the controller's admission pass replayed over the expected ends of running jobs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common import keys
from common.ledger import Claim, Ledger
from common.queueing import QueueItem
from common.resources import Resources
from common.start_times import (
    DRAIN_SECONDS,
    NS,
    Running,
    Runtime,
    Waiting,
    estimate,
    format_duration,
    parse_duration,
    remember,
    replay,
    runtime_of,
)
from tests.unit.builders import make_quota, make_tree

NOW = 1_700_000_000 * NS
MIN = 60 * NS
X, Y = "root/a/x", "root/a/y"


def tree():  # type: ignore[no-untyped-def]
    """root (max 10 cpu) -> a (min 8, max 10) -> x (min 4, max 10), y (min 4, max 10)."""
    return make_tree(make_quota("root", make_quota("a", make_quota("x", min={"cpu": 4}, max={"cpu": 10}),
                                                   make_quota("y", min={"cpu": 4}, max={"cpu": 10}),
                                                   min={"cpu": 8}, max={"cpu": 10}),
                                min={"cpu": 8}, max={"cpu": 10}))


def cpu(n: int) -> Resources:
    return Resources({"cpu": n * 1000})


def declared(minutes: float) -> Runtime:
    return Runtime(minutes * 60, "declared", f"declared {format_duration(minutes * 60)}")


UNKNOWN = Runtime(None, "unknown", "no expected runtime")


def running(name: str, quota: str, n: int, *, started_min_ago: float, runtime: Runtime,
            priority: int = 0) -> Running:
    claim = Claim(uid=name, key=f"{quota.rsplit('/', 1)[1]}/{name}", kind="job", quota=quota, request=cpu(n),
                  priority=priority, admitted_order=NOW - int(started_min_ago * MIN))
    return Running(claim, NOW - int(started_min_ago * MIN), runtime, enqueue_ns=NOW - 10 * MIN)


def waiting(name: str, quota: str, n: int, *, runtime: Runtime = UNKNOWN, priority: int = 0,
            enqueued_min_ago: float = 1) -> Waiting:
    item = QueueItem(uid=name, namespace=quota.rsplit("/", 1)[1], name=name, quota=quota, priority=priority,
                     enqueue_ns=NOW - int(enqueued_min_ago * MIN), request=cpu(n))
    return Waiting(item, runtime)


def world(*jobs: Running) -> Ledger:
    ledger = Ledger(tree())
    for r in jobs:
        ledger.add(r.claim)
    return ledger


def test_a_job_starts_when_the_running_job_it_waits_for_ends() -> None:
    a = running("a", X, 8, started_min_ago=2, runtime=declared(10))
    ledger = world(a)
    out = estimate(ledger, [a], [waiting("b", X, 4)], NOW)
    assert out["b"].start_ns == NOW + 8 * MIN
    assert out["b"].message.startswith("after 1 running job in root/a/x finishes; runtime declared 10m0s")
    assert out["b"].waits_for == ("x/a",)
    assert out["b"].reason == "root/a/x: cpu used 8 + request 4 > max 10"
    assert ledger.claims() == (a.claim,)  # the real ledger is left alone


def test_jobs_queue_behind_each_other_in_priority_order() -> None:
    a = running("a", X, 8, started_min_ago=0, runtime=declared(10))
    jobs = [waiting("low", X, 6, runtime=declared(5), enqueued_min_ago=5),
            waiting("high", X, 6, runtime=declared(3), priority=10)]
    out = estimate(world(a), [a], jobs, NOW)
    assert out["high"].start_ns == NOW + 10 * MIN
    assert out["low"].start_ns == NOW + 13 * MIN  # after "high" (3m), which started at +10m
    assert "declared 3m0s" in out["low"].message


def test_a_job_that_fits_now_starts_now() -> None:
    out = estimate(world(), [], [waiting("b", X, 4)], NOW)
    assert out["b"].start_ns == NOW
    assert out["b"].message == "fits now: starts at the next admission pass"


def test_a_blocker_of_unknown_runtime_gives_no_time_and_is_named() -> None:
    a = running("a", X, 8, started_min_ago=2, runtime=UNKNOWN)
    out = estimate(world(a), [a], [waiting("b", X, 4)], NOW)
    assert out["b"].start_ns is None
    assert "x/a" in out["b"].message and keys.EXPECTED_RUNTIME in out["b"].message


def test_a_waiting_job_of_unknown_runtime_holds_its_quota_for_good_in_the_replay() -> None:
    jobs = [waiting("first", X, 8), waiting("second", X, 8, enqueued_min_ago=0)]
    out = estimate(world(), [], jobs, NOW)
    assert out["first"].start_ns == NOW
    assert out["second"].start_ns is None
    assert "x/first" in out["second"].message


def test_a_request_over_max_never_starts() -> None:
    out = estimate(world(), [], [waiting("big", X, 12)], NOW)
    assert out["big"].start_ns is None
    assert out["big"].message.startswith("never, as things stand: root/a/x: cpu")


def test_a_guaranteed_job_starts_now_by_reclaiming_a_borrower() -> None:
    """x borrows y's min; y's job within its min reclaims at once (the pass plans the victim), and the
    victim's claim drains for DRAIN_SECONDS first, as the controller waits for its pods."""
    own = running("own", X, 4, started_min_ago=1, runtime=declared(60))
    borrower = running("borrower", X, 6, started_min_ago=1, runtime=declared(60))
    jobs = [waiting("g", Y, 4, runtime=declared(5))]
    out = estimate(world(own, borrower), [own, borrower], jobs, NOW)
    assert out["g"].start_ns == NOW + round(DRAIN_SECONDS * NS)
    assert out["g"].message.startswith("once reclaimed quota drains (waiting for reclaim of x/borrower")


def test_guaranteed_first_holds_a_borrower_back_in_the_replay() -> None:
    """y waits within its min for a release; x's later borrower may not take that capacity first."""
    a = running("a", X, 4, started_min_ago=0, runtime=declared(60))
    b = running("b", Y, 6, started_min_ago=0, runtime=declared(5))
    jobs = [waiting("ynext", Y, 4, runtime=declared(5), enqueued_min_ago=1),
            waiting("xborrow", X, 4, runtime=declared(5), enqueued_min_ago=2, priority=5)]
    out = estimate(world(a, b), [a, b], jobs, NOW)
    assert out["ynext"].start_ns == NOW + 5 * MIN
    assert out["xborrow"].start_ns == NOW + 10 * MIN


def test_a_small_window_still_estimates_every_job() -> None:
    a = running("a", X, 10, started_min_ago=0, runtime=declared(1))
    jobs = [waiting(f"j{i}", X, 10, runtime=declared(1), enqueued_min_ago=10 - i) for i in range(5)]
    out = estimate(world(a), [a], jobs, NOW, window=2)
    assert [out[f"j{i}"].start_ns for i in range(5)] == [NOW + (i + 1) * MIN for i in range(5)]


def test_the_horizon_is_said_not_guessed() -> None:
    a = running("a", X, 10, started_min_ago=0, runtime=declared(1))
    jobs = [waiting(f"j{i}", X, 10, runtime=declared(1), enqueued_min_ago=10 - i) for i in range(3)]
    out = estimate(world(a), [a], jobs, NOW, max_releases=2)
    assert out["j1"].start_ns == NOW + 2 * MIN
    assert out["j2"].start_ns is None and "horizon" in out["j2"].message


def test_an_overdue_job_is_expected_to_end_now() -> None:
    a = running("a", X, 8, started_min_ago=20, runtime=declared(10))
    out = estimate(world(a), [a], [waiting("b", X, 4)], NOW)
    assert out["b"].start_ns == NOW


@pytest.mark.parametrize(
    ("annotations", "deadline", "history", "expected"),
    [
        pytest.param({keys.EXPECTED_RUNTIME: "1h30m"}, 60, [1.0], (5400.0, "declared"), id="the annotation first"),
        pytest.param({keys.EXPECTED_RUNTIME: "soon"}, 60, [], (60.0, "deadline"),
                     id="a bad annotation falls back to activeDeadlineSeconds"),
        pytest.param({}, None, [10.0, 30.0, 20.0], (20.0, "history"), id="then the median of the leaf's history"),
        pytest.param({}, None, [], (None, "unknown"), id="else unknown"),
    ],
)
def test_runtime_sources_in_order(annotations: dict[str, str], deadline: int | None, history: list[float],
                                  expected: tuple[float | None, str]) -> None:
    r = runtime_of(annotations, deadline, history, X)
    assert (r.seconds, r.source) == expected


def test_history_keeps_the_last_twenty() -> None:
    history: list[float] = []
    for i in range(25):
        history = remember(history, float(i))
    assert history == [float(i) for i in range(5, 25)]
    assert runtime_of({}, None, history, X).detail == "median 14s of the last 20 jobs of root/a/x"


@pytest.mark.parametrize(("text", "seconds"), [("45m", 2700.0), ("1h30m", 5400.0), ("1.5h", 5400.0),
                                               ("300ms", 0.3), ("2m3s", 123.0), ("0", 0.0)])
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1d", "m", "1h 30m"])
def test_not_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a Go duration"):
        parse_duration(text)


def test_in_about() -> None:
    from common.start_times import in_about

    assert [in_about(None, NOW), in_about(NOW - 1, NOW), in_about(NOW + 4 * MIN, NOW)] == ["unknown", "now", "~4m0s"]


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 45, 192, 3605)] == ["0s", "45s", "3m12s", "1h0m5s"]


def test_the_rayjob_carries_its_deadline_and_end_time() -> None:
    from common.rayjob import JobInfo
    from tests.unit.builders import make_rayjob

    obj = (make_rayjob("j", "x").head(cpu="1").set("spec.activeDeadlineSeconds", 600)
           .status("Complete", "SUCCEEDED").set("status.endTime", "2025-01-10T01:40:00Z").obj())
    job = JobInfo.from_rayjob(obj)
    assert job.active_deadline_seconds == 600
    assert job.end_ns == 1736473200 * NS
    plain = JobInfo.from_rayjob(make_rayjob("k", "x").head(cpu="1").obj())
    assert (plain.active_deadline_seconds, plain.end_ns) == (None, None)


# --- the forecast: when would a job submitted now start? -------------------------------------------


def test_the_forecast_tells_when_a_job_of_any_size_submitted_now_would_start() -> None:
    """x runs a (8 cpu, 8 more minutes); b (4 cpu, 5 min) waits for it. A job submitted now to x waits behind
    b: 6 cpu fit once b has started (8 min), 7 only once b ends too (13 min), 11 never (max 10). In y, whose
    queue is empty, 2 cpu fit now; 3 or 4 are within y's min, but reclaim cannot take a back for them (x
    would fall below its min of 4), so they wait for a to end, as 5 do."""
    a = running("a", X, 8, started_min_ago=2, runtime=declared(10))
    found = replay(world(a), [a], [waiting("b", X, 4, runtime=declared(5))], NOW)
    fx, fy = found.forecasts[X], found.forecasts[Y]
    assert [(o.at_ns, dict(o.free)) for o in fx.openings] == [
        (NOW, {"cpu": 2000}), (NOW + 8 * MIN, {"cpu": 6000}), (NOW + 13 * MIN, {"cpu": 10000})]
    assert (fx.start(cpu(2), NOW), fx.start(cpu(6), NOW), fx.start(cpu(7), NOW)) == (NOW, NOW + 8 * MIN, NOW + 13 * MIN)
    assert fx.start(cpu(11), NOW) is None
    assert fx.note == "never, as things stand: it does not fit even when every running job ends"
    assert fy.start(cpu(2), NOW) == NOW and fy.start(cpu(4), NOW) == NOW + 8 * MIN
    assert fy.start(cpu(5), NOW) == NOW + 8 * MIN
    assert fy.start(cpu(3), NOW, preemptible=False) == NOW + 8 * MIN
    assert fx.start(cpu(2), NOW, preemptible=False) == NOW + 13 * MIN  # x is above its min until b ends
    assert found.estimates["b"].start_ns == NOW + 8 * MIN  # the estimates are those of `estimate`


def test_a_guaranteed_job_is_forecast_to_start_once_reclaim_drains_and_only_as_far_as_reclaim_can_free() -> None:
    """x holds two 4-cpu borrowers (min 4): reclaim may take one back, not both. In y (min 4, empty, root
    full) a job of 4 cpu starts once one drains; within y's min but beyond what reclaim frees there is none."""
    a = running("a", X, 4, started_min_ago=2, runtime=declared(10))
    b = running("b", X, 4, started_min_ago=1, runtime=declared(20))
    c = running("c", Y, 2, started_min_ago=1, runtime=declared(30))
    found = replay(world(a, b, c), [a, b, c], [], NOW)
    fy = found.forecasts[Y]
    assert fy.start(cpu(2), NOW) == NOW + round(DRAIN_SECONDS * NS)  # y holds 2 of its min 4: 2 more by reclaim
    assert fy.start(cpu(2), NOW) == estimate(world(a, b, c), [a, b, c], [waiting("p", Y, 2, enqueued_min_ago=0)],
                                             NOW)["p"].start_ns  # as the replay of that job itself says
    assert fy.start(cpu(3), NOW) == NOW + 8 * MIN  # beyond its min: it waits for a to end


def test_in_a_block_leaf_the_forecast_waits_for_the_whole_queue() -> None:
    """Block: b's refusal stops x, so even 2 cpu wait until b has started."""
    a = running("a", X, 8, started_min_ago=2, runtime=declared(10))
    found = replay(world(a), [a], [waiting("b", X, 4, runtime=declared(5))], NOW, policies={X: "Block"})
    assert found.forecasts[X].start(cpu(2), NOW) == NOW + 8 * MIN


def test_the_forecast_says_what_it_cannot_tell() -> None:
    a = running("a", X, 8, started_min_ago=2, runtime=UNKNOWN)
    found = replay(world(a), [a], [waiting("b", X, 4, runtime=declared(5))], NOW, policies={X: "Block"})
    assert found.forecasts[X].openings == ()
    assert found.forecasts[X].note == ("unknown: the jobs waiting in root/a/x wait for running jobs with no "
                                       "expected runtime (x/a)")
    assert found.forecasts[Y].start(cpu(5), NOW) is None
    assert found.forecasts[Y].note == "unknown: only running jobs with no expected runtime (x/a) could free more"


_OPEN_TREE = make_tree(make_quota("root", make_quota("a", make_quota("x", max={"cpu": 10}),
                                                     make_quota("y", max={"cpu": 6}), max={"cpu": 12}),
                                  max={"cpu": 14}))


@settings(max_examples=150)
@given(
    runs=st.lists(st.tuples(st.sampled_from([X, Y]), st.integers(1, 6), st.integers(1, 30)), max_size=4),
    waits=st.lists(st.tuples(st.sampled_from([X, Y]), st.integers(1, 8), st.integers(1, 30), st.integers(0, 2)),
                   max_size=6),
    probe=st.integers(1, 12),
    priority=st.integers(-1, 3),
    block=st.booleans(),
)
def test_the_forecast_is_the_start_the_replay_gives_a_job_submitted_now(
    runs: list[tuple[str, int, int]], waits: list[tuple[str, int, int, int]], probe: int, priority: int,
    block: bool
) -> None:
    """With no min anywhere (no reclaim, no guaranteed-first), a job submitted now (behind every waiting job
    of its priority or higher, ahead of the rest) starts, in the replay, exactly at the forecast's first
    opening it fits, in the band of its priority. In a Block leaf only at the tail: a refused job there
    would also hold back the lower ones behind it, which the bands do not model."""
    ledger = Ledger(_OPEN_TREE)
    held: list[Running] = []
    for i, (quota, n, minutes) in enumerate(runs):
        r = running(f"r{i}", quota, n, started_min_ago=1, runtime=declared(minutes))
        if ledger.check(r.claim):
            ledger.add(r.claim)
            held.append(r)
    queued = [waiting(f"w{i}", quota, n, runtime=declared(minutes), priority=prio, enqueued_min_ago=5 - i * 0.1)
              for i, (quota, n, minutes, prio) in enumerate(waits)]
    policies = {X: "Block" if block else "Round", Y: "Round"}
    found = replay(ledger, held, queued, NOW, policies=policies)  # type: ignore[arg-type]
    priority = -1 if block else priority
    tail = waiting("probe", X, probe, priority=priority, enqueued_min_ago=0)
    actual = estimate(ledger, held, [*queued, tail], NOW, policies=policies)["probe"].start_ns  # type: ignore[arg-type]
    told = found.forecasts[X].start(cpu(probe), NOW, priority=priority)
    if told is None:
        assert actual is None or found.forecasts[X].note.startswith("unknown: beyond"), (actual, found.forecasts[X])
    else:
        assert actual == told, (actual, told, found.forecasts[X])


_MIN_TREE = make_tree(make_quota("root", make_quota("a", make_quota("x", min={"cpu": 4}, max={"cpu": 10}),
                                                    make_quota("y", min={"cpu": 4}, max={"cpu": 8}),
                                                    min={"cpu": 8}, max={"cpu": 12}),
                                 min={"cpu": 8}, max={"cpu": 12}))


@pytest.mark.parametrize(("runs", "waits", "probe"), [
    # y's guaranteed head (1 cpu) is protected by guaranteed-first: 10 cpu in x still fit beside it.
    ([(Y, 1, 1)], [(X, 1, 1, 0), (Y, 2, 1, 0)], 10),
    # guaranteed jobs of the job's own leaf are not protected from it: it passes them.
    ([], [(X, 1, 1, 0)] * 4, 10),
    # only the head is protected: y's head (7 cpu) is not guaranteed, so the 1-cpu job behind it is passed.
    ([(Y, 2, 2)], [(Y, 7, 1, 0), (Y, 1, 1, 0)], 10),
    # a lower claimant holding capacity for its reclaim (y's 4 cpu) is passed too.
    ([(X, 1, 10), (X, 5, 10), (X, 1, 10), (X, 2, 20)], [(X, 1, 1, 0), (Y, 4, 1, 0)], 1),
], ids=["guaranteed-head-kept", "own-leaf-passed", "only-the-head", "reclaim-claimant-passed"])
def test_a_higher_priority_job_passes_what_the_pass_would_let_it_pass(
    runs: list[tuple[str, int, int]], waits: list[tuple[str, int, int, int]], probe: int
) -> None:
    """Cases hypothesis found with mins (guaranteed-first, reclaim): the band's start is the job's own replay."""
    ledger = Ledger(_MIN_TREE)
    held = []
    for i, (quota, n, minutes) in enumerate(runs):
        r = running(f"r{i}", quota, n, started_min_ago=0.5 * (i + 1), runtime=declared(minutes))
        assert ledger.check(r.claim)
        ledger.add(r.claim)
        held.append(r)
    queued = [waiting(f"w{i}", quota, n, runtime=declared(minutes), priority=prio, enqueued_min_ago=5 - i * 0.1)
              for i, (quota, n, minutes, prio) in enumerate(waits)]
    told = replay(ledger, held, queued, NOW).forecasts[X].start(cpu(probe), NOW, priority=1)
    actual = estimate(ledger, held, [*queued, waiting("p", X, probe, priority=1, enqueued_min_ago=0)], NOW)["p"]
    assert told == actual.start_ns, actual

"""Cooperative preemption (docs/preemption.md): the grace in the tree, the notice, the decision on a noticed
victim, and the controller's plans for it, driven through the Cache as the watch would (``Loop`` of
test_reconcile), then the webhook's guards and the estimate."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from common import keys
from common.accounting import JobState
from common.clock import FakeClock
from common.gotime import to_datetime
from common.ledger import Claim, Ledger
from common.preemption import MAX_GRACE_SECONDS, Notice, NoticeError, grace_ns, issue, victim_step
from common.queueing import QueueItem
from common.quota_tree import TreeError, validate_tree
from common.resources import Resources
from common.start_times import DRAIN_SECONDS, Running, Runtime, Waiting, estimate
from extender.actions import AnnotatePod, Event, Notify, Requeue, Suspend, WithdrawNotice
from extender.cache import Cache
from extender.controller import Controller
from extender.estimates import compute, snapshot
from kubeio.events import EventRecorder
from tests.unit.builders import make_quota, make_tree
from tests.unit.test_controller import RecordingClient
from tests.unit.test_reconcile import INTERN, NOW, T0, Loop, dequeued, job, video_copy
from tests.unit.test_webhook_policy import ALICE, CONTROLLER, pod, pod_review, queued, review, validate

NS = 10**9
GRACE = 20


# --- the grace in the tree ---------------------------------------------------------------------------------


def _tree(root_grace: str | None, team_grace: str | None, leaf_grace: str | None) -> Any:
    def attrs(value: str | None) -> dict[str, str] | None:
        return {keys.PREEMPTION_GRACE: value} if value is not None else None

    leaf = make_quota("video", min={"cpu": "1"}, max={"cpu": "10"}, attributes=attrs(leaf_grace))
    other = make_quota("text", min={"cpu": "1"}, max={"cpu": "10"})
    team = make_quota("algo", leaf, other, min={"cpu": "2"}, max={"cpu": "10"}, attributes=attrs(team_grace))
    return make_quota("root", team, min={"cpu": "10"}, max={"cpu": "10"}, attributes=attrs(root_grace))


@pytest.mark.parametrize(
    ("root", "team", "leaf", "video", "text"),
    [
        pytest.param(None, None, None, 0, 0, id="no grace anywhere is 0: today's behaviour"),
        pytest.param("2m", None, None, 120, 120, id="the root's grace is inherited by every node below"),
        pytest.param("2m", "30s", None, 30, 30, id="the nearest ancestor's grace wins"),
        pytest.param("2m", "30s", "0s", 0, 30, id="a leaf may turn it off for itself"),
        pytest.param(None, None, "1h30m", 5400, 0, id="a leaf's own grace is its own only"),
    ],
)
def test_the_grace_of_a_node_is_its_own_or_its_nearest_ancestors(
    root: str | None, team: str | None, leaf: str | None, video: int, text: int
) -> None:
    tree = make_tree(_tree(root, team, leaf))
    assert grace_ns(tree, "root/algo/video") == video * NS
    assert grace_ns(tree, "root/algo/text") == text * NS
    assert grace_ns(tree, "root/gone") == 0, "a claim whose leaf left the tree has no grace"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        pytest.param("soon", "expected a Go duration like 30s, 2m or 1h30m", id="not a duration"),
        pytest.param("20", "expected a Go duration", id="a bare number has no unit"),
        pytest.param("-5s", "cannot be negative", id="negative"),
        pytest.param("25h", "at most 24h0m0s", id="longer than a day"),
    ],
)
def test_a_bad_grace_is_refused_where_the_tree_is_validated_naming_node_and_value(value: str, why: str) -> None:
    errors = validate_tree({"kind": keys.QUOTA_TREE_KIND, "spec": {"root": _tree(None, value, None)}})
    assert len(errors) == 1
    prefix = (f"spec.root.children[0].attributes.{keys.PREEMPTION_GRACE}: quota node algo: invalid "
              f"{keys.PREEMPTION_GRACE} {value!r}: ")
    assert str(errors[0]).startswith(prefix) and why in str(errors[0])
    with pytest.raises(TreeError):
        make_tree(_tree(None, value, None))


# --- the notice and the decision -----------------------------------------------------------------------------

_instants = st.integers(min_value=T0, max_value=T0 + 10**9 * 10**9)
_graces = st.integers(min_value=1, max_value=MAX_GRACE_SECONDS * NS)


@given(now=_instants, grace=_graces, reason=st.text(max_size=80))
def test_a_notice_reads_back_as_written_and_never_gives_less_than_the_grace(now: int, grace: int, reason: str) -> None:
    notice = issue(now, grace, "intern/big", "text/train", "uid-train", reason)
    assert Notice.parse(notice.text()) == notice
    assert now + grace <= notice.deadline_ns < now + grace + NS
    assert notice.deadline_ns % NS == 0
    assert json.loads(notice.text())["deadline"].endswith("Z")


@given(now=_instants, grace=_graces, later=st.integers(min_value=0, max_value=2 * MAX_GRACE_SECONDS * NS),
       acknowledged=st.booleans(), waiting=st.booleans())
def test_the_decision_depends_only_on_the_annotation_and_the_clock(
    now: int, grace: int, later: int, acknowledged: bool, waiting: bool
) -> None:
    """What a restarted controller decides: it knows only the annotation (the text) and the time. It never
    suspends before the deadline unless the job acknowledged, and at or after it always does, unless the
    claimant went (then the notice is withdrawn)."""
    text = issue(now, grace, "intern/big", "text/train", "uid-train", "reclaim").text()
    at = now + later
    first = victim_step(Notice.parse(text), at, acknowledged=acknowledged, claimant_waiting=waiting)
    restarted = victim_step(Notice.parse(copy.copy(text)), at, acknowledged=acknowledged, claimant_waiting=waiting)
    assert first == restarted
    deadline = Notice.parse(text).deadline_ns
    if acknowledged:
        assert first == "suspend"
    elif not waiting:
        assert first == "withdraw"
    else:
        assert first == ("suspend" if at >= deadline else "wait")


@pytest.mark.parametrize("text", ["", "{", "[]", '{"deadline": "tomorrow", "claimant": "a/b", "claimantUID": "u", '
                                  '"grace": "1s", "reason": "r"}', '{"deadline": "2025-01-10T01:36:24Z"}'])
def test_a_notice_that_is_not_the_controllers_is_refused(text: str) -> None:
    with pytest.raises(NoticeError):
        Notice.parse(text)
    assert victim_step(None, T0, acknowledged=False, claimant_waiting=True) == "suspend"


# --- the controller ------------------------------------------------------------------------------------------


def with_grace(loop: Loop, grace: str) -> None:
    """Give root/algorithm/intern a preemption grace (the tree watch delivers it)."""
    intern = next(c for c in loop.tree["spec"]["root"]["children"][0]["children"] if c["name"] == "intern")
    intern["attributes"] = {keys.PREEMPTION_GRACE: grace}
    loop.cache.on_tree("MODIFIED", copy.deepcopy(loop.tree))


def borrowing(grace: str = f"{GRACE}s") -> tuple[Loop, str, list[dict[str, Any]], str]:
    """The guide's reclaim story with a grace on intern: the intern job `big` (40 CPU) borrows with two running
    pods; the guaranteed text job `train` (30 CPU) arrives at NOW and does not fit."""
    loop = Loop(Cache(FakeClock()))
    with_grace(loop, grace)
    video = loop.submit(video_copy("rayjob-video-aaaaa", at=0))
    # its head and one worker (small-group): both within its reservation, no growth (docs/growth.md: growth
    # would be reclaimed pod by pod before any whole job)
    intern = loop.submit(job("big", "intern", cpu="20", at=1).workers(1, cpu="20", memory="1Gi").obj())
    assert sorted(dequeued(loop.run())) == ["big", "rayjob-video-aaaaa"]
    loop.deliver(video)
    loop.deliver(intern)
    pods = loop.pods(intern, "20", "20")
    text = loop.submit(job("train", "algorithm-text", cpu="30", at=10).obj())
    return loop, intern, pods, text


def notice_of(loop: Loop, uid: str) -> Notice:
    return Notice.parse(loop.jobs[uid]["metadata"]["annotations"][keys.PREEMPTION_NOTICE])


def test_a_victim_with_grace_gets_a_notice_not_a_suspension_and_its_claimant_says_it_waits_for_it() -> None:
    loop, intern, pods, text = borrowing()
    plan = loop.run()
    assert plan.of(Suspend) == () and dequeued(plan) == []
    (notify,) = plan.of(Notify)
    assert (notify.job.name, notify.claimant.name) == ("big", "train")
    notice = notice_of(loop, intern)
    deadline = "2025-01-10T01:37:44Z"  # NOW (01:37:24) + 20 s
    assert (notice.deadline, notice.job, notice.claimant, notice.claimant_uid, notice.grace) == (
        deadline, "intern/big", "algorithm-text/train", text, "20s")
    assert "reclaim for algorithm-text/train, guaranteed in root/algorithm/text" in notice.reason
    (event,) = [e for e in plan.of(Event) if e.reason == keys.EVENT_PREEMPTION_NOTICE]
    assert (event.job.name, event.type) == ("big", "Warning")
    assert f"suspended at {deadline} (grace 20s, from {INTERN})" in event.message
    assert keys.CHECKPOINTED in event.message
    assert plan.wake_ns == notice.deadline_ns
    assert loop.unit("train", "algorithm-text")["status"]["message"] == (
        f"waiting for a preemption notice to expire (intern/big until {deadline}, or the victim's "
        f"{keys.CHECKPOINTED} acknowledgement): waiting for reclaim of intern/big (root/algorithm/intern): "
        "root/algorithm: cpu used 52500m + request 30 > max 80"
    )

    # The next pass copies the notice onto every pod of the job; the one after has nothing left to do.
    plan = loop.run(NOW + 1 * NS)
    assert sorted(a.name for a in plan.of(AnnotatePod)) == sorted(p["metadata"]["name"] for p in pods)
    assert {a.notice for a in plan.of(AnnotatePod)} == {notice.text()}
    assert loop.run(NOW + 2 * NS).of(AnnotatePod) == ()
    assert all(p["metadata"]["annotations"][keys.PREEMPTION_NOTICE] == notice.text() for p in pods)


def test_the_victim_is_suspended_at_its_deadline_not_before_and_the_claimant_gets_the_capacity() -> None:
    loop, intern, pods, text = borrowing()
    loop.run()
    deadline = notice_of(loop, intern).deadline_ns
    # fits what big frees (12.5 + 38 <= 80), but not beside the claimant (12.5 + 30 + 38 > 80)
    third = loop.submit(job("small", "intern", cpu="38", at=20).obj())
    for t in (NOW + NS, deadline - NS, deadline - 1):
        plan = loop.run(t)
        assert plan.of(Suspend) == () and plan.of(Notify) == () and dequeued(plan) == [], f"at {t}"
        assert loop.cache.state(intern) is JobState.ADMITTED
    plan = loop.run(deadline)
    (suspend,) = plan.of(Suspend)
    assert (suspend.job.name, suspend.claimant.uid, suspend.clear_notice) == ("big", text, True)
    assert suspend.patch() == {
        "metadata": {"annotations": {keys.DEQUEUE_TIMESTAMP: None, keys.PREEMPTION_NOTICE: None,
                                     keys.CHECKPOINTED: None}},
        "spec": {"suspend": True},
    }
    (preempted,) = [e for e in plan.of(Event) if e.reason == keys.EVENT_PREEMPTED]
    assert preempted.message.startswith("its preemption notice expired at 2025-01-10T01:37:44Z; preempted to "
                                        "reclaim for algorithm-text/train")
    assert dequeued(plan) == [], "the victim's pods still hold the capacity"
    loop.deliver(intern)
    assert keys.PREEMPTION_NOTICE not in loop.jobs[intern]["metadata"]["annotations"]
    for p in pods:
        loop.cache.on_pod("DELETED", p)
    plan = loop.run(deadline + NS)
    assert dequeued(plan) == ["train"], "the claimant first; neither the victim nor the third job takes it"
    assert loop.cache.state(third) is JobState.WAITING
    assert loop.cache.state(intern) is JobState.WAITING


def test_an_acknowledging_victim_is_suspended_at_once() -> None:
    loop, intern, _, _ = borrowing()
    loop.run()
    loop.update_job(intern, lambda o: o["metadata"]["annotations"].update({keys.CHECKPOINTED: "true"}))
    plan = loop.run(NOW + 2 * NS)
    (suspend,) = plan.of(Suspend)
    assert suspend.reason.startswith(f"acknowledged its preemption notice ({keys.CHECKPOINTED})")


def test_a_victim_that_finishes_during_its_grace_is_released_and_never_requeued() -> None:
    loop, intern, pods, _ = borrowing()
    loop.run()
    deadline = notice_of(loop, intern).deadline_ns
    loop.update_job(intern, lambda o: o.setdefault("status", {}).update(
        jobDeploymentStatus="Complete", jobStatus="SUCCEEDED"))
    for t in (NOW + NS, deadline, deadline + NS):
        plan = loop.run(t)
        assert plan.of(Suspend) == () and [e for e in plan.of(Event) if e.reason == keys.EVENT_REQUEUED] == []
    assert loop.cache.state(intern) is JobState.FINISHED
    assert loop.unit("big", "intern")["status"]["phase"] == "Succeed"
    for p in pods:
        loop.cache.on_pod("DELETED", p)
    assert dequeued(loop.run(deadline + 2 * NS)) == ["train"]


def test_a_restarted_controller_keeps_the_deadline() -> None:
    """A new Cache built from the API alone (the notice is on the RayJob): no second notice, no suspension
    before the deadline, and the suspension at it."""
    loop, intern, pods, _ = borrowing()
    loop.run()
    loop.run(NOW + NS)
    deadline = notice_of(loop, intern).deadline_ns
    fresh = Loop(Cache(FakeClock()))
    fresh.tree = loop.tree
    fresh.cache.on_tree("MODIFIED", copy.deepcopy(loop.tree))
    fresh.queues, fresh.units = loop.queues, loop.units
    for obj in loop.queues.values():
        fresh.cache.on_queue("ADDED", copy.deepcopy(obj))
    for uid in loop.jobs:
        fresh.submit(copy.deepcopy(loop.jobs[uid]))
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
               "metadata": {"name": "big-x7k2p", "namespace": "intern", "uid": "uid-intern-big-x7k2p",
                            "ownerReferences": [{"kind": "RayJob", "uid": intern, "controller": True,
                                                 "name": "big", "apiVersion": "ray.io/v1"}]}}
    fresh.cache.on_raycluster("ADDED", cluster)
    for p in pods:
        fresh.cache.on_pod("ADDED", copy.deepcopy(p))
    plan = fresh.run(deadline - NS)
    assert plan.of(Notify) == () and plan.of(Suspend) == () and dequeued(plan) == []
    assert plan.wake_ns == deadline
    assert fresh.run(deadline).of(Suspend) != ()


def test_the_notice_is_withdrawn_when_its_claimant_no_longer_waits() -> None:
    loop, intern, pods, text = borrowing()
    loop.run()
    loop.run(NOW + NS)  # the pods get the notice
    loop.cache.on_rayjob("DELETED", loop.jobs.pop(text))
    plan = loop.run(NOW + 2 * NS)
    (withdraw,) = plan.of(WithdrawNotice)
    assert withdraw.job.name == "big" and "algorithm-text/train no longer waits" in withdraw.reason
    assert [e.job.name for e in plan.of(Event) if e.reason == keys.EVENT_PREEMPTION_NOTICE_WITHDRAWN] == ["big"]
    assert {a.notice for a in plan.of(AnnotatePod)} == {None} and len(plan.of(AnnotatePod)) == len(pods)
    assert keys.PREEMPTION_NOTICE not in loop.jobs[intern]["metadata"]["annotations"]
    later = loop.run(NOW + 60 * NS)
    assert later.of(Suspend) == () and loop.cache.state(intern) is JobState.ADMITTED


def test_without_grace_the_victim_is_suspended_at_once_as_before() -> None:
    loop, _, _, _ = borrowing(grace="0s")
    plan = loop.run()
    assert plan.of(Notify) == () and [s.job.name for s in plan.of(Suspend)] == ["big"]
    # no notice deadline: the only wake-up is the video job's admission timeout (10m default, common.liveness)
    assert plan.of(Suspend)[0].clear_notice is False and plan.wake_ns == NOW + 600 * NS


# --- the webhook --------------------------------------------------------------------------------------------

NOTICE = issue(T0, GRACE * NS, "video/rayjob-video-h4x2q", "algorithm-text/train", "uid-train", "reclaim").text()


@pytest.mark.parametrize(
    ("before", "after", "word"),
    [
        pytest.param(None, NOTICE, "set", id="set"),
        pytest.param(NOTICE, NOTICE.replace("reclaim", "later"), "change", id="change"),
        pytest.param(NOTICE, None, "remove", id="remove"),
    ],
)
def test_a_tenant_cannot_set_change_or_remove_a_notice_on_a_rayjob_or_a_pod(
    before: str | None, after: str | None, word: str
) -> None:
    old, new = queued(), queued()
    old_pod, new_pod = pod(), pod()
    for obj, value in ((old, before), (new, after), (old_pod, before), (new_pod, after)):
        annotations = obj["metadata"].setdefault("annotations", {})
        if value is not None:
            annotations[keys.PREEMPTION_NOTICE] = value
    for kind, verdict in (("RayJob", validate(review(new, op="UPDATE", old=old))),
                          ("Pod", validate(pod_review(new_pod, op="UPDATE", old=old_pod, name="c-worker-1")))):
        assert not verdict.allowed, kind
        assert f"{kind} " in verdict.message and "rule preemption-notice" in verdict.message
        assert f"only the queue controller may {word} annotation {keys.PREEMPTION_NOTICE}" in verdict.message
        assert f"({before!r} -> {after!r})" in verdict.message and "alice" in verdict.message
    assert validate(review(new, op="UPDATE", old=old, user=CONTROLLER)).allowed
    assert validate(pod_review(new_pod, op="UPDATE", old=old_pod, user=CONTROLLER)).allowed


def test_a_notice_cannot_be_created_with_a_pod_or_planted_in_a_pod_template() -> None:
    created = pod()
    created["metadata"]["annotations"] = {keys.PREEMPTION_NOTICE: NOTICE}
    verdict = validate(pod_review(created))
    assert not verdict.allowed and "rule preemption-notice: only the queue controller may set" in verdict.message
    job_obj = queued()
    template = job_obj["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]
    template.setdefault("metadata", {}).setdefault("annotations", {})[keys.PREEMPTION_NOTICE] = NOTICE
    verdict = validate(review(job_obj, op="UPDATE", old=queued()))
    assert not verdict.allowed
    assert ("rule preemption-notice: spec.rayClusterSpec.workerGroupSpecs.0.template.metadata.annotations may not "
            f"carry {keys.PREEMPTION_NOTICE}") in verdict.message


def test_a_tenant_may_acknowledge_only_a_notice_it_was_given() -> None:
    bare = queued()
    acked = queued(**{keys.CHECKPOINTED: "true"})
    verdict = validate(review(acked, op="UPDATE", old=bare))
    assert not verdict.allowed
    assert (f"rule checkpoint-ack: annotation {keys.CHECKPOINTED} ('true') acknowledges a preemption notice, and "
            "the job has none") in verdict.message
    created = queued(**{keys.CHECKPOINTED: "true"})
    assert "rule checkpoint-ack" in validate(review(created, user=ALICE)).message
    noticed = queued(**{keys.PREEMPTION_NOTICE: NOTICE})
    acked_notice = queued(**{keys.PREEMPTION_NOTICE: NOTICE, keys.CHECKPOINTED: "true"})
    assert validate(review(acked_notice, op="UPDATE", old=noticed)).allowed
    assert validate(review(noticed, op="UPDATE", old=acked_notice)).allowed, "taking an acknowledgement back"


# --- the estimate -------------------------------------------------------------------------------------------


def test_the_estimate_waits_for_the_grace_of_a_victim() -> None:
    leaf_min = {"cpu": "8"}
    tree = make_tree(make_quota(
        "root",
        make_quota("borrower", min={"cpu": "0"}, max={"cpu": "10"}, attributes={keys.PREEMPTION_GRACE: "2m"}),
        make_quota("owner", min=leaf_min, max={"cpu": "10"}),
        min={"cpu": "10"}, max={"cpu": "10"},
    ))
    ledger = Ledger(tree)
    victim = Claim("uid-v", "borrower/v", "job", "root/borrower", Resources({"cpu": 10_000}), admitted_order=1)
    ledger.add(victim)
    running = [Running(victim, T0, Runtime(3600.0, "declared", "declared 1h0m0s"))]
    item = QueueItem(uid="uid-c", namespace="owner", name="c", quota="root/owner", priority=0, enqueue_ns=T0,
                     request=Resources({"cpu": 8_000}))
    found = estimate(ledger, running, [Waiting(item, Runtime(60.0, "declared", "declared 1m0s"))], NOW)
    assert found["uid-c"].start_ns == NOW + 120 * NS + round(DRAIN_SECONDS * NS)


def test_the_estimate_of_a_claimant_counts_the_deadline_of_a_notice_already_given() -> None:
    loop, intern, _, text = borrowing()
    loop.run()
    deadline = notice_of(loop, intern).deadline_ns
    snap = snapshot(loop.cache, NOW + 5 * NS)
    assert snap is not None
    (held,) = [r for r in snap.running if r.claim.uid == intern]
    assert held.runtime.detail == f"preemption notice until {notice_of(loop, intern).deadline}"
    assert held.end_ns(NOW + 5 * NS) == deadline + round(DRAIN_SECONDS * NS)
    found = compute(snap).estimates[text]
    assert found.start_ns == deadline + round(DRAIN_SECONDS * NS), "not a second reclaim with a fresh grace"
    assert found.message.startswith("once reclaimed quota drains (waiting for reclaim of intern/big")


def test_the_controller_sleeps_no_longer_than_until_the_next_deadline() -> None:
    """No event comes at a deadline: the loop itself must wake then to suspend the victim on time (half a
    second before it, nothing else is due sooner: the claimant's backoff ends later)."""
    loop, intern, _, _ = borrowing()
    loop.run()
    deadline = notice_of(loop, intern).deadline_ns
    clock = FakeClock(to_datetime(deadline - NS // 2))
    client = RecordingClient(lost="")
    controller = Controller(loop.cache, client, EventRecorder(client, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                            CollectorRegistry(), resync_seconds=30.0)
    assert asyncio.run(controller.plan_sliced()).wake_ns == deadline
    assert controller.wait_seconds() == pytest.approx(0.5)
    clock.advance(0.5)
    plan = asyncio.run(controller.plan_sliced())
    assert [s.job.name for s in plan.of(Suspend)] == ["big"]


def test_nobody_takes_the_capacity_a_claimant_waits_for_during_the_grace() -> None:
    """intern (max raised to 80 here) borrows with two 20-CPU jobs; text's guaranteed 32-CPU job needs one of
    them gone (a). While a's notice runs the claimant sits in backoff, and a higher-priority borrowing job
    that fits the free 27.5 CPU arrives: admitting it would leave no room for the claimant once a is gone
    (a second reclaim). The claimant's request is held from the start of every pass, so it stays out."""
    loop = Loop(Cache(FakeClock()))
    intern_node = next(c for c in loop.tree["spec"]["root"]["children"][0]["children"] if c["name"] == "intern")
    intern_node["max"]["cpu"] = 80
    with_grace(loop, "20s")
    video = loop.submit(video_copy("rayjob-video-aaaaa", at=0))
    b = loop.submit(job("b", "intern", cpu="20", at=1).obj())
    a = loop.submit(job("a", "intern", cpu="20", at=2).obj())
    assert sorted(dequeued(loop.run())) == ["a", "b", "rayjob-video-aaaaa"]
    for uid in (video, a, b):
        loop.deliver(uid)
    pods = loop.pods(a, "20")
    loop.pods(b, "20")
    text = loop.submit(job("train", "algorithm-text", cpu="32", at=10).obj())
    plan = loop.run()
    assert [n.job.name for n in plan.of(Notify)] == ["a"]
    assert loop.cache.queues.in_backoff(text)
    eager = loop.submit(job("eager", "intern", cpu="20", at=20, priority=10).obj())
    deadline = notice_of(loop, a).deadline_ns
    for t in (NOW + NS, NOW + 2 * NS, deadline - NS):
        assert dequeued(loop.run(t)) == [], f"at {t}"
    assert loop.cache.state(eager) is JobState.WAITING
    assert [s.job.name for s in loop.run(deadline).of(Suspend)] == ["a"]
    loop.deliver(a)
    for p in pods:
        loop.cache.on_pod("DELETED", p)
    assert dequeued(loop.run(deadline + NS)) == ["train"]


def test_a_second_claimant_during_the_grace_waits_for_the_same_notice() -> None:
    """Another guaranteed job, in the claimant's leaf, arrives during the grace and does not fit beside the
    claimant's reservation: the noticed victim is already releasing, so there is no second notice and no other
    victim; the notice's claimant is admitted once the victim is gone, and so is the second: the requeued victim,
    earlier in queue order, would fit beside either claimant alone but not beside both, and a borrower yields to
    the waiting guaranteed claims together (``Ledger.check``), so it waits."""
    loop, intern, pods, text = borrowing()
    loop.run()
    given = loop.jobs[intern]["metadata"]["annotations"][keys.PREEMPTION_NOTICE]
    loop.update_job(text, lambda o: o["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"][
        "containers"][0]["resources"].update({"requests": {"cpu": "27", "memory": "1Gi"}}))
    second = loop.submit(job("small", "algorithm-text", cpu="5", at=30).obj())  # 27 + 5 <= text's min 32
    plan = loop.run(NOW + NS)
    assert plan.of(Notify) == () and plan.of(Suspend) == () and dequeued(plan) == []
    assert loop.unit("small", "algorithm-text")["status"]["message"].startswith("waiting for reclaim of intern/big")
    deadline = notice_of(loop, intern).deadline_ns
    assert loop.jobs[intern]["metadata"]["annotations"][keys.PREEMPTION_NOTICE] == given
    assert [s.job.name for s in loop.run(deadline).of(Suspend)] == ["big"]
    loop.deliver(intern)
    for p in pods:
        loop.cache.on_pod("DELETED", p)
    assert sorted(dequeued(loop.run(deadline + NS))) == ["small", "train"]
    assert loop.cache.state(second) is JobState.ADMITTED
    assert loop.cache.state(intern) is JobState.WAITING, "the borrower yields to both guaranteed claimants"


def test_a_noticed_job_someone_else_suspends_is_requeued_without_its_notice() -> None:
    loop, intern, _, _ = borrowing()
    loop.run()
    loop.update_job(intern, lambda o: o["spec"].update(suspend=True))
    plan = loop.run(NOW + NS)
    (requeue,) = [a for a in plan.of(Requeue) if a.job.name == "big"]
    assert requeue.clear_notice and requeue.patch() == {"metadata": {"annotations": {
        keys.DEQUEUE_TIMESTAMP: None, keys.PREEMPTION_NOTICE: None, keys.CHECKPOINTED: None}}}

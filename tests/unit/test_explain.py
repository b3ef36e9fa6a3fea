"""The explain record (common/explain.py): each admission answer is one record, built where it is decided, and
every surface (the ledger's reason, the queues' reason, the QueueUnit message, the events, the create warning,
``kubectl rayqueue whatif`` and ``why``) renders the same words from it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from common import keys
from common.clock import FakeClock
from common.explain import Explain, render, whatif
from common.ledger import Claim, Decision, Ledger
from common.preview import preview, warning
from common.queueing import QueueItem, Queues
from common.quota_tree import QuotaTree
from common.rayjob import JobInfo
from common.resources import Excess, Resources
from extender.actions import Event
from extender.cache import Cache
from rayqueue_cli import views
from tests.unit.test_reconcile import NOW, VIDEO, Loop, example, job

CPU = "cpu"


def _excess(used: int, requested: int, limit: int) -> tuple[Excess, ...]:
    return (Excess(CPU, used, requested, limit),)


MAX = Explain(why="max", node=VIDEO, excess=_excess(12500, 2000, 14000))


@pytest.mark.parametrize(
    ("record", "words", "rule", "blocking"),
    [
        pytest.param(Explain(why="fits", node=VIDEO), "root/algorithm/video: fits", "", None,
                     id="an admitted claim fits in its leaf"),
        pytest.param(Explain(why="no-such-quota", node="root/x"), "root/x: no such quota in the tree", "quota",
                     "root/x", id="a quota the tree lacks is named"),
        pytest.param(Explain(why="not-a-leaf", node="root/algorithm", names=("root/algorithm/text", "root/algorithm/video")),
                     "root/algorithm: not a leaf quota (its children: root/algorithm/text, root/algorithm/video)",
                     "quota", "root/algorithm", id="an inner node names its children"),
        pytest.param(MAX, "root/algorithm/video: cpu used 12500m + request 2 > max 14", "max", VIDEO,
                     id="a max names the node and the numbers"),
        pytest.param(Explain(why="max-jobs", node=VIDEO, excess=(Excess(keys.MAX_JOBS, 3, 1, 3),)),
                     "root/algorithm/video: jobs 3 + 1 > max-jobs 3", "max-jobs", VIDEO,
                     id="max-jobs counts the jobs"),
        pytest.param(Explain(why="capacity", excess=_excess(0, 10000, 8000)),
                     "cluster: cpu used 0 + request 10 > capacity 8", "capacity", None,
                     id="cluster capacity blocks no quota node"),
        pytest.param(Explain(why="preemptible", node=VIDEO, excess=_excess(0, 13000, 12000)),
                     "root/algorithm/video: not preemptible, so it may only use guaranteed capacity: cpu used 0 + "
                     "request 13 > min 12", "preemptible", VIDEO, id="a non-preemptible job stays within min"),
        pytest.param(Explain(why="guaranteed-first", node="root/algorithm/intern", job="text/t",
                             job_quota="root/algorithm/text", cause=MAX),
                     "root/algorithm/intern: guaranteed first: this claim would borrow above min, and text/t waiting "
                     "within the min of root/algorithm/text would then not fit (root/algorithm/video: cpu used "
                     "12500m + request 2 > max 14)", "guaranteed-first", "root/algorithm/text",
                     id="guaranteed first names the claimant it yields to and blocks on its leaf"),
        pytest.param(Explain(why="draining", node=VIDEO, job="video/a", count=1),
                     "root/algorithm/video: video/a waits until its previous run releases its quota (1 pod still "
                     "terminating)", "quota", VIDEO, id="a requeued job waits for its one pod"),
        pytest.param(Explain(why="reclaim", names=tuple(f"ns/j{i} (root/a)" for i in range(7)), cause=MAX),
                     "waiting for reclaim of ns/j0 (root/a), ns/j1 (root/a), ns/j2 (root/a), ns/j3 (root/a), "
                     "ns/j4 (root/a), and 2 more: root/algorithm/video: cpu used 12500m + request 2 > max 14",
                     "max", VIDEO, id="reclaim names five victims, then counts, and keeps the rule it wraps"),
        pytest.param(Explain(why="growth-reclaim", names=("video/w (root/algorithm/video)",), cause=MAX),
                     "waiting for reclaim of growth video/w (root/algorithm/video): root/algorithm/video: cpu used "
                     "12500m + request 2 > max 14", "max", VIDEO, id="growth reclaim says growth"),
        pytest.param(Explain(why="behind", node=VIDEO, job="video/head", cause=MAX),
                     "root/algorithm/video: Block policy: waiting behind video/head: root/algorithm/video: cpu used "
                     "12500m + request 2 > max 14", "max", VIDEO, id="a Block leaf's waiter names its head"),
        pytest.param(Explain(why="notice", notices=(("text/v", "2025-01-10T01:40:00Z"),), cause=MAX),
                     "waiting for a preemption notice to expire (text/v until 2025-01-10T01:40:00Z, or the "
                     f"victim's {keys.CHECKPOINTED} acknowledgement): root/algorithm/video: cpu used 12500m + "
                     "request 2 > max 14", "max", VIDEO, id="a claimant names the notices it waits out"),
        pytest.param(Explain(why="waiting", node=VIDEO, backoff=True), "waiting in root/algorithm/video in backoff",
                     "", None, id="a job not yet tried just waits"),
        pytest.param(Explain(why="dequeued", node=VIDEO, request=Resources({CPU: 2000})),
                     "dequeued from root/algorithm/video: request {cpu: 2} fits", "", None, id="the dequeue event"),
        pytest.param(Explain(why="preempted", node="root/algorithm/intern", job="text/t",
                             job_quota="root/algorithm/text", priority=0),
                     "preempted to reclaim quota for text/t, guaranteed in root/algorithm/text "
                     "(root/algorithm/intern borrows above its min; priority 0); requeued with its original "
                     "enqueue time", "", None, id="a victim's event names its claimant"),
    ],
)
def test_each_record_renders_its_words_rule_and_node(record: Explain, words: str, rule: str,
                                                      blocking: str | None) -> None:
    assert (render(record), str(record), record.rule, record.blocking) == (words, words, rule, blocking)


def test_a_decision_is_stated_by_its_record() -> None:
    decision = Decision.of(MAX)
    assert (decision.admitted, decision.reason, decision.blocking, decision.rule, decision.excess) == (
        False, render(MAX), VIDEO, "max", MAX.excess)
    assert decision.why() is MAX
    assert Decision(False, "as given").why() == Explain(why="said", text="as given")


def _tree(change: Callable[[dict[str, Any]], None] = lambda tree: None) -> dict[str, Any]:
    tree = copy.deepcopy(example("elasticquotatree.yaml", keys.QUOTA_TREE_KIND))
    change(tree)
    return tree


def _video(tree: dict[str, Any]) -> dict[str, Any]:
    video: dict[str, Any] = tree["spec"]["root"]["children"][0]["children"][0]
    assert video["name"] == "video"
    return video


def _max_jobs_zero(tree: dict[str, Any]) -> None:
    _video(tree)["max"][keys.MAX_JOBS] = 0


def _not_preemptible(obj: dict[str, Any]) -> None:
    obj["metadata"].setdefault("labels", {})[keys.QUOTA_PREEMPTIBLE] = "false"


@pytest.mark.parametrize(
    ("cpu", "change_tree", "change_job", "words"),
    [
        pytest.param("20", None, None, "root/algorithm/video: cpu used 0 + request 20 > max 14",
                     id="a job over its leaf's max"),
        pytest.param("1", _max_jobs_zero, None, "root/algorithm/video: jobs 0 + 1 > max-jobs 0",
                     id="a job over its leaf's max-jobs"),
        pytest.param("13", None, _not_preemptible,
                     "root/algorithm/video: not preemptible, so it may only use guaranteed capacity: cpu used 0 + "
                     "request 13 > min 12", id="a non-preemptible job beyond its leaf's min"),
    ],
)
def test_each_refusal_rule_renders_the_same_words_on_every_surface(
    cpu: str, change_tree: Callable[[dict[str, Any]], None] | None,
    change_job: Callable[[dict[str, Any]], None] | None, words: str,
) -> None:
    tree_obj = _tree(change_tree or (lambda tree: None))
    obj = job("a", "video", cpu=cpu, at=1).set("metadata.uid", "uid-a").obj()
    if change_job is not None:
        change_job(obj)
    info = JobInfo.from_rayjob(obj)
    tree = QuotaTree.parse(tree_obj)

    # The decision, where it is made.
    claim = Claim(uid=info.uid, key=info.key, kind="job", quota=VIDEO, request=info.request,
                  preemptible=info.preemptible)
    decision = Ledger(tree).check(claim)
    assert decision.explain is not None and (decision.reason, render(decision.explain)) == (words, words)

    # The queues keep the record; the QueueUnit message and `kubectl rayqueue why` show it.
    loop = Loop(Cache(FakeClock()))
    loop.tree = tree_obj
    loop.cache.on_tree("MODIFIED", copy.deepcopy(tree_obj))
    loop.submit(obj)
    loop.run()
    loop.run()
    assert loop.cache.queues.explain(info.uid) == decision.explain
    assert loop.cache.queues.reason(info.uid) == words
    unit = loop.unit("a")
    assert unit["status"]["message"] == words
    assert views.why_report(obj, unit, tree_obj, [], NOW)["message"] == words

    # The create warning and `kubectl rayqueue whatif`, from the published usage.
    leaf = tree.node(VIDEO)
    found = preview(tree, leaf, {}, [], key=info.key, request=info.request, priority=info.priority,
                    preemptible=info.preemptible, now_ns=NOW)
    assert found.decision.reason == words
    assert f"({words})" in warning(found, info.request, leaf, {}, NOW)
    assert views.whatif_report(obj, tree_obj, None, "video", now_ns=NOW)["message"] == words == whatif(
        found.decision.why(), 0, info.priority)


def test_the_dequeued_event_renders_the_admission() -> None:
    loop = Loop(Cache(FakeClock()))
    loop.submit(job("a", "video", cpu="2", at=1).set("metadata.uid", "uid-a").obj())
    loop.run()
    dequeued = [e for e in loop.events if e.reason == keys.EVENT_DEQUEUED]
    info = loop.cache.job("uid-a")
    assert info is not None and dequeued == [
        Event(dequeued[0].job, "Normal", keys.EVENT_DEQUEUED,
              render(Explain(why="dequeued", node=VIDEO, request=info.request)))]
    assert dequeued[0].message.startswith("dequeued from root/algorithm/video: request {cpu: 2")


def test_a_block_leaf_keeps_the_heads_record_and_wraps_it_for_those_behind() -> None:
    queues = Queues(FakeClock())
    queues.set_policy(VIDEO, "Block")
    tree = QuotaTree.parse(_tree())
    ledger = Ledger(tree)

    head = QueueItem(uid="h", namespace="video", name="head", quota=VIDEO, priority=0, enqueue_ns=1,
                     request=Resources({CPU: 20000}))
    behind = QueueItem(uid="b", namespace="video", name="b", quota=VIDEO, priority=0, enqueue_ns=2,
                       request=Resources({CPU: 1000}))
    queues.upsert(head)
    queues.upsert(behind)

    def check(item: QueueItem) -> Decision:
        return ledger.check(Claim(uid=item.uid, key=item.key, kind="job", quota=item.quota, request=item.request))

    queues.schedule(check, ledger.generation)
    refusal = check(head)
    assert queues.explain("h") == refusal.explain
    assert queues.explain("b") == Explain(why="behind", node=VIDEO, job="video/head", cause=refusal.explain)
    assert queues.reason("b") == f"root/algorithm/video: Block policy: waiting behind video/head: {refusal.reason}"

"""Reclaim for fairness (issue 20 item 4): opt-in per tree, only while the claimant's side stays at most the victim's
share after it (Kueue's LessThanOrEqualToFinalShare), never a protected job."""

from __future__ import annotations

import pytest

from common import keys
from common.admission import AdmissionPass
from common.clock import FakeClock
from common.fair_share import DecayedUsage, FairOrder, current_share
from common.ledger import Claim, Ledger
from common.queueing import Queues
from common.quota_tree import QuotaTree, TreeError
from common.resources import Resources
from tests.unit.builders import PassWorld, make_quota, make_tree
from tests.unit.test_min_runtime import NS, T0, _cpu, _item


def _tree(preemption: str | None = "true", min_runtime: str | None = None) -> QuotaTree:
    attrs = {keys.FAIR_SHARE_HALF_LIFE: "1h"}
    if preemption is not None:
        attrs[keys.FAIR_SHARE_PREEMPTION] = preemption
    if min_runtime is not None:
        attrs[keys.MIN_RUNTIME] = min_runtime
    a = make_quota("a", min={"cpu": "4"}, max={"cpu": "12"})
    b = make_quota("b", min={"cpu": "4"}, max={"cpu": "12"})
    return make_tree(make_quota("root", a, b, min={"cpu": "8"}, max={"cpu": "12"}, attributes=attrs))


def _world(tree: QuotaTree) -> Ledger:
    """root/a runs 4 cpu (its min), root/b 8 (4 borrowed) in 2-cpu jobs, and b has borrowed for hours."""
    ledger = Ledger(tree)
    ledger.add(Claim("a-run", "a/run", "job", "root/a", _cpu(4), admitted_order=T0))
    for i in range(4):
        ledger.add(Claim(f"b{i}", f"b/b{i}", "job", "root/b", _cpu(2), admitted_order=T0 + i))
    return ledger


def _try(tree: QuotaTree, cpu: int, now_ns: int = T0 + 3600 * NS) -> tuple[AdmissionPass, str]:
    ledger = _world(tree)
    decayed = DecayedUsage(now_ns, 3600.0, {"root/b": {"cpu": 4000.0 * 3600}})
    queues = Queues(FakeClock())
    queues.upsert(_item("a0", "root/a", cpu))
    decide = AdmissionPass(PassWorld(queues), ledger, now_ns, fair=FairOrder(tree, decayed, ledger.capacity))
    decision = decide(queues.head("root/a"))  # type: ignore[arg-type]
    assert not decision and decision.explain is not None
    return decide, decision.explain.why


def test_a_node_below_its_share_reclaims_from_one_above_when_the_final_shares_allow() -> None:
    decide, why = _try(_tree(), 2)
    assert [(v.uid, c.uid) for v, c in decide.victims] == [("b3", "a0")] and why == "reclaim"


def test_no_reclaim_that_would_leave_the_claimant_above_its_victim() -> None:
    """4 cpu would need two of b's jobs: a would then borrow 4 against b's 0 (and after one, 4 against 2)."""
    decide, why = _try(_tree(), 4)
    assert decide.victims == [] and why == "max"


@pytest.mark.parametrize("preemption", [None, "false"])
def test_without_the_opt_in_fair_share_never_preempts(preemption: str | None) -> None:
    decide, why = _try(_tree(preemption), 2)
    assert decide.victims == [] and why == "max"


def test_a_job_under_its_min_runtime_is_never_reclaimed_for_fairness() -> None:
    decide, _ = _try(_tree(min_runtime="2h"), 2)
    assert decide.victims == []
    decide, _ = _try(_tree(min_runtime="30m"), 2)
    assert [v.uid for v, _ in decide.victims] == ["b3"]


def test_the_opt_in_is_a_root_attribute_of_true_or_false() -> None:
    with pytest.raises(TreeError, match="expected \"true\" or \"false\""):
        _tree("yes")
    with pytest.raises(TreeError):
        make_tree(make_quota("root", make_quota("a", attributes={keys.FAIR_SHARE_PREEMPTION: "true"})))


def test_the_current_share_is_the_dominant_borrowed_fraction_over_the_weight() -> None:
    tree = _tree()
    assert current_share(tree, "root/b", Resources({"cpu": 8000})) == pytest.approx(4 / 12)
    assert current_share(tree, "root/a", Resources({"cpu": 3000})) == 0.0

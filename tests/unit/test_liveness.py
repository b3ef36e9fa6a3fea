"""common/liveness.py: the admission timeout's attributes, deadline, started test, parking and its record."""

from __future__ import annotations

import pytest

from common import keys
from common.liveness import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_SECONDS,
    Progress,
    TimedOut,
    Waiting,
    admission_retries,
    admission_timeout_ns,
    overdue,
    parked,
    started,
    timeouts_so_far,
)
from common.quota_tree import QuotaTree, TreeError
from tests.unit.builders import make_quota, make_tree

NS = 10**9


def _tree(root_attrs: dict[str, str] | None = None, team_attrs: dict[str, str] | None = None,
          leaf_attrs: dict[str, str] | None = None) -> QuotaTree:
    leaf = make_quota("video", min={"cpu": "4"}, max={"cpu": "8"}, attributes=leaf_attrs)
    other = make_quota("text", min={"cpu": "4"}, max={"cpu": "8"})
    team = make_quota("algorithm", leaf, other, min={"cpu": "8"}, max={"cpu": "16"}, attributes=team_attrs)
    return make_tree(make_quota("root", team, min={"cpu": "8"}, max={"cpu": "16"}, attributes=root_attrs))


@pytest.mark.parametrize(("root", "team", "leaf", "want_ns"), [
    pytest.param(None, None, None, DEFAULT_TIMEOUT_SECONDS * NS, id="no node sets it: the 10 minute default"),
    pytest.param({keys.ADMISSION_TIMEOUT: "20s"}, None, None, 20 * NS, id="the root's value is inherited by a leaf"),
    pytest.param({keys.ADMISSION_TIMEOUT: "20s"}, {keys.ADMISSION_TIMEOUT: "1m30s"}, None, 90 * NS,
                 id="the nearest ancestor wins over the root"),
    pytest.param({keys.ADMISSION_TIMEOUT: "20s"}, None, {keys.ADMISSION_TIMEOUT: "0"}, 0,
                 id="a leaf's 0 turns it off under a root that sets one"),
])
def test_the_timeout_is_the_nearest_nodes(root: dict[str, str] | None, team: dict[str, str] | None,
                                          leaf: dict[str, str] | None, want_ns: int) -> None:
    assert admission_timeout_ns(_tree(root, team, leaf), "root/algorithm/video") == want_ns
    assert admission_timeout_ns(_tree(root, team, leaf), "root/gone") == DEFAULT_TIMEOUT_SECONDS * NS


def test_retries_are_inherited_and_default_to_three() -> None:
    assert admission_retries(_tree(), "root/algorithm/video") == DEFAULT_RETRIES == 3
    assert admission_retries(_tree(team_attrs={keys.ADMISSION_RETRIES: "5"}), "root/algorithm/text") == 5
    assert admission_retries(_tree(leaf_attrs={keys.ADMISSION_RETRIES: "0"}), "root/algorithm/video") == 0


@pytest.mark.parametrize(("key", "value", "words"), [
    pytest.param(keys.ADMISSION_TIMEOUT, "ten minutes", "expected a Go duration like 90s, 10m or 1h",
                 id="a timeout that is not a Go duration"),
    pytest.param(keys.ADMISSION_TIMEOUT, "-5s", "a timeout cannot be negative", id="a negative timeout"),
    pytest.param(keys.ADMISSION_TIMEOUT, "200h", "at most 168h0m0s", id="a timeout over a week"),
    pytest.param(keys.ADMISSION_RETRIES, "three", "expected a whole number of timeouts", id="retries not a number"),
    pytest.param(keys.ADMISSION_RETRIES, "-1", "expected a whole number of timeouts", id="negative retries"),
])
def test_a_bad_attribute_is_refused_with_the_node_and_the_path(key: str, value: str, words: str) -> None:
    with pytest.raises(TreeError) as err:
        _tree(team_attrs={key: value})
    text = str(err.value)
    assert words in text
    assert "quota node algorithm" in text
    assert f"attributes.{key}" in text


@pytest.mark.parametrize(("now", "dequeue", "timeout", "want"), [
    pytest.param(119, 100, 20, False, id="inside the timeout"),
    pytest.param(120, 100, 20, True, id="at the deadline"),
    pytest.param(10**6, 100, 0, False, id="a timeout of 0 never expires"),
    pytest.param(10**6, None, 20, False, id="no dequeue stamp: not admitted, no deadline"),
])
def test_the_deadline_is_the_dequeue_stamp_plus_the_timeout(now: int, dequeue: int | None, timeout: int,
                                                             want: bool) -> None:
    assert overdue(now, dequeue, timeout) is want


def test_started_needs_kuberay_or_every_reserved_pod_running() -> None:
    half = Progress.of(2, [("v/h", "head", "n1", "Running", ""), ("v/w", "worker", None, "Pending", "")])
    assert not started(False, half)
    assert started(True, half)
    both = Progress.of(2, [("v/h", "head", "n1", "Running", ""), ("v/w", "worker", "n2", "Running", "")])
    assert started(False, both)
    assert not started(False, Progress.of(0, [])), "a job with no reserved pod counted has not started by pods"


def test_a_count_that_is_not_the_controllers_reads_as_zero() -> None:
    assert timeouts_so_far({}) == 0
    assert timeouts_so_far({keys.ADMISSION_TIMEOUTS: "2"}) == 2
    assert timeouts_so_far({keys.ADMISSION_TIMEOUTS: "two"}) == 0
    assert parked(3, 3) and not parked(2, 3) and not parked(99, 0)


def test_the_timeout_record_names_the_pods_and_the_reason() -> None:
    progress = Progress.of(4, [
        ("video/x-head", "head", "node-1", "Running", ""),
        ("video/x-worker-b", "worker", None, "Pending",
         "0/12 nodes are available: 12 node(s) didn't match node selector."),
        ("video/x-worker-a", "worker", None, "Pending", ""),
        ("video/x-worker-c", "worker", "node-2", "Pending", ""),
    ])
    record = TimedOut("video/x", 20 * NS, progress, attempt=1, retries=3)
    assert record.message() == (
        "not started within 20s of admission: 2 of 4 pods not placed; worker video/x-worker-a: not placed; "
        "worker video/x-worker-b: 0/12 nodes are available: 12 node(s) didn't match node selector.; "
        "worker video/x-worker-c: placed on node-2, Pending. "
        "Timeout 1 of 3: suspended and requeued with its enqueue time, after a backoff")
    assert not record.parked
    last = TimedOut("video/x", 20 * NS, progress, attempt=3, retries=3)
    assert last.parked
    assert last.message().endswith("Parked after 3 admission timeouts in a row (rayqueue.io/admission-retries 3): "
                                   "fix the cause, then retry with `kubectl rayqueue retry x -n video`")


def test_placed_but_not_running_is_said_so() -> None:
    progress = Progress.of(1, [("v/h", "head", "n1", "Pending", "image pull back-off")])
    assert progress.waiting == (Waiting("v/h", "head", "image pull back-off"),)
    assert TimedOut("v/j", 60 * NS, progress, 1, 0).message() == (
        "not started within 1m0s of admission: 1 of 1 pods not Running; head v/h: image pull back-off. "
        "Timeout 1: suspended and requeued with its enqueue time, after a backoff")


def test_more_than_three_waiting_pods_are_counted_not_listed() -> None:
    pods = [(f"v/w-{i}", "worker", None, "Pending", "") for i in range(5)]
    text = TimedOut("v/j", 20 * NS, Progress.of(5, pods), 1, 3).message()
    assert "v/w-2" in text and "v/w-3" not in text and "; and 2 more." in text

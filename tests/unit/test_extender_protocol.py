"""The extender/v1 wire: PascalCase requests parsed once (every problem with its path), answers rendered."""

from __future__ import annotations

from typing import Any

import pytest

from extender.protocol import (
    BindArgs,
    BindResult,
    FilterArgs,
    FilterResult,
    HostScore,
    PreemptResult,
    ProtocolError,
    Victims,
    parse_bind_args,
    parse_filter_args,
    parse_preempt_args,
    render_bind_result,
    render_filter_result,
    render_preempt_result,
    render_priorities,
)
from tests.unit.builders import make_pod

POD = make_pod("p", "video", cpu="1").obj()


def node_obj(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"allocatable": {"cpu": "8"}}}


# --- ExtenderArgs --------------------------------------------------------------------------------


def test_node_cache_capable_args_carry_names_in_input_order_without_duplicates() -> None:
    args = parse_filter_args({"Pod": POD, "Nodes": None, "NodeNames": ["n2", "n1", "n2"]})
    assert args.pod.uid == "uid-video-p"
    assert args.node_names == ("n2", "n1")
    assert args.nodes is None


def test_args_without_node_cache_take_names_from_the_node_list() -> None:
    args = parse_filter_args({"Pod": POD, "Nodes": {"items": [node_obj("n2"), node_obj("n1")]}})
    assert args.node_names == ("n2", "n1")
    assert args.nodes is not None and set(args.nodes) == {"n1", "n2"}


def test_an_empty_name_list_is_a_valid_request_for_zero_nodes() -> None:
    assert parse_filter_args({"Pod": POD, "NodeNames": []}).node_names == ()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        pytest.param([], ["(root): expected ExtenderArgs (a JSON object), got a list"], id="a body that is not an object is refused"),
        pytest.param({"NodeNames": ["n1"]}, ["Pod: required"], id="a missing Pod is refused"),
        pytest.param(
            {"Pod": POD},
            ["NodeNames: required (or Nodes when the scheduler is not nodeCacheCapable)"],
            id="neither NodeNames nor Nodes is refused",
        ),
        pytest.param(
            {"Pod": "p", "NodeNames": "n1"},
            ["Pod: expected a Pod (a map), got a string", "NodeNames: expected a list of names, got a string"],
            id="wrong types are all reported at once",
        ),
        pytest.param(
            {"Pod": POD, "NodeNames": ["n1", 7, ""]},
            ["NodeNames[1]: expected a node name, got a number 7", "NodeNames[2]: expected a node name, got a string ''"],
            id="each bad node name is reported with its index",
        ),
        pytest.param(
            {"Pod": POD, "Nodes": {"items": [{"metadata": {}}, 3]}},
            ["Nodes.items[0].metadata.name: expected a node name, got null", "Nodes.items[1]: expected a Node (a map), got a number"],
            id="a node list entry without a name is refused",
        ),
        pytest.param(
            {"Pod": {"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [{"resources": {"requests": {"cpu": "x"}}}]}}, "NodeNames": []},
            ["Pod.spec.containers[0].resources.requests.cpu: invalid quantity 'x': expected a number with an optional suffix like 500m, 4, 4G, 4Gi"],
            id="a pod with a bad quantity is refused with the pod's field path",
        ),
        pytest.param(
            {"Pod": {"metadata": {"namespace": "video"}}, "NodeNames": []},
            ["Pod.metadata.uid: required", "Pod.metadata.name: required"],
            id="a pod without uid and name is refused",
        ),
    ],
)
def test_malformed_args_raise_protocol_error_listing_every_problem(body: Any, errors: list[str]) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_filter_args(body)
    assert list(caught.value.errors) == errors
    assert isinstance(caught.value, ValueError)


# --- ExtenderFilterResult ------------------------------------------------------------------------


def test_filter_result_answers_sorted_names_and_both_failure_maps() -> None:
    args = parse_filter_args({"Pod": POD, "NodeNames": ["n3", "n1", "n2", "n4"]})
    result = FilterResult(
        passed=("n3", "n1", "elsewhere"),
        failed={"n4": "cordoned", "n2": "Insufficient cpu (requested 4, free 2)"},
        unresolvable=frozenset({"n4"}),
    )
    assert render_filter_result(result, args) == {
        "NodeNames": ["n1", "n3"],
        "FailedNodes": {"n2": "Insufficient cpu (requested 4, free 2)", "n4": "cordoned"},
        "FailedAndUnresolvableNodes": {"n4": "cordoned"},
        "Error": "",
    }


def test_filter_result_lists_no_node_as_an_empty_name_list_never_a_missing_field() -> None:
    args = parse_filter_args({"Pod": POD, "NodeNames": ["n1"]})
    out = render_filter_result(FilterResult(failed={"n1": "no"}), args)
    assert out["NodeNames"] == []
    assert "Nodes" not in out


def test_filter_result_also_answers_nodes_when_the_scheduler_sent_nodes() -> None:
    args = parse_filter_args({"Pod": POD, "Nodes": {"items": [node_obj("n2"), node_obj("n1")]}})
    out = render_filter_result(FilterResult(passed=("n2",), failed={"n1": "no"}), args)
    assert out["NodeNames"] == ["n2"]
    assert out.get("Nodes") == {"apiVersion": "v1", "kind": "NodeList", "items": [node_obj("n2")]}


def test_filter_error_is_rendered_only_when_set() -> None:
    args = FilterArgs(pod=parse_filter_args({"Pod": POD, "NodeNames": []}).pod, node_names=())
    assert render_filter_result(FilterResult(error="cache not synced"), args)["Error"] == "cache not synced"


# --- priorities ------------------------------------------------------------------------------------


def test_priorities_are_sorted_by_host_and_clamped_to_0_10() -> None:
    scores = [HostScore("n2", 14), HostScore("n1", -3), HostScore("n3", 7)]
    assert render_priorities(scores) == [
        {"Host": "n1", "Score": 0},
        {"Host": "n2", "Score": 10},
        {"Host": "n3", "Score": 7},
    ]


# --- preemption --------------------------------------------------------------------------------------


def test_preemption_args_with_meta_victims_carry_uids_sorted_by_node() -> None:
    body = {
        "Pod": POD,
        "NodeNameToMetaVictims": {
            "n2": {"Pods": [{"UID": "b"}, {"UID": "a"}], "NumPDBViolations": 1},
            "n1": {"Pods": [], "NumPDBViolations": 0},
        },
    }
    args = parse_preempt_args(body)
    assert list(args.victims) == ["n1", "n2"]
    assert args.victims["n2"] == Victims(uids=("b", "a"), num_pdb_violations=1)


def test_preemption_args_with_full_victims_convert_each_pod() -> None:
    victim = make_pod("v", "batch", cpu="2").node("n1").obj()
    args = parse_preempt_args({"Pod": POD, "NodeNameToVictims": {"n1": {"Pods": [victim], "NumPDBViolations": 0}}})
    (info,) = args.victims["n1"].pods or ()
    assert args.victims["n1"].uids == ("uid-batch-v",)
    assert info.request == {"cpu": 2000}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        pytest.param({"NodeNameToMetaVictims": {}}, ["Pod: required"], id="preemption without a Pod is refused"),
        pytest.param(
            {"Pod": POD, "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": 5}], "NumPDBViolations": -1}}},
            [
                "NodeNameToMetaVictims[n1].Pods[0].UID: expected a pod UID, got a number",
                "NodeNameToMetaVictims[n1].NumPDBViolations: expected a non-negative integer, got a number -1",
            ],
            id="a victim without a UID and a negative PDB count are both reported",
        ),
        pytest.param(
            {"Pod": POD, "NodeNameToVictims": ["n1"]},
            ["NodeNameToVictims: expected a map of node name to victims, got a list"],
            id="victims that are not a map are refused",
        ),
    ],
)
def test_malformed_preemption_args_are_refused(body: Any, errors: list[str]) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_preempt_args(body)
    assert list(caught.value.errors) == errors


def test_preemption_result_has_uids_only_sorted() -> None:
    result = PreemptResult(
        victims={
            "n2": Victims(uids=("z", "a"), num_pdb_violations=2),
            "n1": Victims(uids=(), num_pdb_violations=0),
        }
    )
    assert render_preempt_result(result) == {
        "NodeNameToMetaVictims": {
            "n1": {"Pods": [], "NumPDBViolations": 0},
            "n2": {"Pods": [{"UID": "a"}, {"UID": "z"}], "NumPDBViolations": 2},
        }
    }


# --- binding ---------------------------------------------------------------------------------------


def test_binding_args_parse_and_result_renders() -> None:
    body = {"PodName": "p", "PodNamespace": "video", "PodUID": "u1", "Node": "n1"}
    assert parse_bind_args(body) == BindArgs(pod_name="p", namespace="video", pod_uid="u1", node="n1")
    assert render_bind_result(BindResult("gang video/c1: 1 of 2 members reached bind")) == {
        "Error": "gang video/c1: 1 of 2 members reached bind"
    }
    assert render_bind_result(BindResult()) == {"Error": ""}


def test_binding_args_name_every_missing_or_mistyped_field() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_bind_args({"PodName": "p", "PodUID": 3, "Node": ""})
    assert caught.value.errors == ("PodNamespace: required", "PodUID: expected a string, got a number 3", "Node: required")

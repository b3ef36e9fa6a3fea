"""The ElasticQuotaTree model: every tree rule reported with its field path, and node lookups by any name form."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import keys
from common.quota_tree import MAX_DEPTH, FieldError, QuotaTree, TreeError, validate_tree
from common.resources import Resources

SEED = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "elasticquotatree.yaml"


# --- builders (kept here: tests/unit/builders.py belongs to another engineer) -------------------


def seed_obj() -> dict[str, Any]:
    """The guide's ElasticQuotaTree object, as the API would return it."""
    with SEED.open() as f:
        (tree,) = [d for d in yaml.safe_load_all(f) if d and d["kind"] == keys.QUOTA_TREE_KIND]
    return dict(tree)


def node(
    name: object = None,
    *children: Any,
    min: Any = None,
    max: Any = None,
    namespaces: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {} if name is None else {"name": name}
    if min is not None:
        out["min"] = min
    if max is not None:
        out["max"] = max
    if namespaces is not None:
        out["namespaces"] = namespaces
    if children:
        out["children"] = list(children)
    out.update(extra)
    return out


def tree(root: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{keys.QUOTA_GROUP}/{keys.QUOTA_VERSION}",
        "kind": keys.QUOTA_TREE_KIND,
        "metadata": {"name": keys.QUOTA_TREE_NAME, "namespace": keys.QUOTA_TREE_NAMESPACE},
        "spec": {"root": root},
    }


def errors(obj: object) -> list[str]:
    return [str(e) for e in validate_tree(obj)]


# --- the guide ------------------------------------------------------------------------------------


def test_the_seed_tree_validates_clean_and_parses() -> None:
    assert validate_tree(seed_obj()) == []
    t = QuotaTree.parse(seed_obj())
    assert [n.full_name for n in t.leaves()] == [
        "root/algorithm/intern",
        "root/algorithm/text",
        "root/algorithm/video",
        "root/devops",
        "root/infrastructure/devops",
    ]
    assert t.namespace_bindings() == {
        "algorithm-text": "root/algorithm/text",
        "devops": "root/devops",
        "infra-devops": "root/infrastructure/devops",
        "intern": "root/algorithm/intern",
        "video": "root/algorithm/video",
    }


def test_a_seed_node_carries_everything_the_queue_and_webhook_need() -> None:
    video = QuotaTree.parse(seed_obj()).node("root/algorithm/video")
    assert video.name == "video"
    assert video.parent_full_name == "root/algorithm"
    assert video.path == "spec.root.children[0].children[0]"
    assert video.min == {"cpu": 12000, "memory": 12 * 2**30, "nvidia.com/gpu": 2}
    assert video.max == {"cpu": 14000, "memory": 14 * 2**30, "nvidia.com/gpu": 4}
    assert video.max_jobs is None
    assert video.namespaces == ("video",)
    assert video.children == ()
    assert video.is_leaf
    assert video.depth == 2
    assert video.dashed_name == "root-algorithm-video"
    assert video.queue_generate_name == "root-algorithm-video-"
    assert video.parent_short_name == "algorithm"


@pytest.mark.parametrize(
    ("full_name", "parent_short_name", "depth", "children"),
    [
        pytest.param(
            "root",
            "",
            0,
            ("root/algorithm", "root/devops", "root/infrastructure"),
            id="the root has no parent and its children are sorted by full name",
        ),
        pytest.param(
            "root/algorithm",
            "root",
            1,
            ("root/algorithm/intern", "root/algorithm/text", "root/algorithm/video"),
            id="a child of the root names root as its parent",
        ),
        pytest.param(
            "root/infrastructure/devops",
            "infrastructure",
            2,
            (),
            id="a nested leaf names its parent's short name",
        ),
    ],
)
def test_parent_short_name_depth_and_children(
    full_name: str, parent_short_name: str, depth: int, children: tuple[str, ...]
) -> None:
    n = QuotaTree.parse(seed_obj()).node(full_name)
    assert (n.parent_short_name, n.depth, n.children) == (parent_short_name, depth, children)
    assert n.is_leaf is (not children)


# --- lookups -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "full_name"),
    [
        pytest.param("root/algorithm/video", "root/algorithm/video", id="a full path resolves to itself"),
        pytest.param("video", "root/algorithm/video", id="an unambiguous short name resolves"),
        pytest.param("root-algorithm-video", "root/algorithm/video", id="the dashed name resolves"),
        pytest.param(
            "algorithm-video",
            "root/algorithm/video",
            id="the dashed name without root (the guide's label value) resolves",
        ),
        pytest.param("algorithm", "root/algorithm", id="an inner node resolves by short name"),
        pytest.param("root", "root", id="the root resolves by its name"),
        pytest.param("devops", None, id="a short name two nodes share resolves to nothing"),
        pytest.param("root-devops", "root/devops", id="the dashed name tells the two devops nodes apart"),
        pytest.param(
            "infrastructure-devops",
            "root/infrastructure/devops",
            id="the dashed name without root tells the two devops nodes apart",
        ),
        pytest.param("root/devops", "root/devops", id="the full path of a shared short name resolves"),
        pytest.param("root/nope", None, id="an unknown full path resolves to nothing"),
        pytest.param("gaming", None, id="an unknown short name resolves to nothing"),
        pytest.param("", None, id="the empty string resolves to nothing"),
    ],
)
def test_resolve(name: str, full_name: str | None) -> None:
    found = QuotaTree.parse(seed_obj()).resolve(name)
    assert (found.full_name if found else None) == full_name


def test_resolve_refuses_a_dashed_form_two_nodes_answer_to() -> None:
    t = QuotaTree.parse(
        tree(node("root", node("a-b", namespaces=["x"]), node("a", node("b", namespaces=["y"]))))
    )
    assert t.resolve("a-b") is None, "short name of root/a-b and dashed name of root/a/b"
    assert t.resolve("root-a-b") is None
    assert t.node("root/a-b").full_name == "root/a-b"
    assert t.resolve("root/a/b") == t.node("root/a/b")


def test_lookups_by_namespace_path_and_order() -> None:
    t = QuotaTree.parse(seed_obj())
    assert t.leaf_for_namespace("video") == t.node("root/algorithm/video")
    assert t.leaf_for_namespace("kube-system") is None
    assert [n.full_name for n in t.path_to_root("root/algorithm/video")] == [
        "root/algorithm/video",
        "root/algorithm",
        "root",
    ]
    assert [n.full_name for n in t.path_to_root("root")] == ["root"]
    names = [n.full_name for n in t.nodes()]
    assert names == sorted(names) and len(names) == 8
    assert t.root.full_name == "root"
    assert "root/devops" in t and "root/nope" not in t
    assert t.get("root/nope") is None


@pytest.mark.parametrize("call", ["node", "path_to_root"])
def test_unknown_node_is_a_key_error_naming_it(call: str) -> None:
    t = QuotaTree.parse(seed_obj())
    with pytest.raises(KeyError, match="no quota node 'root/nope'"):
        getattr(t, call)("root/nope")


# --- fingerprint and equality --------------------------------------------------------------------


def _edited(edit: Any) -> dict[str, Any]:
    obj = copy.deepcopy(seed_obj())
    edit(obj)
    return obj


@pytest.mark.parametrize(
    ("edit", "same"),
    [
        pytest.param(lambda o: None, True, id="the same object parsed twice is equal"),
        pytest.param(
            lambda o: o["metadata"].update(resourceVersion="42"), True, id="metadata does not change the tree"
        ),
        pytest.param(
            lambda o: o["spec"]["root"]["children"].reverse(),
            True,
            id="reordering siblings does not change the tree",
        ),
        pytest.param(
            lambda o: o["spec"]["root"]["children"][0]["children"][0]["max"].update(cpu="14000m"),
            True,
            id="the same quantity written another way does not change the tree",
        ),
        pytest.param(
            lambda o: o["spec"]["root"]["children"][0]["children"][0]["max"].update(cpu=13),
            False,
            id="a changed max changes the tree",
        ),
        pytest.param(
            lambda o: o["spec"]["root"]["children"][0]["children"][0]["namespaces"].append("video2"),
            False,
            id="a new namespace binding changes the tree",
        ),
        pytest.param(
            lambda o: o["spec"]["root"]["children"][0]["children"][0]["max"].update({"example.com/fpga": 0}),
            False,
            id="a declared zero max changes the tree (it refuses that resource)",
        ),
        pytest.param(
            lambda o: o["spec"]["root"]["children"][0]["children"][0]["max"].update({keys.MAX_JOBS: 3}),
            False,
            id="a new job cap changes the tree",
        ),
    ],
)
def test_fingerprint_and_equality(edit: Any, same: bool) -> None:
    a, b = QuotaTree.parse(seed_obj()), QuotaTree.parse(_edited(edit))
    assert (a == b) is same
    assert (a.fingerprint == b.fingerprint) is same
    if same:
        assert hash(a) == hash(b)


# --- job caps and quantities -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_", "max_", "cap"),
    [
        pytest.param({"cpu": 1}, {"cpu": 2, keys.MAX_JOBS: 3}, 3, id="a job cap in max is the cap"),
        pytest.param({"cpu": 1, keys.MAX_JOBS: "2"}, {"cpu": 2}, 2, id="a job cap only in min is the cap"),
        pytest.param({keys.MAX_JOBS: 1}, {keys.MAX_JOBS: 4}, 4, id="with both, max is the cap"),
        pytest.param({"cpu": 1}, {"cpu": 2}, None, id="no job cap means none"),
        pytest.param({}, {keys.MAX_JOBS: 0}, 0, id="a zero job cap is kept"),
    ],
)
def test_max_jobs_is_a_cap_not_a_resource(
    min_: dict[str, Any], max_: dict[str, Any], cap: int | None
) -> None:
    root = node("root", node("a", min=min_, max=max_), min={"cpu": 1})
    leaf = QuotaTree.parse(tree(root)).node("root/a")
    assert leaf.max_jobs == cap
    assert keys.MAX_JOBS not in leaf.min and keys.MAX_JOBS not in leaf.max


def test_quantities_may_be_strings_or_json_numbers_and_a_declared_zero_is_kept() -> None:
    root = node("root", max={"cpu": 0.5, "memory": "1Gi", "nvidia.com/gpu": 0, "pods": 1e3})
    n = QuotaTree.parse(tree(root)).root
    assert dict(n.max) == {"cpu": 500, "memory": 2**30, "nvidia.com/gpu": 0, "pods": 1000}


def test_attributes_are_kept_sorted() -> None:
    root = node("root", attributes={"team": "ml", "owner": "ana"})
    assert QuotaTree.parse(tree(root)).root.attributes == (("owner", "ana"), ("team", "ml"))


# --- every rule, one at a time ---------------------------------------------------------------------

LEAF = {"cpu": 1}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            [], ["an ElasticQuotaTree must be a mapping, got a list"], id="an object that is not a mapping"
        ),
        pytest.param(
            {"kind": "ElasticQuota", "spec": {"root": node("root")}},
            ["kind: expected ElasticQuotaTree, got 'ElasticQuota'"],
            id="the wrong kind",
        ),
        pytest.param({"kind": keys.QUOTA_TREE_KIND}, ["spec: required"], id="spec is required"),
        pytest.param({"spec": "x"}, ["spec: must be a mapping, got a string"], id="spec must be a mapping"),
        pytest.param({"spec": {}}, ["spec.root: required"], id="spec.root is required"),
        pytest.param(
            tree(["root"]),
            ["spec.root: must be a mapping (a quota node), got a list"],
            id="spec.root must be a mapping",
        ),
        pytest.param(tree(node(None)), ["spec.root.name: required"], id="the root needs a name"),
        pytest.param(
            tree(node("root", node(""))),
            ["spec.root.children[0].name: required"],
            id="an empty name counts as missing",
        ),
        pytest.param(
            tree(node("root", node(7))),
            ["spec.root.children[0].name: must be a string, got int"],
            id="a name must be a string",
        ),
        pytest.param(
            tree(node("root", node("Video"))),
            [
                "spec.root.children[0].name: 'Video' is not a DNS-1123 label (lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters)"
            ],
            id="a name must be a DNS-1123 label",
        ),
        pytest.param(
            tree(node("root", node("a" * 64))),
            [
                f"spec.root.children[0].name: {'a' * 64!r} is not a DNS-1123 label (lowercase letters, digits and "
                "'-', starting and ending with a letter or digit, at most 63 characters)"
            ],
            id="a name longer than 63 characters is refused",
        ),
        pytest.param(
            tree(node("root", node("video"), node("text"), node("video"))),
            [
                "spec.root.children[2].name: duplicate name 'video' among siblings (also at spec.root.children[0])"
            ],
            id="sibling names must be unique",
        ),
        pytest.param(
            tree(node("root", node("a", node("x")), node("b", node("x")))),
            [],
            id="the same name under different parents is fine",
        ),
        pytest.param(
            tree(node("root", max={"cpu": "lots"})),
            [
                "spec.root.max.cpu: invalid quantity 'lots': expected a number with an optional suffix like "
                "500m, 4, 4G, 4Gi"
            ],
            id="a quantity must parse",
        ),
        pytest.param(
            tree(node("root", min={"memory": "-1Gi"})),
            ["spec.root.min.memory: must not be negative, got '-1Gi'"],
            id="a quantity must not be negative",
        ),
        pytest.param(
            tree(node("root", max={"nvidia.com/": 1})),
            [
                "spec.root.max.nvidia.com/: invalid resource name 'nvidia.com/': name part must be at most 63 "
                "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            ],
            id="a resource name needs a name after its prefix",
        ),
        pytest.param(
            tree(node("root", max={"Bad_Prefix/gpu": 1})),
            [
                "spec.root.max.Bad_Prefix/gpu: invalid resource name 'Bad_Prefix/gpu': prefix 'Bad_Prefix' must be "
                "a DNS-1123 subdomain"
            ],
            id="a resource name prefix must be a DNS subdomain",
        ),
        pytest.param(
            tree(node("root", max={"-cpu": 1})),
            [
                "spec.root.max.-cpu: invalid resource name '-cpu': name part must be at most 63 letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit"
            ],
            id="a resource name must start with a letter or digit",
        ),
        pytest.param(
            tree(node("root", max={"nvidia.com/gpu": 1, "hugepages-2Mi": "1Gi"})),
            [],
            id="extended and hugepage resource names are valid",
        ),
        pytest.param(
            tree(node("root", node("a", min={"cpu": 60}, max={"cpu": 50}), min={"cpu": 60})),
            ["spec.root.children[0].min.cpu: min 60 > max 50"],
            id="min must not exceed max",
        ),
        pytest.param(
            tree(node("root", min={"cpu": "500m"}, max={"memory": "1Gi"})),
            [],
            id="a resource in min but not in max is fine: max is unbounded",
        ),
        pytest.param(
            tree(node("root", node("a", min={"cpu": 6}), node("b", min={"cpu": 5}), min={"cpu": 10})),
            ["spec.root.min.cpu: children's min adds up to 11 > min 10 (a 6, b 5)"],
            id="children's min must add up within the parent's min",
        ),
        pytest.param(
            tree(node("root", node("a", min={"nvidia.com/gpu": 1}), min={"cpu": 10})),
            ["spec.root.min.nvidia.com/gpu: children's min adds up to 1 > min 0 (a 1)"],
            id="a resource absent from the parent's min counts 0",
        ),
        pytest.param(
            tree(node("root", node("a", min={"cpu": 5}), node("b", min={"cpu": 5}), min={"cpu": 10})),
            [],
            id="children's min exactly at the parent's min is fine",
        ),
        pytest.param(
            tree(node("root", node("a", max={"cpu": 90}), max={"cpu": 80})),
            ["spec.root.children[0].max.cpu: max 90 > parent max 80"],
            id="a child's max must not exceed its parent's max",
        ),
        pytest.param(
            tree(node("root", node("a", max={"nvidia.com/gpu": 9}), max={"cpu": 80})),
            [],
            id="a child's max on a resource the parent's max does not name is fine",
        ),
        pytest.param(
            tree(node("root", node("a"), namespaces=["ns"])),
            ["spec.root.namespaces: only leaves may have namespaces; this node has children"],
            id="namespaces only on leaves",
        ),
        pytest.param(
            tree(node("root", node("a", namespaces=["ns"]), node("b", namespaces=["ns"]))),
            [
                "spec.root.children[0].namespaces[0]: namespace 'ns' is bound to more than one leaf "
                "(also at spec.root.children[1].namespaces[0])",
                "spec.root.children[1].namespaces[0]: namespace 'ns' is bound to more than one leaf "
                "(also at spec.root.children[0].namespaces[0])",
            ],
            id="a namespace on two leaves is reported at both",
        ),
        pytest.param(
            tree(node("root", namespaces=["Team_A"])),
            [
                "spec.root.namespaces[0]: 'Team_A' is not a valid namespace name, a DNS-1123 label (lowercase "
                "letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"
            ],
            id="a namespace must be a DNS label",
        ),
        pytest.param(
            tree(node("root", namespaces=["ns", "ns"])),
            ["spec.root.namespaces[1]: namespace 'ns' is listed twice (also at spec.root.namespaces[0])"],
            id="a namespace listed twice on one leaf",
        ),
        pytest.param(
            tree(node("root", namespaces="ns")),
            ["spec.root.namespaces: must be a list of namespace names, got a string"],
            id="namespaces must be a list",
        ),
        pytest.param(
            tree(node("root", namespaces=[3])),
            ["spec.root.namespaces[0]: must be a string, got int"],
            id="a namespace must be a string",
        ),
        pytest.param(
            tree(node("root", max={keys.MAX_JOBS: 2.5})),
            ["spec.root.max.kube-queue/max-jobs: a job cap must be a whole number of jobs, got 2.5"],
            id="a job cap must be whole",
        ),
        pytest.param(
            tree(node("root", max={keys.MAX_JOBS: -1})),
            ["spec.root.max.kube-queue/max-jobs: must not be negative, got -1"],
            id="a job cap must not be negative",
        ),
        pytest.param(
            tree(node("root", max={keys.MAX_JOBS: True})),
            ["spec.root.max.kube-queue/max-jobs: invalid quantity True: a boolean is not a quantity"],
            id="a job cap must not be a boolean",
        ),
        pytest.param(
            tree(node("root", min={keys.MAX_JOBS: 3}, max={keys.MAX_JOBS: 2})),
            ["spec.root.min.kube-queue/max-jobs: min 3 > max 2"],
            id="a job cap in min must not exceed max",
        ),
        pytest.param(
            tree(node("root", node("a", max={keys.MAX_JOBS: 1000}), max={"cpu": 1})),
            [],
            id="a job cap is not a resource, so a parent's max does not bound it",
        ),
        pytest.param(
            tree(node("root", children={"name": "a"})),
            ["spec.root.children: must be a list of quota nodes, got a mapping"],
            id="children must be a list",
        ),
        pytest.param(
            tree(node("root", node("a", 1))),
            ["spec.root.children[0].children[0]: must be a mapping (a quota node), got int"],
            id="a child must be a mapping",
        ),
        pytest.param(
            tree(node("root", min=["cpu"])),
            ["spec.root.min: must be a mapping of resource name to quantity, got a list"],
            id="min must be a mapping",
        ),
        pytest.param(
            tree(node("root", max="100")),
            ["spec.root.max: must be a mapping of resource name to quantity, got a string"],
            id="max must be a mapping",
        ),
        pytest.param(
            tree(node("root", max={1: 1})),
            ["spec.root.max.1: resource name must be a string, got int"],
            id="a resource name must be a string",
        ),
        pytest.param(
            tree(node("root", attributes=["a"])),
            ["spec.root.attributes: must be a mapping of string to string, got a list"],
            id="attributes must be a mapping",
        ),
        pytest.param(
            tree(node("root", attributes={"a": 1})),
            ["spec.root.attributes.a: must be a string, got int"],
            id="attribute values must be strings",
        ),
        pytest.param(tree(node("root", children=[])), [], id="an empty children list makes a leaf"),
    ],
)
def test_each_tree_rule(obj: object, expected: list[str]) -> None:
    assert errors(obj) == expected


def test_a_tree_deeper_than_the_limit_is_an_error_not_a_recursion() -> None:
    deepest: dict[str, Any] = node("n")
    for _ in range(MAX_DEPTH + 5):
        deepest = node("n", deepest)
    root = node("root", deepest)
    found = errors(tree(root))
    assert found == [
        "spec.root"
        + ".children[0]" * MAX_DEPTH
        + f".children: the tree is deeper than {MAX_DEPTH} levels below the root"
    ]


def test_every_violation_is_reported_at_once() -> None:
    """One bad tree, many mistakes: the user sees all of them in one answer, in document order."""
    obj = tree(
        node(
            "root",
            node("video", min={"cpu": 60, "memory": "lots"}, max={"cpu": 50}, namespaces=["video", "video"]),
            node("video", node("x_y"), min={"cpu": 50}, max={"cpu": 200}, namespaces=["shared"]),
            node("text", namespaces=["shared"], max={"bad name": 1, keys.MAX_JOBS: 0.5}),
            "oops",
            min={"cpu": 100},
            max={"cpu": 100},
        )
    )
    assert errors(obj) == [
        "spec.root.children[0].min.memory: invalid quantity 'lots': expected a number with an optional suffix "
        "like 500m, 4, 4G, 4Gi",
        "spec.root.children[0].min.cpu: min 60 > max 50",
        "spec.root.children[0].namespaces[1]: namespace 'video' is listed twice (also at "
        "spec.root.children[0].namespaces[0])",
        "spec.root.children[1].children[0].name: 'x_y' is not a DNS-1123 label (lowercase letters, digits and "
        "'-', starting and ending with a letter or digit, at most 63 characters)",
        "spec.root.children[1].namespaces: only leaves may have namespaces; this node has children",
        "spec.root.children[1].name: duplicate name 'video' among siblings (also at spec.root.children[0])",
        "spec.root.children[1].max.cpu: max 200 > parent max 100",
        "spec.root.children[2].max.bad name: invalid resource name 'bad name': name part must be at most 63 "
        "letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        "spec.root.children[2].max.kube-queue/max-jobs: a job cap must be a whole number of jobs, got 0.5",
        "spec.root.children[3]: must be a mapping (a quota node), got a string",
        "spec.root.min.cpu: children's min adds up to 110 > min 100 (video 60, video 50)",
        "spec.root.children[1].namespaces[0]: namespace 'shared' is bound to more than one leaf (also at "
        "spec.root.children[2].namespaces[0])",
        "spec.root.children[2].namespaces[0]: namespace 'shared' is bound to more than one leaf (also at "
        "spec.root.children[1].namespaces[0])",
    ]


def test_parse_raises_a_tree_error_listing_every_violation() -> None:
    obj = tree(node("root", node("a", min={"cpu": 2}, max={"cpu": 1}), node("a")))
    with pytest.raises(TreeError) as caught:
        QuotaTree.parse(obj)
    err = caught.value
    assert isinstance(err, ValueError)
    assert err.errors == (
        FieldError("spec.root.children[0].min.cpu", "min 2 > max 1"),
        FieldError(
            "spec.root.children[1].name", "duplicate name 'a' among siblings (also at spec.root.children[0])"
        ),
        FieldError("spec.root.min.cpu", "children's min adds up to 2 > min 0 (a 2)"),
    )
    assert str(err) == (
        "invalid ElasticQuotaTree (3 errors): spec.root.children[0].min.cpu: min 2 > max 1; "
        "spec.root.children[1].name: duplicate name 'a' among siblings (also at spec.root.children[0]); "
        "spec.root.min.cpu: children's min adds up to 2 > min 0 (a 2)"
    )


def test_field_error_prints_path_then_message() -> None:
    assert str(FieldError("spec.root.min.cpu", "min 60 > max 50")) == "spec.root.min.cpu: min 60 > max 50"


def test_validation_never_mutates_its_input() -> None:
    obj = seed_obj()
    before = copy.deepcopy(obj)
    QuotaTree.parse(obj)
    assert obj == before


def test_resources_of_a_node_are_resources() -> None:
    root = QuotaTree.parse(tree(node("root", min={"cpu": 1}))).root
    assert isinstance(root.min, Resources) and isinstance(root.max, Resources)
    assert root.max == {} and root.max_jobs is None

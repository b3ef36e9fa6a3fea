"""Rules N1-N4 (docs/security.md): the quota-namespace label the pod webhooks select on is set before a namespace is
bound, kept while it is, given back when a bound namespace is created again, and only ever added by the controller."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from common import keys
from extender.namespace_labels import unlabelled_bound
from tests.unit.test_webhook_policy import NOW, SNAP, TREE_OBJ, mutate, review, tree_review, validate
from webhook.policy import ClusterFacts, ClusterLookup, NamespaceListing
from webhook.policy.namespace import tree_bindings

LABEL = {keys.QUOTA_NAMESPACE_LABEL: keys.QUOTA_NAMESPACE_VALUE}
SEED_NAMESPACES = ("video", "algorithm-text", "intern", "infra-devops", "devops")
ADMIN = {"username": "admin", "groups": ["system:masters"]}
ALICE = {"username": "alice", "groups": ["tenants", "system:authenticated"]}


def listing(**labels: dict[str, str]) -> ClusterFacts:
    """Facts for a tree write: the seed's namespaces labelled, then the given namespaces with exactly these labels."""
    found: dict[str, dict[str, str]] = {ns: dict(LABEL) for ns in SEED_NAMESPACES}
    found.update({ns.replace("_", "-"): dict(v) for ns, v in labels.items()})
    return ClusterFacts(tree=SNAP.tree, now_ns=NOW, namespaces=NamespaceListing(labels=found))


def without(*names: str) -> ClusterFacts:
    found = {ns: dict(LABEL) for ns in SEED_NAMESPACES if ns not in names}
    return ClusterFacts(tree=SNAP.tree, now_ns=NOW, namespaces=NamespaceListing(labels=found))


def binding(extra: str, leaf: int = 0) -> dict[str, Any]:
    """The seed tree with `extra` bound to root/algorithm/video as well."""
    obj = copy.deepcopy(TREE_OBJ)
    obj["spec"]["root"]["children"][0]["children"][leaf]["namespaces"].append(extra)
    return obj


# --- N1: the tree binds only labelled namespaces ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("op", "obj", "old", "facts", "refused_for"),
    [
        pytest.param("CREATE", TREE_OBJ, None, listing(), None, id="a tree binding only labelled namespaces is stored"),
        pytest.param("CREATE", TREE_OBJ, None, listing(video={}), "video",
                     id="a tree binding an unlabelled namespace is refused"),
        pytest.param("CREATE", TREE_OBJ, None, listing(video={keys.QUOTA_NAMESPACE_LABEL: "false"}), "video",
                     id="a label with another value is no label"),
        pytest.param("CREATE", TREE_OBJ, None, without("intern"), "intern",
                     id="a tree binding a namespace that does not exist is refused"),
        pytest.param("UPDATE", binding("ml"), TREE_OBJ, listing(ml={}), "ml",
                     id="an update newly binding an unlabelled namespace is refused"),
        pytest.param("UPDATE", binding("ml"), TREE_OBJ, listing(ml=LABEL), None,
                     id="an update newly binding a labelled namespace is stored"),
        pytest.param("UPDATE", TREE_OBJ, TREE_OBJ, listing(video={}), None,
                     id="a namespace the old tree already bound is not refused (an upgrade), only warned of"),
        pytest.param("UPDATE", TREE_OBJ, TREE_OBJ, without("video"), None,
                     id="a bound namespace deleted since is not refused: N3 labels it when it comes back"),
        pytest.param("UPDATE", TREE_OBJ, TREE_OBJ, ClusterFacts(tree=SNAP.tree, now_ns=NOW), None,
                     id="an update binding nothing new needs no namespace list"),
        pytest.param("CREATE", TREE_OBJ, None, ClusterFacts(
            tree=SNAP.tree, now_ns=NOW, namespaces=NamespaceListing(error="the API answered 503")), "video",
                     id="a failed namespace list refuses a tree that binds any namespace (fail closed)"),
    ],
)
def test_rule_quota_namespace_label(op: str, obj: dict[str, Any], old: dict[str, Any] | None, facts: ClusterFacts,
                                    refused_for: str | None) -> None:
    verdict = validate(tree_review(copy.deepcopy(obj), op=op, old=copy.deepcopy(old) if old else None), snap=facts)
    if refused_for is None:
        assert verdict.allowed, verdict.message
        return
    assert not verdict.allowed
    assert "rule quota-namespace-label" in verdict.message
    assert "ElasticQuotaTree kube-system/elasticquotatree" in verdict.message
    assert refused_for in verdict.message
    if "503" not in verdict.message:
        assert f"kubectl label namespace {refused_for} rayqueue.io/quota-namespace=true" in verdict.message


def test_a_refusal_names_every_unlabelled_namespace_its_leaf_and_the_command() -> None:
    verdict = validate(tree_review(copy.deepcopy(TREE_OBJ)), snap=listing(video={}, devops={}))
    assert not verdict.allowed
    assert "namespace video (leaf root/algorithm/video) does not carry rayqueue.io/quota-namespace=true: label it " \
           "first (kubectl label namespace video rayqueue.io/quota-namespace=true), then bind it" in verdict.message
    assert "namespace devops (leaf root/devops)" in verdict.message


def test_an_already_bound_unlabelled_namespace_is_warned_of_with_the_command() -> None:
    verdict = validate(tree_review(copy.deepcopy(TREE_OBJ), op="UPDATE", old=copy.deepcopy(TREE_OBJ)),
                       snap=listing(intern={}))
    assert verdict.allowed
    assert verdict.warnings == (
        "rayqueue: namespace intern (leaf root/algorithm/intern) is bound but does not carry "
        "rayqueue.io/quota-namespace=true, so the pod webhooks do not see its pods until the controller adds it: "
        "run kubectl label namespace intern rayqueue.io/quota-namespace=true",)


def test_moving_a_namespace_between_leaves_is_not_a_new_binding() -> None:
    moved = copy.deepcopy(TREE_OBJ)
    moved["spec"]["root"]["children"][0]["children"][0]["namespaces"].remove("video")
    moved["spec"]["root"]["children"][0]["children"][1]["namespaces"].append("video")
    verdict = validate(tree_review(moved, op="UPDATE", old=copy.deepcopy(TREE_OBJ)), snap=listing(video={}))
    assert verdict.allowed and "namespace video" in verdict.warnings[0]


# --- N2: the label stays while the tree binds the namespace ------------------------------------------------------

def ns_obj(name: str, labels: dict[str, str] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def ns_review(new: dict[str, Any], old: dict[str, Any] | None = None, *, op: str = "UPDATE", sub: str = "",
              user: dict[str, Any] = ALICE):
    return review(new, op=op, old=old, resource="namespaces", kind="Namespace", sub=sub, ns="", user=user,
                  name=new["metadata"]["name"])


def tree_read(obj: dict[str, Any] | None = TREE_OBJ, error: str | None = None) -> ClusterFacts:
    return ClusterFacts(tree=SNAP.tree, now_ns=NOW, live_tree=ClusterLookup(obj=obj, error=error))


@pytest.mark.parametrize(
    ("new_labels", "facts", "user", "sub", "refused"),
    [
        pytest.param({}, tree_read(), ALICE, "", "remove it",
                     id="a tenant with patch on her namespace cannot remove the label while it is bound"),
        pytest.param({}, tree_read(), ADMIN, "", "remove it",
                     id="an admin cannot remove it either: unbind first"),
        pytest.param({keys.QUOTA_NAMESPACE_LABEL: "false"}, tree_read(), ADMIN, "", "change it to 'false'",
                     id="changing the value counts as removing it"),
        pytest.param({}, tree_read(), ADMIN, "finalize", "remove it",
                     id="the finalize subresource cannot remove it"),
        pytest.param({}, tree_read(), ADMIN, "status", "remove it", id="the status subresource cannot remove it"),
        pytest.param({}, tree_read(error="the read failed: timeout"), ADMIN, "", "cannot read the ElasticQuotaTree",
                     id="a failed read of the tree refuses the removal (fail closed)"),
        pytest.param({}, tree_read(obj=binding("other")), ADMIN, "", "remove it",
                     id="the live tree decides, not the watched one"),
        pytest.param({}, tree_read(obj=None), ADMIN, "", None, id="with no tree the label may go"),
        pytest.param({**LABEL, "team": "x"}, tree_read(error="down"), ALICE, "", None,
                     id="an edit keeping the label needs no read and is allowed"),
    ],
)
def test_rule_quota_namespace_kept(new_labels: dict[str, str], facts: ClusterFacts, user: dict[str, Any], sub: str,
                                   refused: str | None) -> None:
    name = "other" if facts.live_tree and facts.live_tree.obj is not None and "other" in tree_bindings(
        facts.live_tree.obj) else "video"
    verdict = validate(ns_review(ns_obj(name, new_labels), ns_obj(name, dict(LABEL)), sub=sub, user=user), snap=facts)
    if refused is None:
        assert verdict.allowed, verdict.message
        return
    assert not verdict.allowed and "rule quota-namespace-kept" in verdict.message
    assert f"Namespace {name}" in verdict.message and refused in verdict.message
    if "cannot read" not in refused:
        assert "binds it to quota root/algorithm/video" in verdict.message and "unbind" in verdict.message


def test_the_label_of_an_unbound_namespace_may_go() -> None:
    verdict = validate(ns_review(ns_obj("scratch", {}), ns_obj("scratch", dict(LABEL))), snap=tree_read())
    assert verdict.allowed


# --- N3: a bound namespace created again gets the label ------------------------------------------------------------

def test_a_bound_namespace_created_again_gets_the_label() -> None:
    verdict, out = mutate(ns_review(ns_obj("video", None), op="CREATE", user=ADMIN), snap=tree_read())
    assert out["metadata"]["labels"] == LABEL
    assert "quota root/algorithm/video" in verdict.warnings[0] and "quota-namespace-recreated" in verdict.warnings[0]


@pytest.mark.parametrize(
    ("name", "labels", "facts", "patched"),
    [
        pytest.param("scratch", None, tree_read(), False, id="an unbound namespace is created as it is"),
        pytest.param("video", dict(LABEL), tree_read(error="down"), False,
                     id="a namespace created with the label needs no read"),
        pytest.param("video", {keys.QUOTA_NAMESPACE_LABEL: "false"}, tree_read(), True,
                     id="a bound namespace created with another value gets true"),
        pytest.param("video", None, tree_read(obj=None), False, id="with no tree nothing is bound"),
    ],
)
def test_rule_quota_namespace_recreated(name: str, labels: dict[str, str] | None, facts: ClusterFacts,
                                        patched: bool) -> None:
    verdict, out = mutate(ns_review(ns_obj(name, labels), op="CREATE", user=ADMIN), snap=facts)
    assert bool(verdict.patch) is patched
    if patched:
        assert out["metadata"]["labels"][keys.QUOTA_NAMESPACE_LABEL] == "true"


def test_a_namespace_create_is_refused_when_the_tree_cannot_be_read() -> None:
    from webhook.policy import PolicyConfig, admit
    verdict = admit(ns_review(ns_obj("video", None), op="CREATE", user=ADMIN), tree_read(error="the read failed: x"),
                    PolicyConfig(), mutating=True)
    assert not verdict.allowed
    assert "rule quota-namespace-recreated" in verdict.message and "fails closed" in verdict.message


# --- N4: the controller only adds ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("bound", "labels", "repaired"),
    [
        pytest.param(["a", "b"], {"a": LABEL, "b": {}}, ["b"], id="a bound namespace without the label is repaired"),
        pytest.param(["a"], {"a": LABEL, "z": {}}, [], id="an unbound namespace is never labelled"),
        pytest.param(["a"], {}, [], id="a bound namespace that does not exist is left to N3"),
        pytest.param([], {"a": LABEL}, [], id="nothing is ever removed"),
    ],
)
def test_the_controller_only_adds_the_label_to_bound_namespaces(bound: list[str], labels: dict[str, dict[str, str]],
                                                               repaired: list[str]) -> None:
    assert unlabelled_bound(bound, labels) == repaired


def test_the_lenient_reading_of_a_tree_counts_every_listed_namespace() -> None:
    assert tree_bindings(TREE_OBJ)["video"] == "root/algorithm/video"
    assert tree_bindings({"spec": {"root": {"name": "root", "namespaces": ["x"], "children": ["junk"]}}}) == {"x": "root"}
    assert tree_bindings(None) == {}


class _Namespaces:
    """Just enough of KubeClient for the repair: a Namespace list and merge patches, recorded."""

    def __init__(self, labels: dict[str, dict[str, str]]) -> None:
        self.labels = labels
        self.patched: list[tuple[str, Any]] = []

    async def get(self, path: str) -> dict[str, Any]:
        return {"items": [{"metadata": {"name": n, "labels": dict(v)}} for n, v in self.labels.items()]}

    async def patch(self, path: str, body: Any) -> dict[str, Any]:
        self.patched.append((path, body))
        return {}


@pytest.mark.asyncio
async def test_the_leader_repairs_a_bound_namespace_once_and_a_follower_repairs_nothing() -> None:
    import asyncio

    from common.quota_tree import QuotaTree
    from extender.namespace_labels import repair_namespace_labels

    tree = QuotaTree.parse(TREE_OBJ)
    for leading, expected in ((False, []), (True, [("/api/v1/namespaces/intern", {"metadata": {"labels": LABEL}})])):
        client = _Namespaces({**{ns: dict(LABEL) for ns in SEED_NAMESPACES}, "intern": {}, "scratch": {}})
        stop = asyncio.Event()
        task = asyncio.ensure_future(repair_namespace_labels(client, lambda: tree, lambda lead=leading: lead,  # type: ignore[arg-type]
                                                             stop))
        await asyncio.sleep(0.05)
        stop.set()
        await task
        assert client.patched == expected

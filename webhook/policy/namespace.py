"""Namespace admission: the quota-namespace label the pod webhooks' selector matches is set before a binding, kept
while it lasts, and given back to a bound namespace created again (rules N1-N3, docs/security.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common import keys
from webhook.jsonpatch import diff
from webhook.policy.inputs import PREFIX, ClusterFacts, PolicyConfig
from webhook.policy.objects import Draft, labels_of
from webhook.review import Request, Verdict, allow, deny

__all__ = ["LABEL_COMMAND", "is_quota_labelled", "mutate_namespace", "needs_live_tree", "tree_bindings",
           "validate_namespace"]

LABEL = f"{keys.QUOTA_NAMESPACE_LABEL}={keys.QUOTA_NAMESPACE_VALUE}"
LABEL_COMMAND = "kubectl label namespace {namespace} " + LABEL


def is_quota_labelled(labels: Mapping[str, Any]) -> bool:
    """Whether a Namespace's labels carry the quota-namespace label the pod webhooks select on."""
    return labels.get(keys.QUOTA_NAMESPACE_LABEL) == keys.QUOTA_NAMESPACE_VALUE


def tree_bindings(tree_obj: Mapping[str, Any] | None) -> dict[str, str]:
    """namespace -> path of the node that lists it, from a raw ElasticQuotaTree, leniently: every `namespaces`
    entry of every node counts, valid tree or not, so a doubt makes a namespace bound (fail closed)."""
    out: dict[str, str] = {}
    root = ((tree_obj or {}).get("spec") or {}).get("root") if isinstance(tree_obj, Mapping) else None
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        node, parent = stack.pop()
        if not isinstance(node, Mapping):
            continue
        path = f"{parent}/{node.get('name')}" if parent else str(node.get("name"))
        for ns in node.get("namespaces") or ():
            if isinstance(ns, str):
                out.setdefault(ns, path)
        stack.extend((child, path) for child in node.get("children") or () if isinstance(child, Mapping))
    return out


def _removes_label(req: Request) -> bool:
    return is_quota_labelled(labels_of(req.old)) and not is_quota_labelled(labels_of(req.obj))


def needs_live_tree(req: Request, *, mutating: bool) -> bool:
    """Whether deciding this Namespace request needs the tree read live: a CREATE without the label (N3, mutating),
    an UPDATE taking it away (N2, validating). Every other Namespace request is decided without a read."""
    if req.resource != "namespaces":
        return False
    if mutating:
        return req.operation == "CREATE" and not req.sub_resource and not is_quota_labelled(labels_of(req.obj))
    return req.operation == "UPDATE" and _removes_label(req)


def _name(req: Request) -> str:
    return req.name or str((req.obj.get("metadata") or {}).get("name", ""))


def _bound_node(req: Request, facts: ClusterFacts, rule: str, *, mutating: bool) -> str | Verdict:
    """The node binding this namespace, or the verdict to return at once: allow when the request needs no live
    tree or the tree binds no such namespace, a fail-closed refusal when the live tree could not be read."""
    if not needs_live_tree(req, mutating=mutating):
        return allow()
    name = _name(req)
    tree = facts.live_tree
    if tree is None or tree.error is not None:
        why = "no read was made" if tree is None else tree.error
        return deny(f"{PREFIX}: Namespace {name}: rule {rule}: cannot read the ElasticQuotaTree "
                    f"{keys.QUOTA_TREE_NAMESPACE}/{keys.QUOTA_TREE_NAME} to know whether it binds this "
                    f"namespace ({why}); rayqueue fails closed: retry shortly")
    node = tree_bindings(tree.obj).get(name)
    return allow() if node is None else node


def mutate_namespace(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict:
    """Rule N3 (quota-namespace-recreated): a Namespace created while the tree binds its name (deleted, then created
    again) gets the quota-namespace label, so its pods reach the pod webhooks from the first one."""
    node = _bound_node(req, facts, "quota-namespace-recreated", mutating=True)
    if not isinstance(node, str):
        return node
    draft = Draft(req.obj)
    draft.metadata_map(draft.root, "labels")[keys.QUOTA_NAMESPACE_LABEL] = keys.QUOTA_NAMESPACE_VALUE
    name = _name(req)
    return allow(patch=diff(req.obj, draft.root), warnings=[
        f"{PREFIX}: namespace {name} is bound to quota {node}: labelled {LABEL} (rule quota-namespace-recreated)"])


def validate_namespace(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict:
    """Rule N2 (quota-namespace-kept): the quota-namespace label may not be removed or changed while the tree binds
    the namespace, by anyone (an admin's slip opens the namespace's pods as much as a tenant's edit)."""
    node = _bound_node(req, facts, "quota-namespace-kept", mutating=False)
    if not isinstance(node, str):
        return node
    name = _name(req)
    now = labels_of(req.obj).get(keys.QUOTA_NAMESPACE_LABEL)
    change = "remove it" if now is None else f"change it to {now!r}"
    return deny(f"{PREFIX}: Namespace {name}: rule quota-namespace-kept: the ElasticQuotaTree "
                f"{keys.QUOTA_TREE_NAMESPACE}/{keys.QUOTA_TREE_NAME} binds it to quota {node}, so its label {LABEL} "
                f"stays (without it the pod webhooks would not see its pods); {req.user} may not {change}: "
                f"unbind the namespace from the tree first")

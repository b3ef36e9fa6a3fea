"""ElasticQuotaTree admission: the single tree, every tree rule at once, and the jobs a lower max makes reclaimable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from common import keys
from common.quantity import format_quantity
from common.quota_tree import QuotaTree, TreeError, validate_tree
from common.resources import Resources
from webhook.policy.inputs import PREFIX, ClusterFacts, PolicyConfig
from webhook.policy.namespace import LABEL_COMMAND, is_quota_labelled, tree_bindings
from webhook.review import Request, Verdict, allow, deny, invalid

__all__ = ["namespace_label_check", "reclaim_warnings", "validate_quota_tree"]


def validate_quota_tree(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict:
    """Rules single-tree and the tree rules (all errors, with paths); an UPDATE warns of what becomes reclaimable."""
    meta = req.obj.get("metadata") or {}
    where = f"{req.namespace or meta.get('namespace', '')}/{req.name or meta.get('name', '')}"
    if (req.namespace, req.name or meta.get("name")) != (keys.QUOTA_TREE_NAMESPACE, keys.QUOTA_TREE_NAME):
        return deny(f"{PREFIX}: ElasticQuotaTree {where}: rule single-tree: only one tree is supported, "
                    f"{keys.QUOTA_TREE_NAMESPACE}/{keys.QUOTA_TREE_NAME}")
    errors = validate_tree(dict(req.obj))
    if errors:
        listed = "; ".join(str(e) for e in errors)
        return invalid(f"{PREFIX}: ElasticQuotaTree {where} is invalid ({len(errors)} "
                       f"error{'s' if len(errors) != 1 else ''}): {listed}", keys.QUOTA_TREE_KIND,
                       str(req.name or meta.get("name", "")), [(e.path, e.message) for e in errors])
    try:
        tree = QuotaTree.parse(dict(req.obj))
    except TreeError as exc:  # validate_tree found nothing, so this would be a bug; answer it plainly
        return deny(f"{PREFIX}: ElasticQuotaTree {where}: {exc}", code=422)
    refusal, unlabelled = namespace_label_check(req, tree, facts, where)
    if refusal is not None:
        return refusal
    if req.operation != "UPDATE":
        return allow(warnings=unlabelled)
    return allow(warnings=[*unlabelled, *reclaim_warnings(req.old, tree, facts.admitted_by_namespace)])


def namespace_label_check(req: Request, tree: QuotaTree, facts: ClusterFacts,
                          where: str) -> tuple[Verdict | None, list[str]]:
    """Rule N1 (quota-namespace-label): every namespace this write newly binds (all of a CREATE's; an UPDATE's not
    bound by the old tree) must exist and carry the quota-namespace label, so no stored tree ever binds a namespace
    the pod webhooks do not see: label first, then bind. A namespace the old tree already bound is not refused (N2
    and N3 keep its label; an upgrade's may predate the label): a warning names it and the command, and the
    controller adds the label (N4). Returns (the refusal, or None; the warnings)."""
    old = tree_bindings(req.old) if req.operation == "UPDATE" else {}
    bindings = tree.namespace_bindings()
    new = {ns: leaf for ns, leaf in bindings.items() if ns not in old}
    listing = facts.namespaces
    if listing is None or listing.error is not None:
        if not new:
            return None, []
        why = "no list was made" if listing is None else listing.error
        return deny(f"{PREFIX}: ElasticQuotaTree {where}: rule quota-namespace-label: cannot list the Namespaces to "
                    f"check that {', '.join(sorted(new))} carry {keys.QUOTA_NAMESPACE_LABEL}="
                    f"{keys.QUOTA_NAMESPACE_VALUE} ({why}); rayqueue fails closed: retry shortly"), []
    problems: list[str] = []
    for ns, leaf in new.items():
        labels = listing.labels.get(ns)
        if labels is None:
            problems.append(f"namespace {ns} (leaf {leaf}) does not exist: create it and label it "
                            f"(kubectl create namespace {ns} && {LABEL_COMMAND.format(namespace=ns)}), then bind it")
        elif not is_quota_labelled(labels):
            problems.append(f"namespace {ns} (leaf {leaf}) does not carry {keys.QUOTA_NAMESPACE_LABEL}="
                            f"{keys.QUOTA_NAMESPACE_VALUE}: label it first ({LABEL_COMMAND.format(namespace=ns)}), "
                            f"then bind it")
    if problems:
        return deny(f"{PREFIX}: ElasticQuotaTree {where}: rule quota-namespace-label: a bound namespace's pods must "
                    f"reach the pod webhooks from the first one: {'; '.join(problems)}"), []
    warnings = [f"{PREFIX}: namespace {ns} (leaf {leaf}) is bound but does not carry {keys.QUOTA_NAMESPACE_LABEL}="
                f"{keys.QUOTA_NAMESPACE_VALUE}, so the pod webhooks do not see its pods until the controller adds it: "
                f"run {LABEL_COMMAND.format(namespace=ns)}"
                for ns, leaf in bindings.items() if ns in old and ns in listing.labels
                and not is_quota_labelled(listing.labels[ns])]
    return None, warnings


def reclaim_warnings(old_obj: Mapping[str, Any], tree: QuotaTree,
                     admitted_by_namespace: Mapping[str, Sequence[str]]) -> list[str]:
    """For each node whose recorded usage (the controller's status) exceeds its new max: a warning naming
    the node, the numbers and the admitted jobs below it, which become reclaimable."""
    status_nodes = ((old_obj.get("status") or {}).get("nodes")) or {}
    out: list[str] = []
    for node in tree.nodes():
        entry = status_nodes.get(node.full_name) if isinstance(status_nodes, dict) else None
        if not isinstance(entry, dict):
            continue
        try:
            used = Resources.parse(entry.get("used") or {})
        except ValueError:
            continue
        over = [f"{r} used {format_quantity(r, used.get(r))} > new max {format_quantity(r, node.max[r])}"
                for r in sorted(node.max) if used.get(r) > node.max[r]]
        if not over:
            continue
        below = [n for n in tree.nodes() if n.full_name == node.full_name or n.full_name.startswith(node.full_name + "/")]
        jobs = sorted(j for n in below for ns in n.namespaces for j in admitted_by_namespace.get(ns, ()))
        listed = ", ".join(jobs) if jobs else "none recorded"
        out.append(f"{PREFIX}: {node.full_name}: {'; '.join(over)}: running jobs there become reclaimable: "
                   f"{listed}")
    return out

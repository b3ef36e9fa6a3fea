"""ElasticQuotaTree admission: the single tree, every tree rule at once, and the jobs a lower max makes reclaimable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from common import keys
from common.quantity import format_quantity
from common.quota_tree import QuotaTree, TreeError, validate_tree
from common.resources import Resources
from webhook.policy.inputs import PREFIX, ClusterFacts, PolicyConfig
from webhook.review import Request, Verdict, allow, deny, invalid

__all__ = ["reclaim_warnings", "validate_quota_tree"]


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
    if req.operation != "UPDATE":
        return allow()
    try:
        tree = QuotaTree.parse(dict(req.obj))
    except TreeError as exc:  # validate_tree found nothing, so this would be a bug; answer it plainly
        return deny(f"{PREFIX}: ElasticQuotaTree {where}: {exc}", code=422)
    return allow(warnings=reclaim_warnings(req.old, tree, facts.admitted_by_namespace))


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

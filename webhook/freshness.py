"""What the webhook refuses while its ElasticQuotaTree watch is not live: it fails closed (docs/security.md).

A create decides whether an object enters the queue at all. With a stale tree the webhook cannot tell whether a
namespace has been bound to a leaf since its last list (the reported failure: a leaf added for namespace `free`
after an apiserver restart was not seen, and that namespace's RayJobs bypassed the quota), so until the watch
has listed again it refuses what it cannot judge, naming rayqueue and the reason:

- every RayJob and RayCluster create, in any namespace the webhook configuration sends it;
- every Ray pod create (labelled `ray.io/cluster`), and every pod create in a namespace the last tree binds.

Other pods pass as they are: refusing every pod of the cluster for the length of an apiserver restart would
stop controllers that have nothing to do with rayqueue. Updates of objects already queued are judged on the last
tree. The refusal is a normal admission answer; the apiserver's caller (kubectl, KubeRay, a Job controller)
sees the reason and retries.
"""

from __future__ import annotations

from common import keys
from common.quota_tree import QuotaTree
from webhook.review import Request, Verdict, deny

__all__ = ["stale_tree_refusal"]

_QUEUED = frozenset({keys.RAYJOB_PLURAL, keys.RAYCLUSTER_PLURAL})


def stale_tree_refusal(req: Request, last_tree: QuotaTree | None, why: str) -> Verdict | None:
    """The refusal of `req` while the tree watch is not live for `why`; None when the request can be judged."""
    if req.operation != "CREATE" or req.sub_resource:
        return None
    what = f"{req.kind} {req.namespace}/{req.name or '(generateName)'}"
    if req.resource in _QUEUED:
        because = "any namespace may have been bound to a quota since"
    elif req.resource == "pods":
        labels = (req.obj.get("metadata") or {}).get("labels") or {}
        leaf = last_tree.leaf_for_namespace(req.namespace) if last_tree is not None else None
        if keys.RAY_CLUSTER in labels:
            because = "a Ray pod's quota and gang labels come from the tree"
        elif leaf is not None:
            because = f"namespace {req.namespace} was bound to quota {leaf.full_name} and may have changed since"
        else:
            return None
    else:
        return None
    return deny(f"rayqueue: cannot judge {what} now: the webhook's ElasticQuotaTree watch is not live ({why}), "
                f"and {because}; rayqueue fails closed until the watch has listed the tree again: retry shortly")

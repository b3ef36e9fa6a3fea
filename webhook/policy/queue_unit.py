"""QueueUnit admission: who set a new spec.priority (kube-queue's dynamic priority), stamped for the controller."""

from __future__ import annotations

from collections.abc import Mapping

from common import keys
from webhook.jsonpatch import diff
from webhook.policy.inputs import ClusterFacts, PolicyConfig
from webhook.policy.objects import Draft, annotations_of
from webhook.review import Request, Verdict, allow

__all__ = ["mutate_queue_unit"]


def mutate_queue_unit(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict:
    """UPDATE that sets spec.priority to something the controller did not write (kube-queue's dynamic
    priority): stamp who did it, for the PriorityChanged event the controller makes when it adopts it."""
    if req.operation != "UPDATE":
        return allow()
    spec = req.obj.get("spec") or {}
    old_spec = req.old.get("spec") or {}
    priority = spec.get("priority") if isinstance(spec, Mapping) else None
    if (not isinstance(priority, int) or isinstance(priority, bool)
            or priority == (old_spec.get("priority") if isinstance(old_spec, Mapping) else None)
            or annotations_of(req.obj).get(keys.SYNCED_PRIORITY) == str(priority)):
        return allow()
    draft = Draft(req.obj)
    stamp = f"{req.user.username} (spec.priority {priority})"  # the controller checks it is this change's
    draft.metadata_map(draft.root, "annotations")[keys.PRIORITY_CHANGED_BY] = stamp
    return allow(patch=diff(dict(req.obj), draft.root),
                 audit=[f"QueueUnit {req.display_name}: {req.user} set spec.priority {priority}"])

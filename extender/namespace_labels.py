"""Rule N4: the leader adds the quota-namespace label to bound namespaces that lack it (a repair), never removes it.

The label is what the pod webhooks' namespaceSelector matches (docs/security.md, rules N1-N4). The tree webhook
refuses binding an unlabelled namespace (N1), so on a healthy install there is nothing to repair; this covers an
upgrade whose tree predates the label and the race of an admin removing the label while another binds the
namespace. Adding is always safe (it only widens what the pod webhooks see); removing on an unbind would race a
concurrent bind, so nothing here ever removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping

from common import keys
from common.quota_tree import QuotaTree
from kubeio.client import ApiError, KubeClient
from kubeio.scopes import NAMESPACES

__all__ = ["REPAIR_PERIOD", "repair_namespace_labels", "unlabelled_bound"]

log = logging.getLogger("rayqueue.extender.namespace_labels")

REPAIR_PERIOD = 30.0  # seconds between looks while the tree is unchanged; a tree change is looked at within a second
_TICK = 1.0
LABEL_PATCH = {"metadata": {"labels": {keys.QUOTA_NAMESPACE_LABEL: keys.QUOTA_NAMESPACE_VALUE}}}


def unlabelled_bound(bound: Iterable[str], labels_by_namespace: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The bound namespaces that exist and do not carry the label, sorted (a missing namespace gets it from the
    webhook's rule N3 when it is created)."""
    return sorted(ns for ns in set(bound) if ns in labels_by_namespace
                  and labels_by_namespace[ns].get(keys.QUOTA_NAMESPACE_LABEL) != keys.QUOTA_NAMESPACE_VALUE)


async def _repair_once(client: KubeClient, tree: QuotaTree) -> None:
    listed = await client.get(NAMESPACES.path())
    labels = {str((ns.get("metadata") or {}).get("name")): dict((ns.get("metadata") or {}).get("labels") or {})
              for ns in listed.get("items") or []}
    for ns in unlabelled_bound(tree.namespace_bindings(), labels):
        try:
            await client.patch(NAMESPACES.path(name=ns), LABEL_PATCH)
        except ApiError as exc:
            if not exc.not_found:
                raise
            continue
        leaf = tree.leaf_for_namespace(ns)
        log.warning("namespace %s is bound to quota %s but lacked %s=%s: added it (rule N4); label namespaces "
                    "before binding them (docs/install.md)", ns, leaf.full_name if leaf else "?",
                    keys.QUOTA_NAMESPACE_LABEL, keys.QUOTA_NAMESPACE_VALUE)


async def repair_namespace_labels(client: KubeClient, tree: Callable[[], QuotaTree | None],
                                  leading: Callable[[], bool], stop: asyncio.Event,
                                  period: float = REPAIR_PERIOD) -> None:
    """While leading: look at once when the tree changes, else every `period`; a failed look is retried at the
    next one (logged), so this task never ends before `stop`."""
    seen: str | None = None
    since = period
    while not stop.is_set():
        current = tree()
        if leading() and current is not None and (current.fingerprint != seen or since >= period):
            try:
                await _repair_once(client, current)
                seen, since = current.fingerprint, 0.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the apiserver is away, or RBAC lacks a rule: say so and look again later
                log.warning("could not repair the quota-namespace labels: %s: %s", type(exc).__name__, exc)
                seen, since = current.fingerprint, 0.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=_TICK)
        since += _TICK

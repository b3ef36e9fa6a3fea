"""Reading and writing a wire object's parts: labels, annotations, controller, pod templates, a copy-on-write draft."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common import keys

__all__ = ["Draft", "FieldPath", "annotations_of", "controller", "labels_of", "lenient_read", "owner_references",
           "pod_templates", "rayjob_controller", "read_path"]

FieldPath = tuple[str | int, ...]


class Draft:
    """A copy-on-write copy of an admitted object. `root` is a shallow copy; a map or list below it is
    copied (shallowly, once) the first time a write goes through it, everything else stays shared with
    the request, which is never changed. Diffing `root` against the original therefore sees exactly the
    writes, as with a deep copy, at the cost of the written paths only."""

    __slots__ = ("_owned", "root")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.root: dict[str, Any] = dict(obj)
        self._owned: set[int] = {id(self.root)}

    def child(self, parent: Any, key: str | int) -> Any:
        """`parent.setdefault(key, {})` (`parent[key]` for a list), the value made this draft's own when it
        is a map or a list. `parent` must be the draft's own (the root, or a value child() returned)."""
        if isinstance(parent, list):
            assert isinstance(key, int), key
            value = parent[key]
        else:
            fresh: dict[str, Any] = {}
            value = parent.setdefault(key, fresh)  # a non-map parent raises here, as setdefault on it would
            if value is fresh:
                self._owned.add(id(fresh))
                return fresh
        if isinstance(value, tuple):  # not JSON (in-process callers only): written through as a list
            value = list(value)
            parent[key] = value
            self._owned.add(id(value))
        elif isinstance(value, dict | list) and id(value) not in self._owned:
            value = value.copy()
            parent[key] = value
            self._owned.add(id(value))
        return value

    def at(self, path: FieldPath) -> Any:
        """The value at `path`, every map and list on the way (and the value itself) made the draft's own."""
        node: Any = self.root
        for key in path:
            node = self.child(node, key)
        return node

    def metadata_map(self, node: Any, key: str) -> Any:
        """`node.metadata.<key>` (labels or annotations), made the draft's own."""
        return self.child(self.child(node, "metadata"), key)


def read_path(obj: Mapping[str, Any], path: FieldPath) -> Any:
    """The value at ``path``, which must be there (a path pod_templates found)."""
    node: Any = obj
    for key in path:
        node = node[key]
    return node


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    found = (obj.get("metadata") or {}).get("labels") or {}
    return dict(found) if isinstance(found, dict) else {}


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    found = (obj.get("metadata") or {}).get("annotations") or {}
    return dict(found) if isinstance(found, dict) else {}


def owner_references(obj: Mapping[str, Any]) -> list[Any]:
    """The object's ownerReferences (an empty list when there are none or they are not a list)."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    refs = meta.get("ownerReferences")
    return refs if isinstance(refs, list) else []


def controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object's controller ownerReference, or None."""
    for ref in owner_references(obj):
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


def rayjob_controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object's controller ownerReference when it is a RayJob, or None."""
    ref = controller(obj)
    if ref is not None and ref.get("kind") == keys.RAYJOB_KIND and str(ref.get("apiVersion", "")).startswith(
            keys.RAY_GROUP + "/"):
        return ref
    return None


def pod_templates(obj: Mapping[str, Any], cluster_at: FieldPath,
                  submitter_at: FieldPath | None = None) -> list[tuple[FieldPath, bool]]:
    """Where every pod template of a Ray object is, read-only: head and each worker group of the cluster spec at
    ``cluster_at``, then the submitter template at ``submitter_at`` if any; each with whether it belongs to the
    gang (head and workers; not the submitter)."""
    out: list[tuple[FieldPath, bool]] = []
    cluster = lenient_read(obj, cluster_at)
    if isinstance(cluster, Mapping):
        head = cluster.get("headGroupSpec")
        if isinstance(head, Mapping) and isinstance(head.get("template"), Mapping):
            out.append(((*cluster_at, "headGroupSpec", "template"), True))
        for i, group in enumerate(cluster.get("workerGroupSpecs") or []):
            if isinstance(group, Mapping) and isinstance(group.get("template"), Mapping):
                out.append(((*cluster_at, "workerGroupSpecs", i, "template"), True))
    if submitter_at is not None and isinstance(lenient_read(obj, submitter_at), Mapping):
        out.append((submitter_at, False))
    return out


def lenient_read(node: Any, path: FieldPath) -> Any:
    """The value at ``path`` below ``node``, or None where a step is missing or not a map."""
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node

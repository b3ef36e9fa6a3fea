"""RFC 6902 JSON patches derived from old vs new documents: mutate a copy, then diff, never hand-write paths."""

from __future__ import annotations

from typing import Any

__all__ = ["diff", "escape"]

JsonPatchOp = dict[str, Any]


def escape(key: str) -> str:
    """A JSON-pointer token: `~` -> `~0`, `/` -> `~1` (label keys like `ray.io/cluster` need it)."""
    return key.replace("~", "~0").replace("/", "~1")


def diff(old: Any, new: Any, path: str = "") -> list[JsonPatchOp]:
    """The operations that turn `old` into `new`. Maps recurse; lists and scalars are replaced whole.

    A key missing in `old` is added with its whole value, so a missing `labels` map is created in one
    `add` rather than patched into a parent that does not exist. A map that is the same object in both
    is unchanged and not walked: the policy's copy-on-write drafts share every subtree they do not write
    (the one value unequal to itself, NaN, is not JSON).
    """
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[JsonPatchOp] = []
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{escape(key)}"})
        for key, value in new.items():
            if key not in old:
                ops.append({"op": "add", "path": f"{path}/{escape(key)}", "value": value})
                continue
            before = old[key]
            if isinstance(before, dict) and isinstance(value, dict):
                if before is not value:
                    ops.extend(diff(before, value, f"{path}/{escape(key)}"))
            elif before != value or type(before) is not type(value):
                ops.append({"op": "replace", "path": f"{path}/{escape(key)}", "value": value})
        return ops
    if old == new and type(old) is type(new):
        return []
    return [{"op": "replace", "path": path, "value": new}]

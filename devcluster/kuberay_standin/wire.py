"""Plain-dict readers and writers of Kubernetes objects: metadata, owners, timestamps, conditions, container states."""

from __future__ import annotations

import datetime as dt
import random

from devcluster.kuberay_standin.names import Obj

# k8s.io/apimachinery/pkg/util/rand.String's alphabet (no vowels, no look-alikes), as KubeRay uses it.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


def meta_of(obj: Obj) -> Obj:
    meta: Obj = obj.setdefault("metadata", {})
    return meta


def key_of(obj: Obj) -> str:
    meta = meta_of(obj)
    return f"{meta.get('namespace', '')}/{meta['name']}"


def resource_version(obj: Obj) -> int:
    try:
        return int(meta_of(obj).get("resourceVersion", "0"))
    except ValueError:
        return 0


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(_RFC3339)


def parse_rfc3339(text: object) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(str(text), _RFC3339).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def random_suffix(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice(_SUFFIX_ALPHABET) for _ in range(length))


def owner_ref(obj: Obj) -> Obj:
    meta = meta_of(obj)
    return {
        "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"],
        "controller": True, "blockOwnerDeletion": True,
    }


def controller_uid(obj: Obj) -> str | None:
    for ref in meta_of(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def labels_of(obj: Obj) -> dict[str, str]:
    return dict(meta_of(obj).get("labels") or {})


def annotations_of(obj: Obj) -> dict[str, str]:
    return dict(meta_of(obj).get("annotations") or {})


def seconds_or(text: object, default: float) -> float:
    try:
        return max(0.0, float(str(text)))
    except (TypeError, ValueError):
        return default


def int_or(value: object, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def find_condition(conditions: list[Obj], kind: str) -> Obj | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def set_condition(conditions: list[Obj], new: Obj, now: str) -> None:
    """meta.SetStatusCondition: the transition time changes only when the status does."""
    old = find_condition(conditions, new["type"])
    if old is None:
        conditions.append({**new, "lastTransitionTime": now})
        return
    if old.get("status") != new["status"]:
        old["lastTransitionTime"] = now
    old.update({k: v for k, v in new.items() if k != "lastTransitionTime"})


def running_and_ready(pod: Obj) -> bool:
    """utils.IsRunningAndReady."""
    status = pod.get("status") or {}
    ready = find_condition(list(status.get("conditions") or []), "Ready")
    return status.get("phase") == "Running" and ready is not None and ready.get("status") == "True"


def container_state(pod: Obj, name: str) -> Obj:
    for entry in (pod.get("status") or {}).get("containerStatuses") or []:
        if entry.get("name") == name:
            return dict(entry.get("state") or {})
    return {}


def container_finished_at(pod: Obj) -> str | None:
    for entry in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (entry.get("state") or {}).get("terminated")
        if terminated:
            return str(terminated.get("finishedAt"))
    return None

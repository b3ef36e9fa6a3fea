"""The AdmissionReview wire, converted once: a frozen Request in, a Verdict out, rendered to a response."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

__all__ = ["BadReview", "Permission", "Request", "User", "Verdict", "allow", "deny", "invalid", "render"]

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


class BadReview(ValueError):
    """A request we cannot decide on (no object for a CREATE, an unknown operation): answered with code 400."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    groups: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.username or "<anonymous>"


@dataclass(frozen=True, slots=True)
class Request:
    """One admission request. `obj`/`old` are the raw objects (dicts); policy converts them once more
    into JobInfo/PodInfo/QuotaTree values."""

    uid: str
    group: str
    version: str
    kind: str
    resource: str
    sub_resource: str
    operation: Operation
    namespace: str
    name: str
    user: User
    obj: Mapping[str, Any]
    old: Mapping[str, Any]
    dry_run: bool = False

    @classmethod
    def parse(cls, req: Mapping[str, Any]) -> Request:
        """From AdmissionReview.request (the server has checked the envelope and the uid)."""
        uid = str(req.get("uid") or "")
        op = req.get("operation")
        if op not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
            raise BadReview(f"request.operation must be CREATE, UPDATE, DELETE or CONNECT, got {op!r}")
        kind, res, user = _map(req.get("kind")), _map(req.get("resource")), _map(req.get("userInfo"))
        obj, old = req.get("object"), req.get("oldObject")
        if op in ("CREATE", "UPDATE") and not isinstance(obj, dict):
            raise BadReview(f"request.object is missing for {op}")
        if op == "UPDATE" and not isinstance(old, dict):
            raise BadReview("request.oldObject is missing for UPDATE")
        groups = user.get("groups")
        groups = groups if isinstance(groups, list) else []
        return cls(
            uid=uid,
            group=str(kind.get("group", "")),
            version=str(kind.get("version", "")),
            kind=str(kind.get("kind", "")),
            resource=str(res.get("resource", "")),
            sub_resource=str(req.get("subResource") or ""),
            operation=op,
            namespace=str(req.get("namespace") or ""),
            name=str(req.get("name") or ""),
            user=User(str(user.get("username", "")), tuple(str(g) for g in groups)),
            obj=obj if isinstance(obj, dict) else {},
            old=old if isinstance(old, dict) else {},
            dry_run=bool(req.get("dryRun")),
        )

    @property
    def display_name(self) -> str:
        """`namespace/name` of the object, or of its generateName prefix (CREATE has no name yet)."""
        meta = self.obj.get("metadata") or self.old.get("metadata") or {}
        name = self.name or meta.get("name") or (str(meta.get("generateName", "")) + "<generated>")
        return f"{self.namespace}/{name}" if self.namespace else str(name)


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class Permission:
    """A SubjectAccessReview the adapter must pass before the verdict stands."""

    verb: str
    group: str
    resource: str
    namespace: str
    denied_message: str


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    message: str = ""
    code: int = 200
    patch: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    requires: Permission | None = None
    audit: tuple[str, ...] = field(default=())  # lines the adapter logs (who changed what)
    # For 422 Invalid: the object (kind, name) and one (field path, message) per error, as the apiserver's own
    # validation reports them; kubectl then prints `The <Kind> "<name>" is invalid: [path: message, ...]`.
    invalid: tuple[str, str, tuple[tuple[str, str], ...]] | None = None


def allow(*, patch: list[dict[str, Any]] | None = None, warnings: list[str] | None = None,
          requires: Permission | None = None, audit: list[str] | None = None) -> Verdict:
    return Verdict(True, patch=tuple(patch or ()), warnings=tuple(warnings or ()), requires=requires,
                   audit=tuple(audit or ()))


def deny(message: str, code: int = 403) -> Verdict:
    return Verdict(False, message=message, code=code)


def invalid(message: str, kind: str, name: str, causes: list[tuple[str, str]]) -> Verdict:
    return Verdict(False, message=message, code=422, invalid=(kind, name, tuple(causes)))


def render(verdict: Verdict) -> dict[str, Any]:
    """The AdmissionReview `response` (the server fills in the uid and wraps it)."""
    response: dict[str, Any] = {"allowed": verdict.allowed}
    if not verdict.allowed:
        reason = {400: "BadRequest", 403: "Forbidden", 422: "Invalid"}.get(verdict.code, "InternalError")
        response["status"] = {"status": "Failure", "code": verdict.code, "reason": reason, "message": verdict.message}
        if verdict.invalid is not None:
            kind, name, causes = verdict.invalid
            response["status"]["details"] = {
                "kind": kind, "name": name,
                "causes": [{"type": "FieldValueInvalid", "field": f, "message": m} for f, m in causes],
            }
    if verdict.patch and verdict.allowed:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(list(verdict.patch))).decode()
    if verdict.warnings:
        response["warnings"] = list(verdict.warnings)
    return response

"""Kubernetes manifests from certificates: the TLS Secret and caBundle injection into webhook configurations."""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import yaml

from certs.authority import CertsError

__all__ = [
    "SECRET_TYPE_TLS",
    "WEBHOOK_CONFIGURATION_KINDS",
    "OutputFormat",
    "ca_bundle_field",
    "inject_ca_bundle",
    "inject_ca_bundle_json",
    "inject_ca_bundle_yaml",
    "render",
    "tls_secret",
]

OutputFormat = Literal["yaml", "json"]
SECRET_TYPE_TLS = "kubernetes.io/tls"
WEBHOOK_CONFIGURATION_KINDS = frozenset({"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"})

# A document marker: `---` at column 0, alone or followed by blanks (and maybe a comment or content).
_DOC_MARKER = re.compile(r"^---(?=[ \t]|\r?$)", re.MULTILINE)
_PLAIN_MARKER_LINE = re.compile(r"^---[ \t]*(#.*)?$")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def ca_bundle_field(ca_pem: bytes) -> str:
    """The value of `clientConfig.caBundle`: base64 of the PEM bundle (the API field is bytes)."""
    return _b64(ca_pem)


def tls_secret(
    *,
    name: str,
    namespace: str,
    cert_pem: bytes,
    key_pem: bytes,
    ca_pem: bytes | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A `kubernetes.io/tls` Secret with tls.crt, tls.key and (when given) ca.crt, keys sorted."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(sorted(labels.items()))
    data = {"tls.crt": _b64(cert_pem), "tls.key": _b64(key_pem)}
    if ca_pem is not None:
        data["ca.crt"] = _b64(ca_pem)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": SECRET_TYPE_TLS,
        "data": dict(sorted(data.items())),
    }


def _dump_yaml(obj: Any) -> str:
    # A wide line keeps a long base64 value on one line instead of folding it.
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=1 << 20)


def render(obj: Any, fmt: OutputFormat) -> str:
    """One manifest as YAML (block style, key order kept) or JSON (indented), ending with a newline."""
    if fmt == "json":
        return json.dumps(obj, indent=2) + "\n"
    return _dump_yaml(obj)


def inject_ca_bundle(obj: Mapping[str, Any], ca_pem: bytes, where: str) -> tuple[dict[str, Any], int]:
    """A copy of a webhook configuration with caBundle set on every webhook, and how many webhooks.

    `where` names the object in error messages (file and document). A `webhooks` list whose
    items are not mappings is refused with every bad index named; a missing clientConfig is created.
    """
    new = copy.deepcopy(dict(obj))
    webhooks = new.get("webhooks")
    if webhooks is None:
        return new, 0
    if not isinstance(webhooks, list):
        raise CertsError([f"{where}: webhooks is a {type(webhooks).__name__}, expected a list"])
    problems = [
        f"{where}: webhooks[{i}] is a {type(w).__name__}, expected a mapping"
        for i, w in enumerate(webhooks)
        if not isinstance(w, dict)
    ]
    problems += [
        f"{where}: webhooks[{i}].clientConfig is a {type(w['clientConfig']).__name__}, expected a mapping"
        for i, w in enumerate(webhooks)
        if isinstance(w, dict)
        and w.get("clientConfig") is not None
        and not isinstance(w["clientConfig"], dict)
    ]
    if problems:
        raise CertsError(problems)
    value = ca_bundle_field(ca_pem)
    for webhook in webhooks:
        if webhook.get("clientConfig") is None:
            webhook["clientConfig"] = {}
        webhook["clientConfig"]["caBundle"] = value
    return new, len(webhooks)


def _describe(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{obj.get('kind')}/{name or '?'}"


def _inject_any(obj: Any, ca_pem: bytes, where: str) -> tuple[Any, int, int]:
    """(new object, webhook configurations touched, webhooks touched); walks `kind: List` items too."""
    if not isinstance(obj, dict):
        return obj, 0, 0
    if obj.get("kind") in WEBHOOK_CONFIGURATION_KINDS:
        new, n = inject_ca_bundle(obj, ca_pem, f"{where} {_describe(obj)}")
        return new, 1, n
    if obj.get("kind") == "List" and isinstance(obj.get("items"), list):
        items, configs, hooks = [], 0, 0
        for i, item in enumerate(obj["items"]):
            new_item, c, h = _inject_any(item, ca_pem, f"{where} items[{i}]")
            items.append(new_item)
            configs, hooks = configs + c, hooks + h
        return ({**obj, "items": items} if configs else obj), configs, hooks
    return obj, 0, 0


def inject_ca_bundle_yaml(text: str, ca_pem: bytes, source: str) -> tuple[str, int]:
    """Set caBundle in every webhook configuration of a multi-document YAML text.

    Returns the new text and the number of webhooks set. Only the documents that are webhook
    configurations (or Lists holding some) are re-serialised (keeping the comment lines above the
    object, losing those inside it); every other document, comments included, is kept byte for byte. CertsError if the text is not YAML or holds no configuration.
    """
    try:
        list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise CertsError([f"{source}: not valid YAML: {exc}"]) from None
    starts = [m.start() for m in _DOC_MARKER.finditer(text)]
    bounds = [0, *starts] if not starts or starts[0] != 0 else starts
    chunks = [text[a:b] for a, b in zip(bounds, [*bounds[1:], len(text)], strict=True)]
    out: list[str] = []
    configs = hooks = 0
    for index, chunk in enumerate(chunks):
        try:
            doc = yaml.safe_load(chunk)
        except yaml.YAMLError as exc:  # e.g. a %YAML directive: this splitter keeps to plain documents
            raise CertsError([f"{source} document {index}: cannot be handled on its own: {exc}"]) from None
        new, c, h = _inject_any(doc, ca_pem, f"{source} document {index}")
        if not c:
            out.append(chunk)
            continue
        configs, hooks = configs + c, hooks + h
        lines = chunk.splitlines(keepends=True)
        head: list[str] = []
        if chunk.startswith("---"):
            first = lines.pop(0).rstrip("\r\n")
            head.append((first if _PLAIN_MARKER_LINE.match(first) else "---") + "\n")
        for line in lines:  # comments above the object stay with it
            if line.strip() and not line.lstrip().startswith("#"):
                break
            head.append(line)
        out.append("".join(head) + _dump_yaml(new))
    if not configs:
        raise CertsError([f"{source}: no {' or '.join(sorted(WEBHOOK_CONFIGURATION_KINDS))} in it"])
    return "".join(out), hooks


def inject_ca_bundle_json(text: str, ca_pem: bytes, source: str) -> tuple[str, int]:
    """Like inject_ca_bundle_yaml for a JSON file holding one object (or a `kind: List`)."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise CertsError([f"{source}: not valid JSON: {exc}"]) from None
    new, configs, hooks = _inject_any(obj, ca_pem, source)
    if not configs:
        raise CertsError([f"{source}: no {' or '.join(sorted(WEBHOOK_CONFIGURATION_KINDS))} in it"])
    return json.dumps(new, indent=2) + "\n", hooks

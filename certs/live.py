"""Set caBundle on live webhook configurations through the Kubernetes API (a thin adapter)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from certs.manifests import ca_bundle_field

__all__ = ["ca_bundle_patch", "inject_live"]


def ca_bundle_patch(webhook_names: Sequence[str], ca_pem: bytes) -> list[dict[str, Any]]:
    """A JSON patch setting caBundle on each webhook, guarded by a test of its name at that index.

    The test ops make the patch fail (HTTP 422) instead of writing into the wrong webhook when the
    list changed between our read and our write.
    """
    value = ca_bundle_field(ca_pem)
    ops: list[dict[str, Any]] = []
    for i, name in enumerate(webhook_names):
        ops.append({"op": "test", "path": f"/webhooks/{i}/name", "value": name})
        ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": value})
    return ops


def inject_live(
    api_client: Any,
    ca_pem: bytes,
    *,
    mutating: Sequence[str] = (),
    validating: Sequence[str] = (),
) -> list[str]:
    """Patch caBundle into every webhook of the named configurations; one line per configuration.

    `api_client` is a `kubernetes.client.ApiClient`. API errors (not found, forbidden, conflict)
    propagate as the client's ApiException.
    """
    from kubernetes import client

    api = client.AdmissionregistrationV1Api(api_client)
    done: list[str] = []
    for kind, names, read, patch in (
        (
            "MutatingWebhookConfiguration",
            mutating,
            api.read_mutating_webhook_configuration,
            api.patch_mutating_webhook_configuration,
        ),
        (
            "ValidatingWebhookConfiguration",
            validating,
            api.read_validating_webhook_configuration,
            api.patch_validating_webhook_configuration,
        ),
    ):
        for name in names:
            current = read(name)
            hooks = [w.name for w in (current.webhooks or [])]
            if hooks:
                patch(name, ca_bundle_patch(hooks, ca_pem))
            done.append(f"{kind}/{name}: caBundle set on {len(hooks)} webhook(s)")
    return done

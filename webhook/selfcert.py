"""The webhook's own certificate, in-cluster: settle the Secret (create-or-get, resourceVersion-guarded), serve its
pair, inject its caBundle into the webhook configurations, and look again every interval (a thin adapter over
certs/selfmanaged.py; open-policy-agent/cert-controller's `Start` / `refreshCertIfNeeded` / `ensureCerts` loop)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

from certs.live import ca_bundle_patch
from certs.manifests import SECRET_TYPE_TLS, ca_bundle_field
from certs.selfmanaged import Decision, Policy, decide, serving_pair, trusted_bundle
from common.clock import Clock
from kubeio.client import JSON_PATCH, ApiError, KubeClient, Scope
from kubeio.scopes import SECRETS
from webhook.tls import load_pem_pair

__all__ = ["FIELD_MANAGER", "CertKeeper", "SelfCertSettings"]

log = logging.getLogger("rayqueue.webhook.certs")

FIELD_MANAGER = "rayqueue-webhook"  # owns the Secret's data and every webhook's clientConfig.caBundle
CONFIGURATIONS = (
    ("MutatingWebhookConfiguration",
     Scope("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", namespaced=False)),
    ("ValidatingWebhookConfiguration",
     Scope("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", namespaced=False)),
)
_ATTEMPTS = 6  # writes lost to the other replica before a pass gives up (and the loop retries with backoff)


@dataclass(frozen=True, slots=True)
class SelfCertSettings:
    """--cert-management=self: where the certificate lives and how long it lives."""

    secret: str = "rayqueue-webhook-tls"
    configuration: str = "rayqueue"  # the name of both the Mutating- and the ValidatingWebhookConfiguration
    policy: Policy = field(default_factory=Policy)
    check_interval: float = 600.0  # seconds between looks at the Secret and the configurations


def _decode(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def _encode(data: dict[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode("ascii") for k, v in sorted(data.items())}


class CertKeeper:
    """Keeps this replica's serving pair and both configurations' caBundle in step with the Secret."""

    def __init__(self, client: KubeClient, settings: SelfCertSettings, namespace: str, context: ssl.SSLContext,
                 *, clock: Clock) -> None:
        self.client = client
        self.settings = settings
        self.namespace = namespace
        self.context = context
        self.clock = clock
        self.ready = False  # the pair is served and both configurations carry its bundle
        self.started = asyncio.Event()  # set at the first pass that ends ready
        self._served: bytes | None = None
        self._missing: set[str] = set()

    @property
    def _secret_path(self) -> str:
        return SECRETS.path(self.namespace, self.settings.secret)

    async def _read(self) -> dict[str, Any] | None:
        try:
            return await self.client.get(self._secret_path)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def _write(self, current: dict[str, Any] | None, decision: Decision) -> dict[str, Any] | None:
        """Create or update the Secret; None when the other replica wrote first (409: read theirs)."""
        params = {"fieldManager": FIELD_MANAGER}
        try:
            if current is None:
                body = {"apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE_TLS,
                        "metadata": {"name": self.settings.secret, "namespace": self.namespace,
                                     "labels": {"app.kubernetes.io/part-of": "rayqueue",
                                                "app.kubernetes.io/managed-by": FIELD_MANAGER}},
                        "data": _encode(decision.data)}
                return await self.client.request("POST", SECRETS.path(self.namespace), params=params, body=body)
            # PUT of what we read: its metadata.resourceVersion makes a concurrent write fail with 409.
            return await self.client.request("PUT", self._secret_path, params=params,
                                             body={**current, "data": _encode(decision.data)})
        except ApiError as exc:
            if exc.conflict:
                log.info("Secret %s/%s: another replica wrote it first; reading theirs", self.namespace,
                         self.settings.secret)
                return None
            raise

    async def settle(self) -> tuple[dict[str, bytes], str]:
        """The Secret's data once nothing is due (written by us or by the other replica), and its resourceVersion."""
        for _ in range(_ATTEMPTS):
            current = await self._read()
            decision = decide(_decode(current) if current is not None else None, self.clock.now(),
                              self.settings.policy)
            if not decision.changed:
                assert current is not None
                return decision.data, str(current["metadata"].get("resourceVersion", ""))
            written = await self._write(current, decision)
            if written is not None:
                log.info("Secret %s/%s: %s: %s", self.namespace, self.settings.secret, decision.action,
                         decision.reason)
                return decision.data, str(written["metadata"].get("resourceVersion", ""))
        raise TimeoutError(f"Secret {self.namespace}/{self.settings.secret}: {_ATTEMPTS} writes in a row lost to "
                           f"concurrent writers")

    def _serve(self, data: dict[str, bytes]) -> None:
        cert, key = serving_pair(data)
        if cert != self._served:
            text = load_pem_pair(self.context, cert, key)
            log.info("serving certificate %s from Secret %s/%s", text, self.namespace, self.settings.secret)
            self._served = cert

    async def _inject(self, bundle: bytes) -> bool:
        """caBundle = `bundle` on every webhook of both configurations; False if one is missing or changed."""
        want = ca_bundle_field(bundle)
        done = True
        for kind, scope in CONFIGURATIONS:
            path = scope.path(name=self.settings.configuration)
            try:
                config = await self.client.get(path)
            except ApiError as exc:
                if not exc.not_found:
                    raise
                if kind not in self._missing:
                    log.warning("%s %s does not exist: not ready until it does (apply manifests/)", kind,
                                self.settings.configuration)
                self._missing.add(kind)
                done = False
                continue
            self._missing.discard(kind)
            hooks = config.get("webhooks") or []
            if all((h.get("clientConfig") or {}).get("caBundle") == want for h in hooks):
                continue
            try:
                await self.client.request("PATCH", path, params={"fieldManager": FIELD_MANAGER},
                                          body=ca_bundle_patch([h["name"] for h in hooks], bundle),
                                          content_type=JSON_PATCH)
            except ApiError as exc:
                if exc.status not in (409, 422):  # 422: a test op failed, the list changed under us
                    raise
                done = False
                continue
            log.info("%s %s: caBundle set on %d webhook(s)", kind, self.settings.configuration, len(hooks))
        return done

    async def ensure(self) -> bool:
        """One pass; True when this replica serves the Secret's pair and both configurations trust it."""
        for _ in range(_ATTEMPTS):
            data, version = await self.settle()
            self._serve(data)
            injected = await self._inject(trusted_bundle(data))
            after = await self._read()  # a replica that wrote meanwhile may have injected a newer bundle
            if after is not None and str(after["metadata"].get("resourceVersion", "")) == version:
                self.ready = injected
                if injected:
                    self.started.set()
                return injected
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Pass every check interval (on failure: back off from 1 s up to it), until `stop`. Never raises."""
        delay = 1.0
        interval = self.settings.check_interval
        while not stop.is_set():
            try:
                ok = await self.ensure()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an API outage, a bad pair: log, keep serving what we serve, retry
                log.warning("certificate check failed (still serving the last pair): %s: %s",
                            type(exc).__name__, exc)
                ok = False
            wait = interval if ok else min(delay, interval)
            delay = 1.0 if ok else min(delay * 2, interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def wait_started(self, stop: asyncio.Event) -> bool:
        """Until the first ready pass (True) or `stop` (False)."""
        waiters = [asyncio.ensure_future(self.started.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        return self.started.is_set()

"""An asyncio Kubernetes API client over aiohttp: raw dicts in and out, orjson, one session per process.

The official client loads the kubeconfig or in-cluster configuration (certificates, tokens, refresh);
requests go through aiohttp so that watches, patches and reviews share the service's event loop.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

__all__ = ["ApiError", "KubeClient", "Scope", "load_configuration"]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    """A non-2xx answer: its HTTP status, Kubernetes reason and message."""

    def __init__(self, status: int, reason: str, message: str, method: str = "", path: str = "") -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def gone(self) -> bool:
        return self.status == 410


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a resource lives: `/api/v1` or `/apis/<group>/<version>`, its plural, namespaced or not."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


def load_configuration(kubeconfig: str | None, context: str | None = None) -> k8s_client.Configuration:
    """The kubeconfig's configuration, or the in-cluster one when no kubeconfig is given."""
    cfg = k8s_client.Configuration()
    if kubeconfig:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=cfg)
    else:
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    return cfg


class KubeClient:
    """One aiohttp session to one apiserver. Use as an async context manager or call close()."""

    def __init__(self, cfg: k8s_client.Configuration, *, timeout: float = 30.0) -> None:
        self._cfg = cfg
        self.host = str(cfg.host).rstrip("/")
        ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.ssl_ca_cert else ssl.create_default_context()
        if cfg.cert_file:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        if not cfg.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self._ssl = ctx
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": JSON}
        if content_type:
            headers["Content-Type"] = content_type
        refresh = getattr(self._cfg, "refresh_api_key_hook", None)
        if refresh is not None:
            refresh(self._cfg)  # re-reads a rotated service-account token when due
        token = (self._cfg.api_key or {}).get("authorization")  # "Bearer <token>" from either loader
        if token:
            headers["Authorization"] = token
        return headers

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            # aiohttp does not wait for SSL transports to finish closing (aio-libs/aiohttp#1925; its docs
            # advise a short sleep): without it a loop that ends right after leaks the sockets.
            await asyncio.sleep(0.25)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(
            method, self.host + path, params=params, data=data,
            headers=self._headers(content_type if data is not None else None), timeout=self._timeout,
        ) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                raise _error(resp.status, raw, method, path)
            return orjson.loads(raw) if raw else {}

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def replace(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", path, body=body)

    async def delete(self, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("DELETE", path, body=body)

    async def watch(self, path: str, resource_version: str, timeout_seconds: int = 300) -> AsyncIterator[dict[str, Any]]:
        """The watch events `{type, object}` after `resource_version`, until the server ends the stream.

        An ERROR event with status 410 raises ApiError(410): the caller re-lists.
        """
        params = {
            "watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)
        async with self.session.get(self.host + path, params=params, headers=self._headers(), timeout=timeout) as resp:
            if resp.status >= 300:
                raise _error(resp.status, await resp.read(), "WATCH", path)
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = orjson.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise ApiError(int(status.get("code") or 500), str(status.get("reason", "")),
                                       str(status.get("message", "")), "WATCH", path)
                    yield event


def _error(status: int, raw: bytes, method: str, path: str) -> ApiError:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(status, str(body.get("reason", "")), str(body.get("message", raw[:200].decode(errors="replace"))),
                    method, path)

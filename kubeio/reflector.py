"""List+watch of one resource into a store keyed by UID, re-listing when the watch expires.

What the store keeps of each object is the caller's choice (``keep``): the whole object (``whole``, the default),
or only its identity (``tombstone``) when the handler keeps its own record of what it needs. The store exists for
one thing: a re-list must replay DELETED for what vanished while no watch was open, and ADDED vs MODIFIED for the
rest; a handler that reads only ``metadata.namespace/name/uid`` of a DELETED object needs no more than a tombstone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from kubeio.client import ApiError, KubeClient

__all__ = ["EventHandler", "Keep", "Reflector", "share_strings", "slim", "tombstone", "whole"]

log = logging.getLogger(__name__)

# (type, object): type is ADDED, MODIFIED or DELETED. A re-list replays ADDED/MODIFIED for what is there and
# DELETED for what vanished meanwhile, so handlers that key by UID stay idempotent.
EventHandler = Callable[[str, dict[str, Any]], None]
# What the store keeps of an object it has handed to the handler.
Keep = Callable[[dict[str, Any]], dict[str, Any]]
_IDENTITY = ("namespace", "name", "uid")
_SHARED_MAX = 253  # longer strings rarely repeat: not worth the interning table's entry


def uid_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop metadata.managedFields (server-side apply bookkeeping, often most of an object's size), which
    nothing in rayqueue reads: a cache of 10,000 RayJobs is several times smaller without it. Then share the
    strings that repeat across objects (``share_strings``)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return share_strings(obj)


def _shared(value: object) -> object:
    return sys.intern(value) if isinstance(value, str) and len(value) <= _SHARED_MAX else value


def share_strings(obj: dict[str, Any]) -> dict[str, Any]:
    """Make the values that repeat across objects one string each (sys.intern): namespace, generateName,
    label keys and values, annotation keys, ownerReferences' apiVersion and kind, and a pod's nodeName,
    schedulerName, priorityClassName and phase. A JSON decoder makes a new string for each occurrence, and
    what a cache keeps of 50,000 pods holds each of them (bench/memory.py: ~10 MB). Interned strings are
    still freed when nothing refers to them."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        for key in ("namespace", "generateName"):
            if key in meta:
                meta[key] = _shared(meta[key])
        for key in ("labels", "annotations"):
            values = meta.get(key)
            if isinstance(values, dict):
                meta[key] = {_shared(k): _shared(v) if key == "labels" else v for k, v in values.items()}
        refs = meta.get("ownerReferences")
        for ref in refs if isinstance(refs, list) else []:
            if isinstance(ref, dict):
                for key in ("apiVersion", "kind"):
                    if key in ref:
                        ref[key] = _shared(ref[key])
    spec, status = obj.get("spec"), obj.get("status")
    if isinstance(spec, dict):
        for key in ("nodeName", "schedulerName", "priorityClassName"):
            if key in spec:
                spec[key] = _shared(spec[key])
    if isinstance(status, dict) and "phase" in status:
        status["phase"] = _shared(status["phase"])
    return obj


def whole(obj: dict[str, Any]) -> dict[str, Any]:
    """Keep the object as listed or watched (slimmed): a second copy of everything the handler also converts."""
    return obj


def tombstone(obj: dict[str, Any]) -> dict[str, Any]:
    """Keep only the object's identity, ``{"metadata": {namespace, name, uid}}``: what a re-list hands to the
    handler as DELETED for an object that vanished meanwhile. A watch's own DELETED still carries the whole last
    object; the handler must not rely on more than the identity (the extender's Cache does not)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return {"metadata": {}}
    return {"metadata": {k: meta[k] for k in _IDENTITY if k in meta}}


class Reflector:
    """Keeps `store` equal to the server's objects at `path`; calls `handler` for every change.

    Handlers run on the event loop without awaiting, so one decision sees one consistent store. ``keep`` is
    what the store holds of each object (module docstring); the handler always receives the whole object.
    """

    def __init__(self, client: KubeClient, path: str, handler: EventHandler, *, name: str = "",
                 page_size: int = 500, retry_base: float = 0.5, retry_max: float = 30.0, keep: Keep = whole) -> None:
        self.client = client
        self.path = path
        self.handler = handler
        self.name = name or path
        self.store: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self._page_size = page_size
        self._retry_base = retry_base
        self._retry_max = retry_max
        self.relists = 0
        self._keep = keep

    async def run(self, stop: asyncio.Event) -> None:
        """List, then watch, until `stop` is set; errors back off exponentially and re-list."""
        delay = self._retry_base
        while not stop.is_set():
            try:
                rv = await self._relist()
                delay = self._retry_base
                while not stop.is_set():
                    rv = await self._watch_once(rv, stop)
            except ApiError as exc:
                if exc.gone:
                    log.info("%s: watch expired; re-listing", self.name)
                    continue
                log.warning("%s: %s; re-listing in %.1fs", self.name, exc, delay)
            except (TimeoutError, OSError, ValueError) as exc:
                log.warning("%s: watch failed (%s: %s); re-listing in %.1fs", self.name, type(exc).__name__, exc, delay)
            else:
                return
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, self._retry_max)

    async def _relist(self) -> str:
        items: dict[str, dict[str, Any]] = {}
        params = {"limit": str(self._page_size)}
        while True:
            page = await self.client.get(self.path, params)
            for obj in page.get("items") or []:
                items[uid_of(obj)] = slim(obj)
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                rv = str((page.get("metadata") or {}).get("resourceVersion", ""))
                break
            params = {"limit": str(self._page_size), "continue": cont}
        self.relists += 1
        for uid in [u for u in self.store if u not in items]:
            self.handler("DELETED", self.store.pop(uid))
        for uid, obj in items.items():
            kind = "MODIFIED" if uid in self.store else "ADDED"
            self.store[uid] = self._keep(obj)
            self.handler(kind, obj)
        self.synced.set()
        return rv

    async def _watch_once(self, rv: str, stop: asyncio.Event) -> str:
        stream = self.client.watch(self.path, rv)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while True:
                nxt = asyncio.ensure_future(anext(stream))
                done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    await asyncio.gather(nxt, return_exceptions=True)
                    return rv
                try:
                    event = nxt.result()
                except StopAsyncIteration:
                    return rv  # the server closed the stream: watch again from where we are
                kind, obj = event.get("type"), slim(event.get("object") or {})
                new_rv = str((obj.get("metadata") or {}).get("resourceVersion", rv))
                if kind == "BOOKMARK":
                    rv = new_rv
                    continue
                if self.apply(str(kind), obj):
                    rv = new_rv
        finally:
            stopper.cancel()
            await asyncio.gather(stopper, return_exceptions=True)
            await stream.aclose()  # type: ignore[attr-defined]

    def apply(self, kind: str, obj: dict[str, Any]) -> bool:
        """One watch event (ADDED, MODIFIED or DELETED; False for any other type): into the store, then the
        handler. Public so a benchmark can feed the store exactly as a watch does."""
        uid = uid_of(obj)
        if kind == "DELETED":
            self.store.pop(uid, None)
        elif kind in ("ADDED", "MODIFIED"):
            self.store[uid] = self._keep(obj)
        else:
            return False
        self.handler(kind, obj)
        return True

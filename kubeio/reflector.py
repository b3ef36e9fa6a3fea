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
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from common.clock import Clock, SystemClock
from kubeio.backoff import RetryBackoff
from kubeio.client import ApiError, KubeClient

__all__ = ["EventHandler", "Keep", "Reflector", "Sleep", "VeryShortWatch", "share_strings", "slim", "tombstone",
           "whole"]

log = logging.getLogger(__name__)

# How a reflector waits out a backoff: (seconds, stop) -> returns early when stop is set. Injected by tests.
Sleep = Callable[[float, asyncio.Event], Awaitable[None]]
_VERY_SHORT_WATCH = 1.0  # seconds: client-go's VeryShortWatchError threshold (reflector.go handleAnyWatch)


class VeryShortWatch(Exception):
    """The server closed a watch at once without an event: treated as a failure, so it is retried with backoff."""


# Failures of the wire or the server, logged without a traceback; anything else is a bug and gets one.
_EXPECTED: tuple[type[BaseException], ...] = (ApiError, aiohttp.ClientError, OSError, TimeoutError, ValueError,
                                              VeryShortWatch)


async def _sleep_until_stopped(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)

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

    `run` never ends on an error, only when `stop` is set or it is cancelled: it follows client-go's
    ``Reflector.RunWithContext`` / ``ListAndWatchWithContext`` / ``watch`` (tools/cache/reflector.go). A watch the
    server closes cleanly is opened again from the last resourceVersion ("Watch closed"); 410 Gone (the
    resourceVersion is too old) re-lists at once (``isExpiredError``); any other failure -- an ApiError such as
    the 403 a freshly started apiserver answers, a connection refused or cut (ServerDisconnectedError), a stream
    cut mid-body (ClientPayloadError), a timeout, a malformed line, even a handler that raises -- is logged once
    with its class, marks the store not live (`synced` cleared, `failure` says why), waits a capped exponential
    backoff with jitter (kubeio.backoff) and re-lists. A watch that ends within a second having delivered
    nothing counts as a failure too (client-go's ``VeryShortWatchError``), so a server that accepts and drops
    watches is not hammered. The first successful list after a failure is logged as the recovery.
    """

    def __init__(self, client: KubeClient, path: str, handler: EventHandler, *, name: str = "",
                 page_size: int = 500, backoff: RetryBackoff | None = None, keep: Keep = whole,
                 clock: Clock | None = None, sleep: Sleep | None = None, on_live: Callable[[bool], None] | None = None,
                 watch_timeout: int = 300) -> None:
        self.client = client
        self.path = path
        self.handler = handler
        self.name = name or path
        self.store: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()  # set while the store is live: listed, and no failure since
        self.failure: str | None = None  # why the store is not live (set from a failure until the next list)
        self.failed_at: float | None = None  # monotonic time of the first failure of the current outage
        self.failures = 0  # failures since start, for tests and metrics
        self.relists = 0
        self._page_size = page_size
        self._backoff = backoff or RetryBackoff(base=0.8, cap=15.0)
        self._keep = keep
        self._clock: Clock = clock or SystemClock()
        self._sleep = sleep or _sleep_until_stopped
        self._on_live = on_live
        self._watch_timeout = watch_timeout
        self._streak = 0  # failures in a row, since the last successful list

    async def run(self, stop: asyncio.Event) -> None:
        """List, then watch, until `stop` is set (or the task is cancelled); never ends on an error."""
        while not stop.is_set():
            try:
                await self._list_and_watch(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure re-lists, for ever (client-go RunWithContext)
                if stop.is_set():
                    return
                self._failed(exc)
                await self._sleep(self._backoff.next(self._clock.monotonic()), stop)

    async def _list_and_watch(self, stop: asyncio.Event) -> None:
        """One list, then watches from its resourceVersion until `stop`; raises on any failure but 410 Gone."""
        rv, expired = await self._relist(), False
        while not stop.is_set():
            started = self._clock.monotonic()
            try:
                rv, events = await self._watch_once(rv, stop)
            except ApiError as exc:
                if not exc.gone or expired:  # expired again from a fresh list: back off rather than spin
                    raise
                log.info("%s: watch expired (%s); re-listing", self.name, exc.message or exc.reason)
                rv, expired = await self._relist(), True
                continue
            expired = False
            if stop.is_set():
                return
            if events == 0 and self._clock.monotonic() - started < _VERY_SHORT_WATCH:
                raise VeryShortWatch(f"the watch closed within {_VERY_SHORT_WATCH:.0f}s having delivered nothing")
            self._backoff.succeeded(started)  # "Watch closed": watch again from the last resourceVersion

    def _failed(self, exc: BaseException) -> None:
        """Log the failure once, with the scope and the error's class, and mark the store not live."""
        self.failures += 1
        self._streak += 1
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.failed_at is None:
            self.failed_at = self._clock.monotonic()
        self.failure = what
        if self.synced.is_set():
            self.synced.clear()
            if self._on_live is not None:
                self._on_live(False)
        # A known failure of the wire or the server needs no traceback; anything else (a handler's bug) does.
        log.warning("%s: list/watch of %s failed (%s; failure %d in a row); not live, re-listing after backoff",
                    self.name, self.path, what, self._streak, exc_info=not isinstance(exc, _EXPECTED))

    def _recovered(self, count: int) -> None:
        if self.failed_at is not None:
            log.warning("%s: re-listed %d objects after %d failure(s) over %.1fs (last: %s); live again",
                        self.name, count, self._streak, self._clock.monotonic() - self.failed_at, self.failure)
        self.failure, self.failed_at, self._streak = None, None, 0
        if not self.synced.is_set():
            self.synced.set()
            if self._on_live is not None:
                self._on_live(True)

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
        self._backoff.succeeded(self._clock.monotonic())
        # The store changes after the handler has taken the change: if the handler raises, the next list
        # replays the same change.
        for uid in [u for u in self.store if u not in items]:
            self.handler("DELETED", self.store[uid])
            del self.store[uid]
        for uid, obj in items.items():
            kind = "MODIFIED" if uid in self.store else "ADDED"
            self.handler(kind, obj)
            self.store[uid] = self._keep(obj)
        self._recovered(len(items))
        return rv

    async def _watch_once(self, rv: str, stop: asyncio.Event) -> tuple[str, int]:
        """Watch from `rv` until the server closes the stream or `stop`: the last resourceVersion seen and how many
        events came; any failure raises."""
        stream = self.client.watch(self.path, rv, self._watch_timeout)
        stopper = asyncio.ensure_future(stop.wait())
        nxt: asyncio.Future[dict[str, Any]] | None = None
        events = 0
        try:
            while True:
                nxt = asyncio.ensure_future(anext(stream))
                done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    return rv, events
                try:
                    event = nxt.result()
                except StopAsyncIteration:
                    return rv, events  # the server closed the stream: watch again from where we are
                events += 1
                kind, obj = event.get("type"), slim(event.get("object") or {})
                new_rv = str((obj.get("metadata") or {}).get("resourceVersion", rv))
                if kind == "BOOKMARK":
                    rv = new_rv
                    continue
                if self.apply(str(kind), obj):
                    rv = new_rv
        finally:
            # The generator may still be running its next step (stopped, cancelled): end that step before
            # closing it, or aclose() finds it running.
            pending = [f for f in (nxt, stopper) if f is not None and not f.done()]
            for f in pending:
                f.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await stream.aclose()  # type: ignore[attr-defined]

    def apply(self, kind: str, obj: dict[str, Any]) -> bool:
        """One watch event (ADDED, MODIFIED or DELETED; False for any other type): into the store, then the
        handler. Public so a benchmark can feed the store exactly as a watch does."""
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return False
        self.handler(kind, obj)
        uid = uid_of(obj)
        if kind == "DELETED":
            self.store.pop(uid, None)
        else:
            self.store[uid] = self._keep(obj)
        return True

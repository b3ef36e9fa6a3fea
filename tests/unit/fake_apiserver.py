"""A small real HTTP server on 127.0.0.1 that lists and watches one resource as kube-apiserver does, and fails on
request: each list or watch request takes the next scripted fault, if any (tests/unit/test_reflector_faults.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web
from kubernetes import client as k8s_client

from kubeio.client import KubeClient

PATH = "/api/v1/namespaces/ns/podtemplates"

# A fault answers one request in its own way; it gets the request and the server, and returns a response (or
# raises/aborts). None: serve the request normally.
Fault = Callable[[web.Request, "FakeApiserver"], Any]


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message}


def obj(name: str, rv: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": str(rv),
                         "managedFields": [{"manager": "kubectl"}]}}


class FakeApiserver:
    """Objects by name, a resourceVersion counter, open watch streams, and the faults still to play."""

    def __init__(self) -> None:
        self.rv = 10
        self.objects: dict[str, dict[str, Any]] = {}
        self.list_faults: list[Fault] = []
        self.watch_faults: list[Fault] = []
        self.lists = 0
        self.watches: list[str] = []  # the resourceVersion each watch asked for
        self.history: list[tuple[int, bytes]] = []  # every event, by resourceVersion, replayed to a later watch
        self._streams: list[asyncio.Queue[bytes | None]] = []
        self.port = 0
        self._changed = asyncio.Event()  # set on every request and every watch that opens
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # --- what the test changes -------------------------------------------------------------------------------
    def put(self, name: str) -> dict[str, Any]:
        """Create or update an object; open watches get the event."""
        self.rv += 1
        kind = "MODIFIED" if name in self.objects else "ADDED"
        self.objects[name] = obj(name, self.rv)
        self.send({"type": kind, "object": self.objects[name]})
        return self.objects[name]

    def remove_quietly(self, name: str) -> None:
        """Delete an object without telling any watch, as if it vanished while none was open."""
        self.rv += 1
        self.objects.pop(name, None)

    def send(self, event: dict[str, Any]) -> None:
        line = orjson.dumps(event) + b"\n"
        self.history.append((self.rv, line))
        for stream in self._streams:
            stream.put_nowait(line)

    @property
    def open_watches(self) -> int:
        return len(self._streams)

    async def until(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        """Wait (at most `within` seconds) until `condition` holds, looking after each request or opened watch."""
        async def wait() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(wait(), within)

    # --- the HTTP side ---------------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        watching = request.query.get("watch") == "1"
        faults = self.watch_faults if watching else self.list_faults
        self._changed.set()
        if watching:
            self.watches.append(request.query.get("resourceVersion", ""))
        else:
            self.lists += 1
        if faults:
            answer = faults.pop(0)(request, self)
            if asyncio.iscoroutine(answer):
                answer = await answer
            if answer is not None:
                return answer  # type: ignore[no-any-return]
        if not watching:
            return web.json_response({"kind": "List", "metadata": {"resourceVersion": str(self.rv)},
                                      "items": list(self.objects.values())})
        since = int(request.query.get("resourceVersion") or 0)
        return await self.stream(request, [line for rv, line in self.history if rv > since])

    async def stream(self, request: web.Request, first: list[bytes], *, cut: bool = False,
                     close: bool = False, close_after: int | None = None) -> web.StreamResponse:
        """A watch response: `first` lines, then live events until the test stops; `cut` aborts the connection
        after `first` (a stream cut mid-body), `close` ends the stream cleanly after them, `close_after` after
        that many live events."""
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for line in first:
            await resp.write(line)
        if cut:
            assert request.transport is not None
            request.transport.abort()
            return resp
        if close:
            await resp.write_eof()
            return resp
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._streams.append(queue)
        self._changed.set()
        try:
            while (line := await queue.get()) is not None:
                await resp.write(line)
                if close_after is not None:
                    close_after -= 1
                    if close_after == 0:
                        await resp.write_eof()
                        break
        except ConnectionError:
            pass  # the client went away
        finally:
            self._streams.remove(queue)
        return resp

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_get(PATH, self.handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", port or self.port, reuse_address=True)
        await self._site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        for stream in list(self._streams):
            stream.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def client_for(port: int, *, timeout: float = 5.0) -> KubeClient:
    cfg = k8s_client.Configuration()
    cfg.host = f"http://127.0.0.1:{port}"
    return KubeClient(cfg, timeout=timeout)


@asynccontextmanager
async def running(server: FakeApiserver | None = None) -> AsyncIterator[FakeApiserver]:
    server = server or FakeApiserver()
    await server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            await server.stop()

"""A Service with readiness, played on 127.0.0.1: one TCP address that forwards each connection to a backend whose
/readyz answers 200, polled as a kubelet's readiness probe is, so that the Endpoints list only the ready replicas.

For the extender (readiness = leading, with a synced cache) that is the leader alone; for the webhook every replica
with live watches, taken in turn per connection as kube-proxy spreads them. The stream is relayed as bytes (TLS passes
through: the webhook's replicas serve one certificate). A backend that refuses a connection is dropped from the ready
set at once, as its Endpoint is when its pod dies, and the next ready one is tried. With no ready backend a new
connection is closed at once (a Service without Endpoints). Established connections are left alone when their backend
turns not ready, as conntrack leaves them; a killed backend closes them itself.

Bounded: at most `max_connections` at once (more are closed at once), each closed after `idle_timeout` seconds
without a byte either way, readiness polls time out after a second, and the whole proxy stops with its context.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

__all__ = ["Backend", "ReadyProxy"]

_HOST = "127.0.0.1"
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Backend:
    """One replica: its name, its port on 127.0.0.1, and the TLS context to probe its /readyz with (None: HTTP)."""

    name: str
    port: int
    tls: ssl.SSLContext | None = None


class ReadyProxy:
    """`with ReadyProxy(backends) as proxy:` serves on 127.0.0.1:`proxy.port` until the block ends.

    `changes` records every change of the ready set as (time.monotonic(), names), the first entry being the first
    poll; `ready()` is the set now; `connections` counts what was forwarded to each backend."""

    def __init__(self, backends: Sequence[Backend], *, poll: float = 0.2, max_connections: int = 256,
                 idle_timeout: float = 120.0, probe_timeout: float = 1.0) -> None:
        self.backends = {b.name: b for b in backends}
        self.poll, self.max_connections = poll, max_connections
        self.idle_timeout, self.probe_timeout = idle_timeout, probe_timeout
        self.port = 0
        self.changes: list[tuple[float, frozenset[str]]] = []
        self.connections: dict[str, int] = dict.fromkeys(self.backends, 0)
        self.refused = 0  # connections closed at once: no ready backend, or over the bound
        self._ready: frozenset[str] = frozenset()
        self._turn = itertools.count()
        self._open = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="ready-proxy", daemon=True)

    # --- what the test reads ---------------------------------------------------------------------------------
    def ready(self) -> frozenset[str]:
        return self._ready

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{_HOST}:{self.port}"

    def first_ready_since(self, name: str, since: float) -> float | None:
        """The monotonic time `name` was first seen ready at or after `since` (None: not yet)."""
        return next((t for t, names in self.changes if t >= since and name in names), None)

    # --- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> ReadyProxy:
        self._thread.start()
        if not self._started.wait(10.0) or self._error is not None:
            raise RuntimeError(f"the ready proxy did not start: {self._error!r}")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10.0)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by __enter__ if it happens before the start
            self._error = exc
            self._started.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._handle, _HOST, 0, limit=_CHUNK)
        self.port = server.sockets[0].getsockname()[1]
        await self._probe_all()
        self._started.set()
        poller = asyncio.create_task(self._poll())
        try:
            await self._stop.wait()
        finally:
            poller.cancel()
            server.close()
            await asyncio.gather(poller, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5.0)

    # --- readiness -------------------------------------------------------------------------------------------
    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            await self._probe_all()

    async def _probe_all(self) -> None:
        answers = await asyncio.gather(*(self._probe(b) for b in self.backends.values()))
        self._set_ready(frozenset(b for b, ok in zip(self.backends, answers, strict=True) if ok))

    def _set_ready(self, ready: frozenset[str]) -> None:
        if ready != self._ready or not self.changes:
            self.changes.append((time.monotonic(), ready))
        self._ready = ready

    async def _probe(self, backend: Backend) -> bool:
        """GET /readyz: True only for a 200 within the probe timeout."""
        writer = None
        try:
            async with asyncio.timeout(self.probe_timeout):
                reader, writer = await asyncio.open_connection(_HOST, backend.port, ssl=backend.tls)
                writer.write(f"GET /readyz HTTP/1.1\r\nHost: {_HOST}:{backend.port}\r\nConnection: close\r\n\r\n"
                             .encode())
                await writer.drain()
                status = (await reader.readline()).split()
                return len(status) >= 2 and status[1] == b"200"
        except (OSError, TimeoutError, ssl.SSLError, ValueError):
            return False
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                    async with asyncio.timeout(self.probe_timeout):
                        await writer.wait_closed()

    # --- forwarding ------------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= self.max_connections:
            self.refused += 1
            writer.close()
            return
        self._open += 1
        try:
            upstream = await self._connect()
            if upstream is None:
                self.refused += 1
                return
            up_reader, up_writer = upstream
            try:
                await self._relay(reader, writer, up_reader, up_writer)
            finally:
                up_writer.close()
        finally:
            self._open -= 1
            writer.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the next ready backend in turn; one that refuses is dropped from the ready set."""
        ready = sorted(self._ready)
        start = next(self._turn)
        for i in range(len(ready)):
            name = ready[(start + i) % len(ready)]
            try:
                async with asyncio.timeout(self.probe_timeout):
                    upstream = await asyncio.open_connection(_HOST, self.backends[name].port, limit=_CHUNK)
            except (OSError, TimeoutError):
                self._set_ready(self._ready - {name})
                continue
            self.connections[name] += 1
            return upstream
        return None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        """Copy both ways until either side closes or nothing moves for the idle timeout."""
        moved = asyncio.Event()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(_CHUNK):
                    moved.set()
                    dst.write(data)
                    await dst.drain()

        pipes = [asyncio.create_task(pipe(reader, up_writer)), asyncio.create_task(pipe(up_reader, writer))]
        try:
            while True:
                moved.clear()
                done, _ = await asyncio.wait(pipes, timeout=self.idle_timeout, return_when=asyncio.FIRST_COMPLETED)
                if done or not moved.is_set():
                    return
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)

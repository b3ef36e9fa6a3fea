"""A Reflector re-lists and resumes after every failure the wire or the apiserver can produce (issue 24, item 0).

Each fault is played by a real HTTP server on 127.0.0.1 (tests/unit/fake_apiserver.py), not by a mock of the
client: the aiohttp client raises its own ServerDisconnectedError, ClientPayloadError, ClientConnectorError or
TimeoutError. The backoff's sleep is injected: it records what the reflector looked like while waiting and returns
at once, so every loop is bounded by the faults scripted and no test sleeps for real.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from kubeio.backoff import RetryBackoff
from kubeio.reflector import Reflector
from tests.unit.fake_apiserver import PATH, FakeApiserver, client_for, running, status

WAIT = 10.0  # a guard against hanging, never a sleep


@dataclass
class Pause:
    """One backoff wait: its length, whether the store was live then, and why not."""

    seconds: float
    live: bool
    failure: str | None


@dataclass
class Recorder:
    """The handler's events and the reflector's backoff waits; `on_pause` lets a test act during a wait."""

    events: list[tuple[str, str]] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)
    reflector: Reflector | None = None
    on_pause: Callable[[], Awaitable[None]] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def handle(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.append((kind, obj["metadata"]["name"]))
        self.changed.set()

    async def sleep(self, seconds: float, stop: asyncio.Event) -> None:
        assert self.reflector is not None
        self.pauses.append(Pause(seconds, self.reflector.synced.is_set(), self.reflector.failure))
        assert len(self.pauses) < 20, "the reflector is spinning: more backoffs than faults"
        if self.on_pause is not None:
            await self.on_pause()
        await asyncio.sleep(0)

    async def seen(self, event: tuple[str, str]) -> None:
        async def wait() -> None:
            while event not in self.events:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), WAIT)


def reflector(port: int, rec: Recorder, *, timeout: float = 5.0) -> Reflector:
    r = Reflector(client_for(port, timeout=timeout), PATH, rec.handle, name="podtemplates",
                  backoff=RetryBackoff(base=0.5, cap=4.0, jitter=0.5, rand=lambda: 1.0), sleep=rec.sleep)
    rec.reflector = r
    return r


async def stopped(r: Reflector, task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, WAIT)
    await r.client.close()


async def resumes(server: FakeApiserver, rec: Recorder, until: Callable[[], bool], **kw: Any) -> Reflector:
    """Run a reflector until it has listed `a`, the server shows `until`, and `b`, put then, has come through."""
    r = reflector(server.port, rec, **kw)
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop))
    await rec.seen(("ADDED", "a"))
    await server.until(until)
    server.put("b")
    await rec.seen(("ADDED", "b"))
    await stopped(r, task, stop)
    return r


# --- the faults, each as the server plays it --------------------------------------------------------------------


def disconnect(request: web.Request, _: FakeApiserver) -> web.Response:
    """Close the connection before any answer: what a stopping apiserver does to a waiting request. aiohttp
    retries an idempotent request once when a kept-alive connection was closed, so it takes two to fail."""
    assert request.transport is not None
    request.transport.abort()
    return web.Response()


async def cut_mid_body(request: web.Request, server: FakeApiserver) -> web.StreamResponse:
    """Start the watch's chunked body, send half an event, and drop the connection."""
    return await server.stream(request, [b'{"type": "MODIFIED", "obj'], cut=True)


def forbidden(_: web.Request, __: FakeApiserver) -> web.Response:
    """RBAC of a freshly started apiserver, before its authorizer has loaded the bindings."""
    body = status(403, "Forbidden", 'podtemplates is forbidden: User "rayqueue" cannot list resource "podtemplates"')
    return web.json_response(body, status=403)


async def hang(_: web.Request, __: FakeApiserver) -> web.Response:
    """Answer later than the client's timeout."""
    await asyncio.sleep(3)
    return web.json_response({})


async def gone(request: web.Request, server: FakeApiserver) -> web.StreamResponse:
    """The watch's resourceVersion was compacted away: an ERROR event with 410."""
    line = orjson.dumps({"type": "ERROR", "object": status(410, "Expired", "too old resource version: 11 (20)")})
    return await server.stream(request, [line + b"\n"])


async def malformed(request: web.Request, server: FakeApiserver) -> web.StreamResponse:
    """A line that is not JSON (a proxy's error page in the stream, say)."""
    return await server.stream(request, [b"<html>502 Bad Gateway</html>\n"])


@pytest.mark.asyncio
@pytest.mark.parametrize(("phase", "fault", "error"), [
    pytest.param("watch", [disconnect, disconnect], "ServerDisconnectedError",
                 id="a connection closed before the watch answers"),
    pytest.param("watch", [cut_mid_body], "ClientPayloadError", id="a watch stream cut mid-body"),
    pytest.param("list", [forbidden], "ApiError: GET", id="a 403 from a freshly started apiserver"),
    pytest.param("list", [hang], "TimeoutError", id="a list that times out"),
    pytest.param("watch", [malformed], "JSONDecodeError", id="a malformed line in the watch"),
])
async def test_a_reflector_relists_and_resumes_after(phase: str, fault: list[Any], error: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kubeio.reflector")
    rec = Recorder()
    async with running() as server:
        server.put("a")
        (server.list_faults if phase == "list" else server.watch_faults).extend(fault)
        r = await resumes(server, rec, lambda: True, timeout=1.0)

    assert len(rec.pauses) == 1, "one fault, one backoff"
    assert rec.pauses[0].seconds == pytest.approx(0.75), "the first backoff: base with its jitter"
    assert not rec.pauses[0].live, "between a failure and the next list the store is not live"
    assert rec.pauses[0].failure is not None and rec.pauses[0].failure.startswith(error), rec.pauses[0].failure
    assert server.lists == 2, "it lists again after the failure"
    assert r.relists == (2 if phase == "watch" else 1)
    assert {o["metadata"]["name"] for o in r.store.values()} == {"a", "b"}
    failures = [m for m in caplog.messages if "failed" in m]
    assert len(failures) == 1 and "podtemplates" in failures[0] and error.split(":")[0] in failures[0], failures
    if phase == "watch":
        assert [m for m in caplog.messages if "live again" in m], "the recovery is logged"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.asyncio
async def test_a_reflector_waits_out_an_apiserver_that_is_not_listening_yet() -> None:
    """ClientConnectorError (connection refused) until the server starts, during the reflector's second wait."""
    rec = Recorder()
    server = FakeApiserver()
    server.port = free_port()
    server.put("a")

    async def start_on_the_second_wait() -> None:
        if len(rec.pauses) == 2:
            await server.start()

    rec.on_pause = start_on_the_second_wait
    r = reflector(server.port, rec)
    stop = asyncio.Event()
    task = asyncio.create_task(r.run(stop))
    try:
        await rec.seen(("ADDED", "a"))
        server.put("b")
        await rec.seen(("ADDED", "b"))
        await stopped(r, task, stop)
    finally:
        await server.stop()
    assert [p.failure.split(":")[0] for p in rec.pauses if p.failure] == ["ClientConnectorError"] * 2
    assert [p.seconds for p in rec.pauses] == [0.75, 1.5], "the backoff doubles"


@pytest.mark.asyncio
async def test_410_gone_relists_at_once_without_a_backoff(caplog: pytest.LogCaptureFixture) -> None:
    """client-go's isExpiredError: re-list (the resourceVersion is too old), no failure, the store stays live."""
    caplog.set_level(logging.INFO, logger="kubeio.reflector")
    rec = Recorder()
    async with running() as server:
        server.put("a")
        server.watch_faults.append(gone)
        r = await resumes(server, rec, lambda: True)
    assert rec.pauses == [] and r.failures == 0
    assert server.lists == 2 and r.relists == 2
    assert rec.events.count(("ADDED", "a")) == 1 and ("MODIFIED", "a") in rec.events, "a re-list replays as MODIFIED"
    assert any("watch expired" in m for m in caplog.messages)


@pytest.mark.asyncio
async def test_410_again_from_a_fresh_list_backs_off_instead_of_spinning() -> None:
    rec = Recorder()
    async with running() as server:
        server.put("a")
        server.watch_faults += [gone, gone]
        await resumes(server, rec, lambda: len(server.watches) >= 3)  # the third watch, after both 410s
    assert len(rec.pauses) == 1 and (rec.pauses[0].failure or "").startswith("ApiError: WATCH")
    assert server.lists == 3


@pytest.mark.asyncio
async def test_a_watch_the_server_closes_is_opened_again_from_the_last_resource_version() -> None:
    """client-go "Watch closed": no re-list, no failure; the next watch starts where the last event left off."""
    rec = Recorder()

    async def one_event_then_close(request: web.Request, server: FakeApiserver) -> web.StreamResponse:
        return await server.stream(request, [], close_after=1)

    async with running() as server:
        server.put("a")
        server.watch_faults.append(one_event_then_close)
        r = reflector(server.port, rec)
        stop = asyncio.Event()
        task = asyncio.create_task(r.run(stop))
        await asyncio.wait_for(r.synced.wait(), WAIT)
        await server.until(lambda: server.open_watches > 0)
        server.put("b")  # delivered on the first watch, which then ends
        await rec.seen(("ADDED", "b"))
        server.put("c")
        await rec.seen(("ADDED", "c"))
        await stopped(r, task, stop)
    assert rec.pauses == [] and server.lists == 1
    assert server.watches[1] == server.objects["b"]["metadata"]["resourceVersion"]


@pytest.mark.asyncio
async def test_a_watch_closed_at_once_with_nothing_delivered_is_a_failure() -> None:
    """client-go's VeryShortWatchError: a server that accepts and drops every watch is retried with backoff."""
    rec = Recorder()

    async def close_at_once(request: web.Request, server: FakeApiserver) -> web.StreamResponse:
        return await server.stream(request, [], close=True)

    async with running() as server:
        server.put("a")
        server.watch_faults += [close_at_once, close_at_once]
        await resumes(server, rec, lambda: len(server.watches) >= 3)
    assert [p.seconds for p in rec.pauses] == [0.75, 1.5]
    assert all((p.failure or "").startswith("VeryShortWatch") for p in rec.pauses)


@pytest.mark.asyncio
async def test_an_apiserver_restart_is_survived_and_what_changed_meanwhile_is_replayed(
        caplog: pytest.LogCaptureFixture) -> None:
    """The reported failure: the watch is cut, the restarted apiserver answers 403 twice, then lists. What was
    deleted meanwhile comes as DELETED, what was added as ADDED, and the watch resumes."""
    caplog.set_level(logging.INFO, logger="kubeio.reflector")
    rec = Recorder()
    async with running() as server:
        server.put("a")
        server.put("gone-meanwhile")
        server.watch_faults += [disconnect, disconnect]
        server.list_faults += [lambda *_: None, forbidden, forbidden]  # the first list is fine
        r = reflector(server.port, rec)

        async def change_while_down() -> None:
            server.remove_quietly("gone-meanwhile")
            server.objects["new-meanwhile"] = {"metadata": {"name": "new-meanwhile", "uid": "uid-new",
                                                            "resourceVersion": str(server.rv)}}

        rec.on_pause = change_while_down
        stop = asyncio.Event()
        task = asyncio.create_task(r.run(stop))
        await rec.seen(("ADDED", "new-meanwhile"))
        server.put("after")
        await rec.seen(("ADDED", "after"))
        await stopped(r, task, stop)
    assert ("DELETED", "gone-meanwhile") in rec.events
    assert [p.seconds for p in rec.pauses] == [0.75, 1.5, 3.0]
    assert [p.failure.split(":")[0] for p in rec.pauses if p.failure] == ["ServerDisconnectedError", "ApiError",
                                                                          "ApiError"]
    assert r.synced.is_set() and r.failure is None
    assert len([m for m in caplog.messages if "failed" in m]) == 3
    (recovery,) = [m for m in caplog.messages if "live again" in m]
    assert "after 3 failure(s)" in recovery and "403 Forbidden" in recovery


@pytest.mark.asyncio
async def test_a_handler_that_raises_is_retried_with_its_traceback_logged(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    calls = 0

    def flaky(kind: str, obj: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        rec.handle(kind, obj)

    async with running() as server:
        server.put("a")
        r = reflector(server.port, rec)
        r.handler = flaky
        stop = asyncio.Event()
        task = asyncio.create_task(r.run(stop))
        await rec.seen(("ADDED", "a"))
        await stopped(r, task, stop)
    assert [(p.failure or "") for p in rec.pauses] == ["RuntimeError: a bug"]
    (record,) = [rec_ for rec_ in caplog.records if "failed" in rec_.getMessage()]
    assert record.exc_info is not None, "an unexpected error class is logged with its traceback"


@pytest.mark.asyncio
@pytest.mark.parametrize("where", ["watching", "backing off"])
async def test_cancelling_a_reflector_cancels_it(where: str) -> None:
    """CancelledError is never taken for a failure: the task ends cancelled, wherever it was."""
    rec = Recorder()
    parked = asyncio.Event()

    async def park() -> None:
        parked.set()
        await asyncio.sleep(WAIT * 2)

    async with running() as server:
        if where == "backing off":
            server.list_faults.append(forbidden)
            rec.on_pause = park
        r = reflector(server.port, rec)
        task = asyncio.create_task(r.run(asyncio.Event()))
        if where == "watching":
            await server.until(lambda: server.open_watches > 0)
        else:
            await asyncio.wait_for(parked.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)
        await r.client.close()
    assert task.cancelled()


@pytest.mark.parametrize(("failures", "expected"), [
    pytest.param(1, [0.8], id="the first failure waits the base"),
    pytest.param(4, [0.8, 1.6, 3.2, 6.4], id="each failure doubles the wait"),
    pytest.param(8, [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0], id="the wait stops at the cap"),
])
def test_backoff_doubles_up_to_its_cap(failures: int, expected: list[float]) -> None:
    backoff = RetryBackoff(base=0.8, cap=30.0, jitter=0.0)
    assert [round(backoff.next(float(i)), 6) for i in range(failures)] == expected


def test_backoff_jitter_stays_within_its_bound() -> None:
    draws = iter([0.0, 0.5, 0.999])
    backoff = RetryBackoff(base=1.0, cap=2.0, jitter=1.0, rand=lambda: next(draws))
    assert [backoff.next(0.0) for _ in range(3)] == [1.0, 3.0, pytest.approx(3.998)]
    assert backoff.bound == 4.0


def test_backoff_starts_over_after_a_healthy_spell() -> None:
    backoff = RetryBackoff(base=1.0, cap=8.0, jitter=0.0, reset_after=120.0)
    assert [backoff.next(t) for t in (0.0, 1.0, 2.0)] == [1.0, 2.0, 4.0]
    backoff.succeeded(10.0)
    assert backoff.next(60.0) == 8.0, "healthy for less than reset_after: the wait keeps growing"
    backoff.succeeded(100.0)
    assert backoff.next(220.0) == 1.0, "healthy for reset_after: the wait starts over"


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="base <= cap"):
        RetryBackoff(base=5.0, cap=1.0)

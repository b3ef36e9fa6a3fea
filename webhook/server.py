"""The webhook's HTTP shell (aiohttp): AdmissionReview envelope in and out, health, metrics, graceful serving."""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.log import access_logger
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from common.clock import Clock, SystemClock

__all__ = [
    "ADMISSION_API_VERSION",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "Handler",
    "RunningServer",
    "build_app",
    "serve",
    "start",
]

log = logging.getLogger(__name__)

ADMISSION_API_VERSION: Final = "admission.k8s.io/v1"
ADMISSION_KIND: Final = "AdmissionReview"
DEFAULT_MAX_BODY_BYTES: Final = 3 * 1024 * 1024  # the apiserver's own request limit is 3 MiB
DEFAULT_SHUTDOWN_TIMEOUT: Final = 10.0
RESERVED_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
_TEXT: Final = "text/plain"

# A handler gets `request` of the AdmissionReview and returns its `response` (uid is filled in for it).
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


class _Metrics:
    """The webhook's metrics. The labelled children are looked up once per label values and remembered
    (prometheus_client's labels() takes a lock and builds a key on every call)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "rayqueue_webhook_requests",
            "Admission requests answered, by path, object kind, operation and result "
            "(allowed, denied, error, or the HTTP refusal: bad_request, too_large, "
            "unsupported_media_type, method_not_allowed).",
            ["path", "kind", "operation", "result"],
            registry=registry,
        )
        self.latency = Histogram(
            "rayqueue_webhook_request_duration_seconds",
            "Time from request to answer on an admission path, body read included.",
            ["path"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self._counts: dict[tuple[str, str, str, str], Any] = {}
        self._latencies: dict[str, Any] = {}

    def count(self, path: str, kind: str, operation: str, result: str) -> None:
        key = (path, kind, operation, result)
        child = self._counts.get(key)
        if child is None:
            child = self._counts[key] = self.requests.labels(*key)
        child.inc()

    def observe(self, path: str, seconds: float) -> None:
        child = self._latencies.get(path)
        if child is None:
            child = self._latencies[path] = self.latency.labels(path)
        child.observe(seconds)


@dataclass(frozen=True)
class _Refusal:
    """An HTTP-level refusal: the body cannot be answered as an AdmissionReview."""

    status: int
    result: str
    message: str
    headers: Mapping[str, str] | None = None


def _refusal_response(r: _Refusal) -> web.Response:
    return web.Response(
        status=r.status, text=f"rayqueue webhook: {r.message}\n", content_type=_TEXT, headers=r.headers
    )


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _envelope_problems(review: Any) -> list[str]:
    """Everything wrong with the AdmissionReview envelope, each naming the field and what it held."""
    if not isinstance(review, dict):
        return [f"the body is {_type_name(review)}, expected an AdmissionReview object"]
    problems: list[str] = []
    if review.get("apiVersion") != ADMISSION_API_VERSION:
        problems.append(f"apiVersion is {review.get('apiVersion')!r}, expected {ADMISSION_API_VERSION!r}")
    if review.get("kind") != ADMISSION_KIND:
        problems.append(f"kind is {review.get('kind')!r}, expected {ADMISSION_KIND!r}")
    request = review.get("request")
    if request is None:
        problems.append("request is missing")
    elif not isinstance(request, dict):
        problems.append(f"request is {_type_name(request)}, expected an object")
    else:
        uid = request.get("uid")
        if uid is None:
            problems.append("request.uid is missing")
        elif not isinstance(uid, str) or not uid:
            problems.append(f"request.uid is {uid!r}, expected a non-empty string")
    return problems


def _labels(request: Any) -> tuple[str, str]:
    """(kind, operation) for metrics, from whatever the request holds; empty when unknown."""
    if not isinstance(request, dict):
        return "", ""
    kind = request.get("kind")
    kind_name = kind.get("kind") if isinstance(kind, dict) else None
    operation = request.get("operation")
    return (
        kind_name if isinstance(kind_name, str) else "",
        operation if isinstance(operation, str) else "",
    )


class _AdmissionEndpoint:
    """One admission path: checks the HTTP request and the envelope, calls the handler, wraps the answer."""

    def __init__(
        self, path: str, handler: Handler, metrics: _Metrics, clock: Clock, max_body_bytes: int
    ) -> None:
        self.path = path
        self.handler = handler
        self.metrics = metrics
        self.clock = clock
        self.max_body_bytes = max_body_bytes

    async def handle(self, http: web.Request) -> web.StreamResponse:
        started = self.clock.monotonic()
        kind = operation = ""
        result = "error"
        try:
            outcome = await self._read(http)
            if isinstance(outcome, _Refusal):
                result = outcome.result
                return _refusal_response(outcome)
            request = outcome["request"]
            kind, operation = _labels(request)
            response, failed = await self._answer(request)
            body = self._render(response)
            if body is None:
                log.error(
                    "the %s handler's answer on uid %s is not JSON-serialisable", self.path, request["uid"]
                )
                failed = True
                body = self._render(self._error(request["uid"], "returned a response that is not JSON"))
                assert body is not None
            result = "error" if failed else "allowed" if response["allowed"] else "denied"
            return web.Response(body=body, content_type="application/json")
        finally:
            self.metrics.count(self.path, kind, operation, result)
            self.metrics.observe(self.path, max(0.0, self.clock.monotonic() - started))

    async def _read(self, http: web.Request) -> dict[str, Any] | _Refusal:
        if http.method != "POST":
            return _Refusal(
                405,
                "method_not_allowed",
                f"method {http.method} is not allowed on {self.path}: AdmissionReviews are POSTed",
                {"Allow": "POST"},
            )
        if http.content_type != "application/json":
            return _Refusal(
                415,
                "unsupported_media_type",
                f"Content-Type {http.headers.get('Content-Type', '(none)')!r} is not supported on "
                f"{self.path}: send application/json",
            )
        size = http.content_length
        if size is not None and size > self.max_body_bytes:
            return self._too_large(size)
        try:
            body = await http.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(None)
        if not body.strip():
            return _Refusal(400, "bad_request", "the request body is empty: expected an AdmissionReview")
        try:
            review = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _Refusal(400, "bad_request", f"the request body is not JSON: {exc}")
        problems = _envelope_problems(review)
        if problems:
            return _Refusal(
                400, "bad_request", "not an AdmissionReview we can answer: " + "; ".join(problems)
            )
        assert isinstance(review, dict)
        return review

    def _too_large(self, size: int | None) -> _Refusal:
        got = f" {size} bytes," if size is not None else ""
        return _Refusal(
            413, "too_large", f"the request body is{got} over the limit of {self.max_body_bytes} bytes"
        )

    def _error(self, uid: str, what: str) -> dict[str, Any]:
        return {
            "uid": uid,
            "allowed": False,
            "status": {
                "status": "Failure",
                "code": 500,
                "reason": "InternalError",
                "message": f"rayqueue webhook: the {self.path} handler {what}; the request is refused "
                f"(uid {uid}, details in the webhook log)",
            },
        }

    async def _answer(self, request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(response, whether the handler failed); a failure becomes allowed=false, code 500."""
        uid: str = request["uid"]
        try:
            returned = self.handler(request)
            # typed as dict, but a handler is someone else's code: check what it really gave back
            result: object = (await returned) if inspect.isawaitable(returned) else returned
        except Exception as exc:
            log.exception("the %s handler raised on uid %s", self.path, uid)
            return self._error(uid, f"failed with {type(exc).__name__}"), True
        if not isinstance(result, Mapping):
            log.error("the %s handler returned %s on uid %s", self.path, _type_name(result), uid)
            return self._error(uid, f"returned {_type_name(result)} instead of a response object"), True
        if not isinstance(result.get("allowed"), bool):
            log.error("the %s handler returned allowed=%r on uid %s", self.path, result.get("allowed"), uid)
            return self._error(uid, "returned a response without a boolean 'allowed'"), True
        return {**result, "uid": uid}, False

    def _render(self, response: dict[str, Any]) -> bytes | None:
        try:
            return orjson.dumps(
                {"apiVersion": ADMISSION_API_VERSION, "kind": ADMISSION_KIND, "response": response}
            )
        except TypeError:
            return None


def build_app(
    handlers: Mapping[str, Handler],
    *,
    readiness: Callable[[], bool],
    metrics_registry: CollectorRegistry,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    clock: Clock | None = None,
    why_not_ready: Callable[[], str] | None = None,
) -> web.Application:
    """An aiohttp app serving each handler at its path, plus /healthz, /readyz and /metrics.

    Each admission path takes a POSTed AdmissionReview (application/json, at most `max_body_bytes`)
    and answers an AdmissionReview whose response is the handler's, with `uid` set from the request.
    Malformed HTTP or envelope: 405/415/413/400 with a text message. A handler that raises or
    returns garbage: an answer with allowed=false and status code 500 naming the failure (never an
    HTTP 500). The metrics are registered in `metrics_registry` (one app per registry). `/readyz` answers 503
    with `why_not_ready()` (when given) while `readiness()` is false.
    """
    bad = sorted(p for p in handlers if not p.startswith("/") or p in RESERVED_PATHS)
    if bad:
        raise ValueError(
            f"handler paths must start with '/' and not be one of {sorted(RESERVED_PATHS)}: {bad}"
        )
    if max_body_bytes <= 0:
        raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes}")
    clock = clock or SystemClock()
    metrics = _Metrics(metrics_registry)
    # aiohttp refuses a body over client_max_size with 413 itself; the endpoint turns that into our message.
    app = web.Application(client_max_size=max_body_bytes)
    for path, handler in sorted(handlers.items()):
        app.router.add_route(
            "*", path, _AdmissionEndpoint(path, handler, metrics, clock, max_body_bytes).handle
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n", content_type=_TEXT)

    async def readyz(_: web.Request) -> web.Response:
        try:
            ready = readiness()
        except Exception as exc:
            log.exception("the readiness check raised")
            return web.Response(status=503, text=f"not ready: readiness check raised {type(exc).__name__}\n")
        if ready:
            return web.Response(text="ready\n", content_type=_TEXT)
        why = f": {why_not_ready()}" if why_not_ready is not None else ""
        return web.Response(status=503, text=f"not ready{why}\n", content_type=_TEXT)

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics_registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app


@dataclass(frozen=True)
class RunningServer:
    """A started server: where it listens, and how to stop it gracefully."""

    runner: web.AppRunner
    addresses: tuple[tuple[str, int], ...]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening, close idle keep-alive connections, let in-flight requests finish (up to the timeout)."""
        await self.runner.cleanup()


async def start(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    access_log: bool = False,
) -> RunningServer:
    """Listen on host:port (port 0 picks a free one) with TLS when `ssl_context` is given.

    No access log by default: a line per admission request costs about a third of a bare request's CPU
    and says what the request metrics already count (denials, audits and failures have their own lines).
    `access_log=True` writes aiohttp's line per request to the `aiohttp.access` logger at INFO.
    """
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout,
                           access_log=access_logger if access_log else None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = tuple((str(a[0]), int(a[1])) for a in runner.addresses)
    log.info("webhook listening on %s (%s)", addresses, "TLS" if ssl_context else "plain HTTP")
    return RunningServer(runner, addresses)


async def serve(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    stop_event: asyncio.Event,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    on_started: Callable[[RunningServer], None] | None = None,
    access_log: bool = False,
) -> None:
    """Serve until `stop_event` is set, then shut down gracefully and return (access log: see start)."""
    server = await start(app, host, port, ssl_context, shutdown_timeout=shutdown_timeout, access_log=access_log)
    try:
        if on_started is not None:
            on_started(server)
        await stop_event.wait()
        log.info(
            "webhook stopping: closing idle connections, waiting up to %ss for requests", shutdown_timeout
        )
    finally:
        await server.stop()

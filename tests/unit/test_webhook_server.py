"""The webhook's HTTP shell: envelope checks, handler failures, probes, metrics, real TLS, cert reload, shutdown."""

from __future__ import annotations

import asyncio
import io
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from prometheus_client import CollectorRegistry

from certs.__main__ import main as certs_main
from common.clock import FakeClock
from webhook.server import DEFAULT_MAX_BODY_BYTES, RunningServer, build_app, serve, start
from webhook.tls import CertLoadError, CertReloader, new_server_context, server_context

JSON = {"Content-Type": "application/json"}
WAIT = 10.0  # a guard against hanging, never a sleep


# --- builders -----------------------------------------------------------------------------------


def review(
    uid: Any = "7f0b2b6e-uid", *, kind: str = "RayJob", operation: str = "CREATE", **top: Any
) -> dict[str, Any]:
    """An AdmissionReview as the apiserver sends it; `top` overrides top-level fields (None removes one)."""
    body: dict[str, Any] = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "ray.io", "version": "v1", "kind": kind},
            "operation": operation,
            "namespace": "video",
            "object": {"metadata": {"name": "j"}},
        },
    }
    for key, value in top.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    return body


def allow_all(request: dict[str, Any]) -> dict[str, Any]:
    return {"allowed": True}


async def deny_async(request: dict[str, Any]) -> dict[str, Any]:
    return {"allowed": False, "status": {"code": 403, "message": f"no {request['kind']['kind']}"}}


def explode(request: dict[str, Any]) -> dict[str, Any]:
    raise ZeroDivisionError("boom")


class Probe:
    """A readiness flag a test can flip."""

    def __init__(self) -> None:
        self.ready = False

    def __call__(self) -> bool:
        return self.ready


def make_app(
    handlers: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
    *,
    readiness: Callable[[], bool] = lambda: True,
    **kw: Any,
) -> tuple[web.Application, CollectorRegistry]:
    registry = CollectorRegistry()
    handlers = (
        handlers
        if handlers is not None
        else {"/validate": allow_all, "/mutate": deny_async, "/boom": explode}
    )
    return build_app(
        handlers, readiness=readiness, metrics_registry=registry, clock=FakeClock(), **kw
    ), registry


@asynccontextmanager
async def client_for(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def count(
    registry: CollectorRegistry, path: str, result: str, kind: str = "RayJob", operation: str = "CREATE"
) -> float:
    labels = {"path": path, "kind": kind, "operation": operation, "result": result}
    return registry.get_sample_value("rayqueue_webhook_requests_total", labels) or 0.0


# --- bad input ----------------------------------------------------------------------------------

V1BETA1 = "admission.k8s.io/v1beta1"


@pytest.mark.parametrize(
    ("method", "body", "headers", "status", "message"),
    [
        pytest.param(
            "POST",
            b"{not json",
            JSON,
            400,
            "the request body is not JSON: ",
            id="a body that is not JSON is a 400",
        ),
        pytest.param("POST", b"", JSON, 400, "the request body is empty", id="an empty body is a 400"),
        pytest.param(
            "POST",
            orjson.dumps(review(apiVersion=V1BETA1)),
            JSON,
            400,
            "apiVersion is 'admission.k8s.io/v1beta1', expected 'admission.k8s.io/v1'",
            id="an apiVersion other than admission.k8s.io/v1 is a 400",
        ),
        pytest.param(
            "POST",
            orjson.dumps(review(kind="Pod") | {"kind": "ConversionReview"}),
            JSON,
            400,
            "kind is 'ConversionReview', expected 'AdmissionReview'",
            id="a kind other than AdmissionReview is a 400",
        ),
        pytest.param(
            "POST",
            orjson.dumps(review(request=None)),
            JSON,
            400,
            "request is missing",
            id="a missing request is a 400",
        ),
        pytest.param(
            "POST",
            orjson.dumps(review(request=[1])),
            JSON,
            400,
            "request is an array, expected an object",
            id="a request that is not a mapping is a 400",
        ),
        pytest.param(
            "POST",
            orjson.dumps({**review(), "request": {"operation": "CREATE"}}),
            JSON,
            400,
            "request.uid is missing",
            id="a request without uid is a 400",
        ),
        pytest.param(
            "POST",
            orjson.dumps(review(uid="")),
            JSON,
            400,
            "request.uid is '', expected a non-empty string",
            id="an empty uid is a 400",
        ),
        pytest.param(
            "POST",
            orjson.dumps(review(uid=42)),
            JSON,
            400,
            "request.uid is 42, expected a non-empty string",
            id="a uid that is not a string is a 400",
        ),
        pytest.param(
            "POST",
            b"[1, 2]",
            JSON,
            400,
            "the body is an array, expected an AdmissionReview object",
            id="a JSON array is a 400",
        ),
        pytest.param(
            "POST",
            orjson.dumps({"apiVersion": V1BETA1, "request": {"uid": ""}}),
            JSON,
            400,
            "apiVersion is 'admission.k8s.io/v1beta1', expected 'admission.k8s.io/v1'; kind is None, "
            "expected 'AdmissionReview'; request.uid is '', expected a non-empty string",
            id="every envelope problem is named at once",
        ),
        pytest.param(
            "POST",
            b"x" * (DEFAULT_MAX_BODY_BYTES + 1),
            JSON,
            413,
            f"the request body is {DEFAULT_MAX_BODY_BYTES + 1} bytes, over the limit of 3145728 bytes",
            id="a body over the default 3 MiB limit is a 413",
        ),
        pytest.param(
            "GET",
            None,
            {},
            405,
            "method GET is not allowed on /validate: AdmissionReviews are POSTed",
            id="GET is a 405",
        ),
        pytest.param(
            "POST",
            orjson.dumps(review()),
            {"Content-Type": "text/plain"},
            415,
            "Content-Type 'text/plain' is not supported on /validate: send application/json",
            id="a Content-Type other than JSON is a 415",
        ),
        pytest.param(
            "POST",
            orjson.dumps(review()),
            {"Content-Type": ""},
            415,
            "is not supported on /validate: send application/json",
            id="a missing Content-Type is a 415",
        ),
    ],
)
@pytest.mark.asyncio
async def test_bad_input_is_an_http_error_with_a_message(
    method: str, body: bytes | None, headers: dict[str, str], status: int, message: str
) -> None:
    app, registry = make_app()
    async with client_for(app) as client:
        data = io.BytesIO(body) if body and len(body) > 2**20 else body  # aiohttp wants big bodies as files
        resp = await client.request(method, "/validate", data=data, headers=headers)
        text = await resp.text()
        assert resp.status == status, text
        assert text.startswith("rayqueue webhook: ")
        assert message in text
        if status == 405:
            assert resp.headers["Allow"] == "POST"
        # the server still answers a good review on the same app
        ok = await client.post("/validate", data=orjson.dumps(review()), headers=JSON)
        assert ok.status == 200
    refusals = sum(
        count(registry, "/validate", r, kind, op)
        for r in ("bad_request", "too_large", "unsupported_media_type", "method_not_allowed")
        for kind, op in (("", ""), ("RayJob", "CREATE"))
    )
    assert refusals == 1


@pytest.mark.asyncio
async def test_a_chunked_body_over_the_limit_is_a_413() -> None:
    """Without a Content-Length the limit is enforced while reading (aiohttp's client_max_size)."""
    app, registry = make_app(max_body_bytes=1024)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 512

    async with client_for(app) as client:
        resp = await client.post("/validate", data=chunks(), headers=JSON)
        assert resp.status == 413
        assert "over the limit of 1024 bytes" in await resp.text()
    assert count(registry, "/validate", "too_large", "", "") == 1


@pytest.mark.asyncio
async def test_a_body_at_the_limit_is_read() -> None:
    body = orjson.dumps(review())
    app, _ = make_app(max_body_bytes=len(body))
    async with client_for(app) as client:
        resp = await client.post("/validate", data=body, headers=JSON)
        assert resp.status == 200


def test_build_app_refuses_paths_it_cannot_serve() -> None:
    with pytest.raises(ValueError, match=r"\['/healthz', 'validate'\]"):
        make_app({"/healthz": allow_all, "validate": allow_all, "/ok": allow_all})


# --- answering ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "allowed", "status"),
    [
        pytest.param("/validate", True, None, id="a sync handler's answer is wrapped and its uid set"),
        pytest.param(
            "/mutate", False, {"code": 403, "message": "no RayJob"}, id="an async handler's denial is wrapped"
        ),
    ],
)
@pytest.mark.asyncio
async def test_the_answer_is_an_admission_review_with_the_request_uid(
    path: str, allowed: bool, status: dict[str, Any] | None
) -> None:
    def wrong_uid(request: dict[str, Any]) -> dict[str, Any]:
        return {"allowed": True, "uid": "not-the-request-uid"}

    app, _ = make_app({"/validate": wrong_uid, "/mutate": deny_async})
    async with client_for(app) as client:
        resp = await client.post(path, data=orjson.dumps(review("uid-1")), headers=JSON)
        assert resp.status == 200
        assert resp.content_type == "application/json"
        answer = orjson.loads(await resp.read())
    want: dict[str, Any] = {"uid": "uid-1", "allowed": allowed}
    if status:
        want["status"] = status
    assert answer == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": want}


@pytest.mark.asyncio
async def test_the_handler_gets_the_parsed_request() -> None:
    seen: list[dict[str, Any]] = []

    def record(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        return {"allowed": True}

    app, _ = make_app({"/validate": record})
    async with client_for(app) as client:
        await client.post("/validate", data=orjson.dumps(review("u-9")), headers=JSON)
    assert seen == [review("u-9")["request"]]


def returns(value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda request: value


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        pytest.param(
            explode,
            "the /validate handler failed with ZeroDivisionError",
            id="a handler that raises is answered allowed false with code 500",
        ),
        pytest.param(
            returns([1]),
            "the /validate handler returned an array instead of a response object",
            id="a handler that returns a non-mapping is an error",
        ),
        pytest.param(
            returns({"patch": "x"}),
            "returned a response without a boolean 'allowed'",
            id="a handler that forgets allowed is an error",
        ),
        pytest.param(
            returns({"allowed": True, "x": object()}),
            "returned a response that is not JSON",
            id="a handler whose answer is not JSON is an error",
        ),
    ],
)
@pytest.mark.asyncio
async def test_a_failing_handler_is_a_refusal_not_a_crash(
    handler: Callable[[dict[str, Any]], Any], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    app, registry = make_app({"/validate": handler, "/mutate": allow_all})
    with caplog.at_level(logging.ERROR, logger="webhook.server"):
        async with client_for(app) as client:
            resp = await client.post("/validate", data=orjson.dumps(review("u-1")), headers=JSON)
            assert resp.status == 200, "never an HTTP 500"
            answer = orjson.loads(await resp.read())["response"]
            after = await client.post("/mutate", data=orjson.dumps(review("u-2")), headers=JSON)
            assert (await after.json())["response"] == {"uid": "u-2", "allowed": True}, (
                "the server still serves"
            )
    assert answer["uid"] == "u-1"
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 500
    assert message in answer["status"]["message"]
    assert any("u-1" in r.getMessage() for r in caplog.records)
    assert count(registry, "/validate", "error") == 1
    assert count(registry, "/mutate", "allowed") == 1


@pytest.mark.asyncio
async def test_a_handler_exception_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = make_app()
    with caplog.at_level(logging.ERROR, logger="webhook.server"):
        async with client_for(app) as client:
            await client.post("/boom", data=orjson.dumps(review()), headers=JSON)
    (record,) = [r for r in caplog.records if r.name == "webhook.server"]
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


# --- probes and metrics -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_healthz_is_always_ok_and_readyz_follows_readiness() -> None:
    probe = Probe()
    app, _ = make_app(readiness=probe)
    async with client_for(app) as client:
        assert (await client.get("/healthz")).status == 200
        resp = await client.get("/readyz")
        assert (resp.status, await resp.text()) == (503, "not ready\n")
        probe.ready = True
        assert (await client.get("/readyz")).status == 200
        assert (await client.get("/healthz")).status == 200
        probe.ready = False
        assert (await client.get("/readyz")).status == 503


@pytest.mark.asyncio
async def test_readyz_is_503_when_the_readiness_check_raises() -> None:
    def broken() -> bool:
        raise RuntimeError("no cache")

    app, _ = make_app(readiness=broken)
    async with client_for(app) as client:
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert "RuntimeError" in await resp.text()


@pytest.mark.asyncio
async def test_metrics_count_requests_by_path_kind_operation_and_result() -> None:
    app, registry = make_app()
    async with client_for(app) as client:
        for _ in range(2):
            await client.post("/validate", data=orjson.dumps(review()), headers=JSON)
        await client.post("/mutate", data=orjson.dumps(review(kind="Pod", operation="UPDATE")), headers=JSON)
        await client.post("/boom", data=orjson.dumps(review()), headers=JSON)
        await client.post("/validate", data=b"nope", headers=JSON)
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert count(registry, "/validate", "allowed") == 2
    assert count(registry, "/mutate", "denied", "Pod", "UPDATE") == 1
    assert count(registry, "/boom", "error") == 1
    assert count(registry, "/validate", "bad_request", "", "") == 1
    assert (
        'rayqueue_webhook_requests_total{kind="Pod",operation="UPDATE",path="/mutate",result="denied"} 1.0'
        in text
    )
    assert 'rayqueue_webhook_request_duration_seconds_count{path="/validate"} 3.0' in text
    assert (
        registry.get_sample_value("rayqueue_webhook_request_duration_seconds_count", {"path": "/boom"}) == 1
    )


# --- real TLS -----------------------------------------------------------------------------------


class Certs:
    """A trustme CA and cert files on disk, replaceable like a mounted Secret."""

    def __init__(self, tmp_path: Path) -> None:
        self.ca = trustme.CA()
        self.cert_file = tmp_path / "tls.crt"
        self.key_file = tmp_path / "tls.key"

    def issue(self) -> trustme.LeafCert:
        return self.ca.issue_cert("127.0.0.1", "rayqueue-webhook.rayqueue.svc")

    def write(self, leaf: trustme.LeafCert, *, key_of: trustme.LeafCert | None = None) -> int:
        self.cert_file.write_bytes(leaf.cert_chain_pems[0].bytes())
        self.key_file.write_bytes((key_of or leaf).private_key_pem.bytes())
        return serial_of(leaf)

    def client_context(self, **versions: ssl.TLSVersion) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        for attr, value in versions.items():
            setattr(ctx, attr, value)
        return ctx


def serial_of(leaf: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


@asynccontextmanager
async def tls_server(
    certs: Certs, clock: FakeClock, *, interval: float = 5.0, app: web.Application | None = None
) -> AsyncIterator[tuple[RunningServer, CertReloader]]:
    ctx = server_context(certs.cert_file, certs.key_file)
    reloader = CertReloader(ctx, certs.cert_file, certs.key_file, clock=clock, interval=interval)
    reloader.install()
    server = await start(app or make_app()[0], "127.0.0.1", 0, ctx, shutdown_timeout=5)
    try:
        yield server, reloader
    finally:
        await server.stop()


async def handshake(port: int, client: ssl.SSLContext) -> tuple[int, str]:
    """(serial of the server's certificate, TLS version) from a fresh connection."""
    _reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="127.0.0.1"), WAIT
    )
    sslobj = writer.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True)
    version = sslobj.version()
    writer.close()
    await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number, version


@pytest.mark.asyncio
async def test_tls_server_answers_reviews_over_tls_1_2_and_1_3(certs: Certs) -> None:
    first = certs.write(certs.issue())
    async with tls_server(certs, FakeClock()) as (server, _):
        for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            client = certs.client_context(minimum_version=version, maximum_version=version)
            assert await handshake(server.port, client) == (first, name)
            async with ClientSession() as session:
                url = f"https://127.0.0.1:{server.port}/validate"
                async with session.post(
                    url, data=orjson.dumps(review("tls")), headers=JSON, ssl=client
                ) as resp:
                    assert (await resp.json())["response"] == {"uid": "tls", "allowed": True}


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
@pytest.mark.asyncio
async def test_a_certificate_made_by_rayqueue_certs_is_served_and_verifies_for_the_service_name(
    tmp_path: Path, key_type: str
) -> None:
    out = tmp_path / "certs"
    argv = ["init", "--service", "rayqueue-webhook", "--namespace", "rayqueue", "--out", str(out)]
    assert certs_main([*argv, "--ip", "127.0.0.1", "--key-type", key_type]) == 0
    ctx = server_context(out / "tls.crt", out / "tls.key")
    client = ssl.create_default_context(cafile=str(out / "ca-bundle.crt"))
    server = await start(make_app()[0], "127.0.0.1", 0, ctx)
    try:
        for name in ("rayqueue-webhook.rayqueue.svc", "127.0.0.1"):
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", server.port, ssl=client, server_hostname=name), WAIT
            )
            assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
            writer.close()
            await writer.wait_closed()
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            await asyncio.open_connection("127.0.0.1", server.port, ssl=client, server_hostname="other.svc")
    finally:
        await server.stop()


def tls11_client(certs: Certs) -> ssl.SSLContext:
    with pytest.warns(DeprecationWarning):
        ctx = certs.client_context(
            minimum_version=ssl.TLSVersion.TLSv1_1, maximum_version=ssl.TLSVersion.TLSv1_1
        )
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


@pytest.mark.asyncio
async def test_tls_server_refuses_tls_1_1(certs: Certs) -> None:
    certs.write(certs.issue())
    client = tls11_client(certs)
    async with tls_server(certs, FakeClock()) as (server, _):
        # the server's protocol_version alert, or a reset when it hangs up before the client reads the alert
        with pytest.raises((ssl.SSLError, ConnectionResetError)) as refused:
            await handshake(server.port, client)
        if isinstance(refused.value, ssl.SSLError):
            assert "PROTOCOL" in str(refused.value)
        # the same server still speaks TLS 1.2
        assert (await handshake(server.port, certs.client_context()))[1] in ("TLSv1.2", "TLSv1.3")


@pytest.mark.asyncio
async def test_the_tls_1_1_client_is_able_to_talk_tls_1_1(certs: Certs) -> None:
    """Control for the refusal above: the same client succeeds against a server that allows TLS 1.1."""
    certs.write(certs.issue())
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.warns(DeprecationWarning):
        permissive.minimum_version = ssl.TLSVersion.TLSv1_1
    permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    permissive.load_cert_chain(certs.cert_file, certs.key_file)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=permissive)
    async with server:
        port = server.sockets[0].getsockname()[1]
        _, version = await handshake(port, tls11_client(certs))
    assert version == "TLSv1.1"


# --- certificate reload -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_renewed_certificate_is_served_without_a_restart(certs: Certs) -> None:
    clock = FakeClock()
    old = certs.write(certs.issue())
    client = certs.client_context()
    async with tls_server(certs, clock, interval=5) as (server, reloader):
        assert (await handshake(server.port, client))[0] == old
        new = certs.write(certs.issue())
        assert (await handshake(server.port, client))[0] == old, "not looked at before the interval passed"
        clock.advance(5)
        # the handshake that notices the change still gets the pair it started with ...
        assert (await handshake(server.port, client))[0] == old
        assert reloader.serial == new
        # ... and every later one the new pair
        assert (await handshake(server.port, client))[0] == new
        assert (await handshake(server.port, client))[0] == new


@pytest.mark.asyncio
async def test_the_next_connection_after_a_look_sees_the_new_certificate(certs: Certs) -> None:
    clock = FakeClock()
    certs.write(certs.issue())
    client = certs.client_context()
    async with tls_server(certs, clock) as (server, reloader):
        new = certs.write(certs.issue())
        clock.advance(5)
        assert reloader.maybe_reload() is True
        assert (await handshake(server.port, client))[0] == new


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        pytest.param(
            "garbage-cert",
            "tls.crt is not a PEM certificate",
            id="a cert file that is not PEM keeps the old pair",
        ),
        pytest.param(
            "mismatched", "tls.key is not the key of", id="a key of another certificate keeps the old pair"
        ),
        pytest.param(
            "empty-key",
            "tls.key is not an unencrypted PEM private key (0 bytes)",
            id="a half-written empty key keeps the old pair",
        ),
        pytest.param("missing-key", "tls.key is missing", id="a missing key file keeps the old pair"),
    ],
)
@pytest.mark.asyncio
async def test_broken_new_files_keep_the_last_good_certificate(
    certs: Certs, breakage: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    good = certs.write(certs.issue())
    client = certs.client_context()
    async with tls_server(certs, clock) as (server, reloader):
        if breakage == "garbage-cert":
            certs.cert_file.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot really\n")
        elif breakage == "mismatched":
            certs.write(certs.issue(), key_of=certs.issue())
        elif breakage == "empty-key":
            certs.key_file.write_bytes(b"")
        else:
            certs.key_file.unlink()
        clock.advance(5)
        with caplog.at_level(logging.ERROR, logger="webhook.tls"):
            assert reloader.maybe_reload() is False
            clock.advance(5)
            assert reloader.maybe_reload() is False
        error = reloader.last_error
        assert error is not None and reason in error
        logged = [r.getMessage() for r in caplog.records if r.name == "webhook.tls"]
        assert len(logged) == 1, "one message per version of the files, not one per look"
        assert reason in logged[0] and f"still serving serial {good:x}" in logged[0]
        assert (await handshake(server.port, client))[0] == good
        assert reloader.serial == good

        fixed = certs.write(certs.issue())
        clock.advance(5)
        assert reloader.maybe_reload() is True
        assert reloader.last_error is None
        assert (await handshake(server.port, client))[0] == fixed


def test_unchanged_files_are_not_reloaded(certs: Certs) -> None:
    clock = FakeClock()
    certs.write(certs.issue())
    ctx = server_context(certs.cert_file, certs.key_file)
    reloader = CertReloader(ctx, certs.cert_file, certs.key_file, clock=clock, interval=5)
    clock.advance(5)
    assert reloader.maybe_reload() is False
    assert reloader.reload() is False


def test_a_reloader_refuses_to_start_on_a_broken_pair(certs: Certs) -> None:
    certs.write(certs.issue(), key_of=certs.issue())
    with pytest.raises(CertLoadError, match=r"tls\.key is not the key of"):
        CertReloader(new_server_context(), certs.cert_file, certs.key_file, clock=FakeClock())
    with pytest.raises(CertLoadError, match=r"cannot read .*missing\.crt: No such file"):
        server_context(certs.cert_file.with_name("missing.crt"), certs.key_file)


def test_the_server_context_requires_tls_1_2() -> None:
    ctx = new_server_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION


# --- graceful shutdown --------------------------------------------------------------------------


async def post_keep_alive(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, uid: str
) -> dict[str, Any]:
    body = orjson.dumps(review(uid))
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    result: dict[str, Any] = orjson.loads(await asyncio.wait_for(reader.readexactly(length), WAIT))
    return result


@pytest.mark.asyncio
async def test_graceful_shutdown_closes_idle_keep_alive_connections_and_finishes_in_flight_requests(
    certs: Certs,
) -> None:
    certs.write(certs.issue())
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(request: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        await release.wait()
        return {"allowed": True}

    app, _ = make_app({"/validate": allow_all, "/slow": slow})
    ctx = server_context(certs.cert_file, certs.key_file)
    stop = asyncio.Event()
    started: asyncio.Future[RunningServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(app, "127.0.0.1", 0, ctx, stop_event=stop, shutdown_timeout=5, on_started=started.set_result)
    )
    port = (await asyncio.wait_for(started, WAIT)).port
    client = certs.client_context()
    idle = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="127.0.0.1")
    busy = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="127.0.0.1")
    try:
        assert (await post_keep_alive(*idle, "/validate", "a"))["response"]["allowed"] is True
        in_flight = asyncio.create_task(post_keep_alive(*busy, "/slow", "b"))
        await asyncio.wait_for(entered.wait(), WAIT)

        stop.set()
        assert await asyncio.wait_for(idle[0].read(), WAIT) == b"", "the idle keep-alive connection is closed"
        assert not task.done(), "serve waits for the request in flight"
        release.set()
        assert (await asyncio.wait_for(in_flight, WAIT))["response"] == {"uid": "b", "allowed": True}
        await asyncio.wait_for(task, WAIT)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
    finally:
        for _, writer in (idle, busy):
            writer.close()
        release.set()
        stop.set()
        await asyncio.wait_for(task, WAIT)

"""Certificate tooling: the chain verifies, SANs and usages are exact, files, Secret, caBundle and rotation."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certs.__main__ import main
from certs.authority import (
    BACKDATE,
    CertsError,
    IssuedCert,
    KeyAlgorithm,
    ca_bundle_pem,
    create_ca,
    create_serving,
    is_signed_by,
    load_issued,
)
from certs.files import CertDir, write_atomic
from certs.live import ca_bundle_patch
from certs.manifests import inject_ca_bundle_yaml, tls_secret
from common.clock import FakeClock

T0 = dt.datetime(2025, 1, 10, 1, 36, 24, tzinfo=dt.UTC)
SVC, NS = "rayqueue-webhook", "rayqueue"
SERVICE_NAMES = [
    "rayqueue-webhook",
    "rayqueue-webhook.rayqueue",
    "rayqueue-webhook.rayqueue.svc",
    "rayqueue-webhook.rayqueue.svc.cluster.local",
]


# --- builders -----------------------------------------------------------------------------------


def make_pair(algorithm: KeyAlgorithm = "ecdsa-p256", **kw: Any) -> tuple[IssuedCert, IssuedCert]:
    ca = create_ca(now=T0, algorithm=algorithm)
    serving = create_serving(ca, service=SVC, namespace=NS, now=T0, algorithm=algorithm, **kw)
    return ca, serving


def verify(
    leaf: x509.Certificate, cas: list[x509.Certificate], name: str, at: dt.datetime = T0
) -> list[x509.Certificate]:
    """Verify like a TLS client would (WebPKI profile), for a DNS name or an IP."""
    subject: x509.DNSName | x509.IPAddress
    try:
        subject = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = x509.DNSName(name)
    verifier = PolicyBuilder().store(Store(cas)).time(at).build_server_verifier(subject)
    return verifier.verify(leaf, [])


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), [str(i) for i in ext.get_values_for_type(x509.IPAddress)]


def run(argv: list[str], clock: FakeClock | None = None) -> int:
    return main(argv, clock=clock or FakeClock(T0))


def init_dir(tmp_path: Path, clock: FakeClock | None = None, *extra: str) -> CertDir:
    out = tmp_path / "certs"
    argv = ["init", "--service", SVC, "--namespace", NS, "--out", str(out), "--ip", "127.0.0.1", *extra]
    assert run(argv, clock) == 0
    return CertDir(out)


def webhook_config(kind: str, name: str, *hooks: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{hook}.rayqueue.io",
                "clientConfig": {"service": {"name": SVC, "namespace": NS, "path": f"/{hook}"}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            }
            for hook in hooks
        ],
    }


OTHER_DOC_NAMESPACE = "# the namespace, with a comment that must survive\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: rayqueue   # inline\n"
OTHER_DOC_SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: rayqueue-webhook, namespace: rayqueue}\nspec:\n  ports: [{port: 443, targetPort: 8443}]\n"


def multi_doc() -> str:
    mutating = yaml.safe_dump(
        webhook_config("MutatingWebhookConfiguration", "rayqueue-mutating", "rayjob", "pod")
    )
    validating = yaml.safe_dump(
        webhook_config("ValidatingWebhookConfiguration", "rayqueue-validating", "rayjob", "pod", "tree")
    )
    return (
        f"{OTHER_DOC_NAMESPACE}---\n# the mutating one\n{mutating}---\n{OTHER_DOC_SERVICE}--- # the validating one\n"
        f"{validating}---\n# trailing comment-only document\n"
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- the chain ----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "rsa-2048"])
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(SERVICE_NAMES[0], id="the short service name verifies"),
        pytest.param(SERVICE_NAMES[1], id="the namespaced service name verifies"),
        pytest.param(SERVICE_NAMES[2], id="the .svc name the apiserver dials verifies"),
        pytest.param(SERVICE_NAMES[3], id="the cluster-local FQDN verifies"),
        pytest.param("webhook.example.test", id="an extra DNS name verifies"),
        pytest.param("127.0.0.1", id="an IP SAN verifies"),
    ],
)
def test_serving_certificate_chains_to_the_ca_for_every_name(algorithm: KeyAlgorithm, name: str) -> None:
    ca, serving = make_pair(algorithm, extra_dns=["webhook.example.test"], ips=["127.0.0.1"])
    chain = verify(serving.certificate, [ca.certificate], name)
    assert chain == [serving.certificate, ca.certificate]


@pytest.mark.parametrize(
    ("name", "at"),
    [
        pytest.param("other.rayqueue.svc", T0, id="a name outside the SANs does not verify"),
        pytest.param("127.0.0.2", T0, id="an IP outside the SANs does not verify"),
        pytest.param(
            SERVICE_NAMES[2], T0 + dt.timedelta(days=366), id="an expired serving certificate does not verify"
        ),
        pytest.param(
            SERVICE_NAMES[2],
            T0 - dt.timedelta(minutes=6),
            id="a certificate is not valid before its backdated start",
        ),
    ],
)
def test_verification_refuses(name: str, at: dt.datetime) -> None:
    ca, serving = make_pair(ips=["127.0.0.1"])
    with pytest.raises(VerificationError):
        verify(serving.certificate, [ca.certificate], name, at)


def test_a_certificate_from_another_ca_does_not_verify() -> None:
    _, serving = make_pair()
    other_ca, _ = make_pair()
    with pytest.raises(VerificationError):
        verify(serving.certificate, [other_ca.certificate], SERVICE_NAMES[2])
    assert not is_signed_by(serving.certificate, other_ca.certificate)


def test_sans_are_exactly_the_service_names_then_extras_then_ips() -> None:
    _, serving = make_pair(extra_dns=["b.example", "rayqueue-webhook", "a.example"], ips=["127.0.0.1", "::1"])
    assert sans(serving.certificate) == ([*SERVICE_NAMES, "b.example", "a.example"], ["127.0.0.1", "::1"])
    cn = serving.certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "rayqueue-webhook.rayqueue.svc"


def test_serving_certificate_key_usages_and_identifiers() -> None:
    ca, serving = make_pair()
    ext = serving.certificate.extensions
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert (ku.value.digital_signature, ku.value.key_encipherment) == (True, True)
    assert (ku.value.key_cert_sign, ku.value.crl_sign, ku.value.content_commitment) == (False, False, False)
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(serving.private_key.public_key())


def test_ca_is_a_self_signed_ca_limited_to_signing_leaves() -> None:
    ca, _ = make_pair()
    ext = ca.certificate.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert is_signed_by(ca.certificate, ca.certificate)


@pytest.mark.parametrize(
    ("algorithm", "key_type", "size"),
    [
        pytest.param("ecdsa-p256", ec.EllipticCurvePrivateKey, 256, id="the default key is ECDSA P-256"),
        pytest.param("rsa-2048", rsa.RSAPrivateKey, 2048, id="RSA 2048 by choice"),
    ],
)
def test_key_algorithms(algorithm: KeyAlgorithm, key_type: type, size: int) -> None:
    ca, serving = make_pair(algorithm)
    for pair in (ca, serving):
        assert isinstance(pair.private_key, key_type)
        assert pair.private_key.key_size == size


def test_expiry_windows_default_to_ten_years_and_one_year_backdated_five_minutes() -> None:
    ca, serving = make_pair()
    assert ca.certificate.not_valid_before_utc == T0 - BACKDATE == T0 - dt.timedelta(minutes=5)
    assert ca.not_after == T0 + dt.timedelta(days=3650)
    assert serving.certificate.not_valid_before_utc == T0 - BACKDATE
    assert serving.not_after == T0 + dt.timedelta(days=365)


def test_expiry_windows_are_configurable() -> None:
    ca = create_ca(now=T0, validity=dt.timedelta(days=30))
    serving = create_serving(ca, service=SVC, namespace=NS, now=T0, validity=dt.timedelta(days=7))
    assert (ca.not_after, serving.not_after) == (T0 + dt.timedelta(days=30), T0 + dt.timedelta(days=7))


def test_serial_numbers_are_random_and_positive() -> None:
    ca, serving = make_pair()
    _, serving2 = make_pair()
    assert serving.serial != serving2.serial
    assert 0 < serving.serial < 2**159 and 0 < ca.serial < 2**159


@pytest.mark.parametrize(
    ("kwargs", "problems"),
    [
        pytest.param(
            {
                "service": "Bad_Svc",
                "namespace": "-ns",
                "extra_dns": ["a..b", "*.ok.example"],
                "ips": ["1.2.3"],
            },
            [
                "service 'Bad_Svc' is not a valid Service name",
                "namespace '-ns' is not a valid namespace name",
                "extra DNS name 'a..b' is not a valid DNS name",
                "IP SAN '1.2.3' is not an IPv4 or IPv6 address",
            ],
            id="every bad name and address is reported at once",
        ),
        pytest.param(
            {"validity": dt.timedelta(0)},
            ["serving certificate: validity must be positive, got 0:00:00"],
            id="a zero validity is refused",
        ),
        pytest.param(
            {"service": "1svc"},
            ["service '1svc' is not a valid Service name (DNS-1035 label"],
            id="a service name must start with a letter",
        ),
        pytest.param(
            {"validity": dt.timedelta(days=3651)},
            [
                "serving certificate would expire at 2035-01-09T01:36:24+00:00, after its CA (2035-01-08T01:36:24+00:00)"
            ],
            id="a serving certificate may not outlive its CA",
        ),
    ],
)
def test_bad_serving_inputs_are_refused_with_every_problem(
    kwargs: dict[str, Any], problems: list[str]
) -> None:
    ca = create_ca(now=T0)
    args: dict[str, Any] = {"service": SVC, "namespace": NS, "now": T0, **kwargs}
    with pytest.raises(CertsError) as err:
        create_serving(ca, **args)
    assert len(err.value.problems) == len(problems)
    for got, want in zip(err.value.problems, problems, strict=True):
        assert got.startswith(want), got


def test_a_key_that_does_not_belong_to_the_certificate_is_refused() -> None:
    _, serving = make_pair()
    _, other = make_pair()
    with pytest.raises(CertsError, match=r"tls\.crt: the private key does not belong to the certificate"):
        load_issued(serving.cert_pem(), other.key_pem(), "tls.crt")
    with pytest.raises(CertsError, match=r"tls\.crt certificate: not a PEM certificate bundle"):
        load_issued(b"junk", serving.key_pem(), "tls.crt")
    assert load_issued(serving.cert_pem(), serving.key_pem(), "tls.crt") == serving


def test_ca_bundle_keeps_order_and_drops_duplicates() -> None:
    old, _ = make_pair()
    new, _ = make_pair()
    bundle = ca_bundle_pem([old.certificate, new.certificate, old.certificate])
    assert x509.load_pem_x509_certificates(bundle) == [old.certificate, new.certificate]


# --- files --------------------------------------------------------------------------------------


def test_atomic_write_replaces_the_file_and_never_shows_half_of_it(tmp_path: Path) -> None:
    path = tmp_path / "tls.key"
    path.write_bytes(b"old key")
    with path.open("rb") as reader:  # a reader that opened the old file keeps reading the old file whole
        write_atomic(path, b"new key", 0o600)
        assert reader.read() == b"old key"
    assert path.read_bytes() == b"new key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["tls.key"], "no temp file is left behind"


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "tls.crt"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomic(path, "not bytes", 0o644)  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["tls.crt"]


def test_init_writes_the_directory_with_private_keys_0600(tmp_path: Path) -> None:
    d = init_dir(tmp_path)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in sorted(d.root.iterdir())}
    assert modes == {
        "ca-bundle.crt": 0o644,
        "ca.crt": 0o644,
        "ca.key": 0o600,
        "tls.crt": 0o644,
        "tls.key": 0o600,
    }
    assert stat.S_IMODE(d.root.stat().st_mode) == 0o700
    ca, serving = d.load_ca(), d.load_serving()
    assert d.bundle_pem() == ca.cert_pem()
    assert verify(serving.certificate, [ca.certificate], "127.0.0.1")
    assert sans(serving.certificate) == (SERVICE_NAMES, ["127.0.0.1"])


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = init_dir(tmp_path)
    before = d.path("ca.crt").read_bytes()
    capsys.readouterr()
    assert run(["init", "--service", SVC, "--namespace", NS, "--out", str(d.root)]) == 2
    assert "already exist: pass --force to overwrite" in capsys.readouterr().err
    assert d.path("ca.crt").read_bytes() == before
    assert run(["init", "--service", SVC, "--namespace", NS, "--out", str(d.root), "--force"]) == 0
    assert d.path("ca.crt").read_bytes() != before


def test_init_with_rsa_and_custom_validity(tmp_path: Path) -> None:
    d = init_dir(tmp_path, None, "--key-type", "rsa", "--ca-days", "100", "--days", "10", "--dns", "x.test")
    ca, serving = d.load_ca(), d.load_serving()
    assert isinstance(serving.private_key, rsa.RSAPrivateKey)
    assert (ca.not_after, serving.not_after) == (T0 + dt.timedelta(days=100), T0 + dt.timedelta(days=10))
    assert sans(serving.certificate)[0] == [*SERVICE_NAMES, "x.test"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["init", "--service", "Bad", "--namespace", "ns", "--out", "{out}", "--ip", "999.1.1.1"],
            [
                "service 'Bad' is not a valid Service name",
                "IP SAN '999.1.1.1' is not an IPv4 or IPv6 address",
            ],
            id="init names every bad input",
        ),
        pytest.param(
            ["init", "--service", SVC, "--namespace", NS, "--out", "{out}", "--days", "4000"],
            ["--days 4000 is longer than --ca-days 3650"],
            id="init refuses a serving certificate that outlives the CA",
        ),
        pytest.param(
            ["init", "--service", SVC, "--namespace", NS, "--out", "{out}", "--days", "0"],
            ["0 days: must be at least 1"],
            id="a zero validity is a usage error",
        ),
        pytest.param(
            ["init", "--service", SVC, "--namespace", NS, "--out", "{out}", "--key-type", "dsa"],
            ["invalid choice: 'dsa'"],
            id="an unknown key type is a usage error",
        ),
        pytest.param(
            ["rotate", "--dir", "{out}"],
            ["does not exist: run `rayqueue-certs init` first"],
            id="rotate on an empty directory says to run init",
        ),
        pytest.param(
            ["secret", "--dir", "{out}", "--name", "n", "--namespace", "ns"],
            ["does not exist: run `rayqueue-certs init` first"],
            id="secret on an empty directory says to run init",
        ),
        pytest.param(
            ["inject-live", "--ca", "{out}/ca.crt"],
            ["name at least one --mutating or --validating configuration"],
            id="inject-live needs a configuration name",
        ),
        pytest.param(
            ["inject", "--ca", "{out}/missing.crt", "x.yaml"],
            ["--ca {out}/missing.crt: cannot be read: No such file or directory"],
            id="inject with a missing CA file says so",
        ),
    ],
)
def test_bad_cli_input_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: list[str]
) -> None:
    out = str(tmp_path / "out")
    assert run([a.format(out=out) for a in argv]) == 2
    err = capsys.readouterr().err
    for m in message:
        assert m.format(out=out) in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_help_documents_the_ca_roll_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["rotate", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--roll-ca start" in out and "--roll-ca finish" in out and "overlap bundle" in out


# --- the Secret ---------------------------------------------------------------------------------


def test_secret_manifest_shape() -> None:
    secret = tls_secret(
        name="rayqueue-webhook-tls",
        namespace=NS,
        cert_pem=b"C",
        key_pem=b"K",
        ca_pem=b"A",
        labels={"b": "2", "a": "1"},
    )
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "rayqueue-webhook-tls", "namespace": NS, "labels": {"a": "1", "b": "2"}},
        "type": "kubernetes.io/tls",
        "data": {"ca.crt": b64(b"A"), "tls.crt": b64(b"C"), "tls.key": b64(b"K")},
    }
    assert list(secret["data"]) == ["ca.crt", "tls.crt", "tls.key"]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_secret_command_prints_the_files_of_the_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    d = init_dir(tmp_path)
    capsys.readouterr()
    argv = [
        "secret",
        "--dir",
        str(d.root),
        "--name",
        "rayqueue-webhook-tls",
        "--namespace",
        NS,
        "--format",
        fmt,
    ]
    assert run([*argv, "--label", "app=rayqueue"]) == 0
    text = capsys.readouterr().out
    secret = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {
        "name": "rayqueue-webhook-tls",
        "namespace": NS,
        "labels": {"app": "rayqueue"},
    }
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert data == {
        "ca.crt": d.bundle_pem(),
        "tls.crt": d.path("tls.crt").read_bytes(),
        "tls.key": d.path("tls.key").read_bytes(),
    }


def test_secret_written_to_a_file_is_private(tmp_path: Path) -> None:
    d = init_dir(tmp_path)
    out = tmp_path / "secret.yaml"
    assert run(["secret", "--dir", str(d.root), "--name", "s", "--namespace", NS, "--output", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert yaml.safe_load(out.read_text())["kind"] == "Secret"


# --- caBundle injection -------------------------------------------------------------------------


def test_inject_sets_ca_bundle_on_every_webhook_and_leaves_other_documents_byte_identical() -> None:
    text = multi_doc()
    new, hooks = inject_ca_bundle_yaml(text, b"PEM-BUNDLE", "webhooks.yaml")
    assert hooks == 5
    docs = list(yaml.safe_load_all(new))
    assert [d and d["kind"] for d in docs] == [
        "Namespace",
        "MutatingWebhookConfiguration",
        "Service",
        "ValidatingWebhookConfiguration",
        None,
    ]
    for doc in (docs[1], docs[3]):
        assert [w["clientConfig"]["caBundle"] for w in doc["webhooks"]] == [b64(b"PEM-BUNDLE")] * len(
            doc["webhooks"]
        )
        assert all(w["clientConfig"]["service"]["name"] == SVC for w in doc["webhooks"]), (
            "the service is kept"
        )
    assert new.startswith(OTHER_DOC_NAMESPACE + "---\n# the mutating one\napiVersion: admissionregistration")
    assert f"---\n{OTHER_DOC_SERVICE}--- # the validating one\n" in new
    assert new.endswith("---\n# trailing comment-only document\n")
    want = yaml.safe_load_all(text)
    for got_doc, want_doc in zip(docs, want, strict=True):
        if got_doc and got_doc["kind"].endswith("WebhookConfiguration"):
            for w in got_doc["webhooks"]:
                del w["clientConfig"]["caBundle"]
        assert got_doc == want_doc, "nothing else changed"


def test_inject_is_idempotent_and_replaces_an_old_bundle() -> None:
    once, _ = inject_ca_bundle_yaml(multi_doc(), b"OLD", "f")
    twice, _ = inject_ca_bundle_yaml(once, b"NEW", "f")
    again, _ = inject_ca_bundle_yaml(twice, b"NEW", "f")
    assert again == twice
    assert b64(b"OLD") not in twice and twice.count(b64(b"NEW")) == 5


def test_inject_walks_a_kind_list_and_creates_a_missing_client_config() -> None:
    config = webhook_config("ValidatingWebhookConfiguration", "v", "a")
    del config["webhooks"][0]["clientConfig"]
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [{"kind": "ConfigMap"}, config]})
    new, hooks = inject_ca_bundle_yaml(text, b"X", "list.yaml")
    assert hooks == 1
    assert yaml.safe_load(new)["items"][1]["webhooks"][0]["clientConfig"] == {"caBundle": b64(b"X")}
    assert yaml.safe_load(new)["items"][0] == {"kind": "ConfigMap"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "kind: Service\n",
            "f.yaml: no MutatingWebhookConfiguration or ValidatingWebhookConfiguration in it",
            id="a file without a webhook configuration is refused",
        ),
        pytest.param("a: [\n", "f.yaml: not valid YAML", id="a file that is not YAML is refused"),
        pytest.param(
            "kind: MutatingWebhookConfiguration\nmetadata: {name: m}\nwebhooks: {a: 1}\n",
            "f.yaml document 0 MutatingWebhookConfiguration/m: webhooks is a dict, expected a list",
            id="webhooks that are not a list are refused naming the object",
        ),
        pytest.param(
            "kind: MutatingWebhookConfiguration\nmetadata: {name: m}\nwebhooks: [1, {clientConfig: x}]\n",
            "webhooks[0] is a int, expected a mapping; f.yaml document 0 MutatingWebhookConfiguration/m: webhooks[1].clientConfig is a str",
            id="every malformed webhook is named by index",
        ),
    ],
)
def test_inject_refuses_bad_files(text: str, message: str) -> None:
    with pytest.raises(CertsError) as err:
        inject_ca_bundle_yaml(text, b"X", "f.yaml")
    assert message in str(err.value)


def test_inject_command_rewrites_files_in_place_keeping_their_mode(tmp_path: Path) -> None:
    d = init_dir(tmp_path)
    manifest = tmp_path / "webhooks.yaml"
    manifest.write_text(multi_doc())
    manifest.chmod(0o640)
    as_json = tmp_path / "validating.json"
    as_json.write_text(json.dumps(webhook_config("ValidatingWebhookConfiguration", "v", "a", "b")))
    assert run(["inject", "--ca", str(d.path("ca-bundle.crt")), str(manifest), str(as_json)]) == 0
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o640
    bundle = b64(d.bundle_pem())
    assert manifest.read_text().count(bundle) == 5
    hooks = json.loads(as_json.read_text())["webhooks"]
    assert [w["clientConfig"]["caBundle"] for w in hooks] == [bundle, bundle]


def test_inject_command_changes_no_file_when_one_is_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = init_dir(tmp_path)
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(multi_doc())
    bad.write_text("kind: ConfigMap\n")
    assert run(["inject", "--ca", str(d.path("ca.crt")), str(good), str(bad)]) == 2
    assert good.read_text() == multi_doc()
    assert f"{bad}: no MutatingWebhookConfiguration" in capsys.readouterr().err


def test_inject_command_refuses_a_ca_that_is_not_pem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate")
    manifest = tmp_path / "w.yaml"
    manifest.write_text(multi_doc())
    assert run(["inject", "--ca", str(ca), str(manifest)]) == 2
    assert f"--ca {ca}: not a PEM certificate bundle" in capsys.readouterr().err
    assert manifest.read_text() == multi_doc()


def test_live_patch_sets_each_webhook_guarded_by_its_name() -> None:
    assert ca_bundle_patch(["a.rayqueue.io", "b.rayqueue.io"], b"PEM") == [
        {"op": "test", "path": "/webhooks/0/name", "value": "a.rayqueue.io"},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": b64(b"PEM")},
        {"op": "test", "path": "/webhooks/1/name", "value": "b.rayqueue.io"},
        {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": b64(b"PEM")},
    ]


def test_inject_live_reports_a_cluster_it_cannot_reach(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = init_dir(tmp_path)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    argv = ["inject-live", "--ca", str(d.path("ca.crt")), "--kubeconfig", str(kubeconfig), "--mutating", "m"]
    assert run(argv) == 1
    assert "rayqueue-certs inject-live: error: inject-live: MaxRetryError" in capsys.readouterr().err
    assert run([*argv[:3], "--kubeconfig", str(tmp_path / "missing"), "--mutating", "m"]) == 2
    assert "cannot load the cluster configuration" in capsys.readouterr().err


# --- rotation -----------------------------------------------------------------------------------


def test_rotate_does_nothing_before_the_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock(T0)
    d = init_dir(tmp_path, clock)
    before = d.path("tls.crt").read_bytes()
    clock.advance(dt.timedelta(days=334).total_seconds())
    capsys.readouterr()
    assert run(["rotate", "--dir", str(d.root)], clock) == 0
    assert (
        "not due: expires 2026-01-10 01:36:24Z, in 31 days, outside the 30-day renewal window"
        in capsys.readouterr().out
    )
    assert d.path("tls.crt").read_bytes() == before


def test_rotate_in_the_window_keeps_the_ca_and_reissues_the_serving_certificate(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    d = init_dir(tmp_path, clock)
    ca_files = {n: d.path(n).read_bytes() for n in ("ca.crt", "ca.key", "ca-bundle.crt")}
    old = d.load_serving()
    clock.advance(dt.timedelta(days=340).total_seconds())
    assert run(["rotate", "--dir", str(d.root)], clock) == 0
    new = d.load_serving()
    assert {n: d.path(n).read_bytes() for n in ca_files} == ca_files, "the CA is kept"
    assert new.serial != old.serial
    assert new.key_pem() != old.key_pem(), "a new key too"
    assert sans(new.certificate) == sans(old.certificate) == (SERVICE_NAMES, ["127.0.0.1"])
    assert new.certificate.subject == old.certificate.subject
    assert new.not_after == clock.now() + dt.timedelta(days=365)
    assert verify(new.certificate, [d.load_ca().certificate], SERVICE_NAMES[2], clock.now())
    assert stat.S_IMODE(d.path("tls.key").stat().st_mode) == 0o600


def test_rotate_force_renews_at_any_time_and_keeps_the_key_type(tmp_path: Path) -> None:
    d = init_dir(tmp_path, None, "--key-type", "rsa")
    old = d.load_serving()
    assert run(["rotate", "--dir", str(d.root), "--force", "--days", "30"]) == 0
    new = d.load_serving()
    assert new.serial != old.serial and isinstance(new.private_key, rsa.RSAPrivateKey)
    assert new.not_after == T0 + dt.timedelta(days=30)


def test_rotate_ends_the_new_certificate_with_a_ca_that_expires_sooner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock(T0)
    d = init_dir(tmp_path, clock, "--ca-days", "400", "--days", "365")
    clock.advance(dt.timedelta(days=350).total_seconds())
    capsys.readouterr()
    assert run(["rotate", "--dir", str(d.root)], clock) == 0
    assert d.load_serving().not_after == d.load_ca().not_after == T0 + dt.timedelta(days=400)
    assert "warning: the CA expires 2026-02-14 01:36:24Z" in capsys.readouterr().out


def test_rotate_refuses_to_sign_with_an_expired_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock(T0)
    d = init_dir(tmp_path, clock, "--ca-days", "10", "--days", "10")
    clock.advance(dt.timedelta(days=11).total_seconds())
    assert run(["rotate", "--dir", str(d.root)], clock) == 2
    assert (
        "the CA expires 2025-01-20 01:36:24Z, too soon to sign with: roll the CA first"
        in capsys.readouterr().err
    )


def test_ca_roll_overlaps_old_and_new_ca_until_the_serving_certificate_moves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock(T0)
    d = init_dir(tmp_path, clock)
    old_ca, old_serving = d.load_ca(), d.load_serving()
    clock.advance(dt.timedelta(days=100).total_seconds())

    assert run(["rotate", "--dir", str(d.root), "--roll-ca", "start"], clock) == 0
    new_ca = d.load_ca()
    assert new_ca.serial != old_ca.serial
    assert d.load_previous_ca() == old_ca.certificate
    bundle = x509.load_pem_x509_certificates(d.bundle_pem())
    assert bundle == [old_ca.certificate, new_ca.certificate], "old first, then new"
    assert d.load_serving() == old_serving, "the serving pair is untouched in step 1"
    assert verify(old_serving.certificate, bundle, SERVICE_NAMES[2], clock.now())

    assert run(["rotate", "--dir", str(d.root), "--roll-ca", "start"], clock) == 2
    assert "a CA roll is already in progress" in capsys.readouterr().err
    assert run(["rotate", "--dir", str(d.root), "--roll-ca", "finish"], clock) == 2
    assert "is not signed by the new CA" in capsys.readouterr().err

    assert run(["rotate", "--dir", str(d.root), "--force"], clock) == 0
    moved = d.load_serving()
    assert is_signed_by(moved.certificate, new_ca.certificate)
    assert verify(moved.certificate, bundle, SERVICE_NAMES[2], clock.now()), (
        "clients with the overlap bundle accept it"
    )

    assert run(["rotate", "--dir", str(d.root), "--roll-ca", "finish"], clock) == 0
    assert x509.load_pem_x509_certificates(d.bundle_pem()) == [new_ca.certificate]
    assert d.load_previous_ca() is None
    assert verify(moved.certificate, [new_ca.certificate], SERVICE_NAMES[2], clock.now())
    with pytest.raises(VerificationError):
        verify(moved.certificate, [old_ca.certificate], SERVICE_NAMES[2], clock.now())

    assert run(["rotate", "--dir", str(d.root), "--roll-ca", "finish"], clock) == 2
    assert "no CA roll is in progress" in capsys.readouterr().err

"""The self-managed certificate's decisions (certs/selfmanaged.py): create, reuse, renew, roll with an overlap
bundle, repair; each from plain Secret data and a time, no cluster."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.authority import create_ca, create_serving, is_signed_by
from certs.files import CA_BUNDLE, CA_CERT, CA_KEY, CA_PREVIOUS, TLS_CERT, TLS_KEY
from certs.selfmanaged import Policy, decide, policy_problems

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)
# Short lives, as the e2e test's flags set them: CA 1000 s (roll 300 s before its end), serving 200 s (renewed
# 50 s before its end), 60 s per roll step.
P = Policy(ips=("127.0.0.1",), ca_validity=1000 * S, serving_validity=200 * S, ca_renew_before=300 * S,
           serving_renew_before=50 * S, overlap=60 * S)
Data = dict[str, bytes]


def cas(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def serving(data: Data) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data[TLS_CERT])


def ca(data: Data) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data[CA_CERT])


def trusts(data: Data) -> bool:
    """The bundle verifies the serving certificate for 127.0.0.1, as the apiserver would."""
    return any(is_signed_by(serving(data), c) for c in cas(data[CA_BUNDLE]))


def created(at: dt.datetime = T0) -> Data:
    return decide(None, at, P).data


def test_an_absent_secret_gets_a_ca_a_serving_pair_and_a_bundle_of_that_ca() -> None:
    d = decide(None, T0, P)
    assert d.action == "create" and d.changed
    assert sorted(d.data) == sorted([CA_BUNDLE, CA_CERT, CA_KEY, TLS_CERT, TLS_KEY])
    assert [c.serial_number for c in cas(d.data[CA_BUNDLE])] == [ca(d.data).serial_number]
    assert is_signed_by(serving(d.data), ca(d.data))
    names = serving(d.data).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "rayqueue-webhook.rayqueue.svc" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_a_valid_secret_is_reused_unchanged() -> None:
    data = created()
    d = decide(data, T0 + 100 * S, P)
    assert (d.action, d.changed, d.data) == ("reuse", False, data)


def _drop_ca_key(data: Data) -> Data:
    return {k: v for k, v in data.items() if k != CA_KEY}


def _foreign_serving(data: Data) -> Data:
    other = create_ca(now=T0)
    pair = create_serving(other, service="rayqueue-webhook", namespace="rayqueue", now=T0, validity=100 * S)
    return {**data, TLS_CERT: pair.cert_pem(), TLS_KEY: pair.key_pem()}


def _garbled_serving(data: Data) -> Data:
    return {**data, TLS_KEY: b"not a key"}


def _wrong_names(data: Data) -> Data:
    c = create_ca(now=T0, validity=1000 * S)
    pair = create_serving(c, service="other", namespace="rayqueue", now=T0, validity=100 * S)
    return {**data, CA_CERT: c.cert_pem(), CA_KEY: c.key_pem(), TLS_CERT: pair.cert_pem(), TLS_KEY: pair.key_pem()}


def _stale_bundle(data: Data) -> Data:
    return {**data, CA_BUNDLE: create_ca(now=T0).cert_pem()}


@pytest.mark.parametrize(("damage", "at", "action", "new_ca", "why"), [
    pytest.param(_drop_ca_key, 10, "repair", True, "no CA with its key", id="a Secret without the CA key gets a new CA"),
    pytest.param(lambda d: {**d, CA_CERT: b"junk"}, 10, "repair", True, "unreadable",
                 id="an unreadable CA is replaced"),
    pytest.param(lambda d: d, 1001, "repair", True, "not valid now", id="an expired CA is replaced"),
    pytest.param(_foreign_serving, 10, "repair", False, "signed by no CA",
                 id="a serving pair from another CA is re-issued from ours"),
    pytest.param(_garbled_serving, 10, "repair", False, "unreadable", id="an unreadable serving pair is re-issued"),
    pytest.param(_wrong_names, 10, "repair", False, "does not name rayqueue-webhook",
                 id="a serving certificate for other names is re-issued"),
    pytest.param(_stale_bundle, 10, "repair-bundle", False, "caBundle",
                 id="a bundle without the CA in use is rewritten"),
    pytest.param(lambda d: d, 160, "renew-serving", False, "within", id="a serving pair near its end is renewed"),
])
def test_a_damaged_or_due_secret_is_repaired(damage: Callable[[Data], Data], at: int, action: str, new_ca: bool,
                                             why: str) -> None:
    original = created()
    before = damage(original)
    d = decide(before, T0 + at * S, P)
    assert d.action == action and why in d.reason
    reference = before if before.get(CA_CERT, b"").startswith(b"-----") else original
    assert (ca(d.data).serial_number != ca(reference).serial_number) == new_ca
    assert trusts(d.data)
    assert decide(d.data, T0 + at * S, P).action == "reuse", "one repair settles it"


def test_a_ca_roll_keeps_the_old_ca_trusted_until_every_replica_serves_from_the_new_one() -> None:
    """The story of a CA roll over simulated time: at every instant, a replica serving the pair of the previous
    decision (not reloaded yet) is still trusted by the bundle of the current one; the old CA goes last."""
    data, now = created(), T0
    steps: list[str] = []
    while now < T0 + 3000 * S:
        now += 5 * S
        d = decide(data, now, P)
        if not d.changed:
            continue
        steps.append(d.action)
        lagging = {**d.data, TLS_CERT: data[TLS_CERT]}  # a replica still serving the previous pair
        assert trusts(lagging), f"{d.action} at +{(now - T0).seconds}s drops the CA of the pair in use"
        assert trusts(d.data)
        assert serving(d.data).not_valid_after_utc <= ca(d.data).not_valid_after_utc
        data = d.data
    first_roll = steps.index("start-ca-roll")
    assert steps[first_roll:first_roll + 3] == ["start-ca-roll", "roll-serving", "finish-ca-roll"]
    assert "renew-serving" in steps and "repair" not in steps and "create" not in steps


def test_an_overlap_bundle_holds_old_then_new_and_only_during_the_roll() -> None:
    p = replace(P, serving_validity=900 * S)  # the first serving pair lives until the roll
    data = decide(None, T0, p).data
    old = ca(data)
    start = decide(data, T0 + 701 * S, p)  # the CA ends at +1000 s: inside its 300 s renewal lead
    assert start.action == "start-ca-roll"
    assert [c.serial_number for c in cas(start.data[CA_BUNDLE])] == [old.serial_number, ca(start.data).serial_number]
    assert start.data[CA_PREVIOUS] == old.public_bytes(serialization.Encoding.PEM)
    assert start.data[TLS_CERT] == data[TLS_CERT], "the serving pair waits an overlap for the bundle to spread"
    assert decide(start.data, T0 + 750 * S, p).action == "reuse"
    rolled = decide(start.data, T0 + 762 * S, p)
    assert rolled.action == "roll-serving" and is_signed_by(serving(rolled.data), ca(rolled.data))
    assert len(cas(rolled.data[CA_BUNDLE])) == 2
    done = decide(rolled.data, T0 + 823 * S, p)
    assert done.action == "finish-ca-roll"
    assert [c.serial_number for c in cas(done.data[CA_BUNDLE])] == [ca(done.data).serial_number]
    assert CA_PREVIOUS not in done.data


def test_two_replicas_deciding_on_one_empty_secret_disagree_but_the_write_guard_keeps_one() -> None:
    """decide is not deterministic (fresh keys): the create-or-get write (409 for the loser) is what makes one CA;
    the loser, re-reading, reuses the winner's Secret."""
    a, b = decide(None, T0, P), decide(None, T0, P)
    assert ca(a.data).serial_number != ca(b.data).serial_number
    assert decide(a.data, T0, P).action == "reuse"


def test_the_serving_pair_loads_into_a_tls_server_context() -> None:
    from webhook.tls import load_pem_pair, new_server_context

    data = created()
    ctx = new_server_context()
    text = load_pem_pair(ctx, data[TLS_CERT], data[TLS_KEY])
    assert f"serial {serving(data).serial_number:x}" in text
    with pytest.raises(Exception, match=r"OpenSSL refused|not"):
        load_pem_pair(ctx, data[TLS_CERT], create_ca(now=T0).key_pem())
    assert isinstance(ctx, ssl.SSLContext)


@pytest.mark.parametrize(("policy", "problem"), [
    pytest.param(Policy(ca_renew_before=2000 * S, ca_validity=1000 * S), "shorter than the CA validity",
                 id="a CA renewal lead longer than its life would roll for ever"),
    pytest.param(Policy(serving_validity=10 * S, serving_renew_before=20 * S), "shorter than the serving validity",
                 id="a serving renewal lead longer than its life would renew for ever"),
    pytest.param(Policy(ca_validity=1000 * S, ca_renew_before=100 * S, overlap=60 * S,
                        serving_validity=200 * S, serving_renew_before=10 * S), "two overlaps",
                 id="a roll that cannot finish before the old CA ends is refused"),
    pytest.param(Policy(overlap=0 * S), "overlap must be positive", id="a zero overlap is refused"),
])
def test_policies_that_would_loop_or_leave_a_gap_are_refused(policy: Policy, problem: str) -> None:
    assert any(problem in p for p in policy_problems(policy)), policy_problems(policy)


def test_the_default_policy_and_the_test_policy_are_sound() -> None:
    assert policy_problems(Policy()) == []
    assert policy_problems(P) == []


# --------------------------------------------------------------------------- the flags


def test_without_tls_files_the_webhook_manages_its_certificate_and_with_them_serves_the_files(tmp_path: Any) -> None:
    from webhook.settings import parse_settings

    s = parse_settings([])
    assert s.certs is not None and s.tls_cert is None
    assert (s.certs.secret, s.certs.configuration, s.certs.policy) == ("rayqueue-webhook-tls", "rayqueue", Policy())
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("x"), key.write_text("x")
    files = parse_settings([f"--tls-cert={cert}", f"--tls-key={key}"])
    assert files.certs is None and files.tls_cert == str(cert)
    # The Deployment passes the mounted paths in either mode; with self they are ignored (and need not exist).
    both = parse_settings(["--cert-management=self", "--tls-cert=/absent/tls.crt", "--tls-key=/absent/tls.key"])
    assert both.certs is not None and both.tls_cert is None


@pytest.mark.parametrize(("argv", "problem"), [
    pytest.param(["--cert-management=files"], "--tls-cert is required", id="files without files is refused"),
    pytest.param(["--cert-overlap=10", "--cert-check-interval=6"], "at most half of --cert-overlap",
                 id="a check interval longer than half an overlap is refused"),
    pytest.param(["--cert-ca-validity=10", "--cert-ca-renew-before=20"], "shorter than the CA validity",
                 id="test durations that would loop are refused"),
    pytest.param(["--cert-ip=not-an-ip"], "not an IPv4 or IPv6 address", id="a bad IP SAN is refused at start"),
])
def test_bad_certificate_flags_are_refused_with_the_reason(argv: list[str], problem: str) -> None:
    from webhook.settings import SettingsError, parse_settings

    with pytest.raises(SettingsError, match=problem):
        parse_settings(argv)

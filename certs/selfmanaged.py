"""Self-managed certificates: what to do with the webhook's Secret now (create, reuse, renew, roll, repair), purely.

The Secret holds the CA with its key (it never leaves the cluster), the serving pair, and the caBundle the
webhook configurations must carry. One call of `decide` looks at the Secret's data and the time and returns
the data it should hold; the adapter (webhook/selfcert.py) writes it guarded by resourceVersion, so two
replicas deciding at once end with one answer. Modelled on open-policy-agent/cert-controller's
`refreshCertIfNeeded` / `refreshCerts` / `ValidCert`, with one difference: a CA roll keeps the old CA in the
bundle for an overlap, so no handshake ever meets a certificate its client does not trust yet.

A CA roll, in three decisions spaced by `overlap`:
  start-ca-roll   a new CA signs from now on; bundle = old CA + new CA; the serving pair is untouched;
  roll-serving    after `overlap` (every replica and the apiserver have the bundle): serving pair from the new CA;
  finish-ca-roll  after another `overlap` (every replica serves the new pair): bundle = the new CA alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509

from certs.authority import (
    BACKDATE,
    DEFAULT_CA_VALIDITY,
    DEFAULT_SERVING_VALIDITY,
    CertsError,
    IssuedCert,
    ca_bundle_pem,
    create_ca,
    create_serving,
    is_signed_by,
    load_certificates,
    load_issued,
    service_dns_names,
)
from certs.files import CA_BUNDLE, CA_CERT, CA_KEY, CA_PREVIOUS, TLS_CERT, TLS_KEY
from certs.rotation import ca_common_name

__all__ = ["Action", "Decision", "Policy", "decide", "policy_problems", "serving_pair", "trusted_bundle"]

Action = Literal["reuse", "create", "repair", "renew-serving", "start-ca-roll", "roll-serving", "finish-ca-roll",
                 "repair-bundle"]
Data = Mapping[str, bytes]


@dataclass(frozen=True)
class Policy:
    """Who the serving certificate is for, and how long everything lives (test flags shorten these)."""

    service: str = "rayqueue-webhook"
    namespace: str = "rayqueue"
    extra_dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    ca_validity: dt.timedelta = DEFAULT_CA_VALIDITY
    serving_validity: dt.timedelta = DEFAULT_SERVING_VALIDITY
    ca_renew_before: dt.timedelta = dt.timedelta(days=90)  # cert-controller's lookaheadInterval
    serving_renew_before: dt.timedelta = dt.timedelta(days=30)
    overlap: dt.timedelta = dt.timedelta(hours=1)  # each step of a CA roll waits this long for every reader

    def dns_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*service_dns_names(self.service, self.namespace), *self.extra_dns]))


def policy_problems(p: Policy) -> list[str]:
    """Durations that would make the rotation loop or leave a window without trust, each named."""
    problems: list[str] = []
    for name, value in (("CA validity", p.ca_validity), ("serving validity", p.serving_validity),
                        ("CA renewal lead", p.ca_renew_before), ("serving renewal lead", p.serving_renew_before),
                        ("overlap", p.overlap)):
        if value <= dt.timedelta(0):
            problems.append(f"{name} must be positive, got {value}")
    if p.ca_renew_before >= p.ca_validity:
        problems.append(f"CA renewal lead {p.ca_renew_before} must be shorter than the CA validity {p.ca_validity}")
    if p.serving_renew_before >= p.serving_validity:
        problems.append(f"serving renewal lead {p.serving_renew_before} must be shorter than the serving validity "
                        f"{p.serving_validity}")
    if 2 * p.overlap + p.serving_renew_before >= p.ca_renew_before:
        problems.append(f"CA renewal lead {p.ca_renew_before} must exceed two overlaps ({2 * p.overlap}) plus the "
                        f"serving renewal lead {p.serving_renew_before}: a CA roll must end before its old CA does")
    return problems


@dataclass(frozen=True)
class Decision:
    """What the Secret should hold, why, and whether that differs from what it holds."""

    action: Action
    reason: str
    data: dict[str, bytes] = field(repr=False)

    @property
    def changed(self) -> bool:
        return self.action != "reuse"


def _valid_at(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now < cert.not_valid_after_utc


def _when(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%SZ")


def _issue(ca: IssuedCert, now: dt.datetime, p: Policy) -> IssuedCert:
    """A serving pair from `ca`, ending no later than the CA (as `rotate` does on a workstation)."""
    validity = min(p.serving_validity, ca.not_after - now)
    return create_serving(ca, service=p.service, namespace=p.namespace, now=now, validity=validity,
                          extra_dns=p.extra_dns, ips=p.ips)


def _data(ca: IssuedCert, serving: IssuedCert, previous: x509.Certificate | None) -> dict[str, bytes]:
    trusted = [previous, ca.certificate] if previous is not None else [ca.certificate]
    out = {CA_CERT: ca.cert_pem(), CA_KEY: ca.key_pem(), TLS_CERT: serving.cert_pem(), TLS_KEY: serving.key_pem(),
           CA_BUNDLE: ca_bundle_pem(trusted)}
    if previous is not None:
        out[CA_PREVIOUS] = ca_bundle_pem([previous])
    return dict(sorted(out.items()))


def _fresh(now: dt.datetime, p: Policy, action: Action, reason: str) -> Decision:
    ca = create_ca(now=now, common_name=ca_common_name(now), validity=p.ca_validity)
    return Decision(action, reason, _data(ca, _issue(ca, now, p), None))


def _serving_problem(serving: IssuedCert | str, issuers: list[x509.Certificate], now: dt.datetime,
                     p: Policy) -> str | None:
    """Why the stored serving pair cannot be served, or None."""
    if isinstance(serving, str):
        return serving
    cert = serving.certificate
    if not any(is_signed_by(cert, issuer) for issuer in issuers):
        return f"the serving certificate (serial {serving.serial:x}) is signed by no CA the bundle holds"
    if not _valid_at(cert, now):
        return f"the serving certificate is not valid now (valid {_when(cert.not_valid_before_utc)} to " \
               f"{_when(cert.not_valid_after_utc)})"
    try:
        sans = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                   .get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        sans = set()
    missing = [n for n in p.dns_names() if n not in sans]
    if missing:
        return f"the serving certificate does not name {', '.join(missing)}"
    return None


def _load_serving(data: Data) -> IssuedCert | str:
    try:
        return load_issued(data.get(TLS_CERT, b""), data.get(TLS_KEY, b""), "serving pair")
    except CertsError as exc:
        return f"the serving pair is unreadable ({exc})"


def _load_previous(data: Data, now: dt.datetime) -> x509.Certificate | None:
    """The CA being retired, while it is still valid; an unreadable or expired one is dropped."""
    pem = data.get(CA_PREVIOUS)
    if not pem:
        return None
    try:
        cert = load_certificates(pem, "previous CA")[0]
    except CertsError:
        return None
    return cert if _valid_at(cert, now) else None


def decide(data: Data | None, now: dt.datetime, p: Policy) -> Decision:
    """The Secret's data from now on. Steps in order; the first that applies decides (one step per call)."""
    if data is None:
        return _fresh(now, p, "create", "the Secret does not exist: a new CA and serving certificate")
    if not data.get(CA_CERT) or not data.get(CA_KEY):
        return _fresh(now, p, "repair", "the Secret holds no CA with its key (ca.crt, ca.key): a new CA and "
                                        "serving certificate")
    try:
        ca = load_issued(data[CA_CERT], data[CA_KEY], "CA")
    except CertsError as exc:
        return _fresh(now, p, "repair", f"the CA in the Secret is unreadable ({exc}): a new CA")
    if not _valid_at(ca.certificate, now):
        return _fresh(now, p, "repair", f"the CA (serial {ca.serial:x}) is not valid now (valid "
                                        f"{_when(ca.certificate.not_valid_before_utc)} to {_when(ca.not_after)}): "
                                        f"a new CA")
    previous = _load_previous(data, now)
    issuers = [ca.certificate] + ([previous] if previous is not None else [])
    serving = _load_serving(data)
    problem = _serving_problem(serving, issuers, now, p)
    if problem is not None or isinstance(serving, str):
        return Decision("repair", f"{problem}: a new serving certificate from CA serial {ca.serial:x}",
                        _data(ca, _issue(ca, now, p), previous))
    from_current = is_signed_by(serving.certificate, ca.certificate)
    ca_since = ca.certificate.not_valid_before_utc + BACKDATE
    if previous is not None and not from_current and now >= ca_since + p.overlap:
        return Decision("roll-serving", f"CA roll: the bundle has trusted CA serial {ca.serial:x} since "
                                        f"{_when(ca_since)}: the serving certificate now comes from it",
                        _data(ca, _issue(ca, now, p), previous))
    serving_since = serving.certificate.not_valid_before_utc + BACKDATE
    if previous is not None and from_current and now >= serving_since + p.overlap:
        return Decision("finish-ca-roll", f"CA roll: every replica serves from CA serial {ca.serial:x} since "
                                          f"{_when(serving_since)}: the old CA leaves the bundle",
                        _data(ca, serving, None))
    if previous is None and ca.not_after <= now + p.ca_renew_before:
        new = create_ca(now=now, common_name=ca_common_name(now), validity=p.ca_validity)
        return Decision("start-ca-roll", f"the CA (serial {ca.serial:x}) expires {_when(ca.not_after)}, within "
                                         f"{p.ca_renew_before}: new CA serial {new.serial:x}; the bundle trusts both",
                        _data(new, serving, ca.certificate))
    if from_current and serving.not_after <= now + p.serving_renew_before:
        return Decision("renew-serving", f"the serving certificate expires {_when(serving.not_after)}, within "
                                         f"{p.serving_renew_before}: renewed from CA serial {ca.serial:x}",
                        _data(ca, _issue(ca, now, p), previous))
    expected = _data(ca, serving, previous)
    if dict(data).get(CA_BUNDLE) != expected[CA_BUNDLE] or dict(data).get(CA_PREVIOUS) != expected.get(CA_PREVIOUS):
        return Decision("repair-bundle", "the stored caBundle is not the CAs in use: rewritten", expected)
    return Decision("reuse", f"CA serial {ca.serial:x} and serving serial {serving.serial:x} are valid", dict(data))


def trusted_bundle(data: Data) -> bytes:
    """The caBundle the webhook configurations must carry for this Secret's data."""
    return data[CA_BUNDLE]


def serving_pair(data: Data) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) to serve."""
    return data[TLS_CERT], data[TLS_KEY]

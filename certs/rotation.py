"""Rotation on a certificate directory: renew the serving certificate, and roll the CA with an overlap bundle."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from certs.authority import (
    DEFAULT_CA_VALIDITY,
    CertsError,
    IssuedCert,
    ca_bundle_pem,
    create_ca,
    expires_within,
    is_signed_by,
    key_algorithm_of,
    reissue_serving,
)
from certs.files import CA_BUNDLE, CA_PREVIOUS, TLS_CERT, CertDir

__all__ = ["Outcome", "ca_common_name", "finish_ca_roll", "renew_serving", "start_ca_roll"]

CA_NAME_BASE = "rayqueue-webhook-ca"


@dataclass(frozen=True)
class Outcome:
    """What a rotation step did: `changed` is False when nothing was due; `lines` say it in words."""

    changed: bool
    lines: tuple[str, ...]
    serving: IssuedCert | None = None


def ca_common_name(now: dt.datetime, base: str = CA_NAME_BASE) -> str:
    """`base@<unix seconds>`, as Kubernetes names its self-signed CAs, so two generations differ by name."""
    return f"{base}@{int(now.timestamp())}"


def _day(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%SZ")


def renew_serving(
    d: CertDir, *, now: dt.datetime, within: dt.timedelta, force: bool, validity: dt.timedelta
) -> Outcome:
    """Re-issue tls.crt/tls.key from the current CA when they expire within `within` (or when forced).

    The new certificate keeps the subject, SANs and key algorithm, with a new key and serial. When
    the CA ends before now + validity the new certificate ends with the CA, and the outcome says so.
    """
    ca = d.load_ca()
    serving = d.load_serving()
    lines: list[str] = []
    expires = serving.not_after
    if not force and not expires_within(serving.certificate, now, within):
        left = (expires - now).days
        lines.append(
            f"{d.path(TLS_CERT)}: not due: expires {_day(expires)}, in {left} days, "
            f"outside the {within.days}-day renewal window (use --force to renew anyway)"
        )
        return Outcome(False, tuple(lines))
    if ca.not_after <= now + dt.timedelta(hours=1):
        raise CertsError(
            [
                f"{d.path('ca.crt')}: the CA expires {_day(ca.not_after)}, too soon to sign with: "
                f"roll the CA first (rotate --roll-ca start)"
            ]
        )
    if now + validity > ca.not_after:
        validity = ca.not_after - now
        lines.append(
            f"warning: the CA expires {_day(ca.not_after)}: the new serving certificate ends then too; "
            f"roll the CA (rotate --roll-ca start)"
        )
    new = reissue_serving(
        ca, serving.certificate, now=now, validity=validity, algorithm=key_algorithm_of(serving.private_key)
    )
    d.write_serving(new)
    lines.insert(
        0,
        f"{d.path(TLS_CERT)}: renewed: serial {new.serial:x}, expires {_day(new.not_after)} "
        f"(was serial {serving.serial:x}, expiring {_day(expires)})",
    )
    return Outcome(True, tuple(lines), new)


def start_ca_roll(d: CertDir, *, now: dt.datetime, validity: dt.timedelta = DEFAULT_CA_VALIDITY) -> Outcome:
    """Step 1 of a CA roll: a new CA signs from now on; the caBundle trusts the old and the new CA.

    The serving certificate is left alone (still signed by the old CA, which the bundle trusts).
    """
    if d.path(CA_PREVIOUS).exists():
        raise CertsError(
            [
                f"{d.path(CA_PREVIOUS)} exists: a CA roll is already in progress; finish it (rotate --roll-ca finish)"
            ]
        )
    old = d.load_ca()
    d.load_serving()  # refuse to start from a directory without a readable serving pair
    cns = old.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    base = str(cns[0].value).split("@", 1)[0] if cns else CA_NAME_BASE
    new = create_ca(
        now=now,
        common_name=ca_common_name(now, base),
        validity=validity,
        algorithm=key_algorithm_of(old.private_key),
    )
    d.write_previous_ca(old.certificate.public_bytes(serialization.Encoding.PEM))
    d.write_ca(new)
    d.write_bundle(ca_bundle_pem([old.certificate, new.certificate]))
    return Outcome(
        True,
        (
            f"{d.root}: new CA serial {new.serial:x} (expires {_day(new.not_after)}) now signs; "
            f"the old CA (serial {old.serial:x}) is kept in {CA_PREVIOUS}",
            f"{d.path(CA_BUNDLE)}: old + new CA. Next: inject it everywhere, wait until every apiserver "
            f"uses it, then `rotate --force` and roll out the new Secret, then `rotate --roll-ca finish`",
        ),
    )


def finish_ca_roll(d: CertDir) -> Outcome:
    """Step 3 of a CA roll: drop the old CA from the bundle, once the serving cert is from the new CA."""
    previous = d.load_previous_ca()
    if previous is None:
        raise CertsError([f"{d.path(CA_PREVIOUS)} does not exist: no CA roll is in progress"])
    ca = d.load_ca()
    serving = d.load_serving()
    if not is_signed_by(serving.certificate, ca.certificate):
        raise CertsError(
            [
                f"{d.path(TLS_CERT)} (serial {serving.serial:x}) is not signed by the new CA "
                f"(serial {ca.serial:x}): run `rotate --force` and roll out the new Secret first, "
                f"or servers would present a certificate no client trusts"
            ]
        )
    d.write_bundle(ca_bundle_pem([ca.certificate]))
    d.write_previous_ca(None)
    return Outcome(
        True,
        (
            f"{d.path(CA_BUNDLE)}: now the new CA only (serial {ca.serial:x}); the old CA "
            f"(serial {previous.serial_number:x}) is retired. Next: inject the bundle everywhere again",
        ),
    )

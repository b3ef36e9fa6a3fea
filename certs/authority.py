"""A small certificate authority: create the CA, issue and re-issue the webhook's serving certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "BACKDATE",
    "DEFAULT_CA_VALIDITY",
    "DEFAULT_SERVING_VALIDITY",
    "CertsError",
    "IssuedCert",
    "KeyAlgorithm",
    "PrivateKey",
    "ca_bundle_pem",
    "create_ca",
    "create_serving",
    "expires_within",
    "is_signed_by",
    "key_algorithm_of",
    "load_certificates",
    "load_issued",
    "reissue_serving",
    "service_dns_names",
]

KeyAlgorithm = Literal["ecdsa-p256", "rsa-2048"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

DEFAULT_CA_VALIDITY = dt.timedelta(days=3650)
DEFAULT_SERVING_VALIDITY = dt.timedelta(days=365)
# notBefore is set this far before "now" so a peer whose clock lags a little still accepts a fresh cert.
BACKDATE = dt.timedelta(minutes=5)

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class CertsError(ValueError):
    """Bad input for the certificate tooling; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True, eq=False)
class IssuedCert:
    """A certificate and its private key; equal when both are (key objects alone compare by identity)."""

    certificate: x509.Certificate
    private_key: PrivateKey

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IssuedCert):
            return NotImplemented
        return self.certificate == other.certificate and self.key_pem() == other.key_pem()

    def __hash__(self) -> int:
        return hash(self.certificate)

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc


# --- validation --------------------------------------------------------------------------------


def _is_dns_subdomain(name: str) -> bool:
    """A DNS-1123 subdomain, optionally with a leading wildcard label (`*.example.com`)."""
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    return all(len(label) <= 63 and _DNS1123_LABEL.match(label) for label in labels)


def _check_validity(field: str, validity: dt.timedelta, problems: list[str]) -> None:
    if validity <= dt.timedelta(0):
        problems.append(f"{field}: validity must be positive, got {validity}")


def _check_algorithm(algorithm: str, problems: list[str]) -> None:
    if algorithm not in get_args(KeyAlgorithm):
        problems.append(
            f"key algorithm {algorithm!r} is not supported: use one of {', '.join(get_args(KeyAlgorithm))}"
        )


def _check_service(service: str, namespace: str, problems: list[str]) -> None:
    if len(service) > 63 or not _DNS1035_LABEL.match(service):
        problems.append(
            f"service {service!r} is not a valid Service name (DNS-1035 label: lower-case letters, digits "
            f"and '-', starting with a letter, at most 63 characters)"
        )
    if len(namespace) > 63 or not _DNS1123_LABEL.match(namespace):
        problems.append(
            f"namespace {namespace!r} is not a valid namespace name (DNS-1123 label: lower-case letters, "
            f"digits and '-', at most 63 characters)"
        )


def _parse_ips(
    ips: Iterable[str], problems: list[str]
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    parsed: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for text in ips:
        try:
            parsed.append(ipaddress.ip_address(text))
        except ValueError:
            problems.append(f"IP SAN {text!r} is not an IPv4 or IPv6 address")
    return parsed


# --- building blocks ---------------------------------------------------------------------------


def _generate_key(algorithm: KeyAlgorithm) -> PrivateKey:
    if algorithm == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_algorithm_of(key: PrivateKey) -> KeyAlgorithm:
    """The algorithm name of an existing key, so a re-issued certificate keeps the kind of key it had."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa-2048"
    return "ecdsa-p256"


def _ski(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def service_dns_names(service: str, namespace: str) -> tuple[str, ...]:
    """The four names a client may use for an in-cluster Service: short, namespaced, .svc and the FQDN."""
    return (
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    )


def create_ca(
    *,
    now: dt.datetime,
    common_name: str = "rayqueue-webhook-ca",
    validity: dt.timedelta = DEFAULT_CA_VALIDITY,
    algorithm: KeyAlgorithm = "ecdsa-p256",
) -> IssuedCert:
    """A self-signed CA (pathlen 0: it signs serving certificates only) valid from now for `validity`."""
    problems: list[str] = []
    _check_validity("CA", validity, problems)
    _check_algorithm(algorithm, problems)
    if not common_name:
        problems.append("CA common name must not be empty")
    if problems:
        raise CertsError(problems)
    key = _generate_key(algorithm)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = _ski(key)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return IssuedCert(cert, key)


def _issue(
    ca: IssuedCert,
    *,
    common_name: str,
    dns_names: Sequence[str],
    ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address],
    now: dt.datetime,
    validity: dt.timedelta,
    algorithm: KeyAlgorithm,
) -> IssuedCert:
    not_after = now + validity
    ca_not_after = ca.not_after
    if not_after > ca_not_after:
        raise CertsError(
            [
                f"serving certificate would expire at {not_after.isoformat()}, after its CA "
                f"({ca_not_after.isoformat()}): shorten the validity or roll the CA first"
            ]
        )
    key = _generate_key(algorithm)
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(_ski(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )
    return IssuedCert(cert, key)


def create_serving(
    ca: IssuedCert,
    *,
    service: str,
    namespace: str,
    now: dt.datetime,
    validity: dt.timedelta = DEFAULT_SERVING_VALIDITY,
    extra_dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    algorithm: KeyAlgorithm = "ecdsa-p256",
) -> IssuedCert:
    """A serving certificate for Service `service` in `namespace`, signed by `ca`.

    SANs are the Service's four DNS names, then `extra_dns` (duplicates dropped, order kept), then `ips`.
    Every input problem is reported at once (CertsError).
    """
    problems: list[str] = []
    _check_service(service, namespace, problems)
    _check_validity("serving certificate", validity, problems)
    _check_algorithm(algorithm, problems)
    problems += [
        f"extra DNS name {name!r} is not a valid DNS name (DNS-1123 subdomain, optional leading '*.')"
        for name in extra_dns
        if not _is_dns_subdomain(name)
    ]
    parsed_ips = _parse_ips(ips, problems)
    if problems:
        raise CertsError(problems)
    names = list(dict.fromkeys([*service_dns_names(service, namespace), *extra_dns]))
    return _issue(
        ca,
        common_name=f"{service}.{namespace}.svc",
        dns_names=names,
        ips=list(dict.fromkeys(parsed_ips)),
        now=now,
        validity=validity,
        algorithm=algorithm,
    )


def reissue_serving(
    ca: IssuedCert,
    previous: x509.Certificate,
    *,
    now: dt.datetime,
    validity: dt.timedelta,
    algorithm: KeyAlgorithm,
) -> IssuedCert:
    """A fresh serving certificate (new key, new serial) with the subject and SANs of `previous`."""
    problems: list[str] = []
    _check_validity("serving certificate", validity, problems)
    _check_algorithm(algorithm, problems)
    try:
        san = previous.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        problems.append("the previous serving certificate has no subjectAltName: run `init` again")
        san = x509.SubjectAlternativeName([])
    cns = previous.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if problems:
        raise CertsError(problems)
    cn = str(cns[0].value) if cns else str(san.get_values_for_type(x509.DNSName)[0])
    return _issue(
        ca,
        common_name=cn,
        dns_names=san.get_values_for_type(x509.DNSName),
        ips=[
            ip
            for ip in san.get_values_for_type(x509.IPAddress)
            if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
        ],
        now=now,
        validity=validity,
        algorithm=algorithm,
    )


# --- reading and inspecting --------------------------------------------------------------------


def load_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; CertsError naming `what` if there is none or it is not PEM."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertsError([f"{what}: not a PEM certificate bundle ({exc})"]) from None
    return certs


def load_issued(cert_pem: bytes, key_pem: bytes, what: str) -> IssuedCert:
    """The first certificate of `cert_pem` with its key; CertsError if either is unreadable or they differ."""
    problems: list[str] = []
    certs: list[x509.Certificate] = []
    try:
        certs = load_certificates(cert_pem, f"{what} certificate")
    except CertsError as exc:
        problems += exc.problems
    key: PrivateKey | None = None
    try:
        loaded = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        problems.append(f"{what} key: not an unencrypted PEM private key ({exc})")
    else:
        if isinstance(loaded, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            key = loaded
        else:
            problems.append(f"{what} key: {type(loaded).__name__} is not supported (ECDSA or RSA only)")
    if certs and key is not None and certs[0].public_key() != key.public_key():
        problems.append(f"{what}: the private key does not belong to the certificate")
    if problems or key is None:
        raise CertsError(problems)
    return IssuedCert(certs[0], key)


def is_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key made `cert`'s signature (names must match too)."""
    if cert.issuer != issuer.subject:
        return False
    public = issuer.public_key()
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def expires_within(cert: x509.Certificate, now: dt.datetime, window: dt.timedelta) -> bool:
    """Whether `cert` expires at or before now + window (an expired cert does)."""
    return cert.not_valid_after_utc <= now + window


def ca_bundle_pem(cas: Iterable[x509.Certificate]) -> bytes:
    """The caBundle: each distinct CA once, in the order given (old first during a CA roll)."""
    seen: set[bytes] = set()
    out: list[bytes] = []
    for cert in cas:
        pem = cert.public_bytes(serialization.Encoding.PEM)
        if pem not in seen:
            seen.add(pem)
            out.append(pem)
    return b"".join(out)

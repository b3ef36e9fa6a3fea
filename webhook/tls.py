"""TLS for the webhook server: a TLS 1.2+ server context, and a reloader that swaps renewed cert files into it."""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from common.clock import Clock

__all__ = [
    "DEFAULT_RELOAD_INTERVAL",
    "CertLoadError",
    "CertReloader",
    "FileStamp",
    "load_pem_pair",
    "new_server_context",
    "server_context",
]

log = logging.getLogger(__name__)

DEFAULT_RELOAD_INTERVAL = 10.0  # seconds between looks at the files, at most one look per interval
# TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3 suites are not affected by set_ciphers).
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class CertLoadError(Exception):
    """A certificate/key pair that cannot be served: unreadable, not PEM, or a key of another certificate."""


def new_server_context() -> ssl.SSLContext:
    """A server context with rayqueue's TLS policy and no certificate yet: TLS 1.2+, ECDHE AEAD suites."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.set_ciphers(_TLS12_CIPHERS)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context serving the pair in `cert_file`/`key_file`; CertLoadError if they cannot be served."""
    ctx = new_server_context()
    _load_pair(ctx, _read_pair(cert_file, key_file))
    return ctx


@dataclass(frozen=True)
class FileStamp:
    """What tells one version of a file from the next without reading it."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        try:
            st = os.stat(path)  # follows symlinks: a Secret volume swaps its ..data link
        except OSError:
            return None
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class _Pair:
    cert_pem: bytes
    key_pem: bytes


@contextlib.contextmanager
def _as_path(data: bytes, name: str) -> Iterator[str]:
    """`data` behind a file name OpenSSL can open, without the key touching a disk where possible."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create(f"rayqueue-{name}", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="rayqueue-tls-") as tmp:  # created 0700
        path = Path(tmp) / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield str(path)


def _read_pair(cert_file: Path, key_file: Path) -> _Pair:
    """Both files, read once, checked to be PEM and to belong together (CertLoadError says which is wrong)."""
    try:
        pair = _Pair(cert_file.read_bytes(), key_file.read_bytes())
    except OSError as exc:
        raise CertLoadError(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        cert = x509.load_pem_x509_certificates(pair.cert_pem)[0]
    except ValueError:
        raise CertLoadError(f"{cert_file} is not a PEM certificate ({len(pair.cert_pem)} bytes)") from None
    try:
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
    except (ValueError, TypeError):
        raise CertLoadError(
            f"{key_file} is not an unencrypted PEM private key ({len(pair.key_pem)} bytes)"
        ) from None
    if key.public_key() != cert.public_key():
        raise CertLoadError(f"{key_file} is not the key of {cert_file} (serial {cert.serial_number:x})")
    return pair


def _load_pair(ctx: ssl.SSLContext, pair: _Pair) -> None:
    """Load the pair into `ctx` from memory (both halves from the same read of the files)."""
    with _as_path(pair.cert_pem, "tls.crt") as cert_path, _as_path(pair.key_pem, "tls.key") as key_path:
        try:
            ctx.load_cert_chain(cert_path, key_path)
        except OSError as exc:  # ssl.SSLError included
            raise CertLoadError(f"OpenSSL refused the pair: {exc}") from None


def load_pem_pair(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> str:
    """Serve the pair given in memory (a self-managed Secret's) from now on; its description. The pair is tried on a
    scratch context first, so a bad one leaves `ctx` serving what it served (CertLoadError)."""
    pair = _Pair(cert_pem, key_pem)
    _load_pair(new_server_context(), pair)
    _load_pair(ctx, pair)
    return _describe(cert_pem)[1]


def _describe(cert_pem: bytes) -> tuple[int | None, str]:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return None, "serial ?"
    return cert.serial_number, (
        f"serial {cert.serial_number:x}, valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%SZ} "
        f"to {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}"
    )


class CertReloader:
    """Loads renewed cert/key files into the SAME server context, so new handshakes use them; no restart.

    A look at the files costs two stat() calls and happens at most once per `interval` seconds of
    the injected clock: call `maybe_reload()` whenever convenient, or `install()` it to run as a
    handshake starts (the handshake that notices a change is still served the pair it started
    with; every later one gets the new pair). A new pair is read once into memory, tried on a
    scratch context first, and only then loaded into the live one: a broken, half-written or
    mismatched pair is logged (once per version of the files) and the last good pair stays. It never
    raises, except at construction, where a pair that cannot be served is a startup error.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        cert_file: Path,
        key_file: Path,
        *,
        clock: Clock,
        interval: float = DEFAULT_RELOAD_INTERVAL,
    ) -> None:
        if interval < 0:
            raise ValueError(f"reload interval must not be negative, got {interval}")
        self._context = context
        self._cert_file = cert_file
        self._key_file = key_file
        self._clock = clock
        self._interval = interval
        self._next_look = clock.monotonic() + interval
        self.last_error: str | None = None
        stamps = self._stamps()
        pair = _read_pair(cert_file, key_file)
        _load_pair(context, pair)
        self._good = pair
        self._loaded: tuple[FileStamp | None, FileStamp | None] = stamps
        self._failed: tuple[FileStamp | None, FileStamp | None] | None = None
        self.serial, text = _describe(pair.cert_pem)
        log.info("serving certificate %s from %s", text, cert_file)
        self._warn_if_not_current(pair.cert_pem)

    def _stamps(self) -> tuple[FileStamp | None, FileStamp | None]:
        return FileStamp.of(self._cert_file), FileStamp.of(self._key_file)

    def install(self) -> None:
        """Look at the files (at most once per interval) as each TLS handshake starts."""
        self._context.sni_callback = self._on_client_hello

    def _on_client_hello(self, _sock: object, _server_name: str | None, _ctx: ssl.SSLContext) -> None:
        self.maybe_reload()

    def maybe_reload(self) -> bool:
        """Reload if at least `interval` passed since the last look and the files changed; True if loaded."""
        now = self._clock.monotonic()
        if now < self._next_look:
            return False
        self._next_look = now + self._interval
        return self.reload()

    def reload(self) -> bool:
        """Look now; load the files if they changed since the last load or failed attempt. Never raises."""
        try:
            return self._reload()
        except Exception:  # a reload problem must never take the server down
            log.exception("certificate reload failed unexpectedly; keeping the current pair")
            return False

    def _reload(self) -> bool:
        before = self._stamps()
        if before in (self._loaded, self._failed):
            return False
        if None in before:
            missing = self._cert_file if before[0] is None else self._key_file
            self._fail(before, f"{missing} is missing")
            return False
        try:
            pair = _read_pair(self._cert_file, self._key_file)
        except CertLoadError as exc:
            self._fail(before, str(exc))
            return False
        if self._stamps() != before:  # changed while we read: look again next time
            log.info("certificate files changed while being read; will look again")
            return False
        try:
            _load_pair(new_server_context(), pair)  # the trial: the live context is untouched on failure
        except CertLoadError as exc:
            self._fail(before, str(exc))
            return False
        try:
            _load_pair(self._context, pair)
        except CertLoadError as exc:  # passed the trial, so unexpected: put the last good pair back
            _load_pair(self._context, self._good)
            self._fail(before, str(exc))
            return False
        self._good, self._loaded, self._failed, self.last_error = pair, before, None, None
        old = self.serial
        self.serial, text = _describe(pair.cert_pem)
        log.info("reloaded serving certificate from %s: %s (was serial %x)", self._cert_file, text, old or 0)
        self._warn_if_not_current(pair.cert_pem)
        return True

    def _fail(self, stamps: tuple[FileStamp | None, FileStamp | None], reason: str) -> None:
        self._failed = stamps
        self.last_error = reason
        log.error(
            "not reloading %s / %s: %s; still serving serial %x",
            self._cert_file,
            self._key_file,
            reason,
            self.serial or 0,
        )

    def _warn_if_not_current(self, cert_pem: bytes) -> None:
        cert = x509.load_pem_x509_certificate(cert_pem)
        now = self._clock.now()
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            log.warning(
                "the reloaded certificate is not valid now (%s): valid %s to %s",
                now.isoformat(),
                cert.not_valid_before_utc.isoformat(),
                cert.not_valid_after_utc.isoformat(),
            )

"""The certificate directory on disk: file names, atomic writes (temp file + rename) and loading."""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from certs.authority import CertsError, IssuedCert, load_certificates, load_issued

__all__ = [
    "CA_BUNDLE",
    "CA_CERT",
    "CA_KEY",
    "CA_PREVIOUS",
    "CERT_MODE",
    "KEY_MODE",
    "TLS_CERT",
    "TLS_KEY",
    "CertDir",
    "write_atomic",
]

CA_CERT = "ca.crt"  # the CA that signs serving certificates
CA_KEY = "ca.key"
CA_PREVIOUS = "ca-previous.crt"  # during a CA roll: the CA being retired, still trusted
CA_BUNDLE = "ca-bundle.crt"  # what goes into caBundle: every trusted CA (previous first)
TLS_CERT = "tls.crt"  # the serving certificate
TLS_KEY = "tls.key"

KEY_MODE = 0o600
CERT_MODE = 0o644


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` so a reader sees either the old or the new file, never half of one.

    The temp file is created in the same directory (a rename is atomic only within one filesystem),
    gets `mode` before any byte is written (a key is never readable by others, even briefly), is
    flushed to disk, then renamed over `path`.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable; not every filesystem allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@dataclass(frozen=True)
class CertDir:
    """The files `init` writes and `rotate` updates, all in one directory."""

    root: Path

    def path(self, name: str) -> Path:
        return self.root / name

    def _read(self, name: str) -> bytes:
        p = self.path(name)
        try:
            return p.read_bytes()
        except FileNotFoundError:
            raise CertsError([f"{p} does not exist: run `rayqueue-certs init` first"]) from None
        except OSError as exc:
            raise CertsError([f"{p} cannot be read: {exc.strerror}"]) from None

    def existing(self) -> list[Path]:
        """Files of the layout that already exist (init refuses to overwrite them without --force)."""
        names = (CA_CERT, CA_KEY, CA_PREVIOUS, CA_BUNDLE, TLS_CERT, TLS_KEY)
        return [self.path(n) for n in names if self.path(n).exists()]

    def load_ca(self) -> IssuedCert:
        return load_issued(self._read(CA_CERT), self._read(CA_KEY), str(self.path(CA_CERT)))

    def load_serving(self) -> IssuedCert:
        return load_issued(self._read(TLS_CERT), self._read(TLS_KEY), str(self.path(TLS_CERT)))

    def load_previous_ca(self) -> x509.Certificate | None:
        p = self.path(CA_PREVIOUS)
        if not p.exists():
            return None
        return load_certificates(self._read(CA_PREVIOUS), str(p))[0]

    def bundle_pem(self) -> bytes:
        return self._read(CA_BUNDLE)

    def write_ca(self, ca: IssuedCert) -> None:
        # Key first: a reader that sees the new cert finds its key already in place.
        write_atomic(self.path(CA_KEY), ca.key_pem(), KEY_MODE)
        write_atomic(self.path(CA_CERT), ca.cert_pem(), CERT_MODE)

    def write_serving(self, serving: IssuedCert) -> None:
        write_atomic(self.path(TLS_KEY), serving.key_pem(), KEY_MODE)
        write_atomic(self.path(TLS_CERT), serving.cert_pem(), CERT_MODE)

    def write_bundle(self, bundle: bytes) -> None:
        write_atomic(self.path(CA_BUNDLE), bundle, CERT_MODE)

    def write_previous_ca(self, pem: bytes | None) -> None:
        if pem is None:
            with contextlib.suppress(FileNotFoundError):
                self.path(CA_PREVIOUS).unlink()
        else:
            write_atomic(self.path(CA_PREVIOUS), pem, CERT_MODE)

"""File-mounted credentials as SDS resources, named as Istio's agent names them.

- ``file-cert:<cert path>~<key path>``: a ``tls_certificate`` from the two PEM files;
- ``file-root:<path>``: a ``validation_context`` trusting the PEM bundle at ``path``;
- ``file-root:system``: the operating system's trust bundle (the first that exists of the usual
  locations), for DestinationRule TLS without ``caCertificates``.

Pilot names these instead of handing Envoy file names, so a file that is missing (or outside
the allowed directories) leaves the cluster or listener warming instead of failing the update.
The files are re-read every ``interval``; a change is pushed to the streams that asked for it.

A per-node agent serves many workloads from its own file system, so only files under the
configured directories are served (``--file-credential-dir``); an agent serving one workload
(``--token-file``, Istio's layout) serves any path it can read, as Istio's agent does.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

log = logging.getLogger(__name__)

FILE_CERT = "file-cert:"
FILE_ROOT = "file-root:"
SYSTEM_ROOT = "file-root:system"
#: where distributions keep the system trust bundle (Debian/Ubuntu, RHEL/Fedora, openSUSE, Alpine...)
SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
)


def is_file_credential(name: str) -> bool:
    return name.startswith((FILE_CERT, FILE_ROOT))


def system_bundle(candidates: tuple[str, ...] = SYSTEM_BUNDLES) -> Path | None:
    return next((Path(p) for p in candidates if Path(p).is_file()), None)


@dataclass(frozen=True, slots=True)
class _Files:
    """The files behind one resource name (one for a root, cert then key for a certificate)."""

    paths: tuple[Path, ...]
    root: bool


class FileCredentials:
    def __init__(self, allowed_dirs: tuple[Path, ...] | None, system: Path | None = None) -> None:
        """``allowed_dirs`` None: any readable path; else only paths under one of them."""
        self._allowed = None if allowed_dirs is None else tuple(d.resolve() for d in allowed_dirs)
        self._system = system if system is not None else system_bundle()
        self._versions: dict[str, str | None] = {}
        self._generation = 0
        self._changed = asyncio.Condition()
        self._refused: set[str] = set()

    @property
    def generation(self) -> int:
        return self._generation

    def handles(self, name: str) -> bool:
        return is_file_credential(name)

    def _files(self, name: str) -> _Files | None:
        if name == SYSTEM_ROOT:
            return _Files((self._system,), True) if self._system else None
        if name.startswith(FILE_ROOT):
            return _Files((Path(name[len(FILE_ROOT) :]),), True)
        cert, sep, key = name[len(FILE_CERT) :].partition("~")
        if not name.startswith(FILE_CERT) or not sep or not cert or not key:
            return None
        return _Files((Path(cert), Path(key)), False)

    def _permitted(self, name: str, files: _Files) -> bool:
        if self._allowed is None or name == SYSTEM_ROOT:
            return True
        for path in files.paths:
            real = path.resolve()
            if not path.is_absolute() or not any(real.is_relative_to(d) for d in self._allowed):
                if name not in self._refused:
                    self._refused.add(name)
                    log.warning("not serving %s: %s is outside --file-credential-dir", name, path)
                return False
        return True

    def _read(self, name: str) -> tuple[secret_pb2.Secret, str] | None:
        files = self._files(name)
        if files is None or not self._permitted(name, files):
            return None
        try:
            contents = [p.read_bytes() for p in files.paths]
        except OSError:
            return None  # not there (yet): the resource is not answered, Envoy keeps warming
        version = hashlib.sha256(b"\0".join(contents)).hexdigest()[:16]
        secret = secret_pb2.Secret(name=name)
        if files.root:
            secret.validation_context.CopyFrom(
                common_pb2.CertificateValidationContext(
                    trusted_ca=base_pb2.DataSource(inline_bytes=contents[0])
                )
            )
        else:
            secret.tls_certificate.CopyFrom(
                common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(inline_bytes=contents[0]),
                    private_key=base_pb2.DataSource(inline_bytes=contents[1]),
                )
            )
        return secret, version

    def get(self, name: str) -> tuple[secret_pb2.Secret, str] | None:
        """The resource and its version (a digest of the files), or None; watched from now on."""
        found = self._read(name)
        self._versions[name] = found[1] if found else None
        return found

    async def wait_changed(self, seen: int) -> int:
        async with self._changed:
            await self._changed.wait_for(lambda: self._generation != seen)
            return self._generation

    async def check(self) -> bool:
        """Re-read every watched resource; wake the streams if any changed (appeared, gone, new)."""
        changed = False
        for name, version in list(self._versions.items()):
            found = self._read(name)
            now = found[1] if found else None
            if now != version:
                self._versions[name] = now
                changed = True
        if changed:
            async with self._changed:
                self._generation += 1
                self._changed.notify_all()
        return changed

    async def watch(self, interval: float, stop: asyncio.Event) -> None:
        """Check the files every ``interval`` seconds until ``stop``."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
            if await self.check():
                log.info("file credentials changed")

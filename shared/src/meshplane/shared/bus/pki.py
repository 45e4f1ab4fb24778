"""The bus's own trust: a CA, nats-server's TLS certificate, one nkey per component, the server config.

``BusPki.create(dir)`` lays out (private files 0600)::

    ca.crt  ca.key                 the deployment's bus CA (clients verify the server with ca.crt)
    server.crt  server.key         nats-server's certificate (DNS and IP names it is reached by)
    auth.conf                      tls { } and authorization { users [...] } for nats-server
    <identity>/ca.crt              one directory per component: what it needs to connect
    <identity>/nkey.seed           (mounted from one Secret per component in Kubernetes)

``auth.conf`` lists each identity's public nkey with the allow lists of
:mod:`meshplane.shared.bus.identities`; nats-server is started with ``-c auth.conf`` and refuses
every connection that does not prove one of those keys over TLS.

Multi-cluster (:func:`federation_config`): each cluster's server has its own JetStream domain (the
cluster ID). One server, the hub, listens for leafnode connections with the same certificate; the
others join it as leaves, each with a remote naming the hub's URL, the hub's CA and the seed of
the hub's ``federation`` identity (found in the hub's ``auth.conf`` like any user, so the leaf
connection has that identity's least-privilege permissions in both directions).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

import nkeys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshplane.shared.bus.identities import ADMIN, ROLES, role

CA_FILE = "ca.crt"
SEED_FILE = "nkey.seed"
SERVER_CONFIG = "auth.conf"

#: Names nats-server answers to: loopback for the local mesh, the Service names in k8s/ and compose.
DEFAULT_SERVER_NAMES = (
    "localhost",
    "127.0.0.1",
    "nats",
    "nats.meshplane-system.svc",
    "nats.meshplane-system.svc.cluster.local",
    "*.nats.meshplane-system.svc.cluster.local",
    "*.nats-headless.meshplane-system.svc.cluster.local",  # cluster routes between servers (prod)
)
VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class BusCredentials:
    """What one client needs: the CA to verify the server by, and its nkey seed."""

    ca_file: Path
    seed_file: Path
    identity: str

    @classmethod
    def from_dir(cls, directory: str | Path, identity: str) -> BusCredentials:
        """Read ``ca.crt`` and ``nkey.seed`` from ``directory``; a clear error when one is missing."""
        d = Path(directory)
        creds = cls(d / CA_FILE, d / SEED_FILE, identity)
        for f in (creds.ca_file, creds.seed_file):
            if not f.is_file():
                raise FileNotFoundError(f"bus credentials for {identity!r}: {f} does not exist")
        return creds


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def make_ca(common_name: str = "meshplane bus CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed P-256 CA (also the Galley webhook's, made by ``meshctl install``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshplane"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    names: tuple[str, ...],
    common_name: str = "nats",
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A serving certificate for ``names`` (DNS names or IPs) signed by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # client auth too: servers of a cluster dial each other's routes with it
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(_san(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def new_seed() -> bytes:
    """A fresh NATS user nkey seed (``SU...``)."""
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))


def public_key(seed: bytes) -> str:
    """The public nkey (``U...``) of a user seed."""
    return str(nkeys.from_seed(bytearray(seed)).public_key.decode())


def _user_entry(identity: str, seed: bytes) -> dict[str, object]:
    entry: dict[str, object] = {"nkey": public_key(seed)}
    r = role(identity)
    if r is not None:
        entry["permissions"] = {
            "publish": {"allow": r.publish_allow()},
            "subscribe": {"allow": r.subscribe_allow()},
        }
    return entry


def authorization_config(users: dict[str, bytes]) -> str:
    """The ``authorization { users [...] }`` block: one user per identity (``users`` maps identity
    to seed; only the public key is written) with its allow lists."""
    auth = {"users": [_user_entry(i, s) for i, s in sorted(users.items())]}
    return f"authorization: {json.dumps(auth, indent=2)}\n"


def server_config(users: dict[str, bytes], cert_dir: str) -> str:
    """nats-server config: TLS with ``server.crt``/``server.key`` under ``cert_dir``, and the users."""
    d = cert_dir.rstrip("/")
    tls = {"cert_file": f"{d}/server.crt", "key_file": f"{d}/server.key", "timeout": 5}
    return (
        "# meshplane bus: TLS on every connection, one nkey per component (meshplane.shared.bus.pki)\n"
        f"tls: {json.dumps(tls, indent=2)}\n" + authorization_config(users)
    )


@dataclass(frozen=True)
class LeafRemote:
    """A hub this server joins as a leafnode: its leafnode URL, and the hub's bus CA and
    ``federation`` seed (``<hub bus dir>/federation/``; ``None`` for both on a plaintext bus)."""

    url: str
    seed_file: Path | None = None
    ca_file: Path | None = None

    @classmethod
    def from_dir(cls, url: str, directory: str | Path) -> LeafRemote:
        """The remote with the ``ca.crt`` and ``nkey.seed`` in ``directory`` (the hub's
        ``federation`` credentials, e.g. a mounted Secret)."""
        creds = BusCredentials.from_dir(directory, "federation")
        return cls(url, creds.seed_file, creds.ca_file)


def federation_config(
    *,
    domain: str = "",
    leafnode_listen: str = "",
    remotes: tuple[LeafRemote, ...] = (),
    cert_dir: str | None = None,
) -> str:
    """nats-server config for multi-cluster: the JetStream ``domain``, a leafnode listener on
    ``leafnode_listen`` (host:port; TLS with ``server.crt``/``server.key`` under ``cert_dir``
    when given) and the leaf ``remotes``. The seeds are written inline (nats-server reads a
    remote's seed only from its config), so the file must be private."""
    out: list[str] = []
    if domain:
        out.append(f"jetstream: {json.dumps({'domain': domain})}")
    leaf: dict[str, object] = {}
    if leafnode_listen:
        leaf["listen"] = leafnode_listen
        if cert_dir is not None:
            d = cert_dir.rstrip("/")
            leaf["tls"] = {"cert_file": f"{d}/server.crt", "key_file": f"{d}/server.key", "timeout": 5}
    if remotes:
        leaf["remotes"] = [_remote_entry(r) for r in remotes]
        leaf["reconnect"] = 1  # seconds between attempts to reach a hub that went away
    if leaf:
        out.append(f"leafnodes: {json.dumps(leaf, indent=2)}")
    return "".join(f"{block}\n" for block in out)


def _remote_entry(remote: LeafRemote) -> dict[str, object]:
    entry: dict[str, object] = {"url": remote.url}
    if remote.seed_file is not None:
        entry["nkey"] = remote.seed_file.read_text().strip()
    if remote.ca_file is not None:
        entry["tls"] = {"ca_file": str(remote.ca_file.resolve()), "timeout": 5}
    return entry


@dataclass(frozen=True)
class BusPki:
    """A bus directory made by :meth:`create` (or found by :meth:`load`)."""

    root: Path

    @property
    def ca_file(self) -> Path:
        return self.root / CA_FILE

    @property
    def server_config(self) -> Path:
        return self.root / SERVER_CONFIG

    def credentials(self, identity: str) -> BusCredentials:
        return BusCredentials.from_dir(self.root / identity, identity)

    @classmethod
    def load(cls, root: str | Path) -> BusPki:
        pki = cls(Path(root))
        if not pki.server_config.is_file() or not pki.ca_file.is_file():
            raise FileNotFoundError(f"{root} is not a bus directory (no {SERVER_CONFIG} or {CA_FILE})")
        return pki

    @classmethod
    def create(
        cls,
        root: str | Path,
        *,
        admin: bool = False,
        server_names: tuple[str, ...] = DEFAULT_SERVER_NAMES,
    ) -> BusPki:
        """Make a CA, nats-server's certificate and a seed per component under ``root``.

        ``admin`` adds the unrestricted :data:`ADMIN` identity (test harnesses only).
        """
        pki = cls(Path(root))
        pki.root.mkdir(parents=True, exist_ok=True)
        os.chmod(pki.root, 0o700)
        ca_key, ca = make_ca()
        srv_key, srv = make_server_cert(ca_key, ca, server_names)
        ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        pki.ca_file.write_bytes(ca_pem)
        _write_private(pki.root / "ca.key", key_pem(ca_key))
        (pki.root / "server.crt").write_bytes(srv.public_bytes(serialization.Encoding.PEM))
        _write_private(pki.root / "server.key", key_pem(srv_key))
        identities = [*ROLES, *([ADMIN] if admin else [])]
        users = {i: new_seed() for i in identities}
        for identity, seed in users.items():
            (pki.root / identity).mkdir(mode=0o700, exist_ok=True)
            (pki.root / identity / CA_FILE).write_bytes(ca_pem)
            _write_private(pki.root / identity / SEED_FILE, seed + b"\n")
        _write_private(pki.server_config, server_config(users, str(pki.root.resolve())).encode())
        return pki

    def seeds(self) -> dict[str, bytes]:
        """Every identity's seed, from its directory."""
        return {
            d.name: (d / SEED_FILE).read_bytes().strip()
            for d in sorted(self.root.iterdir())
            if (d / SEED_FILE).is_file()
        }

    def kubernetes_secrets(self, namespace: str = "meshplane-system") -> list[dict[str, object]]:
        """The Secrets ``k8s/`` mounts: ``nats-tls`` (server certificate and CA), ``nats-auth``
        (``authorization.conf``) and one ``meshplane-bus-<identity>`` per component."""

        def secret(name: str, files: dict[str, bytes]) -> dict[str, object]:
            data = {k: base64.b64encode(v).decode() for k, v in files.items()}
            meta = {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/part-of": "meshplane"},
            }
            return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta, "data": data}

        ca = self.ca_file.read_bytes()
        seeds = self.seeds()
        out = [
            secret(
                "nats-tls",
                {
                    "tls.crt": (self.root / "server.crt").read_bytes(),
                    "tls.key": (self.root / "server.key").read_bytes(),
                    "ca.crt": ca,
                },
            ),
            secret("nats-auth", {"authorization.conf": authorization_config(seeds).encode()}),
        ]
        out += [
            secret(f"meshplane-bus-{i}", {CA_FILE: ca, SEED_FILE: seed + b"\n"})
            for i, seed in seeds.items()
            if i != ADMIN
        ]
        return out

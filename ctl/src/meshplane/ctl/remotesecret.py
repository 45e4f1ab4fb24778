"""``meshctl create-remote-secret``: what another cluster's bus needs to join this one's (multi-cluster).

Istio's ``istioctl create-remote-secret --name cluster1`` prints a Secret holding a kubeconfig for
cluster1's API server; applied in another cluster, it lets that cluster's istiod read cluster1's
registry. Here clusters are joined by their buses: this cluster's nats-server (the hub) accepts
leafnode connections, and another cluster's nats-server joins it as a leaf with the hub's
``federation`` identity, which may only read the registry and components buckets
(``meshplane.shared.bus.identities``). So the "remote secret" is that identity's credentials:

* ``ca.crt``: the hub's bus CA (the leaf verifies the hub's TLS certificate by it);
* ``nkey.seed``: the ``federation`` identity's nkey seed;
* ``url``: the hub's leafnode URL (``nats-leaf://host:port``).

By default a Kubernetes Secret ``meshplane-remote-secret-<name>`` is printed (labels and
annotation as Istio's: ``istio/multiCluster: "true"``, ``networking.istio.io/cluster: <name>``);
``--output-dir`` writes the three files instead (mode 0600), which ``meshctl up`` uses for a
leaf cluster's nats-server (``meshplane.shared.bus.pki.LeafRemote.from_dir``).
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import sys
from pathlib import Path

import yaml

from meshplane.ctl.errors import EXIT_OK, EXIT_USAGE, error
from meshplane.shared.bus.pki import CA_FILE, SEED_FILE, BusCredentials

FEDERATION = "federation"
URL_FILE = "url"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_URL = re.compile(r"^(nats-leaf|tls|nats)://[^/\s:]+:\d{1,5}$")


class RemoteSecretError(ValueError):
    pass


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "create-remote-secret", help="print the credentials another cluster's bus uses to join this one's"
    )
    p.add_argument("--name", required=True, help="this cluster's ID (the Secret is named after it)")
    p.add_argument(
        "--bus-dir",
        required=True,
        type=Path,
        help="this cluster's bus directory (meshctl bus-credentials; holds federation/ca.crt and nkey.seed)",
    )
    p.add_argument("--leafnode-url", required=True, help="where this cluster's nats-server accepts leafnodes")
    p.add_argument("--namespace", default="meshplane-system", help="namespace of the Secret")
    p.add_argument("--output-dir", type=Path, help="write ca.crt, nkey.seed and url here instead of a Secret")
    p.set_defaults(func=run)


def _credentials(bus_dir: Path) -> BusCredentials:
    try:
        return BusCredentials.from_dir(bus_dir / FEDERATION, FEDERATION)
    except FileNotFoundError as exc:
        raise RemoteSecretError(
            f"--bus-dir {bus_dir}: no {FEDERATION} identity ({exc}); make the bus directory with this "
            "meshplane's meshctl bus-credentials"
        ) from None


def _check_url(url: str) -> None:
    if not _URL.match(url):
        raise RemoteSecretError(f"--leafnode-url {url!r}: expected nats-leaf://HOST:PORT")


def remote_secret(name: str, bus_dir: Path, url: str, namespace: str) -> dict[str, object]:
    """The Secret (Istio's shape) holding this cluster's federation credentials and leafnode URL."""
    if not _NAME.match(name):
        raise RemoteSecretError(f"--name {name!r}: expected a DNS label (lower case letters, digits, '-')")
    _check_url(url)
    creds = _credentials(bus_dir)
    files = {
        CA_FILE: creds.ca_file.read_bytes(),
        SEED_FILE: creds.seed_file.read_bytes(),
        URL_FILE: url.encode(),
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": f"meshplane-remote-secret-{name}",
            "namespace": namespace,
            "labels": {"istio/multiCluster": "true"},
            "annotations": {"networking.istio.io/cluster": name},
        },
        "data": {k: base64.b64encode(v).decode() for k, v in files.items()},
    }


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def write_remote_secret(bus_dir: Path, url: str, out: Path) -> Path:
    """Write ``ca.crt``, ``nkey.seed`` (0600) and ``url`` into ``out`` (made 0700); return it."""
    _check_url(url)
    creds = _credentials(bus_dir)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(out / CA_FILE, creds.ca_file.read_bytes())
    _write_private(out / SEED_FILE, creds.seed_file.read_bytes())
    _write_private(out / URL_FILE, url.encode() + b"\n")
    return out


def run(args: argparse.Namespace) -> int:
    try:
        if args.output_dir is not None:
            out = write_remote_secret(args.bus_dir, args.leafnode_url, args.output_dir)
            print(f"wrote {out}/{{{CA_FILE},{SEED_FILE},{URL_FILE}}}: the leaf's remote for {args.name}")
        else:
            secret = remote_secret(args.name, args.bus_dir, args.leafnode_url, args.namespace)
            yaml.safe_dump(secret, sys.stdout, sort_keys=False)
    except RemoteSecretError as exc:
        error("create-remote-secret", str(exc))
        return EXIT_USAGE
    except OSError as exc:
        error("create-remote-secret", f"{exc.filename}: {exc.strerror}")
        return EXIT_USAGE
    return EXIT_OK

"""``meshctl bus-credentials``: a bus directory for a deployment (CA, server certificate, one nkey
per component), and with ``--kubernetes`` the Secrets ``k8s/`` mounts, as YAML on stdout.

``meshctl up`` makes its own under ``.state/bus``; this is for Kubernetes and docker-compose:

    meshctl bus-credentials --out bus/ --kubernetes | kubectl apply -f -
"""

from __future__ import annotations

import argparse
import sys

import yaml

from meshplane.ctl.errors import EXIT_OK, EXIT_USAGE, error
from meshplane.shared.bus.pki import BusPki


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bus-credentials", help="make the bus's CA, server certificate and component keys")
    p.add_argument("--out", required=True, help="directory to write (private files 0600)")
    p.add_argument("--namespace", default="meshplane-system", help="of the Kubernetes Secrets")
    p.add_argument("--kubernetes", action="store_true", help="print the Kubernetes Secrets as YAML")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        pki = BusPki.create(args.out)
    except OSError as exc:
        error("bus-credentials", f"cannot write {args.out}: {exc.strerror or exc}")
        return EXIT_USAGE
    if args.kubernetes:
        yaml.safe_dump_all(pki.kubernetes_secrets(args.namespace), sys.stdout, sort_keys=False)
    else:
        print(f"bus credentials in {pki.root}: nats-server -c {pki.server_config}; a directory per component")
    return EXIT_OK

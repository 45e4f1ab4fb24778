"""The Secrets an install needs and the manifests do not carry: the bus's credentials and Galley's
webhook certificate.

Each is made only when it is missing, so an upgrade never replaces a CA that workloads already
trust. The keys are made in this process and go only into the cluster's Secrets; nothing is
written to disk (for credentials kept outside the cluster, make them with ``meshctl
bus-credentials --out DIR --kubernetes`` and a certificate manager before installing: existing
Secrets are left as they are). The Secrets carry the install's labels, so uninstall removes them.
"""

from __future__ import annotations

import base64
import tempfile
from typing import Any

from cryptography.hazmat.primitives import serialization

from meshplane.ctl.install.cluster import Cluster
from meshplane.ctl.install.render import LABEL_COMPONENT, LABEL_OWNER, LABEL_OWNER_NS, LABEL_REV, Manifest
from meshplane.shared.bus.pki import DEFAULT_SERVER_NAMES, BusPki, key_pem, make_ca, make_server_cert

GALLEY_TLS = "galley-tls"
BUS_SECRETS = "nats-tls"


def needed_secrets(cluster: Cluster, namespace: str, labels: dict[str, str]) -> list[Manifest]:
    """The Secrets missing in ``namespace``, made now; the caller creates them."""
    made: list[Manifest] = []
    if not _exists(cluster, namespace, BUS_SECRETS):
        made += _bus_secrets(namespace)
    if not _exists(cluster, namespace, GALLEY_TLS):
        made.append(_galley_tls(namespace))
    for secret in made:
        secret["metadata"].setdefault("labels", {}).update(labels)
        secret["metadata"]["labels"][LABEL_COMPONENT] = "Base"
    return made


def create(cluster: Cluster, secret: Manifest) -> None:
    cluster.resource("v1", "Secret").create(body=secret, namespace=secret["metadata"]["namespace"])


def prepare(cluster: Cluster, objects: list[Manifest]) -> None:
    """Before the rest of an install: its namespaces, then the Secrets the control plane's lacks."""
    for obj in objects:
        if obj["kind"] == "Namespace":
            cluster.apply(obj)
    labels: dict[str, str] = next((o["metadata"]["labels"] for o in objects if o["kind"] != "Namespace"), {})
    namespace = labels.get(LABEL_OWNER_NS)
    if not any(o["kind"] == "Namespace" and o["metadata"]["name"] == namespace for o in objects):
        return  # no Base component: nothing of the control plane to give Secrets to
    owned = {k: v for k, v in labels.items() if k in (LABEL_OWNER, LABEL_OWNER_NS, LABEL_REV)}
    for secret in needed_secrets(cluster, str(namespace), owned):
        create(cluster, secret)
        cluster.say(f"  created Secret {namespace}/{secret['metadata']['name']}")


def _exists(cluster: Cluster, namespace: str, name: str) -> bool:
    from kubernetes.dynamic.exceptions import NotFoundError

    try:
        cluster.resource("v1", "Secret").get(name=name, namespace=namespace)
    except NotFoundError:
        return False
    return True


def _bus_secrets(namespace: str) -> list[Manifest]:
    names = tuple(n.replace("meshplane-system", namespace) for n in DEFAULT_SERVER_NAMES)
    with tempfile.TemporaryDirectory(prefix="meshplane-bus-") as tmp:
        pki = BusPki.create(tmp, server_names=names)
        secrets: list[Any] = pki.kubernetes_secrets(namespace)
    return [dict(s) for s in secrets]


def _galley_tls(namespace: str) -> Manifest:
    """A ``kubernetes.io/tls`` Secret for ``galley.<ns>.svc`` with its issuer in ``ca.crt`` (the
    layout cert-manager writes); Galley puts the issuer into the webhooks' caBundle itself."""
    ca_key, ca = make_ca("meshplane webhook CA")
    names = (f"galley.{namespace}.svc", f"galley.{namespace}.svc.cluster.local")
    key, cert = make_server_cert(ca_key, ca, names, common_name=names[0])
    pem = serialization.Encoding.PEM
    files = {"tls.crt": cert.public_bytes(pem), "tls.key": key_pem(key), "ca.crt": ca.public_bytes(pem)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": GALLEY_TLS,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "meshplane"},
        },
        "data": {k: base64.b64encode(v).decode() for k, v in files.items()},
    }

"""The injector's settings and the names its templates use."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from meshplane.shared.version import __version__

Obj = dict[str, Any]

PROXY_IMAGE = f"meshplane/proxy:{__version__}"
PROXY_NAME = "istio-proxy"
VALIDATION_NAME = "istio-validation"

ANN_INJECT = "sidecar.istio.io/inject"
ANN_STATUS = "sidecar.istio.io/status"
ANN_TEMPLATES = "inject.istio.io/templates"
ANN_REV = "istio.io/rev"

#: The templates this injector knows (``inject.istio.io/templates``).
TEMPLATES = ("sidecar",)
#: Namespaces Istio never injects (IgnoredNamespaces).
IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})

SDS_DIR = "/var/run/secrets/workload-spiffe-uds"
#: Where the node agent DaemonSet serves SDS on the host (k8s/base/node-agent).
HOST_SDS_DIR = "/var/run/meshplane/workload-spiffe-uds"
TOKEN_DIR = "/var/run/secrets/tokens"
TOKEN_AUDIENCE = "istio-ca"

#: Istio's ports: Envoy admin, outbound and inbound capture, status, health, Envoy Prometheus,
#: and the validation probe port (``--iptables-probe-port``).
ADMIN_PORT = 15000
OUTBOUND_PORT = 15001
PROBE_PORT = 15002
INBOUND_PORT = 15006
STATUS_PORT = 15020
HEALTH_PORT = 15021
PROMETHEUS_PORT = 15090
PROXY_UID = 1337


class InjectError(ValueError):
    """A pod that cannot be injected; the message names what is wrong (an annotation, a field)."""


@dataclass(frozen=True)
class InjectorConfig:
    """What Istio keeps in the ``istio-sidecar-injector`` ConfigMap, as far as meshplane uses it."""

    #: ProxyConfig discoveryAddress: xDS over mutual TLS on Istio's 15012
    pilot: str = "pilot.meshplane-system.svc:15012"
    ca: str = "citadel.meshplane-system.svc:8060"
    image: str = PROXY_IMAGE
    #: traffic capture by the CNI plugin: pods get the ``istio-validation`` init container
    #: (``values.pilot.cni.enabled``); meshplane has no privileged ``istio-init`` alternative
    cni: bool = True
    #: ``enabled``: inject unless a pod opts out; ``disabled``: only pods that opt in
    policy: str = "enabled"
    revision: str = "default"

    def for_revision(self, revision: str) -> InjectorConfig:
        """This injector as revision ``revision``'s: its proxies get Pilot ``pilot-<revision>``
        (the revision's Service, next to the default's, same port) and record the revision.
        Citadel, the image and capture are shared by every revision."""
        if revision == self.revision:
            return self
        host, sep, port = self.pilot.rpartition(":")
        first, dot, rest = (host if sep else self.pilot).partition(".")
        pilot = f"{first}-{revision}{dot}{rest}" + (f":{port}" if sep else "")
        return replace(self, pilot=pilot, revision=revision)

"""What an injected pod gets: Istio's ``sidecar`` template for meshplane (facts: "What the
injected pod gets").

* ``istio-proxy`` (Envoy, bootstrapped by ``meshctl bootstrap`` against Pilot, certificates from
  the node agent DaemonSet's SDS socket — a hostPath directory — asked for with the pod's
  projected token, audience ``istio-ca``), last in ``containers``, with Istio's startup and
  readiness probes on ``15021 /healthz/ready`` (answered by the bootstrap's health listener);
* with CNI (meshplane's only capture), the ``istio-validation`` init container first: it fails
  the pod (exit 126) when the pod's traffic is not redirected; ``interceptionMode: NONE`` has none;
* ``sidecar.istio.io/status``, ``istio.io/rev``, ``kubectl.kubernetes.io/default-container`` and
  the labels ``security.istio.io/tlsMode``, ``service.istio.io/canonical-name`` and
  ``service.istio.io/canonical-revision``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from meshplane.shared.inject import annotations as ann
from meshplane.shared.inject import proxyconfig as pc
from meshplane.shared.inject.config import (
    ADMIN_PORT,
    ANN_REV,
    ANN_STATUS,
    HEALTH_PORT,
    HOST_SDS_DIR,
    INBOUND_PORT,
    OUTBOUND_PORT,
    PROBE_PORT,
    PROMETHEUS_PORT,
    PROXY_NAME,
    PROXY_UID,
    SDS_DIR,
    TOKEN_AUDIENCE,
    TOKEN_DIR,
    VALIDATION_NAME,
    InjectError,
    InjectorConfig,
    Obj,
)
from meshplane.shared.proxyconfig import ANNOTATION, ProxyConfigError, ProxyConfigs, ProxySettings

VOLUMES: list[Obj] = [
    {"name": "workload-socket", "hostPath": {"path": HOST_SDS_DIR, "type": "Directory"}},
    {
        "name": "istio-token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": TOKEN_AUDIENCE,
                        "expirationSeconds": 43200,
                        "path": "istio-token",
                    }
                }
            ]
        },
    },
    {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
    {
        "name": "istio-podinfo",
        "downwardAPI": {
            "items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
            ]
        },
    },
]

RESTRICTED: Obj = {
    "runAsUser": PROXY_UID,
    "runAsGroup": PROXY_UID,
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def _field_env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _int(annotations: dict[str, Any], key: str, default: int) -> int:
    return int(annotations[key]) if key in annotations else default


def _probes(annotations: dict[str, Any]) -> Obj:
    """Istio's startup and readiness probes, unless ``status.sidecar.istio.io/port: "0"``."""
    if annotations.get(ann.ANN_STATUS_PORT) == "0":
        return {}
    get = {"path": "/healthz/ready", "port": HEALTH_PORT}
    readiness = {
        "httpGet": dict(get),
        "initialDelaySeconds": _int(annotations, ann.ANN_READY_DELAY, 0),
        "periodSeconds": _int(annotations, ann.ANN_READY_PERIOD, 15),
        "timeoutSeconds": 3,
        "failureThreshold": _int(annotations, ann.ANN_READY_FAILURES, 4),
    }
    startup = {"httpGet": dict(get), "periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 600}
    return {"startupProbe": startup, "readinessProbe": readiness}


def _resources(annotations: dict[str, Any]) -> Obj:
    requests = {"cpu": annotations.get(ann.ANN_PROXY_CPU, "100m")}
    requests["memory"] = annotations.get(ann.ANN_PROXY_MEMORY, "128Mi")
    limits = {"cpu": annotations.get(ann.ANN_PROXY_CPU_LIMIT, "2")}
    limits["memory"] = annotations.get(ann.ANN_PROXY_MEMORY_LIMIT, "1Gi")
    return {"requests": requests, "limits": limits}


def proxy_container(
    workload: str,
    config: InjectorConfig,
    annotations: dict[str, Any],
    mode: str,
    proxy_config: dict[str, Any] | None = None,
) -> Obj:
    """``istio-proxy``; ``proxy_config`` is the pod's effective ProxyConfig (:mod:`.proxyconfig`)."""
    proxy = ProxySettings.of(proxy_config or {})
    pilot = proxy.discovery_address or config.pilot
    script = (
        "meshctl bootstrap --type sidecar "
        '--node-id "sidecar~${INSTANCE_IP}~${POD_NAME}.${POD_NAMESPACE}~${POD_NAMESPACE}.svc.cluster.local" '
        f"--pilot {pilot} --sds-socket {SDS_DIR}/socket --sds-token-path {TOKEN_DIR}/istio-token "
        f"--admin 127.0.0.1:{ADMIN_PORT} --health-port {HEALTH_PORT} --stats-port {PROMETHEUS_PORT} "
        f"--interception {mode} --revision {config.revision} "
        '--namespace "${POD_NAMESPACE}" --service-account "${SERVICE_ACCOUNT}" --ip "${INSTANCE_IP}" '
        '--labels "$(cat /etc/istio/pod/labels | tr -d \'"\' | paste -sd, -)" '
        f"-o /etc/istio/proxy/envoy.yaml && exec envoy -c /etc/istio/proxy/envoy.yaml {pc.envoy_args(proxy)} "
        f"-l {annotations.get(ann.ANN_LOG_LEVEL, 'warning')}"
    )
    user_mounts = ann.named_objects(annotations.get(ann.ANN_USER_VOLUME_MOUNT, "{}"))
    return {
        "name": PROXY_NAME,
        "image": annotations.get(ann.ANN_PROXY_IMAGE, pc.image(config.image, proxy)),
        "command": ["/bin/sh", "-c", script],
        "env": [
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
            _field_env("INSTANCE_IP", "status.podIP"),
            _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            {"name": "CA_ADDR", "value": config.ca},
            {"name": "ISTIO_META_WORKLOAD_NAME", "value": workload},
            {"name": "ISTIO_META_INTERCEPTION_MODE", "value": mode},
            *pc.env(proxy_config or {}, proxy),
        ],
        "ports": [{"containerPort": PROMETHEUS_PORT, "name": "http-envoy-prom", "protocol": "TCP"}],
        **_probes(annotations),
        **pc.lifecycle(proxy),
        "resources": _resources(annotations),
        "securityContext": copy.deepcopy(RESTRICTED),
        "volumeMounts": [
            {"name": "workload-socket", "mountPath": SDS_DIR},
            {"name": "istio-token", "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
            {"name": "istio-podinfo", "mountPath": "/etc/istio/pod"},
            *({**mount, "name": name} for name, mount in user_mounts.items()),
        ],
    }


def validation_container(config: InjectorConfig, proxy: ProxySettings | None = None) -> Obj:
    """``istio-validation``: as the proxy's user, checks that the CNI plugin's redirection is in
    place (``meshctl capture-validate``); exit 126 otherwise, so the pod never runs uncaptured."""
    return {
        "name": VALIDATION_NAME,
        "image": config.image,
        "command": ["meshctl", "capture-validate"],
        "args": ["-p", str(OUTBOUND_PORT), "-z", str(INBOUND_PORT), "-u", str(PROXY_UID)]
        + ["--probe-port", str(PROBE_PORT)],
        "resources": {"requests": {"cpu": "10m", "memory": "40Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "securityContext": copy.deepcopy(RESTRICTED),
        **({"env": pc.env({}, proxy)} if proxy and proxy.metadata else {}),
    }


def _list_of_objects(spec: Obj, key: str, required: bool) -> list[Obj]:
    value = spec.get(key)
    if value is None and not required:
        return []
    if required and (value is None or value == []):
        raise InjectError(f"spec.{key}: the pod has no containers")
    if not isinstance(value, list):
        raise InjectError(f"spec.{key}: expected a list of containers, got {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InjectError(f"spec.{key}[{index}]: expected a container object with a name")
    return value


def _parsed(pod: Obj) -> tuple[Obj, Obj, dict[str, Any], dict[str, Any]]:
    meta, spec = pod.setdefault("metadata", {}), pod.get("spec")
    if not isinstance(meta, dict):
        raise InjectError("metadata: expected an object")
    if not isinstance(spec, dict):
        raise InjectError("spec: expected an object")
    out = []
    for key in ("labels", "annotations"):
        value = meta.setdefault(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise InjectError(f"metadata.{key}: expected a map of strings")
        out.append(value)
    return meta, spec, out[0], out[1]


def inject_pod(
    pod: Obj,
    workload: str,
    config: InjectorConfig,
    proxy_configs: ProxyConfigs | None = None,
    namespace: str = "default",
) -> None:
    """Inject one pod or pod template in place; :class:`InjectError` names what is wrong with it.
    ``proxy_configs``: MeshConfig ``defaultConfig`` and the ProxyConfig resources, which with the
    pod's ``proxy.istio.io/config`` make its effective ProxyConfig (Istio's precedence)."""
    _meta, spec, labels, annotations = _parsed(pod)
    ann.validate_annotations(annotations)
    try:
        effective = (proxy_configs or ProxyConfigs()).effective(
            namespace, labels, annotations.get(ANNOTATION)
        )
        proxy = ProxySettings.of(effective, "the effective ProxyConfig")
    except ProxyConfigError as exc:
        raise InjectError(str(exc)) from None
    containers = _list_of_objects(spec, "containers", required=True)
    init = _list_of_objects(spec, "initContainers", required=False)
    if any(c["name"] in (PROXY_NAME, VALIDATION_NAME) for c in containers + init):
        raise InjectError(f"spec: the pod already has a container named {PROXY_NAME} or {VALIDATION_NAME}")
    volumes = spec.get("volumes") or []
    if not isinstance(volumes, list) or not all(isinstance(v, dict) for v in volumes):
        raise InjectError("spec.volumes: expected a list of volume objects")
    mode = annotations.get(ann.ANN_MODE, "REDIRECT")
    app = containers[0]["name"]
    sidecar = proxy_container(workload, config, annotations, mode, effective)
    # holdApplicationUntilProxyStarts: the proxy first, its postStart hook holding the app back
    if proxy.hold_application:
        containers.insert(0, sidecar)
    else:
        containers.append(sidecar)
    added_init: list[str] = []
    if config.cni and mode != "NONE":
        spec["initContainers"] = [validation_container(config, proxy), *init]
        added_init.append(VALIDATION_NAME)
    user_volumes = ann.named_objects(annotations.get(ann.ANN_USER_VOLUME, "{}"))
    taken = {v.get("name") for v in volumes}
    spec["volumes"] = volumes + [copy.deepcopy(v) for v in VOLUMES if v["name"] not in taken]
    spec["volumes"] += [
        {**volume, "name": name} for name, volume in user_volumes.items() if name not in taken
    ]
    annotations[ANN_STATUS] = json.dumps(
        {
            "initContainers": added_init or None,
            "containers": [PROXY_NAME],
            "volumes": [v["name"] for v in VOLUMES],
            "imagePullSecrets": None,
            "revision": config.revision,
        },
        separators=(",", ":"),
    )
    annotations[ANN_REV] = config.revision
    annotations.setdefault("kubectl.kubernetes.io/default-container", app)
    annotations.setdefault("kubectl.kubernetes.io/default-logs-container", app)
    labels.setdefault("security.istio.io/tlsMode", "istio")
    name = labels.get("app.kubernetes.io/name") or labels.get("app") or workload
    labels.setdefault("service.istio.io/canonical-name", name[:63])
    version = labels.get("app.kubernetes.io/version") or labels.get("version") or "latest"
    labels.setdefault("service.istio.io/canonical-revision", version)

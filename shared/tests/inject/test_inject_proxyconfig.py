"""What a pod's effective ProxyConfig changes in the injected pod (Istio's injector behaviour)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshplane.shared.inject import InjectError, InjectorConfig, inject_pod
from meshplane.shared.inject.proxyconfig import warnings
from meshplane.shared.proxyconfig import ProxyConfigs

CONFIG = InjectorConfig(pilot="pilot.meshplane-system.svc:15010", image="meshplane/proxy:1.0")


def injected(annotation: str | None = None, mesh: dict[str, Any] | None = None) -> dict[str, Any]:
    annotations = {} if annotation is None else {"proxy.istio.io/config": annotation}
    pod = {
        "metadata": {"name": "r", "labels": {"app": "reviews"}, "annotations": annotations},
        "spec": {"containers": [{"name": "reviews", "image": "reviews:1"}]},
    }
    inject_pod(pod, "reviews", CONFIG, ProxyConfigs.build(mesh, []), "shop")
    return pod


def proxy_of(pod: dict[str, Any]) -> dict[str, Any]:
    (proxy,) = (c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
    return dict(proxy)


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_without_proxy_config_the_proxy_is_as_before() -> None:
    pod = injected()
    proxy = proxy_of(pod)
    assert pod["spec"]["containers"][-1]["name"] == "istio-proxy"
    assert "--concurrency 2 " in proxy["command"][2] and "--drain-time-s" not in proxy["command"][2]
    assert "--pilot pilot.meshplane-system.svc:15010 " in proxy["command"][2]
    assert "PROXY_CONFIG" not in env_of(proxy) and "lifecycle" not in proxy
    assert proxy["image"] == "meshplane/proxy:1.0"


def test_the_effective_proxy_config_is_carried_by_the_proxy_container() -> None:
    mesh = {"discoveryAddress": "istiod.remote.example:15012", "proxyMetadata": {"DNS_AGENT": ""}}
    pod = injected("concurrency: 4\ndrainDuration: 20s\nimage: {imageType: distroless}", mesh)
    proxy = proxy_of(pod)
    script = proxy["command"][2]
    assert "--concurrency 4 --drain-time-s 20 --drain-strategy immediate " in script
    assert "--pilot istiod.remote.example:15012 " in script
    env = env_of(proxy)
    assert json.loads(env["PROXY_CONFIG"]) == {
        "concurrency": 4,
        "discoveryAddress": "istiod.remote.example:15012",
        "drainDuration": "20s",
        "image": {"imageType": "distroless"},
        "proxyMetadata": {"DNS_AGENT": ""},
    }
    assert env["DNS_AGENT"] == ""  # proxyMetadata: environment variables of the proxy...
    (validation,) = pod["spec"]["initContainers"]
    assert env_of(validation) == {"DNS_AGENT": ""}  # ...and of the init container, as Istio's
    assert proxy["image"] == "meshplane/proxy:1.0-distroless"


def test_concurrency_zero_means_every_core() -> None:
    script = proxy_of(injected("concurrency: 0"))["command"][2]
    assert "--concurrency" not in script


def test_hold_application_puts_the_proxy_first_and_waits_for_it() -> None:
    pod = injected("holdApplicationUntilProxyStarts: true")
    assert [c["name"] for c in pod["spec"]["containers"]] == ["istio-proxy", "reviews"]
    hook = pod["spec"]["containers"][0]["lifecycle"]["postStart"]["exec"]["command"]
    assert hook == ["meshctl", "wait", "--url", "http://127.0.0.1:15021/healthz/ready"]
    # the app stays the default container for kubectl
    assert pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "reviews"


def test_termination_drain_duration_is_a_pre_stop_drain() -> None:
    proxy = proxy_of(injected("terminationDrainDuration: 12s"))
    hook = proxy["lifecycle"]["preStop"]["exec"]["command"]
    assert hook == ["meshctl", "drain", "--admin", "127.0.0.1:15000", "--duration", "12s"]


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ("concurrency: many", "concurrency: expected a whole number >= 0, got 'many'"),
        ("drainDuration: [", "not valid YAML"),
        ("discoveryAddress: pilot", "discoveryAddress: expected HOST:PORT"),
    ],
)
def test_a_bad_annotation_refuses_injection_naming_it(annotation: str, message: str) -> None:
    with pytest.raises(InjectError, match="proxy.istio.io/config") as info:
        injected(annotation)
    assert message in str(info.value)


def test_fields_not_applied_are_warned_about() -> None:
    annotations = {
        "proxy.istio.io/config": "tracing: {sampling: 10}\nconcurrency: 2\n"
        "proxyHeaders: {server: {value: x}, attemptCount: {disabled: true}}"
    }
    assert warnings(annotations) == [
        "accepted, not applied by meshplane: proxy.istio.io/config proxyHeaders.attemptCount",
        "accepted, not applied by meshplane: proxy.istio.io/config tracing",
    ]
    assert warnings({"proxy.istio.io/config": "concurrency: 2"}) == []

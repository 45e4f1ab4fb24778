"""MeshConfig ext_authz providers (envoyExtAuthzHttp/Grpc): Istio's fields and defaults, bad values named."""

from __future__ import annotations

from datetime import timedelta

import pytest

from meshplane.shared.meshconfig import MeshConfigError, parse_mesh_config
from meshplane.shared.meshconfig_authz import ExtAuthzProvider, RequestBody

PROVIDERS = """
extensionProviders:
- name: http
  envoyExtAuthzHttp:
    service: ns/authz.ns.svc.cluster.local
    port: 8000
    timeout: 250ms
    pathPrefix: /check
    failOpen: true
    statusOnError: "503"
    includeHeadersInCheck: [x-old]
    includeRequestHeadersInCheck: [x-user, "x-pre-*"]
    includeAdditionalHeadersInCheck: {x-b: "2", x-a: "1"}
    headersToUpstreamOnAllow: [x-upstream]
    headersToDownstreamOnDeny: ["*-deny"]
    headersToDownstreamOnAllow: [x-ok]
    includeRequestBodyInCheck: {maxRequestBytes: 2048, packAsBytes: true}
- name: grpc
  envoyExtAuthzGrpc: {service: authz.ns.svc.cluster.local, port: 9000}
"""


def test_providers_parsed_with_istios_defaults() -> None:
    mesh = parse_mesh_config(PROVIDERS, "f")
    assert mesh.not_applied == ()
    http = mesh.ext_authz_provider("http")
    assert http == ExtAuthzProvider(
        grpc=False,
        service="ns/authz.ns.svc.cluster.local",
        port=8000,
        timeout=timedelta(milliseconds=250),
        fail_open=True,
        status_on_error=503,
        body=RequestBody(2048, False, True),
        path_prefix="/check",
        include_request_headers=("x-user", "x-pre-*"),
        include_headers_deprecated=("x-old",),
        include_additional_headers=(("x-a", "1"), ("x-b", "2")),
        headers_to_upstream_on_allow=("x-upstream",),
        headers_to_downstream_on_deny=("*-deny",),
        headers_to_downstream_on_allow=("x-ok",),
    )
    assert http.headers_in_check == ("x-user", "x-pre-*")  # the deprecated list only when unset
    assert mesh.ext_authz_provider("grpc") == ExtAuthzProvider(True, "authz.ns.svc.cluster.local", 9000)
    assert mesh.ext_authz_provider("grpc").timeout == timedelta(seconds=600)  # type: ignore[union-attr]
    assert mesh.file_log_provider("http") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("envoyExtAuthzHttp: {port: 80}", "(a).envoyExtAuthzHttp.service: must not be empty"),
        ("envoyExtAuthzHttp: {service: s, port: 0}", "port: must be in the range [1, 65535], found: 0"),
        ("envoyExtAuthzGrpc: {service: s, port: 1, timeout: soon}", ".timeout: invalid duration 'soon'"),
        ("envoyExtAuthzHttp: {service: s, port: 1, statusOnError: '418'}", "unsupported statusOnError '418'"),
        ("envoyExtAuthzHttp: {service: s, port: 1, pathPrefix: check}", "pathPrefix: must begin with '/'"),
        ("envoyExtAuthzHttp: {service: s, port: 1, headersToUpstreamOnAllow: ['*']}", "single wildcard"),
        ("envoyExtAuthzGrpc: {service: s, port: 1, pathPrefix: /x}", "unknown field(s) pathPrefix"),
        ("envoyExtAuthzGrpc: {service: s, port: 1, failOpen: 'yes'}", "failOpen: expected true or false"),
    ],
)
def test_bad_providers_name_the_field(body: str, message: str) -> None:
    with pytest.raises(MeshConfigError) as exc:
        parse_mesh_config(f"extensionProviders: [{{name: a, {body}}}]", "mesh.yaml")
    assert message in str(exc.value) and "mesh.yaml: extensionProviders[0] (a)" in str(exc.value)

"""DestinationRule SIMPLE and MUTUAL TLS → an ``UpstreamTlsContext``, as Istio builds it.

Certificates never reach Envoy as file names: a file Envoy cannot read makes it reject the whole
cluster update. As Istio's agent does, they are SDS resources the node agent serves:

- ``caCertificates`` → ``file-root:<path>``; ``clientCertificate``/``privateKey`` →
  ``file-cert:<cert>~<key>`` (a missing file leaves the cluster warming, never NACKed);
- ``credentialName`` → ``kubernetes://<name>`` (key and chain) and ``kubernetes://<name>-cacert``
  (roots). Istio honours it for gateways, and for sidecars only when the DestinationRule has a
  ``workloadSelector``; otherwise it is ignored with a warning;
- no CA at all and no ``insecureSkipVerify`` → ``file-root:system``, the OS trust bundle, as
  Istio's ``VERIFY_CERTIFICATE_AT_CLIENT`` (on by default since 1.20).

``subjectAltNames`` become SAN matchers only beside a trusted CA (Envoy rejects SAN checks
without one); ``insecureSkipVerify`` drops verification, SANs included.
"""

from __future__ import annotations

import logging
from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from meshplane.pilot.generators.common import sds_source
from meshplane.shared.config.models import ClientTLSMode, ClientTLSSettings

log = logging.getLogger(__name__)

FILE_ROOT = "file-root:"
FILE_CERT = "file-cert:"
#: Istio's name for the proxy's operating-system trust bundle.
SYSTEM_ROOTS = "file-root:system"
CREDENTIAL_PREFIX = "kubernetes://"
CA_SUFFIX = "-cacert"


def file_cert_name(cert: str, key: str) -> str:
    return f"{FILE_CERT}{cert}~{key}"


def file_root_name(path: str) -> str:
    return f"{FILE_ROOT}{path}"


_warned: set[tuple[Any, ...]] = set()


def _warn_once(message: str, *args: Any) -> None:
    """Clusters are rebuilt on every push: say each distinct thing once per process."""
    if args not in _warned:
        _warned.add(args)
        log.warning(message, *args)


def _sds(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=sds_source())


def san_matchers(sans: list[str]) -> list[common_pb2.SubjectAltNameMatcher]:
    """``spiffe://`` names match URI SANs; anything else matches DNS SANs (exactly)."""
    out = []
    for san in sans:
        kind = common_pb2.SubjectAltNameMatcher.URI if san.startswith("spiffe://") else None
        out.append(
            common_pb2.SubjectAltNameMatcher(
                san_type=kind or common_pb2.SubjectAltNameMatcher.DNS,
                matcher=string_pb2.StringMatcher(exact=san),
            )
        )
    return out


def upstream_tls(
    tls: ClientTLSSettings, default_sni: str, credential_allowed: bool, where: str = ""
) -> tls_pb2.UpstreamTlsContext:
    """The client TLS context for a SIMPLE or MUTUAL ``tls`` settings block.

    ``default_sni`` is used when ``sni`` is unset (empty: none). ``credential_allowed`` says
    whether ``credentialName`` may be used for this proxy; ``where`` names the rule in warnings.
    """
    mode = tls.mode or ClientTLSMode.SIMPLE
    ctx = tls_pb2.UpstreamTlsContext(sni=tls.sni or default_sni)
    common = ctx.common_tls_context
    common.tls_params.tls_maximum_protocol_version = common_pb2.TlsParameters.TLSv1_3
    cred = tls.credential_name or ""
    if cred and not credential_allowed:
        _warn_once(
            "%s: credentialName %r is ignored for sidecars unless the DestinationRule has a "
            "workloadSelector (as Istio)",
            where or "DestinationRule",
            cred,
        )
        cred = ""
    if mode is ClientTLSMode.MUTUAL:
        if cred:
            common.tls_certificate_sds_secret_configs.append(_sds(CREDENTIAL_PREFIX + cred))
        elif tls.client_certificate and tls.private_key:
            name = file_cert_name(tls.client_certificate, tls.private_key)
            common.tls_certificate_sds_secret_configs.append(_sds(name))
    if tls.insecure_skip_verify:
        return ctx
    if cred:
        roots = CREDENTIAL_PREFIX + cred + CA_SUFFIX
    elif tls.ca_certificates:
        roots = file_root_name(tls.ca_certificates)
    else:
        roots = SYSTEM_ROOTS
    combined = common.combined_validation_context
    combined.default_validation_context.SetInParent()  # Envoy requires it, even empty
    combined.default_validation_context.match_typed_subject_alt_names.extend(
        san_matchers(list(tls.subject_alt_names or []))
    )
    combined.validation_context_sds_secret_config.CopyFrom(_sds(roots))
    return ctx

"""Gateway (networking.istio.io): the servers (port, hosts, TLS) a gateway workload exposes."""

from __future__ import annotations

from enum import StrEnum

from meshplane.shared.config.models.base import IstioModel


class Port(IstioModel):
    number: int | None = None
    protocol: str | None = None
    name: str | None = None
    target_port: int | None = None


class ServerTLSMode(StrEnum):
    PASSTHROUGH = "PASSTHROUGH"
    SIMPLE = "SIMPLE"
    MUTUAL = "MUTUAL"
    AUTO_PASSTHROUGH = "AUTO_PASSTHROUGH"
    ISTIO_MUTUAL = "ISTIO_MUTUAL"
    OPTIONAL_MUTUAL = "OPTIONAL_MUTUAL"


class TLSProtocol(StrEnum):
    TLS_AUTO = "TLS_AUTO"
    TLSV1_0 = "TLSV1_0"
    TLSV1_1 = "TLSV1_1"
    TLSV1_2 = "TLSV1_2"
    TLSV1_3 = "TLSV1_3"


class TLSCertificate(IstioModel):
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None


class ServerTLSSettings(IstioModel):
    https_redirect: bool | None = None
    mode: ServerTLSMode | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    ca_cert_credential_name: str | None = None
    credential_name: str | None = None
    credential_names: list[str] | None = None
    tls_certificates: list[TLSCertificate] | None = None
    subject_alt_names: list[str] | None = None
    verify_certificate_spki: list[str] | None = None
    verify_certificate_hash: list[str] | None = None
    min_protocol_version: TLSProtocol | None = None
    max_protocol_version: TLSProtocol | None = None
    cipher_suites: list[str] | None = None


class Server(IstioModel):
    port: Port | None = None
    bind: str | None = None
    hosts: list[str] | None = None
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None


class Gateway(IstioModel):
    servers: list[Server] | None = None
    selector: dict[str, str] | None = None

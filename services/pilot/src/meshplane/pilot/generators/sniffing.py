"""Protocol sniffing, as Istio's protocol detection, for ports whose protocol is not declared.

A service port with no protocol Istio knows (unset, or a name such as ``db``) gets no HTTP filter
on raw TCP. Its listener gets the ``tls_inspector`` and ``http_inspector`` listener filters and a
filter chain per detected protocol: plaintext HTTP (transport ``raw_buffer``, application
protocols ``http/1.1``/``h2c``) goes to the HTTP connection manager, everything else (TLS from the
app, other protocols) to the TCP chains. The inspectors wait for the client's first bytes without
a timeout (MeshConfig ``protocolDetectionTimeout`` is off by default in Istio), so a server-first
protocol on such a port must declare its protocol, as Istio documents.

Inbound, under mutual TLS the connection is encrypted before any inspector could read it, so the
chains are told apart by the ALPN the client offers, as Istio's: ``istio-http/1.0``,
``istio-http/1.1`` and ``istio-h2`` are HTTP, the rest TCP. (Upstream Envoy's clients offer
``istio`` only, having no ``istio.alpn`` filter: their HTTP over mTLS to a sniffed port is carried
as TCP, without HTTP-level policy.)
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2

from meshplane.pilot.generators.common import pack
from meshplane.pilot.generators.filters import http_manager
from meshplane.pilot.generators.security.mtls import ISTIO_ALPN, add_tls_inspector

HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"
#: What ``http_inspector`` reports for plaintext HTTP/1.x and HTTP/2 with prior knowledge.
PLAIN_HTTP = ("http/1.0", "http/1.1", "h2c")
#: ALPN of Istio's sidecars sending HTTP over mutual TLS.
MTLS_HTTP = ("istio-http/1.0", "istio-http/1.1", "istio-h2")


def add_http_inspector(listener: listener_pb2.Listener) -> None:
    """The ``tls_inspector`` and ``http_inspector`` listener filters, once each, in Istio's order;
    no listener filter timeout (detection waits for the client's first bytes)."""
    add_tls_inspector(listener)
    if not any(f.name == HTTP_INSPECTOR for f in listener.listener_filters):
        listener.listener_filters.add(name=HTTP_INSPECTOR).typed_config.CopyFrom(
            pack(http_inspector_pb2.HttpInspector())
        )
    listener.listener_filters_timeout.SetInParent()  # 0: none
    listener.continue_on_listener_filters_timeout = True


def detect_http_outbound(listener: listener_pb2.Listener, port: int, stat_prefix: str) -> None:
    """Make an outbound TCP listener of a sniffed port detect HTTP: before each of its chains, an
    HTTP chain with the same destination match (CIDR ranges) that plaintext HTTP takes to route
    ``"<port>"``; the TCP chains keep every other connection."""
    if any(c.filter_chain_match.application_protocols for c in listener.filter_chains):
        return  # already detecting
    tcp = list(listener.filter_chains)
    http: list[lc.FilterChain] = []
    seen: list[lc.FilterChainMatch] = []
    for chain in tcp:
        if chain.filter_chain_match in seen:
            continue
        seen.append(chain.filter_chain_match)
        sniffed = lc.FilterChain(name=f"{chain.name}_http" if chain.name else "")
        sniffed.filter_chain_match.CopyFrom(chain.filter_chain_match)
        sniffed.filter_chain_match.transport_protocol = "raw_buffer"
        sniffed.filter_chain_match.application_protocols.extend(PLAIN_HTTP)
        sniffed.filters.append(http_manager(stat_prefix, rds=str(port)))
        http.append(sniffed)
    del listener.filter_chains[:]
    listener.filter_chains.extend([*http, *_with_plaintext(tcp)])
    add_http_inspector(listener)


def detect_http_inbound(
    http_chains: list[lc.FilterChain], tcp_chains: list[lc.FilterChain]
) -> list[lc.FilterChain]:
    """One inbound port's chains for both protocols (each list as ``mtls.inbound_chains`` made it
    for that protocol), told apart by transport and application protocols: plaintext by the
    ``http_inspector``, mutual TLS by ALPN; TLS from the app itself is carried as TCP."""
    out: list[lc.FilterChain] = []
    for chain in http_chains:
        match = chain.filter_chain_match
        if match.transport_protocol == "tls" and not _is_mtls(chain):
            continue  # the app's own TLS: opaque, only the TCP chain takes it
        del match.application_protocols[:]
        match.application_protocols.extend(MTLS_HTTP if _is_mtls(chain) else PLAIN_HTTP)
        if not match.transport_protocol:
            match.transport_protocol = "raw_buffer"
        chain.name = f"{chain.name}_http"
        out.append(chain)
    for chain in tcp_chains:
        match = chain.filter_chain_match
        if _is_mtls(chain) and match.application_protocols:
            del match.application_protocols[:]
            match.application_protocols.extend(a for a in ISTIO_ALPN if a not in MTLS_HTTP)
    return out + _with_plaintext(tcp_chains)


def _with_plaintext(tcp: list[lc.FilterChain]) -> list[lc.FilterChain]:
    """The TCP chains, each one matching any transport also copied for ``raw_buffer``. Envoy picks
    a chain level by level (transport, then application protocols) without going back: a
    plaintext connection that is not HTTP reaches the ``raw_buffer`` level of the HTTP chain and
    must find a TCP chain there; TLS from the app still takes the chain with no transport."""
    out = []
    for chain in tcp:
        if not chain.filter_chain_match.transport_protocol:
            plain = lc.FilterChain()
            plain.CopyFrom(chain)
            plain.name = f"{chain.name}_raw" if chain.name else ""
            plain.filter_chain_match.transport_protocol = "raw_buffer"
            out.append(plain)
        out.append(chain)
    return out


def _is_mtls(chain: lc.FilterChain) -> bool:
    """A chain terminating Istio mTLS (it has the workload's TLS context)."""
    return bool(chain.HasField("transport_socket"))

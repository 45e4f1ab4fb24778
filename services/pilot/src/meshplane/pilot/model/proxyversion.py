"""A proxy's version and the features gated by it (Istio's ``IstioVersion`` and
``VersionGreaterOrEqual``).

Pilot never refuses an old proxy. It reads two versions from the proxy's first request:

- node metadata ``ISTIO_VERSION``, parsed by Istio's rules (ParseIstioVersion): a ``release-``
  prefix is dropped, then ``MAJOR.MINOR[.PATCH]`` is read from the start; no patch means the
  newest patch (65535); anything unreadable, or nothing, means the newest version;
- Envoy's own build version (``Node.user_agent_build_version``), which Envoy always sends.

A feature of the table below is emitted only to proxies whose two versions are both at least its
minimum: an Istio release ``1.N`` ships Envoy ``1.(N+8)`` (Istio 1.31: Envoy 1.39; Istio 1.32,
which meshplane emulates: Envoy 1.40). Unknown versions count as newest, as in Istio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return "unknown (newest)" if self == NEWEST else f"{self.major}.{self.minor}.{self.patch}"


#: What an unknown version counts as (Istio's MaxIstioVersion).
NEWEST = Version(65535, 65535, 65535)
#: Istio ``1.N`` ships Envoy ``1.(N + ENVOY_MINOR_OFFSET)``.
ENVOY_MINOR_OFFSET = 8

_ISTIO = re.compile(r"^([1-9]+)\.([0-9]+)(\.([0-9]+))?")


def parse_istio_version(text: str) -> Version:
    """Istio's ParseIstioVersion: ``1.31.2`` → 1.31.2, ``release-1.31`` → 1.31.65535, ``""`` or
    ``meshplane-0.1.0`` → newest."""
    found = _ISTIO.match(text.removeprefix("release-"))
    if found is None:
        return NEWEST
    patch = int(found.group(4)) if found.group(4) is not None else 65535
    return Version(int(found.group(1)), int(found.group(2)), patch)


def envoy_build_version(node: base_pb2.Node | None) -> Version:
    """The Envoy release a node runs (``user_agent_build_version``); newest when it sent none."""
    if node is None or not node.HasField("user_agent_build_version"):
        return NEWEST
    v = node.user_agent_build_version.version
    if v.major_number == 0 and v.minor_number == 0:
        return NEWEST
    return Version(v.major_number, v.minor_number, v.patch)


@dataclass(frozen=True)
class Feature:
    """Config some proxies reject: emitted only when the proxy's Envoy is at least ``envoy``."""

    name: str
    envoy: Version
    what: str

    @property
    def istio(self) -> Version:
        """The Istio release that first ships ``envoy``."""
        return Version(self.envoy.major, self.envoy.minor - ENVOY_MINOR_OFFSET, 0)


#: Access-log command operators Envoy 1.40 added; Envoy 1.39 and older refuse the whole listener
#: ("Not supported field in StreamInfo"). Older proxies get ``-`` in their place (Envoy's text for
#: an absent value), so the log line keeps its columns.
ACCESS_LOG_OPERATORS_1_40 = Feature(
    "access-log-operators-1.40",
    Version(1, 40, 0),
    "access-log command operators %LISTENER_NAME%, %DOWNSTREAM_CX_RTT%, %ROUTE_RESOLUTION_TIME_US%, "
    "%ROUTE_RESOLUTION_COUNT%",
)
ACCESS_LOG_OPERATORS_1_40_NAMES = (
    "LISTENER_NAME",
    "DOWNSTREAM_CX_RTT",
    "ROUTE_RESOLUTION_TIME_US",
    "ROUTE_RESOLUTION_COUNT",
)

#: Every gated feature (the support matrix in README lists them).
FEATURES: tuple[Feature, ...] = (ACCESS_LOG_OPERATORS_1_40,)


@dataclass(frozen=True)
class ProxyVersion:
    """The two versions a proxy reported."""

    istio: Version = NEWEST
    envoy: Version = NEWEST

    def supports(self, feature: Feature) -> bool:
        """Istio's ``VersionGreaterOrEqual`` for both versions."""
        return self.envoy >= feature.envoy and self.istio >= feature.istio

    @property
    def unsupported(self) -> frozenset[str]:
        """Names of the gated features this proxy does not get (empty for current proxies)."""
        return frozenset(f.name for f in FEATURES if not self.supports(f))

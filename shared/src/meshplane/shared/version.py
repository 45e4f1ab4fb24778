"""meshplane's version: the one place it is written.

Every distribution's ``pyproject.toml`` reads it (hatch ``[tool.hatch.version] path``), and every
component reports it at run time (``meshctl version``, the bus announcements, Envoy's
``MESHPLANE_VERSION`` node metadata). Kubernetes image tags and Dockerfile comments repeat it; a test
keeps them equal.
"""

__version__ = "0.1.0"

#: The Istio release whose behaviour meshplane emulates (its defaults, names and xDS on Envoy 1.40).
#: meshplane's proxies send it as node metadata ``ISTIO_VERSION``: Pilot gates features by it, and
#: EnvoyFilter ``match.proxy.proxyVersion`` regexes match it, as with Istio's own proxies.
ISTIO_VERSION = "1.32.0"

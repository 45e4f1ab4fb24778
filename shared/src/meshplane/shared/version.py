"""meshplane's version: the one place it is written.

Every distribution's ``pyproject.toml`` reads it (hatch ``[tool.hatch.version] path``), and every
component reports it at run time (``meshctl version``, the bus announcements, Envoy's
``ISTIO_VERSION`` node metadata). Kubernetes image tags and Dockerfile comments repeat it; a test
keeps them equal.
"""

__version__ = "0.1.0"

"""meshctl, the meshplane command line."""

from meshplane.shared.version import __version__ as __version__

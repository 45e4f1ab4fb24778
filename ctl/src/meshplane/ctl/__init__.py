"""meshctl, the meshplane command line."""

__version__ = "0.1.0"

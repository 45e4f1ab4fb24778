"""Config sources: the directory of YAML (local mode) and the Kubernetes API."""

"""The service registry: Services and WorkloadInstances built from config and Kubernetes objects."""

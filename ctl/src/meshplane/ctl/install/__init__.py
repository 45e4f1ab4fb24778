"""Installing meshplane into a cluster: the install resource, its profiles, and rendering from k8s/."""

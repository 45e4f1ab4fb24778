"""The names of the buckets every component agrees on (their types: ``buckets``)."""

#: Istio config objects from Galley. Key: ``<group>.<Kind>.<namespace>.<name>``.
CONFIG_BUCKET = "mesh-config"
#: Registry services from Galley. Key: ``<namespace>.<hostname>``.
SERVICES_BUCKET = "mesh-services"
#: Registry workload instances from Galley. Key: ``<namespace>.<name>``.
WORKLOADS_BUCKET = "mesh-workloads"
#: Trust bundle from Citadel. Key: ``<trust-domain>``.
TRUST_BUCKET = "mesh-trust"
#: Proxy status from every Pilot replica. Key: ``<pilot-id>.<proxy-id>``.
PROXY_STATUS_BUCKET = "mesh-proxy-status"
#: Running components (meshctl version). Key: ``<component>.<instance>``.
COMPONENTS_BUCKET = "mesh-components"
#: WorkloadEntries auto-registered by Pilot for VMs (Istio's auto-registration), written by the
#: Pilot a proxy is connected to and read by every replica. Key: ``<namespace>.<name>``.
WORKLOAD_ENTRIES_BUCKET = "mesh-workload-entries"
#: Istio's MeshConfig from Galley (its ``--mesh-config`` file, or the ``istio`` ConfigMap), read by
#: Pilot and Citadel. One key, ``mesh`` (:mod:`meshplane.shared.meshconfig_bus`).
MESH_CONFIG_BUCKET = "mesh-meshconfig"

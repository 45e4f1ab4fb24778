"""The analyzers ``meshctl analyze`` runs, under istioctl's names (``meshctl analyze -L``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meshplane.shared.analysis import (
    annotation,
    conditions,
    deployment,
    destinationrule,
    envoyfilter,
    gateway,
    gatewayapi,
    injection,
    resources,
    selectors,
    serviceentry,
    virtualservice,
    vsdestinations,
    webhook,
)
from meshplane.shared.analysis.context import Context

#: Kinds without a namespace (named ``Kind name``).
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "Node",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ClusterRole",
        "ClusterRoleBinding",
    }
)


@dataclass(frozen=True, slots=True)
class Analyzer:
    name: str
    description: str
    codes: tuple[str, ...]
    run: Callable[[Context], None]


ALL: tuple[Analyzer, ...] = (
    Analyzer(
        "annotations.K8sAnalyzer",
        "Checks graph resources for misplaced and invalid Istio annotations",
        ("IST0107", "IST0108", "IST0125", "IST0135"),
        annotation.check,
    ),
    Analyzer(
        "applicationUID.Analyzer",
        "Checks invalid application UID",
        ("IST0144",),
        injection.check_application_uid,
    ),
    Analyzer(
        "auth.AuthorizationPoliciesAnalyzer",
        "Checks the validity of authorization policies",
        ("IST0101", "IST0127"),
        selectors.check_authorization,
    ),
    Analyzer(
        "destinationrule.CaCertificateAnalyzer",
        "Checks if caCertificates is set when TLS mode is SIMPLE/MUTUAL",
        ("IST0128", "IST0129"),
        destinationrule.check_server_verification,
    ),
    Analyzer(
        "authn.BlockedCIDRsAnalyzer",
        "Checks that istiod restricts JWKS URI fetches when RequestAuthentications exist",
        ("IST0175",),
        deployment.check_jwks_fetch,
    ),
    Analyzer(
        "conditions.ConditionAnalyzer",
        "Checks for negative status conditions on resources",
        ("IST0171",),
        conditions.check,
    ),
    Analyzer(
        "deployment.MultiServiceAnalyzer",
        "Checks association between services and pods",
        ("IST0116", "IST0137"),
        deployment.check,
    ),
    Analyzer(
        "deprecation.DeprecationAnalyzer",
        "Checks for deprecated Istio types and fields",
        ("IST0002",),
        resources.check_deprecation,
    ),
    Analyzer(
        "destinationrule.SubsetSelectPodAnalyzer",
        "Checks if pods are selected by subsets in destination rules.",
        ("IST0173", "IST0174"),
        destinationrule.check_subset_pods,
    ),
    Analyzer(
        "destinationrule.MTLSPolicyConflictAnalyzer",
        "Checks DestinationRule TLS modes against PeerAuthentication (meshplane; retired in Istio)",
        ("IST0113",),
        destinationrule.check_mtls_conflicts,
    ),
    Analyzer(
        "envoyfilter.EnvoyPatchAnalyzer",
        "Checks an envoyFilters ",
        ("IST0151", "IST0152", "IST0153", "IST0154", "IST0155"),
        envoyfilter.check,
    ),
    Analyzer(
        "externalcontrolplane.ExternalControlPlaneAnalyzer",
        "Checks that the remote IstioOperator resources reference an external control plane",
        ("IST0163", "IST0164"),
        webhook.check_external_control_plane,
    ),
    Analyzer(
        "gateway.CertificateAnalyzer",
        "Checks a gateway certificate",
        ("IST0138",),
        gateway.check_certificates,
    ),
    Analyzer(
        "gateway.ConflictingGatewayAnalyzer",
        "Checks a gateway's selector, port number and hosts",
        ("IST0101", "IST0145"),
        gateway.check_conflicts,
    ),
    Analyzer(
        "gateway.IngressGatewayPortAnalyzer",
        "Checks a gateway's ports against the gateway's Kubernetes service ports",
        ("IST0101", "IST0162"),
        gateway.check_ports,
    ),
    Analyzer(
        "gateway.SecretAnalyzer",
        "Checks a gateway's referenced secrets for correctness",
        ("IST0101", "IST0161"),
        gateway.check_secrets,
    ),
    Analyzer(
        "injection.Analyzer",
        "Checks conditions related to Istio sidecar injection",
        ("IST0102", "IST0123", "IST0148"),
        injection.check_namespaces,
    ),
    Analyzer(
        "injection.ImageAutoAnalyzer",
        "Makes sure that Pods and Deployments with `image: auto` are going to be injected",
        ("IST0146", "IST0147"),
        webhook.check_image_auto,
    ),
    Analyzer(
        "injection.ImageAnalyzer",
        "Checks the image of auto-injection configured with the running proxies on pods",
        ("IST0158",),
        injection.check_proxy_images,
    ),
    Analyzer(
        "injection.PodAnalyzer",
        "Checks that pods in injected namespaces run the Istio proxy",
        ("IST0103",),
        injection.check_pods,
    ),
    Analyzer(
        "k8sgateway.CRDVersionAnalyzer",
        "Checks that installed Gateway API CRDs meet the minimum bundle version",
        ("IST0176",),
        gatewayapi.check_crd_versions,
    ),
    Analyzer(
        "k8sgateway.SelectorAnalyzer",
        "Check for selector usage on Kubernetes Gateway pods (use targetRefs instead)",
        ("IST0166",),
        selectors.check_gateway_api_selectors,
    ),
    Analyzer(
        "meshnetworks.MeshNetworksAnalyzer",
        "Check the validity of MeshNetworks in the cluster",
        ("IST0126",),
        serviceentry.check_mesh_networks,
    ),
    Analyzer(
        "schema.ValidationAnalyzer",
        "Runs schema validation as an analyzer and reports any violations",
        ("IST0106", "IST0133"),
        resources.check_schema,
    ),
    Analyzer(
        "service.PortNameAnalyzer",
        "Checks the port names associated with each service",
        ("IST0118", "IST0150"),
        resources.check_port_names,
    ),
    Analyzer(
        "serviceentry.Analyzer",
        "Checks the validity of ServiceEntry",
        ("IST0134",),
        serviceentry.check_addresses,
    ),
    Analyzer(
        "serviceentry.ConflictingServiceEntryProtocolAnalyzer",
        "Checks that ServiceEntries do not declare one host and port with different protocols",
        ("IST0177",),
        serviceentry.check_protocol_conflicts,
    ),
    Analyzer(
        "sidecar.SelectorAnalyzer",
        "Validates that sidecars that define a workload selector match an existing workload and that "
        "multiple sidecars don't select the same workload",
        ("IST0101", "IST0110", "IST0111"),
        selectors.check_sidecars,
    ),
    Analyzer(
        "sidecar.AmbientAnalyzer",
        "Checks that Sidecars do not target ambient namespaces or workloads, where they have no effect",
        ("IST0167",),
        selectors.check_ambient_sidecars,
    ),
    Analyzer(
        "telemetry.LightstepAnalyzer",
        "Checks for use of the deprecated Lightstep tracing provider",
        ("IST0002",),
        selectors.check_lightstep,
    ),
    Analyzer(
        "telemetry.ProviderAnalyzer",
        "Validates that providers in telemetry resource is valid",
        ("IST0157",),
        selectors.check_telemetry_providers,
    ),
    Analyzer(
        "telemetry.SelectorAnalyzer",
        "Validates that telemetries that define a selector match an existing workload and that "
        "multiple telemetries don't select the same workload",
        ("IST0101", "IST0159"),
        selectors.check_telemetries,
    ),
    Analyzer(
        "telemetry.DefaultSelectorAnalyzer",
        "Validates that there aren't multiple telemetry resources that have no selector",
        ("IST0160",),
        selectors.check_telemetry_defaults,
    ),
    Analyzer(
        "webhook.Analyzer",
        "Checks the validity of Istio webhooks",
        ("IST0139",),
        webhook.check_injectors,
    ),
    Analyzer(
        "virtualservice.ConflictingMeshGatewayHostsAnalyzer",
        "Checks if multiple virtual services associated with the mesh gateway have conflicting hosts",
        ("IST0109",),
        virtualservice.check_mesh_host_conflicts,
    ),
    Analyzer(
        "virtualservice.DestinationHostAnalyzer",
        "Checks the destination hosts associated with each virtual service",
        ("IST0101", "IST0112", "IST0140"),
        vsdestinations.check_destination_hosts,
    ),
    Analyzer(
        "virtualservice.DestinationRuleAnalyzer",
        "Checks the destination rules associated with each virtual service",
        ("IST0101",),
        virtualservice.check_subsets,
    ),
    Analyzer(
        "virtualservice.GatewayAnalyzer",
        "Checks the gateways associated with each virtual service",
        ("IST0101", "IST0132", "IST0165"),
        virtualservice.check_gateways,
    ),
    Analyzer(
        "virtualservice.JWTClaimRouteAnalyzer",
        "Checks the VirtualService using JWT claim based routing has corresponding RequestAuthentication",
        ("IST0149",),
        virtualservice.check_jwt_claim_routes,
    ),
    Analyzer(
        "virtualservice.RuleAnalyzer",
        "Checks for unreachable rules and ineffective matches",
        ("IST0130", "IST0131"),
        virtualservice.check_rules,
    ),
)


def selected(names: tuple[str, ...]) -> tuple[Analyzer, ...]:
    """The analyzers named (istioctl runs all when none of the names is known)."""
    chosen = tuple(a for a in ALL if a.name in names)
    return chosen or ALL

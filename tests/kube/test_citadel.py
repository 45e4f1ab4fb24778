"""Citadel against the real kube-apiserver (issue 13, item 6).

A real ``meshplane-citadel`` runs in Kubernetes mode as its own ServiceAccount (a TokenRequest
token in a kubeconfig, the RBAC of ``k8s/base/citadel/rbac.yaml`` bound to it), and workloads
call ``CreateCertificate`` with tokens the API server issued.

The API server refuses a TokenRequest shorter than 10 minutes, so an expired token cannot be
asked for; the test makes one as the API server would have: it re-signs a real token's claims,
with its times moved into the past, with the cluster's service-account signing key.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import yaml
from cryptography import x509
from kubernetes import client, config

from meshplane.citadel.server.authn import REVIEW_BURST, REVIEW_RATE
from meshplane.citadel.testing import CitadelProcess, make_csr
from meshplane.proto.istio.v1.auth import ca_pb2, ca_pb2_grpc
from meshplane.shared.testing.kubeenv import KubeCluster, wait_until

REPO = Path(__file__).resolve().parents[2]
RBAC = REPO / "k8s" / "base" / "citadel" / "rbac.yaml"

pytestmark = [pytest.mark.integration, pytest.mark.kube, pytest.mark.xdist_group("kube")]

OPAQUE = "request authenticate failure"  # Istio's message to a caller that failed authentication


@dataclass
class Citadel:
    proc: CitadelProcess
    namespace: str  # where istio-ca-secret lives

    def sign(self, token: str) -> list[str]:
        """CreateCertificate with ``token``; the chain, or grpc.RpcError."""
        _, csr = make_csr()
        creds = grpc.ssl_channel_credentials(root_certificates=self.proc.root_pem())
        with grpc.secure_channel(self.proc.target, creds) as channel:
            stub: Any = ca_pb2_grpc.IstioCertificateServiceStub(channel)
            response = stub.CreateCertificate(
                ca_pb2.IstioCertificateRequest(csr=csr, validity_duration=3600),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=15,
            )
        return list(response.cert_chain)

    def refusal(self, token: str) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as refused:
            self.sign(token)
        return refused.value

    def reviews(self) -> float:
        return self.proc.metrics()["citadel_server_token_review_count"]


def leaf_uris(chain: list[str]) -> list[str]:
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return list(sans.get_values_for_type(x509.UniformResourceIdentifier))


def token_for(core: Any, namespace: str, account: str, audience: str = "istio-ca", **spec: Any) -> str:
    request = {"spec": {"audiences": [audience], "expirationSeconds": 600, **spec}}
    return str(core.create_namespaced_service_account_token(account, namespace, request).status.token)


def install_citadel_rbac(kube_api: Any, namespace: str) -> None:
    """k8s/base/citadel/rbac.yaml with its namespace (and cluster-wide names) made this test's."""
    rbac: Any = client.RbacAuthorizationV1Api(kube_api)
    core: Any = client.CoreV1Api(kube_api)
    for obj in yaml.safe_load_all(RBAC.read_text()):
        meta = obj["metadata"]
        if obj["kind"] != "ServiceAccount":
            meta["name"] = f"{meta['name']}-{namespace}"
        if "namespace" in meta:
            meta["namespace"] = namespace
        for subject in obj.get("subjects", []):
            subject["namespace"] = namespace
        if "roleRef" in obj:
            obj["roleRef"]["name"] = f"{obj['roleRef']['name']}-{namespace}"
        create = {
            "ServiceAccount": lambda o: core.create_namespaced_service_account(namespace, o),
            "ClusterRole": rbac.create_cluster_role,
            "ClusterRoleBinding": rbac.create_cluster_role_binding,
            "Role": lambda o: rbac.create_namespaced_role(namespace, o),
            "RoleBinding": lambda o: rbac.create_namespaced_role_binding(namespace, o),
        }[obj["kind"]]
        create(obj)


def new_namespace(core: Any, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_until(
        lambda: any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items),
        f"ServiceAccount {name}/default",
    )
    return name


@pytest.fixture
def citadel_factory(
    kube_api: Any, kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """``start(namespace=None, env={})``: a Kubernetes-mode Citadel as ServiceAccount ``citadel``
    of ``namespace`` (a new one with the RBAC installed, by default), stopped after the test.

    Per test, not per module: every Citadel writes ``istio-ca-root-cert`` in every namespace, so
    two alive at once would fight over it."""
    core: Any = client.CoreV1Api(kube_api)
    started: list[CitadelProcess] = []
    namespaces: list[str] = []

    def start(namespace: str | None = None, env: dict[str, str] | None = None) -> Citadel:
        if namespace is None:
            namespace = new_namespace(core, "citadel")
            namespaces.append(namespace)
            install_citadel_rbac(kube_api, namespace)
        tmp = tmp_path_factory.mktemp("citadel")
        token = token_for(core, namespace, "citadel", audience=kube_cluster.issuer, expirationSeconds=3600)
        kubeconfig = kube_cluster.token_kubeconfig(tmp / "kubeconfig", token)
        as_citadel: Any = client.CoreV1Api(
            config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        )

        def secret_readable() -> bool:  # 404, not 403: the RBAC has reached the authorizer
            try:
                as_citadel.read_namespaced_secret("istio-ca-secret", namespace)
            except client.exceptions.ApiException as err:
                return bool(err.status == 404)
            return True

        wait_until(secret_readable, "Citadel's RBAC to take effect")
        proc = CitadelProcess(
            tmp / "ca",
            tmp / "citadel.log",
            args=["--kubernetes", "--token-review", "--no-local-issuer", "--ca-namespace", namespace],
            env={
                "KUBECONFIG": str(kubeconfig),
                "CITADEL_CA_KEY_TYPE": "ec",
                "CITADEL_ENABLE_JITTER_FOR_ROOT_CERT_ROTATOR": "false",
                **(env or {}),
            },
        )
        # in-cluster detection must not win over KUBECONFIG
        merged = {**os.environ, **(proc.child.env or {})}
        proc.child.env = {k: v for k, v in merged.items() if k != "KUBERNETES_SERVICE_HOST"}
        proc.child.inherit_env = False
        started.append(proc)
        proc.start()
        return Citadel(proc, namespace)

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()
        for namespace in namespaces:
            core.delete_namespace(namespace)


@pytest.fixture
def citadel(citadel_factory: Any) -> Citadel:
    citadel: Citadel = citadel_factory()
    return citadel


def test_projected_tokens_give_the_service_accounts_spiffe_id(
    citadel: Citadel, kube_api: Any, kube_namespace: str
) -> None:
    core: Any = client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(kube_namespace, {"metadata": {"name": "workload"}})
    pod = core.create_namespaced_pod(
        kube_namespace,
        {
            "metadata": {"name": "app"},
            "spec": {"serviceAccountName": "workload", "containers": [{"name": "a", "image": "x.invalid/a"}]},
        },
    )
    expected = f"spiffe://cluster.local/ns/{kube_namespace}/sa/workload"

    unbound = token_for(core, kube_namespace, "workload")
    assert leaf_uris(citadel.sign(unbound)) == [expected]

    bound_ref = {"kind": "Pod", "apiVersion": "v1", "name": "app", "uid": pod.metadata.uid}
    bound = token_for(core, kube_namespace, "workload", boundObjectRef=bound_ref)
    chain = citadel.sign(bound)
    assert leaf_uris(chain) == [expected]
    root = x509.load_pem_x509_certificate(chain[-1].encode())
    assert root == x509.load_pem_x509_certificate(citadel.proc.root_pem())

    # A token bound to a pod dies with the pod (a new token: a reviewed one is cached briefly).
    bound_again = token_for(core, kube_namespace, "workload", boundObjectRef=bound_ref)
    core.delete_namespaced_pod("app", kube_namespace, grace_period_seconds=0)
    wait_until(lambda: not core.list_namespaced_pod(kube_namespace).items, "pod app deleted")
    refused = citadel.refusal(bound_again)
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED and refused.details() == OPAQUE


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _resign(kube_cluster: KubeCluster, token: str, shift: int) -> str:
    """``token``'s claims with iat/nbf/exp moved by ``shift`` seconds, signed with the cluster's key."""
    assert kube_cluster.certs is not None
    claims = _claims(token)
    for name in ("iat", "nbf", "exp"):
        claims[name] += shift
    header = jwt.get_unverified_header(token)
    key = kube_cluster.certs.sa_key.read_bytes()
    kid = header.get("kid")
    return jwt.encode(claims, key, algorithm=header["alg"], headers={"kid": kid} if kid else None)


def test_other_audiences_expired_tokens_and_deleted_accounts_are_refused_opaquely(
    citadel: Citadel, kube_api: Any, kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    core: Any = client.CoreV1Api(kube_api)
    for name in ("workload", "gone"):
        core.create_namespaced_service_account(kube_namespace, {"metadata": {"name": name}})

    other_audience = token_for(core, kube_namespace, "workload", audience="other")
    real = token_for(core, kube_namespace, "workload")
    # Control: the re-signed copy with its own times is accepted, so only the times differ below.
    assert leaf_uris(citadel.sign(_resign(kube_cluster, real, 0))) == [
        f"spiffe://cluster.local/ns/{kube_namespace}/sa/workload"
    ]
    expired = _resign(kube_cluster, real, -3600)
    assert _claims(expired)["exp"] < time.time()
    of_deleted = token_for(core, kube_namespace, "gone")
    core.delete_namespaced_service_account("gone", kube_namespace)

    def accounts() -> set[str]:
        return {a.metadata.name for a in core.list_namespaced_service_account(kube_namespace).items}

    wait_until(lambda: "gone" not in accounts(), "ServiceAccount gone deleted")

    log_before = len(citadel.proc.log())
    for token in (other_audience, expired, of_deleted):
        refused = citadel.refusal(token)
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
        assert refused.details() == OPAQUE  # nothing about why reaches the caller
    logged = citadel.proc.log()[log_before:].splitlines()
    reasons = [line for line in logged if "authentication failed" in line]
    assert len(reasons) == 3, reasons
    assert all("TokenReview: not authenticated" in line for line in reasons), reasons
    assert "expired" in reasons[1], reasons[1]


def test_one_token_makes_one_token_review_and_reviews_are_rate_limited_per_account(
    citadel: Citadel, kube_api: Any, kube_namespace: str
) -> None:
    core: Any = client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(kube_namespace, {"metadata": {"name": "busy"}})
    token = token_for(core, kube_namespace, "busy")
    before = citadel.reviews()
    with ThreadPoolExecutor(8) as pool:  # at once: concurrent requests share one review
        chains = list(pool.map(citadel.sign, [token] * 8))
    for _ in range(3):  # then one after the other: the verdict is cached (10 s) by the token's hash
        chains.append(citadel.sign(token))
    assert {leaf_uris(c)[0] for c in chains} == {f"spiffe://cluster.local/ns/{kube_namespace}/sa/busy"}
    assert citadel.reviews() == before + 1

    # Many distinct tokens of one account at once: past the burst, reviews are refused unmade.
    tokens = [token_for(core, kube_namespace, "busy") for _ in range(REVIEW_BURST + 10)]
    before = citadel.reviews()
    started = time.monotonic()

    def attempt(token: str) -> bool:
        try:
            citadel.sign(token)
        except grpc.RpcError as err:
            assert err.details() == OPAQUE
            return False
        return True

    with ThreadPoolExecutor(len(tokens)) as pool:
        accepted = sum(pool.map(attempt, tokens))
    elapsed = time.monotonic() - started
    made = citadel.reviews() - before
    assert made == accepted < len(tokens)
    assert made <= REVIEW_BURST + REVIEW_RATE * elapsed + 1
    assert "TokenReview rate limit reached for subject" in citadel.proc.log()


def _secret_data(core: Any, namespace: str) -> tuple[str, dict[str, str]]:
    secret = core.read_namespaced_secret("istio-ca-secret", namespace)
    return secret.type, {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def test_the_self_signed_root_is_kept_in_istio_ca_secret_across_a_sigkill_restart(
    citadel_factory: Any, kube_api: Any
) -> None:
    core: Any = client.CoreV1Api(kube_api)
    first: Citadel = citadel_factory()
    root_pem = first.proc.root_pem().decode()
    kind, data = _secret_data(core, first.namespace)
    assert kind == "istio.io/ca-root"
    assert set(data) == {"ca-cert.pem", "ca-key.pem", "cert-chain.pem", "key.pem", "root-cert.pem"}
    assert data["ca-cert.pem"] == root_pem
    assert data["ca-key.pem"] == (first.proc.ca_dir / "ca-key.pem").read_text()
    assert data["cert-chain.pem"] == data["key.pem"] == data["root-cert.pem"] == ""  # as Istio's
    assert f"self-signed root created Secret {first.namespace}/istio-ca-secret" in first.proc.log()

    assert first.proc.proc is not None
    first.proc.proc.kill()  # SIGKILL: nothing written on the way out
    first.proc.proc.wait()
    second: Citadel = citadel_factory(namespace=first.namespace)  # and a fresh, empty --ca-dir
    assert second.proc.ca_dir != first.proc.ca_dir
    assert second.proc.root_pem().decode() == root_pem
    assert f"self-signed root restored Secret {first.namespace}/istio-ca-secret" in second.proc.log()
    chain = second.sign(token_for(core, first.namespace, "default"))
    old_root = x509.load_pem_x509_certificate(root_pem.encode())
    x509.load_pem_x509_certificate(chain[0].encode()).verify_directly_issued_by(old_root)


def _root_configmap(core: Any, namespace: str) -> dict[str, Any] | None:
    try:
        cm = core.read_namespaced_config_map("istio-ca-root-cert", namespace)
    except client.exceptions.ApiException as err:
        if err.status == 404:
            return None
        raise
    return {"labels": cm.metadata.labels or {}, "pem": (cm.data or {}).get("root-cert.pem")}


def test_istio_ca_root_cert_is_in_every_namespace_even_one_created_later(
    citadel: Citadel, kube_api: Any
) -> None:
    core: Any = client.CoreV1Api(kube_api)
    root_pem = citadel.proc.root_pem().decode()
    expected = {"labels": {"istio.io/config": "true"}, "pem": root_pem}

    def everywhere() -> bool:
        names = [n.metadata.name for n in core.list_namespace().items if n.status.phase == "Active"]
        return all(_root_configmap(core, name) == expected for name in names)

    wait_until(everywhere, "istio-ca-root-cert with Citadel's root in every namespace")
    later = new_namespace(core, "later")
    try:
        # Well before the 30 s resync: the namespace watch triggers the write.
        wait_until(lambda: _root_configmap(core, later) == expected, f"istio-ca-root-cert in {later}", 10)
    finally:
        core.delete_namespace(later)


def test_istio_ca_root_cert_and_the_secret_follow_a_root_rotation(
    citadel_factory: Any, kube_api: Any
) -> None:
    core: Any = client.CoreV1Api(kube_api)
    # A 12 s root, rotated with half its life left, checked every second.
    rotating: Citadel = citadel_factory(
        env={
            "CITADEL_SELF_SIGNED_CA_CERT_TTL": "12s",
            "CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE": "50",
            "CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL": "1s",
        }
    )
    first_root = x509.load_pem_x509_certificate(rotating.proc.root_pem())

    def rotated_and_published() -> bool:
        _, data = _secret_data(core, rotating.namespace)
        current = x509.load_pem_x509_certificate(data["ca-cert.pem"].encode())
        if current == first_root:
            return False
        published = _root_configmap(core, rotating.namespace)
        if published is None:
            return False
        roots = x509.load_pem_x509_certificates(published["pem"].encode())
        # The new root first, the old one still trusted while it lives.
        return roots[0] == current and first_root in roots[1:]

    wait_until(rotated_and_published, "a rotated root in the Secret and the ConfigMap", timeout=20)
    assert "rotated self-signed root" in rotating.proc.log()

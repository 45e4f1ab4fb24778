"""Revisions and tags against a real API server (issue 18, "Canary" and "Uninstall").

This module's own cluster (an install owns cluster-scoped objects); the test kubelet makes the
install's pods Running and Ready so the controllers report the workloads ready. meshctl runs as a
process with the cluster's kubeconfig: ``install`` (default), ``install --revision canary`` next
to it, ``tag set`` / ``list`` / ``remove``, then ``uninstall --revision canary``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.dynamic.exceptions import NotFoundError

from meshplane.shared.testing.kubeenv import KubeCluster

from . import test_install
from .test_install import installed, key, kinds_of, meshctl, rendered

pytestmark = [pytest.mark.integration, pytest.mark.kube, pytest.mark.xdist_group("revisions")]

MWC = ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration")

# this module's own cluster and client, by test_install's module-scoped fixtures
cluster = test_install.cluster
dyn = test_install.dyn


def webhooks(dyn: Any, name: str) -> dict[str, Any]:
    """The webhooks of MutatingWebhookConfiguration ``name`` by webhook name."""
    config = dyn.resources.get(api_version=MWC[0], kind=MWC[1]).get(name=name).to_dict()
    return {w["name"]: w for w in config["webhooks"]}


def ok(done: Any) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return str(done.stdout)


def refused(done: Any, code: int = 1) -> str:
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return str(done.stderr)


# Each test sets up the revisions it needs: under `--dist loadgroup` another module's tests can
# run between these on the same worker, and the module-scoped cluster is then made anew.


def test_a_revision_before_any_install_is_refused(cluster: KubeCluster) -> None:
    ok(meshctl(cluster, "uninstall", "-y", "--purge"))
    err = refused(meshctl(cluster, "install", "-y", "--revision", "canary"))
    assert "revision 'canary' shares Galley" in err and "run meshctl install without --revision" in err


def test_canary_next_to_default_tags_and_uninstall(cluster: KubeCluster, dyn: Any) -> None:
    default, canary = rendered(), rendered("--revision", "canary")
    every_kind = kinds_of(default)
    ok(meshctl(cluster, "install", "-y", "--readiness-timeout", "120"))
    meshctl(cluster, "uninstall", "-y", "--revision", "canary")  # left by an earlier test, if any
    before = installed(dyn, every_kind)

    # Canary: only its own objects are added; the default's stay as they were
    out = ok(meshctl(cluster, "install", "-y", "--revision", "canary", "--readiness-timeout", "120"))
    assert "✔ Pilot installed" in out and "✔ Galley installed" not in out
    after = installed(dyn, every_kind)
    assert after - before == {key(o) for o in canary}
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.get(name="pilot-canary", namespace="meshplane-system").status.availableReplicas == 1
    assert deployments.get(name="pilot", namespace="meshplane-system").status.availableReplicas == 1
    assert set(webhooks(dyn, "meshplane-sidecar-injector-canary")) == {
        "rev.namespace.sidecar-injector.istio.io",
        "rev.object.sidecar-injector.istio.io",
    }

    # a tag on the canary, then moved to the default
    ok(meshctl(cluster, "tag", "set", "prod", "--revision", "canary", "-y"))
    prod = webhooks(dyn, "meshplane-revision-tag-prod")
    rev_namespace = prod["rev.namespace.sidecar-injector.istio.io"]
    assert rev_namespace["clientConfig"]["service"]["path"] == "/inject/rev/canary"
    assert {"key": "istio.io/rev", "operator": "In", "values": ["prod"]} in rev_namespace[
        "namespaceSelector"
    ]["matchExpressions"]
    err = refused(meshctl(cluster, "tag", "set", "prod", "--revision", "default", "-y"))
    assert "revision tag 'prod' already exists (revision 'canary'), and --overwrite is false" in err
    ok(meshctl(cluster, "tag", "set", "prod", "--revision", "default", "--overwrite", "-y"))
    prod = webhooks(dyn, "meshplane-revision-tag-prod")
    assert prod["rev.namespace.sidecar-injector.istio.io"]["clientConfig"]["service"]["path"] == "/inject"
    dyn.resources.get(api_version="v1", kind="Namespace").create(
        body={"metadata": {"name": "shop", "labels": {"istio.io/rev": "prod"}}}
    )
    listed = json.loads(ok(meshctl(cluster, "tag", "list", "-o", "json")))
    assert listed == [{"tag": "prod", "revision": "default", "namespaces": ["shop"]}]
    table = ok(meshctl(cluster, "tag", "list"))
    assert table.splitlines()[0].split() == ["TAG", "REVISION", "NAMESPACES"]
    assert table.splitlines()[1].split() == ["prod", "default", "shop"]

    # tag default: istio-injection=enabled namespaces go to the canary, the default injector selects nothing
    ok(meshctl(cluster, "tag", "set", "default", "--revision", "canary", "-y"))
    tagged = webhooks(dyn, "meshplane-revision-tag-default")
    assert tagged["namespace.sidecar-injector.istio.io"]["clientConfig"]["service"]["path"] == (
        "/inject/rev/canary"
    )
    never = {"matchLabels": {"istio.io/deactivated": "never-match"}}
    for webhook in webhooks(dyn, "meshplane-sidecar-injector").values():
        assert webhook["namespaceSelector"] == never and webhook["objectSelector"] == never
    ok(meshctl(cluster, "tag", "remove", "default", "-y"))
    out = ok(meshctl(cluster, "tag", "remove", "prod", "-y"))
    assert "✔ Tag 'prod' removed" in out
    assert json.loads(ok(meshctl(cluster, "tag", "list", "-o", "json"))) == []

    # Uninstall the canary: exactly its objects go
    out = ok(meshctl(cluster, "uninstall", "-y", "--revision", "canary"))
    assert installed(dyn, every_kind) == before
    with pytest.raises(NotFoundError):
        deployments.get(name="pilot-canary", namespace="meshplane-system")
    assert "removed Deployment meshplane-system/pilot-canary" in out


def test_bad_tag_and_revision_input_is_named(cluster: KubeCluster) -> None:
    """With only the default revision installed."""
    ok(meshctl(cluster, "install", "-y", "--readiness-timeout", "120"))
    meshctl(cluster, "uninstall", "-y", "--revision", "canary")
    err = refused(meshctl(cluster, "tag", "set", "default-copy", "--revision", "canary", "-y"))
    assert "cannot find MutatingWebhookConfiguration with revision 'canary'" in err
    assert "(revisions installed: default)" in err
    ok(meshctl(cluster, "install", "-y", "--revision", "canary", "--readiness-timeout", "120"))
    err = refused(meshctl(cluster, "tag", "set", "canary", "--revision", "default", "-y"))
    assert "cannot create revision tag 'canary': found existing control plane revision with same name" in err
    err = refused(meshctl(cluster, "tag", "set", "prod"), code=2)
    assert "the following arguments are required: -r/--revision" in err
    err = refused(meshctl(cluster, "tag", "set", "Prod", "--revision", "canary", "-y"), code=2)
    assert "tag 'Prod' is not a DNS label" in err
    err = refused(meshctl(cluster, "install", "-y", "--revision", "1.25"), code=2)
    assert "revision '1.25' is not a DNS label" in err
    err = refused(meshctl(cluster, "tag", "remove", "nope", "-y"))
    assert "cannot remove tag 'nope': no such tag (tags: none)" in err


def test_uninstalling_the_default_keeps_what_another_revision_shares(cluster: KubeCluster, dyn: Any) -> None:
    """With the default and the canary installed: the default's own parts go (its Pilot and
    injector), the shared ones stay while the canary uses them, and go with the last revision."""
    ok(meshctl(cluster, "install", "-y", "--readiness-timeout", "120"))
    ok(meshctl(cluster, "install", "-y", "--revision", "canary", "--readiness-timeout", "120"))
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")

    def deployed() -> set[str]:
        return {d.metadata.name for d in deployments.get(namespace="meshplane-system").items}

    out = ok(meshctl(cluster, "uninstall", "-y", "--revision", "default"))
    assert "keeping the shared parts: revision(s) canary use them" in out
    assert deployed() == {"galley", "citadel", "pilot-canary"}
    configs = {c.metadata.name for c in dyn.resources.get(api_version=MWC[0], kind=MWC[1]).get().items}
    assert "meshplane-sidecar-injector" not in configs and "meshplane-sidecar-injector-canary" in configs
    ok(meshctl(cluster, "uninstall", "-y", "--revision", "canary"))
    assert deployed() == {"galley", "citadel"}
    out = ok(meshctl(cluster, "uninstall", "-y", "--revision", "default"))
    assert "keeping the shared parts" not in out
    assert deployed() == set()

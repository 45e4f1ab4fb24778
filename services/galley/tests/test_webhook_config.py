"""Galley's webhook-configuration controller against recorded API responses (real JSON shapes).

No API server can run here: the ValidatingWebhookConfiguration GET, the PATCH answers and the
dry-run Gateway create (404 while the CRD is missing, 201 while the webhook is not reached,
400 "denied the request" once it is) are replayed, and the PATCH bodies galley sends are checked.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from meshplane.galley.sources.kubernetes import api_client
from meshplane.galley.webhookconfig import ALWAYS_REJECT, WebhookConfigController, ca_bundle_from
from meshplane.shared.testing.certs import write_self_signed
from meshplane.shared.testing.kubeapi import RecordedAPI, serve
from meshplane.shared.testing.polling import eventually

pytestmark = pytest.mark.timeout(60)

DATA = Path(__file__).parent / "testdata" / "kube"
NAME = "meshplane-validator-meshplane-system"
CONFIG = f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{NAME}"
GATEWAYS = "/apis/networking.istio.io/v1/namespaces/meshplane-system/gateways"
CA = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
CA_B64 = base64.b64encode(CA).decode()


def recorded(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return body


def config(ca: str | None = None, policy: str = "Ignore") -> dict[str, Any]:
    body = copy.deepcopy(recorded("validatingwebhookconfiguration"))
    hook = body["webhooks"][0]
    hook["failurePolicy"] = policy
    if ca is not None:
        hook["clientConfig"]["caBundle"] = ca
    return body


def not_found() -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "the server could not find the requested resource", "reason": "NotFound",
            "code": 404}  # fmt: skip


def controller(url: str, **kwargs: Any) -> WebhookConfigController:
    return WebhookConfigController(api_client(url), NAME, CA, **kwargs)


CA_PATCH = [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": CA_B64}]
FAIL_PATCH = [{"op": "add", "path": "/webhooks/0/failurePolicy", "value": "Fail"}]


def test_recorded_api_sets_ca_bundle_and_fails_closed_only_after_the_denial() -> None:
    api = RecordedAPI()
    api.add_list(CONFIG, config())
    api.add_list(CONFIG, config(CA_B64))
    api.add_response("PATCH", CONFIG, config(CA_B64))
    api.add_response("POST", GATEWAYS, not_found(), 404)  # Gateway CRD not installed yet
    api.add_response("POST", GATEWAYS, recorded("gateway-dryrun-created"), 201)  # webhook not reached
    api.add_response("POST", GATEWAYS, recorded("gateway-denied"), 400)
    with serve(api) as url:
        ctl = controller(url)
        assert ctl.reconcile() is False
        assert api.written("PATCH", CONFIG) == [CA_PATCH]
        assert ctl.reconcile() is False
        assert api.written("PATCH", CONFIG) == [CA_PATCH]  # CA already there, policy untouched
        assert ctl.reconcile() is True
        assert api.written("PATCH", CONFIG) == [CA_PATCH, FAIL_PATCH]
    posts = api.written("POST", GATEWAYS)
    assert len(posts) == 3
    assert posts[0]["kind"] == "Gateway"
    assert posts[0]["metadata"]["annotations"] == {ALWAYS_REJECT: "true"}
    kinds = {(m, ct) for m, p, ct, _ in api.writes if p == CONFIG}
    assert kinds == {("PATCH", "application/json-patch+json")}


def test_recorded_api_dry_run_is_a_dry_run() -> None:
    api = RecordedAPI()
    api.add_list(CONFIG, config(CA_B64))
    api.add_response("PATCH", CONFIG, config(CA_B64, "Fail"))
    api.add_response("POST", GATEWAYS, recorded("gateway-denied"), 400)
    seen: list[str] = []
    with serve(api) as url:
        ctl = controller(url)
        original = ctl.api.call_api

        def spy(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            seen.append(f"{method} {url}")
            return original(method, url, *args, **kwargs)

        ctl.api.call_api = spy  # type: ignore[method-assign]
        assert ctl.reconcile() is True
    (post,) = [s for s in seen if s.startswith("POST")]
    assert post.endswith(f"{GATEWAYS}?dryRun=All")
    assert api.written("PATCH", CONFIG) == [FAIL_PATCH]


def test_recorded_api_nothing_is_patched_when_already_reconciled() -> None:
    api = RecordedAPI()
    api.add_list(CONFIG, config(CA_B64, "Fail"))
    with serve(api) as url:
        assert controller(url).reconcile() is True
    assert api.writes == []


async def test_recorded_api_run_retries_then_reapplies_when_changed_back() -> None:
    api = RecordedAPI()
    api.add_list(CONFIG, config())
    api.add_response("PATCH", CONFIG, config(CA_B64))
    api.add_response("POST", GATEWAYS, not_found(), 404)
    api.add_response("POST", GATEWAYS, recorded("gateway-denied"), 400)
    stop = asyncio.Event()
    with serve(api) as url:
        task = asyncio.create_task(controller(url, interval=0.2, first_retry=0.05).run(stop))
        try:

            async def failed_closed() -> bool:
                return FAIL_PATCH in api.written("PATCH", CONFIG)

            await eventually(failed_closed, "failurePolicy patched to Fail after the webhook denied")
            api.lists[CONFIG] = [(200, config(CA_B64, "Fail"))]
            settled = len(api.writes)
            checks = len(api.requested(CONFIG, watch=False))

            async def checked_twice() -> bool:
                return len(api.requested(CONFIG, watch=False)) >= checks + 2

            # Two periodic checks that find the config as wanted write nothing.
            await eventually(checked_twice, "two more periodic checks of the webhook configuration")
            assert len(api.writes) == settled
            # Someone switches the policy back to Ignore: the periodic check restores Fail.
            api.lists[CONFIG] = [(200, config(CA_B64, "Ignore"))]

            async def reapplied() -> bool:
                return api.written("PATCH", CONFIG).count(FAIL_PATCH) == 2

            await eventually(reapplied, "failurePolicy Fail re-applied")
        finally:
            stop.set()
            await task
    patches = api.written("PATCH", CONFIG)
    assert patches[0] == CA_PATCH
    assert CA_PATCH not in patches[patches.index(FAIL_PATCH) :]


def test_ca_bundle_is_the_issuer_of_a_chain_or_the_self_signed_cert(tmp_path: Path) -> None:
    cert, _key = write_self_signed(tmp_path, "galley")
    alone = cert.read_bytes()
    assert ca_bundle_from(cert) == alone
    leaf = alone.replace(b"BEGIN CERTIFICATE-----\n", b"BEGIN CERTIFICATE-----\nLEAF", 1)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(leaf + alone)
    assert ca_bundle_from(chain) == alone
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(CA)
    assert ca_bundle_from(cert, ca_file) == CA

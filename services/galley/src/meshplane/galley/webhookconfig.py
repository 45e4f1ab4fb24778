"""Reconciles galley's webhook configurations in Kubernetes mode, as istiod does.

The sidecar injector's MutatingWebhookConfiguration only gets the CA (``caBundle``) on every
webhook, as istiod's webhook cert patcher does; it is installed with ``failurePolicy: Fail``.
The ValidatingWebhookConfiguration gets more:

The object is installed with ``failurePolicy: Ignore``. Once galley is ready this controller
publishes the CA (``caBundle``) on every webhook, proves the webhook works by a dry-run create
of an invalid Gateway carrying ``internal.istio.io/webhook-always-reject: "true"`` (the API must
answer 400 "denied the request"), and only then switches ``failurePolicy`` to ``Fail``. Until
the proof succeeds it retries with backoff; afterwards it re-checks periodically and re-applies
both fields if someone changed them back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path
from typing import Any

from kubernetes import client as kube_client
from urllib3.exceptions import HTTPError

log = logging.getLogger("meshplane.galley.webhookconfig")

DEFAULT_NAME = "meshplane-validator-meshplane-system"
ALWAYS_REJECT = "internal.istio.io/webhook-always-reject"
_PEM_END = "-----END CERTIFICATE-----"


class WebhookConfigError(Exception):
    """The API answered a read or patch of the webhook configuration with an error."""


def ca_bundle_from(cert_file: Path, ca_file: Path | None = None) -> bytes:
    """The CA to publish: ``ca_file`` if given, else the serving chain's issuers, else the cert itself."""
    if ca_file is not None:
        return ca_file.read_bytes()
    text = cert_file.read_text()
    blocks = [b.strip() + "\n" + _PEM_END + "\n" for b in text.split(_PEM_END) if b.strip()]
    issuers = blocks[1:] or blocks  # a lone certificate is taken to be self-signed
    return "".join(issuers).encode()


class WebhookConfigController:
    """Keeps ``caBundle`` and ``failurePolicy: Fail`` on one ValidatingWebhookConfiguration (or
    with ``fail_closed=False`` only ``caBundle``, on a configuration of ``resource``)."""

    def __init__(
        self,
        api: kube_client.ApiClient,
        name: str,
        ca_pem: bytes,
        *,
        interval: float = 30.0,
        first_retry: float = 1.0,
        resource: str = "validatingwebhookconfigurations",
        fail_closed: bool = True,
    ) -> None:
        self.name = name
        self.ca_bundle = base64.b64encode(ca_pem).decode()
        self.interval = interval
        self.first_retry = first_retry
        self.api = api
        self.fail_closed = fail_closed
        self.path = f"/apis/admissionregistration.k8s.io/v1/{resource}/{name}"

    def reconcile(self) -> bool:
        """One pass (blocking I/O): True when caBundle is set and (``fail_closed``) the policy is Fail."""
        config = self._read()
        webhooks: list[dict[str, Any]] = config.get("webhooks") or []
        stale_ca = [
            i
            for i, w in enumerate(webhooks)
            if (w.get("clientConfig") or {}).get("caBundle") != self.ca_bundle
        ]
        if stale_ca:
            self._patch(
                [
                    {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": self.ca_bundle}
                    for i in stale_ca
                ]
            )
            log.info("webhook configuration %s: caBundle set on %d webhook(s)", self.name, len(stale_ca))
        ignoring = [i for i, w in enumerate(webhooks) if w.get("failurePolicy") != "Fail"]
        if not ignoring or not self.fail_closed:
            return True
        namespace = ((webhooks[0].get("clientConfig") or {}).get("service") or {}).get("namespace", "default")
        if not self._webhook_denies(namespace):
            return False
        self._patch(
            [{"op": "add", "path": f"/webhooks/{i}/failurePolicy", "value": "Fail"} for i in ignoring]
        )
        log.info("webhook configuration %s: webhook verified, failurePolicy set to Fail", self.name)
        return True

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> tuple[int, str]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, data, _post = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp: Any = self.api.call_api(method, url, header_params=headers, body=data, _request_timeout=(5, 30))
        return resp.status, resp.read().decode(errors="replace")

    def _read(self) -> dict[str, Any]:
        status, text = self._request("GET", self.path)
        if status != 200:
            raise WebhookConfigError(f"GET {self.path}: HTTP {status}: {text[:200]}")
        body: dict[str, Any] = json.loads(text)
        return body

    def _patch(self, ops: list[dict[str, Any]]) -> None:
        status, text = self._request("PATCH", self.path, ops, "application/json-patch+json")
        if status != 200:
            raise WebhookConfigError(f"PATCH {self.path}: HTTP {status}: {text[:200]}")

    def _webhook_denies(self, namespace: str) -> bool:
        """Dry-run create an always-rejected Gateway; True only if the webhook denied it."""
        gateway = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {
                "name": "invalid-webhook-config-check",
                "namespace": namespace,
                "annotations": {ALWAYS_REJECT: "true"},
            },
            "spec": {"servers": []},
        }
        path = f"/apis/networking.istio.io/v1/namespaces/{namespace}/gateways"
        status, text = self._request("POST", path, gateway, query=[("dryRun", "All")])
        if status == 400 and "denied the request" in text:
            return True
        log.info("webhook check: not yet effective (dry-run create answered HTTP %d)", status)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile until ``stop``: back off while unproven, then re-check every ``interval``."""
        retry = self.first_retry
        while not stop.is_set():
            try:
                done = await asyncio.to_thread(self.reconcile)
            except (WebhookConfigError, HTTPError, OSError, ValueError) as exc:
                log.warning("webhook configuration %s: %s", self.name, exc)
                done = False
            delay = self.interval if done else retry
            retry = self.first_retry if done else min(retry * 2, self.interval)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass

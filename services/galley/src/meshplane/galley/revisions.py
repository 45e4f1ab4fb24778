"""Which control-plane revisions are installed, for ``POST /inject/rev/<revision>`` (Kubernetes mode).

A revision is installed when the cluster has its sidecar injector: a MutatingWebhookConfiguration
labelled ``app: sidecar-injector`` and ``istio.io/rev: <revision>`` (``meshctl install --revision``
makes it; a tag's carries its target revision). The API server calls a revision's path only
because such a configuration names it, so the first call for a revision asks the API once and a
yes is remembered; an unknown revision is asked again each time (it may have just been
installed). When the API cannot be asked, injection goes ahead: the path came from a webhook
configuration, and refusing would block every pod of the revision while the API is slow.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from urllib3.exceptions import HTTPError

log = logging.getLogger("meshplane.galley.revisions")

INJECTOR_LABELS = "app=sidecar-injector"


class InstalledRevisions:
    def __init__(self, api: Any) -> None:
        self.api = api
        self.known: set[str] = set()

    def _ask(self, revision: str) -> bool:
        from kubernetes import client

        admission: Any = client.AdmissionregistrationV1Api(self.api)
        listed = admission.list_mutating_webhook_configuration(
            label_selector=f"{INJECTOR_LABELS},istio.io/rev={revision}", _request_timeout=(5, 10)
        )
        return bool(listed.items)

    async def installed(self, revision: str) -> bool:
        if revision in self.known:
            return True
        from kubernetes.client.exceptions import ApiException

        try:
            found = await asyncio.to_thread(self._ask, revision)
        except (ApiException, HTTPError, OSError) as exc:
            log.warning(
                "cannot ask the API whether revision %s is installed (injecting anyway): %s", revision, exc
            )
            return True
        if found:
            self.known.add(revision)
        return found

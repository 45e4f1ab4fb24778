"""Generated bad input: the webhook never answers 5xx; the directory source never takes an invalid object."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshplane.galley.api.apps import create_webhook_app
from meshplane.galley.api.state import GalleyState
from meshplane.galley.sources.directory import DirectorySource
from meshplane.shared.config import ISTIO_GROUPS, validate_object

from .reviews import review, virtual_service

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _mutate(body: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    target: Any = body
    for key in path[:-1]:
        if not isinstance(target, dict) or not isinstance(target.get(key), dict):
            return body
        target = target[key]
    if isinstance(target, dict):
        target[path[-1]] = value
    return body


PATHS = [
    ["apiVersion"],
    ["request"],
    ["request", "uid"],
    ["request", "operation"],
    ["request", "object"],
    ["request", "dryRun"],
    ["request", "object", "apiVersion"],
    ["request", "object", "kind"],
    ["request", "object", "metadata"],
    ["request", "object", "spec"],
    ["request", "object", "spec", "http"],
    ["request", "object", "spec", "hosts"],
]


def _app() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_webhook_app(GalleyState(ready=True))),
        base_url="http://galley",
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=json_values)
def test_mutated_admission_reviews_never_get_a_5xx(path: list[str], value: Any) -> None:
    body = _mutate(review(virtual_service(routes=2)), path, value)

    async def send() -> httpx.Response:
        async with _app() as client:
            return await client.post(
                "/validate", content=json.dumps(body), headers={"Content-Type": "application/json"}
            )

    resp = asyncio.run(send())
    assert resp.status_code in (200, 400), resp.text
    if resp.status_code == 200:
        assert resp.json()["response"]["uid"] == body["request"]["uid"]


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_bodies_never_get_a_5xx(raw: bytes) -> None:
    async def send() -> httpx.Response:
        async with _app() as client:
            return await client.post("/validate", content=raw, headers={"Content-Type": "application/json"})

    resp = asyncio.run(send())
    assert resp.status_code in (200, 400)


yaml_fragments = st.lists(
    st.sampled_from(
        [
            "apiVersion: networking.istio.io/v1\n",
            "apiVersion: v1\n",
            "kind: VirtualService\n",
            "kind: DestinationRule\n",
            "kind: Bogus\n",
            "metadata: {name: a, namespace: default}\n",
            "metadata: {name: b}\n",
            "metadata: 7\n",
            "spec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}\n",
            "spec: {host: a, subsets: [{name: v1}]}\n",
            "spec: {hosts: a}\n",
            "spec: [1, 2]\n",
            "---\n",
            "  : :\n",
            "- [unclosed\n",
            "&a [*a]\n",
            "\t\x00\n",
        ]
    ),
    max_size=12,
).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(yaml_fragments, min_size=1, max_size=4))
def test_directory_of_broken_files_never_yields_an_invalid_object(
    tmp_path_factory: Any, files: list[str]
) -> None:
    root: Path = tmp_path_factory.mktemp("conf")
    for i, text in enumerate(files):
        (root / f"f{i}.yaml").write_text(text)
    source = DirectorySource(root, lambda _snap: None)
    source.refresh()
    for obj in source.snapshot.values():
        if obj.group in ISTIO_GROUPS:
            assert validate_object(obj.obj).valid
    status = source.status()
    assert len(status["files"]) == len(files)

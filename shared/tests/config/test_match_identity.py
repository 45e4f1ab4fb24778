"""Duplicate-match warnings: two matches are "the same" exactly when their canonical JSON is.

The rule compares matches through a cheap hashable key (and skips matches whose ``uri`` is unique);
these properties pin it to the definition it replaced: ``json.dumps(model_dump(mode="json",
exclude_none=True, exclude={"name"}), sort_keys=True)``.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshplane.shared.config import validate_object
from meshplane.shared.config.models.base import IstioModel
from meshplane.shared.config.models.virtual_service import (
    HTTPMatchRequest,
    L4MatchAttributes,
    TLSMatchAttributes,
)
from meshplane.shared.config.rules.virtual_service import match_key

# Tiny alphabets so that equal and nearly-equal matches are common.
_text = st.sampled_from(["/a", "/b", "x", ""])
_string_match = st.one_of(
    st.fixed_dictionaries({"exact": _text}),
    st.fixed_dictionaries({"prefix": _text}),
    st.fixed_dictionaries({"regex": _text}),
    st.fixed_dictionaries({"exact": _text, "prefix": _text}),
)
_names = st.sampled_from(["x-a", "x-b", "x-c"])
_http_match = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["m1", "m2"]),
        "uri": _string_match,
        "method": _string_match,
        "headers": st.dictionaries(_names, _string_match, max_size=3),
        "withoutHeaders": st.dictionaries(_names, _string_match, max_size=2),
        "queryParams": st.dictionaries(_names, _string_match, max_size=2),
        "port": st.sampled_from([80, 8080, 0, True]),
        "ignoreUriCase": st.sampled_from([True, False, 1, 0]),
        "sourceLabels": st.dictionaries(_names, st.sampled_from(["v1", "v2"]), max_size=2),
        "gateways": st.lists(st.sampled_from(["mesh", "ns/gw"]), max_size=2),
        "sourceNamespace": st.sampled_from(["default", "prod"]),
    },
)
_l4_match = st.fixed_dictionaries(
    {},
    optional={
        "destinationSubnets": st.lists(st.sampled_from(["10.0.0.0/8", "1.2.3.4"]), max_size=2),
        "port": st.sampled_from([443, 8443]),
        "sourceLabels": st.dictionaries(_names, st.sampled_from(["v1", "v2"]), max_size=2),
        "gateways": st.lists(st.sampled_from(["mesh", "ns/gw"]), max_size=2),
    },
)


def _reference_key(match: IstioModel) -> str:
    dumped = match.model_dump(mode="json", exclude_none=True, exclude={"name"})
    return json.dumps(dumped, sort_keys=True)


def _reordered(raw: dict[str, Any]) -> dict[str, Any]:
    """The same match with every map's keys in reverse order."""
    return {
        k: dict(reversed(list(v.items()))) if isinstance(v, dict) and k != "uri" and k != "method" else v
        for k, v in reversed(list(raw.items()))
    }


@settings(max_examples=400, deadline=None)
@given(_http_match, _http_match)
def test_http_match_key_equal_exactly_when_canonical_json_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    ma, mb = HTTPMatchRequest.model_validate(a), HTTPMatchRequest.model_validate(b)
    assert (match_key(ma) == match_key(mb)) == (_reference_key(ma) == _reference_key(mb))
    # Map key order and the match's name never make two matches different.
    assert match_key(HTTPMatchRequest.model_validate(_reordered(a))) == match_key(ma)


@settings(max_examples=200, deadline=None)
@given(_l4_match, _l4_match)
def test_tls_and_tcp_match_keys_equal_exactly_when_canonical_json_equal(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    for model in (L4MatchAttributes, TLSMatchAttributes):
        ma, mb = model.model_validate(a), model.model_validate(b)
        assert (match_key(ma) == match_key(mb)) == (_reference_key(ma) == _reference_key(mb))


def _expected_duplicate_paths(routes: list[list[dict[str, Any]]]) -> list[str]:
    """Duplicate-match warning paths by the canonical-JSON definition (routes all have matches)."""
    seen: set[str] = set()
    paths = []
    for i, matches in enumerate(routes):
        for j, raw in enumerate(matches):
            key = _reference_key(HTTPMatchRequest.model_validate(raw))
            if key in seen:
                paths.append(f"spec.http[{i}].match[{j}]")
            seen.add(key)
    return paths


@st.composite
def _routes(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """Routes whose matches come from a small pool (renamed, maps reordered) so duplicates are common."""
    pool = draw(st.lists(_http_match, min_size=1, max_size=3))
    routes = []
    for _ in range(draw(st.integers(1, 4))):
        matches = []
        for _ in range(draw(st.integers(1, 3))):
            raw = dict(pool[draw(st.integers(0, len(pool) - 1))])
            if draw(st.booleans()):
                raw["name"] = draw(st.sampled_from(["m1", "m2", "m3"]))
            matches.append(_reordered(raw) if draw(st.booleans()) else raw)
        routes.append(matches)
    return routes


@settings(max_examples=200, deadline=None)
@given(_routes())
def test_duplicate_match_warnings_follow_canonical_json(routes: list[list[dict[str, Any]]]) -> None:
    http = [{"match": matches, "route": [{"destination": {"host": "reviews"}}]} for matches in routes]
    obj = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"hosts": ["reviews"], "gateways": ["ns/gw"], "http": http},
    }
    result = validate_object(obj)
    got = [w.path for w in result.warnings if "duplicate match" in w.message]
    assert got == _expected_duplicate_paths(routes)

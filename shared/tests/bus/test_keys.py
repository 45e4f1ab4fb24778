import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshplane.shared.bus import InvalidKey, escape, make_key, split_key, unescape


def test_readable_keys_for_kubernetes_names() -> None:
    assert make_key("networking.istio.io", "VirtualService", "default", "reviews") == (
        "networking=2Eistio=2Eio.VirtualService.default.reviews"
    )


def test_wildcard_host_is_escaped() -> None:
    key = make_key("default", "*.example.com")
    assert "*" not in key
    assert split_key(key) == ["default", "*.example.com"]


def test_empty_part_is_refused() -> None:
    with pytest.raises(InvalidKey):
        make_key("default", "")


def test_bad_escape_is_refused() -> None:
    with pytest.raises(InvalidKey):
        unescape("a=ZZ")


@given(st.text(min_size=1, max_size=40))
def test_escape_roundtrip(part: str) -> None:
    token = escape(part)
    assert all(c.isalnum() or c in "-_=" for c in token)
    assert unescape(token) == part

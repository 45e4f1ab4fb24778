"""The config package imports a kind's model and rules only when that kind is first used."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from meshplane.shared.config import models
from meshplane.shared.config.models import _EXPORTS
from meshplane.shared.config.parse import SPEC_MODELS
from meshplane.shared.config.rules.registry import RULES


def test_every_exported_model_name_resolves_and_is_listed() -> None:
    exported = {name for names in _EXPORTS.values() for name in names}
    assert exported == set(models.__all__)
    for name in sorted(exported):
        assert getattr(models, name) is not None


def test_unknown_model_name_is_an_attribute_error() -> None:
    try:
        models.NoSuchModel  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchModel" in str(exc)
    else:
        raise AssertionError("models.NoSuchModel did not raise")


def test_every_kind_has_a_model_and_rules_resolve() -> None:
    assert all(isinstance(SPEC_MODELS[kind], type) for kind in SPEC_MODELS)
    assert all(callable(RULES[kind]) for kind in RULES)
    assert set(RULES) <= set(SPEC_MODELS)
    assert "Nope" not in RULES and RULES.get("Nope") is None


def test_validating_a_virtual_service_leaves_other_kinds_unimported() -> None:
    script = textwrap.dedent(
        """
        import sys
        from meshplane.shared.config import validate_object
        vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
              "metadata": {"name": "r", "namespace": "ns"},
              "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}}]}]}}
        assert validate_object(vs).valid
        loaded = [m for m in ("jwt", "meshplane.shared.config.rules.authentication",
                              "meshplane.shared.config.models.envoy_filter",
                              "meshplane.shared.config.models.security",
                              "google.protobuf") if m in sys.modules]
        print(",".join(loaded))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""

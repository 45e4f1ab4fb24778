"""Galley in directory mode does not pay for the Kubernetes client at start-up."""

from __future__ import annotations

from meshplane.shared.testing.imports import imported_after


def test_directory_mode_does_not_import_the_kubernetes_client() -> None:
    code = "import meshplane.galley.__main__, meshplane.galley.app"
    assert imported_after(code, ("kubernetes",)) == []

"""Root conftest: shared fixtures for every distribution's tests."""

pytest_plugins = ["meshplane.shared.testing.fixtures", "meshplane.shared.testing.kubefixtures"]

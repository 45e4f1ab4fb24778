"""Test support shared by every distribution's tests (pytest plugin: ``fixtures``)."""

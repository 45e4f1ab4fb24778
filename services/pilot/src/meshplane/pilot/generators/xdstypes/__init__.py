"""One generator per xDS type (Istio's ``cds.go``, ``eds.go``, ...): thin adapters that declare
the type's facts and build its parts from the builders in :mod:`meshplane.pilot.generators`."""

"""CreateCertificate load against a real meshplane-citadel (``python -m benchmarks.ca.run``)."""

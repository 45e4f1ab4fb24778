"""The in-cluster install operator (``meshplane-operator``)."""

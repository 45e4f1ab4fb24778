"""The local mesh that ``meshctl up`` runs: what to start (plan) and how processes are kept (supervisor)."""

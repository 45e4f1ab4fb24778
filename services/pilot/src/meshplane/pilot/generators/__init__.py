"""Pure functions from (push context, proxy) to Envoy resources, one module per xDS type.

Each module also owns its "needs push" predicate: which changed config kinds concern it.
Security generators (mTLS, authz) plug in beside these without touching them.
"""

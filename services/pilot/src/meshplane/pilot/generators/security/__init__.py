"""Pilot's security generators: workload mTLS, PeerAuthentication, AuthorizationPolicy, JWT authn."""

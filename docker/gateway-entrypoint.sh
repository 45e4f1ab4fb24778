#!/bin/sh
# Write the router bootstrap with meshctl, then replace this shell with Envoy.
# PILOT_ADDR (host:port of pilot's xDS) and GATEWAY_ID name the gateway to pilot.
set -eu
meshctl bootstrap --type router --id "${GATEWAY_ID:-ingressgateway}" \
    --xds-address "${PILOT_ADDR:-pilot:15010}" --output /tmp/envoy-bootstrap.yaml
exec envoy -c /tmp/envoy-bootstrap.yaml --log-level "${ENVOY_LOG_LEVEL:-info}"

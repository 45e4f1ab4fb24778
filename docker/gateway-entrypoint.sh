#!/bin/sh
# Write the router bootstrap with meshctl, then replace this shell with Envoy.
# PILOT_ADDR (HOST:PORT of pilot's xDS) and GATEWAY_NAME name the gateway to pilot; the node
# agent's SDS socket, when mounted, serves the gateway's certificate.
set -eu
ip="$(hostname -i | cut -d' ' -f1)"
name="${GATEWAY_NAME:-ingressgateway}"
namespace="${GATEWAY_NAMESPACE:-default}"
meshctl bootstrap --type router \
    --node-id "router~${ip}~${name}.${namespace}~${namespace}.svc.cluster.local" \
    --ip "$ip" --namespace "$namespace" --service-account "$name" --labels "istio=${name}" \
    --pilot "${PILOT_ADDR:-pilot:15012}" \
    --sds-socket /var/run/secrets/workload-spiffe-uds/socket \
    --admin 127.0.0.1:15000 --stats-port 15090 --output /tmp/envoy-bootstrap.yaml
exec envoy -c /tmp/envoy-bootstrap.yaml --log-level "${ENVOY_LOG_LEVEL:-info}"

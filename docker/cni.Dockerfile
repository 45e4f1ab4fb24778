# syntax=docker/dockerfile:1
# meshplane/cni: build from the repository root with
#   docker build -f docker/cni.Dockerfile -t meshplane/cni:0.1.0 .

# Builder: uv installs only meshplane-cni and its dependencies, pinned by uv.lock, into a
# self-contained virtualenv (workspace members as wheels, not editable links).
FROM python:3.11-slim-bookworm AS builder
RUN pip install --no-cache-dir --disable-pip-version-check "uv==0.13.9"
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
COPY . .
RUN uv sync --frozen --no-dev --no-editable --package meshplane-cni

# Runtime: the virtualenv plus iptables and iproute2, which the agent runs inside pod network
# namespaces. No uv, no compilers.
FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables iproute2 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# Root on purpose: the agent writes the host's CNI directories and enters other pods' network
# namespaces (the DaemonSet also runs it privileged), as istio-cni-node does.
USER 0:0
ENTRYPOINT ["meshplane-cni-agent"]

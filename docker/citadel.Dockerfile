# syntax=docker/dockerfile:1
# meshplane/citadel: build from the repository root with
#   docker build -f docker/citadel.Dockerfile -t meshplane/citadel:0.1.0 .

# Builder: uv installs only meshplane-citadel and its dependencies, pinned by uv.lock, into a
# self-contained virtualenv (workspace members as wheels, not editable links).
FROM python:3.11-slim-bookworm AS builder
RUN pip install --no-cache-dir --disable-pip-version-check "uv==0.13.9"
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
COPY . .
RUN uv sync --frozen --no-dev --no-editable --package meshplane-citadel

# Runtime: the virtualenv on a slim Python, no uv, no compilers, a non-root user.
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 meshplane \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin meshplane \
    && install -d -o 10001 -g 10001 -m 0700 /var/run/ca \
    && install -d -o 10001 -g 10001 -m 0755 /var/run/secrets/workload-spiffe-uds
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8060 8061 15014
# The same image runs the node agent: entrypoint meshplane-node-agent.
ENTRYPOINT ["meshplane-citadel"]

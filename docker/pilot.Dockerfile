# syntax=docker/dockerfile:1
# meshplane/pilot: build from the repository root with
#   docker build -f docker/pilot.Dockerfile -t meshplane/pilot:0.1.0 .

# Builder: uv installs only meshplane-pilot and its dependencies, pinned by uv.lock, into a
# self-contained virtualenv (workspace members as wheels, not editable links).
FROM python:3.11-slim-bookworm AS builder
RUN pip install --no-cache-dir --disable-pip-version-check "uv==0.13.9"
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
COPY . .
RUN uv sync --frozen --no-dev --no-editable --package meshplane-pilot

# Runtime: the virtualenv on a slim Python, no uv, no compilers, a non-root user.
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 meshplane \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin meshplane
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 15012 15014
ENTRYPOINT ["meshplane-pilot"]

# syntax=docker/dockerfile:1
# meshplane/bookapp: the bookinfo-like example app (examples/apps/bookapp.py, stdlib only).
# Build from the repository root with
#   docker build -f docker/bookapp.Dockerfile -t meshplane/bookapp:0.1.0 .
# Nothing to install, so the "builder" only gathers the one file; the runtime is slim Python.

FROM python:3.11-slim-bookworm AS builder
WORKDIR /src
COPY examples/apps/bookapp.py /app/bookapp.py
RUN python -m py_compile /app/bookapp.py

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 meshplane \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin meshplane
COPY --from=builder /app/bookapp.py /app/bookapp.py
ENV PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 9080
ENTRYPOINT ["python", "/app/bookapp.py"]

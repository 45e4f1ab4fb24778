"""The sovereign side: sovereign from PyPI in a throwaway virtualenv, REST-JSON polling bootstraps.

``install_sovereign`` makes ``<dir>/venv`` with uv and installs the pinned release there (never into
our ``uv.lock``); it raises ``SovereignUnavailable`` with the reason when that cannot be done.
``SovereignSide`` writes the same S services as the meshplane side to a JSON file that sovereign
reads as template context (re-read every ``context_refresh`` seconds), renders them with the
Python templates in ``templates/`` (CDS: STATIC clusters with inline endpoints; LDS: one listener
with an inline route table), and gives each Envoy a bootstrap polling ``/v3/discovery:clusters``
and ``:listeners`` every ``refresh_delay``. The change is one more service in the file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.sovereign.fleet import pinned
from benchmarks.xds.run import NS
from meshplane.shared.natsserver import free_port
from meshplane.shared.processes import ChildProcess

SOVEREIGN_VERSION = "0.32.12"
TEMPLATES = Path(__file__).resolve().parent / "templates"


class SovereignUnavailable(RuntimeError):
    """sovereign could not be installed or found; the message says why."""


def install_sovereign(workdir: Path, version: str = SOVEREIGN_VERSION, timeout: float = 300) -> Path:
    """Install sovereign==version into ``workdir/venv``; returns the path of its ``sovereign`` script."""
    beside = Path(sys.executable).parent / "uv"  # `make env` puts uv in .venv/bin
    uv = str(beside) if beside.is_file() else shutil.which("uv")
    if uv is None:
        raise SovereignUnavailable("uv is not on PATH (needed to make sovereign's own virtualenv)")
    venv = workdir / "venv"
    steps = [
        [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), f"sovereign=={version}"],
    ]
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SovereignUnavailable(f"{' '.join(cmd[:3])}: {exc}") from exc
        if done.returncode != 0:
            reason = " ".join(done.stderr.split())[-400:]
            raise SovereignUnavailable(f"{' '.join(cmd[:3])} failed: {reason}")
    script = venv / "bin" / "sovereign"
    if not script.is_file():
        raise SovereignUnavailable(f"sovereign installed but {script} is missing")
    return script


def services_data(count: int) -> list[dict[str, Any]]:
    """The services of the benchmark, with the same hosts and endpoint addresses as the bus side."""
    return [
        {"host": f"svc-{i}.{NS}.svc.cluster.local", "address": f"10.100.{i // 256}.{i % 256}", "port": 9080}
        for i in range(count)
    ]


class SovereignSide:
    name = "sovereign"

    def __init__(
        self,
        workdir: Path,
        services: int,
        script: Path,
        refresh_delay: float = 1.0,
        context_refresh: int = 1,
        workers: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.services = services
        self.script = script
        self.refresh_delay = refresh_delay
        self.context_refresh = context_refresh
        self.workers = workers
        self.port = 0
        self.proc: ChildProcess | None = None

    @property
    def settings(self) -> str:
        workers = self.workers or f"default ({os.cpu_count() or 1} CPUs x 2 + 1)"
        return (
            f"sovereign {SOVEREIGN_VERSION}: gunicorn+uvicorn workers {workers}, Python templates, "
            f"template context re-read every {self.context_refresh}s, access logs off; "
            f"Envoy REST refresh_delay {self.refresh_delay}s, request_timeout 10s; clusters STATIC "
            "with inline endpoints, listener with inline routes"
        )

    def _write_services(self, count: int) -> None:
        tmp = self.workdir / "services.json.tmp"
        tmp.write_text(json.dumps(services_data(count)))
        tmp.replace(self.workdir / "services.json")

    def start(self, cpu: int | None, timeout: float = 120.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_services(self.services)
        spec = {"protocol": "python", "serialization": "raw"}
        config = {
            "templates": {
                "default": [
                    {"type": t, "spec": {**spec, "path": str(TEMPLATES / f"{t}.py")}}
                    for t in ("clusters", "listeners")
                ]
            },
            "template_context": {
                "refresh_rate": self.context_refresh,
                "context": {
                    "services": {
                        "protocol": "file",
                        "serialization": "json",
                        "path": str(self.workdir / "services.json"),
                    }
                },
            },
        }
        (self.workdir / "sovereign.json").write_text(json.dumps(config))
        self.port = free_port()
        env = {
            "SOVEREIGN_CONFIG": f"file+json://{self.workdir / 'sovereign.json'}",
            "SOVEREIGN_HOST": "127.0.0.1",
            "SOVEREIGN_PORT": str(self.port),
            "SOVEREIGN_ENABLE_ACCESS_LOGS": "false",
        }
        if self.workers:
            env["SOVEREIGN_WORKERS"] = str(self.workers)
        log = self.workdir / "sovereign.log"
        self.proc = ChildProcess([str(self.script)], log, env=env, cwd=self.workdir, name="sovereign")
        with pinned(cpu):
            self.proc.start()
        self.proc.wait_ready(self._healthy, timeout, "/healthcheck 200", interval=0.1)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthcheck", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def bootstrap(self, k: int, admin_port: int) -> dict[str, Any]:
        source = {
            "resource_api_version": "V3",
            "api_config_source": {
                "api_type": "REST",
                "transport_api_version": "V3",
                "cluster_names": ["sovereign"],
                "refresh_delay": f"{self.refresh_delay}s",
                "request_timeout": "10s",
            },
        }
        address = {"socket_address": {"address": "127.0.0.1", "port_value": self.port}}
        return {
            "node": {"id": f"envoy-{k}", "cluster": "bench"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "dynamic_resources": {"cds_config": source, "lds_config": source},
            "static_resources": {
                "clusters": [
                    {
                        "name": "sovereign",
                        "type": "STATIC",
                        "connect_timeout": "1s",
                        "load_assignment": {
                            "cluster_name": "sovereign",
                            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
                        },
                    }
                ]
            },
        }

    def add_cluster(self) -> None:
        self._write_services(self.services + 1)

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.stop(15)

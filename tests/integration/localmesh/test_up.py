"""`meshctl up` end to end: the bookinfo example from a copy, curled through the ingress gateway.

The test runs the real command as a user would (a subprocess, SIGINT to stop) on a copy of
``examples/``. So that it never collides with a ``make run`` on the same machine, the copy's
loopback addresses, app ports and gateway port are rewritten to free ones first; nothing else
in the example changes.
"""

from __future__ import annotations

import collections
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.shared.natsserver import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]
MESHCTL = Path(sys.executable).parent / "meshctl"


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Up:
    proc: subprocess.Popen[str]
    config: Path
    state: Path
    gateway: str
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.lines)

    def pids(self) -> dict[str, int]:
        """Component → PID from the table `meshctl up` printed."""
        found = {}
        for line in self.lines:
            m = re.match(r"^(\S+)\s+(\d+)\s{2}", line)
            if m and m.group(1) != "COMPONENT":
                found[m.group(1)] = int(m.group(2))
        return found

    def get(self, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.get(self.gateway, headers=headers or {}, timeout=10)


def _copy_example(tmp: Path) -> tuple[Path, int]:
    """examples/ copied with fresh loopback prefixes and free ports; returns (config dir, gateway port)."""
    shutil.copytree(REPO / "examples", tmp / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    config = tmp / "examples" / "bookinfo"
    a, b = random.randint(30, 250), random.randint(0, 125)
    subs = {"127.0.10.": f"127.{a}.{2 * b}.", "127.0.20.": f"127.{a}.{2 * b + 1}."}
    subs |= {f"127.0.0.1:1900{n}": f"127.0.0.1:{free_port()}" for n in range(1, 6)}
    gateway_port = free_port()
    subs["number: 8080"] = f"number: {gateway_port}"
    for path in config.glob("*.yaml"):
        text = path.read_text()
        for old, new in subs.items():
            text = text.replace(old, new)
        path.write_text(text)
    return config, gateway_port


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    config, gateway_port = _copy_example(tmp_path)
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [str(MESHCTL), "up", "--config-dir", str(config), "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    mesh = Up(proc, config, state, f"http://127.0.0.1:{gateway_port}/")
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: mesh.lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_until(
            lambda: "meshplane is up" in mesh.output() or proc.poll() is not None, 150, "meshctl up to start"
        )
        assert proc.poll() is None, f"meshctl up exited with {proc.returncode}:\n{mesh.output()}"
        yield mesh
    finally:
        pids = mesh.pids()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in pids.values():  # only if meshctl up failed to clean up; the test checks it did
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        reader.join(5)
        stdout.close()


def _reviews(resp: httpx.Response) -> str:
    assert resp.status_code == 200, (resp.status_code, resp.text)
    m = re.search(r"reviews (v\d)", resp.text)
    assert m, resp.text
    return m.group(1)


def _proxy_status(nats_url: str) -> dict[str, list[str]]:
    out = subprocess.run(
        [str(MESHCTL), "proxy-status", "--nats-url", nats_url], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]
    return {r[0]: r[2:6] for r in rows}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_serves_bookinfo_follows_edits_and_stops_clean(up: Up) -> None:
    # the chain answers through the gateway, with the example's routing
    first = wait_until(lambda: up.get().status_code == 200 and up.get(), 30, "the gateway to answer")
    assert first.text.startswith("productpage v1 -> reviews v"), first.text
    jason = up.get({"end-user": "jason"})
    assert jason.text.strip() == "productpage v1 -> reviews v2 -> ratings v1"
    counts = collections.Counter(_reviews(up.get()) for _ in range(40))
    assert set(counts) <= {"v1", "v3"} and counts["v1"] >= 20, counts
    v3 = next(r for r in (up.get() for _ in range(100)) if "reviews v3" in r.text)
    assert v3.text.strip() == "productpage v1 -> reviews v3 -> ratings v1"

    # every proxy is connected and has ACKed what Pilot sent
    nats_url = re.search(r"proxy-status --nats-url (\S+)", up.output())
    assert nats_url, up.output()
    proxies = {"productpage-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1"}
    expected = {f"{p}.bookinfo" for p in proxies} | {"istio-ingressgateway.istio-system"}

    def all_synced() -> bool:
        status = _proxy_status(nats_url.group(1))
        return set(status) == expected and all(s == "SYNCED" for row in status.values() for s in row)

    wait_until(all_synced, 20, "every proxy SYNCED in proxy-status")
    assert set((up.state / "proxies.json").read_text().split('"')) >= expected
    routes = subprocess.run(
        [str(MESHCTL), "proxy-config", "route", "productpage-v1.bookinfo", "--state-dir", str(up.state)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert routes.returncode == 0, routes.stderr
    assert re.search(r"^9080\s+reviews\.bookinfo\.svc\.cluster\.local:9080\s", routes.stdout, re.M), (
        routes.stdout
    )

    # edit the VirtualService file: everyone (jason too) goes to v3 within a few seconds
    vs = up.config / "reviews.yaml"
    text = vs.read_text()
    start = text.index("  http:\n")
    end = text.index("---", start)
    all_v3 = "  http:\n  - route:\n    - destination: {host: reviews, subset: v3}\n"
    edited = time.monotonic()
    vs.write_text(text[:start] + all_v3 + text[end:])
    wait_until(
        lambda: (
            all(_reviews(up.get()) == "v3" for _ in range(10))
            and _reviews(up.get({"end-user": "jason"})) == "v3"
        ),
        10,
        "traffic to follow the edited VirtualService",
    )
    took = time.monotonic() - edited
    assert took < 5, f"the edit took {took:.1f}s to reach the sidecars"

    # SIGINT stops everything: every PID in the table and every process group is gone
    pids = up.pids()
    assert len(pids) == 21, pids  # bus, 3 services, 6 node agents, 5 apps, 6 Envoys
    assert all(_alive(pid) for pid in pids.values())
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(60) == 0, up.output()
    assert "stopped." in up.output()
    assert [name for name, pid in pids.items() if _alive(pid)] == []
    assert [name for name, pid in pids.items() if _group_alive(pid)] == []


def test_up_bad_config_dir_is_a_clear_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(MESHCTL), "up", "--config-dir", str(tmp_path / "nope"), "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == f"meshctl up: --config-dir {tmp_path / 'nope'}: not a directory"
    assert "Traceback" not in out.stderr


def test_up_gateway_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    config, gateway_port = _copy_example(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", gateway_port))
        taken.listen()
        out = subprocess.run(
            [str(MESHCTL), "up", "--config-dir", str(config), "--state-dir", str(tmp_path / "s")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1, out
    assert f"the ingress gateway's 127.0.0.1:{gateway_port}" in out.stderr
    assert "cannot be bound: Address already in use" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout

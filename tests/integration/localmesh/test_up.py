"""`meshctl up` end to end: the bookinfo example from a copy, curled through the ingress gateway.

The real command runs as a user would run it (a subprocess, SIGINT to stop) on a copy of
``examples/`` whose loopback addresses and ports are rewritten to free ones
(``meshplane.ctl.localmesh.testing``), so it never collides with a ``make run`` on the machine.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshplane.ctl.localmesh.faults import current_pid, kill, wait_recovered
from meshplane.ctl.localmesh.testing import MESHCTL, UpRun, copy_example, running_up

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]


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


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpRun]:
    with running_up(REPO / "examples", tmp_path) as run:
        yield run


def get(run: UpRun, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(run.gateway, headers=headers or {}, timeout=10)


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


def test_up_serves_bookinfo_follows_edits_and_stops_clean(up: UpRun) -> None:
    # `cp -r examples/bookinfo /tmp/my-mesh && meshctl up --config-dir /tmp/my-mesh`: the copy alone
    assert up.config.name == "my-mesh" and REPO not in up.config.parents
    assert not (up.config.parent / "apps").exists()
    # the chain answers through the gateway, with the example's routing
    first = wait_until(lambda: get(up).status_code == 200 and get(up), 30, "the gateway to answer")
    assert first.text.startswith("productpage v1 -> reviews v"), first.text
    jason = get(up, {"end-user": "jason"})
    assert jason.text.strip() == "productpage v1 -> reviews v2 -> ratings v1"
    counts = collections.Counter(_reviews(get(up)) for _ in range(40))
    assert set(counts) <= {"v1", "v3"} and counts["v1"] >= 20, counts
    v3 = next(r for r in (get(up) for _ in range(100)) if "reviews v3" in r.text)
    assert v3.text.strip() == "productpage v1 -> reviews v3 -> ratings v1"

    # every proxy is connected and has ACKed what Pilot sent
    nats_url = up.nats_url()
    proxies = {"productpage-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1"}
    expected = {f"{p}.bookinfo" for p in proxies} | {"istio-ingressgateway.istio-system"}

    def all_synced() -> bool:
        status = _proxy_status(nats_url)
        return set(status) == expected and all(s == "SYNCED" for row in status.values() for s in row)

    wait_until(all_synced, 20, "every proxy SYNCED in proxy-status")
    assert set((up.state / "proxies.json").read_text().split('"')) >= expected
    tokens = {p.name: p.stat().st_mode & 0o777 for p in (up.state / "agents").glob("*.token")}
    assert tokens == {f"{p}.token": 0o600 for p in expected}
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

    # the sidecars talk mutual TLS (PeerAuthentication STRICT in the example): the productpage
    # sidecar's inbound listener and its outbound reviews clusters completed TLS handshakes
    admins = json.loads((up.state / "proxies.json").read_text())
    stats = httpx.get(f"http://{admins['productpage-v1.bookinfo']}/stats", timeout=10).text
    handshakes = dict(re.findall(r"^(\S+ssl\.handshake): (\d+)$", stats, re.M))
    inbound = [k for k, v in handshakes.items() if k.startswith("listener.") and int(v) > 0]
    assert inbound, handshakes
    outbound = [k for k, v in handshakes.items() if "outbound|9080|" in k and "reviews" in k and int(v) > 0]
    assert outbound, handshakes
    # xDS itself is mutual TLS: every Envoy's xds-grpc cluster completed a TLS handshake with
    # Pilot (which requires the client certificate) and holds an ACKed config
    for proxy in expected:
        xds = httpx.get(f"http://{admins[proxy]}/stats?filter=^cluster.xds-grpc.ssl.handshake$", timeout=10)
        assert int(xds.text.split(":")[1]) > 0, (proxy, xds.text)
    assert "ADS (mutual TLS)" in (up.state / "logs" / "meshplane-pilot.log").read_text()

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
            all(_reviews(get(up)) == "v3" for _ in range(10))
            and _reviews(get(up, {"end-user": "jason"})) == "v3"
        ),
        10,
        "traffic to follow the edited VirtualService",
    )
    took = time.monotonic() - edited
    assert took < 5, f"the edit took {took:.1f}s to reach the sidecars"

    # an app that dies is restarted (and the restart counted at stop), the rest keeps running
    table = up.pids()
    old, mark, killed = kill(up, "app-ratings-v1.bookinfo")
    new, _ = wait_recovered(up, "app-ratings-v1.bookinfo", mark, killed)
    assert new != old and "app-ratings-v1.bookinfo was killed by SIGKILL" in "".join(up.lines[mark:])
    wait_until(lambda: get(up, {"end-user": "jason"}).text.strip().endswith("ratings v1"), 10, "ratings")

    # SIGINT stops everything: every PID it runs and every process group is gone
    pids = {name: current_pid(up, name) for name in table}
    assert len(pids) == 21, pids  # bus, 3 services, 6 node agents, 5 apps, 6 Envoys
    assert all(_alive(pid) for pid in pids.values())
    assert {n for n, p in pids.items() if p != table[n]} == {"app-ratings-v1.bookinfo"}
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(60) == 0, up.output()
    assert "stopped." in up.output()
    assert "restarts: app-ratings-v1.bookinfo 1\n" in up.output()
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
    config, gateway_port = copy_example(REPO / "examples", tmp_path)
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
    assert f"127.0.0.1:{gateway_port}, where the ingress gateway (the Gateway" in out.stderr
    assert "is taken: Address already in use" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_up_app_that_exits_is_named_with_its_log_and_nothing_is_left(tmp_path: Path) -> None:
    config, _ = copy_example(REPO / "examples", tmp_path)
    workloads = config / "local-workloads.yaml"
    text = re.sub(
        r"command: \[python, bookapp\.py, --name, ratings[^\]]*\]",
        "command: [python, -c, 'raise SystemExit(3)']",
        workloads.read_text(),
    )
    workloads.write_text(text)
    state = tmp_path / "s"
    out = subprocess.run(
        [str(MESHCTL), "up", "--config-dir", str(config), "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert out.returncode == 1, out
    log = state / "logs" / "app-ratings-v1.bookinfo.log"
    assert "meshctl up: app-ratings-v1.bookinfo exited with code 3 before the app listening on" in out.stderr
    assert f"log: {log}" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    left = [line for line in _ps() if str(tmp_path) in line]  # bus, services, agents, Envoys
    assert left == []


def _ps() -> list[str]:
    """``pid args`` of every process on the machine."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, timeout=10)
    return out.stdout.splitlines()

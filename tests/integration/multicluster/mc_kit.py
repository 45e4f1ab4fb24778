"""What the multi-cluster `meshctl up` tests share: ``examples/multicluster`` copied with fresh
addresses (``meshplane.ctl.localmesh.testing.copy_multicluster``), run by the real ``meshctl up``
(the whole example, or one ``meshctl up --cluster`` per cluster sharing one state dir), and the
few reads a user would make: the answers through a gateway or a cluster's client sidecar, a
proxy's endpoints from its admin, ``meshctl proxy-status --state-dir``."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from meshplane.ctl.localmesh.testing import MESHCTL

REPO = Path(__file__).resolve().parents[3]
HOST = "helloworld.sample.svc.cluster.local"
INGRESS_SA = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
_ANSWER = re.compile(r"^helloworld (v\d) in (cluster\d) \((network\d)\)")


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` every 50 ms until it returns something true; AssertionError naming ``what``."""
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


def cluster_of(resp: httpx.Response) -> str:
    """The cluster that answered (the example's app names it), or ``<status>`` for a failure."""
    m = _ANSWER.match(resp.text) if resp.status_code == 200 else None
    return m.group(2) if m else f"<{resp.status_code}>"


def client_url(config: Path, cluster: str) -> str:
    """The egress bind of the cluster's helloworld sidecar (a client inside that cluster)."""
    text = (config / cluster / "sidecars.yaml").read_text()
    bind = re.findall(r"bind: (127\.\d+\.\d+\.\d+)", text)[1]
    return f"http://{bind}:5000/"


def answers(url: str, n: int, host: str = "") -> collections.Counter[str]:
    headers = {"host": host} if host else {}
    with httpx.Client(timeout=10, headers=headers) as c:
        return collections.Counter(cluster_of(c.get(url)) for _ in range(n))


def both_clusters(url: str, host: str = "") -> bool:
    return set(answers(url, 20, host)) == {"cluster1", "cluster2"}


def admins(state: Path, cluster: str) -> dict[str, str]:
    return dict(json.loads((state / cluster / "proxies.json").read_text()))


def endpoints(admin: str, host: str = HOST, port: int = 5000) -> set[str]:
    """The HOST:PORT endpoints of the proxy's outbound cluster for ``host`` (admin ``/clusters``)."""
    text = httpx.get(f"http://{admin}/clusters", timeout=10).text
    prefix = f"outbound|{port}||{host}::"
    found = {line[len(prefix) :].split("::")[0] for line in text.splitlines() if line.startswith(prefix)}
    return {e for e in found if re.fullmatch(r"[\d.]+:\d+", e)}


def config_dump(admin: str) -> dict[str, Any]:
    return dict(httpx.get(f"http://{admin}/config_dump", timeout=10).json())


def proxy_status(state: Path) -> dict[str, list[str]]:
    """``meshctl proxy-status --state-dir``: ``<proxy>@<cluster>`` → CDS, LDS, EDS, RDS (``NOT SENT``
    as ``NOT_SENT``), PILOT, VERSION."""
    out = subprocess.run(
        [str(MESHCTL), "proxy-status", "--state-dir", str(state)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.replace("NOT SENT", "NOT_SENT").splitlines()[1:]
    rows = [line.split() for line in lines if line.strip()]
    return {f"{r[0]}@{r[1]}": r[2:] for r in rows}


def bind_of(path: Path, field: str) -> str:
    """The first ``<field>: 127.x.y.z`` in a config file (the copy's relocated addresses)."""
    m = re.search(rf"{field}: (127\.\d+\.\d+\.\d+)", path.read_text())
    assert m, f"no {field} in {path}"
    return m.group(1)

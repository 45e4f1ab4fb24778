"""meshctl proxy-status and version read what Pilot replicas and components put on a real bus."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshplane.ctl.main import main
from meshplane.ctl.status import TYPES
from meshplane.proto.bus.v1 import status_pb2
from meshplane.shared.bus import Buckets, Bus, make_key
from meshplane.shared.components import STALE_AFTER_SECONDS, ComponentAnnouncer
from meshplane.shared.natsserver import NatsServer, free_port
from meshplane.shared.version import __version__


def status(proxy: str, pilot: str, age: float = 0.0, **words: tuple[str, str, str]) -> status_pb2.ProxyStatus:
    """A record as Pilot writes it, last refreshed ``age`` seconds ago."""
    s = status_pb2.ProxyStatus(proxy_id=proxy, pilot_id=pilot, proxy_version="1.40.0")
    s.updated.FromNanoseconds(int((time.time() - age) * 1e9))
    for short, (sent, acked, nack) in words.items():
        s.types.add(type_url=TYPES[short], nonce_sent=sent, nonce_acked=acked, last_nack=nack)
    return s


async def test_proxy_status_table_and_json(
    bus: Bus, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    kv = Buckets(bus).proxy_status
    await kv.put(
        make_key("pilot-a", "productpage-1.default"),
        status(
            "productpage-1.default", "pilot-a", CDS=("n1", "n1", ""), LDS=("n2", "n2", ""), EDS=("n3", "", "")
        ),
    )
    await kv.put(
        make_key("pilot-b", "reviews-1.default"),
        status("reviews-1.default", "pilot-b", CDS=("n1", "n0", ""), RDS=("n5", "n4", "bad regex")),
    )
    # The CLI runs its own event loop: run it in a thread so it does not nest in this one.
    code = await asyncio.to_thread(main, ["proxy-status", "--nats-url", nats_server.url])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS"]
    product = next(line for line in lines if line.startswith("productpage-1.default"))
    assert "SYNCED" in product and "STALE (Never Acknowledged)" in product and "NOT SENT" in product
    reviews = next(line for line in lines if line.startswith("reviews-1.default"))
    assert "STALE" in reviews and "NACKED" in reviews and "pilot-b" in reviews
    code = await asyncio.to_thread(
        main, ["proxy-status", "reviews-1.default", "-o", "json", "--nats-url", nats_server.url]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and [d["proxyId"] for d in data] == ["reviews-1.default"]
    code = await asyncio.to_thread(main, ["proxy-status", "nobody.default", "--nats-url", nats_server.url])
    assert code == 1 and "not connected" in capsys.readouterr().err


async def test_proxy_status_hides_records_their_pilot_stopped_refreshing(
    bus: Bus, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    kv = Buckets(bus).proxy_status
    await kv.put(make_key("pilot-live", "a.default"), status("a.default", "pilot-live", age=5))
    await kv.put(make_key("pilot-dead", "b.default"), status("b.default", "pilot-dead", age=45))
    never = status_pb2.ProxyStatus(proxy_id="c.default", pilot_id="pilot-old")  # no refresh time at all
    await kv.put(make_key("pilot-old", "c.default"), never)
    code = await asyncio.to_thread(main, ["proxy-status", "--nats-url", nats_server.url])
    rows = capsys.readouterr().out.splitlines()[1:]
    assert code == 0 and [r.split()[0] for r in rows] == ["a.default"]
    code = await asyncio.to_thread(main, ["proxy-status", "b.default", "--nats-url", nats_server.url])
    assert code == 1 and "not connected" in capsys.readouterr().err


async def test_version_lists_running_components(
    bus: Bus, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    pilot = ComponentAnnouncer(bus, "pilot", {"xds": "127.0.0.1:15012"}, instance="pilot-1")
    await pilot.announce()
    galley = ComponentAnnouncer(bus, "galley", {}, instance="galley-1")
    await galley.announce()
    code = await asyncio.to_thread(main, ["version", "--nats-url", nats_server.url])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines() == [
        f"client version: {__version__}",
        f"galley version: {__version__} (galley-1)",
        f"pilot version: {__version__} (pilot-1)",
    ]
    await pilot.withdraw()
    code = await asyncio.to_thread(main, ["version", "-o", "json", "--nats-url", nats_server.url])
    data = json.loads(capsys.readouterr().out)
    assert [c["component"] for c in data["components"]] == ["galley"]
    await galley.withdraw()


async def test_version_hides_components_that_stopped_refreshing(
    bus: Bus, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    kv = Buckets(bus).components
    for instance, age in (("fresh", 5.0), ("dead", STALE_AFTER_SECONDS + 15)):
        info = status_pb2.ComponentInfo(component="pilot", instance=instance, version="0.1.0")
        info.updated.FromNanoseconds(int((time.time() - age) * 1e9))
        await kv.put(make_key("pilot", instance), info)
    never = status_pb2.ComponentInfo(component="galley", instance="old", version="0.1.0")  # no refresh time
    await kv.put(make_key("galley", "old"), never)
    code = await asyncio.to_thread(main, ["version", "-o", "json", "--nats-url", nats_server.url])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and [c["instance"] for c in data["components"]] == ["fresh"]


def test_version_without_bus_still_prints_client(capsys: pytest.CaptureFixture[str]) -> None:
    from meshplane.shared.natsserver import free_port

    code = main(["version", "--nats-url", f"nats://127.0.0.1:{free_port()}"])
    captured = capsys.readouterr()
    assert code == 0 and f"client version: {__version__}" in captured.out
    assert captured.err.startswith("meshctl version: no running components found")
    assert "unreachable" in captured.err


@pytest.mark.parametrize("verb", ["version", "proxy-status"])
async def test_a_normal_exit_prints_nothing_on_stderr(bus: Bus, nats_server: NatsServer, verb: str) -> None:
    """No "bus disconnected" or other log lines when the command closes its bus connection."""
    await Buckets(bus).proxy_status.put(make_key("pilot-a", "a.default"), status("a.default", "pilot-a"))
    await ComponentAnnouncer(bus, "pilot", {}, instance="pilot-1").announce()
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "meshplane.ctl.main", verb, "--nats-url", nats_server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert ("pilot-1" if verb == "version" else "a.default") in out.stdout
    assert out.stderr == ""


def _kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig naming an API server that nothing serves."""
    server = f"https://127.0.0.1:{free_port()}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(doc))
    return path


def test_proxy_status_on_an_unreachable_api_server_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["proxy-status", "--kubeconfig", str(_kubeconfig(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meshctl proxy-status: cannot reach the API server"), err
    assert "Traceback" not in err


def test_proxy_status_without_a_bus_flag_reads_the_cluster_of_an_existing_kubeconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path)))
    assert main(["proxy-status"]) == 2
    assert "cannot reach the API server" in capsys.readouterr().err
    # A bus named by $NATS_URL wins over the kubeconfig, as --nats-url does.
    monkeypatch.setenv("NATS_URL", f"nats://127.0.0.1:{free_port()}")
    assert main(["proxy-status"]) == 2
    assert "cannot read proxy status from the bus" in capsys.readouterr().err


def test_proxy_status_state_dir_without_clusters_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["proxy-status", "--state-dir", str(tmp_path)]) == 2
    assert "no <cluster>/cluster.json (not a multi-cluster meshctl up)" in capsys.readouterr().err

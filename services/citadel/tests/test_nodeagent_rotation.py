"""Node agent rotation driven by injected time against a real Citadel: renewal at half life, backoff
while the CA is unreachable, and a rotation loop that fails being logged, counted and restarted."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from meshplane.citadel.nodeagent import metrics
from meshplane.citadel.nodeagent.__main__ import ready
from meshplane.citadel.nodeagent.caclient import CAClient
from meshplane.citadel.nodeagent.settings import parse_agent_settings
from meshplane.citadel.nodeagent.workloads import Workloads, rotation_task
from meshplane.citadel.testing import CitadelProcess
from meshplane.shared.natsserver import free_port
from meshplane.shared.tasks import TaskSupervisor

pytestmark = pytest.mark.timeout(60)

STEP = 10.0  # seconds any single step may take before the test fails


class DrivenTime:
    """A fixed clock and a wait that returns only when the test releases it (never sleeps)."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)
        self.asked: asyncio.Queue[float] = asyncio.Queue()
        self._release: asyncio.Queue[None] = asyncio.Queue()

    def clock(self) -> dt.datetime:
        return self.now

    async def wait(self, stop: asyncio.Event, seconds: float) -> bool:
        self.asked.put_nowait(seconds)
        await self._release.get()
        return stop.is_set()

    async def next_wait(self) -> float:
        return await asyncio.wait_for(self.asked.get(), STEP)

    def release(self) -> None:
        self._release.put_nowait(None)


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _client(citadel: CitadelProcess) -> CAClient:
    return CAClient(citadel.target, citadel.ca_dir / "root-cert.pem")


async def test_renewal_is_scheduled_at_half_life_and_replaces_the_certificate(
    citadel: CitadelProcess, token_for: Callable[..., str]
) -> None:
    time = DrivenTime()
    token = token_for(sa="rotating")
    workloads = Workloads(
        _client(citadel), "ec", dt.timedelta(hours=1), lambda: token, clock=time.clock, wait=time.wait
    )
    renewed = _sample("meshplane_nodeagent_certificates_total", {"kind": "renewed"})
    try:
        cache = await workloads.start_default()
        assert cache is not None
        first_delay = await time.next_wait()
        first = cache.cert
        assert first is not None and first.received == time.now
        # half of the one hour lifetime, minus up to 10 % jitter (the CA's clock may differ by a bit)
        assert 1800 * 0.9 - 5 <= first_delay <= 1800 + 5, first_delay
        time.release()  # the renewal time has come
        second_delay = await time.next_wait()
        second = cache.cert
        assert second is not None and second.version != first.version
        assert 1800 * 0.9 - 5 <= second_delay <= 1800 + 5, second_delay
        assert _sample("meshplane_nodeagent_certificates_total", {"kind": "renewed"}) == renewed + 1
    finally:
        time.release()
        await workloads.close()


async def test_without_rotation_the_certificate_is_issued_once_and_never_renewed(
    citadel: CitadelProcess, token_for: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    """``CITADEL_ENABLE_WORKLOAD_CERT_ROTATION=false``: past half life (and past expiry) the agent
    asks Citadel for nothing and keeps serving the one certificate."""
    settings = parse_agent_settings(
        ["--sds-socket", "/tmp/x.sock", "--ca-addr", "127.0.0.1:1"],
        {"CITADEL_ENABLE_WORKLOAD_CERT_ROTATION": "false"},
    )
    assert (
        settings.rotation is False
        and parse_agent_settings(["--sds-socket", "s", "--ca-addr", "h:1"], {}).rotation
    )
    time = DrivenTime()
    token = token_for(sa="issued-once")
    workloads = Workloads(
        _client(citadel),
        "ec",
        dt.timedelta(hours=1),
        lambda: token,
        clock=time.clock,
        wait=time.wait,
        rotation=settings.rotation,
    )
    renewed = _sample("meshplane_nodeagent_certificates_total", {"kind": "renewed"})
    try:
        with caplog.at_level(logging.WARNING):
            cache = await workloads.start_default()
            assert cache is not None
            assert await time.next_wait() == float("inf")  # no renewal is scheduled
        first = cache.cert
        assert first is not None and "will not be rotated" in caplog.text
        time.now += dt.timedelta(hours=2)
        time.release()  # woken anyway (as a spurious wake-up): it goes back to waiting, asks nothing
        assert await time.next_wait() == float("inf")
        assert cache.cert is first
        assert _sample("meshplane_nodeagent_certificates_total", {"kind": "renewed"}) == renewed
    finally:
        time.release()
        await workloads.close()


async def test_unreachable_ca_backs_off_exponentially_and_serves_nothing_new(tmp_path: Path) -> None:
    time = DrivenTime()
    root = tmp_path / "root.pem"
    root.write_text("not used: nothing listens")
    client = CAClient(f"127.0.0.1:{free_port()}", root)
    workloads = Workloads(
        client, "ec", dt.timedelta(hours=1), lambda: "token", clock=time.clock, wait=time.wait
    )
    failures = _sample("meshplane_nodeagent_csr_failures_total")
    try:
        cache = await workloads.start_default()
        assert cache is not None
        delays = []
        for _ in range(6):
            delays.append(await time.next_wait())
            time.release()
        assert cache.cert is None
        for got, base in zip(delays, [0.5, 1, 2, 4, 5, 5], strict=True):
            assert base * 0.8 <= got <= base * 1.2, delays
        assert _sample("meshplane_nodeagent_csr_failures_total") >= failures + 6
        assert workloads.rotating()  # failed requests are the loop's business, not a task failure
    finally:
        await workloads.close()


async def test_a_failing_rotation_loop_is_logged_counted_restarted_and_not_ready_meanwhile(
    citadel: CitadelProcess, token_for: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    time = DrivenTime()
    backoff_asked: asyncio.Queue[float] = asyncio.Queue()
    backoff_release = asyncio.Event()

    async def supervisor_sleep(seconds: float) -> None:
        backoff_asked.put_nowait(seconds)
        await backoff_release.wait()

    supervisor = TaskSupervisor("node-agent", sleep=supervisor_sleep)
    token = token_for(sa="flaky")
    calls = 0

    def flaky_token() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("token source broke")
        return token

    workloads = Workloads(
        _client(citadel),
        "ec",
        dt.timedelta(hours=1),
        flaky_token,
        supervisor=supervisor,
        clock=time.clock,
        wait=time.wait,
        failures=metrics.TASK_FAILURES,
    )
    label = {"task": "rotation"}  # one series for every workload's loop
    before = _sample("meshplane_nodeagent_task_failures_total", label)
    settings = parse_agent_settings(
        ["--ca-addr", citadel.target, "--ca-root", "r.pem", "--token-file", "t", "--sds-socket", "s"],
        environ={},
    )
    try:
        with caplog.at_level(logging.ERROR, logger="meshplane.tasks"):
            cache = await workloads.start_default()
            assert cache is not None
            assert await asyncio.wait_for(backoff_asked.get(), STEP) == 0.5
        assert _sample("meshplane_nodeagent_task_failures_total", label) == before + 1
        failed = [r for r in caplog.records if f"task {rotation_task('default')} failed" in r.getMessage()]
        assert failed and failed[0].exc_info is not None and "token source broke" in caplog.text
        assert not workloads.rotating() and not ready(settings, supervisor, workloads)
        backoff_release.set()
        await time.next_wait()  # restarted: the certificate was issued and renewal scheduled
        assert cache.cert is not None
        assert workloads.rotating() and ready(settings, supervisor, workloads)
    finally:
        time.release()
        await workloads.close()

"""Signing CSRs together: each caller still gets its own certificate or its own error."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest
from cryptography import x509

from meshplane.citadel.ca.authority import LocalAuthority
from meshplane.citadel.ca.coalesce import Coalescer
from meshplane.citadel.ca.errors import InvalidCSRError
from meshplane.citadel.ca.keycert import create_self_signed
from meshplane.citadel.testing import make_csr


def _uri(chain: list[str]) -> list[str]:
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


async def test_jobs_in_one_window_run_together_and_keep_their_own_results() -> None:
    runs: list[tuple[int, float]] = []
    c = Coalescer(window=0.05)

    def job(i: int) -> int:
        runs.append((i, time.monotonic()))
        if i == 2:
            raise ValueError("job 2 is bad")
        return i * 10

    t0 = time.monotonic()
    results = await asyncio.gather(*(c.run(job, i) for i in range(5)), return_exceptions=True)
    assert results[:2] == [0, 10] and results[3:] == [30, 40]
    assert isinstance(results[2], ValueError) and "job 2" in str(results[2])
    assert [i for i, _ in runs] == [0, 1, 2, 3, 4]  # in arrival order
    assert all(t - t0 >= 0.045 for _, t in runs)  # after the window, not one by one
    assert max(t for _, t in runs) - min(t for _, t in runs) < 0.04  # in one burst


async def test_a_full_batch_runs_without_waiting_for_the_window() -> None:
    c = Coalescer(window=30, max_batch=3)
    results = await asyncio.wait_for(asyncio.gather(*(c.run(lambda i: i, i) for i in range(3))), 2)
    assert results == [0, 1, 2]


async def test_a_cancelled_callers_job_is_skipped() -> None:
    ran: list[int] = []
    c = Coalescer(window=0.05)
    kept = asyncio.create_task(c.run(ran.append, 1))
    dropped = asyncio.create_task(c.run(ran.append, 2))
    await asyncio.sleep(0)
    dropped.cancel()
    await kept
    assert ran == [1]


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Coalescer(window=0)


async def test_concurrent_csrs_signed_together_each_get_the_callers_identity(tmp_path: Path) -> None:
    create_self_signed(tmp_path, "cluster.local", "ec", dt.timedelta(days=1))
    ca = LocalAuthority.load(
        tmp_path, dt.timedelta(hours=24), dt.timedelta(days=90), sign_window=dt.timedelta(milliseconds=20)
    )
    ids = [f"spiffe://cluster.local/ns/n{i}/sa/s{i}" for i in range(12)]
    # every CSR asks for someone else's identity; a junk CSR sits in the middle of the batch
    csrs = [make_csr(["spiffe://cluster.local/ns/kube-system/sa/admin"])[1] for _ in ids]
    csrs[5] = "junk"
    signing = (ca.sign(c, i, 600) for c, i in zip(csrs, ids, strict=True))
    results = await asyncio.gather(*signing, return_exceptions=True)
    assert isinstance(results[5], InvalidCSRError)
    for i, chain in enumerate(results):
        if i != 5:
            assert isinstance(chain, list) and _uri(chain) == [ids[i]]

"""`phoenix-coupons codes export` against a real API process (`python -m phoenix_coupons api`):
the file holds every code in the export's order, written atomically, with the progress
shown; the API's memory does not grow with the number of codes exported; and the CLI's
answers to an unknown definition, a bad key and an API out of reach."""

import csv
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.export import coupons, export_definition, peak_rss_mb, write_coupons
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.cli_http import EXIT_AUTH, EXIT_NOT_FOUND, EXIT_UNREACHABLE
from phoenix_coupons.devservers import free_port
from phoenix_coupons.services.code_export import FIELDS
from phoenix_coupons.settings import Settings
from tests.e2e.test_redemption_two_processes import ApiProcess, start_api

pytestmark = pytest.mark.slow

SMALL, LARGE = 5_000, 25_000
# A process that kept the codes it exports would hold ~2 KB per code in memory (a coupon and
# its row): 40 MB more for the larger export. Batches of 1,000 hold about 2 MB.
GROWTH_MB = 20


@pytest.fixture
async def api(settings: Settings, tmp_path: Path) -> AsyncIterator[ApiProcess]:
    process = start_api(settings, tmp_path, 0)
    try:
        await process.wait_ready()
        yield process
    finally:
        process.kill()
        if process.proc.returncode not in (None, 0, -9):
            print(process.tail())


def cli(api_url: str, key: str, *args: str) -> tuple[int, str]:
    """The command as an operator runs it, the key in PHOENIX_API_KEY: (exit code, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "phoenix_coupons", "codes", "export", *args, "--api-url", api_url],
        env={**os.environ, "PHOENIX_API_KEY": key, "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stderr


def exported_codes(path: Path) -> list[str]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == FIELDS
        return [row["code"] for row in reader]


async def test_export_in_constant_memory(
    api: ApiProcess,
    container: Container,
    tenant: str,
    tmp_path: Path,
) -> None:
    defn, key = await export_definition(container, tenant)
    reward_item_id = defn.config.reward_item_id
    await write_coupons(container.mongo, tenant, defn.id, reward_item_id, 0, SMALL)
    out = tmp_path / "out" / "codes.csv"
    out.parent.mkdir()
    code, err = cli(api.url, key, defn.id, "--tenant", tenant, "-o", str(out))
    assert code == 0, err
    small_peak = peak_rss_mb(api.proc.pid)
    assert len(exported_codes(out)) == SMALL
    assert f"{SMALL}/{SMALL}" in err  # the progress bar's done / total
    assert f"exported {SMALL} codes of {defn.id} to {out} (csv)" in err

    await write_coupons(container.mongo, tenant, defn.id, reward_item_id, SMALL, LARGE - SMALL)
    code, err = cli(api.url, key, defn.id, "--tenant", tenant, "-o", str(out))
    assert code == 0, err
    large_peak = peak_rss_mb(api.proc.pid)
    # Newest issued first: the coupons were issued a second apart, in order.
    expected = [c.code for c in coupons(tenant, defn.id, reward_item_id, 0, LARGE)][::-1]
    assert exported_codes(out) == expected
    assert large_peak - small_peak < GROWTH_MB, (small_peak, large_peak)

    jsonl = out.parent / "codes.jsonl"  # the format follows the file's suffix
    code, err = cli(api.url, key, defn.id, "--tenant", tenant, "-o", str(jsonl))
    assert code == 0, err
    assert len(jsonl.read_text().splitlines()) == LARGE
    assert sorted(p.name for p in out.parent.iterdir()) == ["codes.csv", "codes.jsonl"]
    # The session's database is shared: leave no 25,000 coupons behind (the e2e waits once
    # counted a tenant's coupons with a scan, which they made 4x slower: `of_tenant`).
    await container.mongo.coupons.delete_many({"tenant_id": tenant})


async def test_cli_errors(
    api: ApiProcess,
    container: Container,
    tenant: str,
    tmp_path: Path,
) -> None:
    _, key = await container.api_keys.create("export", "coupons:read", tenant)
    out = tmp_path / "out" / "codes.csv"
    out.parent.mkdir()
    out.write_text("before\n")
    args = ("no-such-definition", "--tenant", tenant, "-o", str(out))

    code, err = cli(api.url, key, *args)
    assert (code, "404 definition_not_found" in err) == (EXIT_NOT_FOUND, True), err
    code, err = cli(api.url, "not-a-key", *args)
    assert (code, "401 " in err) == (EXIT_AUTH, True), err
    _, redeemer = await container.api_keys.create("redeem only", "coupons:redeem", tenant)
    code, err = cli(api.url, redeemer, *args)
    assert (code, "403 " in err) == (EXIT_AUTH, True), err
    down = f"http://127.0.0.1:{free_port()}"
    code, err = cli(down, key, *args)
    assert (code, f"the API at {down} does not answer" in err) == (EXIT_UNREACHABLE, True), err
    assert out.read_text() == "before\n"
    assert [p.name for p in out.parent.iterdir()] == ["codes.csv"]
